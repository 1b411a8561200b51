"""Bit-exact reference arithmetic of the dense units (DMU: BF16/FP32, LPU: INT8/INT32).

Written from IEEE 754-2019 and the ONNX operator definitions by integer manipulation of
the encodings (numpy ``uint16``/``uint32``/``int64`` arrays, vectorised); no numpy
floating-point operation computes a result here. The RTL in ``hw/arith`` must match these
functions bit for bit; they in turn match numpy float32 and ``ml_dtypes.bfloat16``
wherever those define the same result (see ``test_numerics.py``).

Floating-point semantics (shared by every function and by the hardware)
-----------------------------------------------------------------------
Formats
    BF16: 1 sign, 8 exponent (bias 127), 7 fraction bits. FP32: 1, 8 (bias 127), 23.
Subnormals: flush to zero, in and out (FTZ/DAZ)
    An input whose exponent field is 0 is read as a zero of the same sign. A result whose
    magnitude, after rounding to nearest even with unbounded exponent range, lies below
    the smallest normal 2**-126 is replaced by a zero carrying the sign of that result.
    (For every operation here the exact result is either at least 2**-126, or already a
    multiple of 2**-149, so "before" and "after" rounding tininess agree.)
Rounding
    Round to nearest, ties to even, everywhere a result is inexact. Overflow rounds to
    infinity of the result's sign (as RNE prescribes).
Infinities
    As IEEE 754: inf * finite-nonzero = inf, inf * 0 = NaN, inf + finite = inf,
    inf + (-inf) = NaN.
NaN
    Any NaN input gives NaN; every NaN produced is the canonical quiet NaN
    ``0x7FC00000`` (FP32) / ``0x7FC0`` (BF16): positive sign, no payload.
Signed zeros
    As IEEE 754 RNE: the sign of a product is the XOR of the signs; (+0) + (-0) = +0,
    (-0) + (-0) = -0, x + (-x) = +0 for finite x; a flushed result keeps its sign.

Integer semantics
-----------------
INT8 x INT8 products are exact (INT16); sums are accumulated in INT32 with two's
complement wraparound (modulo 2**32), so the accumulation order does not matter.
Requantisation is described in :func:`requantize`.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

__all__ = [
    "BF16_QNAN", "FP32_QNAN", "FP32_MIN_NORMAL_BITS",
    "bf16_bits", "fp32_bits", "bits_to_bf16", "bits_to_fp32",
    "bf16_mul", "bf16_mul_bits", "fp32_add", "fp32_add_bits",
    "fp32_to_bf16", "fp32_to_bf16_bits", "ftz_fp32_bits",
    "bf16_gemm", "int8_gemm", "requantize", "quantize_multiplier",
    "REQUANT_MULTIPLIER_BITS", "REQUANT_SHIFT_MAX", "REQUANT_SHIFT_BITS",
]

#: The canonical quiet NaN the hardware produces.
FP32_QNAN = 0x7FC00000
BF16_QNAN = 0x7FC0
FP32_MIN_NORMAL_BITS = 0x00800000

#: The fixed-point multiplier of :func:`requantize` is an unsigned 31-bit integer ...
REQUANT_MULTIPLIER_BITS = 31
#: ... and the right shift lies in 0..63.
REQUANT_SHIFT_MAX = 63
#: Bits of a field that holds the shift (the LPU's and CE's EXEC, the requantizer's input).
REQUANT_SHIFT_BITS = REQUANT_SHIFT_MAX.bit_length()

_U32 = np.uint32
_I64 = np.int64


# ---------------------------------------------------------------------------------------
# Encodings
# ---------------------------------------------------------------------------------------

def bf16_bits(x) -> np.ndarray:
    """The BF16 encodings (``uint16``) of a bfloat16 array."""
    return np.asarray(x, dtype=ml_dtypes.bfloat16).view(np.uint16)


def fp32_bits(x) -> np.ndarray:
    """The FP32 encodings (``uint32``) of a float32 array."""
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def bits_to_bf16(bits) -> np.ndarray:
    """A bfloat16 array from BF16 encodings."""
    return np.asarray(bits, dtype=np.uint16).view(ml_dtypes.bfloat16)


def bits_to_fp32(bits) -> np.ndarray:
    """A float32 array from FP32 encodings."""
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def _unpack32(bits: np.ndarray):
    """Sign, biased exponent and fraction of FP32 encodings as int64 arrays."""
    b = bits.astype(_I64)
    return (b >> 31) & 1, (b >> 23) & 0xFF, b & 0x7FFFFF


def _pack32(sign, exp, frac) -> np.ndarray:
    return ((sign << 31) | (exp << 23) | frac).astype(_U32)


def ftz_fp32_bits(bits) -> np.ndarray:
    """FP32 encodings with subnormals replaced by a zero of the same sign (the DAZ input rule)."""
    bits = np.asarray(bits, dtype=np.uint32)
    sub = (bits & 0x7F800000) == 0
    return np.where(sub, bits & 0x80000000, bits).astype(_U32)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of non-negative int64 values below 2**32 (0 for 0), by binary search."""
    x = x.copy()
    n = np.zeros(x.shape, dtype=_I64)
    for s in (16, 8, 4, 2, 1):
        big = x >= (1 << s)
        n += np.where(big, s, 0)
        x = np.where(big, x >> s, x)
    return n + (x > 0)


