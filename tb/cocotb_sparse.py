"""cocotb helper: one sparse-unit command on a :class:`accelpool.tb.unit_top.UnitTop`, through
:class:`accelpool.tb.cocotb_unit.UnitTB` (load the job's image, execute, read the result back)."""

from __future__ import annotations

import numpy as np

from accelpool.spec.config import load_config
from accelpool.spec.formats import SparseJob
from accelpool.spec.golden.numerics import fp32_to_bf16_bits
from accelpool.tb.cocotb_unit import UnitTB
from accelpool.tb.harness import tb_params

__all__ = ["run_job", "make_tb", "reset_tb", "check_result", "check_job", "tile_with_lanes"]


async def run_job(tb: UnitTB, unit_cls, func, job: SparseJob):
    """Returns ``(result uint32 [rows, cols], raw result bytes with padding, busy cycles)``."""
    await tb.load(job.image.start, job.image.contents)
    payload = unit_cls.command_layout().const({"func": func, "args": job.args})
    cycles = await tb.execute(payload.as_value().value)
    raw = await tb.read(job.out_addr, job.out_bytes)
    return job.read_result(bytes(job.out_addr) + raw), raw, cycles


def make_tb(dut, unit_cls, lanes: int, *, stall: float | None, seed: int = 0) -> UnitTB:
    """A :class:`UnitTB` for ``unit_cls(lanes=lanes, scratchpad_bytes=...)`` from ``tb_params``."""
    unit = unit_cls(lanes=lanes, scratchpad_bytes=tb_params()["scratchpad_bytes"])
    return UnitTB(dut, word_bytes=unit.word_bytes, addr_width=unit.addr_width, stall=stall,
                  seed=seed)


async def reset_tb(dut, unit_cls, *, stall: float | None, seed: int = 0) -> tuple[int, UnitTB]:
    """The lanes of ``tb_params`` and a :class:`UnitTB` of :func:`make_tb` for them, reset.

    Returns
    -------
    lanes : int
    tb : UnitTB
    """
    lanes = tb_params()["lanes"]
    tb = make_tb(dut, unit_cls, lanes, stall=stall, seed=seed)
    await tb.reset()
    return lanes, tb


def check_result(got, raw: bytes, want_fp32, rows: int, cols: int, out_bf16: bool,
                 what: str = "", fill: int = 0x5A) -> None:
    """Assert a sparse unit's results: ``got`` equals the golden FP32 results (rounded to
    BF16 with ``out_bf16``) bit for bit, and the row padding still holds ``fill``."""
    want = fp32_to_bf16_bits(want_fp32) if out_bf16 else want_fp32
    assert (got == want).all(), f"{what}{int((got != want).sum())} of {got.size} results differ"
    elem = 2 if out_bf16 else 4
    pad = np.frombuffer(raw, np.uint8).reshape(rows, -1)[:, cols * elem:]
    assert (pad == fill).all(), f"{what}padding written"


async def check_job(tb: UnitTB, unit_cls, func, job: SparseJob, want_fp32, model_cycles: int, *,
                    rows: int, cols: int, out_bf16: bool, what: str = "") -> None:
    """Run ``job`` (:func:`run_job`), assert its results (:func:`check_result`) and that its
    busy cycles equal ``model_cycles``; ``what`` prefixes the messages."""
    got, raw, cycles = await run_job(tb, unit_cls, func, job)
    check_result(got, raw, want_fp32, rows, cols, out_bf16, what)
    assert cycles == model_cycles, f"{what}RTL {cycles} cycles, model {model_cycles}"


def tile_with_lanes(name: str, lanes: int):
    """The default config's tile ``name`` with ``lanes`` lanes (for the cycle model)."""
    t = load_config().tile(name)
    return type(t)(t.name, t.kind, t.x, t.y, t.dtypes, {**t.params, "lanes": lanes})
