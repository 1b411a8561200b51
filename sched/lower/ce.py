"""Lowering of CONV micro-ops to the convolution engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from accelpool.sched.ir import MicroOp, OpType
from accelpool.sched.lower.common import (LOWERINGS, ALIGN, CodegenError, NotLowered, LowerCtx,
                                          Operand, Plan, ceil_div, const_array, requant_params,
                                          op_label)
from accelpool.spec.ce_layout import ConvShape, pack_bias, pack_weights
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.units.ce import WEIGHT_DEPTH, CeFunc

def lower_ce(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    """CONV on the convolution engine (:mod:`accelpool.hw.ce`).

    The image and the result are channels-last buffers (:func:`channels_last_buffers`), so
    the micro-op's input rows (pixels ``lo..hi`` of its input channels) are the CE's input
    layout and its result rows land where the CE writes them. The golden CONV pads with
    ``pad_value`` (the input zero point) and takes a bias already corrected for it; the CE
    subtracts ``x_zero_point`` from real taps and skips padded ones, so codegen passes
    ``x_zero_point = pad_value`` and the uncorrected bias ``b + pad_value * sum(w)`` (per
    output channel, in INT32 wraparound): the same sums bit for bit."""
    who = op_label(op, tile)
    ol, il = tile["oc_lanes"], tile["ic_lanes"]
    if op.attrs.get("k_steps", 1) > 1:
        raise NotLowered(f"{who}not lowered: the CE has no partial-sum input, and this "
                         f"convolution is split along its input channels (k_step "
                         f"{op.attrs.get('k_step')} of {op.attrs['k_steps']})")
    if tuple(op.attrs.get("dilations", (1, 1))) != (1, 1):
        raise NotLowered(f"{who}not lowered: the CE has no dilation "
                         f"({op.attrs['dilations']})")
    sh, sw = op.attrs["strides"]
    if sh != sw:
        raise NotLowered(f"{who}not lowered: the CE's stride is one value for both axes, "
                         f"not {sh} x {sw}")
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if op.dtype is not DType.INT8 or ctx.dtype(x) is not DType.INT8:
        raise CodegenError(f"{who}the CE reads INT8 images, not {ctx.dtype(x).key} ({x})")
    odt = ctx.dtype(y)
    if odt not in (DType.INT8, DType.INT32):
        raise CodegenError(f"{who}the CE writes INT8 or INT32, not {odt.key} ({y})")
    for r in (x, y):
        if not ctx.lays[r.buffer].channels_last:
            raise CodegenError(f"{who}{r} is not stored channels-last")
    if not ctx.is_const(w):
        raise CodegenError(f"{who}the CE's weights {w} must be a constant")
    s = op.shape
    shape = ConvShape(c_in=s["IC"], c_out=s["OC"], height=s["H"], width=s["W"],
                      kernel_h=s["KH"], kernel_w=s["KW"], stride=sh,
                      pads=tuple(int(p) for p in op.attrs["pads"]))
    try:
        shape.check(ic_lanes=il, weight_depth=WEIGHT_DEPTH)
    except ValueError as e:
        raise NotLowered(f"{who}not lowered: {e}") from None
    if (shape.out_h, shape.out_w) != (s["OH"], s["OW"]):
        raise CodegenError(f"{who}the output {s['OH']}x{s['OW']} is not what a "
                           f"{shape.height}x{shape.width} image gives ({shape.out_h}x{shape.out_w})")
    wv = np.asarray(const_array(ctx.g, w)).astype(np.int8).reshape(s["OC"], s["IC"], s["KH"], s["KW"])
    pv = int(op.attrs.get("pad_value", 0))
    if not -128 <= pv <= 127:
        raise CodegenError(f"{who}pad value {pv} is not an INT8")
    bias = np.zeros(s["OC"], np.int64)
    if len(op.inputs) > 2:
        if not ctx.is_const(op.inputs[2]):
            raise NotLowered(f"{who}not lowered: the CE's bias {op.inputs[2]} must be a "
                             f"constant (the CE has no partial-sum input)")
        bias = np.asarray(const_array(ctx.g, op.inputs[2])).astype(np.int64).reshape(-1)
    bias = bias + pv * wv.astype(np.int64).sum(axis=(1, 2, 3))
    bias = ((bias + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    extra: dict[str, Any] = {"requant": False}
    if odt is DType.INT8:
        mult, shift, zp = requant_params(op, who)
        extra = {"requant": True, "multiplier": mult, "shift": shift, "y_zero_point": zp}

    def blob(raw: bytes) -> bytes:
        return raw + bytes(ceil_div(len(raw), ALIGN) - len(raw))
    icb, ocb = -(-s["IC"] // il), -(-s["OC"] // ol)
    ob = 1 if extra["requant"] else 4
    operands = [Operand("x", ceil_div(shape.input_bytes(il), ALIGN), ref=x, pitch=icb * il),
                Operand("w", 0, blob=blob(pack_weights(wv, ol, il))),
                Operand("bias", 0, blob=blob(pack_bias(bias, ol)))]
    for o in operands[1:]:
        o.region = len(o.blob)
    res = Operand("out", ceil_div(shape.output_bytes(ol, extra["requant"]), ALIGN), ref=y,
                   pitch=ocb * ol * ob)

    def build(addr):
        return CeFunc.CONV, shape.exec_args(in_addr=addr["x"], w_addr=addr["w"],
                                            bias_addr=addr["bias"], out_addr=addr["out"],
                                            bias=True, x_zero_point=pv, **extra)
    return Plan(operands, res, build, ALIGN)


LOWERINGS.register((UnitKind.CE, OpType.CONV), lower_ce)
