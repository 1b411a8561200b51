"""Run one EXEC command of a sparse unit (SMU, GNN) in amaranth.sim with its scratchpad.

Shared by the units' tests and the benchmark: the operands of a
:class:`sched.formats.SparseJob` are preloaded into a :class:`tb.unit_memory.UnitWithMemory`
memory, the command is sent on ``cmd`` (optionally after random idle cycles), and the
busy cycles (command accepted -> ``busy`` low) and the result are returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from sched.formats import SparseJob
from tb.streams import stream_put
from tb.unit_memory import UnitWithMemory

__all__ = ["SparseRun", "run_sparse"]


@dataclass
class SparseRun:
    result: np.ndarray     # FP32 encodings, uint32 [rows, cols]
    cycles: int            # command accepted -> busy low
    memory: bytes          # the whole scratchpad afterwards


def run_sparse(unit, job: SparseJob, func, *, pattern=None, max_cycles: int | None = None
               ) -> SparseRun:
    """Run ``func`` with ``job``'s operands on ``unit`` (an :class:`hw.sparse_unit.SparseUnit`).

    Parameters
    ----------
    pattern : iterator of 0/1, optional
        Idle insertion before the command is offered (:mod:`tb.streams`).
    max_cycles : int, optional
        Fail if the unit is still busy after this many cycles.
    """
    words = job.image.words()
    if len(words) > unit.depth:
        raise ValueError(f"The operands take {len(words)} words; the scratchpad holds {unit.depth}")
    top = UnitWithMemory(unit, reads=unit.PORTS[:3], writes=unit.PORTS[3:],
                         word_bits=unit.word_bits, depth=unit.depth, init=words)
    payload = type(unit).command_layout().const({"func": func, "args": job.args})
    out: dict = {}
    limit = max_cycles or 10_000_000

    async def tb(ctx):
        await stream_put(ctx, top.cmd, payload, pattern)
        cycles = 0
        while ctx.get(top.busy):
            await ctx.tick()
            cycles += 1
            if cycles > limit:
                raise AssertionError(f"the unit is still busy after {limit} cycles")
        out["cycles"] = cycles
        wb = unit.word_bytes
        first = job.out_addr // wb
        n = -(-job.out_bytes // wb)
        raw = b"".join(ctx.get(top.mem.data[first + i]).to_bytes(wb, "little") for i in range(n))
        out["memory"] = bytes(job.out_addr) + raw

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return SparseRun(job.read_result(out["memory"]), out["cycles"], out["memory"])
