"""Cycle formula of the output-stationary systolic GEMM engine (DMU and LPU).

Derived from the engine's schedule (``hw/systolic.py``), checked against RTL measurements
over shape sweeps in ``hw/test_dmu.py`` and ``hw/test_lpu.py`` (0 cycles error).
"""

from __future__ import annotations

__all__ = ["gemm_cycles", "gemm_utilization"]


def _check(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"GEMM {name} must be an integer, not {v!r}")
    if v < 0:
        raise ValueError(f"GEMM {name} must be non-negative, not {v!r}")
    return v


def gemm_cycles(rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Cycles one GEMM command keeps an R x C systolic unit busy (from acceptance to the last write).

    ``cycles = 1 + ceil(M/R) * ceil(N/C) * P + (K + R + C + 2 - P)`` with
    ``P = max(K, R, C)``:

    - 1 cycle of argument set-up;
    - one period ``P`` per R x C output block, blocks streamed back to back (the K operand
      steps of a block, at least R cycles to load its C rows and C cycles before a PE's
      result register is reused); ragged edges cost a full block (padding counted);
    - the tail of the last block: its operands skew across R + C - 1 PEs, then one
      row-complete register, the write register, and R row writes: ``K + R + C + 2 - P``
      beyond its period.

    A command with M, N or K equal to 0 takes 1 cycle and writes nothing.
    """
    for name, v in (("rows", rows), ("cols", cols), ("m", m), ("n", n), ("k", k)):
        _check(name, v)
    if m == 0 or n == 0 or k == 0:
        return 1
    p = max(k, rows, cols)
    blocks = -(-m // rows) * -(-n // cols)
    return 1 + blocks * p + (k + rows + cols + 2 - p)


def gemm_utilization(rows: int, cols: int, m: int, n: int, k: int) -> float:
    """Useful MACs per cycle over the peak R*C (padding and fill/drain count as idle)."""
    cyc = gemm_cycles(rows, cols, m, n, k)
    return m * n * k / (cyc * rows * cols)
