"""LPU cycle model: the systolic GEMM formula of :mod:`accelpool.sched.cost.systolic`."""

from __future__ import annotations

from accelpool.spec.config import TileConfig, UnitKind

from .formula import FORMULAS, Formula
from .systolic import gemm_cycles, word_elems, gemm_arguments

__all__ = ["cycles"]


def cycles(tile: TileConfig, *, m: int, n: int, k: int, **_) -> int:
    """Busy cycles of one LPU ``GEMM`` (``D[M,N] (+)= A[M,K] B[K,N]``) on ``tile``.

    ``1 + R + ceil(M/R)*ceil(N/C)*P + K + R + C + 2 - P`` with ``P = max(K, R, C, R + W*floor((K-1)/W))``,
    W the A elements per scratchpad word, and R x C the
    tile's array (``tile["rows"]``, ``tile["cols"]``); exact (0 cycles error against the
    RTL over the sweeps of ``hw/test_lpu.py``). Accumulation and requantisation (``accumulate``, ``requant``) do not
    change the count. See :func:`accelpool.sched.cost.systolic.gemm_cycles`.
    """
    r, c = tile["rows"], tile["cols"]
    return gemm_cycles(r, c, m, n, k, word_elems=word_elems(r, c, 1))


FORMULAS.register(UnitKind.LPU, Formula(cycles, gemm_arguments))
