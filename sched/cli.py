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
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from accelpool.hw.config import DEFAULT_CONFIG, load_config

__all__ = ["main", "build_parser", "SUBCOMMANDS", "format_summary", "CliError", "USER_ERRORS"]

#: Progress lines (INFO) and detail (DEBUG) on stderr; the results go to stdout.
log = logging.getLogger("accelpool")


class CliError(Exception):
    """A bad option value or output path; the message is the line the user sees."""


#: ``(module, class)`` of the errors a user's input can cause: ``accelpool`` reports them in
#: one line and exits 2. Any other exception is an internal error (exit 1).
USER_ERRORS = (
    ("accelpool.sched.cli", "CliError"),
    ("accelpool.sched.frontend", "FrontendError"),
    ("accelpool.hw.config", "ConfigError"),
    ("accelpool.sched.ir", "IRError"),
    ("accelpool.hw.isa", "EncodingError"),
    ("accelpool.hw.tile", "TileError"),
    ("accelpool.sched.pool", "PoolError"),
    ("accelpool.sched.codegen", "CodegenError"),
    ("accelpool.sched.cost.model", "CalibrationError"),
    ("accelpool.sched.golden.executor", "GoldenError"),
    ("accelpool.sched.simflow", "SimFlowError"),
    ("accelpool.tb.soc", "SocFault"),
    ("accelpool.tb.harness", "HarnessError"),
    ("accelpool.tb.toolchain", "ToolchainError"),
)


def _is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`USER_ERRORS` (modules not yet imported are not)."""
    for module, name in USER_ERRORS:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod else None
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _probe_folder(folder: Path) -> str | None:
    """Why no file can be created in the existing folder ``folder``, or None."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".accelpool-probe-")
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    return None


def output_path_problem(path: str | Path, folder: bool = False) -> str | None:
    """Why ``path`` cannot be written (a file, or a folder if ``folder``), or None.

    The folders up to it may be missing (the writers create them) if the nearest existing
    one is a writable folder. Nothing is left behind.
    """
    path = Path(path)
    if path.is_dir() and not folder:
        return "is a directory"
    if path.exists():
        if folder:
            if not path.is_dir():
                return "is not a directory"
            reason = _probe_folder(path)
            return None if reason is None else f"is not writable ({reason})"
        try:
            with open(path, "ab"):
                pass
        except OSError as e:
            return f"cannot be written ({e.strerror})"
        return None
    above = path.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        return f"{above} is not a directory"
    reason = _probe_folder(above)
    return None if reason is None else f"folder {above} is not writable ({reason})"


def check_outputs(args: argparse.Namespace, options: Sequence[str],
                  folders: Sequence[str] = ()) -> None:
    """Refuse, before any work, an output path option of ``args`` that cannot be written.

    Raises
    ------
    CliError
        Naming the option, the path and what is accepted.
    """
    for opt in [*options, *folders]:
        value = getattr(args, opt.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        reason = output_path_problem(value, folder=opt in folders)
        if reason:
            kind = "a folder that exists or can be created" if opt in folders else \
                "a file path in a folder that exists or can be created"
            raise CliError(f"{opt} {value}: {reason}; accepted: {kind}, writable")


def int_option(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=`` for an integer in ``low..high`` (no upper end if None)."""
    accepted = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} refused; accepted: {accepted}")
        return value
    return parse


def fraction_option(text: str) -> float:
    """An argparse ``type=`` for a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} refused; accepted: a number in (0, 1]")
    return value


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    try:
        name, dims = text.split("=", 1)
        shape = tuple(int(d) for d in dims.split(","))
        if name and all(d >= 1 for d in shape):
            return name, shape
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"--shape takes NAME=D0,D1,... with every D an integer >= 1 (for example "
        f"x=1,3,32,32), not {text!r}")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: The scheduler ``schedule`` and ``sim`` use unless told.
DEFAULT_SCHEDULER = "heft"
#: How both helps name :data:`DEFAULT_SCHEDULER`.
DEFAULT_SCHEDULER_HELP = (f"default: {DEFAULT_SCHEDULER}, the fast HEFT list scheduler "
                          f"with insertion")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool", default=str(DEFAULT_CONFIG),
                   help=f"pool config (TOML file, or a name in configs/); default: "
                        f"{DEFAULT_CONFIG.stem} (configs/{DEFAULT_CONFIG.name})")
    p.add_argument("--shape", action="append", type=_parse_shape, default=[],
                   metavar="NAME=D0,D1,...", help="fixed shape for a dynamic graph input")
    p.add_argument("--sparse-threshold", type=fraction_option, default=None,
                   help="weight-tile zero fraction, in (0, 1], from which a GEMM tile "
                        "becomes SPMM")
    p.add_argument("--max-k-tile", type=int_option(1), default=None,
                   help="longest reduction per micro-op (>= 1) before an accumulation chain")


