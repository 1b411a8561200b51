"""Clock and reset of the unit testbenches (cocotb modules run through
:func:`accelpool.tb.harness.run_cocotb`).

Every unit top has a ``clk`` input and an active-high synchronous ``rst``; the testbenches
run them at 10 ns a cycle.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

__all__ = ["CLOCK_PERIOD_NS", "start_clock", "hold_reset", "reset_dut"]

#: Clock period of the unit testbenches.
CLOCK_PERIOD_NS = 10


def start_clock(dut) -> None:
    """Start a free-running clock on ``dut.clk``."""
    cocotb.start_soon(Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start())


async def hold_reset(dut, cycles: int = 2) -> None:
    """Hold ``dut.rst`` high for ``cycles`` clock cycles, then release it.

    Returns in the step the reset is released, so the caller can set inputs that take
    effect on the first cycle out of reset.
    """
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0


async def reset_dut(dut, cycles: int = 2) -> None:
    """:func:`hold_reset`, then wait for the first rising edge out of reset."""
    await hold_reset(dut, cycles)
    await RisingEdge(dut.clk)
