"""Tests of the command-stream compiler, run end to end by the functional executor.

Each lowered model (mlp, gcn, transformer, qcnn, cnn) is decomposed, scheduled (greedy, heft),
compiled to binary streams and executed through the units' ISA-level models; the outputs
must equal the golden run (units' arithmetic) bit for bit. Then single tokens, fences,
addresses, pitches and EXEC arguments are removed or corrupted, and every such program
must be rejected or give wrong outputs.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import DType, UnitKind
from accelpool.sched import codegen, models
from accelpool.sched import lower
from accelpool.sched.lower import common as lower_common
from accelpool.sched.lower import layout as lower_layout_mod
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.lower.common import BufferLayout, CodegenError, NotLowered
from accelpool.sched.cost.model import CostModel
from accelpool.sched.decompose import compile_model
from accelpool.sched.funcsim import (ExecutionError, MismatchError, compare_outputs, golden_outputs,
                           run_program)
from accelpool.sched.ir import Buffer, BufferKind, Graph, TensorRef
from accelpool.sched.pool import Pool
from accelpool.sched.schedulers import SCHEDULERS, greedy, heft

POOL = Pool.from_config("default")
_CACHE: dict = {}

#: The models codegen lowers completely on the default pool.
LOWERED = ("mlp", "gcn", "transformer", "qcnn", "cnn", "mixed")


def program(name: str, scheduler=heft):
    """``(graph, inputs, program)`` of a built-in model (compiling needs no unit model)."""
    key = (name, scheduler.__name__)
    if key not in _CACHE:
        g = compile_model(name)
        inputs = models.example_inputs(models.build(name))
        s = scheduler(g.dag, POOL, CostModel(POOL))
        _CACHE[key] = (g, inputs, compile_schedule(g, s, inputs), None)
    return _CACHE[key][:3]


def compiled(name: str, scheduler=heft):
    """``program`` and the golden outputs, for tests that run the streams."""
    program(name, scheduler)
    key = (name, scheduler.__name__)
    g, inputs, prog, gold = _CACHE[key]
    if gold is None:
        gold = golden_outputs(g, inputs)
        _CACHE[key] = (g, inputs, prog, gold)
    return g, inputs, prog, gold


@pytest.mark.parametrize("scheduler", [greedy, heft], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", LOWERED)
def test_streams_reproduce_the_golden_outputs(name, scheduler):
    g, inputs, prog, gold = compiled(name, scheduler)
    res = run_program(prog)
    compare_outputs(res.outputs, gold)
    for t, s in prog.streams.items():
        assert res.executed[t] == len(s.commands)
    summary = prog.token_summary()
    assert summary["waits"] == summary["signals"] > 0
    assert prog.misaligned() == []
    execs = 0
    for t, s in prog.streams.items():
        back = isa.disassemble(s.binary, s.tile.kind)
        assert [c.encode() for c in back] == [c.encode() for c in s.commands]
        for c, d in zip(s.commands, back):
            if c.opcode is isa.Opcode.EXEC:
                execs += 1
                assert d.fields["func"] is c.fields["func"]
                assert {k: d.fields["args"][k] for k in c.fields["args"]} == c.fields["args"]
            else:
                assert d == c
    assert execs == len(g)


def test_memory_layout_pads_rows_to_flits():
    g, inputs, prog = program("gcn")
    y = prog.layouts["y"]                       # [34, 4] BF16: 8-byte rows, no padding
    assert (y.pitch, y.addr % 32) == (8, 0)
    lays, _ = lower_common.buffer_layouts(g, 8)
    assert lays == prog.layouts
    # a [3, 5] BF16 buffer: 10-byte rows padded to 16
    lay = BufferLayout("b", 64, (3, 5), 2, 16)
    vals = np.arange(15, dtype=np.int16).reshape(3, 5).view(ml_dtypes.bfloat16)
    raw = lay.pack(vals)
    assert len(raw) == 48 and raw[10:16] == bytes(6)
    assert np.array_equal(lay.unpack(raw, ml_dtypes.bfloat16).view(np.int16), vals.view(np.int16))
    # padding bytes are marked, element bytes are not
    pad = prog.image.padding
    a1 = prog.layouts["xw2"]                    # [34, 4] BF16: no padding either
    assert not pad[a1.addr:a1.addr + a1.nbytes].any()


def test_box_rows_round_only_into_their_own_padding():
    g, inputs, prog = program("gcn")
    base = prog.layouts["xw1"].addr             # [34, 16] BF16, 32-byte rows
    assert prog.row_runs(TensorRef("xw1", (2, 12), (2, 4))) == [(base + 64 + 24, 8),
                                                                 (base + 96 + 24, 8)]
    with pytest.raises(CodegenError, match=r"xw1\[0:8,2:6\]: a LOAD/STORE moves whole 8-byte "
                                           r"flits .* columns 2..5 of xw1 .* share a flit"):
        prog.row_runs(TensorRef("xw1", (0, 2), (8, 4)))
    with pytest.raises(CodegenError, match=r"start at a multiple of 4 and end at one or at "
                                           r"the row's last column"):
        prog.row_runs(TensorRef("xw1", (0, 0), (8, 6)))
    # a box ending at the row's last element rounds into the padding: [.., 5] BF16 rows
    lay = BufferLayout("b", 0, (3, 5), 2, 16)
    prog.layouts["tmp5"] = lay
    try:
        assert prog.row_runs(TensorRef("tmp5", (1, 4), (2, 1))) == [(16 + 8, 8), (32 + 8, 8)]
    finally:
        del prog.layouts["tmp5"]


def test_a_reshape_changing_the_last_dimension_stores_its_base_unpadded():
    """[4, 6] BF16 (12-byte rows) viewed as [6, 4]: both are stored without row padding, so
    element (r, c) of either is at ``addr + (r * cols + c) * 2``; a LOAD of several of the
    base's 12-byte rows is refused (they do not start on flits), one row or the view's
    8-byte rows are moved."""
    g = Graph("alias")
    g.add_buffer(Buffer("x", (4, 6), DType.BF16, BufferKind.INPUT))
    g.add_buffer(Buffer("x.view6x4", (6, 4), DType.BF16, alias_of="x"))
    g.add_buffer(Buffer("z", (4, 6), DType.BF16, BufferKind.INPUT))      # no reshape: padded
    lays, _ = lower_common.buffer_layouts(g, 8)
    assert (lays["x"].pitch, lays["x.view6x4"].pitch, lays["z"].pitch) == (12, 8, 16)
    vals = np.arange(24, dtype=np.int16).reshape(4, 6).view(ml_dtypes.bfloat16)
    raw = lays["x"].pack(vals)
    assert np.array_equal(lays["x.view6x4"].unpack(raw, ml_dtypes.bfloat16).view(np.int16),
                          vals.view(np.int16).reshape(6, 4))
    base = lays["x"].addr
    assert lower_common.row_runs(lays, TensorRef("x.view6x4", (0, 0), (6, 4)), 8) == \
        [(base + 8 * r, 8) for r in range(6)]
    # boxes of the base's unpadded 12-byte rows move when they start and end on flits (or
    # end at the buffer's end, rounding into the space after it), never into another row
    assert lower_common.row_runs(lays, TensorRef("x", (2, 0), (1, 4)), 8) == [(base + 24, 8)]
    assert lower_common.row_runs(lays, TensorRef("x", (3, 2), (1, 4)), 8) == [(base + 40, 8)]
    for r0, rows in ((0, 1), (0, 2), (3, 1)):
        with pytest.raises(CodegenError, match=rf"x\[{r0}:{r0 + rows},0:6\]: .* stored without "
                                               r"padding, 12 bytes apart, because a reshape"):
            lower_common.row_runs(lays, TensorRef("x", (r0, 0), (rows, 6)), 8)


def test_unit_format_constants():
    g, inputs, prog = program("mlp")
    op = g.op("fc1/gemm.m0n1")                   # x[4,64] @ W1[:, 8:16] + b1[8:16]
    addr, n = prog.image.blobs[(op.id, "b")]     # B packed K x Np BF16 (Np = 8)
    w = np.asarray(g.buffers["W1.folded"].data)[:, 8:16]
    got = np.frombuffer(bytes(prog.image.data[addr:addr + n]), ml_dtypes.bfloat16)
    assert n == 64 * 8 * 2 and np.array_equal(got.reshape(64, 8).view(np.uint16),
                                              w.astype(ml_dtypes.bfloat16).view(np.uint16))
    addr, n = prog.image.blobs[(op.id, "c")]     # bias expanded to Mp x Np FP32 (8 x 8)
    c = np.frombuffer(bytes(prog.image.data[addr:addr + n]), "<f4").reshape(8, 8)
    b1 = np.asarray(g.buffers["b1"].data, np.float32).reshape(-1)[8:16]
    assert np.array_equal(c[:4], np.broadcast_to(b1, (4, 8))) and not c[4:].any()
    g, inputs, prog = program("gcn")
    op = next(o for o in g.ops if o.op.value == "aggregate")
    adj = np.asarray(g.buffers[op.inputs[0].buffer].data, np.float32)
    addr, n = prog.image.blobs[(op.id, "ptr")]
    ptr = np.frombuffer(bytes(prog.image.data[addr:addr + 4 * 35]), "<u4")
    assert ptr.tolist() == [0] + np.cumsum((adj != 0).sum(1)).tolist()
    addr, n = prog.image.blobs[(op.id, "idx")]
    idx = np.frombuffer(bytes(prog.image.data[addr:addr + 4 * int(ptr[-1])]), "<u4")
    assert idx.tolist() == np.nonzero(adj)[1].tolist()
    g, inputs, prog = program("transformer")
    op = g.op("mlp_up_bias/add.v0_0")            # m1 [8, 64] + b1 [64]: b1 repeated per row
    addr, n = prog.image.blobs[(op.id, 1)]
    b = np.frombuffer(bytes(prog.image.data[addr:addr + n]), ml_dtypes.bfloat16).reshape(8, 64)
    want = np.asarray(g.buffers["b1"].data).astype(ml_dtypes.bfloat16)
    assert np.array_equal(b.view(np.uint16), np.broadcast_to(want.view(np.uint16), (8, 64)))


def _mutated(prog, tile, index, new=None):
    s = prog.streams[tile]
    cmds = list(s.commands)
    if new is None:
        del cmds[index]
    else:
        cmds[index] = new
    streams = dict(prog.streams)
    streams[tile] = dataclasses.replace(s, commands=cmds)
    return dataclasses.replace(prog, streams=streams)


def _positions(prog, opcode):
    return [(t, i) for t, s in prog.streams.items() for i, c in enumerate(s.commands)
            if c.opcode is opcode]


@pytest.mark.parametrize("name", ["gcn", "transformer"])
def test_every_deleted_wait_is_caught(name):
    g, inputs, prog, gold = compiled(name)
    waits = _positions(prog, isa.Opcode.WAIT)
    assert len(waits) >= 3
    for t, i in waits:
        with pytest.raises(ExecutionError, match="missing token|never waited for|holds no"):
            run_program(_mutated(prog, t, i))


def test_deleted_signal_deadlocks():
    g, inputs, prog, gold = compiled("gcn")
    for t, i in _positions(prog, isa.Opcode.SIGNAL)[:5]:
        with pytest.raises(ExecutionError, match="Deadlock: every unfinished tile waits"):
            run_program(_mutated(prog, t, i))


def _fence_of(cmds, i):
    """Index of the fence LOAD in front of the SIGNAL group containing command ``i``."""
    while cmds[i].opcode is isa.Opcode.SIGNAL:
        i -= 1
    assert cmds[i].opcode is isa.Opcode.LOAD
    return i


@pytest.mark.parametrize("name", ["gcn", "transformer"])
def test_deleted_fence_is_caught(name):
    # The LOAD in front of SIGNALs is the fence that makes the STOREs visible. Without the
    # fence before the last signal a tile sends to another, that tile's read races the
    # STOREs. (Without an earlier fence, a WAIT that also covers a later signal of the same
    # sender is still ordered by the later fence: such programs stay correct.)
    g, inputs, prog, gold = compiled(name)
    last = {}
    for t, i in _positions(prog, isa.Opcode.SIGNAL):
        f = prog.streams[t].commands[i].fields
        last[(t, f["x"], f["y"])] = i
    assert last
    for (t, _, _), i in last.items():
        with pytest.raises(ExecutionError, match="missing token"):
            run_program(_mutated(prog, t, _fence_of(prog.streams[t].commands, i)))
    fences = {(t, _fence_of(prog.streams[t].commands, i)) for t, i in _positions(prog, isa.Opcode.SIGNAL)}
    caught = 0
    for t, i in sorted(fences):
        try:
            res = run_program(_mutated(prog, t, i))
        except ExecutionError as e:
            assert "missing token" in str(e)
            caught += 1
        else:
            compare_outputs(res.outputs, gold)
    assert caught >= len(last) // 2


@pytest.mark.parametrize("opcode,field,delta", [
    (isa.Opcode.LOAD, "remote_addr", 32), (isa.Opcode.LOAD, "remote_addr", -8),
    (isa.Opcode.LOAD, "remote_addr", -2), (isa.Opcode.STORE, "remote_addr", 64),
    (isa.Opcode.STORE, "remote_addr", 8), (isa.Opcode.LOAD, "spad_addr", 8),
    (isa.Opcode.LOAD, "spad_addr", 2), (isa.Opcode.STORE, "spad_addr", 8)])
def test_corrupted_addresses_are_caught(opcode, field, delta):
    g, inputs, prog, gold = compiled("transformer")
    # (a fence LOAD reads back any stored bytes: its address does not matter)
    sites = [(t, i) for t, i in _positions(prog, opcode)
             if prog.streams[t].commands[i].fields["spad_addr"]
             != prog.streams[t].tile.scratchpad_bytes - lower_common.FENCE_BYTES]
    rng = np.random.default_rng(1)
    tried = 0
    for k in rng.choice(len(sites), size=8, replace=False):
        t, i = sites[k]
        c = prog.streams[t].commands[i]
        f = dict(c.fields)
        f[field] = max(0, f[field] + delta)
        if f[field] == c.fields[field]:
            continue
        tried += 1
        bad = _mutated(prog, t, i, isa.Command(c.opcode, f, c.kind))
        with pytest.raises((ExecutionError, MismatchError)):
            compare_outputs(run_program(bad).outputs, gold)
    assert tried >= 4


#: EXEC argument corruptions per unit kind: (field, new value from old).
_EXEC_MUTATIONS = {
    UnitKind.DMU: [("a_addr", lambda v: v + 32), ("b_addr", lambda v: v + 32),
                   ("c_addr", lambda v: v + 32), ("d_addr", lambda v: v + 32),
                   ("k", lambda v: v - 1), ("n", lambda v: v - 1), ("m", lambda v: v - 1)],
    UnitKind.AFU: [("a_addr", lambda v: v + 16), ("out_addr", lambda v: v + 16),
                   ("b_addr", lambda v: v + 16), ("count", lambda v: v - 8)],
    UnitKind.GNN: [("x_addr", lambda v: v + 16), ("ptr_addr", lambda v: v + 16),
                   ("idx_addr", lambda v: v + 16), ("out_addr", lambda v: v + 16),
                   ("features", lambda v: v - 1), ("nodes", lambda v: v - 1)],
}


@pytest.mark.parametrize("name", ["gcn", "transformer"])
def test_corrupted_exec_arguments_are_caught(name):
    """A wrong operand address, pitch (through K or N, which fix the A/B/C/D pitches) or
    count in one EXEC makes the run raise or its outputs differ."""
    g, inputs, prog, gold = compiled(name)
    seen = set()
    for t, i in _positions(prog, isa.Opcode.EXEC):
        c = prog.streams[t].commands[i]
        for fld, change in _EXEC_MUTATIONS[c.kind]:
            if (c.kind, fld) in seen or fld not in c.fields["args"]:
                continue
            if fld == "c_addr" and not c.fields["args"]["accumulate"]:
                continue
            seen.add((c.kind, fld))
            args = dict(c.fields["args"])
            args[fld] = change(args[fld])
            bad = _mutated(prog, t, i, isa.Command(c.opcode, {**c.fields, "args": args}, c.kind))
            with pytest.raises((ExecutionError, MismatchError)):
                compare_outputs(run_program(bad).outputs, gold)
    kinds = {k for k, _ in seen}
    assert kinds == {UnitKind.DMU, UnitKind.AFU} | ({UnitKind.GNN} if name == "gcn" else set())


def test_exec_of_another_unit_kind_is_refused():
    g, inputs, prog, gold = compiled("mlp")
    t, i = next((t, i) for t, i in _positions(prog, isa.Opcode.EXEC)
                if prog.streams[t].tile.kind is UnitKind.DMU)
    stolen = prog.streams[t].commands[i]
    streams = dict(prog.streams)
    streams["afu0"] = dataclasses.replace(streams["afu0"],
                                          commands=[stolen] + streams["afu0"].commands)
    bad = dataclasses.replace(prog, streams=streams)
    with pytest.raises(ExecutionError, match="tile afu0 command 0 .*: EXEC for the dmu unit "
                                             "kind on this afu tile"):
        run_program(bad)


def test_misaligned_transfers_are_reported_and_refused():
    g, inputs, prog, gold = compiled("mlp")
    t, i = _positions(prog, isa.Opcode.STORE)[0]
    c = prog.streams[t].commands[i]
    bad = _mutated(prog, t, i, isa.store(**{**c.fields, "length": c.fields["length"] - 2}))
    assert bad.misaligned() == [(t, i)]
    with pytest.raises(ExecutionError, match=r"length 0x[0-9a-f]+ is not a multiple of the "
                                             r"8-byte flit \(the NI moves whole flits\)"):
        run_program(bad)


def _plan_error(name, op_pred, tile):
    g = compile_model(name)
    op = next(o for o in g.ops if op_pred(o))
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    with pytest.raises(NotLowered) as e:
        lower.plan_op(ctx, op, POOL.unit(tile).tile)
    return op, str(e.value)


@pytest.mark.parametrize("model,what,tile,why", [
    ("cnn", "gemm", "mem", "the memory tile's layout engine runs LAYOUT micro-ops only"),
])
def test_placements_that_are_not_lowered_say_why(model, what, tile, why):
    op, msg = _plan_error(model, lambda o: o.op.value == what, tile)
    import re
    assert re.match(rf"Micro-op '{re.escape(op.id)}' \({what}<{op.dtype.key}>\) on {tile}: "
                    rf"not lowered: {why}\. Accepted: gemm on dmu, spmm on dmu, gemm on lpu, "
                    rf"act on afu, eltwise on afu, quantize on afu, dequantize on afu, "
                    rf"aggregate on gnn, conv on ce, spmm on smu$", msg), msg


def test_int32_dequantize_is_not_lowered():
    from accelpool.sched.ir import MicroOp, OpType
    g = Graph("dq32")
    x = g.add_buffer(Buffer("x", (4, 8), DType.INT32, BufferKind.INPUT))
    y = g.add_buffer(Buffer("y", (4, 8), DType.BF16, BufferKind.OUTPUT))
    op = g.add_op(MicroOp("dq", OpType.DEQUANTIZE, DType.INT32, (TensorRef.whole(x),),
                          (TensorRef.whole(y),), shape={"n": 32},
                          attrs={"scale": 0.1, "zero_point": 0}))
    with pytest.raises(NotLowered, match=r"^Micro-op 'dq' \(dequantize<int32>\) on afu0: "
                                         r"not lowered: the AFU's DEQUANTIZE reads INT8, not "
                                         r"INT32 \(x\[0:4,0:8\]\)$"):
        compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)))
    assert op.units == (UnitKind.AFU,)


def _quantized_chain(rows, k, n, *, zp_x=-5, zp_d=3, zp_y=-2):
    """x <bf16> -QUANTIZE (AFU)-> xq <int8> -GEMM<int8> (LPU, requant)-> d <int8>
    -DEQUANTIZE (AFU)-> y <bf16>: the ends of a quantised model such as qcnn."""
    from accelpool.spec.golden.numerics import quantize_multiplier
    from accelpool.sched.ir import MicroOp, OpType, QuantParams
    rng = np.random.default_rng(5)
    g = Graph("qchain")
    x = g.add_buffer(Buffer("x", (rows, k), DType.BF16, BufferKind.INPUT))
    xq = g.add_buffer(Buffer("xq", (rows, k), DType.INT8, quant=QuantParams(0.02, zp_x)))
    w = g.add_buffer(Buffer("w", (k, n), DType.INT8, BufferKind.CONST,
                            data=rng.integers(-128, 128, (k, n)).astype(np.int8)))
    d = g.add_buffer(Buffer("d", (rows, n), DType.INT8, quant=QuantParams(0.3, zp_d)))
    y = g.add_buffer(Buffer("y", (rows, n), DType.BF16, BufferKind.OUTPUT))
    g.add_op(MicroOp("quant", OpType.QUANTIZE, DType.BF16, (TensorRef.whole(x),),
                     (TensorRef.whole(xq),), shape={"n": rows * k},
                     attrs={"scale": 0.02, "zero_point": zp_x}))
    mult, shift = quantize_multiplier(0.02 * 0.01 / 0.3)
    # x zero point folded as a bias would be; here the GEMM sums raw xq (wraparound-exact)
    g.add_op(MicroOp("gemm", OpType.GEMM, DType.INT8, (TensorRef.whole(xq), TensorRef.whole(w)),
                     (TensorRef.whole(d),), shape={"M": rows, "K": k, "N": n},
                     attrs={"requant": {"scale": 0.02 * 0.01 / 0.3, "multiplier": mult,
                                        "shift": shift, "zero_point": zp_d}}))
    g.add_op(MicroOp("dequant", OpType.DEQUANTIZE, DType.INT8, (TensorRef.whole(d),),
                     (TensorRef.whole(y),), shape={"n": rows * n},
                     attrs={"scale": 0.3, "zero_point": zp_y}))
    g.outputs = ["y"]
    vals = (rng.standard_normal((rows, k)) * 2).astype(np.float32)
    return g, {"x": vals}


@pytest.mark.parametrize("rows,k,n", [(8, 24, 12), (5, 13, 10)])
def test_quantize_gemm_dequantize_chain_runs_bit_exact(rows, k, n):
    """QUANTIZE and DEQUANTIZE lowered on the AFU around an INT8 GEMM on the LPU: the
    streams reproduce the golden (unit arithmetic) outputs bit for bit through the
    functional executor; the EXECs carry the unit's scale encodings and row strides."""
    from accelpool.spec.units.afu import AfuFunc
    from accelpool.spec.golden import activations as act
    g, inputs = _quantized_chain(rows, k, n)
    s = heft(g.dag, POOL, CostModel(POOL))
    assert (s.slots["quant"].unit, s.slots["gemm"].unit, s.slots["dequant"].unit) == \
        ("afu0", "lpu0", "afu0")
    prog = compile_schedule(g, s, inputs)
    gold = golden_outputs(g, inputs)
    compare_outputs(run_program(prog).outputs, gold)
    execs = {c.fields["func"]: c.fields["args"] for c in prog.streams["afu0"].commands
             if c.opcode is isa.Opcode.EXEC}
    q, dq = execs[AfuFunc.QUANTIZE], execs[AfuFunc.DEQUANTIZE]
    assert q["count"] == rows * 8 * -(-k // 8) and dq["count"] == rows * 8 * -(-n // 8)
    assert (q["multiplier"], q["shift"]) == act.quantize_args(0.02) and q["y_zero_point"] == -5
    assert dq["alpha"] == act.dequantize_scale_bits(0.3) and dq["a_zero_point"] == -2
    # the golden itself: the output is the AFU's dequantisation of the LPU's INT8 result
    from accelpool.sched.reference import Executor
    ex = Executor(g, arithmetic="unit")
    ex.run(inputs)
    np.testing.assert_array_equal(
        gold["y"].view(np.uint16),
        act.int8_dequantize(ex.mem["d"], -2, act.dequantize_scale_bits(0.3)))
    # a corrupted scale is caught
    t = "afu0"
    i = next(j for j, c in enumerate(prog.streams[t].commands)
             if c.opcode is isa.Opcode.EXEC and c.fields["func"] is AfuFunc.DEQUANTIZE)
    c = prog.streams[t].commands[i]
    bad = _mutated(prog, t, i, isa.exec_cmd(UnitKind.AFU, AfuFunc.DEQUANTIZE,
                                            **{**c.fields["args"], "alpha": c.fields["args"]["alpha"] + 1}))
    with pytest.raises(MismatchError):
        compare_outputs(run_program(bad).outputs, gold)


def test_conversion_lowering_errors():
    from accelpool.sched.ir import MicroOp, OpType
    g = Graph("bad")
    x = g.add_buffer(Buffer("x", (2, 8), DType.BF16, BufferKind.INPUT))
    y = g.add_buffer(Buffer("y", (2, 8), DType.INT8, BufferKind.OUTPUT))
    op = g.add_op(MicroOp("q", OpType.QUANTIZE, DType.BF16, (TensorRef.whole(x),),
                          (TensorRef.whole(y),), shape={"n": 16},
                          attrs={"scale": 2.0 ** -40, "zero_point": 0}))
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    with pytest.raises(CodegenError, match=r"^Micro-op 'q' \(quantize<bf16>\) on afu0: Quantize "
                                           r"scale must be a finite positive number from "
                                           r"2\*\*-30 to 2\*\*33"):
        lower.plan_op(ctx, op, POOL.unit("afu0").tile)


def test_channels_last_layout_round_trips_and_blocks():
    """CONV images are stored channels-last in blocks of one flit of channels: a block of
    output channels is contiguous rows, and pack/unpack invert each other."""
    g = compile_model("qcnn")
    lays, _ = lower_common.buffer_layouts(g, 8)
    h2, x = lays["h2"], lays["x"]                      # [1, 16, 8, 8] and [1, 3, 16, 16]
    assert (h2.channels_last, h2.block, h2.rows, h2.cols, h2.pitch) == (True, 8, 128, 8, 8)
    assert (x.channels_last, x.block, x.rows, x.pitch) == (True, 3, 256, 8)
    assert lays["f"].view_of == "h2" and lays["xq"].channels_last
    vals = np.arange(16 * 64, dtype=np.int32).astype(np.int8).reshape(1, 16, 8, 8)
    raw = h2.pack(vals)
    assert raw[:8] == bytes(vals[0, :8, 0, 0].tobytes())          # pixel 0, channels 0..7
    assert raw[64 * 8:64 * 8 + 8] == bytes(vals[0, 8:, 0, 0].tobytes())  # block 1 after block 0
    assert np.array_equal(h2.unpack(raw, np.int8), vals)
    rows, c0, w = h2.box_rows(TensorRef("h2", (0, 8, 0, 0), (1, 8, 8, 8)))
    assert (rows[0], rows[-1], c0, w) == (64, 127, 0, 8)
    assert list(h2.flat_order()[:3]) == [0, 64, 128]               # channel-major flatten
    with pytest.raises(CodegenError, match=r"reshapes the channels-last buffer 'h2'"):
        lays["f"].box_rows(TensorRef("f", (0, 0), (1, 64)))


def test_flatten_of_a_channels_last_image_into_a_float_gemm_is_not_lowered():
    """Only integer sums may take the flatten in the stored order (the weights permuted)."""
    g = Graph("flatbf16")
    x = g.add_buffer(Buffer("x", (1, 8, 4, 4), DType.INT8, BufferKind.INPUT))
    w = g.add_buffer(Buffer("w", (8, 8, 1, 1), DType.INT8, BufferKind.CONST,
                            data=np.ones((8, 8, 1, 1), np.int8)))
    y = g.add_buffer(Buffer("y", (1, 8, 4, 4), DType.BF16, BufferKind.TEMP))
    f = g.add_buffer(Buffer("f", (1, 128), DType.BF16, BufferKind.TEMP, alias_of="y"))
    b = g.add_buffer(Buffer("b", (128, 8), DType.BF16, BufferKind.CONST,
                            data=np.ones((128, 8), np.float32)))
    o = g.add_buffer(Buffer("o", (1, 8), DType.FP32, BufferKind.OUTPUT))
    from accelpool.sched.ir import MicroOp, OpType
    g.add_op(MicroOp("conv", OpType.CONV, DType.INT8, (TensorRef.whole(x), TensorRef.whole(w)),
                     (TensorRef.whole(y),), shape={"IC": 8, "H": 4, "W": 4, "OC": 8, "KH": 1,
                                                   "KW": 1, "OH": 4, "OW": 4},
                     attrs={"strides": (1, 1), "pads": (0, 0, 0, 0)}))
    gemm = MicroOp("fc", OpType.GEMM, DType.BF16, (TensorRef.whole(f), TensorRef.whole(b)),
                   (TensorRef.whole(o),), shape={"M": 1, "K": 128, "N": 8})
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    with pytest.raises(NotLowered, match=r"^Micro-op 'fc' \(gemm<bf16>\) on dmu0: not lowered: "
                                         r"A reads the flatten 'f' of the channels-last image "
                                         r"'y', and bf16 sums depend on the order"):
        lower.plan_op(ctx, gemm, POOL.unit("dmu0").tile)


def test_ce_exec_carries_the_uncorrected_bias_and_the_pad_value_as_zero_point():
    """qcnn's first convolution pads with the input zero point (-3) and its bias is
    corrected for it; the CE gets x_zero_point = -3 and bias + (-3) * sum(w) back."""
    g = compile_model("qcnn")
    op = next(o for o in g.ops if o.id.startswith("qconv1/"))
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    plan = lower.plan_op(ctx, op, POOL.unit("ce0").tile)
    func, args = plan.build({"x": 0, "w": 4096, "bias": 8192, "out": 12288})
    assert args["x_zero_point"] == -3 and args["bias"] and args["requant"]
    w = lower_common.const_array(g, op.inputs[1]).astype(np.int64)
    b = lower_common.const_array(g, op.inputs[2]).astype(np.int64)
    blob = next(o.blob for o in plan.operands if o.key == "bias")
    assert np.array_equal(np.frombuffer(blob[:32], "<i4"), b - 3 * w.sum(axis=(1, 2, 3)))


def test_listing_and_binary():
    g, inputs, prog = program("gcn")
    text = prog.listing()
    assert "WAIT   token=" in text and "SIGNAL (" in text and "END" in text
    assert "dmu.gemm a_addr=" in text and "out_bf16=1" in text and "gnn.mean ptr_addr=" in text
    assert "afu.relu a_addr=" in text
    for t, s in prog.streams.items():
        assert isinstance(s.binary, bytes) and len(s.binary) == 32 * len(s.commands)


def test_memory_too_small_is_a_clear_error():
    g, inputs, prog = program("gcn")
    import tomllib
    from accelpool.spec.config import DEFAULT_CONFIG, parse_config
    doc = tomllib.loads(DEFAULT_CONFIG.read_text())
    doc["tile"][0]["bytes"] = 4096
    small = Pool(parse_config(doc))
    s = heft(g.dag, small, CostModel(small))
    with pytest.raises(CodegenError, match=r"needs \d+ bytes of memory .* but the memory tile "
                                           r"mem has 4096"):
        compile_schedule(g, s)


def test_missing_input_is_a_clear_error():
    g, inputs, prog = program("gcn")
    with pytest.raises(CodegenError, match="missing graph input"):
        compile_schedule(g, prog.schedule, {})


def test_without_fences_only_an_ni_with_completed_stores_is_safe():
    g, inputs, prog, gold = compiled("gcn")
    nofence = compile_schedule(g, prog.schedule, inputs, fence=False)
    n = sum(len(s.commands) for s in prog.streams.values())
    assert sum(len(s.commands) for s in nofence.streams.values()) < n
    compare_outputs(run_program(nofence, stores_complete=True).outputs, gold)
    with pytest.raises(ExecutionError, match="missing token"):
        run_program(nofence)


def _one_op_program(bufs, op, inputs):
    g = Graph(op.id)
    for b in bufs:
        g.add_buffer(b)
    g.add_op(op)
    return g, compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)), inputs)


