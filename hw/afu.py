"""The activation unit (AFU): element-wise activations and arithmetic on BF16 and INT8 vectors.

One EXEC applies one function to ``count`` elements at ``a_addr`` (and ``b_addr`` for the
binary functions), writing ``count`` results at ``out_addr``. The unit streams one
scratchpad word per cycle through a fixed-latency pipeline: ``lanes`` BF16 elements or
``2 * lanes`` INT8 elements per cycle. The arithmetic is specified by the bit-exact model
:mod:`accelpool.spec.golden.activations` (which also documents the BF16 approximation: a 256-segment
piecewise-linear table per function on ``[0, 8)``, fixed point with 16 fraction bits,
reflected for negative inputs, rounded to BF16 to nearest even).

Ports (the tile integrator's contract)
--------------------------------------
``cmd``   ``In(stream.Signature(AfuCommand))``: ``{func, args}``; accepted only when idle.
``busy``  ``Out(1)``: high from the accepted command until the last result is written.
``rd_a``, ``rd_b``  ``In(ReadPort.Signature(addr_width, 16 * lanes))``: two scratchpad read
          ports (operand A, operand B of ADD/MUL); one-cycle latency.
``wr``    ``In(WritePort.Signature(addr_width, 16 * lanes, granularity=8))``.

The word is ``16 * lanes`` bits; EXEC addresses are byte addresses (word-aligned).

Data layout
-----------
Vectors are packed densely, little-endian: BF16 element ``k`` in bytes ``2k, 2k+1``, INT8
element ``k`` in byte ``k``. A partial last word is written with byte enables, so the
bytes after the vector are untouched. The INT8 table of LEAKY_RELU / SIGMOID / TANH / GELU
is 256 bytes at ``table_addr`` (entry ``x & 0xFF`` for input ``x``; see
:func:`accelpool.spec.golden.activations.int8_table`), computed by the compiler from the input and
output scales and zero points; the unit reads it at the start of the EXEC (``256 / word
bytes`` cycles). UINT8 tensors use the same table functions (``int8_table(unsigned=True)``;
LEAKY_RELU with ``alpha = 0`` is their ReLU); INT8 RELU, ADD and MUL are signed.

Conversions (the element size changes)
--------------------------------------
DEQUANTIZE reads ``count`` INT8 elements and writes ``count`` BF16 elements
(``fp32_to_bf16(bf16_mul(bf16(q - a_zero_point), alpha))``, ``alpha`` the BF16 scale);
QUANTIZE reads ``count`` BF16 and writes ``count`` INT8
(``saturate(rne(x * multiplier * 2**-shift) + y_zero_point)``, the fixed point of
``1 / scale``); see :mod:`accelpool.spec.golden.activations` for the exact arithmetic. ``dtype``
is ignored for both. The datapath keeps its width: both run at ``lanes`` elements per
cycle, one BF16 word per cycle on the BF16 side and half an INT8 word on the INT8 side.
DEQUANTIZE reads each input word twice (low half, then high half) and writes one output
word per cycle; QUANTIZE reads one input word per cycle and writes the low or high half
of an output word with byte enables (two consecutive cycles fill one word). An EXEC
therefore takes as many cycles as a BF16 function on ``count`` elements. The output must
not overlap the operand (the two advance at different byte rates). DEQUANTIZE reuses the
lane's BF16 multiplier and rounder (the ones of MUL / LEAKY_RELU), QUANTIZE the byte
requantizers of INT8 ADD / MUL.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.golden import activations as act
from accelpool.spec.units.afu import COUNT_BITS, AfuFunc, AfuDType, AfuArgs, AfuCommand

from .arith.bf16mul import Bf16Multiplier
from .arith.fp32add import Fp32Adder
from .arith.requant import Requantizer
from .arith.round import Fp32ToBf16
from .params import check_int
from .units import UNIT_RTL

__all__ = ["ActivationUnit"]

_TABLE_FUNCS = (AfuFunc.SIGMOID, AfuFunc.TANH, AfuFunc.GELU)
_FIX = act.FRAC_BITS
_MAG_BITS = 24


def _rom_init() -> list[int]:
    """ROM rows ``d << C0_BITS | c0``: 256 per function, in the order of ``_TABLE_FUNCS``."""
    rows = []
    for f in _TABLE_FUNCS:
        c0, d = act.bf16_table(f.name.lower())
        rows += [int(dd) << act.C0_BITS | int(cc) for cc, dd in zip(c0, d)]
    return rows


def _fixed_to_bf16(m, sign, mag, name):
    """Combinational fixed point (16 fraction bits, < 2**24) -> BF16, round to nearest even."""
    p = Signal(range(_MAG_BITS), name=f"{name}_p")
    for k in range(_MAG_BITS):               # last assignment wins: the leading one
        with m.If(mag[k]):
            m.d.comb += p.eq(k)
    drop = Signal(range(_MAG_BITS), name=f"{name}_drop")
    m.d.comb += drop.eq(Mux(p > 7, p - 7, 0))
    q = Signal(_MAG_BITS, name=f"{name}_q")
    rem = Signal(_MAG_BITS, name=f"{name}_rem")
    half = Signal(_MAG_BITS, name=f"{name}_half")
    m.d.comb += [
        q.eq(mag >> drop),
        rem.eq(mag & ((Const(1, _MAG_BITS + 1) << drop) - 1)),
        half.eq((Const(1, _MAG_BITS + 1) << drop) >> 1),
    ]
    up = Signal(name=f"{name}_up")
    m.d.comb += up.eq((drop != 0) & ((rem > half) | ((rem == half) & q[0])))
    qr = Signal(10, name=f"{name}_qr")
    m.d.comb += qr.eq(q + up)
    frac = Signal(7, name=f"{name}_frac")
    exp = Signal(8, name=f"{name}_exp")
    lsh = Signal(3, name=f"{name}_lsh")
    m.d.comb += lsh.eq(Mux(p < 7, 7 - p, 0))
    with m.If(qr[8]):
        m.d.comb += [frac.eq(qr[1:8]), exp.eq(p + (128 - _FIX))]
    with m.Else():
        m.d.comb += [frac.eq((qr << lsh)[:7]), exp.eq(p + (127 - _FIX))]
    out = Signal(16, name=f"{name}_bf16")
    m.d.comb += out.eq(Mux(mag == 0, sign << 15, Cat(frac, exp, sign)))
    return out


def _int_to_bf16(m, d, name):
    """Combinational signed integer ``d`` (``|d| <= 255``) -> BF16, exact (8 bits fit the
    significand); 0 gives +0."""
    sign = Signal(name=f"{name}_dsign")
    mag = Signal(8, name=f"{name}_dmag")
    m.d.comb += [sign.eq(d < 0), mag.eq(Mux(d < 0, -d, d))]
    p = Signal(3, name=f"{name}_dp")
    for k in range(8):                       # last assignment wins: the leading one
        with m.If(mag[k]):
            m.d.comb += p.eq(k)
    norm = Signal(8, name=f"{name}_dnorm")
    m.d.comb += norm.eq(mag << ~p)           # ~p == 7 - p
    out = Signal(16, name=f"{name}_dbf16")
    m.d.comb += out.eq(Mux(mag == 0, 0, Cat(norm[:7], p + 127, sign)))
    return out


class ActivationUnit(wiring.Component):
    """The activation unit.

    Parameters
    ----------
    lanes : int
        BF16 elements per cycle (``2 * lanes`` INT8 elements); the word is ``16 * lanes`` bits.
    addr_width : int
        Scratchpad word-address width.
    """

    #: Cycles from reading a word to writing its result.
    LATENCY = 4

    def __init__(self, *, lanes: int = 8, addr_width: int = 12):
        check_int(lanes, "AFU lanes")
        if not 1 <= lanes <= 64 or lanes & (lanes - 1):
            raise ValueError(f"AFU lanes must be a power of two from 1 to 64, not {lanes!r}")
        check_int(addr_width, "Address width")
        if not 2 <= addr_width <= isa.SPAD_ADDR_BITS:
            raise ValueError(f"Address width must be between 2 and {isa.SPAD_ADDR_BITS}, "
                             f"not {addr_width!r}")
        self._lanes = lanes
        self._addr_width = addr_width
        wb = 16 * lanes
        rsig = memory.ReadPort.Signature(addr_width=addr_width, shape=wb)
        super().__init__({
            "cmd": In(stream.Signature(AfuCommand)),
            "busy": Out(1),
            "rd_a": In(rsig),
            "rd_b": In(rsig),
            "wr": In(memory.WritePort.Signature(addr_width=addr_width, shape=wb, granularity=8)),
        })

    @classmethod
    def from_tile(cls, tile) -> "ActivationUnit":
        """The AFU of a pool-config tile: its lanes, and a port addressing its whole scratchpad."""
        words = tile.scratchpad_bytes // (2 * tile["lanes"])
        return cls(lanes=tile["lanes"], addr_width=max(2, (words - 1).bit_length()))

    lanes = property(lambda self: self._lanes)
    addr_width = property(lambda self: self._addr_width)
    word_bits = property(lambda self: 16 * self._lanes)
    word_bytes = property(lambda self: 2 * self._lanes)
    #: The ``cmd`` payload layout (``{func, args}``), as the other units name it.
    cmd_layout = AfuCommand

    def elaborate(self, platform):
        m = Module()
        n = self._command_decode(m)
        self._control_fsm(m, n)
        self._table_loader(m, n)
        self._operand_reads(m, n)
        s2 = self._table_rom_lookup(m, n)
        simple = self._simple_functions(n)
        bf_arith = self._bf16_arith(m, n)
        i8_arith, q_bytes = self._int8_arith(m, n)
        self._stage2_select(m, n, simple, bf_arith, i8_arith, q_bytes)
        s3 = self._interpolate(m, n, s2)
        self._round_select(m, n, s3)
        self._result_write(m, n)
        return m

    def _command_decode(self, m):
        """The latched function and arguments and their decode (INT8, DEQUANTIZE, QUANTIZE,
        narrow), in the namespace of signals and sizes the other sub-blocks share (returned)."""
        L = self._lanes
        n = SimpleNamespace(L=L, AW=self._addr_width, WB=16 * L, WBY=2 * L)
        n.wshift = (n.WBY - 1).bit_length()
        n.table_words = 256 // n.WBY if n.WBY <= 256 else 1

        n.func = func = Signal(AfuFunc, name="func")
        n.args = args = Signal(AfuArgs, name="args")
        n.int8 = int8 = Signal(name="int8")
        m.d.comb += int8.eq(args.dtype == AfuDType.INT8)
        n.deq = Signal()            # INT8 in, BF16 out: half an input word per cycle
        n.quant = Signal()          # BF16 in, INT8 out: half an output word per cycle
        n.narrow = Signal()         # a whole word of INT8 elements per cycle
        m.d.comb += [n.deq.eq(func == AfuFunc.DEQUANTIZE), n.quant.eq(func == AfuFunc.QUANTIZE),
                     n.narrow.eq(int8 & ~n.deq & ~n.quant)]
        return n

    def _control_fsm(self, m, n):
        """The control FSM (IDLE, SETUP, TABLE, RUN, DRAIN) with the word counters, the
        table-loader counters, the table register and the pipeline valid bits."""
        WBY, wshift, table_words = n.WBY, n.wshift, n.table_words
        func, args, int8, narrow = n.func, n.args, n.int8, n.narrow
        n.issue = issue = Signal(name="issue")  # read word `idx` this cycle
        n.idx = idx = Signal(COUNT_BITS, name="idx")
        words = Signal(COUNT_BITS + 1)
        n.remaining = remaining = Signal(COUNT_BITS + 1, name="remaining")  # elements not yet issued
        n.tl_count = tl_count = Signal(range(table_words + 1), name="tl_count")
        n.tl_pending = tl_pending = Signal(name="tl_pending")
        n.tl_index = tl_index = Signal(range(table_words + 1), name="tl_index")
        n.table = Signal(256 * 8 if WBY <= 256 else WBY * 8)
        n.pipe = pipe = Signal(self.LATENCY, name="pipe")  # valid bits of the stages in flight

        # `idle` is a register rather than a decode of the FSM state: Icarus never evaluates
        # a combinational block whose only input keeps its initial value, which would
        # leave `cmd.ready` X until the first command.
        idle = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(idle)
        with m.FSM(name="afu"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.d.sync += idle.eq(0)
                    m.d.sync += [func.eq(self.cmd.payload.func), args.eq(self.cmd.payload.args)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                esh = Mux(narrow, 0, 1)     # log2(bytes per element of the wider side)
                is_table = int8 & ((func == AfuFunc.LEAKY_RELU) | (func == AfuFunc.SIGMOID) |
                                   (func == AfuFunc.TANH) | (func == AfuFunc.GELU))
                m.d.sync += [
                    words.eq(((args.count << esh) + WBY - 1) >> wshift),
                    remaining.eq(args.count),
                    idx.eq(0),
                    tl_count.eq(Mux(is_table, table_words, 0)), tl_index.eq(0),
                ]
                with m.If(is_table):
                    m.next = "TABLE"
                with m.Else():
                    m.next = "RUN"
            with m.State("TABLE"):
                with m.If((tl_count == 0) & ~tl_pending):
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += issue.eq(idx != words)
                with m.If(~issue):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(pipe == 0):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~self.cmd.ready)

    def _table_loader(self, m, n):
        """The INT8 table loader: reads the 256-byte table word by word into ``table``."""
        tl_count, tl_index = n.tl_count, n.tl_index
        n.tl_issue = tl_issue = Signal(name="tl_issue")
        m.d.comb += tl_issue.eq(tl_count != 0)
        m.d.sync += n.tl_pending.eq(tl_issue)
        with m.If(tl_issue):
            m.d.sync += tl_count.eq(tl_count - 1)
        with m.If(n.tl_pending):
            m.d.sync += [n.table.word_select(tl_index, n.WB).eq(self.rd_a.data),
                         tl_index.eq(tl_index + 1)]

    def _operand_reads(self, m, n):
        """The operand and table read addresses, the word counter, and the output word index
        and byte enables of each issued word registered into s1."""
        L, AW, WBY, wshift = n.L, n.AW, n.WBY, n.wshift
        args, idx, remaining, narrow, quant = n.args, n.idx, n.remaining, n.narrow, n.quant
        a_base = Signal(AW)
        b_base = Signal(AW)
        n.o_base = o_base = Signal(AW, name="o_base")
        t_base = Signal(AW)
        m.d.comb += [a_base.eq(args.a_addr >> wshift), b_base.eq(args.b_addr >> wshift),
                     o_base.eq(args.out_addr >> wshift), t_base.eq(args.table_addr >> wshift)]
        m.d.comb += [
            self.rd_a.addr.eq(Mux(n.tl_issue, t_base + (n.table_words - n.tl_count),
                                  a_base + Mux(n.deq, idx >> 1, idx))),
            self.rd_a.en.eq(n.issue | n.tl_issue),
            self.rd_b.addr.eq(b_base + idx),
            self.rd_b.en.eq(n.issue),
        ]
        # Byte enables of the word issued now.
        nbytes = Signal(COUNT_BITS + 2)
        m.d.comb += nbytes.eq(Mux(narrow, remaining, remaining << 1))
        step = Signal(range(WBY + 1))          # elements per issued word
        m.d.comb += step.eq(Mux(narrow, WBY, L))
        # QUANTIZE writes the low or the high half of output word idx // 2.
        q_half = Signal(L)
        m.d.comb += q_half.eq(Cat(*[remaining > j for j in range(L)]))
        n.s1_mask = s1_mask = Signal(WBY, name="s1_mask")
        # Output word (DEQUANTIZE: its bit 0 = input half).
        n.s1_idx = s1_idx = Signal(COUNT_BITS, name="s1_idx")
        with m.If(n.issue):
            m.d.sync += [idx.eq(idx + 1),
                         remaining.eq(Mux(remaining > step, remaining - step, 0))]
        m.d.sync += [
            n.pipe.eq(Cat(n.issue, n.pipe[:-1])),
            s1_idx.eq(Mux(quant, idx >> 1, idx)),
            s1_mask.eq(Mux(quant, Mux(idx[0], Cat(Const(0, L), q_half), Cat(q_half, Const(0, L))),
                           Cat(*[nbytes > j for j in range(WBY)]))),
        ]

    def _table_rom_lookup(self, m, n):
        """Stage s1 of the BF16 table functions, per lane: the input as fixed point, the ROM
        read of its segment, and the stage-2 registers; returns those registers per lane."""
        a_word, func = self.rd_a.data, n.func
        m.submodules.rom = rom = memory.Memory(shape=32, depth=3 * 256, init=_rom_init())
        fsel = Signal(2)
        m.d.comb += fsel.eq(Mux(func == AfuFunc.TANH, 1, Mux(func == AfuFunc.GELU, 2, 0)))
        s2 = []   # per-lane stage-2 registers
        for k in range(n.L):
            x = a_word[16 * k:16 * k + 16]
            e = x[7:15]
            mant = Cat(x[:7], Const(1, 1))
            sh = Signal(signed(10), name=f"l{k}_sh")
            m.d.comb += sh.eq(e - (127 + 7 - _FIX))
            fixed = Signal(_FIX + 3, name=f"l{k}_fixed")
            with m.If(e >= 127 + act.INT_BITS):
                m.d.comb += fixed.eq((8 << _FIX) - 1)
            with m.Elif(e == 0):
                m.d.comb += fixed.eq(0)
            with m.Elif(sh >= 0):
                m.d.comb += fixed.eq(mant << sh.as_unsigned()[:4])
            with m.Else():
                m.d.comb += fixed.eq(mant >> (-sh).as_unsigned())
            rp = rom.read_port()
            m.d.comb += [rp.addr.eq(Cat(fixed[act.T_BITS:], fsel)), rp.en.eq(1)]
            r = {nm: Signal(w, name=f"l{k}_{nm}") for nm, w in
                 (("x", 16), ("a", _FIX + 3), ("t", act.T_BITS))}
            m.d.sync += [r["x"].eq(x), r["a"].eq(fixed), r["t"].eq(fixed[:act.T_BITS])]
            r["rom"] = rp.data
            s2.append(r)
        return s2

    def _simple_functions(self, n):
        """The BF16 ReLU and the INT8 ReLU and table lookup, combinational in s1; returns
        the three result words by name."""
        L, WBY, args, table = n.L, n.WBY, n.args, n.table
        a_word = self.rd_a.data
        simple = []
        for k in range(L):
            x = a_word[16 * k:16 * k + 16]
            nan = (x[7:15] == 0xFF) & (x[:7] != 0)
            simple.append(Mux(nan, act.CANONICAL_NAN, Mux(x[15], 0, x))[:16])
        relu_bf16 = Cat(*simple)
        bytes_relu = []
        bytes_lut = []
        for j in range(WBY):
            xb = a_word[8 * j:8 * j + 8]
            bytes_relu.append(Mux(xb.as_signed() > args.y_zero_point, xb, args.y_zero_point.as_unsigned())[:8])
            bytes_lut.append(table.word_select(xb, 8))
        int8_relu = Cat(*bytes_relu)
        int8_lut = Cat(*bytes_lut)
        return {"relu_bf16": relu_bf16, "int8_relu": int8_relu, "int8_lut": int8_lut}

    def _bf16_arith(self, m, n):
        """BF16 LEAKY_RELU / ADD / MUL and the DEQUANTIZE conversion in s1, per lane, with the
        shared BF16 multiplier, FP32 adder and rounders; returns the result of each lane."""
        L, func, args, deq, s1_idx = n.L, n.func, n.args, n.deq, n.s1_idx
        a_word, b_word = self.rd_a.data, self.rd_b.data
        bf_arith = []
        for k in range(L):
            x = a_word[16 * k:16 * k + 16]
            y = b_word[16 * k:16 * k + 16]
            # DEQUANTIZE: INT8 element k of the input word's low or high half, minus a_zp.
            q8 = Mux(s1_idx[0], a_word[8 * (L + k):8 * (L + k) + 8], a_word[8 * k:8 * k + 8])
            dint = Signal(signed(10), name=f"l{k}_dint")
            m.d.comb += dint.eq(q8.as_signed() - args.a_zero_point)
            dbf = _int_to_bf16(m, dint, f"l{k}")
            mul = Bf16Multiplier()
            add = Fp32Adder()
            rnd_mul = Fp32ToBf16()
            rnd_add = Fp32ToBf16()
            for nm, sub in (("mul", mul), ("add", add), ("rmul", rnd_mul), ("radd", rnd_add)):
                m.submodules[f"l{k}_{nm}"] = sub
            m.d.comb += [
                mul.a.eq(Mux(deq, dbf, x)),
                mul.b.eq(Mux((func == AfuFunc.LEAKY_RELU) | deq, args.alpha, y)),
                rnd_mul.x.eq(mul.p),
                add.a.eq(Cat(Const(0, 16), x)), add.b.eq(Cat(Const(0, 16), y)),
                rnd_add.x.eq(add.s),
            ]
            nan = (x[7:15] == 0xFF) & (x[:7] != 0)
            leaky = Mux(nan, act.CANONICAL_NAN, Mux(x[15], rnd_mul.y, x))[:16]
            bf_arith.append(Mux(func == AfuFunc.ADD, rnd_add.y,
                                Mux((func == AfuFunc.MUL) | deq, rnd_mul.y, leaky))[:16])
        return bf_arith

    def _int8_arith(self, m, n):
        """INT8 ADD / MUL (integer terms, then one requantizer per byte) and QUANTIZE (lane k's
        BF16 through requantizer k) in s1; returns the ADD/MUL bytes and the QUANTIZE bytes."""
        L, WBY, func, args, quant = n.L, n.WBY, n.func, n.args, n.quant
        a_word, b_word = self.rd_a.data, self.rd_b.data
        # QUANTIZE: lane k's BF16 through requantizer k as (+-significand, exponent-adjusted
        # shift), NaN -> y_zp, infinity -> saturated.
        i8_arith = []
        q_bytes = []
        for j in range(WBY):
            xa = a_word[8 * j:8 * j + 8].as_signed() - args.a_zero_point
            xb = b_word[8 * j:8 * j + 8].as_signed() - args.b_zero_point
            acc = Signal(signed(32), name=f"b{j}_acc")
            shift = Signal(6, name=f"b{j}_shift")
            m.d.comb += shift.eq(args.shift)
            with m.If(func == AfuFunc.ADD):
                m.d.comb += acc.eq(xa * args.a_mult + xb * args.b_mult)
            with m.Else():
                m.d.comb += acc.eq(xa * xb)
            if j < L:
                x = a_word[16 * j:16 * j + 16]
                e, sign = x[7:15], x[15]
                mant = Cat(x[:7], Const(1, 1))
                t = Signal(signed(10), name=f"b{j}_qt")
                m.d.comb += t.eq(args.shift + (127 + 7) - e)
                with m.If(quant):
                    m.d.comb += [
                        acc.eq(Mux(e == 0, 0, Mux(sign, -mant, mant))),
                        shift.eq(Mux(t < 0, 0, Mux(t > 63, 63, t))),
                    ]
            rq = Requantizer()
            m.submodules[f"b{j}_requant"] = rq
            m.d.comb += [rq.acc.eq(acc), rq.multiplier.eq(args.multiplier), rq.shift.eq(shift),
                         rq.zero_point.eq(args.y_zero_point)]
            i8_arith.append(rq.y.as_unsigned())
            if j < L:
                special = e == 0xFF
                q_bytes.append(Mux(special, Mux(x[:7] != 0, args.y_zero_point.as_unsigned(),
                                                Mux(sign, 0x80, 0x7F)), rq.y.as_unsigned())[:8])
        return i8_arith, q_bytes

    def _stage2_select(self, m, n, simple, bf_arith, i8_arith, q_bytes):
        """The s2 register of the non-table result chosen by function and type, with the
        output word index and byte enables carried from s1."""
        func, int8 = n.func, n.int8
        n.s2_word_simple = s2_word_simple = Signal(n.WB, name="s2_word_simple")
        arith = (func == AfuFunc.ADD) | (func == AfuFunc.MUL)
        with m.If(n.quant):
            m.d.sync += s2_word_simple.eq(Cat(*q_bytes, *q_bytes))
        with m.Elif(n.deq):
            m.d.sync += s2_word_simple.eq(Cat(*bf_arith))
        with m.Elif(int8):
            m.d.sync += s2_word_simple.eq(Mux(func == AfuFunc.RELU, simple["int8_relu"],
                                              Mux(arith, Cat(*i8_arith), simple["int8_lut"])))
        with m.Else():
            m.d.sync += s2_word_simple.eq(Mux(func == AfuFunc.RELU, simple["relu_bf16"],
                                              Cat(*bf_arith)))
        n.s2_idx = s2_idx = Signal(COUNT_BITS, name="s2_idx")
        n.s2_mask = s2_mask = Signal(n.WBY, name="s2_mask")
        m.d.sync += [s2_idx.eq(n.s1_idx), s2_mask.eq(n.s1_mask)]

    def _interpolate(self, m, n, s2):
        """Stage s2 of the BF16 table functions, per lane: the linear interpolation of the ROM
        segment and the reflection for negative inputs; returns the stage-3 registers per lane."""
        func = n.func
        s3 = []
        for k, r in enumerate(s2):
            c0 = r["rom"][:act.C0_BITS]
            d = r["rom"][act.C0_BITS:act.C0_BITS + act.D_BITS]
            y = Signal(act.C0_BITS + 1, name=f"l{k}_y")
            m.d.comb += y.eq(c0 + ((d * r["t"]) >> act.T_BITS))
            sign = r["x"][15]
            mag = Signal(_MAG_BITS, name=f"l{k}_mag")
            osign = Signal(name=f"l{k}_osign")
            with m.Switch(func):
                with m.Case(AfuFunc.SIGMOID):
                    m.d.comb += [mag.eq(Mux(sign, (1 << _FIX) - y, y)), osign.eq(0)]
                with m.Case(AfuFunc.TANH):
                    m.d.comb += [mag.eq(y), osign.eq(sign)]
                with m.Default():    # GELU
                    m.d.comb += [mag.eq(Mux(sign, Mux(r["a"] > y, r["a"] - y, 0), y)), osign.eq(sign)]
            q = {nm: Signal(w, name=f"l{k}_s3{nm}") for nm, w in (("mag", _MAG_BITS), ("sign", 1), ("x", 16))}
            m.d.sync += [q["mag"].eq(mag), q["sign"].eq(osign), q["x"].eq(r["x"])]
            s3.append(q)
        n.s3_word_simple = s3_word_simple = Signal(n.WB, name="s3_word_simple")
        n.s3_idx = s3_idx = Signal(COUNT_BITS, name="s3_idx")
        n.s3_mask = s3_mask = Signal(n.WBY, name="s3_mask")
        m.d.sync += [s3_word_simple.eq(n.s2_word_simple), s3_idx.eq(n.s2_idx), s3_mask.eq(n.s2_mask)]
        return s3

    def _round_select(self, m, n, s3):
        """Stage s3: the per-lane rounding of the table result to BF16 (NaN and large-GELU
        cases apart) and the s4 register of the final word, index and byte enables."""
        func = n.func
        lanes_out = []
        for k, q in enumerate(s3):
            bf = _fixed_to_bf16(m, q["sign"], q["mag"], f"l{k}")
            x = q["x"]
            e = x[7:15]
            nan = (e == 0xFF) & (x[:7] != 0)
            big = e >= 127 + act.INT_BITS
            out = Signal(16, name=f"l{k}_out")
            with m.If(nan):
                m.d.comb += out.eq(act.CANONICAL_NAN)
            with m.Elif((func == AfuFunc.GELU) & big):
                m.d.comb += out.eq(Mux(x[15], 0x8000, x))
            with m.Else():
                m.d.comb += out.eq(bf)
            lanes_out.append(out)
        table_word = Cat(*lanes_out)
        use_table = ~n.int8 & ((func == AfuFunc.SIGMOID) | (func == AfuFunc.TANH) | (func == AfuFunc.GELU))
        n.s4_word = s4_word = Signal(n.WB, name="s4_word")
        n.s4_idx = s4_idx = Signal(COUNT_BITS, name="s4_idx")
        n.s4_mask = s4_mask = Signal(n.WBY, name="s4_mask")
        m.d.sync += [s4_word.eq(Mux(use_table, table_word, n.s3_word_simple)),
                     s4_idx.eq(n.s3_idx), s4_mask.eq(n.s3_mask)]

    def _result_write(self, m, n):
        """Stage s4: the scratchpad write of the result word with its byte enables."""
        m.d.comb += [
            self.wr.addr.eq(n.o_base + n.s4_idx),
            self.wr.data.eq(n.s4_word),
            self.wr.en.eq(Mux(n.pipe[-1], n.s4_mask, 0)),
        ]


UNIT_RTL.register(UnitKind.AFU, ActivationUnit.from_tile)
