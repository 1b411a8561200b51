"""One numeric parameter of a pool config: default, accepted range, and its check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "Param"]


class ConfigError(ValueError):
    """A pool config that cannot be used; the message names the key and what is accepted."""


@dataclass(frozen=True)
class Param:
    """Schema of one numeric parameter: default, accepted range ``lo..hi`` (inclusive)."""

    default: int | float
    lo: int
    hi: int
    power_of_two: bool = False
    doc: str = ""
    integer: bool = True

    @property
    def accepted(self) -> str:
        what = "powers of two" if self.power_of_two else "integers" if self.integer else "numbers"
        return f"{what} {self.lo}..{self.hi}"

    def check(self, key: str, value: Any) -> int | float:
        """``value`` if it is accepted for ``key``, else :class:`ConfigError`."""
        types = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            raise ConfigError(f"{key}: {value!r} is not {'an integer' if self.integer else 'a number'}; "
                              f"accepted: {self.accepted}")
        if not self.lo <= value <= self.hi:  # also refuses nan
            raise ConfigError(f"{key}: {value!r} is out of range; accepted: {self.accepted}")
        if self.power_of_two and value & (value - 1):
            raise ConfigError(f"{key}: {value!r} is not a power of two; accepted: {self.accepted}")
        return value


#: A compute tile's scratchpad size, a parameter of every unit.
SCRATCHPAD = Param(65536, 1024, 1 << 22, power_of_two=True, doc="scratchpad size in bytes")
