import copy
import re
import tomllib
from pathlib import Path

import pytest

from accelpool.spec.config import (DEFAULT_CONFIG, ConfigError, DType, UnitKind, load_config,
                                   parse_config)


@pytest.fixture
def doc():
    return tomllib.loads(DEFAULT_CONFIG.read_text())


def test_default_pool_matches_the_design():
    cfg = load_config()
    assert (cfg.mesh.cols, cfg.mesh.rows) == (3, 3)
    kinds = sorted(t.kind.key for t in cfg.tiles)
    assert kinds == sorted(["memory", "dmu", "dmu", "lpu", "smu", "ce", "afu", "gnn"])
    assert cfg.memory.at == (1, 1)
    assert len(cfg.tiles_of(UnitKind.DMU)) == 2
    assert cfg.tile("dmu0")["rows"] == 8
    assert cfg.tile("afu0").dtypes == (DType.BF16, DType.INT8)
    assert cfg.at(2, 2) is None
    assert cfg.mesh.hops((0, 0), (2, 1)) == 3


def test_bare_name_finds_configs_folder():
    assert load_config("default").name == "default"


def mutate(doc, path, value):
    d = copy.deepcopy(doc)
    target = d
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


@pytest.mark.parametrize("path, value, message", [
    (("bogus",), 1, r"bogus: unknown key; accepted keys: name, clock_mhz, mesh, tile"),
    (("mesh", "cols"), "3", r"mesh.cols: '3' is not an integer; accepted: integers 1..16"),
    (("mesh", "rows"), 0, r"mesh.rows: 0 is out of range; accepted: integers 1..16"),
    (("mesh", "flit_bits"), 48, r"mesh.flit_bits: 48 is not a power of two; accepted: powers of two 32..512"),
    (("mesh", "speed"), 1, r"mesh.speed: unknown key; accepted keys: cols, rows, flit_bits, buffer_flits"),
    (("clock_mhz",), -5, r"clock_mhz: -5 is out of range; accepted: numbers 10..5000"),
    (("tile", 1, "x"), 3, r"tile\[1\].x: 3 is outside the mesh; accepted: 0..2 \(the mesh is 3x3\)"),
    (("tile", 1, "y"), -1, r"tile\[1\].y: -1 is outside the mesh; accepted: 0..2 \(the mesh is 3x3\)"),
    (("tile", 1, "x"), KeyError, r"tile\[1\].x: missing; accepted: 0..2"),
    (("tile", 1, "kind"), "tpu", r"tile\[1\].kind: 'tpu' is not a unit kind; accepted: memory, dmu, lpu, smu, ce, afu, gnn"),
    (("tile", 1, "rows"), 8.0, r"tile\[1\].rows: 8.0 is not an integer; accepted: powers of two 1..64"),
    (("tile", 1, "cols"), 6, r"tile\[1\].cols: 6 is not a power of two; accepted: powers of two 1..64"),
    (("tile", 1, "lanes"), 8, r"tile\[1\].lanes: unknown key; accepted keys: name, kind, x, y, dtypes, scratchpad_bytes, rows, cols"),
    (("tile", 1, "scratchpad_bytes"), 3000, r"tile\[1\].scratchpad_bytes: 3000 is not a power of two; accepted: powers of two 1024..4194304"),
    (("tile", 1, "dtypes"), ["int8"], r"tile\[1\].dtypes: 'int8' is not supported by a dmu; accepted: each of bf16 at most once"),
    (("tile", 1, "name"), "mem", r"tile\[1\].name: 'mem' is already used by tile\[0\]; accepted: an identifier"),
    (("tile", 1, "name"), "dmu 0", r"tile\[1\].name: 'dmu 0' is not an identifier; accepted: an identifier"),
])
def test_errors_name_the_key(doc, path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(mutate(doc, path, value), source="pool.toml")


def test_pool_needs_one_memory(doc):
    no_mem = dict(doc, tile=doc["tile"][1:])
    with pytest.raises(ConfigError, match=r"tile: 0 tiles of kind 'memory'; accepted: exactly one tile of kind 'memory' per pool"):
        parse_config(no_mem)


def test_two_tiles_on_one_coordinate(doc):
    bad = mutate(doc, ("tile", 2, "x"), 0)
    bad = mutate(bad, ("tile", 2, "y"), 0)
    with pytest.raises(ConfigError, match=r"pool.toml: tile\[2\]: \(0, 0\) is already taken by tile\[1\]; accepted: one tile per coordinate"):
        parse_config(bad, source="pool.toml")


def test_error_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[mesh\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"missing.toml: no such file"):
        load_config(tmp_path / "missing.toml")


def test_error_names_the_file_for_every_unreadable_kind(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b'name = "caf\xe9\xff"\n')
    with pytest.raises(ConfigError, match=r"latin1.toml: .*byte 0xe9.*; accepted: a UTF-8 TOML file"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"^\S*latin1.toml: ") as e:
        load_config(p)
    assert "codec" not in str(e.value)
    d = tmp_path / "folder.toml"
    d.mkdir()
    with pytest.raises(ConfigError, match=r"folder.toml: is a directory; accepted: a UTF-8 TOML file"):
        load_config(d)
    with pytest.raises(ConfigError, match=r"missing.toml: no such file; accepted: a UTF-8 TOML "
                                          r"file or a name in configs/ \(.*default.*\)"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "syntax.toml"
    bad.write_text("[mesh\n")
    with pytest.raises(ConfigError, match=r"syntax.toml: not valid TOML \(.*line 1.*\); "
                                          r"accepted: a UTF-8 TOML file"):
        load_config(bad)


@pytest.mark.parametrize("path, value", [
    (("tile", 7, "kind"), 7), (("tile", 7, "name"), ""), (("name",), 3),
    (("tile", 5, "dtypes"), [3]), (("tile", 5, "dtypes"), "bf16"), (("mesh",), 4),
    (("tile", 1, "x"), "0"), (("mesh", "rows"), 99), (("tile", 1, "rows"), 6),
    (("tile", 1, "kind"), "tpu"), (("tile", 1, "name"), "mem"), (("clock_mhz",), "fast"),
    (("tile",), KeyError), (("tile",), []), (("mesh",), KeyError), (("tile", 1, "kind"), KeyError),
])
def test_every_message_names_its_key_once_then_what_is_accepted(doc, path, value):
    key = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
    with pytest.raises(ConfigError) as e:
        parse_config(mutate(doc, path, value), source="pool.toml")
    msg = str(e.value)
    assert msg.startswith(f"pool.toml: {key}: "), msg
    assert msg.split("; accepted: ")[0].count(key) == 1, msg  # what is accepted may be TOML
    assert "; accepted: " in msg, msg


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", ".", "..", "x.y", "-x", "", "a b",
                                  "x" * 65, "ü"])
