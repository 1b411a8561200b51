"""Bit-exact model of the activation unit (AFU): the approximation the hardware computes.

BF16 sigmoid, tanh and GELU (piecewise-linear table)
----------------------------------------------------
All three are evaluated on ``a = |x|`` and reflected:
``tanh(x) = sign(x) * T(a)``, ``sigmoid(x) = S(a)`` or ``1 - S(a)``,
``gelu(x) = G(a)`` or ``G(a) - a`` (since ``gelu(-a) = gelu(a) - a``).

1. ``a`` is converted to unsigned fixed point with :data:`FRAC_BITS` = 16 fractional
   bits, truncating (subnormal inputs are zero); ``a >= 8`` saturates to ``8 - 2**-16``
   (GELU instead returns ``x`` for ``x >= 8`` and ``-0`` for ``x <= -8``).
2. ``[0, 8)`` is cut into :data:`SEGMENTS` = 256 uniform segments of width 1/32: the
   index is the top 8 bits of ``a`` (3 integer + 5 fraction), ``t`` the low 11 bits.
3. Each function has a 257-point table ``knot[i] = rne(f(i / 32) * 2**16)`` (float64
   ``f``), stored in the ROM as ``c0[i] = knot[i]`` (20 bits) and
   ``d[i] = knot[i + 1] - knot[i]`` (12 bits, never negative: the three functions increase
   on ``[0, 8]``). The value is ``y = c0[i] + floor(d[i] * t / 2**11)``: linear
   interpolation between exact-rounded knots. Because ``d >= 0`` and interpolation hits
   the next knot, ``y`` never decreases with ``a``, so sigmoid and tanh are monotone over
   all inputs, and GELU for ``x >= -0.75`` (where ``d / 2**11 < 1``).
4. The fixed-point result (sign, magnitude with 16 fractional bits) is rounded to BF16,
   round to nearest even. NaN in gives the canonical NaN ``0x7FC0``.

Error budget (checked over every BF16 in [-8, 8] by the tests): interpolation
``h**2 / 8 * max|f''|`` <= 1e-4, knot and input quantization <= 3 * 2**-17, final rounding
half a BF16 ulp; within ``max(1e-3, 2 ulp)`` of the float64 function.

BF16 ReLU, LeakyReLU, add and multiply
--------------------------------------
ReLU: negative (sign bit set, not NaN) becomes ``+0``. LeakyReLU: ``x`` if not negative,
else ``bf16(x * alpha)``. Add: ``bf16(fp32_add(a, b))``; multiply: ``bf16(bf16_mul(a, b))``
with :mod:`accelpool.spec.golden.numerics` (round to nearest even, flush-to-zero); a BF16 sum is
exact in FP32 or far from a BF16 tie, so the double rounding equals one rounding.

INT8
----
ReLU is ``max(x, zero_point)``. LeakyReLU, sigmoid, tanh and GELU are a 256-entry table
(:func:`int8_table`, computed by the compiler from the scales and zero points, placed in
the scratchpad and named by the EXEC's ``table_addr``): ``y = table[x & 0xFF]``; UINT8
tensors use the same lookup with an unsigned table. Add is
``requantize((a - a_zp) * a_mult + (b - b_zp) * b_mult, multiplier, shift, y_zp)``, multiply
``requantize((a - a_zp) * (b - b_zp), multiplier, shift, y_zp)``.

DEQUANTIZE (INT8 in, BF16 out)
------------------------------
``y = fp32_to_bf16(bf16_mul(bf16(q - zp), scale_bf16))`` (:func:`int8_dequantize`), with
``zp`` the EXEC's ``a_zero_point`` and ``scale_bf16`` its ``alpha``: the scale rounded to
BF16 (``float32(scale)`` to nearest even, :func:`dequantize_scale_bits`). ``d = q - zp``
is an integer in [-255, 255], at most 8 significant bits, so ``bf16(d)`` is exact; the
product of two BF16 significands (8 bits each) is exact in FP32 (unless it overflows to
infinity or falls below 2**-126, flushed to a signed zero), so the result is the BF16
rounding (nearest even) of the exact ``d * scale_bf16``. ``d = 0`` gives ``+0``.

Difference from ONNX DequantizeLinear, ``(q - zp) * scale`` in float32: the scale is
rounded to BF16 first (relative error at most 2**-8, BF16's unit roundoff), and the
result is rounded to BF16 (another 2**-8): together within ``2**-7 * |y|`` of
onnxruntime's float32 result.

QUANTIZE (BF16 in, INT8 out)
----------------------------
``q = saturate(round_half_even(x * multiplier * 2**-shift) + zp)`` (:func:`bf16_quantize`)
with ``zp`` the EXEC's ``y_zero_point`` and ``(multiplier, shift)`` the fixed-point form of
``1 / scale`` (:func:`quantize_args`, :func:`accelpool.spec.golden.numerics.quantize_multiplier`:
``multiplier`` in [2**30, 2**31), relative error at most 2**-31). A finite nonzero BF16
``x = (-1)**s * m * 2**(e - 134)`` (``m`` the 8-bit significand with its hidden one,
``e`` the biased exponent) makes this exactly the requantizer's arithmetic
(:func:`accelpool.spec.golden.numerics.requantize`, the ``accelpool.hw.arith.requant`` block) on
``acc = (-1)**s * m`` with the shift ``t = shift + 134 - e`` clamped to [0, 63]. With a
normalized multiplier the clamp never changes the result: ``t < 0`` means
``|x * multiplier * 2**-shift| >= m * multiplier >= 2**37``, which saturates anyway, and
``t > 63`` leaves less than ``2**39 / 2**64``, which rounds to 0. Zeros and subnormals
(read as zero, DAZ) and NaN give ``zp``; infinities saturate by their sign.

Why the requantizer rather than ``bf16(1 / scale)``: ``x * bf16(1/scale)`` carries the
BF16 rounding of the inverse scale (2**-8 relative), up to half an INT8 step at the top
of the range, so one result in a few hundred would differ from ONNX; the 31-bit
multiplier differs from exact ``round(x / scale)`` only where ``x / scale`` lies within
``2**-22`` of a half-integer, and the hardware reuses the per-byte requantizers of INT8
ADD/MUL (one per lane), so it costs a mux, not a multiplier.

Difference from ONNX QuantizeLinear, ``saturate(round(x / scale) + zp)`` in float32: the
input is BF16 here (it comes from a BF16 tensor), and the division is the 31-bit
fixed-point product: at most one INT8 step apart, and only at ties of the float32
division.
"""

