"""The sparse matrix unit: its declaration and its EXEC contract: function, argument layout, checks.

What the compiler emits and the RTL (``hw/smu.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit

__all__ = ["SMU", "SmuFunc", "SmuArgs", "EXEC"]

SMU = register_unit(UnitSpec(
    key="smu", code=3, title="sparse matrix unit", dtypes=("bf16",),
    params={"scratchpad_bytes": SCRATCHPAD,
            "lanes": Param(64, 1, 1024, doc="BF16 multipliers")},
    geometry=("lanes",), runs=(("spmm", "bf16"),), sparse=True))

class SmuFunc(enum.Enum, shape=8):
    """SMU EXEC functions."""

    SPMM = 0


SmuArgs = data.StructLayout({
    "a_ptr_addr": 24,
    "a_nz_addr": 24,
    "b_addr": 24,
    "c_addr": 24,
    "m": 16,
    "n": 16,
    "k": 16,
    "nnz": 24,
    "out_bf16": 1,
})

EXEC = isa.define_exec(SMU, SmuFunc, SmuArgs, lambda func, a: [
    ("m is 0", a.m == 0), ("n is 0", a.n == 0), ("k is 0", a.k == 0)])
