"""GNN unit: bit-exact against accelpool.spec.golden.sparse.gnn_aggregate (then
spec.golden.numerics.fp32_to_bf16_bits for BF16 output), cycles against accelpool.sched.cost.gnn."""

import ml_dtypes
import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.spec.config import UnitKind, load_config
from accelpool.hw.gnn import Fp32Max, Gnn, RecipBf16
from accelpool.spec.units.gnn import GnnArgs, GnnFunc
from accelpool.sched.cost import gnn as gnn_cost
from accelpool.spec.formats import encode_csr, layout_gnn
from accelpool.spec.golden.numerics import fp32_to_bf16_bits
from accelpool.spec.golden.sparse import fp32_max_bits, gnn_aggregate, recip_bf16_bits
from accelpool.tb.harness import run_cocotb
from accelpool.tb.sparse_patterns import (bf16_normal, karate_adjacency, random_graph,
                                          special_values, star_graph)
from accelpool.tb.sparse_sim import run_sparse, sparse_top
from accelpool.tb.streams import random_pattern


def tile(lanes):
    t = load_config().tile("gnn0")
    return type(t)(t.name, t.kind, t.x, t.y, t.dtypes, {**t.params, "lanes": lanes})


def expected(csr, x, func, out_bf16=False):
    want = gnn_aggregate(csr, x, func.name.lower())
    return fp32_to_bf16_bits(want) if out_bf16 else want


def check(adj, x, lanes, funcs=tuple(GnnFunc), *, seed=0, spad=16384, out_bf16=False):
    """Run every function; assert bit-exact, the exact cycle model, pad bytes untouched."""
    csr = encode_csr(adj)
    errors = []
    for func in funcs:
        job = layout_gnn(csr, x, lanes, out_fill=0xA5, out_bf16=out_bf16)
        run = run_sparse(Gnn(lanes=lanes, scratchpad_bytes=spad), job, func,
                         pattern=random_pattern(0.5, seed), max_cycles=200_000)
        np.testing.assert_array_equal(run.result, expected(csr, x, func, out_bf16),
                                      err_msg=f"{func.name}")
        elem = 2 if out_bf16 else 4
        pad = np.frombuffer(run.raw, np.uint8).reshape(x.shape[0], -1)[:, x.shape[1] * elem:]
        assert (pad == 0xA5).all(), f"{func.name}: pad features written"
        model = gnn_cost.cycles(tile(lanes), nodes=csr.shape[0], features=x.shape[1],
                                degrees=csr.row_nnz)
        assert run.cycles == model, f"{func.name}: RTL {run.cycles} cycles, model {model}"
        errors.append(abs(model - run.cycles) / run.cycles)
    return max(errors)


def test_gnn_karate_club():
    rng = np.random.default_rng(0)
    check(karate_adjacency(), bf16_normal(rng, (34, 11)), 8)


def test_gnn_random_graphs():
    rng = np.random.default_rng(1)
    for nodes, p, f, lanes in [(20, 0.2, 8, 8), (15, 0.05, 5, 4), (12, 0.6, 9, 2)]:
        check(random_graph(rng, nodes, p), bf16_normal(rng, (nodes, f)), lanes,
              seed=int(rng.integers(100)))


def test_gnn_single_node_of_huge_degree():
    rng = np.random.default_rng(2)
    check(star_graph(70, hub=33), bf16_normal(rng, (70, 8)), 8)


def test_gnn_no_edges_and_complete_graph():
    rng = np.random.default_rng(3)
    check(np.zeros((9, 9)), bf16_normal(rng, (9, 4)), 4)
    check(np.ones((9, 9)), bf16_normal(rng, (9, 4)), 4)


def test_gnn_special_values():
    """inf, NaN, subnormals, +-0 and huge values in the features (max's order, sum's overflow)."""
    rng = np.random.default_rng(4)
    x = special_values(rng, (16, 8), sparsity=0.2)
    x[3, :] = np.array([0x8000] * 8, dtype=np.uint16).view(ml_dtypes.bfloat16)   # -0 row
    check(random_graph(rng, 16, 0.4), x, 8)


def test_gnn_bf16_output_ragged_isolated_specials():
    """BF16 results: ragged F (a partial last slice), isolated nodes (first, middle, last),
    specials; each slice is one word, the pad lanes keep their bytes."""
    rng = np.random.default_rng(7)
    adj = random_graph(rng, 14, 0.35).toarray()
    adj[[0, 6, 13], :] = 0
    x = special_values(rng, (14, 7), sparsity=0.1)
    check(adj, x, 4, out_bf16=True, seed=5)


