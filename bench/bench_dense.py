"""Dense units: DMU (BF16) and LPU (INT8) utilization measured on the RTL (Verilator).

For each shape M x K x N one GEMM command runs on the generated Verilog of the default
pool's DMU (8 x 8) and LPU (8 x 16), operands already in the scratchpad; the busy cycles
are measured, the result is checked bit-exact, and the table shows

- ``cycles``: measured busy cycles (command accepted -> last result written),
- ``model``: the cost model's prediction (:mod:`accelpool.sched.cost.dmu`, :mod:`accelpool.sched.cost.lpu`),
- ``util``: useful MACs / (cycles x peak MACs per cycle), padding and fill/drain idle.

The scratchpad is enlarged to 256 KiB for the benchmark so that every shape's operands and
result fit at once (64x256x64 in BF16 with an FP32 result needs 80 KiB, more than the
default tile's 64 KiB); the array sizes are the default config's.
"""

from __future__ import annotations

import json
import os
import tempfile

from bench.common import print_table, write_results

from accelpool.hw.dmu import Dmu
from accelpool.hw.lpu import Lpu
from accelpool.sched.cost import dmu as dmu_cost, lpu as lpu_cost
from accelpool.spec.config import load_config
from accelpool.tb.gemm_sim import cocotb_top
from accelpool.tb.harness import run_cocotb

#: (M, K, N) shapes of the table.
SHAPES = [(64, 256, 64), (8, 8, 8), (16, 64, 16), (32, 128, 32), (64, 64, 64),
          (100, 200, 50), (128, 256, 32), (7, 300, 9)]
SPAD_BYTES = 262144


def measure(kind: str, tile) -> list[dict]:
    """Busy cycles of each shape on the RTL of ``tile`` (Verilator through the harness)."""
    cls = {"dmu": Dmu, "lpu": Lpu}[kind]
    params = {"unit": kind, "rows": tile["rows"], "cols": tile["cols"],
              "scratchpad_bytes": SPAD_BYTES}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cycles.json")
        run_cocotb(lambda: cocotb_top(cls(rows=params["rows"], cols=params["cols"],
                                             scratchpad_bytes=SPAD_BYTES)),
                   name=f"bench_{kind}", params=params, env={"shapes": SHAPES, "out": out},
                   test_module="bench.tb_dense", sim="verilator")
        with open(out) as f:
            return json.load(f)


def main() -> None:
    cfg = load_config()
    figures: dict[str, float] = {}
    for kind, tile, cost in (("dmu", cfg.tile("dmu0"), dmu_cost),
                             ("lpu", cfg.tile("lpu0"), lpu_cost)):
        peak = tile["rows"] * tile["cols"]
        rows = []
        worst = 0
        for r in measure(kind, tile):
            m, k, n, cyc = r["m"], r["k"], r["n"], r["cycles"]
            model = cost.cycles(tile, m=m, n=n, k=k)
            util = m * n * k / (cyc * peak)
            worst = max(worst, abs(model - cyc))
            rows.append((f"{m}x{k}x{n}", cyc, model, model - cyc, f"{100 * util:.1f}%"))
            figures[f"{kind}_util_{m}x{k}x{n}"] = round(util, 4)
            figures[f"{kind}_cycles_{m}x{k}x{n}"] = cyc
        figures[f"{kind}_peak_macs_per_cycle"] = peak
        figures[f"{kind}_model_max_abs_error_cycles"] = worst
        print_table(f"{kind.upper()} {tile['rows']}x{tile['cols']} ({peak} MACs/cycle), "
                    f"M x K x N", ["shape", "cycles", "model", "model-rtl", "util"], rows)
    write_results("dense", figures)


if __name__ == "__main__":
    main()
