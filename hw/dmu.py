"""DMU: the dense matrix unit, an R x C systolic array of BF16 MACs with FP32 accumulators.

One EXEC ``GEMM`` command computes ``D[M,N] = (C[M,N] if accumulate else 0) + A[M,K] x B[K,N]``
with BF16 A and B and FP32 C, bit-exact with :func:`accelpool.spec.golden.numerics.bf16_gemm`
(accumulation order: ``acc = C[i,j]`` or +0.0, then ``acc = fp32_add(acc, bf16_mul(A[i,k],
B[k,j]))`` for k ascending; RNE, FTZ in and out, canonical NaN). D is the FP32
accumulator, or with ``out_bf16`` its BF16 rounding
(:func:`accelpool.spec.golden.numerics.fp32_to_bf16`: RNE, FTZ, canonical NaN; the
:class:`accelpool.hw.arith.round.Fp32ToBf16` stage), 2 bytes per element, D row stride ``Np*2``.

The engine (streaming, control, scratchpad layout, cycle count) is
:class:`accelpool.hw.systolic.SystolicGemm`; read its docstring for the data layout. With the
default 8 x 8 array the scratchpad word is 256 bits (one row of 8 FP32 results, 16 BF16
elements of an A row), a B slice (8 BF16) is half a word.

EXEC arguments (:data:`DmuArgs`, 146 bits)::

    a_addr, b_addr, c_addr, d_addr : 24-bit byte addresses (multiples of word_bytes)
    m, n, k                         : 16-bit sizes
    accumulate                      : 1 = start from C (FP32) at c_addr, 0 = from +0.0
    out_bf16                        : 1 = write D as BF16 (2 bytes), 0 = FP32 (4 bytes)
"""

from amaranth.hdl import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import UnitKind
from accelpool.spec.units.dmu import DmuFunc, DmuArgs

from .arith.bf16mul import Bf16Multiplier
from .arith.fp32add import Fp32Adder
from .arith.round import Fp32ToBf16
from .systolic import MacKind, SystolicGemm
from .units import UNIT_RTL

__all__ = ["Bf16Fp32Mac", "BF16_MAC", "Dmu"]


class Bf16Fp32Mac(wiring.Component):
    """``out = fp32_add(acc, bf16_mul(a, b))`` (combinational): the DMU's PE arithmetic."""

    a: In(16)
    b: In(16)
    acc: In(32)
    out: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mul = mul = Bf16Multiplier()
        m.submodules.add = add = Fp32Adder()
        m.d.comb += [mul.a.eq(self.a), mul.b.eq(self.b),
                     add.a.eq(self.acc), add.b.eq(mul.p), self.out.eq(add.s)]
        return m


BF16_MAC = MacKind(in_bits=16, acc_bits=32, factory=Bf16Fp32Mac)


class Dmu(SystolicGemm):
    """The DMU (see the module docstring and :class:`accelpool.hw.systolic.SystolicGemm`).

    Parameters
    ----------
    rows, cols : int
        Array size (``tile["rows"]``, ``tile["cols"]``); powers of two in 1..64.
    scratchpad_bytes : int
        Scratchpad size (``tile["scratchpad_bytes"]``).
    """

    kind = BF16_MAC
    funcs = DmuFunc
    args = DmuArgs
    out_bits_max = 32

    def out_log2_bytes(self, args):
        return Mux(args.out_bf16, 1, 2)

    def output_row(self, m: Module, args, row):
        h = []
        for j, acc in enumerate(row):
            m.submodules[f"to_bf16_{j}"] = cv = Fp32ToBf16()
            m.d.comb += cv.x.eq(acc)
            h.append(cv.y)
        return Mux(args.out_bf16, Cat(*h), Cat(*row))


UNIT_RTL.register(UnitKind.DMU, Dmu.from_tile)
