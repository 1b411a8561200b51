"""Timing of the tiles' command streams, cycle for cycle as the RTL runs them.

The tile controller (``hw/controller.py``) and the network interface (``hw/noc/ni.py``)
are deterministic, so the cycle at which every command of a stream issues follows from a
handful of rules. :func:`stream_timeline` applies them to one tile and
:func:`soc_timelines` to several tiles that SIGNAL and WAIT on each other; both give the
same numbers as the tiles' trace memories (``accelpool.tb.soc.SocResult.trace``): the controller's
``cycles`` counter when a command left ISSUE, END = the tile finished. They are checked
against the RTL over sweeps in ``sched/cost/test_stream.py``.

Rules (cycle ``a`` = the issue cycle of a command; ``hops`` = XY distance between the
tile and the LOAD/STORE/SIGNAL destination; ``d`` = :mod:`accelpool.sched.cost.noc`'s duration)

=========  ============================================================================
step       rule
=========  ============================================================================
start      the first command issues at the earliest in cycle :data:`FIRST_ISSUE` (2):
           FETCH and DECODE come first, the counter starts at 0 in FETCH.
next       every further command issues at the earliest :data:`ISSUE_INTERVAL` (3)
           cycles after the previous one (FETCH, DECODE, ISSUE).
LOAD, NOP  waits for the NI to be idle. The NI is busy until ``a + 1 + d`` with
           ``d = noc.load_cycles(length, hops)`` (LOAD), ``noc.store_cycles`` (STORE),
           ``noc.signal_cycles()`` (SIGNAL), ``0`` (NOP); zero-length LOAD/STORE 1.
           A LOAD does not wait for the unit: it overlaps a running EXEC.
EXEC       waits for the NI *and* the unit to be idle. The unit is busy until
           ``a + 1 + exec_cycles`` (``exec_cycles``: from acceptance until ``busy``
           falls, what ``sched/cost/<kind>.py`` computes).
STORE,     wait for the unit and the NI to be idle.
SIGNAL
WAIT       issues in the first cycle its token counter holds ``count`` (then consumes
           it). A SIGNAL issued at ``a`` by a tile ``hops`` away reaches the counter at
           ``a + hops +`` :data:`SIGNAL_DELAY` (:func:`signal_arrival`).
END        waits for the NI and the unit to be idle; its trace entry is that cycle.
=========  ============================================================================

The memory tile runs a stream too (WAIT / EXEC / SIGNAL / END, the same controller and
rules): its EXEC is the layout engine (``exec_cycles`` from ``sched/cost/layout.py``) and
its SIGNALs leave through the same kind of SIGNAL sender as a compute tile's NI. The engine
has its own read and write ports on the global memory, so the memory tile keeps serving
other tiles' packets while an EXEC runs (it is no packet the server takes); codegen's
tokens keep those packets off the regions the EXEC reads and writes.

These rules are exact when no other tile's packets share the routers or the serving tile
at the same time ("zero contention"). The memory tile serves one packet at a time, round
robin between the tiles whose packets have arrived, LOADs and STOREs alike
(:func:`memory_service_cycles`, :func:`shared_memory_timelines`);
``soc_timelines(..., memory_contention=True)`` adds that server to the rules: two tiles'
codegen-like streams running at once then follow the RTL to within 0.5% at END (16
cycles at worst on one command), where the contention-free rules are 15-25% short; the
compiled mlp, gcn and transformer on the default SoC (:func:`program_timelines`) are
predicted to 2 cycles. Contention on the links between compute tiles (STOREs into another
tile's scratchpad) and at a compute tile serving other tiles' requests is not modelled.

Occupancy of one micro-op (:func:`op_cycles`) is ``END - FIRST_ISSUE`` of the micro-op's
command group run alone (WAITs already satisfied): the cycles the tile spends on it before
the next group can start. Summed over a tile's groups plus :data:`FIRST_ISSUE` it gives
the stream's END exactly whenever each group's first command waits for the NI and the
unit (EXEC, STORE, SIGNAL) or the previous group left the unit idle (it ended with a STORE
or SIGNAL after its EXEC) and the group starts with a LOAD; a group that starts with a
WAIT can in fact start up to :data:`ISSUE_INTERVAL` cycles earlier than the sum says
(the WAIT overlaps the NI's tail), so the sum is then an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from accelpool.sched.cost.formula import FORMULAS
from accelpool.spec import isa
from accelpool.spec.config import PoolConfig, TileConfig, UnitKind
from accelpool.spec.isa import Command, Opcode

from . import noc

__all__ = ["FIRST_ISSUE", "ISSUE_INTERVAL", "SIGNAL_DELAY", "Step", "stream_timeline",
           "soc_timelines", "signal_arrival", "command_cycles", "op_cycles", "op_steps",
           "steps_of", "StreamError", "memory_service_cycles", "op_memory_cycles",
           "shared_memory_timelines", "shared_memory_finish", "exec_cycles_from_args",
           "program_timelines"]

#: Issue cycle of the first command at the earliest (FETCH 0, DECODE 1, ISSUE 2).
FIRST_ISSUE = 2
#: Cycles between two commands' issues at the least (FETCH, DECODE, ISSUE).
ISSUE_INTERVAL = 3
#: A SIGNAL issued in cycle ``a`` to a tile ``hops`` away: the destination's token counter
#: holds it from cycle ``a + hops + SIGNAL_DELAY`` (the NI's SIGNAL state, the source
#: router's entry, the target's packet decode, the counter's register).
SIGNAL_DELAY = 4


class StreamError(ValueError):
    """A stream that cannot be timed (a WAIT nobody satisfies, a bad command)."""


@dataclass(frozen=True)
class Step:
    """One command as the timing model sees it.

    ``op`` is the opcode; ``length`` and ``hops`` matter for LOAD and STORE (``hops``
    also for SIGNAL), ``exec_cycles`` for EXEC, ``token``/``count`` for WAIT and SIGNAL,
    ``dest`` (x, y) for SIGNAL (which tile's counter it adds to); ``to_memory`` marks a
    LOAD/STORE whose other end is the memory tile (shared under ``memory_contention``).
    """

    op: Opcode
    length: int = 0
    hops: int = 0
    exec_cycles: int = 0
    token: int = 0
    count: int = 1
    dest: tuple[int, int] | None = None
    to_memory: bool = False


def command_cycles(op: Opcode | str, nbytes: int = 0, hops: int = 0, *, flit_bits: int = 64,
                   max_packet_bytes: int = 64) -> int:
    """Cycles the NI is busy with one LOAD, STORE, SIGNAL or NOP (``d`` of the rules):
    from its issue in cycle ``a`` the NI takes the next command at ``a + 1 + d``.

    Parameters
    ----------
    op : Opcode or {"load", "store", "signal", "nop"}
    nbytes : int
        LOAD/STORE length.
    hops : int
        XY distance to the other end.
    """
    op = _opcode(op)
    kw = dict(flit_bits=flit_bits, max_packet_bytes=max_packet_bytes)
    if op is Opcode.LOAD:
        return noc.load_cycles(nbytes, hops, **kw)
    if op is Opcode.STORE:
        return noc.store_cycles(nbytes, hops, **kw)
    if op is Opcode.SIGNAL:
        return noc.signal_cycles()
    if op is Opcode.NOP:
        return 0
    raise ValueError(f"command_cycles takes load, store, signal or nop, not {op.name.lower()!r}")


def _opcode(op: Opcode | str) -> Opcode:
    if isinstance(op, Opcode):
        return op
    try:
        return Opcode[str(op).upper()]
    except KeyError:
        raise ValueError(f"Unknown command {op!r}; accepted: "
                         f"{', '.join(o.name.lower() for o in Opcode)}") from None


def signal_arrival(issue: int, hops: int) -> int:
    """The cycle from which a SIGNAL issued in cycle ``issue`` is in the token counter of
    a tile ``hops`` away (a WAIT there can issue in that cycle)."""
    return issue + hops + SIGNAL_DELAY


def exec_cycles_from_args(tile: TileConfig, cmd: Command) -> int:
    """An EXEC's cycles from its own arguments: its unit's formula
    (:data:`accelpool.sched.cost.formula.FORMULAS`, ``sched/cost/<kind>.py``'s ``cycles(tile,
    func=..., **args)``; the memory tile's is its layout engine's). Exact for the DMU, LPU, AFU, CE and layout engine; the GNN and SMU formulas
    take the edge/non-zero total from the arguments and spread it evenly over the rows
    (exact unless rows are empty: their per-row counts are data in the scratchpad).
    """
    try:
        formula = FORMULAS[tile.kind]
    except KeyError:
        raise StreamError(f"No cycle formula for the {tile.kind.key} EXEC on {tile.name} (its "
                          f"cost module registers one): pass exec_cycles") from None
    return int(formula.cycles(tile, func=cmd.fields["func"], **cmd.fields["args"]))


def steps_of(commands: Sequence[Command] | bytes, tile: TileConfig,
             exec_cycles: Callable[[Command], int] | None = None,
             memory_at: tuple[int, int] | None = None) -> list[Step]:
    """The timing steps of ``tile``'s commands (a list of :class:`accelpool.spec.isa.Command` or an
    assembled stream); ``exec_cycles(cmd)`` prices each EXEC (default
    :func:`exec_cycles_from_args`); LOAD/STORE to ``memory_at`` are marked ``to_memory``."""
    if isinstance(commands, (bytes, bytearray)):
        commands = isa.disassemble(bytes(commands), tile.kind)
    out = []
    here = (tile.x, tile.y)
    for c in commands:
        f = c.fields
        if c.opcode in (Opcode.LOAD, Opcode.STORE):
            there = (f["x"], f["y"])
            out.append(Step(c.opcode, length=f["length"], hops=noc.hops(here, there),
                            to_memory=there == memory_at))
        elif c.opcode is Opcode.SIGNAL:
            dest = (f["x"], f["y"])
            out.append(Step(c.opcode, hops=noc.hops(here, dest), token=f["token"],
                            count=f["count"], dest=dest))
        elif c.opcode is Opcode.WAIT:
            out.append(Step(c.opcode, token=f["token"], count=f["count"]))
        elif c.opcode is Opcode.EXEC:
            cyc = exec_cycles(c) if exec_cycles is not None else exec_cycles_from_args(tile, c)
            out.append(Step(c.opcode, exec_cycles=int(cyc)))
        else:
            out.append(Step(c.opcode))
    return out


class _MemoryServer:
    """The memory tile: one packet at a time, round robin between tiles (see
    :func:`shared_memory_timelines` for the timing)."""

    def __init__(self, flit_bits: int, max_packet_bytes: int, tiles: int):
        self.kw = (flit_bits, max_packet_bytes)
        self.jobs: list[dict] = []
        self.free = 0
        self.last = -1
        self.tiles = tiles

    def add(self, tile: int, a: int, step: Step, done: Callable[[int], None]) -> None:
        svc = _packet_services(step.op, step.length, *self.kw)
        arr, t = [], a + step.hops + 2
        for c in svc:
            arr.append(t)
            t += 2 if step.op is Opcode.LOAD else c
        tail = step.hops + 1 if step.op is Opcode.LOAD else step.hops + 3
        self.jobs.append({"tile": tile, "arr": arr, "svc": svc, "p": 0, "tail": tail,
                          "done": done})

    def next_start(self) -> int | None:
        """When the next packet's service starts (None: nothing in flight)."""
        if not self.jobs:
            return None
        return max(self.free, min(j["arr"][j["p"]] for j in self.jobs))

    def serve(self) -> None:
        s = self.next_start()
        ready = [j for j in self.jobs if j["arr"][j["p"]] <= s]
        j = min(ready, key=lambda j: (j["tile"] - self.last - 1) % self.tiles)
        self.free = s + j["svc"][j["p"]]
        self.last = j["tile"]
        j["p"] += 1
        if j["p"] == len(j["svc"]):
            self.jobs.remove(j)
            j["done"](self.free + j["tail"])


