"""CE utilization over layer shapes and AFU error per function, measured on the RTL (Verilator).

``python -m bench convact``: runs the CE on each layer of :data:`accelpool.tb.tb_ce.BENCH_SHAPES`
(bias + requantization, results checked against the reference, cycles against the cost
model) and the AFU over every BF16 input in [-8, 8], then prints and writes the figures.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.common import print_table, write_results

from accelpool.hw.afu import ActivationUnit
from accelpool.hw.ce import ConvEngine
from accelpool.sched.cost.afu import cycles as afu_cycles
from accelpool.sched.cost.ce import cycles as ce_cycles
from accelpool.tb.harness import run_cocotb
from accelpool.tb.tb_ce import BENCH_SHAPES
from accelpool.tb.unit_top import UnitTop


def _run(block: str, out: Path) -> None:

    if block == "ce":
        params = {"oc_lanes": 8, "ic_lanes": 8, "depth": 8192}
        top = UnitTop(ConvEngine(oc_lanes=8, ic_lanes=8, addr_width=13), depth=8192)
        run_cocotb(top, name="ce", params=params, test_module="accelpool.tb.tb_ce", sim="verilator",
                   env={"bench_out": str(out)}, testcase="bench_layers")
    else:
        params = {"lanes": 8, "depth": 2048}
        top = UnitTop(ActivationUnit(lanes=8, addr_width=11), depth=2048, read_ports=("rd_a", "rd_b"))
        run_cocotb(top, name="afu", params=params, test_module="accelpool.tb.tb_afu", sim="verilator",
                   env={"bench_out": str(out)}, testcase="bench_errors")


def main() -> None:

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ce_out, afu_out = Path(tmp) / "ce.json", Path(tmp) / "afu.json"
        _run("ce", ce_out)
        _run("afu", afu_out)
        ce_rows = json.loads(ce_out.read_text())
        afu = json.loads(afu_out.read_text())

    tile = {"oc_lanes": 8, "ic_lanes": 8}
    rows = []
    for (name, shape), r in zip(BENCH_SHAPES, ce_rows):
        model = ce_cycles(tile, c_in=shape.c_in, c_out=shape.c_out, height=shape.height,
                          width=shape.width, kernel_h=shape.kernel_h, kernel_w=shape.kernel_w,
                          stride=shape.stride, pads=shape.pads, bias=True, requant=True)
        util = r["macs"] / (r["cycles"] * 64)
        rows.append([name, r["macs"], r["cycles"], model, f"{100 * util:.1f}%"])
        key = name.replace(" ", "_").replace("->", "to")
        figures[f"ce_{key}_cycles"] = r["cycles"]
        figures[f"ce_{key}_utilization"] = round(util, 4)
    print_table("CE (8x8 MACs, INT8, bias + requant), RTL on Verilator",
                ["layer", "MACs", "cycles", "model", "MAC util"], rows)

    arows = []
    for name, r in afu.items():
        arows.append([name, r["inputs"], f"{r['max_err']:.3g}", f"{r['mean_err']:.3g}",
                      f"{r['max_err_over_tol']:.3f}"])
        figures[f"afu_bf16_{name}_max_err"] = r["max_err"]
        figures[f"afu_bf16_{name}_mean_err"] = r["mean_err"]
        figures[f"afu_bf16_{name}_max_err_over_tol"] = r["max_err_over_tol"]
    print_table("AFU BF16 error vs float64 over every BF16 in [-8, 8], RTL on Verilator "
                "(tolerance max(1e-3, 2 ulp))", ["function", "inputs", "max err", "mean err",
                                                 "max err / tol"], arows)
    n = 4096
    trows = []
    for dt in ("bf16", "int8"):
        t = afu_cycles({"lanes": 8}, func="sigmoid", dtype=dt, count=n)
        trows.append([f"sigmoid {dt} x{n}", t, f"{n / t:.2f}"])
        figures[f"afu_sigmoid_{dt}_elements_per_cycle"] = round(n / t, 3)
    print_table("AFU throughput (8 lanes; cycle model, equal to the RTL in the tests)",
                ["op", "cycles", "elements/cycle"], trows)
    write_results("convact", figures)


if __name__ == "__main__":
    main()
