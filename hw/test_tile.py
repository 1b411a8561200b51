"""Tile construction checks (no simulation): unit choice, clear errors, register values.

The tile in simulation is exercised through the SoC in ``hw/test_soc.py``.
"""

from __future__ import annotations

import pytest

from accelpool.spec.config import UnitKind, load_config, parse_config
from accelpool.hw.tile import (REGISTERS, ComputeTile, TileError, buildable_kinds,
                               identity_registers, unit_word_bits)
from accelpool.spec.capabilities import CapReg, capability_registers

DEFAULT = load_config("default")


def test_a_unit_kind_without_rtl_is_refused_by_name(monkeypatch):
    import accelpool.hw.tile as tile_mod
    tile_mod.UNIT_RTL[UnitKind.SMU]      # the built-in units are registered
    monkeypatch.delitem(tile_mod.UNIT_RTL._items, UnitKind.SMU)
    with pytest.raises(TileError, match=r"Tile 'smu0' at \(0, 1\) is a smu, whose RTL "
                                        r"\(hw/smu.py\) is missing or not wired into "
                                        r"tiles; kinds that can be built: dmu, lpu, ce, afu, gnn"):
        ComputeTile(DEFAULT.tile("smu0"), DEFAULT)


def test_memory_tile_is_not_a_compute_tile():
    with pytest.raises(TileError, match=r"Tile 'mem' is the memory tile"):
        ComputeTile(DEFAULT.memory, DEFAULT)


def test_bad_arguments():
    with pytest.raises(TypeError, match="Tile must be a TileConfig, not 'ce0'"):
        ComputeTile("ce0", DEFAULT)
    with pytest.raises(ValueError, match="Command memory depth must be an integer of at least 2, not 1"):
        ComputeTile(DEFAULT.tile("ce0"), DEFAULT, cmd_depth=1)


def test_buildable_kinds():
    assert set(buildable_kinds()) == {UnitKind.DMU, UnitKind.LPU, UnitKind.SMU, UnitKind.CE,
                                      UnitKind.AFU, UnitKind.GNN}


@pytest.mark.parametrize("name,unit_bits,spad_bits", [
    ("dmu0", 256, 256), ("lpu0", 512, 512), ("ce0", 64, 64), ("afu0", 128, 128),
    ("smu0", 1024, 1024), ("gnn0", 128, 128)])
def test_scratchpad_word_is_the_wider_of_unit_and_flit(name, unit_bits, spad_bits):
    t = ComputeTile(DEFAULT.tile(name), DEFAULT)
    assert unit_word_bits(t.unit) == unit_bits
    assert t.word_bits == spad_bits


def test_narrow_unit_gets_a_lane_adapter():
    doc = {"name": "narrow", "mesh": {"cols": 2, "rows": 1},
           "tile": [{"name": "mem", "kind": "memory", "x": 0, "y": 0},
                    {"name": "ce0", "kind": "ce", "x": 1, "y": 0, "ic_lanes": 4, "oc_lanes": 8}]}
    cfg = parse_config(doc)
    t = ComputeTile(cfg.tile("ce0"), cfg)
    assert unit_word_bits(t.unit) == 32 and t.word_bits == 64


def test_identity_registers_are_the_pool_managers():
    for tile in DEFAULT.tiles:
        regs = identity_registers(tile, DEFAULT.mesh, 1024)
        for reg, value in capability_registers(tile).items():
            assert regs[reg.name.lower()] == value
            assert REGISTERS[reg.name.lower()] == reg.value
        assert regs["coord"] == tile.y << 8 | tile.x
        assert regs["mesh"] == 64 << 16 | 3 << 8 | 3
    assert identity_registers(DEFAULT.tile("ce0"), DEFAULT.mesh)["geometry"] == 8 << 16 | 8
    assert CapReg.KIND.value == REGISTERS["kind"]


