"""Tests of the ``accelpool schedule`` subcommand."""

from __future__ import annotations

import json

from accelpool.flow.cli import main


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


def _add_model(path, a, b):
    """y = a + b with graph inputs named ``a`` and ``b``, written to ``path``."""
    import onnx
    from onnx import TensorProto, helper
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 8]) for n in (a, b)]
    g = helper.make_graph([helper.make_node("Add", [a, b], ["y"], name="add")], "t", vi,
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), path)
    return str(path)


def _compiles_and_runs_bit_exact(model, capsys):
    assert main(["compile", model]) == 0
    rc = main(["schedule", model, "--run"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "outputs equal the golden run bit for bit" in captured.out


def test_schedule_run_takes_input_names_that_need_sanitising(tmp_path, capsys):
    _compiles_and_runs_bit_exact(_add_model(tmp_path / "tf.onnx", "serving/x:0",
                                            "serving/bias:0"), capsys)


def test_input_names_that_sanitise_alike_stay_distinct(tmp_path, capsys):
    model = _add_model(tmp_path / "clash.onnx", "x:1", "x/1")
    _compiles_and_runs_bit_exact(model, capsys)
    assert main(["sim", model, "--golden-only"]) == 0, capsys.readouterr().err


def test_schedule_all_ends_with_a_side_by_side_table_and_writes_the_figures(tmp_path, capsys):
    out_json = tmp_path / "r" / "report.json"
    assert main(["schedule", "mixed", "--scheduler", "all", "--report-json", str(out_json)]) == 0
    out = capsys.readouterr().out
    table = out[out.rindex("scheduler "):]
    assert table.splitlines()[0].split() == ["scheduler", "makespan", "x", "lower", "bound",
                                             "transfers", "seconds"]
    doc = json.loads(out_json.read_text())
    assert doc["model"] == "mixed" and doc["pool"] == "default"
    assert [s["scheduler"] for s in doc["schedules"]][:3] == ["greedy", "heft", "lookahead"]
    for s in doc["schedules"]:
        assert f"{s['scheduler']} " in table and f" {s['makespan']} " in table
        assert f"makespan {s['makespan']} cycles" in out
        assert s["makespan"] >= s["lower_bound"] > 0
        for u in s["units"].values():
            assert u["occupied"] == u["occupied_cycles"] / s["makespan"]
            assert u["busy"] == u["busy_cycles"] / s["makespan"]
            assert (0 < u["busy_cycles"] <= u["occupied_cycles"]) == (u["ops"] > 0)
        assert {"scheduler", "makespan", "lower_bound", "ratio_to_lower_bound", "transfers",
                "seconds", "units"} <= set(s)
        assert f"{s['transfers']} transfers" in out
        shown = [f"{n} {100 * u['busy']:.1f}%" for n, u in s["units"].items() if u["ops"]]
        assert "  busy: " + ", ".join(shown) + "\n" in out


def test_schedule_states_what_busy_and_compute_mean_and_defaults_to_heft(capsys):
    assert main(["schedule", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "schedule heft on pool default" in out
    assert "occupied: a unit's time in the schedule" in out and "ops  occupied" in out
    assert ("\nbusy: the unit's busy cycles (its EXEC cycles alone) over the makespan; "
            "`accelpool sim` reports the measured busy cycles over the measured run\n") in out
    assert "\n  busy: dmu0 " in out


def test_busy_is_the_share_that_sim_calls_busy():
    # sim: "unit busy (EXEC cycles over the run)"; schedule: the same cycles, predicted,
    # over the makespan, the prediction of the run
    from accelpool.flow.schedule_cmd import LEGEND
    from accelpool.flow.simflow import SimReport
    report = SimReport("mlp", "default", "heft", "icarus", True, "", 100, 90, {"dmu0": 12.5},
                       0, 1.0)
    assert "\nunit busy (EXEC cycles over the run): dmu0 12.5%" in report.text()
    assert "(its EXEC cycles alone) over the makespan" in LEGEND[1]


def test_progress_lines_go_to_the_logger_and_the_results_stay_on_stdout(tmp_path, capsys):
    import re

    def run(*flags):
        assert main([*flags, "schedule", "mlp", "--listing", str(tmp_path / "l.txt")]) == 0
        c = capsys.readouterr()
        return re.sub(r"\d+\.\d+ s\b", "T s", c.out), c.err
    out, err = run()
    assert err == ("schedule: running heft\n"
                   "schedule: compiling the command streams of heft\n")
    assert "schedule: " not in out and "schedule heft on pool default" in out
    quiet_out, quiet_err = run("-q")
    assert quiet_err == "" and quiet_out == out
    verbose_out, verbose_err = run("-v")
    assert verbose_out == out
    assert verbose_err.startswith("compile: mlp for pool default (") and \
        verbose_err.endswith(err) and "micro-ops in " in verbose_err
