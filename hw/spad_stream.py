"""Streams over memory ports: read ``count`` words as a stream, or write a stream to memory.

Shared by the scratchpad's network channels and by any unit that streams operands.
Both run at one word per cycle when the other side keeps up, and honour backpressure.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_positive

__all__ = ["TransferLayout", "QueuedReader", "StreamReader", "StreamWriter", "COUNT_BITS"]

#: Width of a transfer's word count.
COUNT_BITS = 16


def TransferLayout(addr_width: int) -> data.StructLayout:
    """A transfer command: first word address and word count (0 means nothing)."""
    return data.StructLayout({"addr": addr_width, "count": COUNT_BITS})


def _check_widths(addr_width, data_width):
    for name, value in (("Address width", addr_width), ("Data width", data_width)):
        check_positive(value, name)


class QueuedReader(wiring.Component):
    """Reads ``count`` consecutive words from a one-cycle-latency read port into a stream.

    A small FIFO absorbs the words already in flight when the consumer stalls. The
    component has ``cmd`` (``{addr, count}``) and ``data`` streams; a subclass drives its
    read port and says when a read is issued (:meth:`issue_logic`).

    Parameters
    ----------
    addr_width, data_width : int
        Widths of the memory port.
    count_bits : int
        Width of a command's word count.
    members : dict
        The component's signature members, ``cmd`` and ``data`` among them.
    """

    #: FIFO depth: one word in flight plus the consumer's one-cycle reaction, with margin.
    FIFO_DEPTH = 4

    def __init__(self, *, addr_width: int, data_width: int, count_bits: int, members: dict):
        self._addr_width = addr_width
        self._data_width = data_width
        self._count_bits = count_bits
        super().__init__(members)

    def issue_logic(self, q, addr, remaining, pending, issue) -> list:
        """Statements driving ``cmd.ready``, ``issue`` (a read this cycle) and the port's
        address from ``addr``, given the FIFO ``q`` and the ``remaining`` and ``pending``
        (data arriving this cycle) state."""
        raise NotImplementedError

    def read_data(self):
        """The port's read data (valid the cycle after an issued read)."""
        raise NotImplementedError

    def status_logic(self, q, remaining, pending) -> list:
        """Statements driving the subclass's status outputs, if any."""
        return []

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = q = fifo.SyncFIFO(width=self._data_width, depth=self.FIFO_DEPTH)
        addr = Signal(self._addr_width)
        remaining = Signal(self._count_bits)
        pending = Signal()  # a read issued last cycle whose data arrives this cycle
        issue = Signal()

        m.d.comb += self.issue_logic(q, addr, remaining, pending, issue)
        m.d.comb += [
            q.w_en.eq(pending),
            q.w_data.eq(self.read_data()),
            self.data.payload.eq(q.r_data),
            self.data.valid.eq(q.r_rdy),
            q.r_en.eq(self.data.ready),
        ]
        m.d.comb += self.status_logic(q, remaining, pending)
        m.d.sync += pending.eq(issue)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), remaining.eq(self.cmd.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
        return m


class StreamReader(QueuedReader):
    """Reads ``count`` consecutive words from a one-cycle-latency read port as a stream.

    The reader issues one read per cycle while the consumer keeps up.

    Parameters
    ----------
    addr_width, data_width : int
        Widths of the memory port.
    """

    def __init__(self, *, addr_width: int, data_width: int):
        _check_widths(addr_width, data_width)
        members = {
            "cmd": In(stream.Signature(TransferLayout(addr_width))),
            "data": Out(stream.Signature(data_width)),
            "port": In(memory.ReadPort.Signature(addr_width=addr_width, shape=data_width)),
            "busy": Out(1),
        }
        super().__init__(addr_width=addr_width, data_width=data_width, count_bits=COUNT_BITS,
                         members=members)

    def issue_logic(self, q, addr, remaining, pending, issue):
        return [
            self.cmd.ready.eq((remaining == 0) & ~pending & ~q.r_rdy),
            issue.eq((remaining != 0) & (q.level + pending < self.FIFO_DEPTH - 1)),
            self.port.addr.eq(addr),
            self.port.en.eq(issue),
        ]

    def read_data(self):
        return self.port.data

    def status_logic(self, q, remaining, pending):
        return [self.busy.eq((remaining != 0) | pending | q.r_rdy)]


class StreamWriter(wiring.Component):
    """Writes ``count`` words taken from a stream to consecutive addresses of a write port.

    Parameters
    ----------
    addr_width, data_width : int
        Widths of the memory port; ``data_width`` is a multiple of 8 (byte enables).
    """

    def __init__(self, *, addr_width: int, data_width: int):
        _check_widths(addr_width, data_width)
        if data_width % 8:
            raise ValueError(f"Data width must be a multiple of 8, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "cmd": In(stream.Signature(TransferLayout(addr_width))),
            "data": In(stream.Signature(data_width)),
            "port": In(memory.WritePort.Signature(addr_width=addr_width, shape=data_width,
                                                   granularity=8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        addr = Signal(self._addr_width)
        remaining = Signal(COUNT_BITS)
        take = Signal()
        m.d.comb += [
            self.cmd.ready.eq(remaining == 0),
            self.data.ready.eq(remaining != 0),
            take.eq(self.data.valid & self.data.ready),
            self.port.addr.eq(addr),
            self.port.data.eq(self.data.payload),
            self.port.en.eq(take.replicate(self._data_width // 8)),
            self.busy.eq(remaining != 0),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.addr), remaining.eq(self.cmd.payload.count)]
        with m.Elif(take):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
        return m
