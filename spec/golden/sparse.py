"""Bit-exact references of the sparse units: SMU sparse x dense product, GNN aggregation.

Built on the shared arithmetic of :mod:`accelpool.spec.golden.numerics` (BF16 products, FP32
round-to-nearest-even addition, FTZ, canonical NaN); this module fixes only the order in
which the hardware applies it and the few operations that are the sparse units' own
(FP32 maximum, the degree reciprocal of the mean), written here from their definitions.

SMU order (:func:`spmm_bf16`)
    One FP32 accumulator per output element, starting at +0. For each row ``i`` the
    row's stored entries are taken in ascending column order ``k`` and
    ``acc[i, j] = fp32_add(acc[i, j], bf16_mul(a[i, k], b[k, j]))``. Absent entries
    contribute nothing (not even a signed zero), so the result equals
    :func:`~accelpool.spec.golden.numerics.bf16_gemm` on the dense A except where a skipped
    ``0 * b`` would have changed it (``0 * inf = NaN``, or an accumulator that is ``-0``).

GNN order (:func:`gnn_aggregate`)
    Features are BF16; a BF16 value is widened to FP32 exactly (its encoding shifted left
    16 bits; a subnormal then flushes inside the FP32 operations). For each node ``i``
    the neighbours ``k`` of its CSR row are taken in ascending order:

    ``sum``   ``acc = +0``; ``acc = fp32_add(acc, x[k])``.
    ``max``   ``acc = -inf``; ``acc = fp32_max(acc, x[k])`` (see :func:`fp32_max_bits`).
    ``mean``  the ``sum`` result rounded to BF16 (RNE, :func:`fp32_to_bf16`) times the BF16
              reciprocal of the degree (:func:`recip_bf16_bits`, 1/deg rounded to nearest
              even), as a BF16 x BF16 -> FP32 product (:func:`bf16_mul`). So a mean is
              accurate to about BF16 precision (two roundings of 2**-9 each).

    A node without neighbours gets +0 for every operation.
"""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np

from ..formats import CsrMatrix, encode_csr
from .numerics import FP32_QNAN, bf16_bits, bf16_mul_bits, fp32_add_bits, fp32_to_bf16_bits

__all__ = ["spmm_bf16", "gnn_aggregate", "fp32_max_bits", "recip_bf16_bits",
           "AGGREGATIONS", "FP32_NEG_INF"]

FP32_NEG_INF = 0xFF800000
AGGREGATIONS = ("sum", "mean", "max")


def _as_csr(a) -> CsrMatrix:
    return a if isinstance(a, CsrMatrix) else encode_csr(a)


def _by_position(csr: CsrMatrix):
    """Yield ``(rows, position)`` for position t = 0, 1, ...: rows having a t-th entry.

    Processing every row's t-th entry at once keeps each row's ascending order while
    vectorising across rows.
    """
    counts = csr.row_nnz
    for t in range(int(counts.max()) if counts.size else 0):
        rows = np.nonzero(counts > t)[0]
        yield rows, csr.indptr[rows] + t


def spmm_bf16(a, b) -> np.ndarray:
    """The SMU's product ``C = A @ B``: sparse BF16 A, dense BF16 B, FP32 accumulation.

    Parameters
    ----------
    a : CsrMatrix, scipy.sparse matrix or dense array [M, K]
        Encoded with :func:`accelpool.spec.formats.encode_csr` unless already a CsrMatrix.
    b : array_like of bfloat16 [K, N]

    Returns
    -------
    numpy.ndarray of uint32 [M, N]
        FP32 encodings of C.
    """
    csr = _as_csr(a)
    bb = bf16_bits(np.asarray(b).astype(ml_dtypes.bfloat16))
    if bb.ndim != 2 or bb.shape[0] != csr.shape[1]:
        raise ValueError(f"B must be a [{csr.shape[1]}, N] matrix for A of shape "
                         f"{csr.shape}, not {bb.shape}")
    acc = np.zeros((csr.shape[0], bb.shape[1]), dtype=np.uint32)
    for rows, pos in _by_position(csr):
        prod = bf16_mul_bits(csr.values[pos][:, None], bb[csr.indices[pos], :])
        acc[rows] = fp32_add_bits(acc[rows], prod)
    return acc


