"""Sparse units: SMU cycles against sparsity beside the DMU, GNN cost model against the RTL.

SMU table: a 64 x 256 by 256 x 64 BF16 product (FP32 result) with A at 0, 50, 75, 90,
95 and 99% unstructured sparsity (uniformly random zeros) and at 2:4 structured sparsity,
measured on the Verilog of the default pool's SMU (64 lanes = 64 BF16 multipliers, the
default DMU's 8 x 8 MACs) on Verilator, each result checked bit-exact first. Beside it the
DMU's cycles for the same dense problem from its cycle formula :mod:`accelpool.sched.cost.dmu`
(``gemm_cycles``, reported exact against the DMU's RTL by ``hw/test_dmu.py`` and
``bench/bench_dense.py``), and the SMU cost model's prediction. The scratchpad is enlarged
to 256 KiB so that the dense case's CSR (64 KiB of entries), B and C fit at once.

GNN table: sum/mean/max aggregation on random graphs and on the karate club graph,
measured on the default GNN unit (8 lanes) in amaranth.sim, beside :mod:`accelpool.sched.cost.gnn`.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
from bench.common import print_table, write_results

from accelpool.hw.gnn import Gnn
from accelpool.hw.smu import Smu
from accelpool.sched.cost import dmu as dmu_cost, gnn as gnn_cost, smu as smu_cost
from accelpool.spec.config import load_config
from accelpool.spec.formats import encode_csr, layout_gnn
from accelpool.spec.golden.sparse import gnn_aggregate
from accelpool.spec.units.gnn import GnnFunc
from accelpool.tb.harness import run_cocotb
from accelpool.tb.sparse_patterns import bf16_normal, karate_adjacency, random_graph
from accelpool.tb.sparse_sim import run_sparse, sparse_top

SHAPE = (64, 256, 64)
CASES = [("0%", 0.0), ("50%", 0.5), ("75%", 0.75), ("90%", 0.9), ("95%", 0.95),
         ("99%", 0.99), ("2:4", "2:4")]
SPAD_BYTES = 262144
#: Targets of issue 4 (SMU cycles / DMU cycles).
TARGETS = {"0%": 1.5, "2:4": 0.55, "90%": 0.2}


def measure_smu(lanes: int) -> list[dict]:
    """SMU busy cycles of every case on the RTL (Verilator through the harness)."""
    params = {"lanes": lanes, "scratchpad_bytes": SPAD_BYTES}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cycles.json")
        run_cocotb(lambda: sparse_top(Smu(**params)), name="bench_smu", params=params,
                   env={"shape": SHAPE, "cases": CASES, "out": out},
                   test_module="bench.tb_sparse", sim="verilator")
        with open(out) as f:
            return json.load(f)


def gnn_errors(tile) -> tuple[list, dict]:
    """GNN cost model against amaranth.sim on random graphs and the karate club."""
    rng = np.random.default_rng(3)
    graphs = [("karate", karate_adjacency(), 16), ("karate", karate_adjacency(), 5)]
    graphs += [(f"gnp({n},{p})", random_graph(rng, n, p), f)
               for n, p, f in [(60, 0.05, 16), (40, 0.2, 8), (100, 0.02, 24)]]
    rows, figures = [], {}
    worst = 0.0
    for name, adj, f in graphs:
        csr = encode_csr(adj)
        x = bf16_normal(rng, (csr.shape[0], f))
        for func in GnnFunc:
            job = layout_gnn(csr, x, tile["lanes"])
            run = run_sparse(Gnn(lanes=tile["lanes"], scratchpad_bytes=65536), job, func)
            assert (run.result == gnn_aggregate(csr, x, func.name.lower())).all()
            model = gnn_cost.cycles(tile, nodes=csr.shape[0], features=f, degrees=csr.row_nnz)
            est = gnn_cost.cycles(tile, nodes=csr.shape[0], features=f, edges=csr.nnz)
            err = abs(model - run.cycles) / run.cycles
            est_err = abs(est - run.cycles) / run.cycles
            worst = max(worst, err)
            rows.append((name, csr.nnz, f, func.name.lower(), run.cycles, model,
                         f"{100 * err:.2f}%", est, f"{100 * est_err:.2f}%"))
            figures[f"gnn_cycles_{name}_F{f}_{func.name.lower()}"] = run.cycles
            figures[f"gnn_edges_only_estimate_error_{name}_F{f}"] = round(est_err, 4)
    figures["gnn_model_max_rel_error"] = worst
    return rows, figures


def main() -> None:
    cfg = load_config()
    smu, dmu, gnn = cfg.tile("smu0"), cfg.tile("dmu0"), cfg.tile("gnn0")
    m, k, n = SHAPE
    dmu_cycles = dmu_cost.cycles(dmu, m=m, n=n, k=k)
    figures: dict[str, float] = {"dmu_cycles_64x256x64_formula": dmu_cycles,
                                 "smu_lanes": smu["lanes"],
                                 "dmu_macs": dmu["rows"] * dmu["cols"]}
    rows = []
    worst_smu = 0
    for r in measure_smu(smu["lanes"]):
        model = smu_cost.cycles(smu, m=m, n=n, k=k, row_nnz=r["row_nnz"])
        ratio = r["cycles"] / dmu_cycles
        worst_smu = max(worst_smu, abs(model - r["cycles"]))
        target = TARGETS.get(r["name"])
        rows.append((r["name"], r["nnz"], r["cycles"], model, dmu_cycles, f"{ratio:.3f}",
                     f"<= {target}" if target else "", "ok" if not target or ratio <= target
                     else "MISSED"))
        key = r["name"].replace("%", "pct").replace(":", "_")
        figures[f"smu_cycles_{key}"] = r["cycles"]
        figures[f"smu_over_dmu_{key}"] = round(ratio, 4)
    figures["smu_model_max_abs_error_cycles"] = worst_smu
    print_table(f"SMU ({smu['lanes']} lanes) vs DMU ({dmu['rows']}x{dmu['cols']}, formula) on "
                f"{m}x{k} @ {k}x{n}", ["sparsity", "nnz", "smu", "smu model", "dmu",
                                        "smu/dmu", "target", ""], rows)
    grows, gfig = gnn_errors(gnn)
    figures.update(gfig)
    print_table(f"GNN ({gnn['lanes']} lanes): cost model vs RTL (amaranth.sim)",
                ["graph", "edges", "F", "op", "rtl", "model", "err", "edges-only est", "err"],
                grows)
    write_results("sparse", figures)


if __name__ == "__main__":
    main()