class _Tile:
    """The controller, NI and unit state of one tile while its steps are timed."""

    def __init__(self, steps: Sequence[Step], flit_bits: int, max_packet_bytes: int,
                 index: int = 0, server: _MemoryServer | None = None):
        self.steps = list(steps)
        self.kw = dict(flit_bits=flit_bits, max_packet_bytes=max_packet_bytes)
        self.issue: list[int] = []
        self.earliest = FIRST_ISSUE
        self.ni_free: int | None = 0      # None: a transfer is in the memory tile's hands
        self.unit_free = 0
        self.consumed: dict[int, int] = {}
        self.index = index
        self.server = server

    def done(self) -> bool:
        return len(self.issue) == len(self.steps)

    def candidate(self, arrivals: Mapping[int, list[int]]) -> int | None:
        """The issue cycle of the next step, or None when it is a WAIT still short of
        tokens (``arrivals``: token -> sorted cycles of single increments) or waits for
        the NI while the memory tile has not finished its transfer."""
        s = self.steps[len(self.issue)]
        t = self.earliest
        if s.op is Opcode.WAIT:
            need = self.consumed.get(s.token, 0) + s.count
            have = arrivals.get(s.token, [])
            if s.count == 0:
                return t
            if len(have) < need:
                return None
            return max(t, have[need - 1])
        if self.ni_free is None:
            return None
        if s.op in (Opcode.LOAD, Opcode.NOP):
            return max(t, self.ni_free)
        # EXEC, STORE, SIGNAL, END wait for both the NI and the unit.
        return max(t, self.ni_free, self.unit_free)

    def commit(self, a: int) -> Step:
        s = self.steps[len(self.issue)]
        self.issue.append(a)
        self.earliest = a + ISSUE_INTERVAL
        if (self.server is not None and s.to_memory and s.length > 0
                and s.op in (Opcode.LOAD, Opcode.STORE)):
            self.ni_free = None
            self.server.add(self.index, a, s, self._landed)
        elif s.op in (Opcode.LOAD, Opcode.STORE, Opcode.SIGNAL, Opcode.NOP):
            self.ni_free = a + 1 + command_cycles(s.op, s.length, s.hops, **self.kw)
        elif s.op is Opcode.EXEC:
            self.unit_free = a + 1 + s.exec_cycles
        elif s.op is Opcode.WAIT:
            self.consumed[s.token] = self.consumed.get(s.token, 0) + s.count
        return s

    def _landed(self, free: int) -> None:
        self.ni_free = free


