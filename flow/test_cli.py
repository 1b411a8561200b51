import json
import re
import subprocess
import sys

import onnx
import pytest

from accelpool.sched import models
from accelpool.flow.cli import build_parser, main


def test_compile_builtin_prints_summary_and_writes_json_and_dot(tmp_path, capsys):
    js, dot = tmp_path / "m.json", tmp_path / "m.dot"
    assert main(["compile", "mixed", "--json", str(js), "--dot", str(dot)]) == 0
    out = capsys.readouterr().out
    assert "model mixed: 10 ONNX nodes" in out
    assert "operators: DequantizeLinear x1, Gemm x1, MatMul x2, QLinearConv x1" in out
    for row in (r"conv +int8 +ce +1 ", r"gemm +int8 +lpu +2 ", r"spmm +bf16 +smu/dmu +4 ",
                r"aggregate.mean +bf16 +gnn +1 ", r"act.sigmoid +bf16 +afu +1 ",
                r"gemm +bf16 +dmu +6 ", r"layout.transpose +bf16 +memory +2 +0 ",
                r"layout.copy +int8 +memory +1 +0 ", r"total +20 +108432 "):
        assert re.search(row, out), row
    assert "GEMM tiles: 8 dense, 4 sparse; 0 accumulation chains" in out
    d = json.loads(js.read_text())
    assert {"buffers", "micro_ops", "edges", "inputs", "outputs"} <= set(d)
    ops = {o["id"]: o for o in d["micro_ops"]}
    assert any(o["op"] == "spmm" and o["sparsity"] > 0.5 for o in ops.values())
    assert all({"dtype", "sparsity", "flops", "deps", "shape", "bytes_in", "bytes_out",
                "source"} <= set(o) for o in ops.values())
    text = dot.read_text()
    assert text.startswith('digraph "mixed" {') and "->" in text


def test_compile_a_file_with_options(tmp_path, capsys):
    p = tmp_path / "net.onnx"
    onnx.save(models.mlp(), p)
    assert main(["compile", str(p), "--pool", "default", "--max-k-tile", "16"]) == 0
    out = capsys.readouterr().out
    assert "model net:" in out and "accumulation chains" in out


def test_compile_dump_prints_ir_after_each_pass(capsys):
    assert main(["compile", "gcn", "--dump"]) == 0
    out = capsys.readouterr().out
    assert "--- IR after tile-operators ---" in out and "--- IR after annotate-costs ---" in out


def test_compile_errors_exit_2_with_message(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    assert main(["compile", str(bad)]) == 2
    assert "accelpool: error: " in capsys.readouterr().err
    assert main(["compile", "mlp", "--pool", str(tmp_path / "none.toml")]) == 2
    assert "none.toml: no such file; accepted: a UTF-8 TOML file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compile", "mlp", "--shape", "oops"])
    assert "--shape takes NAME=D0,D1,..." in capsys.readouterr().err


def test_sim_runs_golden_against_onnxruntime(capsys):
    # `accelpool sim` runs the RTL flow (flow.simflow); --golden-only keeps this one.
    assert main(["sim", "--golden-only"]) == 0
    out, err = capsys.readouterr()
    assert "golden reference: ran" in out and "within tolerance" in out
    assert err == "sim: running the golden reference and onnxruntime\n"      # progress


def test_subcommands_are_extensible():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"compile", "sim"} <= set(sub.choices)


def test_module_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "accelpool.flow.cli", "compile", "transformer"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "act.gelu" in r.stdout


def test_sim_says_what_it_runs_while_rtl_is_not_reachable(capsys, tmp_path):
    # Every built-in model runs on the RTL; an ONNX model with a micro-op codegen does not
    # lower (GELU's tanh form: the AFU computes the erf form) makes `accelpool sim` name why
    # the RTL run is not possible, before any build, and run everything short of codegen.
    import onnx
    from onnx import helper
    from accelpool.flow.cli import main
    from accelpool.sched.test_frontend import make, vi
    path = tmp_path / "gelu_tanh.onnx"
    onnx.save(make([helper.make_node("Gelu", ["x"], ["y"], name="g", approximate="tanh")],
                   [vi("x", [4, 16])], [vi("y", [4, 16])]), path)
    assert main(["sim", str(path)]) == 0
    out = capsys.readouterr().out
    assert "the RTL run is not possible yet: codegen: Micro-op 'g/" in out
    assert "not lowered: GELU approximate='tanh'" in out
    assert ("Built-in models that run on the RTL today: mlp, gcn, transformer, qcnn, cnn, "
            "mixed") in out
    assert "within tolerance" in out                       # golden vs onnxruntime
    assert "schedule heft on pool default" in out


