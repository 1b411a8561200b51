import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from accelpool.spec.config import DType, load_config, parse_config
from accelpool.sched import models
from accelpool.sched.frontend import FrontendError, SUPPORTED_OPS, import_model, load_onnx
from accelpool.sched.ir import AggFunc, BufferKind, EltwiseFunc, LayoutFunc, OpType, verify


def make(nodes, inputs, outputs, inits=None, opset=20, check=True):
    g = helper.make_graph(nodes, "t", inputs, outputs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    if check:
        onnx.checker.check_model(m)
    return m


def vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def relu_model(shape=(2, 4)):
    return make([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", shape)],
                [vi("y", shape)])


# -- what is accepted ---------------------------------------------------------------------

def test_float_model_is_lowered_to_bf16_with_fp32_bias():
    g = import_model(models.mlp())
    verify(g)
    assert g.buffers["x"].dtype is DType.BF16 and g.buffers["x"].kind is BufferKind.INPUT
    fc1 = g.op("fc1/gemm")
    assert fc1.op is OpType.GEMM and fc1.dtype is DType.BF16
    assert dict(fc1.shape) == {"M": 4, "K": 64, "N": 128}
    w = g.buffers[fc1.inputs[1].buffer]
    assert w.shape == (64, 128) and w.kind is BufferKind.CONST  # transB folded
    w_onnx = numpy_helper.to_array(next(t for t in models.mlp().graph.initializer
                                        if t.name == "W1"))
    np.testing.assert_array_equal(w.data.astype(np.float32),
                                  w_onnx.T.astype(w.data.dtype).astype(np.float32))
    bias = g.buffers[fc1.inputs[2].buffer]
    assert bias.dtype is DType.FP32 and bias.shape == (1, 128)
    assert fc1.attrs["c_broadcast"] == "row"
    assert fc1.source == "fc1" and fc1.source_op == "Gemm"


def test_float_conv_is_im2col_then_dmu_gemm_per_image():
    """8x8 maps (128 bytes of BF16, whole flits): im2col then a GEMM per image."""
    m = make([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", kernel_shape=[3, 3],
                               pads=[1, 1, 1, 1], strides=[2, 2])],
             [vi("x", [2, 3, 16, 16])], [vi("y", [2, 4, 8, 8])],
             {"w": np.ones((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32)})
    g = import_model(m)
    kinds = [(o.op, o.func) for o in g.ops]
    assert kinds == [(OpType.LAYOUT, LayoutFunc.IM2COL), (OpType.GEMM, None)] * 2
    gemm = g.op("c/gemm1")
    assert dict(gemm.shape) == {"M": 4, "K": 27, "N": 64}
    assert gemm.attrs["c_broadcast"] == "col"


def test_float_conv_on_maps_that_are_not_whole_flits_is_cropped_by_two_transposes():
    """5x5 maps (50 bytes): the im2col is padded on the right to 8 output columns (16-byte
    rows), the GEMM writes [4, 5*8] and two transposes crop it into the [4*5, 5] rows of
    the result; the golden run equals onnxruntime's."""
    m = make([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", kernel_shape=[3, 3],
                               pads=[1, 1, 1, 1], strides=[2, 2])],
             [vi("x", [2, 3, 9, 9])], [vi("y", [2, 4, 5, 5])],
             {"w": np.random.default_rng(12).standard_normal((4, 3, 3, 3)).astype(np.float32),
              "b": np.ones(4, np.float32)})
    g = import_model(m)
    kinds = [(o.op, o.func) for o in g.ops]
    assert kinds == [(OpType.LAYOUT, LayoutFunc.IM2COL), (OpType.GEMM, None),
                     (OpType.LAYOUT, LayoutFunc.TRANSPOSE), (OpType.LAYOUT, LayoutFunc.TRANSPOSE)] * 2
    im2col, gemm = g.op("c/im2col1"), g.op("c/gemm1")
    assert im2col.attrs["pads"] == (1, 1, 1, 1 + 3 * 2)
    assert dict(gemm.shape) == {"M": 4, "K": 27, "N": 40}
    assert [tuple(r.shape) for o in list(g.ops)[2:4] for r in o.inputs + o.outputs] == \
        [(20, 5), (5, 20), (5, 20), (20, 5)]
    from accelpool.sched.decompose import decompose
    from accelpool.sched.reference import compare_with_onnxruntime
    x = {"x": np.random.default_rng(11).standard_normal((2, 3, 9, 9)).astype(np.float32)}
    (cmp,) = compare_with_onnxruntime(m, decompose(g, load_config()), x)
    assert cmp.ok and cmp.max_ref > 0.1, str(cmp)


def test_layout_operators_are_aliases_without_micro_ops():
    m = make([helper.make_node("Relu", ["x"], ["r"], name="r"),
              helper.make_node("Reshape", ["r", "s"], ["v"], name="reshape"),
              helper.make_node("Transpose", ["v"], ["t"], name="t", perm=[1, 0, 2]),
              helper.make_node("Flatten", ["t"], ["f"], name="flat"),
              helper.make_node("Sigmoid", ["f"], ["y"], name="s")],
             [vi("x", [2, 6])], [vi("y", [2, 6])], {"s": np.array([1, 2, 6], np.int64)})
    g = import_model(m)
    assert [o.op for o in g.ops] == [OpType.ACT, OpType.ACT]
    assert g.base(g.op("s/sigmoid").inputs[0].buffer).name == "r"


def test_shape_arithmetic_on_constants_is_folded():
    # Reshape(x, Concat(Gather(Shape(x), 0), [-1])): exporter style, all static here
    m = make([helper.make_node("Shape", ["x"], ["sh"], name="shape"),
              helper.make_node("Gather", ["sh", "zero"], ["n"], name="gather", axis=0),
              helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
              helper.make_node("Concat", ["n1", "minus1"], ["shape"], name="cat", axis=0),
              helper.make_node("Reshape", ["x", "shape"], ["f"], name="reshape"),
              helper.make_node("Tanh", ["f"], ["y"], name="tanh")],
             [vi("x", [2, 3, 4])], [vi("y", [2, 12])],
             {"zero": np.array(0, np.int64), "ax": np.array([0], np.int64),
              "minus1": np.array([-1], np.int64)})
    g = import_model(m)
    assert [o.op for o in g.ops] == [OpType.ACT]
    assert g.buffers["f"].shape == (2, 12)


def test_constant_sparse_adjacency_is_aggregation():
    g = import_model(models.gcn())
    aggs = [o for o in g.ops if o.op is OpType.AGGREGATE]
    assert len(aggs) == 2 and all(o.func is AggFunc.MEAN for o in aggs)
    n_edges = 2 * 78 + 34  # karate club: 78 edges both ways plus self loops
    assert aggs[0].shape == {"nodes": 34, "edges": n_edges, "features": 16}


def test_sum_adjacency_and_dense_left_constant():
    a = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]], np.float32)
    m = make([helper.make_node("MatMul", ["A", "x"], ["y"], name="agg")],
             [vi("x", [4, 3])], [vi("y", [4, 3])], {"A": a})
    (op,) = import_model(m).ops
    assert op.op is OpType.AGGREGATE and op.func is AggFunc.SUM
    m = make([helper.make_node("MatMul", ["A", "x"], ["y"], name="mm")],
             [vi("x", [4, 3])], [vi("y", [4, 3])], {"A": a + 0.5})
    (op,) = import_model(m).ops
    assert op.op is OpType.GEMM


