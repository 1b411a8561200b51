"""Running command streams on the generated SoC: build, load, run, read back, diagnose.

Two sides:

- the **host side** (pytest, the CLI): :func:`build_soc` writes ``sim_build/<name>-<digest>/soc.v``
  (:mod:`accelpool.hw.soc`) and builds it for Verilator (``--timing``: the clock is generated in
  HDL) or Icarus into ``sim_build/<name>-<digest>/<sim>/``; :func:`run_job` runs one
  :class:`SocJob` (command streams, memory image, what to read back) in a simulator
  process and returns a :class:`SocResult`, raising :class:`SocFault` with a message that
  names the tile and the command when the run stops on a fault or times out;
- the **cocotb side**: :class:`SocDriver` loads command memories and the global memory in
  bulk through the SoC's host ports, pulses ``start`` and sleeps until ``all_done`` rises
  (or the timeout): Python runs only at transaction boundaries. The SoC's clock runs at
  the pool's ``clock_mhz`` (:func:`accelpool.hw.soc.clock_period_ps`), and every wait of the
  driver is a number of cycles or a fraction of that period.

:mod:`accelpool.tb.soc_job` is the cocotb test module that carries a job file through a simulation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import pickle
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from amaranth.back import verilog

from accelpool.hw.soc import (SOC_TOP, SOC_WRAPPER, Soc, clock_period_ps, clock_wrapper,
                              zero_init_skipped)
from accelpool.hw.tile import REGISTERS, STATUS_BITS
from accelpool.spec import isa
from accelpool.spec.config import (DEFAULT_CONFIG, ConfigError, PoolConfig, TileConfig, UnitKind,
                                   load_config, UNIT_DTYPES)
from accelpool.tb import harness
from accelpool.tb.harness import (locked, HarnessError, simulator, simulator_environment,
                                  verilator_lint_args, run_tests)
from accelpool.tb.toolchain import iverilog_version, verilator_version
from accelpool.tb.verilog import lint

log = logging.getLogger("accelpool")

__all__ = ["SocJob", "SocResult", "SocFault", "build_soc", "run_job", "run_soc_tests",
           "SocDriver", "diagnose", "run_jobs", "soc_build_dir", "JOB_ENV",
           "DEFAULT_CMD_DEPTH", "command_depth_for",
           "start_up_safe", "zero_memories", "simulation_text"]

JOB_ENV = "ACCELPOOL_SOC_JOB"


class SocFault(RuntimeError):
    """A run of the SoC stopped on a fault, an error or a timeout; the message says where."""


@dataclass
class SocJob:
    """What one simulation run does.

    Attributes
    ----------
    streams : mapping tile name -> bytes
        Each tile's command stream (:func:`accelpool.spec.isa.assemble`), the memory tile's too (by
        its name in the config); tiles not named get a lone END.
    image : list of (byte address, bytes)
        Global memory contents to load before the run.
    readback : mapping name -> (byte address, length)
        Global memory regions to read after the run.
    timeout_cycles : int
        Give up (and report every tile still running) after this many cycles.
    run : bool
        False: only read the registers (discovery).
    """

    streams: Mapping[str, bytes] = field(default_factory=dict)
    image: list = field(default_factory=list)
    readback: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    timeout_cycles: int = 1_000_000
    run: bool = True


@dataclass
class SocResult:
    """What a run measured.

    Attributes
    ----------
    registers : dict position -> dict register name -> value
        Every register of every mesh position, read after the run (before it for a
        discovery-only job); position is ``y * cols + x``.
    identity : dict position -> dict register name -> value
        The registers as read right after reset, before loading anything.
    readback : dict name -> bytes
    memory_tokens : list of int
        The memory tile's token counters after the run (SIGNALs sent to it).
    trace : dict tile name -> list of int
        Per tile given a stream (the memory tile too), the cycle each command of its
        stream issued (END: finished),
        from the tile's trace memory (:class:`accelpool.hw.tile.ComputeTile`); commands after a
        fault or a timeout hold stale values.
    cycles : int
        SoC cycles from ``start`` to ``all_done``.
    status : str
        ``"ok"``, ``"fault"`` or ``"timeout"``.
    message : str
        The diagnosis when not ok.
    sim_seconds : float
        Wall time of the run alone (start to all_done).
    load_seconds : float
        Wall time of the bulk loads and read-backs.
    """

    registers: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    readback: dict = field(default_factory=dict)
    cycles: int = 0
    status: str = "ok"
    message: str = ""
    sim_seconds: float = 0.0
    load_seconds: float = 0.0
    memory_tokens: list = field(default_factory=list)
    trace: dict = field(default_factory=dict)

    def tile_registers(self, cfg: PoolConfig, name: str) -> dict:
        t = cfg.tile(name)
        return self.registers[t.y * cfg.mesh.cols + t.x]

    def counters(self, cfg: PoolConfig) -> dict[str, dict[str, int]]:
        """Per tile (the memory tile last): the controller's cycle counters of the run."""
        keys = ("cycles", "unit_busy_cycles", "ni_busy_cycles", "wait_cycles", "stall_cycles")
        return {t.name: {k: self.tile_registers(cfg, t.name)[k] for k in keys}
                for t in programmable_tiles(cfg)}

    @property
    def cycles_per_second(self) -> float:
        return self.cycles / self.sim_seconds if self.sim_seconds > 0 else 0.0