def _arrival_lists(arrivals: Mapping[int, Iterable] | None) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for token, events in (arrivals or {}).items():
        lst = out.setdefault(int(token), [])
        for e in events:
            cycle, count = (e, 1) if isinstance(e, int) else e
            lst.extend([int(cycle)] * int(count))
        lst.sort()
    return out


def _run(tiles: dict, arrivals: dict[tuple[int, int], dict[int, list[int]]],
         coords: Mapping[str, tuple[int, int]], server: _MemoryServer | None = None) -> None:
    """Commit every tile's steps in global issue order (a WAIT is committed only when no
    other tile could still send it an earlier SIGNAL: every SIGNAL arrives after it
    issues, so committing the smallest candidate first is exact). With a memory server,
    its packet services are events too, taken when they start before every candidate
    (a command issued first may still add a packet that arrives in time)."""
    while True:
        best = None
        for name, st in tiles.items():
            if st.done():
                continue
            a = st.candidate(arrivals.get(coords[name], {}))
            if a is not None and (best is None or a < best[0]):
                best = (a, name)
        nxt = server.next_start() if server is not None else None
        if nxt is not None and (best is None or nxt < best[0]):
            server.serve()
            continue
        if best is None:
            stuck = [(n, len(st.issue)) for n, st in tiles.items() if not st.done()]
            if stuck:
                where = ", ".join(f"{n} at command {i} (WAIT token="
                                  f"{tiles[n].steps[i].token} count={tiles[n].steps[i].count})"
                                  for n, i in stuck)
                raise StreamError(f"The streams deadlock: {where} waits for a token nobody "
                                  f"sends")
            return
        a, name = best
        s = tiles[name].commit(a)
        if s.op is Opcode.SIGNAL and s.dest is not None:
            lst = arrivals.setdefault(s.dest, {}).setdefault(s.token, [])
            lst.extend([signal_arrival(a, s.hops)] * s.count)
            lst.sort()


