"""What the CLI's subcommands share: user errors, option types, the model arguments and
loading a model from them."""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

from accelpool.sched import models
from accelpool.sched.decompose import DecomposeOptions, decompose
from accelpool.sched.frontend import import_model, load_onnx
from accelpool.spec.config import DEFAULT_CONFIG, load_config

#: The CLI's logger (progress lines on stderr).
log = logging.getLogger("accelpool")

__all__ = ["CliError", "is_user_error", "one_line", "Parser", "is_builtin", "USER_ERRORS",
           "output_path_problem", "check_outputs", "int_option", "fraction_option",
           "DEFAULT_SCHEDULER", "DEFAULT_SCHEDULER_HELP", "add_model_args",
           "decompose_options", "compile_from_args", "example_inputs"]


class CliError(Exception):
    """A bad option value or output path; the message is the line the user sees."""


#: ``(module, class)`` of the errors a user's input can cause: ``accelpool`` reports them in
#: one line and exits 2. Any other exception is an internal error (exit 1).
USER_ERRORS = (
    ("accelpool.flow.cli", "CliError"),
    ("accelpool.sched.frontend", "FrontendError"),
    ("accelpool.spec.config", "ConfigError"),
    ("accelpool.sched.ir", "IRError"),
    ("accelpool.spec.isa", "EncodingError"),
    ("accelpool.hw.tile", "TileError"),
    ("accelpool.sched.pool", "PoolError"),
    ("accelpool.sched.codegen", "CodegenError"),
    ("accelpool.sched.cost.model", "CalibrationError"),
    ("accelpool.sched.reference", "GoldenError"),
    ("accelpool.flow.simflow", "SimFlowError"),
    ("accelpool.tb.soc", "SocFault"),
    ("accelpool.tb.harness", "HarnessError"),
    ("accelpool.tb.toolchain", "ToolchainError"),
)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of :data:`USER_ERRORS` (modules not yet imported are not)."""
    for module, name in USER_ERRORS:
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod else None
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def one_line(exc: BaseException) -> str:
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


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: The scheduler ``schedule`` and ``sim`` use unless told.
DEFAULT_SCHEDULER = "heft"
#: How both helps name :data:`DEFAULT_SCHEDULER`.
DEFAULT_SCHEDULER_HELP = (f"default: {DEFAULT_SCHEDULER}, the fast HEFT list scheduler "
                          f"with insertion")


def add_model_args(p: argparse.ArgumentParser) -> None:
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


def is_builtin(model: str) -> bool:
    """Whether ``model`` names a built-in model (a file of that name wins)."""
    if model in models.BUILTIN_MODELS and not Path(model).exists():
        return True
    p = Path(model)
    if not p.exists() and p.suffix.lower() != ".onnx" and os.sep not in model:
        close = difflib.get_close_matches(model, list(models.BUILTIN_MODELS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise CliError(f"{model}: no such file and no built-in model of that name; {hint}"
                       f"accepted: MODEL.onnx or a built-in model "
                       f"({', '.join(models.BUILTIN_MODELS)})")
    return False


def _model_source(model: str):
    """``(source, name)``: a built-in model's proto, or the path of an ONNX file; a name
    that is neither lists the built-ins and suggests the closest (:class:`CliError`)."""
    if is_builtin(model):
        return models.build(model), model
    return model, Path(model).stem


def decompose_options(args):
    """The :class:`~accelpool.sched.decompose.DecomposeOptions` of ``--sparse-threshold``
    and ``--max-k-tile``; a value out of range is a :class:`CliError` naming the option."""
    opts = {}
    if args.sparse_threshold is not None:
        opts["sparse_threshold"] = args.sparse_threshold
    if args.max_k_tile is not None:
        opts["max_k_tile"] = args.max_k_tile
    try:
        return DecomposeOptions(**opts)
    except ValueError as e:
        raise CliError(f"--{str(e).replace('_', '-')}") from None


def compile_from_args(args, dump: Callable | None = None):
    """(pool, onnx ModelProto, operator graph, tiled graph, seconds)."""
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
    try:
        return models.example_inputs(proto, seed=seed)
    except ValueError as e:
        raise CliError(str(e)) from None
