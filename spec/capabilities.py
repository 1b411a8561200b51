"""The capability registers: what each tile tells software about itself.

Capability registers (read-only, per tile, 32 bits each)
--------------------------------------------------------
=====  ==============  =================================================================
index  name            contents
=====  ==============  =================================================================
0      ``KIND``        unit kind code, :attr:`accelpool.spec.config.UnitKind.value` (0 = memory)
1      ``VERSION``     major << 8 | minor of the unit's hardware; major must equal
                       :data:`CAP_VERSION_MAJOR`
2      ``DTYPES``      bit ``DType.value`` set for every input data type the unit accepts
3      ``GEOMETRY``    array size: DMU/LPU ``rows << 16 | cols``; CE
                       ``oc_lanes << 16 | ic_lanes``; SMU/AFU/GNN ``lanes``; memory 0
4      ``SPAD_BYTES``  scratchpad bytes (memory tile: global memory bytes)
=====  ==============  =================================================================

The RTL (``hw/tile``) exposes what :func:`capability_registers` computes for a tile built
from a :class:`~accelpool.spec.config.TileConfig`, and discovery
(:func:`accelpool.sched.pool.discover`) checks the hardware against it: one definition for both.
"""

from __future__ import annotations

import enum
from typing import Mapping

from accelpool.spec.config import DType, TileConfig, UnitKind
from accelpool.spec.unit import SpecTable

__all__ = ["CapReg", "CAP_VERSION_MAJOR", "CAP_VERSION", "GEOMETRY_KEYS", "capability_registers",
           "describe_register"]


class CapReg(enum.IntEnum):
    """Capability register indices (see the module docstring)."""

    KIND = 0
    VERSION = 1
    DTYPES = 2
    GEOMETRY = 3
    SPAD_BYTES = 4


CAP_VERSION_MAJOR = 1
#: The version this software expects: major.minor = 1.0.
CAP_VERSION = CAP_VERSION_MAJOR << 8


#: Tile parameters packed into ``GEOMETRY``, 16 bits each, first one highest.
GEOMETRY_KEYS: Mapping[UnitKind, tuple[str, ...]] = SpecTable((), lambda s: s.geometry)


def capability_registers(tile: TileConfig) -> dict[CapReg, int]:
    """The capability register values a tile built from ``tile`` exposes."""
    geo_keys = GEOMETRY_KEYS[tile.kind]
    geometry = 0
    for k in geo_keys:
        geometry = (geometry << 16) | tile[k]
    spad = tile["bytes"] if tile.kind is UnitKind.MEMORY else tile.scratchpad_bytes
    return {
        CapReg.KIND: tile.kind.value,
        CapReg.VERSION: CAP_VERSION,
        CapReg.DTYPES: sum(1 << d.value for d in tile.dtypes),
        CapReg.GEOMETRY: geometry,
        CapReg.SPAD_BYTES: spad,
    }


def describe_register(reg: CapReg, value: int) -> str:
    """``value`` of register ``reg`` as a person reads it (``"1 (dmu)"``, ``"0x3 (bf16/int8)"``)."""
    if reg is CapReg.KIND:
        try:
            return f"{value} ({UnitKind(value).key})"
        except ValueError:
            return f"{value} (no such kind)"
    if reg is CapReg.DTYPES:
        names = [d.key for d in DType if value >> d.value & 1]
        return f"0x{value:x} ({'/'.join(names) or 'none'})"
    if reg is CapReg.VERSION:
        return f"{value >> 8}.{value & 0xFF}"
    if reg is CapReg.GEOMETRY:
        return f"0x{value:x}"
    return str(value)
