"""The run as it happened: a schedule rebuilt from the tiles' hardware traces.

Every tile that runs a stream (the compute tiles, and the memory tile for its LAYOUT
micro-ops) records the cycle each command of its stream left ISSUE (the tile's trace
memory, :class:`accelpool.hw.tile.ComputeTile`, :class:`accelpool.hw.noc.memory_tile.MemoryTile`; read back as
:attr:`accelpool.tb.soc.SocResult.trace`).
The compiler records which commands belong to which micro-op (:attr:`accelpool.sched.codegen.TileStream.spans`),
so the measured timeline of a micro-op is

- **start**: the issue cycle of its first command (a WAIT or its first LOAD);
- **exec**: from its EXEC's issue to the issue of the next command (a STORE, which waits
  for the unit to finish);
- **finish**: one cycle after the issue of its last command (a STORE or a SIGNAL, whose own
  transfer time is not recorded: a few cycles for a SIGNAL, a STORE's flits and
  acknowledgement for a STORE); the tile's last micro-op finishes when END issues (END
  waits for the tile's transfers to drain). The issue of the *next* command is no finish:
  when that is a WAIT it issues only once its token arrives.

:func:`measured_schedule` returns it as a :class:`accelpool.sched.schedulers.Schedule`, so the Gantt
chart and the Perfetto trace of :mod:`accelpool.flow.report` draw measured and predicted timelines
the same way; :func:`comparison_png` puts both on one time axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping

from accelpool.flow.report import _op_label
from accelpool.sched.schedule import Schedule, Slot

__all__ = ["MeasuredOp", "measured_ops", "measured_schedule", "comparison_png",
           "comparison_title"]


@dataclass(frozen=True)
class MeasuredOp:
    """One micro-op's measured times (cycles from ``start``)."""

    op: Hashable
    unit: str
    start: int
    exec_start: int
    exec_end: int
    finish: int


def measured_ops(prog: Any, trace: Mapping[str, list[int]]) -> dict[Hashable, MeasuredOp]:
    """Per micro-op measured times from the tiles' traces (see the module docstring).

    Raises
    ------
    ValueError
        If a tile's trace is missing or shorter than its stream.
    """
    out: dict[Hashable, MeasuredOp] = {}
    for name, stream in prog.streams.items():
        if not stream.spans:           # no micro-op here (e.g. the memory tile's lone END)
            continue
        t = trace.get(name)
        if t is None or len(t) < len(stream.commands):
            raise ValueError(f"No complete trace for tile {name!r}: {len(t or [])} entries for "
                             f"{len(stream.commands)} commands")
        final = stream.spans[-1][3]
        for op_id, first, ex, last in stream.spans:
            end = t[last + 1] if last == final else t[last] + 1
            ex_end = t[ex + 1] if ex + 1 < len(t) else end
            out[op_id] = MeasuredOp(op_id, name, t[first], t[ex], ex_end, max(end, ex_end))
    return out


def measured_schedule(prog: Any, trace: Mapping[str, list[int]],
                      name: str | None = None) -> Schedule:
    """The measured run as a :class:`~accelpool.sched.schedulers.Schedule` (slots only)."""
    ops = measured_ops(prog, trace)
    sched = prog.schedule
    return Schedule(name or f"{sched.name} (measured)", sched.pool,
                    {n: Slot(m.unit, m.start, m.finish) for n, m in ops.items()})


def comparison_png(predicted: Schedule, measured: Schedule, path: str | Path, dag: Any = None,
                   title: str | None = None, measured_cycles: int | None = None) -> Path:
    """Predicted (top) and measured (bottom) Gantt charts on one time axis, to a PNG.

    The dashed line of each panel is its makespan (where its last micro-op ends), named in
    the legend, which sits right of the bars. ``measured_cycles`` is the run's cycle count
    as ``accelpool sim`` prints it: to ``all_done``, which rises two cycles after the last
    tile's END issued (the tile's done flag, then the SoC's registered ``all_done``), so
    two cycles after the measured makespan. The title compares the prediction with it as
    the text does (same figures, same error) and the measured panel names both."""
    import matplotlib.pyplot as plt

    fig = _comparison_figure(predicted, measured, dag, title, measured_cycles)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def comparison_title(predicted: Schedule, measured: Schedule,
                     measured_cycles: int | None = None) -> str:
    """The comparison chart's title: the figures ``accelpool sim`` prints.

    Parameters
    ----------
    predicted, measured : Schedule
        The schedule and the measured timeline.
    measured_cycles : int, optional
        The run's cycles to ``all_done``; without it, the measured makespan.

    Returns
    -------
    str
        ``"<scheduler> on <pool>: predicted P vs measured M cycles to all_done (+e.ee%)"``,
        the error as :attr:`accelpool.flow.simflow.SimReport.error_pct` shows it.
    """
    total = measured_cycles if measured_cycles else measured.makespan
    err = 100.0 * (predicted.makespan - total) / max(1, total)
    return (f"{predicted.name} on {predicted.pool.name}: predicted {predicted.makespan} vs "
            f"measured {total} cycles" + (" to all_done" if measured_cycles else "")
            + f" ({err:+.2f}%)")


def _comparison_figure(predicted: Schedule, measured: Schedule, dag: Any = None,
                       title: str | None = None, measured_cycles: int | None = None):
    """The figure :func:`comparison_png` saves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch


    units = [u for u in predicted.pool.units]
    span = max(predicted.makespan, measured.makespan, measured_cycles or 0, 1)
    cats = sorted({_op_label(dag, n)[0].split(".")[0] for n in predicted.slots})
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(cats)}
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(12, 1.0 * len(units) + 2.5))
    for ax, s, what in ((axes[0], predicted, "predicted"), (axes[1], measured, "measured")):
        for y, u in enumerate(units):
            for n, slot in s.slots.items():
                if slot.unit == u.name:
                    c = _op_label(dag, n)[0].split(".")[0]
                    ax.broken_barh([(slot.start, max(1, slot.finish - slot.start))],
                                   (y - 0.4, 0.8), facecolors=colour.get(c, "grey"),
                                   edgecolor="white", linewidth=0.3)
        ax.set_yticks(range(len(units)), [f"{u.name} ({u.kind.key})" for u in units])
        ax.invert_yaxis()
        ax.axvline(s.makespan, color="k", ls="--", lw=0.8)
    axes[0].set_title(f"predicted: makespan {predicted.makespan} cycles", fontsize="medium")
    axes[1].set_title(f"measured: last micro-op ends at cycle {measured.makespan}"
                      + (f", all_done at {measured_cycles}" if measured_cycles else ""),
                      fontsize="medium")
    axes[1].set_xlim(0, span * 1.02)
    axes[1].set_xlabel("cycles")
    handles = [Patch(color=colour[c], label=c) for c in cats]
    handles.append(Line2D([0], [0], color="k", ls="--", lw=0.8,
                          label="makespan\n(last micro-op ends)"))
    axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   fontsize="small", borderaxespad=0.0)
    fig.suptitle(title or comparison_title(predicted, measured, measured_cycles))
    fig.tight_layout()
    return fig
