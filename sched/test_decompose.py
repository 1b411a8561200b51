import dataclasses

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from accelpool.spec.config import DType, UnitKind, parse_config, load_config
from accelpool.sched import models
from accelpool.sched.decompose import (AnnotateCosts, DecomposeOptions, TilePlan, compile_model,
                             decompose)
from accelpool.sched.frontend import import_model
from accelpool.sched.reference import run_graph
from accelpool.sched.ir import BufferKind, IRError, LayoutFunc, OpType, TensorRef, verify
from accelpool.sched.test_frontend import make, vi

POOL = load_config()
BF16 = ml_dtypes.bfloat16


def pool(**units):
    """A 3x3 pool like the default one with some unit parameters changed."""
    doc = {"mesh": {"cols": 3, "rows": 3}, "tile": [
        {"kind": "memory", "x": 1, "y": 1},
        {"kind": "dmu", "name": "dmu0", "x": 0, "y": 0, **units.get("dmu", {})},
        {"kind": "lpu", "name": "lpu0", "x": 1, "y": 0},
        {"kind": "smu", "name": "smu0", "x": 0, "y": 1},
        {"kind": "ce", "name": "ce0", "x": 2, "y": 0, **units.get("ce", {})},
        {"kind": "afu", "name": "afu0", "x": 0, "y": 2, **units.get("afu", {})},
        {"kind": "gnn", "name": "gnn0", "x": 1, "y": 2, **units.get("gnn", {})}]}
    if units.get("no_smu"):
        doc["tile"] = [t for t in doc["tile"] if t["kind"] != "smu"]
    return parse_config(doc, "test")


def assert_same_bits(a, b, inputs):
    ra, rb = run_graph(a, inputs), run_graph(b, inputs)
    for k in ra:
        np.testing.assert_array_equal(ra[k].view(np.uint8), rb[k].view(np.uint8))


