"""Functional executor of compiled command streams, through the units' ISA-level models.

Runs every tile's binary stream of a :class:`accelpool.sched.codegen.Program` on a model of the
memory tile and the scratchpads, with the command semantics of :mod:`accelpool.spec.isa`. An EXEC is
encoded and decoded like the RTL sees it and run by the unit's functional model
(:func:`accelpool.sched.unitsim.execute`) on the tile's scratchpad image, so a wrong address, pitch
or argument gives a wrong result (or the model's refusal) here, before any RTL runs. The
memory it leaves behind is compared bit for bit with the golden run of the graph. Timing
is not modelled; ordering is, exactly, so that a missing token or a wrong address is an
error here rather than a flaky mismatch on the RTL:

- **Happens-before.** Every tile keeps a vector clock. A STORE to memory is posted: it is
  known complete to its tile after the tile's next LOAD from the memory tile (in-order
  delivery between one pair of tiles). A SIGNAL carries the sender's clock with its own
  entry set to that completion point; a WAIT merges the clocks of the signals it consumes.
  A LOAD of element bytes another tile stored is an error unless that STORE happens-before
  it, whatever order the tiles happened to run in.
- **Single assignment.** Element bytes that are neither in the image (inputs, constants,
  unit-format blobs) nor stored yet are unreadable; a STORE over element bytes already
  written is an error (each result element has one place and is written once). Row
  padding (:attr:`accelpool.sched.codegen.MemoryImage.padding`) holds no element: it starts zeroed,
  may be read before it is written and written more than once (LOAD/STORE round rows out
  to whole flits into it, the AFU computes it along).
- **Flits.** LOAD/STORE addresses and lengths must be multiples of the flit size (the NI
  moves whole flits).
- **Scratchpads.** Start filled with a poison pattern (0xA5), so an EXEC reading operand
  bytes no LOAD brought gives a wrong result; a STORE may only move into element bytes of
  memory scratchpad bytes a LOAD or an EXEC wrote. An EXEC must be for the tile's unit kind.
- **The memory tile.** Its stream runs WAIT / EXEC / SIGNAL / END (a LOAD or STORE there
  is an error). Its EXEC (the layout engine, :mod:`accelpool.sched.unitsim_layout`) reads the
  global memory like a LOAD (every element defined, every other tile's STORE of it
  ordered before) and writes it like a STORE (each element once); its writes are complete
  when the EXEC ends, so a SIGNAL it sends carries them. A compute tile's SIGNAL *to* the
  memory tile is ordered after its STOREs there (the ISA's same-destination rule): it
  needs no fence.
- **Streams.** Each must end with END; the run must not deadlock (all remaining tiles
  stalled in WAIT) and must leave no token unconsumed.

Violations raise :class:`ExecutionError` naming the tile, the command's index and listing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from accelpool.sched.codegen import Program
from accelpool.sched.reference import run_graph
from accelpool.sched.unitsim import UnitSimError, execute
from accelpool.sched.unitsim_layout import layout_runs
from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.golden.compare import compare_arrays

__all__ = ["ExecutionError", "MismatchError", "RunResult", "run_program", "compare_outputs",
           "golden_outputs"]


class ExecutionError(RuntimeError):
    """A command stream that breaks the command semantics or races."""


class MismatchError(AssertionError):
    """The streams' outputs differ from the golden run."""


@dataclass
class RunResult:
    """What a run leaves: the graph outputs, the memory, commands executed per tile."""

    outputs: dict[str, np.ndarray]
    memory: bytearray
    executed: dict[str, int]


#: The scratchpads' initial contents (a byte no LOAD or EXEC wrote).
POISON = 0xA5


class _Tile:
    def __init__(self, cfg, index: int, commands: list, ntiles: int, spad_bytes: int):
        self.cfg = cfg
        self.name, self.index, self.kind = cfg.name, index, cfg.kind
        self.commands = commands
        self.pc = 0
        self.done = False
        self.vc = np.zeros(ntiles, np.int64)
        self.fence = 0
        self.spad = bytearray([POISON]) * spad_bytes
        self.valid = np.zeros(spad_bytes, bool)
        self.tokens: dict[int, deque] = {}


