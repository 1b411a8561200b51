"""GNN unit: neighbour aggregation (sum, mean, max) of BF16 node features over a CSR adjacency.

``out[i, :] = op(x[k, :] for k in neighbours(i))`` for every node ``i``, with ``op`` the
EXEC function (:class:`GnnFunc` ``SUM``, ``MEAN``, ``MAX``).

Formats (:mod:`accelpool.spec.formats`; encoder :func:`accelpool.spec.formats.layout_gnn`)
    Adjacency: CSR, ``ptr`` = ``nodes + 1`` ``uint32``, ``idx`` = ``edges`` ``uint32``
    entries whose bits 0..15 are the neighbour index (bits 16..31 are ignored), ascending
    within a row. Features X: BF16, row-major, rows padded to ``ceil(F/L) * L``; row ``k``
    holds node ``k``'s features (X has as many rows as the neighbour indices need: the
    adjacency of a block of ``nodes`` nodes may index any node). Output: ``[nodes, F]``,
    rows padded to ``ceil(F/L) * L`` elements, only real features written: FP32 (row
    pitch ``ceil(F/L) * 4 L`` bytes), or with ``out_bf16`` BF16 (pitch ``ceil(F/L) * 2 L``
    bytes). Word = ``L`` BF16 = ``16 L`` bits (128 bits with the default 8 lanes).

Arithmetic, bit-exact with :func:`accelpool.spec.golden.sparse.gnn_aggregate`
    A BF16 feature is widened to FP32 exactly (shifted left 16 bits). For each node the
    neighbours are taken in stored order, ``L`` features per cycle:

    ``SUM``   ``acc = +0``; ``acc = fp32_add(acc, x)`` (:class:`accelpool.hw.arith.fp32add.Fp32Adder`).
    ``MAX``   ``acc = -inf``; ``acc = max(acc, x)`` (:class:`Fp32Max`: DAZ, NaN -> canonical
              NaN, ``-0 < +0``).
    ``MEAN``  the ``SUM`` accumulator rounded to BF16 (:class:`accelpool.hw.arith.round.Fp32ToBf16`)
              times the BF16 reciprocal of the degree (:class:`RecipBf16`: ``1/deg``
              rounded to nearest even) on a :class:`accelpool.hw.arith.bf16mul.Bf16Multiplier`:
              an FP32 result of about BF16 precision. No divider per lane: one reciprocal
              per node, shared by the lanes.

    A node without neighbours gets +0 for every function.

    With ``out_bf16`` each FP32 result above is rounded to BF16 as it is written
    (:class:`Fp32ToBf16`: RNE, FTZ, canonical NaN; = :func:`accelpool.spec.golden.numerics.fp32_to_bf16`
    of the FP32 result).

Cycles
    ``ceil(F/L)`` passes over the adjacency, each about ``sum_i max(deg_i + 1, 2)`` plus
    a few cycles of start-up: edges x F / L plus a per-node cycle, the same for both
    output formats. Model: :mod:`accelpool.sched.cost.gnn`.

EXEC (:data:`GnnArgs`, 153 bits)::

    ptr_addr, idx_addr, x_addr, out_addr : 24-bit byte addresses (word-aligned)
    nodes, features : 16-bit sizes (nodes = adjacency rows = output rows)
    edges           : 24-bit number of adjacency entries (= ptr[nodes])
    out_bf16        : 1 bit; 1: BF16 output, 0: FP32 output

Ports: ``cmd``, ``busy``, ``ptr_read``, ``idx_read``, ``x_read`` (read ports),
``out_write`` (write port); see :mod:`accelpool.hw.sparse_unit` for the contract.
"""


from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import UnitKind
from accelpool.spec.units.gnn import GnnFunc, GnnArgs

from .arith.bf16mul import Bf16Multiplier
from .arith.fp32add import Fp32Adder
from .arith.fpformat import FP32_QNAN
from .arith.round import Fp32ToBf16
from .csr_engine import LaneDatapath
from .csr_walk import NNZ_BITS
from .sparse_unit import SparseUnit
from .units import UNIT_RTL

__all__ = ["Fp32Max", "RecipBf16", "GnnDatapath", "Gnn"]

FP32_NEG_INF = 0xFF800000


class Fp32Max(wiring.Component):
    """The larger of two FP32 encodings (combinational), as :func:`accelpool.spec.golden.sparse.fp32_max_bits`.

    Subnormals read as zeros of their sign; a NaN operand gives the canonical NaN;
    otherwise the larger in the order ``-inf < ... < -0 < +0 < ... < +inf``.
    """

    a: In(32)
    b: In(32)
    y: Out(32)

    def elaborate(self, platform):
        m = Module()

        def daz(x):
            return Mux(x[23:31] == 0, Cat(Const(0, 31), x[31]), x)

        def is_nan(x):
            return (x[23:31] == 0xFF) & (x[0:23] != 0)

        a, b = Signal(32), Signal(32)
        m.d.comb += [a.eq(daz(self.a)), b.eq(daz(self.b))]
        # b > a in value order: compare magnitudes, flipped for negatives, -0 < +0.
        mag_gt = b[0:31] > a[0:31]
        mag_lt = b[0:31] < a[0:31]
        b_greater = Mux(a[31] != b[31], a[31],              # a negative, b positive
                        Mux(a[31], mag_lt, mag_gt))
        m.d.comb += self.y.eq(Mux(is_nan(a) | is_nan(b), FP32_QNAN, Mux(b_greater, b, a)))
        return m