def test_rtl_models_are_the_ones_codegen_lowers():
    """The list `accelpool sim` offers is what the end-to-end RTL tests run, and each of
    those models compiles to binary streams under heft on the default pool."""
    from accelpool.flow.cli import RTL_MODELS
    from accelpool.sched.codegen import compile_schedule
    from accelpool.sched.cost.model import CostModel
    from accelpool.sched.decompose import compile_model
    from accelpool.sched.pool import Pool
    from accelpool.sched.schedulers import heft
    from accelpool.tb.test_e2e import LOWERED
    assert tuple(RTL_MODELS) == tuple(LOWERED)
    pool = Pool.from_config("default")
    for m in RTL_MODELS:
        g = compile_model(m)
        assert compile_schedule(g, heft(g.dag, pool, CostModel(pool))).streams


def _script():
    """The installed ``accelpool`` console script beside this interpreter."""
    from pathlib import Path
    return str(Path(sys.executable).with_name("accelpool"))


def test_debug_is_a_global_flag_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--debug" in capsys.readouterr().out
    assert build_parser().parse_args(["--debug", "compile", "mlp"]).debug
    assert build_parser().parse_args(["compile", "mlp", "--debug"]).debug
    assert not build_parser().parse_args(["compile", "mlp"]).debug


@pytest.mark.parametrize("error", ["ConfigError", "EncodingError", "SimFlowError",
                                   "HarnessError", "FrontendError", "IRError"])
def test_user_errors_exit_2_in_one_line(monkeypatch, capsys, error):
    from accelpool.flow import cli
    mod = next(m for m, name in cli.USER_ERRORS if name == error)
    cls = getattr(__import__(mod, fromlist=[error]), error)

    def fail(args):
        raise cls("first line\nsecond line")
    monkeypatch.setattr(cli, "cmd_compile", fail)
    assert main(["compile", "mlp"]) == 2
    assert capsys.readouterr().err == "accelpool: error: first line; second line\n"
    with pytest.raises(cls):
        main(["compile", "mlp", "--debug"])


def test_internal_error_exits_1_and_names_debug(monkeypatch, capsys):
    from accelpool.flow import cli

    def fail(args):
        raise KeyError("oops")
    monkeypatch.setattr(cli, "cmd_compile", fail)
    assert main(["compile", "mlp"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "compile", "mlp"])


def test_ctrl_c_exits_130_quietly(monkeypatch, capsys):
    from accelpool.flow import cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_compile", interrupted)
    assert main(["compile", "mlp"]) == 130
    assert capsys.readouterr().err == ""


