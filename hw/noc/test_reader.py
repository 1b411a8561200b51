import random

from amaranth import Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from accelpool.hw.noc.reader import FlitReader


def test_reads_under_grant_gaps_and_backpressure():
    m = Module()
    m.submodules.reader = dut = FlitReader(addr_width=6, flit_bits=16)
    words = [random.Random(1).getrandbits(16) for _ in range(64)]
    m.submodules.mem = mem = memory.Memory(shape=16, depth=64, init=words)
    rp = mem.read_port()
    m.d.comb += [rp.addr.eq(dut.addr), rp.en.eq(dut.req & dut.grant), dut.rdata.eq(rp.data)]
    got = []

    async def commands(ctx):
        for addr, count in ((3, 10), (40, 1), (0, 20)):
            ctx.set(dut.cmd.payload, {"addr": addr, "count": count})
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)

    async def bench(ctx):
        rng = random.Random(2)
        for _ in range(300):
            ctx.set(dut.grant, rng.random() < 0.6)
            ready = rng.random() < 0.7
            ctx.set(dut.data.ready, ready)
            _, _, valid, data = await ctx.tick().sample(dut.data.valid, dut.data.payload)
            if valid and ready:
                got.append(data)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(commands)
    sim.add_testbench(bench)
    sim.run()
    assert got == words[3:13] + words[40:41] + words[0:20]
