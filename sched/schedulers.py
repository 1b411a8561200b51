"""Schedulers: plain functions ``(dag, pool, cost) -> Schedule`` (:mod:`accelpool.sched.schedule`).

``dag`` is a networkx DiGraph whose nodes carry the micro-op in attribute ``op``
(:class:`accelpool.sched.ir.MicroOp`); ``pool`` a :class:`accelpool.sched.pool.Pool`; ``cost`` a
:class:`accelpool.sched.cost.model.CostModel` (or any object with the same ``task_cycles``,
``edge_bytes``, ``comm_cycles`` and ``mean_comm_cycles``, such as :class:`TableCost`).

=============  =========================================================================
``greedy``     the seed's algorithm: topological order; among the units that support the
               op type and data type, the one with the lowest estimated latency (its
               cycles for the micro-op); start when it is free and the data has arrived
``heft``       insertion-based HEFT (Topcuoglu, Hariri and Wu 2002) with communication
               costs from the NoC model (hop distance, flits, packet overhead)
``lookahead``  HEFT priorities, NoC link contention while placing (a micro-op's traffic
               books the links of its XY routes: to and from the memory tile, or from
               its producers in direct dataflow) and one level of lookahead: a unit is
               chosen for the finish time it allows the micro-op's children, not its own
``search``     runs ``heft``, ``lookahead``, a critical-path-priority HEFT and ``greedy``
               and keeps the schedule with the shortest contended makespan: never worse
               than any of them under the common evaluation
=============  =========================================================================

Every scheduler decides an assignment and a per-unit order; :func:`replay` then times it
under one common model (units run one micro-op at a time in that order, NoC traffic books
the links of its XY routes, see :func:`replay`), so that makespans of different
schedulers are compared on equal terms. ``Schedule.planned`` keeps
the scheduler's own estimate.

:func:`lower_bound` is max(critical path with every micro-op on its fastest unit and free
communication, and for every set of units the work that can only run there divided by its
size).
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Hashable, Mapping, Sequence

import networkx as nx

from accelpool.sched.cost.model import CostModel, LinkTable
from accelpool.sched.pool import AllocationError, Pool, Unit
from accelpool.sched.schedule import Schedule, Slot, Transfer
from accelpool.spec.config import UnitKind

__all__ = [
    "TableCost", "greedy", "heft", "lookahead", "search",
    "SCHEDULERS", "lower_bound", "replay", "upward_rank",
]


class TableCost:
    """A cost model given as tables (for textbook examples and tests).

    Parameters
    ----------
    cycles : mapping node -> sequence of int
        Execution time of each node on each unit, indexed like ``pool.units``.
    comm : mapping (u, v) -> int
        Communication cost of each edge when its ends run on different units (0 on the
        same unit); also its mean cost for HEFT's ranking, as in the HEFT paper.
    """

    def __init__(self, cycles: Mapping[Hashable, Sequence[int]], comm: Mapping[tuple, int]):
        self.cycles = cycles
        self.comm = comm

    def task_cycles(self, dag: nx.DiGraph, n: Hashable, unit: Unit) -> int:
        return self.cycles[n][unit.index]

    def edge_bytes(self, dag: nx.DiGraph, u: Hashable, v: Hashable) -> int:
        return self.comm[(u, v)]

    def comm_cycles(self, nbytes: int, src: Unit, dst: Unit) -> int:
        return 0 if src is dst else nbytes

    def mean_comm_cycles(self, nbytes: int, srcs: Sequence[Unit], dsts: Sequence[Unit]) -> float:
        return float(nbytes)


# -- shared preparation -----------------------------------------------------------------

class _Problem:
    """The DAG in topological order with candidate units, cycles and edge bytes precomputed."""

    def __init__(self, dag: nx.DiGraph, pool: Pool, cost: Any):
        self.dag, self.pool, self.cost = dag, pool, cost
        self.nodes = list(nx.topological_sort(dag))
        index = {n: i for i, n in enumerate(self.nodes)}
        self.index = index
        n = len(self.nodes)
        self.cands: list[tuple[Unit, ...]] = [()] * n
        self.w: list[list[tuple[Unit, int]]] = [[] for _ in range(n)]
        self.preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        self.succs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        edge_bytes = cost.edge_bytes
        for u, v, d in dag.edges(data=True):
            b = d.get("bytes")
            if b is None:
                b = edge_bytes(dag, u, v)
            iu, iv = index[u], index[v]
            self.succs[iu].append((iv, b))
            self.preds[iv].append((iu, b))
        task_cycles = cost.task_cycles
        external = getattr(cost, "external_bytes", None)
        #: (bytes loaded from memory, bytes stored to memory) per node (CostModel only)
        self.io: list[tuple[int, int]] = [(0, 0)] * n
        #: memory dataflow: contention is on the memory tile's traffic, timed by _memory_io
        self.memory_dataflow = getattr(cost, "dataflow", None) == "memory"
        self.memory_at = pool.memory.at
        nodes_attr = dag.nodes
        for i, node in enumerate(self.nodes):
            op = nodes_attr[node]["op"]
            cands = pool.candidates(op, node)
            ws = _working_set(op)
            fits = [u for u in cands if u.kind is UnitKind.MEMORY or ws <= u.caps.scratchpad_bytes]
            if not fits:
                sizes = ", ".join(f"{u.name} {u.caps.scratchpad_bytes}" for u in cands)
                raise AllocationError(f"Micro-op {node!r} needs {ws} bytes of "
                                      f"scratchpad (operands and result) but its units have "
                                      f"{sizes}; decompose it into smaller tiles")
            self.cands[i] = cands if len(fits) == len(cands) else tuple(fits)
            if external is not None:
                ext = external(op, sum(b for _, b in self.preds[i]), not self.succs[i])
                self.io[i] = ext
                self.w[i] = [(u, task_cycles(dag, node, u, ext)) for u in fits]
            else:
                self.w[i] = [(u, task_cycles(dag, node, u)) for u in fits]

    def mean_w(self, i: int) -> float:
        ws = self.w[i]
        return sum(c for _, c in ws) / len(ws)

    def min_w(self, i: int) -> int:
        return min(c for _, c in self.w[i])


def _working_set(op: Any) -> int:
    return getattr(op, "bytes_in", 0) + getattr(op, "bytes_out", 0)


def upward_rank(P: _Problem) -> list[float]:
    """HEFT's upward rank: mean cost plus the heaviest path to an exit."""
    n = len(P.nodes)
    rank = [0.0] * n
    mean_comm = P.cost.mean_comm_cycles
    for i in range(n - 1, -1, -1):
        best = 0.0
        ci = P.cands[i]
        for j, b in P.succs[i]:
            r = mean_comm(b, ci, P.cands[j]) + rank[j]
            if r > best:
                best = r
        rank[i] = P.mean_w(i) + best
    return rank