def stream_timeline(commands: Sequence[Command] | Sequence[Step] | bytes, tile: TileConfig | str,
                    pool: PoolConfig, exec_cycles: Callable[[Command], int] | None = None,
                    signal_arrivals: Mapping[int, Iterable] | None = None, *,
                    max_packet_bytes: int = 64) -> list[int]:
    """Issue cycle of every command of one tile's stream, with nothing else on the mesh.

    Parameters
    ----------
    commands : list of spec.isa.Command, list of Step, or bytes
        The tile's stream (an assembled stream is disassembled with the tile's kind).
    tile : TileConfig or str
        The tile that runs it (its position gives the hop counts).
    pool : PoolConfig
        The pool (mesh size, flit width).
    exec_cycles : callable(Command) -> int, optional
        Cycles from the unit accepting an EXEC until its ``busy`` falls (default
        :func:`exec_cycles_from_args`).
    signal_arrivals : mapping token -> iterable of cycle or (cycle, count), optional
        When SIGNALs from other tiles reach this tile's token counters
        (:func:`signal_arrival` of the sender's issue cycle). SIGNALs the stream sends to
        its own tile count too.

    Returns
    -------
    list of int
        What the tile's trace memory records: the ``cycles`` value when each command left
        ISSUE (END: when the tile finished).

    Raises
    ------
    StreamError
        A WAIT whose tokens never arrive, or an EXEC of a kind without a cycle model.
    """
    if isinstance(tile, str):
        tile = pool.tile(tile)
    steps = (list(commands) if commands and all(isinstance(c, Step) for c in commands)
             else steps_of(commands, tile, exec_cycles))
    here = (tile.x, tile.y)
    st = _Tile(steps, pool.mesh.flit_bits, max_packet_bytes)
    _run({tile.name: st}, {here: _arrival_lists(signal_arrivals)}, {tile.name: here})
    return st.issue


