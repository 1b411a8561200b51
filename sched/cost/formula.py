"""Each unit kind's cycle formula, and how a micro-op's shape becomes its arguments.

A unit's cost module (``sched/cost/<kind>.py``) registers a :class:`Formula` under its
kind in :data:`FORMULAS`; a unit package registers its own in its ``sched`` submodule.
:class:`accelpool.sched.cost.model.CostModel` prices an EXEC with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from accelpool.spec.unit import Registry

__all__ = ["Formula", "FORMULAS"]


@dataclass(frozen=True)
class Formula:
    """A unit's busy cycles for one EXEC.

    Attributes
    ----------
    cycles : callable
        ``cycles(tile, **args) -> int``, exact against the unit's RTL.
    args : callable, optional
        ``args(op, shape, tile) -> dict``: the formula's arguments for micro-op ``op``
        with IR shape arguments ``shape`` (:func:`accelpool.sched.cost.model.shape_args`)
        on ``tile``; without it, ``shape`` itself.
    """

    cycles: Callable[..., int]
    args: Callable[[Any, Mapping[str, int], Any], dict] | None = None

    def arguments(self, op: Any, shape: dict, tile: Any) -> dict:
        """The formula's arguments for ``op`` on ``tile``."""
        return shape if self.args is None else self.args(op, shape, tile)


#: kind -> its :class:`Formula`.
FORMULAS = Registry("sched", "cycle formula", builtin=(
    "accelpool.sched.cost.dmu", "accelpool.sched.cost.lpu", "accelpool.sched.cost.smu",
    "accelpool.sched.cost.ce", "accelpool.sched.cost.afu", "accelpool.sched.cost.gnn",
    "accelpool.sched.cost.layout"))