@pytest.mark.parametrize("func,xq,yq", [
    ("relu", (0.05, -3), (0.05, -3)),            # max(x, zero point)
    ("relu", (0.05, 0), (0.025, -128)),          # table
    ("sigmoid", (0.05, 0), (1 / 256, -128)),
    ("leaky_relu", (0.05, 2), (0.04, 0))])
def test_int8_activations(func, xq, yq):
    from accelpool.sched.ir import ActFunc, MicroOp, OpType, QuantParams
    x = Buffer("x", (3, 20), DType.INT8, BufferKind.INPUT, quant=QuantParams(*xq))
    y = Buffer("y", (3, 20), DType.INT8, BufferKind.OUTPUT, quant=QuantParams(*yq))
    op = MicroOp("act", OpType.ACT, DType.INT8, (TensorRef.whole(x),), (TensorRef.whole(y),),
                 ActFunc(func), {"n": 60}, attrs={"alpha": 0.1} if func == "leaky_relu" else {})
    vals = np.random.default_rng(3).integers(-128, 128, (3, 20)).astype(np.int8)
    g, prog = _one_op_program([x, y], op, {"x": vals})
    ex = next(c for c in prog.streams["afu0"].commands if c.opcode is isa.Opcode.EXEC)
    assert ex.fields["args"]["count"] == 72       # 3 rows of 20 bytes padded to 24
    assert ("table_addr" in ex.fields["args"]) == (xq != yq or func != "relu")
    compare_outputs(run_program(prog).outputs, golden_outputs(g, {"x": vals}))


