"""ISA-level functional model of the memory tile's layout engine (EXEC of the memory tile).

Registered with :func:`accelpool.sched.unitsim.register` for :attr:`UnitKind.MEMORY`. Written from
the shared contract (``MEMLAYOUT.md``, the argument struct ``accelpool.spec.units.layout.MemArgs``),
not from the RTL. The engine reads and writes the global memory in place, so the image the
model works on is the whole memory (``tile["bytes"]`` long), not a scratchpad. All
addresses are byte addresses, pitches in bytes, elements of ``e = 1 << elem_log2`` bytes
(little-endian, copied unchanged):

IM2COL
    Source ``x[channels, height, width]``, row ``(c, y)`` at ``src_addr + (c * height +
    y) * src_pitch``, element ``x`` at ``+ x * e``. Destination row ``r = (c * kernel_h +
    i) * kernel_w + j`` at ``dst_addr + r * dst_pitch`` holds ``out_h * out_w`` elements,
    element ``q = oy * out_w + ox`` at ``+ q * e``: ``x[c, oy * stride_h + i - pad_top,
    ox * stride_w + j - pad_left]``, or the padding element (the low ``e`` bytes of
    ``pad_value``) where that is outside the source.
TRANSPOSE
    Source ``rows x cols``, row ``i`` at ``src_addr + i * src_pitch``; destination row
    ``j`` at ``dst_addr + j * dst_pitch`` holds ``rows`` elements: ``out[j, i] = in[i, j]``.

Only the destination's elements are written (byte enables): row padding is untouched.
Arguments the engine cannot run raise :class:`accelpool.sched.unitsim.UnitSimError` naming the field:
``elem_log2`` 3, addresses or pitches not element-aligned, a stride of 0, a source or
destination leaving the memory, destination rows that overlap each other (pitch shorter
than a row), a destination overlapping the source (the engine does not work in place).
:func:`layout_runs` gives the byte runs an EXEC reads and writes (the functional executor
orders them with the other tiles' transfers).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from accelpool.sched.unitsim import UnitSimError, register, overlap as _overlap
from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.units.layout import MemFunc

__all__ = ["layout_runs", "layout_exec"]

_UINT = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def _func(func: Any) -> MemFunc:
    try:
        return func if isinstance(func, MemFunc) else MemFunc(func)
    except ValueError:
        raise UnitSimError(f"Layout engine EXEC function must be one of "
                           f"{', '.join(f'{m.name}={m.value}' for m in MemFunc)}, "
                           f"not {func!r}") from None


def _geometry(func: Any, args: Mapping[str, Any]) -> dict[str, Any]:
    """The EXEC's checked arguments plus its element size and shapes."""
    f = _func(func)
    a = {k: int(v) for k, v in args.items()}
    g = {"func": f, **a}
    lg = a.get("elem_log2", 0)
    if lg not in (0, 1, 2):
        raise UnitSimError(f"Layout engine elem_log2 must be 0, 1 or 2 (1-, 2- or 4-byte "
                           f"elements), not {lg!r}")
    e = g["e"] = 1 << lg
    for k in ("src_addr", "dst_addr", "src_pitch", "dst_pitch"):
        if a.get(k, 0) % e:
            raise UnitSimError(f"Layout engine {k} {a.get(k, 0):#x} is not a multiple of the "
                               f"{e}-byte element")
    if f is MemFunc.IM2COL:
        for k in ("stride_h", "stride_w"):
            if a.get(k, 0) < 1:
                raise UnitSimError(f"Layout engine IM2COL {k} must be at least 1, not "
                                   f"{a.get(k, 0)!r}")
        g["src_rows"] = a.get("channels", 0) * a.get("height", 0)
        g["src_row_elems"] = a.get("width", 0)
        g["dst_rows"] = a.get("channels", 0) * a.get("kernel_h", 0) * a.get("kernel_w", 0)
        g["dst_row_elems"] = a.get("out_h", 0) * a.get("out_w", 0)
    else:
        g["src_rows"], g["src_row_elems"] = a.get("rows", 0), a.get("cols", 0)
        g["dst_rows"], g["dst_row_elems"] = a.get("cols", 0), a.get("rows", 0)
    return g


def _runs(base: int, pitch: int, rows: int, nbytes: int) -> list[tuple[int, int]]:
    return [(base + r * pitch, nbytes) for r in range(rows)] if nbytes else []