from __future__ import annotations

import math
from functools import lru_cache

import ml_dtypes
import numpy as np
from scipy.special import erf

from .numerics import (bf16_mul_bits, fp32_to_bf16_bits, fp32_add_bits, fp32_to_bf16,
                       quantize_multiplier, requantize)

__all__ = ["FRAC_BITS", "SEG_BITS", "SEGMENTS", "T_BITS", "TABLE_FUNCS", "reference",
           "bf16_table", "bf16_activation", "bf16_relu", "bf16_leaky_relu", "bf16_add",
           "bf16_mul", "leaky_relu_alpha_bits", "fixed_to_bf16", "bf16_to_fixed",
           "int8_table", "int8_lut", "int8_relu", "int8_add", "int8_mul", "CANONICAL_NAN",
           "run_exec", "dequantize_scale_bits", "int8_dequantize", "quantize_args",
           "bf16_quantize"]

FRAC_BITS = 16          # fixed-point fraction bits of the input and of the table values
SEG_BITS = 5            # segments per unit: width 1/32
INT_BITS = 3            # [0, 8)
SEGMENTS = 1 << (INT_BITS + SEG_BITS)    # 256
T_BITS = FRAC_BITS - SEG_BITS            # 11 interpolation bits
C0_BITS = 20
D_BITS = 12
CANONICAL_NAN = 0x7FC0
TABLE_FUNCS = ("sigmoid", "tanh", "gelu")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


