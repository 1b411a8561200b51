"""Field helpers for the FP32/BF16 encodings shared by the floating-point blocks."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Value

__all__ = ["FP32_QNAN", "BF16_QNAN", "fp32_fields", "bf16_fields", "pack_fp32"]

#: Canonical quiet NaN produced by every block (positive, no payload).
FP32_QNAN = 0x7FC00000
BF16_QNAN = 0x7FC0


def fp32_fields(x: Value):
    """(sign, exponent, fraction) slices of an FP32 encoding."""
    return x[31], x[23:31], x[0:23]


def bf16_fields(x: Value):
    """(sign, exponent, fraction) slices of a BF16 encoding."""
    return x[15], x[7:15], x[0:7]


def pack_fp32(sign, exp, frac) -> Value:
    """An FP32 encoding from its fields (exp: 8 bits, frac: 23 bits)."""
    return Cat(frac[:23], exp[:8], sign)


def zero_fp32(sign) -> Value:
    return Cat(Const(0, 31), sign)


def inf_fp32(sign) -> Value:
    return Cat(Const(0, 23), Const(0xFF, 8), sign)
