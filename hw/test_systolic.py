"""The shared systolic engine: parameter checks, layout helpers, cycle formula edge cases."""

import ml_dtypes
import numpy as np
import pytest

from accelpool.hw.dmu import Dmu
from accelpool.tb.gemm_sim import run_gemm
from accelpool.hw.lpu import Lpu
from accelpool.spec.golden import numerics as nx


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(rows=0, cols=8), ValueError, r"Array rows must be a power of two between 1 and 64, not 0"),
    (dict(rows=8, cols=6), ValueError, r"Array columns must be a power of two between 1 and 64, not 6"),
    (dict(rows="8", cols=8), TypeError, r"Array rows must be a positive integer, not '8'"),
    (dict(rows=8, cols=8, scratchpad_bytes=3000), ValueError,
     r"Scratchpad size must be a power of two of at least 32 bytes, not 3000"),
    (dict(rows=8, cols=8, scratchpad_bytes=None), TypeError,
     r"Scratchpad size must be a positive integer, not None"),
])
def test_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Dmu(**kwargs)


def test_word_width_and_ports():
    d, lp = Dmu(rows=8, cols=8), Lpu(rows=8, cols=16)
    assert (d.word_bits, d.addr_width, d.read_ports, d.write_ports) == (256, 11, 3, 1)
    assert (lp.word_bits, lp.addr_width) == (512, 10)
    assert lp.macs_per_cycle == 2 * d.macs_per_cycle


def test_zero_size_command_writes_nothing_and_takes_one_cycle():
    a = np.ones((3, 0), ml_dtypes.bfloat16)
    b = np.ones((0, 2), ml_dtypes.bfloat16)
    r = run_gemm(Dmu(rows=2, cols=2, scratchpad_bytes=1024), a, b)
    assert r.cycles == 1 and not r.d.view(np.uint32).any()


def test_in_place_accumulation():
    """D written over C (d_addr == c_addr): each block reads its C rows before writing them."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 2)).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((2, 7)).astype(ml_dtypes.bfloat16)
    c = rng.standard_normal((5, 7)).astype(np.float32)
    r = run_gemm(Dmu(rows=2, cols=4, scratchpad_bytes=2048), a, b, c, in_place=True)
    assert np.array_equal(r.d.view(np.uint32), nx.bf16_gemm(a, b, c).view(np.uint32))
