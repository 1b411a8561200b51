"""Tests of the cost model: unit formulas, NoC transfer and contention, calibration."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from accelpool.spec.config import DType, UnitKind, load_config
from accelpool.sched.cost.model import (CalibrationError, CostModel, CostParams, KindParams,
                                        LinkTable, Measurement, calibrate, main, xy_route)
from accelpool.sched.ir import (ActFunc, Buffer, BufferKind, Graph, MicroOp, OpType, TensorRef)
from accelpool.sched.pool import Pool


@pytest.fixture
def pool():
    return Pool.from_config("default")


@pytest.fixture
def cost(pool):
    return CostModel(pool)


def gemm(M, K, N, op=OpType.GEMM, dtype=DType.BF16, sparsity=0.0, **attrs):
    return MicroOp("g", op, dtype, (), (), shape={"M": M, "K": K, "N": N},
                   sparsity=sparsity, attrs=attrs)


def test_unit_formulas(pool, cost):
    from accelpool.sched.cost.systolic import gemm_cycles
    dmu, smu, lpu = pool.unit("dmu0"), pool.unit("smu0"), pool.unit("lpu0")
    # DMU and LPU: their exact RTL formulas, no overhead on top
    from accelpool.sched.cost import dmu as dmu_cost, lpu as lpu_cost
    assert cost.formula(UnitKind.DMU).cycles is dmu_cost.cycles
    assert cost.formula(UnitKind.LPU).cycles is lpu_cost.cycles
    assert cost.exec_cycles(gemm(8, 16, 8), dmu) == gemm_cycles(8, 8, 8, 8, 16, word_elems=16) == 43
    assert cost.exec_cycles(gemm(9, 16, 8), dmu) == gemm_cycles(8, 8, 9, 8, 16, word_elems=16)
    assert cost.exec_cycles(gemm(16, 32, 16, dtype=DType.INT8), lpu) == gemm_cycles(8, 16, 16, 16, 32, word_elems=64)
    sp = gemm(8, 64, 8, op=OpType.SPMM, sparsity=0.75, sparse_operand=0)
    from accelpool.sched.cost import smu as smu_cost
    # SMU: its formula with the non-zeros of A (8 x 64 at 75% zeros)
    assert cost.formula(UnitKind.SMU).cycles is smu_cost.cycles
    assert cost.exec_cycles(sp, smu) == smu_cost.cycles(smu.tile, m=8, n=8, nnz=128)
    # a sparse B (K x N) runs as C^T = B^T A^T: N sparse rows, M dense columns
    spb = gemm(8, 64, 16, op=OpType.SPMM, sparsity=0.5, sparse_operand=1)
    assert cost.exec_cycles(spb, smu) == smu_cost.cycles(smu.tile, m=16, n=8, nnz=512)
    assert cost.exec_cycles(sp, dmu) == gemm_cycles(8, 8, 8, 8, 64, word_elems=16)     # dense on the DMU
    conv = MicroOp("c", OpType.CONV, DType.INT8, (), (), shape=dict(
        IC=16, H=8, W=8, OC=8, KH=3, KW=3, OH=6, OW=6))
    from accelpool.sched.cost import afu as afu_cost, ce as ce_cost
    # CE: its RTL-checked formula, fed the tile's EXEC arguments (no pads: 8x8 -> 6x6)
    ce = pool.unit("ce0")
    assert cost.exec_cycles(conv, ce) == ce_cost.cycles(
        ce.tile, c_in=16, c_out=8, height=8, width=8, kernel_h=3, kernel_w=3, stride=1,
        pads=(0, 0, 0, 0))
    padded = MicroOp("cp", OpType.CONV, DType.INT8, (), (), shape=dict(
        IC=16, H=8, W=8, OC=8, KH=3, KW=3, OH=8, OW=8), attrs={"pads": (1, 1, 1, 1)})
    assert cost.exec_cycles(padded, ce) > cost.exec_cycles(conv, ce)
    act = MicroOp("a", OpType.ACT, DType.BF16, (), (), func=ActFunc.RELU, shape={"n": 100})
    afu = pool.unit("afu0")
    assert cost.exec_cycles(act, afu) == afu_cost.cycles(afu.tile, func="relu", dtype="bf16",
                                                         count=100)
    sig8 = MicroOp("s", OpType.ACT, DType.INT8, (), (), func=ActFunc.SIGMOID, shape={"n": 100})
    # INT8 sigmoid reads its 256-entry table first
    assert cost.exec_cycles(sig8, afu) == afu_cost.cycles(afu.tile, func="sigmoid",
                                                          dtype="int8", count=100)
    agg = MicroOp("n", OpType.AGGREGATE, DType.BF16, (), (),
                  shape={"nodes": 10, "edges": 40, "features": 16})
    from accelpool.sched.cost import gnn as gnn_cost
    assert cost.exec_cycles(agg, pool.unit("gnn0")) == gnn_cost.cycles(
        pool.unit("gnn0").tile, nodes=10, features=16, edges=40)
    # LAYOUT on the memory tile: the layout engine's formula (one cycle per destination
    # element, plus SETUP and DRAIN), from the EXEC's shape fields
    from accelpool.sched.cost import layout as layout_cost
    from accelpool.sched.ir import LayoutFunc
    im2col = MicroOp("l", OpType.LAYOUT, DType.INT8, (TensorRef("x", (0, 0, 0, 0), (1, 3, 8, 8)),),
                     (TensorRef("c", (0, 0), (27, 16)),), func=LayoutFunc.IM2COL,
                     shape={"n": 27 * 16}, attrs={"kernel": (3, 3), "strides": (2, 2),
                                                   "pads": (1, 1, 0, 0), "pad_value": 0})
    assert cost.exec_cycles(im2col, pool.unit("mem")) == layout_cost.cycles(
        "im2col", channels=3, kernel_h=3, kernel_w=3, out_h=4, out_w=4) == 27 * 16 + 2
    tr = MicroOp("t", OpType.LAYOUT, DType.BF16, (TensorRef("a", (0, 0), (5, 7)),),
                 (TensorRef("b", (0, 0), (7, 5)),), func=LayoutFunc.TRANSPOSE, shape={"n": 35})
    assert cost.exec_cycles(tr, pool.unit("mem")) == 35 + 2
    # a copy out of a channels-last image is one TRANSPOSE of its elements
    cp = MicroOp("c", OpType.LAYOUT, DType.INT8, (TensorRef("h", (0, 0), (8, 64)),),
                 (TensorRef("r", (0, 0), (8, 64)),), func=LayoutFunc.COPY, shape={"n": 512})
    assert cost.exec_cycles(cp, pool.unit("mem")) == layout_cost.cycles(
        "transpose", rows=64, cols=8) == 514
    # every unit kind's formula is its own (RTL-derived) module's
    assert {k: cost.formula(k).cycles.__module__ for k in UnitKind} == {
        k: f"accelpool.sched.cost.{'layout' if k is UnitKind.MEMORY else k.key}" for k in UnitKind}


def test_calibrated_params_change_latency(pool):
    params = CostParams(kinds={**CostParams().kinds, UnitKind.DMU: KindParams(2.0, 3.0)})
    c = CostModel(pool, params)
    assert c.exec_cycles(gemm(8, 16, 8), pool.unit("dmu0")) == 2 * 43 + 3


def test_baseline_emulation_prices_the_equivalent_gemm():
    dense = Pool.dense_only("default")
    c = CostModel(dense)
    conv = MicroOp("c", OpType.CONV, DType.INT8, (), (), shape=dict(
        IC=16, H=8, W=8, OC=8, KH=3, KW=3, OH=6, OW=6))
    # im2col GEMM: M = 36, K = 144, N = 8 on an 8x8 array
    from accelpool.sched.cost.systolic import gemm_cycles
    assert c.exec_cycles(conv, dense.unit("dmu0")) == gemm_cycles(8, 8, 36, 8, 144, word_elems=16)


def test_noc_transfer(pool):
    cost = CostModel(pool, noc_model="fallback")
    assert xy_route((0, 0), (2, 1)) == [((0, 0), (1, 0)), ((1, 0), (2, 0)), ((2, 0), (2, 1))]
    assert xy_route((1, 1), (1, 1)) == []
    # 64 bytes = 8 flits of 64 bits + 1 header; 2 hops x 1 cycle; NI 4 cycles each end
    assert cost.transfer_cycles(64, (0, 0), (1, 1)) == 8 + 1 + 2 * 1 + 2 * 4
    assert cost.transfer_cycles(64, (0, 0), (0, 0)) == 0
    # 1000 bytes = 125 flits -> 2 packets (64 flits max) -> 2 headers
    assert cost.serialisation_cycles(1000) == 125 + 2
    # farther is slower
    assert cost.transfer_cycles(512, (0, 0), (2, 2)) > cost.transfer_cycles(512, (0, 0), (1, 0))


def test_link_contention(cost):
    links = LinkTable(cost)
    a = links.book(512, (0, 0), (2, 0), 0)
    assert a == cost.transfer_cycles(512, (0, 0), (2, 0))
    # shares link (1,0)->(2,0): waits for the first to leave it
    b = links.book(512, (1, 0), (2, 0), 0)
    assert b == cost.serialisation_cycles(512) + cost.transfer_cycles(512, (1, 0), (2, 0))
    # disjoint route: no wait
    c = links.book(512, (0, 1), (0, 2), 0)
    assert c == cost.transfer_cycles(512, (0, 1), (0, 2))


def test_memory_server_interference(cost):
    """A phase waits for the packets of phases booked before it while one of its own
    packets is at the memory server (a share service / alone of the phase)."""
    links = LinkTable(cost)
    assert links.interference(100, 600, 300) == 700             # nothing booked: alone
    links.record(0, 1000, 400)                                  # 0.4 server cycles per cycle
    # 600 cycles inside that phase: 240 of its service, half of which lands on ours
    assert links.activity(100, 700) == pytest.approx(240)
    assert links.interference(100, 600, 300) == 100 + 600 + 120
    # partly outside: only the overlap counts; after it, nothing
    assert links.activity(900, 1500) == pytest.approx(40)
    assert links.interference(2000, 600, 300) == 2600
    links.record(500, 700, 100)
    assert links.activity(600, 800) == pytest.approx(80 + 50)
    assert links.interference(5, 0, 0) == 5


def test_edge_and_memory_bytes(pool, cost):
    g = Graph("t")
    g.add_buffer(Buffer("x", (8, 16), DType.BF16, BufferKind.INPUT))
    g.add_buffer(Buffer("w", (16, 16), DType.BF16, BufferKind.CONST,
                        data=np.zeros((16, 16), np.float32)))
    g.add_buffer(Buffer("y", (8, 16), DType.BF16))
    g.add_buffer(Buffer("z", (8, 8), DType.BF16, BufferKind.OUTPUT))
    x, w, y = g.buffers["x"], g.buffers["w"], g.buffers["y"]
    for j in range(2):
        g.add_op(MicroOp(f"g{j}", OpType.GEMM, DType.BF16,
                         (TensorRef.whole(x), TensorRef("w", (0, 8 * j), (16, 8))),
                         (TensorRef("y", (0, 8 * j), (8, 8)),), shape={"M": 8, "K": 16, "N": 8},
                         bytes_in=2 * (128 + 128), bytes_out=128))
    g.add_op(MicroOp("r", OpType.ACT, DType.BF16, (TensorRef("y", (0, 4), (8, 8)),),
                     (TensorRef.whole(g.buffers["z"]),), func=ActFunc.RELU, shape={"n": 64},
                     bytes_in=128, bytes_out=128))
    dag = g.dag
    assert cost.edge_bytes(dag, "g0", "r") == 2 * 8 * 4
    assert cost.edge_bytes(dag, "g1", "r") == 2 * 8 * 4
    u = pool.unit("afu0")
    # memory dataflow (what codegen emits): every operand loaded, every result stored
    assert cost.dataflow == "memory"
    assert cost.memory_bytes(dag, "g0") == (512, 128)
    assert cost.memory_bytes(dag, "r") == (128, 128)
    # priced by the commands codegen emits for it: the rows of y's box, the result rows
    from accelpool.sched.lower import op_transfers
    from accelpool.sched.cost.stream import op_cycles
    loads, stores = op_transfers(g, g.op("r"), u.tile, 8)
    assert (loads, stores) == ([16] * 8, [128])      # z is whole: one contiguous STORE
    assert cost.task_cycles(dag, "r", u) == op_cycles(loads, cost.exec_cycles(g.op("r"), u),
                                                      stores, hops=2)
    # bytes-based where commands are not known (no IR graph, or command_level off)
    bytes_cost = CostModel(pool)
    bytes_cost.command_level = False
    assert bytes_cost.task_cycles(dag, "r", u) == cost.exec_cycles(g.op("r"), u) + \
        cost.load_cycles(128, u.at) + cost.store_cycles(128, u.at)
    # a consumer on another unit waits for the fence and the signal only
    d0 = pool.unit("dmu0")
    assert cost.comm_cycles(64, d0, u) == cost.load_cycles(32, d0.at) + 1 + 2 + 2
    assert cost.comm_cycles(64, u, u) == 0
    # direct dataflow: only external operands and graph outputs move to/from memory
    direct = CostModel(pool, dataflow="direct", noc_model="fallback")
    assert direct.memory_bytes(dag, "g0") == (512, 0)
    assert direct.memory_bytes(dag, "r") == (0, 128)
    # the result goes back to memory: data out, acknowledgement back
    assert direct.task_cycles(dag, "r", u) == direct.exec_cycles(g.op("r"), u) + \
        direct.transfer_cycles(128, u.at, pool.memory.at) + direct.transfer_cycles(1, pool.memory.at, u.at)
    assert direct.comm_cycles(64, d0, u) == direct.transfer_cycles(64, d0.at, u.at)
    with pytest.raises(ValueError, match="dataflow must be one of 'memory', 'direct', not 'push'"):
        CostModel(pool, dataflow="push")


def sweep(tile, scale, overhead, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    from accelpool.sched.cost.model import _call_formula, _unit_formula
    out = []
    for M in (8, 16, 32, 64):
        for K in (8, 64, 256):
            shape = {"M": M, "N": 16, "K": K}
            true = scale * _call_formula(tile.kind, _unit_formula(tile.kind).cycles, tile, shape) + overhead
            out.append(Measurement(tile, shape, int(round(true * (1 + noise * rng.standard_normal())))))
    return out


def test_calibration_recovers_parameters_and_validates():
    cfg = load_config("default")
    res = calibrate(sweep(cfg.tile("dmu0"), 1.25, 30))
    kp = res.fit[UnitKind.DMU]
    assert kp.scale == pytest.approx(1.25, abs=0.01) and kp.overhead == pytest.approx(30, abs=2)
    assert res.max_rel_error[UnitKind.DMU] < 0.01
    assert res.params.kinds[UnitKind.DMU] == kp
    assert res.params.kinds[UnitKind.SMU] == KindParams()   # untouched kinds keep defaults
    assert "dmu: cycles = 1.25" in res.summary()


def test_calibration_rejects_a_model_that_misses():
    cfg = load_config("default")
    tile = cfg.tile("dmu0")
    # measured cycles quadratic in K: no line through the formula fits
    ms = [Measurement(tile, m.shape, m.shape["K"] ** 2) for m in sweep(tile, 1, 0)]
    with pytest.raises(CalibrationError, match=r"misses held-out RTL measurements by more than "
                                               r"5.0%: dmu"):
        calibrate(ms)
    with pytest.raises(CalibrationError, match=r"dmu: 2 measurements over 1 distinct shapes"):
        calibrate(sweep(tile, 1, 0)[:1] * 2)


def test_calibrate_command(tmp_path, capsys):
    cfg = load_config("default")
    recs = [{"tile": "dmu1", "shape": m.shape, "cycles": m.cycles}
            for m in sweep(cfg.tile("dmu1"), 1.1, 12)]
    p = tmp_path / "m.json"
    p.write_text(json.dumps(recs))
    assert main(["calibrate", str(p)]) == 0
    m = re.search(r"dmu: cycles = ([\d.]+) \* formula \+ ([\d.]+)", capsys.readouterr().out)
    assert abs(float(m[1]) - 1.1) < 0.005 and abs(float(m[2]) - 12) < 1.0
    p.write_text(json.dumps([{"tile": "nope", "shape": {}, "cycles": 1}]))
    assert main(["calibrate", str(p)]) == 1
    assert "record 0" in capsys.readouterr().out


def test_unit_module_formula_is_called_with_its_own_argument_names(pool, monkeypatch):
    from accelpool.sched.cost.formula import FORMULAS, Formula

    def cycles(tile, m, n, k):          # a unit module's spelling of the GEMM shape
        return m * n * k // (tile["rows"] * tile["cols"])
    FORMULAS[UnitKind.DMU]              # the built-in formulas are registered
    monkeypatch.setitem(FORMULAS._items, UnitKind.DMU, Formula(cycles))
    c = CostModel(pool)
    assert c.exec_cycles(gemm(16, 32, 8), pool.unit("dmu0")) == 16 * 32 * 8 // 64

    def needs_more(tile, m, n, k, depth):
        return 1
    monkeypatch.setitem(FORMULAS._items, UnitKind.DMU, Formula(needs_more))
    with pytest.raises(TypeError, match=r"The dmu cycle formula .*needs_more needs depth; the "
                                        r"micro-op gives M, K, N"):
        CostModel(pool).exec_cycles(gemm(16, 32, 8), pool.unit("dmu0"))


def test_a_unit_kind_without_its_formula_is_refused(pool, monkeypatch):
    from accelpool.sched.cost.formula import FORMULAS
    FORMULAS[UnitKind.SMU]
    monkeypatch.delitem(FORMULAS._items, UnitKind.SMU)
    sp = gemm(8, 64, 8, op=OpType.SPMM, sparsity=0.75, sparse_operand=0)
    with pytest.raises(ValueError, match=r"No cycle formula for unit kind 'smu' \(its cost "
                                         r"module registers one\); kinds with one: memory, "
                                         r"dmu, lpu, ce, afu, gnn$"):
        CostModel(pool).exec_cycles(sp, pool.unit("smu0"))


def test_noc_rtl_model_is_the_default(pool):
    from accelpool.sched.cost import noc
    c = CostModel(pool)
    assert c.transfer_cycles(64, (0, 0), (1, 1)) == noc.store_cycles(64, 2, flit_bits=64)
    assert c.load_cycles(100, (0, 0)) == noc.load_cycles(100, 2, flit_bits=64)
    with pytest.raises(ValueError, match="noc_model must be 'rtl'"):
        CostModel(pool, noc_model="exact")


def test_transfers_are_priced_by_the_noc_model(pool, monkeypatch):
    import types
    from accelpool.sched.cost import model
    mod = types.ModuleType("noc")
    calls = []

    def store_cycles(length, hop_count, *, flit_bits=64, max_packet_bytes=64):
        calls.append(("store", length, hop_count, flit_bits))
        return 1000 + length + hop_count

    def load_cycles(length, hop_count, *, flit_bits=64, max_packet_bytes=64):
        calls.append(("load", length, hop_count, flit_bits))
        return 2000 + length + hop_count
    mod.store_cycles, mod.load_cycles = store_cycles, load_cycles
    monkeypatch.setattr(model, "noc", mod)
    c = CostModel(pool)
    assert c.transfer_cycles(64, (0, 0), (2, 1)) == 1000 + 64 + 3
    assert c.transfer_cycles(64, (0, 0), (0, 0)) == 0
    assert c.memory_cycles(pool.unit("dmu0"), 100, 50) == (2000 + 100 + 2) + (1000 + 50 + 2)
    assert ("load", 100, 2, 64) in calls


def test_dequantize_is_priced_as_the_afus_own_function(pool, cost):
    """DEQUANTIZE is an AFU function of its own (lanes elements per cycle), not a MUL."""
    from accelpool.sched.cost import afu
    from accelpool.sched.decompose import compile_model
    g = compile_model("qcnn")
    op = next(o for o in g.ops if o.op is OpType.DEQUANTIZE)
    u = pool.unit("afu0")
    assert cost.exec_cycles(op, u) == afu.cycles(u.tile, func="dequantize", dtype="int8",
                                                 count=op.shape["n"])
    assert afu.cycles(u.tile, func="dequantize", dtype="int8", count=512) > \
        afu.cycles(u.tile, func="mul", dtype="int8", count=512)
