"""DMU: bit-exact GEMMs and the exact cycle formula in amaranth.sim; cocotb on both simulators."""

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import UnitKind, load_config
from accelpool.hw.dmu import Dmu
from accelpool.spec.units.dmu import DmuArgs, DmuFunc
from accelpool.spec.gemm_layout import GemmLayout
from accelpool.tb.gemm_sim import cocotb_top, plan_regions, run_gemm, run_image
from accelpool.sched.cost import dmu as dmu_cost
from accelpool.spec.golden import numerics as nx
from accelpool.tb.harness import run_cocotb


BF16 = ml_dtypes.bfloat16

#: (rows, cols, m, n, k): K below, at and above R and C, ragged M and N, single elements;
#: ragged K (K*2 not a multiple of the word) with a short last chunk of an A row (K mod W
#: below R, W the BF16 elements per word: 8 for 2 x 4, 4 for 4 x 2 where R = W, 2 for 1 x 1,
#: 8 for 4 x 4), which lengthens the block period, and a longer one (no penalty).
SWEEP = [(2, 4, m, n, k) for m, n, k in [
    (1, 1, 1), (2, 4, 1), (3, 5, 2), (2, 4, 4), (5, 9, 3), (4, 8, 6), (1, 13, 5), (7, 3, 9),
    (3, 5, 17), (5, 9, 8), (2, 3, 11),
]] + [(4, 2, 6, 3, 1), (4, 2, 9, 5, 4), (1, 1, 3, 2, 5), (4, 4, 5, 6, 7),
      (4, 2, 6, 3, 5), (4, 2, 9, 5, 13), (4, 2, 5, 4, 7), (1, 1, 2, 3, 4), (4, 4, 9, 6, 19)]


def _tile(rows, cols):
    from accelpool.spec.config import TileConfig, DType
    return TileConfig("dmu", UnitKind.DMU, 0, 0, (DType.BF16,), {"rows": rows, "cols": cols,
                                                                 "scratchpad_bytes": 65536})


def test_exec_declaration():
    assert DmuArgs.size <= isa.EXEC_ARGS_BITS
    assert isa.exec_spec(UnitKind.DMU).args is DmuArgs
    cmd = isa.exec_cmd(UnitKind.DMU, DmuFunc.GEMM, a_addr=0x100, b_addr=0x200, c_addr=0x300,
                       d_addr=0x400, m=64, n=64, k=256, accumulate=1)
    back = isa.decode(cmd.encode(), UnitKind.DMU)
    assert back.fields["args"]["k"] == 256 and back.fields["func"] is DmuFunc.GEMM


def test_from_tile_default_config():
    tile = load_config().tile("dmu0")
    dmu = Dmu.from_tile(tile)
    assert (dmu.rows, dmu.cols, dmu.scratchpad_bytes) == (8, 8, 65536)


@pytest.mark.parametrize("rows, cols, m, n, k", SWEEP)
def test_gemm_bit_exact_and_cycle_formula(rows, cols, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 100 + k)
    a = rng.standard_normal((m, k)).astype(BF16)
    b = rng.standard_normal((k, n)).astype(BF16)
    c = rng.standard_normal((m, n)).astype(np.float32) if (m + n + k) % 2 else None
    r = run_gemm(Dmu(rows=rows, cols=cols, scratchpad_bytes=4096), a, b, c)
    assert np.array_equal(r.d.view(np.uint32), nx.bf16_gemm(a, b, c).view(np.uint32))
    assert r.cycles == dmu_cost.cycles(_tile(rows, cols), m=m, n=n, k=k)


