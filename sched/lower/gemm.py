"""Lowering of GEMM (and dense SPMM) micro-ops to the systolic units (DMU, LPU).
"""

from __future__ import annotations

import math

import numpy as np

from accelpool.sched.ir import MicroOp, OpType, TensorRef
from accelpool.sched.lower.common import (LOWERINGS, ALIGN, CodegenError, NP_DTYPE, NotLowered,
                                          LowerCtx, Operand, Plan, blob_rows, ceil_div,
                                          const_array, matrix_of, requant_params, op_label)
from accelpool.spec import isa
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.gemm_layout import a_pitch, systolic_word_bytes

def lower_gemm(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    who = op_label(op, tile)
    e = op.dtype.bytes
    R, C = tile["rows"], tile["cols"]
    wb = systolic_word_bytes(R, C, e)
    a, b = op.inputs[0], op.inputs[1]
    m, k = matrix_of(a, who, "A")
    k2, n = matrix_of(b, who, "B")
    if k2 != k:
        raise CodegenError(f"{who}A {a} and B {b} do not chain (K {k} != {k2})")
    mp, np_ = ceil_div(m, R), ceil_div(n, C)
    # A unit whose EXEC requantises (the LPU's INT8 array) accumulates in INT32 and may
    # requantise to INT8; the others (the DMU's BF16 array) accumulate in FP32 and may
    # round the result to BF16.
    spec = isa.exec_spec(tile.kind)
    funcs, integer = spec.funcs, "requant" in spec.args.members
    acc_dt = DType.INT32 if integer else DType.FP32
    out = op.outputs[0]
    odt = ctx.dtype(out)
    unit = tile.kind.key.upper()
    if not integer:
        if odt not in (DType.FP32, DType.BF16):
            raise CodegenError(f"{who}the {unit} writes FP32 or BF16, not {odt.key} ({out})")
        extra = {"out_bf16": int(odt is DType.BF16)}
    else:
        if odt not in (DType.INT32, DType.INT8):
            raise CodegenError(f"{who}the {unit} writes INT32 or INT8, not {odt.key} ({out})")
        extra = {"requant": 0}
        if odt is DType.INT8:
            mult, shift, zp = requant_params(op, who)
            extra = {"requant": 1, "multiplier": mult, "shift": shift, "zero_point": zp}

    def place(ref, key, rows_p, cols, elem, pitch, dt, broadcast_to=None):
        region = ceil_div(rows_p * pitch, wb)
        if ctx.is_const(ref):
            v = const_array(ctx.g, ref)
            v = v.reshape(matrix_of(ref, who, str(key)))
            if broadcast_to is not None:
                v = np.broadcast_to(v, broadcast_to)
            v = np.asarray(v).astype(NP_DTYPE[dt])
            return Operand(key, region, blob=blob_rows(v, rows_p, pitch, region))
        if broadcast_to is not None and matrix_of(ref, who, str(key)) != broadcast_to:
            raise NotLowered(f"{who}the accumulator {ref} is broadcast but not a constant; "
                             f"the unit reads a full Mp x Np accumulator")
        return Operand(key, region, ref=ref, pitch=pitch)

    if ctx.lays[a.buffer].view_of is not None and not ctx.is_const(a):
        runs, perm = _flatten_runs(ctx, op, a, b, who)
        pa = a_pitch(k, e, wb)
        ops = [Operand("a", ceil_div(mp * pa, wb), ref=a, pitch=pa, runs=runs)]
        w_rows = np.asarray(ctx.g.base(b.buffer).data).reshape(ctx.g.buffers[b.buffer].shape)
        v = w_rows[perm][:, b.offset[1]:b.offset[1] + n].astype(NP_DTYPE[op.dtype])
        region = ceil_div(k * np_ * e, wb)
        ops.append(Operand("b", region, blob=blob_rows(v, k, np_ * e, region)))
    else:
        ops = [place(a, "a", mp, k, e, a_pitch(k, e, wb), op.dtype),
               place(b, "b", k, n, e, np_ * e, op.dtype)]
    if len(op.inputs) > 2:
        ops.append(place(op.inputs[2], "c", mp, n, 4, np_ * 4, acc_dt, broadcast_to=(m, n)))
    o = odt.bytes
    d = Operand("out", ceil_div(mp * np_ * o, wb), ref=out, pitch=np_ * o)
    func = funcs.GEMM

    def build(addr):
        args = {"a_addr": addr["a"], "b_addr": addr["b"], "d_addr": addr["out"],
                "m": m, "n": n, "k": k, "accumulate": int("c" in addr),
                "c_addr": addr.get("c", 0), **extra}
        return func, args
    return Plan(ops, d, build, max(ALIGN, wb))


def _flatten_runs(ctx: LowerCtx, op: MicroOp, a: TensorRef, b: TensorRef, who: str
                  ) -> tuple[list[tuple[int, int]], np.ndarray]:
    """A GEMM's A operand ``[1, k]`` read from the flatten of a channels-last image.

    The image's bytes are pixel-major (``p * C + c``) while the flatten counts ``c * H * W
    + p``, so the micro-op reads the ``k`` elements *stored* at its K range and multiplies
    them by the weight rows of the flatten indices stored there. Over a GEMM chain covering
    all of K every product is made exactly once; integer sums do not depend on the order,
    so the result is the golden one bit for bit (a floating-point sum would round
    differently: not lowered). Returns the memory run and the flatten index of each
    element of it."""
    lay = ctx.lays[a.buffer]
    base = ctx.lays[lay.view_of]
    order = base.flat_order()
    total = math.prod(base.shape)
    e, fb = lay.elem, ctx.fb
    _, c0 = a.offset if len(a.offset) == 2 else (0, 0)
    k = a.shape[-1]
    why = None
    if op.dtype is not DType.INT8:
        why = (f"{op.dtype.key} sums depend on the order of the products, and the "
               f"image's channels-last bytes hold the flatten in another order")
    elif tuple(lay.shape) != (1, total) or tuple(a.shape) != (1, k):
        why = f"{a} is not one row of the flatten [1, {total}] of {base.name!r}"
    elif base.pitch != base.cols * e or len(order) != total:
        why = f"the rows of {base.name!r} are padded (blocks of {base.block} channels)"
    elif (c0 * e) % fb or ((c0 + k) * e % fb and c0 + k != total):
        why = f"columns {c0}..{c0 + k - 1} do not start and end on {fb}-byte flits"
    elif not ctx.is_const(b) or b.offset[0] != c0 or ctx.g.buffers[b.buffer].shape[0] != total:
        why = f"the weights {b} are not rows {c0}.. of a constant [{total}, N]"
    else:
        perm = order[c0:c0 + k]
        writers = _writers(ctx, base.name)
        extra = set(writers[perm]) - set(writers[c0:c0 + k])
        if extra:
            why = (f"its stored elements {c0}..{c0 + k - 1} are written by micro-op(s) "
                   f"{sorted(extra)[:3]} it does not depend on")
    if why:
        raise NotLowered(f"{who}not lowered: A reads the flatten {a.buffer!r} of the "
                         f"channels-last image {base.name!r}, and {why}. Accepted: an INT8 "
                         f"GEMM chain over whole flits of the flatten with constant weights")
    return [(base.addr + c0 * e, ceil_div(k * e, fb))], perm


def _writers(ctx: LowerCtx, name: str) -> np.ndarray:
    """The micro-op writing each element of base buffer ``name`` (row-major index), or ''."""
    cache = ctx.__dict__.setdefault("_writers", {})
    if name not in cache:
        g = ctx.g
        shape = tuple(g.buffers[name].shape)
        who = np.full(shape, "", dtype=object)
        for o in g.ops:
            for r in o.outputs:
                if g.base(r.buffer).name == name:
                    rb = g.buffers[r.buffer]
                    view = who.reshape(rb.shape)
                    view[r.slices] = o.id
        cache[name] = who.reshape(-1)
    return cache[name]


LOWERINGS.register((UnitKind.DMU, OpType.GEMM), lower_gemm)
LOWERINGS.register((UnitKind.DMU, OpType.SPMM), lower_gemm)
LOWERINGS.register((UnitKind.LPU, OpType.GEMM), lower_gemm)
