"""Tests of the ``accelpool schedule`` subcommand."""

from __future__ import annotations

import json

from accelpool.sched.cli import main


def test_schedule_prints_the_summary_and_runs_the_streams(tmp_path, capsys):
    trace, gantt, lst = tmp_path / "t.json", tmp_path / "g.png", tmp_path / "l.txt"
    rc = main(["schedule", "gcn", "--scheduler", "heft", "--trace", str(trace), "--gantt",
               str(gantt), "--listing", str(lst), "--run"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "schedule heft on pool default: 18 micro-ops, makespan" in out
    assert "x the lower bound" in out and "gnn0" in out
    assert "outputs equal the golden run bit for bit" in out
    assert json.loads(trace.read_text())["traceEvents"]
    assert gantt.read_bytes()[:4] == b"\x89PNG"
    assert "SIGNAL" in lst.read_text()


def test_schedule_all_and_bad_scheduler(capsys):
    assert main(["schedule", "mlp", "--scheduler", "all"]) == 0
    out = capsys.readouterr().out
    for name in ("greedy", "heft", "lookahead", "search("):
        assert f"schedule {name}" in out
