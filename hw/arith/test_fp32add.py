import numpy as np
import pytest

from accelpool.spec.golden import numerics as nx
from accelpool.spec.golden.test_numerics import pair_close, rand_fp32_bits, specials32
from accelpool.hw.arith.fp32add import Fp32Adder
from accelpool.tb.arith_vectors import VECTORS_DEFAULT, VECTORS_SLOW, run_vectors


def _check(a, b):
    got = run_vectors(Fp32Adder(), {"a": a, "b": b}, "s")
    want = nx.fp32_add_bits(a, b).astype(np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(a[i]), hex(b[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_every_special_pair():
    s = specials32()
    a, b = np.meshgrid(s, s)
    _check(a.ravel(), b.ravel())


def test_random_all_exponents():
    rng = np.random.default_rng(31)
    _check(rand_fp32_bits(rng, VECTORS_DEFAULT), rand_fp32_bits(rng, VECTORS_DEFAULT))


def test_random_close_exponents():
    """Alignment, cancellation, carries and ties (a fraction of pairs share a's fraction)."""
    rng = np.random.default_rng(32)
    _check(*pair_close(rng, VECTORS_DEFAULT))


def test_random_near_underflow_and_overflow():
    rng = np.random.default_rng(33)
    n = VECTORS_DEFAULT // 2
    for lo, hi in ((1, 8), (248, 255)):
        e = rng.integers(lo, hi, (2, n)).astype(np.uint32)
        a = (rand_fp32_bits(rng, n) & np.uint32(0x807FFFFF)) | (e[0] << 23)
        b = (rand_fp32_bits(rng, n) & np.uint32(0x807FFFFF)) | (e[1] << 23)
        _check(a, b)


@pytest.mark.slow
def test_random_large():
    rng = np.random.default_rng(34)
    _check(rand_fp32_bits(rng, VECTORS_SLOW), rand_fp32_bits(rng, VECTORS_SLOW))
    _check(*pair_close(rng, VECTORS_SLOW))
