"""The memory tile: the pool's global memory on the mesh, with a host port for the testbench.

The memory is ``bytes`` bytes in words of one flit (``mesh.flit_bits``). Other tiles
reach it with WRITE and READ_REQ packets on the request network
(:class:`~hw.noc.target.PacketTarget`); the answers leave on the response network. SIGNALs
sent to the memory tile count in its own :class:`~hw.noc.tokens.TokenCounters`, which the
host can read (a tile can tell the testbench "my results are stored").

The host port is a separate read and write port of the same memory (word addresses,
one-cycle read latency, byte enables), so the testbench loads inputs and reads results
back in bulk, one word per cycle, without going through the network. It is a simulation
convenience: it does not arbitrate with the network side, so the host should not write
words the network is using at the same moment.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import MeshConfig
from ..isa import COUNT_BITS, TOKEN_BITS
from .flit import flit_layout
from .mesh import check_coord, check_mesh
from .target import PacketTarget
from .tokens import TokenCounters

__all__ = ["MemoryTile"]


class MemoryTile(wiring.Component):
    """Global memory behind a network interface.

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

    Attributes
    ----------
    req_in : In(stream.Signature(flit_layout))
        From the request network's ejection port.
    resp_out : Out(stream.Signature(flit_layout))
        To the response network's injection port.
    host_read : Out(memory.ReadPort.Signature(addr_width=, shape=flit_bits))
    host_write : Out(memory.WritePort.Signature(addr_width=, shape=flit_bits, granularity=8))
        Host ports (the memory side: the testbench drives ``addr``/``en``/``data``).
    host_token : In(8)
    host_token_value : Out(16)
        The value of token counter ``host_token``.
    """

    def __init__(self, *, mesh: MeshConfig, x: int, y: int, bytes: int, tokens: int = 16):
        self._mesh = check_mesh(mesh)
        check_coord(mesh, x, y)
        fb = mesh.flit_bits // 8
        if isinstance(bytes, bool) or not isinstance(bytes, int):
            raise TypeError(f"Memory size must be a positive integer, not {bytes!r}")
        if bytes < 16 * fb or bytes & (bytes - 1):
            raise ValueError(f"Memory size must be a power of two of at least 16 flits "
                             f"({16 * fb} bytes), not {bytes!r}")
        self._x, self._y = x, y
        self._bytes = bytes
        self._depth = bytes // fb
        self._addr_width = (self._depth - 1).bit_length()
        self._tokens = TokenCounters(tokens)
        self._memory = memory.Memory(shape=mesh.flit_bits, depth=self._depth, init=[])
        layout = flit_layout(mesh.flit_bits)
        super().__init__({
            "req_in": In(stream.Signature(layout)),
            "resp_out": Out(stream.Signature(layout)),
            "host_read": Out(memory.ReadPort.Signature(addr_width=self._addr_width,
                                                       shape=mesh.flit_bits)),
            "host_write": Out(memory.WritePort.Signature(addr_width=self._addr_width,
                                                         shape=mesh.flit_bits, granularity=8)),
            "host_token": In(TOKEN_BITS),
            "host_token_value": Out(COUNT_BITS),
        })

    mesh = property(lambda self: self._mesh)
    x = property(lambda self: self._x)
    y = property(lambda self: self._y)
    bytes = property(lambda self: self._bytes)
    depth = property(lambda self: self._depth)
    addr_width = property(lambda self: self._addr_width)

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
        return m
