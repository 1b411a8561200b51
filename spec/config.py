"""Pool configuration: the one description of the hardware that both ``hw`` and ``sched`` read.

A pool config is a TOML file (see ``configs/default.toml``)::

    name = "default"
    clock_mhz = 500

    [mesh]
    cols = 3            # x extent
    rows = 3            # y extent
    flit_bits = 64
    buffer_flits = 4

    [[tile]]
    name = "dmu0"
    kind = "dmu"
    x = 0
    y = 0
    scratchpad_bytes = 65536
    rows = 8
    cols = 8

Every key is validated; an unknown key, a wrong type, a value out of range, a repeated
data type, two tiles on one coordinate or a coordinate outside the mesh raises
:class:`ConfigError` whose message is ``<file>: <key>: <what is wrong>; accepted: <what is
accepted>`` (the key once, e.g. ``tile[2].x``). ``name`` is a plain name (a letter, then up
to 63 letters, digits, ``_`` or ``-``): builds go to a folder named after it and
:attr:`PoolConfig.digest`, a digest of the config's content.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from accelpool.spec.kinds import DType, UnitKind
from accelpool.spec.param import ConfigError, Param
from accelpool.spec.unit import SpecTable

__all__ = [
    "ConfigError", "UnitKind", "DType", "MeshConfig", "TileConfig", "PoolConfig",
    "load_config", "parse_config", "DEFAULT_CONFIG", "UNIT_DTYPES", "UNIT_PARAMS",
    "config_reference", "Param",
]

#: The repository's ``configs/`` folder and its default pool.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.toml"


#: The input data types each unit kind can be built to accept (first listed is the default set).
UNIT_DTYPES: Mapping[UnitKind, tuple[DType, ...]] = SpecTable(
    (), lambda s: tuple(DType.from_key(d) for d in s.dtypes))

#: Per-kind integer parameters (beyond name, kind, x, y, dtypes) with defaults and ranges.
UNIT_PARAMS: Mapping[UnitKind, Mapping[str, Param]] = SpecTable(
    MappingProxyType({"bytes": Param(1 << 20, 4096, 1 << 28, power_of_two=True,
                                     doc="global memory size in bytes")}),
    lambda s: s.params)

_MESH_PARAMS: Mapping[str, Param] = {
    "cols": Param(3, 1, 16, doc="mesh width (x extent)"),
    "rows": Param(3, 1, 16, doc="mesh height (y extent)"),
    "flit_bits": Param(64, 32, 512, power_of_two=True, doc="flit payload width"),
    "buffer_flits": Param(4, 2, 64, doc="input buffer depth per router port"),
}


# 10 MHz to 5 GHz spans every clock such a pool runs at, from an FPGA prototype to the
# fastest clocked silicon; a value outside is a unit mistake (GHz or Hz written as MHz)
# that would scale every time in the reports and traces by 1000.
_CLOCK = Param(500, 10, 5000, integer=False, doc="clock frequency in MHz (of the simulated SoC and of the reports' traces)")

#: What ``name`` (the pool's) accepts; it names the pool's build folder, so no path parts.
_POOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_POOL_NAME_ACCEPTED = "a letter followed by up to 63 letters, digits, '_' or '-'"
_TILE_NAME_ACCEPTED = "an identifier (letters, digits, _) unique in the pool"


def config_reference() -> str:
    """Every key of a pool config with its default and what it accepts, as a Markdown
    table (``docs/config.md`` holds it; a test keeps the two equal)."""
    def fmt(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    rows = [("`name`", "pool", _POOL_NAME_ACCEPTED + "; names the build folder"),
            ("`clock_mhz`", fmt(_CLOCK.default), f"{_CLOCK.accepted}: {_CLOCK.doc}")]
    rows += [(f"`mesh.{k}`", fmt(p.default), f"{p.accepted}: {p.doc}")
             for k, p in _MESH_PARAMS.items()]
    kinds = ", ".join(k.key for k in UnitKind)
    rows += [("`tile.kind`", "(required)", f"one of {kinds}; exactly one memory tile"),
             ("`tile.name`", "kind + index", _TILE_NAME_ACCEPTED),
             ("`tile.x`, `tile.y`", "(required)", "a coordinate on the mesh, one tile each")]
    for kind in UnitKind:
        if UNIT_DTYPES[kind]:
            rows.append((f"`tile.dtypes` ({kind.key})",
                         ", ".join(d.key for d in UNIT_DTYPES[kind]),
                         f"a non-empty list of {', '.join(d.key for d in UNIT_DTYPES[kind])}, "
                         f"each at most once"))
        for k, p in UNIT_PARAMS[kind].items():
            rows.append((f"`tile.{k}` ({kind.key})", fmt(p.default), f"{p.accepted}: {p.doc}"))
    lines = ["| key | default | accepted |", "| --- | --- | --- |"]
    lines += [f"| {k} | {d} | {a} |" for k, d, a in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class MeshConfig:
    """The mesh network-on-chip: ``cols`` x ``rows`` routers."""

    cols: int
    rows: int
    flit_bits: int
    buffer_flits: int

    def hops(self, a: tuple[int, int], b: tuple[int, int]) -> int:
        """Router-to-router hops between two coordinates under XY routing."""
        return abs(a[0] - b[0]) + abs(a[1] - b[1])


@dataclass(frozen=True)
class TileConfig:
    """One tile: a unit (or the memory) at mesh coordinate (x, y)."""

    name: str
    kind: UnitKind
    x: int
    y: int
    dtypes: tuple[DType, ...]
    params: Mapping[str, int] = field(default_factory=dict)

    @property
    def at(self) -> tuple[int, int]:
        return (self.x, self.y)

    def __getitem__(self, key: str) -> int:
        return self.params[key]

    @property
    def scratchpad_bytes(self) -> int:
        return self.params.get("scratchpad_bytes", 0)


@dataclass(frozen=True)
class PoolConfig:
    """A validated pool description."""

    name: str
    clock_mhz: float
    mesh: MeshConfig
    tiles: tuple[TileConfig, ...]
    source: str = "<dict>"

    def tile(self, name: str) -> TileConfig:
        """The tile called ``name``."""
        for t in self.tiles:
            if t.name == name:
                return t
        raise KeyError(f"No tile named {name!r} in pool {self.name!r}; tiles: "
                       f"{', '.join(t.name for t in self.tiles)}")

    def tiles_of(self, kind: UnitKind) -> tuple[TileConfig, ...]:
        """All tiles of one kind, in config order."""
        return tuple(t for t in self.tiles if t.kind is kind)

    @property
    def memory(self) -> TileConfig:
        """The memory tile (exactly one per pool)."""
        return self.tiles_of(UnitKind.MEMORY)[0]

    @property
    def units(self) -> tuple[TileConfig, ...]:
        """The compute tiles (everything but the memory)."""
        return tuple(t for t in self.tiles if t.kind is not UnitKind.MEMORY)

    def at(self, x: int, y: int) -> TileConfig | None:
        """The tile at (x, y), or None for a router with no tile."""
        for t in self.tiles:
            if (t.x, t.y) == (x, y):
                return t
        return None

    @property
    def digest(self) -> str:
        """A short hex digest of the config's content (every value, defaults filled in).

        Two configs that differ in any value have different digests, one config always the
        same one, wherever its file lies; builds are keyed on ``name`` plus this.
        """
        tiles = [{"name": t.name, "kind": t.kind.key, "x": t.x, "y": t.y,
                  "dtypes": [d.key for d in t.dtypes], **dict(t.params)} for t in self.tiles]
        m = self.mesh
        doc = {"name": self.name, "clock_mhz": self.clock_mhz, "tile": tiles,
               "mesh": {"cols": m.cols, "rows": m.rows, "flit_bits": m.flit_bits,
                        "buffer_flits": m.buffer_flits}}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def _check_keys(where: str, table: Mapping[str, Any], accepted: list[str]) -> None:
    for key in table:
        if key not in accepted:
            raise ConfigError(f"{where}{key}: unknown key; accepted keys: {', '.join(accepted)}")


def _check_str(key: str, value: Any, accepted: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: {value!r} is not a non-empty string; accepted: {accepted}")
    return value


def parse_config(doc: Mapping[str, Any], source: str = "<dict>") -> PoolConfig:
    """Validate a parsed TOML document and build a :class:`PoolConfig`.

    Parameters
    ----------
    doc : mapping
        The document as :func:`tomllib.loads` returns it.
    source : str
        Where it came from, used in error messages.

    Raises
    ------
    ConfigError
        Naming the offending key and what is accepted.
    """
    try:
        return _parse(doc)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _parse(doc: Mapping[str, Any]) -> PoolConfig:
    _check_keys("", doc, ["name", "clock_mhz", "mesh", "tile"])
    name = _check_str("name", doc.get("name", "pool"), _POOL_NAME_ACCEPTED)
    if not _POOL_NAME.fullmatch(name):
        raise ConfigError(f"name: {name!r} is not a plain name; accepted: {_POOL_NAME_ACCEPTED}")
    clock = _CLOCK.check("clock_mhz", doc.get("clock_mhz", _CLOCK.default))

    mesh_doc = doc.get("mesh")
    mesh_accepted = f"a table with keys {', '.join(_MESH_PARAMS)}"
    if mesh_doc is None:
        raise ConfigError(f"mesh: missing; accepted: {mesh_accepted}")
    if not isinstance(mesh_doc, dict):
        raise ConfigError(f"mesh: {mesh_doc!r} is not a table; accepted: {mesh_accepted}")
    _check_keys("mesh.", mesh_doc, list(_MESH_PARAMS))
    mesh = MeshConfig(**{k: p.check(f"mesh.{k}", mesh_doc.get(k, p.default))
                         for k, p in _MESH_PARAMS.items()})

    tiles_doc = doc.get("tile")
    if not isinstance(tiles_doc, list) or not tiles_doc:
        wrong = "missing" if tiles_doc is None else f"{tiles_doc!r} is not a non-empty array of tables"
        raise ConfigError(f"tile: {wrong}; accepted: one [[tile]] table per tile")
    kinds = ", ".join(k.key for k in UnitKind)
    tiles: list[TileConfig] = []
    seen_names: dict[str, int] = {}
    seen_at: dict[tuple[int, int], int] = {}
    for i, t in enumerate(tiles_doc):
        where = f"tile[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{where}: {t!r} is not a table; accepted: a [[tile]] table")
        kind_key = t.get("kind")
        if kind_key is None:
            raise ConfigError(f"{where}.kind: missing; accepted: {kinds}")
        kind_key = _check_str(f"{where}.kind", kind_key, kinds)
        try:
            kind = UnitKind.from_key(kind_key)
        except ValueError:
            raise ConfigError(f"{where}.kind: {kind_key!r} is not a unit kind; "
                              f"accepted: {kinds}") from None
        params_schema = UNIT_PARAMS[kind]
        accepted = ["name", "kind", "x", "y"] + (["dtypes"] if UNIT_DTYPES[kind] else []) \
            + list(params_schema)
        _check_keys(f"{where}.", t, accepted)
        name_accepted = _TILE_NAME_ACCEPTED
        tname = _check_str(f"{where}.name", t.get("name", f"{kind.key}{i}"), name_accepted)
        if not tname.isidentifier():
            raise ConfigError(f"{where}.name: {tname!r} is not an identifier; accepted: {name_accepted}")
        if tname in seen_names:
            raise ConfigError(f"{where}.name: {tname!r} is already used by tile[{seen_names[tname]}]; "
                              f"accepted: {name_accepted}")
        seen_names[tname] = i
        coord = []
        for axis, extent in (("x", mesh.cols), ("y", mesh.rows)):
            on_mesh = f"0..{extent - 1} (the mesh is {mesh.cols}x{mesh.rows})"
            if axis not in t:
                raise ConfigError(f"{where}.{axis}: missing; accepted: {on_mesh}")
            v = t[axis]
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{where}.{axis}: {v!r} is not an integer; accepted: {on_mesh}")
            if not 0 <= v < extent:
                raise ConfigError(f"{where}.{axis}: {v} is outside the mesh; accepted: {on_mesh}")
            coord.append(v)
        at = (coord[0], coord[1])
        if at in seen_at:
            raise ConfigError(f"{where}: ({at[0]}, {at[1]}) is already taken by "
                              f"tile[{seen_at[at]}]; accepted: one tile per coordinate")
        seen_at[at] = i
        supported = UNIT_DTYPES[kind]
        dtypes_accepted = f"each of {', '.join(s.key for s in supported)} at most once"
        dtypes_doc = t.get("dtypes", [d.key for d in supported])
        if supported and (not isinstance(dtypes_doc, list) or not dtypes_doc):
            raise ConfigError(f"{where}.dtypes: {dtypes_doc!r} is not a non-empty list of strings; "
                              f"accepted: a list of {dtypes_accepted}")
        dtypes: list[DType] = []
        for d in dtypes_doc:
            try:
                dt = DType.from_key(d) if isinstance(d, str) else None
            except ValueError:
                dt = None
            if dt not in supported:
                raise ConfigError(f"{where}.dtypes: {d!r} is not supported by a {kind.key}; "
                                  f"accepted: {dtypes_accepted}")
            if dt in dtypes:
                raise ConfigError(f"{where}.dtypes: {d!r} is listed twice; accepted: {dtypes_accepted}")
            dtypes.append(dt)
        params = {k: p.check(f"{where}.{k}", t.get(k, p.default)) for k, p in params_schema.items()}
        tiles.append(TileConfig(tname, kind, at[0], at[1], tuple(dtypes), MappingProxyType(params)))

    mems = [t for t in tiles if t.kind is UnitKind.MEMORY]
    if len(mems) != 1:
        raise ConfigError(f"tile: {len(mems)} tiles of kind 'memory'; accepted: exactly one "
                          f"tile of kind 'memory' per pool")
    return PoolConfig(name, float(clock), mesh, tuple(tiles))


def load_config(path: str | Path = DEFAULT_CONFIG) -> PoolConfig:
    """Read and validate a pool config file.

    Parameters
    ----------
    path : str or Path
        A TOML file; a bare name such as ``"default"`` is looked up in ``configs/``.

    Raises
    ------
    ConfigError
        If the file is missing, a directory, not UTF-8, not valid TOML, or fails
        validation; the message names the file.
    """
    p = Path(path)
    if not p.exists() and not p.suffix and (CONFIG_DIR / f"{p.name}.toml").exists():
        p = CONFIG_DIR / f"{p.name}.toml"
    accepted = "accepted: a UTF-8 TOML file"
    if not p.exists():
        stems = sorted(c.stem for c in CONFIG_DIR.glob("*.toml")
                       if not c.stem.endswith(".calibration"))
        close = difflib.get_close_matches(p.stem, stems, n=1) if not p.suffix or \
            p.suffix == ".toml" else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"{p}: no such file; {hint}{accepted} or a name in configs/ "
                          f"({', '.join(stems)})")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; {accepted}")
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot be read ({e.strerror}); {accepted}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); {accepted}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e}); {accepted}") from None
    cfg = parse_config(doc, source=str(p))
    return PoolConfig(cfg.name, cfg.clock_mhz, cfg.mesh, cfg.tiles, source=str(p))
