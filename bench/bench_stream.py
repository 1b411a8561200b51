"""Command-stream timing: the RTL's tile traces against :mod:`accelpool.sched.cost.stream`.

Runs the jobs of :mod:`accelpool.flow.stream_jobs` on Icarus (``configs/stream_pair.toml`` and
``configs/ce_pair.toml``) and prints: the NI occupancy of LOAD and STORE per length at 1
and 2 hops (measured from back-to-back commands: issue spacing - 1) beside
:mod:`accelpool.sched.cost.noc`; each tile's END against the contention-free rules and the
memory-tile packet server, for two tiles using the memory tile at once.
"""

from __future__ import annotations

from bench.common import print_table, write_results

from accelpool.flow.stream_jobs import (CE_JOBS, CE_PAIR, CONTENTION, LENGTHS, PAIR, PAIR_JOBS,
                                        RANDOM, SWEEP, afu_exec, ce_exec, measure)
from accelpool.sched.cost import noc
from accelpool.sched.cost.stream import soc_timelines
from accelpool.spec.isa import Opcode


def main() -> None:
    traces = measure("icarus")
    figures: dict[str, float] = {}

    rows = []
    for tile, hops in (("afu1", 1), ("afu2", 2)):
        t = traces["sweep"][tile]
        first = 1 if tile == "afu2" else 0
        for i, c in enumerate(SWEEP[tile][first:first + 2 * len(LENGTHS)]):
            n = c.fields["length"]
            kind = c.opcode.name.lower()
            got = t[first + i + 1] - t[first + i] - 1
            want = (noc.load_cycles if c.opcode is Opcode.LOAD else noc.store_cycles)(n, hops)
            rows.append((kind, hops, n, got, want))
            figures[f"{kind}_{n}B_{hops}hop_cycles"] = got
    print_table("NI occupancy per command (issue spacing - 1), measured vs sched.cost.noc",
                ["command", "hops", "bytes", "measured", "noc"], rows)

    exact = 0
    total = 0
    for cfg, jobs, ex in ((PAIR, {k: v for k, v in PAIR_JOBS.items()
                                  if k not in RANDOM and k not in CONTENTION
                                  and k != "concurrent"}, afu_exec),
                          (CE_PAIR, CE_JOBS, ce_exec)):
        for name, streams in jobs.items():
            pred = soc_timelines(streams, cfg, ex)
            for tile, m in traces[name].items():
                total += len(m)
                exact += sum(a == b for a, b in zip(m, pred[tile]))
    figures["contention_free_commands_exact_fraction"] = exact / total
    print(f"\ncontention-free jobs: {exact} of {total} command issue cycles predicted exactly")

    rows = []
    worst_shared = worst_alone = 0.0
    for name in [*CONTENTION, "concurrent", *RANDOM]:
        streams = PAIR_JOBS[name]
        shared = soc_timelines(streams, PAIR, afu_exec, memory_contention=True)
        alone = soc_timelines(streams, PAIR, afu_exec)
        for tile, m in traces[name].items():
            end = m[-1]
            es = 100 * (shared[tile][-1] - end) / end
            ea = 100 * (alone[tile][-1] - end) / end
            worst_shared = max(worst_shared, abs(es))
            worst_alone = max(worst_alone, abs(ea))
            rows.append((name, tile, end, shared[tile][-1], f"{es:+.2f}%", alone[tile][-1],
                         f"{ea:+.1f}%"))
            figures[f"{name}_{tile}_end_error_shared_pct"] = round(es, 3)
    print_table("Two tiles on the memory tile at once: END cycle",
                ["job", "tile", "measured", "packet server", "error", "no contention",
                 "error"], rows)
    figures["worst_end_error_shared_pct"] = round(worst_shared, 3)
    figures["worst_end_error_contention_free_pct"] = round(worst_alone, 3)
    write_results("stream", figures)


if __name__ == "__main__":
    main()
