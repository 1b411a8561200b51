"""The output-stationary systolic GEMM engine shared by the DMU (BF16) and the LPU (INT8).

One EXEC command computes ``D[M,N] = (C[M,N] if accumulate else 0) + A[M,K] x B[K,N]``
on an R x C array of processing elements (PEs), each holding one 32-bit accumulator. What
differs between units is the PE arithmetic (a :class:`MacKind`) and the output stage
(:meth:`SystolicGemm.output_row`); streaming, control, addressing and the cycle
behaviour are written once, here.

Scratchpad layout (byte addresses in the command; R, C powers of two)
-----------------------------------------------------------------------
``Mp = ceil(M/R)*R`` and ``Np = ceil(N/C)*C`` are M and N padded to the array; ``e`` is the
operand element size (2 bytes BF16, 1 byte INT8), ``o`` the output element size,
``WB`` the scratchpad word size (:attr:`SystolicGemm.word_bytes`) and ``W = WB/e`` the
operands per word.

- **A** is M x K row-major with a word-aligned row pitch: ``A[i,k]`` at
  ``a_addr + i*a_pitch + k*e``, ``a_pitch = ceil(K*e/WB)*WB`` (derived from K; no
  argument). Only rows i < M are read (rows M..Mp-1 of the last row block are not read
  and enter the array as zeros), and only bytes k*e < K*e of a row: the row's padding
  up to the pitch need not hold defined data. The region is ``M * a_pitch`` bytes
  (allocating Mp rows is harmless).
- **B** is K x Np row-major: ``B[k,j]`` at ``b_addr + (k*Np + j)*e``.
- **C** (accumulator input, read only when ``accumulate``) is Mp x Np row-major of 32-bit
  elements: ``C[i,j]`` at ``c_addr + (i*Np + j)*4``.
- **D** (output) is Mp x Np row-major: ``D[i,j]`` at ``d_addr + (i*Np + j)*o``. Only the
  M x N elements are written (byte enables); the padding is left untouched.
- Every base address must be a multiple of :attr:`word_bytes`. Padding elements of B
  (columns j >= N) and C are read but only reach padding outputs, so their contents do
  not matter. ``d_addr == c_addr`` (in place) is allowed.

Operation and timing
--------------------
Output blocks of R x C are visited row-block-major (``ib`` outer, ``jb`` inner). Each block
streams ``K`` operand pairs (one A column ``A[ib*R:ib*R+R, k]`` and one B slice
``B[k, jb*C:jb*C+C]``, an aligned word read, per cycle) and takes a period ``P`` (below);
the next block streams right behind it, so fill and drain of consecutive blocks overlap
(each PE's accumulator is copied to a shadow register on the block's last step, and the
result rows are written, one word-write per row, while the next block computes). With
``accumulate``, the block's C rows are read (one per cycle) during its first R cycles
into per-PE initial-value registers. The accumulation order in every PE is
``acc = C[i,j] or 0; for k ascending: acc = acc + A[i,k]*B[k,j]`` (the :class:`MacKind`
arithmetic).

A is fed from per-row double buffers: a *chunk* is one word of every row of the block
(W consecutive k, the last chunk of a row possibly shorter). At the step that issues
``k = j*W`` chunk j moves from the ``nxt`` buffers into per-row shift registers, which
present one element per step; the cycle before, the fetcher starts reading the
following chunk (of this block, or chunk 0 of the next block) into ``nxt``, one word per
row on ``rd_a``, R cycles (``R <= W`` holds by the word size). The first chunk is read
in an R-cycle preamble after set-up. So consecutive chunk loads must be at least R
cycles apart: ``P = max(K, R, C, R + W*floor((K-1)/W))`` (R cycles to read the block's C
rows, C before a PE's result register is reused, and R after the load of the block's
last chunk; the last term exceeds K only when K > W and ``K mod W`` is 1..R-1).

Cycle count (``busy`` high): ``1 + R + ceil(M/R)*ceil(N/C)*P + (K + R + C + 2 - P)``, or 1
when any of M, N, K is 0 (nothing is read or written); the cost model
:func:`accelpool.sched.cost.systolic.gemm_cycles` states it and is checked against this RTL.

Command protocol
----------------
``cmd`` (valid/ready) is accepted only when idle (``ready`` = not ``busy``); ``busy`` rises
the cycle after the transfer and falls the cycle after the last result word is written.
"""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.gemm_layout import systolic_word_bytes
from accelpool.spec.units.gemm import ADDR_BITS, DIM_BITS