def test_lpu_gemm_with_requantisation_is_lowered():
    from accelpool.spec.golden.numerics import quantize_multiplier
    from accelpool.sched.ir import MicroOp, OpType
    rng = np.random.default_rng(4)
    a = Buffer("a", (8, 24), DType.INT8, BufferKind.INPUT)
    w = rng.integers(-128, 128, (24, 12)).astype(np.int8)
    b = Buffer("w", (24, 12), DType.INT8, BufferKind.CONST, data=w)
    bias = Buffer("bias", (12,), DType.INT32, BufferKind.CONST,
                  data=rng.integers(-999, 999, 12).astype(np.int32))
    d = Buffer("d", (8, 12), DType.INT8, BufferKind.OUTPUT)
    mult, shift = quantize_multiplier(0.004)
    op = MicroOp("gemm", OpType.GEMM, DType.INT8, (TensorRef.whole(a), TensorRef.whole(b),
                 TensorRef("bias", (0,), (12,))), (TensorRef.whole(d),),
                 shape={"M": 8, "K": 24, "N": 12},
                 attrs={"c_broadcast": "row",
                        "requant": {"scale": 0.004, "multiplier": mult, "shift": shift,
                                    "zero_point": 3}})
    vals = rng.integers(-128, 128, (8, 24)).astype(np.int8)
    g = Graph("lpu")
    for buf in (a, b, bias, d):
        g.add_buffer(buf)
    g.add_op(op)
    cost = CostModel(POOL)
    s = heft(g.dag, POOL, cost)
    assert s.slots["gemm"].unit == "lpu0"
    prog = compile_schedule(g, s, {"a": vals})
    cmds = prog.streams["lpu0"].commands
    ex = next(c for c in cmds if c.opcode is isa.Opcode.EXEC)
    args = ex.fields["args"]
    assert (args["m"], args["n"], args["k"], args["accumulate"], args["requant"]) == (8, 12, 24, 1, 1)
    assert (args["multiplier"], args["shift"], args["zero_point"]) == (mult, shift, 3)
    assert all(args[k] % 64 == 0 for k in ("a_addr", "b_addr", "c_addr", "d_addr"))
    addr, n = prog.image.blobs[("gemm", "b")]            # K x Np INT8, Np = 16
    packed = np.frombuffer(bytes(prog.image.data[addr:addr + 24 * 16]), np.int8).reshape(24, 16)
    assert np.array_equal(packed[:, :12], w) and not packed[:, 12:].any()
    addr, n = prog.image.blobs[("gemm", "c")]            # Mp x Np INT32
    c = np.frombuffer(bytes(prog.image.data[addr:addr + 8 * 16 * 4]), "<i4").reshape(8, 16)
    assert np.array_equal(c[:, :12], np.broadcast_to(bias.data, (8, 12)))
    stores = [c for c in cmds if c.opcode is isa.Opcode.STORE]    # 16-byte rows, both sides
    assert [s.fields["length"] for s in stores] == [8 * 16]
    compare_outputs(run_program(prog).outputs, golden_outputs(g, {"a": vals}))


