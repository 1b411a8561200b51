"""The sparse units' functional models against their RTL: the same scratchpad image in, the
same scratchpad out (the whole of it: results, pad bytes and everything else).

The RTL runs in amaranth.sim (:mod:`accelpool.tb.sparse_sim`); the operands are laid out by
:mod:`accelpool.spec.formats` at an offset, with a poisoned result region, so a model that reads
or writes a wrong address, pitch or element size disagrees with the hardware.
"""

from dataclasses import replace

import numpy as np
import pytest

from accelpool.spec.config import UnitKind, load_config
from accelpool.hw.gnn import Gnn
from accelpool.spec.units.gnn import GnnFunc
from accelpool.hw.smu import Smu
from accelpool.spec.units.smu import SmuFunc
from accelpool.spec.formats import encode_csr, layout_gnn, layout_spmm
from accelpool.spec.golden.numerics import fp32_to_bf16_bits
from accelpool.spec.golden.sparse import gnn_aggregate, spmm_bf16
from accelpool.sched.unitsim import UnitSimError, execute, model_for
from accelpool.sched.unitsim_sparse import gnn_exec, smu_exec
from accelpool.tb.sparse_patterns import (bf16_normal, karate_adjacency, random_graph, sparse_case,
                                special_values)
from accelpool.tb.sparse_sim import run_sparse

SPAD = 16384


def tile(name, lanes, spad=SPAD):
    t = load_config().tile(name)
    return replace(t, params={**t.params, "lanes": lanes, "scratchpad_bytes": spad})


def image(job, size=SPAD):
    spad = bytearray(size)
    data = job.image.data
    spad[:len(data)] = data
    return spad


def model_vs_rtl(unit, t, func, job):
    """Run the model and the RTL on the same image; assert the same scratchpad after.
    Returns the model's written runs and the image after."""
    before = image(job)
    after = bytearray(before)
    runs = execute(t, func, job.args, after)
    dump = bytearray()
    run_sparse(unit, job, func, dump=dump, max_cycles=200_000)
    assert len(dump) == SPAD
    assert dump == after, (f"{func.name}: model and RTL disagree at "
                           f"{[i for i in range(SPAD) if dump[i] != after[i]][:8]}")
    # The runs are exactly the real elements and nothing outside them changed.
    rows, cols = job.out_shape
    assert sum(n for _, n in runs) == rows * cols * (2 if job.out_bf16 else 4)
    untouched = bytearray(before)
    for a, n in runs:
        untouched[a:a + n] = after[a:a + n]
    assert untouched == after
    return runs, after


def test_models_are_registered():
    assert model_for(UnitKind.GNN) is gnn_exec
    assert model_for(UnitKind.SMU) is smu_exec