_REF = {"sigmoid": _sigmoid, "tanh": np.tanh, "gelu": _gelu,
        "relu": lambda x: np.maximum(x, 0.0)}


def reference(func: str, x) -> np.ndarray:
    """The float64 function (ONNX definitions; GELU exact, ``approximate="none"``)."""
    try:
        f = _REF[func]
    except KeyError:
        raise ValueError(f"Unknown activation {func!r}; accepted: {', '.join(_REF)}") from None
    return f(np.asarray(x, np.float64))


@lru_cache(maxsize=None)
def bf16_table(func: str) -> tuple[np.ndarray, np.ndarray]:
    """ROM contents ``(c0, d)`` (256 entries each, int64) of ``func`` in TABLE_FUNCS."""
    if func not in TABLE_FUNCS:
        raise ValueError(f"No BF16 table for {func!r}; accepted: {', '.join(TABLE_FUNCS)}")
    xs = np.arange(SEGMENTS + 1, dtype=np.float64) / (1 << SEG_BITS)
    knots = np.rint(reference(func, xs) * (1 << FRAC_BITS)).astype(np.int64)  # rint: half-even
    c0, d = knots[:-1], np.diff(knots)
    assert (d >= 0).all() and d.max() < (1 << D_BITS) and c0.max() < (1 << C0_BITS)
    c0.setflags(write=False)
    d.setflags(write=False)
    return c0, d


def _u16(bits) -> np.ndarray:
    b = np.asarray(bits)
    if b.dtype == ml_dtypes.bfloat16:
        b = b.view(np.uint16)
    return b.astype(np.int64) & 0xFFFF


def bf16_to_fixed(bits) -> np.ndarray:
    """``|x|`` of BF16 encodings as fixed point with FRAC_BITS fraction bits, truncated,
    saturated to ``8 * 2**16 - 1``; subnormals and zero give 0."""
    b = _u16(bits)
    e = (b >> 7) & 0xFF
    mant = 128 | (b & 0x7F)
    sh = e - (127 + 7 - FRAC_BITS)          # value = mant * 2**(e - 134); fixed = mant * 2**(e - 118)
    left = mant << np.clip(sh, 0, 11)
    right = mant >> np.clip(-sh, 0, 63)
    fixed = np.where(sh >= 0, left, right)
    fixed = np.where(e == 0, 0, fixed)
    return np.where(e >= 127 + INT_BITS, (8 << FRAC_BITS) - 1, fixed)


def fixed_to_bf16(sign, mag) -> np.ndarray:
    """Sign and fixed-point magnitude (FRAC_BITS fraction bits, < 2**24) to BF16, RNE."""
    mag = np.asarray(mag, np.int64)
    sign = np.asarray(sign, np.int64)
    p = np.zeros_like(mag)
    for k in range(1, 25):                  # bit length - 1, exact for mag < 2**24
        p = np.where(mag >> k != 0, k, p)
    drop = np.maximum(p - 7, 0)
    q = mag >> drop
    rem = mag & ((np.int64(1) << drop) - 1)
    half = np.where(drop > 0, np.int64(1) << np.maximum(drop - 1, 0), 0)
    up = (drop > 0) & ((rem > half) | ((rem == half) & (q & 1 == 1)))
    q = q + up
    carry = q >> 8                          # rounded up to 2**8: renormalize
    q = np.where(carry != 0, q >> 1, q << np.maximum(7 - p, 0))
    p = p + carry
    exp = p - FRAC_BITS + 127
    out = (sign << 15) | (exp << 7) | (q & 0x7F)
    return np.where(mag == 0, sign << 15, out).astype(np.uint16)


def _interp(func: str, a: np.ndarray) -> np.ndarray:
    c0, d = bf16_table(func)
    idx = a >> T_BITS
    t = a & ((1 << T_BITS) - 1)
    return c0[idx] + ((d[idx] * t) >> T_BITS)


