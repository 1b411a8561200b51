"""Ordinary exported model shapes through the whole software flow: the golden reference
against onnxruntime (``sim --golden-only``), and codegen plus the functional executor
against the golden run bit for bit (``schedule --run``), as a user runs them."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from accelpool.flow.cli import main

RNG = np.random.default_rng(0)


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(nodes, x_shape, y_shape, inits):
    g = helper.make_graph(nodes, "net", [_vi("x", x_shape)], [_vi("y", y_shape)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _f32(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _bias_add(bias_shape):
    x_shape = [8, 32] if len(bias_shape) < 3 else [1, 8, 32]
    return _model([helper.make_node("MatMul", ["x", "w"], ["t"]),
                   helper.make_node("Add", ["t", "b"], ["y"])],
                  x_shape, x_shape[:-1] + [16], {"w": _f32(32, 16), "b": _f32(*bias_shape)})


def _float_cnn():
    return _model([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c"], ["r"]),
                   helper.make_node("Flatten", ["r"], ["f"]),
                   helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
                  [1, 3, 8, 8], [1, 10],
                  {"w": _f32(4, 3, 3, 3, scale=0.3), "b": _f32(4), "fw": _f32(10, 256, scale=0.1),
                   "fb": _f32(10)})


def _gemm_alpha_beta():
    return _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], alpha=0.5, beta=2.0,
                                    transB=1)],
                  [8, 32], [8, 16], {"w": _f32(16, 32), "b": _f32(16)})


def _pruned_fc_with_bias():
    w = _f32(64, 32)
    w[np.abs(w) < 1.6] = 0          # about 89% zeros: every weight tile goes sparse
    return _model([helper.make_node("Gemm", ["x", "w", "b"], ["y"])], [8, 64], [8, 32],
                  {"w": w, "b": _f32(32)})


def lenet_maps():
    """Two float convolutions on LeNet-sized maps, then a flatten and a fully connected
    layer: a 14x14 result, whose rows (28 bytes of BF16) are not whole 8-byte flits but
    whose maps are, and a 7x7 one (3x3, stride 2, pad 1), whose maps (98 bytes) are not
    either."""
    return _model([helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
                   helper.make_node("Relu", ["c1"], ["r1"]),
                   helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2],
                                    pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["c2"], ["r2"]),
                   helper.make_node("Flatten", ["r2"], ["f"]),
                   helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
                  [1, 1, 16, 16], [1, 10],
                  {"w1": _f32(6, 1, 3, 3, scale=0.3), "b1": _f32(6),
                   "w2": _f32(4, 6, 3, 3, scale=0.2), "b2": _f32(4),
                   "fw": _f32(10, 196, scale=0.1), "fb": _f32(10)})


def qlenet_maps():
    """The same maps quantized: QLinearConv on the convolution engine (14x14 then 7x7 INT8
    maps, rows of 14 and 7 bytes), a flatten and a QLinearMatMul."""
    from accelpool.sched import models as m
    rng = np.random.default_rng(5)
    x = m.example_inputs_for({"x": (1, 1, 16, 16)})["x"]
    nodes, inits = [], {}
    x_s, x_zp = 1 / 127, -3
    inits["xq_s"], inits["xq_zp"] = np.float32(x_s), np.int8(x_zp)
    nodes.append(helper.make_node("QuantizeLinear", ["x", "xq_s", "xq_zp"], ["xq"]))
    xq = m._quantize(x, x_s, x_zp)
    h1, s1, z1 = m._qconv_layer("qconv1", xq, x_s, x_zp, m._w(rng, 6, 1, 3, 3, fan_in=9),
                                m._w(rng, 6, fan_in=9), 0, 1, nodes, inits, "xq", "h1")
    h2, s2, z2 = m._qconv_layer("qconv2", h1, s1, z1, m._w(rng, 8, 6, 3, 3, fan_in=54),
                                m._w(rng, 8, fan_in=54), 1, 2, nodes, inits, "h1", "h2")
    nodes.append(helper.make_node("Flatten", ["h2"], ["f"]))
    inits["f_s"], inits["f_zp"] = np.float32(s2), np.int8(z2)
    m._qmatmul_layer("qfc", h2.reshape(1, -1), s2, z2, m._w(rng, 392, 10), nodes, inits,
                     "f", "yq")
    nodes.append(helper.make_node("DequantizeLinear", ["yq", "yq_s", "yq_zp"], ["y"]))
    return m._model("qlenet", nodes, [m._vi("x", (1, 1, 16, 16))], [m._vi("y", (1, 10))],
                    inits)


MODELS = {
    "bias_1xN": lambda: _bias_add([1, 16]),
    "bias_1x1xN": lambda: _bias_add([1, 1, 16]),
    "bias_N": lambda: _bias_add([16]),
    "float_cnn": _float_cnn,
    "gemm_alpha_beta_transB": _gemm_alpha_beta,
    "pruned_fc_with_bias": _pruned_fc_with_bias,
    "lenet_maps": lenet_maps,
    "qlenet_maps": qlenet_maps,
}


@pytest.mark.parametrize("name", MODELS)
def test_model_runs_through_golden_codegen_and_funcsim(name, tmp_path, capsys):
    path = tmp_path / f"{name}.onnx"
    onnx.save(MODELS[name](), path)
    assert main(["sim", str(path), "--golden-only"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "within tolerance" in out and "OUTSIDE" not in out
    assert main(["schedule", str(path), "--run"]) == 0, capsys.readouterr().err
    assert "outputs equal the golden run bit for bit" in capsys.readouterr().out


def test_the_pruned_layer_really_has_sparse_tiles_with_an_accumulator(tmp_path, capsys):
    path = tmp_path / "p.onnx"
    onnx.save(_pruned_fc_with_bias(), path)
    assert main(["compile", str(path)]) == 0
    assert "GEMM tiles: 0 dense, 4 sparse" in capsys.readouterr().out


def test_gemm_beta_is_honoured(tmp_path, capsys):
    """beta = 2 against beta = 1: the golden agrees with onnxruntime on both, so a golden
    that ignored beta would be outside tolerance on one."""
    for beta in (1.0, 2.0, -3.0):
        m = _gemm_alpha_beta()
        m.graph.node[0].attribute[1].f = beta
        assert m.graph.node[0].attribute[1].name == "beta"
        path = tmp_path / f"g{beta}.onnx"
        onnx.save(m, path)
        assert main(["sim", str(path), "--golden-only"]) == 0
        assert "within tolerance" in capsys.readouterr().out


def test_an_unpadded_buffer_read_by_unaligned_rows_is_refused(monkeypatch):
    """With the element-wise views kept at the maps' last dimension, the ReLU reads rows of
    14 BF16 elements (28 bytes) of a buffer stored without padding (the convolution wrote
    it as [6, 196]): codegen refuses the LOADs instead of moving misaligned flits."""
    from accelpool.sched import decompose
    from accelpool.sched.codegen import compile_schedule
    from accelpool.sched.lower.common import CodegenError
    from accelpool.sched.cost.model import CostModel
    from accelpool.sched.pool import Pool
    from accelpool.sched.schedulers import heft
    g = decompose.compile_model(lenet_maps())
    pool = Pool.from_config()
    compile_schedule(g, heft(g.dag, pool, CostModel(pool)))
    monkeypatch.setattr(decompose, "_vector_cols", lambda g, op, fb: None)
    g = decompose.compile_model(lenet_maps())
    with pytest.raises(CodegenError, match="rows of 14 bf16 elements are not whole 8-byte"):
        compile_schedule(g, heft(g.dag, pool, CostModel(pool)))
