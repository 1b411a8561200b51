"""The low-precision unit's EXEC contract: function, argument layout, checks.

What the compiler emits and the RTL (``hw/lpu.py``) accepts: one definition for both.
"""

from amaranth.hdl import signed
from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.golden.numerics import REQUANT_MULTIPLIER_BITS, REQUANT_SHIFT_MAX
from accelpool.spec.units.gemm import GemmArgs

#: Width of the EXEC ``shift`` field (as the requantizer's ``shift`` input).
_SHIFT_BITS = REQUANT_SHIFT_MAX.bit_length()

__all__ = ["LpuFunc", "LpuArgs", "EXEC"]

class LpuFunc(enum.Enum, shape=8):
    """LPU EXEC functions."""

    GEMM = 0


LpuArgs = data.StructLayout({
    **GemmArgs,
    "requant": 1,
    "multiplier": REQUANT_MULTIPLIER_BITS,
    "shift": _SHIFT_BITS,
    "zero_point": signed(8),
})

EXEC = isa.define_exec(UnitKind.LPU, LpuFunc, LpuArgs, lambda func, a: [
    ("m is 0", a.m == 0), ("n is 0", a.n == 0), ("k is 0", a.k == 0)])