def test_quantized_model_maps_to_int8_units():
    g = import_model(models.qcnn())
    assert g.buffers["x"].dtype is DType.INT8 and g.buffers["x"].quant is not None  # host-quantised
    convs = [o for o in g.ops if o.op is OpType.CONV]
    assert len(convs) == 2 and all(o.dtype is DType.INT8 for o in convs)
    assert convs[0].attrs["pad_value"] == -3  # the input zero point pads
    assert convs[0].attrs["requant"]["zero_point"] == 0
    gemm = next(o for o in g.ops if o.op is OpType.GEMM)
    assert gemm.dtype is DType.INT8 and g.buffers[gemm.outputs[0].buffer].dtype is DType.INT8
    assert [o.op for o in g.ops][-1] is OpType.DEQUANTIZE


def test_quantize_linear_of_a_computed_tensor_runs_on_the_afu():
    m = make([helper.make_node("Relu", ["x"], ["r"], name="r"),
              helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"], name="q"),
              helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
             [vi("x", [2, 4])], [vi("y", [2, 4])], {"s": np.float32(0.1), "z": np.int8(1)})
    g = import_model(m)
    assert [(o.op, o.dtype) for o in g.ops] == [(OpType.ACT, DType.BF16),
                                                (OpType.QUANTIZE, DType.BF16),
                                                (OpType.DEQUANTIZE, DType.INT8)]
    assert all(o.units[0].key == "afu" for o in g.ops)


def test_matmul_integer_and_conv_integer_give_int32():
    w = np.arange(-6, 6, dtype=np.int8).reshape(4, 3)
    m = make([helper.make_node("MatMulInteger", ["a", "w", "azp"], ["y"], name="mmi")],
             [vi("a", [2, 4], TensorProto.INT8)], [vi("y", [2, 3], TensorProto.INT32)],
             {"w": w, "azp": np.int8(2)})
    (op,) = import_model(m).ops
    assert op.op is OpType.GEMM and op.dtype is DType.INT8
    assert op.attrs["c_broadcast"] == "row"  # -azp * column sums
    g = import_model(m)
    np.testing.assert_array_equal(g.buffers[op.inputs[2].buffer].data,
                                  -2 * w.astype(np.int32).sum(axis=0, keepdims=True))
    m = make([helper.make_node("ConvInteger", ["x", "w"], ["y"], name="ci")],
             [vi("x", [1, 2, 5, 5], TensorProto.INT8)], [vi("y", [1, 3, 3, 3], TensorProto.INT32)],
             {"w": np.ones((3, 2, 3, 3), np.int8)})
    (op,) = import_model(m).ops
    assert op.op is OpType.CONV and op.units[0].key == "ce"


def qdq_model():
    """onnxruntime-style QDQ: Q -> DQ -> Conv(DQ w, DQ b) -> Q -> Flatten -> DQ -> MatMul(DQ w) -> Q -> DQ."""
    rng = np.random.default_rng(9)
    x_s, w_s, c_s, w2_s, y_s = 1 / 127, 0.01, 0.01, 0.005, 0.01
    inits = {"x_s": np.float32(x_s), "zp": np.int8(0), "w_q": rng.integers(-20, 21, (4, 3, 3, 3)).astype(np.int8),
             "w_s": np.float32(w_s), "b_q": rng.integers(-500, 500, 4).astype(np.int32),
             "b_s": np.float32(x_s) * np.float32(w_s), "c_s": np.float32(c_s),
             "w2_q": rng.integers(-30, 31, (256, 10)).astype(np.int8), "w2_s": np.float32(w2_s),
             "y_s": np.float32(y_s)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "zp"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "zp"], ["xf"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "zp"], ["wf"], name="dqw"),
             helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["bf"], name="dqb"),
             helper.make_node("Conv", ["xf", "wf", "bf"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "c_s", "zp"], ["cq"], name="qc"),
             helper.make_node("Flatten", ["cq"], ["fq"], name="flat"),
             helper.make_node("DequantizeLinear", ["fq", "c_s", "zp"], ["ff"], name="dqf"),
             helper.make_node("DequantizeLinear", ["w2_q", "w2_s", "zp"], ["w2f"], name="dqw2"),
             helper.make_node("MatMul", ["ff", "w2f"], ["m"], name="fc"),
             helper.make_node("QuantizeLinear", ["m", "y_s", "zp"], ["mq"], name="qm"),
             helper.make_node("DequantizeLinear", ["mq", "y_s", "zp"], ["y"], name="dqy")]
    return make(nodes, [vi("x", [1, 3, 8, 8])], [vi("y", [1, 10])], inits)


