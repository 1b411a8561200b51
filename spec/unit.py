"""The unit registry: one declaration per unit kind, and the layers' tables keyed by it.

A unit kind is declared once, by a :class:`UnitSpec` passed to :func:`register_unit` in
its own module (``spec/units/<kind>.py`` for the built-in units, which also holds its
EXEC contract). The spec says what every layer derives its tables from: the kind's name
and capability-register code, the data types and parameters a tile of it accepts (the
config schema), which parameters its ``GEOMETRY`` register reports, which micro-ops it
runs (the compiler's candidates) and whether it exploits sparsity.

What a layer implements for a unit (its RTL, lowering, cycle formula, ISA-level model,
calibration sweep) sits in that layer, registered under the kind in a :class:`Registry`
of the layer: a layer points down to the spec, never the spec up to a layer.

A unit outside this package is a Python package named in the environment variable
``ACCELPOOL_UNITS`` (comma-separated; subprocesses such as the cocotb runs inherit it).
Its ``__init__`` declares the spec (``package=__name__``) and EXEC contract; its
submodules ``hw``, ``sched``, ``tb`` and ``flow``, where present, register its parts in
those layers and are imported by a layer's registry the first time it is asked for the
kind (``docs/adding-a-unit.md``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

from accelpool.spec.kinds import DType, UnitKind
from accelpool.spec.param import Param

__all__ = ["UnitSpec", "register_unit", "unit_spec", "unit_specs", "SpecTable", "Registry",
           "load_plugins", "PLUGIN_ENV", "LAYERS"]

#: The environment variable naming unit packages outside accelpool.
PLUGIN_ENV = "ACCELPOOL_UNITS"

#: The layers a unit package may register parts in, each as a submodule of that name.
LAYERS = ("hw", "sched", "tb", "flow")


@dataclass(frozen=True)
class UnitSpec:
    """The declaration of one unit kind.

    Attributes
    ----------
    key : str
        Lower-case name, as config files spell the kind (``"dmu"``).
    code : int
        Kind code in the capability registers (1..65535; 0 is the memory tile).
    title : str
        What the unit is, for messages and docs (``"dense matrix unit"``).
    dtypes : tuple of str
        Input data types a tile of it can be built to accept; the first is the default.
    params : mapping of str to Param
        Its tile parameters besides name, kind, x, y and dtypes (defaults, ranges).
    geometry : tuple of str
        Parameters packed into the ``GEOMETRY`` capability register, first one highest.
    runs : tuple of (str, str)
        ``(micro-op type, data type)`` pairs the unit is built for (the IR's spelling,
        ``("gemm", "bf16")``).
    also_runs : tuple of (str, str)
        Pairs it can run as well, after the units built for them.
    sparse : bool
        Whether its cost falls with the non-zero count (sparse formats).
    package : str or None
        For a unit outside accelpool, the package whose layer submodules register its parts.
    """

    key: str
    code: int
    title: str
    dtypes: tuple[str, ...]
    params: Mapping[str, Param]
    geometry: tuple[str, ...] = ()
    runs: tuple[tuple[str, str], ...] = ()
    also_runs: tuple[tuple[str, str], ...] = ()
    sparse: bool = False
    package: str | None = None
    kind: UnitKind = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        for d in self.dtypes:
            DType.from_key(d)
        missing = [g for g in self.geometry if g not in self.params]
        if missing:
            raise ValueError(f"unit {self.key!r}: geometry names {', '.join(missing)}, "
                             f"which are not among its params")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


_SPECS: dict[UnitKind, UnitSpec] = {}


def register_unit(spec: UnitSpec) -> UnitKind:
    """Register ``spec`` and return its new :class:`UnitKind` member.

    Raises
    ------
    ValueError
        If its key or code is taken, or malformed.
    """
    kind = UnitKind._add(spec.key.upper(), spec.code)
    object.__setattr__(spec, "kind", kind)
    _SPECS[kind] = spec
    return kind


def unit_spec(kind: UnitKind) -> UnitSpec:
    """The declaration of ``kind`` (KeyError for the memory tile, which has none)."""
    len(UnitKind)   # the declarations are loaded
    return _SPECS[kind]


def unit_specs() -> tuple[UnitSpec, ...]:
    """Every registered unit's declaration, in code order."""
    len(UnitKind)
    return tuple(sorted(_SPECS.values(), key=lambda s: s.code))