def _downward_rank(P: _Problem) -> list[float]:
    n = len(P.nodes)
    rank = [0.0] * n
    mean_comm = P.cost.mean_comm_cycles
    for i in range(n):
        best = 0.0
        for j, b in P.preds[i]:
            r = rank[j] + P.mean_w(j) + mean_comm(b, P.cands[j], P.cands[i])
            if r > best:
                best = r
        rank[i] = best
    return rank


class _Timeline:
    """Bookings of one unit, for insertion-based placement.

    Keeps only the idle gaps that could hold some micro-op (at least ``min_dur`` long, the
    shortest duration any micro-op has on this unit) and the end of the last booking, so a
    search skips the slivers no micro-op fits in: the same answers as scanning every
    booking, without its quadratic cost.
    """

    __slots__ = ("gap_starts", "gap_ends", "end", "min_dur")

    def __init__(self, min_dur: int = 1) -> None:
        self.gap_starts: list[int] = []
        self.gap_ends: list[int] = []
        self.end = 0
        self.min_dur = max(1, min_dur)

    def earliest(self, ready: int, duration: int) -> int:
        """The earliest start >= ``ready`` with ``duration`` idle cycles."""
        ends = self.gap_ends
        if ends and ready < ends[-1]:
            starts = self.gap_starts
            i = bisect.bisect_right(ends, ready)
            for j in range(i, len(ends)):
                t = starts[j] if starts[j] > ready else ready
                if t + duration <= ends[j]:
                    return t
        return ready if ready > self.end else self.end

    def book(self, start: int, finish: int) -> None:
        """Book ``[start, finish)``, which :meth:`earliest` found free."""
        if start >= self.end:
            if start - self.end >= self.min_dur:
                self.gap_starts.append(self.end)
                self.gap_ends.append(start)
            self.end = finish
            return
        starts, ends = self.gap_starts, self.gap_ends
        j = bisect.bisect_right(starts, start) - 1
        if j < 0 or finish > ends[j]:
            raise AllocationError(f"Booking [{start}, {finish}) does not fit an idle gap")
        gs, ge = starts[j], ends[j]
        del starts[j], ends[j]
        if ge - finish >= self.min_dur:
            starts.insert(j, finish)
            ends.insert(j, ge)
        if start - gs >= self.min_dur:
            starts.insert(j, gs)
            ends.insert(j, start)


