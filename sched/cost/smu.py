"""SMU cycle model: the CSR row engine's (:mod:`accelpool.sched.cost.csr`) with the SMU's lanes."""

from __future__ import annotations

from typing import Sequence, Any, Mapping

from accelpool.sched.ir import OpType
from accelpool.spec.config import TileConfig, UnitKind

from .csr import engine_cycles, engine_cycles_from_nnz
from .formula import FORMULAS, Formula

__all__ = ["cycles"]


def cycles(tile: TileConfig, *, m: int, n: int, k: int | None = None,
           row_nnz: Sequence[int] | None = None, nnz: int | None = None, **_) -> int:
    """Busy cycles of one SMU ``SPMM`` (``C[M,N] = A[M,K] @ B[K,N]``, A sparse; C in FP32 or
    BF16) on ``tile``.

    ``ceil(N/L) * (sum_i c_i + 5) + 4`` with ``c_i = nnz_i + 1`` (2 for an empty row after
    the first), ``L = tile["lanes"]``; ``K`` does not matter. Exact against the RTL over
    the sweeps of ``hw/test_smu.py``.

    Parameters
    ----------
    row_nnz : sequence of int, optional
        Non-zeros of each of the M rows of A (exact model).
    nnz : int, optional
        Total non-zeros, when the per-row counts are unknown (spread evenly: an estimate).
    """
    if row_nnz is not None:
        if len(row_nnz) != m:
            raise ValueError(f"row_nnz must have one count per row of A ({m}), not {len(row_nnz)}")
        return engine_cycles(tile["lanes"], n, row_nnz)
    if nnz is None:
        raise TypeError("SMU cycles need row_nnz (non-zeros per row) or nnz (their total)")
    return engine_cycles_from_nnz(tile["lanes"], m, n, nnz)


def spmm_arguments(op: Any, shape: Mapping[str, int], tile: Any = None) -> dict[str, Any]:
    """The SMU formula's arguments: an SPMM's own, or a graph aggregation's as the SPMM of
    its adjacency (nodes x nodes, ``edges`` non-zeros) and features (nodes x features)."""
    if op.op is OpType.AGGREGATE:
        return {"M": shape["nodes"], "K": shape["nodes"], "N": shape["features"],
                "nnz_macs": shape["edges"] * shape["features"],
                "m": shape["nodes"], "n": shape["features"], "nnz": shape["edges"]}
    return shape


FORMULAS.register(UnitKind.SMU, Formula(cycles, spmm_arguments))
