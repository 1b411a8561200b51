"""The graph aggregation unit: its declaration and its EXEC contract: functions, argument layout, checks.

What the compiler emits and the RTL (``hw/gnn.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit

__all__ = ["GNN", "GnnFunc", "GnnArgs", "EXEC"]

GNN = register_unit(UnitSpec(
    key="gnn", code=6, title="graph aggregation unit", dtypes=("bf16", "fp32"),
    params={"scratchpad_bytes": SCRATCHPAD,
            "lanes": Param(8, 1, 64, doc="features per cycle")},
    geometry=("lanes",), runs=(("aggregate", "bf16"), ("aggregate", "fp32")), sparse=True))

class GnnFunc(enum.Enum, shape=8):
    """GNN EXEC functions: the aggregation."""

    SUM = 0
    MEAN = 1
    MAX = 2


GnnArgs = data.StructLayout({
    "ptr_addr": 24,
    "idx_addr": 24,
    "x_addr": 24,
    "out_addr": 24,
    "nodes": 16,
    "features": 16,
    "edges": 24,
    "out_bf16": 1,
})

EXEC = isa.define_exec(GNN, GnnFunc, GnnArgs, lambda func, a: [
    ("nodes is 0", a.nodes == 0), ("features is 0", a.features == 0)])
