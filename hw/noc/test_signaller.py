"""The SIGNAL sender: one head-and-tail SIGNAL flit per command, under backpressure; a
destination outside the mesh is dropped with ``error``."""

from amaranth.sim import Simulator

from accelpool.spec.config import MeshConfig
from accelpool.hw.noc.flit import PacketType, decode_header
from accelpool.hw.noc.signaller import SignalSender
from accelpool.tb.streams import stream_put

MESH = MeshConfig(cols=3, rows=2, flit_bits=64, buffer_flits=4)


def test_signals_and_bad_destination():
    dut = SignalSender(mesh=MESH, x=1, y=0)
    sent, busy_seen = [], []

    async def sink(ctx):
        n = 0
        while True:
            n += 1
            ctx.set(dut.req_out.ready, n % 3 == 0)       # the network takes one flit in 3
            _, _, valid, ready, payload, busy = await ctx.tick().sample(
                dut.req_out.valid, dut.req_out.ready, dut.req_out.payload, dut.busy)
            busy_seen.append(busy)
            if valid and ready:
                sent.append((int(payload.head), int(payload.tail), int(payload.data)))

    async def bench(ctx):
        await stream_put(ctx, dut.cmd, {"x": 2, "y": 1, "token": 7, "count": 300})
        await stream_put(ctx, dut.cmd, {"x": 3, "y": 0, "token": 1, "count": 1})   # off mesh
        await stream_put(ctx, dut.cmd, {"x": 0, "y": 0, "token": 2, "count": 1})
        await ctx.tick().until(~dut.busy)
        await ctx.tick()
        assert ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(sink)
    sim.add_testbench(bench)
    sim.run_until(1e-6)
    assert [(h, t) for h, t, _ in sent] == [(1, 1), (1, 1)]
    hdrs = [decode_header(d) for _, _, d in sent]
    assert hdrs[0] == {"dst": (2, 1), "src": (1, 0), "type": PacketType.SIGNAL, "length": 0,
                       "addr": 7 | 300 << 8}
    assert hdrs[1]["dst"] == (0, 0) and hdrs[1]["addr"] == 2 | 1 << 8
    assert any(busy_seen)