def test_qdq_format_is_fused_into_int8_units():
    from accelpool.sched.decompose import decompose
    from accelpool.sched.reference import compare_with_onnxruntime
    m = qdq_model()
    g = import_model(m, load_config())
    assert [(o.op, o.dtype, o.source_op) for o in g.ops] == [
        (OpType.CONV, DType.INT8, "QLinearConv"), (OpType.GEMM, DType.INT8, "QLinearMatMul"),
        (OpType.DEQUANTIZE, DType.INT8, "DequantizeLinear")]
    assert g.buffers["x"].dtype is DType.INT8  # quantised by the host
    x = {"x": np.random.default_rng(10).uniform(-1, 1, (1, 3, 8, 8)).astype(np.float32)}
    (cmp,) = compare_with_onnxruntime(m, decompose(g, load_config()), x)
    assert cmp.ok and cmp.max_ref > 0.1, str(cmp)


def test_gemm_with_computed_c_adds_on_the_afu():
    m = make([helper.make_node("Relu", ["c0"], ["c"], name="rc"),
              helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="g", alpha=0.5)],
             [vi("x", [2, 3]), vi("c0", [2, 4])], [vi("y", [2, 4])],
             {"w": np.ones((3, 4), np.float32)})
    g = import_model(m)
    assert [(o.op, o.func) for o in g.ops][1:] == [(OpType.GEMM, None),
                                                  (OpType.ELTWISE, EltwiseFunc.ADD)]
    np.testing.assert_array_equal(g.buffers[g.op("g/gemm").inputs[1].buffer].data.astype(
        np.float32), np.full((3, 4), 0.5, np.float32))  # alpha folded into B


