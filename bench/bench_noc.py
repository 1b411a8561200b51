"""NoC benchmark: zero-load latency per hop count, latency against offered load on a 4x4
mesh under uniform random traffic (1-flit and 4-flit packets), saturation throughput, and
the curve as a PNG (``bench/results/noc_latency.png``).

Zero-load latency is measured exactly in amaranth.sim (one packet at a time); the load
sweep runs the HDL traffic generators and checkers (:class:`accelpool.hw.noc.traffic.TrafficMesh`)
on Verilator. Goals (issue 6): zero-load latency <= hops + 3; saturation >= 0.4
flits/node/cycle.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from bench.common import RESULTS, print_table, write_results

from accelpool.hw.noc.traffic import TrafficMesh
from accelpool.sched.cost import noc
from accelpool.spec.config import MeshConfig
from accelpool.tb.harness import run_cocotb
from accelpool.tb.noc_sim import check_delivery, run_traffic

MESH = MeshConfig(cols=4, rows=4, flit_bits=64, buffer_flits=4)
LOADS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 1.0]
PAYLOADS = (0, 3)   # 1-flit and 4-flit packets
SOURCE_CYCLES = 1   # a generated packet enters its source queue, readable the next cycle


def zero_load() -> list[tuple[int, int, int]]:
    """(hops, 1-flit head latency, 4-flit tail latency) from (0, 0) to one node per hop count."""
    dests = [(0, 0), (1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3)]
    rows = []
    for payload in PAYLOADS:
        for d in dests:
            packets = [((0, 0), d, payload)]
            received, lat = run_traffic(MESH, packets, stall=0.0, idle=0.0)
            check_delivery(MESH, packets, received)
            rows.append((noc.hops((0, 0), d), payload + 1, lat[(0, 0), d, 0]))
    return rows


def load_sweep() -> list[dict]:

    points = [[p, load] for p in PAYLOADS for load in LOADS]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        run_cocotb(TrafficMesh(MESH), name="noc_traffic",
                   params={"cols": MESH.cols, "rows": MESH.rows, "flit_bits": MESH.flit_bits,
                           "buffer_flits": MESH.buffer_flits},
                   test_module="bench.tb_noc", sim="verilator",
                   env={"points": points, "warmup": 1000, "measure": 4000, "out": str(out)})
        return json.loads(out.read_text())


def plot(sweep: list[dict], saturation: dict[int, float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hops = noc.uniform_mean_hops(MESH.cols, MESH.rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for payload, colour in zip(PAYLOADS, ("tab:blue", "tab:orange")):
        pts = [r for r in sweep if r["payload_flits"] == payload]
        xs = [r["accepted"] for r in pts]
        ax.plot([r["offered"] for r in pts], [r["latency"] for r in pts], "o-", color=colour,
                label=f"{payload + 1}-flit packets (RTL)")
        model_x = [x for x in LOADS if x < saturation[payload]]
        ax.plot(model_x, [noc.contention_latency(hops, payload + 1, x, saturation[payload],
                                                 SOURCE_CYCLES)
                          for x in model_x], "--", color=colour, alpha=0.6,
                label=f"{payload + 1}-flit model (M/D/1)")
        ax.axvline(saturation[payload], color=colour, linestyle=":", alpha=0.6)
        del xs
    ax.set_xlabel("offered load (flits/node/cycle)")
    ax.set_ylabel("mean latency, creation to head ejection (cycles)")
    ax.set_title("4x4 mesh, uniform random, XY wormhole, 4-flit buffers")
    ax.set_ylim(0, 60)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path.relative_to(RESULTS.parent.parent)}")


def main() -> None:
    figures: dict[str, float] = {}
    zl = zero_load()
    print_table("Zero-load latency, 4x4 mesh (cycles, injection to ejection of the head; "
                "goal <= hops + 3)", ["hops", "packet flits", "head latency", "hops + 3"],
                [(h, f, lat, h + 3) for h, f, lat in zl])
    for h, f, lat in zl:
        figures[f"zero_load_latency_{f}flit_{h}hops"] = lat
    figures["zero_load_latency_minus_hops_max"] = max(lat - h for h, _, lat in zl)

    sweep = load_sweep()
    saturation = {}
    for payload in PAYLOADS:
        pts = [r for r in sweep if r["payload_flits"] == payload]
        saturation[payload] = max(r["accepted"] for r in pts)
        figures[f"saturation_{payload + 1}flit_flits_per_node_cycle"] = saturation[payload]
    hops = noc.uniform_mean_hops(MESH.cols, MESH.rows)
    rows = []
    for r in sweep:
        f = r["payload_flits"] + 1
        model = noc.contention_latency(hops, f, r["offered"], saturation[r["payload_flits"]],
                                       SOURCE_CYCLES)
        rows.append((f, r["offered"], r["offered_measured"], r["accepted"], r["latency"],
                     model if model != float("inf") else "sat"))
        key = f"{f}flit_load{r['offered']:.2f}"
        figures[f"latency_{key}"] = r["latency"]
        figures[f"accepted_{key}"] = r["accepted"]
    print_table("Latency vs offered load, 4x4 uniform random (Verilator, HDL generators)",
                ["flits", "offered", "offered (measured)", "accepted", "latency", "model"], rows)
    print_table("Saturation throughput (flits/node/cycle; goal >= 0.4; ideal bisection "
                f"bound {noc.uniform_channel_bound(4, 4):.2f})", ["packet flits", "saturation"],
                [(p + 1, saturation[p]) for p in PAYLOADS])
    write_results("noc", figures)
    plot(sweep, saturation, RESULTS / "noc_latency.png")


if __name__ == "__main__":
    main()
