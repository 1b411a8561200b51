"""Tests of the scheduler benchmark suite's DAG generator."""

from __future__ import annotations

import networkx as nx
import pytest

from accelpool.sched.ir import OpType
from accelpool.sched.suite import RANDOM_SUITE, benchmark_suite, random_dag


def test_random_dag_is_deterministic_acyclic_and_sized():
    a, b = random_dag(300, seed=5, width=10), random_dag(300, seed=5, width=10)
    assert list(a.edges(data="bytes")) == list(b.edges(data="bytes"))
    assert a.number_of_nodes() == 300 and nx.is_directed_acyclic_graph(a)
    assert all(d > 0 for _, _, d in a.edges(data="bytes"))
    assert nx.number_weakly_connected_components(a) == 1
    assert list(random_dag(300, seed=6, width=10).edges) != list(a.edges)
    kinds = {a.nodes[n]["op"].op for n in a.nodes}
    assert {OpType.GEMM, OpType.SPMM, OpType.ACT, OpType.CONV, OpType.AGGREGATE} <= kinds


def test_dense_mix_and_bad_mix():
    d = random_dag(200, seed=1, mix="dense")
    assert {d.nodes[n]["op"].op for n in d.nodes} <= {OpType.GEMM, OpType.ACT}
    with pytest.raises(ValueError, match="mix must be 'mixed' or 'dense', not 'sparse'"):
        random_dag(10, mix="sparse")


def test_suite_lists_the_random_dags():
    names = [n for n, _ in benchmark_suite(include_models=False)]
    assert names == [r[0] for r in RANDOM_SUITE]