def test_round_trip_through_a_file(tmp_path):
    p = tmp_path / "mlp.onnx"
    onnx.save(models.mlp(), p)
    g = import_model(p)
    assert g.name == "mlp" and len(g) == 3


# -- errors -------------------------------------------------------------------------------

def test_unsupported_operator_names_node_and_lists_supported():
    m = make([helper.make_node("Softmax", ["x"], ["y"], name="probs")], [vi("x", [2, 4])],
             [vi("y", [2, 4])])
    with pytest.raises(FrontendError, match=r"node 'probs' \(Softmax\): unsupported operator "
                                            r"'Softmax'; supported operators: Add, Conv, "):
        import_model(m)
    assert "QLinearConv" in SUPPORTED_OPS and "Gelu" in SUPPORTED_OPS


def test_pooling_is_rejected_because_no_unit_takes_it():
    m = make([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2],
                                    strides=[2, 2])],
             [vi("x", [1, 1, 4, 4])], [vi("y", [1, 1, 2, 2])])
    with pytest.raises(FrontendError, match=r"node 'pool' \(MaxPool\): pooling is not supported: "
                                            r"no unit in the pool takes it"):
        import_model(m)


def test_cyclic_graph():
    m = make([helper.make_node("Add", ["x", "b"], ["a"], name="add"),
              helper.make_node("Relu", ["a"], ["b"], name="relu")],
             [vi("x", [2])], [vi("a", [2])], check=False)
    with pytest.raises(FrontendError, match=r"the graph has a cycle: add \(Add\) -> relu \(Relu\) "
                                            r"-> add \(Add\); ONNX graphs must be acyclic"):
        import_model(m)


def test_disconnected_graph():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="used"),
              helper.make_node("Sigmoid", ["x"], ["z"], name="dead")],
             [vi("x", [2])], [vi("y", [2])])
    with pytest.raises(FrontendError, match=r"disconnected: node 'dead' \(Sigmoid\) contributes "
                                            r"to no graph output"):
        import_model(m)
    m = make([helper.make_node("Relu", ["x"], ["y"], name="r")],
             [vi("x", [2]), vi("unused", [2])], [vi("y", [2])])
    with pytest.raises(FrontendError, match="disconnected: graph input 'unused' is read by no node"):
        import_model(m)
    m = make([helper.make_node("Add", ["x", "ghost"], ["y"], name="a")],
             [vi("x", [2])], [vi("y", [2])], check=False)
    with pytest.raises(FrontendError, match=r"disconnected: node 'a' \(Add\) reads tensor 'ghost', "
                                            r"which no node, initializer or graph input produces"):
        import_model(m)