@pytest.mark.parametrize("model,count,loads,stores", [("qcnn", 16, [16], [24]),
                                                      ("mixed", 256, [256], [512])])
def test_model_dequantize_ops_are_lowered(model, count, loads, stores):
    """The DEQUANTIZE ending qcnn's INT8 layers ([1, 10]: one 16-byte INT8 row in, 20
    BF16 bytes rounded to 24 out) and mixed's ([8, 32]: whole rows, one transfer each way)
    plan on the AFU."""
    from accelpool.spec.units.afu import AfuFunc
    g = compile_model(model)
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    tile = POOL.unit("afu0").tile
    ops = [o for o in g.ops if o.op.value == "dequantize"]
    assert len(ops) == 1
    func, args = lower.plan_op(ctx, ops[0], tile).build({0: 0, "out": 1024})
    assert func is AfuFunc.DEQUANTIZE and args["count"] == count
    assert lower.op_transfers(g, ops[0], tile, 8) == (loads, stores)


# -- the memory tile's stream (LAYOUT micro-ops on the layout engine) ----------------------

def _mem_execs(prog):
    return [c for c in prog.streams["mem"].commands if c.opcode is isa.Opcode.EXEC]


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_cnn_runs_bit_exact_under_every_scheduler(scheduler):
    """cnn's im2col micro-ops run on the memory tile's own stream (WAIT for the producer,
    EXEC of the layout engine, a SIGNAL to each consuming tile); the whole program, with
    and without fences, reproduces the golden outputs."""
    from accelpool.spec.units.layout import MemFunc
    g, inputs, prog, gold = compiled("cnn", SCHEDULERS[scheduler])
    mem = prog.streams["mem"]
    kinds = [c.opcode for c in mem.commands]
    assert kinds[-1] is isa.Opcode.END and isa.Opcode.LOAD not in kinds \
        and isa.Opcode.STORE not in kinds
    execs = _mem_execs(prog)
    assert [c.fields["func"] for c in execs] == [MemFunc.IM2COL] * 2
    a1, a2 = (c.fields["args"] for c in execs)
    x, c1, r1, c2 = (prog.layouts[n] for n in ("x", "c1.cols0", "r1", "c2.cols0"))
    assert (a1["src_addr"], a1["dst_addr"], a1["src_pitch"], a1["dst_pitch"]) == \
        (x.addr, c1.addr, 32, 512)
    assert (a1["channels"], a1["height"], a1["width"], a1["out_h"], a1["out_w"]) == \
        (3, 16, 16, 16, 16)
    assert (a2["src_addr"], a2["dst_addr"], a2["stride_h"], a2["out_h"], a2["dst_pitch"]) == \
        (r1.addr, c2.addr, 2, 8, 128)
    assert a1["elem_log2"] == a2["elem_log2"] == 1 and a1["pad_value"] == 0
    # the memory tile waits for relu1's producer before the second im2col, and signals
    # every GEMM tile after each EXEC; the consumers wait on token 0 (the memory tile)
    i2 = mem.commands.index(execs[1])
    assert mem.commands[i2 - 1].opcode is isa.Opcode.WAIT
    gemm_tiles = {prog.placement[n] for n in g.dag.successors("conv1/im2col0")}
    after1 = mem.commands[mem.commands.index(execs[0]) + 1:i2 - 1]
    assert {(c.fields["x"], c.fields["y"]) for c in after1} == \
        {POOL.unit(t).at for t in gemm_tiles}
    for t in gemm_tiles:
        assert any(c.opcode is isa.Opcode.WAIT and c.fields["token"] == 0
                   for c in prog.streams[t].commands)
    compare_outputs(run_program(prog).outputs, gold)
    nofence = compile_schedule(g, prog.schedule, inputs, fence=False)
    compare_outputs(run_program(nofence, stores_complete=True).outputs, gold)