def test_narrow_unit_tile_end_to_end_in_amaranth_sim():
    """A CE with 32-bit words on a 64-bit scratchpad: LOAD, EXEC, STORE through the adapter."""
    import numpy as np
    from amaranth.sim import Simulator

    from accelpool.spec import isa
    from accelpool.spec.units.ce import CeFunc
    from accelpool.spec.ce_layout import ConvShape, pack_input, pack_weights, unpack_output
    from accelpool.hw.soc import Soc
    from accelpool.spec.golden.conv import conv_integer

    doc = {"name": "narrow", "mesh": {"cols": 2, "rows": 1},
           "tile": [{"name": "mem", "kind": "memory", "x": 0, "y": 0, "bytes": 4096},
                    {"name": "ce0", "kind": "ce", "x": 1, "y": 0, "ic_lanes": 4, "oc_lanes": 4,
                     "scratchpad_bytes": 2048}]}
    cfg = parse_config(doc)
    soc = Soc(cfg, cmd_depth=8)
    rng = np.random.default_rng(3)
    shape = ConvShape(c_in=4, c_out=4, height=3, width=3, kernel_h=3, kernel_w=3, pads=(1, 1, 1, 1))
    x = rng.integers(-128, 128, (4, 3, 3), dtype=np.int8)
    w = rng.integers(-128, 128, (4, 4, 3, 3), dtype=np.int8)
    xb, wb = pack_input(x, 4), pack_weights(w, 4, 4)
    ob = shape.output_bytes(4, False)
    m = dict(x=0, y=0)
    cmds = [isa.load(spad_addr=0, remote_addr=0, length=len(xb), **m),
            isa.load(spad_addr=0x100, remote_addr=0x100, length=len(wb), **m),
            isa.exec_cmd(UnitKind.CE, CeFunc.CONV,
                         **shape.exec_args(in_addr=0, w_addr=0x100, out_addr=0x400)),
            isa.store(spad_addr=0x400, remote_addr=0x400, length=ob, **m), isa.end()]
    image = bytearray(4096)
    image[0:len(xb)] = xb
    image[0x100:0x100 + len(wb)] = wb
    got = bytearray()
    trace = []

    async def bench(ctx):
        for i in range(0, len(image), 8):
            ctx.set(soc.mem_addr, i // 8)
            ctx.set(soc.mem_wdata, int.from_bytes(image[i:i + 8], "little"))
            ctx.set(soc.mem_we, 0xFF)
            await ctx.tick()
        ctx.set(soc.mem_we, 0)
        for i, c in enumerate(cmds):
            ctx.set(soc.cmd_addr, i)
            ctx.set(soc.cmd_data, c.encode())
            ctx.set(soc.cmd_en, 1)
            await ctx.tick()
        # the memory tile runs a lone END
        ctx.set(soc.cmd_tile, soc.memory_cmd_index)
        ctx.set(soc.cmd_addr, 0)
        ctx.set(soc.cmd_data, isa.end().encode())
        await ctx.tick()
        ctx.set(soc.cmd_en, 0)
        ctx.set(soc.start, 1)
        await ctx.tick()
        ctx.set(soc.start, 0)
        await ctx.tick().until(soc.all_done)
        assert not ctx.get(soc.any_fault)
        ctx.set(soc.mem_re, 1)
        for a in range(0x400, 0x400 + ob, 8):
            ctx.set(soc.mem_addr, a // 8)
            await ctx.tick()
            got.extend(ctx.get(soc.mem_rdata).to_bytes(8, "little"))
        ctx.set(soc.mem_re, 0)
        ctx.set(soc.reg_pos, 1)            # ce0 at (1, 0)
        for i in range(len(cmds)):
            ctx.set(soc.trace_addr, i)
            await ctx.tick()
            trace.append(ctx.get(soc.trace_data))

    sim = Simulator(soc)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = conv_integer(x[None], w, pads=shape.pads)[0]
    np.testing.assert_array_equal(unpack_output(bytes(got), shape, 4, False), want)
    # the trace stamps every command in issue order; the STORE waited for the whole EXEC
    from accelpool.sched.cost.ce import cycles as ce_cycles
    assert trace == sorted(trace) and len(set(trace)) == len(trace)
    assert trace[3] - trace[2] >= ce_cycles(cfg.tile("ce0"), **shape.exec_args(in_addr=0, w_addr=0x100, out_addr=0x400))
