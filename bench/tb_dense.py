"""cocotb body of the dense benchmark: measure busy cycles of DMU/LPU GEMMs on the RTL.

Run by ``bench/bench_dense.py`` through ``accelpool.tb.harness.run_cocotb``; the shapes come in the
``shapes`` parameter and the measurements go to the JSON file named by ``out``. Every
result is also checked bit-exact against the reference, so a figure is never reported
for a wrong answer.
"""

import json

import cocotb
import ml_dtypes
import numpy as np

from accelpool.hw.dmu import Dmu
from accelpool.hw.lpu import Lpu
from accelpool.spec.golden import numerics as nx
from accelpool.tb.harness import tb_params
from accelpool.tb.tb_gemm import GemmTB


@cocotb.test()
async def measure(dut):
    p = tb_params()
    cls = {"dmu": Dmu, "lpu": Lpu}[p["unit"]]
    unit = cls(rows=p["rows"], cols=p["cols"], scratchpad_bytes=p["scratchpad_bytes"])
    tb = GemmTB(dut, unit, backpressure=False)
    await tb.reset()
    rng = np.random.default_rng(1)
    out = []
    for m, k, n in p["shapes"]:
        if p["unit"] == "dmu":
            a = rng.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
            b = rng.standard_normal((k, n)).astype(ml_dtypes.bfloat16)
            d = await tb.gemm(a, b, out_dtype=np.float32, check_cycles=False)
            assert np.array_equal(d.view(np.uint32), nx.bf16_gemm(a, b).view(np.uint32))
        else:
            a = rng.integers(-128, 128, (m, k)).astype(np.int8)
            b = rng.integers(-128, 128, (k, n)).astype(np.int8)
            d = await tb.gemm(a, b, out_dtype=np.int32, check_cycles=False)
            assert np.array_equal(d, nx.int8_gemm(a, b))
        out.append({"m": m, "k": k, "n": n, "cycles": tb.last_cycles})
    with open(p["out"], "w") as f:
        json.dump(out, f)