class RecipBf16(wiring.Component):
    """BF16 encoding of ``1/d`` rounded to nearest even, for an unsigned ``d`` (0 -> +0).

    As :func:`accelpool.spec.golden.sparse.recip_bf16_bits`: with ``p`` the position of ``d``'s
    leading one and ``n = d << (W-1-p)`` normalised, ``q = floor(2**(W+8) / n)`` lies in
    ``(2**8, 2**9]`` and holds 1/d's significand with one guard bit; the remainder is
    the sticky bit. Combinational (one division per node, shared by the lanes).

    Parameters
    ----------
    width : int
        Width of ``d``.
    """

    def __init__(self, width: int = NNZ_BITS):
        self._w = width
        super().__init__({"d": In(width), "y": Out(16)})

    def elaborate(self, platform):
        m = Module()
        w = self._w
        p = Signal(range(w))
        for i in range(w):                       # highest set bit wins (last assignment)
            with m.If(self.d[i]):
                m.d.comb += p.eq(i)
        n = Signal(w)
        shamt = Signal(range(w))
        m.d.comb += [shamt.eq(w - 1 - p), n.eq(self.d << shamt)]
        num = Const(1 << (w + 8), w + 9)
        q = Signal(10)
        r = Signal(w)
        m.d.comb += [q.eq(num // n), r.eq(num % n)]
        sig8, guard, sticky = q[1:9], q[0], r != 0
        up = guard & (sticky | sig8[0])
        rounded = Signal(9)
        m.d.comb += rounded.eq(sig8 + up)
        exp = Signal(8)
        frac = Signal(7)
        with m.If(q[9]):                         # d a power of two: exactly 2**-p
            m.d.comb += [exp.eq(127 - p), frac.eq(0)]
        with m.Elif(rounded[8]):                 # rounded up to the next power of two
            m.d.comb += [exp.eq(127 - p), frac.eq(0)]
        with m.Else():
            m.d.comb += [exp.eq(126 - p), frac.eq(rounded[0:7])]
        m.d.comb += self.y.eq(Mux(self.d == 0, 0, Cat(frac, exp, 0)))
        return m


class GnnDatapath(LaneDatapath):
    """Stage 1: features widened to FP32; stage 2: add or max; row end: the mean's scaling."""

    def __init__(self, func: Signal):
        self._func = func
        self.init = Mux(func == GnnFunc.MAX, FP32_NEG_INF, 0)

    def product(self, m, val, word, lanes):
        return [Cat(Const(0, 16), word.word_select(l, 16)) for l in range(lanes)]

    def combine(self, m, acc, x):
        add, mx = Fp32Adder(), Fp32Max()
        m.submodules[f"add_{acc.name}"] = add
        m.submodules[f"max_{acc.name}"] = mx
        m.d.comb += [add.a.eq(acc), add.b.eq(x), mx.a.eq(acc), mx.b.eq(x)]
        return Mux(self._func == GnnFunc.MAX, mx.y, add.s)

    def finish(self, m, acc, count):
        m.submodules.recip = recip = RecipBf16(len(count))
        m.d.comb += recip.d.eq(count)
        out = []
        for l, a in enumerate(acc):
            rnd, mul = Fp32ToBf16(), Bf16Multiplier()
            m.submodules[f"round{l}"] = rnd
            m.submodules[f"scale{l}"] = mul
            m.d.comb += [rnd.x.eq(a), mul.a.eq(rnd.y), mul.b.eq(recip.y)]
            value = Mux(self._func == GnnFunc.MEAN, mul.p, a)
            out.append(Mux(count == 0, 0, value))
        return out


class Gnn(SparseUnit):
    """The GNN aggregation unit (see the module docstring).

    Parameters
    ----------
    lanes : int
        Features per cycle (``tile["lanes"]``, default 8); a power of two >= 2.
    scratchpad_bytes : int
        ``tile["scratchpad_bytes"]``.
    """

    FUNCS = GnnFunc
    ARGS = GnnArgs
    PORTS = ("ptr_read", "idx_read", "x_read", "out_write")

    def __init__(self, *, lanes: int = 8, scratchpad_bytes: int = 65536):
        super().__init__(lanes=lanes, scratchpad_bytes=scratchpad_bytes)

    def datapath(self, m, func):
        return GnnDatapath(func)

    def job_fields(self, args):
        return {"ptr": args.ptr_addr, "nz": args.idx_addr, "dense": args.x_addr,
                "out": args.out_addr, "rows": args.nodes, "cols": args.features,
                "nnz": args.edges, "out_bf16": args.out_bf16}


def _from_tile(tile) -> Gnn:
    """The GNN of a tile config."""
    return Gnn(lanes=tile["lanes"], scratchpad_bytes=tile.scratchpad_bytes)


UNIT_RTL.register(UnitKind.GNN, _from_tile)
