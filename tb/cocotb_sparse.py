"""cocotb driver for a sparse unit with its memory (:func:`tb.unit_memory.sparse_unit_top`).

:class:`SparseUnitTB` loads a :class:`sched.formats.SparseJob`'s image through the host
write port, sends the EXEC payload on ``cmd`` (with random idle insertion), counts the
busy cycles, and reads the result back through the host read port.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sched.formats import SparseJob
from tb.cocotb_streams import StreamSource, random_pattern

__all__ = ["SparseUnitTB"]


class SparseUnitTB:
    """Clock, reset, memory access and command issue for a sparse unit's test top."""

    def __init__(self, dut, unit_cls, *, word_bytes: int, idle: float = 0.5, seed: int = 0):
        self.dut = dut
        self.unit_cls = unit_cls
        self.wb = word_bytes
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.cmd = StreamSource(dut, "cmd", dut.clk, random_pattern(idle, seed) if idle < 1 else None)
        dut.host_write__en.value = 0
        dut.host_read__en.value = 1

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 2)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def load(self, job: SparseJob) -> None:
        """Write the job's image, word by word, at its byte addresses."""
        full = (1 << self.wb) - 1
        for i, word in enumerate(job.image.words()):
            self.dut.host_write__addr.value = i
            self.dut.host_write__data.value = word
            self.dut.host_write__en.value = full
            await RisingEdge(self.dut.clk)
        self.dut.host_write__en.value = 0

    async def run(self, func, job: SparseJob) -> int:
        """Send EXEC ``func`` with the job's args; return the busy cycles."""
        payload = self.unit_cls.command_layout().const({"func": func, "args": job.args})
        await self.cmd.send(payload.as_value().value)
        await ReadOnly()
        cycles = 0
        while int(self.dut.busy.value):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            cycles += 1
        await RisingEdge(self.dut.clk)
        return cycles

    async def read_memory(self, addr: int, nbytes: int) -> bytes:
        """``nbytes`` from byte ``addr`` (word-aligned) through the host read port."""
        out = b""
        for i in range(-(-nbytes // self.wb)):
            self.dut.host_read__addr.value = addr // self.wb + i
            await RisingEdge(self.dut.clk)
            await RisingEdge(self.dut.clk)
            out += int(self.dut.host_read__data.value).to_bytes(self.wb, "little")
        return out[:nbytes]

    async def result(self, job: SparseJob):
        raw = await self.read_memory(job.out_addr, job.out_bytes)
        return job.read_result(bytes(job.out_addr) + raw), raw
