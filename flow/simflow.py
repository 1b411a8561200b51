"""The end-to-end flow in RTL: model -> schedule -> command streams -> SoC -> results.

:func:`simulate` is what ``accelpool sim`` and ``make sim`` run:

0. preflight (seconds): every unit has RTL; the model compiles for the config's pool and
   codegen lowers every micro-op where the schedule puts it, so an impossible run fails
   before the SoC build (minutes);
1. generate and build the SoC of the pool config (:func:`accelpool.tb.soc.build_soc`), its command
   memories deep enough for the longest stream the preflight compiled (the memory tile's
   stream, LAYOUT micro-ops on its layout engine, is one of the streams);
2. **discovery**: read every tile's capability registers from the simulated SoC and
   build the pool from them (:func:`accelpool.sched.pool.discover`), refusing a config that
   disagrees with the hardware;
3. compile the model and schedule it on the discovered pool; codegen the per-tile
   command streams and the memory image; run them in the functional executor against
   the golden reference first (a missing token or a wrong address is caught before RTL);
4. load the streams and the image into the SoC, run to ``all_done``, read the outputs
   back, compare them bit for bit with the golden reference;
5. report: outputs OK, measured cycles against the predicted makespan (error in %),
   per-unit busy %, NoC traffic, the simulation speed; write one Gantt PNG with the
   predicted and the measured timeline (the measured one from the tiles' hardware traces,
   :mod:`accelpool.flow.measured`) and one Perfetto trace holding both, a process each.

Each stage shows on a tqdm progress bar when stderr is a terminal, otherwise as a line on
the ``accelpool`` logger with the time the stage before took (``-q`` hides them). The
report also goes to ``<model>_<scheduler>_<sim>_report.json`` (:meth:`SimReport.to_dict`);
with ``waves`` the waveform's path is among the files. A stage that cannot run says why: a unit kind
whose RTL is missing (:class:`accelpool.hw.tile.TileError`), a micro-op placed where codegen
emits no command (:class:`accelpool.sched.codegen.NotLowered`), an unschedulable micro-op.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tqdm import tqdm

from accelpool.flow.calibration import cost_model
from accelpool.flow.measured import comparison_png, measured_schedule
from accelpool.flow.report import write_traces
from accelpool.hw.tile import check_buildable
from accelpool.sched import models
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.cost.stream import program_timelines
from accelpool.sched.decompose import DecomposeOptions, compile_model
from accelpool.sched.frontend import input_buffer_names, load_onnx
from accelpool.sched.funcsim import compare_outputs, golden_outputs, run_program
from accelpool.sched.lower.common import NP_DTYPE, NotLowered
from accelpool.sched.pool import Pool, discover
from accelpool.sched.schedulers import SCHEDULERS
from accelpool.spec import isa
from accelpool.spec.config import DEFAULT_CONFIG, PoolConfig, load_config
from accelpool.tb.harness import simulator
from accelpool.tb.soc import (SocJob, build_soc, command_depth_for, run_job,
                              discovered_register_reader)

log = logging.getLogger("accelpool")

__all__ = ["SimFlowError", "SimReport", "simulate", "discover_pool", "image_runs", "STAGES"]

STAGES = ("preflight", "build SoC", "discovery", "schedule", "codegen", "functional check",
          "RTL run", "compare", "report")


class SimFlowError(RuntimeError):
    """A stage of the flow that cannot run; the message names the stage and the reason."""


class RtlNotReady(SimFlowError):
    """The model's command streams cannot be made yet (codegen does not lower a micro-op
    where the schedule places it); everything before codegen still works."""


@dataclass
class SimReport:
    """What one end-to-end run measured."""

    model: str
    pool: str
    scheduler: str
    sim: str
    outputs_ok: bool
    mismatch: str
    measured_cycles: int
    predicted_cycles: int
    unit_busy: Mapping[str, float]
    noc_bytes: int
    sim_seconds: float
    files: Mapping[str, Path] = field(default_factory=dict)
    outputs: Mapping[str, np.ndarray] = field(default_factory=dict)
    stream_cycles: int = 0
    program: Any = None
    trace: Mapping[str, list] = field(default_factory=dict)
    output_ok: Mapping[str, bool] = field(default_factory=dict)

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_cycles - self.measured_cycles) / max(1, self.measured_cycles)

    def __repr__(self) -> str:
        return (f"SimReport(model={self.model!r}, pool={self.pool!r}, scheduler={self.scheduler!r}, "
                f"sim={self.sim!r}, outputs_ok={self.outputs_ok}, measured_cycles="
                f"{self.measured_cycles}, predicted_cycles={self.predicted_cycles}, "
                f"stream_cycles={self.stream_cycles})")

    def to_dict(self) -> dict:
        """The figures :meth:`text` prints, as JSON-able values (``report.json``).

        Returns
        -------
        dict
            Flat values: the run's names, the outputs' check (all, and ``output_ok`` per
            output), cycles measured and predicted (by the schedule, by the streams) with
            their errors in %, cycles/s, NoC bytes, each unit's busy % and the files.
        """
        m = max(1, self.measured_cycles)
        return {
            "model": self.model, "pool": self.pool, "scheduler": self.scheduler,
            "sim": self.sim, "outputs_ok": self.outputs_ok, "mismatch": self.mismatch,
            "output_ok": {k: bool(v) for k, v in self.output_ok.items()},
            "measured_cycles": self.measured_cycles,
            "predicted_cycles": self.predicted_cycles,
            "predicted_error_pct": round(self.error_pct, 4),
            "stream_cycles": self.stream_cycles,
            "stream_error_pct": (round(100.0 * (self.stream_cycles - self.measured_cycles) / m, 4)
                                 if self.stream_cycles else None),
            "cycles_per_second": round(self.measured_cycles / max(self.sim_seconds, 1e-9), 1),
            "sim_seconds": round(self.sim_seconds, 3),
            "noc_bytes": self.noc_bytes,
            "unit_busy_pct": {k: round(v, 4) for k, v in self.unit_busy.items()},
            "files": {k: str(v) for k, v in self.files.items()},
        }

    def text(self) -> str:
        lines = [f"model {self.model} on pool {self.pool} ({self.scheduler}, {self.sim})",
                 f"outputs: {'OK (bit-exact against the golden reference)' if self.outputs_ok else 'MISMATCH: ' + self.mismatch}",
                 f"cycles: measured {self.measured_cycles}, predicted {self.predicted_cycles} "
                 f"by the schedule (error {self.error_pct:+.2f}%)"
                 + (f", {self.stream_cycles} by the compiled streams' timing model "
                    f"({100.0 * (self.stream_cycles - self.measured_cycles) / max(1, self.measured_cycles):+.2f}%)"
                    if self.stream_cycles else ""),
                 f"simulation: {self.measured_cycles / max(self.sim_seconds, 1e-9):,.0f} cycles/s",
                 f"NoC traffic: {self.noc_bytes} bytes moved by LOAD/STORE",
                 "unit busy (EXEC cycles over the run): "
                 + ", ".join(f"{k} {v:.1f}%" for k, v in self.unit_busy.items())]
        lines += [f"wrote {_shown(p)}" for p in self.files.values()]
        return "\n".join(lines)


_REGISTERS: dict[tuple, Any] = {}


def discover_pool(cfg: PoolConfig, build) -> Any:
    """Read the capability registers of the built SoC and build the pool from them.

    The registers are constants of the built model: a process reads them once per build
    (keyed by the build folder and its stamp) and checks every later config against them.

    Raises
    ------
    sched.pool.DiscoveryError
        If the config disagrees with the hardware (each register that differs is named).
    """

    stamp = build.build_dir / ".stamp"
    key = (str(build.build_dir), stamp.read_text() if stamp.exists() else None)
    res = _REGISTERS.get(key)
    if res is None or key[1] is None:
        res = _REGISTERS[key] = run_job(build, SocJob(run=False))
    return discover(cfg, discovered_register_reader(cfg, res))


def image_runs(data: bytes | bytearray, initialized: np.ndarray, gap: int = 64) -> list[tuple[int, bytes]]:
    """The initialized bytes of a memory image as ``(address, bytes)`` runs (gaps <= ``gap`` merged)."""
    idx = np.flatnonzero(initialized)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap) + 1
    runs = []
    for s, e in zip(np.concatenate(([0], breaks)), np.concatenate((breaks, [idx.size]))):
        lo, hi = int(idx[s]), int(idx[e - 1]) + 1
        runs.append((lo, bytes(data[lo:hi])))
    return runs


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when inside it (as ``make sim`` shows it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def simulate(model: str, pool: str | Path = DEFAULT_CONFIG, *, scheduler: str = "heft",
             sim: str | None = None, waves: bool = False, out_dir: Path | None = None,
             progress: bool = True, seed: int = 0, timeout_cycles: int = 20_000_000,
             shapes: Mapping[str, tuple[int, ...]] | None = None,
             options: Any = None) -> SimReport:
    """Run ``model`` end to end on the SoC of ``pool`` (see the module docstring).

    ``shapes`` fixes dynamic input dimensions (``--shape``) and ``options`` is the
    decomposition's :class:`~accelpool.sched.decompose.DecomposeOptions` (``--max-k-tile``,
    ``--sparse-threshold``), as for ``accelpool compile``.

    Raises
    ------
    hw.tile.TileError
        A unit of the pool has no RTL yet.
    sched.pool.DiscoveryError
        The hardware disagrees with the config.
    SimFlowError
        A later stage cannot run (named).
    tb.soc.SocFault
        The RTL run faulted or timed out (naming the tile and the command).
    """

    sim = simulator(sim)
    cfg = load_config(pool)
    check_buildable(cfg)
    stages = _Stages(progress)
    try:
        graph, inputs = _compile(model, cfg, scheduler, shapes, options, seed)
        pre = _preflight(graph, inputs, scheduler, model, cfg)
        stages.done()

        stages.start("build SoC")
        # command memories deep enough for the longest stream (the default depth, else
        # its own build folder)
        depth = command_depth_for(len(s.commands) for s in pre.streams.values())
        build = build_soc(cfg, sim, waves=waves, cmd_depth=depth)
        stages.done()
        stages.start("discovery")
        hw_pool = discover_pool(cfg, build)
        stages.done()

        stages.start("schedule")
        schedule, prog = _codegen(graph, inputs, scheduler, hw_pool)
        stages.done(2)

        stages.start("functional check")
        golden = golden_outputs(graph, inputs)
        compare_outputs(run_program(prog, stores_complete=True).outputs, golden)
        stages.done()

        stages.start("RTL run")
        readback = {name: prog.buffer_region(name) for name in graph.outputs}
        job = SocJob(streams={t: s.binary for t, s in prog.streams.items()},
                     image=image_runs(prog.image.data, prog.image.initialized),
                     readback=readback, timeout_cycles=timeout_cycles)
        run_started = time.time()
        res = run_job(build, job)
        stages.done()
        waves_file = _waves_file(build.build_dir, run_started) if waves else None

        stages.start("compare")
        got, mismatch, output_ok = _check_readback(graph, prog, res.readback, golden)
        stages.done()

        stages.start("report")
        counters = res.counters(cfg)
        busy = {t: 100.0 * c["unit_busy_cycles"] / max(1, res.cycles) for t, c in counters.items()}
        noc = sum(c.fields["length"] for s in prog.streams.values() for c in s.commands
                  if c.opcode in (isa.Opcode.LOAD, isa.Opcode.STORE))
        out_dir = Path(out_dir) if out_dir else build.build_dir.parent / "reports"
        out_dir.mkdir(parents=True, exist_ok=True)
        # named by model, scheduler and simulator, always inside out_dir (never beside a
        # model given by path): a Verilator and an Icarus run keep their own files
        stem = f"{graph.name}_{scheduler}_{sim}"
        files = _write_reports(out_dir, stem, schedule, graph, prog, res.trace, res.cycles)
        if waves_file is not None:
            files["waves"] = waves_file
        report = SimReport(model, cfg.name, scheduler, sim, not mismatch, mismatch, res.cycles,
                           schedule.makespan, busy, noc, res.sim_seconds, files, got,
                           _stream_prediction(prog, cfg), prog, res.trace, output_ok)
        files["report"] = out_dir / f"{stem}_report.json"
        files["report"].write_text(json.dumps(report.to_dict(), indent=1) + "\n")
        stages.done()
        return report
    finally:
        stages.close()


class _Stages:
    """The progress of :func:`simulate` through :data:`STAGES`: a bar on a terminal;
    elsewhere (a CI log, a pipe) one line per stage on the ``accelpool`` logger, with the
    time the one before took. Nothing with ``progress`` False."""

    def __init__(self, progress: bool):

        tty = progress and sys.stderr.isatty()
        self.lines = progress and not tty
        self.bar = tqdm(total=len(STAGES), desc=STAGES[0], disable=not tty, unit="stage")
        self.name, self.t = STAGES[0], time.perf_counter()
        if self.lines:
            log.info("sim: %s", STAGES[0])

    def start(self, name: str) -> None:
        """Enter stage ``name``."""
        self.bar.set_description(name)
        if self.lines:
            log.info("sim: %s (%s took %.1f s)", name, self.name, time.perf_counter() - self.t)
        self.name, self.t = name, time.perf_counter()

    def done(self, n: int = 1) -> None:
        """Count ``n`` stages as finished."""
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _compile(model: str, cfg: PoolConfig, scheduler: str,
             shapes: Mapping[str, tuple[int, ...]] | None, options: Any, seed: int):
    """The micro-op graph of ``model`` (built-in or ONNX file) for ``cfg`` and its example
    inputs by buffer name; an unknown ``scheduler`` is refused first."""

    if scheduler not in SCHEDULERS:
        raise SimFlowError(f"Unknown scheduler {scheduler!r}; accepted: {', '.join(SCHEDULERS)}")
    builtin = model in models.BUILTIN_MODELS and not Path(model).exists()
    proto = models.build(model) if builtin else load_onnx(model, dict(shapes or {}))
    graph = compile_model(proto, cfg, options or DecomposeOptions(),
                          name=model if builtin else Path(model).stem)
    names = input_buffer_names(proto)
    inputs = {names.get(k, k): v for k, v in models.example_inputs(proto, seed=seed).items()}
    return graph, inputs


def _codegen(graph, inputs: Mapping[str, np.ndarray], scheduler: str, pool_):
    """Schedule ``graph`` on ``pool_`` (with the pool's stored calibration, if any) and
    compile the schedule; returns ``(schedule, program)``.

    Raises
    ------
    RtlNotReady
        If codegen does not lower a micro-op where the schedule places it.
    """

    cost = cost_model(pool_)
    sched_ = SCHEDULERS[scheduler](graph.dag, pool_, cost)
    try:
        prog_ = compile_schedule(graph, sched_, inputs, fence=False)
    except NotLowered as e:
        raise RtlNotReady(f"codegen: {e}") from e
    return sched_, prog_


def _preflight(graph, inputs: Mapping[str, np.ndarray], scheduler: str, model: str,
               cfg: PoolConfig):
    """The program of ``graph`` on the pool of ``cfg`` as configured, before any build;
    a failure is a :class:`SimFlowError` naming the model, the scheduler and the pool."""

    try:
        _, pre = _codegen(graph, inputs, scheduler, Pool(cfg))
    except SimFlowError:
        raise
    except Exception as e:
        raise SimFlowError(f"preflight: scheduling {model!r} with {scheduler} on pool "
                           f"{cfg.name!r} failed: {type(e).__name__}: {e}") from e
    return pre


def _check_readback(graph, prog, readback: Mapping[str, bytes], golden: Mapping[str, np.ndarray]
                    ) -> tuple[dict[str, np.ndarray], str, dict[str, bool]]:
    """The graph outputs read back from the RTL run, checked against ``golden`` each on
    its own.

    Returns
    -------
    got : dict
        Output name -> values.
    mismatch : str
        The first mismatch's message, ``''`` if all match.
    output_ok : dict
        Output name -> whether it matches.
    """

    got = {name: prog.layouts[name].unpack(readback[name], NP_DTYPE[graph.base(name).dtype])
           for name in graph.outputs}
    mismatch, output_ok = "", {}
    for name in golden:
        try:
            compare_outputs({name: got[name]}, {name: golden[name]})
            output_ok[name] = True
        except AssertionError as e:
            output_ok[name] = False
            mismatch = mismatch or str(e)
    return got, mismatch, output_ok


def _waves_file(build_dir: Path, since: float) -> Path | None:
    """The waveform the simulator wrote into ``build_dir`` during the run (FST or VCD)."""
    found = [p for ext in ("*.fst", "*.vcd") for p in Path(build_dir).glob(ext)
             if p.stat().st_mtime >= since - 1]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _stream_prediction(prog, cfg: PoolConfig) -> int:
    """The compiled streams' own predicted END (command timing rules with the memory tile's
    contention, :func:`accelpool.sched.cost.stream.program_timelines`)."""
    lines = program_timelines(prog, cfg)
    return max((t[-1] for t in lines.values() if t), default=0)


def _write_reports(out_dir: Path, stem: str, schedule, graph, prog, trace,
                   measured_cycles: int) -> dict[str, Path]:
    """Predicted and measured timelines: one Gantt PNG with both on one time axis, and one
    Perfetto trace holding both (the measured one from the tiles' hardware traces)."""

    measured = measured_schedule(prog, trace)
    return {"gantt": comparison_png(schedule, measured, out_dir / f"{stem}_gantt.png", graph.dag,
                                    measured_cycles=measured_cycles),
            "trace": write_traces({"predicted": schedule, "measured": measured},
                                  out_dir / f"{stem}_trace.json", graph.dag)}
