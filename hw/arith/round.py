"""FP32 -> BF16 conversion, round to nearest even (combinational)."""


from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fpformat import BF16_QNAN, fp32_fields

__all__ = ["Fp32ToBf16"]


class Fp32ToBf16(wiring.Component):
    """``y = bf16(x)``: drop 16 fraction bits with a round-half-even increment.

    A carry out of the fraction bumps the exponent (up to infinity). Subnormal inputs
    give a signed zero; NaN gives the canonical ``0x7FC0``; infinities pass
    (semantics of :func:`accelpool.spec.golden.numerics.fp32_to_bf16`).

    Attributes
    ----------
    x : In(32)
    y : Out(16)
    """

    x: In(32)
    y: Out(16)

    def elaborate(self, platform):
        m = Module()
        sign, exp, frac = fp32_fields(self.x)
        keep, low = self.x[16:32], self.x[0:16]
        up = (low > 0x8000) | ((low == 0x8000) & keep[0])
        with m.If((exp == 0xFF) & (frac != 0)):
            m.d.comb += self.y.eq(BF16_QNAN)
        with m.Elif(exp == 0xFF):
            m.d.comb += self.y.eq(keep)
        with m.Elif(exp == 0):
            m.d.comb += self.y.eq(Cat(Const(0, 15), sign))
        with m.Else():
            m.d.comb += self.y.eq(keep + up)
        return m
