"""cocotb driver for a :class:`accelpool.tb.unit_top.UnitTop`: load the scratchpad, run a command, read back.

Every stream of the top (command, scratchpad load and read-back channels) takes an
idle/backpressure pattern, so a test runs at full rate or with random stalls by option.
"""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge

from accelpool.tb.cocotb_common import reset_dut, start_clock
from accelpool.tb.cocotb_streams import StreamSink, StreamSource, random_pattern


class UnitTB:
    """Clock, reset and the streams of a unit + scratchpad top.

    Parameters
    ----------
    dut : cocotb handle
    word_bytes : int
        Scratchpad word size.
    addr_width : int
        Scratchpad word-address width (for the stream channel commands).
    stall : float or None
        Probability of an idle/backpressure cycle on every stream (None: full rate).
    seed : int
    """

    def __init__(self, dut, *, word_bytes: int, addr_width: int, stall: float | None = None,
                 seed: int = 0):
        self.dut = dut
        self.wb = word_bytes
        self.aw = addr_width
        start_clock(dut)
        pat = (lambda s: random_pattern(1 - stall, seed + s)) if stall else (lambda s: None)
        self.cmd = StreamSource(dut, "cmd", dut.clk, pat(1))
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk)
        self.wr_data = StreamSource(dut, "wr_data", dut.clk, pat(2))
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk)
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, pat(3))

    async def reset(self):
        await reset_dut(self.dut)

    def _xfer(self, addr: int, count: int) -> int:
        if addr % self.wb:
            raise ValueError(f"Scratchpad address {addr} is not word-aligned ({self.wb} bytes)")
        return (addr // self.wb) | (count << self.aw)

    async def load(self, addr: int, blob: bytes) -> None:
        """Write ``blob`` (padded to whole words) at byte address ``addr``."""
        blob = bytes(blob) + bytes(-len(blob) % self.wb)
        n = len(blob) // self.wb
        await self.wr_cmd.send(self._xfer(addr, n))
        for i in range(n):
            await self.wr_data.send(int.from_bytes(blob[i * self.wb:(i + 1) * self.wb], "little"))
        while int(self.dut.spad_busy.value):
            await RisingEdge(self.dut.clk)

    async def read(self, addr: int, nbytes: int) -> bytes:
        """Read ``nbytes`` from byte address ``addr``."""
        n = -(-nbytes // self.wb)
        await self.rd_cmd.send(self._xfer(addr, n))
        words = [await self.rd_data.recv() for _ in range(n)]
        return b"".join(w.to_bytes(self.wb, "little") for w in words)[:nbytes]

    async def execute(self, payload: int, limit: int = 10_000_000) -> int:
        """Send one command; returns the cycles from its acceptance until ``busy`` falls."""
        await self.cmd.send(payload)
        await ReadOnly()               # the values of the first cycle after acceptance
        t = 0
        while int(self.dut.busy.value):
            await RisingEdge(self.dut.clk)
            await ReadOnly()
            t += 1
            assert t < limit, f"unit still busy after {limit} cycles"
        await RisingEdge(self.dut.clk)
        return t
