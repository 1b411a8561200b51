"""Stream flits out of a shared one-cycle-latency read port, one read per granted cycle.

A :class:`accelpool.hw.spad_stream.QueuedReader`, like the scratchpad's ``StreamReader``, but
the port is shared: the reader raises ``req`` with ``addr`` and only counts a read as issued
in a cycle where ``grant`` is high (a :class:`~accelpool.hw.noc.arbiter.RoundRobin` between
the NI's readers decides). The data comes back on ``rdata`` one cycle later.
"""

from __future__ import annotations

from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from ..spad_stream import QueuedReader

__all__ = ["ReadCommand", "FlitReader", "COUNT_BITS"]

#: Width of a read's flit count (a whole DMA command's length in flits fits).
COUNT_BITS = 24


def ReadCommand(addr_width: int) -> data.StructLayout:
    """A read: first flit address and number of flits."""
    return data.StructLayout({"addr": addr_width, "count": COUNT_BITS})


class FlitReader(QueuedReader):
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

    def __init__(self, *, addr_width: int, flit_bits: int):
        members = {
            "cmd": In(stream.Signature(ReadCommand(addr_width))),
            "data": Out(stream.Signature(flit_bits)),
            "req": Out(1),
            "addr": Out(addr_width),
            "grant": In(1),
            "rdata": In(flit_bits),
        }
        super().__init__(addr_width=addr_width, data_width=flit_bits, count_bits=COUNT_BITS,
                         members=members)

    def issue_logic(self, q, addr, remaining, pending, issue):
        return [
            self.cmd.ready.eq(remaining == 0),
            self.req.eq((remaining != 0) & (q.level + pending < self.FIFO_DEPTH)),
            issue.eq(self.req & self.grant),
            self.addr.eq(addr),
        ]

    def read_data(self):
        return self.rdata
