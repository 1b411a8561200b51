"""Tests of the schedulers, the common evaluation and the lower bound."""

from __future__ import annotations

import networkx as nx
import pytest

from accelpool.spec.config import DType, UnitKind, parse_config
from accelpool.sched.ir import MicroOp, OpType
from accelpool.sched.pool import AllocationError, Pool, UnschedulableError
from accelpool.sched.schedulers import (SCHEDULERS, TableCost, greedy, heft, lookahead, lower_bound,
                              search, upward_rank, _Problem)

# Topcuoglu, Hariri and Wu, "Performance-effective and low-complexity task scheduling for
# heterogeneous computing", IEEE TPDS 13(3), 2002: Fig. 2, the 10-task graph and its
# computation cost table on processors P1, P2, P3.
PAPER_COSTS = {
    1: (14, 16, 9), 2: (13, 19, 18), 3: (11, 13, 19), 4: (13, 8, 17), 5: (12, 13, 10),
    6: (13, 16, 9), 7: (7, 15, 11), 8: (5, 11, 14), 9: (18, 12, 20), 10: (21, 7, 16),
}
PAPER_EDGES = {
    (1, 2): 18, (1, 3): 12, (1, 4): 9, (1, 5): 11, (1, 6): 14, (2, 8): 19, (2, 9): 16,
    (3, 7): 23, (4, 8): 27, (4, 9): 23, (5, 9): 13, (6, 8): 15, (7, 10): 17, (8, 10): 11,
    (9, 10): 13,
}
# Upward ranks from the paper's Table 2.
PAPER_RANKS = {1: 108.0, 2: 77.0, 3: 80.0, 4: 80.0, 5: 69.0, 6: 63.333, 7: 42.667,
               8: 35.667, 9: 44.333, 10: 14.667}