# ---------------------------------------------------------------------------------------
# BF16 x BF16 -> FP32 product
# ---------------------------------------------------------------------------------------

def bf16_mul_bits(a_bits, b_bits) -> np.ndarray:
    """BF16 x BF16 product on encodings: ``uint16`` in, FP32 ``uint32`` out.

    The product of two 8-bit significands has at most 16 bits, so it is exact in FP32
    unless it overflows (-> infinity) or falls below 2**-126 (-> signed zero, FTZ).
    """
    a = np.asarray(a_bits, dtype=np.uint16).astype(_I64)
    b = np.asarray(b_bits, dtype=np.uint16).astype(_I64)
    a, b = np.broadcast_arrays(a, b)
    sa, ea, fa = (a >> 15) & 1, (a >> 7) & 0xFF, a & 0x7F
    sb, eb, fb = (b >> 15) & 1, (b >> 7) & 0xFF, b & 0x7F
    sign = sa ^ sb
    zero_a, zero_b = ea == 0, eb == 0            # zeros and (flushed) subnormals
    inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
    nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)

    prod = (fa | 0x80) * (fb | 0x80)             # in [2**14, 2**16)
    hi = prod >> 15                              # 1 if the product is in [2, 4)
    exp = ea + eb - 127 + hi
    frac = np.where(hi == 1, (prod & 0x7FFF) << 8, (prod & 0x3FFF) << 9)
    out = _pack32(sign, np.clip(exp, 0, 0xFF), frac)
    out = np.where(exp >= 0xFF, _pack32(sign, 0xFF, 0), out)          # overflow -> inf
    out = np.where(exp <= 0, _pack32(sign, 0, 0), out)                # underflow -> FTZ
    out = np.where(zero_a | zero_b, _pack32(sign, 0, 0), out)
    out = np.where(inf_a | inf_b, _pack32(sign, 0xFF, 0), out)
    invalid = nan_a | nan_b | (inf_a & zero_b) | (inf_b & zero_a)
    return np.where(invalid, FP32_QNAN, out).astype(_U32)


def bf16_mul(a, b) -> np.ndarray:
    """BF16 x BF16 product as FP32 (exact for normal results; FTZ, canonical NaN).

    Parameters
    ----------
    a, b : array_like of ml_dtypes.bfloat16
        Broadcast together.

    Returns
    -------
    numpy.ndarray of float32
    """
    return bits_to_fp32(bf16_mul_bits(bf16_bits(a), bf16_bits(b)))


# ---------------------------------------------------------------------------------------
# FP32 addition, round to nearest even
# ---------------------------------------------------------------------------------------

