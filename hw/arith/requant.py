"""INT32 -> INT8 requantisation: fixed-point multiplier, shift, round half to even, saturate."""


from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.golden.numerics import REQUANT_MULTIPLIER_BITS, REQUANT_SHIFT_BITS

__all__ = ["Requantizer"]

SHIFT_BITS = REQUANT_SHIFT_BITS


class Requantizer(wiring.Component):
    """``y = saturate(round_half_even(acc * multiplier / 2**shift) + zero_point)``.

    ONNX QuantizeLinear semantics on ``acc * real_scale`` with ``real_scale`` in fixed
    point (see :func:`accelpool.spec.golden.numerics.requantize`). The 63-bit product is exact;
    the shift rounds half to even (floor, then +1 if the remainder is over half, or exactly
    half with an odd quotient); the result saturates to [-128, 127].

    Attributes
    ----------
    acc : In(signed(32))
    multiplier : In(31)
    shift : In(6)
    zero_point : In(signed(8))
    y : Out(signed(8))
    """

    acc: In(signed(32))
    multiplier: In(REQUANT_MULTIPLIER_BITS)
    shift: In(SHIFT_BITS)
    zero_point: In(signed(8))
    y: Out(signed(8))

    def elaborate(self, platform):
        m = Module()
        prod = Signal(signed(64))
        m.d.comb += prod.eq(self.acc * self.multiplier)
        q = Signal(signed(64))
        m.d.comb += q.eq(prod >> self.shift)                   # arithmetic: floor
        rem = Signal(64)
        half = Signal(64)
        m.d.comb += [
            rem.eq(prod.as_unsigned() & ((Const(1, 64) << self.shift) - 1)[:64]),
            half.eq(((Const(1, 64) << self.shift) >> 1)[:64]),
        ]
        up = (self.shift != 0) & ((rem > half) | ((rem == half) & q[0]))
        r = Signal(signed(66))
        m.d.comb += r.eq(q + up + self.zero_point)
        m.d.comb += self.y.eq(Mux(r > 127, 127, Mux(r < -128, -128, r)))
        return m
