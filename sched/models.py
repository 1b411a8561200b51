"""Built-in models, built with :mod:`onnx.helper` (nothing is downloaded).

=============  ===========================================================================
name           what
=============  ===========================================================================
mlp            x[4,64] -> Gemm(128, transB weights) -> Relu -> Gemm(10)
cnn            x[1,3,16,16] -> Conv 3x3 (8) -> Relu -> Conv 3x3/2 (16) -> Relu -> Flatten
               -> Gemm(10)
qcnn           the CNN quantised to int8: QuantizeLinear -> QLinearConv x2 -> Flatten ->
               QLinearMatMul -> DequantizeLinear
gcn            two-layer GCN on Zachary's karate club graph (networkx), mean aggregation
               with self loops: A (X W1) -> Relu -> A (H W2)
transformer    a pre-norm-free transformer block on x[1,8,32]: projection + residual, MLP
               with GELU (erf) + residual, a per-feature layer scale (Mul)
mixed          every unit kind: QLinearConv (CE) -> QLinearMatMul (LPU) ->
               DequantizeLinear (AFU) -> MatMul with a block-sparse weight (SMU tiles for
               the sparse blocks, computed transposed between two memory-tile transposes;
               DMU for the dense) -> Relu (AFU) -> mean aggregation over a ring graph
               (GNN) -> Gemm (DMU) -> Sigmoid (AFU)
=============  ===========================================================================

Each builder returns a checked :class:`onnx.ModelProto`; :func:`example_inputs` gives
deterministic inputs in [-1, 1). Weights come from a fixed seed; the quantised models'
scales are calibrated on the example input so int8 codes use most of their range.
"""

from __future__ import annotations

from typing import Callable

import networkx as nx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["BUILTIN_MODELS", "build", "example_inputs", "OPSET"]

#: ONNX opset of the built-in models (20: Gelu is an operator).
OPSET = 20


def _model(name: str, nodes, inputs, outputs, inits) -> onnx.ModelProto:
    used = {t for n in nodes for t in n.input}
    inits = {k: v for k, v in inits.items() if k in used}
    g = helper.make_graph(nodes, name, inputs, outputs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="accelpool.models")
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


