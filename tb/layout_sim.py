"""Run layout-engine EXECs in amaranth.sim on an engine + memory (tests, cost-model checks)."""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from accelpool.hw.layout_engine import LayoutEngine
from accelpool.spec.units.layout import MemCommand
from accelpool.tb.streams import stream_put

__all__ = ["LayoutTop", "simulate_layout"]


class LayoutTop(wiring.Component):
    """A :class:`LayoutEngine` on a memory of ``depth`` words of ``word_bits``."""

    def __init__(self, *, word_bits: int, depth: int):
        self.engine = LayoutEngine(word_bits=word_bits, addr_width=(depth - 1).bit_length())
        self.mem = memory.Memory(shape=word_bits, depth=depth, init=[])
        super().__init__({"cmd": self.engine.signature.members["cmd"], "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self.engine
        m.submodules.mem = mem = self.mem
        rd = mem.read_port()
        wr = mem.write_port(granularity=8)
        wiring.connect(m, eng.rd, rd)
        wiring.connect(m, eng.wr, wr)
        wiring.connect(m, wiring.flipped(self.cmd), eng.cmd)
        m.d.comb += self.busy.eq(eng.busy)
        return m


def simulate_layout(image: bytes, ops, *, word_bits: int = 64) -> tuple[bytes, list[int]]:
    """Run ``ops`` (``(func, args dict)``) one after the other on a memory holding ``image``.

    Returns the memory afterwards and, per op, the cycles ``busy`` stayed high after the
    cycle the command was accepted in.
    """
    wb = word_bits // 8
    depth = 1 << max(4, (-(-len(image) // wb) - 1).bit_length())
    image = bytes(image) + bytes(depth * wb - len(image))
    top = LayoutTop(word_bits=word_bits, depth=depth)
    counts: list[int] = []
    out = bytearray()

    async def tb(ctx):
        for i in range(depth):
            ctx.set(top.mem.data[i], int.from_bytes(image[i * wb:(i + 1) * wb], "little"))
        for func, args in ops:
            await stream_put(ctx, top.cmd, MemCommand.const({"func": func, "args": args}))
            t = 0
            while ctx.get(top.busy):
                await ctx.tick()
                t += 1
            counts.append(t)
        for i in range(depth):
            out.extend(ctx.get(top.mem.data[i]).to_bytes(wb, "little"))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return bytes(out[:len(image)]), counts
