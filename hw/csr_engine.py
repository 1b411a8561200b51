"""The row engine shared by the sparse units: CSR rows times lane-wide slices of dense rows.

For a CSR matrix S (``rows`` x K, in the scratchpad) and a dense matrix D (K x ``cols``,
BF16, rows padded to whole words; see :mod:`accelpool.spec.formats`) the engine computes, for
each lane-wide slice of D's columns (a *pass*; ``ceil(cols / L)`` passes) and each row
``i`` of S::

    acc = init
    for (k, v) in row i of S, in stored order:      # one per cycle
        acc[l] = combine(acc[l], product(v, D[k, slice])[l])   for every lane l
    out[i, slice] = finish(acc, count_i)             # two scratchpad words (FP32), one (BF16)

What ``init``, ``product``, ``combine`` and ``finish`` compute is the unit's *datapath*
(:class:`LaneDatapath`): the SMU multiplies and adds, the GNN unit adds or takes the
maximum. The engine does the control and data movement:

- a :class:`~accelpool.hw.csr_walk.CsrWalker` streams S's tokens (one per non-zero, one per row
  end) through two read ports (``ptr_read``, ``nz_read``);
- stage 0 takes a token and reads ``D[k, slice]`` through ``dense_read``; stage 1 has the
  word and computes the lane products; stage 2 combines them into the accumulators;
- at a row end the accumulators go through ``finish`` into an output register and are
  written through ``out_write`` in the next two cycles, with byte enables only for real
  columns: ``L`` FP32 results as two words, or, when the job's ``out_bf16`` is set, the
  ``L`` results rounded to BF16 (:class:`~accelpool.hw.arith.round.Fp32ToBf16`: RNE, FTZ, canonical
  NaN) as one word in the first of the two cycles. Two row ends are therefore taken at
  least two cycles apart (an empty row after a row end costs two cycles) in both formats,
  so the cycle count does not depend on the output format.

The pipeline never stalls; a pass costs about ``sum(max(nnz_i + 1, 2))`` cycles plus a
small start-up (see :mod:`accelpool.sched.cost.csr`).

Word width is ``L`` BF16 lanes (``16 L`` bits). All addresses here are word addresses.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith.round import Fp32ToBf16
from .csr_walk import NNZ_BITS, ROW_BITS, CsrWalker
from .params import check_int, is_int

__all__ = ["LaneDatapath", "EngineJob", "CsrRowEngine"]


class LaneDatapath:
    """What a sparse unit computes per lane; the :class:`CsrRowEngine` calls these hooks.

    Subclasses add logic to the module ``m`` they are given and return FP32-wide values.

    Attributes
    ----------
    init : int or Value
        The accumulators' value at the start of each row (a 32-bit encoding).
    """

    init: int = 0

    def product(self, m: Module, val: Value, word: Value, lanes: int) -> list[Value]:
        """Stage 1: from the token's 16-bit value and the dense word, one 32-bit value per lane."""
        raise NotImplementedError

    def combine(self, m: Module, acc: Value, x: Value) -> Value:
        """Stage 2: the accumulator's next value from its current one and a lane's value."""
        raise NotImplementedError

    def finish(self, m: Module, acc: list[Value], count: Value) -> list[Value]:
        """Row end: the results written for a row, from the accumulators and the row's count."""
        return list(acc)


def EngineJob(addr_width: int) -> data.StructLayout:
    """An engine job: word addresses of S's ``ptr`` and ``nz``, D and the output; shapes;
    ``out_bf16``: write the results as BF16 (one word per ``L``) instead of FP32 (two)."""
    return data.StructLayout({
        "ptr": addr_width, "nz": addr_width, "dense": addr_width, "out": addr_width,
        "rows": ROW_BITS, "cols": ROW_BITS, "nnz": NNZ_BITS, "out_bf16": 1,
    })