from .params import check_int

__all__ = ["MacKind", "SystolicGemm", "ProcessingElement"]

@dataclass(frozen=True)
class MacKind:
    """The arithmetic of one PE: ``acc_out = acc_in + a * b`` (combinational).

    Attributes
    ----------
    in_bits : int
        Operand element width (16 for BF16, 8 for INT8).
    acc_bits : int
        Accumulator width (32).
    factory : callable
        Makes a combinational component with ports ``a``, ``b``, ``acc`` (in) and ``out``.
    """

    in_bits: int
    acc_bits: int
    factory: Callable[[], wiring.Component]

    def create(self) -> wiring.Component:
        """A new MAC component."""
        return self.factory()


class ProcessingElement(wiring.Component):
    """One output-stationary PE: operand registers, accumulator and result shadow register.

    Each cycle the PE registers its left (``a_in`` with tags) and top (``b_in``) inputs and
    passes them on (``a_out``/``b_out``). When the registered tags say ``valid``, the
    accumulator takes ``mac(first ? init : acc, a, b)``; on ``last`` that value is also
    copied into ``result``, which holds it while the next block accumulates.
    """

    def __init__(self, kind: MacKind):
        self._kind = kind
        w, acc = kind.in_bits, kind.acc_bits
        super().__init__({
            "a_in": In(w), "b_in": In(w),
            "valid_in": In(1), "first_in": In(1), "last_in": In(1),
            "init": In(acc),
            "a_out": Out(w), "b_out": Out(w),
            "valid_out": Out(1), "first_out": Out(1), "last_out": Out(1),
            "result": Out(acc),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mac = mac = self._kind.create()
        acc = Signal(self._kind.acc_bits)
        m.d.sync += [
            self.a_out.eq(self.a_in), self.b_out.eq(self.b_in),
            self.valid_out.eq(self.valid_in), self.first_out.eq(self.first_in),
            self.last_out.eq(self.last_in),
        ]
        m.d.comb += [
            mac.a.eq(self.a_out), mac.b.eq(self.b_out),
            mac.acc.eq(Mux(self.first_out, self.init, acc)),
        ]
        with m.If(self.valid_out):
            m.d.sync += acc.eq(mac.out)
            with m.If(self.last_out):
                m.d.sync += self.result.eq(mac.out)
        return m


def _check_dim(what: str, value, hi: int = 64) -> int:
    check_int(value, what)
    if value < 1 or value > hi or value & (value - 1):
        raise ValueError(f"{what} must be a power of two between 1 and {hi}, not {value!r}")
    return value


def _log2(x: int) -> int:
    return x.bit_length() - 1


class SystolicGemm(wiring.Component):
    """R x C output-stationary systolic GEMM engine (see the module docstring).

    Subclasses (the units) set :attr:`kind` (the PE arithmetic), :attr:`funcs` and
    :attr:`args` (their EXEC declaration), :attr:`out_bits_max`, and may override
    :meth:`output_row` and :meth:`out_log2_bytes`.

    Parameters
    ----------
    rows, cols : int
        Array size R x C; powers of two in 1..64.
    scratchpad_bytes : int
        Scratchpad size; a power of two of at least one word.

    Attributes
    ----------
    cmd : In(stream.Signature(StructLayout({"func": funcs, "args": args})))
    busy : Out(1)
    rd_a, rd_b, rd_c : In(memory.ReadPort.Signature(addr_width, word_bits))
        Scratchpad read ports (the unit drives ``addr``/``en``): A (one word of one row per
        read, into the row buffers), B and the C input.
    wr : In(memory.WritePort.Signature(addr_width, word_bits, granularity=8))
        Scratchpad write port for D.
    """

    kind: MacKind
    funcs: type
    args: data.StructLayout
    #: Widest output element (bits) the unit writes.
    out_bits_max: int = 32

    @classmethod
    def from_tile(cls, tile) -> "SystolicGemm":
        """The unit of a :class:`accelpool.spec.config.TileConfig` (``rows``, ``cols``, ``scratchpad_bytes``)."""
        return cls(rows=tile["rows"], cols=tile["cols"], scratchpad_bytes=tile["scratchpad_bytes"])

    def __init__(self, *, rows: int, cols: int, scratchpad_bytes: int = 65536):
        self._rows = _check_dim("Array rows", rows)
        self._cols = _check_dim("Array columns", cols)
        # The word holds at least R A elements (R row reads fit in one word's consumption).
        self._word_bytes = systolic_word_bytes(rows, cols, self.kind.in_bits // 8,
                                               self.out_bits_max // 8, self.kind.acc_bits // 8)
        check_int(scratchpad_bytes, "Scratchpad size")
        if scratchpad_bytes < self._word_bytes or scratchpad_bytes & (scratchpad_bytes - 1):
            raise ValueError(f"Scratchpad size must be a power of two of at least "
                             f"{self._word_bytes} bytes, not {scratchpad_bytes!r}")
        self._spad_bytes = scratchpad_bytes
        self._addr_width = max(1, _log2(scratchpad_bytes // self._word_bytes))
        self.cmd_layout = data.StructLayout({"func": self.funcs, "args": self.args})
        rsig = memory.ReadPort.Signature(addr_width=self._addr_width, shape=self.word_bits)
        wsig = memory.WritePort.Signature(addr_width=self._addr_width, shape=self.word_bits,
                                          granularity=8)
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "busy": Out(1),
            "rd_a": In(rsig), "rd_b": In(rsig), "rd_c": In(rsig),
            "wr": In(wsig),
        })

    # -- read-only parameters -----------------------------------------------------------
    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def word_bytes(self) -> int:
        """Scratchpad word size in bytes (a B slice, a C or D row, and at least R A elements
        of a row fit in a word; :func:`accelpool.spec.gemm_layout.systolic_word_bytes`)."""
        return self._word_bytes

    @property
    def word_bits(self) -> int:
        return self._word_bytes * 8

    @property
    def addr_width(self) -> int:
        """Width of the (word) addresses of the scratchpad ports."""
        return self._addr_width

    @property
    def scratchpad_bytes(self) -> int:
        return self._spad_bytes

    #: Scratchpad ports the unit needs: three read ports (A, B, C input), one write port.
    read_ports = 3
    write_ports = 1

    @property
    def macs_per_cycle(self) -> int:
        return self._rows * self._cols

    # -- unit hooks -------------------------------------------------------------------
    def out_log2_bytes(self, args) -> Value:
        """log2 of the output element size in bytes for these arguments (default: 32-bit)."""
        return Const(2, 2)

    def output_row(self, m: Module, args, row: list[Value]) -> Value:
        """Output elements packed at the output width, from one row of accumulators."""
        return Cat(*row)

    # -- the engine -------------------------------------------------------------------
    def elaborate(self, platform):
        """The engine's sub-blocks, in statement order (the generated Verilog depends on it)."""
        m = Module()
        s = self._command_signals(m)
        s.idle = self._control(m, s)
        a_cap = self._a_fetcher(m, s)
        a_slice = self._a_row_buffers(m, s, a_cap)
        b_slice, c_slice, tags, cin = self._b_c_reads(m, s)
        init = self._init_registers(m, s, c_slice, cin)
        pes = self._pe_array(m, s, a_slice, b_slice, tags, init)
        any_done, sel_row = self._result_select(m, s, pes)
        walker = self._write_walker(m, s, any_done)
        self._output_stage(m, s, any_done, sel_row, walker)
        return m

    def _command_signals(self, m):
        """Build the argument register, the padded sizes and A pitch, the per-command
        registers, the feeder's counters and pointers, and its issue tags."""
        R, C = self._rows, self._cols
        WB = self._word_bytes
        lwb = _log2(WB)
        ew = self.kind.in_bits
        leb = _log2(ew // 8)
        accw = self.kind.acc_bits

        args = Signal(self.args)
        W = WB // (ew // 8)                   # A elements per scratchpad word
        lw = _log2(W)
        # Padded sizes and the A row pitch, combinational from the (registered) arguments.
        mpad = Signal(DIM_BITS + 7)
        npad = Signal(DIM_BITS + 7)
        apitch = Signal(ADDR_BITS + 8)
        m.d.comb += [
            mpad.eq(((args.m + (R - 1)) >> _log2(R)) << _log2(R)),
            npad.eq(((args.n + (C - 1)) >> _log2(C)) << _log2(C)),
            apitch.eq((((args.k << leb) + (WB - 1)) >> lwb) << lwb),
        ]
        # Derived per-command values (set up in the SETUP cycle).
        mp, np_ = Signal(DIM_BITS + 7), Signal(DIM_BITS + 7)      # padded M and N
        period = Signal(DIM_BITS + 8)
        b_kstride = Signal(ADDR_BITS + 8)
        c_rowstride, d_rowstride = Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8)
        lob = Signal(2)
        m.d.comb += lob.eq(self.out_log2_bytes(args))

        # Feeder counters and pointers (byte addresses).
        ib_row0 = Signal(DIM_BITS + 7)        # ib * R
        jb_col0 = Signal(DIM_BITS + 7)        # jb * C
        t = Signal(DIM_BITS + 8)              # step within the block period
        b_blk, b_ptr = Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8)
        c_ibase, c_blk, c_ptr = Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8)
        drain = Signal(DIM_BITS + 8)
        pre = Signal(range(R + 1))

        last_block = (ib_row0 + R >= mp) & (jb_col0 + C >= np_)

        # Tags issued with this cycle's operand reads (they arrive with the data next cycle).
        issue = Signal()
        issue_first, issue_last = Signal(), Signal()
        cin_issue = Signal()
        cin_row = Signal(range(R))
        # A chunk loads: the cycle that issues k = j*W loads chunk j of every row from the
        # `nxt` buffers into the `cur` shift registers; `f_start` (the cycle before a
        # load, and SETUP) starts the fetch of the chunk after it.
        a_load = Signal()
        f_start = Signal()
        return SimpleNamespace(
            R=R, C=C, WB=WB, lwb=lwb, ew=ew, leb=leb, accw=accw, W=W, lw=lw,
            args=args, mpad=mpad, npad=npad, apitch=apitch,
            mp=mp, np_=np_, period=period, b_kstride=b_kstride,
            c_rowstride=c_rowstride, d_rowstride=d_rowstride, lob=lob,
            ib_row0=ib_row0, jb_col0=jb_col0, t=t, b_blk=b_blk, b_ptr=b_ptr,
            c_ibase=c_ibase, c_blk=c_blk, c_ptr=c_ptr, drain=drain, pre=pre,
            last_block=last_block, issue=issue, issue_first=issue_first,
            issue_last=issue_last, cin_issue=cin_issue, cin_row=cin_row,
            a_load=a_load, f_start=f_start)

    def _control(self, m, s):
        """Build the control FSM (IDLE, SETUP, PRE, RUN, DRAIN): command accept, argument
        latch, block walk and issue tags; returns the ``idle`` register."""
        R, C, leb, lw, args = s.R, s.C, s.leb, s.lw, s.args
        t, period, b_ptr, c_ptr = s.t, s.period, s.b_ptr, s.c_ptr
        ib_row0, jb_col0, b_blk, c_ibase, c_blk = s.ib_row0, s.jb_col0, s.b_blk, s.c_ibase, s.c_blk
        f_start, drain, pre = s.f_start, s.drain, s.pre
        # `ready` and `busy` come from one register rather than from the FSM decode, so that
        # they are defined from time 0 in every simulator (Icarus does not evaluate a
        # combinational block whose inputs never change).
        idle = Signal(init=1)
        m.d.comb += [self.cmd.ready.eq(idle), self.busy.eq(~idle)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.d.sync += [args.eq(self.cmd.payload.args), idle.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                pmin = max(R, C)
                kfull = ((args.k - 1) >> lw) << lw        # W * floor((K-1)/W)
                pa = Signal(DIM_BITS + 8)
                m.d.comb += pa.eq(Mux(args.k > pmin, args.k, pmin))
                pf = kfull + R
                m.d.sync += [
                    s.mp.eq(s.mpad), s.np_.eq(s.npad),
                    period.eq(Mux(pf > pa, pf, pa)),
                    s.b_kstride.eq(s.npad << leb),
                    s.c_rowstride.eq(s.npad << 2), s.d_rowstride.eq(s.npad << s.lob),
                    ib_row0.eq(0), jb_col0.eq(0), t.eq(0), pre.eq(R - 1),
                    b_blk.eq(args.b_addr), b_ptr.eq(args.b_addr),
                    c_ibase.eq(args.c_addr), c_blk.eq(args.c_addr), c_ptr.eq(args.c_addr),
                ]
                with m.If((args.m == 0) | (args.n == 0) | (args.k == 0)):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += f_start.eq(1)
                    m.next = "PRE"
            with m.State("PRE"):
                # R cycles while the first chunk of A rows arrives.
                m.d.sync += pre.eq(pre - 1)
                with m.If(pre == 0):
                    m.d.comb += f_start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                t1 = t + 1
                m.d.comb += [
                    s.issue.eq(t < args.k),
                    s.issue_first.eq(t == 0),
                    s.issue_last.eq(t == args.k - 1),
                    s.cin_issue.eq(t < R),
                    s.cin_row.eq(t[:max(1, _log2(R))] if R > 1 else 0),
                    s.a_load.eq((t < args.k) & ((t[:lw] == 0) if lw else 1)),
                    f_start.eq((t == period - 1) |
                               ((t1 < args.k) & ((t1[:lw] == 0) if lw else 1))),
                ]
                m.d.sync += [
                    b_ptr.eq(b_ptr + s.b_kstride),
                    c_ptr.eq(c_ptr + s.c_rowstride), t.eq(t + 1),
                ]
                with m.If(t == period - 1):
                    m.d.sync += t.eq(0)
                    with m.If(jb_col0 + C >= s.np_):          # next row of blocks
                        nxt_c = c_ibase + (s.c_rowstride << _log2(R))
                        m.d.sync += [
                            ib_row0.eq(ib_row0 + R), jb_col0.eq(0),
                            b_blk.eq(args.b_addr), b_ptr.eq(args.b_addr),
                            c_ibase.eq(nxt_c), c_blk.eq(nxt_c), c_ptr.eq(nxt_c),
                        ]
                    with m.Else():
                        nxt_b = b_blk + (C << leb)
                        nxt_c = c_blk + (C << 2)
                        m.d.sync += [
                            jb_col0.eq(jb_col0 + C),
                            b_blk.eq(nxt_b), b_ptr.eq(nxt_b),
                            c_blk.eq(nxt_c), c_ptr.eq(nxt_c),
                        ]
                    with m.If(s.last_block):
                        m.d.sync += drain.eq(args.k + (R + C + 1) - period)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"
        return idle

    def _a_fetcher(self, m, s):
        """Build the A fetcher: chunk by chunk (block order, then chunks of W k-steps), one
        word read per array row on ``rd_a``; rows i >= M are not read and load zeros."""
        R, C, W, WB, lwb, args = s.R, s.C, s.W, s.WB, s.lwb, s.args
        apitch, idle = s.apitch, s.idle
        f_row0, f_col0 = Signal.like(s.ib_row0), Signal.like(s.jb_col0)
        f_k0 = Signal(DIM_BITS + 8)               # first k of the chunk being fetched
        f_blk, f_cbase, f_ptr = (Signal(ADDR_BITS + 8, name=n) for n in ("f_blk", "f_cbase", "f_ptr"))
        f_busy, f_done = Signal(), Signal()
        f_i = Signal(range(R))
        f_go = Signal()
        f_row = Signal(range(R))
        f_ok = Signal()
        m.d.comb += [
            f_go.eq(f_busy | (s.f_start & ~f_done)),
            f_row.eq(Mux(f_busy, f_i, 0)),
            f_ok.eq(f_row0 + f_row < args.m),
            self.rd_a.addr.eq(f_ptr[lwb:lwb + self._addr_width]),
            self.rd_a.en.eq(f_go & f_ok),
        ]
        with m.If(self.cmd.valid & idle):
            a0 = self.cmd.payload.args.a_addr
            m.d.sync += [f_row0.eq(0), f_col0.eq(0), f_k0.eq(0), f_busy.eq(0), f_done.eq(0),
                         f_blk.eq(a0), f_cbase.eq(a0), f_ptr.eq(a0)]
        with m.Elif(f_go):
            m.d.sync += [f_ptr.eq(f_ptr + apitch), f_i.eq(f_row + 1), f_busy.eq(1)]
            with m.If(f_row == R - 1):                  # chunk fetched: step to the next one
                m.d.sync += [f_busy.eq(0), f_i.eq(0)]
                with m.If(f_k0 + W < args.k):
                    m.d.sync += [f_k0.eq(f_k0 + W), f_cbase.eq(f_cbase + WB),
                                 f_ptr.eq(f_cbase + WB)]
                with m.Else():
                    m.d.sync += f_k0.eq(0)
                    with m.If(f_col0 + C >= s.npad):
                        nxt_a = f_blk + (apitch << _log2(R))
                        m.d.sync += [f_row0.eq(f_row0 + R), f_col0.eq(0),
                                     f_blk.eq(nxt_a), f_cbase.eq(nxt_a), f_ptr.eq(nxt_a)]
                        with m.If(f_row0 + R >= s.mpad):
                            m.d.sync += f_done.eq(1)
                    with m.Else():
                        m.d.sync += [f_col0.eq(f_col0 + C), f_cbase.eq(f_blk), f_ptr.eq(f_blk)]
        cap_v, cap_ok, cap_row = Signal(), Signal(), Signal.like(f_row)
        m.d.sync += [cap_v.eq(f_go), cap_ok.eq(f_ok), cap_row.eq(f_row)]
        return cap_v, cap_ok, cap_row

    def _a_row_buffers(self, m, s, a_cap):
        """Build the per-row A double buffers (``nxt`` word, ``cur`` shift register);
        returns the A column entering the array this cycle."""
        R, ew = s.R, s.ew
        cap_v, cap_ok, cap_row = a_cap
        nxt = [Signal(self.word_bits, name=f"a_nxt_{i}") for i in range(R)]
        cur = [Signal(self.word_bits, name=f"a_cur_{i}") for i in range(R)]
        for i in range(R):
            with m.If(cap_v & (cap_row == i)):
                m.d.sync += nxt[i].eq(Mux(cap_ok, self.rd_a.data, 0))
            with m.If(s.a_load):
                m.d.sync += cur[i].eq(nxt[i])
            with m.Else():
                m.d.sync += cur[i].eq(cur[i] >> ew)
        return Cat(*[cur[i][:ew] for i in range(R)])

    def _slice_read(self, m, s, port, ptr, en, slice_bits):
        """Build one read port's address/enable and its registered slot; returns the
        ``slice_bits``-wide slice of the read data (1-cycle latency)."""
        def slot_of(ptr, slice_bytes):
            if slice_bytes >= s.WB:
                return Const(0, 1)
            return ptr[_log2(slice_bytes):s.lwb]

        slot = Signal.like(slot_of(ptr, slice_bits // 8), name=f"{port.addr.name}_slot")
        m.d.comb += [port.addr.eq(ptr[s.lwb:s.lwb + self._addr_width]), port.en.eq(en)]
        m.d.sync += slot.eq(slot_of(ptr, slice_bits // 8))
        return port.data.word_select(slot, slice_bits) if slice_bits < self.word_bits \
            else port.data

    def _b_c_reads(self, m, s):
        """Build the B slice read on ``rd_b``, the C (accumulator input) row read on ``rd_c``
        and the tags that arrive with their data; returns the slices and the tags."""
        C, ew, accw, args = s.C, s.ew, s.accw, s.args
        b_slice = self._slice_read(m, s, self.rd_b, s.b_ptr, s.issue, C * ew)
        c_slice = self._slice_read(m, s, self.rd_c, s.c_ptr, s.cin_issue & args.accumulate, C * accw)
        v1, f1, l1 = Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(s.issue), f1.eq(s.issue & s.issue_first), l1.eq(s.issue & s.issue_last)]
        cin_v1, cin_row1, cin_acc1 = Signal(), Signal.like(s.cin_row), Signal()
        m.d.sync += [cin_v1.eq(s.cin_issue), cin_row1.eq(s.cin_row), cin_acc1.eq(args.accumulate)]
        return b_slice, c_slice, (v1, f1, l1), (cin_v1, cin_row1, cin_acc1)

    def _init_registers(self, m, s, c_slice, cin):
        """Build the per-PE initial-value registers, one row set per array row, filled from
        the C rows (zeros without ``accumulate``); returns them."""
        R, C, accw = s.R, s.C, s.accw
        cin_v1, cin_row1, cin_acc1 = cin
        init = [[Signal(accw, name=f"init_{i}_{j}") for j in range(C)] for i in range(R)]
        for i in range(R):
            with m.If(cin_v1 & (cin_row1 == i)):
                for j in range(C):
                    m.d.sync += init[i][j].eq(Mux(cin_acc1, c_slice[j * accw:(j + 1) * accw], 0))
        return init

    def _pe_array(self, m, s, a_slice, b_slice, tags, init):
        """Build the R x C array of PEs with the input skew (row i of A and its tags delayed
        i cycles, column j of B delayed j cycles); returns the PEs."""
        R, C, ew = s.R, s.C, s.ew
        v1, f1, l1 = tags
        pes = [[ProcessingElement(self.kind) for _ in range(C)] for _ in range(R)]
        for i in range(R):
            for j in range(C):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]
                m.d.comb += pes[i][j].init.eq(init[i][j])

        def delayed(value, n, name):
            for d in range(n):
                r = Signal.like(value, name=f"{name}_d{d + 1}")
                m.d.sync += r.eq(value)
                value = r
            return value

        for i in range(R):
            pe = pes[i][0]
            a_i = a_slice[i * ew:(i + 1) * ew]
            m.d.comb += [
                pe.a_in.eq(delayed(a_i, i, f"a{i}")),
                pe.valid_in.eq(delayed(v1, i, f"v{i}")),
                pe.first_in.eq(delayed(f1, i, f"f{i}")),
                pe.last_in.eq(delayed(l1, i, f"l{i}")),
            ]
            for j in range(1, C):
                left, pe = pes[i][j - 1], pes[i][j]
                m.d.comb += [pe.a_in.eq(left.a_out), pe.valid_in.eq(left.valid_out),
                             pe.first_in.eq(left.first_out), pe.last_in.eq(left.last_out)]
        for j in range(C):
            m.d.comb += pes[0][j].b_in.eq(delayed(b_slice[j * ew:(j + 1) * ew], j, f"b{j}"))
            for i in range(1, R):
                m.d.comb += pes[i][j].b_in.eq(pes[i - 1][j].b_out)
        return pes

    def _result_select(self, m, s, pes):
        """Build the row-done flags (a row is complete one cycle after its last PE took
        ``last``) and the mux of the done row's results; returns both."""
        R, C, accw = s.R, s.C, s.accw
        row_done = [Signal(name=f"row_done_{i}") for i in range(R)]
        for i in range(R):
            pe = pes[i][C - 1]
            m.d.sync += row_done[i].eq(pe.valid_out & pe.last_out)
        any_done = Signal()
        m.d.comb += any_done.eq(Cat(*row_done).any())
        sel_row = [Signal(accw, name=f"sel_{j}") for j in range(C)]
        for i in range(R):
            with m.If(row_done[i]):
                m.d.comb += [sel_row[j].eq(pes[i][j].result) for j in range(C)]
        return any_done, sel_row

    def _write_walker(self, m, s, any_done):
        """Build the D write-side walker (the feeder's block order, one row per done row);
        returns its row, column, row-in-block and pointer registers."""
        R, C, lob, d_rowstride = s.R, s.C, s.lob, s.d_rowstride
        w_row0 = Signal.like(s.ib_row0, name="w_row0")
        w_col0 = Signal.like(s.jb_col0, name="w_col0")
        w_r = Signal(range(R + 1), name="w_r")
        w_ibase, w_blk, w_ptr = Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8), Signal(ADDR_BITS + 8)
        with m.If(self.cmd.valid & s.idle):
            m.d.sync += [w_row0.eq(0), w_col0.eq(0), w_r.eq(0),
                         w_ibase.eq(self.cmd.payload.args.d_addr),
                         w_blk.eq(self.cmd.payload.args.d_addr),
                         w_ptr.eq(self.cmd.payload.args.d_addr)]
        with m.Elif(any_done):
            m.d.sync += [w_r.eq(w_r + 1), w_ptr.eq(w_ptr + d_rowstride)]
            with m.If(w_r == R - 1):
                m.d.sync += w_r.eq(0)
                with m.If(w_col0 + C >= s.np_):
                    nxt = w_ibase + (d_rowstride << _log2(R))
                    m.d.sync += [w_row0.eq(w_row0 + R), w_col0.eq(0),
                                 w_ibase.eq(nxt), w_blk.eq(nxt), w_ptr.eq(nxt)]
                with m.Else():
                    nxt = w_blk + (C << lob)
                    m.d.sync += [w_col0.eq(w_col0 + C), w_blk.eq(nxt), w_ptr.eq(nxt)]
        return w_row0, w_col0, w_r, w_ptr

    def _output_stage(self, m, s, any_done, sel_row, walker):
        """Build the write stage: the registered row, address and validity, the unit's
        output packing, byte enables and slot placement on ``wr``."""
        C, WB, lwb, accw, lob, args = s.C, s.WB, s.lwb, s.accw, s.lob, s.args
        w_row0, w_col0, w_r, w_ptr = walker
        # Register the row, its address and its column/row validity.
        out_row = [Signal(accw, name=f"out_{j}") for j in range(C)]
        wv, wptr = Signal(), Signal.like(w_ptr)
        col_ok = Signal(C)
        m.d.sync += [wv.eq(any_done & (w_row0 + w_r < args.m)), wptr.eq(w_ptr)]
        m.d.sync += [out_row[j].eq(sel_row[j]) for j in range(C)]
        m.d.sync += col_ok.eq(Cat(*[(w_col0 + j < args.n) for j in range(C)]))

        packed = Signal(C * self.out_bits_max)
        m.d.comb += packed.eq(self.output_row(m, args, out_row))
        # Byte enables of the packed row: byte q belongs to column q >> lob.
        row_bytes = C * self.out_bits_max // 8
        ben = Signal(row_bytes)
        for q in range(row_bytes):
            col_ok_q = Signal(name=f"ben_{q}")
            with m.Switch(lob):
                for lo in range(3):
                    with m.Case(lo):
                        col = q >> lo
                        m.d.comb += col_ok_q.eq(col_ok[col] if col < C else 0)
            m.d.comb += ben[q].eq(col_ok_q)
        # Place the row in its slot of the word (rows narrower than a word).
        slot_shift = Signal(range(WB + 1))
        m.d.comb += slot_shift.eq(wptr[:lwb] if lwb > 0 else 0)
        m.d.comb += [
            self.wr.addr.eq(wptr[lwb:lwb + self._addr_width]),
            self.wr.data.eq(packed << (slot_shift * 8)),
            self.wr.en.eq(Mux(wv, ben << slot_shift, 0)),
        ]
