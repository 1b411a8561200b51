"""Stream flits out of a shared one-cycle-latency read port, one read per granted cycle.

Like :class:`accelpool.hw.spad_stream.StreamReader`, but the port is shared: the reader raises
``req`` with ``addr`` and only counts a read as issued in a cycle where ``grant`` is high
(a :class:`~accelpool.hw.noc.arbiter.RoundRobin` between the NI's readers decides). The data comes
back on ``rdata`` one cycle later.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ReadCommand", "FlitReader", "COUNT_BITS"]

#: Width of a read's flit count (a whole DMA command's length in flits fits).
COUNT_BITS = 24


def ReadCommand(addr_width: int) -> data.StructLayout:
    """A read: first flit address and number of flits."""
    return data.StructLayout({"addr": addr_width, "count": COUNT_BITS})


class FlitReader(wiring.Component):
    """Reads ``count`` consecutive flits from a shared read port into a stream.

    Parameters
    ----------
    addr_width : int
        Flit address width.
    flit_bits : int
        Data width.

    Attributes
    ----------
    cmd : In(stream.Signature(ReadCommand))
        Accepted once the previous read has been issued (its data may still be
        queued), so consecutive reads stream without a gap.
    data : Out(stream.Signature(flit_bits))
        The flits, in address order.
    req, addr : Out
        A read request and its address.
    grant : In(1)
        The shared port performs this reader's read this cycle.
    rdata : In(flit_bits)
        Read data, one cycle after a granted request.
    """

    FIFO_DEPTH = 4

    def __init__(self, *, addr_width: int, flit_bits: int):
        self._addr_width = addr_width
        self._flit_bits = flit_bits
        super().__init__({
            "cmd": In(stream.Signature(ReadCommand(addr_width))),
            "data": Out(stream.Signature(flit_bits)),
            "req": Out(1),
            "addr": Out(addr_width),
            "grant": In(1),
            "rdata": In(flit_bits),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFO(width=self._flit_bits, depth=self.FIFO_DEPTH)
        addr = Signal(self._addr_width)
        remaining = Signal(COUNT_BITS)
        pending = Signal()
        issue = Signal()
        m.d.comb += [
            self.cmd.ready.eq(remaining == 0),
            self.req.eq((remaining != 0) & (q.level + pending < self.FIFO_DEPTH)),
            issue.eq(self.req & self.grant),
            self.addr.eq(addr),
            q.w_en.eq(pending),
            q.w_data.eq(self.rdata),
            self.data.payload.eq(q.r_data),
            self.data.valid.eq(q.r_rdy),
            q.r_en.eq(self.data.ready),
        ]
        m.d.sync += pending.eq(issue)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), remaining.eq(self.cmd.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
        return m
