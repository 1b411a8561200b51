"""The dense matrix unit: its declaration and its EXEC contract: function, argument layout, checks.

What the compiler emits and the RTL (``hw/dmu.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit
from accelpool.spec.units.gemm import GemmArgs

__all__ = ["DMU", "DmuFunc", "DmuArgs", "EXEC"]

DMU = register_unit(UnitSpec(
    key="dmu", code=1, title="dense matrix unit", dtypes=("bf16",),
    # The systolic array (hw/systolic.py) addresses operand rows by bit slicing: powers of two.
    params={"scratchpad_bytes": SCRATCHPAD,
            "rows": Param(8, 1, 64, power_of_two=True, doc="systolic array rows"),
            "cols": Param(8, 1, 64, power_of_two=True, doc="systolic array columns")},
    geometry=("rows", "cols"), runs=(("gemm", "bf16"),), also_runs=(("spmm", "bf16"),)))


class DmuFunc(enum.Enum, shape=8):
    """DMU EXEC functions."""

    GEMM = 0


DmuArgs = data.StructLayout({**GemmArgs, "out_bf16": 1})

EXEC = isa.define_exec(DMU, DmuFunc, DmuArgs, lambda func, a: [
    ("m is 0", a.m == 0), ("n is 0", a.n == 0), ("k is 0", a.k == 0)])