class _Machine:
    def __init__(self, prog: Program, stores_complete: bool = False):
        self.prog = prog
        self.stores_complete = stores_complete
        self.g = prog.graph
        cfg = prog.pool.config
        self.tiles_cfg = list(cfg.tiles)
        n = len(self.tiles_cfg)
        self.mem_tile = cfg.memory
        img = prog.image
        self.fb = prog.flit_bytes
        self.mem = bytearray(img.data)
        self.written = img.initialized.copy()
        self.pad = img.padding
        self.writer = np.full(img.size, -1, np.int16)
        self.wclock = np.zeros(img.size, np.int64)
        self.tiles: dict[str, _Tile] = {}
        self.by_xy: dict[tuple[int, int], _Tile] = {}
        for i, t in enumerate(self.tiles_cfg):
            s = prog.streams.get(t.name)
            tile = _Tile(t, i, s.commands if s else [isa.end()], n,
                         0 if t.kind is UnitKind.MEMORY else t.scratchpad_bytes)
            self.tiles[t.name] = tile
            self.by_xy[(t.x, t.y)] = tile

    # -- helpers -----------------------------------------------------------------------
    def fail(self, t: _Tile, msg: str) -> ExecutionError:
        c = t.commands[t.pc] if t.pc < len(t.commands) else None
        where = f"tile {t.name} command {t.pc}" + (f" ({c.listing()})" if c else "")
        return ExecutionError(f"{where}: {msg}")

    def _mem_range(self, t: _Tile, addr: int, n: int) -> slice:
        if addr < 0 or n < 0 or addr + n > len(self.mem):
            raise self.fail(t, f"memory range 0x{addr:x}+{n} is outside the {len(self.mem)}-byte "
                               f"memory")
        return slice(addr, addr + n)

    def _flits(self, t: _Tile, what: str, value: int) -> None:
        if value % self.fb:
            raise self.fail(t, f"{what} {value:#x} is not a multiple of the {self.fb}-byte flit "
                               f"(the NI moves whole flits)")

    def read_memory(self, t: _Tile, addr: int, n: int) -> bytes:
        r = self._mem_range(t, addr, n)
        elem = ~self.pad[r]
        bad = elem & ~self.written[r]
        if bad.any():
            first = addr + int(np.argmax(bad))
            raise self.fail(t, f"reads memory byte 0x{first:x}, which holds no input, weight or "
                               f"stored result (wrong address, or read before it was stored)")
        w = self.writer[r]
        other = (w >= 0) & (w != t.index) & elem
        if other.any():
            ws = w[other].astype(np.int64)
            late = t.vc[ws] < self.wclock[r][other]
            if late.any():
                k = int(np.flatnonzero(other)[np.argmax(late)])
                src = self.tiles_cfg[int(w[k])].name
                raise self.fail(t, f"reads memory byte 0x{addr + k:x} stored by tile {src} "
                                   f"(its command clock {int(self.wclock[addr + k])}) with no "
                                   f"WAIT/SIGNAL ordering the read after the store (missing "
                                   f"token?)")
        return bytes(self.mem[r])

    def write_memory(self, t: _Tile, addr: int, data: bytes) -> None:
        r = self.check_unwritten(t, addr, len(data))
        self.mem[r] = data
        self.mark_written(t, r)

    def check_unwritten(self, t: _Tile, addr: int, n: int) -> slice:
        """The range, after checking that none of its element bytes is written yet."""
        r = self._mem_range(t, addr, n)
        again = self.written[r] & ~self.pad[r]
        if again.any():
            first = addr + int(np.argmax(again))
            who = int(self.writer[first])
            by = "the memory image" if who < 0 else f"tile {self.tiles_cfg[who].name}"
            raise self.fail(t, f"stores over memory byte 0x{first:x}, already written by {by} "
                               f"(each result element is written once: wrong address?)")
        return r

    def mark_written(self, t: _Tile, r: slice) -> None:
        self.written[r] = True
        self.writer[r] = t.index
        self.wclock[r] = t.vc[t.index]

    def read_spad(self, t: _Tile, addr: int, n: int, need: np.ndarray | None = None) -> bytes:
        """``n`` scratchpad bytes; those where ``need`` is set must have been written."""
        if addr < 0 or addr + n > len(t.spad):
            raise self.fail(t, f"scratchpad range 0x{addr:x}+{n} is outside the "
                               f"{len(t.spad)}-byte scratchpad")
        bad = ~t.valid[addr:addr + n] & (True if need is None else need)
        if bad.any():
            first = addr + int(np.argmax(bad))
            raise self.fail(t, f"reads scratchpad byte 0x{first:x}, which no LOAD or EXEC wrote")
        return bytes(t.spad[addr:addr + n])

    def write_spad(self, t: _Tile, addr: int, data: bytes) -> None:
        if addr < 0 or addr + len(data) > len(t.spad):
            raise self.fail(t, f"scratchpad range 0x{addr:x}+{len(data)} is outside the "
                               f"{len(t.spad)}-byte scratchpad")
        t.spad[addr:addr + len(data)] = data
        t.valid[addr:addr + len(data)] = True

    # -- commands ----------------------------------------------------------------------
    def step(self, t: _Tile) -> bool:
        """Run one command; False if the tile is stalled in a WAIT."""
        if t.pc >= len(t.commands):
            raise self.fail(t, "the stream ends without END")
        c = t.commands[t.pc]
        f = c.fields
        op = c.opcode
        if op is isa.Opcode.WAIT:
            q = t.tokens.get(f["token"], deque())
            if sum(k for k, _ in q) < f["count"]:
                return False
            need = f["count"]
            while need:
                k, vc = q[0]
                take = min(k, need)
                np.maximum(t.vc, vc, out=t.vc)
                need -= take
                if take == k:
                    q.popleft()
                else:
                    q[0] = (k - take, vc)
        t.vc[t.index] += 1
        if t.kind is UnitKind.MEMORY and op in (isa.Opcode.LOAD, isa.Opcode.STORE):
            raise self.fail(t, "the memory tile has no DMA: LOAD and STORE fault there")
        if op is isa.Opcode.LOAD:
            if (f["x"], f["y"]) != self.mem_tile.at:
                raise self.fail(t, f"LOAD from ({f['x']},{f['y']}), not the memory tile "
                                   f"{self.mem_tile.at}")
            self._mem_range(t, f["remote_addr"], f["length"])
            for k in ("spad_addr", "remote_addr", "length"):
                self._flits(t, k, f[k])
            data = self.read_memory(t, f["remote_addr"], f["length"])
            self.write_spad(t, f["spad_addr"], data)
            t.fence = int(t.vc[t.index])
        elif op is isa.Opcode.STORE:
            if (f["x"], f["y"]) != self.mem_tile.at:
                raise self.fail(t, f"STORE to ({f['x']},{f['y']}), not the memory tile "
                                   f"{self.mem_tile.at}")
            r = self._mem_range(t, f["remote_addr"], f["length"])
            for k in ("spad_addr", "remote_addr", "length"):
                self._flits(t, k, f[k])
            data = self.read_spad(t, f["spad_addr"], f["length"], need=~self.pad[r])
            self.write_memory(t, f["remote_addr"], data)
            if self.stores_complete:
                t.fence = int(t.vc[t.index])
        elif op is isa.Opcode.EXEC:
            self.exec(t, c)
        elif op is isa.Opcode.SIGNAL:
            dst = self.by_xy.get((f["x"], f["y"]))
            if dst is None:
                raise self.fail(t, f"SIGNAL to ({f['x']},{f['y']}), where there is no tile")
            vc = t.vc.copy()
            # The memory tile's own writes are complete when its EXEC ends; a SIGNAL to the
            # memory tile is ordered after this tile's earlier STOREs there (every STORE
            # goes there); to any other tile, only the fence's completion point is known.
            if t.kind is not UnitKind.MEMORY and dst.kind is not UnitKind.MEMORY:
                vc[t.index] = t.fence
            dst.tokens.setdefault(f["token"], deque()).append((f["count"], vc))
        elif op is isa.Opcode.END:
            t.done = True
        t.pc += 1
        return True

    def exec(self, t: _Tile, c: isa.Command) -> None:
        if c.kind is not t.kind:
            raise self.fail(t, f"EXEC for the {c.kind.key if c.kind else '?'} unit kind on "
                               f"this {t.kind.key} tile")
        try:
            d = isa.decode(c.encode(), t.kind)     # the command as the tile decodes it
        except isa.EncodingError as e:
            raise self.fail(t, f"EXEC does not encode: {e}") from None
        problems = isa.exec_spec(t.kind).problems(d.fields["func"], d.fields["args"])
        if problems:    # the tile refuses it too (accelpool.hw.tile_control.exec_to_unit)
            raise self.fail(t, f"the {t.kind.key} unit refuses the EXEC: "
                               f"{'; '.join(problems)}")
        if t.kind is UnitKind.MEMORY:
            self.exec_memory(t, d.fields["func"], d.fields["args"])
            return
        try:
            written = execute(t.cfg, d.fields["func"], d.fields["args"], t.spad)
        except UnitSimError as e:
            raise self.fail(t, f"the {t.kind.key} unit refuses the EXEC: {e}") from None
        for a, n in written:
            t.valid[a:a + n] = True

    def exec_memory(self, t: _Tile, func: Any, args: Mapping[str, Any]) -> None:
        """The memory tile's layout engine: reads and writes the global memory in place,
        its reads ordered like a LOAD's, its writes single-assignment like a STORE's."""
        try:
            reads, writes = layout_runs(func, args, len(self.mem))
        except UnitSimError as e:
            raise self.fail(t, f"the layout engine refuses the EXEC: {e}") from None
        for a, n in reads:
            self.read_memory(t, a, n)
        ranges = [self.check_unwritten(t, a, n) for a, n in writes]
        try:
            execute(t.cfg, func, args, self.mem)
        except UnitSimError as e:
            raise self.fail(t, f"the layout engine refuses the EXEC: {e}") from None
        for r in ranges:
            self.mark_written(t, r)

    # -- run ---------------------------------------------------------------------------
    def run(self) -> None:
        tiles = list(self.tiles.values())
        while True:
            progressed = False
            for t in tiles:
                while not t.done and self.step(t):
                    progressed = True
            if all(t.done for t in tiles):
                break
            if not progressed:
                stuck = "; ".join(f"{t.name} at command {t.pc} ({t.commands[t.pc].listing()}, "
                                  f"has {sum(k for k, _ in t.tokens.get(t.commands[t.pc].fields['token'], ()))})"
                                  for t in tiles if not t.done)
                raise ExecutionError(f"Deadlock: every unfinished tile waits for a token: {stuck}")
        left = [f"{t.name} token {k}: {sum(n for n, _ in q)}" for t in tiles
                for k, q in t.tokens.items() if sum(n for n, _ in q)]
        if left:
            raise ExecutionError(f"Tokens signalled but never waited for: {', '.join(left)}")