def bf16_activation(func: str, bits) -> np.ndarray:
    """The AFU's BF16 sigmoid / tanh / gelu on BF16 encodings (uint16 in, uint16 out)."""
    b = _u16(bits)
    sign = b >> 15
    e = (b >> 7) & 0xFF
    nan = (e == 0xFF) & ((b & 0x7F) != 0)
    a = bf16_to_fixed(b)
    y = _interp(func, a)
    if func == "tanh":
        out = fixed_to_bf16(sign, y)
    elif func == "sigmoid":
        out = fixed_to_bf16(np.zeros_like(sign), np.where(sign == 1, (1 << FRAC_BITS) - y, y))
    elif func == "gelu":
        neg = np.maximum(a - y, 0)
        out = fixed_to_bf16(sign, np.where(sign == 1, neg, y))
        big = e >= 127 + INT_BITS
        out = np.where(big, np.where(sign == 1, 0x8000, b), out)
    else:
        raise ValueError(f"No BF16 table for {func!r}; accepted: {', '.join(TABLE_FUNCS)}")
    return np.where(nan, CANONICAL_NAN, out).astype(np.uint16)


def bf16_relu(bits) -> np.ndarray:
    """ReLU on BF16 encodings: negatives (not NaN) become +0, NaN becomes the canonical NaN."""
    b = _u16(bits)
    nan = ((b >> 7) & 0xFF == 0xFF) & ((b & 0x7F) != 0)
    return np.where(nan, CANONICAL_NAN, np.where(b >> 15 == 1, 0, b)).astype(np.uint16)


def bf16_mul(a_bits, b_bits) -> np.ndarray:
    """BF16 x BF16 rounded to BF16 (RNE, FTZ), via the shared numerics."""

    return fp32_to_bf16_bits(bf16_mul_bits(_u16(a_bits).astype(np.uint16),
                                           _u16(b_bits).astype(np.uint16))).astype(np.uint16)


def bf16_add(a_bits, b_bits) -> np.ndarray:
    """BF16 + BF16 rounded to BF16 (RNE, FTZ), via the shared numerics."""

    a32 = (_u16(a_bits) << 16).astype(np.uint32)
    b32 = (_u16(b_bits) << 16).astype(np.uint32)
    return fp32_to_bf16_bits(fp32_add_bits(a32, b32)).astype(np.uint16)


def bf16_leaky_relu(bits, alpha_bits: int) -> np.ndarray:
    """LeakyReLU: ``x`` where the sign bit is clear, else ``bf16(x * alpha)``."""
    b = _u16(bits)
    prod = bf16_mul(b, np.full_like(b, alpha_bits))
    nan = ((b >> 7) & 0xFF == 0xFF) & ((b & 0x7F) != 0)
    return np.where(nan, CANONICAL_NAN, np.where(b >> 15 == 1, prod, b)).astype(np.uint16)


def leaky_relu_alpha_bits(alpha: float) -> int:
    """The AFU's ``alpha`` argument of a LeakyReLU slope: ``float32(alpha)`` rounded to BF16
    (nearest even), as its 16-bit encoding."""

    return int(fp32_to_bf16(np.float32(alpha)).view(np.uint16))


def int8_table(func: str, in_scale: float, in_zero_point: int, out_scale: float,
               out_zero_point: int, alpha: float = 0.01, unsigned: bool = False) -> np.ndarray:
    """The 256-entry table: ``table[q & 0xFF] = sat(rne(f((q - zp_in) * s_in) / s_out) + zp_out)``.

    ``func`` is ``"sigmoid"``, ``"tanh"``, ``"gelu"`` or ``"leaky_relu"`` (with ``alpha``;
    ``alpha = 0`` is ReLU). INT8 in and out, or UINT8 in and out with ``unsigned`` (the
    unit only indexes by the input byte, so both work on the same hardware).
    """
    lo = 0 if unsigned else -128
    q = np.arange(lo, lo + 256, dtype=np.float64)
    x = (q - in_zero_point) * in_scale
    if func == "leaky_relu":
        fx = np.where(x >= 0, x, x * alpha)
    else:
        fx = reference(func, x)
    dt = np.uint8 if unsigned else np.int8
    y = np.clip(np.rint(fx / out_scale) + out_zero_point, lo, lo + 255).astype(dt)
    table = np.zeros(256, dt)
    table[(np.arange(lo, lo + 256) & 0xFF)] = y
    return table


