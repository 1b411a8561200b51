"""Cost models: per-unit cycle formulas and NoC transfer time.

Each unit kind's cycle formula lives in ``sched/cost/<kind>.py`` as
``cycles(tile: TileConfig, **shape) -> int``, taking the shape arguments of the unit's
EXEC command; the NoC's in ``sched/cost/noc.py``.
"""