def test_signals_to_the_memory_tile_need_no_fence():
    """A producer whose only consumer is the memory tile signals right after its STOREs
    (a SIGNAL is ordered after the STOREs to its destination); funcsim accepts that."""
    g, inputs, prog, gold = compiled("cnn")
    mem_at = POOL.memory.at
    seen = 0
    for t, i in _positions(prog, isa.Opcode.SIGNAL):
        cmds = prog.streams[t].commands
        f = cmds[i].fields
        if t != "mem" and (f["x"], f["y"]) == mem_at and cmds[i - 1].opcode is not isa.Opcode.SIGNAL:
            assert cmds[i - 1].opcode is isa.Opcode.STORE
            seen += 1
    assert seen >= 1
    compare_outputs(run_program(prog).outputs, gold)


def test_deleted_waits_around_the_memory_tile_are_caught():
    g, inputs, prog, gold = compiled("cnn")
    waits = [(t, i) for t, i in _positions(prog, isa.Opcode.WAIT)
             if t == "mem" or prog.streams[t].commands[i].fields["token"] == 0]
    assert any(t == "mem" for t, _ in waits) and any(t != "mem" for t, _ in waits)
    for t, i in waits:
        with pytest.raises(ExecutionError, match="missing token|never waited for|holds no"):
            run_program(_mutated(prog, t, i))


