"""ONNX ConvInteger / QLinearConv in numpy, written from the ONNX operator specification.

The reference the convolution engine (CE) is checked against, bit for bit. Tensors are
in ONNX's layout: input ``x[N, C, H, W]``, weights ``w[M, C, kH, kW]``, output
``y[N, M, oH, oW]``, with ``pads = [top, left, bottom, right]`` and ``strides = [sH, sW]``
(group = 1, dilation = 1).

- :func:`conv_integer` is ConvInteger: ``y = sum (x - x_zero_point) * (w - w_zero_point)``
  accumulated in INT32. Padding contributes zero (a padded input equals its zero point).
- :func:`qlinear_conv` is QLinearConv with the requantization done in fixed point by
  :func:`sched.golden.numerics.requantize`, ``real_scale = x_scale * w_scale / y_scale``
  approximated by :func:`sched.golden.numerics.quantize_multiplier`. It differs from
  onnxruntime's floating-point requantization only where that approximation moves a value
  across a rounding boundary (at most one INT8 step).
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_output_size", "conv_integer", "conv_requantized", "qlinear_conv"]


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


def conv_requantized(x, w, *, multiplier: int, shift: int, y_zero_point: int, **kw) -> np.ndarray:
    """:func:`conv_integer` (with bias) followed by the fixed-point requantization to INT8."""
    from .numerics import requantize

    return requantize(conv_integer(x, w, **kw), multiplier, shift, y_zero_point)


def qlinear_conv(x, x_scale: float, x_zero_point: int, w, w_scale: float, w_zero_point: int,
                 y_scale: float, y_zero_point: int, bias=None, *, strides=(1, 1),
                 pads=(0, 0, 0, 0)) -> np.ndarray:
    """ONNX QLinearConv (INT8 x, w, y; per-tensor scales) with fixed-point requantization."""
    from .numerics import quantize_multiplier

    multiplier, shift = quantize_multiplier(x_scale * w_scale / y_scale)
    return conv_requantized(x, w, multiplier=multiplier, shift=shift, y_zero_point=y_zero_point,
                            x_zero_point=x_zero_point, w_zero_point=w_zero_point,
                            strides=strides, pads=pads, bias=bias)
