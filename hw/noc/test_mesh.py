"""Mesh traffic in amaranth.sim: every packet once, intact, in order per pair; zero-load latency."""

import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from hw.config import MeshConfig
from hw.noc.flit import PacketType, decode_header, encode_header, flit_layout, packet_flits
from hw.noc.mesh import Mesh


def payload_word(src, dst, seq, i, bits=64):
    """An independent fingerprint of payload flit ``i`` of packet ``seq`` from src to dst."""
    return random.Random(hash((src, dst, seq, i))).getrandbits(bits)


def run_traffic(cfg, packets, *, stall=0.3, idle=0.2, seed=1, timeout=20000):
    """Inject ``packets`` [(src, dst, n_payload)] into a mesh and return what arrived.

    Returns ``(received, latency)``: received[dst] is a list of (src, seq, flits) and
    latency[(src, dst, seq)] the cycles from the head's injection to its ejection.
    """
    dut = Mesh(cfg)
    layout = flit_layout(cfg.flit_bits)
    rng = random.Random(seed)
    by_src = {}
    seqs = {}
    for src, dst, n in packets:
        seq = seqs.get((src, dst), 0)
        seqs[src, dst] = seq + 1
        hdr = encode_header(dst=dst, src=src, type=PacketType.WRITE, length=n, addr=seq)
        words = [payload_word(src, dst, seq, i, cfg.flit_bits) for i in range(n)]
        by_src.setdefault(src, []).append((dst, seq, packet_flits(cfg.flit_bits, hdr, words)))
    received = {}
    injected_at = {}
    latency = {}
    cycle = [0]
    top = Module()
    top.submodules.dut = dut
    now_sig = Signal(32)
    top.d.sync += now_sig.eq(now_sig + 1)
    expected = sum(len(v) for v in by_src.values())
    done = [0]

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

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
                bits = payload.as_value().value if hasattr(payload, "as_value") else payload
                f = layout.from_bits(bits)
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
        while done[0] < expected and cycle[0] < timeout:
            await ctx.tick()
        await ctx.tick().repeat(20)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_process(clock)
    for y in range(cfg.rows):
        for x in range(cfg.cols):
            sim.add_testbench(injector((x, y)))
            sim.add_process(ejector((x, y)))
    sim.add_testbench(watchdog)
    sim.run()
    lat = {k: latency[k] - injected_at[k] for k in latency if k in injected_at}
    return received, lat


def check_delivery(cfg, packets, received):
    """Every packet exactly once, uncorrupted, in order per source-destination pair."""
    want = {}
    for src, dst, n in packets:
        want.setdefault((src, dst), []).append(n)
    got = {}
    for dst, items in received.items():
        for src, seq, hdr, words in items:
            assert hdr["dst"] == dst, f"packet for {hdr['dst']} delivered at {dst}"
            got.setdefault((src, dst), []).append((seq, words))
    assert set(got) == set(want)
    for pair, lens in want.items():
        seqs = [s for s, _ in got[pair]]
        assert seqs == list(range(len(lens))), f"{pair}: order/duplicates/losses {seqs}"
        for (seq, words), n in zip(got[pair], lens):
            assert words == [payload_word(pair[0], pair[1], seq, i, cfg.flit_bits)
                             for i in range(n)], f"{pair} packet {seq} corrupted"


def uniform(cfg, count, rng, max_len=4):
    nodes = [(x, y) for y in range(cfg.rows) for x in range(cfg.cols)]
    return [(rng.choice(nodes), rng.choice(nodes), rng.randint(0, max_len)) for _ in range(count)]


@pytest.mark.parametrize("cols,rows,flit_bits,depth", [(3, 3, 64, 4), (2, 3, 32, 2)])
def test_uniform_random_with_stalls(cols, rows, flit_bits, depth):
    cfg = MeshConfig(cols=cols, rows=rows, flit_bits=flit_bits, buffer_flits=depth)
    packets = uniform(cfg, 120, random.Random(cols * 7 + rows))
    received, _ = run_traffic(cfg, packets)
    check_delivery(cfg, packets, received)


def test_hotspot_with_stalls():
    cfg = MeshConfig(cols=3, rows=3, flit_bits=64, buffer_flits=4)
    rng = random.Random(5)
    nodes = [(x, y) for y in range(3) for x in range(3)]
    packets = [(s, (1, 1), rng.randint(0, 3)) for s in nodes for _ in range(6)]
    received, _ = run_traffic(cfg, packets, stall=0.5, idle=0.0)
    check_delivery(cfg, packets, received)


def test_zero_load_latency_is_hops_plus_one():
    cfg = MeshConfig(cols=4, rows=4, flit_bits=64, buffer_flits=4)
    pairs = [((0, 0), (0, 0)), ((0, 0), (1, 0)), ((0, 0), (3, 0)), ((0, 0), (3, 3)),
             ((3, 3), (0, 1)), ((2, 0), (2, 3))]
    for src, dst in pairs:
        received, lat = run_traffic(cfg, [(src, dst, 3)], stall=0.0, idle=0.0)
        hops = cfg.hops(src, dst)
        assert lat[src, dst, 0] == hops + 1, (src, dst)
