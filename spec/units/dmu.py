"""The dense matrix unit's EXEC contract: function, argument layout, checks.

What the compiler emits and the RTL (``hw/dmu.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.units.gemm import GemmArgs

__all__ = ["DmuFunc", "DmuArgs", "EXEC"]

class DmuFunc(enum.Enum, shape=8):
    """DMU EXEC functions."""

    GEMM = 0


DmuArgs = data.StructLayout({**GemmArgs, "out_bf16": 1})

EXEC = isa.define_exec(UnitKind.DMU, DmuFunc, DmuArgs, lambda func, a: [
    ("m is 0", a.m == 0), ("n is 0", a.n == 0), ("k is 0", a.k == 0)])
