"""The NoC cost formulas against RTL measurements (amaranth.sim) over sweeps."""

import math
import random

import pytest

from accelpool.spec import isa
from accelpool.spec.config import MeshConfig
from accelpool.sched.cost import noc
from accelpool.tb.noc_sim import check_delivery, run_traffic, time_dma


def test_packet_latency_matches_the_mesh():
    """Head latency over every hop count of a 4x4 mesh, with 1- and 4-flit packets."""
    cfg = MeshConfig(cols=4, rows=4, flit_bits=64, buffer_flits=4)
    pairs = [((0, 0), (0, 0)), ((1, 1), (2, 1)), ((0, 3), (2, 3)), ((3, 0), (0, 0)),
             ((0, 0), (2, 2)), ((3, 3), (0, 1)), ((0, 0), (3, 3))]   # 0 to 6 hops
    for src, dst in pairs:
        for payload in (0, 3):
            received, lat = run_traffic(cfg, [(src, dst, payload)], stall=0.0, idle=0.0)
            check_delivery(cfg, [(src, dst, payload)], received)
            assert lat[src, dst, 0] == noc.packet_latency(noc.hops(src, dst), 1), (src, dst)


@pytest.mark.parametrize("cols,rows,mem_at,flit_bits,max_packet", [
    (4, 1, (1, 0), 64, 64),
    (4, 1, (3, 0), 64, 64),
    (3, 2, (2, 1), 64, 128),
    (2, 2, (1, 1), 128, 64),
])
def test_dma_cycles_match_the_rtl(cols, rows, mem_at, flit_bits, max_packet):
    cfg = MeshConfig(cols=cols, rows=rows, flit_bits=flit_bits, buffer_flits=4)
    lengths = [1, 8, 64, 72, 200, 1000]
    cmds = [isa.store(spad_addr=0, x=mem_at[0], y=mem_at[1], remote_addr=0, length=n)
            for n in lengths]
    cmds += [isa.load(spad_addr=0, x=mem_at[0], y=mem_at[1], remote_addr=0, length=n)
             for n in lengths]
    cmds.append(isa.signal(x=mem_at[0], y=mem_at[1], token=0))
    measured = time_dma(cfg, mem_at, cmds, word_bits=flit_bits * 2,
                        max_packet_bytes=max_packet)
    h = noc.hops((0, 0), mem_at)
    kw = dict(flit_bits=flit_bits, max_packet_bytes=max_packet)
    predicted = [noc.store_cycles(n, h, **kw) for n in lengths] + \
        [noc.load_cycles(n, h, **kw) for n in lengths] + [noc.signal_cycles()]
    assert measured == predicted


def test_flit_and_packet_counts():
    assert noc.packet_count(0) == 0
    assert noc.packet_count(65, 64) == 2
    assert noc.data_flits(65, 64, 64) == 9
    assert noc.data_flits(200, 128, 64) == 4 + 4 + 4 + 1   # 16-byte flits: 64,64,64,8 bytes
    assert noc.store_cycles(0, 3) == noc.load_cycles(0, 3) == 1


def test_uniform_bound_and_contention():
    assert noc.uniform_channel_bound(4, 4) == 1.0
    assert noc.uniform_channel_bound(8, 8) == 0.5
    assert noc.uniform_channel_bound(1, 1) == 1.0
    assert noc.contention_latency(2, 4, 0.0, 0.5) == noc.packet_latency(2, 1)
    assert noc.uniform_mean_hops(2, 1) == 1.0
    assert noc.uniform_mean_hops(4, 4) == pytest.approx(8 / 3)
    assert noc.contention_latency(2, 4, 0.5, 0.5) == math.inf
    a, b = (noc.contention_latency(2, 4, x, 0.5) for x in (0.1, 0.4))
    assert a < b


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"length must be an integer >= 0, not -1"):
        noc.packet_count(-1)
    with pytest.raises(ValueError, match=r"hop_count must be an integer >= 0, not 1.5"):
        noc.packet_latency(1.5)