@pytest.mark.parametrize("fld,change", [
    ("src_addr", lambda v: v + 2), ("src_addr", lambda v: v - 32), ("dst_addr", lambda v: v + 2),
    ("src_pitch", lambda v: v - 2), ("dst_pitch", lambda v: v + 8), ("width", lambda v: v - 1),
    ("height", lambda v: v - 1), ("pad_left", lambda v: v + 1), ("out_w", lambda v: v - 1),
    ("pad_value", lambda v: 0x3F80), ("stride_w", lambda v: v + 1)])
def test_corrupted_layout_arguments_are_caught(fld, change):
    g, inputs, prog, gold = compiled("cnn")
    caught = 0
    for t, i in _positions(prog, isa.Opcode.EXEC):
        c = prog.streams[t].commands[i]
        if t != "mem":
            continue
        args = dict(c.fields["args"])
        args[fld] = change(args[fld])
        bad = _mutated(prog, t, i, isa.Command(c.opcode, {**c.fields, "args": args}, c.kind))
        with pytest.raises((ExecutionError, MismatchError)):
            compare_outputs(run_program(bad).outputs, gold)
        caught += 1
    assert caught == 2


def test_memory_tile_load_or_store_faults():
    g, inputs, prog, gold = compiled("cnn")
    bad = _mutated(prog, "mem", 0, isa.load(spad_addr=0, x=1, y=1, remote_addr=0, length=8))
    with pytest.raises(ExecutionError, match="tile mem command 0 .*: the memory tile has no "
                                             "DMA: LOAD and STORE fault there"):
        run_program(bad)


def _layout_graph(dtype, rows, cols, chain):
    """x [rows, cols] -> (relu on the AFU ->) transpose on the memory tile -> (relu ->) y."""
    from accelpool.sched.ir import ActFunc, LayoutFunc, MicroOp, OpType
    g = Graph("transpose")
    x = g.add_buffer(Buffer("x", (rows, cols), dtype, BufferKind.INPUT))
    y = g.add_buffer(Buffer("y", (cols, rows), dtype, BufferKind.OUTPUT))
    src, dst = x, y
    if chain:
        src = g.add_buffer(Buffer("a", (rows, cols), dtype))
        dst = g.add_buffer(Buffer("b", (cols, rows), dtype))
        g.add_op(MicroOp("pre", OpType.ACT, dtype, (TensorRef.whole(x),), (TensorRef.whole(src),),
                         ActFunc.RELU, {"n": x.size}))
    g.add_op(MicroOp("t", OpType.LAYOUT, dtype, (TensorRef.whole(src),), (TensorRef.whole(dst),),
                     LayoutFunc.TRANSPOSE, {"n": x.size}))
    if chain:
        g.add_op(MicroOp("post", OpType.ACT, dtype, (TensorRef.whole(dst),),
                         (TensorRef.whole(y),), ActFunc.RELU, {"n": y.size}))
    return g


@pytest.mark.parametrize("dtype,rows,cols,chain", [(DType.BF16, 5, 12, True),
                                                    (DType.BF16, 16, 3, False),
                                                    (DType.INT8, 7, 9, False)])