def fp32_add_bits(a_bits, b_bits) -> np.ndarray:
    """FP32 + FP32 on encodings (``uint32``), RNE, FTZ in and out, canonical NaN.

    Classic guard/round/sticky algorithm: the smaller operand's 24-bit significand is
    aligned with three extra bits (the last one sticky), added or subtracted, normalised
    and rounded to nearest even.
    """
    a = np.asarray(a_bits, dtype=np.uint32)
    b = np.asarray(b_bits, dtype=np.uint32)
    a, b = np.broadcast_arrays(a, b)
    sa, ea, fa = _unpack32(a)
    sb, eb, fb = _unpack32(b)
    nan_a, nan_b = (ea == 0xFF) & (fa != 0), (eb == 0xFF) & (fb != 0)
    inf_a, inf_b = (ea == 0xFF) & (fa == 0), (eb == 0xFF) & (fb == 0)
    zero_a, zero_b = ea == 0, eb == 0

    # Order by magnitude (exponent, then fraction): x is the larger.
    mag_a, mag_b = (ea << 23) | fa, (eb << 23) | fb
    swap = mag_b > mag_a
    sx, ex, mx = np.where(swap, sb, sa), np.where(swap, eb, ea), np.where(swap, fb, fa) | (1 << 23)
    sy, ey, my = np.where(swap, sa, sb), np.where(swap, ea, eb), np.where(swap, fa, fb) | (1 << 23)
    my = np.where(np.where(swap, zero_a, zero_b), 0, my)

    # Align: 24-bit significand + 3 bits (guard, round, sticky).
    mx3, my3 = mx << 3, my << 3
    d = np.minimum(ex - ey, 27)
    lost = (my3 & ((np.int64(1) << d) - 1)) != 0
    my3 = (my3 >> d) | lost
    sub = sx != sy
    s = np.where(sub, mx3 - my3, mx3 + my3)      # < 2**28, >= 0 since x is the larger

    # Normalise so the leading one sits at bit 26.
    n = _bit_length(s)
    right = n == 28                              # carry out: shift right by one, keep sticky
    s = np.where(right, (s >> 1) | (s & 1), s)
    exp = np.where(right, ex + 1, ex)
    left = np.where(n > 0, np.maximum(27 - n, 0), 0)
    s = s << left
    exp = exp - left

    # Round to nearest even on the three low bits.
    keep, low = s >> 3, s & 7
    up = (low > 4) | ((low == 4) & ((keep & 1) == 1))
    keep = keep + up
    carry = keep >> 24
    keep = np.where(carry == 1, keep >> 1, keep)
    exp = exp + carry

    out = _pack32(sx, np.clip(exp, 0, 0xFF), keep & 0x7FFFFF)
    out = np.where(exp >= 0xFF, _pack32(sx, 0xFF, 0), out)      # overflow -> inf
    out = np.where(exp <= 0, _pack32(sx, 0, 0), out)            # tiny -> signed zero (FTZ)
    out = np.where(s == 0, 0, out)                              # exact cancellation -> +0
    # Zero operands: x + 0 = x (x with FTZ applied); (-0) + (-0) = -0, other zero sums +0.
    only_b = zero_a & ~zero_b
    only_a = zero_b & ~zero_a
    out = np.where(only_b, _pack32(sb, eb, fb), out)
    out = np.where(only_a, _pack32(sa, ea, fa), out)
    out = np.where(zero_a & zero_b, _pack32(sa & sb, 0, 0), out)
    out = np.where(inf_a | inf_b, _pack32(np.where(inf_a, sa, sb), 0xFF, 0), out)
    invalid = nan_a | nan_b | (inf_a & inf_b & (sa != sb))
    return np.where(invalid, FP32_QNAN, out).astype(_U32)


def fp32_add(a, b) -> np.ndarray:
    """FP32 + FP32, round to nearest even, FTZ in and out, canonical NaN.

    Parameters
    ----------
    a, b : array_like of float32
        Broadcast together.

    Returns
    -------
    numpy.ndarray of float32
    """
    return bits_to_fp32(fp32_add_bits(fp32_bits(a), fp32_bits(b)))


# ---------------------------------------------------------------------------------------
# FP32 -> BF16, round to nearest even
# ---------------------------------------------------------------------------------------

def fp32_to_bf16_bits(x_bits) -> np.ndarray:
    """FP32 encodings -> BF16 encodings (``uint16``), RNE, FTZ, canonical NaN.

    Dropping 16 fraction bits with a round-half-even increment; a carry out of the
    fraction correctly bumps the exponent (up to infinity).
    """
    x = np.asarray(x_bits, dtype=np.uint32).astype(_I64)
    exp, frac = (x >> 23) & 0xFF, x & 0x7FFFFF
    keep, low = x >> 16, x & 0xFFFF
    up = (low > 0x8000) | ((low == 0x8000) & ((keep & 1) == 1))
    out = keep + up
    out = np.where(exp == 0, x >> 16 & 0x8000, out)                  # FTZ in
    out = np.where(exp == 0xFF, x >> 16, out)                        # inf stays inf
    out = np.where((exp == 0xFF) & (frac != 0), BF16_QNAN, out)
    return out.astype(np.uint16)


