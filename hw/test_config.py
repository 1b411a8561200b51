import copy
import tomllib

import pytest

from accelpool.hw.config import (DEFAULT_CONFIG, ConfigError, DType, UnitKind, load_config,
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
    (("mesh", "cols"), "3", r"mesh.cols must be an integer, not '3'"),
    (("mesh", "rows"), 0, r"mesh.rows must be between 1 and 16, not 0"),
    (("mesh", "flit_bits"), 48, r"mesh.flit_bits must be a power of two, not 48"),
    (("mesh", "speed"), 1, r"mesh.speed: unknown key; accepted keys: cols, rows, flit_bits, buffer_flits"),
    (("clock_mhz",), -5, r"clock_mhz must be a number in \(0, 10000\], not -5"),
    (("tile", 1, "x"), 3, r"tile\[1\].x: 3 is outside the 3x3 mesh; accepted: 0..2"),
    (("tile", 1, "y"), -1, r"tile\[1\].y: -1 is outside the 3x3 mesh; accepted: 0..2"),
    (("tile", 1, "x"), KeyError, r"tile\[1\].x is missing; accepted: 0..2"),
    (("tile", 1, "kind"), "tpu", r"tile\[1\].kind: Unknown unit kind 'tpu'; accepted: memory, dmu, lpu, smu, ce, afu, gnn"),
    (("tile", 1, "rows"), 8.0, r"tile\[1\].rows must be an integer, not 8.0"),
    (("tile", 1, "cols"), 6, r"tile\[1\].cols must be a power of two, not 6"),
    (("tile", 1, "lanes"), 8, r"tile\[1\].lanes: unknown key; accepted keys: name, kind, x, y, dtypes, scratchpad_bytes, rows, cols"),
    (("tile", 1, "scratchpad_bytes"), 3000, r"tile\[1\].scratchpad_bytes must be a power of two, not 3000"),
    (("tile", 1, "dtypes"), ["int8"], r"tile\[1\].dtypes: 'int8' is not supported by a dmu; accepted: bf16"),
    (("tile", 1, "name"), "mem", r"tile\[1\].name: 'mem' is already used by tile\[0\]"),
    (("tile", 1, "name"), "dmu 0", r"tile\[1\].name must be an identifier"),
])
def test_errors_name_the_key(doc, path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(mutate(doc, path, value), source="pool.toml")


def test_pool_needs_one_memory(doc):
    no_mem = dict(doc, tile=doc["tile"][1:])
    with pytest.raises(ConfigError, match=r"a pool needs exactly one tile of kind 'memory', found 0"):
        parse_config(no_mem)


def test_two_tiles_on_one_coordinate(doc):
    bad = mutate(doc, ("tile", 2, "x"), 0)
    bad = mutate(bad, ("tile", 2, "y"), 0)
    with pytest.raises(ConfigError, match=r"pool.toml: tile\[2\]: \(0, 0\) is already taken by tile\[1\]; one tile per coordinate"):
        parse_config(bad, source="pool.toml")


def test_error_names_the_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[mesh\n")
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"missing.toml: cannot read pool config"):
        load_config(tmp_path / "missing.toml")
