"""SMU: bit-exact against accelpool.spec.golden.sparse.spmm_bf16 (then fp32_to_bf16_bits for BF16
output) and cycle-exact against accelpool.sched.cost.smu."""

import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import UnitKind, load_config
from accelpool.hw.smu import Smu
from accelpool.spec.units.smu import SmuArgs, SmuFunc
from accelpool.sched.cost import smu as smu_cost
from accelpool.spec.formats import encode_csr, layout_spmm
from accelpool.spec.golden.numerics import fp32_to_bf16_bits
from accelpool.spec.golden.sparse import spmm_bf16
from accelpool.tb.harness import run_cocotb
from accelpool.tb.sparse_patterns import (SPARSE_CASES, bf16_normal, skewed, sparse_case,
                                          unstructured)
from accelpool.tb.sparse_sim import run_sparse, run_sparse_many, sparse_top
from accelpool.tb.streams import random_pattern


def tile(lanes):
    t = load_config().tile("smu0")
    return type(t)(t.name, t.kind, t.x, t.y, t.dtypes, {**t.params, "lanes": lanes})


def check(a, b, lanes, *, spad=16384, seed=0, out_bf16=False):
    """Run A @ B; assert bit-exact, exact cycle model, pad bytes untouched. Returns cycles."""
    csr = encode_csr(a)
    job = layout_spmm(csr, b, lanes, out_fill=0xA5, out_bf16=out_bf16)
    run = run_sparse(Smu(lanes=lanes, scratchpad_bytes=spad), job, SmuFunc.SPMM,
                     pattern=random_pattern(0.5, seed), max_cycles=100_000)
    want = spmm_bf16(csr, b)
    np.testing.assert_array_equal(run.result, fp32_to_bf16_bits(want) if out_bf16 else want)
    model = smu_cost.cycles(tile(lanes), m=a.shape[0], n=b.shape[1], k=a.shape[1],
                            row_nnz=csr.row_nnz)
    assert run.cycles == model, f"RTL {run.cycles} cycles, model {model}"
    elem = 2 if out_bf16 else 4
    pad = np.frombuffer(run.raw, np.uint8).reshape(a.shape[0], -1)[:, b.shape[1] * elem:]
    assert (pad == 0xA5).all(), "the SMU wrote pad columns"
    return run.cycles


@pytest.mark.parametrize("case", SPARSE_CASES)
def test_smu_cases(case):
    rng = np.random.default_rng(SPARSE_CASES.index(case))
    m, k, n = 9, 24, 10                        # three passes of 4 lanes, last one partial
    check(sparse_case(case, rng, m, k), bf16_normal(rng, (k, n)), 4, seed=3)


@pytest.mark.parametrize("case", ["empty_rows", "specials"])
def test_smu_bf16_output(case):
    """C in BF16 (out_bf16): empty rows, specials, a partial last slice."""
    rng = np.random.default_rng(20 + SPARSE_CASES.index(case))
    m, k, n = 9, 24, 10
    check(sparse_case(case, rng, m, k), bf16_normal(rng, (k, n)), 4, seed=2, out_bf16=True)


def test_smu_skewed_one_dense_row_many_empty():
    rng = np.random.default_rng(7)
    check(skewed(rng, 40, 33, dense_row=17), bf16_normal(rng, (33, 6)), 4)


def test_smu_random_sweep():
    rng = np.random.default_rng(11)
    for _ in range(4):
        lanes = int(rng.choice([2, 4, 8]))
        m, k, n = (int(v) for v in rng.integers(1, 20, 3))
        a = unstructured(rng, m, k, float(rng.uniform(0, 1)))
        check(a, bf16_normal(rng, (k, n)), lanes, seed=int(rng.integers(100)))


def test_smu_default_lanes():
    """The default config's 64 lanes (one pass and a partial second)."""
    rng = np.random.default_rng(2)
    check(unstructured(rng, 3, 12, 0.5), bf16_normal(rng, (12, 70)), 64, spad=65536)


@pytest.mark.slow
def test_smu_random_sweep_long():
    rng = np.random.default_rng(12)
    for _ in range(30):
        lanes = int(rng.choice([2, 4, 8, 16]))
        m, k, n = (int(v) for v in rng.integers(1, 40, 3))
        check(unstructured(rng, m, k, float(rng.uniform(0, 1))), bf16_normal(rng, (k, n)), lanes,
              spad=65536, seed=int(rng.integers(100)), out_bf16=bool(rng.integers(2)))


def test_smu_exec_encoding_roundtrip():
    rng = np.random.default_rng(0)
    job = layout_spmm(unstructured(rng, 5, 8, 0.5), bf16_normal(rng, (8, 3)), 64, base=256)
    cmd = isa.exec_cmd(UnitKind.SMU, SmuFunc.SPMM, **job.args)
    back = isa.decode(cmd.encode(), UnitKind.SMU)
    assert back.fields["func"] is SmuFunc.SPMM
    assert back.fields["args"] == job.args
    assert SmuArgs.size <= isa.EXEC_ARGS_BITS
    assert job.args["a_ptr_addr"] % 128 == 0 and job.args["b_addr"] % 128 == 0


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lanes="8"), TypeError, r"Lane count must be a positive integer, not '8'"),
    (dict(lanes=6), ValueError, r"Lane count must be a power of two of at least 2, not 6"),
    (dict(lanes=1), ValueError, r"Lane count must be a power of two of at least 2, not 1"),
    (dict(lanes=8, scratchpad_bytes=3000), ValueError,
     r"Scratchpad size must be a power of two of at least 32 bytes .*not 3000"),
])
def test_smu_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Smu(**kwargs)


def test_smu_cost_needs_counts():
    with pytest.raises(TypeError, match="SMU cycles need row_nnz"):
        smu_cost.cycles(tile(64), m=4, n=4)
    with pytest.raises(ValueError, match="row_nnz must have one count per row of A"):
        smu_cost.cycles(tile(64), m=4, n=4, row_nnz=[1, 2])


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_smu_cocotb(sim):
    params = {"lanes": 8, "scratchpad_bytes": 16384}
    run_cocotb(lambda: sparse_top(Smu(**params)), name="smu", params=params,
               test_module="accelpool.tb.tb_smu", sim=sim)


def test_smu_commands_back_to_back():
    """A command offered while the SMU is busy waits for ``cmd.ready``; both results exact."""
    rng = np.random.default_rng(9)
    a1, b1 = unstructured(rng, 5, 8, 0.3), bf16_normal(rng, (8, 6))
    a2, b2 = unstructured(rng, 3, 4, 0.5), bf16_normal(rng, (4, 3))
    job1 = layout_spmm(a1, b1, 4)
    job2 = layout_spmm(a2, b2, 4, base=len(job1.image.data))
    r1, r2 = run_sparse_many(Smu(lanes=4, scratchpad_bytes=8192),
                             [(SmuFunc.SPMM, job1), (SmuFunc.SPMM, job2)], back_to_back=True)
    np.testing.assert_array_equal(r1.result, spmm_bf16(a1, b1))
    np.testing.assert_array_equal(r2.result, spmm_bf16(a2, b2))