def three_processor_pool() -> Pool:
    doc = {"name": "paper", "mesh": {"cols": 2, "rows": 2},
           "tile": [{"name": "mem", "kind": "memory", "x": 0, "y": 0}] +
                   [{"name": f"p{i + 1}", "kind": "dmu", "x": (i + 1) % 2, "y": (i + 1) // 2}
                    for i in range(3)]}
    return Pool(parse_config(doc), kinds=(UnitKind.DMU,))


def paper_problem():
    pool = three_processor_pool()
    dag = nx.DiGraph()
    for n in PAPER_COSTS:
        dag.add_node(n, op=MicroOp(f"n{n}", OpType.GEMM, DType.BF16, (), ()))
    dag.add_edges_from(PAPER_EDGES)
    # pool.units[0] is the memory tile, which cannot run a GEMM; give it an unused column.
    cost = TableCost({n: (10 ** 6,) + c for n, c in PAPER_COSTS.items()}, PAPER_EDGES)
    return dag, pool, cost


def test_heft_paper_example_makespan_80():
    dag, pool, cost = paper_problem()
    s = heft(dag, pool, cost)
    assert s.planned == 80
    assert s.makespan == 80
    s.verify(dag)
    ranks = s.ranks
    for n, r in PAPER_RANKS.items():
        assert ranks[n] == pytest.approx(r, abs=1e-3)
    # The paper's schedule: n1 on P3 at 0-9, n10 on P2 finishing at 80.
    assert s.slots[1] == type(s.slots[1])("p3", 0, 9)
    assert s.slots[10].unit == "p2" and s.slots[10].finish == 80


def test_greedy_is_the_seed_rule_on_the_paper_example():
    dag, pool, cost = paper_problem()
    s = greedy(dag, pool, cost)
    s.verify(dag)
    # every task on its fastest processor
    for n, c in PAPER_COSTS.items():
        assert s.slots[n].unit == f"p{c.index(min(c)) + 1}"
    assert s.makespan >= 80


def test_other_schedulers_and_bound_on_paper_example():
    dag, pool, cost = paper_problem()
    lb = lower_bound(dag, pool, cost)
    # critical path on fastest units: 9 + 11 (n3 on P1) + 7 (n7) + 7 (n10) ... at least 9+8+5+7
    assert 0 < lb <= 80
    for name, fn in SCHEDULERS.items():
        s = fn(dag, pool, cost)
        s.verify(dag)
        assert s.makespan >= lb, name
    assert search(dag, pool, cost).makespan <= 80


def test_lower_bound_values():
    dag, pool, cost = paper_problem()
    P = _Problem(dag, pool, cost)
    mins = {n: min(c) for n, c in PAPER_COSTS.items()}
    cp = max(sum(mins[n] for n in path) for path in nx.all_simple_paths(dag, 1, 10))
    work = sum(mins.values()) / 3
    assert lower_bound(dag, pool, cost) == max(cp, -(-int(work * 3) // 3))


def test_unschedulable_micro_op_is_a_clear_error():
    dag, pool, cost = paper_problem()
    dag.nodes[5]["op"] = MicroOp("n5", OpType.CONV, DType.INT8, (), ())
    with pytest.raises(UnschedulableError, match=r"Micro-op 5 \(conv on int8\) is supported "
                                                 r"by no unit of pool 'paper'"):
        heft(dag, pool, cost)


def test_verify_catches_overlap_and_early_start():
    dag, pool, cost = paper_problem()
    s = heft(dag, pool, cost)
    from accelpool.sched.schedule import Slot
    bad = dict(s.slots)
    a = s.slots[2]
    bad[2] = Slot(a.unit, s.slots[1].finish - 1, s.slots[1].finish - 1 + (a.finish - a.start))
    s.slots = bad
    with pytest.raises(AllocationError, match="starts at|busy with"):
        s.verify(dag)


# -- the benchmark suite ----------------------------------------------------------------

from accelpool.sched.cost.model import CostModel  # noqa: E402
from accelpool.sched.suite import benchmark_suite, random_dag  # noqa: E402


@pytest.fixture(scope="module")
def default_pool():
    return Pool.from_config("default")


def test_search_never_more_than_2_percent_worse_than_heft_on_the_suite(default_pool):
    cost = CostModel(default_pool)
    seen = 0
    for name, dag in benchmark_suite():
        lb = lower_bound(dag, default_pool, cost)
        h = heft(dag, default_pool, cost)
        s = search(dag, default_pool, cost)
        s.verify(dag)
        assert lb <= h.makespan and lb <= s.makespan, name
        assert s.makespan <= 1.02 * h.makespan, (name, s.makespan, h.makespan)
        seen += 1
    assert seen >= 6


def test_every_scheduler_gives_a_valid_schedule(default_pool):
    dag = random_dag(300, seed=11, width=12)
    cost = CostModel(default_pool)
    lb = lower_bound(dag, default_pool, cost)
    for name, fn in SCHEDULERS.items():
        s = fn(dag, default_pool, cost)
        s.verify(dag)
        assert s.makespan >= lb, name
        assert set(s.slots) == set(dag.nodes)
        util = s.utilization()
        assert 0 < util["util.mean"] <= 1
        assert "makespan" in s.summary(lb)


def test_greedy_picks_lowest_latency_unit(default_pool):
    dag = random_dag(100, seed=2, width=8)
    cost = CostModel(default_pool)
    s = greedy(dag, default_pool, cost)
    P = _Problem(dag, default_pool, cost)
    for i, n in enumerate(P.nodes):
        best = min(P.w[i], key=lambda uc: uc[1])[0]
        assert s.slots[n].unit == best.name


def test_baseline_pools_schedule_everything():
    dag = random_dag(200, seed=4, width=8)
    for pool in (Pool.dense_only("default"), Pool.dense_sparse("default")):
        cost = CostModel(pool)
        s = heft(dag, pool, cost)
        s.verify(dag)
        assert {pool.unit(sl.unit).kind for sl in s.slots.values()} <= {
            UnitKind.DMU, UnitKind.SMU, UnitKind.AFU}


def test_micro_op_too_big_for_every_scratchpad_is_rejected(default_pool):
    dag = random_dag(20, seed=1, width=4)
    n = next(n for n in dag.nodes if dag.nodes[n]["op"].op is OpType.ACT)
    import dataclasses
    dag.nodes[n]["op"] = dataclasses.replace(dag.nodes[n]["op"], bytes_in=60000, bytes_out=60000)
    with pytest.raises(AllocationError, match=rf"Micro-op '{n}' needs 120000 bytes of scratchpad "
                                              rf"\(operands and result\) but its units have "
                                              rf"afu0 16384; decompose it"):
        heft(dag, default_pool, CostModel(default_pool))


def test_direct_dataflow_schedules_are_valid_too(default_pool):
    dag = random_dag(300, seed=12, width=12)
    cost = CostModel(default_pool, dataflow="direct")
    lb = lower_bound(dag, default_pool, cost)
    h = heft(dag, default_pool, cost)
    for name, fn in SCHEDULERS.items():
        s = fn(dag, default_pool, cost)
        s.verify(dag)
        assert s.makespan >= lb, name
    assert search(dag, default_pool, cost).makespan <= h.makespan


@pytest.mark.parametrize("name", ["mlp", "gcn", "transformer", "qcnn"])
@pytest.mark.parametrize("scheduler", ["greedy", "heft", "lookahead"])
def test_predicted_makespan_is_within_10_percent_of_the_compiled_streams(name, scheduler):
    """The schedule's makespan (command-level occupancy, the memory tile as one shared
    server) against the compiled streams' own timing (``accelpool.sched.cost.stream``, equal to the
    RTL's traces: ``sched/cost/test_stream.py``, ``tb/test_e2e.py``)."""
    from accelpool.spec.config import load_config
    from accelpool.sched.codegen import compile_schedule
    from accelpool.sched.cost.model import CostModel
    from accelpool.sched.cost.stream import program_timelines
    from accelpool.sched.decompose import compile_model
    from accelpool.sched.pool import Pool
    from accelpool.sched.schedulers import SCHEDULERS
    cfg = load_config("default")
    pool = Pool(cfg)
    g = compile_model(name, cfg)
    s = SCHEDULERS[scheduler](g.dag, pool, CostModel(pool))
    lines = program_timelines(compile_schedule(g, s, fence=False), cfg)
    end = max(t[-1] for t in lines.values() if t)
    assert abs(s.makespan - end) <= 0.10 * end, (s.makespan, end)
