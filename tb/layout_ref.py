"""An independent numpy model of the layout engine's contract (its EXEC, ``spec/units/layout.py``;
the semantics, ``hw/layout_engine.py``'s docstring).

:func:`reference` works on a memory image as bytes: it gathers the source rows at their
pitch into a numpy array, forms IM2COL with ``np.pad`` and ``sliding_window_view`` (as
``sched/reference.py`` does) or TRANSPOSE with ``.T``, and scatters the destination
rows at their pitch, so every byte outside the destination's real elements keeps its
value. Written from the contract, not from the RTL; used by ``hw/test_layout_engine.py``
and the SoC test of the memory tile.
"""

from __future__ import annotations

import numpy as np

from accelpool.spec.units.layout import MemFunc

__all__ = ["reference", "im2col_case", "transpose_case"]

_DT = {0: np.uint8, 1: np.uint16, 2: np.uint32}


def _gather(mem: np.ndarray, addr: int, rows: int, pitch: int, count: int, e: int) -> np.ndarray:
    dt = np.dtype(_DT[e]).newbyteorder("<")
    n = count << e
    return np.stack([mem[addr + r * pitch: addr + r * pitch + n].view(dt) for r in range(rows)]) \
        if rows else np.zeros((0, count), dt)


def _scatter(mem: np.ndarray, addr: int, pitch: int, block: np.ndarray) -> None:
    b = np.ascontiguousarray(block.astype(block.dtype.newbyteorder("<"))).view(np.uint8)
    for r in range(block.shape[0]):
        mem[addr + r * pitch: addr + r * pitch + b.shape[1]] = b[r]


def reference(image: bytes, func: MemFunc, a: dict) -> bytes:
    """The memory after one EXEC ``func`` with arguments ``a`` (the MemArgs fields)."""
    mem = np.frombuffer(bytes(image), np.uint8).copy()
    e = a["elem_log2"]
    dt = _DT[e]
    if func is MemFunc.TRANSPOSE:
        src = _gather(mem, a["src_addr"], a["rows"], a["src_pitch"], a["cols"], e)
        _scatter(mem, a["dst_addr"], a["dst_pitch"], src.T)
        return mem.tobytes()
    C, H, W = a["channels"], a["height"], a["width"]
    kh, kw, sh, sw = a["kernel_h"], a["kernel_w"], a["stride_h"], a["stride_w"]
    pt, pl, oh, ow = a["pad_top"], a["pad_left"], a["out_h"], a["out_w"]
    x = _gather(mem, a["src_addr"], C * H, a["src_pitch"], W, e).reshape(C, H, W)
    pb = max(0, (oh - 1) * sh + kh - pt - H)
    pr = max(0, (ow - 1) * sw + kw - pl - W)
    pad = dt(a["pad_value"] & ((1 << (8 << e)) - 1))
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=pad)
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, np.arange(oh) * sh][:, :, np.arange(ow) * sw]   # stride 0 too
    cols = win.transpose(0, 3, 4, 1, 2).reshape(C * kh * kw, oh * ow)
    _scatter(mem, a["dst_addr"], a["dst_pitch"], cols)
    return mem.tobytes()


def im2col_case(rng, word_bytes: int):
    """A random IM2COL (func, args, end byte): 1-3 channels up to 6x6, kernels and strides
    1-3, pads up to 3, row pitches up to 4 elements longer than the rows."""
    e = int(rng.integers(0, 3))
    es = 1 << e
    C, H, W = int(rng.integers(1, 4)), int(rng.integers(1, 7)), int(rng.integers(1, 7))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pt, pl = int(rng.integers(0, min(kh, 3) + 1)), int(rng.integers(0, min(kw, 3) + 1))
    pb, pr = int(rng.integers(0, kh)), int(rng.integers(0, kw))
    oh = max(1, (H + pt + pb - kh) // sh + 1)
    ow = max(1, (W + pl + pr - kw) // sw + 1)
    src_pitch = W * es + es * int(rng.integers(0, 4))
    dst_pitch = oh * ow * es + es * int(rng.integers(0, 5))
    src = es * int(rng.integers(0, 2 * word_bytes))
    dst = -(-(src + C * H * src_pitch) // es) * es + es * int(rng.integers(0, 2 * word_bytes))
    end = dst + C * kh * kw * dst_pitch
    a = dict(src_addr=src, dst_addr=dst, elem_log2=e, src_pitch=src_pitch, dst_pitch=dst_pitch,
             channels=C, height=H, width=W, kernel_h=kh, kernel_w=kw, stride_h=sh,
             stride_w=sw, pad_top=pt, pad_left=pl, out_h=oh, out_w=ow,
             pad_value=int(rng.integers(0, 1 << 32)))
    return MemFunc.IM2COL, a, end


def transpose_case(rng, word_bytes: int):
    """A random TRANSPOSE (func, args, end byte): up to 8x8, pitches up to 3 elements longer."""
    e = int(rng.integers(0, 3))
    es = 1 << e
    R, Cn = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    src_pitch = Cn * es + es * int(rng.integers(0, 4))
    dst_pitch = R * es + es * int(rng.integers(0, 4))
    src = es * int(rng.integers(0, 2 * word_bytes))
    dst = src + R * src_pitch + es * int(rng.integers(0, 2 * word_bytes))
    a = dict(src_addr=src, dst_addr=dst, elem_log2=e, src_pitch=src_pitch, dst_pitch=dst_pitch,
             rows=R, cols=Cn, pad_value=int(rng.integers(0, 1 << 32)))
    return MemFunc.TRANSPOSE, a, dst + Cn * dst_pitch
