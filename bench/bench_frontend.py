"""Frontend benchmark: time to import and decompose a model of about 100k micro-ops.

The model is a two-layer MLP built with onnx.helper (x[256,1024] -> Gemm 1024 -> Relu ->
Gemm 512): on the default pool (8x8 DMU tiles, K steps of 64) it yields about 98k
micro-ops. Goal: decomposition under 10 s. Its 2 MiB of weights exceed the default pool's
1 MiB memory tile and its micro-ops the default budget, so it runs on the default pool with a
16 MiB memory tile and a budget that takes it (:func:`big_pool`, :data:`BUDGET`). Both wall-clock and CPU (process) time are
reported: on a shared machine the wall time mostly measures the other processes.
"""

from __future__ import annotations

import time
import tomllib

import numpy as np
import onnx
from bench.common import print_table, write_results
from onnx import TensorProto, helper, numpy_helper

from accelpool.sched.decompose import DecomposeOptions, TilePlan, decompose
from accelpool.sched.frontend import import_model
from accelpool.sched.ir import Pipeline
from accelpool.spec.config import DEFAULT_CONFIG, parse_config


def big_mlp(m: int = 256, k: int = 1024, h: int = 1024, n: int = 512) -> onnx.ModelProto:
    """x[m,k] -> Gemm(h) -> Relu -> Gemm(n), random weights with a fixed seed."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((k, h)) / np.sqrt(k)).astype(np.float32), "W1"),
             numpy_helper.from_array(np.zeros(h, np.float32), "b1"),
             numpy_helper.from_array((rng.standard_normal((h, n)) / np.sqrt(h)).astype(np.float32), "W2")]
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="relu"),
             helper.make_node("MatMul", ["a", "W2"], ["y"], name="fc2")]
    g = helper.make_graph(nodes, "big_mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])


#: Micro-op budget of the benchmark's decomposition (big_mlp yields about 98k).
BUDGET = 200_000


def big_pool():
    """The default pool with a 16 MiB memory tile."""

    doc = tomllib.loads(DEFAULT_CONFIG.read_text())
    for t in doc["tile"]:
        if t["kind"] == "memory":
            t["bytes"] = 1 << 24
    return parse_config(doc, f"{DEFAULT_CONFIG.name} with a 16 MiB memory tile")


def main() -> None:

    pool = big_pool()
    options = DecomposeOptions(max_micro_ops=BUDGET)
    model = big_mlp()
    t0 = time.perf_counter()
    ops = import_model(model, pool, name="big_mlp")
    t_import = time.perf_counter() - t0
    timings: dict[str, float] = {}

    def timed_dump(name, g):  # records when each pass finished (verification included)
        timings[name] = time.perf_counter()

    t1, c1 = time.perf_counter(), time.process_time()
    tiled = decompose(ops, pool, options, dump=timed_dump)
    t_decompose, c_decompose = time.perf_counter() - t1, time.process_time() - c1
    t2, c2 = time.perf_counter(), time.process_time()
    tiled_nv = decompose(ops, pool, options, verify_each=False)
    t_noverify, c_noverify = time.perf_counter() - t2, time.process_time() - c2
    n = len(tiled)
    assert len(tiled_nv) == n
    rows = [("import (onnx -> operator graph), s", f"{t_import:.2f}"),
            ("decompose + verify after each pass, s (wall)", f"{t_decompose:.2f}"),
            ("decompose + verify after each pass, s (CPU)", f"{c_decompose:.2f}"),
            ("decompose without verification, s (wall)", f"{t_noverify:.2f}"),
            ("decompose without verification, s (CPU)", f"{c_noverify:.2f}"),
            ("micro-ops", n),
            ("micro-ops per second (with verification)", f"{n / t_decompose:.0f}")]
    print_table(f"frontend: big_mlp on pool {pool.name!r} (goal: decomposition < 10 s)",
                ("what", "value"), rows)
    write_results("frontend", {"micro_ops": n, "import_s": t_import,
                               "decompose_verified_s": t_decompose,
                               "decompose_verified_cpu_s": c_decompose,
                               "decompose_unverified_s": t_noverify,
                               "decompose_unverified_cpu_s": c_noverify,
                               "micro_ops_per_s": n / t_decompose})


if __name__ == "__main__":
    main()
