"""Built-in models end to end on the default SoC's RTL (``configs/default.toml``).

Every model codegen lowers completely (mlp, gcn, transformer) is compiled, scheduled,
loaded into the simulated SoC, run to ``all_done`` and read back
(:func:`sched.simflow.simulate`, what ``accelpool sim`` runs). The outputs must equal the
golden run in the units' arithmetic bit for bit; the scheduler's predicted makespan must be
within 10% of the measured cycles; the measured timeline (tiles' traces) must show every
EXEC taking exactly the cycles the unit's formula gives; every scheduler must produce the
same outputs (the schedule changes timing, never results).

Verilator runs every model; Icarus (much slower on the 8-tile SoC) the MLP and the GCN, in
``make regress``. The models codegen does not lower yet stop before the build with the
reason (``sched/test_simflow.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from sched.cost.model import CostModel
from sched.measured import measured_ops
from sched.simflow import simulate

LOWERED = ("mlp", "gcn", "transformer")
#: The predicted makespan must be within this fraction of the measured cycles.
TOLERANCE = 0.10

_REPORTS: dict = {}


def run(model: str, sim: str = "verilator", scheduler: str = "heft"):
    key = (model, sim, scheduler)
    if key not in _REPORTS:
        _REPORTS[key] = simulate(model, "default", sim=sim, scheduler=scheduler,
                                 progress=False)
    return _REPORTS[key]


def _check(report) -> None:
    assert report.outputs_ok, report.mismatch
    assert abs(report.measured_cycles - report.predicted_cycles) <= \
        TOLERANCE * report.measured_cycles, report.text()
    # every EXEC, as the hardware trace saw it, took its unit's formula cycles (+1: the
    # STORE after it issues the cycle after the unit's busy falls)
    prog, trace = report.program, report.trace
    cost = CostModel(prog.pool)
    for n, m in measured_ops(prog, trace).items():
        unit = prog.pool.unit(m.unit)
        want = cost.exec_cycles(prog.graph.op(n), unit)
        assert m.exec_end - m.exec_start == want + 1, (n, m, want)


@pytest.mark.parametrize("model", LOWERED)
def test_model_on_verilator(model):
    _check(run(model))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "gcn"])
def test_model_on_icarus(model):
    report = run(model, "icarus")
    _check(report)
    # the two simulators agree cycle for cycle
    assert report.measured_cycles == run(model).measured_cycles


def test_every_scheduler_gives_identical_outputs():
    from sched.schedulers import SCHEDULERS
    names = [s for s in SCHEDULERS if s not in ("dense_only", "dense_sparse")]
    assert {"greedy", "heft"} <= set(names)
    reports = {s: run("gcn", scheduler=s) for s in names}
    first = reports[names[0]]
    for s, r in reports.items():
        assert r.outputs_ok, (s, r.mismatch)
        for k, v in first.outputs.items():
            np.testing.assert_array_equal(r.outputs[k].view(np.uint8), v.view(np.uint8),
                                          err_msg=f"{s} vs {names[0]}: {k}")
    # and the schedules really differ in timing
    assert len({r.measured_cycles for r in reports.values()}) > 1
