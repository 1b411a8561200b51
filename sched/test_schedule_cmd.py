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
