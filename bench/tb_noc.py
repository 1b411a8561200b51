"""cocotb side of ``bench/bench_noc.py``: a load sweep on :class:`accelpool.hw.noc.traffic.TrafficMesh`.

For each (payload flits, offered load) in ``tb_params()["points"]``: restart the totals,
warm up, restart them again, measure for ``measure`` cycles, stop the sources and drain.
Accepted throughput is the flits received during the window; latency is the mean from a
packet's creation (so source queueing counts) to its head's ejection, over the packets
whose heads arrived in the window. The figures go to ``tb_params()["out"]`` as JSON.
"""

import json

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from accelpool.tb.harness import tb_params

ONE = 1 << 16


@cocotb.test()
async def load_sweep(dut):
    p = tb_params()
    nodes = p["cols"] * p["rows"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name in ("enable", "rate", "payload_flits", "pattern", "hot_x", "hot_y", "hot_frac",
                 "seed", "stall", "clear", "load_seed"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    dut.seed.value = 2024
    dut.load_seed.value = 1
    await RisingEdge(dut.clk)
    dut.load_seed.value = 0

    async def clear():
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0
        await ClockCycles(dut.clk, 2)   # the totals are registered

    results = []
    for payload, load in p["points"]:
        flits = payload + 1
        dut.payload_flits.value = payload
        dut.rate.value = min(ONE, round(load / flits * ONE))
        dut.pattern.value = p.get("pattern", 0)
        dut.enable.value = 1
        await ClockCycles(dut.clk, p["warmup"])
        await clear()
        await ClockCycles(dut.clk, p["measure"] - 2)
        got = {k: int(getattr(dut, k).value) for k in (
            "generated", "dropped", "received", "received_flits", "lat_sum", "lat_max",
            "errors")}
        dut.enable.value = 0
        # Drained: the sources' queues are empty and nothing arrives for 100 cycles. (The
        # sent/received totals cannot be compared here: they were cleared mid-flight.)
        last = -1
        for _ in range(400):
            await ClockCycles(dut.clk, 100)
            now = int(dut.received.value)
            if int(dut.idle.value) and now == last:
                break
            last = now
        else:
            raise AssertionError(f"network did not drain after load {load}")
        assert int(dut.errors.value) == 0
        window = p["measure"]
        results.append({
            "payload_flits": payload, "offered": load,
            "offered_measured": got["generated"] * flits / (nodes * window),
            "accepted": got["received_flits"] / (nodes * window),
            "latency": got["lat_sum"] / max(1, got["received"]),
            "latency_max": got["lat_max"], "packets": got["received"],
            "dropped": got["dropped"],
        })
        dut._log.info(str(results[-1]))
        await clear()
    with open(p["out"], "w") as f:
        json.dump(results, f)