def int8_lut(x, table) -> np.ndarray:
    """Apply a 256-entry table to INT8 (or UINT8) values: ``table[x & 0xFF]``."""
    x = np.asarray(x)
    return np.asarray(table)[x.astype(np.int64) & 0xFF]


def int8_relu(x, zero_point: int = 0) -> np.ndarray:
    """INT8 ReLU in the quantized domain: ``max(x, zero_point)``."""
    return np.maximum(np.asarray(x, np.int8), np.int8(zero_point)).astype(np.int8)


def int8_add(a, b, *, a_zero_point=0, b_zero_point=0, a_mult=1, b_mult=1, multiplier,
             shift, y_zero_point=0) -> np.ndarray:
    """``requantize((a - a_zp) * a_mult + (b - b_zp) * b_mult, multiplier, shift, y_zp)``."""

    acc = (np.asarray(a, np.int64) - a_zero_point) * a_mult + \
        (np.asarray(b, np.int64) - b_zero_point) * b_mult
    return requantize(acc.astype(np.int32), multiplier, shift, y_zero_point)


def int8_mul(a, b, *, a_zero_point=0, b_zero_point=0, multiplier, shift,
             y_zero_point=0) -> np.ndarray:
    """``requantize((a - a_zp) * (b - b_zp), multiplier, shift, y_zp)``."""

    acc = (np.asarray(a, np.int64) - a_zero_point) * (np.asarray(b, np.int64) - b_zero_point)
    return requantize(acc.astype(np.int32), multiplier, shift, y_zero_point)


def dequantize_scale_bits(scale: float) -> int:
    """The AFU's ``alpha`` argument of a DEQUANTIZE scale: ``float32(scale)`` rounded to
    BF16 (nearest even), as its 16-bit encoding.

    Raises
    ------
    ValueError
        If the scale is not a positive number whose BF16 rounding is a normal finite BF16.
    """

    s = float(scale)
    with np.errstate(over="ignore"):
        bits = int(fp32_to_bf16(np.float32(s)).view(np.uint16)) if math.isfinite(s) else 0
    e = (bits >> 7) & 0xFF
    if not s > 0 or bits >> 15 or e == 0 or e == 0xFF:
        raise ValueError(f"Dequantize scale must be a positive number whose BF16 rounding is "
                         f"normal and finite (2**-126 to about 3.39e38), not {scale!r}")
    return bits


def int8_dequantize(q, zero_point: int, scale_bits: int) -> np.ndarray:
    """The AFU's DEQUANTIZE: ``fp32_to_bf16(bf16_mul(bf16(q - zp), scale_bf16))`` on INT8
    values ``q``, BF16 encodings (uint16) out (module docstring)."""

    zp = int(zero_point)
    if not -128 <= zp <= 127:
        raise ValueError(f"Dequantize zero point must be an INT8 (-128..127), not {zero_point!r}")
    d = np.asarray(q, np.int8).astype(np.int64) - zp         # exact in [-255, 255]
    d_bits = fp32_to_bf16_bits(d.astype(np.float32).view(np.uint32))   # exact: <= 8 bits
    prod = bf16_mul_bits(d_bits, np.full_like(d_bits, int(scale_bits) & 0xFFFF))
    return fp32_to_bf16_bits(prod).astype(np.uint16)


