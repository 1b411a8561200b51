"""What a user runs: the installed ``accelpool`` executable, from a folder that is not the
checkout, and (``make regress``) a wheel installed into a fresh virtual environment.

The project installs as ``accelpool.hw`` / ``accelpool.sched`` / ``accelpool.tb``; the
standard library's ``sched`` module must never shadow it, whatever the working directory.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import onnx
import pytest

from accelpool.sched import models

REPO = Path(__file__).resolve().parent.parent
#: The console script of the environment running the tests (the editable install of
#: ``make setup``).
ACCELPOOL = Path(sys.executable).with_name("accelpool")


def _clean_env() -> dict[str, str]:
    """The environment less anything that would put the checkout on ``sys.path``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _check_user_session(exe: list[str], cwd: Path) -> None:
    """The README's commands on a built-in model and on an ONNX file in ``cwd``."""
    r = _run([*exe, "--help"], cwd)
    assert r.returncode == 0, r.stderr
    assert "compile" in r.stdout and "schedule" in r.stdout and "sim" in r.stdout

    r = _run([*exe, "compile", "mixed"], cwd)
    assert r.returncode == 0, r.stderr
    assert "model mixed: 10 ONNX nodes" in r.stdout and "total" in r.stdout

    onnx.save(models.mlp(), cwd / "net.onnx")
    r = _run([*exe, "compile", "net.onnx", "--json", "net.json"], cwd)
    assert r.returncode == 0, r.stderr
    assert (cwd / "net.json").stat().st_size > 0

    r = _run([*exe, "schedule", "mlp", "--scheduler", "heft"], cwd)
    assert r.returncode == 0, r.stderr
    assert "makespan" in r.stdout

    r = _run([*exe, "sim", "mlp", "--golden-only"], cwd)
    assert r.returncode == 0, r.stderr
    assert "within tolerance" in r.stdout


def test_installed_command_runs_from_a_folder_outside_the_checkout(tmp_path):
    assert ACCELPOOL.is_file(), f"{ACCELPOOL} missing: run `make setup`"
    _check_user_session([ACCELPOOL], tmp_path)


def test_module_entry_point_from_outside_the_checkout(tmp_path):
    r = _run([sys.executable, "-m", "accelpool.flow.cli", "compile", "gcn"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "model gcn:" in r.stdout


def test_the_standard_librarys_sched_does_not_shadow_the_package(tmp_path):
    code = ("import sched, accelpool.flow.cli as cli; "
            "assert hasattr(sched, 'scheduler'), sched; "
            "print(cli.__name__); print(sched.__file__)")
    r = _run([sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0, r.stderr
    name, stdlib_file = r.stdout.split()
    assert name == "accelpool.flow.cli" and not stdlib_file.startswith(str(REPO))


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_from_tmp(tmp_path):
    """``pip install .`` (not editable) into a fresh venv; the installed command from
    ``tmp_path`` runs compile, schedule and ``sim --golden-only``, and the configs ship."""
    # built from a copy, so that setuptools' build/ folder never lands in the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", "sim_build", ".git", "build", "*.egg-info", "__pycache__", ".hypothesis"))
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(wheels), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("accelpool-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=1200, env=_clean_env())
    assert r.returncode == 0, r.stderr
    work = tmp_path / "work"
    work.mkdir()
    r = _run([py, "-c", "import accelpool.spec.config as c; print(c.CONFIG_DIR)"], work)
    assert r.returncode == 0, r.stderr
    assert str(env_dir) in r.stdout and (Path(r.stdout.strip()) / "default.toml").is_file()
    _check_user_session([env_dir / "bin" / "accelpool"], work)


def test_make_help_lists_the_variables_and_waves_maps_to_the_option():
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    out = subprocess.run([make, "-s", "help"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    for var in ("MODEL=", "POOL=", "SCHEDULER=", "SIM=", "WAVES=1", "PYTEST_ARGS=", "JOBS="):
        assert f"  {var}" in out, var
    for waves, flag in (("WAVES=1", True), ("WAVES=0", False), (None, False)):
        cmd = subprocess.run([make, "-n", "sim"] + ([waves] if waves else []), cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
        line = [ln for ln in cmd.splitlines() if "accelpool sim" in ln][-1]
        assert ("--waves" in line) == flag, (waves, line)
