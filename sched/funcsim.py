"""Functional executor of compiled command streams, with the golden arithmetic.

Runs every tile's stream of a :class:`sched.codegen.Program` on a model of the memory tile
and the scratchpads, with the command semantics of :mod:`hw.isa`, and computes each EXEC
with the golden executor's arithmetic (:mod:`sched.golden.executor`), so the memory it
leaves behind can be compared bit for bit with the golden run of the graph. Timing is not
modelled; ordering is, exactly, so that a missing token or a wrong address is an error
here rather than a flaky mismatch on the RTL:

- **Happens-before.** Every tile keeps a vector clock. A STORE to memory is posted: it is
  known complete to its tile after the tile's next LOAD from the memory tile (in-order
  delivery between one pair of tiles). A SIGNAL carries the sender's clock with its own
  entry set to that completion point; a WAIT merges the clocks of the signals it consumes.
  A LOAD of bytes another tile stored is an error unless that STORE happens-before it,
  whatever order the tiles happened to run in.
- **Single assignment.** Memory bytes that are neither in the image (inputs, weights) nor
  stored yet are unreadable; a STORE over bytes already written is an error (each result
  element has one place and is written once).
- **Scratchpads.** EXEC may only read scratchpad bytes a LOAD or an EXEC wrote.
- **Streams.** Each must end with END; the run must not deadlock (all remaining tiles
  stalled in WAIT) and must leave no token unconsumed.

Violations raise :class:`ExecutionError` naming the tile, the command's index and listing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hw import isa
from hw.config import UnitKind
from sched.codegen import NP_DTYPE, Program, decode_csr
from sched.ir import MicroOp, TensorRef

__all__ = ["ExecutionError", "MismatchError", "RunResult", "run_program", "compare_outputs"]


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


class _Tile:
    def __init__(self, name: str, index: int, kind: UnitKind, commands: list, ntiles: int,
                 spad_bytes: int):
        self.name, self.index, self.kind = name, index, kind
        self.commands = commands
        self.pc = 0
        self.done = False
        self.vc = np.zeros(ntiles, np.int64)
        self.fence = 0
        self.spad = bytearray(spad_bytes)
        self.valid = np.zeros(spad_bytes, bool)
        self.tokens: dict[int, deque] = {}


def _golden_op(graph: Any, op: MicroOp, operands: Mapping[TensorRef, np.ndarray]) -> np.ndarray:
    """Run one micro-op with the golden executor's arithmetic on the given operand values."""
    from sched.golden.executor import Executor

    class _OneOp(Executor):
        def __init__(self) -> None:  # no memory of its own: operands come from the streams
            self.g = graph
            self.result: np.ndarray | None = None

        def read(self, r: TensorRef) -> np.ndarray:
            return operands[r]

        def write(self, r: TensorRef, value: np.ndarray) -> None:
            self.result = np.asarray(value).reshape(r.shape)

    ex = _OneOp()
    ex.execute(op)
    return ex.result


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
        self.mem = bytearray(img.data)
        self.written = img.initialized.copy()
        self.writer = np.full(img.size, -1, np.int16)
        self.wclock = np.zeros(img.size, np.int64)
        self.tiles: dict[str, _Tile] = {}
        self.by_xy: dict[tuple[int, int], _Tile] = {}
        for i, t in enumerate(self.tiles_cfg):
            s = prog.streams.get(t.name)
            spad = t["bytes"] if t.kind is UnitKind.MEMORY else t.scratchpad_bytes
            tile = _Tile(t.name, i, t.kind, s.commands if s else [isa.end()], n,
                         0 if t.kind is UnitKind.MEMORY else spad)
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

    def read_memory(self, t: _Tile, addr: int, n: int) -> bytes:
        r = self._mem_range(t, addr, n)
        if not self.written[r].all():
            first = addr + int(np.argmin(self.written[r]))
            raise self.fail(t, f"reads memory byte 0x{first:x}, which holds no input, weight or "
                               f"stored result (wrong address, or read before it was stored)")
        w = self.writer[r]
        other = (w >= 0) & (w != t.index)
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
        r = self._mem_range(t, addr, len(data))
        if self.written[r].any():
            first = addr + int(np.argmax(self.written[r]))
            who = int(self.writer[first])
            by = "the memory image" if who < 0 else f"tile {self.tiles_cfg[who].name}"
            raise self.fail(t, f"stores over memory byte 0x{first:x}, already written by {by} "
                               f"(each result element is written once: wrong address?)")
        self.mem[r] = data
        self.written[r] = True
        self.writer[r] = t.index
        self.wclock[r] = t.vc[t.index]

    def read_spad(self, t: _Tile, addr: int, n: int) -> bytes:
        if addr < 0 or addr + n > len(t.spad):
            raise self.fail(t, f"scratchpad range 0x{addr:x}+{n} is outside the "
                               f"{len(t.spad)}-byte scratchpad")
        if not t.valid[addr:addr + n].all():
            first = addr + int(np.argmin(t.valid[addr:addr + n]))
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
        if op is isa.Opcode.LOAD:
            if (f["x"], f["y"]) != self.mem_tile.at:
                raise self.fail(t, f"LOAD from ({f['x']},{f['y']}), not the memory tile "
                                   f"{self.mem_tile.at}")
            data = self.read_memory(t, f["remote_addr"], f["length"])
            self.write_spad(t, f["spad_addr"], data)
            t.fence = int(t.vc[t.index])
        elif op is isa.Opcode.STORE:
            if (f["x"], f["y"]) != self.mem_tile.at:
                raise self.fail(t, f"STORE to ({f['x']},{f['y']}), not the memory tile "
                                   f"{self.mem_tile.at}")
            self.write_memory(t, f["remote_addr"], self.read_spad(t, f["spad_addr"], f["length"]))
            if self.stores_complete:
                t.fence = int(t.vc[t.index])
        elif op is isa.Opcode.EXEC:
            self.exec(t, c)
        elif op is isa.Opcode.SIGNAL:
            dst = self.by_xy.get((f["x"], f["y"]))
            if dst is None:
                raise self.fail(t, f"SIGNAL to ({f['x']},{f['y']}), where there is no tile")
            vc = t.vc.copy()
            if t.kind is not UnitKind.MEMORY:     # the memory tile's own writes are complete
                vc[t.index] = t.fence
            dst.tokens.setdefault(f["token"], deque()).append((f["count"], vc))
        elif op is isa.Opcode.END:
            t.done = True
        t.pc += 1
        return True

    def exec(self, t: _Tile, c: isa.Command) -> None:
        args = c.fields["args"]
        if "uop" not in args:
            raise self.fail(t, f"EXEC in the {c.kind.key} unit's own layout: its semantics "
                               f"are not wired into the functional executor yet")
        try:
            op = self.prog.ops[args["uop"]]
        except (IndexError, TypeError):
            raise self.fail(t, f"EXEC names micro-op #{args['uop']!r}, not in the program") from None
        if self.prog.placement.get(op.id) != t.name:
            raise self.fail(t, f"EXEC of {op.id!r}, which the schedule placed on "
                               f"{self.prog.placement.get(op.id)}")
        g = self.g
        in_memory = t.kind is UnitKind.MEMORY
        operands = {}
        for i, r in enumerate(op.inputs):
            addr = args.get(f"in{i}")
            if addr is None:
                raise self.fail(t, f"EXEC of {op.id!r} gives no address for operand {i} ({r})")
            buf = g.buffers[r.buffer]
            dt = g.base(r.buffer).dtype
            if self.prog.sparse_on_unit.get(op.id) == i:
                from sched.codegen import csr_bytes
                rows, cols = r.last_dims(2)
                lanes = self.tiles_cfg[t.index]["lanes"]
                head = self.read_spad(t, addr, 4 * (rows + 1))
                nnz = int(np.frombuffer(head, "<u4")[-1])
                blob = self.read_spad(t, addr, csr_bytes(rows, nnz, lanes))
                operands[r] = decode_csr(blob, rows, cols, lanes).reshape(r.shape)
                continue
            n = r.size * dt.bytes
            raw = self.read_memory(t, addr, n) if in_memory else self.read_spad(t, addr, n)
            operands[r] = np.frombuffer(raw, NP_DTYPE[dt]).reshape(r.shape)
        result = _golden_op(g, op, operands)
        out = op.outputs[0]
        dt = g.base(out.buffer).dtype
        data = np.ascontiguousarray(result).astype(NP_DTYPE[dt]).tobytes()
        if in_memory:
            self.write_memory(t, args["out"], data)
        else:
            self.write_spad(t, args["out"], data)

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
    next command, as the NI of branch ``noc`` does; by default a STORE is only known
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
        buf = g.buffers[name]
        runs = prog.buffer_runs(TensorRef.whole(buf))
        raw = b"".join(bytes(m.mem[a:a + n]) for a, n in runs)
        first, total = runs[0][0], sum(n for _, n in runs)
        if not m.written[first:first + total].all():
            raise ExecutionError(f"Graph output {name!r} is not completely written when every "
                                 f"stream has ended")
        outputs[name] = np.frombuffer(raw, NP_DTYPE[g.base(name).dtype]).reshape(buf.shape)
    return RunResult(outputs, m.mem, {t.name: t.pc for t in m.tiles.values()})


def compare_outputs(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> None:
    """Bit-for-bit comparison; raises :class:`MismatchError` naming the first difference."""
    for name, w in want.items():
        g = got[name]
        wb = np.ascontiguousarray(w).view(np.uint8)
        gb = np.ascontiguousarray(np.asarray(g).astype(w.dtype)).view(np.uint8)
        if g.shape != w.shape or not np.array_equal(gb, wb):
            diff = np.argwhere(np.asarray(g).astype(np.float64) != np.asarray(w).astype(np.float64))
            at = tuple(int(i) for i in diff[0]) if len(diff) else "bit pattern"
            raise MismatchError(f"Output {name!r} differs from the golden run at {at}: "
                                f"{g[at] if len(diff) else ''} != {w[at] if len(diff) else ''}")
