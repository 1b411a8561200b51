"""The one output comparator (:mod:`accelpool.spec.golden.compare`)."""

import ml_dtypes
import numpy as np

from accelpool.spec.config import DType
from accelpool.spec.golden.compare import compare_arrays
from accelpool.sched.reference import TOLERANCES, _compare

NAN, INF = float("nan"), float("inf")


def test_nan_matches_nan_in_the_same_place():
    assert compare_arrays("y", [1.0, NAN], [1.0, NAN], rtol=0.01).ok
    assert compare_arrays("y", [1.0, NAN], [1.0, NAN], bitwise=True).ok
    m = compare_arrays("y", [NAN, 1.0], [1.0, NAN], rtol=0.01)
    assert not m.ok and m.index == (0,) and m.error == INF


def test_equal_infinities_match_and_opposite_ones_do_not():
    assert compare_arrays("y", [INF, -INF, 2.0], [INF, -INF, 2.0], rtol=0.01).ok
    m = compare_arrays("y", [INF, 2.0], [-INF, 2.0], rtol=0.01)
    assert not m.ok and m.index == (0,)
    assert not compare_arrays("y", [INF], [1e30], rtol=0.5).ok


def test_an_infinite_reference_never_widens_the_bound():
    # The scale is the largest finite reference: 1e6 off elsewhere is far outside it.
    m = compare_arrays("y", [INF, 1e6, 1.0], [INF, 1.0, 1.0], rtol=2 ** -6, atol_frac=2 ** -6)
    assert not m.ok and m.index == (1,) and m.scale == 1.0
    c = _compare("y", DType.BF16, np.array([INF, 1e6]), np.array([INF, 1.0]),
                 TOLERANCES[DType.BF16], "onnxruntime")
    assert not c.ok


def test_the_message_names_the_worst_element_its_index_both_values_and_the_bound():
    want = np.zeros((2, 3), np.float32)
    got = want.copy()
    got[1, 2], got[0, 1] = 0.5, 0.25
    m = compare_arrays("y", got, want, atol=0.1)
    assert not m.ok
    assert m.where() == "worst at [1, 2]: got 0.5, want 0.0 (|difference| 0.5, bound 0.1)"
    c = _compare("y", DType.FP32, got, want, TOLERANCES[DType.FP32], "onnxruntime")
    assert "OUTSIDE tolerance; worst at [1, 2]: got 0.5, want 0.0" in str(c)


def test_integer_outputs_within_one_step():
    assert compare_arrays("q", np.array([3, -4], np.int8), np.array([4, -4], np.int8), atol=1).ok
    assert not compare_arrays("q", np.array([2], np.int8), np.array([4], np.int8), atol=1).ok


def test_bitwise_tells_signed_zeros_and_nan_payloads_apart():
    b = ml_dtypes.bfloat16
    assert not compare_arrays("y", np.array([-0.0], b), np.array([0.0], b), bitwise=True).ok
    a = np.array([0x7FC0], np.uint16).view(b)
    c = np.array([0x7FC1], np.uint16).view(b)
    assert compare_arrays("y", a, a.copy(), bitwise=True).ok
    assert not compare_arrays("y", c, a, bitwise=True).ok


def test_a_shape_mismatch_is_named():
    m = compare_arrays("y", np.zeros(3), np.zeros(4))
    assert not m.ok and m.where() == "shape [3] against [4]"
