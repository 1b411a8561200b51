"""The scheduler benchmark suite: random micro-op DAGs and the built-in models.

:func:`random_dag` draws a layered DAG of real :class:`~accelpool.sched.ir.MicroOp` s with the mix
of operation types a decomposed network has (dense and sparse BF16 GEMM tiles, INT8 GEMM
and convolution tiles, activations, graph aggregation), tile-sized shapes, and edge
``bytes`` attributes (a micro-op's result bytes shared among its consumers). They carry
no buffers: they exercise scheduling, not arithmetic.

:func:`benchmark_suite` yields ``(name, dag)`` pairs: the built-in models decomposed for
the default pool and a fixed set of random DAGs.
"""

from __future__ import annotations

from typing import Iterator

import networkx as nx
import numpy as np

from accelpool.sched import decompose, models
from accelpool.sched.ir import ActFunc, AggFunc, MicroOp, OpType
from accelpool.spec.config import DType

__all__ = ["random_dag", "benchmark_suite", "RANDOM_SUITE"]

_SIZES = (8, 16, 32, 64)


def _random_op(rng: np.random.Generator, name: str, mix: str) -> MicroOp:
    r = rng.random()
    if mix == "dense":
        r = r * 0.55
    if r < 0.35:
        M, K, N = (int(rng.choice(_SIZES)) for _ in range(3))
        shape = {"M": M, "K": K, "N": N}
        return MicroOp(name, OpType.GEMM, DType.BF16, (), (), shape=shape, flops=2 * M * K * N,
                       bytes_in=2 * (M * K + K * N), bytes_out=4 * M * N)
    if r < 0.55:
        M, K, N = (int(rng.choice(_SIZES)) for _ in range(3))
        shape = {"M": M, "K": K, "N": N}
        return MicroOp(name, OpType.ACT, DType.BF16, (), (), func=ActFunc.GELU,
                       shape={"n": M * N}, bytes_in=2 * M * N, bytes_out=2 * M * N)
    if r < 0.75:
        M, K, N = (int(rng.choice(_SIZES)) for _ in range(3))
        sp = float(rng.choice((0.5, 0.75, 0.9, 0.95)))
        nnz = int(M * K * (1 - sp))
        return MicroOp(name, OpType.SPMM, DType.BF16, (), (), shape={"M": M, "K": K, "N": N},
                       sparsity=sp, attrs={"sparse_operand": 0}, flops=2 * nnz * N,
                       bytes_in=2 * nnz + M * K // 8 + 2 * K * N, bytes_out=4 * M * N)
    if r < 0.85:
        M, K, N = (int(rng.choice(_SIZES)) for _ in range(3))
        return MicroOp(name, OpType.GEMM, DType.INT8, (), (), shape={"M": M, "K": K, "N": N},
                       flops=2 * M * K * N, bytes_in=M * K + K * N, bytes_out=4 * M * N)
    if r < 0.95:
        ic, oc = int(rng.choice((8, 16))), int(rng.choice((8, 16)))
        h = int(rng.choice((8, 16)))
        shape = dict(IC=ic, H=h, W=h, OC=oc, KH=3, KW=3, OH=h - 2, OW=h - 2)
        return MicroOp(name, OpType.CONV, DType.INT8, (), (), shape=shape,
                       flops=2 * oc * ic * 9 * (h - 2) ** 2, bytes_in=ic * h * h + oc * ic * 9,
                       bytes_out=4 * oc * (h - 2) ** 2)
    nodes = int(rng.choice((16, 32, 64)))
    feats = int(rng.choice((8, 16, 32)))
    edges = nodes * int(rng.choice((2, 4, 8)))
    return MicroOp(name, OpType.AGGREGATE, DType.BF16, (), (), func=AggFunc.SUM,
                   shape={"nodes": nodes, "edges": edges, "features": feats},
                   flops=edges * feats, bytes_in=2 * nodes * feats + 4 * edges,
                   bytes_out=2 * nodes * feats)


def random_dag(n: int, seed: int = 0, width: int = 16, max_preds: int = 3,
               mix: str = "mixed") -> nx.DiGraph:
    """A random layered micro-op DAG of ``n`` nodes.

    Parameters
    ----------
    n : int
        Number of micro-ops.
    seed : int
    width : int
        Mean layer width: node ``i`` draws its 1..``max_preds`` predecessors among the
        ``2 * width`` nodes before it, so the DAG has about ``n / width`` levels.
    mix : {"mixed", "dense"}
        ``"dense"`` draws only dense BF16 GEMM and activation tiles.
    """
    if mix not in ("mixed", "dense"):
        raise ValueError(f"mix must be 'mixed' or 'dense', not {mix!r}")
    rng = np.random.default_rng(seed)
    dag = nx.DiGraph()
    ops = []
    for i in range(n):
        op = _random_op(rng, f"r{i}", mix)
        ops.append(op)
        dag.add_node(op.id, op=op)
    for i in range(1, n):
        lo = max(0, i - 2 * width)
        k = int(rng.integers(1, max_preds + 1))
        preds = set(int(p) for p in rng.integers(lo, i, size=k))
        share = max(1, len(preds))
        for p in sorted(preds):
            dag.add_edge(ops[p].id, ops[i].id, bytes=max(1, ops[p].bytes_out // share))
    return dag


#: (name, size, seed, width, mix) of the random part of the benchmark suite.
RANDOM_SUITE = (
    ("rand-200-narrow", 200, 1, 4, "mixed"),
    ("rand-200-wide", 200, 2, 32, "mixed"),
    ("rand-500", 500, 3, 16, "mixed"),
    ("rand-1000", 1000, 4, 24, "mixed"),
    ("rand-500-dense", 500, 5, 16, "dense"),
    ("rand-2000", 2000, 6, 48, "mixed"),
)


def benchmark_suite(include_models: bool = True) -> Iterator[tuple[str, nx.DiGraph]]:
    """``(name, dag)`` for every built-in model (decomposed for the default pool) and the
    random DAGs of :data:`RANDOM_SUITE`."""
    if include_models:
        yield from _model_dags()
    for name, n, seed, width, mix in RANDOM_SUITE:
        yield name, random_dag(n, seed, width, mix=mix)


def _model_dags() -> Iterator[tuple[str, nx.DiGraph]]:
    for name in models.BUILTIN_MODELS:
        yield name, decompose.compile_model(name).dag