def soc_timelines(streams: Mapping[str, Sequence[Command] | bytes], pool: PoolConfig,
                  exec_cycles: Callable[[TileConfig, Command], int] | None = None, *,
                  memory_contention: bool = False,
                  max_packet_bytes: int = 64) -> dict[str, list[int]]:
    """Issue cycles of every tile's stream when all start together (``accelpool.tb.soc``'s
    ``start``), SIGNALs and WAITs between them resolved.

    Without ``memory_contention`` the tiles do not disturb each other (exact when their
    transfers do not overlap in time). With it, LOADs and STOREs to the memory tile share
    it as :func:`shared_memory_timelines` describes (round robin in the pool's tile
    order); other transfers and SIGNALs stay contention-free.

    Parameters
    ----------
    streams : mapping tile name -> commands (list of Command or assembled bytes)
    pool : PoolConfig
    exec_cycles : callable(TileConfig, Command) -> int, optional
        EXEC cycles on a tile (from acceptance until ``busy`` falls; default
        :func:`exec_cycles_from_args`).
    memory_contention : bool
        Model the memory tile serving one packet at a time.

    Returns
    -------
    dict tile name -> list of int (see :func:`stream_timeline`)

    Raises
    ------
    StreamError
        If the streams deadlock (the message names each stuck WAIT).
    """
    tiles, coords = {}, {}
    order = [t.name for t in pool.tiles]
    server = (_MemoryServer(pool.mesh.flit_bits, max_packet_bytes, len(order))
              if memory_contention else None)
    mem = (pool.memory.x, pool.memory.y)
    for name, cmds in streams.items():
        t = pool.tile(name)
        price = (lambda c, t=t: exec_cycles(t, c)) if exec_cycles is not None else None
        tiles[name] = _Tile(steps_of(cmds, t, price, mem), pool.mesh.flit_bits,
                            max_packet_bytes, order.index(name), server)
        coords[name] = (t.x, t.y)
    _run(tiles, {}, coords, server)
    return {n: st.issue for n, st in tiles.items()}


