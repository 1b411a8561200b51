"""A compute tile: controller, command memory, scratchpad, unit, network interface, tokens.

::

             host: cmd_addr/cmd_data/cmd_en (command memory), start, reg_addr -> reg_data
                |
     +----------v-----------+   EXEC {func, args}  +------------------+
     | command memory (256b)|--> TileController -->| unit (tile kind) |
     +----------------------+     |  |    WAIT      +--+------------+--+
                   LOAD/STORE/    |  +-> TokenCounters  |  rd/wr     |
                   SIGNAL/NOP     v          ^ signal   v  ports     v
                          range check -> NetworkInterface <--> Scratchpad
                                              | req/resp flits
                                              v
                                            fabric

The unit is chosen by the tile config's kind (:data:`accelpool.hw.units.UNIT_RTL`); a kind whose RTL
module is missing raises :class:`TileError` naming it. The EXEC word's 240-bit ``args`` field is
viewed through the unit's registered argument layout (:func:`accelpool.spec.isa.exec_spec`).

Scratchpad ports. The unit's ``In(ReadPort.Signature)`` / ``In(WritePort.Signature)``
ports are found by their signature; the scratchpad gets one port per unit port plus one
read and one write port for the NI. Its word is the wider of the unit's word and the
flit; a narrower side reaches it through a lane adapter (word address = narrow address
shifted, byte enables moved to the lane, read data selected by the registered lane).

Range check. LOAD and STORE are checked before they reach the NI: the local scratchpad
range ``[spad_addr, spad_addr + length)`` against the scratchpad size and the remote range
against the size of whatever sits at (x, y) (the memory tile's ``bytes``, another tile's
scratchpad, nothing at an empty router); a SIGNAL must go to a tile. A command out of range is not sent: the tile
raises ``fault`` and stays halted at that command (``pc``), which the host reads back.
The unit is built to address the whole byte address space of its EXEC fields
(:data:`UNIT_ADDRESS_BYTES`), so the tile also sees every unit access beyond the
scratchpad, including those whose address depends on the data (an SMU column index, a GNN
neighbour index): the access is not made, the sticky ``range_fault`` status bit rises with
``fault``, the tile halts at its next command and ``error_pc`` names the EXEC.
An EXEC whose arguments the unit's spec refuses (zero sizes, a kernel or stride the unit
lacks: ``checks`` of :class:`accelpool.spec.isa.ExecSpec`) is not started either and halts
the tile the same way (:func:`accelpool.hw.tile_control.exec_to_unit`).

Capability and status registers (32-bit, read with ``reg_addr`` -> ``reg_data``, see
:data:`REGISTERS`): the capability registers of :mod:`accelpool.sched.pool` (kind code
``UnitKind.value``, version, dtype mask with bit ``DType.value``, geometry, scratchpad
bytes), coordinate, mesh shape, status, pc and the controller's cycle counters of the
last run.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from accelpool.spec import isa
from accelpool.spec.capabilities import capability_registers
from accelpool.spec.config import MeshConfig, PoolConfig, TileConfig, UnitKind
from accelpool.spec.isa import Opcode
from accelpool.spec.unit import unit_spec

from .controller import TileController
from .noc.ni import NetworkInterface
from .noc.tokens import TokenCounters
from .scratchpad import Scratchpad
from .tile_control import (NO_TILE, REG_ADDR_BITS, REG_BITS, REGISTERS, STATUS_BITS,
                           command_memory, exec_to_unit, gate_commands, host_members, is_tile,
                           register_file, trace_memory)
from .units import UNIT_RTL

__all__ = ["TileError", "ComputeTile", "UNIT_ADDRESS_BYTES", "REGISTERS", "REG_BITS",
           "REG_ADDR_BITS", "NO_TILE", "STATUS_BITS", "identity_registers",
           "unit_word_bits", "buildable_kinds", "check_buildable"]

class TileError(ValueError):
    """A tile that cannot be built from its config."""


def identity_registers(tile: TileConfig, mesh: MeshConfig, cmd_depth: int = 0) -> dict[str, int]:
    """The constant registers of a tile built from ``tile``: capabilities, coordinate, mesh."""

    regs = {reg.name.lower(): value for reg, value in capability_registers(tile).items()}
    regs.update({"coord": (tile.y << 8) | tile.x,
                 "mesh": (mesh.flit_bits << 16) | (mesh.rows << 8) | mesh.cols,
                 "cmd_depth": cmd_depth})
    assert all(REGISTERS[k] < 5 for k in regs if k not in ("coord", "mesh", "cmd_depth"))
    return regs


# ---- unit builders -------------------------------------------------------------------

def _pow2(n: int) -> bool:
    return n > 0 and not n & (n - 1)


#: The byte address space of the units' EXEC address fields: a tile builds its unit to
#: address all of it, so that an access beyond the scratchpad is seen (and refused) by the
#: tile rather than wrapped around by the unit.
UNIT_ADDRESS_BYTES = 1 << isa.SPAD_ADDR_BITS

def buildable_kinds() -> list[UnitKind]:
    """The unit kinds whose RTL is registered (:data:`accelpool.hw.units.UNIT_RTL`)."""
    return [k for k in UnitKind if k is not UnitKind.MEMORY and k in UNIT_RTL]


def check_buildable(pool: PoolConfig) -> None:
    """Raise :class:`TileError` naming the first tile of ``pool`` whose unit has no RTL."""
    for tile in pool.units:
        _builder(tile)


def unit_word_bits(unit) -> int:
    """Word width of a unit's scratchpad ports."""
    reads, writes = _unit_ports(unit)
    widths = {len(p.data) for p in reads + writes}
    if len(widths) != 1:
        raise TileError(f"A unit's scratchpad ports must share one word width, not {sorted(widths)}")
    return widths.pop()


