"""cocotb tests of the DMU (run through accelpool.tb.harness.run_cocotb by hw/test_dmu.py)."""

import ml_dtypes
import numpy as np
import cocotb

from accelpool.hw.dmu import Dmu
from accelpool.tb.tb_gemm import GemmTB, random_shapes, unit_from_params
from accelpool.spec.golden import numerics as nx
from accelpool.tb.harness import tb_params

BF16 = ml_dtypes.bfloat16
SPECIAL16 = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x807F,
                      0x0080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80], dtype=np.uint16)
SPECIAL32 = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                      0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0x3F800000], dtype=np.uint32)


def _check_exact(d, a, b, c):
    want = nx.bf16_gemm(a, b, c)
    assert np.array_equal(d.view(np.uint32), want.view(np.uint32)), \
        f"DMU result differs from the reference in {np.sum(d.view(np.uint32) != want.view(np.uint32))} elements"


def _check_bf16(d, a, b, c):
    want = nx.fp32_to_bf16(nx.bf16_gemm(a, b, c))
    assert np.array_equal(d.view(np.uint16), want.view(np.uint16)), \
        f"DMU BF16 result differs from the reference in {np.sum(d.view(np.uint16) != want.view(np.uint16))} elements"


async def _random_values(dut, backpressure):
    unit = unit_from_params(Dmu)
    tb = GemmTB(dut, unit, backpressure=backpressure, seed=3)
    await tb.reset()
    rng = np.random.default_rng(tb_params().get("seed", 5))
    for idx, (m, n, k) in enumerate(random_shapes(rng, tb_params().get("shapes", 4))):
        a = rng.standard_normal((m, k)).astype(BF16)
        b = rng.standard_normal((k, n)).astype(BF16)
        c = rng.standard_normal((m, n)).astype(np.float32) if idx % 2 else None
        d = await tb.gemm(a, b, c, out_dtype=np.float32)
        _check_exact(d, a, b, c)
        # ... and within BF16 tolerance of numpy's float32 matmul
        ref = a.astype(np.float32) @ b.astype(np.float32) + (0 if c is None else c)
        scale = np.abs(a.astype(np.float32)) @ np.abs(b.astype(np.float32)) + (0 if c is None else np.abs(c))
        assert np.all(np.abs(d - ref) <= 2.0 ** -8 * scale + 1e-30)
        _check_bf16(await tb.gemm(a, b, c, out_dtype=BF16, extra_args=dict(out_bf16=1)), a, b, c)


async def _special_values(dut, backpressure):
    unit = unit_from_params(Dmu)
    tb = GemmTB(dut, unit, backpressure=backpressure, seed=4)
    await tb.reset()
    rng = np.random.default_rng(9)
    for m, n, k in ((unit.rows + 1, unit.cols - 1 or 1, 3), (2, unit.cols + 2, 5)):
        def pick16(shape):
            normal = rng.standard_normal(shape).astype(BF16).view(np.uint16)
            spec = rng.choice(SPECIAL16, shape)
            return np.where(rng.random(shape) < 0.3, spec, normal).view(BF16)
        a, b = pick16((m, k)), pick16((k, n))
        normal = rng.standard_normal((m, n)).astype(np.float32).view(np.uint32)
        c = np.where(rng.random((m, n)) < 0.4, rng.choice(SPECIAL32, (m, n)), normal).view(np.float32)
        _check_exact(await tb.gemm(a, b, c, out_dtype=np.float32), a, b, c)
        _check_exact(await tb.gemm(a, b, None, out_dtype=np.float32), a, b, None)
        _check_bf16(await tb.gemm(a, b, c, out_dtype=BF16, extra_args=dict(out_bf16=1)), a, b, c)


@cocotb.test()
async def random_shapes_full_rate(dut):
    await _random_values(dut, backpressure=False)


@cocotb.test()
async def random_shapes_backpressure(dut):
    await _random_values(dut, backpressure=True)


@cocotb.test()
async def special_values(dut):
    await _special_values(dut, backpressure=True)
