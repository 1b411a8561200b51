"""cocotb tests of the SMU's Verilog (with its memory): random and adversarial patterns,
FP32 and BF16 output, bit-exact against accelpool.spec.golden.sparse.spmm_bf16 (then
fp32_to_bf16_bits for BF16), cycles against accelpool.sched.cost.smu."""

import cocotb
import numpy as np

from accelpool.hw.smu import Smu
from accelpool.spec.units.smu import SmuFunc
from accelpool.sched.cost import smu as smu_cost
from accelpool.spec.formats import encode_csr, layout_spmm
from accelpool.spec.golden.sparse import spmm_bf16
from accelpool.tb.cocotb_sparse import check_job, reset_tb, tile_with_lanes
from accelpool.tb.sparse_patterns import SPARSE_CASES, bf16_normal, skewed, sparse_case


async def check(tb, lanes, a, b, out_bf16=False):
    csr = encode_csr(a)
    job = layout_spmm(csr, b, lanes, out_fill=0x5A, out_bf16=out_bf16)
    model = smu_cost.cycles(tile_with_lanes("smu0", lanes), m=a.shape[0], n=b.shape[1], row_nnz=csr.row_nnz)
    await check_job(tb, Smu, SmuFunc.SPMM, job, spmm_bf16(csr, b), model,
                    rows=a.shape[0], cols=b.shape[1], out_bf16=out_bf16)


@cocotb.test()
async def smu_cases_with_idle_commands(dut):
    """Every named case (random, empty rows, all-zero, dense, skewed, 2:4, specials)."""
    lanes, tb = await reset_tb(dut, Smu, stall=0.4, seed=1)
    rng = np.random.default_rng(5)
    for case in SPARSE_CASES:
        m, k, n = 12, 32, 2 * lanes + 3
        await check(tb, lanes, sparse_case(case, rng, m, k), bf16_normal(rng, (k, n)))


@cocotb.test()
async def smu_one_dense_row_many_empty(dut):
    lanes, tb = await reset_tb(dut, Smu, stall=None)
    rng = np.random.default_rng(6)
    await check(tb, lanes, skewed(rng, 60, 40, dense_row=59), bf16_normal(rng, (40, lanes)))


@cocotb.test()
async def smu_bf16_output(dut):
    """C in BF16 (out_bf16): empty rows and specials, a partial last slice."""
    lanes, tb = await reset_tb(dut, Smu, stall=0.3, seed=3)
    rng = np.random.default_rng(7)
    for case in ("empty_rows", "specials"):
        m, k, n = 10, 24, lanes + 5
        await check(tb, lanes, sparse_case(case, rng, m, k), bf16_normal(rng, (k, n)),
                    out_bf16=True)