def test_bad_input_has_no_traceback_unless_debug(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    r = subprocess.run([_script(), "compile", "bad.onnx"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("accelpool: error: bad.onnx") and r.stderr.count("\n") == 1
    r = subprocess.run([_script(), "--debug", "compile", "bad.onnx"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_output_into_a_closed_pipe_exits_quietly(tmp_path):
    # `accelpool compile mixed --dump | head -1`: the reader goes away after one line
    p = subprocess.Popen([_script(), "compile", "mixed", "--dump"], cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1
    assert err == "", err


def _unwritable_paths(tmp_path):
    """Output paths no one can write: under a plain file, a directory, under /proc."""
    (tmp_path / "plain").write_text("x")
    (tmp_path / "adir").mkdir()
    return [tmp_path / "plain" / "out.x", tmp_path / "adir", "/proc/accelpool/out.x"]


@pytest.mark.parametrize("command, option", [("compile", "--json"), ("compile", "--dot"),
                                             ("schedule", "--gantt"), ("schedule", "--trace"),
                                             ("schedule", "--listing"),
                                             ("schedule", "--report-json")])
def test_an_unwritable_output_is_refused_before_the_work(tmp_path, capsys, monkeypatch,
                                                         command, option):
    from accelpool.flow import cli, options, schedule_cmd

    def no_work(*a, **k):
        raise AssertionError("compiled before checking the output path")
    monkeypatch.setattr(cli, "compile_from_args", no_work)
    monkeypatch.setattr(options, "compile_from_args", no_work)
    monkeypatch.setattr(schedule_cmd, "compile_from_args", no_work)
    for path in _unwritable_paths(tmp_path):
        assert main([command, "mlp", option, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"accelpool: error: {option} {path}: ") and err.count("\n") == 1
        assert "accepted: " in err


def test_output_folders_that_do_not_exist_yet_are_created(tmp_path, capsys):
    js, lst = tmp_path / "a" / "b" / "m.json", tmp_path / "c" / "l.txt"
    assert main(["compile", "mlp", "--json", str(js)]) == 0
    assert main(["schedule", "mlp", "--scheduler", "heft", "--listing", str(lst)]) == 0
    assert json.loads(js.read_text())["micro_ops"] and "SIGNAL" in lst.read_text()
    assert not list(tmp_path.rglob(".accelpool-probe-*"))


def test_a_misspelt_built_in_model_lists_them_and_suggests_the_closest(capsys):
    assert main(["compile", "mixd"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("accelpool: error: mixd: no such file and no built-in model of that "
                          "name; did you mean 'mixed'? accepted: MODEL.onnx or a built-in model")
    assert "gcn" in err and "transformer" in err


def test_sim_out_folder_is_checked_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["sim", "mlp", "--out", str(blocker / "reports")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"accelpool: error: --out {blocker / 'reports'}: ") and \
        "accepted: a folder that exists or can be created, writable" in err
@pytest.mark.parametrize("argv, option, accepted", [
    (["sim", "--golden-only", "--seed", "-1"], "--seed", "an integer >= 0"),
    (["schedule", "mlp", "--seed", "x"], "--seed", "an integer >= 0"),
    (["compile", "mlp", "--max-k-tile", "0"], "--max-k-tile", "an integer >= 1"),
    (["schedule", "mlp", "--max-k-tile", "-3"], "--max-k-tile", "an integer >= 1"),
    (["compile", "mlp", "--sparse-threshold", "1.5"], "--sparse-threshold", "a number in (0, 1]"),
    (["sim", "--sparse-threshold", "nan"], "--sparse-threshold", "a number in (0, 1]"),
    (["compile", "mlp", "--shape", "x=0,3"], "--shape", "integer >= 1"),
])
def test_numeric_options_name_the_option_and_the_range(capsys, argv, option, accepted):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}: " in err and accepted in err
    assert err.count("\n") == 1, err


def test_sim_refuses_an_unknown_scheduler_listing_them(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sim", "--golden-only", "--scheduler", "hef"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --scheduler: invalid choice: 'hef'" in err and "'heft'" in err


def test_version_quiet_verbose_and_help_without_markup(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"accelpool {version('accelpool')}\n"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "-q, --quiet" in text and "-v, --verbose" in text
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    text = capsys.readouterr().out
    assert "``" not in text and "default: default (configs/default.toml)" in text
    assert "/configs/" not in text.replace("(configs/", "")      # no absolute path
    assert build_parser().parse_args(["compile", "mlp", "-q"]).quiet
    assert build_parser().parse_args(["-v", "compile", "mlp"]).verbose
    with pytest.raises(SystemExit):
        build_parser().parse_args(["-q", "-v", "compile", "mlp"])


def test_quiet_and_verbose_set_the_accelpool_logger(capsys):
    import logging
    log = logging.getLogger("accelpool")
    assert main(["-q", "compile", "mlp"]) == 0 and log.level == logging.WARNING
    assert main(["compile", "mlp", "-v"]) == 0 and log.level == logging.DEBUG
    assert capsys.readouterr().err.startswith("compile: mlp for pool default (")   # detail
    assert main(["compile", "mlp"]) == 0 and log.level == logging.INFO
    log.info("a progress line")
    assert capsys.readouterr().err == "a progress line\n"


def test_a_misspelt_pool_lists_the_configs_and_suggests_the_closest(capsys):
    assert main(["compile", "mlp", "--pool", "defualt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "defualt: no such file; did you mean 'default'? accepted: a UTF-8 TOML file or " \
           "a name in configs/ (ce_pair, default, stream_pair)" in err


def _help(capsys, *argv):
    """The help text of ``accelpool ARGV --help``, with its line wrapping undone."""
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", ["compile", "schedule", "sim"])
def test_every_subcommand_help_has_no_markup_and_no_machine_path(capsys, command):
    from accelpool.spec.config import CONFIG_DIR
    text = _help(capsys, command)
    assert "``" not in text and ":class:" not in text and ":func:" not in text
    assert "default: default (configs/default.toml)" in text
    assert str(CONFIG_DIR) not in text


@pytest.mark.parametrize("command", ["schedule", "sim"])
def test_schedule_and_sim_share_the_default_scheduler_and_say_so(capsys, command):
    from accelpool.flow.cli import DEFAULT_SCHEDULER
    assert DEFAULT_SCHEDULER == "heft"
    argv = [command, "mlp"] if command == "schedule" else [command]
    assert build_parser().parse_args(argv).scheduler == "heft"
    assert "default: heft, the fast HEFT list scheduler" in _help(capsys, command)
