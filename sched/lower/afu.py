"""Lowering of activation, element-wise and (de)quantization micro-ops to the AFU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accelpool.sched.ir import ActFunc, EltwiseFunc, MicroOp, OpType, TensorRef
from accelpool.sched.lower.common import (LOWERINGS, ALIGN, CodegenError, NP_DTYPE, NotLowered,
                                          LowerCtx, Operand, Plan, blob_rows, ceil_div,
                                          const_array, op_label)
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.golden import activations as act
from accelpool.spec.units.afu import AfuDType, AfuFunc

_AFU_ACT = {ActFunc.RELU: "RELU", ActFunc.LEAKY_RELU: "LEAKY_RELU", ActFunc.SIGMOID: "SIGMOID",
            ActFunc.TANH: "TANH", ActFunc.GELU: "GELU"}


_AFU_ELT = {EltwiseFunc.ADD: "ADD", EltwiseFunc.MUL: "MUL"}


def _quant_of(ctx: LowerCtx, op: MicroOp, r: TensorRef, side: str, who: str) -> tuple[float, int]:
    """Quantisation of an INT8 operand (``x``) or result (``y``), as the golden executor's
    units' arithmetic takes it: ``attrs`` ``<side>_scale``/``<side>_zero_point``, else the
    buffer's."""
    a = op.attrs
    if f"{side}_scale" in a:
        return float(a[f"{side}_scale"]), int(a.get(f"{side}_zero_point", 0))
    q = ctx.g.buffers[r.buffer].quant or ctx.g.base(r.buffer).quant
    if q is None:
        raise CodegenError(f"{who}the AFU's INT8 table needs the quantisation of {r}: attrs "
                           f"{side}_scale/{side}_zero_point or the buffer's quant")
    return float(q.scale), int(q.zero_point)


