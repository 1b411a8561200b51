"""cocotb body of the sparse benchmark: SMU busy cycles on the RTL against sparsity.

Run by ``bench/bench_sparse.py`` through ``accelpool.tb.harness.run_cocotb``; the cases come in the
``cases`` parameter (``[name, sparsity or "2:4"]``), each an M x K by K x N product, and
the measurements go to the JSON file named by ``out``. Every result is checked bit-exact
against :func:`accelpool.spec.golden.sparse.spmm_bf16` first.
"""

import json

import cocotb
import numpy as np

from accelpool.hw.smu import Smu
from accelpool.spec.formats import encode_csr, layout_spmm
from accelpool.spec.golden.sparse import spmm_bf16
from accelpool.spec.units.smu import SmuFunc
from accelpool.tb.cocotb_sparse import make_tb, run_job
from accelpool.tb.harness import tb_params
from accelpool.tb.sparse_patterns import bf16_normal, structured_2_4, unstructured


@cocotb.test()
async def measure(dut):
    p = tb_params()
    lanes, (m, k, n) = p["lanes"], p["shape"]
    tb = make_tb(dut, Smu, lanes, stall=None)
    await tb.reset()
    rng = np.random.default_rng(p.get("seed", 1))
    b = bf16_normal(rng, (k, n))
    out = []
    for name, sparsity in p["cases"]:
        a = structured_2_4(rng, m, k) if sparsity == "2:4" else unstructured(rng, m, k, sparsity)
        csr = encode_csr(a)
        job = layout_spmm(csr, b, lanes)
        got, _, cycles = await run_job(tb, Smu, SmuFunc.SPMM, job)
        assert (got == spmm_bf16(csr, b)).all(), f"{name}: SMU result differs from the reference"
        out.append({"name": name, "nnz": csr.nnz, "row_nnz": csr.row_nnz.tolist(),
                    "cycles": cycles})
    with open(p["out"], "w") as f:
        json.dump(out, f)
