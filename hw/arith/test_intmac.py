import numpy as np
import pytest

from accelpool.hw.arith.intmac import Int8Mac
from accelpool.tb.arith_vectors import VECTORS_DEFAULT, VECTORS_SLOW, run_vectors
from accelpool.spec.golden import numerics as nx


def _check(a, b, acc):
    got = run_vectors(Int8Mac(), {"a": a, "b": b, "acc": acc}, "out")
    want = np.array([nx.int8_gemm(np.int8(x).reshape(1, 1), np.int8(y).reshape(1, 1),
                                  np.int32(z).reshape(1, 1))[0, 0] for x, y, z in zip(a, b, acc)],
                    dtype=np.int64) & 0xFFFFFFFF
    assert np.array_equal(got, want)


def _rand(rng, n):
    return (rng.integers(-128, 128, n), rng.integers(-128, 128, n),
            rng.integers(-(1 << 31), 1 << 31, n))


def test_extremes_and_wraparound():
    ext = [-128, -127, -1, 0, 1, 127]
    accs = [-(1 << 31), -(1 << 31) + 1, -1, 0, 1, (1 << 31) - 1, (1 << 31) - 16384]
    a, b, c = np.meshgrid(ext, ext, accs)
    _check(a.ravel(), b.ravel(), c.ravel())


def test_random():
    _check(*_rand(np.random.default_rng(51), VECTORS_DEFAULT))


@pytest.mark.slow
def test_random_large():
    _check(*_rand(np.random.default_rng(52), VECTORS_SLOW))