def test_special_values_bit_exact():
    rng = np.random.default_rng(5)
    spec = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x807F, 0x7F7F,
                     0x3F80, 0xBF80, 0x0080], np.uint16)
    a = rng.choice(spec, (5, 4)).view(BF16)
    b = rng.choice(spec, (4, 6)).view(BF16)
    c = rng.choice(np.array([0, 0x80000000, 0x7F800000, 0x7FC00001, 1, 0x3F800000],
                            np.uint32), (5, 6)).view(np.float32)
    for cc in (None, c):
        r = run_gemm(Dmu(rows=2, cols=4, scratchpad_bytes=2048), a, b, cc)
        assert np.array_equal(r.d.view(np.uint32), nx.bf16_gemm(a, b, cc).view(np.uint32))


def test_ragged_k_period():
    """The cost model's period grows only for a short last A chunk (K mod W in 1..R-1)."""
    from accelpool.sched.cost.systolic import gemm_period
    assert gemm_period(4, 2, 5, 4) == 8          # R = W = 4: chunk 1 holds one k
    assert gemm_period(4, 2, 7, 4) == 8          # 3 k, still fewer than R
    assert gemm_period(4, 2, 8, 4) == 8          # whole words: K
    assert gemm_period(2, 4, 9, 8) == 10
    assert gemm_period(8, 8, 256, 16) == 256


def _bf16_specials(rng, shape, spec, p=0.3):
    normal = rng.standard_normal(shape).astype(BF16).view(np.uint16)
    return np.where(rng.random(shape) < p, rng.choice(spec, shape), normal).view(BF16)


@pytest.mark.parametrize("rows, cols, m, n, k", [(2, 4, 5, 9, 3), (4, 2, 6, 3, 5),
                                                 (2, 4, 3, 5, 17), (1, 1, 2, 3, 4)])
def test_out_bf16_bit_exact(rows, cols, m, n, k):
    """``out_bf16``: D = fp32_to_bf16 of the FP32 result, 2-byte elements, same cycles."""
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    spec = np.array([0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0x0001, 0x807F, 0x7F7F,
                     0x3F80, 0xBF80, 0x0080], np.uint16)
    a, b = _bf16_specials(rng, (m, k), spec), _bf16_specials(rng, (k, n), spec)
    c = rng.standard_normal((m, n)).astype(np.float32)
    c.view(np.uint32)[0, 0] = 0x3F808000      # a tie: rounds to even (0x3F80)
    if m * n > 1:
        c.view(np.uint32)[-1, -1] = 0x00400000    # subnormal
    unit = Dmu(rows=rows, cols=cols, scratchpad_bytes=4096)
    for cc in (None, c):
        want = nx.fp32_to_bf16(nx.bf16_gemm(a, b, cc))
        r = run_gemm(unit, a, b, cc, out_dtype=BF16, extra_args=dict(out_bf16=1))
        assert np.array_equal(r.d.view(np.uint16), want.view(np.uint16))
        assert r.cycles == dmu_cost.cycles(_tile(rows, cols), m=m, n=n, k=k)
    # rounding cases through the accumulator: A = 1, B = 0, C carries the FP32 value
    vals = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x007FFFFF, 0x80000001,
                     0x7FC00001, 0xFF800000, 0x3F7FFFFF], np.uint32)
    c2 = rng.choice(vals, (m, n)).view(np.float32)
    a2 = np.ones((m, 1), BF16)
    b2 = np.zeros((1, n), BF16)
    want = nx.fp32_to_bf16(nx.bf16_gemm(a2, b2, c2))
    r = run_gemm(unit, a2, b2, c2, out_dtype=BF16, extra_args=dict(out_bf16=1))
    assert np.array_equal(r.d.view(np.uint16), want.view(np.uint16))


@pytest.mark.parametrize("rows, cols, m, n, k, out_bf16, accumulate", [
    (2, 4, 3, 5, 3, 0, 0), (2, 4, 3, 5, 3, 1, 1), (4, 2, 5, 3, 6, 0, 1), (4, 4, 1, 1, 2, 1, 0)])
