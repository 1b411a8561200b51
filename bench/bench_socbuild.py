"""Build time of the default SoC from scratch, and its run speed (``python -m bench socbuild``).

The default pool (``configs/default.toml``) under the name ``default_buildbench``, so that
its build folder ``sim_build/default_buildbench-<digest>/`` can be removed first without
touching the build ``make sim`` uses. Per simulator: Verilog generation (:func:`accelpool.hw.soc.write_soc`,
once), the simulator build (for Verilator: verilation, as Verilator reports it, and the
C++ compile), then one CE EXEC of 21,052 cycles (16x16 channels, 24x24 image, 3x3 kernel)
timed from ``start`` to ``all_done``. Wall seconds depend on the machine's load; CPU
seconds (this process and its children) much less. ``BENCH_SIMS`` picks the simulators.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import time

from bench.bench_soc import long_ce_job
from bench.common import print_table, write_results

from accelpool.hw.soc import write_soc
from accelpool.spec.config import load_config, parse_config
from accelpool.tb.soc import (_source_key, build_soc, config_doc, run_jobs, simulation_text,
                              soc_build_dir)


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:

    cfg = parse_config({**config_doc(load_config("default")), "name": "default_buildbench"},
                       source="default (bench)")
    sims = os.environ.get("BENCH_SIMS", "verilator,icarus").split(",")
    top = soc_build_dir(cfg)
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    fig: dict[str, float] = {}
    w, c = time.perf_counter(), _cpu()
    soc_v, _ = write_soc(cfg, top, cmd_depth=1024)
    (top / ".source_key").write_text(_source_key(cfg, {"cmd_depth": 1024}))
    fig["generate_wall_s"], fig["generate_cpu_s"] = time.perf_counter() - w, _cpu() - c
    raw = soc_v.read_text()
    fig["soc_v_lines"] = raw.count("\n")
    fig["sim_v_lines"] = simulation_text(raw).count("\n")
    job = long_ce_job()
    rows = [["generate", "", f"{fig['generate_wall_s']:.1f}", f"{fig['generate_cpu_s']:.1f}",
             f"{fig['soc_v_lines']:,} lines"]]
    for sim in sims:
        w, c = time.perf_counter(), _cpu()
        build = build_soc(cfg, sim)
        fig[f"{sim}_build_wall_s"], fig[f"{sim}_build_cpu_s"] = time.perf_counter() - w, _cpu() - c
        rows.append([f"{sim} build", sim, f"{fig[f'{sim}_build_wall_s']:.1f}",
                     f"{fig[f'{sim}_build_cpu_s']:.1f}", ""])
        log = (build.build_dir / "build.log").read_text(errors="replace")
        m = re.search(r"into ([\d.]+) MB in (\d+) C\+\+ files.*?Walltime ([\d.]+) s.*?cpu ([\d.]+) s",
                      log, re.S)
        if m:
            fig[f"{sim}_cpp_mb"], fig[f"{sim}_cpp_files"] = float(m.group(1)), int(m.group(2))
            fig[f"{sim}_verilate_wall_s"], fig[f"{sim}_verilate_cpu_s"] = (float(m.group(3)),
                                                                           float(m.group(4)))
            rows.append(["  of which verilate", sim, m.group(3), m.group(4),
                         f"{m.group(1)} MB C++ in {m.group(2)} files"])
        (res,) = run_jobs(build, [job])
        if res.status != "ok":
            raise RuntimeError(f"The benchmark job did not run on {sim}: {res.message}")
        fig[f"{sim}_cycles"] = res.cycles
        fig[f"{sim}_cycles_per_s"] = round(res.cycles_per_second)
        rows.append([f"{sim} run", sim, f"{res.sim_seconds:.1f}", "",
                     f"{res.cycles} cycles, {res.cycles_per_second:,.0f} cycles/s"])
    print_table("Default SoC from scratch (load-dependent wall seconds)",
                ["step", "sim", "wall s", "cpu s", "size / speed"], rows)
    write_results("socbuild", {k: round(v, 1) if isinstance(v, float) else v
                               for k, v in fig.items()})


if __name__ == "__main__":
    main()
