"""The RTL of each unit kind: a builder taking the tile config, registered by the unit's module.

Every unit follows one contract: ``cmd`` (a stream of ``{func, args}``) accepted when
idle, ``busy``, and scratchpad ports with Amaranth's memory port signatures whose word
the unit chooses. ``hw/<kind>.py`` registers ``UNIT_RTL.register(UnitKind.X, builder)``;
a unit package registers its own in its ``hw`` submodule (:mod:`accelpool.spec.unit`).
"""

from accelpool.spec.unit import Registry

__all__ = ["UNIT_RTL"]

#: kind -> ``builder(tile: TileConfig) -> unit component``.
UNIT_RTL = Registry("hw", "RTL builder", builtin=(
    "accelpool.hw.dmu", "accelpool.hw.lpu", "accelpool.hw.smu", "accelpool.hw.ce",
    "accelpool.hw.afu", "accelpool.hw.gnn"))
