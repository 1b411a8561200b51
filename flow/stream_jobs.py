"""Command streams that measure the tiles' timing in RTL (``sched/cost/test_stream.py``,
``bench/bench_stream.py``).

Two small SoCs: ``configs/stream_pair.toml`` (memory + AFUs at 1 and 2 hops; the AFU's
EXEC time is exact, :mod:`accelpool.sched.cost.afu`) and ``configs/ce_pair.toml`` (memory + two CEs
2 hops apart). :data:`PAIR_JOBS` and :data:`CE_JOBS` map a job name to its streams
(tile -> list of :class:`accelpool.spec.isa.Command`); :func:`measure` runs all of them, one simulator
process per SoC, and returns every tile's trace.
"""

from __future__ import annotations

import random

from accelpool.flow.simflow import image_runs
from accelpool.sched import models
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.cost import afu as afu_cost, ce as ce_cost
from accelpool.sched.cost.model import CostModel
from accelpool.sched.decompose import compile_model
from accelpool.sched.pool import Pool
from accelpool.sched.schedulers import SCHEDULERS
from accelpool.spec import isa
from accelpool.spec.ce_layout import ConvShape
from accelpool.spec.config import CONFIG_DIR, UnitKind, load_config
from accelpool.spec.units.afu import AfuDType, AfuFunc
from accelpool.spec.units.ce import CeFunc
from accelpool.tb.soc import SocJob, build_soc, run_jobs

__all__ = ["PAIR", "CE_PAIR", "LENGTHS", "SWEEP", "OVERLAP", "GROUPS_1", "GROUPS_2",
           "GROUPS", "WAITS", "CONCURRENT", "RANDOM", "CONTENTION", "PAIR_JOBS", "CE_JOB",
           "CE_CONTENTION", "CE_JOBS", "afu_exec", "ce_exec", "group", "measure", "relu",
           "mem_load", "mem_store", "job_of", "compiled_model"]

PAIR = load_config(CONFIG_DIR / "stream_pair.toml")
CE_PAIR = load_config(CONFIG_DIR / "ce_pair.toml")
MEM = dict(x=0, y=0)
#: Flit multiples from one flit to 4 KiB, around the 64-byte packet size.
LENGTHS = [8, 16, 24, 56, 64, 72, 128, 136, 200, 256, 512, 1000, 4096]


def relu(count, a=0, out=8192):
    return isa.exec_cmd(UnitKind.AFU, AfuFunc.RELU, a_addr=a, out_addr=out, count=count,
                        dtype=AfuDType.BF16)


def mem_load(n, spad=0, remote=0):
    return isa.load(spad_addr=spad, remote_addr=remote, length=n, **MEM)


def mem_store(n, spad=0, remote=8192):
    return isa.store(spad_addr=spad, remote_addr=remote, length=n, **MEM)


def afu_exec(tile, cmd):
    f = cmd.fields
    return afu_cost.cycles(tile, func=f["func"], **f["args"])


def ce_exec(tile, cmd):
    return ce_cost.cycles(tile, **cmd.fields["args"])


def sweep():
    return [mem_load(n) for n in LENGTHS] + [mem_store(n) for n in LENGTHS]


# afu1 (1 hop) sweeps, then lets afu2 (2 hops) sweep: no contention between them.
SWEEP = {"afu1": sweep() + [isa.signal(x=1, y=1, token=2), isa.end()],
         "afu2": [isa.wait(token=2)] + sweep() + [isa.end()]}

# LOADs overlapping EXECs shorter and longer than them, EXEC waiting for the NI, STORE and
# SIGNAL waiting for the unit, NOP.
OVERLAP = [
    mem_load(256), relu(400),
    mem_load(64, 4096), mem_load(64, 4096),      # during the EXEC: only the NI limits them
    relu(16),                             # waits for the unit
    mem_load(2048, 4096),                     # longer than the EXEC before it
    relu(64),                             # waits for the NI
    mem_store(128, 8192, 16384),              # waits for the unit
    relu(2000),
    isa.signal(x=0, y=0, token=1),         # waits for the unit
    mem_store(8, 8192, 16384), isa.nop(), isa.end(),
]


def group(loads, count, stores, fence, signal_to):
    """One micro-op as sched.codegen lowers it (rows of LOADs, EXEC, rows of STOREs, the
    fence LOAD, a SIGNAL per consumer)."""
    cmds = [mem_load(n, 64 * i) for i, n in enumerate(loads)]
    cmds.append(relu(count, 0, 8192))
    cmds += [mem_store(n, 8192 + 64 * i, 16384 + 64 * i) for i, n in enumerate(stores)]
    if fence:
        cmds.append(mem_load(fence, 12288, 16384))
    cmds += [isa.signal(x=x, y=y, token=t) for x, y, t in signal_to]
    return cmds


GROUPS_1 = [
    group([64, 64, 64, 64], 128, [64, 64, 64, 64], 32, [(1, 1, 1)]),
    group([1024], 512, [256, 256], 32, [(1, 1, 1)]),
    group([8, 8], 8, [8], 0, [(1, 1, 1), (0, 0, 0)]),
]
GROUPS_2 = [
    [isa.wait(token=1)] + group([200, 136], 100, [72], 0, []),
    [isa.wait(token=1)] + group([64] * 6, 192, [128, 128, 128], 32, []),
    [isa.wait(token=1)] + group([512], 256, [512], 0, [(0, 0, 2)]),
]
# afu1 runs its groups alone; then afu2 runs WAIT-first groups, signalled by afu1 after
# EXEC-only work (no memory traffic on afu1's side: no contention).
GROUPS = {"afu1": [c for g in GROUPS_1 for c in g] + [isa.end()]}
WAITS = {"afu1": [c for n in (300, 40, 900) for c in (relu(n), isa.signal(x=1, y=1, token=1))]
         + [isa.end()],
         "afu2": [c for g in GROUPS_2 for c in g] + [isa.end()]}

