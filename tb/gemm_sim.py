"""Run a :class:`accelpool.hw.systolic.SystolicGemm` unit in amaranth.sim against a scratchpad model.

:class:`GemmSimTop` joins a unit to a ``lib.memory.Memory`` with its three read ports and
one write port; :func:`run_gemm` loads A (row-major, word-aligned row pitch), B (and C)
in the layout of :class:`accelpool.spec.gemm_layout.GemmLayout`, sends one command, counts the busy
cycles and reads D back; :func:`run_image` runs one command on a raw scratchpad image
and returns the whole scratchpad after it (to compare with :mod:`accelpool.sched.unitsim_gemm`).
Used by the unit tests and the dense benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.sim import Simulator

from accelpool.spec.gemm_layout import GemmLayout
from accelpool.tb.unit_top import UnitTop

__all__ = ["GemmSimTop", "GemmRun", "run_image", "run_gemm", "plan_regions", "cocotb_top"]


class GemmSimTop(wiring.Component):
    """A unit and a scratchpad memory (initial contents ``init``, words as ints)."""

    def __init__(self, unit, init):
        self.unit = unit
        self.mem = memory.Memory(shape=unit.word_bits, depth=1 << unit.addr_width, init=init)
        super().__init__({"cmd": wiring.In(stream.Signature(unit.cmd_layout)),
                          "busy": wiring.Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = u = self.unit
        m.submodules.mem = self.mem
        for name in ("rd_a", "rd_b", "rd_c"):
            p = self.mem.read_port()
            port = getattr(u, name)
            m.d.comb += [p.addr.eq(port.addr), p.en.eq(port.en), port.data.eq(p.data)]
        w = self.mem.write_port(granularity=8)
        m.d.comb += [w.addr.eq(u.wr.addr), w.en.eq(u.wr.en), w.data.eq(u.wr.data)]
        wiring.connect(m, wiring.flipped(self.cmd), u.cmd)
        m.d.comb += self.busy.eq(u.busy)
        return m


@dataclass
class GemmRun:
    d: np.ndarray       #: the result read back
    cycles: int         #: busy cycles of the command


def plan_regions(layout: GemmLayout, in_bytes: int, out_bytes: int):
    """Byte addresses of A, B, C and D placed one after another from 0."""
    a = 0
    b = a + layout.region_bytes("a", in_bytes)
    c = b + layout.region_bytes("b", in_bytes)
    d = c + layout.region_bytes("c", 4)
    end = d + layout.region_bytes("d", out_bytes)
    return a, b, c, d, end


def run_image(unit, image: bytes, args: dict) -> tuple[bytes, int]:
    """One ``GEMM`` command with arguments ``args`` on a scratchpad holding ``image``.

    ``image`` (at most ``unit.scratchpad_bytes``, zero-extended to the whole scratchpad)
    is the scratchpad's initial contents; returns the whole scratchpad after the command
    and the busy cycle count.
    """
    wb = unit.word_bytes
    if len(image) > unit.scratchpad_bytes:
        raise ValueError(f"A scratchpad image of {len(image)} bytes does not fit the unit's "
                         f"{unit.scratchpad_bytes}")
    image = bytes(image) + bytes(-len(image) % wb)
    words = [int.from_bytes(image[i:i + wb], "little") for i in range(0, len(image), wb)]
    top = GemmSimTop(unit, words)
    result = {}

    async def bench(ctx):
        ctx.set(top.cmd.payload, {"func": unit.funcs.GEMM, "args": args})
        ctx.set(top.cmd.valid, 1)
        await ctx.tick().until(top.cmd.ready)
        ctx.set(top.cmd.valid, 0)
        cycles = 0
        while True:
            if not ctx.get(top.busy):
                break
            cycles += 1
            await ctx.tick()
        result["cycles"] = cycles
        result["image"] = b"".join(ctx.get(top.mem.data[i]).to_bytes(wb, "little")
                                   for i in range(1 << unit.addr_width))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["image"], result["cycles"]


def run_gemm(unit, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, *,
             out_dtype=None, extra_args: dict | None = None, in_place: bool = False) -> GemmRun:
    """One GEMM command on ``unit`` in amaranth.sim; returns D and the busy cycle count.

    The operands are placed with :func:`plan_regions` in the layout of
    :class:`accelpool.spec.gemm_layout.GemmLayout`; ``out_dtype`` (default FP32 for BF16 operands,
    INT32 for INT8) is how D is read back and must match what ``extra_args`` select
    (``out_bf16=1`` on the DMU, ``requant=1`` on the LPU).
    """
    m, k = a.shape
    n = b.shape[1]
    lay = GemmLayout(unit.rows, unit.cols, unit.word_bytes, m, n, k)
    out_dtype = np.dtype(out_dtype or (np.float32 if a.dtype.itemsize == 2 else np.int32))
    a_at, b_at, c_at, d_at, end = plan_regions(lay, a.dtype.itemsize, out_dtype.itemsize)
    if in_place:
        d_at = c_at
    image = bytearray(max(end, unit.word_bytes))
    ai = lay.a_image(a, pad_byte=0xA5)      # row padding is never read: make it garbage
    image[a_at:a_at + len(ai)] = ai
    image[b_at:b_at + len(lay.b_image(b))] = lay.b_image(b)
    if c is not None:
        ci = lay.c_image(c)
        image[c_at:c_at + len(ci)] = ci
    if len(image) > unit.scratchpad_bytes:
        raise ValueError(f"GEMM {m}x{k}x{n} needs {len(image)} scratchpad bytes; "
                         f"the unit has {unit.scratchpad_bytes}")
    args = dict(a_addr=a_at, b_addr=b_at, c_addr=c_at, d_addr=d_at, m=m, n=n, k=k,
                accumulate=int(c is not None), **(extra_args or {}))
    final, cycles = run_image(unit, bytes(image), args)
    d_bytes = lay.region_bytes("d", out_dtype.itemsize)
    return GemmRun(lay.d_from_image(final[d_at:d_at + d_bytes], out_dtype), cycles)


def cocotb_top(unit):
    """``unit`` wired to a tile scratchpad (:class:`accelpool.tb.unit_top.UnitTop`) for cocotb: the host
    loads and reads the scratchpad through its stream channels (``wr_cmd``/``wr_data``,
    ``rd_cmd``/``rd_data``); the unit takes its command on ``cmd`` and reports ``busy``."""
    return UnitTop(unit, depth=1 << unit.addr_width, read_ports=("rd_a", "rd_b", "rd_c"),
                   write_ports=("wr",))