def test_gnn_bf16_output_rounding_edges():
    """Sums that are exact ties of BF16 (to even, both ways), a tie that carries into the
    exponent and one that overflows to inf; MEAN's product rounded once more."""
    b = lambda *v: np.array(v, dtype=np.uint16).view(ml_dtypes.bfloat16)
    # Node 0's neighbours are nodes 0 and 1: 1.0 + 2**-8, 1.0 + 2**-8, (1 + 2**-7) + 2**-8
    # and (2 - 2**-7) * 2**127 + 2**119.
    x = np.stack([b(0x3F80, 0x3F80, 0x3F81, 0x7F7F), b(0x3B80, 0x3B80, 0x3B80, 0x7B00),
                  b(0x3F80, 0xBF80, 0x3FFF, 0xFF7F), b(0x3B80, 0x3B80, 0x3B80, 0xFB00)])
    adj = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    want = fp32_to_bf16_bits(gnn_aggregate(encode_csr(adj), x, "sum"))
    # node 0: 1+2**-8 -> 1.0 (tie, even); 1+2**-7+2**-8 -> 1+2**-6 (tie, up);
    # (2-2**-7)*2**127 + 2**119 -> inf (tie, odd: carries out of the largest finite)
    assert want[0].tolist() == [0x3F80, 0x3F80, 0x3F82, 0x7F80]
    check(adj, x, 2, out_bf16=True)


def test_gnn_bf16_output_karate_default_lanes():
    rng = np.random.default_rng(8)
    check(karate_adjacency(), bf16_normal(rng, (34, 19)), 8, out_bf16=True)


@pytest.mark.slow
def test_gnn_random_graphs_long():
    rng = np.random.default_rng(5)
    for _ in range(12):
        nodes = int(rng.integers(2, 60))
        lanes = int(rng.choice([2, 4, 8]))
        check(random_graph(rng, nodes, float(rng.uniform(0, 0.5))),
              bf16_normal(rng, (nodes, int(rng.integers(1, 20)))), lanes,
              seed=int(rng.integers(100)), spad=65536, out_bf16=bool(rng.integers(2)))


def _comb(dut, pairs, inputs, output):
    """Drive a combinational block with each input tuple; return its outputs."""
    out = []

    async def tb(ctx):
        for vals in pairs:
            for sig, v in zip(inputs, vals):
                ctx.set(sig, int(v))
            await ctx.delay(1e-9)
            out.append(ctx.get(output))

    sim = Simulator(dut)
    sim.add_testbench(tb)
    sim.run()
    return np.array(out, dtype=np.uint64)


def test_fp32_max_matches_reference():
    rng = np.random.default_rng(6)
    specials = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001,
                         0x00000001, 0x807FFFFF, 0x3F800000, 0xBF800000, 0x7F7FFFFF], np.uint32)
    a = np.concatenate([np.repeat(specials, len(specials)), rng.integers(0, 1 << 32, 300)])
    b = np.concatenate([np.tile(specials, len(specials)), rng.integers(0, 1 << 32, 300)])
    dut = Fp32Max()
    got = _comb(dut, zip(a, b), (dut.a, dut.b), dut.y)
    np.testing.assert_array_equal(got, fp32_max_bits(a, b))


def test_recip_matches_reference():
    d = np.concatenate([np.arange(0, 300), [511, 512, 513, 1000, 65535, 65536, 99999, (1 << 24) - 1]])
    dut = RecipBf16(24)
    got = _comb(dut, ((v,) for v in d), (dut.d,), dut.y)
    np.testing.assert_array_equal(got, recip_bf16_bits(d))


def test_gnn_exec_encoding_roundtrip():
    rng = np.random.default_rng(0)
    job = layout_gnn(karate_adjacency(), bf16_normal(rng, (34, 8)), 8)
    back = isa.decode(isa.exec_cmd(UnitKind.GNN, GnnFunc.MEAN, **job.args).encode(), UnitKind.GNN)
    assert back.fields["func"] is GnnFunc.MEAN and back.fields["args"] == job.args
    assert GnnArgs.size <= isa.EXEC_ARGS_BITS


def test_gnn_args_layout():
    """The EXEC argument contract: field order and widths, out_bf16 last (bit 160)."""
    assert [(n, Shape.cast(f.shape).width, f.offset) for n, f in GnnArgs] == [
        ("ptr_addr", 24, 0), ("idx_addr", 24, 24), ("x_addr", 24, 48), ("out_addr", 24, 72),
        ("nodes", 16, 96), ("features", 16, 112), ("edges", 24, 128), ("out_bf16", 1, 152)]


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lanes=3), ValueError, r"Lane count must be a power of two of at least 2, not 3"),
    (dict(lanes=8.0), TypeError, r"Lane count must be a positive integer, not 8.0"),
    (dict(scratchpad_bytes="64k"), TypeError, r"Scratchpad size must be a positive integer"),
])
def test_gnn_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Gnn(**kwargs)


def test_gnn_cost_needs_degrees():
    with pytest.raises(TypeError, match="GNN cycles need degrees"):
        gnn_cost.cycles(tile(8), nodes=4, features=4)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_gnn_cocotb(sim):
    params = {"lanes": 8, "scratchpad_bytes": 16384}
    run_cocotb(lambda: sparse_top(Gnn(**params)), name="gnn", params=params,
               test_module="accelpool.tb.tb_gnn", sim=sim)
