"""Network interfaces, DMA and the memory tile on a 2x2 fabric, in amaranth.sim."""

import random

import pytest
from amaranth import Module, Shape
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.spec.config import MeshConfig
from accelpool.hw.noc.fabric import Fabric, attach_memory, attach_ni
from accelpool.hw.noc.memory_tile import MemoryTile
from accelpool.hw.noc.ni import NetworkInterface
from accelpool.hw.noc.tokens import TokenCounters

MESH = MeshConfig(cols=2, rows=2, flit_bits=64, buffer_flits=4)
A, B, MEM = (0, 0), (1, 0), (1, 1)


class System:
    """Two compute tiles (128-bit and 64-bit scratchpad words) and the memory tile."""

    def __init__(self, max_packet_bytes=64):
        self.m = m = Module()
        m.submodules.fabric = fabric = Fabric(MESH)
        self.ni, self.mem, self.tokens = {}, {}, {}
        for at, word_bits, spad_bytes in ((A, 128, 2048), (B, 64, 1024)):
            ni = NetworkInterface(mesh=MESH, x=at[0], y=at[1], word_bits=word_bits,
                                  spad_bytes=spad_bytes, max_packet_bytes=max_packet_bytes)
            spad = memory.Memory(shape=word_bits, depth=spad_bytes * 8 // word_bits, init=[])
            tok = TokenCounters(16)
            name = f"{at[0]}_{at[1]}"
            m.submodules[f"ni_{name}"] = ni
            m.submodules[f"spad_{name}"] = spad
            m.submodules[f"tokens_{name}"] = tok
            wiring.connect(m, ni.spad_read, spad.read_port())
            wiring.connect(m, ni.spad_write, spad.write_port(granularity=8))
            wiring.connect(m, ni.signal, tok.inc)
            attach_ni(m, fabric, ni)
            self.ni[at], self.mem[at], self.tokens[at] = ni, spad, tok
        self.memtile = MemoryTile(mesh=MESH, x=MEM[0], y=MEM[1], bytes=4096)
        m.submodules.memtile = self.memtile
        attach_memory(m, fabric, self.memtile)
        self.mem[MEM] = self.memtile.memory

    def read_bytes(self, ctx, at, addr, n):
        mem = self.mem[at]
        wb = Shape.cast(mem.shape).width // 8
        out = bytearray()
        for w in range(addr // wb, (addr + n + wb - 1) // wb):
            out += ctx.get(mem.data[w]).to_bytes(wb, "little")
        return bytes(out[addr % wb:addr % wb + n])

    def fill(self, ctx, at, seed):
        """Random contents for a whole memory; returns them as bytes."""
        mem = self.mem[at]
        wb = Shape.cast(mem.shape).width // 8
        blob = rand_bytes(mem.depth * wb, seed)
        for w in range(mem.depth):
            ctx.set(mem.data[w], int.from_bytes(blob[w * wb:(w + 1) * wb], "little"))
        return bytearray(blob)

    async def command(self, ctx, at, cmd):
        """Issue one command and wait until the NI is idle; returns the cycles taken."""
        ni = self.ni[at]
        ctx.set(ni.cmd.payload.as_value(), cmd.encode())
        ctx.set(ni.cmd.valid, 1)
        await ctx.tick().until(ni.cmd.ready)
        ctx.set(ni.cmd.valid, 0)
        cycles = 1
        while ctx.get(ni.busy):
            await ctx.tick()
            cycles += 1
        return cycles

    def run(self, bench):
        sim = Simulator(self.m)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()


def rand_bytes(n, seed):
    return bytes(random.Random(seed).getrandbits(8) for _ in range(n))


@pytest.mark.parametrize("src,dst,spad_addr,remote_addr,length", [
    (A, MEM, 0x40, 0x100, 100),     # 2 packets, partial last flit, 128-bit words
    (B, MEM, 0x8, 0x208, 1),        # one byte
    (A, B, 0x10, 0x18, 72),         # scratchpad to scratchpad, odd word lanes
    (B, A, 0x0, 0x8, 136),          # into 128-bit words at an odd flit
])
def test_store(src, dst, spad_addr, remote_addr, length):
    s = System()

    async def bench(ctx):
        src_mem = s.fill(ctx, src, 1)
        dst_mem = s.fill(ctx, dst, 2)
        await s.command(ctx, src, isa.store(spad_addr=spad_addr, x=dst[0], y=dst[1],
                                            remote_addr=remote_addr, length=length))
        dst_mem[remote_addr:remote_addr + length] = src_mem[spad_addr:spad_addr + length]
        assert s.read_bytes(ctx, dst, 0, len(dst_mem)) == bytes(dst_mem)
        assert not ctx.get(s.ni[src].error)
    s.run(bench)


@pytest.mark.parametrize("dst,src,spad_addr,remote_addr,length", [
    (A, MEM, 0x30, 0x400, 300),     # 5 packets
    (B, MEM, 0x8, 0x0, 7),
    (B, A, 0x100, 0x20, 130),       # read another tile's scratchpad
])
def test_load(dst, src, spad_addr, remote_addr, length):
    s = System()

    async def bench(ctx):
        src_mem = s.fill(ctx, src, 3)
        dst_mem = s.fill(ctx, dst, 4)
        await s.command(ctx, dst, isa.load(spad_addr=spad_addr, x=src[0], y=src[1],
                                           remote_addr=remote_addr, length=length))
        dst_mem[spad_addr:spad_addr + length] = src_mem[remote_addr:remote_addr + length]
        assert s.read_bytes(ctx, dst, 0, len(dst_mem)) == bytes(dst_mem)
    s.run(bench)


def test_signal_arrives_after_the_data_it_guards():
    """A STORE to memory then a SIGNAL to another tile: when the token shows, the data is there."""
    s = System()

    async def bench(ctx):
        src_mem = s.fill(ctx, A, 5)
        s.fill(ctx, MEM, 6)
        ni = s.ni[A]
        tok = s.tokens[B]
        cmds = [isa.store(spad_addr=0, x=MEM[0], y=MEM[1], remote_addr=0x800, length=256),
                isa.signal(x=B[0], y=B[1], token=3, count=2)]
        ctx.set(tok.peek_token, 3)
        for c in cmds:
            ctx.set(ni.cmd.payload.as_value(), c.encode())
            ctx.set(ni.cmd.valid, 1)
            await ctx.tick().until(ni.cmd.ready)
        ctx.set(ni.cmd.valid, 0)
        for _ in range(200):
            if ctx.get(tok.peek_value):
                break
            await ctx.tick()
        assert ctx.get(tok.peek_value) == 2
        assert s.read_bytes(ctx, MEM, 0x800, 256) == bytes(src_mem[:256])
        # The tile controller's WAIT consumes the tokens.
        ctx.set(tok.wait.payload, {"token": 3, "count": 2})
        ctx.set(tok.wait.valid, 1)
        await ctx.tick().until(tok.wait.ready)
        ctx.set(tok.wait.valid, 0)
        assert ctx.get(tok.peek_value) == 0
    s.run(bench)


def test_signal_to_memory_tile_counts_for_the_host():
    s = System()

    async def bench(ctx):
        await s.command(ctx, B, isa.signal(x=MEM[0], y=MEM[1], token=1, count=5))
        await ctx.tick().repeat(10)
        ctx.set(s.memtile.host_token, 1)
        assert ctx.get(s.memtile.host_token_value) == 5
    s.run(bench)


def test_bad_commands_set_error_and_are_dropped():
    s = System()

    async def bench(ctx):
        s.fill(ctx, MEM, 7)
        before = s.read_bytes(ctx, MEM, 0, 4096)
        ni = s.ni[A]
        for cmd in (isa.store(spad_addr=4, x=1, y=1, remote_addr=0, length=8),
                    isa.store(spad_addr=0, x=1, y=1, remote_addr=3, length=8),
                    isa.store(spad_addr=0, x=2, y=1, remote_addr=0, length=8),
                    isa.signal(x=0, y=5, token=0)):
            await s.command(ctx, A, cmd)
            assert ctx.get(ni.error)
        await ctx.tick().repeat(20)
        assert s.read_bytes(ctx, MEM, 0, 4096) == before
        assert not ctx.get(s.ni[B].error)
        await s.command(ctx, B, isa.nop())
        assert not ctx.get(s.ni[B].error)
        await s.command(ctx, B, isa.end())
        assert ctx.get(s.ni[B].error)
    s.run(bench)


def test_store_streams_a_flit_per_cycle():
    """A 1 KiB STORE in 64-byte packets: 128 data flits + 16 heads, plus the ack round trip."""
    s = System()

    async def bench(ctx):
        cycles = await s.command(ctx, A, isa.store(spad_addr=0, x=1, y=1, remote_addr=0,
                                                   length=1024))
        # 144 flits at one per cycle, then at most a couple of hops there and back.
        assert 144 <= cycles <= 144 + 12, cycles
    s.run(bench)


def test_host_port_loads_and_reads_back():
    s = System()

    async def bench(ctx):
        mt = s.memtile
        words = [random.Random(9).getrandbits(64) for _ in range(32)]
        for i, w in enumerate(words):
            ctx.set(mt.host_write.addr, 100 + i)
            ctx.set(mt.host_write.data, w)
            ctx.set(mt.host_write.en, 0xFF)
            await ctx.tick()
        ctx.set(mt.host_write.en, 0)
        # and the network sees it: LOAD into B, then read back over the host port
        await s.command(ctx, B, isa.load(spad_addr=0, x=1, y=1, remote_addr=800, length=256))
        assert [ctx.get(s.mem[B].data[i]) for i in range(32)] == words
        got = []
        ctx.set(mt.host_read.en, 1)
        for i in range(32):
            ctx.set(mt.host_read.addr, 100 + i)
            await ctx.tick()
            got.append(ctx.get(mt.host_read.data))
        assert got == words
    s.run(bench)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(word_bits=96), ValueError,
     r"Scratchpad word width must be a power-of-two multiple of the flit width 64, not 96"),
    (dict(word_bits=32), ValueError,
     r"Scratchpad word width must be a power-of-two multiple of the flit width 64, not 32"),
    (dict(spad_bytes=1000), ValueError,
     r"Scratchpad size must be a power of two of at least one word \(8 bytes\), not 1000"),
    (dict(max_packet_bytes=12), ValueError,
     r"Packet size must be a multiple of the flit size \(8 bytes\) up to 8191, not 12"),
    (dict(x=2), ValueError, r"Tile x must be between 0 and 1 on a 2x2 mesh, not 2"),
    (dict(y="1"), TypeError, r"Tile y must be a non-negative integer, not '1'"),
])
def test_ni_bad_parameters(kwargs, exc, msg):
    args = dict(mesh=MESH, x=0, y=0, word_bits=64, spad_bytes=1024)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        NetworkInterface(**args)


def test_memory_tile_bad_size():
    with pytest.raises(ValueError, match=r"Memory size must be a power of two of at least "
                                         r"16 flits \(128 bytes\), not 3000"):
        MemoryTile(mesh=MESH, x=1, y=1, bytes=3000)
    with pytest.raises(TypeError, match=r"Memory size must be a positive integer, not 4096.0"):
        MemoryTile(mesh=MESH, x=1, y=1, bytes=4096.0)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_dma_cocotb(sim):
    """The same DMA behaviour on the generated Verilog, in both simulators."""
    from accelpool.tb.harness import run_cocotb
    from accelpool.tb.noc_sim import DmaSystem

    params = {"cols": 2, "rows": 2, "flit_bits": 64, "mem_x": 1, "mem_y": 1,
              "word_bits": 128, "spad_bytes": 2048, "mem_bytes": 4096}
    run_cocotb(DmaSystem(MeshConfig(cols=2, rows=2, flit_bits=64, buffer_flits=4), (1, 1),
                         word_bits=128, spad_bytes=2048, mem_bytes=4096),
               name="noc_dma", params=params, test_module="accelpool.tb.tb_noc_dma", sim=sim)
