"""Tests of the measured timeline built from the tiles' traces (:mod:`accelpool.sched.measured`).

The hardware side (the trace memory stamping every command) is tested in
``hw/test_controller.py``, ``hw/test_tile.py`` and ``hw/test_soc.py``; the end-to-end
runs check measured against predicted in ``tb/test_e2e.py``. Here a synthetic trace
checks the mapping from command indices to micro-ops.
"""

from __future__ import annotations

import pytest

from accelpool.hw import isa
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.cost.model import CostModel
from accelpool.sched.decompose import compile_model
from accelpool.sched.measured import comparison_png, measured_ops, measured_schedule
from accelpool.sched.pool import Pool
from accelpool.sched.schedulers import heft

POOL = Pool.from_config("default")


@pytest.fixture(scope="module")
def prog():
    g = compile_model("gcn")
    return compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)))


def test_spans_cover_every_command_but_end_once(prog):
    for name, s in prog.streams.items():
        covered = [i for _, a, _, b in s.spans for i in range(a, b + 1)]
        assert covered == list(range(len(s.commands) - 1)), name
        for op, a, ex, b in s.spans:
            assert a <= ex <= b and s.commands[ex].opcode is isa.Opcode.EXEC
            assert prog.placement[op] == name
    assert sorted(op for s in prog.streams.values() for op, *_ in s.spans) == \
        sorted(prog.graph.dag.nodes)


def test_measured_times_follow_the_trace(prog, tmp_path):
    # a synthetic trace: command i issues at 10 * i + 3 on every tile
    trace = {n: [10 * i + 3 for i in range(len(s.commands))] for n, s in prog.streams.items()}
    ops = measured_ops(prog, trace)
    assert set(ops) == set(prog.graph.dag.nodes)
    for name, s in prog.streams.items():
        for k, (op, a, ex, b) in enumerate(s.spans):
            m = ops[op]
            assert (m.unit, m.start, m.exec_start, m.exec_end) == \
                (name, 10 * a + 3, 10 * ex + 3, 10 * (ex + 1) + 3)
            # the last micro-op of a tile finishes when END issues, the others one cycle
            # after their last command issued
            last = k == len(s.spans) - 1
            assert m.finish == (10 * (b + 1) + 3 if last else max(10 * b + 4, m.exec_end))
    ms = measured_schedule(prog, trace)
    assert ms.makespan == max(10 * (len(s.commands) - 1) + 3 for s in prog.streams.values()
                              if s.spans)
    png = comparison_png(prog.schedule, ms, tmp_path / "g.png", prog.graph.dag)
    assert png.stat().st_size > 10_000


def test_incomplete_trace_is_refused(prog):
    name = next(n for n, s in prog.streams.items() if s.spans)
    with pytest.raises(ValueError, match=f"No complete trace for tile '{name}'"):
        measured_ops(prog, {name: [0, 1]})
