"""cocotb module used by tb/test_harness.py to check the harness reports both outcomes."""

import cocotb
from cocotb.triggers import ClockCycles

from accelpool.tb.cocotb_common import hold_reset, start_clock
from accelpool.tb.harness import tb_params


@cocotb.test()
async def counts(dut):
    start_clock(dut)
    await hold_reset(dut)
    await ClockCycles(dut.clk, 5)
    assert int(dut.count.value) == tb_params()["expect"]
