"""Per-unit lowerings: what each unit kind's commands for one micro-op are.

A lowering (:data:`LOWERINGS`, by unit kind and operation) turns a micro-op placed on a
tile into its plan: the operands it LOADs (in the unit's layout), the EXEC, the result
it STOREs. :mod:`accelpool.sched.codegen` drives them over a schedule (allocation,
streams, tokens, memory image); the cost model prices the same plan
(:func:`op_transfers`), so a micro-op is lowered one way for both.
"""

from __future__ import annotations

from accelpool.spec.config import UnitKind
from accelpool.sched.ir import Graph, MicroOp
from accelpool.sched.lower.common import (LOWERINGS, WHY_NOT, NotLowered, LowerCtx, Plan,
                                          graph_layouts, transfer_moves, operand_runs,
                                          row_runs, op_label)
# The units' lowerings, which register themselves in LOWERINGS in this order.
from accelpool.sched.lower import gemm, afu, gnn, ce, smu  # noqa: F401
from accelpool.sched.lower.layout import lower_layout

__all__ = ["LOWERINGS", "plan_op", "op_transfers"]


def _accepted() -> str:
    return ", ".join(f"{o.value} on {k.key}" for k, o in LOWERINGS)


def plan_op(ctx: LowerCtx, op: MicroOp, tile) -> Plan:
    low = LOWERINGS.get((tile.kind, op.op))
    if low is None:
        why = WHY_NOT.get(op.op) or WHY_NOT.get(tile.kind) or \
            f"no lowering of {op.op.value} on a {tile.kind.key}"
        raise NotLowered(f"{op_label(op, tile)}not lowered: {why}. Accepted: {_accepted()}")
    return low(ctx, op, tile)


def op_transfers(graph: Graph, op: MicroOp, tile, flit_bytes: int) -> tuple[list[int], list[int]]:
    """The byte lengths of the LOADs and of the STOREs :func:`compile_schedule` emits for
    ``op`` on ``tile`` (operands into the unit's layout, result rows back), without the
    fence: what the cost model charges for moving the micro-op's data.

    Raises
    ------
    NotLowered, CodegenError
        As :func:`compile_schedule` would for this placement.
    """
    cache = graph.__dict__.setdefault("_op_transfers", {})
    key = (op.id, tile.name, flit_bytes)
    hit = cache.get(key)
    if hit is not None:
        return hit
    lays = graph_layouts(graph, flit_bytes)
    if tile.kind is UnitKind.MEMORY:        # the layout engine works in place: no transfers
        lower_layout(LowerCtx(graph, lays, flit_bytes), op, tile)
        cache[key] = hit = ([], [])
        return hit
    plan = plan_op(LowerCtx(graph, lays, flit_bytes), op, tile)
    who = op_label(op, tile)
    loads: list[int] = []
    for o in plan.operands:
        if o.blob is not None:
            loads.append(len(o.blob))
        else:
            loads += [m[2] for m in transfer_moves(operand_runs(lays, o, flit_bytes, who), 0,
                                           o.pitch, who)]
    stores = [m[2] for m in transfer_moves(row_runs(lays, plan.out.ref, flit_bytes, who), 0,
                                   plan.out.pitch, who)]
    cache[key] = hit = (loads, stores)
    return hit
