import json

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec.config import DType, UnitKind
from accelpool.sched.ir import (ActFunc, Buffer, BufferKind, FunctionPass, Graph, IRError,
                                LayoutFunc, MicroOp, OpType, Pipeline, TensorRef, verify)


def _gemm_graph(split_k: bool = False) -> Graph:
    """x[4,16] @ w[16,8] -> y, optionally as a 2-step accumulation chain, then ReLU."""
    g = Graph("t")
    x = g.add_buffer(Buffer("x", (4, 16), DType.BF16, BufferKind.INPUT))
    w = g.add_buffer(Buffer("w", (16, 8), DType.BF16, BufferKind.CONST,
                            data=np.ones((16, 8), ml_dtypes.bfloat16)))
    y = g.add_buffer(Buffer("y", (4, 8), DType.BF16))
    z = g.add_buffer(Buffer("z", (4, 8), DType.BF16, BufferKind.OUTPUT))
    if split_k:
        p = g.add_buffer(Buffer("y.psum0", (4, 8), DType.FP32))
        g.add_op(MicroOp("fc/gemm.k0", OpType.GEMM, DType.BF16,
                         (TensorRef("x", (0, 0), (4, 8)), TensorRef("w", (0, 0), (8, 8))),
                         (TensorRef.whole(p),), shape={"M": 4, "K": 8, "N": 8},
                         attrs={"chain": "y", "k_step": 0, "k_steps": 2}))
        g.add_op(MicroOp("fc/gemm.k1", OpType.GEMM, DType.BF16,
                         (TensorRef("x", (0, 8), (4, 8)), TensorRef("w", (8, 0), (8, 8)),
                          TensorRef.whole(p)),
                         (TensorRef.whole(y),), shape={"M": 4, "K": 8, "N": 8},
                         attrs={"chain": "y", "k_step": 1, "k_steps": 2}))
    else:
        g.add_op(MicroOp("fc/gemm", OpType.GEMM, DType.BF16,
                         (TensorRef.whole(x), TensorRef.whole(w)), (TensorRef.whole(y),),
                         shape={"M": 4, "K": 16, "N": 8}))
    g.add_op(MicroOp("relu/act", OpType.ACT, DType.BF16, (TensorRef.whole(y),),
                     (TensorRef.whole(z),), func=ActFunc.RELU, shape={"n": 32}))
    return g


def test_dependencies_are_derived_from_buffers():
    g = _gemm_graph(split_k=True)
    verify(g)
    assert list(g.dag.edges) == [("fc/gemm.k0", "fc/gemm.k1"), ("fc/gemm.k1", "relu/act")]
    assert g.op("relu/act").deps == ("fc/gemm.k1",)
    assert g.op("fc/gemm.k0").units == (UnitKind.DMU,)
    assert [o.id for o in g.chains()["y"]] == ["fc/gemm.k0", "fc/gemm.k1"]


def test_tiles_writing_disjoint_boxes_all_become_dependencies():
    g = Graph()
    g.add_buffer(Buffer("x", (2, 4), DType.BF16, BufferKind.INPUT))
    g.add_buffer(Buffer("y", (2, 4), DType.BF16))
    g.add_buffer(Buffer("z", (2, 4), DType.BF16, BufferKind.OUTPUT))
    for j in range(2):
        r = TensorRef("x", (0, 2 * j), (2, 2))
        g.add_op(MicroOp(f"a{j}", OpType.ACT, DType.BF16, (r,), (TensorRef("y", r.offset, r.shape),),
                         func=ActFunc.RELU, shape={"n": 4}))
    g.add_op(MicroOp("b", OpType.ACT, DType.BF16, (TensorRef.whole(g.buffers["y"]),),
                     (TensorRef.whole(g.buffers["z"]),), func=ActFunc.TANH, shape={"n": 8}))
    verify(g)
    assert set(g.op("b").deps) == {"a0", "a1"}