# Both tiles at once, codegen-like: afu2's LOADs and STOREs overlap afu1's.
CONCURRENT = {"afu1": GROUPS["afu1"], "afu2": WAITS["afu2"]}


def _random_pair(seed):
    """Random micro-op groups on both tiles at once; afu1 signals afu2 after each of its
    groups, afu2 waits for one signal before each of its own (fewer groups than afu1)."""
    rng = random.Random(seed)

    def groups(n, signal):
        out = []
        for _ in range(n):
            loads = [8 * rng.randint(1, 128) for _ in range(rng.randint(1, 4))]
            stores = [8 * rng.randint(1, 64) for _ in range(rng.randint(1, 3))]
            g = group(loads, 4 * rng.randint(1, 300), stores, rng.choice([0, 32]),
                       [(1, 1, 1)] if signal else [])
            out.append(g if signal else [isa.wait(token=1)] + g)
        return [c for g in out for c in g] + [isa.end()]
    n = rng.randint(2, 5)
    return {"afu1": groups(n, True), "afu2": groups(rng.randint(1, n), False)}


RANDOM = {f"random{i}": _random_pair(i) for i in range(8)}

# Two tiles on the memory tile at once.
CONTENTION = {
    "load_load_4k": ([mem_load(4096)], [mem_load(4096)]),
    "load_load_512": ([mem_load(512)], [mem_load(512)]),
    "load_4k_load_512": ([mem_load(4096)], [mem_load(512)]),
    "store_store_4k": ([mem_store(4096)], [mem_store(4096)]),
    "load_store_4k": ([mem_load(4096)], [mem_store(4096)]),
    "loads_8x256": ([mem_load(256)] * 8, [mem_load(256)] * 8),
    "staggered": ([mem_load(2048)], [isa.nop()] * 10 + [mem_load(2048)]),
}

PAIR_JOBS = {"sweep": SWEEP, "overlap1": {"afu1": OVERLAP}, "overlap2": {"afu2": OVERLAP},
             "groups": GROUPS, "waits": WAITS, "concurrent": CONCURRENT, **RANDOM}
PAIR_JOBS.update({k: {"afu1": a + [isa.end()], "afu2": b + [isa.end()]}
                  for k, (a, b) in CONTENTION.items()})

SHAPE = ConvShape(c_in=8, c_out=8, height=6, width=6, kernel_h=3, kernel_w=3, stride=1,
                  pads=(1, 1, 1, 1))
_OUT = SHAPE.output_bytes(8, False)
# ce0 (1, 0) and ce1 (0, 1): 2 hops apart, each 1 hop from the memory.
CE_JOB = {
    "ce0": [mem_load(288), mem_load(576, 0x1000, 0x1000),
            isa.exec_cmd(UnitKind.CE, CeFunc.CONV,
                         **SHAPE.exec_args(in_addr=0, w_addr=0x1000, out_addr=0x2000)),
            mem_load(64, 0x3000, 0x1000),                       # during the convolution
            mem_store(_OUT, 0x2000, 0x4000),
            isa.store(spad_addr=0x2000, x=0, y=1, remote_addr=0, length=_OUT),  # 2 hops
            isa.signal(x=0, y=1, token=0), isa.wait(token=1), isa.end()],
    "ce1": [isa.wait(token=0), isa.signal(x=1, y=0, token=1), mem_load(64), isa.end()],
}


def job_of(streams, timeout=200_000):
    return SocJob(streams={k: isa.assemble(v) for k, v in streams.items()},
                  timeout_cycles=timeout)

# Both CEs on the memory tile at once, from its two router ports (east and south).
CE_CONTENTION = {"ce0": [mem_load(2048), mem_store(1024), mem_load(512), mem_load(64),
                         isa.end()],
                 "ce1": [mem_load(2048), mem_store(1024), mem_store(512), mem_load(64),
                         isa.end()]}
CE_JOBS = {"ce": CE_JOB, "ce_contention": CE_CONTENTION}


def measure(sim: str = "icarus") -> dict[str, dict[str, list[int]]]:
    """Run every job of :data:`PAIR_JOBS` and :data:`CE_JOBS` on ``sim``; returns
    ``{job: {tile: trace}}``. Raises AssertionError naming a job that did not finish."""
    out = {}
    for cfg, jobs in ((PAIR, PAIR_JOBS), (CE_PAIR, CE_JOBS)):
        results = run_jobs(build_soc(cfg, sim), [job_of(s) for s in jobs.values()])
        for name, res in zip(jobs, results):
            if res.status != "ok":
                raise AssertionError(f"{name}: {res.message}")
            out[name] = res.trace
    return out


def compiled_model(model: str, cfg, scheduler: str = "heft", seed: int = 0):
    """``(schedule, program, job)`` of a built-in model on pool ``cfg`` as ``accelpool sim``
    compiles it (:mod:`accelpool.flow.simflow`: no fence), the job ready for :func:`accelpool.tb.soc.run_job`."""

    graph = compile_model(model, cfg)
    inputs = models.example_inputs(models.build(model), seed=seed)
    pool = Pool(cfg)
    schedule = SCHEDULERS[scheduler](graph.dag, pool, CostModel(pool))
    prog = compile_schedule(graph, schedule, inputs, fence=False)
    job = SocJob(streams={t: s.binary for t, s in prog.streams.items()},
                 image=image_runs(prog.image.data, prog.image.initialized),
                 timeout_cycles=5_000_000)
    return schedule, prog, job
