import numpy as np
import pytest

from accelpool.spec.golden import numerics as nx
from accelpool.spec.golden.test_numerics import rand_fp32_bits, specials32
from accelpool.hw.arith.round import Fp32ToBf16
from accelpool.tb.arith_vectors import VECTORS_DEFAULT, VECTORS_SLOW, run_vectors


def _check(x):
    got = run_vectors(Fp32ToBf16(), {"x": x}, "y")
    want = nx.fp32_to_bf16_bits(x).astype(np.int64)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(x[i]), hex(got[i]), hex(want[i])) for i in bad[:5]]


def test_specials_and_ties():
    rng = np.random.default_rng(41)
    x = rand_fp32_bits(rng, 500)
    ties = (x & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    _check(np.concatenate([specials32(), ties, ties ^ np.uint32(0x10000),
                           np.array([0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF], np.uint32)]))


def test_random():
    _check(rand_fp32_bits(np.random.default_rng(42), VECTORS_DEFAULT))


@pytest.mark.slow
def test_random_large():
    _check(rand_fp32_bits(np.random.default_rng(43), VECTORS_SLOW))
