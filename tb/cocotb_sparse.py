"""cocotb helper: one sparse-unit command on a :class:`tb.unit_top.UnitTop`, through
:class:`tb.cocotb_unit.UnitTB` (load the job's image, execute, read the result back)."""

from __future__ import annotations

from sched.formats import SparseJob
from tb.cocotb_unit import UnitTB

__all__ = ["run_job", "make_tb"]


async def run_job(tb: UnitTB, unit_cls, func, job: SparseJob):
    """Returns ``(result uint32 [rows, cols], raw result bytes with padding, busy cycles)``."""
    await tb.load(job.image.start, job.image.contents)
    payload = unit_cls.command_layout().const({"func": func, "args": job.args})
    cycles = await tb.execute(payload.as_value().value)
    raw = await tb.read(job.out_addr, job.out_bytes)
    return job.read_result(bytes(job.out_addr) + raw), raw, cycles


def make_tb(dut, unit_cls, lanes: int, *, stall: float | None, seed: int = 0) -> UnitTB:
    """A :class:`UnitTB` for ``unit_cls(lanes=lanes, scratchpad_bytes=...)`` from ``tb_params``."""
    from tb.harness import tb_params
    unit = unit_cls(lanes=lanes, scratchpad_bytes=tb_params()["scratchpad_bytes"])
    return UnitTB(dut, word_bytes=unit.word_bytes, addr_width=unit.addr_width, stall=stall,
                  seed=seed)
