"""cocotb: DMA through the generated Verilog of an NI and the memory tile (tb.noc_sim.DmaSystem).

The testbench fills the global memory and the scratchpad through host ports, runs
STOREs, LOADs and a SIGNAL, and checks both memories byte for byte against a Python model.
"""

import random

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from accelpool.spec import isa
from accelpool.tb.cocotb_common import reset_dut, start_clock
from accelpool.tb.cocotb_streams import StreamSource
from accelpool.tb.harness import tb_params


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.p = tb_params()
        start_clock(dut)
        self.cmd = StreamSource(dut, "cmd", dut.clk)
        dut.cmd__payload.value = 0
        dut.mem_write__en.value = 0
        dut.spad_host_write__en.value = 0
        dut.mem_read__en.value = 1
        dut.spad_host_read__en.value = 1
        dut.tok_token.value = 0

    async def reset(self):
        await reset_dut(self.dut)

    async def write_words(self, port, words):
        d = self.dut
        wb = (len(getattr(d, f"{port}__data")) + 7) // 8
        for i, w in enumerate(words):
            getattr(d, f"{port}__addr").value = i
            getattr(d, f"{port}__data").value = w
            getattr(d, f"{port}__en").value = (1 << wb) - 1
            await RisingEdge(d.clk)
        getattr(d, f"{port}__en").value = 0

    async def read_words(self, port, n):
        d = self.dut
        out = []
        for i in range(n):
            getattr(d, f"{port}__addr").value = i
            await RisingEdge(d.clk)
            await RisingEdge(d.clk)
            out.append(int(getattr(d, f"{port}__data").value))
        return out

    async def command(self, cmd):
        d = self.dut
        await self.cmd.send(cmd.encode())
        while True:
            await RisingEdge(d.clk)
            if not int(d.busy.value):
                break


def to_bytes(words, bits):
    return bytearray(b"".join(w.to_bytes(bits // 8, "little") for w in words))


def to_words(blob, bits):
    wb = bits // 8
    return [int.from_bytes(blob[i:i + wb], "little") for i in range(0, len(blob), wb)]


@cocotb.test()
async def store_load_signal(dut):
    tb = TB(dut)
    await tb.reset()
    p = tb.p
    rng = random.Random(17)
    mx, my = p["mem_x"], p["mem_y"]
    mem_words = p["mem_bytes"] * 8 // p["flit_bits"]
    spad_words = p["spad_bytes"] * 8 // p["word_bits"]
    mem = bytearray(rng.getrandbits(8) for _ in range(p["mem_bytes"]))
    spad = bytearray(rng.getrandbits(8) for _ in range(p["spad_bytes"]))
    await tb.write_words("mem_write", to_words(mem, p["flit_bits"]))
    await tb.write_words("spad_host_write", to_words(spad, p["word_bits"]))

    for op, spad_addr, remote, length in (("store", 0x40, 0x100, 100), ("load", 0x200, 0x0, 300),
                                          ("store", 0x8, 0x7F8, 8), ("load", 0x18, 0x400, 5)):
        if op == "store":
            await tb.command(isa.store(spad_addr=spad_addr, x=mx, y=my, remote_addr=remote,
                                       length=length))
            mem[remote:remote + length] = spad[spad_addr:spad_addr + length]
        else:
            await tb.command(isa.load(spad_addr=spad_addr, x=mx, y=my, remote_addr=remote,
                                      length=length))
            spad[spad_addr:spad_addr + length] = mem[remote:remote + length]
    await tb.command(isa.signal(x=0, y=0, token=3, count=4))   # to ourselves
    await ClockCycles(dut.clk, 10)
    dut.tok_token.value = 3
    await RisingEdge(dut.clk)
    assert int(dut.tok_value.value) == 4
    assert not int(dut.error.value)
    got_mem = to_bytes(await tb.read_words("mem_read", mem_words), p["flit_bits"])
    got_spad = to_bytes(await tb.read_words("spad_host_read", spad_words), p["word_bits"])
    assert got_mem == mem, "global memory differs from the model"
    assert got_spad == spad, "scratchpad differs from the model"
