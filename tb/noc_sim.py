"""amaranth.sim drivers for the mesh NoC: per-port packet injection and ejection with a
scoreboard, and a one-NI-plus-memory system that times DMA commands.

Used by ``hw/noc/test_mesh.py``, ``sched/cost/test_noc.py`` and ``bench/bench_noc.py``.
The expected payloads come from :func:`payload_word`, a fingerprint computed here in
Python, independently of the RTL.
"""

from __future__ import annotations

import random

from amaranth import Module, Signal
from amaranth.lib import memory, wiring, stream
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from accelpool.hw.noc.fabric import Fabric, attach_memory, attach_ni
from accelpool.hw.noc.flit import (PacketType, decode_header, encode_header, flit_layout,
                                   packet_flits)
from accelpool.hw.noc.memory_tile import MemoryTile
from accelpool.hw.noc.mesh import Mesh
from accelpool.hw.noc.ni import NetworkInterface
from accelpool.hw.noc.tokens import TokenCounters
from accelpool.spec.config import MeshConfig
from accelpool.spec.isa import CommandLayout

__all__ = ["payload_word", "run_traffic", "check_delivery", "time_dma"]


def payload_word(src, dst, seq, i, bits=64):
    """An independent fingerprint of payload flit ``i`` of packet ``seq`` from src to dst."""
    return random.Random(hash((src, dst, seq, i))).getrandbits(bits)


def run_traffic(cfg: MeshConfig, packets, *, stall=0.3, idle=0.2, seed=1, timeout=20000):
    """Inject ``packets`` [(src, dst, n_payload)] into a mesh and return what arrived.

    Every ejection port is not ready with probability ``stall`` each cycle; every
    injector idles with probability ``idle`` before each flit.

    Returns ``(received, latency)``: ``received[dst]`` lists (src, seq, header, words);
    ``latency[(src, dst, seq)]`` is the cycles from the head's injection to its ejection.
    """
    dut = Mesh(cfg)
    layout = flit_layout(cfg.flit_bits)
    rng = random.Random(seed)
    by_src: dict = {}
    seqs: dict = {}
    for src, dst, n in packets:
        seq = seqs.get((src, dst), 0)
        seqs[src, dst] = seq + 1
        hdr = encode_header(dst=dst, src=src, type=PacketType.WRITE, length=n, addr=seq)
        words = [payload_word(src, dst, seq, i, cfg.flit_bits) for i in range(n)]
        by_src.setdefault(src, []).append((dst, seq, packet_flits(cfg.flit_bits, hdr, words)))
    received: dict = {}
    injected_at: dict = {}
    latency: dict = {}
    top = Module()
    top.submodules.dut = dut
    now_sig = Signal(32)
    top.d.sync += now_sig.eq(now_sig + 1)
    expected = sum(len(v) for v in by_src.values())
    done = [0]

    def injector(src):
        async def bench(ctx):
            port = dut.inject[src[1]][src[0]]
            r = random.Random(rng.random())
            for dst, seq, flits in by_src.get(src, []):
                for k, f in enumerate(flits):
                    while r.random() < idle:
                        await ctx.tick()
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload, layout.from_bits(f))
                    *_, stamp = await ctx.tick().sample(now_sig).until(port.ready)
                    if k == 0:
                        injected_at[src, dst, seq] = stamp
                    ctx.set(port.valid, 0)
        return bench

    def ejector(dst):
        async def proc(ctx):
            port = dut.eject[dst[1]][dst[0]]
            r = random.Random(rng.random())
            current = None
            while True:
                ready = r.random() >= stall
                ctx.set(port.ready, ready)
                _, _, valid, payload, now = await ctx.tick().sample(
                    port.valid, port.payload, now_sig)
                if not (valid and ready):
                    continue
                f = layout.from_bits(payload.as_value().value)
                head, tail, d = int(f.head), int(f.tail), int(f.data)
                if current is None:
                    assert head, f"body flit without a head at {dst}"
                    hdr = decode_header(d)
                    current = [hdr, []]
                    latency[hdr["src"], dst, hdr["addr"]] = now
                else:
                    assert not head, f"head flit inside a packet at {dst}"
                    current[1].append(d)
                if tail:
                    hdr, words = current
                    received.setdefault(dst, []).append((hdr["src"], hdr["addr"], hdr, words))
                    current = None
                    done[0] += 1
        return proc

    async def watchdog(ctx):
        cycles = 0
        while done[0] < expected and cycles < timeout:
            await ctx.tick()
            cycles += 1
        await ctx.tick().repeat(20)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for y in range(cfg.rows):
        for x in range(cfg.cols):
            sim.add_testbench(injector((x, y)))
            sim.add_process(ejector((x, y)))
    sim.add_testbench(watchdog)
    sim.run()
    lat = {k: latency[k] - injected_at[k] for k in latency if k in injected_at}
    return received, lat


def check_delivery(cfg: MeshConfig, packets, received) -> None:
    """Assert every packet arrived exactly once, uncorrupted, in order per source-destination pair."""
    want: dict = {}
    for src, dst, n in packets:
        want.setdefault((src, dst), []).append(n)
    got: dict = {}
    for dst, items in received.items():
        for src, seq, hdr, words in items:
            assert hdr["dst"] == dst, f"packet for {hdr['dst']} delivered at {dst}"
            got.setdefault((src, dst), []).append((seq, words))
    assert set(got) == set(want), f"pairs differ: {set(got) ^ set(want)}"
    for pair, lens in want.items():
        seqs = [s for s, _ in got[pair]]
        assert seqs == list(range(len(lens))), f"{pair}: order/duplicates/losses {seqs}"
        for (seq, words), n in zip(got[pair], lens):
            assert words == [payload_word(pair[0], pair[1], seq, i, cfg.flit_bits)
                             for i in range(n)], f"{pair} packet {seq} corrupted"


