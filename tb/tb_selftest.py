"""cocotb module used by tb/test_harness.py to check the harness reports both outcomes."""

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from accelpool.tb.harness import tb_params


@cocotb.test()
async def counts(dut):
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 5)
    assert int(dut.count.value) == tb_params()["expect"]
