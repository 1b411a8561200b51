"""Cycle model of the CSR row engine shared by the SMU and the GNN unit (``hw/csr_engine.py``).

Derived from the engine's design, and checked against the RTL over random and skewed
patterns in ``hw/test_smu.py`` and ``hw/test_gnn.py``:

- the columns are processed in ``P = ceil(cols / L)`` passes over the CSR matrix;
- within a pass, row ``i`` costs ``nnz_i + 1`` cycles (one per non-zero, one for its row
  end), except that two row ends cannot be taken in consecutive cycles, so an empty row
  that follows another row costs 2 (the first row of a pass never waits);
- the output format does not matter: a BF16 row end (``out_bf16``, one word) keeps the
  FP32 row end's two write cycles;
- each pass starts with ``PASS_START`` cycles (starting the two CSR stream readers and
  taking ``ptr[0]``, ``ptr[1]``); the last row's results leave the pipeline and are
  written ``TAIL`` cycles after its row end.

So ``cycles = P * (sum_i c_i + PASS_START) + TAIL`` with ``c_i = nnz_i + 1`` if
``nnz_i > 0`` or ``i == 0``, else 2; 0 when there are no rows or no columns.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["PASS_START", "TAIL", "pass_cycles", "engine_cycles", "engine_cycles_from_nnz"]

PASS_START = 5
TAIL = 4


def pass_cycles(row_nnz: Sequence[int]) -> int:
    """Cycles of one pass over a CSR matrix with ``row_nnz[i]`` non-zeros in row ``i``."""
    r = np.asarray(row_nnz, dtype=np.int64)
    if r.ndim != 1 or (r.size and r.min() < 0):
        raise ValueError(f"Non-zeros per row must be a 1-D sequence of counts >= 0, not {row_nnz!r}")
    if r.size == 0:
        return 0
    cost = np.where(r > 0, r + 1, 2)
    cost[0] = r[0] + 1
    return int(cost.sum()) + PASS_START


def engine_cycles(lanes: int, cols: int, row_nnz: Sequence[int]) -> int:
    """Busy cycles of one engine command: ``cols`` dense columns, ``lanes`` per pass."""
    if lanes < 1 or cols < 0:
        raise ValueError(f"Lanes must be >= 1 and columns >= 0, not {lanes!r}, {cols!r}")
    if cols == 0 or len(row_nnz) == 0:
        return 0
    return -(-cols // lanes) * pass_cycles(row_nnz) + TAIL


def engine_cycles_from_nnz(lanes: int, rows: int, cols: int, nnz: int) -> int:
    """Estimate from the total only, the non-zeros spread as evenly as possible over the rows."""
    if rows <= 0 or cols <= 0:
        return 0
    base, extra = divmod(nnz, rows)
    per_row = [base + 1] * extra + [base] * (rows - extra)
    return engine_cycles(lanes, cols, per_row)