def fp32_max_bits(a_bits, b_bits) -> np.ndarray:
    """The larger of two FP32 encodings, as the GNN unit's ``max`` takes it.

    Subnormal inputs are read as zeros of their sign (DAZ, as in every FP32 operation);
    any NaN input gives the canonical NaN; otherwise the larger in the order
    ``-inf < ... < -0 < +0 < ... < +inf`` (so the result does not depend on the order
    of a reduction).
    """
    a = np.asarray(a_bits, dtype=np.uint32).astype(np.int64)
    b = np.asarray(b_bits, dtype=np.uint32).astype(np.int64)
    a, b = np.broadcast_arrays(a, b)

    def daz(x):
        return np.where((x >> 23) & 0xFF == 0, x & 0x80000000, x)

    def is_nan(x):
        return ((x >> 23) & 0xFF == 0xFF) & ((x & 0x7FFFFF) != 0)

    def key(x):  # sign-magnitude -> an integer that orders like the value
        return np.where(x >> 31 == 1, -(x & 0x7FFFFFFF) - 1, x)

    a, b = daz(a), daz(b)
    out = np.where(key(b) > key(a), b, a)
    return np.where(is_nan(a) | is_nan(b), FP32_QNAN, out).astype(np.uint32)


def _round_bf16(v: Fraction) -> int:
    """BF16 encoding of a positive rational in the normal range, rounded to nearest even."""
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    scaled = v / Fraction(2) ** e * 128          # in [128, 256)
    q, r = divmod(scaled.numerator, scaled.denominator)
    half = Fraction(r, scaled.denominator)
    if half > Fraction(1, 2) or (half == Fraction(1, 2) and q & 1):
        q += 1
    if q == 256:
        q, e = 128, e + 1
    return ((e + 127) << 7) | (q - 128)


def recip_bf16_bits(deg) -> np.ndarray:
    """BF16 encodings of ``1 / deg`` rounded to nearest even (``deg`` in 1..2**24-1; 0 -> 0)."""
    d = np.asarray(deg, dtype=np.int64)
    if d.size and (d.min() < 0 or d.max() >= 1 << 24):
        raise ValueError(f"Degrees must lie in 0..2**24-1, not {d.min()}..{d.max()}")
    table = {int(v): (_round_bf16(Fraction(1, int(v))) if v else 0) for v in np.unique(d)}
    return np.vectorize(lambda v: table[int(v)], otypes=[np.uint16])(d) if d.size \
        else d.astype(np.uint16)


def gnn_aggregate(adj, x, op: str) -> np.ndarray:
    """The GNN unit's neighbour aggregation ``out[i] = op(x[k] for k in neighbours(i))``.

    Parameters
    ----------
    adj : CsrMatrix, scipy.sparse matrix or dense array [nodes, nodes]
        Row ``i`` lists the neighbours of node ``i`` (values are ignored).
    x : array_like of bfloat16 [nodes, F]
    op : {"sum", "mean", "max"}

    Returns
    -------
    numpy.ndarray of uint32 [nodes, F]
        FP32 encodings.
    """
    if op not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {op!r}; accepted: {', '.join(AGGREGATIONS)}")
    csr = _as_csr(adj)
    xb = bf16_bits(np.asarray(x).astype(ml_dtypes.bfloat16))
    if xb.ndim != 2 or xb.shape[0] != csr.shape[1]:
        raise ValueError(f"Features must be a [{csr.shape[1]}, F] matrix for an adjacency "
                         f"of shape {csr.shape}, not {xb.shape}")
    x32 = xb.astype(np.uint32) << 16
    init = FP32_NEG_INF if op == "max" else 0
    acc = np.full((csr.shape[0], xb.shape[1]), init, dtype=np.uint32)
    step = fp32_max_bits if op == "max" else fp32_add_bits
    for rows, pos in _by_position(csr):
        acc[rows] = step(acc[rows], x32[csr.indices[pos], :])
    deg = csr.row_nnz
    if op == "mean":
        acc = bf16_mul_bits(fp32_to_bf16_bits(acc), recip_bf16_bits(deg)[:, None])
    acc[deg == 0] = 0
    return acc.astype(np.uint32)