class CsrRowEngine(wiring.Component):
    """Control and data movement of a sparse unit (see the module docstring).

    Parameters
    ----------
    lanes : int
        Lanes ``L``: a power of two, at least 2. The word width is ``16 L`` bits.
    addr_width : int
        Scratchpad word-address width.
    datapath : LaneDatapath
        The per-lane arithmetic.
    """

    def __init__(self, *, lanes: int, addr_width: int, datapath: LaneDatapath):
        check_int(lanes, "Lane count")
        if lanes < 2 or lanes & (lanes - 1):
            raise ValueError(f"Lane count must be a power of two of at least 2, not {lanes!r}")
        if not is_int(addr_width) or addr_width <= 0:
            raise ValueError(f"Address width must be a positive integer, not {addr_width!r}")
        if not isinstance(datapath, LaneDatapath):
            raise TypeError(f"Datapath must be a LaneDatapath, not {datapath!r}")
        self._lanes = lanes
        self._addr_width = addr_width
        self._datapath = datapath
        word = 16 * lanes
        rsig = memory.ReadPort.Signature(addr_width=addr_width, shape=word)
        wsig = memory.WritePort.Signature(addr_width=addr_width, shape=word, granularity=8)
        super().__init__({
            "job": In(stream.Signature(EngineJob(addr_width))),
            "busy": Out(1),
            "ptr_read": In(rsig),
            "nz_read": In(rsig),
            "dense_read": In(rsig),
            "out_write": In(wsig),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def word_bits(self) -> int:
        return 16 * self._lanes

    def elaborate(self, platform):
        m = Module()
        s = self._job_control(m)
        self._stage0(m, s)
        self._stage1(m, s)
        self._stage2(m, s)

        # A new job starts from clean counters; the accumulators are set when its first
        # pass starts (the unit's own job registers, which `init` may read, are set by then).
        walker = s.walker
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [s.chunk0.eq(0), s.chunk2.eq(0), s.row2.eq(0)]
        with m.If(walker.job.valid & walker.job.ready & (s.issued == 0)):
            m.d.sync += [a.eq(self._datapath.init) for a in s.acc]
        return m

    def _job_control(self, m) -> SimpleNamespace:
        """The CSR walker on S's ports, the job registers, and the passes: one walk of S per
        lane-wide slice of D's columns. Returns the namespace the stages below share."""
        L, aw = self._lanes, self._addr_width
        log_l = L.bit_length() - 1
        word = 16 * L

        m.submodules.walker = walker = CsrWalker(word_bits=word, addr_width=aw)
        wiring.connect(m, walker.ptr_read, wiring.flipped(self.ptr_read))
        wiring.connect(m, walker.nz_read, wiring.flipped(self.nz_read))

        job = Signal(EngineJob(aw))
        chunks = Signal(ROW_BITS)
        issued = Signal(ROW_BITS)         # passes handed to the walker
        running = Signal()
        m.d.comb += self.busy.eq(running)

        # Accept a job when idle; a job with no rows or no columns has nothing to do.
        m.d.comb += self.job.ready.eq(~running)
        with m.If(self.job.valid & self.job.ready):
            p = self.job.payload
            m.d.sync += [
                job.eq(p),
                chunks.eq((p.cols + (L - 1)) >> log_l),
                issued.eq(0),
                running.eq((p.rows != 0) & (p.cols != 0)),
            ]

        # Passes: one walk of S per lane-wide slice of D's columns.
        m.d.comb += [
            walker.job.valid.eq(running & (issued != chunks)),
            walker.job.payload.ptr.eq(job.ptr),
            walker.job.payload.nz.eq(job.nz),
            walker.job.payload.rows.eq(job.rows),
            walker.job.payload.nnz.eq(job.nnz),
        ]
        with m.If(walker.job.valid & walker.job.ready):
            m.d.sync += issued.eq(issued + 1)
        return SimpleNamespace(L=L, aw=aw, log_l=log_l, word=word, walker=walker, job=job,
                               chunks=chunks, issued=issued, running=running)

    def _stage0(self, m, s):
        """Stage 0: take a token, read D's slice. Two row ends never follow back to back."""
        walker, job, chunks = s.walker, s.job, s.chunks
        tok = walker.tokens.payload
        chunk0 = Signal(ROW_BITS)
        s1 = Signal(data.StructLayout({"valid": 1, "end": 1, "last": 1, "count": NNZ_BITS,
                                       "val": 16}))
        take = Signal()
        m.d.comb += [
            walker.tokens.ready.eq(s.running & ~(tok.end & s1.valid & s1.end)),
            take.eq(walker.tokens.valid & walker.tokens.ready),
            self.dense_read.addr.eq(job.dense + tok.col * chunks + chunk0),
            self.dense_read.en.eq(take & ~tok.end),
        ]
        m.d.sync += [s1.valid.eq(take), s1.end.eq(tok.end), s1.last.eq(tok.last),
                     s1.count.eq(tok.count), s1.val.eq(tok.val)]
        with m.If(take & tok.end & tok.last):
            m.d.sync += chunk0.eq(chunk0 + 1)
        s.chunk0, s.s1 = chunk0, s1

    def _stage1(self, m, s):
        """Stage 1: the dense word is here; lane products."""
        s1 = s.s1
        s2 = Signal(data.StructLayout({"valid": 1, "end": 1, "last": 1, "count": NNZ_BITS}))
        s2_x = [Signal(32, name=f"s2_x{l}") for l in range(s.L)]
        m.d.sync += [s2.valid.eq(s1.valid), s2.end.eq(s1.end), s2.last.eq(s1.last),
                     s2.count.eq(s1.count)]
        prods = self._datapath.product(m, s1.val, self.dense_read.data, s.L)
        m.d.sync += [x.eq(p) for x, p in zip(s2_x, prods)]
        s.s2, s.s2_x = s2, s2_x

    def _stage2(self, m, s):
        """Stage 2: accumulate; at a row end, finish into the output register, written in
        the next two cycles."""
        L, aw, log_l, word, dp = s.L, s.aw, s.log_l, s.word, self._datapath
        job, chunks, running, chunk0, s2 = s.job, s.chunks, s.running, s.chunk0, s.s2
        acc = [Signal(32, name=f"acc{l}") for l in range(L)]
        combined = [dp.combine(m, a, x) for a, x in zip(acc, s.s2_x)]
        finished = dp.finish(m, acc, s2.count)
        out = Signal(2 * word)
        row2 = Signal(ROW_BITS)
        chunk2 = Signal(ROW_BITS)
        wr_addr = Signal(aw)
        wr_mask = Signal(2 * word // 8)
        phase = Signal(2)                  # 1: write the low word, 2: the high word
        final = Signal()

        nvalid = Signal(ROW_BITS + 1)
        m.d.comb += nvalid.eq(job.cols - (chunk2 << log_l))
        lane_ok = Cat(*(nvalid > l for l in range(L)))

        # The BF16 results: rounded between the output register and the write port.
        out_bf16 = []
        for l in range(L):
            rnd = Fp32ToBf16()
            m.submodules[f"out_round{l}"] = rnd
            m.d.comb += rnd.x.eq(out.word_select(l, 32))
            out_bf16.append(rnd.y)

        # Output writes: two FP32 words per row, or one BF16 word and an idle cycle (the
        # mask's high half is then 0). Before stage 2: a row end there sets `phase`.
        half = word // 8
        with m.If(phase == 1):
            m.d.comb += [self.out_write.addr.eq(wr_addr),
                         self.out_write.data.eq(Mux(job.out_bf16, Cat(*out_bf16), out[:word])),
                         self.out_write.en.eq(wr_mask[:half])]
            m.d.sync += phase.eq(2)
        with m.Elif(phase == 2):
            m.d.comb += [self.out_write.addr.eq(wr_addr + 1),
                         self.out_write.data.eq(out[word:]),
                         self.out_write.en.eq(wr_mask[half:])]
            m.d.sync += phase.eq(0)
            with m.If(final):
                m.d.sync += [running.eq(0), final.eq(0), chunk0.eq(0), chunk2.eq(0),
                             row2.eq(0)]

        with m.If(s2.valid & ~s2.end):
            m.d.sync += [a.eq(c) for a, c in zip(acc, combined)]
        with m.If(s2.valid & s2.end):
            m.d.sync += [a.eq(dp.init) for a in acc]
            slot = row2 * chunks + chunk2          # the row's slice, in output slices
            m.d.sync += [
                out.eq(Cat(*finished)),
                wr_addr.eq(job.out + Mux(job.out_bf16, slot, slot << 1)),
                wr_mask.eq(Mux(job.out_bf16, Cat(*(b.replicate(2) for b in lane_ok)),
                               Cat(*(b.replicate(4) for b in lane_ok)))),
                phase.eq(1),
                final.eq(s2.last & (chunk2 == chunks - 1)),
            ]
            with m.If(s2.last):
                m.d.sync += [row2.eq(0), chunk2.eq(chunk2 + 1)]
            with m.Else():
                m.d.sync += row2.eq(row2 + 1)
        s.acc, s.row2, s.chunk2 = acc, row2, chunk2
