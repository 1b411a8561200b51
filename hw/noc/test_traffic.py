"""The HDL traffic generators and checkers: amaranth.sim checks, then cocotb traffic runs on
Verilator and Icarus (uniform random, transpose, hotspot, nearest-neighbour; random stalls
at every ejection port; overload without deadlock)."""

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from accelpool.spec.config import DEFAULT_CONFIG, MeshConfig, load_config
from accelpool.hw.noc.traffic import Pattern, TrafficChecker, TrafficGenerator, TrafficMesh
from accelpool.tb.harness import run_cocotb

SMALL = MeshConfig(cols=2, rows=2, flit_bits=64, buffer_flits=4)


def _sim(top, bench):
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("fault", [None, "flip", "drop", "duplicate"])
def test_checker_catches_faults(fault):
    """A generator at (0,0) straight into the checker of (1,0): clean traffic has no
    errors; a flipped payload bit, a dropped packet or a repeated packet is counted."""
    mesh = MeshConfig(cols=2, rows=1, flit_bits=64, buffer_flits=4)
    m = Module()
    m.submodules.gen = gen = TrafficGenerator(mesh, 0, 0)
    m.submodules.chk = chk = TrafficChecker(mesh, 1, 0)
    corrupt, drop, dup = Signal(), Signal(), Signal()
    last_head = Signal.like(gen.out.payload)
    m.d.comb += [
        chk.inp.valid.eq(gen.out.valid & ~drop), gen.out.ready.eq(chk.inp.ready | drop),
        chk.inp.payload.eq(gen.out.payload),
    ]
    with m.If(gen.out.valid & gen.out.ready & gen.out.payload.head):
        m.d.sync += last_head.eq(gen.out.payload)
    with m.If(corrupt):
        m.d.comb += chk.inp.payload.data.eq(gen.out.payload.data ^ 1)
    with m.If(dup):
        m.d.comb += [chk.inp.valid.eq(1), chk.inp.payload.eq(last_head), gen.out.ready.eq(0)]

    async def bench(ctx):
        ctx.set(gen.seed, 5)
        ctx.set(gen.load_seed, 1)
        await ctx.tick()
        ctx.set(gen.load_seed, 0)
        ctx.set(gen.rate, 1 << 15)
        ctx.set(gen.payload_flits, 2)
        ctx.set(gen.pattern, Pattern.UNIFORM)
        ctx.set(chk.stall, 1 << 14)
        ctx.set(gen.enable, 1)
        packets = 0
        injected = False
        for cycle in range(400):
            head = ctx.get(gen.out.payload.head)
            fire = ctx.get(gen.out.valid) and ctx.get(chk.inp.ready)
            if packets == 5 and fire and not injected:
                # one fault, once: a flipped bit in a body flit, a lost packet (its head
                # vanishes, so its body arrives headless), a head seen twice
                ctx.set(corrupt, fault == "flip" and not head)
                ctx.set(drop, fault == "drop" and head)
                ctx.set(dup, fault == "duplicate" and not head)
                injected = fault is not None and (head == (fault == "drop"))
            await ctx.tick()
            ctx.set(corrupt, 0)
            ctx.set(drop, 0)
            ctx.set(dup, 0)
            if fire and head:
                packets += 1
        ctx.set(gen.enable, 0)
        await ctx.tick().until(gen.idle)
        await ctx.tick().repeat(20)
        errors = ctx.get(chk.errors)
        if fault is None:
            assert errors == 0
            assert ctx.get(chk.packets) == ctx.get(gen.sent) > 20
        else:
            assert injected and errors > 0, fault
    _sim(m, bench)


def test_traffic_mesh_in_amaranth_sim():
    dut = TrafficMesh(SMALL)

    async def bench(ctx):
        ctx.set(dut.seed, 77)
        ctx.set(dut.load_seed, 1)
        await ctx.tick()
        ctx.set(dut.load_seed, 0)
        ctx.set(dut.rate, 1 << 14)
        ctx.set(dut.payload_flits, 3)
        ctx.set(dut.stall, 1 << 15)
        ctx.set(dut.enable, 1)
        await ctx.tick().repeat(600)
        ctx.set(dut.enable, 0)
        await ctx.tick().until(dut.idle)
        await ctx.tick().repeat(60)
        assert ctx.get(dut.errors) == 0
        assert ctx.get(dut.sent) == ctx.get(dut.received) > 100
        assert ctx.get(dut.generated) == ctx.get(dut.sent) + ctx.get(dut.dropped)
        assert ctx.get(dut.received_flits) == 4 * ctx.get(dut.received)
    _sim(dut, bench)


# cocotb on the generated Verilog. The default suite uses the default pool's mesh (3x3,
# quick to build); the long overload run uses the benchmark's 4x4 (same build folder).
COCOTB_MESH = load_config(DEFAULT_CONFIG).mesh
BENCH_MESH = MeshConfig(cols=4, rows=4, flit_bits=64, buffer_flits=4)


def _params(mesh):
    return {"cols": mesh.cols, "rows": mesh.rows, "flit_bits": mesh.flit_bits,
            "buffer_flits": mesh.buffer_flits}


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_traffic_patterns_cocotb(sim):
    """Uniform, transpose, hotspot and neighbour traffic, with and without overload."""
    run_cocotb(TrafficMesh(COCOTB_MESH), name="noc_traffic", params=_params(COCOTB_MESH),
               test_module="accelpool.tb.tb_noc_traffic", sim=sim,
               env={"cycles": 3000 if sim == "verilator" else 900})


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator"])
def test_overload_100k_cycles_cocotb(sim):
    """Twice the saturation load for 100k cycles, every pattern: no deadlock, no loss."""
    run_cocotb(TrafficMesh(BENCH_MESH), name="noc_traffic", params=_params(BENCH_MESH),
               test_module="accelpool.tb.tb_noc_traffic", sim=sim, testcase="overload",
               env={"cycles": 100_000})
