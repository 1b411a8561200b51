import pytest
from amaranth.sim import Simulator

from accelpool.hw.noc.arbiter import RoundRobin


def test_rotates_and_never_starves():
    dut = RoundRobin(4)
    grants = []

    async def bench(ctx):
        ctx.set(dut.requests, 0b1011)
        for _ in range(6):
            ctx.set(dut.advance, 1)
            grants.append(ctx.get(dut.grant))
            assert ctx.get(dut.valid)
            await ctx.tick()
        ctx.set(dut.requests, 0)
        assert not ctx.get(dut.valid)
        # Without advance the grant holds.
        ctx.set(dut.requests, 0b0110)
        ctx.set(dut.advance, 0)
        g = ctx.get(dut.grant)
        await ctx.tick()
        assert ctx.get(dut.grant) == g

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert grants == [0, 1, 3, 0, 1, 3]


def test_bad_count():
    with pytest.raises(TypeError, match=r"Requester count must be a positive integer, not 'x'"):
        RoundRobin("x")
    with pytest.raises(ValueError, match=r"Requester count must be a positive integer, not 0"):
        RoundRobin(0)