def _builder(tile: TileConfig) -> Callable[[TileConfig], object]:
    if tile.kind is UnitKind.MEMORY:
        raise TileError(f"Tile {tile.name!r} is the memory tile, not a compute tile")
    try:
        return UNIT_RTL[tile.kind]
    except KeyError:
        package = unit_spec(tile.kind).package
        where = f"{package}.hw" if package else f"hw/{tile.kind.key}.py"
        have = ", ".join(k.key for k in buildable_kinds()) or "none"
        raise TileError(f"Tile {tile.name!r} at ({tile.x}, {tile.y}) is a "
                        f"{tile.kind.key}, whose RTL ({where}) is missing "
                        f"or not wired into tiles; kinds that can be built: {have}") from None


def _unit_ports(unit) -> tuple[list, list]:
    """The unit's scratchpad read and write ports (by signature), in declaration order."""
    reads, writes = [], []
    for name, member in unit.signature.members.items():
        if not member.is_signature or member.flow is not In:
            continue
        ports = getattr(unit, name)
        flat = [ports]
        for _ in member.dimensions:
            flat = [p for group in flat for p in group]
        if isinstance(member.signature, memory.ReadPort.Signature):
            reads += flat
        elif isinstance(member.signature, memory.WritePort.Signature):
            writes += flat
    return reads, writes


# ---- the tile --------------------------------------------------------------------------

