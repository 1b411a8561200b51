"""DMU: the dense matrix unit, an R x C systolic array of BF16 MACs with FP32 accumulators.

One EXEC ``GEMM`` command computes ``D[M,N] = (C[M,N] if accumulate else 0) + A[M,K] x B[K,N]``
with BF16 A and B and FP32 C and D, bit-exact with :func:`sched.golden.numerics.bf16_gemm`
(accumulation order: ``acc = C[i,j]`` or +0.0, then ``acc = fp32_add(acc, bf16_mul(A[i,k],
B[k,j]))`` for k ascending; RNE, FTZ in and out, canonical NaN).

The engine (streaming, control, scratchpad layout, cycle count) is
:class:`hw.systolic.SystolicGemm`; read its docstring for the data layout. With the
default 8 x 8 array the scratchpad word is 256 bits (one row of 8 FP32 results), an A or
B slice (8 BF16) is half a word.

EXEC arguments (:data:`DmuArgs`, 145 bits)::

    a_addr, b_addr, c_addr, d_addr : 24-bit byte addresses (multiples of word_bytes)
    m, n, k                         : 16-bit sizes
    accumulate                      : 1 = start from C (FP32) at c_addr, 0 = from +0.0
"""

from amaranth.hdl import Module
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .arith.bf16mul import Bf16Multiplier
from .arith.fp32add import Fp32Adder
from .config import UnitKind
from .systolic import GemmArgs, SystolicGemm

__all__ = ["DmuFunc", "DmuArgs", "Bf16Fp32Mac", "BF16_MAC", "Dmu", "EXEC"]


class DmuFunc(enum.Enum, shape=8):
    """DMU EXEC functions."""

    GEMM = 0


DmuArgs = data.StructLayout(dict(GemmArgs))

EXEC = isa.define_exec(UnitKind.DMU, DmuFunc, DmuArgs)


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


class _Bf16MacKind:
    in_bits = 16
    acc_bits = 32

    def create(self):
        return Bf16Fp32Mac()


BF16_MAC = _Bf16MacKind()


class Dmu(SystolicGemm):
    """The DMU (see the module docstring and :class:`hw.systolic.SystolicGemm`).

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

    @classmethod
    def from_tile(cls, tile) -> "Dmu":
        """The DMU of a :class:`hw.config.TileConfig`."""
        return cls(rows=tile["rows"], cols=tile["cols"], scratchpad_bytes=tile["scratchpad_bytes"])
