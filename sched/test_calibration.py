"""Calibration in RTL (slow: a sweep of CE convolutions and NoC transfers on the SoC)."""

from __future__ import annotations

import pytest

from hw.config import load_config
from sched.calibration import calibrate_in_rtl, calibration_path


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_ce_calibration_in_rtl(sim):
    cfg = load_config("ce_pair")
    out = calibrate_in_rtl(cfg, sim, write=False)
    # The CE's own cycle formula is exact against the RTL: the refit is the identity and
    # the remaining error is zero (never worse than before the refit).
    scale, overhead = out["fit"]["ce"]
    assert abs(scale - 1) < 1e-9 and abs(overhead) < 1e-6
    assert out["after"]["ce"][0] < 1e-9
    assert out["after"]["ce"][0] <= out["before"]["ce"][0] + 1e-9
    # Every transfer was measured (NI busy cycles grow with the bytes moved).
    loads = [t["cycles"] for t in out["noc"] if t["tile"] == "ce0" and t["op"] == "LOAD"]
    assert loads == sorted(loads) and len(loads) == 4
    assert calibration_path(cfg).name == "ce_pair.calibration.json"
