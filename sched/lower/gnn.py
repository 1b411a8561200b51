"""Lowering of AGGREGATE micro-ops to the GNN unit.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from accelpool.sched.ir import AggFunc, MicroOp, OpType
from accelpool.sched.lower.common import (LOWERINGS, ALIGN, CodegenError, NotLowered, LowerCtx,
                                          Operand, Plan, blob_rows, ceil_div, const_array,
                                          matrix_of, op_label)
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.formats import encode_csr, padded_cols, word_bytes
from accelpool.spec.units.gnn import GnnFunc

def lower_gnn(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    who = op_label(op, tile)
    lanes = tile["lanes"]
    wb = word_bytes(lanes)
    adj, x = op.inputs
    if not ctx.is_const(adj):
        raise CodegenError(f"{who}the adjacency {adj} must be a constant")
    if ctx.dtype(x) is not DType.BF16:
        raise NotLowered(f"{who}not lowered: the GNN reads BF16 features, not "
                         f"{ctx.dtype(x).key} ({x})")
    rows, nodes = matrix_of(adj, who, "adjacency")
    kx, f = matrix_of(x, who, "features")
    if kx != nodes:
        raise CodegenError(f"{who}the adjacency {adj} has {nodes} columns but the features "
                           f"{x} have {kx} rows")
    dense = const_array(ctx.g, adj).reshape(rows, nodes)
    csr = encode_csr((dense != 0).astype(np.float32))
    ptr = csr.indptr.astype("<u4").tobytes()
    idx = csr.indices.astype("<u4").tobytes()
    ptr_b = ptr + bytes(ceil_div(len(ptr), wb) - len(ptr))
    idx_b = idx + bytes(max(wb, ceil_div(len(idx), wb)) - len(idx))
    fp = padded_cols(f, lanes)
    out = op.outputs[0]
    odt = ctx.dtype(out)
    if odt not in (DType.BF16, DType.FP32):
        raise CodegenError(f"{who}the GNN writes BF16 or FP32, not {odt.key} ({out})")
    o = odt.bytes
    operands = [Operand("ptr", len(ptr_b), blob=ptr_b), Operand("idx", len(idx_b), blob=idx_b),
                Operand("x", ceil_div(nodes * fp * 2, wb), ref=x, pitch=fp * 2)]
    if ctx.is_const(x):
        v = np.asarray(const_array(ctx.g, x)).astype(ml_dtypes.bfloat16).reshape(nodes, f)
        operands[2] = Operand("x", operands[2].region,
                               blob=blob_rows(v, nodes, fp * 2, operands[2].region))
    res = Operand("out", ceil_div(rows * fp * o, wb), ref=out, pitch=fp * o)
    func = {AggFunc.SUM: GnnFunc.SUM, AggFunc.MEAN: GnnFunc.MEAN}[op.func]

    def build(addr):
        return func, {"ptr_addr": addr["ptr"], "idx_addr": addr["idx"], "x_addr": addr["x"],
                      "out_addr": addr["out"], "nodes": rows, "features": f,
                      "edges": csr.nnz, "out_bf16": int(odt is DType.BF16)}
    return Plan(operands, res, build, max(ALIGN, wb))


LOWERINGS.register((UnitKind.GNN, OpType.AGGREGATE), lower_gnn)