def _timelines(P: "_Problem") -> dict[str, _Timeline]:
    """One timeline per unit, knowing the shortest micro-op it may receive."""
    shortest: dict[str, int] = {}
    for ws in P.w:
        for u, c in ws:
            if c < shortest.get(u.name, 1 << 62):
                shortest[u.name] = c
    return {u.name: _Timeline(shortest.get(u.name, 1)) for u in P.pool.units}


def _links(cost: Any):
    """A link table for contention if the cost model has a mesh, else None."""
    return LinkTable(cost) if isinstance(cost, CostModel) else None


def _memory_io(P: _Problem, links: Any, i: int, u: Unit, start: int, cyc: int,
               book: bool) -> int:
    """Finish of micro-op ``i`` on ``u`` started at ``start`` (memory dataflow): its LOADs
    from and STOREs to the memory tile take the links of their routes (contention with
    every other tile's memory traffic), the computation sits between them."""
    if u.kind is UnitKind.MEMORY:
        return start + cyc
    cost = P.cost
    phases = cost.memory_phases(P.dag, P.nodes[i], u) if hasattr(cost, "memory_phases") else None
    if phases is not None:
        # command-level: the LOAD and STORE phases each need their share of the memory
        # tile's packet server, which every tile shares
        ld, ld_srv, ld_tail, middle, st, st_srv, st_tail = phases
        # A phase alone takes ld (st) cycles, of which the server is busy ld_srv (st_srv);
        # its other cycles (issue slots, hops, acknowledgements) overlap other tiles'
        # service, except what its last command takes after its last packet is served.
        # So a phase ends when both its own time has passed and the server has served it.
        # The server takes one packet at a time, round robin: while one of this phase's
        # packets waits there (a share ld_srv / ld of the phase alone), the packets of
        # phases already booked are served first; the phase takes that much longer
        # (:meth:`accelpool.sched.cost.model.LinkTable.interference`).
        t = links.interference(start, ld, ld_srv)
        t = max(t, links.server(ld_srv, start, book) + ld_tail)
        if book:
            links.record(start, t, ld_srv)
        t += middle
        t2 = links.interference(t, st, st_srv)
        t2 = max(t2, links.server(st_srv, t, book) + st_tail)
        if book:
            links.record(t, t2, st_srv)
        return t2
    mem = P.memory_at
    in_b, out_b = P.io[i]
    ld, st = cost.load_cycles(in_b, u.at), cost.store_cycles(out_b, u.at)
    compute = cyc - ld - st
    go = links.book if book else links.earliest
    t = go(in_b, mem, u.at, start, ld) if in_b else start
    t += compute
    return go(out_b, u.at, mem, t, st) if out_b else t


