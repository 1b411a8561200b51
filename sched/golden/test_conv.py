"""The CE reference against onnxruntime: ConvInteger exactly, QLinearConv within one step."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from accelpool.sched.golden.conv import conv_integer, conv_output_size, qlinear_conv

CASES = [  # (C, M, H, W, k, stride, pads)
    (3, 2, 5, 5, 3, 1, (1, 1, 1, 1)),
    (8, 16, 7, 6, 1, 1, (0, 0, 0, 0)),
    (5, 4, 9, 8, 5, 2, (2, 2, 2, 2)),
    (16, 16, 8, 8, 3, 2, (1, 0, 0, 1)),
    (4, 3, 6, 7, 2, 1, (0, 1, 1, 0)),
    (9, 7, 10, 10, 4, 2, (0, 0, 0, 0)),
]


def _session(node, inputs, out_type):
    outs = [helper.make_tensor_value_info("y", out_type, None)]
    graph = helper.make_graph([node], "g", inputs, outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"s{c[5]}")
@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
def test_conv_integer_matches_onnxruntime(case, x_dtype):
    c, m, h, w, k, s, pads = case
    rng = np.random.default_rng(hash(case) & 0xFFFF)
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (1, c, h, w)).astype(x_dtype)
    wt = rng.integers(-128, 128, (m, c, k, k)).astype(np.int8)
    xzp = np.array(rng.integers(info.min, info.max + 1), x_dtype)
    wzp = np.array(rng.integers(-5, 6), np.int8)
    tp = TensorProto.INT8 if x_dtype == np.int8 else TensorProto.UINT8
    # ONNX pads order is [x1_begin, x2_begin, x1_end, x2_end] = [top, left, bottom, right].
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], pads=list(pads),
                            strides=[s, s])
    sess = _session(node, [helper.make_tensor_value_info("x", tp, None),
                           helper.make_tensor_value_info("w", TensorProto.INT8, None),
                           helper.make_tensor_value_info("xz", tp, None),
                           helper.make_tensor_value_info("wz", TensorProto.INT8, None)],
                    TensorProto.INT32)
    want = sess.run(None, {"x": x, "w": wt, "xz": xzp, "wz": wzp})[0]
    got = conv_integer(x, wt, x_zero_point=int(xzp), w_zero_point=int(wzp), strides=(s, s), pads=pads)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + f"s{c[5]}")
@pytest.mark.parametrize("x_dtype", [np.int8, np.uint8])
def test_qlinear_conv_within_one_step_of_onnxruntime(case, x_dtype):
    c, m, h, w, k, s, pads = case
    rng = np.random.default_rng(7 + (hash(case) & 0xFFFF))
    info = np.iinfo(x_dtype)
    x = rng.integers(info.min, info.max + 1, (1, c, h, w)).astype(x_dtype)
    wt = rng.integers(-128, 128, (m, c, k, k)).astype(np.int8)
    bias = rng.integers(-3000, 3000, m).astype(np.int32)
    xs, ws = np.float32(0.02), np.float32(0.005)
    ys = np.float32(0.01 * np.sqrt(c * k * k))
    xz, yz = (-3, 5) if x_dtype == np.int8 else (120, 131)
    tx = TensorProto.INT8 if x_dtype == np.int8 else TensorProto.UINT8
    inputs = {"x": x, "xs": np.array(xs), "xz": np.array(xz, x_dtype), "w": wt,
              "ws": np.array(ws), "wz": np.array(0, np.int8), "ys": np.array(ys),
              "yz": np.array(yz, x_dtype), "b": bias}
    types = {"x": tx, "xs": TensorProto.FLOAT, "xz": tx,
             "w": TensorProto.INT8, "ws": TensorProto.FLOAT, "wz": TensorProto.INT8,
             "ys": TensorProto.FLOAT, "yz": tx, "b": TensorProto.INT32}
    node = helper.make_node("QLinearConv", list(inputs), ["y"], pads=list(pads), strides=[s, s])
    sess = _session(node, [helper.make_tensor_value_info(n, t, None) for n, t in types.items()], tx)
    want = sess.run(None, inputs)[0].astype(int)
    got = qlinear_conv(x, float(xs), xz, wt, float(ws), 0, float(ys), yz, bias,
                       strides=(s, s), pads=pads).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.mean(got == want) > 0.95
    assert np.abs(want - yz).max() > 10  # the case exercises a real range of outputs


def test_output_size_and_errors():
    assert conv_output_size(32, 3, 1, 1, 1) == 32
    assert conv_output_size(32, 3, 2, 1, 1) == 16
    with pytest.raises(ValueError, match="has no output"):
        conv_output_size(2, 5, 1, 0, 0)
    with pytest.raises(ValueError, match="same C"):
        conv_integer(np.zeros((1, 2, 3, 3), np.int8), np.zeros((1, 3, 1, 1), np.int8))
