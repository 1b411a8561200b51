import pytest

from accelpool.spec.config import load_config
from accelpool.sched.cost import csr, gnn, smu


def test_pass_cycles_rules():
    # first row never waits; an empty row after a row costs 2
    assert csr.pass_cycles([0, 0, 3]) == 1 + 2 + 4 + csr.PASS_START
    assert csr.pass_cycles([2]) == 3 + csr.PASS_START
    assert csr.engine_cycles(4, 9, [1, 1]) == 3 * (4 + csr.PASS_START) + csr.TAIL
    assert csr.engine_cycles(4, 0, [1]) == 0


def test_cycles_follow_nonzeros_not_dense_size():
    t = load_config().tile("smu0")
    dense = smu.cycles(t, m=64, n=64, k=256, row_nnz=[256] * 64)
    sparse = smu.cycles(t, m=64, n=64, k=256, row_nnz=[26] * 64)
    assert sparse < dense / 5
    assert smu.cycles(t, m=64, n=64, k=256, nnz=64 * 26) == sparse
    g = load_config().tile("gnn0")
    assert gnn.cycles(g, nodes=3, features=16, degrees=[2, 0, 1]) == \
        2 * (3 + 2 + 2 + csr.PASS_START) + csr.TAIL


def test_bad_counts():
    with pytest.raises(ValueError, match="Non-zeros per row must be a 1-D sequence of counts >= 0"):
        csr.pass_cycles([1, -1])


def test_nnz_estimate_spreads_the_remainder():
    # 13 non-zeros over 5 rows: three rows of 3 and two of 2 (as evenly as possible), so
    # one pass is (4 + 4 + 4) + (3 + 3) + PASS_START = 23 cycles; N = 100 columns on 64
    # lanes is ceil(100 / 64) = 2 passes, then TAIL: 2 * 23 + 4 = 50.
    t = load_config().tile("smu0")
    assert t["lanes"] == 64
    assert smu.cycles(t, m=5, n=100, k=32, nnz=13) == 50
    assert csr.engine_cycles_from_nnz(64, 5, 100, 13) == 50
    # the per-row model agrees whatever the order of the rows, since none is empty
    assert smu.cycles(t, m=5, n=100, k=32, row_nnz=[2, 3, 2, 3, 3]) == 50
