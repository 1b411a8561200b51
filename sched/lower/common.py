"""What every unit's lowering shares: buffer layouts in memory, the operand plan of a
micro-op, transfer runs, EXEC encoding, and the errors of lowering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from accelpool.sched.ir import (BufferKind, Graph, MicroOp, OpType, TensorRef,
                                channels_last_images, image_dims)
from accelpool.spec import isa
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.golden.numerics import quantize_multiplier
from accelpool.spec.unit import Registry

__all__ = ["ALIGN", "FENCE_BYTES", "NP_DTYPE", "CodegenError", "NotLowered", "BufferLayout", "channels_last_buffers"]


ALIGN = 32


FENCE_BYTES = 32


NP_DTYPE = {DType.BF16: ml_dtypes.bfloat16, DType.FP32: np.dtype("<f4"),
            DType.INT8: np.dtype("i1"), DType.INT32: np.dtype("<i4")}


class CodegenError(ValueError):
    """A schedule that cannot be compiled (memory or scratchpad too small, bad layout)."""


class NotLowered(CodegenError):
    """A micro-op placed on a unit for which codegen emits no command (message says why)."""


def ceil_div(n: int, q: int) -> int:
    return -(-n // q) * q


@dataclass(frozen=True)
class BufferLayout:
    """Where a buffer's elements are: ``addr + row * pitch + col * elem``.

    Row-major (the default): ``row`` is the row-major index over every dimension but the
    last and ``col`` the last index. Channels-last (``channels_last``, an image ``[..., C,
    H, W]`` whose leading dimensions are 1; the convolution engine's layout): ``row`` is
    the pixel ``h * W + w`` and ``col`` the channel ``c``. ``view_of`` names the
    channels-last buffer a reshape aliases when the reshape's elements are not rows of that
    layout (a flatten): its elements can only be moved by a lowering that knows the
    permutation (:func:`_channels_last_runs`)."""

    name: str
    addr: int
    shape: tuple[int, ...]
    elem: int
    pitch: int
    channels_last: bool = False
    view_of: str | None = None
    block: int = 0                    # channels-last: channels per block (C: pixel-major)

    @property
    def _img(self) -> tuple[int, int, int]:
        c, h, w = self.shape[-3:]
        return c, h * w, -(-c // self.block)

    @property
    def cols(self) -> int:
        if self.channels_last:
            return self.block
        return self.shape[-1] if self.shape else 1

    @property
    def rows(self) -> int:
        if self.channels_last:
            _, hw, cb = self._img
            return cb * hw
        return math.prod(self.shape[:-1]) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.rows * self.pitch

    def box_rows(self, ref: TensorRef) -> tuple[np.ndarray, int, int]:
        """``(row indices, first column, columns)`` of a box of this buffer."""
        if self.view_of is not None:
            raise CodegenError(
                f"{ref}: {self.name!r} reshapes the channels-last buffer {self.view_of!r} "
                f"(the convolution engine's pixel-major layout), so its rows are not rows in "
                f"memory. Accepted: the whole flatten read along K by an integer GEMM "
                f"(its weights are permuted to the stored order), or the image itself")
        shape = tuple(ref.shape) or (1,)
        offset = tuple(ref.offset) or (0,)
        bshape = self.shape or (1,)
        if self.channels_last:
            (c0, h0, w0), (cs, hs, ws) = offset[-3:], shape[-3:]
            c, hw, cb = self._img
            hh, ww = np.meshgrid(np.arange(h0, h0 + hs), np.arange(w0, w0 + ws), indexing="ij")
            pix = (hh * bshape[-1] + ww).reshape(-1).astype(np.int64)
            b0, b1 = c0 // self.block, (c0 + cs - 1) // self.block
            if b0 == b1:
                return pix + b0 * hw, int(c0 % self.block), int(cs)
            if c0 % self.block or (c0 + cs) % self.block and c0 + cs != c:
                raise CodegenError(f"{ref}: channels {c0}..{c0 + cs - 1} of {self.name!r} "
                                   f"cross its blocks of {self.block} channels part way")
            rows = (np.arange(b0, b1 + 1)[:, None] * hw + pix[None, :]).reshape(-1)
            return rows, 0, self.block
        if len(shape) == 1:
            rows = np.zeros(1, np.int64)
        else:
            idx = np.indices(shape[:-1]).reshape(len(shape) - 1, -1)
            idx = idx + np.asarray(offset[:-1]).reshape(-1, 1)
            rows = np.ravel_multi_index(tuple(idx), bshape[:-1]).astype(np.int64)
        return rows, int(offset[-1]), int(shape[-1])

    def flat_order(self) -> np.ndarray:
        """Channels-last: the row-major (``c * H * W + p``) index of each stored element,
        in storage order (rows of ``block`` channels; -1 for missing channels)."""
        c, hw, cb = self._img
        ch = np.arange(cb * self.block).reshape(cb, 1, self.block)
        idx = ch * hw + np.arange(hw).reshape(1, hw, 1)
        return np.where(ch < c, idx, -1).reshape(-1)

    def matrix_of(self, values: np.ndarray) -> np.ndarray:
        """Logical values -> ``[rows, cols]`` in this layout's row order."""
        v = np.ascontiguousarray(values)
        if self.channels_last:
            c, hw, cb = self._img
            full = np.zeros((cb * self.block, hw), v.dtype)
            full[:c] = v.reshape(c, hw)
            return full.reshape(cb, self.block, hw).transpose(0, 2, 1).reshape(cb * hw, self.block)
        return v.reshape(self.rows, self.cols)

    def pack(self, values: np.ndarray) -> bytes:
        """The buffer's bytes in this layout (padding zero)."""
        e = self.elem
        raw = np.ascontiguousarray(self.matrix_of(values)).view(np.uint8)
        out = np.zeros((self.rows, self.pitch), np.uint8)
        out[:, :self.cols * e] = raw.reshape(self.rows, self.cols * e)
        return out.tobytes()

    def unpack(self, raw: bytes, dtype) -> np.ndarray:
        """The buffer's values from its bytes in this layout."""
        e = self.elem
        a = np.frombuffer(raw, np.uint8, self.nbytes).reshape(self.rows, self.pitch)
        a = np.ascontiguousarray(a[:, :self.cols * e]).view(dtype)
        if self.channels_last:
            c, hw, cb = self._img
            a = a.reshape(cb, hw, self.block).transpose(0, 2, 1).reshape(cb * self.block, hw)[:c]
        return np.ascontiguousarray(a).reshape(self.shape)


def row_runs(layouts: Mapping[str, "BufferLayout"], ref: TensorRef, fb: int,
              who: str = "") -> list[tuple[int, int]]:
    """Memory ``(address, bytes)`` of each row of a box (see :meth:`Program.row_runs`)."""
    lay = layouts[ref.buffer]
    rows, c0, w = lay.box_rows(ref)
    e = lay.elem
    if lay.pitch % fb == 0 and ((c0 * e) % fb or ((c0 + w) * e % fb and c0 + w != lay.cols)):
        raise CodegenError(
            f"{who}{ref}: a LOAD/STORE moves whole {fb}-byte flits and may round a row "
            f"out only into the row's padding, but columns {c0}..{c0 + w - 1} of "
            f"{ref.buffer} (rows of {lay.cols} x {e}-byte elements, pitch {lay.pitch}) "
            f"share a flit with other elements of the row. Accepted: boxes whose columns "
            f"start at a multiple of {fb // math.gcd(fb, e)} and end at one or at the "
            f"row's last column")
    length = ceil_div(w * e, fb)
    base = lay.addr + c0 * e
    if lay.pitch % fb:
        start = rows * lay.pitch + c0 * e
        end = start + w * e
        if (start % fb).any() or ((end % fb != 0) & (end != lay.nbytes)).any():
            raise CodegenError(
                f"{who}{ref}: a LOAD/STORE moves whole {fb}-byte flits, but the rows of "
                f"{ref.buffer} ({lay.cols} x {e}-byte elements) are stored without padding, "
                f"{lay.pitch} bytes apart, because a reshape of the buffer changes its last "
                f"dimension; the box's rows do not start and end on flit boundaries. "
                f"Accepted: a view of the buffer whose rows are multiples of {fb} bytes, or "
                f"a box ending at the buffer's end")
    return [(base + int(r) * lay.pitch, length) for r in rows]


def channels_last_buffers(g: Graph, fb: int) -> dict[str, int]:
    """Base buffers stored channels-last (:class:`BufferLayout`), with their block size.

    Channels-last: :func:`accelpool.sched.ir.channels_last_images` (the images CONVs read and write,
    and those element-wise micro-ops share with them). Blocks of one flit of channels
    (``fb // element bytes``, at most ``C``), so a micro-op writing a block of output
    channels writes contiguous memory; pixel-major (one block of ``C``) when a CONV reads
    more channels than one block, as the CE's input layout wants."""
    base = lambda r: g.base(r.buffer)   # noqa: E731
    cl = channels_last_images(g)
    blocks = {}
    for n in cl:
        c = g.buffers[n].shape[-3]
        blocks[n] = min(c, max(1, fb // g.buffers[n].dtype.bytes))
    for o in g.ops:
        if o.op is OpType.CONV:
            n = base(o.inputs[0]).name
            if n in blocks and o.inputs[0].shape[-3] > blocks[n]:
                blocks[n] = g.buffers[n].shape[-3]
    return blocks


def dense_bases(g: Graph, cl: Mapping[str, int]) -> set[str]:
    """Row-major base buffers a reshape views with another last dimension: stored without
    row padding, so every view is a row-major view of the same bytes."""
    out = set()
    for b in g.buffers.values():
        if b.alias_of is None:
            continue
        base = g.base(b.name)
        if base.name not in cl and (tuple(b.shape) or (1,))[-1] != (tuple(base.shape) or (1,))[-1]:
            out.add(base.name)
    return out


def buffer_layouts(g: Graph, fb: int) -> tuple[dict[str, BufferLayout], int]:
    lays: dict[str, BufferLayout] = {}
    top = 0
    cl = channels_last_buffers(g, fb)
    dense = dense_bases(g, cl)
    for b in g.buffers.values():
        if b.alias_of is None:
            e = b.dtype.bytes
            shape = tuple(b.shape)
            blk = cl.get(b.name, 0)
            lay = BufferLayout(b.name, top, shape, e, 0, channels_last=bool(blk), block=blk)
            pitch = lay.cols * e if b.name in dense else ceil_div(lay.cols * e, fb)
            lays[b.name] = lay = BufferLayout(b.name, top, shape, e, pitch,
                                              channels_last=bool(blk), block=blk)
            top += ceil_div(lay.nbytes, ALIGN)
    for b in g.buffers.values():
        if b.alias_of is None:
            continue
        base = lays[g.base(b.name).name]
        e = base.elem
        shape = tuple(b.shape)
        if base.channels_last:
            same = image_dims(shape) == image_dims(base.shape)
            lays[b.name] = BufferLayout(b.name, base.addr, shape, e, base.pitch,
                                        channels_last=same, block=base.block if same else 0,
                                        view_of=None if same else base.name)
            continue
        cols = shape[-1] if shape else 1
        pitch = cols * e if base.name in dense else base.pitch
        lays[b.name] = BufferLayout(b.name, base.addr, shape, e, pitch)
    return lays, top


def const_array(g: Graph, ref: TensorRef) -> np.ndarray:
    b = g.buffers[ref.buffer]
    base = g.base(ref.buffer)
    return np.asarray(base.data).astype(NP_DTYPE[base.dtype]).reshape(b.shape)[ref.slices]


@dataclass
class Operand:
    """One scratchpad region of a micro-op: a blob (constant) or rows of a memory box."""

    key: Any
    region: int                       # bytes
    blob: bytes | None = None
    ref: TensorRef | None = None
    pitch: int = 0                    # scratchpad bytes between the box's rows
    runs: list[tuple[int, int]] | None = None   # memory (address, bytes), if not the box's rows


@dataclass
class Plan:
    operands: list[Operand]
    out: Operand
    build: Callable[[Mapping[Any, int]], tuple[Any, dict]]   # addresses -> (func, args)
    align: int


class LowerCtx:
    """What a lowering needs: the graph, the layouts, the flit size, the unit's tile."""

    def __init__(self, g: Graph, lays: Mapping[str, BufferLayout], fb: int):
        self.g, self.lays, self.fb = g, lays, fb

    def dtype(self, ref: TensorRef) -> DType:
        return self.g.base(ref.buffer).dtype

    def is_const(self, ref: TensorRef) -> bool:
        return self.g.base(ref.buffer).kind is BufferKind.CONST


def op_label(op: MicroOp, tile) -> str:
    return f"Micro-op {op.id!r} ({op.op.value}<{op.dtype.key}>) on {tile.name}: "


def blob_rows(values: np.ndarray, rows: int, pitch: int, region: int) -> bytes:
    """2-D ``values`` placed row ``i`` at byte ``i * pitch`` of a zeroed ``region``."""
    v = np.ascontiguousarray(values)
    r, c = v.shape
    raw = v.view(np.uint8).reshape(r, c * v.dtype.itemsize)
    out = np.zeros(region, np.uint8)
    view = out[:rows * pitch].reshape(rows, pitch)
    view[:r, :raw.shape[1]] = raw
    return out.tobytes()


def matrix_of(ref: TensorRef, who: str, what: str) -> tuple[int, int]:
    d = ref.last_dims(2)
    if d is None:
        raise CodegenError(f"{who}operand {what} {ref} is not a matrix (a leading dimension "
                           f"is not 1)")
    return d


def requant_params(op: MicroOp, who: str) -> tuple[int, int, int]:
    """``(multiplier, shift, zero point)`` of an INT8 result's requantisation (attrs
    ``requant``: the fixed point itself, or the scale it is derived from)."""
    rq = op.attrs.get("requant")
    if rq is None:
        raise CodegenError(f"{who}an INT8 result needs attrs['requant']")
    mult, shift = ((rq["multiplier"], rq["shift"]) if "multiplier" in rq
                   else quantize_multiplier(rq["scale"]))
    return int(mult), int(shift), int(rq["zero_point"])


def transfer_moves(runs: list[tuple[int, int]], spad: int, pitch: int, who: str
           ) -> list[tuple[int, int, int]]:
    """``(spad address, memory address, bytes)`` transfers of rows placed ``pitch`` apart,
    merged where both sides are contiguous."""
    out: list[list[int]] = []
    for i, (addr, n) in enumerate(runs):
        if n > pitch:
            raise CodegenError(f"{who}a row of {n} bytes does not fit the unit's {pitch}-byte "
                               f"row pitch")
        s = spad + i * pitch
        if out and out[-1][1] + out[-1][2] == addr and out[-1][0] + out[-1][2] == s:
            out[-1][2] += n
        else:
            out.append([s, addr, n])
    return [tuple(m) for m in out]


def graph_layouts(graph: Graph, flit_bytes: int) -> dict[str, BufferLayout]:
    """:func:`buffer_layouts` of ``graph`` for ``flit_bytes``, cached on the graph."""
    lays = graph.__dict__.get("_layouts_fb", {}).get(flit_bytes)
    if lays is None:
        lays = buffer_layouts(graph, flit_bytes)[0]
        graph.__dict__.setdefault("_layouts_fb", {})[flit_bytes] = lays
    return lays


def exec_command(kind: UnitKind, func: Any, args: Mapping[str, Any], who: str) -> isa.Command:
    """The EXEC command of a micro-op, checked to encode (:class:`CodegenError` if not)."""
    c = isa.exec_cmd(kind, func, **args)
    try:
        c.encode()
    except isa.EncodingError as e:
        raise CodegenError(f"{who}its EXEC does not encode: {e}") from None
    problems = isa.exec_spec(kind).problems(func, args)
    if problems:
        raise CodegenError(f"{who}the {kind.key} unit refuses its EXEC: {'; '.join(problems)}")
    return c


def operand_runs(lays: Mapping[str, BufferLayout], o: Operand, fb: int, who: str
                  ) -> list[tuple[int, int]]:
    """Memory runs an operand is loaded from: its own, or its box's rows."""
    return o.runs if o.runs is not None else row_runs(lays, o.ref, fb, who)

#: (unit kind, operation) -> ``lower(ctx, op, tile) -> Plan``: a micro-op placed on a tile
#: turned into scratchpad regions and one EXEC; each unit's lowering module registers its own.
LOWERINGS = Registry("sched", "lowering")

#: Why a placement is not lowered (one sentence each).
WHY_NOT = {
    UnitKind.MEMORY: "the memory tile's layout engine runs LAYOUT micro-ops only",
}