def layout_runs(func: Any, args: Mapping[str, Any],
                size: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """``(reads, writes)``: the ``(byte address, length)`` runs an EXEC reads (every source
    row's elements) and writes (every destination row's elements).

    Raises
    ------
    UnitSimError
        For the arguments the module docstring lists (``size``: the memory's bytes, for the
        range check; the overlap checks need no size).
    """
    g = _geometry(func, args)
    e = g["e"]
    src_len, dst_len = g["src_row_elems"] * e, g["dst_row_elems"] * e
    if g["dst_rows"] > 1 and dst_len > g["dst_pitch"]:
        raise UnitSimError(f"Layout engine dst_pitch {g['dst_pitch']} is shorter than a "
                           f"destination row of {dst_len} bytes: the rows would overlap")
    reads = _runs(g["src_addr"], g["src_pitch"], g["src_rows"], src_len)
    writes = _runs(g["dst_addr"], g["dst_pitch"], g["dst_rows"], dst_len)
    if size is not None:
        for what, runs in (("source", reads), ("destination", writes)):
            if runs and (min(a for a, _ in runs) < 0 or max(a + n for a, n in runs) > size):
                raise UnitSimError(f"Layout engine {what} rows {runs[0][0]:#x}.."
                                   f"{runs[-1][0] + runs[-1][1] - 1:#x} leave the "
                                   f"{size}-byte memory")
    if reads and writes:
        span = (lambda rs: (min(a for a, _ in rs), max(a + n for a, n in rs)))
        (rlo, rhi), (wlo, whi) = span(reads), span(writes)
        if _overlap((rlo, rhi - rlo), (wlo, whi - wlo)) and any(
                _overlap(r, w) for r in reads for w in writes):
            raise UnitSimError(f"Layout engine destination {g['dst_addr']:#x} overlaps the "
                               f"source {g['src_addr']:#x}: the engine does not work in place")
    return reads, writes


def _gather(memory: bytearray, base: int, pitch: int, rows: int, elems: int, e: int) -> np.ndarray:
    """``rows x elems`` elements (as unsigned integers) of rows ``pitch`` bytes apart."""
    buf = np.frombuffer(memory, np.uint8)
    at = (base + np.arange(rows)[:, None] * pitch + np.arange(elems * e)[None, :])
    return np.ascontiguousarray(buf[at]).view(_UINT[e]).reshape(rows, elems)


@register(UnitKind.MEMORY)
def layout_exec(tile: TileConfig, func: Any, args: Mapping[str, Any],
                memory: bytearray) -> list[tuple[int, int]]:
    """One layout-engine EXEC on the global memory image ``memory`` (in place).

    Parameters
    ----------
    tile : TileConfig
        The memory tile (``bytes``).
    func : MemFunc or int
    args : mapping
        :data:`accelpool.spec.units.layout.MemArgs` fields.
    memory : bytearray
        The whole global memory, ``tile["bytes"]`` long, modified in place.

    Returns
    -------
    list of (int, int)
        The destination rows' element runs (what the engine writes).
    """
    size = tile["bytes"]
    if len(memory) != size:
        raise UnitSimError(f"The memory image of {tile.name} is {len(memory)} bytes; the tile "
                           f"has {size}")
    reads, writes = layout_runs(func, args, size)
    g = _geometry(func, args)
    e = g["e"]
    if not writes:
        return []
    if g["func"] is MemFunc.IM2COL:
        c, h, w = g.get("channels", 0), g.get("height", 0), g.get("width", 0)
        kh, kw = g.get("kernel_h", 0), g.get("kernel_w", 0)
        oh, ow = g.get("out_h", 0), g.get("out_w", 0)
        pad = np.asarray(g.get("pad_value", 0) & ((1 << 8 * e) - 1), _UINT[e])
        x = (_gather(memory, g["src_addr"], g["src_pitch"], c * h, w, e).reshape(c, h, w)
             if reads else np.zeros((c, h, w), _UINT[e]))
        iy = np.arange(oh)[None, :] * g["stride_h"] + np.arange(kh)[:, None] - g.get("pad_top", 0)
        ix = np.arange(ow)[None, :] * g["stride_w"] + np.arange(kw)[:, None] - g.get("pad_left", 0)
        vy, vx = (iy >= 0) & (iy < h), (ix >= 0) & (ix < w)
        if h and w:
            win = x[:, np.clip(iy, 0, h - 1)[:, None, :, None],
                    np.clip(ix, 0, w - 1)[None, :, None, :]]          # [c, kh, kw, oh, ow]
        else:
            win = np.zeros((c, kh, kw, oh, ow), _UINT[e])
        inside = vy[:, None, :, None] & vx[None, :, None, :]
        out = np.where(inside[None], win, pad).reshape(c * kh * kw, oh * ow)
    else:
        rows, cols = g.get("rows", 0), g.get("cols", 0)
        out = _gather(memory, g["src_addr"], g["src_pitch"], rows, cols, e).T
    raw = np.ascontiguousarray(out.astype(_UINT[e])).view(np.uint8)
    for r, (addr, n) in enumerate(writes):
        memory[addr:addr + n] = raw[r].tobytes()
    return writes
