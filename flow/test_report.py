"""Tests of the schedule reports: trace JSON complete and valid, Gantt PNG written."""

from __future__ import annotations

import json

import pytest

from accelpool.sched.cost.model import CostModel
from accelpool.sched.pool import Pool
from accelpool.flow.report import chrome_trace, gantt_png, write_trace
from accelpool.sched.schedulers import heft
from accelpool.sched.suite import random_dag


@pytest.fixture(scope="module")
def scheduled():
    pool = Pool.from_config("default")
    dag = random_dag(120, seed=3, width=8)
    return dag, heft(dag, pool, CostModel(pool))


def test_trace_json_is_valid_and_complete(scheduled, tmp_path):
    dag, s = scheduled
    path = write_trace(s, tmp_path / "t.json", dag)
    doc = json.loads(path.read_text())           # valid JSON
    ev = doc["traceEvents"]
    for e in ev:
        assert e["ph"] in ("M", "X", "s", "f")
        assert isinstance(e["pid"], int)
        if e["ph"] != "M":
            assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
    ops = [e for e in ev if e["ph"] == "X" and e["pid"] == 1]
    assert sorted(e["name"] for e in ops) == sorted(str(n) for n in dag.nodes)   # each op once
    mhz = s.pool.config.clock_mhz
    names = {e["tid"]: e["args"]["name"].split()[0] for e in ev
             if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == 1}
    assert set(names.values()) == {u.name for u in s.pool.units}
    for e in ops:
        slot = s.slots[e["name"]]
        assert names[e["tid"]] == slot.unit
        assert e["ts"] == pytest.approx(slot.start / mhz)
        assert e["dur"] == pytest.approx((slot.finish - slot.start) / mhz)
        assert e["args"]["finish_cycle"] == slot.finish
        assert e["cat"] == dag.nodes[e["name"]]["op"].op.value + (
            "." + dag.nodes[e["name"]]["op"].func.value if dag.nodes[e["name"]]["op"].func else "")
    xfers = [e for e in ev if e["ph"] == "X" and e["pid"] == 2]
    assert len(xfers) == len(s.transfers) > 0
    starts = [e for e in ev if e["ph"] == "s"]
    ends = [e for e in ev if e["ph"] == "f"]
    assert sorted(e["id"] for e in starts) == sorted(e["id"] for e in ends) == list(range(len(xfers)))
    assert doc["otherData"]["makespan_cycles"] == s.makespan
    # the flow of every transfer ends no earlier than it starts
    by_id = {e["id"]: e for e in starts}
    assert all(e["ts"] >= by_id[e["id"]]["ts"] for e in ends)


def test_trace_without_dag_still_lists_every_op(scheduled):
    dag, s = scheduled
    doc = chrome_trace(s)
    assert sum(1 for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 1) == len(dag)


def test_gantt_png(scheduled, tmp_path):
    dag, s = scheduled
    p = gantt_png(s, tmp_path / "g.png", dag, lower_bound=s.makespan // 2)
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_two_timelines_share_one_trace_file_as_two_processes(scheduled, tmp_path):
    """One process per timeline, named after it, with a thread per unit; the NoC
    transfers are threads of their timeline's process (none when it has no transfers)."""
    from accelpool.flow.report import NOC_TID_OFFSET, write_traces
    from accelpool.sched.schedule import Schedule
    dag, s = scheduled
    slots_only = Schedule("measured", s.pool, dict(s.slots))
    path = write_traces({"predicted": s, "measured": slots_only}, tmp_path / "both.json", dag)
    doc = json.loads(path.read_text())
    ev = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert procs == {1: "predicted", 2: "measured"}
    units = {u.name for u in s.pool.units}
    threads = {pid: {e["args"]["name"].split()[0] for e in ev if e["name"] == "thread_name"
                     and e["pid"] == pid and e["tid"] < NOC_TID_OFFSET} for pid in procs}
    assert threads == {1: units, 2: units}
    for pid in procs:
        ops = [e for e in ev if e["ph"] == "X" and e["pid"] == pid and e["cat"] != "transfer"]
        assert sorted(e["name"] for e in ops) == sorted(str(n) for n in s.slots)
        assert all(e["tid"] < NOC_TID_OFFSET for e in ops)
    xfers = [e for e in ev if e["ph"] == "X" and e["cat"] == "transfer"]
    assert len(xfers) == len(s.transfers) and {e["pid"] for e in xfers} == {1}
    assert all(e["tid"] > NOC_TID_OFFSET for e in xfers)
    assert not any(e["pid"] == 2 and e.get("tid", 0) > NOC_TID_OFFSET for e in ev)
    assert {e["pid"] for e in ev if e["ph"] in ("s", "f")} == {1}
    assert doc["otherData"]["measured"]["makespan_cycles"] == s.makespan
