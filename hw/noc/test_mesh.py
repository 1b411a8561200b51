"""Mesh traffic in amaranth.sim: every packet once, intact, in order per pair; zero-load latency."""

import random

import pytest

from hw.config import MeshConfig
from tb.noc_sim import check_delivery, run_traffic


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