def _w(rng: np.random.Generator, *shape: int, fan_in: int | None = None) -> np.ndarray:
    fan_in = fan_in or shape[0]
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _vi(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = {"W1": _w(rng, 128, 64, fan_in=64), "b1": _w(rng, 128, fan_in=64),
             "W2": _w(rng, 128, 10), "b2": _w(rng, 10, fan_in=128)}
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h1"], name="fc1", transB=1),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("Gemm", ["a1", "W2", "b2"], ["y"], name="fc2")]
    return _model("mlp", nodes, [_vi("x", (4, 64))], [_vi("y", (4, 10))], inits)


def cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(2)
    inits = {"Wc1": _w(rng, 8, 3, 3, 3, fan_in=27), "bc1": _w(rng, 8, fan_in=27),
             "Wc2": _w(rng, 16, 8, 3, 3, fan_in=72), "bc2": _w(rng, 16, fan_in=72),
             "Wfc": _w(rng, 1024, 10), "bfc": _w(rng, 10, fan_in=1024)}
    nodes = [helper.make_node("Conv", ["x", "Wc1", "bc1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "Wc2", "bc2"], ["c2"], name="conv2",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "Wfc", "bfc"], ["y"], name="fc")]
    return _model("cnn", nodes, [_vi("x", (1, 3, 16, 16))], [_vi("y", (1, 10))], inits)


def _conv_acc(x: np.ndarray, w: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """Integer cross-correlation (N=1, symmetric padding), for calibrating scales only."""
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64))


def _quantize(x: np.ndarray, scale: float, zp: int = 0) -> np.ndarray:
    return np.clip(np.rint(x / scale) + zp, -128, 127).astype(np.int8)


def _sym_int8(w: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.abs(w).max()) / 127
    return _quantize(w, scale), scale


def _qconv_layer(name: str, x_q: np.ndarray, x_s: float, x_zp: int, w: np.ndarray, b: np.ndarray,
                 pad: int, stride: int, nodes, inits, inp: str, out: str):
    """Add a QLinearConv with scales calibrated on ``x_q``; return the layer's int8 output."""
    w_q, w_s = _sym_int8(w)
    bias = np.rint(b / (x_s * w_s)).astype(np.int32)
    acc = _conv_acc(x_q.astype(np.int64) - x_zp, w_q, pad, stride) + bias.reshape(1, -1, 1, 1)
    real = acc * (x_s * w_s)
    y_s = float(np.abs(real).max()) / 100
    y_zp = 0
    y_q = _quantize(real, y_s, y_zp)
    inits.update({f"{name}_w": w_q, f"{name}_ws": np.float32(w_s), f"{name}_wzp": np.int8(0),
                  f"{name}_b": bias, f"{name}_ys": np.float32(y_s), f"{name}_yzp": np.int8(y_zp)})
    nodes.append(helper.make_node(
        "QLinearConv", [inp, f"{inp}_s", f"{inp}_zp", f"{name}_w", f"{name}_ws", f"{name}_wzp",
                        f"{name}_ys", f"{name}_yzp", f"{name}_b"], [out], name=name,
        kernel_shape=list(w.shape[2:]), pads=[pad] * 4, strides=[stride] * 2))
    inits[f"{out}_s"], inits[f"{out}_zp"] = np.float32(y_s), np.int8(y_zp)
    return y_q, y_s, y_zp


def _qmatmul_layer(name: str, a_q: np.ndarray, a_s: float, a_zp: int, w: np.ndarray, nodes, inits,
                   inp: str, out: str):
    w_q, w_s = _sym_int8(w)
    acc = (a_q.astype(np.int64) - a_zp) @ w_q.astype(np.int64)
    real = acc * (a_s * w_s)
    y_s = float(np.abs(real).max()) / 100
    y_q = _quantize(real, y_s)
    inits.update({f"{name}_w": w_q, f"{name}_ws": np.float32(w_s), f"{name}_wzp": np.int8(0)})
    inits[f"{out}_s"], inits[f"{out}_zp"] = np.float32(y_s), np.int8(0)
    nodes.append(helper.make_node(
        "QLinearMatMul", [inp, f"{inp}_s", f"{inp}_zp", f"{name}_w", f"{name}_ws", f"{name}_wzp",
                          f"{out}_s", f"{out}_zp"], [out], name=name))
    return y_q, y_s, 0


def qcnn() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    x = example_inputs_for({"x": (1, 3, 16, 16)})["x"]
    nodes, inits = [], {}
    x_s, x_zp = 1 / 127, -3  # a non-zero zero point exercises the bias correction and padding
    inits["xq_s"], inits["xq_zp"] = np.float32(x_s), np.int8(x_zp)
    nodes.append(helper.make_node("QuantizeLinear", ["x", "xq_s", "xq_zp"], ["xq"], name="quant"))
    xq = _quantize(x, x_s, x_zp)
    h1, s1, z1 = _qconv_layer("qconv1", xq, x_s, x_zp, _w(rng, 8, 3, 3, 3, fan_in=27),
                              _w(rng, 8, fan_in=27), 1, 1, nodes, inits, "xq", "h1")
    h2, s2, z2 = _qconv_layer("qconv2", h1, s1, z1, _w(rng, 16, 8, 3, 3, fan_in=72),
                              _w(rng, 16, fan_in=72), 1, 2, nodes, inits, "h1", "h2")
    nodes.append(helper.make_node("Flatten", ["h2"], ["f"], name="flatten"))
    inits["f_s"], inits["f_zp"] = np.float32(s2), np.int8(z2)
    _qmatmul_layer("qfc", h2.reshape(1, -1), s2, z2, _w(rng, 1024, 10), nodes, inits, "f", "yq")
    nodes.append(helper.make_node("DequantizeLinear", ["yq", "yq_s", "yq_zp"], ["y"],
                                  name="dequant"))
    return _model("qcnn", nodes, [_vi("x", (1, 3, 16, 16))], [_vi("y", (1, 10))], inits)


def karate_adjacency() -> np.ndarray:
    """Row-normalised adjacency with self loops, D^-1 (A + I), of the karate club graph."""
    a = nx.to_numpy_array(nx.karate_club_graph(), weight=None, dtype=np.float32)
    a += np.eye(len(a), dtype=np.float32)
    deg = a.sum(axis=1, keepdims=True)
    return np.where(a != 0, np.float32(1) / deg, 0).astype(np.float32)


def gcn() -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    a = karate_adjacency()
    n = len(a)
    inits = {"A": a, "W1": _w(rng, 16, 16), "W2": _w(rng, 16, 4)}
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["xw1"], name="lin1"),
             helper.make_node("MatMul", ["A", "xw1"], ["h1"], name="agg1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "W2"], ["xw2"], name="lin2"),
             helper.make_node("MatMul", ["A", "xw2"], ["y"], name="agg2")]
    return _model("gcn", nodes, [_vi("x", (n, 16))], [_vi("y", (n, 4))], inits)


def transformer() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    d, f = 32, 64
    inits = {"Wo_t": _w(rng, d, d), "W1": _w(rng, d, f), "b1": _w(rng, f, fan_in=d),
             "W2": _w(rng, f, d), "b2": _w(rng, d, fan_in=f),
             "gamma": (0.5 + rng.random(d)).astype(np.float32)}
    nodes = [helper.make_node("Transpose", ["Wo_t"], ["Wo"], name="wo_layout", perm=[1, 0]),
             helper.make_node("MatMul", ["x", "Wo"], ["proj"], name="proj"),
             helper.make_node("Add", ["x", "proj"], ["r1"], name="residual1"),
             helper.make_node("MatMul", ["r1", "W1"], ["m1"], name="mlp_up"),
             helper.make_node("Add", ["m1", "b1"], ["m1b"], name="mlp_up_bias"),
             helper.make_node("Gelu", ["m1b"], ["g"], name="gelu"),
             helper.make_node("MatMul", ["g", "W2"], ["m2"], name="mlp_down"),
             helper.make_node("Add", ["m2", "b2"], ["m2b"], name="mlp_down_bias"),
             helper.make_node("Mul", ["m2b", "gamma"], ["m2s"], name="layer_scale"),
             helper.make_node("Add", ["r1", "m2s"], ["y"], name="residual2")]
    return _model("transformer", nodes, [_vi("x", (1, 8, d))], [_vi("y", (1, 8, d))], inits)


def block_sparse_weight(rng: np.random.Generator, k: int, n: int, dense_cols: int,
                        density: float) -> np.ndarray:
    """A [k, n] weight whose first ``dense_cols`` columns are dense and the rest ``density`` non-zero."""
    w = _w(rng, k, n)
    mask = rng.random((k, n - dense_cols)) < density
    w[:, dense_cols:] *= mask
    return w


def mixed() -> onnx.ModelProto:
    rng = np.random.default_rng(6)
    x = example_inputs_for({"x": (1, 4, 8, 8)})["x"]
    nodes, inits = [], {}
    x_s = 1 / 127
    inits["xq_s"], inits["xq_zp"] = np.float32(x_s), np.int8(0)
    nodes.append(helper.make_node("QuantizeLinear", ["x", "xq_s", "xq_zp"], ["xq"], name="quant"))
    xq = _quantize(x, x_s)
    h1, s1, z1 = _qconv_layer("qconv", xq, x_s, 0, _w(rng, 8, 4, 3, 3, fan_in=36),
                              _w(rng, 8, fan_in=36), 1, 1, nodes, inits, "xq", "h1")
    # [1, 8, 8, 8] -> 8 graph nodes (the channels) with 64 features each: a pure view.
    inits["shape_8x64"] = np.array([8, 64], np.int64)
    nodes.append(helper.make_node("Reshape", ["h1", "shape_8x64"], ["h1r"], name="to_nodes"))
    inits["h1r_s"], inits["h1r_zp"] = np.float32(s1), np.int8(z1)
    _qmatmul_layer("qfc", h1.reshape(8, 64), s1, z1, _w(rng, 64, 32), nodes, inits, "h1r", "h2q")
    nodes.append(helper.make_node("DequantizeLinear", ["h2q", "h2q_s", "h2q_zp"], ["h2"],
                                  name="dequant"))
    inits["Ws"] = block_sparse_weight(rng, 32, 64, dense_cols=32, density=0.15)
    nodes.append(helper.make_node("MatMul", ["h2", "Ws"], ["h3"], name="sparse_fc"))
    nodes.append(helper.make_node("Relu", ["h3"], ["h3r"], name="relu"))
    ring = nx.to_numpy_array(nx.cycle_graph(8), weight=None, dtype=np.float32) + np.eye(8, dtype=np.float32)
    inits["A"] = (ring / ring.sum(axis=1, keepdims=True)).astype(np.float32)
    nodes.append(helper.make_node("MatMul", ["A", "h3r"], ["h4"], name="aggregate"))
    inits["Wd"], inits["bd"] = _w(rng, 64, 16), _w(rng, 16, fan_in=64)
    nodes.append(helper.make_node("Gemm", ["h4", "Wd", "bd"], ["h5"], name="dense_fc"))
    nodes.append(helper.make_node("Sigmoid", ["h5"], ["y"], name="sigmoid"))
    return _model("mixed", nodes, [_vi("x", (1, 4, 8, 8))], [_vi("y", (8, 16))], inits)


#: Name -> builder of every built-in model.
BUILTIN_MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "mlp": mlp, "cnn": cnn, "qcnn": qcnn, "gcn": gcn, "transformer": transformer, "mixed": mixed}


def build(name: str) -> onnx.ModelProto:
    """The built-in model called ``name``."""
    try:
        return BUILTIN_MODELS[name]()
    except KeyError:
        raise ValueError(f"Unknown built-in model {name!r}; available: "
                         f"{', '.join(BUILTIN_MODELS)}") from None


def example_inputs_for(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1, 1, size=s).astype(np.float32) for k, s in shapes.items()}


def example_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic float32 inputs in [-1, 1) for every graph input of ``model``."""
    inits = {t.name for t in model.graph.initializer}
    shapes = {}
    for i in model.graph.input:
        if i.name in inits:
            continue
        if i.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError(f"example_inputs makes float32 inputs; {i.name!r} is not float")
        shapes[i.name] = tuple(d.dim_value for d in i.type.tensor_type.shape.dim)
    return example_inputs_for(shapes, seed)
