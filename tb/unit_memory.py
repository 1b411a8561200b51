"""A test top that gives a unit a scratchpad of its own, plus host ports to fill and read it.

Simulating a unit with its scratchpad needs a memory behind each of the unit's
``In(ReadPort.Signature)`` / ``In(WritePort.Signature)`` ports. :class:`UnitWithMemory`
instantiates one ``lib.memory.Memory`` (one-cycle read latency, byte write enables, as
:class:`hw.scratchpad.Scratchpad`), connects each named unit port to a port of it, and
exposes the unit's other ports (``cmd``, ``busy``) together with a ``host_read`` and a
``host_write`` port through which a testbench loads operands and reads results one word
per cycle (in Verilog: ``host_write__addr``/``__data``/``__en``, ``host_read__addr``/
``__data``/``__en``). In amaranth.sim the memory can instead be preloaded (``init``)
and read back directly (``top.mem.data[i]``).
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UnitWithMemory", "sparse_unit_top"]


class UnitWithMemory(wiring.Component):
    """A unit plus a memory on its scratchpad ports.

    Parameters
    ----------
    unit : wiring.Component
        Exposes the named memory ports and the ports in ``ports``.
    reads, writes : sequence of str
        Names of the unit's read and write ports.
    word_bits, depth : int
        Memory geometry; must match the unit's ports.
    init : sequence of int, optional
        Initial words (amaranth.sim; in Verilog they become an initial block).
    ports : sequence of str
        The unit's ports exposed unchanged at the top (default ``cmd`` and ``busy``).
    """

    def __init__(self, unit, *, reads, writes, word_bits: int, depth: int, init=(),
                 ports=("cmd", "busy")):
        self.unit = unit
        self._ports = list(ports)
        self._reads = list(reads)
        self._writes = list(writes)
        aw = max(1, (depth - 1).bit_length())
        self.mem = memory.Memory(shape=word_bits, depth=depth, init=list(init))
        members = {name: unit.signature.members[name] for name in self._ports}
        super().__init__({
            **members,
            "host_read": Out(memory.ReadPort.Signature(addr_width=aw, shape=word_bits)),
            "host_write": Out(memory.WritePort.Signature(addr_width=aw, shape=word_bits,
                                                         granularity=8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        m.submodules.mem = mem = self.mem
        for name in self._ports:
            member = self.signature.members[name]
            ours, theirs = getattr(self, name), getattr(unit, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(ours), theirs)
            elif member.flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        for name in self._reads:
            port = mem.read_port()
            up = getattr(unit, name)
            m.d.comb += [port.addr.eq(up.addr), port.en.eq(up.en), up.data.eq(port.data)]
        host_r = mem.read_port()
        m.d.comb += [host_r.addr.eq(self.host_read.addr), host_r.en.eq(self.host_read.en),
                     self.host_read.data.eq(host_r.data)]
        for name in self._writes:
            port = mem.write_port(granularity=8)
            up = getattr(unit, name)
            m.d.comb += [port.addr.eq(up.addr), port.en.eq(up.en), port.data.eq(up.data)]
        host_w = mem.write_port(granularity=8)
        m.d.comb += [host_w.addr.eq(self.host_write.addr), host_w.en.eq(self.host_write.en),
                     host_w.data.eq(self.host_write.data)]
        return m


def sparse_unit_top(unit) -> UnitWithMemory:
    """A sparse unit (:class:`hw.sparse_unit.SparseUnit`) with a memory of its scratchpad's size."""
    return UnitWithMemory(unit, reads=unit.PORTS[:3], writes=unit.PORTS[3:],
                          word_bits=unit.word_bits, depth=unit.depth)
