"""cocotb tests of the scratchpad's generated Verilog (run through accelpool.tb.harness.run_cocotb)."""

import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from accelpool.tb.cocotb_common import reset_dut, start_clock
from accelpool.tb.cocotb_streams import StreamSink, StreamSource, random_pattern
from accelpool.tb.harness import tb_params


class TB:
    """Clock, reset and the two stream channels of a Scratchpad."""

    def __init__(self, dut, *, idle: bool, seed: int):
        self.dut = dut
        self.params = tb_params()
        start_clock(dut)
        pat = (lambda s: random_pattern(0.6, seed + s)) if idle else (lambda s: None)
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk)
        self.wr_data = StreamSource(dut, "wr_data", dut.clk, pat(1))
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk)
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, pat(2))
        dut.read__0__en.value = 1
        dut.write__0__en.value = 0

    async def reset(self):
        await reset_dut(self.dut)

    def cmd(self, addr: int, count: int) -> int:
        addr_width = (self.params["depth"] - 1).bit_length()
        return addr | (count << addr_width)


async def run_roundtrip(dut, idle: bool):
    tb = TB(dut, idle=idle, seed=7)
    await tb.reset()
    rng = random.Random(11)
    depth, bits = tb.params["depth"], tb.params["word_bits"]
    for _ in range(4):
        count = rng.randint(1, 64)
        addr = rng.randrange(0, depth - count)
        words = [rng.getrandbits(bits) for _ in range(count)]
        await tb.wr_cmd.send(tb.cmd(addr, count))
        for w in words:
            await tb.wr_data.send(w)
        while int(dut.busy.value):
            await RisingEdge(dut.clk)
        # Raw unit read port.
        probe = rng.randrange(count)
        dut.read__0__addr.value = addr + probe
        await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        assert int(dut.read__0__data.value) == words[probe]
        # Stream read channel.
        await tb.rd_cmd.send(tb.cmd(addr, count))
        got = [await tb.rd_data.recv() for _ in range(count)]
        assert got == words, f"read back {len(got)} words at {addr} differ"
    await ClockCycles(dut.clk, 4)
    assert not int(dut.rd_data__valid.value), "extra word on rd_data"
    assert not int(dut.busy.value)


@cocotb.test()
async def roundtrip_full_rate(dut):
    await run_roundtrip(dut, idle=False)


@cocotb.test()
async def roundtrip_idle_and_backpressure(dut):
    await run_roundtrip(dut, idle=True)
