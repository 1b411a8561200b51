"""Lowering of LAYOUT micro-ops (im2col, transposes, copies) to the memory tile's layout
engine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from amaranth.hdl import Shape

from accelpool.sched.ir import Graph, MicroOp, OpType, TensorRef, LayoutFunc
from accelpool.sched.lower.common import (WHY_NOT, BufferLayout, CodegenError, NP_DTYPE,
                                          NotLowered, LowerCtx, graph_layouts, op_label)
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.units.layout import MemArgs, MemFunc

__all__ = ["layout_shape", "layout_exec"]


def _layout_spec():
    """``(MemFunc, MemArgs)`` of the layout engine (``hw/layout_engine.py``)."""
    return MemFunc, MemArgs


def _even_rows(lay: BufferLayout, ref: TensorRef, who: str, what: str) -> tuple[int, int]:
    """``(byte address of the box's first element, bytes between consecutive box rows)``:
    the engine steps through rows with one pitch, so the box's rows must be evenly spaced."""
    rows, c0, _ = lay.box_rows(ref)
    step = int(rows[1] - rows[0]) if len(rows) > 1 else 1
    if len(rows) > 1 and (np.diff(rows) != step).any():
        raise CodegenError(f"{who}the rows of {what} {ref} are not evenly spaced in "
                           f"{ref.buffer} {list(lay.shape)} (the box cuts an inner dimension), "
                           f"but the layout engine steps through rows with one pitch. "
                           f"Accepted: boxes covering every dimension but the outermost "
                           f"non-1 one and the last")
    return lay.addr + int(rows[0]) * lay.pitch + c0 * lay.elem, step * lay.pitch


def _pad_bits(value: float, dtype: DType) -> int:
    """The raw bits of a padding element of ``dtype`` (little-endian, low bytes)."""
    raw = np.asarray([value]).astype(NP_DTYPE[dtype]).view(np.uint8).tobytes()
    return int.from_bytes(raw, "little")


def layout_shape(op: MicroOp, tile) -> tuple[Any, dict[str, int]]:
    """``(MemFunc, MemArgs shape fields)`` of a LAYOUT im2col or transpose on the memory
    tile's layout engine: everything but the addresses and pitches (what its cycle count
    depends on, :mod:`accelpool.sched.cost.layout`). A copy's EXEC depends on its source's memory
    layout: :func:`layout_exec`.

    Raises
    ------
    NotLowered
        Not a LAYOUT micro-op, a layout function the engine lacks, dilations other than 1.
    CodegenError
        Shapes that do not agree, an element size the engine does not move.
    """
    MemFunc, _ = _layout_spec()
    who = op_label(op, tile)
    if op.op is not OpType.LAYOUT:
        raise NotLowered(f"{who}not lowered: {WHY_NOT[UnitKind.MEMORY]}")
    x, out = op.inputs[0], op.outputs[0]
    e = op.dtype.bytes
    if e not in (1, 2, 4):
        raise CodegenError(f"{who}{op.dtype.key} elements of {e} bytes; the layout engine "
                           f"moves 1-, 2- or 4-byte elements")
    args = {"elem_log2": e.bit_length() - 1}
    if op.func is LayoutFunc.IM2COL:
        xd, cd = x.last_dims(3), out.last_dims(2)
        if xd is None or cd is None:
            raise CodegenError(f"{who}im2col takes one image x[C, H, W] ({x}) to cols[C*kh*kw, "
                               f"OH*OW] ({out}); a leading dimension is not 1")
        c, h, w = xd
        kh, kw = op.attrs["kernel"]
        sh, sw = op.attrs.get("strides", (1, 1))
        pt, pl, pb, pr = op.attrs.get("pads", (0, 0, 0, 0))
        dil = tuple(op.attrs.get("dilations", (1, 1)))
        if any(d != 1 for d in dil):
            raise NotLowered(f"{who}not lowered: dilations {list(dil)}; the layout engine's "
                             f"im2col takes dilation 1 only")
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        if cd != (c * kh * kw, oh * ow):
            raise CodegenError(f"{who}im2col of {list(xd)} with kernel {kh}x{kw}, strides "
                               f"{sh}x{sw}, pads {[pt, pl, pb, pr]} gives [{c * kh * kw}, "
                               f"{oh * ow}], not {list(cd)} ({out})")
        args.update(channels=c, height=h, width=w, kernel_h=kh, kernel_w=kw, stride_h=sh,
                    stride_w=sw, pad_top=pt, pad_left=pl, out_h=oh, out_w=ow,
                    pad_value=_pad_bits(op.attrs.get("pad_value", 0), op.dtype))
        return MemFunc.IM2COL, args
    if op.func is LayoutFunc.TRANSPOSE:
        xd, od = x.last_dims(2), out.last_dims(2)
        if xd is None or od is None or od != xd[::-1]:
            raise CodegenError(f"{who}transpose takes a matrix [R, C] ({x}) to [C, R] ({out})")
        args.update(rows=xd[0], cols=xd[1])
        return MemFunc.TRANSPOSE, args
    if op.func is LayoutFunc.COPY:
        raise CodegenError(f"{who}a copy's EXEC follows its source's memory layout: "
                           f"layout_exec() compiles it (one TRANSPOSE out of a channels-last "
                           f"image)")
    raise NotLowered(f"{who}not lowered: the layout engine has no {op.func}; it runs "
                     f"{', '.join(f.name.lower() for f in MemFunc)}")


def _copy_out_of_channels_last(ctx: LowerCtx, op: MicroOp, who: str) -> tuple[Any, dict[str, int]]:
    """A LAYOUT copy of a channels-last image (or a reshape of one) into a row-major
    buffer: the image's one channel block is ``H*W`` pixel rows of ``C`` channels, so the
    copy (channel ``c``'s pixels at row-major element ``c * H * W``) is one TRANSPOSE."""
    MemFunc, _ = _layout_spec()
    x, out = op.inputs[0], op.outputs[0]
    xl, ol = ctx.lays[x.buffer], ctx.lays[out.buffer]
    img = ctx.lays[xl.view_of] if xl.view_of is not None else xl
    if not img.channels_last:
        raise NotLowered(f"{who}not lowered: a copy between row-major buffers ({x} -> "
                         f"{out}); the layout engine copies out of a channels-last image")
    c, hw, blocks = img._img
    if blocks != 1:
        raise NotLowered(f"{who}not lowered: {img.name} holds its {c} channels in {blocks} "
                         f"blocks of {img.block}; one layout-engine TRANSPOSE moves one block")
    whole = lambda r, lay: (tuple(r.offset) == (0,) * len(r.offset)   # noqa: E731
                            and r.size == math.prod(ctx.g.buffers[r.buffer].shape))
    if not (whole(x, xl) and whole(out, ol)) or out.size != c * hw:
        raise NotLowered(f"{who}not lowered: a copy of part of an image ({x} -> {out}); the "
                         f"layout engine copies whole images")
    if ol.channels_last or ol.view_of is not None:
        raise NotLowered(f"{who}not lowered: the copy's result {out} is not row-major")
    e = img.elem
    if ol.cols == hw:                       # one result row per channel
        dst_pitch = ol.pitch
    elif ol.pitch == ol.cols * e:           # unpadded rows: the channels follow each other
        dst_pitch = hw * e
    else:
        raise NotLowered(f"{who}not lowered: the result {out} has padded rows of {ol.cols} "
                         f"elements, which do not hold whole channels of {hw} pixels")
    return MemFunc.TRANSPOSE, {"src_addr": img.addr, "dst_addr": ol.addr,
                               "elem_log2": e.bit_length() - 1, "src_pitch": img.pitch,
                               "dst_pitch": dst_pitch, "rows": hw, "cols": c}


def lower_layout(ctx: LowerCtx, op: MicroOp, tile) -> tuple[Any, dict[str, int]]:
    """``(MemFunc, MemArgs fields)`` of a LAYOUT micro-op on the memory tile's engine."""
    _, MemArgs = _layout_spec()
    who = op_label(op, tile)
    x, out = op.inputs[0], op.outputs[0]
    for r in (x, out):
        if ctx.dtype(r) is not op.dtype:
            raise CodegenError(f"{who}{r} is {ctx.dtype(r).key}; the layout engine copies "
                               f"{op.dtype.key} elements unchanged")
    e = op.dtype.bytes
    if op.func is LayoutFunc.COPY:
        func, args = _copy_out_of_channels_last(ctx, op, who)
    else:
        func, shape = layout_shape(op, tile)
        for r in (x, out):
            lay = ctx.lays[r.buffer]
            if lay.channels_last or lay.view_of is not None:
                raise NotLowered(f"{who}not lowered: {r} is stored channels-last (the "
                                 f"convolution engine's layout); the layout engine's "
                                 f"{op.func.value} takes row-major operands")
        src, src_pitch = _even_rows(ctx.lays[x.buffer], x, who, "the source")
        dst, dst_pitch = _even_rows(ctx.lays[out.buffer], out, who, "the result")
        args = {"src_addr": src, "dst_addr": dst, "src_pitch": src_pitch,
                "dst_pitch": dst_pitch, **shape}
    for name, fld in MemArgs:
        width = Shape.cast(fld.shape).width
        if not 0 <= args.get(name, 0) < 1 << width:
            raise CodegenError(f"{who}the layout engine's {name} field ({width} bits) holds "
                               f"0..{(1 << width) - 1}, not {args[name]}")
    for name in ("src_addr", "dst_addr", "src_pitch", "dst_pitch"):
        if args[name] % e:
            raise CodegenError(f"{who}{name} {args[name]:#x} is not a multiple of the "
                               f"{e}-byte element")
    return func, args


def layout_exec(graph: Graph, op: MicroOp, tile, flit_bytes: int) -> tuple[Any, dict[str, int]]:
    """The layout engine's EXEC ``(MemFunc, MemArgs fields)`` :func:`compile_schedule` emits
    for the LAYOUT micro-op ``op`` on the memory tile ``tile`` (buffer layouts for
    ``flit_bytes``): what the cost model prices the memory tile's EXEC with.

    Raises
    ------
    NotLowered, CodegenError
        As :func:`compile_schedule` would for this placement.
    """
    return lower_layout(LowerCtx(graph, graph_layouts(graph, flit_bytes), flit_bytes), op, tile)
