"""cocotb tests of the GNN unit's Verilog (with its memory): random graphs, the karate club,
a hub of huge degree, no edges, FP32 and BF16 output; bit-exact against
spec.golden.sparse.gnn_aggregate (then fp32_to_bf16_bits for BF16) and cycle-exact
against accelpool.sched.cost.gnn."""

import cocotb
import numpy as np

from accelpool.hw.gnn import Gnn
from accelpool.spec.units.gnn import GnnFunc
from accelpool.sched.cost import gnn as gnn_cost
from accelpool.spec.formats import encode_csr, layout_gnn
from accelpool.spec.golden.sparse import gnn_aggregate
from accelpool.tb.cocotb_sparse import check_job, reset_tb, tile_with_lanes
from accelpool.tb.sparse_patterns import (bf16_normal, karate_adjacency, random_graph,
                                          special_values, star_graph)


async def check(tb, lanes, adj, x, func, out_bf16=False):
    csr = encode_csr(adj)
    job = layout_gnn(csr, x, lanes, out_fill=0x5A, out_bf16=out_bf16)
    model = gnn_cost.cycles(tile_with_lanes("gnn0", lanes), nodes=x.shape[0], features=x.shape[1], degrees=csr.row_nnz)
    await check_job(tb, Gnn, func, job, gnn_aggregate(csr, x, func.name.lower()), model,
                    rows=x.shape[0], cols=x.shape[1], out_bf16=out_bf16, what=f"{func.name}: ")


@cocotb.test()
async def gnn_graphs_with_idle_commands(dut):
    lanes, tb = await reset_tb(dut, Gnn, stall=0.4, seed=2)
    rng = np.random.default_rng(8)
    cases = [(karate_adjacency(), bf16_normal(rng, (34, lanes + 5))),
             (random_graph(rng, 40, 0.1), bf16_normal(rng, (40, lanes))),
             (star_graph(50, hub=7), bf16_normal(rng, (50, 3))),
             (np.zeros((6, 6)), bf16_normal(rng, (6, lanes))),
             (random_graph(rng, 20, 0.3), special_values(rng, (20, lanes), 0.2))]
    for adj, x in cases:
        for func in GnnFunc:
            await check(tb, lanes, adj, x, func)


@cocotb.test()
async def gnn_bf16_output(dut):
    """BF16 results: ragged F, isolated nodes (first, middle, last), specials."""
    lanes, tb = await reset_tb(dut, Gnn, stall=0.3, seed=4)
    rng = np.random.default_rng(9)
    adj = random_graph(rng, 24, 0.25).toarray()
    adj[[0, 11, 23], :] = 0
    cases = [(adj, special_values(rng, (24, lanes + 3), 0.1)),
             (karate_adjacency(), bf16_normal(rng, (34, 2 * lanes - 1)))]
    for adj_, x in cases:
        for func in GnnFunc:
            await check(tb, lanes, adj_, x, func, out_bf16=True)
