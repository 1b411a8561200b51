"""Run EXEC commands of a sparse unit (SMU, GNN) in amaranth.sim with its scratchpad.

Shared by the units' tests and the benchmark. The unit sits in a
:class:`accelpool.tb.unit_top.UnitTop` (the real :class:`accelpool.hw.scratchpad.Scratchpad`); each
:class:`accelpool.spec.formats.SparseJob`'s image is loaded through the scratchpad's write stream,
its command sent on ``cmd``, the busy cycles counted (command accepted -> ``busy`` low)
and the result (FP32 or, with the job's ``out_bf16``, BF16) read back through the read
stream; on request the whole scratchpad is read back too (to compare with a functional
model). A 0/1 ``pattern`` inserts idle cycles on ``cmd`` and ``wr_data`` and backpressure
on ``rd_data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from accelpool.spec.formats import SparseJob
from accelpool.tb.streams import always, stream_get, stream_put
from accelpool.tb.unit_top import UnitTop

__all__ = ["SparseRun", "run_sparse", "run_sparse_many", "sparse_top"]


@dataclass
class SparseRun:
    result: np.ndarray     # encodings [rows, cols]: uint32 FP32, or uint16 BF16 (out_bf16)
    cycles: int | None     # command accepted -> busy low (None when commands overlapped)
    raw: bytes             # the result region as read back (pad bytes included)


def sparse_top(unit) -> UnitTop:
    """A sparse unit (:class:`accelpool.hw.sparse_unit.SparseUnit`) with a scratchpad of its size."""
    return UnitTop(unit, depth=unit.depth, read_ports=unit.PORTS[:3], write_ports=unit.PORTS[3:])


def run_sparse_many(unit, commands, *, pattern=None, back_to_back: bool = False,
                    max_cycles: int = 10_000_000, dump: bytearray | None = None
                    ) -> list[SparseRun]:
    """Run ``commands`` (a list of ``(func, job)``) one after another on ``unit``.

    Every image is loaded first (into a zeroed scratchpad). With ``back_to_back`` each
    command is offered as soon as the previous one was accepted (so it waits on
    ``cmd.ready`` while the unit is busy) and no cycle counts are returned. With ``dump``
    (a bytearray) the whole scratchpad is read back into it at the end.
    """
    wb = unit.word_bytes
    for _, job in commands:
        end = job.image.start + len(job.image.contents)
        if end > unit.depth * wb:
            raise ValueError(f"The operands end at byte {end}; the scratchpad holds "
                             f"{unit.depth * wb}")
    top = sparse_top(unit)
    layout = type(unit).command_layout()
    runs: list[SparseRun] = []

    async def wait_idle(ctx):
        t = 0
        while ctx.get(top.busy):
            await ctx.tick()
            t += 1
            if t > max_cycles:
                raise AssertionError(f"the unit is still busy after {max_cycles} cycles")
        return t

    async def tb(ctx):
        pat = pattern or always()
        for _, job in commands:
            blob = job.image.contents
            n = len(blob) // wb
            await stream_put(ctx, top.wr_cmd, {"addr": job.image.start // wb, "count": n})
            for i in range(n):
                await stream_put(ctx, top.wr_data, int.from_bytes(blob[wb * i:wb * i + wb],
                                                                  "little"), pat)
            await ctx.tick().until(~top.spad_busy)
        cycles = []
        for func, job in commands:
            await stream_put(ctx, top.cmd, layout.const({"func": func, "args": job.args}), pat)
            if not back_to_back:
                cycles.append(await wait_idle(ctx))
        if back_to_back:
            await wait_idle(ctx)
            cycles = [None] * len(commands)
        for (_, job), t in zip(commands, cycles):
            n = -(-job.out_bytes // wb)
            await stream_put(ctx, top.rd_cmd, {"addr": job.out_addr // wb, "count": n})
            words = [await stream_get(ctx, top.rd_data, pat) for _ in range(n)]
            raw = b"".join(v.to_bytes(wb, "little") for v in words)[:job.out_bytes]
            runs.append(SparseRun(job.read_result(bytes(job.out_addr) + raw), t, raw))
        if dump is not None:
            await stream_put(ctx, top.rd_cmd, {"addr": 0, "count": unit.depth})
            words = [await stream_get(ctx, top.rd_data, pat) for _ in range(unit.depth)]
            dump[:] = b"".join(v.to_bytes(wb, "little") for v in words)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return runs


def run_sparse(unit, job: SparseJob, func, *, pattern=None, max_cycles: int = 10_000_000,
               dump: bytearray | None = None) -> SparseRun:
    """Run one command ``func`` with ``job``'s operands on ``unit`` (``dump``: as
    :func:`run_sparse_many`)."""
    return run_sparse_many(unit, [(func, job)], pattern=pattern, max_cycles=max_cycles,
                           dump=dump)[0]
