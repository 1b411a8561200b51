"""cocotb testbench pieces shared by the DMU and LPU benches (``tb/tb_dmu.py``, ``tb/tb_lpu.py``).

:class:`GemmTB` wraps the top of :func:`accelpool.tb.gemm_sim.cocotb_top`: clock, reset, stream drivers
(each with an optional 0/1 idle/backpressure pattern), scratchpad load/read-back, and
:meth:`GemmTB.gemm`, which lays out the operands, runs one EXEC command, checks the busy
cycle count against the cost model and returns D.
"""

from __future__ import annotations

import numpy as np
from cocotb.triggers import RisingEdge

from accelpool.spec.gemm_layout import GemmLayout
from accelpool.tb.gemm_sim import plan_regions
from accelpool.sched.cost.systolic import gemm_cycles
from accelpool.tb.cocotb_common import reset_dut, start_clock
from accelpool.tb.cocotb_streams import StreamSink, StreamSource, random_pattern
from accelpool.tb.harness import tb_params

__all__ = ["GemmTB", "SENTINEL", "unit_from_params", "random_shapes"]

#: Byte the D region is filled with before a run: padding must keep it.
SENTINEL = 0xA5


def unit_from_params(unit_cls):
    """``unit_cls`` built with the ``rows``, ``cols`` and ``scratchpad_bytes`` of :func:`tb_params`."""
    p = tb_params()
    return unit_cls(rows=p["rows"], cols=p["cols"], scratchpad_bytes=p["scratchpad_bytes"])


def random_shapes(rng, count: int) -> list[tuple[int, int, int]]:
    """``count`` random ``(m, n, k)``, each below ``tb_params()["max_dim"]`` (default 13)."""
    hi = tb_params().get("max_dim", 13)
    return [tuple(int(x) for x in rng.integers(1, hi, 3)) for _ in range(count)]


class GemmTB:
    """Clock, reset, streams and GEMM runs on a unit-plus-scratchpad top.

    Parameters
    ----------
    dut : cocotb handle
    unit : SystolicGemm
        A Python instance with the same parameters as the simulated unit (for its layout
        and command encoding; never elaborated here).
    backpressure : bool
        Random idle cycles on the command and write-data streams and random ``ready``
        on the read-data stream.
    """

    def __init__(self, dut, unit, *, backpressure: bool, seed: int = 1):
        self.dut, self.unit = dut, unit
        start_clock(dut)
        pat = (lambda s: random_pattern(0.6, seed + s)) if backpressure else (lambda s: None)
        self.cmd = StreamSource(dut, "cmd", dut.clk, pat(1))
        self.wr_cmd = StreamSource(dut, "wr_cmd", dut.clk, pat(2))
        self.wr_data = StreamSource(dut, "wr_data", dut.clk, pat(3))
        self.rd_cmd = StreamSource(dut, "rd_cmd", dut.clk, pat(4))
        self.rd_data = StreamSink(dut, "rd_data", dut.clk, pat(5))
        self.wb = unit.word_bytes

    async def reset(self):
        await reset_dut(self.dut)

    def _xfer(self, addr_bytes: int, nbytes: int) -> int:
        return (addr_bytes // self.wb) | ((nbytes // self.wb) << self.unit.addr_width)

    async def write(self, addr: int, image: bytes):
        await self.wr_cmd.send(self._xfer(addr, len(image)))
        for i in range(0, len(image), self.wb):
            await self.wr_data.send(int.from_bytes(image[i:i + self.wb], "little"))
        while int(self.dut.wr_cmd__ready.value) == 0:
            await RisingEdge(self.dut.clk)

    async def read(self, addr: int, nbytes: int) -> bytes:
        await self.rd_cmd.send(self._xfer(addr, nbytes))
        words = [await self.rd_data.recv() for _ in range(nbytes // self.wb)]
        return b"".join(w.to_bytes(self.wb, "little") for w in words)

    async def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None, *,
                   out_dtype, extra_args: dict | None = None, check_cycles: bool = True) -> np.ndarray:
        """Run ``D = (C or 0) + A B`` on the unit; check cycles and untouched padding.

        The measured busy cycles are kept in :attr:`last_cycles`; with ``check_cycles``
        they must equal the cost model's.
        """
        m, k = a.shape
        n = b.shape[1]
        out_dtype = np.dtype(out_dtype)
        lay = GemmLayout(self.unit.rows, self.unit.cols, self.wb, m, n, k)
        a_at, b_at, c_at, d_at, end = plan_regions(lay, a.dtype.itemsize, out_dtype.itemsize)
        assert end <= self.unit.scratchpad_bytes, f"{m}x{k}x{n} does not fit the scratchpad"
        await self.write(a_at, lay.a_image(a, pad_byte=SENTINEL))   # row padding: never read
        await self.write(b_at, lay.b_image(b))
        if c is not None:
            await self.write(c_at, lay.c_image(c))
        d_bytes = lay.region_bytes("d", out_dtype.itemsize)
        await self.write(d_at, bytes([SENTINEL]) * d_bytes)

        args = dict(a_addr=a_at, b_addr=b_at, c_addr=c_at, d_addr=d_at, m=m, n=n, k=k,
                    accumulate=int(c is not None), **(extra_args or {}))
        word = self.unit.cmd_layout.const({"func": self.unit.funcs.GEMM, "args": args})
        await self.cmd.send(word.as_value().value)
        cycles = 0
        while True:
            await RisingEdge(self.dut.clk)
            if not int(self.dut.busy.value):
                break
            cycles += 1
        self.last_cycles = cycles
        want = gemm_cycles(self.unit.rows, self.unit.cols, m, n, k,
                           word_elems=self.wb // a.dtype.itemsize)
        assert cycles == want or not check_cycles, f"{m}x{k}x{n}: {cycles} busy cycles, cost model says {want}"

        raw = await self.read(d_at, d_bytes)
        full = np.frombuffer(raw[:lay.mp * lay.np_ * out_dtype.itemsize], dtype=np.uint8)
        full = full.reshape(lay.mp, lay.np_ * out_dtype.itemsize)
        pad = np.ones(full.shape, bool)
        pad[:m, :n * out_dtype.itemsize] = False
        assert np.all(full[pad] == SENTINEL), "the unit wrote outside D[M,N]"
        return lay.d_from_image(raw, out_dtype)
