"""cocotb tests of the LPU (run through accelpool.tb.harness.run_cocotb by hw/test_lpu.py)."""

import numpy as np
import cocotb

from accelpool.hw.lpu import Lpu
from accelpool.tb.tb_gemm import GemmTB, random_shapes, unit_from_params
from accelpool.spec.golden import numerics as nx
from accelpool.tb.harness import tb_params


def _int8(rng, shape, extremes=False):
    x = rng.integers(-128, 128, shape)
    if extremes:
        x = np.where(rng.random(shape) < 0.5, rng.choice([-128, -127, 127, 0, -1, 1], shape), x)
    return x.astype(np.int8)


async def _run(dut, backpressure, extremes):
    unit = unit_from_params(Lpu)
    tb = GemmTB(dut, unit, backpressure=backpressure, seed=6 + extremes)
    await tb.reset()
    rng = np.random.default_rng(tb_params().get("seed", 7) + extremes)
    for idx, (m, n, k) in enumerate(random_shapes(rng, tb_params().get("shapes", 4))):
        a, b = _int8(rng, (m, k), extremes), _int8(rng, (k, n), extremes)
        c = None
        if idx % 2:
            c = rng.integers(-(1 << 31), 1 << 31, (m, n)).astype(np.int32)
            if extremes:   # push the sums across the INT32 wraparound
                c = np.where(rng.random((m, n)) < 0.5, np.int32(2**31 - 1), np.int32(-2**31))
        acc = nx.int8_gemm(a, b, c)
        d = await tb.gemm(a, b, c, out_dtype=np.int32)
        assert np.array_equal(d, acc), "LPU INT32 result differs from the reference"
        if c is None:
            ref = a.astype(np.int64) @ b.astype(np.int64)
            assert np.array_equal(d.astype(np.int64), ref)
        mult, shift = nx.quantize_multiplier(float(rng.uniform(1e-5, 2e-2)))
        zp = int(rng.integers(-128, 128))
        q = await tb.gemm(a, b, c, out_dtype=np.int8,
                          extra_args=dict(requant=1, multiplier=mult, shift=shift, zero_point=zp))
        assert np.array_equal(q, nx.requantize(acc, mult, shift, zp)), \
            "LPU requantised result differs from the reference"


@cocotb.test()
async def random_shapes_full_rate(dut):
    await _run(dut, backpressure=False, extremes=False)


@cocotb.test()
async def random_shapes_backpressure(dut):
    await _run(dut, backpressure=True, extremes=False)


@cocotb.test()
async def int8_extremes_and_wraparound(dut):
    await _run(dut, backpressure=True, extremes=True)
