"""The end-to-end flow's refusals and its discovery step (Icarus; the RTL model run itself
needs codegen EXEC layouts, see flow/simflow.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from accelpool.spec.config import load_config, parse_config
from accelpool.hw.tile import TileError
from accelpool.sched.pool import DiscoveryError
from accelpool.flow.simflow import discover_pool, image_runs, simulate
from accelpool.tb.soc import build_soc, config_doc


def test_pool_with_a_unit_without_rtl_is_refused_by_name(monkeypatch):
    import accelpool.hw.tile as tile_mod
    from accelpool.spec.config import UnitKind
    tile_mod.UNIT_RTL[UnitKind.SMU]      # the built-in units are registered
    monkeypatch.delitem(tile_mod.UNIT_RTL._items, UnitKind.SMU)
    with pytest.raises(TileError, match=r"Tile 'smu0' at \(0, 1\) is a smu, whose RTL"):
        simulate("mixed", "default", progress=False)


def test_discovery_in_the_loop_refuses_a_disagreeing_config():
    cfg = load_config("ce_pair")
    build = build_soc(cfg, "icarus")
    pool = discover_pool(cfg, build)
    assert [u.name for u in pool.compute_units] == ["ce0", "ce1"]
    doc = config_doc(cfg)
    doc["tile"][1]["scratchpad_bytes"] = 32768
    other = parse_config(doc, source="ce_pair-bigger-spad")
    with pytest.raises(DiscoveryError, match=r"ce0 \(1,0\) SPAD_BYTES: config says 32768, "
                                             r"hardware reports 16384"):
        discover_pool(other, build)


def test_model_needing_absent_units_is_refused_in_preflight():
    from accelpool.sched.frontend import FrontendError
    with pytest.raises(FrontendError, match=r"needs lpu with int8, which no unit in pool "
                                            r"'ce_pair' supports"):
        simulate("qcnn", "ce_pair", sim="icarus", progress=False)


def test_image_runs_merges_small_gaps():
    data = bytes(range(200))
    init = np.zeros(200, bool)
    init[0:10] = init[40:50] = init[150:160] = True
    runs = image_runs(data, init, gap=64)
    assert [(a, len(b)) for a, b in runs] == [(0, 50), (150, 10)]
    assert runs[0][1] == data[0:50]


@pytest.mark.slow
def test_discovery_of_the_default_pool_in_icarus():
    """All six unit kinds and the memory tile read back from the default SoC (minutes to build)."""
    cfg = load_config("default")
    pool = discover_pool(cfg, build_soc(cfg, "icarus"))
    assert {u.name: u.kind.key for u in pool.units} == {t.name: t.kind.key for t in cfg.tiles}
    assert dict(pool.unit("lpu0").caps.tile_sizes) == {"rows": 8, "cols": 16}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "gcn", "transformer", "qcnn"])
def test_lowered_models_run_on_the_rtl_bit_exact(model):
    """The binary streams (DMU GEMMs, AFU activations and element-wise operations, GNN
    mean) on the default SoC in Icarus: outputs equal the golden run in the units'
    arithmetic bit for bit (minutes to build the SoC, about a minute per model)."""
    report = simulate(model, "default", sim="icarus", progress=False)
    assert report.outputs_ok, report.mismatch
    assert report.measured_cycles > 0


def test_sim_hands_shape_max_k_tile_and_sparse_threshold_to_the_rtl_runs_decomposition(
        monkeypatch, tmp_path):
    """``accelpool sim`` decomposes for the RTL run with the options it is given (stopped
    right after the decomposition, before any build)."""
    import onnx

    import accelpool.flow.simflow as simflow_mod
    import accelpool.sched.decompose as dec
    from accelpool.sched import models
    from accelpool.flow.cli import main
    seen = {}

    class Stop(Exception):
        pass

    real = dec.compile_model

    def spy(proto, cfg, options, **kw):
        seen["options"] = options
        seen["graph"] = real(proto, cfg, options, **kw)
        raise Stop

    monkeypatch.setattr(simflow_mod, "compile_model", spy)
    m = models.mlp()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = tmp_path / "dyn.onnx"
    onnx.save(m, path)
    with pytest.raises(Stop):
        main(["--debug", "sim", str(path), "--shape", f"{m.graph.input[0].name}=8,64",
              "--max-k-tile", "16", "--sparse-threshold", "0.9", "--sim", "icarus"])
    assert seen["options"].max_k_tile == 16 and seen["options"].sparse_threshold == 0.9
    g = seen["graph"]
    assert g.buffers[g.inputs[0]].shape[0] == 8
    gemms = [o for o in g.ops if o.op.value == "gemm"]
    assert gemms and max(o.inputs[0].shape[1] for o in gemms) == 16


def test_sim_writes_its_reports_under_out_never_beside_the_model(tmp_path, capsys):
    """A model in a read-only folder: ``sim --out DIR`` writes the Gantt chart, the
    timelines' trace and report.json into DIR, named by model, scheduler and simulator;
    without ``--out`` they go to the build's reports folder; nothing lands beside the
    model."""
    import onnx

    from accelpool.flow.cli import main
    from accelpool.sched.test_frontend import relu_model
    from accelpool.tb.harness import IN_CHECKOUT
    models_dir, out = tmp_path / "models", tmp_path / "out"
    models_dir.mkdir()
    onnx.save(relu_model((8, 16)), models_dir / "net.onnx")
    models_dir.chmod(0o555)
    try:
        assert main(["sim", str(models_dir / "net.onnx"), "--sim", "icarus", "--scheduler",
                     "greedy", "--out", str(out)]) == 0, capsys.readouterr().err
        stem = "net_greedy_icarus"
        assert sorted(p.name for p in out.iterdir()) == [
            f"{stem}_gantt.png", f"{stem}_report.json", f"{stem}_trace.json"]
        printed = capsys.readouterr().out
        assert all(f"{stem}_{k}" in printed for k in ("gantt.png", "trace.json", "report.json"))
        trace = json.loads((out / f"{stem}_trace.json").read_text())
        ev = trace["traceEvents"]
        names = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
        assert sorted(names.values()) == ["measured", "predicted"]
        for pid in names:                    # a thread per unit in each
            assert {e["args"]["name"].split()[0] for e in ev if e["name"] == "thread_name"
                    and e["pid"] == pid and not e["args"]["name"].startswith("NoC")} == \
                {"afu0", "ce0", "dmu0", "dmu1", "gnn0", "lpu0", "mem", "smu0"}
        assert set(trace["otherData"]) == {"predicted", "measured"}
        doc = json.loads((out / f"{stem}_report.json").read_text())
        assert (doc["model"], doc["scheduler"], doc["sim"], doc["outputs_ok"]) == \
            (str(models_dir / "net.onnx"), "greedy", "icarus", True)
        assert f"cycles: measured {doc['measured_cycles']}, predicted " \
               f"{doc['predicted_cycles']} by the schedule" in printed
        assert set(doc["unit_busy_pct"]) >= {"afu0", "dmu0"}
        assert doc["output_ok"] and all(doc["output_ok"].values())
        assert set(doc["files"]) == {"gantt", "trace", "report"}
        assert main(["sim", str(models_dir / "net.onnx"), "--sim", "icarus"]) == 0
        wrote = [ln.split(" ", 1)[1] for ln in capsys.readouterr().out.splitlines()
                 if ln.startswith("wrote ")]
        assert len(wrote) == 3
        for w in wrote:
            p = Path(w).resolve()
            assert p.parent.name == "reports" and p.name.startswith("net_heft_icarus_"), p
            if IN_CHECKOUT:
                assert "sim_build" in p.parts
        assert [p.name for p in models_dir.iterdir()] == ["net.onnx"]
    finally:
        models_dir.chmod(0o755)


def test_sim_report_is_short_to_print_and_progress_is_lines_when_not_a_terminal(
        tmp_path, capsys):
    """Not on a terminal (pytest captures stderr) there is no bar: each stage is one line
    on the accelpool logger with the time the one before took; the report's repr is one
    short line."""
    import onnx

    from accelpool.flow.cli import configure_logging
    from accelpool.sched.test_frontend import relu_model
    configure_logging()
    onnx.save(relu_model((8, 16)), tmp_path / "net.onnx")
    report = simulate(str(tmp_path / "net.onnx"), "default", sim="icarus", out_dir=tmp_path)
    err = capsys.readouterr().err
    assert "\r" not in err and "stage/s" not in err             # no tqdm bar
    assert "sim: build SoC (preflight took " in err and "sim: report (compare took " in err
    text = repr(report)
    assert len(text) < 300 and text.startswith("SimReport(model=") and "outputs_ok=True" in text
    assert report.to_dict()["files"]["report"].endswith("net_heft_icarus_report.json")


def test_sim_waves_prints_the_waveform_path_and_builds_apart(tmp_path, capsys):
    """``--waves`` builds in a folder of its own (the plain build stays cached) and the
    waveform the simulator wrote during the run is printed and in report.json."""
    import onnx

    from accelpool.flow.cli import main
    from accelpool.sched.test_frontend import relu_model
    onnx.save(relu_model((8, 16)), tmp_path / "net.onnx")
    assert main(["sim", str(tmp_path / "net.onnx"), "--sim", "icarus", "--waves",
                 "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    waves = [ln[len("wrote "):] for ln in out.splitlines()
             if ln.startswith("wrote ") and ln.endswith((".fst", ".vcd"))]
    assert len(waves) == 1
    path = Path(waves[0]).resolve()
    assert path.exists() and path.parent.name == "icarus_waves", path
    doc = json.loads((tmp_path / "out" / "net_heft_icarus_report.json").read_text())
    assert Path(doc["files"]["waves"]).resolve() == path


def test_sim_report_repr_is_short_and_to_dict_holds_every_printed_figure(tmp_path):
    """The repr is one line of names and cycles however large the outputs and the
    program; to_dict is JSON-able and holds each figure :meth:`text` prints."""
    import re

    from accelpool.flow.simflow import SimReport
    report = SimReport("mixed", "default", "heft", "icarus", True, "", 7317, 7245,
                       {"dmu0": 3.71234, "mem": 14.1}, 24432, 12.5,
                       {"gantt": tmp_path / "g.png", "report": tmp_path / "r.json"},
                       {"y": np.zeros((1000, 1000), np.float32)}, 7320,
                       program=list(range(10**6)), trace={"dmu0": list(range(10**5))},
                       output_ok={"y": True, "z": False})
    text = repr(report)
    assert text == ("SimReport(model='mixed', pool='default', scheduler='heft', sim='icarus', "
                    "outputs_ok=True, measured_cycles=7317, predicted_cycles=7245, "
                    "stream_cycles=7320)")
    doc = json.loads(json.dumps(report.to_dict()))
    assert (doc["measured_cycles"], doc["predicted_cycles"], doc["stream_cycles"]) == \
        (7317, 7245, 7320)
    assert doc["output_ok"] == {"y": True, "z": False}
    assert doc["noc_bytes"] == 24432 and doc["unit_busy_pct"]["dmu0"] == 3.7123
    assert doc["files"] == {"gantt": str(tmp_path / "g.png"), "report": str(tmp_path / "r.json")}
    printed = report.text()
    flat = [v for v in doc.values() if isinstance(v, (int, float))] + \
        list(doc["unit_busy_pct"].values())
    for fig in re.findall(r"[-+]?[\d,]+\.?\d*(?=%| cycles| bytes|,|$| by)", printed):
        value = float(fig.replace(",", ""))
        digits = len(fig.split(".")[1]) if "." in fig else 0
        assert any(round(v, digits) == value for v in flat), (fig, doc)


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_bar_only_when_stderr_is_a_terminal(monkeypatch, tmp_path, terminal):
    """simulate's bar is drawn on a terminal's stderr and nowhere else (no bar characters
    in a pipe or a log); stopped at the SoC build, after the preflight."""
    import io

    import onnx

    import accelpool.flow.simflow as simflow_mod
    from accelpool.sched.test_frontend import relu_model

    class Stop(Exception):
        pass

    def stop(*a, **kw):
        raise Stop

    class Stderr(io.StringIO):
        def isatty(self):
            return terminal

    err = Stderr()
    monkeypatch.setattr(simflow_mod, "build_soc", stop)
    monkeypatch.setattr("sys.stderr", err)
    onnx.save(relu_model((8, 16)), tmp_path / "net.onnx")
    with pytest.raises(Stop):
        simulate(str(tmp_path / "net.onnx"), "default", sim="icarus", out_dir=tmp_path)
    bar = "\r" in err.getvalue() or "stage" in err.getvalue() or "|" in err.getvalue()
    assert bar == terminal, err.getvalue()
    if terminal:
        assert "build SoC" in err.getvalue()          # the stage it reached