def test_dynamic_shapes():
    m = relu_model(["batch", 4])
    with pytest.raises(FrontendError, match=r"input 'x' has dynamic shape \['batch', 4\]: dimension "
                                            r"0 \('batch'\) cannot be resolved; give a fixed shape"):
        import_model(m)
    g = import_model(m, input_shapes={"x": (3, 4)})
    assert g.buffers["y"].shape == (3, 4)
    with pytest.raises(FrontendError, match=r"input_shapes names 'z', which is not a graph input"):
        import_model(m, input_shapes={"z": (3, 4)})
    m = make([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", None)],
             [vi("y", [2])], check=False)
    with pytest.raises(FrontendError, match=r"input 'x' has no shape \(unknown rank\); dynamic "
                                            r"shapes cannot be resolved"):
        import_model(m)


def test_data_type_no_unit_supports():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="r")],
             [vi("x", [2], TensorProto.DOUBLE)], [vi("y", [2], TensorProto.DOUBLE)])
    with pytest.raises(FrontendError, match=r"tensor 'x' has data type float64; accepted: float32 "
                                            r"\(lowered to bf16\), int8, int32"):
        import_model(m)
    no_ce = parse_config({"mesh": {"cols": 2, "rows": 1},
                          "tile": [{"kind": "memory", "x": 0, "y": 0},
                                   {"kind": "dmu", "name": "dmu0", "x": 1, "y": 0}]}, "small")
    with pytest.raises(FrontendError, match=r"node 'qconv1' \(QLinearConv\): conv on int8 data "
                                            r"needs ce with int8, which no unit in pool 'pool' "
                                            r"supports; the pool has: dmu\(bf16\)"):
        import_model(models.qcnn(), no_ce)


def test_uint8_quantisation_is_rejected():
    m = make([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
              helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
             [vi("x", [2])], [vi("y", [2])], {"s": np.float32(0.1), "z": np.uint8(0)})
    with pytest.raises(FrontendError, match=r"node 'q' \(QuantizeLinear\): y_zero_point \('z'\) "
                                            r"is uint8; the LPU and CE take int8"):
        import_model(m)


def test_transpose_of_computed_tensor_is_rejected():
    m = make([helper.make_node("Transpose", ["x"], ["t"], name="tr", perm=[1, 0]),
              helper.make_node("Relu", ["t"], ["y"], name="r")],
             [vi("x", [2, 3])], [vi("y", [3, 2])])
    with pytest.raises(FrontendError, match=r"node 'tr' \(Transpose\): Transpose perm=\[1, 0\] of "
                                            r"computed tensor 'x' .* moves data"):
        import_model(m)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage\xff" * 10, "truncated"])
def test_corrupt_file(tmp_path, content):
    p = tmp_path / "bad.onnx"
    if content == "truncated":
        content = models.mlp().SerializeToString()[:200]
    p.write_bytes(content)
    with pytest.raises(FrontendError, match=r"bad.onnx: not a valid ONNX file"):
        load_onnx(p)


def test_missing_file(tmp_path):
    with pytest.raises(FrontendError, match=r"nope.onnx: cannot read the model"):
        load_onnx(tmp_path / "nope.onnx")


# -- opsets, zero-sized inputs, tensors written twice ------------------------------------------

@pytest.mark.parametrize("opset", [1, 6, 28, 99])
def test_opset_outside_the_supported_range_is_refused(opset, tmp_path, capsys):
    from accelpool.flow.cli import main
    m = relu_model()
    m.opset_import[0].version = opset
    with pytest.raises(FrontendError, match=rf"uses ai.onnx opset {opset}; accepted: ai.onnx "
                                            rf"opset 7 to 27"):
        load_onnx(m)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    assert main(["compile", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "opset" in err[0]


def test_supported_opset_range_runs_on_onnxruntime():
    import onnxruntime as ort
    from accelpool.sched.frontend import SUPPORTED_OPSETS
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    for opset in (SUPPORTED_OPSETS[0], SUPPORTED_OPSETS[-1]):
        m = relu_model()
        m.opset_import[0].version = opset
        import_model(m)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], np.maximum(x, 0))
    q = models.qcnn()                 # quantised operators at the newest accepted opset
    q.opset_import[0].version = SUPPORTED_OPSETS[-1]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ort.InferenceSession(q.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def test_zero_sized_input_is_refused_without_a_shape_suggestion():
    for shape in ([0, 4], ["batch", 0]):
        m = make([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", shape)],
                 [vi("y", shape)], check=False)
        with pytest.raises(FrontendError) as e:
            load_onnx(m)
        msg = str(e.value)
        assert f"input 'x' has shape {shape}: dimension {shape.index(0)} is 0; zero-sized " \
               f"tensors are not supported" in msg
        assert "--shape" not in msg


def test_negative_dimension_suggests_a_positive_shape():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [-1, 4])],
             [vi("y", [-1, 4])], check=False)
    with pytest.raises(FrontendError, match=r"--shape x=1,4\)"):
        load_onnx(m)