def program_timelines(program, pool: PoolConfig, *, memory_contention: bool = True,
                      exec_cycles: Callable[[TileConfig, Command], int] | None = None
                      ) -> dict[str, list[int]]:
    """:func:`soc_timelines` of a compiled :class:`accelpool.sched.codegen.Program` (its
    ``streams[tile].commands``, the memory tile's own stream included), the memory tile's
    contention included by default: the predicted trace of every tile;
    ``max(t[-1] for t in result.values())`` is the makespan the RTL will measure (exact to
    a few cycles on the default SoC's models)."""
    streams = {t: s.commands for t, s in program.streams.items()}
    return soc_timelines(streams, pool, exec_cycles, memory_contention=memory_contention)


def op_steps(loads: Sequence[int], exec_cycles: int | None, stores: Sequence[int], *,
             hops: int, signals: int = 0, waits: int = 0, fence_bytes: int = 0,
             signal_hops: int | None = None) -> list[Step]:
    """One micro-op's command group as :mod:`accelpool.sched.codegen` emits it: ``waits`` WAITs,
    a LOAD per entry of ``loads`` (bytes), the EXEC (none if ``exec_cycles`` is None), a
    STORE per entry of ``stores``, an optional fence LOAD of ``fence_bytes`` and
    ``signals`` SIGNALs (``signal_hops`` away, default ``hops``)."""
    out = [Step(Opcode.WAIT, token=0, count=0) for _ in range(waits)]
    out += [Step(Opcode.LOAD, length=n, hops=hops) for n in loads]
    if exec_cycles is not None:
        out.append(Step(Opcode.EXEC, exec_cycles=exec_cycles))
    out += [Step(Opcode.STORE, length=n, hops=hops) for n in stores]
    if fence_bytes:
        out.append(Step(Opcode.LOAD, length=fence_bytes, hops=hops))
    sh = hops if signal_hops is None else signal_hops
    out += [Step(Opcode.SIGNAL, hops=sh) for _ in range(signals)]
    return out