# -- common evaluation ------------------------------------------------------------------

def replay(P: _Problem, assign: Sequence[Unit], order_key: Sequence[float], name: str,
           planned: int = 0) -> Schedule:
    """Time an assignment and per-unit order under the common model.

    Micro-ops are taken in ``order_key`` order (ties: topological), which must be a
    topological order consistent with each unit's order. A micro-op starts when its unit
    has finished the previous one and every input has arrived. Memory dataflow (the cost
    model's default, what :mod:`accelpool.sched.codegen` emits): each micro-op's LOADs and STOREs
    book the links between its tile and the memory tile, and a consumer on another unit
    waits for the producer's fence and SIGNAL. Direct dataflow: a result crosses the mesh
    as one transfer per consuming micro-op on another unit, booked on the links of its
    route when the producer finishes.
    """
    n = len(P.nodes)
    seq = sorted(range(n), key=lambda i: (order_key[i], i))
    links = _links(P.cost)
    memory = P.memory_dataflow
    comm = P.cost.comm_cycles
    unit_free: dict[str, int] = {}
    arrive: list[dict[int, int]] = [dict() for _ in range(n)]
    finish = [0] * n
    pos = [0] * n
    for k, i in enumerate(seq):
        pos[i] = k
    slots: dict[Hashable, Slot] = {}
    transfers: list[Transfer] = []
    wtab = P.w
    for i in seq:
        u = assign[i]
        ready = unit_free.get(u.name, 0)
        for j, _ in P.preds[i]:
            if pos[j] > pos[i]:
                raise AllocationError(f"Order puts {P.nodes[i]!r} before its input "
                                      f"{P.nodes[j]!r}")
            t = arrive[i].get(j, finish[j])
            if t > ready:
                ready = t
        for v, c in wtab[i]:
            if v is u:
                cyc = c
                break
        if memory and links is not None:
            f = _memory_io(P, links, i, u, ready, cyc, book=True)
        else:
            f = ready + cyc
        finish[i] = f
        unit_free[u.name] = f
        slots[P.nodes[i]] = Slot(u.name, ready, f)
        for j, b in P.succs[i]:
            v = assign[j]
            if v is u:
                continue
            if links is not None and not memory:
                a = links.book(b, u.at, v.at, f)
            else:
                a = f + comm(b, u, v)
            arrive[j][i] = a
            transfers.append(Transfer(P.nodes[i], P.nodes[j], u.name, v.name, b, f, a))
    return Schedule(name, P.pool, slots, transfers, planned)


# -- schedulers -------------------------------------------------------------------------

def greedy(dag: nx.DiGraph, pool: Pool, cost: Any) -> Schedule:
    """The seed's scheduler: topological order; the supporting unit with the lowest
    estimated latency for the micro-op (ties: config order); start when that unit is free
    and the inputs have arrived."""
    P = _Problem(dag, pool, cost)
    comm = cost.comm_cycles
    n = len(P.nodes)
    assign: list[Unit] = [None] * n  # type: ignore[list-item]
    start = [0] * n
    finish = [0] * n
    free: dict[str, int] = {}
    for i in range(n):
        u, cyc = min(P.w[i], key=lambda uc: uc[1])   # min keeps the first of equals
        ready = free.get(u.name, 0)
        for j, b in P.preds[i]:
            t = finish[j] + comm(b, assign[j], u)
            if t > ready:
                ready = t
        assign[i], start[i], finish[i] = u, ready, ready + cyc
        free[u.name] = ready + cyc
    return replay(P, assign, start, "greedy", max(finish, default=0))


