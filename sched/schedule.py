"""A schedule: where and when each micro-op runs, and the transfers between them.

What every scheduler (:mod:`accelpool.sched.schedulers`) returns and what the compiler
(:mod:`accelpool.sched.codegen`) lowers into command streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, NamedTuple

import networkx as nx

from accelpool.sched.pool import AllocationError, Pool, PoolState, balance_report

__all__ = ["Slot", "Transfer", "Schedule"]


class Slot(NamedTuple):
    """Where and when one micro-op runs."""

    unit: str
    start: int
    finish: int


class Transfer(NamedTuple):
    """One result moved between units: the edge ``src -> dst`` over the mesh."""

    src: Hashable
    dst: Hashable
    src_unit: str
    dst_unit: str
    nbytes: int
    start: int
    arrive: int


@dataclass
class Schedule:
    """A schedule: micro-op -> (unit, start, finish), plus the transfers between units.

    Attributes
    ----------
    name : str
        The scheduler that made it.
    pool : Pool
    slots : dict
        Node -> :class:`Slot`.
    transfers : list of Transfer
    planned : int
        The scheduler's own makespan estimate (before :func:`replay`).
    """

    name: str
    pool: Pool
    slots: dict[Hashable, Slot]
    transfers: list[Transfer] = field(default_factory=list)
    planned: int = 0

    @property
    def makespan(self) -> int:
        return max((s.finish for s in self.slots.values()), default=0)

    def unit_order(self) -> dict[str, list[Hashable]]:
        """Micro-ops per unit, in start order."""
        out: dict[str, list] = {u.name: [] for u in self.pool.units}
        for n, s in sorted(self.slots.items(), key=lambda kv: (kv[1].start, kv[1].finish)):
            out[s.unit].append(n)
        return out

    def busy(self) -> dict[str, int]:
        """Busy cycles per unit."""
        out = {u.name: 0 for u in self.pool.units}
        for s in self.slots.values():
            out[s.unit] += s.finish - s.start
        return out

    def utilization(self) -> dict[str, float]:
        """Per-unit busy share and per-kind balance (:func:`accelpool.sched.pool.balance_report`)."""
        return balance_report(self.pool, self.busy(), self.makespan)

    def verify(self, dag: nx.DiGraph) -> None:
        """Check the schedule: every micro-op placed once on a unit that supports it, no
        two overlapping on one unit, every micro-op starting after its inputs arrived.

        Raises
        ------
        AllocationError
            Naming the first offending micro-op.
        """
        missing = [n for n in dag.nodes if n not in self.slots]
        if missing:
            raise AllocationError(f"Schedule {self.name!r} does not place micro-op(s) "
                                  f"{missing[:5]!r}")
        state = PoolState(self.pool)
        for n, s in self.slots.items():
            unit = self.pool.unit(s.unit)
            op = dag.nodes[n]["op"]
            if unit not in self.pool.candidates(op, n):
                raise AllocationError(f"Micro-op {n!r} placed on {unit.name}, which does not "
                                      f"support {op.op.value} on {op.dtype.key}")
            state.reserve(unit, n, s.start, s.finish)
        arrive = {(t.src, t.dst): t.arrive for t in self.transfers}
        for u, v in dag.edges:
            ready = arrive.get((u, v), self.slots[u].finish)
            if self.slots[v].start < ready:
                raise AllocationError(f"Micro-op {v!r} starts at {self.slots[v].start}, before "
                                      f"its input from {u!r} arrives at {ready}")

    def summary(self, lower: int | None = None) -> str:
        """A few readable lines: makespan, bound, per-unit utilisation."""
        util = self.utilization()
        lines = [f"schedule {self.name} on pool {self.pool.name}: {len(self.slots)} micro-ops, "
                 f"makespan {self.makespan} cycles"
                 + (f" ({self.makespan / lower:.3f}x the lower bound {lower})" if lower else "")
                 + f", {len(self.transfers)} transfers"]
        busy = self.busy()
        for u in self.pool.units:
            nops = sum(1 for s in self.slots.values() if s.unit == u.name)
            lines.append(f"  {u.name:6} {u.kind.key:6} {nops:6d} ops  occupied {busy[u.name]:9d}  "
                         f"{100 * util[f'util.{u.name}']:5.1f}%")
        for k, v in util.items():
            if k.startswith("balance."):
                lines.append(f"  balance {k[8:]}: {v:.3f} (min/max occupied)")
        return "\n".join(lines)
