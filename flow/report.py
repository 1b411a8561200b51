"""Schedule reports: a Gantt chart PNG and a Perfetto/Chrome trace JSON.

The trace follows the Chrome Trace Event format (``{"traceEvents": [...]}``, loadable in
https://ui.perfetto.dev and chrome://tracing): process 1 is the pool with one thread per
unit and one complete event (``"ph": "X"``) per micro-op; process 2 is the NoC with one
thread per source unit and one complete event per transfer, and flow events (``"s"`` /
``"f"``) tie each transfer to its producer and consumer. Times are microseconds at the
pool's clock (``ts = cycles / clock_mhz``); every event also carries its cycles in
``args``. :func:`write_traces` puts several timelines of one graph (``accelpool sim``'s
predicted and measured ones) in one file, one process per timeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Hashable, Mapping

from accelpool.sched.schedule import Schedule

__all__ = ["chrome_trace", "write_trace", "write_traces", "gantt_png", "POOL_PID", "NOC_PID",
           "NOC_TID_OFFSET"]

#: Process ids of a timeline's units and of its NoC transfers in a trace.
POOL_PID = 1
NOC_PID = 2
#: In :func:`write_traces`, a timeline's NoC threads are its units' thread ids plus this.
NOC_TID_OFFSET = 1000


def _op_label(dag: Any, n: Hashable) -> tuple[str, dict]:
    if dag is None or n not in dag.nodes or "op" not in dag.nodes[n]:
        return "op", {}
    op = dag.nodes[n]["op"]
    cat = op.op.value + (f".{op.func.value}" if getattr(op, "func", None) is not None else "")
    args = {"dtype": op.dtype.key, "shape": dict(op.shape), "flops": op.flops,
            "sparsity": op.sparsity, "source": op.source}
    return cat, args


def chrome_trace(schedule: Schedule, dag: Any = None) -> dict:
    """The schedule as a Chrome/Perfetto trace document (a dict ready for ``json.dump``)."""
    mhz = schedule.pool.config.clock_mhz
    us = lambda cycles: cycles / mhz  # noqa: E731
    units = {u.name: u for u in schedule.pool.units}
    tid = {name: u.index + 1 for name, u in units.items()}
    pool_pid, noc_pid = POOL_PID, NOC_PID
    ev: list[dict] = [
        {"ph": "M", "pid": pool_pid, "name": "process_name",
         "args": {"name": f"pool {schedule.pool.name} ({schedule.name})"}},
        {"ph": "M", "pid": noc_pid, "name": "process_name",
         "args": {"name": "NoC transfers"}},
        {"ph": "M", "pid": pool_pid, "name": "process_sort_index",
         "args": {"sort_index": pool_pid}},
        {"ph": "M", "pid": noc_pid, "name": "process_sort_index",
         "args": {"sort_index": noc_pid}},
    ]
    for name, u in units.items():
        ev.append({"ph": "M", "pid": pool_pid, "tid": tid[name], "name": "thread_name",
                   "args": {"name": f"{name} ({u.kind.key} at {u.at[0]},{u.at[1]})"}})
        ev.append({"ph": "M", "pid": pool_pid, "tid": tid[name], "name": "thread_sort_index",
                   "args": {"sort_index": tid[name]}})
        ev.append({"ph": "M", "pid": noc_pid, "tid": tid[name], "name": "thread_name",
                   "args": {"name": f"from {name}"}})
    for n, s in schedule.slots.items():
        cat, args = _op_label(dag, n)
        ev.append({"ph": "X", "pid": pool_pid, "tid": tid[s.unit], "name": str(n), "cat": cat,
                   "ts": us(s.start), "dur": us(s.finish - s.start),
                   "args": {"start_cycle": s.start, "finish_cycle": s.finish, **args}})
    for k, t in enumerate(schedule.transfers):
        ev.append({"ph": "X", "pid": noc_pid, "tid": tid[t.src_unit],
                   "name": f"{t.src} -> {t.dst}", "cat": "transfer", "ts": us(t.start),
                   "dur": us(t.arrive - t.start),
                   "args": {"bytes": t.nbytes, "to": t.dst_unit, "start_cycle": t.start,
                            "arrive_cycle": t.arrive}})
        ev.append({"ph": "s", "pid": pool_pid, "tid": tid[t.src_unit], "id": k, "name": "data",
                   "cat": "flow", "ts": us(t.start)})
        ev.append({"ph": "f", "pid": pool_pid, "tid": tid[t.dst_unit], "id": k, "name": "data",
                   "cat": "flow", "bp": "e", "ts": us(max(t.arrive, schedule.slots[t.dst].start))})
    return {"traceEvents": ev, "displayTimeUnit": "ns",
            "otherData": {"scheduler": schedule.name, "pool": schedule.pool.name,
                          "makespan_cycles": schedule.makespan, "clock_mhz": mhz}}


def write_trace(schedule: Schedule, path: str | Path, dag: Any = None) -> Path:
    """Write :func:`chrome_trace` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chrome_trace(schedule, dag)))
    return path