class ComputeTile(wiring.Component):
    """One compute tile of the pool.

    Parameters
    ----------
    tile : TileConfig
        The tile (kind, coordinate, unit parameters, scratchpad bytes).
    pool : PoolConfig
        The pool it sits in (the mesh, and every tile's size for the range check).
    cmd_depth : int
        Commands the command memory holds.
    tokens : int
        Token counters.
    max_packet_bytes : int
        Largest NoC packet payload.

    Attributes
    ----------
    req_out, resp_out : Out(stream.Signature(flit_layout))
    req_in, resp_in : In(stream.Signature(flit_layout))
        The NI's network ports (:func:`accelpool.hw.noc.fabric.attach_ni` connects them).
    cmd_addr, cmd_data, cmd_en : In
        Host write port of the command memory (one 256-bit command per cycle).
    start : In(1)
        Pulse: run the command stream from command 0.
    finished : Out(1)
        ``done``, ``error`` or ``fault``: the tile has stopped.
    fault : Out(1)
        A LOAD/STORE/SIGNAL failed the range check; the tile is halted at ``pc``.
    error : Out(1)
        The controller (unknown opcode, ran off the command memory), the NI (a dropped
        command) or the token counters (a token out of range) flagged an error.
    reg_addr : In(5); reg_data : Out(32)
        Register read (combinational), see :data:`REGISTERS`.
    trace_addr : In(cmd address width); trace_data : Out(32)
        Trace read (one cycle of latency): the controller's ``cycles`` value when command
        ``trace_addr`` left ISSUE in the last run (END: when the tile finished), so the host
        can draw the measured timeline of every command. Entries of commands that did not
        issue hold stale values.
    """

    def __init__(self, tile: TileConfig, pool: PoolConfig, *, cmd_depth: int = 1024,
                 tokens: int = 16, max_packet_bytes: int = 64):
        if not isinstance(tile, TileConfig):
            raise TypeError(f"Tile must be a TileConfig, not {tile!r}")
        if not isinstance(pool, PoolConfig):
            raise TypeError(f"Pool must be a PoolConfig, not {pool!r}")
        if isinstance(cmd_depth, bool) or not isinstance(cmd_depth, int) or cmd_depth < 2:
            raise ValueError(f"Command memory depth must be an integer of at least 2, "
                             f"not {cmd_depth!r}")
        build = _builder(tile)
        self._tile, self._pool = tile, pool
        mesh = pool.mesh
        # The unit addresses all of the EXEC arguments' byte address space, so an address
        # beyond the scratchpad reaches the tile's range check instead of wrapping around.
        self._unit = build(dataclasses.replace(
            tile, params={**tile.params, "scratchpad_bytes": UNIT_ADDRESS_BYTES}))
        unit_bits = unit_word_bits(self._unit)
        if not _pow2(unit_bits // 8) or unit_bits % 8:
            raise TileError(f"Tile {tile.name!r}: the {tile.kind.key}'s scratchpad word of "
                            f"{unit_bits} bits is not a power-of-two number of bytes")
        self._word_bits = max(unit_bits, mesh.flit_bits)
        spad_bytes = tile.scratchpad_bytes
        if spad_bytes < 2 * self._word_bits // 8:
            raise TileError(f"Tile {tile.name!r}: scratchpad of {spad_bytes} bytes holds "
                            f"fewer than two {self._word_bits}-bit words")
        self._depth = spad_bytes // (self._word_bits // 8)
        self._unit_bits = unit_bits
        self._spec = isa.exec_spec(tile.kind)
        cmd_sig = self._unit.signature.members["cmd"].signature
        layout = cmd_sig.members["payload"].shape
        if list(layout) and [n for n, _ in layout] != ["func", "args"]:
            raise TileError(f"The {tile.kind.key}'s cmd payload must be a struct "
                            f"{{func, args}}, not {layout!r}")
        self._reads, self._writes = _unit_ports(self._unit)
        self._ctl = TileController(depth=cmd_depth)
        self._cmd_depth = cmd_depth
        self._ni = NetworkInterface(mesh=mesh, x=tile.x, y=tile.y, word_bits=self._word_bits,
                                    spad_bytes=spad_bytes, max_packet_bytes=max_packet_bytes)
        self._tokens = TokenCounters(tokens)
        ni_members = self._ni.signature.members
        super().__init__({
            "req_out": ni_members["req_out"],
            "req_in": ni_members["req_in"],
            "resp_out": ni_members["resp_out"],
            "resp_in": ni_members["resp_in"],
            **host_members(self._ctl),
        })

    tile = property(lambda self: self._tile)
    x = property(lambda self: self._tile.x)
    y = property(lambda self: self._tile.y)
    word_bits = property(lambda self: self._word_bits)
    cmd_depth = property(lambda self: self._cmd_depth)
    unit = property(lambda self: self._unit)

    def elaborate(self, platform):
        m = Module()
        tile, mesh = self._tile, self._pool.mesh
        m.submodules.unit = unit = self._unit
        m.submodules.controller = ctl = self._ctl
        m.submodules.ni = ni = self._ni
        m.submodules.tokens = tokens = self._tokens
        m.submodules.spad = spad = Scratchpad(word_bits=self._word_bits, depth=self._depth,
                                              read_ports=len(self._reads) + 1,
                                              write_ports=len(self._writes) + 1)
        command_memory(m, ctl, self._cmd_depth, addr=self.cmd_addr, data=self.cmd_data,
                       en=self.cmd_en)
        trace_memory(m, ctl, self._cmd_depth, addr=self.trace_addr, data=self.trace_data)
        m.d.comb += ctl.start.eq(self.start)

        # Scratchpad: unit ports first, the NI's last. A unit access beyond the scratchpad
        # does nothing and raises the sticky range fault; the tile then halts at its next
        # command and reports the EXEC that was running (error_pc).
        ratio = self._word_bits // self._unit_bits
        outside = [_narrow_read(m, spad.read[i], port, ratio, self._depth)
                   for i, port in enumerate(self._reads)]
        outside += [_narrow_write(m, spad.write[i], port, ratio, self._depth)
                    for i, port in enumerate(self._writes)]
        range_fault, exec_pc = Signal(), Signal.like(ctl.pc)
        with m.If(ctl.start):
            m.d.sync += range_fault.eq(0)
        with m.Elif(Cat(*outside).any()):
            m.d.sync += range_fault.eq(1)
        with m.If(ctl.unit_cmd.valid & ctl.unit_cmd.ready):
            m.d.sync += exec_pc.eq(ctl.pc)
        wiring.connect(m, spad.read[len(self._reads)], ni.spad_read)
        wiring.connect(m, spad.write[len(self._writes)], ni.spad_write)

        # Network.
        for name in ("req_out", "resp_out"):
            wiring.connect(m, getattr(ni, name), wiring.flipped(getattr(self, name)))
        for name in ("req_in", "resp_in"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(ni, name))
        wiring.connect(m, ni.signal, tokens.inc)
        wiring.connect(m, ctl.tok_wait, tokens.wait)

        # EXEC: the 240-bit args seen through the unit's own argument layout.
        exec_fault = exec_to_unit(m, ctl, unit, self._spec, halt=range_fault)
        m.d.comb += ctl.ni_busy.eq(ni.busy)

        # LOAD/STORE range check between the controller and the NI.
        c = ctl.ni_cmd.payload
        dma = c.body.load
        is_dma = (c.opcode == Opcode.LOAD) | (c.opcode == Opcode.STORE)
        end_local = Signal(isa.SPAD_ADDR_BITS + 2)
        end_remote = Signal(isa.REMOTE_ADDR_BITS + 2)
        remote_size = Signal(isa.REMOTE_ADDR_BITS + 1)
        m.d.comb += [end_local.eq(dma.spad_addr + dma.length),
                     end_remote.eq(dma.remote_addr + dma.length)]
        with m.Switch(Cat(dma.x, dma.y)):
            for t in self._pool.tiles:
                size = t.params["bytes"] if t.kind is UnitKind.MEMORY else t.scratchpad_bytes
                with m.Case(t.x | (t.y << isa.COORD_BITS)):
                    m.d.comb += remote_size.eq(size)
        signal_to_tile = is_tile(m, self._pool.tiles, c.body.signal.x, c.body.signal.y)
        bad = Signal()
        m.d.comb += bad.eq((is_dma & ((end_local > tile.scratchpad_bytes)
                                      | (end_remote > remote_size)))
                           | ((c.opcode == Opcode.SIGNAL) & ~signal_to_tile))
        dma_fault = gate_commands(m, ctl, bad, valid=ni.cmd.valid, ready=ni.cmd.ready,
                                  halt=range_fault)
        fault = Signal()
        m.d.comb += fault.eq(dma_fault | exec_fault | range_fault)
        m.d.comb += [
            ni.cmd.payload.eq(c),
            self.fault.eq(fault),
            self.error.eq(ctl.error | ni.error | tokens.error),
            self.finished.eq(ctl.done | ctl.error | fault),
        ]

        # Registers.
        caps = identity_registers(tile, mesh, self._cmd_depth)
        status = Cat(*(s for s in (ctl.running, ctl.done, ctl.error, fault, ni.error,
                                   tokens.error, unit.busy, ni.busy, range_fault)))
        register_file(m, ctl, caps, status, addr=self.reg_addr, data=self.reg_data,
                      error_pc=Mux(range_fault, exec_pc, ctl.error_pc))
        return m


def _narrow_read(m: Module, wide, narrow, ratio: int, depth: int):
    """Connect a unit read port of 1/``ratio`` the scratchpad word to a scratchpad read
    port; returns the signal that is high while the unit reads beyond ``depth`` words
    (that read is not made)."""
    shift = (ratio - 1).bit_length()
    word = narrow.addr >> shift
    outside = Signal()
    m.d.comb += [outside.eq(narrow.en & (word >= depth)), wide.addr.eq(word),
                 wide.en.eq(narrow.en & ~outside)]
    if ratio == 1:
        m.d.comb += narrow.data.eq(wide.data)
        return outside
    lane = Signal(shift)
    bits = len(narrow.data)
    with m.If(narrow.en):
        m.d.sync += lane.eq(narrow.addr[:shift])
    m.d.comb += narrow.data.eq(wide.data.word_select(lane, bits))
    return outside


def _narrow_write(m: Module, wide, narrow, ratio: int, depth: int):
    """Connect a unit write port of 1/``ratio`` the scratchpad word to a scratchpad write
    port; returns the signal that is high while the unit writes beyond ``depth`` words
    (that write is not made)."""
    shift = (ratio - 1).bit_length()
    word = narrow.addr >> shift
    outside = Signal()
    nb = len(narrow.en)
    m.d.comb += [outside.eq(narrow.en.any() & (word >= depth)), wide.addr.eq(word)]
    if ratio == 1:
        m.d.comb += [wide.en.eq(Mux(outside, 0, narrow.en)), wide.data.eq(narrow.data)]
        return outside
    lane = narrow.addr[:shift]
    m.d.comb += [wide.data.eq(narrow.data.replicate(ratio)),
                 wide.en.eq(Mux(outside, 0, Cat(*(Mux(lane == i, narrow.en, Const(0, nb))
                                                  for i in range(ratio)))))]
    return outside