# ---- diagnosis (plain Python, used by the cocotb side and testable without a simulator) --

def _status(regs: Mapping[str, int], bit: str) -> bool:
    return bool(regs["status"] >> STATUS_BITS[bit] & 1)


def _command_text(stream: bytes, pc: int, kind: UnitKind) -> str:
    off = pc * isa.COMMAND_BYTES
    if off + isa.COMMAND_BYTES > len(stream):
        return f"command {pc} (past the end of the {len(stream) // isa.COMMAND_BYTES}-command stream)"
    word = int.from_bytes(stream[off:off + isa.COMMAND_BYTES], "little")
    try:
        text = isa.decode(word, kind).listing()
    except isa.EncodingError as e:
        text = f"undecodable word 0x{word:064x} ({e})"
    return f"command {pc} ({text})"


def _last(stream: bytes, pc: int, opcodes) -> int:
    """Index of the last command at or before ``pc`` with one of ``opcodes`` (else ``pc``)."""
    values = {o.value for o in opcodes}
    for i in range(min(pc, len(stream) // isa.COMMAND_BYTES - 1), -1, -1):
        if stream[i * isa.COMMAND_BYTES] & 0xF in values:
            return i
    return pc


def _dropped_dma(cfg: PoolConfig, stream: bytes, pc: int, kind: UnitKind) -> int:
    """Index of the first LOAD/STORE/SIGNAL at or before ``pc`` that the network interface
    drops (``hw.noc.ni``: a scratchpad or remote address not a multiple of the flit size, or
    a destination outside the mesh); else the last of those commands at or before ``pc``."""
    fb = cfg.mesh.flit_bits // 8
    dma = {isa.Opcode.LOAD, isa.Opcode.STORE, isa.Opcode.SIGNAL}
    for i in range(min(pc + 1, len(stream) // isa.COMMAND_BYTES)):
        word = int.from_bytes(stream[i * isa.COMMAND_BYTES:(i + 1) * isa.COMMAND_BYTES], "little")
        try:
            cmd = isa.decode(word, kind)
        except isa.EncodingError:
            continue
        if cmd.opcode not in dma:
            continue
        f = cmd.fields
        if f["x"] >= cfg.mesh.cols or f["y"] >= cfg.mesh.rows:
            return i
        if cmd.opcode is not isa.Opcode.SIGNAL and (f["spad_addr"] % fb or f["remote_addr"] % fb):
            return i
    return _last(stream, pc, tuple(dma))


def programmable_tiles(cfg: PoolConfig) -> list[TileConfig]:
    """The tiles that run a command stream: the compute tiles in config order, then the
    memory tile (the order of the SoC's ``cmd_tile`` index, :class:`accelpool.hw.soc.Soc`)."""
    return list(cfg.units) + [cfg.memory]


def _range_problem(cfg: PoolConfig, tile: TileConfig, cmd: isa.Command) -> str:
    f = cmd.fields
    if cmd.opcode is isa.Opcode.SIGNAL:
        return f"SIGNAL to ({f['x']}, {f['y']}), where there is no tile"
    if cmd.opcode is isa.Opcode.EXEC:
        problems = isa.exec_spec(tile.kind).problems(f["func"], f["args"])
        return (f"the {tile.kind.key} unit refuses it: {'; '.join(problems)}" if problems
                else "the unit refused it")
    if tile.kind is UnitKind.MEMORY:
        return (f"{cmd.opcode.name} is not a command of the memory tile (it runs WAIT, "
                f"EXEC, SIGNAL, NOP and END)")
    problems = []
    end_local = f["spad_addr"] + f["length"]
    if end_local > tile.scratchpad_bytes:
        problems.append(f"scratchpad bytes 0x{f['spad_addr']:x}..0x{end_local - 1:x} are beyond "
                        f"its {tile.scratchpad_bytes} bytes")
    dest = cfg.at(f["x"], f["y"])
    end_remote = f["remote_addr"] + f["length"]
    if dest is None:
        problems.append(f"there is no tile at ({f['x']}, {f['y']})")
    else:
        size = dest["bytes"] if dest.kind is UnitKind.MEMORY else dest.scratchpad_bytes
        if end_remote > size:
            what = "global memory" if dest.kind is UnitKind.MEMORY else f"{dest.name}'s scratchpad"
            problems.append(f"{what} bytes 0x{f['remote_addr']:x}..0x{end_remote - 1:x} are "
                            f"beyond its {size} bytes (0x0..0x{size - 1:x})")
    return "; ".join(problems) or "out of range"


def diagnose(cfg: PoolConfig, streams: Mapping[str, bytes], registers: Mapping[int, Mapping[str, int]],
             timed_out: bool, cycles: int) -> str:
    """Explain why a run stopped badly: one line per tile that faulted, erred or hung.

    Parameters
    ----------
    cfg : PoolConfig
    streams : mapping tile name -> bytes
        The command streams that were loaded.
    registers : mapping position -> registers
        As read back from the SoC after the run.
    timed_out : bool
        Whether the run hit its timeout.
    cycles : int
        Cycles simulated.
    """
    lines = []
    for t in programmable_tiles(cfg):
        regs = registers[t.y * cfg.mesh.cols + t.x]
        stream = streams.get(t.name, b"")
        where = f"tile {t.name} ({t.kind.key} at ({t.x}, {t.y}))"
        pc = regs["pc"]
        if _status(regs, "range_fault"):
            lines.append(f"{where} halted at {_command_text(stream, pc, t.kind)}: its unit "
                         f"addressed the scratchpad beyond its {t.scratchpad_bytes} bytes while "
                         f"running {_command_text(stream, regs['error_pc'], t.kind)} (those "
                         f"accesses were not made)")
        elif _status(regs, "fault"):
            off = pc * isa.COMMAND_BYTES
            try:
                cmd = isa.decode(int.from_bytes(stream[off:off + isa.COMMAND_BYTES], "little"),
                                 t.kind)
            except isa.EncodingError:       # the word itself is shown by _command_text
                lines.append(f"{where} halted at {_command_text(stream, pc, t.kind)}")
            else:
                lines.append(f"{where} halted at {_command_text(stream, pc, t.kind)}: "
                             f"{_range_problem(cfg, t, cmd)}")
        if _status(regs, "error") and regs["error_pc"] * isa.COMMAND_BYTES >= len(stream):
            lines.append(f"{where} ran past the end of its "
                         f"{len(stream) // isa.COMMAND_BYTES}-command stream: it has no END")
        elif _status(regs, "error"):
            epc = regs["error_pc"]
            lines.append(f"{where} stopped with an error at {_command_text(stream, epc, t.kind)}"
                         f": unknown opcode or ran past the end of the command memory")
        if _status(regs, "ni_error"):
            i = _dropped_dma(cfg, stream, pc, t.kind)
            lines.append(f"{where}: its network interface dropped {_command_text(stream, i, t.kind)}"
                         f" (an address not a multiple of the {cfg.mesh.flit_bits // 8}-byte "
                         f"flit, or a destination outside the mesh)")
        if _status(regs, "token_error"):
            lines.append(f"{where}: a WAIT or SIGNAL used a token number beyond its counters")
        if timed_out and not (_status(regs, "done") or _status(regs, "fault")
                              or _status(regs, "error")):
            off = pc * isa.COMMAND_BYTES
            why = ""
            op = None
            if off + isa.COMMAND_BYTES <= len(stream):
                op = int.from_bytes(stream[off:off + isa.COMMAND_BYTES], "little") & 0xF
            if op == isa.Opcode.WAIT.value:
                why = ": waiting for a token nobody sent"
            elif _status(regs, "unit_busy"):
                i = _last(stream, pc, (isa.Opcode.EXEC,))
                why = f": the unit never completed {_command_text(stream, i, t.kind)}"
            elif _status(regs, "ni_busy"):
                i = _last(stream, pc, (isa.Opcode.LOAD, isa.Opcode.STORE, isa.Opcode.SIGNAL))
                why = (f": the network interface never completed "
                       f"{_command_text(stream, i, t.kind)}")
            lines.append(f"{where} did not finish within {cycles} cycles: stuck at "
                         f"{_command_text(stream, pc, t.kind)}{why}")
    if timed_out:
        head = f"Timeout after {cycles} cycles"
    else:
        head = f"The run stopped after {cycles} cycles"
    return head + ":\n  " + ("\n  ".join(lines) if lines else "no tile reports a problem")


# ---- cocotb side -----------------------------------------------------------------------

#: Written after every stream a job loads: a word with an opcode no tile runs (14), so a
#: stream without END stops with the controller's error at its end instead of running on
#: into commands an earlier job left in the command memory. A stream that fills the memory
#: leaves no room for it and needs none: the controller stops with the same error when it
#: runs past the end of the memory.
GUARD_WORD = (14).to_bytes(isa.COMMAND_BYTES, "little")


class SocDriver:
    """Drives the SoC's host interface from cocotb (toplevel :data:`accelpool.hw.soc.SOC_WRAPPER`).

    Parameters
    ----------
    dut : cocotb handle
        The ``soc_top`` wrapper; its ``clk`` is generated in HDL at the pool's ``clock_mhz``.
    cfg : PoolConfig
        The pool the SoC was built from.

    Attributes
    ----------
    period_ps : int
        The clock period (:func:`accelpool.hw.soc.clock_period_ps`); :meth:`run`'s timeout
        is a number of these.
    sample_ps : int
        How long after a rising edge outputs are read: a quarter period, halfway between
        the rising and the falling edge, so that a read never shares a time step with an
        edge of the clock.
    """

    def __init__(self, dut, cfg: PoolConfig):
        self.dut = dut
        self.cfg = cfg
        self.clk = dut.clk
        self.period_ps = clock_period_ps(cfg)
        self.sample_ps = self.period_ps // 4
        self.flit_bytes = cfg.mesh.flit_bits // 8
        self.units = programmable_tiles(cfg)

    async def _sample(self) -> None:
        """Wait for the next rising edge, then :attr:`sample_ps`: outputs that follow the
        inputs written before it (or registered on that edge) have settled."""
        from cocotb.triggers import RisingEdge, Timer
        await RisingEdge(self.clk)
        await Timer(self.sample_ps, "ps")

    async def reset(self) -> None:
        """Hold reset for a few cycles with every host input idle."""
        from cocotb.triggers import ClockCycles, RisingEdge
        d = self.dut
        for name in ("start", "mem_addr", "mem_wdata", "mem_we", "mem_re", "token_sel",
                     "cmd_tile", "cmd_addr", "cmd_data", "cmd_en", "reg_pos", "reg_addr",
                     "trace_addr"):
            getattr(d, name).value = 0
        d.rst.value = 1
        await ClockCycles(self.clk, 3)
        d.rst.value = 0
        await RisingEdge(self.clk)

    async def write_commands(self, tile: str, stream: bytes) -> None:
        """Load ``stream`` (assembled commands) into the command memory of ``tile``."""
        from cocotb.triggers import RisingEdge
        index = [t.name for t in self.units].index(tile)
        d = self.dut
        d.cmd_tile.value = index
        for i in range(0, len(stream), isa.COMMAND_BYTES):
            d.cmd_addr.value = i // isa.COMMAND_BYTES
            d.cmd_data.value = int.from_bytes(stream[i:i + isa.COMMAND_BYTES], "little")
            d.cmd_en.value = 1
            await RisingEdge(self.clk)
        d.cmd_en.value = 0

    async def write_memory(self, addr: int, blob: bytes) -> None:
        """Write ``blob`` into the global memory at byte ``addr`` (any alignment)."""
        from cocotb.triggers import RisingEdge
        fb = self.flit_bytes
        d = self.dut
        first = addr - addr % fb
        end = addr + len(blob)
        for word in range(first, end, fb):
            lo, hi = max(word, addr), min(word + fb, end)
            chunk = blob[lo - addr:hi - addr]
            shift = lo - word
            d.mem_addr.value = word // fb
            d.mem_wdata.value = int.from_bytes(chunk, "little") << (8 * shift)
            d.mem_we.value = ((1 << len(chunk)) - 1) << shift
            await RisingEdge(self.clk)
        d.mem_we.value = 0

    async def read_memory(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes of global memory from byte ``addr``."""
        from cocotb.triggers import RisingEdge
        fb = self.flit_bytes
        d = self.dut
        first = addr - addr % fb
        out = bytearray()
        # Prime the read port with the first address for one cycle before the loop: on
        # Verilator the first word read right after other host activity came back stale.
        d.mem_re.value = 1
        d.mem_addr.value = first // fb
        await RisingEdge(self.clk)
        for word in range(first, addr + length, fb):
            d.mem_addr.value = word // fb
            await self._sample()
            out += int(d.mem_rdata.value).to_bytes(fb, "little")
        d.mem_re.value = 0
        return bytes(out[addr - first:addr - first + length])

    async def read_registers(self, pos: int) -> dict[str, int]:
        """Every register of mesh position ``pos`` (``y * cols + x``), one a cycle (the
        register mux is combinational; reading a cycle after the address keeps every read
        off the clock's edges)."""
        d = self.dut
        d.reg_pos.value = pos
        regs = {}
        for name, index in REGISTERS.items():
            d.reg_addr.value = index
            await self._sample()
            regs[name] = int(d.reg_data.value)
        return regs

    async def read_trace(self, tile: TileConfig, count: int) -> list[int]:
        """The first ``count`` entries of ``tile``'s trace (issue cycle per command)."""
        from cocotb.triggers import RisingEdge
        d = self.dut
        d.reg_pos.value = tile.y * self.cfg.mesh.cols + tile.x
        # Prime the position for one cycle (the trace mux selects with the position of
        # the previous cycle): on Verilator entry 0 otherwise came back from the tile
        # read before (the last position of read_all_registers).
        d.trace_addr.value = 0
        await RisingEdge(self.clk)
        out = []
        for i in range(count):
            d.trace_addr.value = i
            await self._sample()
            out.append(int(d.trace_data.value))
        return out

    async def read_memory_tokens(self, count: int = 16) -> list[int]:
        """The memory tile's token counters 0..count-1, one a cycle (as :meth:`read_registers`)."""
        out = []
        for i in range(count):
            self.dut.token_sel.value = i
            await self._sample()
            out.append(int(self.dut.token_value.value))
        return out

    async def read_all_registers(self) -> dict[int, dict[str, int]]:
        mesh = self.cfg.mesh
        return {pos: await self.read_registers(pos) for pos in range(mesh.cols * mesh.rows)}

    async def run(self, timeout_cycles: int) -> tuple[bool, int]:
        """Start every tile and sleep until ``all_done`` or the timeout
        (``timeout_cycles`` periods of the clock).

        Returns
        -------
        (finished, cycles)
        """
        from cocotb.triggers import First, RisingEdge, Timer
        d = self.dut
        d.start.value = 1
        await RisingEdge(self.clk)
        d.start.value = 0
        done = RisingEdge(d.all_done)
        fired = await First(done, Timer(timeout_cycles * self.period_ps, "ps"))
        finished = fired is done
        await RisingEdge(self.clk)
        return finished, int(d.cycles.value)

    async def execute(self, job: SocJob) -> SocResult:
        """Reset, read identity, load, run, read back and diagnose one job."""
        res = SocResult()
        await self.reset()
        res.identity = await self.read_all_registers()
        if not job.run:
            res.registers = res.identity
            return res
        t0 = time.perf_counter()
        streams = {t.name: job.streams.get(t.name) or isa.assemble([isa.end()])
                   for t in self.units}
        for t in self.units:
            stream = streams[t.name]
            depth = res.identity[t.y * self.cfg.mesh.cols + t.x]["cmd_depth"]
            fits = len(stream) // isa.COMMAND_BYTES < depth
            await self.write_commands(t.name, stream + GUARD_WORD if fits else stream)
        for addr, blob in job.image:
            await self.write_memory(addr, bytes(blob))
        t1 = time.perf_counter()
        finished, cycles = await self.run(job.timeout_cycles)
        t2 = time.perf_counter()
        res.sim_seconds = t2 - t1
        res.cycles = cycles if finished else job.timeout_cycles
        res.registers = await self.read_all_registers()
        res.memory_tokens = await self.read_memory_tokens()
        for t in self.units:
            if t.name in job.streams:
                res.trace[t.name] = await self.read_trace(
                    t, len(streams[t.name]) // isa.COMMAND_BYTES)
        for name, (addr, length) in job.readback.items():
            res.readback[name] = await self.read_memory(addr, length)
        res.load_seconds = (t1 - t0) + (time.perf_counter() - t2)
        any_fault = int(self.dut.any_fault.value)
        if not finished:
            res.status = "timeout"
            res.message = diagnose(self.cfg, streams, res.registers, True, job.timeout_cycles)
        elif any_fault:
            res.status = "fault"
            res.message = diagnose(self.cfg, streams, res.registers, False, cycles)
        return res


# ---- host side -------------------------------------------------------------------------

#: Commands each tile's command memory holds in a default build (:func:`build_soc`).
DEFAULT_CMD_DEPTH = 1024


def soc_build_dir(cfg: PoolConfig, cmd_depth: int = DEFAULT_CMD_DEPTH) -> Path:
    """The build folder of a pool's SoC: ``sim_build/<name>-<digest>``.

    Keyed on the config's name and :attr:`~accelpool.spec.config.PoolConfig.digest`, so two
    configs with one name build apart and one config always builds in the same folder. A
    build with deeper command memories gets its own folder,
    ``sim_build/<name>-<digest>_cmd<depth>`` (so builds of both depths coexist).

    Parameters
    ----------
    cfg : PoolConfig
        The pool; its validated ``name`` holds no path separators.
    cmd_depth : int
        Commands each tile's command memory holds.
    """
    folder = f"{cfg.name}-{cfg.digest}"
    # The build root is read when asked (harness.SIM_BUILD), not when this module loads.
    return harness.SIM_BUILD / (folder if cmd_depth == DEFAULT_CMD_DEPTH else f"{folder}_cmd{cmd_depth}")


def command_depth_for(lengths: Iterable[int]) -> int:
    """The command-memory depth a build needs for streams of ``lengths`` commands: the
    default, or the smallest power of two holding the longest stream."""
    longest = max(lengths, default=0)
    return max(DEFAULT_CMD_DEPTH, 1 << max(0, longest - 1).bit_length())


def _source_key(cfg: PoolConfig, kw: Mapping[str, Any]) -> str:
    """A hash of everything the SoC's Verilog depends on: the config (its clock for the
    wrapper's), and the sources of the RTL and of the contracts below it (``hw/`` and
    ``spec/``)."""
    tiles = [(t.name, t.kind, t.x, t.y, t.dtypes, sorted(t.params.items())) for t in cfg.tiles]
    h = hashlib.sha256(repr((cfg.name, cfg.clock_mhz, cfg.mesh, tiles, sorted(kw.items())))
                       .encode())
    root = Path(__file__).resolve().parent.parent
    for layer in ("spec", "hw"):
        for p in sorted((root / layer).rglob("*.py")):
            if not p.name.startswith("test_"):
                h.update(p.relative_to(root).as_posix().encode())
                h.update(p.read_bytes())
    return h.hexdigest()


_TRIGGER = re.compile(r"^  reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+)  = 0;$", re.M)
_SINGLE_ALWAYS = re.compile(r"^( *)always @\*\n( *)(?!begin)([^\n]*;)\n", re.M)


def start_up_safe(text: str) -> str:
    """Make every combinational block of Yosys's Verilog run once after time zero.

    Yosys writes combinational logic as ``always @*`` blocks that read a per-module
    trigger register (``reg \\$auto$verilog_backend...  = 0``) so that they run once at
    start-up; but a declaration's initial value is no event in Icarus, so a block whose
    real inputs keep their initial values never runs and its outputs stay X (an NI's
    ``req_out.valid`` stayed X and no packet reached a compute tile). Single-statement
    blocks (a constant slice such as the NI's header ``src_x``, Verilator's ALWNEVER) do
    not even read the trigger, and Verilator drops them: packets then carry a wrong
    source and their acknowledgements and read responses go astray. This pass makes every
    ``always @*`` read the trigger and adds ``initial #0.001 trigger = 1`` per module, so
    each block runs once, 1 ps in, in both simulators (Verilator with ``--timing``).
    """
    out = []
    for chunk in re.split(r"(?=^module )", text, flags=re.M):
        if not chunk.startswith("module "):
            out.append(chunk)
            continue
        m = _TRIGGER.search(chunk)
        if m:
            trig = m.group(1)
            head_end = m.end()
        else:
            trig = "\\icarus_t0"
            head_end = chunk.index(");") + 2
            chunk = chunk[:head_end] + f"\n  reg {trig}  = 0;" + chunk[head_end:]
            head_end += len(f"\n  reg {trig}  = 0;")
        chunk = (chunk[:head_end] + f"\n  initial #0.001 {trig}  = 1;" + chunk[head_end:])
        chunk = _SINGLE_ALWAYS.sub(
            lambda mt: (f"{mt.group(1)}always @* begin\n{mt.group(2)}if ({trig} ) begin end\n"
                        f"{mt.group(2)}{mt.group(3)}\n{mt.group(1)}end\n"), chunk)
        out.append(chunk)
    return "".join(out)


_ZERO_INIT = re.compile(
    r"^  initial begin\n"
    r"((?:    (?:\\\S+ |[A-Za-z_][\w$]*)\[\d+\] = \d+'h0+;\n)+)"
    r"  end\n", re.M)
_ZERO_LINE = re.compile(r"    (\\\S+ |[A-Za-z_][\w$]*)\[(\d+)\] = (\d+)'h0+;\n")
_MEM_DECL = re.compile(r"^  reg (?:\[(\d+):0\] )?(\\\S+ |[A-Za-z_][\w$]*) \[(\d+):(\d+)\];\n"
                       r"(?!  initial begin)", re.M)


def zero_memories(text: str) -> str:
    """Give every memory of Yosys's Verilog a one-loop zero initialisation.

    ``lib.memory.Memory(init=[])`` makes Yosys write ``mem[i] = 64'h0...;`` for every
    word: 131k lines for a 1 MiB global memory, a third of the default SoC's Verilog, which
    Verilator turns into C++ that takes minutes to compile. An ``initial`` block that sets
    words ``lo..hi`` of one memory to zero, in order and nothing else, becomes::

        initial begin : accelpool_zero_<n>
          integer i;
          for (i = lo; i <= hi; i = i + 1) mem[i] = 64'h0;
        end

    which both simulators run at time 0 as before, so every memory still starts at zero
    (the compiler relies on zero padding). Any other ``initial`` block (a ROM's contents)
    is left as it is. A memory declared with no ``initial`` block after it (Amaranth
    memories always have initial contents; :func:`write_soc` leaves out the
    all-zero ones, see :func:`accelpool.hw.soc.zero_init_skipped`) gets the same loop over its
    whole range.
    """
    count = 0

    def block(name: str, width: str, lo: int, hi: int) -> str:
        nonlocal count
        count += 1
        return (f"  initial begin : accelpool_zero_{count}\n"
                f"    integer i;\n"
                f"    for (i = {lo}; i <= {hi}; i = i + 1)\n"
                f"      {name}[i] = {width}'h0;\n"
                f"  end\n")

    def loop(m: re.Match) -> str:
        words = _ZERO_LINE.findall(m.group(1))
        names = {n for n, _, _ in words}
        widths = {w for _, _, w in words}
        index = [int(i) for _, i, _ in words]
        lo = index[0]
        if len(names) != 1 or len(widths) != 1 or index != list(range(lo, lo + len(index))):
            return m.group(0)
        return block(names.pop(), widths.pop(), lo, index[-1])

    def declared(m: re.Match) -> str:
        msb, name, a, b = m.groups()
        width = int(msb) + 1 if msb is not None else 1
        return m.group(0) + block(name, str(width), min(int(a), int(b)), max(int(a), int(b)))

    return _MEM_DECL.sub(declared, _ZERO_INIT.sub(loop, text))


def simulation_text(text: str) -> str:
    """The text both simulators compile: :func:`zero_memories`, then :func:`start_up_safe`."""
    return start_up_safe(zero_memories(text))


#: Verilator options of a SoC build, besides the lint waivers of :mod:`accelpool.tb.harness`:
#: ``--timing`` for the HDL clock; ``--no-public-flat-rw`` undoes the cocotb runner's
#: ``--public-flat-rw``, which makes every signal of the SoC public (VPI-visible), so that
#: Verilator can neither inline nor drop any of them: 123 MB of C++ in 130 files for the
#: default SoC instead of 34 MB in 41. The testbench only touches the wrapper's ports and
#: its ``clk``; a config file (:func:`_public_vlt`) keeps exactly those public.
VERILATOR_SOC_ARGS = ["--timing", "-CFLAGS", "-std=c++20", "-O3", "--no-public-flat-rw",
                      "--verilate-jobs", "2"]
#: make variables of the Verilator C++ build (given through MAKEFLAGS): the generated
#: "fast" code at -O1 instead of verilated.mk's -Os compiles 2.6x faster (13 s -> 5 s of
#: CPU for a 1 MB file of the default SoC) for about the same simulation speed; the
#: run-time library too. The "slow" (initialisation) code stays at -O0.
VERILATOR_SOC_MAKE = {"OPT_FAST": "-O1", "OPT_GLOBAL": "-O1"}


def _public_vlt(wrapper: str) -> str:
    """A Verilator config file: only the clock wrapper's signals are VPI-visible."""
    return (f"`verilator_config\n// Only the clock wrapper's signals (host ports, clk) are "
            f"VPI-visible.\npublic_flat_rw -module \"{wrapper}\" -var \"*\"\n")


@dataclass
class SocBuild:
    """A built SoC: where, for which simulator, and its runner."""

    cfg: PoolConfig
    sim: str
    build_dir: Path
    sources: list
    runner: Any
    build_args: list
    waves: bool
    seconds: float
    cmd_depth: int = DEFAULT_CMD_DEPTH


def build_soc(cfg: PoolConfig, sim: str | None = None, *, waves: bool = False,
              cmd_depth: int = DEFAULT_CMD_DEPTH) -> SocBuild:
    """Generate ``soc.v`` in :func:`soc_build_dir` (if the config or hw sources changed) and build it.

    ``cmd_depth`` commands fit each tile's command memory (the memory tile's too); a
    non-default depth builds in its own folder (:func:`soc_build_dir`).

    Raises
    ------
    hw.tile.TileError
        If a unit of the config has no RTL yet.
    tb.harness.HarnessError
        If the simulator build fails (the message names the log).
    """
    from cocotb_tools.runner import get_runner


    t0 = time.perf_counter()
    sim = simulator(sim)
    top_dir = soc_build_dir(cfg, cmd_depth)
    kw = {"cmd_depth": cmd_depth}
    key = _source_key(cfg, kw)
    with locked(top_dir):
        key_file = top_dir / ".source_key"
        src = [top_dir / f"{SOC_TOP}.v", top_dir / f"{SOC_WRAPPER}.v"]
        if not (key_file.exists() and key_file.read_text() == key and all(p.exists() for p in src)):
            write_soc(cfg, top_dir, **kw)
            key_file.write_text(key)
    build_dir = top_dir / (f"{sim}_waves" if waves else sim)   # both builds stay cached
    # Both simulators get the compact, start-up-safe text (see simulation_text).
    patched = top_dir / f"{SOC_TOP}.sim.v"
    text = simulation_text(src[0].read_text())
    if not patched.exists() or patched.read_text() != text:
        patched.write_text(text)
    src = [patched, src[1]]
    key += "+simulation_text"
    make_vars = {}
    if sim == "verilator":
        verilator_version()
        public = top_dir / "soc_public.vlt"
        if not public.exists() or public.read_text() != _public_vlt(SOC_WRAPPER):
            public.write_text(_public_vlt(SOC_WRAPPER))
        build_args = verilator_lint_args() + VERILATOR_SOC_ARGS + [str(public)]
        make_vars = dict(VERILATOR_SOC_MAKE)
    else:
        iverilog_version()
        build_args = []
    # The simulator build is keyed on the Verilog text itself (regenerating identical text
    # after an unrelated source change does not rebuild).
    stamp = hashlib.sha256(json.dumps([hashlib.sha256(text.encode()).hexdigest(),
                                       src[1].read_text(), build_args, make_vars, waves,
                                       sim]).encode()).hexdigest()
    with simulator_environment(), locked(build_dir):
        if make_vars:
            os.environ["MAKEFLAGS"] = " ".join(
                [os.environ.get("MAKEFLAGS", "")] + [f"{k}={v}" for k, v in make_vars.items()]
            ).strip()
        runner = get_runner(sim)
        stamp_file = build_dir / ".stamp"
        built = stamp_file.exists() and stamp_file.read_text() == stamp and \
            (sim != "verilator" or (build_dir / SOC_WRAPPER).exists())
        build_log = build_dir / "build.log"
        if not built:
            log.info("building the %s model of the %s SoC in %s (log: %s)", sim, cfg.name,
                     build_dir, build_log)
        t_build = time.perf_counter()
        try:
            with _streamed(build_log, enabled=not built and log.isEnabledFor(logging.DEBUG)):
                runner.build(sources=src, hdl_toplevel=SOC_WRAPPER, build_dir=build_dir,
                             build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                             always=not built, log_file=build_log)
        except (SystemExit, Exception) as e:
            raise HarnessError(f"{sim} build of the {cfg.name} SoC failed; see "
                               f"{build_log}") from e
        if not built:
            log.info("built the %s model in %.1f s", sim, time.perf_counter() - t_build)
        stamp_file.write_text(stamp)
    return SocBuild(cfg, sim, build_dir, src, runner, build_args, waves,
                    time.perf_counter() - t0, cmd_depth)


@contextlib.contextmanager
def _streamed(path: Path, enabled: bool, poll: float = 0.2):
    """While the body runs, copy what is written to the file ``path`` to stderr (the file is
    emptied first: the body writes it anew)."""
    if not enabled:
        yield
        return
    done = threading.Event()
    path.write_bytes(b"")

    def follow() -> None:
        pos = 0
        while True:
            finished = done.wait(poll)
            if path.exists():
                size = path.stat().st_size
                if size < pos:                      # the file was started anew
                    pos = 0
                if size > pos:
                    with open(path, "rb") as f:
                        f.seek(pos)
                        chunk = f.read()
                    pos += len(chunk)
                    sys.stderr.write(chunk.decode("utf-8", "replace"))
                    sys.stderr.flush()
            if finished:
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_soc_tests(build: SocBuild, test_module: str, *, env: Mapping[str, str] | None = None,
                  testcase: str | list[str] | None = None) -> Path:
    """Run a cocotb test module on a built SoC; fail (HarnessError) if any test fails."""

    with simulator_environment(), locked(build.build_dir):
        return run_tests(build.runner, sim=build.sim, build_dir=build.build_dir,
                         toplevel=SOC_WRAPPER, test_module=test_module, testcase=testcase,
                         extra_env=env, waves=build.waves)


def run_jobs(build: SocBuild, jobs: list[SocJob]) -> list[SocResult]:
    """Run several jobs, one after the other (reset in between), in one simulator process.

    Raises
    ------
    ValueError
        If a stream has more commands than the build's command memories hold.
    """

    for job in jobs:
        for name, stream in job.streams.items():
            n = len(stream) // isa.COMMAND_BYTES
            if n > build.cmd_depth:
                raise ValueError(f"The stream of tile {name} has {n} commands but the command "
                                 f"memories of this SoC build hold {build.cmd_depth}; build "
                                 f"with build_soc(..., cmd_depth={command_depth_for([n])})")

    with tempfile.TemporaryDirectory(prefix="socjob", dir=build.build_dir) as tmp:
        job_file = Path(tmp) / "job.pkl"
        out_file = Path(tmp) / "result.pkl"
        with open(job_file, "wb") as f:
            pickle.dump({"config": config_doc(build.cfg), "jobs": list(jobs),
                         "out": str(out_file)}, f)
        run_soc_tests(build, "accelpool.tb.soc_job", env={JOB_ENV: str(job_file)})
        with open(out_file, "rb") as f:
            return pickle.load(f)


def run_job(build: SocBuild, job: SocJob, *, check: bool = True) -> SocResult:
    """Run one job on a built SoC in a simulator process.

    Raises
    ------
    SocFault
        If ``check`` and the run faulted or timed out; the message names the tile and
        the command.
    """
    res = run_jobs(build, [job])[0]
    if check and res.status != "ok":
        raise SocFault(res.message)
    return res


def config_doc(cfg: PoolConfig) -> dict:
    """A plain document that :func:`accelpool.spec.config.parse_config` turns back into ``cfg``."""

    tiles = []
    for t in cfg.tiles:
        d = {"name": t.name, "kind": t.kind.key, "x": t.x, "y": t.y, **dict(t.params)}
        if UNIT_DTYPES[t.kind]:
            d["dtypes"] = [dt.key for dt in t.dtypes]
        tiles.append(d)
    m = cfg.mesh
    return {"name": cfg.name, "clock_mhz": cfg.clock_mhz,
            "mesh": {"cols": m.cols, "rows": m.rows, "flit_bits": m.flit_bits,
                     "buffer_flits": m.buffer_flits}, "tile": tiles}


def discovered_register_reader(cfg: PoolConfig, result: SocResult):
    """``read_register(tile, reg)`` over the identity registers of a run, for :func:`accelpool.sched.pool.discover`."""
    def read_register(tile: TileConfig, reg) -> int:
        regs = result.identity[tile.y * cfg.mesh.cols + tile.x]
        value = regs[reg.name.lower()]
        return value
    return read_register


__all__ += ["discovered_register_reader", "SocBuild", "config_doc", "programmable_tiles"]


def write_soc(pool: PoolConfig, out: Path | None = None, **kw) -> tuple[Path, Path]:
    """Write ``<out>/soc.v`` and ``<out>/soc_top.v`` (default :func:`soc_build_dir`).

    Memories are zero-initialised by loops (:func:`accelpool.hw.soc.zero_init_skipped`,
    :func:`zero_memories`). Files are rewritten only when their text changed, so
    builds keyed on them stay valid.
    """
    out = Path(out) if out is not None else soc_build_dir(pool, kw.get("cmd_depth", DEFAULT_CMD_DEPTH))
    out.mkdir(parents=True, exist_ok=True)
    soc = Soc(pool, **kw)
    with zero_init_skipped():
        text = zero_memories(verilog.convert(soc, name=SOC_TOP, emit_src=False))
    texts = {out / f"{SOC_TOP}.v": text, out / f"{SOC_WRAPPER}.v": clock_wrapper(soc)}
    for path, text in texts.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return tuple(texts)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m accelpool.tb.soc",
                                 description="Generate the SoC Verilog of a pool config")
    ap.add_argument("--pool", default=str(DEFAULT_CONFIG))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--lint", action="store_true",
                    help="verilator --lint-only the text the simulators run (simulation_text)")
    ap.add_argument("--debug", action="store_true", help="a traceback for a bad pool config")
    args = ap.parse_args(argv)
    try:
        pool = load_config(args.pool)
    except ConfigError as e:
        if args.debug:
            raise
        print(f"{ap.prog}: error: {e}", file=sys.stderr)
        return 2
    soc_v, top_v = write_soc(pool, args.out)
    print(soc_v)
    print(top_v)
    if args.lint:
        sim_v = soc_v.parent / "lint" / f"{SOC_TOP}.v"   # lint takes the module from the name
        sim_v.parent.mkdir(exist_ok=True)
        sim_v.write_text(simulation_text(soc_v.read_text()))
        res = lint(sim_v)
        print(f"{sim_v}  {'lint ok' if res.returncode == 0 else 'LINT FAILED'}")
        if res.returncode:
            print(res.stdout + res.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
