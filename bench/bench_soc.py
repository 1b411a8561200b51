"""SoC simulation speed and RTL calibration figures (``python -m bench soc``).

On ``configs/ce_pair.toml`` for each available simulator: the two-tile convolution chain
of ``hw/test_soc.py`` (LOAD, EXEC, tile-to-tile STORE, SIGNAL/WAIT), timed from ``start``
to ``all_done`` (the clock runs in HDL; Python sleeps until ``all_done``), plus a long
single EXEC to measure the simulator's speed on a busy unit. Then the RTL calibration
sweep (:mod:`accelpool.flow.calibration`) on Verilator: unit-model error before and after the
refit, and the NoC transfer model's error.
"""

from __future__ import annotations

import os

import numpy as np
from bench.common import print_table, write_results

from accelpool.hw.test_soc import _chain_job
from accelpool.spec import isa
from accelpool.spec.ce_layout import ConvShape
from accelpool.spec.config import UnitKind, load_config
from accelpool.spec.units.ce import CeFunc
from accelpool.tb.soc import SocJob, build_soc, run_jobs


def long_ce_job():
    """One long EXEC on tile ce0 (16x16 channels, 24x24 image, 3x3 kernel: 21,052 cycles),
    the run-speed measurement of the SoC benchmarks."""
    big = ConvShape(c_in=16, c_out=16, height=24, width=24, kernel_h=3, kernel_w=3,
                    pads=(1, 1, 1, 1))
    return SocJob(streams={"ce0": isa.assemble([
        isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **big.exec_args(in_addr=0, w_addr=0x2000,
                                                               out_addr=0x2800)),
        isa.end()])}, timeout_cycles=2_000_000)


def main() -> None:

    cfg = load_config("ce_pair")
    sims = os.environ.get("BENCH_SIMS", "verilator,icarus").split(",")
    long_job = long_ce_job()
    rows, figures = [], {}
    for sim in sims:
        build = build_soc(cfg, sim)
        chain, _, _ = _chain_job(np.random.default_rng(7))
        res_chain, res_long = run_jobs(build, [chain, long_job])
        for name, r in (("chain", res_chain), ("conv16x16x24x24", res_long)):
            rows.append([sim, name, r.status, r.cycles, f"{r.sim_seconds:.3f}",
                         f"{r.cycles_per_second:,.0f}", f"{r.load_seconds:.3f}"])
            figures[f"{sim}_{name}_cycles"] = r.cycles
            figures[f"{sim}_{name}_cycles_per_s"] = round(r.cycles_per_second)
    print_table("SoC simulation speed (ce_pair: memory + 2 CE tiles, 2x2 mesh)",
                ["sim", "job", "status", "cycles", "run s", "cycles/s", "load+readback s"], rows)
    write_results("soc", figures)


if __name__ == "__main__":
    main()
