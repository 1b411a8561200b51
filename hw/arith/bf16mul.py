"""BF16 x BF16 -> FP32 multiplier (combinational)."""


from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fpformat import FP32_QNAN, bf16_fields, inf_fp32, pack_fp32, zero_fp32

__all__ = ["Bf16Multiplier"]


class Bf16Multiplier(wiring.Component):
    """``p = a * b`` for BF16 ``a``, ``b``; FP32 result, exact when normal.

    The two 8-bit significands give a product of at most 16 bits, which FP32 holds exactly,
    so no rounding is needed. Subnormal inputs read as signed zeros; results below
    2**-126 flush to a signed zero; overflow gives infinity; NaN operands and inf * 0 give
    the canonical NaN ``0x7FC00000`` (semantics of :func:`accelpool.spec.golden.numerics.bf16_mul`).

    Attributes
    ----------
    a, b : In(16)
        BF16 encodings.
    p : Out(32)
        FP32 encoding of the product.
    """

    a: In(16)
    b: In(16)
    p: Out(32)

    def elaborate(self, platform):
        m = Module()
        sa, ea, fa = bf16_fields(self.a)
        sb, eb, fb = bf16_fields(self.b)
        sign = sa ^ sb
        zero_a, zero_b = ea == 0, eb == 0
        inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
        nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)

        prod = Signal(16)
        m.d.comb += prod.eq(Cat(fa, 1) * Cat(fb, 1))     # in [2**14, 2**16)
        hi = prod[15]
        biased = Signal(signed(11))                       # exponent of the product, biased
        m.d.comb += biased.eq(ea + eb + hi - 127)
        frac = Mux(hi, Cat(Const(0, 8), prod[0:15]), Cat(Const(0, 9), prod[0:14]))

        with m.If(nan_a | nan_b | (inf_a & zero_b) | (inf_b & zero_a)):
            m.d.comb += self.p.eq(FP32_QNAN)
        with m.Elif(inf_a | inf_b):
            m.d.comb += self.p.eq(inf_fp32(sign))
        with m.Elif(zero_a | zero_b | (biased <= 0)):
            m.d.comb += self.p.eq(zero_fp32(sign))        # zero operand or FTZ
        with m.Elif(biased >= 0xFF):
            m.d.comb += self.p.eq(inf_fp32(sign))         # overflow
        with m.Else():
            m.d.comb += self.p.eq(pack_fp32(sign, biased[:8], frac))
        return m
