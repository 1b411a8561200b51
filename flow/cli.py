"""The accelpool command line: compile, schedule and simulate models on a pool of accelerators.

Subcommands are registered in :func:`build_parser`, each as an ``add_<name>`` function that
adds its argparse sub-parser and sets ``func`` to a ``cmd_<name>(args) -> int``; to add
one (``schedule``, ...) write the two functions and list ``add_<name>`` in
:data:`SUBCOMMANDS`.

``accelpool compile MODEL.onnx|BUILTIN [--pool configs/default.toml] [--json out.json]
[--dot out.dot]`` imports, decomposes and prints a summary. ``accelpool sim`` runs the
largest flow that exists end to end (see :func:`cmd_sim`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, version as dist_version
from pathlib import Path
from typing import Callable, Sequence

from accelpool.flow.options import (CliError, USER_ERRORS, is_user_error, one_line, check_outputs,
                                    int_option, Parser, DEFAULT_SCHEDULER, DEFAULT_SCHEDULER_HELP,
                                    add_model_args, is_builtin, decompose_options,
                                    compile_from_args, example_inputs)
from accelpool.flow.schedule_cmd import add_schedule, cmd_schedule
from accelpool.sched.ir import OpType
from accelpool.sched.reference import compare_with_onnxruntime
from accelpool.sched.schedulers import SCHEDULERS

from .simflow import RtlNotReady, simulate

__all__ = ["main", "build_parser", "SUBCOMMANDS", "format_summary", "CliError", "USER_ERRORS"]

#: Progress lines (INFO) and detail (DEBUG) on stderr; the results go to stdout.
log = logging.getLogger("accelpool")



def add_compile(sub) -> None:
    p = sub.add_parser("compile", help="ONNX model -> micro-op DAG; print a summary",
                       description="Import an ONNX model (or a built-in one: "
                                   "mlp, cnn, qcnn, gcn, transformer, mixed), decompose it "
                                   "for the pool and print a summary.")
    p.add_argument("model", help="MODEL.onnx, or the name of a built-in model")
    add_model_args(p)
    p.add_argument("--json", metavar="OUT.json", help="write the micro-op DAG as JSON")
    p.add_argument("--dot", metavar="OUT.dot", help="write the micro-op DAG as Graphviz dot")
    p.add_argument("--dump", action="store_true", help="print the IR after every pass")
    p.set_defaults(func=cmd_compile)


def format_summary(proto, ops, tiled, pool, seconds: float) -> str:
    """The text ``accelpool compile`` prints."""
    s = tiled.summary()
    lines = [f"model {tiled.name}: {len(proto.graph.node)} ONNX nodes -> {len(ops)} operator "
             f"micro-ops -> {s['micro_ops']} micro-ops for pool {pool.name!r} "
             f"({seconds:.2f} s)"]
    counts = Counter(n.op_type for n in proto.graph.node)
    lines.append("operators: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    lines.append("")
    rows = {}
    for o in tiled.ops:
        key = (o.op.value + (f".{o.func.value}" if o.func else ""), o.dtype.key,
               "/".join(u.key for u in o.units))
        r = rows.setdefault(key, [0, 0, 0, 0, 0.0])
        r[0] += 1
        r[1] += o.flops
        r[2] += o.bytes_in
        r[3] += o.bytes_out
        r[4] += o.sparsity
    header = ("micro-op", "dtype", "units", "count", "FLOPs", "bytes in", "bytes out",
              "mean sparsity")
    table = [header] + [(k[0], k[1], k[2], str(r[0]), str(r[1]), str(r[2]), str(r[3]),
                         f"{r[4] / r[0]:.2f}") for k, r in sorted(rows.items())]
    table.append(("total", "", "", str(s["micro_ops"]), str(s["flops"]), str(s["bytes_in"]),
                  str(s["bytes_out"]), ""))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j < 3 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0 or i == len(table) - 2:
            lines.append("  ".join("-" * w for w in widths))
    spmm = sum(1 for o in tiled.ops if o.op is OpType.SPMM)
    gemm = sum(1 for o in tiled.ops if o.op is OpType.GEMM)
    chains = {o.attrs["chain"] for o in tiled.ops if "chain" in o.attrs}
    lines.append("")
    lines.append(f"GEMM tiles: {gemm} dense, {spmm} sparse; {len(chains)} accumulation chains; "
                 f"constants {s['const_bytes']} bytes")
    dts = Counter(b.dtype.key for b in tiled.buffers.values() if b.alias_of is None)
    lines.append("buffers by data type: " + ", ".join(f"{k} x{v}" for k, v in sorted(dts.items())))
    return "\n".join(lines)


def cmd_compile(args) -> int:
    dump = (lambda name, g: print(f"--- IR after {name} ---\n{g.dump()}")) if args.dump else None
    check_outputs(args, ("--json", "--dot"))
    pool, proto, ops, tiled, secs = compile_from_args(args, dump)
    print(format_summary(proto, ops, tiled, pool, secs))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tiled.write_json(args.json)
        print(f"wrote {args.json}")
    if args.dot:
        Path(args.dot).parent.mkdir(parents=True, exist_ok=True)
        tiled.write_dot(args.dot)
        print(f"wrote {args.dot}")
    return 0


def add_sim(sub) -> None:
    p = sub.add_parser("sim", help="run a model end to end on the RTL of the pool",
                       description="Build the pool's SoC, discover it, compile and schedule the "
                                   "model, run the command streams in RTL (Verilator or Icarus), "
                                   "compare with the golden reference bit for bit and report "
                                   "measured against predicted cycles.")
    p.add_argument("model", nargs="?", default="mixed",
                   help="built-in model or MODEL.onnx (default: mixed)")
    add_model_args(p)
    p.add_argument("--scheduler", default=DEFAULT_SCHEDULER, choices=list(SCHEDULERS),
                   help=f"scheduler ({DEFAULT_SCHEDULER_HELP})")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="simulator (default: $SIM, else verilator)")
    p.add_argument("--waves", action="store_true", help="dump a waveform of the RTL run")
    p.add_argument("--seed", type=int_option(0), default=0,
                   help="seed of the example input (>= 0)")
    p.add_argument("--golden-only", action="store_true",
                   help="skip RTL: compile, run the golden reference, compare with onnxruntime")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for the Gantt chart and traces (default: the build's reports/)")
    p.set_defaults(func=cmd_sim)


#: Built-in models whose every micro-op codegen lowers on the default pool (``tb/test_e2e.py``
#: runs them on the RTL).
RTL_MODELS = ("mlp", "gcn", "transformer", "qcnn", "cnn", "mixed")


def cmd_sim(args) -> int:
    """``accelpool sim``: the RTL flow of :func:`accelpool.flow.simflow.simulate`, or ``--golden-only``."""
    check_outputs(args, (), ("--out",))
    if not args.golden_only:
        try:
            is_builtin(args.model)             # a misspelt name is refused before the build
            report = simulate(args.model, args.pool, scheduler=args.scheduler, sim=args.sim,
                              waves=args.waves, seed=args.seed, shapes=dict(args.shape),
                              options=decompose_options(args), out_dir=args.out)
        except RtlNotReady as e:
            print(f"accelpool sim: the RTL run is not possible yet: {e}.\n"
                  f"Built-in models that run on the RTL today: {', '.join(RTL_MODELS)} (e.g. "
                  f"`make sim MODEL={RTL_MODELS[1]}` or `accelpool sim {RTL_MODELS[1]}`).\n"
                  f"Running the largest flow that exists instead: compile, golden reference "
                  f"against onnxruntime and schedule ({args.scheduler}).\n")
            return _sim_without_rtl(args)
        print(report.text())
        return 0 if report.outputs_ok else 1
    pool, proto, ops, tiled, secs = compile_from_args(args)
    print(format_summary(proto, ops, tiled, pool, secs))
    inputs = example_inputs(proto, args.seed)
    log.info("sim: running the golden reference and onnxruntime")
    t0 = time.perf_counter()
    results = compare_with_onnxruntime(proto, tiled, inputs)
    print(f"\ngolden reference: ran {len(tiled)} micro-ops in numpy with the units' arithmetic "
          f"({time.perf_counter() - t0:.2f} s), compared with onnxruntime on the original model:")
    for r in results:
        print(f"  {r}")
    return 0 if all(r.ok for r in results) else 1


def _sim_without_rtl(args) -> int:
    """Everything ``sim`` does short of codegen: the golden-only flow, then the schedule."""
    golden_args = argparse.Namespace(**{**vars(args), "golden_only": True})
    status = cmd_sim(golden_args)
    print()
    sched_args = argparse.Namespace(**{**vars(args), "gantt": None, "trace": None,
                                       "listing": None, "report_json": None, "run": False})
    return status or cmd_schedule(sched_args)


#: Sub-parser builders, in help order.

SUBCOMMANDS: list[Callable] = [add_compile, add_schedule, add_sim]


def _stdout_to_devnull() -> None:
    """After a closed pipe (``accelpool ... | head``): point stdout at devnull, so that the
    interpreter's final flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return                                        # not a file (captured)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


