import numpy as np
import pytest
from onnx import TensorProto, helper

from hw.config import DType, parse_config, load_config
from sched import models
from sched.decompose import (AnnotateCosts, DecomposeOptions, TilePlan, compile_model,
                             decompose)
from sched.frontend import import_model
from sched.golden.executor import run_graph
from sched.ir import IRError, OpType, verify
from sched.test_frontend import make, vi

POOL = load_config()


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
    kinds = {o.outputs[0].offset[1]: o.op for o in g.ops}
    assert kinds == {0: OpType.GEMM, 8: OpType.GEMM, 16: OpType.SPMM, 24: OpType.SPMM}
    sp = next(o for o in g.ops if o.op is OpType.SPMM)
    box = w[:, sp.outputs[0].offset[1]:][:, :8]
    nnz = np.count_nonzero(box)
    assert sp.sparsity == pytest.approx(1 - nnz / box.size)
    assert sp.flops == 2 * nnz * 8 and sp.attrs["sparse_operand"] == 1
    dense = next(o for o in g.ops if o.op is OpType.GEMM)
    assert dense.flops == 2 * 8 * 64 * 8
    x = {"x": np.random.default_rng(4).uniform(-1, 1, (8, 64)).astype(np.float32)}
    assert_same_bits(ops, g, x)
    # the threshold is an option, and without an SMU every tile stays dense
    assert all(o.op is OpType.GEMM
               for o in decompose(ops, POOL, DecomposeOptions(sparse_threshold=0.95)).ops)
    assert all(o.op is OpType.GEMM for o in decompose(ops, pool(no_smu=True)).ops)


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


def test_reshape_of_a_channels_last_image_is_read_through_a_copy():
    """mixed reshapes its CE output [1, 8, 8, 8] into 8 graph nodes x 64 features: stored
    channels-last that is not a row-major view, so the INT8 GEMM reads a LAYOUT copy; qcnn's
    flatten into an INT8 GEMM chain is read in stored order (no copy), and the graphs still
    compute the same bits."""
    from sched.decompose import ReorderChannelsLast
    from sched.ir import LayoutFunc, channels_last_images
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