def test_alias_shares_storage_and_dependencies():
    g = Graph()
    g.add_buffer(Buffer("x", (2, 4), DType.BF16, BufferKind.INPUT))
    y = g.add_buffer(Buffer("y", (2, 4), DType.BF16))
    v = g.add_buffer(Buffer("y.view", (8,), DType.BF16, alias_of="y"))
    z = g.add_buffer(Buffer("z", (8,), DType.BF16, BufferKind.OUTPUT))
    g.add_op(MicroOp("a", OpType.ACT, DType.BF16, (TensorRef.whole(g.buffers["x"]),),
                     (TensorRef.whole(y),), func=ActFunc.RELU, shape={"n": 8}))
    g.add_op(MicroOp("b", OpType.ACT, DType.BF16, (TensorRef.whole(v),), (TensorRef.whole(z),),
                     func=ActFunc.RELU, shape={"n": 8}))
    verify(g)
    assert g.op("b").deps == ("a",)
    with pytest.raises(IRError, match="cannot alias 'y'.*keeps the element count"):
        g.add_buffer(Buffer("bad", (3,), DType.BF16, alias_of="y"))


def test_reading_unwritten_data_is_rejected():
    g = Graph()
    g.add_buffer(Buffer("y", (4,), DType.BF16))
    g.add_buffer(Buffer("z", (4,), DType.BF16, BufferKind.OUTPUT))
    with pytest.raises(IRError, match=r"Micro-op 'b' reads y\[0:4\], part of which no micro-op "
                                      r"has written"):
        g.add_op(MicroOp("b", OpType.ACT, DType.BF16, (TensorRef.whole(g.buffers["y"]),),
                         (TensorRef.whole(g.buffers["z"]),), func=ActFunc.RELU, shape={"n": 4}))


def test_double_write_and_out_of_bounds_are_rejected():
    g = _gemm_graph()
    with pytest.raises(IRError, match="already written by 'fc/gemm'"):
        g.add_op(MicroOp("again", OpType.ACT, DType.BF16, (TensorRef.whole(g.buffers["x"]),),
                         (TensorRef("y", (0, 0), (1, 1)),), func=ActFunc.RELU, shape={"n": 1}))
    with pytest.raises(IRError, match=r"x\[0:5,0:16\] is outside buffer 'x' of shape \[4, 16\]"):
        g.add_op(MicroOp("oob", OpType.ACT, DType.BF16, (TensorRef("x", (0, 0), (5, 16)),),
                         (TensorRef("y", (0, 0), (1, 1)),), func=ActFunc.RELU, shape={"n": 1}))


def test_verifier_finds_a_cycle():
    g = _gemm_graph()
    g.dag.add_edge("relu/act", "fc/gemm")
    with pytest.raises(IRError, match="cycle: .*fc/gemm -> relu/act"):
        verify(g)


def test_verifier_finds_inconsistent_shapes():
    g = _gemm_graph()
    o = g.op("fc/gemm")
    g.dag.nodes["fc/gemm"]["op"] = type(o)(**{**o.__dict__, "shape": {"M": 4, "K": 8, "N": 8}})
    with pytest.raises(IRError, match=r"'fc/gemm' \(gemm\): shapes a\[4, 16\] @ b\[16, 8\]"):
        verify(g)


def test_verifier_finds_missing_edge_and_disconnected_op():
    g = _gemm_graph()
    g.dag.remove_edge("fc/gemm", "relu/act")
    with pytest.raises(IRError, match="recorded dependencies"):
        verify(g)
    g = _gemm_graph()
    g.add_buffer(Buffer("dead", (4, 8), DType.BF16))
    g.add_op(MicroOp("dead/act", OpType.ACT, DType.BF16, (TensorRef.whole(g.buffers["y"]),),
                     (TensorRef.whole(g.buffers["dead"]),), func=ActFunc.RELU, shape={"n": 32}))
    with pytest.raises(IRError, match="'dead/act' is disconnected: nothing reads its result"):
        verify(g)


def test_unwritten_output_is_rejected():
    g = Graph()
    g.add_buffer(Buffer("x", (4,), DType.BF16, BufferKind.INPUT))
    g.add_buffer(Buffer("z", (4,), DType.BF16, BufferKind.OUTPUT))
    g.add_op(MicroOp("a", OpType.ACT, DType.BF16, (TensorRef("x", (0,), (2,)),),
                     (TensorRef("z", (0,), (2,)),), func=ActFunc.RELU, shape={"n": 2}))
    with pytest.raises(IRError, match="Graph output 'z' is not completely written"):
        verify(g)


