"""Unit kinds and element data types: the two enumerations every layer shares.

:class:`UnitKind` is open: its members are the registered unit specs
(:func:`accelpool.spec.unit.register_unit`, one per unit's ``spec/units/<kind>.py`` or a
package named in ``ACCELPOOL_UNITS``), plus the memory tile. It behaves like an
``enum.Enum``: ``UnitKind.DMU``, ``UnitKind(1)`` (by capability-register code),
``UnitKind["DMU"]``, :meth:`UnitKind.from_key`, iteration in code order, ``.name``,
``.value`` and ``.key``; members compare by identity and pickle by code.
"""

from __future__ import annotations

import enum
import importlib
from typing import Iterator

__all__ = ["UnitKind", "DType"]


_units_loaded = False


def _load_units() -> None:
    """Import the unit declarations (built-in and ``ACCELPOOL_UNITS``) once."""
    global _units_loaded
    if not _units_loaded:
        importlib.import_module("accelpool.spec.units")
        _units_loaded = True


class _KindType(type):
    """The class of :class:`UnitKind`: lookup, iteration and membership over its members."""

    def __iter__(cls) -> Iterator["UnitKind"]:
        _load_units()
        return iter(sorted(cls._by_code.values(), key=lambda k: k.value))

    def __len__(cls) -> int:
        _load_units()
        return len(cls._by_code)

    def __contains__(cls, item: object) -> bool:
        _load_units()
        return isinstance(item, UnitKind) and cls._by_code.get(item.value) is item

    def __getitem__(cls, name: str) -> "UnitKind":
        _load_units()
        return cls._by_name[name]

    def __call__(cls, value: "int | UnitKind") -> "UnitKind":
        if isinstance(value, UnitKind):
            return value
        _load_units()
        try:
            return cls._by_code[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid UnitKind") from None

    def __getattr__(cls, name: str) -> "UnitKind":
        if name.startswith("_") or not name.isupper():
            raise AttributeError(name)
        _load_units()
        try:
            return cls._by_name[name]
        except KeyError:
            raise AttributeError(f"type object 'UnitKind' has no attribute {name!r}") from None

    @property
    def __members__(cls) -> dict[str, "UnitKind"]:
        return {k.name: k for k in cls}


class UnitKind(metaclass=_KindType):
    """A kind of tile in the pool. ``value`` is its kind code in the capability registers."""

    __slots__ = ("name", "value")
    _by_code: dict[int, "UnitKind"] = {}
    _by_name: dict[str, "UnitKind"] = {}

    @classmethod
    def _add(cls, name: str, value: int) -> "UnitKind":
        """Make the member ``name`` with code ``value`` (``register_unit`` calls this)."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 16:
            raise ValueError(f"unit kind code {value!r} is not an integer 0..65535")
        if not name.isidentifier() or name != name.upper():
            raise ValueError(f"unit kind name {name!r} is not an upper-case identifier")
        for table, k, what in ((cls._by_code, value, "code"), (cls._by_name, name, "name")):
            if k in table:
                raise ValueError(f"unit kind {what} {k!r} is taken by {table[k].key}")
        member = object.__new__(cls)
        object.__setattr__(member, "name", name)
        object.__setattr__(member, "value", value)
        cls._by_code[value] = member
        cls._by_name[name] = member
        return member

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("UnitKind members are read-only")

    @property
    def key(self) -> str:
        """The lower-case name used in config files (``"dmu"``)."""
        return self.name.lower()

    @classmethod
    def from_key(cls, key: str) -> "UnitKind":
        """Look up a kind by its config name."""
        _load_units()
        try:
            return cls._by_name[key.upper()]
        except (KeyError, AttributeError):
            raise ValueError(f"Unknown unit kind {key!r}; accepted: "
                             f"{', '.join(k.key for k in cls)}") from None

    def __repr__(self) -> str:
        return f"<UnitKind.{self.name}: {self.value}>"

    def __str__(self) -> str:
        return f"UnitKind.{self.name}"

    def __reduce__(self):
        return (UnitKind, (self.value,))

    def __copy__(self) -> "UnitKind":
        return self

    def __deepcopy__(self, memo) -> "UnitKind":
        return self


UnitKind._add("MEMORY", 0)


class DType(enum.Enum):
    """Element data types. The value is the bit position in the capability registers' dtype mask."""

    BF16 = 0
    FP32 = 1
    INT8 = 2
    INT32 = 3

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def bytes(self) -> int:
        return {DType.BF16: 2, DType.FP32: 4, DType.INT8: 1, DType.INT32: 4}[self]

    @classmethod
    def from_key(cls, key: str) -> "DType":
        try:
            return cls[key.upper()]
        except KeyError:
            raise ValueError(f"Unknown data type {key!r}; accepted: "
                             f"{', '.join(d.key for d in cls)}") from None
