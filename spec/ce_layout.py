"""Scratchpad data layouts of the convolution engine, for the compiler and the tests.

The layouts are specified in :mod:`accelpool.hw.ce`; these functions produce and read them from
ONNX-layout numpy arrays, and build the EXEC arguments of a convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from accelpool.spec.golden.conv import conv_output_size
from accelpool.spec.units.ce import CHANNEL_BITS, EXTENT_BITS, MAX_KERNEL

__all__ = ["ConvShape", "pack_input", "pack_weights", "pack_bias", "unpack_output"]


def _blocks(n: int, lanes: int) -> int:
    return -(-n // lanes)


@dataclass(frozen=True)
class ConvShape:
    """One CE convolution: input ``c_in x height x width``, ``c_out`` filters of ``kernel_h x kernel_w``."""

    c_in: int
    c_out: int
    height: int
    width: int
    kernel_h: int = 3
    kernel_w: int = 3
    stride: int = 1
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right

    @property
    def out_h(self) -> int:
        return conv_output_size(self.height, self.kernel_h, self.stride, self.pads[0], self.pads[2])

    @property
    def out_w(self) -> int:
        return conv_output_size(self.width, self.kernel_w, self.stride, self.pads[1], self.pads[3])

    @property
    def macs(self) -> int:
        """Multiply-accumulates by the usual count (padded taps included)."""
        return self.out_h * self.out_w * self.kernel_h * self.kernel_w * self.c_in * self.c_out

    def check(self, *, ic_lanes: int, weight_depth: int) -> None:
        """Raise ValueError if a CE with these parameters cannot run this shape."""

        for name, v, hi in (("height", self.height, 2 ** EXTENT_BITS - 1),
                            ("width", self.width, 2 ** EXTENT_BITS - 1),
                            ("c_in", self.c_in, 2 ** CHANNEL_BITS - 1),
                            ("c_out", self.c_out, 2 ** CHANNEL_BITS - 1),
                            ("kernel_h", self.kernel_h, MAX_KERNEL),
                            ("kernel_w", self.kernel_w, MAX_KERNEL)):
            if not 1 <= v <= hi:
                raise ValueError(f"CE convolution {name} must be between 1 and {hi}, not {v!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"CE convolution stride must be 1 or 2, not {self.stride!r}")
        kmax = (self.kernel_h, self.kernel_w, self.kernel_h, self.kernel_w)
        for name, p, k in zip(("top", "left", "bottom", "right"), self.pads, kmax):
            if not 0 <= p < k:
                raise ValueError(f"CE convolution pad_{name} must be between 0 and {k - 1}, not {p!r}")
        entries = self.kernel_h * self.kernel_w * _blocks(self.c_in, ic_lanes)
        if entries > weight_depth:
            raise ValueError(f"CE convolution needs {entries} weight-buffer entries "
                             f"(kernel_h * kernel_w * ceil(c_in / {ic_lanes})); the unit has "
                             f"{weight_depth}: split the input channels")

    def input_bytes(self, ic_lanes: int) -> int:
        return self.height * self.width * _blocks(self.c_in, ic_lanes) * ic_lanes

    def weight_bytes(self, oc_lanes: int, ic_lanes: int) -> int:
        return (_blocks(self.c_out, oc_lanes) * oc_lanes * self.kernel_h * self.kernel_w
                * _blocks(self.c_in, ic_lanes) * ic_lanes)

    def bias_bytes(self, oc_lanes: int) -> int:
        return _blocks(self.c_out, oc_lanes) * oc_lanes * 4

    def output_bytes(self, oc_lanes: int, requant: bool) -> int:
        return self.out_h * self.out_w * _blocks(self.c_out, oc_lanes) * oc_lanes * (1 if requant else 4)

    def exec_args(self, *, in_addr: int, w_addr: int, out_addr: int, bias_addr: int = 0,
                  bias: bool = False, requant: bool = False, x_zero_point: int = 0,
                  w_zero_point: int = 0, y_zero_point: int = 0, multiplier: int = 0,
                  shift: int = 0, x_unsigned: bool = False, y_unsigned: bool = False) -> dict:
        """The CE's EXEC argument fields (:data:`accelpool.spec.units.ce.CeArgs`) for this convolution."""
        top, left, bottom, right = self.pads
        return dict(in_addr=in_addr, w_addr=w_addr, bias_addr=bias_addr, out_addr=out_addr,
                    height=self.height, width=self.width, c_in=self.c_in, c_out=self.c_out,
                    kernel_h=self.kernel_h, kernel_w=self.kernel_w, stride=self.stride,
                    pad_top=top, pad_left=left, pad_bottom=bottom, pad_right=right,
                    x_zero_point=x_zero_point, w_zero_point=w_zero_point,
                    y_zero_point=y_zero_point, multiplier=multiplier, shift=shift,
                    bias=int(bias), requant=int(requant), x_unsigned=int(x_unsigned),
                    y_unsigned=int(y_unsigned))


def pack_input(x: np.ndarray, ic_lanes: int) -> bytes:
    """``x[C, H, W]`` INT8/UINT8 -> HWC bytes, channels padded (with zeros) to blocks of ``ic_lanes``."""
    c, h, w = x.shape
    buf = np.zeros((h, w, _blocks(c, ic_lanes) * ic_lanes), x.dtype)
    buf[:, :, :c] = np.transpose(x, (1, 2, 0))
    return buf.tobytes()


def pack_weights(w: np.ndarray, oc_lanes: int, ic_lanes: int) -> bytes:
    """``w[M, C, kH, kW]`` INT8 -> words ``[ob][ky][kx][cb][o]`` of ``ic_lanes`` bytes."""
    mo, c, kh, kw = w.shape
    ocb, icb = _blocks(mo, oc_lanes), _blocks(c, ic_lanes)
    full = np.zeros((ocb * oc_lanes, icb * ic_lanes, kh, kw), np.int8)
    full[:mo, :c] = w
    # [ob, o, cb, i, ky, kx] -> [ob, ky, kx, cb, o, i]
    t = full.reshape(ocb, oc_lanes, icb, ic_lanes, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    return np.ascontiguousarray(t).tobytes()


def pack_bias(b: np.ndarray, oc_lanes: int) -> bytes:
    """``b[M]`` INT32 -> little-endian INT32, padded with zeros to blocks of ``oc_lanes``."""
    full = np.zeros(_blocks(len(b), oc_lanes) * oc_lanes, "<i4")
    full[:len(b)] = b
    return full.tobytes()


def unpack_output(raw: bytes, shape: ConvShape, oc_lanes: int, requant: bool,
                  y_unsigned: bool = False) -> np.ndarray:
    """Output bytes -> ``y[M, oH, oW]`` (int8/uint8 if ``requant`` else int32)."""
    ocb = _blocks(shape.c_out, oc_lanes)
    dt = (np.uint8 if y_unsigned else np.int8) if requant else np.dtype("<i4")
    n = shape.out_h * shape.out_w * ocb * oc_lanes
    y = np.frombuffer(raw[:n * np.dtype(dt).itemsize], dt).reshape(shape.out_h, shape.out_w, -1)
    return np.ascontiguousarray(y[:, :, :shape.c_out].transpose(2, 0, 1)).astype(
        dt if requant else np.int32)
