"""Cycle formula of the output-stationary systolic GEMM engine (DMU and LPU).

Derived from the engine's schedule (``hw/systolic.py``), checked against RTL measurements
over shape sweeps in ``hw/test_dmu.py`` and ``hw/test_lpu.py`` (0 cycles error).
"""

from __future__ import annotations

from typing import Any, Mapping

from accelpool.sched.ir import OpType
from accelpool.spec.gemm_layout import systolic_word_bytes

__all__ = ["word_elems", "gemm_period", "gemm_cycles", "gemm_utilization"]


def _check(name: str, v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"GEMM {name} must be an integer, not {v!r}")
    if v < 0:
        raise ValueError(f"GEMM {name} must be non-negative, not {v!r}")
    return v


def word_elems(rows: int, cols: int, in_bytes: int) -> int:
    """A elements per scratchpad word of an R x C unit with ``in_bytes`` operands
    (FP32/INT32 accumulators and outputs of at most 4 bytes, as the DMU and LPU)."""
    return systolic_word_bytes(rows, cols, in_bytes) // in_bytes


def gemm_period(rows: int, cols: int, k: int, word_elems: int) -> int:
    """Cycles between the starts of consecutive R x C output blocks (``P``).

    ``P = max(K, R, C, R + W * floor((K-1)/W))`` with W = ``word_elems`` A elements per
    scratchpad word: the K operand steps; at least R cycles to read the block's C rows
    and C before a PE's result register is reused; and R cycles between the load of the
    block's last A chunk (k from ``W*floor((K-1)/W)``) and the next block's first, for
    the R row reads of that chunk (costs only when ``K mod W`` is 1..R-1 and K > W).
    """
    return max(k, rows, cols, rows + word_elems * ((k - 1) // word_elems))


def gemm_cycles(rows: int, cols: int, m: int, n: int, k: int, *, word_elems: int) -> int:
    """Cycles one GEMM command keeps an R x C systolic unit busy (from acceptance to the last write).

    ``cycles = 1 + R + ceil(M/R) * ceil(N/C) * P + (K + R + C + 2 - P)`` with
    ``P`` of :func:`gemm_period`:

    - 1 cycle of argument set-up;
    - R cycles of preamble, reading the first A chunk (one word) of each of the R rows;
    - one period ``P`` per R x C output block, blocks streamed back to back; ragged
      edges cost a full block (padding counted);
    - the tail of the last block: its operands skew across R + C - 1 PEs, then one
      row-complete register, the write register, and R row writes: ``K + R + C + 2 - P``
      beyond its period.

    A command with M, N or K equal to 0 takes 1 cycle and writes nothing.

    Parameters
    ----------
    rows, cols : int
        The array (R x C).
    m, n, k : int
        The GEMM shape.
    word_elems : int
        A elements per scratchpad word (``word_bytes / element bytes``; 16 for the
        default 8 x 8 DMU, 64 for the default 8 x 16 LPU).
    """
    for name, v in (("rows", rows), ("cols", cols), ("m", m), ("n", n), ("k", k),
                    ("word_elems", word_elems)):
        _check(name, v)
    if m == 0 or n == 0 or k == 0:
        return 1
    p = gemm_period(rows, cols, k, word_elems)
    blocks = -(-m // rows) * -(-n // cols)
    return 1 + rows + blocks * p + (k + rows + cols + 2 - p)


def gemm_utilization(rows: int, cols: int, m: int, n: int, k: int, *, word_elems: int) -> float:
    """Useful MACs per cycle over the peak R*C (padding and fill/drain count as idle)."""
    cyc = gemm_cycles(rows, cols, m, n, k, word_elems=word_elems)
    return m * n * k / (cyc * rows * cols)


def gemm_arguments(op: Any, shape: Mapping[str, int], tile: Any = None) -> dict[str, int]:
    """The GEMM a systolic array runs for ``op``: a GEMM's own shape, or for an emulated
    operation (baseline pools) its dense equivalent."""
    if op.op is OpType.GEMM:
        return dict(shape)
    if op.op is OpType.SPMM:
        return {"M": shape["M"], "N": shape["N"], "K": shape["K"]}
    if op.op is OpType.CONV:   # im2col: (OH*OW) x (IC*KH*KW) times (IC*KH*KW) x OC
        return {"M": shape["OH"] * shape["OW"], "K": shape["IC"] * shape["KH"] * shape["KW"],
                "N": shape["OC"]}
    if op.op is OpType.AGGREGATE:  # dense adjacency (nodes x nodes) times features
        return {"M": shape["nodes"], "K": shape["nodes"], "N": shape["features"]}
    raise ValueError(f"No GEMM equivalent for operation {op.op.value!r}; accepted: gemm, "
                     f"spmm, conv, aggregate")
