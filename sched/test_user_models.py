"""Ordinary exported model shapes through the whole software flow: the golden reference
against onnxruntime (``sim --golden-only``), and codegen plus the functional executor
against the golden run bit for bit (``schedule --run``), as a user runs them."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from accelpool.sched.cli import main

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


MODELS = {
    "bias_1xN": lambda: _bias_add([1, 16]),
    "bias_1x1xN": lambda: _bias_add([1, 1, 16]),
    "bias_N": lambda: _bias_add([16]),
    "float_cnn": _float_cnn,
    "gemm_alpha_beta_transB": _gemm_alpha_beta,
    "pruned_fc_with_bias": _pruned_fc_with_bias,
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
