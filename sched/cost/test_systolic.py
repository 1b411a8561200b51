"""The systolic GEMM cycle formula's arithmetic (its agreement with the RTL is tested in
hw/test_dmu.py and hw/test_lpu.py)."""

import pytest

from accelpool.spec.config import load_config
from accelpool.sched.cost import dmu, lpu
from accelpool.sched.cost.systolic import gemm_cycles, gemm_period, gemm_utilization, word_elems


def test_formula_terms():
    # 8x8 DMU (W = 16), 64x256x64: set-up 1, preamble 8, 64 blocks of P = 256,
    # tail 256 + 8 + 8 + 2 - 256 = 18
    assert gemm_cycles(8, 8, 64, 64, 256, word_elems=16) == 1 + 8 + 64 * 256 + 18
    # K below the array size: the period is max(R, C)
    assert gemm_cycles(8, 16, 8, 16, 4, word_elems=64) == 1 + 8 + 16 + (4 + 8 + 16 + 2 - 16)
    # ragged edges cost whole blocks
    assert gemm_cycles(8, 8, 9, 9, 100, word_elems=16) == \
        gemm_cycles(8, 8, 16, 16, 100, word_elems=16)
    # a last A chunk of 1 element (K = 17, W = 16) needs R cycles before the next block
    assert gemm_period(8, 8, 17, 16) == 16 + 8
    assert gemm_period(8, 8, 24, 16) == 24 and gemm_period(8, 8, 16, 16) == 16
    assert gemm_cycles(8, 8, 16, 8, 17, word_elems=16) == 1 + 8 + 2 * 24 + (17 + 18 - 24)


def test_word_elems_of_the_default_units():
    assert word_elems(8, 8, 2) == 16 and word_elems(8, 16, 1) == 64
    assert word_elems(4, 2, 2) == 4      # R = W


def test_degenerate_shapes_and_errors():
    assert gemm_cycles(8, 8, 0, 5, 5, word_elems=16) == 1
    with pytest.raises(ValueError, match="GEMM k must be non-negative, not -1"):
        gemm_cycles(8, 8, 1, 1, -1, word_elems=16)
    with pytest.raises(TypeError, match="GEMM m must be an integer"):
        gemm_cycles(8, 8, 1.5, 1, 1, word_elems=16)


def test_unit_models_read_the_tile_and_meet_the_targets():
    cfg = load_config()
    d, l = cfg.tile("dmu0"), cfg.tile("lpu0")
    assert dmu.cycles(d, m=64, n=64, k=256) == gemm_cycles(8, 8, 64, 64, 256, word_elems=16)
    assert lpu.cycles(l, m=64, n=64, k=256, requant=1) == \
        gemm_cycles(8, 16, 64, 64, 256, word_elems=64)
    assert gemm_utilization(8, 8, 64, 64, 256, word_elems=16) >= 0.99
    assert gemm_utilization(8, 16, 64, 64, 256, word_elems=64) >= 0.99