def time_dma(cfg: MeshConfig, memory_at, commands, *, word_bits=64, spad_bytes=4096,
             max_packet_bytes=64, mem_bytes=8192):
    """Cycles each command takes on an NI at (0, 0) with the memory tile at ``memory_at``.

    A command's time runs from the cycle it is accepted to the first cycle the NI is no
    longer busy (the command's data has all landed and been acknowledged).
    """
    m = Module()
    m.submodules.fabric = fabric = Fabric(cfg)
    ni = NetworkInterface(mesh=cfg, x=0, y=0, word_bits=word_bits, spad_bytes=spad_bytes,
                          max_packet_bytes=max_packet_bytes)
    spad = memory.Memory(shape=word_bits, depth=spad_bytes * 8 // word_bits, init=[])
    mt = MemoryTile(mesh=cfg, x=memory_at[0], y=memory_at[1], bytes=mem_bytes)
    m.submodules.ni, m.submodules.spad, m.submodules.mt = ni, spad, mt
    wiring.connect(m, ni.spad_read, spad.read_port())
    wiring.connect(m, ni.spad_write, spad.write_port(granularity=8))
    attach_ni(m, fabric, ni)
    attach_memory(m, fabric, mt)
    cycles = []

    async def bench(ctx):
        for cmd in commands:
            ctx.set(ni.cmd.payload.as_value(), cmd.encode())
            ctx.set(ni.cmd.valid, 1)
            await ctx.tick().until(ni.cmd.ready)
            ctx.set(ni.cmd.valid, 0)
            n = 0
            while True:
                await ctx.tick()
                n += 1
                if not ctx.get(ni.busy):
                    break
            cycles.append(n)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return cycles


class DmaSystem(wiring.Component):
    """A cocotb-drivable NoC system: one NI (with scratchpad and token counters) at (0, 0)
    and the memory tile at ``memory_at``, on a request/response fabric.

    Ports: ``cmd`` (the NI's command stream), ``busy``, ``error``; ``mem_read`` /
    ``mem_write`` (the memory tile's host ports); ``spad_host_read`` / ``spad_host_write``
    (a testbench port pair on the scratchpad, word = ``word_bits``); ``tok_token`` /
    ``tok_value`` (peek at the NI tile's token counters).
    """

    def __init__(self, cfg: MeshConfig, memory_at, *, word_bits=128, spad_bytes=2048,
                 mem_bytes=4096):


        self._ni = NetworkInterface(mesh=cfg, x=0, y=0, word_bits=word_bits,
                                    spad_bytes=spad_bytes)
        self._mt = MemoryTile(mesh=cfg, x=memory_at[0], y=memory_at[1], bytes=mem_bytes)
        self._cfg = cfg
        self._word_bits = word_bits
        self._spad_depth = spad_bytes * 8 // word_bits
        aw = self._ni.spad_addr_width
        super().__init__({
            "cmd": In(stream.Signature(CommandLayout)),
            "busy": Out(1), "error": Out(1),
            "mem_read": Out(memory.ReadPort.Signature(addr_width=self._mt.addr_width,
                                                      shape=cfg.flit_bits)),
            "mem_write": Out(memory.WritePort.Signature(addr_width=self._mt.addr_width,
                                                        shape=cfg.flit_bits, granularity=8)),
            "spad_host_read": Out(memory.ReadPort.Signature(addr_width=aw, shape=word_bits)),
            "spad_host_write": Out(memory.WritePort.Signature(addr_width=aw, shape=word_bits,
                                                              granularity=8)),
            "tok_token": In(8), "tok_value": Out(16),
        })

    def elaborate(self, platform):

        m = Module()
        m.submodules.fabric = fabric = Fabric(self._cfg)
        m.submodules.ni = ni = self._ni
        m.submodules.mt = mt = self._mt
        m.submodules.spad = spad = memory.Memory(shape=self._word_bits, depth=self._spad_depth,
                                                 init=[])
        m.submodules.tokens = tok = TokenCounters(16)
        wiring.connect(m, ni.spad_read, spad.read_port())
        wiring.connect(m, ni.spad_write, spad.write_port(granularity=8))
        wiring.connect(m, wiring.flipped(self.spad_host_read), spad.read_port())
        wiring.connect(m, wiring.flipped(self.spad_host_write), spad.write_port(granularity=8))
        wiring.connect(m, ni.signal, tok.inc)
        m.d.comb += [tok.wait.valid.eq(0), tok.peek_token.eq(self.tok_token),
                     self.tok_value.eq(tok.peek_value)]
        wiring.connect(m, wiring.flipped(self.cmd), ni.cmd)
        m.d.comb += [self.busy.eq(ni.busy), self.error.eq(ni.error)]
        wiring.connect(m, wiring.flipped(self.mem_read), mt.host_read)
        wiring.connect(m, wiring.flipped(self.mem_write), mt.host_write)
        m.d.comb += mt.host_token.eq(0)
        attach_ni(m, fabric, ni)
        attach_memory(m, fabric, mt)
        # Nothing else sits on the mesh: hold the other routers' local ports idle.
        for y in range(self._cfg.rows):
            for x in range(self._cfg.cols):
                if (x, y) in ((0, 0), (mt.x, mt.y)):
                    continue
                for inj in (fabric.req_inject[y][x], fabric.resp_inject[y][x]):
                    m.d.comb += [inj.valid.eq(0), inj.payload.eq(0)]
                for ej in (fabric.req_eject[y][x], fabric.resp_eject[y][x]):
                    m.d.comb += ej.ready.eq(1)
        return m
