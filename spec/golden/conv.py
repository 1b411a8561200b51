"""ONNX ConvInteger / QLinearConv in numpy, written from the ONNX operator specification.

The reference the convolution engine (CE) is checked against, bit for bit. Tensors are
in ONNX's layout: input ``x[N, C, H, W]``, weights ``w[M, C, kH, kW]``, output
``y[N, M, oH, oW]``, with ``pads = [top, left, bottom, right]`` and ``strides = [sH, sW]``
(group = 1, dilation = 1).

- :func:`conv_integer` is ConvInteger: ``y = sum (x - x_zero_point) * (w - w_zero_point)``
  accumulated in INT32. Padding contributes zero (a padded input equals its zero point).
- :func:`qlinear_conv` is QLinearConv with the requantization done in fixed point by
  :func:`accelpool.spec.golden.numerics.requantize`, ``real_scale = x_scale * w_scale / y_scale``
  approximated by :func:`accelpool.spec.golden.numerics.quantize_multiplier`. It differs from
  onnxruntime's floating-point requantization only where that approximation moves a value
  across a rounding boundary (at most one INT8 step).
"""

from __future__ import annotations

import numpy as np

from .numerics import quantize_multiplier, requantize

__all__ = ["conv_output_size", "conv_integer", "conv_requantized", "qlinear_conv", "run_exec"]


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int) -> int:
    """ONNX output extent: ``floor((size + pad_begin + pad_end - kernel) / stride) + 1``."""
    out = (size + pad_begin + pad_end - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"Convolution of extent {size} with kernel {kernel}, stride {stride} "
                         f"and pads ({pad_begin}, {pad_end}) has no output")
    return out


def conv_integer(x, w, *, x_zero_point: int = 0, w_zero_point: int = 0,
                 strides=(1, 1), pads=(0, 0, 0, 0), bias=None) -> np.ndarray:
    """ONNX ConvInteger (plus an optional INT32 bias, as QLinearConv adds it).

    Parameters
    ----------
    x : int8 array [N, C, H, W]
    w : int8 array [M, C, kH, kW]
    x_zero_point, w_zero_point : int
        Per-tensor zero points.
    strides : (sH, sW)
    pads : (top, left, bottom, right)
    bias : int32 array [M], optional

    Returns
    -------
    numpy.ndarray of int32 [N, M, oH, oW]
        INT32 accumulation wraps modulo 2**32 as hardware does (no overflow in practice).
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(f"conv_integer takes x[N, C, H, W] and w[M, C, kH, kW] with the same C, "
                         f"not {x.shape} and {w.shape}")
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    sh, sw = strides
    pt, pl, pb, pr = pads
    oh = conv_output_size(h, kh, sh, pt, pb)
    ow = conv_output_size(wd, kw, sw, pl, pr)
    xs = x.astype(np.int64) - x_zero_point
    ws = w.astype(np.int64) - w_zero_point
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.int64)
    xp[:, :, pt:pt + h, pl:pl + wd] = xs
    y = np.zeros((n, m, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]  # N C oH oW
            y += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j])
    if bias is not None:
        y += np.asarray(bias, np.int64).reshape(1, m, 1, 1)
    return (y & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def conv_requantized(x, w, *, multiplier: int, shift: int, y_zero_point: int,
                     y_unsigned: bool = False, **kw) -> np.ndarray:
    """:func:`conv_integer` (with bias) followed by the fixed-point requantization.

    INT8 output, or UINT8 with ``y_unsigned`` (``y_zero_point`` in 0..255): saturating to
    [0, 255] equals saturating ``v - 128`` to [-128, 127] and adding 128.
    """

    acc = conv_integer(x, w, **kw)
    if not y_unsigned:
        return requantize(acc, multiplier, shift, y_zero_point)
    if not 0 <= y_zero_point <= 255:
        raise ValueError(f"A UINT8 zero point must be in 0..255, not {y_zero_point!r}")
    q = requantize(acc, multiplier, shift, y_zero_point - 128)
    return (q.astype(np.int16) + 128).astype(np.uint8)


def qlinear_conv(x, x_scale: float, x_zero_point: int, w, w_scale: float, w_zero_point: int,
                 y_scale: float, y_zero_point: int, bias=None, *, strides=(1, 1),
                 pads=(0, 0, 0, 0)) -> np.ndarray:
    """ONNX QLinearConv (per-tensor scales) with fixed-point requantization.

    ``x`` INT8 or UINT8, ``w`` INT8; ``y`` has the type of ``x`` (as onnxruntime's
    quantizer emits it).
    """

    multiplier, shift = quantize_multiplier(x_scale * w_scale / y_scale)
    return conv_requantized(x, w, multiplier=multiplier, shift=shift, y_zero_point=y_zero_point,
                            y_unsigned=np.asarray(x).dtype == np.uint8,
                            x_zero_point=x_zero_point, w_zero_point=w_zero_point,
                            strides=strides, pads=pads, bias=bias)


def run_exec(args, x, w, bias=None) -> np.ndarray:
    """The CE's result for one CONV EXEC, as the golden executor runs it.

    ``args`` holds the EXEC's argument fields (``accelpool.spec.units.ce.CeArgs``; addresses and extents are
    taken from the arrays); ``x[C, H, W]``, ``w[M, C, kH, kW]``, ``bias[M]`` (used when the
    ``bias`` flag is set). Returns ``y[M, oH, oW]``: INT32, or INT8/UINT8 when ``requant``.
    """
    g = lambda k: int(args.get(k, 0))   # noqa: E731
    kw = dict(x_zero_point=g("x_zero_point"), w_zero_point=g("w_zero_point"),
              strides=(g("stride") or 1,) * 2,
              pads=(g("pad_top"), g("pad_left"), g("pad_bottom"), g("pad_right")),
              bias=bias if g("bias") else None)
    x4 = np.asarray(x)[None]
    if g("requant"):
        return conv_requantized(x4, w, multiplier=g("multiplier"), shift=g("shift"),
                                y_zero_point=g("y_zero_point"), y_unsigned=bool(g("y_unsigned")),
                                **kw)[0]
    return conv_integer(x4, w, **kw)[0]