class SpecTable(Mapping):
    """A per-kind table read from the unit declarations: ``of_spec(spec)`` for a unit's
    kind, ``memory`` for the memory tile's; it follows units registered later."""

    def __init__(self, memory: Any, of_spec: Callable[[Any], Any]):
        self._memory, self._of_spec = memory, of_spec

    def __getitem__(self, kind: UnitKind) -> Any:
        if kind is UnitKind.MEMORY:
            return self._memory
        try:
            return self._of_spec(unit_spec(kind))
        except (KeyError, TypeError):
            raise KeyError(kind) from None

    def __iter__(self):
        return iter(UnitKind)

    def __len__(self) -> int:
        return len(UnitKind)


def load_plugins() -> None:
    """Import the unit packages named in ``ACCELPOOL_UNITS`` (each declares its spec)."""
    for name in filter(None, (p.strip() for p in os.environ.get(PLUGIN_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"{PLUGIN_ENV}: unit package {name!r} cannot be imported: {e}") from e


class Registry(Mapping):
    """What one layer implements per unit kind, registered by that layer's modules.

    A read-only mapping from :class:`UnitKind` (or ``(kind, *sub)`` keys, such as a kind
    and a micro-op type) to the implementation. Its first use imports ``builtin``, the
    layer's own modules that register the built-in units' parts; a lookup of a kind it
    does not hold first imports the ``layer`` submodule of that kind's package, if the
    kind comes from one.

    Parameters
    ----------
    layer : str
        One of :data:`LAYERS`.
    what : str
        What it holds, for messages (``"RTL builder"``).
    builtin : sequence of str
        Modules of the layer that register the built-in units' parts.
    """

    def __init__(self, layer: str, what: str, builtin: tuple[str, ...] = ()):
        if layer not in LAYERS:
            raise ValueError(f"layer {layer!r} is not one of {', '.join(LAYERS)}")
        self.layer, self.what, self.builtin = layer, what, tuple(builtin)
        self._items: dict[Any, Any] = {}
        self._loaded: set[str] = set()
        self._builtin_loaded = False

    def _load_builtin(self) -> None:
        if not self._builtin_loaded:
            self._builtin_loaded = True
            for name in self.builtin:
                importlib.import_module(name)

    def register(self, key: Any, value: Any = None) -> Any:
        """Register ``value`` under ``key``; without ``value``, a decorator."""
        if value is None:
            def deco(fn: Callable) -> Callable:
                self.register(key, fn)
                return fn
            return deco
        if key in self._items and self._items[key] is not value:
            raise ValueError(f"{self.what} for {_label(key)} is registered twice")
        self._items[key] = value
        return value

    def _load(self, key: Any) -> None:
        self._load_builtin()
        if key in self._items:
            return
        kind = key[0] if isinstance(key, tuple) else key
        spec = _SPECS.get(kind) if isinstance(kind, UnitKind) else None
        if spec is None or spec.package is None or spec.package in self._loaded:
            return
        self._loaded.add(spec.package)
        try:
            importlib.import_module(f"{spec.package}.{self.layer}")
        except ModuleNotFoundError as e:
            if e.name != f"{spec.package}.{self.layer}":
                raise

    def load_all(self) -> None:
        """Import the layer submodule of every registered unit package."""
        self._load_builtin()
        for spec in unit_specs():
            self._load(spec.kind)

    def __getitem__(self, key: Any) -> Any:
        if key not in self._items:
            self._load(key)
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator:
        self.load_all()
        return iter(dict(self._items))

    def __len__(self) -> int:
        self.load_all()
        return len(self._items)


def _label(key: Any) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return " ".join(getattr(p, "key", None) or getattr(p, "value", None) or str(p) for p in parts)