def fp32_to_bf16(x) -> np.ndarray:
    """FP32 -> BF16, round to nearest even, FTZ, canonical NaN.

    Returns
    -------
    numpy.ndarray of ml_dtypes.bfloat16
    """
    return bits_to_bf16(fp32_to_bf16_bits(fp32_bits(x)))


# ---------------------------------------------------------------------------------------
# GEMMs
# ---------------------------------------------------------------------------------------

def _check_gemm(a, b, c, adt, cdt, name):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != adt or b.dtype != adt:
        raise TypeError(f"{name} operands must be {np.dtype(adt).name} arrays, "
                        f"not {a.dtype.name} and {b.dtype.name}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"{name} needs a[M,K] and b[K,N], not shapes {a.shape} and {b.shape}")
    shape = (a.shape[0], b.shape[1])
    if c is not None:
        c = np.asarray(c)
        if c.dtype != cdt:
            raise TypeError(f"{name} accumulator must be a {np.dtype(cdt).name} array, "
                            f"not {c.dtype.name}")
        if c.shape != shape:
            raise ValueError(f"{name} accumulator must have shape {shape}, not {c.shape}")
    return a, b, c


def bf16_gemm(a, b, c=None) -> np.ndarray:
    """The DMU's GEMM: ``C[M,N] (+)= A[M,K] x B[K,N]``, BF16 operands, FP32 accumulation.

    Accumulation order (that of the output-stationary array, one FP32 accumulator per
    output element): ``acc = c[i,j]`` (FTZ applied) or ``+0.0`` when ``c`` is None; then
    for k = 0, 1, ..., K-1 in ascending order ``acc = fp32_add(acc, bf16_mul(a[i,k],
    b[k,j]))``. Every step rounds (RNE) and flushes subnormals. Consequently a GEMM split
    along K into consecutive chunks, each accumulating onto the previous result, gives
    exactly the unsplit result.

    Parameters
    ----------
    a : ml_dtypes.bfloat16 array [M, K]
    b : ml_dtypes.bfloat16 array [K, N]
    c : float32 array [M, N], optional

    Returns
    -------
    numpy.ndarray of float32, [M, N]
    """
    a, b, c = _check_gemm(a, b, c, ml_dtypes.bfloat16, np.float32, "bf16_gemm")
    ab, bb = bf16_bits(a), bf16_bits(b)
    m, n = a.shape[0], b.shape[1]
    acc = np.zeros((m, n), dtype=_U32) if c is None else ftz_fp32_bits(fp32_bits(c))
    for k in range(a.shape[1]):
        acc = fp32_add_bits(acc, bf16_mul_bits(ab[:, k, None], bb[None, k, :]))
    return bits_to_fp32(acc)


def int8_gemm(a, b, c=None) -> np.ndarray:
    """The LPU's GEMM: ``C[M,N] (+)= A[M,K] x B[K,N]``, INT8 operands, INT32 accumulation.

    Products are exact; the sum (including ``c``) wraps modulo 2**32 (two's complement),
    so the result does not depend on the accumulation order.

    Returns
    -------
    numpy.ndarray of int32, [M, N]
    """
    a, b, c = _check_gemm(a, b, c, np.int8, np.int32, "int8_gemm")
    acc = a.astype(_I64) @ b.astype(_I64)        # |sum| < 2**14 * K: exact in int64
    if c is not None:
        acc = acc + c.astype(_I64)
    return (acc & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


# ---------------------------------------------------------------------------------------
# Requantisation INT32 -> INT8
# ---------------------------------------------------------------------------------------

def requantize(acc, multiplier: int, shift: int, zero_point: int) -> np.ndarray:
    """INT32 -> INT8: ``saturate(round_half_even(acc * multiplier / 2**shift) + zero_point)``.

    This is ONNX QuantizeLinear (``saturate(round(x / y_scale) + y_zero_point)``, round half
    to even, saturate to [-128, 127]) applied to ``x = acc * real_scale``, with
    ``real_scale`` approximated by ``multiplier * 2**-shift`` (:func:`quantize_multiplier`).
    For QLinearMatMul, ``acc`` is the INT32 sum of ``(a - a_zp)(b - b_zp)`` and
    ``real_scale = a_scale * b_scale / y_scale``. The product ``acc * multiplier`` (at most
    63 bits signed) is exact; the division by ``2**shift`` rounds half to even.

    Parameters
    ----------
    acc : int32 array
    multiplier : int
        0 <= multiplier < 2**31.
    shift : int
        0 <= shift <= 63.
    zero_point : int
        -128 <= zero_point <= 127.

    Returns
    -------
    numpy.ndarray of int8
    """
    acc = np.asarray(acc)
    if acc.dtype != np.int32:
        raise TypeError(f"requantize takes an int32 array, not {acc.dtype.name}")
    for name, v, lo, hi in (("multiplier", multiplier, 0, (1 << REQUANT_MULTIPLIER_BITS) - 1),
                            ("shift", shift, 0, REQUANT_SHIFT_MAX),
                            ("zero_point", zero_point, -128, 127)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"Requantization {name} must be an integer, not {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"Requantization {name} must be in {lo}..{hi}, not {v!r}")
    prod = acc.astype(_I64) * _I64(multiplier)   # |prod| < 2**62
    if shift == 0:
        q = prod
    else:
        q = prod >> shift                        # floor
        rem = prod & _I64((1 << shift) - 1)
        half = _I64(1) << (shift - 1)
        q = q + ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    return np.clip(q + zero_point, -128, 127).astype(np.int8)


def quantize_multiplier(real_scale: float) -> tuple[int, int]:
    """Fixed-point form ``(multiplier, shift)`` of a positive real scale for :func:`requantize`.

    ``multiplier`` is ``round(real_scale * 2**shift)`` with the largest ``shift`` <= 63 that
    keeps it below 2**31 (so it lies in [2**30, 2**31) when the scale is within
    [2**-33, 2**30]); the relative error of ``multiplier * 2**-shift`` is then at most
    2**-31.

    Error bound against exact QuantizeLinear: with ``y = acc * real_scale`` and
    ``y' = acc * multiplier * 2**-shift``, ``|y - y'| <= |y| * 2**-31``; for any output
    that does not saturate (``|y| < 2**9``) that is below ``2**-22``. The INT8 results
    therefore differ from exact QuantizeLinear by at most 1, and are equal unless ``y``
    lies within ``|y| * 2**-31`` of a rounding boundary (a half-integer).

    Raises
    ------
    ValueError
        For a scale that is not a finite positive number or needs a multiplier beyond
        31 bits even at shift 0 (``real_scale >= 2**31``), or rounds to 0 at shift 63.
    """
    if isinstance(real_scale, bool) or not isinstance(real_scale, (int, float, np.floating)):
        raise TypeError(f"Requantization scale must be a real number, not {real_scale!r}")
    real_scale = float(real_scale)
    if not (math.isfinite(real_scale) and real_scale > 0):
        raise ValueError(f"Requantization scale must be a finite positive number, not {real_scale!r}")
    mant, exp = math.frexp(real_scale)           # real = mant * 2**exp, mant in [0.5, 1)
    shift = REQUANT_MULTIPLIER_BITS - exp        # multiplier = mant * 2**31 in [2**30, 2**31]
    if shift < 0:
        raise ValueError(f"Requantization scale must be below 2**31, not {real_scale!r}")
    shift = min(shift, REQUANT_SHIFT_MAX)
    multiplier = round(real_scale * 2.0 ** shift)  # exact scaling by a power of two
    if multiplier >= 1 << REQUANT_MULTIPLIER_BITS:   # mant rounded up to 1.0
        multiplier, shift = multiplier >> 1, shift - 1
        if shift < 0:
            raise ValueError(f"Requantization scale must be below 2**31, not {real_scale!r}")
    if multiplier == 0:
        raise ValueError(f"Requantization scale {real_scale!r} is too small: it rounds to 0 "
                         f"at the largest shift {REQUANT_SHIFT_MAX}")
    return multiplier, shift
