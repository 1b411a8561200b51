"""Tile construction checks (no simulation): unit choice, clear errors, register values.

The tile in simulation is exercised through the SoC in ``hw/test_soc.py``.
"""

from __future__ import annotations

import pytest

from hw.config import UnitKind, load_config, parse_config
from hw.tile import (REGISTERS, ComputeTile, TileError, buildable_kinds, identity_registers,
                     unit_word_bits)
from sched.pool import CapReg, capability_registers

DEFAULT = load_config("default")


def test_unlanded_unit_kind_is_refused_by_name(monkeypatch):
    import hw.tile
    builders = dict(hw.tile.UNIT_BUILDERS)
    builders[UnitKind.SMU] = ("hw.smu_not_landed", builders[UnitKind.SMU][1])
    monkeypatch.setattr(hw.tile, "UNIT_BUILDERS", builders)
    with pytest.raises(TileError, match=r"Tile 'smu0' at \(0, 1\) is a smu, whose RTL "
                                        r"\(hw/smu.py\) has not landed or is not wired into "
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