@pytest.mark.parametrize("lanes, nodes, feats, out_bf16, seed", [
    (4, 13, 7, True, 0),       # ragged F: two passes, the last one partial
    (8, 17, 8, False, 1),      # one full pass, no padding (one write run)
    (2, 9, 5, True, 2),
])
def test_gnn_model_matches_rtl(lanes, nodes, feats, out_bf16, seed):
    rng = np.random.default_rng(seed)
    adj = random_graph(rng, nodes, 0.3).toarray()
    adj[nodes // 2] = 0                              # a node without neighbours
    x = special_values(rng, (nodes, feats), 0.1)
    t = tile("gnn0", lanes)
    for func in GnnFunc:
        job = layout_gnn(adj, x, lanes, base=3 * 2 * lanes, out_fill=0xA5, out_bf16=out_bf16)
        _, after = model_vs_rtl(Gnn(lanes=lanes, scratchpad_bytes=SPAD), t, func, job)
        want = gnn_aggregate(encode_csr(adj), x, func.name.lower())
        got = job.read_result(bytes(after))
        np.testing.assert_array_equal(got, fp32_to_bf16_bits(want) if out_bf16 else want)


def test_gnn_model_matches_rtl_on_a_block_of_rows():
    """An adjacency block of 5 output nodes over 34 source nodes (as decompose tiles it)."""
    rng = np.random.default_rng(3)
    adj = karate_adjacency().toarray()[10:15]
    x = bf16_normal(rng, (34, 6))
    job = layout_gnn(adj, x, 4, out_fill=0x5A, out_bf16=True)
    model_vs_rtl(Gnn(lanes=4, scratchpad_bytes=SPAD), tile("gnn0", 4), GnnFunc.MEAN, job)


@pytest.mark.parametrize("lanes, case, n, out_bf16", [
    (4, "empty_rows", 10, True),
    (8, "specials", 8, False),
    (4, "random", 3, False),
])
def test_smu_model_matches_rtl(lanes, case, n, out_bf16):
    rng = np.random.default_rng(lanes + n)
    a = sparse_case(case, rng, 9, 20)
    b = bf16_normal(rng, (20, n))
    job = layout_spmm(a, b, lanes, base=2 * lanes, out_fill=0xA5, out_bf16=out_bf16)
    _, after = model_vs_rtl(Smu(lanes=lanes, scratchpad_bytes=SPAD), tile("smu0", lanes),
                            SmuFunc.SPMM, job)
    want = spmm_bf16(encode_csr(a), b)
    np.testing.assert_array_equal(job.read_result(bytes(after)),
                                  fp32_to_bf16_bits(want) if out_bf16 else want)


def test_no_rows_or_columns_write_nothing():
    t = tile("gnn0", 8)
    spad = bytearray(SPAD)
    assert gnn_exec(t, GnnFunc.SUM, dict(nodes=0, features=4, out_addr=64), spad) == []
    assert smu_exec(tile("smu0", 8), SmuFunc.SPMM, dict(m=3, n=0), spad) == []
    assert spad == bytearray(SPAD)


def _gnn_job(**over):
    rng = np.random.default_rng(0)
    job = layout_gnn(random_graph(rng, 6, 0.5), bf16_normal(rng, (6, 5)), 4)
    return job, {**job.args, **over}


@pytest.mark.parametrize("make, msg", [
    (lambda j, a: {**a, "x_addr": a["x_addr"] + 2}, r"GNN EXEC: x_addr = \d+ is not a multiple "
                                                   r"of the 8-byte scratchpad word"),
    (lambda j, a: {**a, "out_addr": SPAD - 8}, r"the result at out_addr = 16376 takes \d+ bytes, "
                                               r"past the end of the 16384-byte scratchpad"),
    (lambda j, a: {**a, "edges": a["edges"] + 1}, r"the CSR ptr array at ptr_addr = 0 must rise "
                                                  r"from 0 to edges = \d+"),
    (lambda j, a: {**a, "out_addr": a["x_addr"]}, r"the result \[\d+, \d+\) overlaps the dense "
                                                  r"operand"),
    (lambda j, a: {**a, "lanes": 4}, r"GNN EXEC has no argument 'lanes'; arguments: ptr_addr"),
    (lambda j, a: {**a, "nodes": -1}, r"GNN EXEC argument nodes must be an integer in 0..65535"),
])
def test_gnn_model_errors(make, msg):
    job, args = _gnn_job()
    spad = image(job)
    with pytest.raises(UnitSimError, match=msg):
        gnn_exec(tile("gnn0", 4), GnnFunc.SUM, make(job, args), spad)


def test_gnn_model_rejects_a_bad_function_and_a_wrong_scratchpad():
    job, args = _gnn_job()
    with pytest.raises(UnitSimError, match=r"GNN EXEC function must be one of SUM, MEAN, MAX"):
        gnn_exec(tile("gnn0", 4), 7, args, image(job))
    with pytest.raises(UnitSimError, match=r"the scratchpad image holds 100 bytes; the tile "
                                           r"has 16384"):
        gnn_exec(tile("gnn0", 4), GnnFunc.SUM, args, bytearray(100))


def test_gnn_model_rejects_a_decreasing_ptr():
    job, args = _gnn_job()
    spad = image(job)
    p = args["ptr_addr"]
    spad[p + 4:p + 8] = (1000).to_bytes(4, "little")
    with pytest.raises(UnitSimError, match=r"must rise from 0 to edges = \d+; .* and decreases"):
        gnn_exec(tile("gnn0", 4), GnnFunc.MAX, args, spad)


def test_smu_model_rejects_a_column_past_k():
    rng = np.random.default_rng(1)
    job = layout_spmm(sparse_case("dense", rng, 3, 6), bf16_normal(rng, (6, 4)), 4)
    with pytest.raises(UnitSimError, match=r"SMU EXEC \(k = 5\): CSR row 0 holds column 5; "
                                           r"the matrix has 5 columns"):
        smu_exec(tile("smu0", 4), SmuFunc.SPMM, {**job.args, "k": 5}, image(job))
