"""cocotb drivers for valid/ready streams as Amaranth names their Verilog ports.

A stream port ``foo`` of an Amaranth component becomes ``foo__valid``, ``foo__ready``
and ``foo__payload`` in Verilog. :class:`StreamSource` drives one, :class:`StreamSink`
consumes one; both own a task (``start()``/``stop()`` implicit in ``send``/``recv``) and
take a 0/1 pattern for idle insertion and backpressure.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterator

from cocotb.triggers import ReadOnly, RisingEdge


def random_pattern(p_active: float = 0.7, seed: int = 0) -> Iterator[int]:
    """An endless random 0/1 pattern that is 1 with probability ``p_active``."""
    rng = random.Random(seed)
    while True:
        yield int(rng.random() < p_active)


class _Stream:
    """The ``<name>__valid``/``__ready``/``__payload`` handles of a stream port, its clock
    and its 0/1 pattern (all 1 when none is given)."""

    def __init__(self, dut, name: str, clk, pattern: Iterator[int] | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.pattern = pattern or itertools.repeat(1)


class StreamSource(_Stream):
    """Drives ``<name>__valid``/``__payload`` and waits on ``__ready``."""

    def __init__(self, dut, name: str, clk, pattern: Iterator[int] | None = None):
        super().__init__(dut, name, clk, pattern)
        self.valid.value = 0

    async def send(self, value: int) -> None:
        """Send one transfer (returns after the clock edge that accepted it)."""
        while not next(self.pattern):
            await RisingEdge(self.clk)
        self.payload.value = value
        self.valid.value = 1
        while True:
            await RisingEdge(self.clk)
            if int(self.ready.value):
                break
        self.valid.value = 0


class StreamSink(_Stream):
    """Drives ``<name>__ready`` and samples ``__payload`` on accepted transfers."""

    def __init__(self, dut, name: str, clk, pattern: Iterator[int] | None = None):
        super().__init__(dut, name, clk, pattern)
        self.ready.value = 0

    async def recv(self) -> int:
        """Receive one transfer's payload."""
        while True:
            ready = next(self.pattern)
            self.ready.value = ready
            await RisingEdge(self.clk)
            if ready and int(self.valid.value):
                # Sampled at the edge: values still hold the pre-edge state until ReadOnly
                # of the next delta, so read what the DUT presented with valid.
                value = int(self.payload.value)
                self.ready.value = 0
                return value