def run_program(prog: Program, stores_complete: bool = False) -> RunResult:
    """Run every tile's stream to END; return the graph outputs read from memory.

    ``stores_complete=True`` models an NI that completes a STORE (acknowledged) before the
    next command, as the network interface (``hw/noc/ni.py``) does; by default a STORE is only known
    complete after a later LOAD from the memory tile (the ISA's weaker guarantee).

    Raises
    ------
    ExecutionError
        On any violation listed in the module docstring.
    """
    m = _Machine(prog, stores_complete)
    m.run()
    g = prog.graph
    outputs = {}
    for name in g.outputs:
        addr, n = prog.buffer_region(name)
        r = slice(addr, addr + n)
        if not (m.written[r] | m.pad[r]).all():
            raise ExecutionError(f"Graph output {name!r} is not completely written when every "
                                 f"stream has ended")
        outputs[name] = prog.read_buffer(m.mem, name)
    return RunResult(outputs, m.mem, {t.name: t.pc for t in m.tiles.values()})


def compare_outputs(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> None:
    """Bit-for-bit comparison (:func:`accelpool.spec.golden.compare.compare_arrays`); raises
    :class:`MismatchError` naming the output and its worst element."""
    for name, w in want.items():
        m = compare_arrays(name, got[name], w, bitwise=True)
        if not m.ok:
            raise MismatchError(f"Output {name!r} differs from the golden run: {m.where()}")


def golden_outputs(graph: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The golden run the streams must equal: the graph in the units' arithmetic
    (``arithmetic="unit"`` of :mod:`accelpool.sched.reference`: the AFU's piecewise-linear
    activations and BF16 add/mul, the GNN's mean as the unit computes it)."""
    return run_graph(graph, inputs, arithmetic="unit")
