"""The built-in units: each module declares its unit (:class:`accelpool.spec.unit.UnitSpec`)
and its EXEC contract, below both the RTL that executes it and the compiler that emits it.

A unit is added with its own module here and one line below (or, outside accelpool,
with a package named in ``ACCELPOOL_UNITS``: ``docs/adding-a-unit.md``).
"""

from accelpool.spec.unit import load_plugins

from . import layout          # the memory tile's layout engine (kind code 0)
from . import dmu             # 1
from . import lpu             # 2
from . import smu             # 3
from . import ce              # 4
from . import afu             # 5
from . import gnn             # 6

load_plugins()
