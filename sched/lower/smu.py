"""Lowering of SPMM micro-ops to the SMU.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from accelpool.sched.ir import MicroOp, OpType
from accelpool.sched.lower.common import (LOWERINGS, ALIGN, CodegenError, NotLowered, LowerCtx,
                                          Operand, Plan, blob_rows, ceil_div, const_array,
                                          matrix_of, op_label)
from accelpool.sched.pool import REFUSALS
from accelpool.spec.config import DType, UnitKind
from accelpool.spec.formats import encode_csr, pack_csr, padded_cols, word_bytes
from accelpool.spec.units.smu import SmuFunc

def lower_smu(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    """SPMM on the SMU: ``C = A @ B`` with the sparse A a constant, as CSR blobs (module
    docstring); B rows and C rows padded to ``ceil(N/L) * L`` elements."""
    who = op_label(op, tile)
    lanes = tile["lanes"]
    wb = word_bytes(lanes)
    if op.attrs.get("sparse_operand") != 0:
        raise NotLowered(f"{who}not lowered: the SMU's sparse operand is its left one (A), "
                         f"but this micro-op's sparse operand is B (sparse_operand="
                         f"{op.attrs.get('sparse_operand')!r}); sched.decompose computes such "
                         f"tiles transposed, C^T = B^T A^T")
    if len(op.inputs) > 2:
        raise NotLowered(f"{who}not lowered: the SMU has no accumulator input (every sum "
                         f"starts at +0), but the micro-op adds {op.inputs[2]}")
    a, b = op.inputs[0], op.inputs[1]
    if not ctx.is_const(a):
        raise NotLowered(f"{who}not lowered: the SMU's sparse A {a} must be a constant "
                         f"(encoded as CSR at compile time)")
    for r in (a, b):
        if ctx.dtype(r) is not DType.BF16:
            raise CodegenError(f"{who}the SMU reads BF16 operands, not {ctx.dtype(r).key} ({r})")
    m, k = matrix_of(a, who, "A")
    k2, n = matrix_of(b, who, "B")
    if k2 != k:
        raise CodegenError(f"{who}A {a} and B {b} do not chain (K {k} != {k2})")
    out = op.outputs[0]
    odt = ctx.dtype(out)
    if odt not in (DType.BF16, DType.FP32):
        raise CodegenError(f"{who}the SMU writes FP32 or BF16, not {odt.key} ({out})")
    csr = encode_csr(np.asarray(const_array(ctx.g, a)).reshape(m, k))
    ptr_b, nz_b = pack_csr(csr, lanes)
    nz_b = nz_b or bytes(wb)               # no non-zeros: still a (never read) region
    npad = padded_cols(n, lanes)
    operands = [Operand("ptr", len(ptr_b), blob=ptr_b), Operand("nz", len(nz_b), blob=nz_b)]
    b_region = ceil_div(k * npad * 2, wb)
    if ctx.is_const(b):
        v = np.asarray(const_array(ctx.g, b)).astype(ml_dtypes.bfloat16).reshape(k, n)
        operands.append(Operand("b", b_region, blob=blob_rows(v, k, npad * 2, b_region)))
    else:
        operands.append(Operand("b", b_region, ref=b, pitch=npad * 2))
    o = odt.bytes
    res = Operand("out", ceil_div(m * npad * o, wb), ref=out, pitch=npad * o)

    def build(addr):
        return SmuFunc.SPMM, {"a_ptr_addr": addr["ptr"], "a_nz_addr": addr["nz"],
                              "b_addr": addr["b"], "c_addr": addr["out"], "m": m, "n": n,
                              "k": k, "nnz": csr.nnz, "out_bf16": int(odt is DType.BF16)}
    return Plan(operands, res, build, max(ALIGN, wb))


def smu_refusal(op: Any) -> str:
    """Why an SPMM micro-op cannot run on an SMU ('' if it can): the SMU's sparse operand
    is its left one (A), and every sum starts at +0 (no accumulator input)."""
    if op.op is not OpType.SPMM:
        return ""
    attrs = getattr(op, "attrs", {}) or {}
    if attrs.get("sparse_operand", 0) != 0:
        return "the SMU's sparse operand is A, this micro-op's is B"
    if len(getattr(op, "inputs", ())) > 2:
        return "the SMU has no accumulator input, this micro-op adds one"
    return ""


LOWERINGS.register((UnitKind.SMU, OpType.SPMM), lower_smu)
REFUSALS.register(UnitKind.SMU, smu_refusal)
