"""FP32 + FP32 adder, round to nearest even (combinational)."""


from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .fpformat import FP32_QNAN, fp32_fields, inf_fp32, pack_fp32, zero_fp32

__all__ = ["Fp32Adder"]


class Fp32Adder(wiring.Component):
    """``s = a + b`` for FP32 encodings, round to nearest even.

    The larger-magnitude operand's 24-bit significand and the smaller one's, aligned with
    guard, round and sticky bits, are added or subtracted; the sum is normalised (leading
    one detector) and rounded half to even. Subnormal inputs read as signed zeros, tiny
    results flush to a zero of the result's sign, overflow gives infinity, exact
    cancellation gives +0, inf - inf and NaN operands give the canonical NaN
    (semantics of :func:`accelpool.spec.golden.numerics.fp32_add`).

    Attributes
    ----------
    a, b : In(32)
    s : Out(32)
    """

    a: In(32)
    b: In(32)
    s: Out(32)

    def elaborate(self, platform):
        m = Module()
        sa, ea, fa = fp32_fields(self.a)
        sb, eb, fb = fp32_fields(self.b)
        nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)
        inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
        zero_a, zero_b = ea == 0, eb == 0

        # x: the operand of larger magnitude.
        swap = self.b[0:31] > self.a[0:31]
        sx, ex, fx = Signal(), Signal(8), Signal(23)
        sy, ey, fy, zy = Signal(), Signal(8), Signal(23), Signal()
        m.d.comb += [
            sx.eq(Mux(swap, sb, sa)), ex.eq(Mux(swap, eb, ea)), fx.eq(Mux(swap, fb, fa)),
            sy.eq(Mux(swap, sa, sb)), ey.eq(Mux(swap, ea, eb)), fy.eq(Mux(swap, fa, fb)),
            zy.eq(Mux(swap, zero_a, zero_b)),
        ]
        mx3 = Cat(Const(0, 3), fx, 1)                          # 27 bits
        my3 = Signal(27)
        m.d.comb += my3.eq(Mux(zy, 0, Cat(Const(0, 3), fy, 1)))

        # Align the smaller operand, folding shifted-out bits into the sticky bit.
        diff = Signal(8)
        m.d.comb += diff.eq(ex - ey)
        d = Signal(5)
        m.d.comb += d.eq(Mux(diff > 27, 27, diff))
        shifted = Signal(27)
        lost = Signal()
        m.d.comb += [
            shifted.eq(my3 >> d),
            lost.eq((my3 & ((Const(1, 28) << d) - 1)[:27]) != 0),
        ]
        my_al = shifted | lost

        sub = sx != sy
        s = Signal(28)
        m.d.comb += s.eq(Mux(sub, mx3 - my_al, mx3 + my_al))

        # Normalise: leading one to bit 26.
        n = Signal(range(29))                                  # bit length of s
        for i in range(28):
            with m.If(s[i]):
                m.d.comb += n.eq(i + 1)
        norm = Signal(27)
        exp = Signal(signed(11))
        with m.If(n == 28):                                    # carry out
            m.d.comb += [norm.eq(Cat(s[0] | s[1], s[2:28])), exp.eq(ex + 1)]
        with m.Else():
            left = Signal(5)
            m.d.comb += left.eq(Mux(n == 0, 0, 27 - n))
            m.d.comb += [norm.eq(s << left), exp.eq(ex - left)]

        # Round to nearest even on the three low bits.
        keep, low = norm[3:27], norm[0:3]
        up = (low > 4) | ((low == 4) & keep[0])
        rounded = Signal(25)
        m.d.comb += rounded.eq(keep + up)
        frac = Mux(rounded[24], rounded[1:24], rounded[0:23])
        exp_r = Signal(signed(11))
        m.d.comb += exp_r.eq(exp + rounded[24])

        with m.If(nan_a | nan_b | (inf_a & inf_b & (sa != sb))):
            m.d.comb += self.s.eq(FP32_QNAN)
        with m.Elif(inf_a):
            m.d.comb += self.s.eq(inf_fp32(sa))
        with m.Elif(inf_b):
            m.d.comb += self.s.eq(inf_fp32(sb))
        with m.Elif(zero_a & zero_b):
            m.d.comb += self.s.eq(zero_fp32(sa & sb))
        with m.Elif(zero_a):
            m.d.comb += self.s.eq(self.b)
        with m.Elif(zero_b):
            m.d.comb += self.s.eq(self.a)
        with m.Elif(s == 0):
            m.d.comb += self.s.eq(0)                           # x + (-x) = +0
        with m.Elif(exp_r <= 0):
            m.d.comb += self.s.eq(zero_fp32(sx))               # FTZ
        with m.Elif(exp_r >= 0xFF):
            m.d.comb += self.s.eq(inf_fp32(sx))
        with m.Else():
            m.d.comb += self.s.eq(pack_fp32(sx, exp_r[:8], frac))
        return m
