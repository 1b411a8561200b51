"""Tests of the measured timeline built from the tiles' traces (:mod:`accelpool.flow.measured`).

The hardware side (the trace memory stamping every command) is tested in
``hw/test_controller.py``, ``hw/test_tile.py`` and ``hw/test_soc.py``; the end-to-end
runs check measured against predicted in ``tb/test_e2e.py``. Here a synthetic trace
checks the mapping from command indices to micro-ops.
"""

from __future__ import annotations

import pytest

from accelpool.spec import isa
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.cost.model import CostModel
from accelpool.sched.decompose import compile_model
from accelpool.flow.measured import comparison_png, measured_ops, measured_schedule
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


def _legend_outside_and_dashes_named(fig, legend_ax):
    """The legend lies right of every axes (it covers no bar) and names the dashed line."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = legend_ax.get_legend()
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert box.x0 >= ax.get_window_extent(renderer).x1
    assert box.x1 <= fig.bbox.x1 + 1                       # and inside the picture
    dashed = [h for h in legend.legend_handles if getattr(h, "get_linestyle", None)
              and h.get_linestyle() == "--"]
    assert len(dashed) == 1
    return dashed[0].get_label()


def test_comparison_chart_shows_the_cycles_the_text_prints(prog):
    """The title has the predicted makespan, the cycles to all_done and the error as
    ``accelpool sim`` prints them; the measured panel names the last micro-op's end
    and all_done apart; the legend sits outside the bars and names the dashed lines."""
    import matplotlib.pyplot as plt

    from accelpool.flow.measured import _comparison_figure
    from accelpool.flow.simflow import SimReport
    trace = {n: [10 * i + 3 for i in range(len(s.commands))] for n, s in prog.streams.items()}
    ms = measured_schedule(prog, trace)
    all_done = ms.makespan + 2
    report = SimReport("gcn", "default", "heft", "icarus", True, "", all_done,
                       prog.schedule.makespan, {}, 0, 1.0)
    fig = _comparison_figure(prog.schedule, ms, prog.graph.dag, measured_cycles=all_done)
    try:
        title = fig._suptitle.get_text()
        assert f"predicted {report.predicted_cycles} vs measured {report.measured_cycles} " \
               f"cycles to all_done ({report.error_pct:+.2f}%)" in title
        assert f"(error {report.error_pct:+.2f}%)" in report.text()
        top, bottom = fig.axes
        assert top.get_title() == f"predicted: makespan {prog.schedule.makespan} cycles"
        assert bottom.get_title() == (f"measured: last micro-op ends at cycle {ms.makespan}, "
                                      f"all_done at {all_done}")
        assert [ln.get_xdata()[0] for ax in (top, bottom) for ln in ax.get_lines()
                if ln.get_linestyle() == "--"] == [prog.schedule.makespan, ms.makespan]
        assert "makespan" in _legend_outside_and_dashes_named(fig, top)
    finally:
        plt.close(fig)


def test_gantt_chart_names_its_lower_bound_and_keeps_the_legend_off_the_bars():
    import matplotlib.pyplot as plt

    from accelpool.flow.report import _gantt_figure
    g = compile_model("gcn")
    s = heft(g.dag, POOL, CostModel(POOL))
    fig = _gantt_figure(s, g.dag, lower_bound=s.makespan // 2)
    try:
        label = _legend_outside_and_dashes_named(fig, fig.axes[0])
        assert label == f"lower bound ({s.makespan // 2})"
    finally:
        plt.close(fig)
