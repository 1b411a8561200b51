"""The memory tile: the pool's global memory on the mesh, programmable, with a host port.

The memory is ``bytes`` bytes in words of one flit (``mesh.flit_bits``). Other tiles
reach it with WRITE and READ_REQ packets on the request network
(:class:`~accelpool.hw.noc.target.PacketTarget`); the answers leave on the response network. SIGNALs
sent to the memory tile count in its own :class:`~accelpool.hw.noc.tokens.TokenCounters`, which the
host can read (a tile can tell the testbench "my results are stored").

The memory tile runs a command stream like a compute tile (:mod:`accelpool.hw.tile_control`: a
command memory, a :class:`~accelpool.hw.controller.TileController`, the trace and the registers):

- WAIT on its token counters;
- EXEC on its layout engine (:class:`~accelpool.hw.layout_engine.LayoutEngine`: IM2COL, TRANSPOSE),
  which reads and writes the global memory through its own read and write port;
- SIGNAL to a tile, sent on the request network by a
  :class:`~accelpool.hw.noc.signaller.SignalSender` (the one the compute tiles' NIs use): the memory
  tile injects requests but never receives a response;
- NOP, END.

LOAD and STORE mean nothing here: one halts the tile with ``fault`` at its ``pc``, as does
a SIGNAL to a position without a tile. A stream of a lone END finishes in the cycles of
any tile's END and leaves the memory side untouched.

The host port is a separate read and write port of the same memory (word addresses,
one-cycle read latency, byte enables), so the testbench loads inputs and reads results
back in bulk, one word per cycle, without going through the network. It is a simulation
convenience: it does not arbitrate with the network side or the layout engine, so the
host should not write words they are using at the same moment; likewise the compiler
keeps network traffic off the regions an EXEC reads and writes while it runs.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig, UnitKind
from accelpool.spec.isa import COUNT_BITS, TOKEN_BITS, Opcode, exec_spec

from ..controller import TileController
from ..layout_engine import LayoutEngine
from ..params import check_int, is_int
from ..tile_control import (command_memory, exec_to_unit, gate_commands, host_members, is_tile,
                            register_file, trace_memory)
from .flit import flit_layout
from .mesh import check_coord, check_mesh
from .signaller import SignalSender
from .target import PacketTarget
from .tokens import TokenCounters

__all__ = ["MemoryTile"]


class MemoryTile(wiring.Component):
    """Global memory behind a network interface, with a layout engine and a command stream.

    Parameters
    ----------
    mesh : MeshConfig
        The network.
    x, y : int
        The tile's coordinate.
    bytes : int
        Memory size (a power of two, at least 16 flits).
    tokens : int
        Token counters for SIGNALs addressed to the memory tile.
    cmd_depth : int
        Commands the command memory holds (at least 2).
    tiles : iterable of objects with ``x`` and ``y``, optional
        The pool's tiles: a SIGNAL to any other position faults. Default: every position
        of the mesh is accepted.
    identity : mapping register name -> value, optional
        The constant registers (capabilities, coordinate, mesh; :func:`accelpool.hw.tile.identity_registers`).

    Attributes
    ----------
    req_in : In(stream.Signature(flit_layout))
        From the request network's ejection port.
    resp_out : Out(stream.Signature(flit_layout))
        To the response network's injection port.
    req_out : Out(stream.Signature(flit_layout))
        To the request network's injection port (SIGNALs of the command stream).
    host_read : Out(memory.ReadPort.Signature(addr_width=, shape=flit_bits))
    host_write : Out(memory.WritePort.Signature(addr_width=, shape=flit_bits, granularity=8))
        Host ports (the memory side: the testbench drives ``addr``/``en``/``data``).
    host_token : In(8)
    host_token_value : Out(16)
        The value of token counter ``host_token``.
    cmd_addr, cmd_data, cmd_en, start, finished, fault, error, reg_addr, reg_data,
    trace_addr, trace_data
        The host interface of a compute tile (:class:`accelpool.hw.tile.ComputeTile`): ``error`` is
        the controller's, the SIGNAL sender's (a destination outside the mesh) or the
        token counters'.
    """

    def __init__(self, *, mesh: MeshConfig, x: int, y: int, bytes: int, tokens: int = 16,
                 cmd_depth: int = 1024, tiles: Iterable | None = None,
                 identity: Mapping[str, int] | None = None):
        self._mesh = check_mesh(mesh)
        check_coord(mesh, x, y)
        fb = mesh.flit_bits // 8
        check_int(bytes, "Memory size")
        if bytes < 16 * fb or bytes & (bytes - 1):
            raise ValueError(f"Memory size must be a power of two of at least 16 flits "
                             f"({16 * fb} bytes), not {bytes!r}")
        if not is_int(cmd_depth) or cmd_depth < 2:
            raise ValueError(f"Command memory depth must be an integer of at least 2, "
                             f"not {cmd_depth!r}")
        self._x, self._y = x, y
        self._bytes = bytes
        self._depth = bytes // fb
        self._addr_width = (self._depth - 1).bit_length()
        self._cmd_depth = cmd_depth
        self._tiles = list(tiles) if tiles is not None else None
        self._identity = dict(identity or {})
        self._tokens = TokenCounters(tokens)
        self._memory = memory.Memory(shape=mesh.flit_bits, depth=self._depth, init=[])
        self._ctl = TileController(depth=cmd_depth)
        self._engine = LayoutEngine(word_bits=mesh.flit_bits, addr_width=self._addr_width)
        layout = flit_layout(mesh.flit_bits)
        super().__init__({
            "req_in": In(stream.Signature(layout)),
            "resp_out": Out(stream.Signature(layout)),
            "req_out": Out(stream.Signature(layout)),
            "host_read": Out(memory.ReadPort.Signature(addr_width=self._addr_width,
                                                       shape=mesh.flit_bits)),
            "host_write": Out(memory.WritePort.Signature(addr_width=self._addr_width,
                                                         shape=mesh.flit_bits, granularity=8)),
            "host_token": In(TOKEN_BITS),
            "host_token_value": Out(COUNT_BITS),
            **host_members(self._ctl),
        })

    mesh = property(lambda self: self._mesh)
    x = property(lambda self: self._x)
    y = property(lambda self: self._y)
    bytes = property(lambda self: self._bytes)
    depth = property(lambda self: self._depth)
    addr_width = property(lambda self: self._addr_width)
    cmd_depth = property(lambda self: self._cmd_depth)
    engine = property(lambda self: self._engine)

    @property
    def memory(self) -> memory.Memory:
        """The global memory itself (a simulator can read and preload ``memory.data``)."""
        return self._memory

    def elaborate(self, platform):
        m = Module()
        fbits = self._mesh.flit_bits
        m.submodules.mem = mem = self._memory
        m.submodules.target = target = PacketTarget(x=self._x, y=self._y, flit_bits=fbits,
                                                    addr_width=self._addr_width)
        m.submodules.tokens = tokens = self._tokens
        wiring.connect(m, wiring.flipped(self.req_in), target.req_in)
        wiring.connect(m, target.resp_out, wiring.flipped(self.resp_out))
        wiring.connect(m, target.signal, tokens.inc)
        m.d.comb += [tokens.peek_token.eq(self.host_token),
                     self.host_token_value.eq(tokens.peek_value)]

        # Memory ports: the network side's, the host's, the layout engine's.
        rd = mem.read_port()
        wr = mem.write_port(granularity=8)
        m.d.comb += [
            rd.addr.eq(target.rd_addr), rd.en.eq(target.rd_req),
            target.rd_grant.eq(1), target.rd_data.eq(rd.data),
            wr.addr.eq(target.wr.addr), wr.data.eq(target.wr.data),
            wr.en.eq(target.wr.mask & target.wr.req.replicate(fbits // 8)),
            target.wr.grant.eq(1),
        ]
        host_rd = mem.read_port()
        host_wr = mem.write_port(granularity=8)
        wiring.connect(m, wiring.flipped(self.host_read), host_rd)
        wiring.connect(m, wiring.flipped(self.host_write), host_wr)
        m.submodules.engine = engine = self._engine
        wiring.connect(m, mem.read_port(), engine.rd)
        wiring.connect(m, mem.write_port(granularity=8), engine.wr)

        # The command stream.
        m.submodules.controller = ctl = self._ctl
        command_memory(m, ctl, self._cmd_depth, addr=self.cmd_addr, data=self.cmd_data,
                       en=self.cmd_en)
        trace_memory(m, ctl, self._cmd_depth, addr=self.trace_addr, data=self.trace_data)
        m.d.comb += ctl.start.eq(self.start)
        wiring.connect(m, ctl.tok_wait, tokens.wait)
        exec_fault = exec_to_unit(m, ctl, engine, exec_spec(UnitKind.MEMORY))

        # NOP and SIGNAL go to the SIGNAL sender; LOAD and STORE (and a SIGNAL to a
        # position without a tile) fault.
        m.submodules.signaller = sender = SignalSender(mesh=self._mesh, x=self._x, y=self._y)
        wiring.connect(m, sender.req_out, wiring.flipped(self.req_out))
        c = ctl.ni_cmd.payload
        is_signal = c.opcode == Opcode.SIGNAL
        if self._tiles is None:
            to_tile = Const(1, 1)
        else:
            to_tile = is_tile(m, self._tiles, c.body.signal.x, c.body.signal.y)
        bad = (c.opcode == Opcode.LOAD) | (c.opcode == Opcode.STORE) | (is_signal & ~to_tile)
        # A NOP is taken, like a SIGNAL, once the sender is idle, and sends nothing.
        passed = Signal()
        fault = Signal()
        m.d.comb += fault.eq(gate_commands(m, ctl, bad, valid=passed, ready=sender.cmd.ready)
                             | exec_fault)
        m.d.comb += [sender.cmd.valid.eq(passed & is_signal),
                     sender.cmd.payload.eq(c.body.signal), ctl.ni_busy.eq(sender.busy)]
        m.d.comb += [
            self.fault.eq(fault),
            self.error.eq(ctl.error | sender.error | tokens.error),
            self.finished.eq(ctl.done | ctl.error | fault),
        ]

        status = Cat(ctl.running, ctl.done, ctl.error, fault, sender.error, tokens.error,
                     engine.busy, sender.busy)
        register_file(m, ctl, {**self._identity, "cmd_depth": self._cmd_depth}, status,
                      addr=self.reg_addr, data=self.reg_data)
        return m