def test_transpose_runs_bit_exact(dtype, rows, cols, chain):
    from accelpool.spec.units.layout import MemFunc
    g = _layout_graph(dtype, rows, cols, chain)
    rng = np.random.default_rng(rows * cols)
    vals = (rng.standard_normal((rows, cols)).astype(np.float32) if dtype is DType.BF16
            else rng.integers(-128, 128, (rows, cols)).astype(np.int8))
    prog = compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)), {"x": vals})
    (ex,) = _mem_execs(prog)
    src, dst = ("a", "b") if chain else ("x", "y")
    e = dtype.bytes
    assert ex.fields["func"] is MemFunc.TRANSPOSE
    assert ex.fields["args"] == {
        "src_addr": prog.layouts[src].addr, "dst_addr": prog.layouts[dst].addr,
        "elem_log2": e.bit_length() - 1, "src_pitch": -(-cols * e // 8) * 8,
        "dst_pitch": -(-rows * e // 8) * 8, "rows": rows, "cols": cols}
    gold = golden_outputs(g, {"x": vals})
    compare_outputs(run_program(prog).outputs, gold)
    y = np.asarray(gold["y"])
    want = vals.T if not chain else np.maximum(vals, 0).T
    assert np.array_equal(np.asarray(y).astype(np.float32),
                          np.asarray(want).astype(y.dtype).astype(np.float32))


def _im2col_op(g, x_ref, c, kh, kw, oh, ow, **attrs):
    from accelpool.sched.ir import LayoutFunc, MicroOp, OpType
    cols = g.add_buffer(Buffer("cols", (c * kh * kw, oh * ow), DType.BF16, BufferKind.OUTPUT))
    return g.add_op(MicroOp("im", OpType.LAYOUT, DType.BF16, (x_ref,), (TensorRef.whole(cols),),
                            LayoutFunc.IM2COL, {"n": cols.size},
                            attrs={"kernel": (kh, kw), "strides": (1, 1), "pads": (0, 0, 0, 0),
                                   "pad_value": 0, **attrs}))


def _layout_error(g, op):
    """The layout engine's EXEC of ``op`` on the memory tile (or the error compiling it)."""
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    return lower_layout_mod.lower_layout(ctx, op, POOL.memory_unit.tile)


def test_layout_engine_limits_are_clear_errors():
    g = Graph("dil")
    x = g.add_buffer(Buffer("x", (1, 2, 9, 9), DType.BF16, BufferKind.INPUT))
    op = _im2col_op(g, TensorRef.whole(x), 2, 3, 3, 5, 5, dilations=(2, 2))
    with pytest.raises(NotLowered, match=r"^Micro-op 'im' \(layout<bf16>\) on mem: not lowered: "
                                         r"dilations \[2, 2\]; the layout engine's im2col takes "
                                         r"dilation 1 only"):
        _layout_error(g, op)
    g = Graph("big")
    x = g.add_buffer(Buffer("x", (1, 1, 9, 9), DType.BF16, BufferKind.INPUT))
    op = _im2col_op(g, TensorRef.whole(x), 1, 8, 8, 2, 2)
    with pytest.raises(CodegenError, match=r"^Micro-op 'im' \(layout<bf16>\) on mem: the layout "
                                           r"engine's kernel_h field \(3 bits\) holds 0..7, not 8"):
        _layout_error(g, op)
    g = Graph("wide")
    x = g.add_buffer(Buffer("x", (1, 1, 2, 1100), DType.BF16, BufferKind.INPUT))
    op = _im2col_op(g, TensorRef.whole(x), 1, 1, 1, 2, 1100)
    with pytest.raises(CodegenError, match=r"width field \(10 bits\) holds 0..1023, not 1100"):
        _layout_error(g, op)
    # a box cutting the height of a multi-channel image: rows are not evenly spaced
    g = Graph("cut")
    x = g.add_buffer(Buffer("x", (1, 2, 9, 8), DType.BF16, BufferKind.INPUT))
    op = _im2col_op(g, TensorRef("x", (0, 0, 0, 0), (1, 2, 4, 8)), 2, 1, 1, 4, 8)
    with pytest.raises(CodegenError, match=r"on mem: the rows of the source x\[0:1,0:2,0:4,0:8\] "
                                           r"are not evenly spaced in x \[1, 2, 9, 8\]"):
        _layout_error(g, op)
    # ... while a box of some rows of one channel is fine (rows 2..5 of channel 1)
    g = Graph("ok")
    g.add_buffer(Buffer("x", (1, 2, 9, 8), DType.BF16, BufferKind.INPUT))
    op = _im2col_op(g, TensorRef("x", (0, 1, 2, 0), (1, 1, 4, 8)), 1, 1, 1, 4, 8)
    func, args = _layout_error(g, op)
    assert (args["src_addr"], args["src_pitch"], args["height"]) == ((9 + 2) * 16, 16, 4)


def test_copy_out_of_a_channels_last_image_is_one_transpose():
    """mixed's CE output [1, 8, 8, 8] (channels-last: 64 pixel rows of 8 INT8 channels) is
    read as 8 nodes x 64 features through a LAYOUT copy: one TRANSPOSE on the memory tile.
    On a pool without the SMU (its SPMM tiles run densely on the DMUs) every scheduler's
    program reproduces the golden outputs."""
    from accelpool.spec.units.layout import MemFunc
    from accelpool.sched.schedulers import SCHEDULERS as ALL
    g = compile_model("mixed")
    pool = Pool(POOL.config, kinds=[k for k in UnitKind if k is not UnitKind.SMU])
    inputs = models.example_inputs(models.build("mixed"))
    gold = golden_outputs(g, inputs)
    for name, sched in ALL.items():
        prog = compile_schedule(g, sched(g.dag, pool, CostModel(pool)), inputs)
        img, dst = prog.layouts[g.base("h1r").name], prog.layouts["h1r.rowmajor"]
        # besides the copy, sparse_fc's A^T and write-back transposes (its sparse tiles,
        # decomposed for the default pool, run transposed on the DMUs here)
        execs = _mem_execs(prog)
        assert len(execs) == 3
        (ex,) = [c for c in execs if c.fields["args"]["src_addr"] == img.addr]
        assert img.channels_last and ex.fields["func"] is MemFunc.TRANSPOSE
        assert ex.fields["args"] == {"src_addr": img.addr, "dst_addr": dst.addr,
                                     "elem_log2": 0, "src_pitch": 8, "dst_pitch": 64,
                                     "rows": 64, "cols": 8}
        compare_outputs(run_program(prog).outputs, gold)
    # a copy between row-major buffers has no EXEC
    from accelpool.sched.ir import LayoutFunc, MicroOp, OpType
    g2 = Graph("rowcopy")
    a = g2.add_buffer(Buffer("a", (4, 8), DType.BF16, BufferKind.INPUT))
    b = g2.add_buffer(Buffer("b", (4, 8), DType.BF16, BufferKind.OUTPUT))
    op = g2.add_op(MicroOp("c", OpType.LAYOUT, DType.BF16, (TensorRef.whole(a),),
                           (TensorRef.whole(b),), LayoutFunc.COPY, {"n": 32}))
    with pytest.raises(NotLowered, match=r"on mem: not lowered: a copy between row-major "
                                         r"buffers"):
        _layout_error(g2, op)


def _sparse_tiles_graph():
    """Transposed sparse-weight tiles as the decomposition makes them, without the
    transposes: y = Wt @ xT with Wt[16, 40] a sparse constant (an empty row, a -0 entry),
    xT[40, 12] an input; rows 0..7 on the SMU (BF16), rows 8..15 on a DMU (dense), and all
    16 rows again on the SMU into an FP32 result."""
    from accelpool.sched.ir import MicroOp, OpType
    rng = np.random.default_rng(12)
    wt = rng.standard_normal((16, 40)).astype(np.float32)
    wt *= rng.random((16, 40)) < 0.2
    wt[3] = 0.0
    wt[5, 7] = -0.0
    g = Graph("sparse_tiles")
    w = g.add_buffer(Buffer("Wt", (16, 40), DType.BF16, BufferKind.CONST,
                            data=wt.astype(ml_dtypes.bfloat16)))
    x = g.add_buffer(Buffer("xT", (40, 12), DType.BF16, BufferKind.INPUT))
    y = g.add_buffer(Buffer("y", (16, 12), DType.BF16, BufferKind.OUTPUT))
    z = g.add_buffer(Buffer("z", (16, 12), DType.FP32, BufferKind.OUTPUT))
    attrs = {"sparse_operand": 0, "transposed": True}
    for name, r0, rows, out in (("smu", 0, 8, y), ("dmu", 8, 8, y), ("smu32", 0, 16, z)):
        g.add_op(MicroOp(name, OpType.SPMM, DType.BF16,
                         (TensorRef("Wt", (r0, 0), (rows, 40)), TensorRef.whole(x)),
                         (TensorRef(out.name, (r0, 0), (rows, 12)),),
                         shape={"M": rows, "K": 40, "N": 12}, attrs=attrs))
    return g, {"xT": rng.uniform(-1, 1, (40, 12)).astype(np.float32)}


def test_sparse_tiles_run_on_the_smu_bit_exact():
    """SPMM with a constant sparse A lowered on the SMU (CSR blobs, B and C rows padded to
    the 64 lanes, BF16 or FP32 result) and, densely, on a DMU: the functional run equals
    the golden bit for bit; a wrong non-zero count or B address is caught."""
    from accelpool.spec.units.smu import SmuFunc
    from accelpool.spec.formats import encode_csr, pack_csr
    from accelpool.sched.schedule import Schedule, Slot
    g, inputs = _sparse_tiles_graph()
    s = Schedule("manual", POOL, {"smu": Slot("smu0", 0, 1), "dmu": Slot("dmu0", 0, 1),
                                  "smu32": Slot("smu0", 1, 2)})
    prog = compile_schedule(g, s, inputs)
    gold = golden_outputs(g, inputs)
    compare_outputs(run_program(prog).outputs, gold)
    assert gold["y"].view(np.uint16)[3].tolist() == [0] * 12       # the empty row: +0
    cmds = prog.streams["smu0"].commands
    execs = [(i, c) for i, c in enumerate(cmds) if c.opcode is isa.Opcode.EXEC]
    (i16, e16), (i32, e32) = execs
    a16, a32 = e16.fields["args"], e32.fields["args"]
    assert e16.fields["func"] is SmuFunc.SPMM
    csr = encode_csr(g.buffers["Wt"].data[:8])
    assert (a16["m"], a16["n"], a16["k"], a16["nnz"], a16["out_bf16"]) == (8, 12, 40, csr.nnz, 1)
    assert (a32["m"], a32["nnz"], a32["out_bf16"]) == (16, encode_csr(g.buffers["Wt"].data).nnz, 0)
    assert all(a16[f] % 128 == 0 for f in ("a_ptr_addr", "a_nz_addr", "b_addr", "c_addr"))
    ptr, nz = pack_csr(csr, 64)
    for key, blob in (("ptr", ptr), ("nz", nz)):
        addr, n = prog.image.blobs[("smu", key)]
        assert bytes(prog.image.data[addr:addr + n]) == blob
    # B rows land 128 bytes apart (12 BF16 padded to 64 lanes), C rows leave the same pitch
    loads = [c.fields for c in cmds[:i16] if c.opcode is isa.Opcode.LOAD]
    b_loads = [f for f in loads if f["spad_addr"] >= a16["b_addr"]]
    assert [f["spad_addr"] - a16["b_addr"] for f in b_loads] == [128 * r for r in range(40)]
    stores = [c.fields for c in cmds[i16:i32] if c.opcode is isa.Opcode.STORE]
    assert [f["spad_addr"] - a16["c_addr"] for f in stores] == [128 * r for r in range(8)]
    assert {f["length"] for f in stores} == {24}                    # 12 BF16, whole flits
    # a corrupted EXEC is caught
    for field, delta in (("nnz", 1), ("b_addr", 128)):
        bad = _mutated(prog, "smu0", i16, isa.exec_cmd(UnitKind.SMU, SmuFunc.SPMM,
                                                       **{**a16, field: a16[field] + delta}))
        with pytest.raises((MismatchError, ExecutionError)):
            compare_outputs(run_program(bad).outputs, gold)


def test_spmm_the_smu_cannot_take_says_why():
    from accelpool.sched.ir import MicroOp, OpType
    g, _ = _sparse_tiles_graph()
    tile = POOL.unit("smu0").tile
    ctx = lower_common.LowerCtx(g, lower_common.buffer_layouts(g, 8)[0], 8)
    op = g.op("smu")
    b1 = dataclasses.replace(op, attrs={"sparse_operand": 1})
    with pytest.raises(NotLowered, match=r"^Micro-op 'smu' \(spmm<bf16>\) on smu0: not lowered: "
                                         r"the SMU's sparse operand is its left one \(A\), but "
                                         r"this micro-op's sparse operand is B \(sparse_operand=1\)"):
        lower.plan_op(ctx, b1, tile)
    acc = g.add_buffer(Buffer("c", (8, 12), DType.FP32, BufferKind.INPUT))
    with_c = MicroOp("smu_c", OpType.SPMM, DType.BF16, op.inputs + (TensorRef.whole(acc),),
                     op.outputs, shape=op.shape, attrs=op.attrs)
    with pytest.raises(NotLowered, match=r"not lowered: the SMU has no accumulator input \(every "
                                         r"sum starts at \+0\), but the micro-op adds c\[0:8,0:12\]"):
        lower.plan_op(ctx, with_c, tile)
    a = g.add_buffer(Buffer("a", (8, 40), DType.BF16, BufferKind.INPUT))
    not_const = MicroOp("smu_a", OpType.SPMM, DType.BF16, (TensorRef.whole(a), op.inputs[1]),
                        op.outputs, shape=op.shape, attrs=op.attrs)
    with pytest.raises(NotLowered, match=r"not lowered: the SMU's sparse A a\[0:8,0:40\] must "
                                         r"be a constant"):
        lower.plan_op(ctx, not_const, tile)


def test_mixed_with_every_sparse_tile_on_the_smu():
    """mixed's sparse_fc with all four SPMM tiles forced onto the SMU (heft places most on
    the DMUs): A^T by the memory tile, the SMU's C^T tiles from CSR blobs of W^T, the
    transpose back into h3's columns; the streams reproduce the golden bit for bit."""
    from accelpool.spec.units.layout import MemFunc
    from accelpool.spec.units.smu import SmuFunc
    from accelpool.sched.ir import OpType
    from accelpool.sched.schedule import Schedule, Slot
    g, inputs, prog, gold = compiled("mixed")
    slots = {n: (Slot("smu0", s.start, s.finish) if g.op(n).op is OpType.SPMM else s)
             for n, s in prog.schedule.slots.items()}
    forced = compile_schedule(g, Schedule("forced", POOL, slots), inputs)
    compare_outputs(run_program(forced).outputs, gold)
    smu = [c for c in forced.streams["smu0"].commands if c.opcode is isa.Opcode.EXEC]
    assert [c.fields["func"] for c in smu] == [SmuFunc.SPMM] * 4
    assert {(c.fields["args"]["m"], c.fields["args"]["n"], c.fields["args"]["k"]) for c in smu} \
        == {(8, 8, 32)}
    mem = [c.fields for c in forced.streams["mem"].commands if c.opcode is isa.Opcode.EXEC]
    # the channels-last copy of the CE's output, A^T and the write-back: all transposes
    assert [f["func"] for f in mem] == [MemFunc.TRANSPOSE] * 3


def test_an_exec_whose_arguments_do_not_fit_is_a_clear_error():
    from accelpool.spec.units.dmu import DmuFunc
    args = dict(a_addr=0, b_addr=0, d_addr=0, c_addr=0, m=1 << 20, n=1, k=1, accumulate=0,
                out_bf16=0)
    with pytest.raises(CodegenError, match=r"^Micro-op 'x': its EXEC does not encode: "
                                           r"EXEC\.dmu\.args\.m: 1048576 does not fit in 16 "
                                           r"bits \(0\.\.65535\)$"):
        lower_common.exec_command(UnitKind.DMU, DmuFunc.GEMM, args, "Micro-op 'x': ")


def test_an_exec_the_unit_refuses_is_a_codegen_error_and_an_execution_error():
    """The rules of :class:`accelpool.spec.isa.ExecSpec` (the tile's hardware gate) hold in
    codegen and in the functional executor too."""
    from accelpool.spec.units.dmu import DmuFunc
    args = dict(a_addr=0, b_addr=0, d_addr=0, c_addr=0, m=8, n=8, k=0, accumulate=0,
                out_bf16=0)
    with pytest.raises(CodegenError, match=r"^Micro-op 'x': the dmu unit refuses its EXEC: "
                                           r"k is 0$"):
        lower_common.exec_command(UnitKind.DMU, DmuFunc.GEMM, args, "Micro-op 'x': ")
    g, inputs, prog, gold = compiled("mlp")
    t, i = next((t, i) for t, i in _positions(prog, isa.Opcode.EXEC)
                if prog.streams[t].tile.kind is UnitKind.DMU)
    c = prog.streams[t].commands[i]
    bad = _mutated(prog, t, i, isa.Command(c.opcode, {**c.fields, "args": {
        **c.fields["args"], "n": 0}}, c.kind))
    with pytest.raises(ExecutionError, match=r"the dmu unit refuses the EXEC: n is 0"):
        run_program(bad)