def test_pool_name_is_a_plain_name(doc, name):
    with pytest.raises(ConfigError, match=r"pool.toml: name: .* accepted: a letter followed by "
                                          r"up to 63 letters, digits, '_' or '-'"):
        parse_config(dict(doc, name=name), source="pool.toml")


@pytest.mark.parametrize("name", ["default", "ce_pair", "my-pool-2", "P" + "x" * 63])
def test_plain_pool_names_accepted(doc, name):
    assert parse_config(dict(doc, name=name)).name == name


def test_duplicate_dtypes_refused(doc):
    afu = next(i for i, t in enumerate(doc["tile"]) if t["kind"] == "afu")
    with pytest.raises(ConfigError, match=rf"tile\[{afu}\].dtypes: 'bf16' is listed twice; "
                                          r"accepted: each of bf16, int8 at most once"):
        parse_config(mutate(doc, ("tile", afu, "dtypes"), ["bf16", "int8", "bf16"]),
                     source="pool.toml")


def _tile_index(doc, kind):
    return next(i for i, t in enumerate(doc["tile"]) if t["kind"] == kind)


def _minimal_doc():
    """A valid pool of one memory tile at (0, 0), for mesh bounds that move tiles off the mesh."""
    return {"name": "bounds", "mesh": {"cols": 3, "rows": 3},
            "tile": [{"name": "mem", "kind": "memory", "x": 0, "y": 0}]}


# The accepted range of every number the loader checks, written out here (not read from the
# loader) so that dropping or moving a bound in spec/config.py fails this test.
_BOUNDS = [
    ("clock_mhz", None, 10, 5000),
    ("mesh.cols", None, 1, 16),
    ("mesh.rows", None, 1, 16),
    ("mesh.flit_bits", None, 32, 512),
    ("mesh.buffer_flits", None, 2, 64),
    ("x", "memory", 0, 2),
    ("y", "memory", 0, 2),
    ("bytes", "memory", 4096, 1 << 28),
    *[("scratchpad_bytes", k, 1024, 1 << 22) for k in ("dmu", "lpu", "smu", "ce", "afu", "gnn")],
    ("rows", "dmu", 1, 64), ("cols", "dmu", 1, 64),
    ("rows", "lpu", 1, 64), ("cols", "lpu", 1, 64),
    ("lanes", "smu", 1, 1024),
    ("oc_lanes", "ce", 1, 64), ("ic_lanes", "ce", 1, 64),
    ("lanes", "afu", 1, 64),
    ("lanes", "gnn", 1, 64),
]


def _with(doc, key, kind, value):
    if kind is None:
        return mutate(doc, tuple(key.split(".")), value), key
    if kind == "memory":
        doc = _minimal_doc()
    i = _tile_index(doc, kind)
    return mutate(doc, ("tile", i, key), value), f"tile[{i}].{key}"


@pytest.mark.parametrize("key, kind, lo, hi", _BOUNDS,
                         ids=[f"{kind or ''}.{key}".lstrip(".") for key, kind, _, _ in _BOUNDS])
def test_every_range_bound(doc, key, kind, lo, hi):
    base = _minimal_doc() if key.startswith("mesh.") else doc
    # lo // 2 and 2 * hi as well: for a power-of-two parameter they are the nearest
    # powers of two outside the range (lo - 1 and hi + 1 are not powers of two).
    for bad in sorted({lo - 1, lo // 2 if lo > 1 else lo - 1, hi + 1, 2 * hi}):
        d, where = _with(base, key, kind, bad)
        with pytest.raises(ConfigError, match=rf"^pool.toml: {re.escape(where)}: {bad} is "
                                              r"(out of range|outside the mesh); accepted"):
            parse_config(d, source="pool.toml")
    for good in (lo, hi):
        d, _ = _with(base, key, kind, good)
        cfg = parse_config(d)
        got = cfg.clock_mhz if key == "clock_mhz" else (
            getattr(cfg.mesh, key[5:]) if kind is None else
            {"x": lambda t: t.x, "y": lambda t: t.y}.get(key, lambda t: t[key])(
                cfg.tiles[_tile_index(d, kind)]))
        assert got == good


def test_docs_config_md_lists_every_key_as_the_schema_does():
    from accelpool.spec.config import UNIT_PARAMS, config_reference
    table = config_reference()
    doc = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    assert table in doc
    for kind, params in UNIT_PARAMS.items():
        for key, p in params.items():
            assert f"| `tile.{key}` ({kind.key}) | {p.default} | {p.accepted}" in table
