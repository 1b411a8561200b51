"""Mesh traffic in amaranth.sim: every packet once, intact, in order per pair, with random
stalls at every ejection port and idle cycles at every injection port."""

import random

import pytest

from accelpool.spec.config import MeshConfig
from accelpool.tb.noc_sim import check_delivery, run_traffic


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


# The zero-load latency (one cycle per hop, head offered hops + 1 cycles after injection)
# is measured over every hop count of a 4x4 mesh in sched/cost/test_noc.py, against the
# cost model's formula.
