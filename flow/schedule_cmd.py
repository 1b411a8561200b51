"""The ``accelpool schedule`` subcommand: decompose a model, schedule it, print the summary.

``accelpool schedule MODEL [--pool CFG] [--scheduler NAME|all] [--gantt OUT.png]
[--trace OUT.json] [--listing OUT.txt] [--report-json OUT.json] [--run]``

Prints, per scheduler, the makespan against the lower bound and each unit's share of it
(occupied: the unit's time in the schedule, its micro-ops' LOADs, EXEC, STOREs and
SIGNALs; busy: the unit's busy cycles, its EXEC cycles alone, over the makespan, the
prediction of what ``accelpool sim`` measures over the run), and
with ``--scheduler all`` a side-by-side table of the schedulers. Optionally draws the
Gantt chart, writes the Perfetto/Chrome trace, the per-tile command-stream listing and the
figures as JSON (``--report-json``), and (``--run``) executes the command streams in the
functional executor and compares them bit for bit with the golden run.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from accelpool.flow.options import (DEFAULT_SCHEDULER, DEFAULT_SCHEDULER_HELP, add_model_args,
                                    int_option, compile_from_args, check_outputs, example_inputs)
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.frontend import input_buffer_names
from accelpool.sched.funcsim import MismatchError, compare_outputs, golden_outputs, run_program
from accelpool.sched.pool import Pool
from accelpool.sched.schedulers import SCHEDULERS, lower_bound

from .calibration import cost_model
from .report import gantt_png, write_trace

__all__ = ["add_schedule", "cmd_schedule", "schedule_figures"]

log = logging.getLogger("accelpool")


def add_schedule(sub) -> None:
    p = sub.add_parser("schedule", help="schedule a model on the pool; print the summary",
                       description="Decompose a model (ONNX file or built-in), schedule it on "
                                   "the pool and print the schedule summary.")
    p.add_argument("model", help="MODEL.onnx, or the name of a built-in model")
    add_model_args(p)
    p.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=list(SCHEDULERS) + ["all"],
                   help=f"scheduler ({DEFAULT_SCHEDULER_HELP}; 'all' compares them)")
    p.add_argument("--gantt", metavar="OUT.png", help="draw the Gantt chart")
    p.add_argument("--trace", metavar="OUT.json", help="write a Perfetto/Chrome trace")
    p.add_argument("--listing", metavar="OUT.txt", help="write the command-stream listing")
    p.add_argument("--report-json", metavar="OUT.json",
                   help="write the printed figures as JSON (one entry per scheduler)")
    p.add_argument("--run", action="store_true",
                   help="run the command streams functionally and compare with the golden run")
    p.add_argument("--seed", type=int_option(0), default=0,
                   help="seed of the example input (--run; >= 0)")
    p.set_defaults(func=cmd_schedule)


def schedule_figures(schedule, dag, cost, lower: int, seconds: float) -> dict:
    """The figures ``schedule`` prints for one schedule, as a JSON-able dict: makespan,
    lower bound, transfers, scheduling time and per unit its micro-ops, occupied cycles
    and fraction (its time in the schedule over the makespan) and busy cycles and
    fraction (its EXEC cycles over the makespan)."""
    span = max(1, schedule.makespan)
    busy = schedule.busy()
    units = {}
    for u in schedule.pool.units:
        ops = [n for n, sl in schedule.slots.items() if sl.unit == u.name]
        exec_cycles = sum(cost.exec_cycles(dag.nodes[n]["op"], u) for n in ops)
        units[u.name] = {"kind": u.kind.key, "ops": len(ops),
                         "occupied_cycles": busy[u.name], "occupied": busy[u.name] / span,
                         "busy_cycles": exec_cycles, "busy": exec_cycles / span}
    return {"scheduler": schedule.name, "makespan": schedule.makespan, "lower_bound": lower,
            "ratio_to_lower_bound": schedule.makespan / lower if lower else None,
            "transfers": len(schedule.transfers), "seconds": round(seconds, 4),
            "units": units}


#: The header lines that say what the per-unit shares mean.
LEGEND = ("occupied: a unit's time in the schedule (the LOADs, EXEC, STOREs and SIGNALs of its "
          "micro-ops), over the makespan",
          "busy: the unit's busy cycles (its EXEC cycles alone) over the makespan; "
          "`accelpool sim` reports the measured busy cycles over the measured run")


def _busy_line(fig: dict) -> str:
    return ("  busy: "
            + ", ".join(f"{n} {100 * u['busy']:.1f}%" for n, u in fig["units"].items()
                        if u["ops"]))


def cmd_schedule(args: argparse.Namespace) -> int:
    check_outputs(args, ("--gantt", "--trace", "--listing", "--report-json"))
    cfg, proto, ops, tiled, secs = compile_from_args(args)
    pool = Pool.from_config(cfg)
    cost = cost_model(pool)           # with the pool's stored calibration, if any
    dag = tiled.dag
    lb = lower_bound(dag, pool, cost)
    print(f"{tiled.name}: {len(tiled)} micro-ops on pool {pool.name} ({len(pool.units)} units), "
          f"lower bound {lb} cycles")
    print("\n".join(LEGEND))
    names = list(SCHEDULERS) if args.scheduler == "all" else [args.scheduler]
    chosen = None
    figures = []
    for name in names:
        log.info("schedule: running %s", name)
        t0 = time.perf_counter()
        s = SCHEDULERS[name](dag, pool, cost)
        took = time.perf_counter() - t0
        s.verify(dag)
        fig = schedule_figures(s, dag, cost, lb, took)
        figures.append(fig)
        print(f"\n{s.summary(lb)}\n{_busy_line(fig)}\n  scheduled in {took:.3f} s")
        chosen = s
    if len(figures) > 1:
        print("\n" + _side_by_side(figures))
    if args.report_json:
        Path(args.report_json).parent.mkdir(parents=True, exist_ok=True)
        doc = {"model": tiled.name, "pool": pool.name, "micro_ops": len(tiled),
               "schedules": figures}
        Path(args.report_json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.report_json}")
    if args.gantt:
        print(f"wrote {gantt_png(chosen, args.gantt, dag, lower_bound=lb)}")
    if args.trace:
        print(f"wrote {write_trace(chosen, args.trace, dag)}")
    if args.listing or args.run:
        inputs = None
        if args.run:                   # keyed by the graph's input buffers, not ONNX names
            names = input_buffer_names(proto)
            inputs = {names[k]: v for k, v in example_inputs(proto, args.seed).items()}
        log.info("schedule: compiling the command streams of %s", chosen.name)
        prog = compile_schedule(tiled, chosen, inputs)
        t = prog.token_summary()
        print(f"command streams: {sum(len(s.commands) for s in prog.streams.values())} commands, "
              f"{t['signals']} SIGNALs for {t['cross_tile_edges']} cross-tile dependencies")
        if args.listing:
            Path(args.listing).parent.mkdir(parents=True, exist_ok=True)
            Path(args.listing).write_text(prog.listing() + "\n")
            print(f"wrote {args.listing}")
        if args.run:
            log.info("schedule: running the command streams in the functional executor")
            res = run_program(prog)
            try:
                compare_outputs(res.outputs, golden_outputs(tiled, inputs))
            except MismatchError as e:
                print(f"functional run of the streams: MISMATCH: {e}")
                return 1
            print("functional run of the streams: outputs equal the golden run bit for bit")
    return 0


def _side_by_side(figures: list[dict]) -> str:
    """One row per scheduler: makespan, ratio to the lower bound, transfers, seconds."""
    header = ("scheduler", "makespan", "x lower bound", "transfers", "seconds")
    rows = [header] + [(f["scheduler"], str(f["makespan"]),
                        f"{f['ratio_to_lower_bound']:.3f}" if f["ratio_to_lower_bound"] else "-",
                        str(f["transfers"]), f"{f['seconds']:.3f}") for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
