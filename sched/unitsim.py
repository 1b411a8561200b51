"""EXEC semantics of every unit, on a scratchpad image: the ISA-level functional model.

:func:`execute` runs one decoded EXEC command the way the unit's module documents it
(``hw/<kind>.py``: data layout in the scratchpad, argument meaning) with the golden
arithmetic of :mod:`accelpool.spec.golden` (written from the IEEE 754 / ONNX specifications, not
from the RTL). The functional executor (:mod:`accelpool.sched.funcsim`) uses it to run compiled
command streams before any RTL does, so a wrong address, pitch or argument shows up as a
wrong result there; the unit tests check each model against its RTL unit.

Each unit kind registers a model with :func:`register` (:data:`MODELS`); the models live
beside this module (``sched/unitsim_<area>.py``) and are imported on first use. The memory tile's
layout engine (:mod:`accelpool.sched.unitsim_layout`) works on the global memory in place: its
"scratchpad image" is the whole memory.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.unit import Registry

__all__ = ["UnitSimError", "UnitModel", "MODELS", "register", "model_for", "execute", "spad_size",
           "check_run", "overlap"]


class UnitSimError(ValueError):
    """An EXEC the unit would not accept (bad arguments, out-of-range addresses)."""


#: ``model(tile, func, args, spad) -> written runs``: run one EXEC on ``spad`` (the tile's
#: whole scratchpad, modified in place) and return the ``(byte address, length)`` runs it
#: wrote. ``func`` is the unit's function enum member, ``args`` its argument fields as
#: plain ints (nested structs as mappings), ``tile`` the tile's config (unit parameters).
UnitModel = Callable[[TileConfig, Any, Mapping[str, Any], bytearray], list[tuple[int, int]]]

#: kind -> its model; the built-in units' models live beside this module
#: (``sched/unitsim_<area>.py``), a unit package's in its ``sched`` submodule.
MODELS = Registry("sched", "ISA-level model", builtin=(
    "accelpool.sched.unitsim_gemm", "accelpool.sched.unitsim_sparse",
    "accelpool.sched.unitsim_stream", "accelpool.sched.unitsim_layout"))


def register(kind: UnitKind) -> Callable[[UnitModel], UnitModel]:
    """Decorator: ``model`` is the EXEC semantics of unit ``kind``."""
    return MODELS.register(kind)


def model_for(kind: UnitKind) -> UnitModel:
    """The registered model of ``kind``."""
    try:
        return MODELS[kind]
    except KeyError:
        raise UnitSimError(f"No functional model of the {kind.key} unit's EXEC; models exist "
                           f"for {', '.join(sorted(k.key for k in MODELS)) or 'none'}") from None


def execute(tile: TileConfig, func: Any, args: Mapping[str, Any],
            spad: bytearray) -> list[tuple[int, int]]:
    """Run one EXEC of ``tile``'s unit on its scratchpad image ``spad`` (in place).

    Parameters
    ----------
    tile : TileConfig
        The tile (its kind selects the model, its parameters size the unit).
    func : enum member
        The unit's EXEC function (``accelpool.spec.units.dmu.DmuFunc.GEMM``, ...).
    args : mapping
        The EXEC argument fields (as :func:`accelpool.spec.isa.decode` returns them).
    spad : bytearray
        The tile's scratchpad, ``tile.scratchpad_bytes`` long.

    Returns
    -------
    list of (int, int)
        The ``(byte address, length)`` runs the EXEC wrote.

    Raises
    ------
    UnitSimError
        If no model exists for the kind, or the arguments are out of the unit's range.
    """
    return model_for(tile.kind)(tile, func, args, spad)


# -- checks every model makes (shared) ---------------------------------------------------

def spad_size(tile: TileConfig, spad: bytearray) -> int:
    """The scratchpad image's length, which must be the tile's scratchpad size."""
    if len(spad) != tile.scratchpad_bytes:
        raise UnitSimError(f"The scratchpad image of {tile.name} is {len(spad)} bytes; the "
                           f"tile has {tile.scratchpad_bytes}")
    return len(spad)


def check_run(unit: str, field: str, addr: int, nbytes: int, size: int, word: int) -> None:
    """``addr`` word-aligned and ``[addr, addr + nbytes)`` inside the scratchpad."""
    if addr % word:
        raise UnitSimError(f"{unit} {field} must be a multiple of the {word}-byte scratchpad "
                           f"word, not {addr:#x}")
    if addr < 0 or addr + nbytes > size:
        raise UnitSimError(f"{unit} {field} {addr:#x} + {nbytes} bytes leaves the "
                           f"{size}-byte scratchpad")


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two non-empty ``(address, length)`` runs share a byte."""
    return a[1] > 0 and b[1] > 0 and a[0] < b[0] + b[1] and b[0] < a[0] + a[1]
