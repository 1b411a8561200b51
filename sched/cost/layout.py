"""Cycle model of the memory tile's layout engine (``hw/layout_engine.py``).

Written from the engine's structure, not fitted: one SETUP cycle after the EXEC is
accepted (the strides that need a product), one cycle per destination element (the
source word is read; the element is merged into the destination word the cycle after,
which is written when full or at the end of its row), and one DRAIN cycle that writes
the last word. So ``busy`` stays high for ``elements + 2`` cycles after the accepting
cycle, whatever the element size, strides, padding or pitches: padding elements take
their cycle too (they read nothing). In a tile's trace the EXEC lasts one cycle more,
as for every unit (the next command issues the cycle after ``busy`` falls). Checked
against the RTL over a sweep in ``hw/test_layout_engine.py``.
"""

from __future__ import annotations

from typing import Any, Mapping

from accelpool.sched.lower.common import CodegenError
from accelpool.sched.lower.layout import layout_shape
from accelpool.spec.config import UnitKind

from .formula import FORMULAS, Formula

__all__ = ["cycles", "elements", "OVERHEAD"]

#: SETUP and DRAIN.
OVERHEAD = 2

_FUNCS = ("im2col", "transpose")


def _key(func) -> str:
    return (func.name if hasattr(func, "name") else str(func)).lower()


def elements(func, **args) -> int:
    """Destination elements an EXEC writes (the engine's loop trip count)."""
    f = _key(func)
    if f == "im2col":
        return (args.get("channels", 0) * args.get("kernel_h", 0) * args.get("kernel_w", 0)
                * args.get("out_h", 0) * args.get("out_w", 0))
    if f == "transpose":
        return args.get("rows", 0) * args.get("cols", 0)
    raise ValueError(f"Unknown layout engine function {f!r}; accepted: {', '.join(_FUNCS)}")


def cycles(func, **args) -> int:
    """Cycles from the layout engine accepting an EXEC until ``busy`` falls.

    Parameters
    ----------
    func : str or hw.layout_engine.MemFunc
        ``im2col`` or ``transpose``.
    **args
        The EXEC's :data:`accelpool.spec.units.layout.MemArgs` fields; IM2COL uses ``channels``,
        ``kernel_h``, ``kernel_w``, ``out_h``, ``out_w``, TRANSPOSE ``rows`` and ``cols``
        (omitted fields are 0, as in the encoded command); the others do not change the
        count.
    """
    return elements(func, **args) + OVERHEAD


def _engine_cycles(tile: Any, func: Any, **args: Any) -> int:
    return cycles(func, **args)


def layout_arguments(op: Any, shape: Mapping[str, int], tile: Any) -> dict[str, Any]:
    """The layout engine formula's arguments: the EXEC's function and shape fields, as
    codegen computes them (:func:`accelpool.sched.lower.layout.layout_shape`). A copy (one
    TRANSPOSE of its n elements, whose factors depend on the source's layout) or a LAYOUT
    micro-op codegen does not lower is priced as one EXEC moving n elements (the engine's
    cycles depend on the destination elements only)."""
    try:
        func, args = layout_shape(op, tile)
    except CodegenError:
        return {"func": "transpose", "rows": shape.get("n", 0), "cols": 1}
    return {"func": func, **args}


FORMULAS.register(UnitKind.MEMORY, Formula(_engine_cycles, layout_arguments))