def test_pipeline_verifies_after_each_pass_and_dumps():
    dumps = []

    def breaker(g: Graph) -> Graph:
        g.dag.add_edge("relu/act", "fc/gemm")
        return g

    ok = FunctionPass("identity", lambda g: g)
    Pipeline([ok], dump=lambda name, g: dumps.append((name, g.dump()))).run(_gemm_graph())
    assert dumps[0][0] == "identity" and "fc/gemm: gemm<bf16>(M=4,K=16,N=8)" in dumps[0][1]
    with pytest.raises(IRError, match="after pass 'breaker': The micro-op graph has a cycle"):
        Pipeline([ok, FunctionPass("breaker", breaker)]).run(_gemm_graph())


def test_json_and_dot():
    g = _gemm_graph(split_k=True)
    d = json.loads(json.dumps(g.to_json()))
    assert [o["id"] for o in d["micro_ops"]] == ["fc/gemm.k0", "fc/gemm.k1", "relu/act"]
    assert d["micro_ops"][1]["inputs"][2] == {"buffer": "y.psum0", "offset": [0, 0], "shape": [4, 8]}
    assert '"fc/gemm.k1" -> "relu/act";' in g.to_dot()
    assert g.summary()["by_type"] == {"act.relu<bf16>": 1, "gemm<bf16>": 2}


def test_verifier_checks_data_types():
    g = _gemm_graph()
    g.buffers["y"] = Buffer("y", (4, 8), DType.INT8)  # a BF16 GEMM cannot give INT8
    with pytest.raises(IRError, match=r"'fc/gemm' \(gemm<bf16>\): result y\[0:4,0:8\] is int8; "
                                      r"accepted: bf16, fp32"):
        verify(g)


def _transpose_graph(dtype: DType = DType.BF16, out_shape=(6, 4), n: int = 24) -> Graph:
    """x[4,6] (a box of x[5,6]) transposed into y[6,4]."""
    g = Graph("tr")
    g.add_buffer(Buffer("x", (5, 6), dtype, BufferKind.INPUT))
    g.add_buffer(Buffer("y", out_shape, dtype, BufferKind.OUTPUT))
    g.add_op(MicroOp("tr", OpType.LAYOUT, dtype, (TensorRef("x", (1, 0), (4, 6)),),
                     (TensorRef("y", (0,) * len(out_shape), out_shape),),
                     func=LayoutFunc.TRANSPOSE, shape={"n": n}))
    return g


@pytest.mark.parametrize("dtype", [DType.BF16, DType.INT8, DType.FP32, DType.INT32])
def test_transpose_runs_on_the_memory_tile_for_every_element_type(dtype):
    g = _transpose_graph(dtype)
    verify(g)
    assert g.op("tr").units == (UnitKind.MEMORY,)


def test_verifier_checks_transpose_shapes():
    with pytest.raises(IRError, match=r"'tr' \(layout\): transpose of \[4, 6\] -> \[4, 6\] with "
                                      r"\{'n': 24\}; accepted: \[R, C\] -> \[C, R\] with n = R\*C"):
        verify(_transpose_graph(out_shape=(4, 6)))
    with pytest.raises(IRError, match=r"transpose of \[4, 6\] -> \[6, 4\] with \{'n': 20\}"):
        verify(_transpose_graph(n=20))
    # leading size-1 dimensions are ignored, as for every matrix operand
    verify(_transpose_graph(out_shape=(1, 6, 4)))
    g = _transpose_graph()
    g.buffers["y"] = Buffer("y", (6, 4), DType.FP32, BufferKind.OUTPUT)  # a copy keeps the type
    with pytest.raises(IRError, match=r"'tr' \(layout<bf16>\): result y\[0:6,0:4\] is fp32; "
                                      r"accepted: bf16"):
        verify(g)


def test_sanitize_names_is_injective_and_keeps_valid_names():
    from accelpool.sched.ir import sanitize, sanitize_names
    names = ["x:1", "x_1", "x/1", "", "ok.name"]
    got = sanitize_names(names)
    assert got["x_1"] == "x_1" and got["ok.name"] == "ok.name"
    assert len(set(got.values())) == len(names)
    assert all(sanitize(v) == v for v in got.values())
    assert sanitize_names(names) == got
