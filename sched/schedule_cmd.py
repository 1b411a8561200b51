"""The ``accelpool schedule`` subcommand: decompose a model, schedule it, print the summary.

``accelpool schedule MODEL [--pool CFG] [--scheduler NAME|all] [--gantt OUT.png]
[--trace OUT.json] [--listing OUT.txt] [--run]``

Prints, per scheduler, the makespan against the lower bound and each unit's utilisation;
optionally draws the Gantt chart, writes the Perfetto/Chrome trace, writes the per-tile
command-stream listing, and (``--run``) executes the command streams in the functional
executor and compares them bit for bit with the golden run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["add_schedule", "cmd_schedule"]


def add_schedule(sub) -> None:
    from .cli import _add_model_args, int_option
    from .schedulers import SCHEDULERS
    p = sub.add_parser("schedule", help="schedule a model on the pool; print the summary",
                       description="Decompose a model (ONNX file or built-in), schedule it on "
                                   "the pool and print the schedule summary.")
    p.add_argument("model", help="MODEL.onnx, or the name of a built-in model")
    _add_model_args(p)
    p.add_argument("--scheduler", default="search", choices=list(SCHEDULERS) + ["all"],
                   help="scheduler (default: %(default)s; 'all' compares them)")
    p.add_argument("--gantt", metavar="OUT.png", help="draw the Gantt chart")
    p.add_argument("--trace", metavar="OUT.json", help="write a Perfetto/Chrome trace")
    p.add_argument("--listing", metavar="OUT.txt", help="write the command-stream listing")
    p.add_argument("--run", action="store_true",
                   help="run the command streams functionally and compare with the golden run")
    p.add_argument("--seed", type=int_option(0), default=0,
                   help="seed of the example input (--run; >= 0)")
    p.set_defaults(func=cmd_schedule)


def cmd_schedule(args: argparse.Namespace) -> int:
    from .cli import _compile, check_outputs
    from .calibration import cost_model
    from .pool import Pool
    from .schedulers import SCHEDULERS, lower_bound
    check_outputs(args, ("--gantt", "--trace", "--listing"))
    cfg, proto, ops, tiled, secs = _compile(args)
    pool = Pool.from_config(cfg)
    cost = cost_model(pool)           # with the pool's stored calibration, if any
    dag = tiled.dag
    lb = lower_bound(dag, pool, cost)
    print(f"{tiled.name}: {len(tiled)} micro-ops on pool {pool.name} ({len(pool.units)} units), "
          f"lower bound {lb} cycles")
    names = list(SCHEDULERS) if args.scheduler == "all" else [args.scheduler]
    chosen = None
    for name in names:
        t0 = time.perf_counter()
        s = SCHEDULERS[name](dag, pool, cost)
        s.verify(dag)
        print(f"\n{s.summary(lb)}\n  scheduled in {time.perf_counter() - t0:.3f} s")
        chosen = s
    if args.gantt:
        from .report import gantt_png
        print(f"wrote {gantt_png(chosen, args.gantt, dag, lower_bound=lb)}")
    if args.trace:
        from .report import write_trace
        print(f"wrote {write_trace(chosen, args.trace, dag)}")
    if args.listing or args.run:
        from .cli import example_inputs
        from .codegen import compile_schedule
        from .frontend import input_buffer_names
        inputs = None
        if args.run:                   # keyed by the graph's input buffers, not ONNX names
            names = input_buffer_names(proto)
            inputs = {names[k]: v for k, v in example_inputs(proto, args.seed).items()}
        prog = compile_schedule(tiled, chosen, inputs)
        t = prog.token_summary()
        print(f"command streams: {sum(len(s.commands) for s in prog.streams.values())} commands, "
              f"{t['signals']} SIGNALs for {t['cross_tile_edges']} cross-tile dependencies")
        if args.listing:
            Path(args.listing).parent.mkdir(parents=True, exist_ok=True)
            Path(args.listing).write_text(prog.listing() + "\n")
            print(f"wrote {args.listing}")
        if args.run:
            from .funcsim import MismatchError, compare_outputs, golden_outputs, run_program
            res = run_program(prog)
            try:
                compare_outputs(res.outputs, golden_outputs(tiled, inputs))
            except MismatchError as e:
                print(f"functional run of the streams: MISMATCH: {e}")
                return 1
            print("functional run of the streams: outputs equal the golden run bit for bit")
    return 0
