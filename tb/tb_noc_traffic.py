"""cocotb traffic runs on the generated Verilog of :class:`accelpool.hw.noc.traffic.TrafficMesh`.

The generators and checkers are hardware; Python sets the pattern, the load and the
ejection stall probability, lets the simulator run, then stops the sources, waits for the
network to drain and reads the totals: every packet sent is received (the checkers have
already verified each one arrived once, intact and in order per pair) and none is flagged.
A network that does not drain within the limit is deadlocked (or livelocked) and fails.
"""

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from accelpool.tb.cocotb_common import hold_reset, start_clock
from accelpool.tb.harness import tb_params

UNIFORM, TRANSPOSE, HOTSPOT, NEIGHBOUR = range(4)
PATTERNS = {"uniform": UNIFORM, "transpose": TRANSPOSE, "hotspot": HOTSPOT,
            "neighbour": NEIGHBOUR}
ONE = 1 << 16   # probabilities are in 1/65536


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.p = tb_params()
        self.nodes = self.p["cols"] * self.p["rows"]
        start_clock(dut)
        for name in ("enable", "rate", "payload_flits", "pattern", "hot_x", "hot_y",
                     "hot_frac", "seed", "stall", "clear", "load_seed"):
            getattr(dut, name).value = 0

    async def reset(self, seed):
        d = self.dut
        await hold_reset(d)
        d.seed.value = seed
        d.load_seed.value = 1
        await RisingEdge(d.clk)
        d.load_seed.value = 0

    def totals(self):
        d = self.dut
        return {k: int(getattr(d, k).value) for k in (
            "generated", "dropped", "sent", "sent_flits", "received", "received_flits",
            "errors", "lat_sum", "lat_max")}

    async def run(self, *, pattern, load, payload_flits, stall, cycles, drain_limit=20000):
        """Offer ``load`` flits/node/cycle for ``cycles``, then drain; returns the totals."""
        d = self.dut
        packet_flits = payload_flits + 1
        d.clear.value = 1               # the network is drained: restart the totals
        await RisingEdge(d.clk)
        d.clear.value = 0
        d.rate.value = min(ONE, round(load / packet_flits * ONE))
        d.payload_flits.value = payload_flits
        d.pattern.value = pattern
        d.hot_x.value = self.p["cols"] // 2
        d.hot_y.value = self.p["rows"] // 2
        d.hot_frac.value = 64            # a quarter of all packets go to the hotspot
        d.stall.value = round(stall * ONE)
        d.enable.value = 1
        await ClockCycles(d.clk, cycles)
        d.enable.value = 0
        waited = 0
        while True:
            await ClockCycles(d.clk, 50)
            waited += 50
            t = self.totals()
            if int(d.idle.value) and t["sent"] == t["received"]:
                break
            assert waited < drain_limit, (
                f"network did not drain within {drain_limit} cycles (deadlock?): {t}")
        await ClockCycles(d.clk, 4)
        t = self.totals()
        assert t["errors"] == 0, f"checkers flagged {t['errors']} flits: {t}"
        assert t["sent"] == t["received"], t
        assert t["generated"] == t["sent"] + t["dropped"], t
        assert t["sent_flits"] == t["received_flits"] == t["received"] * packet_flits, t
        return t


@cocotb.test()
async def patterns(dut):
    """All four patterns below and far above saturation, 1-flit and 4-flit packets,
    30% random stalls at every ejection port."""
    tb = TB(dut)
    await tb.reset(seed=1234)
    cycles = tb.p.get("cycles", 3000)
    for name, pattern in PATTERNS.items():
        for payload_flits, load in ((3, 0.2), (0, 0.2), (3, 1.2)):
            t = await tb.run(pattern=pattern, load=load, payload_flits=payload_flits,
                             stall=0.3, cycles=cycles // 3)
            dut._log.info(f"{name:9s} payload={payload_flits} load={load}: "
                          f"{t['received']} packets, all delivered once, in order, intact")
            assert t["received"] > 0


@cocotb.test()
async def overload(dut):
    """At least twice the saturation load (1.2 flits/node/cycle offered; uniform random
    saturates near 0.5 on a 4x4 mesh, see ``bench/bench_noc.py``) for ``cycles`` per
    pattern with random ejection stalls: it must drain."""
    tb = TB(dut)
    await tb.reset(seed=99)
    cycles = tb.p.get("cycles", 100_000)
    for name, pattern in PATTERNS.items():
        t = await tb.run(pattern=pattern, load=1.2, payload_flits=3, stall=0.1, cycles=cycles)
        dut._log.info(f"{name}: {t}")
