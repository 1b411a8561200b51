"""LPU: bit-exact GEMMs (INT32 and requantised INT8) and the exact cycle formula; cocotb."""

import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import DType, TileConfig, UnitKind, load_config
from accelpool.hw.dmu import Dmu
from accelpool.tb.gemm_sim import cocotb_top, run_gemm
from accelpool.hw.lpu import Lpu
from accelpool.spec.units.lpu import LpuArgs, LpuFunc
from accelpool.sched.cost import lpu as lpu_cost
from accelpool.spec.golden import numerics as nx
from accelpool.tb.harness import run_cocotb


#: Ragged K too: W (INT8 elements per word) is 16 for 2 x 4, 8 for 4 x 2, 4 for 1 x 1 and
#: 32 for 4 x 8; K = W+1 leaves a one-element last chunk of every A row.
SWEEP = [(2, 4, m, n, k) for m, n, k in [
    (1, 1, 1), (2, 4, 1), (3, 5, 2), (2, 4, 4), (5, 9, 3), (4, 8, 6), (1, 13, 5), (7, 3, 9),
    (3, 5, 17), (4, 2, 35),
]] + [(4, 2, 6, 3, 1), (4, 2, 9, 5, 4), (1, 1, 3, 2, 5), (4, 8, 5, 17, 7),
      (4, 2, 6, 3, 9), (4, 2, 5, 2, 19), (1, 1, 3, 2, 6), (4, 8, 5, 9, 33)]


def _tile(rows, cols):
    return TileConfig("lpu", UnitKind.LPU, 0, 0, (DType.INT8,),
                      {"rows": rows, "cols": cols, "scratchpad_bytes": 65536})


def test_exec_declaration():
    assert LpuArgs.size <= isa.EXEC_ARGS_BITS
    cmd = isa.exec_cmd(UnitKind.LPU, LpuFunc.GEMM, a_addr=0, b_addr=64, c_addr=128, d_addr=192,
                       m=3, n=4, k=5, requant=1, multiplier=1 << 30, shift=40, zero_point=-5)
    back = isa.decode(cmd.encode(), UnitKind.LPU)
    assert back.fields["args"]["zero_point"] == -5 and back.fields["args"]["shift"] == 40


def test_default_config_peak_is_twice_the_dmu():
    cfg = load_config()
    lpu, dmu = Lpu.from_tile(cfg.tile("lpu0")), Dmu.from_tile(cfg.tile("dmu0"))
    assert lpu.macs_per_cycle >= 2 * dmu.macs_per_cycle


@pytest.mark.parametrize("rows, cols, m, n, k", SWEEP)
def test_gemm_bit_exact_and_cycle_formula(rows, cols, m, n, k):
    rng = np.random.default_rng(m * 1000 + n * 100 + k)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    c = rng.integers(-(1 << 31), 1 << 31, (m, n)).astype(np.int32) if (m + n + k) % 2 else None
    unit = Lpu(rows=rows, cols=cols, scratchpad_bytes=4096)
    r = run_gemm(unit, a, b, c)
    acc = nx.int8_gemm(a, b, c)
    assert np.array_equal(r.d, acc)
    assert r.cycles == lpu_cost.cycles(_tile(rows, cols), m=m, n=n, k=k)
    mult, shift = nx.quantize_multiplier(0.37 / (1 + k * 64))
    q = run_gemm(unit, a, b, c, out_dtype=np.int8,
                 extra_args=dict(requant=1, multiplier=mult, shift=shift, zero_point=k - 9))
    assert np.array_equal(q.d, nx.requantize(acc, mult, shift, k - 9))
    assert q.cycles == r.cycles


def test_extremes_and_wraparound():
    a = np.full((3, 6), -128, np.int8)
    b = np.full((6, 5), -128, np.int8)
    b[:, 1] = 127
    c = np.full((3, 5), 2**31 - 1, np.int32)
    r = run_gemm(Lpu(rows=2, cols=4, scratchpad_bytes=2048), a, b, c)
    assert np.array_equal(r.d, nx.int8_gemm(a, b, c))
    assert r.d[0, 0] == np.int32(2**31 - 1 + 6 * 16384 - 2**32)


def test_default_array_8x16_requant():
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (9, 12)).astype(np.int8)
    b = rng.integers(-128, 128, (12, 18)).astype(np.int8)
    mult, shift = nx.quantize_multiplier(1 / 900)
    r = run_gemm(Lpu(rows=8, cols=16), a, b, out_dtype=np.int8,
                 extra_args=dict(requant=1, multiplier=mult, shift=shift, zero_point=3))
    assert np.array_equal(r.d, nx.requantize(nx.int8_gemm(a, b), mult, shift, 3))
    assert r.cycles == lpu_cost.cycles(load_config().tile("lpu0"), m=9, n=18, k=12)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_lpu_cocotb(sim):
    params = {"rows": 4, "cols": 8, "scratchpad_bytes": 8192}
    run_cocotb(lambda: cocotb_top(Lpu(**params)), name="lpu", params=params,
               test_module="accelpool.tb.tb_lpu", sim=sim)


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_lpu_cocotb_default_config(sim):
    params = {"rows": 8, "cols": 16, "scratchpad_bytes": 65536}
    run_cocotb(lambda: cocotb_top(Lpu(**params)), name="lpu", params=params,
               env={"shapes": 10, "max_dim": 40, "seed": 13},
               test_module="accelpool.tb.tb_lpu", sim=sim)


@pytest.mark.slow
def test_cycle_formula_random_sweep_default_array():
    """A wider sweep on the default 8 x 16 array (amaranth.sim), 0 cycles error."""
    rng = np.random.default_rng(19)
    tile = load_config().tile("lpu0")
    for _ in range(12):
        m, n, k = (int(x) for x in rng.integers(1, 40, 3))
        a = rng.integers(-128, 128, (m, k)).astype(np.int8)
        b = rng.integers(-128, 128, (k, n)).astype(np.int8)
        r = run_gemm(Lpu.from_tile(tile), a, b)
        assert np.array_equal(r.d, nx.int8_gemm(a, b))
        assert r.cycles == lpu_cost.cycles(tile, m=m, n=n, k=k)