def lower_afu(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    who = op_label(op, tile)
    if op.op is OpType.ELTWISE and op.dtype is not DType.BF16:
        raise NotLowered(f"{who}not lowered: the AFU's INT8 add/mul need requantisation "
                         f"multipliers the micro-op does not carry. Accepted on the AFU: BF16 "
                         f"and INT8 activations, BF16 ADD and MUL")
    if op.dtype not in (DType.BF16, DType.INT8):
        raise CodegenError(f"{who}the AFU takes BF16 or INT8, not {op.dtype.key}")
    if op.func is ActFunc.GELU and op.attrs.get("approximate", "none") != "none":
        raise NotLowered(f"{who}not lowered: GELU approximate="
                         f"{op.attrs['approximate']!r}; the AFU computes the erf form "
                         f"(approximate='none')")
    wb = 2 * tile["lanes"]
    fb = ctx.fb
    e = op.dtype.bytes
    out = op.outputs[0]
    for r in op.inputs + op.outputs:
        if not ctx.is_const(r) and ctx.dtype(r) is not op.dtype:
            raise CodegenError(f"{who}{r} is {ctx.dtype(r).key}; the AFU reads and writes "
                               f"{op.dtype.key} here")
        if not ctx.is_const(r) and r.size != out.size:
            raise NotLowered(f"{who}not lowered: operand {r} is broadcast but not a constant; "
                             f"the AFU reads dense vectors of the result's length")
    olay = ctx.lays[out.buffer]
    rows_idx, c0, w = olay.box_rows(out)
    rows = len(rows_idx)
    full = [r for r in op.inputs if not ctx.is_const(r)] + [out]
    whole = all(ctx.lays[r.buffer].box_rows(r)[1:] == (0, ctx.lays[r.buffer].cols)
                and tuple(r.shape) == tuple(out.shape)
                and ctx.lays[r.buffer].pitch == olay.pitch for r in full)
    if whole:                         # padded rows, padding computed too
        stride = olay.pitch
        count = rows * stride // e
    elif (w * e) % fb == 0 or rows == 1:
        stride = ceil_div(w * e, fb)
        count = rows * w
    else:
        raise CodegenError(f"{who}rows of {w} {op.dtype.key} elements are not whole {fb}-byte "
                           f"flits and do not cover whole buffer rows, so they can neither be "
                           f"packed densely nor loaded with their padding")
    region = ceil_div(rows * stride, wb)
    operands = []
    for i, r in enumerate(op.inputs):
        if ctx.is_const(r):
            v = np.asarray(const_array(ctx.g, r)).astype(NP_DTYPE[op.dtype])
            v = (v.reshape(rows, w) if v.size == rows * w
                 else np.broadcast_to(v.reshape(-1), (rows, w)))
            operands.append(Operand(i, region, blob=blob_rows(v, rows, stride, region)))
        else:
            operands.append(Operand(i, region, ref=r, pitch=stride))
    res = Operand("out", region, ref=out, pitch=stride)
    extra: dict[str, Any] = {}
    if op.op is OpType.ELTWISE:
        func = AfuFunc[_AFU_ELT[op.func]]
    elif op.dtype is DType.BF16:
        func = AfuFunc[_AFU_ACT[op.func]]
        if op.func is ActFunc.LEAKY_RELU:
            extra["alpha"] = act.leaky_relu_alpha_bits(op.attrs.get("alpha", 0.01))
    else:                             # INT8: max(x, zp) or the 256-entry table
        xs, xz = _quant_of(ctx, op, op.inputs[0], "x", who)
        ys, yz = _quant_of(ctx, op, out, "y", who)
        if op.func is ActFunc.RELU and (xs, xz) == (ys, yz):
            func = AfuFunc.RELU
            extra["y_zero_point"] = xz
        else:
            name = "leaky_relu" if op.func in (ActFunc.RELU, ActFunc.LEAKY_RELU) else op.func.value
            alpha = 0.0 if op.func is ActFunc.RELU else float(op.attrs.get("alpha", 0.01))
            func = AfuFunc[_AFU_ACT[op.func if op.func is not ActFunc.RELU
                                    else ActFunc.LEAKY_RELU]]
            table = act.int8_table(name, xs, xz, ys, yz, alpha=alpha)
            blob = np.asarray(table, np.int8).tobytes()
            operands.append(Operand("table", ceil_div(len(blob), wb), blob=blob + bytes(
                ceil_div(len(blob), wb) - len(blob))))
    dt = AfuDType.BF16 if op.dtype is DType.BF16 else AfuDType.INT8

    def build(addr):
        args = {"a_addr": addr[0], "out_addr": addr["out"], "count": count, "dtype": dt,
                **extra}
        if op.op is OpType.ELTWISE:
            args["b_addr"] = addr[1]
        if "table" in addr:
            args["table_addr"] = addr["table"]
        return func, args
    return Plan(operands, res, build, max(ALIGN, wb))


def lower_afu_convert(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    """DEQUANTIZE (INT8 -> BF16) or QUANTIZE (BF16 -> INT8) on the AFU (module docstring)."""
    who = op_label(op, tile)
    x, out = op.inputs[0], op.outputs[0]
    deq = op.op is OpType.DEQUANTIZE
    in_dt, out_dt = (DType.INT8, DType.BF16) if deq else (DType.BF16, DType.INT8)
    if ctx.dtype(x) is not in_dt:
        if deq and ctx.dtype(x) is DType.INT32:
            raise NotLowered(f"{who}not lowered: the AFU's DEQUANTIZE reads INT8, not INT32 "
                             f"({x})")
        raise CodegenError(f"{who}{x} is {ctx.dtype(x).key}; the AFU's {op.op.name} reads "
                           f"{in_dt.key}")
    if ctx.dtype(out) is not out_dt:
        raise CodegenError(f"{who}{out} is {ctx.dtype(out).key}; the AFU's {op.op.name} "
                           f"writes {out_dt.key}")
    wb = 2 * tile["lanes"]
    olay = ctx.lays[out.buffer]
    rows_idx, _, w = olay.box_rows(out)
    rows = len(rows_idx)
    xrows, _, xw = ctx.lays[x.buffer].box_rows(x)
    if (len(xrows), xw) != (rows, w):
        raise CodegenError(f"{who}operand {x} has {len(xrows)} rows of {xw} elements but the "
                           f"result {out} {rows} of {w}; the AFU converts row for row")
    stride = ceil_div(w, ctx.fb)          # elements per scratchpad row: whole flits both sides
    count = rows * stride
    in_pitch, out_pitch = stride * in_dt.bytes, stride * out_dt.bytes
    in_region, out_region = ceil_div(rows * in_pitch, wb), ceil_div(rows * out_pitch, wb)
    if ctx.is_const(x):
        v = np.asarray(const_array(ctx.g, x)).astype(NP_DTYPE[in_dt]).reshape(rows, w)
        operand = Operand(0, in_region, blob=blob_rows(v, rows, in_pitch, in_region))
    else:
        operand = Operand(0, in_region, ref=x, pitch=in_pitch)
    res = Operand("out", out_region, ref=out, pitch=out_pitch)
    zp = int(op.attrs["zero_point"])
    if not -128 <= zp <= 127:
        raise CodegenError(f"{who}zero point {zp} is not an INT8 (-128..127)")
    try:
        if deq:
            func, dt = AfuFunc.DEQUANTIZE, AfuDType.INT8
            extra = {"alpha": act.dequantize_scale_bits(op.attrs["scale"]), "a_zero_point": zp}
        else:
            func, dt = AfuFunc.QUANTIZE, AfuDType.BF16
            mult, shift = act.quantize_args(op.attrs["scale"])
            extra = {"multiplier": mult, "shift": shift, "y_zero_point": zp}
    except ValueError as e:
        raise CodegenError(f"{who}{e}") from None

    def build(addr):
        return func, {"a_addr": addr[0], "out_addr": addr["out"], "count": count,
                      "dtype": dt, **extra}
    return Plan([operand], res, build, max(ALIGN, wb))


LOWERINGS.register((UnitKind.AFU, OpType.ACT), lower_afu)
LOWERINGS.register((UnitKind.AFU, OpType.ELTWISE), lower_afu)
LOWERINGS.register((UnitKind.AFU, OpType.QUANTIZE), lower_afu_convert)
LOWERINGS.register((UnitKind.AFU, OpType.DEQUANTIZE), lower_afu_convert)