def test_tensor_written_by_two_nodes_names_it_and_both_nodes():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="first"),
              helper.make_node("Sigmoid", ["x"], ["y"], name="second")],
             [vi("x", [2, 4])], [vi("y", [2, 4])], check=False)
    with pytest.raises(FrontendError, match=r"tensor 'y' is written by two nodes, 'first' "
                                            r"\(Relu\) and 'second' \(Sigmoid\)"):
        load_onnx(m)
    m = make([helper.make_node("Relu", ["x"], ["x"], name="self")], [vi("x", [2, 4])],
             [vi("x", [2, 4])], check=False)
    with pytest.raises(FrontendError, match=r"node 'self' \(Relu\) writes tensor 'x', which is "
                                            r"a graph input"):
        load_onnx(m)


def test_initializer_whose_data_does_not_match_its_shape_is_refused():
    m = relu_model()
    m.graph.initializer.append(numpy_helper.from_array(np.ones(10, np.float32), "w"))
    m.graph.initializer[0].dims[:] = [1]
    with pytest.raises(FrontendError, match=r"initializer 'w' of shape \[1\] cannot be decoded"):
        load_onnx(m)
    m = relu_model()
    w = numpy_helper.from_array(np.ones(2, np.float32), "w")
    m.graph.initializer.extend([w, w])
    with pytest.raises(FrontendError, match=r"initializer 'w' is defined twice"):
        load_onnx(m)


def test_duplicate_node_names_and_inputs_are_refused():
    m = make([helper.make_node("Relu", ["x"], ["t"], name="act"),
              helper.make_node("Sigmoid", ["t"], ["y"], name="act")],
             [vi("x", [2, 4])], [vi("y", [2, 4])], check=False)
    with pytest.raises(FrontendError, match=r"two nodes are named 'act' \(a Relu and a "
                                            r"Sigmoid\)"):
        load_onnx(m)
    m = relu_model()
    m.graph.input.append(m.graph.input[0])
    with pytest.raises(FrontendError, match=r"graph input 'x' is listed twice"):
        load_onnx(m)


def test_unnamed_node_gets_a_name_no_other_node_has():
    m = make([helper.make_node("Relu", ["x"], ["t"], name="Relu_1"),
              helper.make_node("Relu", ["t"], ["y"])],
             [vi("x", [2, 4])], [vi("y", [2, 4])])
    names = [n.name for n in load_onnx(m).graph.node]
    assert len(set(names)) == 2 and "Relu_1" in names


def test_requantisation_scale_out_of_range_is_refused():
    m = models.qcnn()
    for t in m.graph.initializer:
        if t.name == "qconv1_ws":
            v = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(np.full_like(v, 1e30), t.name))
    with pytest.raises(FrontendError, match=r"requantisation scale .* which the integer "
                                            r"units cannot apply"):
        import_model(m)


def test_string_that_is_not_utf8_is_refused():
    m = make([helper.make_node("LeakyRelu", ["x"], ["y"], name="r", ZZZZ=0.1)],
             [vi("x", [2, 4])], [vi("y", [2, 4])], check=False)
    data = m.SerializeToString().replace(b"ZZZZ", b"\xf0\x28\x8c\x28")
    with pytest.raises(FrontendError, match="not a valid ONNX file|the ONNX checker rejects"):
        load_onnx(data)


def test_name_that_is_not_utf8_is_refused():
    m = make([helper.make_node("Relu", ["x"], ["y"], name="ZZZZ")], [vi("x", [2, 4])],
             [vi("y", [2, 4])])
    data = m.SerializeToString().replace(b"ZZZZ", b"\xf0\x28\x8c\x28")
    with pytest.raises(FrontendError, match=r"not a valid ONNX file: node 0's name .* is not "
                                            r"UTF-8 text"):
        import_model(data)