_DEBUG_HELP = "show the traceback of an error instead of one line"
_QUIET_HELP = "print results and errors only (no progress lines)"
_VERBOSE_HELP = "also print debugging detail, e.g. the simulator build's output"


def version() -> str:
    """The installed distribution's version."""
    try:
        return dist_version("accelpool")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _global_options(p: argparse.ArgumentParser, default) -> None:
    p.add_argument("--debug", action="store_true", default=default, help=_DEBUG_HELP)
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", default=default, help=_QUIET_HELP)
    loud.add_argument("-v", "--verbose", action="store_true", default=default,
                      help=_VERBOSE_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="accelpool", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"accelpool {version()}")
    _global_options(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    for p in sub.choices.values():       # also after the subcommand
        _global_options(p, argparse.SUPPRESS)
    return parser


class _StderrHandler(logging.Handler):
    """Writes records to whatever ``sys.stderr`` is when they are emitted."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:                               # noqa: BLE001 (logging's contract)
            self.handleError(record)


def configure_logging(quiet: bool = False, verbose: bool = False) -> logging.Logger:
    """The ``accelpool`` logger, on stderr: progress lines at INFO (shown unless
    ``quiet``), detail at DEBUG (shown if ``verbose``)."""
    log = logging.getLogger("accelpool")
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.propagate = False
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``accelpool`` console script.

    Returns
    -------
    int
        The command's status; 2 for bad input (one line on stderr), 1 for an internal
        error (one line; ``--debug`` shows the traceback), 130 on Ctrl-C.
    """
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    configure_logging(getattr(args, "quiet", False), getattr(args, "verbose", False))
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _stdout_to_devnull()
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        return 130
    except Exception as e:
        if debug:
            raise
        if is_user_error(e):
            print(f"accelpool: error: {one_line(e)}", file=sys.stderr)
            return 2
        print(f"accelpool: internal error: {type(e).__name__}: {one_line(e)}; rerun with "
              f"--debug for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
