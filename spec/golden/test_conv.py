"""The CE reference against onnxruntime: ConvInteger exactly, QLinearConv within one step.

onnxruntime's u8s8 QLinearConv (UINT8 activations, INT8 weights) is inexact on x86 CPUs
with AVX2 but without VNNI: its kernel sums pairs of products in int16, which saturate, so
it lands 25-66 steps off on these cases while the specification's arithmetic does not.
There the reference is ``onnx.reference.ReferenceEvaluator`` (the specification in numpy),
itself checked against a float64 re-computation; onnxruntime stays the reference where it
is exact on every CPU (INT8 activations, and ConvInteger, whose int32 sums are exact).
"""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from accelpool.spec.golden.conv import conv_integer, conv_output_size, qlinear_conv

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
    value_infos = [helper.make_tensor_value_info(n, t, None) for n, t in types.items()]
    if x_dtype == np.uint8:     # onnxruntime's u8s8 kernel is CPU-dependent: see the docstring
        want = _reference_evaluator(node, value_infos, tx, inputs).astype(int)
        exact = _float64_qlinear_conv(x, xs, xz, wt, ws, ys, yz, bias, s, pads, info)
        assert np.abs(want - exact).max() <= 1
    else:
        want = _session(node, value_infos, tx).run(None, inputs)[0].astype(int)
    got = qlinear_conv(x, float(xs), xz, wt, float(ws), 0, float(ys), yz, bias,
                       strides=(s, s), pads=pads).astype(int)
    assert np.abs(got - want).max() <= 1
    assert np.mean(got == want) > 0.95
    assert np.abs(want - yz).max() > 10  # the case exercises a real range of outputs


def _reference_evaluator(node, value_infos, out_type, inputs):
    from onnx.reference import ReferenceEvaluator
    graph = helper.make_graph([node], "g", value_infos,
                              [helper.make_tensor_value_info("y", out_type, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ReferenceEvaluator(model).run(None, inputs)[0]


def _float64_qlinear_conv(x, xs, xz, w, ws, ys, yz, bias, stride, pads, info):
    """QLinearConv as its specification reads, in float64 with direct loops over the
    padded input (no shared code with the golden)."""
    top, left, bottom, right = pads
    xp = np.pad(x.astype(np.float64) - xz, ((0, 0), (0, 0), (top, bottom), (left, right)))
    m, c, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    acc = np.zeros((1, m, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[0, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            acc[0, :, i, j] = np.tensordot(w.astype(np.float64), patch, axes=3)
    acc += bias.astype(np.float64)[None, :, None, None]
    y = np.rint(acc * (float(xs) * float(ws) / float(ys))) + yz
    return np.clip(y, info.min, info.max).astype(int)


def test_output_size_and_errors():
    assert conv_output_size(32, 3, 1, 1, 1) == 32
    assert conv_output_size(32, 3, 2, 1, 1) == 16
    with pytest.raises(ValueError, match="has no output"):
        conv_output_size(2, 5, 1, 0, 0)
    with pytest.raises(ValueError, match="same C"):
        conv_integer(np.zeros((1, 2, 3, 3), np.int8), np.zeros((1, 3, 1, 1), np.int8))