def op_cycles(loads: Sequence[int] | Sequence[Step], exec_cycles: int | None = None,
              stores: Sequence[int] = (), *, hops: int = 1, signals: int = 0, waits: int = 0,
              fence_bytes: int = 0, flit_bits: int = 64, max_packet_bytes: int = 64) -> int:
    """Cycles a tile is occupied by one micro-op's command group, nothing else competing.

    Either a list of :class:`Step` (any group), or the group :func:`op_steps` builds from
    the LOAD lengths, the EXEC's cycles, the STORE lengths, the SIGNAL and WAIT counts
    (WAITs already satisfied) at ``hops`` from the memory tile. The value is the group's
    END cycle run alone minus :data:`FIRST_ISSUE` (see the module docstring for when a
    tile's occupancies add up to its stream's END exactly). For codegen's groups this is
    ``sum(max(3, 1 + d) for each LOAD/STORE) + max(3, 1 + exec) + 3 * (signals + waits)``
    (a few microseconds); other groups run through the rules.

    Examples
    --------
    Four 64-byte row LOADs, a 100-cycle EXEC, two 64-byte row STOREs, one SIGNAL, 1 hop:

    >>> op_cycles([64] * 4, 100, [64] * 2, hops=1, signals=1)
    204
    """
    if loads and all(isinstance(s, Step) for s in loads):
        steps = list(loads)
    elif stores or not fence_bytes or exec_cycles is None:
        # The closed form (each command waits for what the one before it occupies):
        # max(3, 1 + d) per LOAD/STORE, max(3, 1 + exec), 3 per SIGNAL and WAIT.
        kw = dict(flit_bits=flit_bits, max_packet_bytes=max_packet_bytes)
        dma = [noc.load_cycles(n, hops, **kw) for n in loads]
        dma += [noc.store_cycles(n, hops, **kw) for n in stores]
        if fence_bytes:
            dma.append(noc.load_cycles(fence_bytes, hops, **kw))
        total = sum(max(ISSUE_INTERVAL, 1 + d) for d in dma)
        if exec_cycles is not None:
            total += max(ISSUE_INTERVAL, 1 + exec_cycles)
        return total + ISSUE_INTERVAL * (signals + waits)
    else:                 # a fence LOAD right after the EXEC overlaps it: run the rules
        steps = op_steps(list(loads), exec_cycles, list(stores), hops=hops, signals=signals,
                         waits=waits, fence_bytes=fence_bytes)
    # WAITs are satisfied already: as WAITs of nothing (count 0) they issue at once.
    steps = [Step(Opcode.WAIT, count=0) if s.op is Opcode.WAIT else s for s in steps]
    st = _Tile(steps + [Step(Opcode.END)], flit_bits, max_packet_bytes)
    _run({"op": st}, {}, {"op": (0, 0)})
    return st.issue[-1] - FIRST_ISSUE


# ---- the memory tile under contention ------------------------------------------------

def memory_service_cycles(op: Opcode | str, length: int, *, flit_bits: int = 64,
                          max_packet_bytes: int = 64) -> int:
    """Cycles the memory tile is busy serving one LOAD or STORE of ``length`` bytes.

    The memory tile handles one packet at a time: a READ_REQ costs
    :data:`accelpool.sched.cost.noc.LOAD_PACKET_OVERHEAD` plus its data flits (the response is sent
    while it is served), a WRITE its head plus its data flits. With nothing else competing
    this is the part of :func:`command_cycles` that does not depend on the distance; when
    several tiles use the memory tile at once their packets are served one after another
    (round robin between the router's input ports), so the memory tile's busy time, not
    the links, bounds them.
    """
    op = _opcode(op)
    return sum(_packet_services(op, length, flit_bits, max_packet_bytes))


def op_memory_cycles(loads: Sequence[int], stores: Sequence[int] = (), *, fence_bytes: int = 0,
                     flit_bits: int = 64, max_packet_bytes: int = 64) -> int:
    """Cycles the memory tile is busy with one micro-op's LOADs (and fence) and STOREs:
    what the group takes from every other tile using the memory tile at the same time
    (the resource a contention-aware scheduler books, instead of link serialisation)."""
    kw = dict(flit_bits=flit_bits, max_packet_bytes=max_packet_bytes)
    return (sum(memory_service_cycles(Opcode.LOAD, n, **kw)
                for n in [*loads, *([fence_bytes] if fence_bytes else [])])
            + sum(memory_service_cycles(Opcode.STORE, n, **kw) for n in stores))


