import numpy as np
import pytest

from accelpool.hw.arith.requant import Requantizer
from accelpool.tb.arith_vectors import VECTORS_DEFAULT, VECTORS_SLOW, run_vectors
from accelpool.spec.golden import numerics as nx


def _check(acc, mult, shift, zp):
    got = run_vectors(Requantizer(), {"acc": acc, "multiplier": mult, "shift": shift,
                                      "zero_point": zp}, "y")
    want = np.array([nx.requantize(np.array([a], np.int32), int(m), int(s), int(z))[0]
                     for a, m, s, z in zip(acc, mult, shift, zp)], dtype=np.int64) & 0xFF
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(acc[i], mult[i], shift[i], zp[i], got[i], want[i]) for i in bad[:5]]


def _rand(rng, n):
    acc = rng.integers(-(1 << 31), 1 << 31, n)
    small = rng.random(n) < 0.5
    acc = np.where(small, rng.integers(-5000, 5000, n), acc)
    mult = rng.integers(0, 1 << 31, n)
    shift = rng.integers(0, 64, n)
    # Shifts that keep the result in range most of the time exercise rounding, not saturation.
    shift = np.where(rng.random(n) < 0.7, 31 + rng.integers(0, 12, n), shift)
    zp = rng.integers(-128, 128, n)
    return acc, mult, shift, zp


def test_ties_extremes_and_saturation():
    acc = [1, 3, 5, -1, -3, -5, 0, (1 << 31) - 1, -(1 << 31), 255, -256, 383]
    rows = [(a, m, s, z) for a in acc for (m, s) in ((1, 1), (1, 0), ((1 << 31) - 1, 63),
                                                      (1 << 30, 31), (3, 2))
            for z in (-128, 0, 127)]
    _check(*map(np.array, zip(*rows)))


def test_random():
    _check(*_rand(np.random.default_rng(61), VECTORS_DEFAULT))


@pytest.mark.slow
def test_random_large():
    _check(*_rand(np.random.default_rng(62), VECTORS_SLOW))
