"""INT8 x INT8 + INT32 multiply-accumulate (combinational)."""


from amaranth.hdl import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Int8Mac"]


class Int8Mac(wiring.Component):
    """``out = acc + a * b`` modulo 2**32 (two's complement wraparound).

    The INT16 product is exact; the INT32 sum wraps (semantics of
    :func:`accelpool.spec.golden.numerics.int8_gemm`).

    Attributes
    ----------
    a, b : In(signed(8))
    acc : In(signed(32))
    out : Out(signed(32))
    """

    a: In(signed(8))
    b: In(signed(8))
    acc: In(signed(32))
    out: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(self.acc + self.a * self.b)   # truncation = wraparound
        return m