def _packet_services(op: Opcode, length: int, flit_bits: int, max_packet_bytes: int) -> list[int]:
    if op not in (Opcode.LOAD, Opcode.STORE):
        raise ValueError(f"The memory tile serves load and store, not {op.name.lower()!r}")
    out = []
    left = length
    while left > 0:
        c = min(left, max_packet_bytes)
        f = noc.data_flits(c, flit_bits, max_packet_bytes)
        out.append(f + (noc.LOAD_PACKET_OVERHEAD if op is Opcode.LOAD else 1))
        left -= c
    return out


def shared_memory_finish(transfers: Sequence[tuple[int, Opcode | str, int, int]], *,
                         flit_bits: int = 64, max_packet_bytes: int = 64) -> list[int]:
    """When concurrent DMA commands of different tiles free their NIs, sharing the memory tile.

    Parameters
    ----------
    transfers : list of (issue cycle, "load" or "store", length, hops)
        One DMA command per tile (issued in that cycle, ``hops`` from the memory tile).

    Returns
    -------
    list of int
        Per transfer, the cycle its NI takes the next command (``a + 1 + d`` of the
        rules; with one transfer exactly that of :func:`command_cycles`).
        See :func:`shared_memory_timelines` for the model.
    """
    runs = _shared([(a, h, [(op, n)]) for a, op, n, h in transfers], flit_bits,
                   max_packet_bytes)
    return [st.ni_free for st in runs]


def shared_memory_timelines(streams: Sequence[tuple[int, int, Sequence[tuple[Opcode | str, int]]]],
                            *, flit_bits: int = 64, max_packet_bytes: int = 64) -> list[list[int]]:
    """Issue cycles of several tiles' back-to-back LOAD/STORE sequences sharing the memory tile.

    Parameters
    ----------
    streams : list of (first issue cycle, hops, [(op, length), ...])
        Per tile, DMA commands to the memory tile issued one after the other (each at
        ``max(previous + ISSUE_INTERVAL, the NI free)``, as the rules say).

    Returns
    -------
    list of list of int
        Per tile, the issue cycle of each command and, last, the cycle its NI is free
        after the last one (where an END would issue, at the earliest ``ISSUE_INTERVAL``
        after the last command).

    Model. The memory tile is one server taking whole packets, round robin between the
    tiles whose packets have arrived. Packet ``k`` of a command issued at ``a`` arrives at
    ``a + hops + 2`` plus the flits the NI sent before it (LOAD: 2 per READ_REQ; STORE:
    head and data of each WRITE) and is served for its share of
    :func:`memory_service_cycles`; after the last packet's service the LOAD's data is in
    the scratchpad ``hops + 1`` cycles later, the STORE's acknowledgement back ``hops + 3``
    cycles later, and the NI is free. These constants make one tile alone equal
    :mod:`accelpool.sched.cost.noc` exactly; the interleaving is a model of the RTL's router
    arbitration, compared with the RTL in ``test_stream.py`` (within a cycle there).
    """
    return [st.issue for st in _shared(streams, flit_bits, max_packet_bytes)]


def _shared(streams, flit_bits: int, max_packet_bytes: int) -> list[_Tile]:
    server = _MemoryServer(flit_bits, max_packet_bytes, len(streams))
    tiles = {}
    for i, (a, h, cmds) in enumerate(streams):
        steps = [Step(_opcode(op), length=n, hops=h, to_memory=True) for op, n in cmds]
        for st in steps:
            if st.op not in (Opcode.LOAD, Opcode.STORE):
                raise ValueError(f"The memory tile serves load and store, not "
                                 f"{st.op.name.lower()!r}")
        tiles[i] = _Tile(steps + [Step(Opcode.END)], flit_bits, max_packet_bytes, i, server)
        tiles[i].earliest = a
    _run(tiles, {}, {i: (0, 0) for i in tiles}, server)
    return list(tiles.values())
