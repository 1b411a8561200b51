import numpy as np
import onnx
import pytest

from accelpool.spec.config import UnitKind, load_config
from accelpool.sched import models
from accelpool.sched.decompose import decompose
from accelpool.sched.frontend import import_model
from accelpool.sched.reference import TOLERANCES, compare_with_onnxruntime, run_graph
from accelpool.sched.ir import OpType, verify

POOL = load_config()


@pytest.mark.parametrize("name", list(models.BUILTIN_MODELS))
def test_builtin_round_trips_onnx_to_golden_within_tolerance(tmp_path, name):
    """ONNX file -> micro-op DAG -> golden output matches onnxruntime within tolerance."""
    path = tmp_path / f"{name}.onnx"
    onnx.save(models.build(name), path)
    model = onnx.load(path)
    ops = import_model(path, POOL)
    tiled = decompose(ops, POOL)
    verify(tiled)
    inputs = models.example_inputs(model)
    for cmp in compare_with_onnxruntime(model, tiled, inputs):
        assert cmp.ok, str(cmp)
        assert cmp.max_ref > 0.1  # the outputs are not trivially zero
    # tiling and accumulation chains do not change a single bit of the result
    untiled = run_graph(ops, inputs)
    for k, v in run_graph(tiled, inputs).items():
        np.testing.assert_array_equal(v.view(np.uint8), untiled[k].view(np.uint8))


def test_tolerance_check_can_fail():
    m = models.mlp()
    g = decompose(import_model(m, POOL), POOL)
    w = g.buffers["b2"]
    w.data[...] += 0.25  # a wrong bias must be noticed
    (cmp,) = compare_with_onnxruntime(m, g, models.example_inputs(m))
    assert not cmp.ok and "OUTSIDE tolerance" in str(cmp)


def test_mixed_uses_all_six_unit_kinds():
    """Each of the six unit kinds, and the memory tile (the copy of the CE's channels-last
    output into the rows the LPU reads)."""
    g = decompose(import_model(models.mixed(), POOL), POOL)
    kinds = {o.units[0] for o in g.ops}
    # and the memory tile, which transposes around the SMU (C^T = B^T A^T)
    assert kinds == {UnitKind.DMU, UnitKind.SMU, UnitKind.LPU, UnitKind.CE, UnitKind.AFU,
                     UnitKind.GNN, UnitKind.MEMORY}
    sparse_layer = [o for o in g.ops if o.source == "sparse_fc"]
    # one layer, both kinds, and the transposes of its input and of its sparse columns
    assert {o.op for o in sparse_layer} == {OpType.GEMM, OpType.SPMM, OpType.LAYOUT}
    assert all(o.attrs["sparse_operand"] == 0 for o in sparse_layer if o.op is OpType.SPMM)


def test_models_are_small_and_deterministic():
    for name in models.BUILTIN_MODELS:
        a, b = models.build(name), models.build(name)
        assert a.SerializeToString() == b.SerializeToString()
        assert len(decompose(import_model(a, POOL), POOL)) < 500


def test_unknown_builtin():
    with pytest.raises(ValueError, match="Unknown built-in model 'resnet'; available: mlp, cnn"):
        models.build("resnet")


def test_tolerances_are_stated():
    from accelpool.spec.config import DType
    assert TOLERANCES[DType.BF16].rtol == 2 ** -6
