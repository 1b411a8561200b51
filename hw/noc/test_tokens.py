import pytest
from amaranth.sim import Simulator

from accelpool.hw.noc.tokens import TokenCounters


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_signal_then_wait():
    dut = TokenCounters(16)

    async def bench(ctx):
        # WAIT for 3 on token 5 before anything arrived: not ready.
        ctx.set(dut.wait.payload, {"token": 5, "count": 3})
        ctx.set(dut.wait.valid, 1)
        assert not ctx.get(dut.wait.ready)
        for count in (1, 1):
            ctx.set(dut.inc.payload, {"token": 5, "count": count})
            ctx.set(dut.inc.valid, 1)
            await ctx.tick()
            assert not ctx.get(dut.wait.ready)
        # The third increment and nothing else: ready the cycle after it lands.
        ctx.set(dut.inc.payload, {"token": 5, "count": 2})
        await ctx.tick()
        ctx.set(dut.inc.valid, 0)
        ctx.set(dut.peek_token, 5)
        assert ctx.get(dut.peek_value) == 4
        assert ctx.get(dut.wait.ready)
        await ctx.tick()
        ctx.set(dut.wait.valid, 0)
        assert ctx.get(dut.peek_value) == 1          # 4 - 3
        # Increment and wait on the same counter in one cycle both count.
        ctx.set(dut.inc.payload, {"token": 5, "count": 10})
        ctx.set(dut.inc.valid, 1)
        ctx.set(dut.wait.payload, {"token": 5, "count": 1})
        ctx.set(dut.wait.valid, 1)
        await ctx.tick()
        ctx.set(dut.inc.valid, 0)
        ctx.set(dut.wait.valid, 0)
        assert ctx.get(dut.peek_value) == 10
        ctx.set(dut.peek_token, 4)
        assert ctx.get(dut.peek_value) == 0          # other counters untouched
        assert not ctx.get(dut.error)
    _run(dut, bench)


def test_out_of_range_token_is_an_error():
    dut = TokenCounters(4)

    async def bench(ctx):
        ctx.set(dut.inc.payload, {"token": 4, "count": 1})
        ctx.set(dut.inc.valid, 1)
        await ctx.tick()
        ctx.set(dut.inc.valid, 0)
        assert ctx.get(dut.error)
        ctx.set(dut.peek_token, 0)
        assert ctx.get(dut.peek_value) == 0
    _run(dut, bench)


def test_bad_count():
    with pytest.raises(ValueError, match=r"Token counter count must be between 1 and 256, not 0"):
        TokenCounters(0)
    with pytest.raises(TypeError, match=r"Token counter count must be a positive integer, "
                                        r"not 2.0"):
        TokenCounters(2.0)
