import numpy as np
import pytest

from accelpool.spec.golden import numerics as nx
from accelpool.spec.golden.test_numerics import specials16
from accelpool.hw.arith.bf16mul import Bf16Multiplier
from accelpool.tb.arith_vectors import VECTORS_DEFAULT, VECTORS_SLOW, run_vectors


def _check(a, b):
    got = run_vectors(Bf16Multiplier(), {"a": a, "b": b}, "p")
    want = nx.bf16_mul_bits(a, b).astype(np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_every_special_pair():
    s = specials16()
    a, b = np.meshgrid(s, s)
    _check(a.ravel(), b.ravel())


def test_random():
    rng = np.random.default_rng(21)
    _check(rng.integers(0, 1 << 16, VECTORS_DEFAULT).astype(np.uint16),
           rng.integers(0, 1 << 16, VECTORS_DEFAULT).astype(np.uint16))


def test_random_near_range_limits():
    rng = np.random.default_rng(22)
    n = VECTORS_DEFAULT // 2
    e = rng.choice(np.r_[1:8, 120:135, 248:255], (2, n)).astype(np.uint16)
    a = (rng.integers(0, 1 << 16, n).astype(np.uint16) & 0x807F) | (e[0] << 7)
    b = (rng.integers(0, 1 << 16, n).astype(np.uint16) & 0x807F) | (e[1] << 7)
    _check(a, b)


@pytest.mark.slow
def test_random_large():
    rng = np.random.default_rng(23)
    _check(rng.integers(0, 1 << 16, VECTORS_SLOW).astype(np.uint16),
           rng.integers(0, 1 << 16, VECTORS_SLOW).astype(np.uint16))
