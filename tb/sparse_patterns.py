"""Operand generators for the sparse units' tests and benchmark: random and adversarial.

Every generator takes a numpy ``Generator`` and returns BF16 arrays (dense form; zeros
are absent entries) or adjacency matrices, so the same patterns serve the amaranth.sim
tests, the cocotb benches and ``bench/bench_sparse.py``.
"""

from __future__ import annotations

import ml_dtypes
import networkx as nx
import numpy as np
import scipy.sparse

__all__ = ["bf16_normal", "unstructured", "structured_2_4", "skewed", "special_values",
           "random_graph", "star_graph", "karate_adjacency", "SPARSE_CASES", "sparse_case"]

BF16 = ml_dtypes.bfloat16


def bf16_normal(rng, shape) -> np.ndarray:
    """Standard-normal values rounded to BF16, never zero."""
    x = rng.standard_normal(shape).astype(BF16)
    x[x == 0] = BF16(1.0)
    return x


def unstructured(rng, m, k, sparsity: float) -> np.ndarray:
    """Exactly ``round(sparsity * m * k)`` zeros at uniformly random positions."""
    a = bf16_normal(rng, (m, k)).reshape(-1)
    zeros = int(round(sparsity * a.size))
    a[rng.permutation(a.size)[:zeros]] = 0
    return a.reshape(m, k)


def structured_2_4(rng, m, k) -> np.ndarray:
    """2:4 structured sparsity: in every group of 4 consecutive columns, 2 random non-zeros."""
    if k % 4:
        raise ValueError(f"2:4 sparsity needs K a multiple of 4, not {k}")
    a = bf16_normal(rng, (m, k)).reshape(m, k // 4, 4)
    keep = np.argsort(rng.random((m, k // 4, 4)), axis=2)[..., :2]
    mask = np.zeros(a.shape, bool)
    np.put_along_axis(mask, keep, True, axis=2)
    a[~mask] = 0
    return a.reshape(m, k)


def skewed(rng, m, k, dense_row: int = 0, filled_rows: int = 0) -> np.ndarray:
    """One fully dense row, ``filled_rows`` more rows with a single entry, the rest empty."""
    a = np.zeros((m, k), dtype=BF16)
    a[dense_row] = bf16_normal(rng, k)
    others = [i for i in range(m) if i != dense_row]
    for i in rng.choice(others, size=min(filled_rows, len(others)), replace=False):
        a[i, rng.integers(k)] = bf16_normal(rng, 1)[0]
    return a


def special_values(rng, shape, sparsity: float = 0.3) -> np.ndarray:
    """Normal values mixed with +-0 (dropped when encoded), +-inf, NaN, subnormals, huge and
    tiny normals (overflow, FTZ and cancellation paths)."""
    specials = np.array([0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x807F, 0x7F7F, 0xFF7F,
                         0x0080, 0x8080, 0x3F80, 0xBF80], dtype=np.uint16).view(BF16)
    x = bf16_normal(rng, shape)
    pick = rng.random(shape) < 0.15
    x[pick] = rng.choice(specials, size=int(pick.sum()))
    x[rng.random(shape) < sparsity] = 0
    return x


def random_graph(rng, nodes: int, p: float) -> scipy.sparse.csr_array:
    """An Erdos-Renyi directed graph's adjacency (row i lists the neighbours of node i)."""
    g = nx.gnp_random_graph(nodes, p, seed=int(rng.integers(1 << 31)), directed=True)
    return nx.to_scipy_sparse_array(g, nodelist=range(nodes), format="csr")


def star_graph(nodes: int, hub: int = 0) -> scipy.sparse.csr_array:
    """One node of huge degree (the hub lists every node), every other node isolated."""
    a = scipy.sparse.lil_array((nodes, nodes), dtype=np.float32)
    a[hub, :] = 1
    return a.tocsr()


def karate_adjacency() -> scipy.sparse.csr_array:
    """Zachary's karate club (networkx): 34 nodes, 156 adjacency entries, power-law-ish degrees."""
    return nx.to_scipy_sparse_array(nx.karate_club_graph(), format="csr")


def sparse_case(name: str, rng, m: int, k: int) -> np.ndarray:
    """The A operand of a named SMU test case (see :data:`SPARSE_CASES`)."""
    if name == "random":
        return unstructured(rng, m, k, float(rng.uniform(0.3, 0.95)))
    if name == "empty_rows":
        a = unstructured(rng, m, k, 0.5)
        a[rng.random(m) < 0.5] = 0
        a[0] = 0
        a[-1] = 0
        return a
    if name == "all_zero":
        return np.zeros((m, k), dtype=BF16)
    if name == "dense":
        return bf16_normal(rng, (m, k))
    if name == "skewed":
        return skewed(rng, m, k, dense_row=int(rng.integers(m)), filled_rows=1)
    if name == "2:4":
        return structured_2_4(rng, m, k)
    if name == "specials":
        return special_values(rng, (m, k))
    raise ValueError(f"Unknown case {name!r}; accepted: {', '.join(SPARSE_CASES)}")


SPARSE_CASES = ("random", "empty_rows", "all_zero", "dense", "skewed", "2:4", "specials")