def _heft_core(P: _Problem, prio: Sequence[int], name: str) -> Schedule:
    comm = P.cost.comm_cycles
    n = len(P.nodes)
    lines = _timelines(P)
    assign: list[Unit] = [None] * n  # type: ignore[list-item]
    start = [0] * n
    finish = [0] * n
    preds, wtab = P.preds, P.w
    for i in prio:
        best_f = best_s = -1
        best_u = None
        pi = preds[i]
        for u, cyc in wtab[i]:
            ready = 0
            for j, b in pi:
                aj = assign[j]
                t = finish[j] if aj is u else finish[j] + comm(b, aj, u)
                if t > ready:
                    ready = t
            s = lines[u.name].earliest(ready, cyc)
            if best_u is None or s + cyc < best_f:
                best_f, best_s, best_u = s + cyc, s, u
        lines[best_u.name].book(best_s, best_f)
        assign[i], start[i], finish[i] = best_u, best_s, best_f
    return replay(P, assign, start, name, max(finish, default=0))


def heft(dag: nx.DiGraph, pool: Pool, cost: Any) -> Schedule:
    """Insertion-based HEFT: micro-ops by decreasing upward rank (mean cycles over their
    units plus mean NoC transfer cost), each on the unit giving the earliest finish, in the
    first idle gap long enough (insertion policy)."""
    P = _Problem(dag, pool, cost)
    rank = upward_rank(P)
    prio = sorted(range(len(P.nodes)), key=lambda i: (-rank[i], i))
    s = _heft_core(P, prio, "heft")
    s.ranks = {P.nodes[i]: rank[i] for i in range(len(P.nodes))}  # type: ignore[attr-defined]
    return s


def _cp_heft(P: _Problem) -> Schedule:
    """HEFT placement with priority upward + downward rank (critical-path first, CPOP's)."""
    up, down = upward_rank(P), _downward_rank(P)
    # A valid topological priority: sort by (downward rank + own cost) keeps precedence
    # only with ties resolved by topological index, so sort by earliest-start levels.
    prio = sorted(range(len(P.nodes)), key=lambda i: (down[i], -(up[i] + down[i]), i))
    return _heft_core(P, prio, "cp-heft")


def lookahead(dag: nx.DiGraph, pool: Pool, cost: Any) -> Schedule:
    """HEFT order with NoC link contention and one level of lookahead.

    For micro-op ``t`` (by decreasing upward rank) and each unit ``u`` that can run it,
    ``t``'s traffic is timed on the links it would use, in contention with the traffic
    already placed (memory dataflow: ``t``'s LOADs from and STOREs to the memory tile;
    direct dataflow: its inputs' transfers from their producers), ``t``'s finish on ``u``
    is found by insertion, and then each child of ``t`` is placed tentatively on its best
    unit given ``t`` on ``u``. The unit minimising the latest tentative child finish
    (then ``t``'s own finish) wins; only ``t`` and its traffic are booked.
    """
    P = _Problem(dag, pool, cost)
    rank = upward_rank(P)
    n = len(P.nodes)
    prio = sorted(range(n), key=lambda i: (-rank[i], i))
    comm = cost.comm_cycles
    links = _links(cost)
    lines = _timelines(P)
    assign: list[Unit | None] = [None] * n
    start = [0] * n
    finish = [0] * n
    preds, succs, wtab = P.preds, P.succs, P.w

    memory = P.memory_dataflow

    def arrival(j: int, b: int, u: Unit) -> int:
        aj = assign[j]
        if aj is u:
            return finish[j]
        if links is not None and not memory:
            return links.earliest(b, aj.at, u.at, finish[j])
        return finish[j] + comm(b, aj, u)

    def place(i: int, u: Unit, ready: int, cyc: int, book: bool) -> tuple[int, int]:
        """(start, finish) of ``i`` on ``u``: the first gap that holds it, contention
        included (memory dataflow), found by widening the gap until it fits."""
        line = lines[u.name]
        dur = cyc
        for _ in range(4):
            s = line.earliest(ready, dur)
            f = _memory_io(P, links, i, u, s, cyc, book=False) if memory and links else s + cyc
            if f - s <= dur:
                break
            dur = f - s
        else:
            s = max(ready, line.end)
            f = _memory_io(P, links, i, u, s, cyc, book=False) if memory and links else s + cyc
        if book and memory and links is not None:
            f2 = _memory_io(P, links, i, u, s, cyc, book=True)
            assert f2 == f
        return s, f

    for i in prio:
        best = None
        for u, cyc in wtab[i]:
            ready = 0
            for j, b in preds[i]:
                t = arrival(j, b, u)
                if t > ready:
                    ready = t
            s, f = place(i, u, ready, cyc, book=False)
            # lookahead: the children's best finish with t on u
            horizon = f
            for c, bc in succs[i]:
                best_c = None
                for v, cycc in wtab[c]:
                    rc = f if v is u else f + comm(bc, u, v)
                    for j, b in preds[c]:
                        if j != i and assign[j] is not None:
                            t = finish[j] if assign[j] is v else finish[j] + comm(b, assign[j], v)
                            if t > rc:
                                rc = t
                    sc = lines[v.name].earliest(rc, cycc)
                    if v is u and sc < f:
                        sc = max(sc, f)
                    fc = sc + cycc
                    if best_c is None or fc < best_c:
                        best_c = fc
                if best_c > horizon:
                    horizon = best_c
            key = (horizon, f)
            if best is None or key < best[0]:
                best = (key, u, s, f)
        _, u, s, f = best
        if links is not None:
            if memory:
                s2, f2 = place(i, u, s, next(c for v, c in wtab[i] if v is u), book=True)
                assert (s2, f2) == (s, f)
            else:
                for j, b in preds[i]:
                    if assign[j] is not u:
                        links.book(b, assign[j].at, u.at, finish[j])
        lines[u.name].book(s, f)
        assign[i], start[i], finish[i] = u, s, f
    return replay(P, assign, start, "lookahead", max(finish, default=0))