def write_traces(timelines: Mapping[str, Schedule], path: str | Path, dag: Any = None) -> Path:
    """Write several timelines of one graph into one trace file.

    Parameters
    ----------
    timelines : mapping of str to Schedule
        ``{"predicted": s, "measured": m}``: each becomes one process named after its key,
        with a thread per unit (sorted as the pool lists them) and, when the timeline has
        NoC transfers, one thread per source unit after them (``NoC from <unit>``).
    path : str or Path
        The file to write.
    dag : networkx.DiGraph, optional
        The graph, for each micro-op's operation and arguments.

    Returns
    -------
    Path
        ``path``.
    """
    events: list[dict] = []
    other: dict[str, Any] = {}
    for k, (name, s) in enumerate(timelines.items()):
        pid = k + 1
        doc = chrome_trace(s, dag)
        has_noc = bool(s.transfers)
        events += [{"ph": "M", "pid": pid, "name": "process_name", "args": {"name": name}},
                   {"ph": "M", "pid": pid, "name": "process_sort_index",
                    "args": {"sort_index": pid}}]
        for e in doc["traceEvents"]:
            if e["ph"] == "M" and "tid" not in e:
                continue                              # the process metadata, replaced above
            noc = e["pid"] == NOC_PID
            if noc and not has_noc:
                continue
            e = {**e, "pid": pid}
            if noc:
                e["tid"] = NOC_TID_OFFSET + e["tid"]
                if e["name"] == "thread_name":
                    e["args"] = {"name": "NoC " + e["args"]["name"]}
            events.append(e)
            if noc and e["name"] == "thread_name":
                events.append({"ph": "M", "pid": pid, "tid": e["tid"],
                               "name": "thread_sort_index", "args": {"sort_index": e["tid"]}})
        other[name] = doc["otherData"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ns",
                                "otherData": other}))
    return path


def gantt_png(schedule: Schedule, path: str | Path, dag: Any = None, title: str | None = None,
              lower_bound: int | None = None) -> Path:
    """Draw one row per unit, one bar per micro-op coloured by operation type, to a PNG.

    The legend sits right of the bars; a ``lower_bound`` is a dashed line named in it."""
    import matplotlib.pyplot as plt

    fig = _gantt_figure(schedule, dag, title, lower_bound)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _gantt_figure(schedule: Schedule, dag: Any = None, title: str | None = None,
                  lower_bound: int | None = None):
    """The figure :func:`gantt_png` saves."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    units = list(schedule.pool.units)
    rows: dict[str, dict[str, list]] = {u.name: {} for u in units}
    for n, s in schedule.slots.items():
        cat = _op_label(dag, n)[0].split(".")[0]
        rows[s.unit].setdefault(cat, []).append((s.start, s.finish - s.start))
    cats = sorted({c for r in rows.values() for c in r})
    cmap = plt.get_cmap("tab10")
    colour = {c: cmap(i % 10) for i, c in enumerate(cats)}
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(units) + 1.5))
    for y, u in enumerate(units):
        for c, bars in rows[u.name].items():
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=colour[c], edgecolor="white",
                           linewidth=0.3)
    ax.set_yticks(range(len(units)), [f"{u.name} ({u.kind.key})" for u in units])
    ax.invert_yaxis()
    ax.set_xlabel("cycles")
    extra = []
    if lower_bound:
        ax.axvline(lower_bound, color="k", ls="--", lw=0.8)
        extra.append(Line2D([0], [0], color="k", ls="--", lw=0.8,
                            label=f"lower bound ({lower_bound})"))
    ax.set_xlim(0, max(schedule.makespan, lower_bound or 0, 1))
    ax.set_title(title or f"{schedule.name} on {schedule.pool.name}: makespan "
                          f"{schedule.makespan} cycles")
    ax.legend(handles=[Patch(color=colour[c], label=c) for c in cats] + extra,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              borderaxespad=0.0)
    fig.tight_layout()
    return fig
