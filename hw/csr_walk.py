"""Walking a CSR matrix held in the scratchpad: one token per non-zero, one per row end.

Shared by the sparse units (SMU, GNN). The CSR layout is that of :mod:`accelpool.spec.formats`:
a ``ptr`` array of ``rows + 1`` ``uint32`` and an ``nz`` array of ``nnz`` ``uint32``
entries (column in bits 0..15, BF16 value in bits 16..31), each starting on a word
boundary, ``ptr[0] = 0`` and ``ptr[rows] = nnz``.

Both arrays are read front to back, each through its own read port by a
:class:`~accelpool.hw.spad_stream.StreamReader` (so reads run ahead of use and the walker emits one
token per cycle), and split into 32-bit entries by an :class:`EntryUnpacker`. The walker
then emits, row after row, the row's non-zeros in stored order followed by one row-end
token carrying the row's non-zero count. A row therefore costs ``nnz_row + 1`` tokens.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_int, is_int
from .spad_stream import StreamReader

__all__ = ["ENTRY_BITS", "NNZ_BITS", "ROW_BITS", "TokenLayout", "WalkJob", "EntryUnpacker",
           "CsrWalker"]

ENTRY_BITS = 32
#: Width of non-zero counts (total and per row).
NNZ_BITS = 24
#: Width of row counts and column indices.
ROW_BITS = 16

#: A walker token: a non-zero (``end = 0``: ``col``, ``val``) or the end of a row
#: (``end = 1``: ``count`` = the row's non-zeros, ``last`` = it was the last row).
TokenLayout = data.StructLayout({
    "col": ROW_BITS,
    "val": 16,
    "count": NNZ_BITS,
    "end": 1,
    "last": 1,
})


def WalkJob(addr_width: int) -> data.StructLayout:
    """A walk: word addresses of ``ptr`` and ``nz``, the row count and the non-zero count."""
    return data.StructLayout({"ptr": addr_width, "nz": addr_width, "rows": ROW_BITS,
                              "nnz": NNZ_BITS})


def _check_word(word_bits):
    check_int(word_bits, "Word width", "a positive multiple of 32")
    if word_bits <= 0 or word_bits % ENTRY_BITS:
        raise ValueError(f"Word width must be a positive multiple of 32, not {word_bits!r}")


class EntryUnpacker(wiring.Component):
    """Splits a stream of words into a stream of ``total`` 32-bit entries, lowest first.

    ``load`` (one cycle) sets the entry count; the last word may be partly used, and
    is consumed with its last used entry.

    Parameters
    ----------
    word_bits : int
        A multiple of 32.
    """

    def __init__(self, word_bits: int):
        _check_word(word_bits)
        self._per_word = word_bits // ENTRY_BITS
        super().__init__({
            "words": In(stream.Signature(word_bits)),
            "entries": Out(stream.Signature(ENTRY_BITS)),
            "load": In(1),
            "total": In(NNZ_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        per = self._per_word
        slot = Signal(range(per))
        remaining = Signal(NNZ_BITS)
        last_in_word = Signal()
        take = Signal()
        m.d.comb += [
            self.entries.payload.eq(self.words.payload.word_select(slot, ENTRY_BITS)),
            self.entries.valid.eq(self.words.valid & (remaining != 0)),
            last_in_word.eq((slot == per - 1) | (remaining == 1)),
            take.eq(self.entries.valid & self.entries.ready),
            self.words.ready.eq(take & last_in_word),
        ]
        with m.If(self.load):
            m.d.sync += [remaining.eq(self.total), slot.eq(0)]
        with m.Elif(take):
            m.d.sync += [remaining.eq(remaining - 1),
                         slot.eq(Mux(last_in_word, 0, slot + 1))]
        return m


class CsrWalker(wiring.Component):
    """Turns a CSR matrix in the scratchpad into a token stream (see the module docstring).

    A job (``job`` stream, accepted when idle) with ``rows >= 1`` produces, for each row,
    its non-zeros then a row-end token; the row-end token of the last row has ``last``
    set. The walker is ready for the next job as soon as it has sent that token.

    Parameters
    ----------
    word_bits : int
        Scratchpad word width, a multiple of 32.
    addr_width : int
        Scratchpad word-address width.
    """

    def __init__(self, *, word_bits: int, addr_width: int):
        _check_word(word_bits)
        if not is_int(addr_width) or addr_width <= 0:
            raise ValueError(f"Address width must be a positive integer, not {addr_width!r}")
        self._word_bits = word_bits
        self._addr_width = addr_width
        rsig = memory.ReadPort.Signature(addr_width=addr_width, shape=word_bits)
        super().__init__({
            "job": In(stream.Signature(WalkJob(addr_width))),
            "tokens": Out(stream.Signature(TokenLayout)),
            "ptr_read": In(rsig),
            "nz_read": In(rsig),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        per = self._word_bits // ENTRY_BITS
        shift = per.bit_length() - 1 if per & (per - 1) == 0 else None
        m.submodules.ptr_reader = ptr_reader = StreamReader(addr_width=self._addr_width,
                                                            data_width=self._word_bits)
        m.submodules.nz_reader = nz_reader = StreamReader(addr_width=self._addr_width,
                                                          data_width=self._word_bits)
        m.submodules.ptr_unpack = ptr_unpack = EntryUnpacker(self._word_bits)
        m.submodules.nz_unpack = nz_unpack = EntryUnpacker(self._word_bits)
        wiring.connect(m, ptr_reader.port, wiring.flipped(self.ptr_read))
        wiring.connect(m, nz_reader.port, wiring.flipped(self.nz_read))
        wiring.connect(m, ptr_reader.data, ptr_unpack.words)
        wiring.connect(m, nz_reader.data, nz_unpack.words)
        ptr_e, nz_e = ptr_unpack.entries, nz_unpack.entries

        def words_for(entries):
            if shift is not None:
                return (entries + (per - 1)) >> shift
            return (entries + (per - 1)) // per

        job = self.job.payload
        go = Signal()
        prev = Signal(ENTRY_BITS)
        remaining = Signal(NNZ_BITS)
        count = Signal(NNZ_BITS)
        row = Signal(ROW_BITS)
        last_row = Signal(ROW_BITS)
        row_count = Signal(ENTRY_BITS)
        m.d.comb += row_count.eq(ptr_e.payload - prev)

        m.d.comb += [
            go.eq(self.job.valid & self.job.ready),
            ptr_reader.cmd.valid.eq(go),
            ptr_reader.cmd.payload.addr.eq(job.ptr),
            ptr_reader.cmd.payload.count.eq(words_for(job.rows + 1)),
            nz_reader.cmd.valid.eq(go),
            nz_reader.cmd.payload.addr.eq(job.nz),
            nz_reader.cmd.payload.count.eq(words_for(job.nnz)),
            ptr_unpack.load.eq(go),
            ptr_unpack.total.eq(job.rows + 1),
            nz_unpack.load.eq(go),
            nz_unpack.total.eq(job.nnz),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(ptr_reader.cmd.ready & nz_reader.cmd.ready)
                with m.If(go & (job.rows != 0)):
                    m.d.sync += [row.eq(0), last_row.eq(job.rows - 1)]
                    m.next = "FIRST"
            with m.State("FIRST"):      # ptr[0]
                m.d.comb += [self.busy.eq(1), ptr_e.ready.eq(1)]
                with m.If(ptr_e.valid):
                    m.d.sync += prev.eq(ptr_e.payload)
                    m.next = "HEAD"
            with m.State("HEAD"):       # ptr[1]: the first row's count
                m.d.comb += [self.busy.eq(1), ptr_e.ready.eq(1)]
                with m.If(ptr_e.valid):
                    m.d.sync += [prev.eq(ptr_e.payload), remaining.eq(row_count),
                                 count.eq(row_count)]
                    m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += self.busy.eq(1)
                with m.If(remaining != 0):
                    m.d.comb += [
                        self.tokens.valid.eq(nz_e.valid),
                        self.tokens.payload.col.eq(nz_e.payload[:16]),
                        self.tokens.payload.val.eq(nz_e.payload[16:]),
                        nz_e.ready.eq(self.tokens.ready),
                    ]
                    with m.If(self.tokens.valid & self.tokens.ready):
                        m.d.sync += remaining.eq(remaining - 1)
                with m.Else():
                    # Row end; the next row's count is taken from ptr in the same cycle.
                    is_last = row == last_row
                    m.d.comb += [
                        self.tokens.valid.eq(is_last | ptr_e.valid),
                        self.tokens.payload.end.eq(1),
                        self.tokens.payload.last.eq(is_last),
                        self.tokens.payload.count.eq(count),
                    ]
                    with m.If(self.tokens.valid & self.tokens.ready):
                        with m.If(is_last):
                            m.next = "IDLE"
                        with m.Else():
                            m.d.comb += ptr_e.ready.eq(1)
                            m.d.sync += [prev.eq(ptr_e.payload), remaining.eq(row_count),
                                         count.eq(row_count), row.eq(row + 1)]
        return m