def search(dag: nx.DiGraph, pool: Pool, cost: Any) -> Schedule:
    """Portfolio search: ``heft``, ``lookahead``, critical-path HEFT and ``greedy``, timed
    under the common contended model; the shortest wins (ties: that order)."""
    P = _Problem(dag, pool, cost)
    rank = upward_rank(P)
    prio = sorted(range(len(P.nodes)), key=lambda i: (-rank[i], i))
    tried = [_heft_core(P, prio, "heft"), lookahead(dag, pool, cost), _cp_heft(P),
             greedy(dag, pool, cost)]
    best = min(tried, key=lambda s: s.makespan)
    best.name = f"search({best.name})"
    best.tried = {s.name: s.makespan for s in tried}  # type: ignore[attr-defined]
    return best


#: Every scheduler by name.
SCHEDULERS: Mapping[str, Callable[[nx.DiGraph, Pool, Any], Schedule]] = {
    "greedy": greedy, "heft": heft, "lookahead": lookahead, "search": search,
}


def lower_bound(dag: nx.DiGraph, pool: Pool, cost: Any) -> int:
    """A makespan no schedule can beat.

    max of: the critical path with every micro-op on its fastest unit and no
    communication; and, for every set of units that is some micro-op's candidate set, the
    fastest-unit work of all micro-ops confined to that set divided by its size.
    """
    P = _Problem(dag, pool, cost)
    n = len(P.nodes)
    mw = [P.min_w(i) for i in range(n)]
    longest = [0] * n
    for i in range(n):
        longest[i] = mw[i] + max((longest[j] for j, _ in P.preds[i]), default=0)
    cp = max(longest, default=0)
    sets: dict[frozenset, int] = {}
    for i in range(n):
        key = frozenset(u.name for u in P.cands[i])
        sets[key] = sets.get(key, 0) + mw[i]
    work = 0.0
    for s in sets:
        total = sum(v for k, v in sets.items() if k <= s)
        work = max(work, total / len(s))
    return max(cp, math.ceil(work))