def quantize_args(scale: float) -> tuple[int, int]:
    """``(multiplier, shift)`` of a QUANTIZE scale: the fixed-point form of ``1 / scale``
    (:func:`accelpool.spec.golden.numerics.quantize_multiplier`), normalized (multiplier at least
    2**30).

    Raises
    ------
    ValueError
        If the scale is not a finite positive number with ``1 / scale`` in the normalized
        range of the fixed point (scale from about 2**-30 to 2**33).
    """

    s = float(scale)
    ok = math.isfinite(s) and s > 0
    if ok:
        try:
            mult, shift = quantize_multiplier(1.0 / s)
        except (ValueError, OverflowError, ZeroDivisionError):
            ok = False
    if not ok or mult < 1 << 30:
        raise ValueError(f"Quantize scale must be a finite positive number from 2**-30 to "
                         f"2**33 (its inverse a normalized 31-bit multiplier), not {scale!r}")
    return int(mult), int(shift)


def bf16_quantize(bits, multiplier: int, shift: int, zero_point: int) -> np.ndarray:
    """The AFU's QUANTIZE on BF16 encodings: ``saturate(rne(x * multiplier * 2**-shift) +
    zero_point)`` to INT8, computed as the requantizer on the significand with the shift
    ``clamp(shift + 134 - e, 0, 63)`` (module docstring); zeros, subnormals and NaN give
    the zero point, infinities saturate."""

    b = _u16(bits)
    sign, e, frac = b >> 15, (b >> 7) & 0xFF, b & 0x7F
    acc = np.where(sign == 1, -(frac | 0x80), frac | 0x80)
    acc = np.where(e == 0, 0, acc).astype(np.int32)
    t = np.clip(int(shift) + 134 - e, 0, 63)
    out = np.zeros(b.shape, np.int8)
    for tt in np.unique(t):
        sel = t == tt
        out[sel] = requantize(acc[sel], int(multiplier), int(tt), int(zero_point))
    out = np.where((e == 0xFF) & (frac == 0), np.where(sign == 1, -128, 127), out)
    out = np.where((e == 0xFF) & (frac != 0), int(zero_point), out)
    return out.astype(np.int8)


def run_exec(func, args, a, b=None, table=None) -> np.ndarray:
    """The AFU's result for one EXEC, as the golden executor runs it.

    Parameters
    ----------
    func : str or ``accelpool.spec.units.afu.AfuFunc``
        relu, leaky_relu, sigmoid, tanh, gelu, add, mul, dequantize, quantize.
    args : mapping
        The EXEC's argument fields (``accelpool.spec.units.afu.AfuArgs``; addresses and count are ignored;
        so is ``dtype`` for dequantize (INT8 in, BF16 out) and quantize (BF16 in, INT8 out)).
    a, b : numpy arrays
        Operands: BF16 encodings (uint16) or INT8 values.
    table : numpy array, optional
        The 256-entry table of INT8 LEAKY_RELU / SIGMOID / TANH / GELU.
    """
    f = (func.name if hasattr(func, "name") else str(func)).lower()
    dt = args.get("dtype", "bf16")
    dt = (dt.name if hasattr(dt, "name") else str(dt)).lower()
    g = lambda k: int(args.get(k, 0))   # noqa: E731
    if f == "dequantize":
        return int8_dequantize(a, g("a_zero_point"), g("alpha"))
    if f == "quantize":
        return bf16_quantize(a, g("multiplier"), g("shift"), g("y_zero_point"))
    if dt == "bf16":
        if f in TABLE_FUNCS:
            return bf16_activation(f, a)
        return {"relu": lambda: bf16_relu(a), "leaky_relu": lambda: bf16_leaky_relu(a, g("alpha")),
                "add": lambda: bf16_add(a, b), "mul": lambda: bf16_mul(a, b)}[f]()
    if f == "relu":
        return int8_relu(a, g("y_zero_point"))
    q = dict(a_zero_point=g("a_zero_point"), b_zero_point=g("b_zero_point"),
             multiplier=g("multiplier"), shift=g("shift"), y_zero_point=g("y_zero_point"))
    if f == "add":
        return int8_add(a, b, a_mult=g("a_mult"), b_mult=g("b_mult"), **q)
    if f == "mul":
        return int8_mul(a, b, **q)
    if table is None:
        raise ValueError(f"INT8 {f} needs its 256-entry table")
    return int8_lut(a, table)
