"""The graph aggregation unit's EXEC contract: functions, argument layout, checks.

What the compiler emits and the RTL (``hw/gnn.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.config import UnitKind

__all__ = ["GnnFunc", "GnnArgs", "EXEC"]

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

EXEC = isa.define_exec(UnitKind.GNN, GnnFunc, GnnArgs, lambda func, a: [
    ("nodes is 0", a.nodes == 0), ("features is 0", a.features == 0)])