def test_only_the_m_by_n_elements_of_d_are_written(rows, cols, m, n, k, out_bf16, accumulate):
    """D's padding columns (j >= N) and rows (i >= M), and every byte outside D, keep their
    contents: the scratchpad starts as random bytes around A, B and C."""
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    unit = Dmu(rows=rows, cols=cols, scratchpad_bytes=2048)
    lay = GemmLayout(rows, cols, unit.word_bytes, m, n, k)
    o = 2 if out_bf16 else 4
    a_at, b_at, c_at, d_at, end = plan_regions(lay, 2, o)
    a = rng.standard_normal((m, k)).astype(BF16)
    b = rng.standard_normal((k, n)).astype(BF16)
    c = rng.standard_normal((m, n)).astype(np.float32)
    before = bytearray(rng.integers(0, 256, unit.scratchpad_bytes, dtype=np.uint8).tobytes())
    for at, img in ((a_at, lay.a_image(a)), (b_at, lay.b_image(b)), (c_at, lay.c_image(c))):
        before[at:at + len(img)] = img
    args = dict(a_addr=a_at, b_addr=b_at, c_addr=c_at, d_addr=d_at, m=m, n=n, k=k,
                accumulate=accumulate, out_bf16=out_bf16)
    after, _ = run_image(unit, bytes(before), args)
    d = nx.bf16_gemm(a, b, c if accumulate else None)
    d = nx.fp32_to_bf16(d).view(np.uint16) if out_bf16 else d.view(np.uint32)
    want = bytearray(before)
    for i in range(m):
        at = d_at + i * lay.np_ * o
        want[at:at + n * o] = d[i].tobytes()
    diff = [x for x in range(len(want)) if after[x] != want[x]]
    assert not diff, (f"bytes {diff[:8]} differ (D at 0x{d_at:x}, rows of {lay.np_ * o} "
                      f"bytes, {n * o} of them written)")


def test_out_bf16_numerics_match_ml_dtypes():
    """The golden conversion agrees with ml_dtypes' RNE cast on normal values."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(1000) * 100).astype(np.float32)
    assert np.array_equal(nx.fp32_to_bf16(x).view(np.uint16), x.astype(BF16).view(np.uint16))


def test_default_array_8x8():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((9, 12)).astype(BF16)
    b = rng.standard_normal((12, 10)).astype(BF16)
    r = run_gemm(Dmu(rows=8, cols=8), a, b)
    assert np.array_equal(r.d.view(np.uint32), nx.bf16_gemm(a, b).view(np.uint32))
    assert r.cycles == dmu_cost.cycles(load_config().tile("dmu0"), m=9, n=10, k=12)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dmu_cocotb(sim):
    params = {"rows": 4, "cols": 4, "scratchpad_bytes": 8192}
    run_cocotb(lambda: cocotb_top(Dmu(**params)), name="dmu", params=params,
               test_module="accelpool.tb.tb_dmu", sim=sim)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dmu_cocotb_default_config(sim):
    params = {"rows": 8, "cols": 8, "scratchpad_bytes": 65536}
    run_cocotb(lambda: cocotb_top(Dmu(**params)), name="dmu", params=params,
               env={"shapes": 10, "max_dim": 40, "seed": 11},
               test_module="accelpool.tb.tb_dmu", sim=sim)


@pytest.mark.slow
def test_cycle_formula_random_sweep_default_array():
    """A wider sweep on the default 8 x 8 array (amaranth.sim), 0 cycles error."""
    rng = np.random.default_rng(17)
    tile = load_config().tile("dmu0")
    for _ in range(12):
        m, n, k = (int(x) for x in rng.integers(1, 30, 3))
        a = rng.standard_normal((m, k)).astype(BF16)
        b = rng.standard_normal((k, n)).astype(BF16)
        r = run_gemm(Dmu.from_tile(tile), a, b)
        assert np.array_equal(r.d.view(np.uint32), nx.bf16_gemm(a, b).view(np.uint32))
        assert r.cycles == dmu_cost.cycles(tile, m=m, n=n, k=k)
