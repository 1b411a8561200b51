"""The low-precision unit: its declaration and its EXEC contract: function, argument layout, checks.

What the compiler emits and the RTL (``hw/lpu.py``) accepts: one definition for both.
"""

from amaranth.hdl import signed
from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.golden.numerics import REQUANT_MULTIPLIER_BITS, REQUANT_SHIFT_BITS
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit
from accelpool.spec.units.gemm import GemmArgs


__all__ = ["LPU", "LpuFunc", "LpuArgs", "EXEC"]

LPU = register_unit(UnitSpec(
    key="lpu", code=2, title="low-precision unit", dtypes=("int8",),
    params={"scratchpad_bytes": SCRATCHPAD,
            "rows": Param(8, 1, 64, power_of_two=True, doc="INT8 array rows"),
            "cols": Param(16, 1, 64, power_of_two=True, doc="INT8 array columns")},
    geometry=("rows", "cols"), runs=(("gemm", "int8"),)))


class LpuFunc(enum.Enum, shape=8):
    """LPU EXEC functions."""

    GEMM = 0


LpuArgs = data.StructLayout({
    **GemmArgs,
    "requant": 1,
    "multiplier": REQUANT_MULTIPLIER_BITS,
    "shift": REQUANT_SHIFT_BITS,
    "zero_point": signed(8),
})

EXEC = isa.define_exec(LPU, LpuFunc, LpuArgs, lambda func, a: [
    ("m is 0", a.m == 0), ("n is 0", a.n == 0), ("k is 0", a.k == 0)])
