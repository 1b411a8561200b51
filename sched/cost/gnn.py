"""GNN unit cycle model: the CSR row engine's (:mod:`accelpool.sched.cost.csr`) with the GNN's lanes."""

from __future__ import annotations

from typing import Sequence

from accelpool.spec.config import TileConfig, UnitKind

from .csr import engine_cycles, engine_cycles_from_nnz
from .formula import FORMULAS, Formula

__all__ = ["cycles"]


def cycles(tile: TileConfig, *, nodes: int, features: int, degrees: Sequence[int] | None = None,
           edges: int | None = None, **_) -> int:
    """Busy cycles of one GNN aggregation (any of sum, mean, max; FP32 or BF16 output) on ``tile``.

    ``ceil(F/L) * (sum_i c_i + 5) + 4`` with ``c_i = deg_i + 1`` (2 for an isolated node
    after the first), ``L = tile["lanes"]``: edges x F / L plus about one cycle per node
    and pass. Exact against the RTL over the sweeps of ``hw/test_gnn.py``.

    Parameters
    ----------
    degrees : sequence of int, optional
        Adjacency entries of each node's CSR row (exact model).
    edges : int, optional
        Their total, when the degrees are unknown (spread evenly: an estimate).
    """
    if degrees is not None:
        if len(degrees) != nodes:
            raise ValueError(f"degrees must have one count per node ({nodes}), not {len(degrees)}")
        return engine_cycles(tile["lanes"], features, degrees)
    if edges is None:
        raise TypeError("GNN cycles need degrees (per node) or edges (their total)")
    return engine_cycles_from_nnz(tile["lanes"], nodes, features, edges)


FORMULAS.register(UnitKind.GNN, Formula(cycles))
