"""The sparse references against numpy/ml_dtypes and the dense GEMM reference."""

import ml_dtypes
import networkx as nx
import numpy as np
import pytest

from accelpool.spec.golden.numerics import bf16_gemm
from accelpool.spec.golden.sparse import fp32_max_bits, gnn_aggregate, recip_bf16_bits, spmm_bf16

BF16 = ml_dtypes.bfloat16


def test_spmm_equals_dense_gemm_on_normal_values():
    """Skipping zeros changes nothing for finite operands (the accumulator never holds -0)."""
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.5, 1.0):
        a = rng.standard_normal((13, 40)).astype(BF16)
        a[rng.random(a.shape) > density] = 0
        b = rng.standard_normal((40, 9)).astype(BF16)
        np.testing.assert_array_equal(spmm_bf16(a, b), bf16_gemm(a, b).view(np.uint32))


def test_spmm_close_to_float64():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 64)).astype(BF16)
    a[rng.random(a.shape) < 0.7] = 0
    b = rng.standard_normal((64, 8)).astype(BF16)
    got = spmm_bf16(a, b).view(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_spmm_skips_absent_entries():
    """0 * inf would be NaN in the dense GEMM; an absent entry contributes nothing."""
    a = np.array([[0, 1]], dtype=BF16)
    b = np.array([[np.inf], [2]], dtype=BF16)
    assert spmm_bf16(a, b).view(np.float32)[0, 0] == 2
    assert np.isnan(bf16_gemm(a, b)[0, 0])


def test_recip_is_round_to_nearest_even():
    d = np.arange(1, 5000)
    got = recip_bf16_bits(d).view(BF16).astype(np.float64)
    exact = 1.0 / d                         # 1/d is never a BF16 tie (see sparse.py)
    assert (got == exact.astype(BF16).astype(np.float64)).all()
    assert recip_bf16_bits([0]).tolist() == [0]


def test_fp32_max_order_nan_and_daz():
    v = np.array([0x80000000, 0x00000000, 0x00000001, 0x7FC00000, 0xFF800000, 0x3F800000],
                 dtype=np.uint32)
    assert fp32_max_bits(v[0], v[1]) == 0 and fp32_max_bits(v[1], v[0]) == 0
    assert fp32_max_bits(v[0], v[2]) == 0x00000000          # subnormal reads as +0
    assert fp32_max_bits(v[3], v[5]) == 0x7FC00000
    assert fp32_max_bits(v[4], v[5]) == 0x3F800000
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1000).astype(np.float32)
    y = rng.standard_normal(1000).astype(np.float32)
    np.testing.assert_array_equal(fp32_max_bits(x.view(np.uint32), y.view(np.uint32)).view(np.float32),
                                  np.maximum(x, y))


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_gnn_aggregate_against_numpy_on_karate(op):
    g = nx.karate_club_graph()
    adj = nx.to_scipy_sparse_array(g, format="csr")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((34, 6)).astype(BF16)
    got = gnn_aggregate(adj, x, op).view(np.float32)
    mask = adj.toarray() != 0
    xf = x.astype(np.float64)
    if op == "max":
        want = np.stack([xf[mask[i]].max(0) for i in range(34)])
        np.testing.assert_array_equal(got, want.astype(np.float32))
    else:
        want = mask @ xf
        if op == "mean":
            want = want / mask.sum(1, keepdims=True)
        np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=1e-6)


def test_gnn_aggregate_isolated_nodes_and_errors():
    adj = np.array([[0, 1], [0, 0]])
    x = np.array([[1, 2], [3, 4]], dtype=BF16)
    for op in ("sum", "mean", "max"):
        assert gnn_aggregate(adj, x, op)[1].tolist() == [0, 0]
    with pytest.raises(ValueError, match="Unknown aggregation 'min'; accepted: sum, mean, max"):
        gnn_aggregate(adj, x, "min")