def gemm_model(m=8, k=200, n=24, w=None):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n)).astype(np.float32) if w is None else w
    return make([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")],
                [vi("x", [m, k])], [vi("y", [m, n])],
                {"w": w, "b": rng.standard_normal(n).astype(np.float32)})


def test_gemm_tiles_follow_the_dmu_array_and_k_chains():
    ops = import_model(gemm_model())
    g = decompose(ops, POOL, DecomposeOptions(max_k_tile=64))
    tiles = [o for o in g.ops]
    assert len(tiles) == 1 * 3 * 4  # M 8/8, N 24/8, K 200 -> 64,64,64,8
    assert {(o.shape["M"], o.shape["N"]) for o in tiles} == {(8, 8)}
    assert [o.shape["K"] for o in tiles[:4]] == [64, 64, 64, 8]
    chain = [o for o in tiles if o.attrs["chain"] == "fc/gemm.m0n1"]
    assert [o.attrs["k_step"] for o in chain] == [0, 1, 2, 3]
    assert all(o.attrs["k_steps"] == 4 for o in chain)
    # step 0 starts from the bias, each later step from the previous partial sum
    assert chain[0].inputs[2].buffer == "b" and chain[0].attrs["c_broadcast"] == "row"
    for prev, nxt in zip(chain, chain[1:]):
        assert nxt.inputs[2] == prev.outputs[0]
        assert g.buffers[prev.outputs[0].buffer].dtype is DType.FP32
        assert nxt.deps == (prev.id,)
    assert chain[-1].outputs[0].buffer == "y"
    x = {"x": np.random.default_rng(1).uniform(-1, 1, (8, 200)).astype(np.float32)}
    assert_same_bits(ops, g, x)


def test_tile_sizes_come_from_the_pool_config():
    ops = import_model(gemm_model(m=16, k=32, n=32))
    g = decompose(ops, pool(dmu={"rows": 4, "cols": 16}))
    assert {(o.shape["M"], o.shape["N"]) for o in g.ops} == {(4, 16)}
    # a scratchpad too small for K=64 steps shortens them
    plan = TilePlan.from_pool(pool(dmu={"scratchpad_bytes": 2048}))
    assert plan.gemm_tile(DType.BF16, 8, 1000, 8) == (8, 16, 8)  # (1024 - 2*4*64) / (2*16)


def test_per_tile_sparsity_gives_dense_and_sparse_tiles_of_one_layer():
    w = np.random.default_rng(2).standard_normal((64, 32)).astype(np.float32)
    w[:, 16:] *= np.random.default_rng(3).random((64, 16)) < 0.2
    ops = import_model(gemm_model(m=8, k=64, n=32, w=w))
    g = decompose(ops, POOL)
    tiles = {o.id: o for o in g.ops}
    kinds = {i: tiles[f"fc/gemm.m0n{i}"].op for i in range(4)}
    assert kinds == {0: OpType.GEMM, 1: OpType.GEMM, 2: OpType.SPMM, 3: OpType.SPMM}
    # dense blocks write y directly; the sparse ones C^T = B^T A^T into yT (below)
    assert [tiles[f"fc/gemm.m0n{i}"].outputs[0] for i in range(2)] == \
        [TensorRef("y", (0, 0), (8, 8)), TensorRef("y", (0, 8), (8, 8))]
    sp = tiles["fc/gemm.m0n2"]
    box = w[:, 16:24]
    nnz = np.count_nonzero(box)
    assert sp.sparsity == pytest.approx(1 - nnz / box.size)
    assert sp.flops == 2 * nnz * 8 and sp.attrs["sparse_operand"] == 0
    assert sp.bytes_in == 4 * nnz + 4 * 9 + 64 * 8 * 2 + 8 * 4   # CSR of B^T, A^T, bias
    dense = tiles["fc/gemm.m0n0"]
    assert dense.flops == 2 * 8 * 64 * 8
    x = {"x": np.random.default_rng(4).uniform(-1, 1, (8, 64)).astype(np.float32)}
    assert_same_bits(ops, g, x)
    # the threshold is an option, and without an SMU every tile stays dense
    assert all(o.op is OpType.GEMM
               for o in decompose(ops, POOL, DecomposeOptions(sparse_threshold=0.95)).ops)
    assert all(o.op is OpType.GEMM for o in decompose(ops, pool(no_smu=True)).ops)


def test_sparse_weight_blocks_are_computed_transposed():
    """C^T[n-block] = B[:, n-block]^T @ A^T: the SMU's sparse operand is its left one."""
    w = np.random.default_rng(2).standard_normal((64, 32)).astype(np.float32)
    w[:, 16:] *= np.random.default_rng(3).random((64, 16)) < 0.2
    g = decompose(import_model(gemm_model(m=8, k=64, n=32, w=w)), POOL)
    verify(g)
    tiles = {o.id: o for o in g.ops}
    # A^T once per layer, on the memory tile
    at = tiles["fc/gemm.aT"]
    assert (at.op, at.func, at.units) == (OpType.LAYOUT, LayoutFunc.TRANSPOSE, (UnitKind.MEMORY,))
    assert at.inputs == (TensorRef("x", (0, 0), (8, 64)),)
    assert at.outputs == (TensorRef("fc_gemm.aT", (0, 0), (64, 8)),)
    # B^T of the two sparse blocks only, transposed at compile time into a constant
    bt = g.buffers["w.folded.T"]
    assert bt.kind is BufferKind.CONST and bt.shape == (16, 64)
    np.testing.assert_array_equal(bt.data.view(np.uint16),
                                  np.ascontiguousarray(w[:, 16:32].T).astype(BF16).view(np.uint16))
    for i, r0 in ((2, 0), (3, 8)):
        o = tiles[f"fc/gemm.m0n{i}"]
        assert o.attrs["transposed"] and o.attrs["sparse_operand"] == 0
        assert o.shape == {"M": 8, "K": 64, "N": 8}
        assert o.inputs[:2] == (TensorRef("w.folded.T", (r0, 0), (8, 64)), TensorRef("fc_gemm.aT", (0, 0), (64, 8)))
        # the bias row [1, N] becomes a column [N, 1], a constant too
        assert o.inputs[2] == TensorRef("b.T", (r0, 0), (8, 1)) and o.attrs["c_broadcast"] == "col"
        assert o.outputs == (TensorRef("fc_gemm.yT", (r0, 0), (8, 8)),)
        assert o.units == (UnitKind.SMU, UnitKind.DMU)
    # one transpose back into the adjacent result columns 16..31
    yt = tiles["fc/gemm.yT"]
    assert yt.inputs == (TensorRef("fc_gemm.yT", (0, 0), (16, 8)),)
    assert yt.outputs == (TensorRef("y", (0, 16), (8, 16)),)
    assert set(yt.deps) == {"fc/gemm.m0n2", "fc/gemm.m0n3"}


def _spmm_reference(model):
    """The operator-level graph with its GEMM as one untransposed SPMM (sparse B skipped)."""
    ref = import_model(model)
    (op,) = ref.ops
    ref.replace_op(dataclasses.replace(op, op=OpType.SPMM, attrs={**op.attrs, "sparse_operand": 1}))
    return ref


def test_transposed_sparse_tiles_are_bit_exact_with_the_untransposed_spmm():
    """Chains (K split, some steps dense), two M blocks, two runs of sparse blocks, bias: the
    same products added in the same order, the same weight zeros skipped. Skipping shows:
    an all-zero weight column keeps a -0 bias (dense: +0) and an infinite input stays out
    (dense: inf * 0 = NaN)."""
    rng = np.random.default_rng(8)
    k, n = 48, 40
    w = rng.standard_normal((k, n)).astype(np.float32)
    sparse_cols = [*range(8, 16), *range(24, 40)]
    w[:, sparse_cols] *= rng.random((k, len(sparse_cols))) < 0.15
    w[16:32, 24:32] = rng.standard_normal((16, 8))      # block n3: its step k1 is dense
    w[:, 9] = 0.0
    bias = rng.standard_normal(n).astype(np.float32)
    bias[9] = -0.0
    m = make([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")],
             [vi("x", [16, k])], [vi("y", [16, n])], {"w": w, "b": bias})
    ops = import_model(m)
    g = decompose(ops, POOL, DecomposeOptions(max_k_tile=16))
    verify(g)
    kinds = {o.id: o.op for o in g.ops}
    assert kinds["fc/gemm.m1n3k1"] is OpType.GEMM and kinds["fc/gemm.m1n3k0"] is OpType.SPMM
    assert g.op("fc/gemm.m1n3k1").attrs["transposed"]                  # one orientation per chain
    assert g.op("fc/gemm.m1n3k1").inputs[2] == TensorRef("fc_gemm.psumT0", (8, 8), (8, 8))
    assert [o.id for o in g.ops if o.op is OpType.LAYOUT] == ["fc/gemm.aT", "fc/gemm.yT0",
                                                               "fc/gemm.yT1"]
    x = rng.uniform(-1, 1, (16, k)).astype(np.float32)
    x[3, 5] = np.inf
    got = run_graph(g, {"x": x})["y"].view(np.uint16)
    want = run_graph(_spmm_reference(m), {"x": x})["y"].view(np.uint16)
    np.testing.assert_array_equal(got, want)
    assert got[0, 9] == got[3, 9] == 0x8000                 # -0 kept, inf * 0 skipped
    dense_bits = run_graph(ops, {"x": x})["y"].view(np.uint16)
    assert dense_bits[0, 9] == 0 and np.isnan(dense_bits[3:4, 9:10].view(BF16)).all()
    # a DMU runs such a tile densely: the same as the untransposed dense GEMM
    dense = decompose(ops, POOL, DecomposeOptions(max_k_tile=16))
    for o in list(dense.ops):
        if o.op is OpType.SPMM:
            dense.replace_op(dataclasses.replace(o, op=OpType.GEMM))
    x[3, :] = 0.5
    np.testing.assert_array_equal(run_graph(dense, {"x": x})["y"].view(np.uint16),
                                  run_graph(ops, {"x": x})["y"].view(np.uint16))


def test_conv_tiles_chain_over_input_channels_and_split_rows():
    rng = np.random.default_rng(5)
    w = rng.integers(-20, 20, (6, 5, 3, 3)).astype(np.int8)
    m = make([helper.make_node("ConvInteger", ["x", "w", "zp"], ["y"], name="conv",
                               kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])],
             [vi("x", [1, 5, 11, 7], TensorProto.INT8)], [vi("y", [1, 6, 6, 4], TensorProto.INT32)],
             {"w": w, "zp": np.int8(3)})
    ops = import_model(m)
    p = pool(ce={"oc_lanes": 4, "ic_lanes": 2, "scratchpad_bytes": 1024})
    g = decompose(ops, p, DecomposeOptions(max_k_tile=18, spad_fraction=0.25))
    verify(g)
    tiles = list(g.ops)
    assert {o.shape["OC"] for o in tiles} == {4, 2}
    assert {o.shape["IC"] for o in tiles} == {2, 1}  # 5 channels: steps of 2, 2, 1
    last = [o for o in tiles if o.outputs[0].buffer == "y"]  # y is [N, OC, OH, OW]
    assert len({o.outputs[0].offset[2] for o in last}) > 1  # output rows split
    # each tile carries its own padding: only the first row block pads on top
    top = {o.outputs[0].offset[2]: o.attrs["pads"][0] for o in last}
    assert top[0] == 1 and all(v == 0 for k, v in top.items() if k)
    x = {"x": rng.integers(-128, 128, (1, 5, 11, 7)).astype(np.int8)}
    assert_same_bits(ops, g, x)


def test_activations_become_vectors_sized_for_the_afu():
    m = make([helper.make_node("Sigmoid", ["x"], ["y"], name="s")], [vi("x", [3, 50, 40])],
             [vi("y", [3, 50, 40])])
    ops = import_model(m)
    p = pool(afu={"lanes": 16, "scratchpad_bytes": 4096})
    g = decompose(ops, p)
    vec = TilePlan.from_pool(p).vector(4)
    assert vec == 512  # 4096 * 0.5 / (2 + 2 bytes), a multiple of 16 lanes
    assert all(o.shape["n"] <= vec for o in g.ops)
    assert sum(o.shape["n"] for o in g.ops) == 6000
    x = {"x": np.random.default_rng(6).uniform(-4, 4, (3, 50, 40)).astype(np.float32)}
    assert_same_bits(ops, g, x)


def test_bias_vector_broadcast_and_scalar_eltwise_tiles():
    m = make([helper.make_node("Add", ["x", "b"], ["t"], name="add"),
              helper.make_node("Mul", ["t", "s"], ["y"], name="mul")],
             [vi("x", [4, 300])], [vi("y", [4, 300])],
             {"b": np.linspace(-1, 1, 300).astype(np.float32), "s": np.float32(0.3)})
    ops = import_model(m)
    g = decompose(ops, pool(afu={"scratchpad_bytes": 1024}))
    assert len(g) > 2
    x = {"x": np.random.default_rng(7).uniform(-1, 1, (4, 300)).astype(np.float32)}
    assert_same_bits(ops, g, x)


def test_costs_are_annotated():
    g = compile_model("gcn")
    for o in g.ops:
        assert o.bytes_out > 0 and o.bytes_in > 0
        if o.op is OpType.GEMM:
            assert o.flops == 2 * o.shape["M"] * o.shape["K"] * o.shape["N"]
        if o.op is OpType.AGGREGATE:
            assert o.flops == o.shape["edges"] * o.shape["features"] + \
                o.shape["nodes"] * o.shape["features"]
            assert 0.8 < o.sparsity < 0.9
    again = AnnotateCosts().run(g)
    assert again is g


def test_pipeline_dumps_each_pass():
    names = []
    decompose(import_model(models.mlp()), POOL, dump=lambda n, g: names.append(n))
    assert names == ["check-pool-support", "reorder-channels-last", "tile-operators",
                     "annotate-costs"]


def test_bad_options():
    with pytest.raises(ValueError, match="sparse_threshold must be in \\(0, 1\\], not 1.5"):
        DecomposeOptions(sparse_threshold=1.5)
    with pytest.raises(ValueError, match="max_k_tile must be a positive integer, not 0"):
        DecomposeOptions(max_k_tile=0)


def test_tiles_must_fit_their_scratchpad():
    ops = import_model(models.gcn())
    with pytest.raises(IRError, match=r"after pass 'tile-operators': Micro-op 'agg1/aggregate.r0f0' "
                                      r"needs \d+ bytes of operands and result, more than the "
                                      r"1024-byte scratchpad of its unit"):
        decompose(ops, pool(gnn={"scratchpad_bytes": 1024}))


def test_tiling_takes_an_operator_level_graph():
    g = compile_model("mlp", options=DecomposeOptions(max_k_tile=16))
    with pytest.raises(IRError, match="before pass 'tile-operators': Micro-op 'fc1/gemm.m0n0k0' is "
                                      "already a tile of an accumulation chain"):
        decompose(g, POOL)


@pytest.mark.parametrize("c_shape,bc,bc_t", [((16, 24), None, None), ((16, 1), "col", "row"),
                                             ((1, 24), "row", "col")])
def test_transposed_tiles_take_every_bias_form(c_shape, bc, bc_t):
    """A constant bias [M,N], [M,1] or [1,N] becomes a constant c.T [nt,M], [1,M] or [nt,1]
    with the broadcast swapped; the result stays bit-exact with the untransposed SPMM."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((48, 24)).astype(np.float32)
    w[:, 8:] *= rng.random((48, 16)) < 0.15
    m = make([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc")], [vi("x", [16, 48])],
             [vi("y", [16, 24])], {"w": w, "c": rng.uniform(-1, 1, c_shape).astype(np.float32)})
    g = decompose(import_model(m), POOL, DecomposeOptions(max_k_tile=16))
    first = g.op("fc/gemm.m1n1k0")
    assert first.attrs["transposed"] and first.attrs.get("c_broadcast") == bc_t
    assert g.buffers[first.inputs[2].buffer].kind is BufferKind.CONST
    assert first.inputs[2] == TensorRef("c.T", {None: (0, 8), "row": (0, 0), "col": (0, 8)}[bc],
                                        {None: (8, 8), "row": (8, 1), "col": (1, 8)}[bc])
    x = {"x": rng.uniform(-1, 1, (16, 48)).astype(np.float32)}
    np.testing.assert_array_equal(run_graph(g, x)["y"].view(np.uint16),
                                  run_graph(_spmm_reference(m), x)["y"].view(np.uint16))


def test_reshape_of_a_channels_last_image_is_read_through_a_copy():
    """mixed reshapes its CE output [1, 8, 8, 8] into 8 graph nodes x 64 features: stored
    channels-last that is not a row-major view, so the INT8 GEMM reads a LAYOUT copy; qcnn's
    flatten into an INT8 GEMM chain is read in stored order (no copy), and the graphs still
    compute the same bits."""
    from accelpool.sched.decompose import ReorderChannelsLast
    from accelpool.sched.ir import LayoutFunc, channels_last_images
    g = compile_model("mixed")
    assert channels_last_images(g) == {"x", "h1"}
    copies = [o for o in g.ops if o.func is LayoutFunc.COPY]
    assert [(o.inputs[0].buffer, o.outputs[0].buffer) for o in copies] == [("h1r", "h1r.rowmajor")]
    readers = {r.buffer for o in g.ops if o.op is OpType.GEMM and o.dtype is DType.INT8
               for r in o.inputs}
    assert "h1r.rowmajor" in readers and "h1r" not in readers
    assert not [o for o in compile_model("qcnn").ops if o.op is OpType.LAYOUT]
    for name in ("mixed", "qcnn"):
        op_level = import_model(getattr(models, name)())
        inputs = models.example_inputs(getattr(models, name)())
        assert_same_bits(op_level, ReorderChannelsLast().run(import_model(getattr(models, name)())),
                         inputs)


# -- what cannot fit is refused early ------------------------------------------------------

def _matmul_of_inputs(n):
    """y = a @ b of two [n, n] graph inputs (no constants: the file stays small)."""
    return make([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")],
                [vi("a", [n, n]), vi("b", [n, n])], [vi("y", [n, n])])


def test_model_larger_than_the_memory_is_refused_before_decomposition(tmp_path, capsys):
    import time

    import onnx
    from accelpool.flow.cli import main
    path = tmp_path / "mm8192.onnx"
    onnx.save(_matmul_of_inputs(8192), path)
    t0 = time.perf_counter()
    assert main(["compile", str(path)]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err.strip().splitlines()
    need = 3 * 8192 * 8192 * 2
    assert len(err) == 1
    assert f"needs at least {need} bytes of memory ({need} for its inputs, outputs and " \
           f"constants, 0 for the largest set" in err[0]
    assert "memory tile 'mem' of pool 'default' has 1048576 bytes" in err[0]


def test_memory_needed_counts_the_largest_live_set():
    from accelpool.sched.frontend import check_memory_fit, memory_needed
    from accelpool.sched.frontend import FrontendError
    m = make([helper.make_node("Relu", ["x"], ["t1"], name="r1"),
              helper.make_node("Relu", ["t1"], ["t2"], name="r2"),
              helper.make_node("Add", ["t1", "t2"], ["t3"], name="add"),
              helper.make_node("Relu", ["t3"], ["y"], name="r3")],
             [vi("x", [64, 64])], [vi("y", [64, 64])])
    g = import_model(m)
    t = 64 * 64 * 2
    assert memory_needed(g) == (2 * t, 3 * t, 5 * t)   # t1, t2 and t3 live at the Add
    small = pool()
    check_memory_fit(g, small)
    doc = {"mesh": {"cols": 2, "rows": 1},
           "tile": [{"kind": "memory", "x": 0, "y": 0, "bytes": 32768},
                    {"kind": "afu", "name": "afu0", "x": 1, "y": 0}]}
    with pytest.raises(FrontendError, match=rf"needs at least {5 * t} bytes .* has 32768 "
                                            rf"bytes"):
        import_model(m, parse_config(doc))


def test_decomposition_beyond_the_micro_op_budget_is_refused_fast():
    import time

    from accelpool.sched.frontend import FrontendError
    g = import_model(_matmul_of_inputs(1024))
    t0 = time.perf_counter()
    with pytest.raises(FrontendError, match=r"model 't' would decompose into 262144 micro-ops "
                                            r"for pool 'default', more than the budget of "
                                            r"50000"):
        decompose(g, load_config())
    assert time.perf_counter() - t0 < 3
    mlp = import_model(models.mlp())
    assert len(decompose(mlp, options=DecomposeOptions(max_micro_ops=21))) == 21
    with pytest.raises(FrontendError, match="21 micro-ops .* budget of 20"):
        decompose(mlp, options=DecomposeOptions(max_micro_ops=20))
    with pytest.raises(ValueError, match="max_micro_ops must be a positive integer"):
        DecomposeOptions(max_micro_ops=0)


def test_micro_op_estimate_matches_the_decomposition():
    from accelpool.sched.decompose import estimate_micro_ops
    cfg = load_config()
    for name in models.BUILTIN_MODELS:
        g = import_model(models.build(name), name=name)
        est = estimate_micro_ops(g, TilePlan.from_pool(cfg))
        n = len(decompose(g, cfg))
        assert est <= n <= est + 4, (name, est, n)


@pytest.mark.parametrize("shape, bias, view", [
    ((1, 6, 14, 14), None, (6, 196)),        # 28-byte rows: merged to 392-byte rows
    ((1, 6, 16, 16), None, (96, 16)),        # whole flits already: the last dimension
    ((1, 6, 5, 5), None, (30, 5)),           # 10, 50, 300 bytes: no merge is whole flits
    ((1, 6, 14, 14), (14,), (84, 14)),       # a broadcast row keeps the last dimension
])
def test_element_wise_views_merge_rows_into_whole_flits(shape, bias, view):
    nodes, inits = [helper.make_node("Relu", ["x"], ["y"])], {}
    if bias is not None:
        nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
        inits["b"] = np.ones(bias, np.float32)
    g = compile_model(make(nodes, [vi("x", list(shape))], [vi("y", list(shape))], inits), POOL)
    (op,) = g.ops
    assert tuple(g.buffers[op.outputs[0].buffer].shape) == view