def add_compile(sub) -> None:
    p = sub.add_parser("compile", help="ONNX model -> micro-op DAG; print a summary",
                       description="Import an ONNX model (or a built-in one: "
                                   "mlp, cnn, qcnn, gcn, transformer, mixed), decompose it "
                                   "for the pool and print a summary.")
    p.add_argument("model", help="MODEL.onnx, or the name of a built-in model")
    _add_model_args(p)
    p.add_argument("--json", metavar="OUT.json", help="write the micro-op DAG as JSON")
    p.add_argument("--dot", metavar="OUT.dot", help="write the micro-op DAG as Graphviz dot")
    p.add_argument("--dump", action="store_true", help="print the IR after every pass")
    p.set_defaults(func=cmd_compile)


def _is_builtin(model: str) -> bool:
    """Whether ``model`` names a built-in model (a file of that name wins)."""
    from . import models
    if model in models.BUILTIN_MODELS and not Path(model).exists():
        return True
    p = Path(model)
    if not p.exists() and p.suffix.lower() != ".onnx" and os.sep not in model:
        import difflib
        close = difflib.get_close_matches(model, list(models.BUILTIN_MODELS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CliError(f"{model}: no such file and no built-in model of that name; {hint}"
                       f"accepted: MODEL.onnx or a built-in model "
                       f"({', '.join(models.BUILTIN_MODELS)})")
    return False


def _model_source(model: str):
    """``(source, name)``: a built-in model's proto, or the path of an ONNX file; a name
    that is neither lists the built-ins and suggests the closest (:class:`CliError`)."""
    from . import models
    if _is_builtin(model):
        return models.build(model), model
    return model, Path(model).stem


def decompose_options(args):
    """The :class:`~accelpool.sched.decompose.DecomposeOptions` of ``--sparse-threshold``
    and ``--max-k-tile``; a value out of range is a :class:`CliError` naming the option."""
    from .decompose import DecomposeOptions
    opts = {}
    if args.sparse_threshold is not None:
        opts["sparse_threshold"] = args.sparse_threshold
    if args.max_k_tile is not None:
        opts["max_k_tile"] = args.max_k_tile
    try:
        return DecomposeOptions(**opts)
    except ValueError as e:
        raise CliError(f"--{str(e).replace('_', '-')}") from None


def _compile(args, dump: Callable | None = None):
    """(pool, onnx ModelProto, operator graph, tiled graph, seconds)."""
    from .decompose import decompose
    from .frontend import import_model, load_onnx
    pool = load_config(args.pool)
    options = decompose_options(args)
    shapes = dict(args.shape)
    source, name = _model_source(args.model)
    t0 = time.perf_counter()
    proto = load_onnx(source, shapes)
    ops = import_model(proto, pool, name=name)
    tiled = decompose(ops, pool, options, dump=dump)
    seconds = time.perf_counter() - t0
    log.debug("compile: %s for pool %s (%s): %d micro-ops in %.2f s", name, pool.name,
              pool.source, len(tiled), seconds)
    return pool, proto, ops, tiled, seconds


def example_inputs(proto, seed: int) -> dict:
    """The example inputs of ``proto``; a model they cannot be made for is a :class:`CliError`."""
    from . import models
    try:
        return models.example_inputs(proto, seed=seed)
    except ValueError as e:
        raise CliError(str(e)) from None


def format_summary(proto, ops, tiled, pool, seconds: float) -> str:
    """The text ``accelpool compile`` prints."""
    from .ir import OpType
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
    pool, proto, ops, tiled, secs = _compile(args, dump)
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
    _add_model_args(p)
    from .schedulers import SCHEDULERS
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
    """``accelpool sim``: the RTL flow of :func:`accelpool.sched.simflow.simulate`, or ``--golden-only``."""
    check_outputs(args, (), ("--out",))
    if not args.golden_only:
        from .simflow import RtlNotReady, simulate
        try:
            _is_builtin(args.model)             # a misspelt name is refused before the build
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
    from .golden.executor import compare_with_onnxruntime
    pool, proto, ops, tiled, secs = _compile(args)
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
    from .schedule_cmd import cmd_schedule
    golden_args = argparse.Namespace(**{**vars(args), "golden_only": True})
    status = cmd_sim(golden_args)
    print()
    sched_args = argparse.Namespace(**{**vars(args), "gantt": None, "trace": None,
                                       "listing": None, "report_json": None, "run": False})
    return status or cmd_schedule(sched_args)


#: Sub-parser builders, in help order.
from .schedule_cmd import add_schedule  # noqa: E402

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
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
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
    parser = _Parser(prog="accelpool", description=__doc__.splitlines()[0])
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
        if _is_user_error(e):
            print(f"accelpool: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(f"accelpool: internal error: {type(e).__name__}: {_one_line(e)}; rerun with "
              f"--debug for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
