"""Test helper: drive a combinational arithmetic block in amaranth.sim over operand vectors."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from amaranth.sim import Simulator

__all__ = ["run_vectors", "VECTORS_DEFAULT", "VECTORS_SLOW"]

#: Random operand sets per block: default suite and ``@pytest.mark.slow``.
VECTORS_DEFAULT = 10_000
VECTORS_SLOW = 200_000


def run_vectors(dut, inputs: Mapping[str, Sequence[int]], output: str) -> np.ndarray:
    """Apply each row of ``inputs`` (port name -> values) and collect ``output`` (raw bits).

    Returns the outputs as an int64 array (unsigned view of the port's bits).
    """
    names = list(inputs)
    cols = [np.asarray(inputs[n]).astype(np.int64).tolist() for n in names]
    n = len(cols[0])
    out = np.zeros(n, dtype=np.int64)
    ports = [getattr(dut, name) for name in names]
    oport = getattr(dut, output)
    width = len(oport)

    async def bench(ctx):
        for i in range(n):
            for p, c in zip(ports, cols):
                ctx.set(p, c[i])
            out[i] = ctx.get(oport) & ((1 << width) - 1)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    return out
