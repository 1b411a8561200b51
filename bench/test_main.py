"""``python -m bench``: the areas it lists and runs."""

import subprocess
import sys
from pathlib import Path

from bench.__main__ import _areas, main

BENCH = Path(__file__).resolve().parent


def test_help_lists_every_area_with_its_summary(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    files = sorted(p.stem[len("bench_"):] for p in BENCH.glob("bench_*.py"))
    assert list(_areas()) == files and len(files) >= 9
    for area, doc in _areas().items():
        assert doc and f"  {area}" in out and doc in out


def test_an_unknown_area_is_refused_listing_them(capsys):
    assert main(["nosuch"]) == 2
    assert "Unknown benchmark area(s) nosuch; available: convact" in capsys.readouterr().err


def test_help_as_a_module_from_a_pipe():
    res = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=BENCH.parent,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "areas:" in res.stdout
