"""Fuzzing the pool-config loader: any TOML document, any bytes, gives a PoolConfig or a
ConfigError naming the file and the key, never another exception.

Documents are built from the loader's own keys with realistic values, and, at a rate drawn
per document, values of random type, unknown keys and missing keys. The normal run tries a
few hundred documents; ``make regress`` (``-m slow``) thousands. A failure prints the
falsifying document and a ``@reproduce_failure`` blob; paste it above the test to replay
it, or rerun with ``--hypothesis-seed=<seed>`` as printed.
"""

import re

import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings, strategies as st

from accelpool.spec.config import (UNIT_DTYPES, UNIT_PARAMS, ConfigError, DType, PoolConfig,
                                   UnitKind, load_config)

KINDS = [k.key for k in UnitKind]
DTYPES = [d.key for d in DType]
MESH_KEYS = ["cols", "rows", "flit_bits", "buffer_flits"]
PARAM_KEYS = sorted({k for params in UNIT_PARAMS.values() for k in params})
ALL_KEYS = sorted({"name", "clock_mhz", "mesh", "tile", "kind", "x", "y", "dtypes",
                   *MESH_KEYS, *PARAM_KEYS})

plain_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,7}", fullmatch=True)
numbers = st.one_of(
    st.integers(-3, 70),
    st.sampled_from([1 << i for i in range(31)]),
    st.sampled_from([1023, 4095, 5001, 9.5, 500.0, -0.0, 2 ** 63 - 1, -2 ** 63]),
    st.integers(-2 ** 63, 2 ** 63 - 1),
    st.floats(),
)
scalars = st.one_of(numbers, st.booleans(), st.sampled_from(KINDS + DTYPES + ALL_KEYS),
                    st.sampled_from(["", "../../x", "/tmp/x", "a b", "BF16", "tpu"]),
                    st.text(max_size=8), st.dates())
#: A value of any type TOML has, nested up to a few levels.
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(plain_keys, inner, max_size=3), max_leaves=6)


@st.composite
def pool_docs(draw):
    """A pool document: mostly the schema's keys with plausible values, corrupted at a rate."""
    rate = draw(st.sampled_from([0, 0, 2, 10, 40]))

    def corrupt() -> bool:
        return draw(st.integers(0, 99)) < rate

    def put(table, key, valid, near=None):
        """``valid``: values the loader accepts; corrupted: missing, ``near`` (values just
        outside what is accepted) or anything at all."""
        if not corrupt():
            table[key] = draw(valid)
            return
        how = draw(st.sampled_from(["missing", "near", "anything"]))
        if how == "near" and near is not None:
            table[key] = draw(near)
        elif how != "missing":
            table[key] = draw(anything)

    def extra(table):
        while corrupt():
            table[draw(st.sampled_from(ALL_KEYS) | plain_keys)] = draw(anything)

    cols, rows = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    mesh = {}
    for key, valid, near in (
            ("cols", st.just(cols), st.sampled_from([0, 17])),
            ("rows", st.just(rows), st.sampled_from([0, 17])),
            ("flit_bits", st.sampled_from([32, 64, 128, 512]), st.sampled_from([16, 1024, 48])),
            ("buffer_flits", st.sampled_from([2, 4, 64]), st.sampled_from([1, 65]))):
        put(mesh, key, valid, near)
    extra(mesh)
    free = [(x, y) for x in range(cols) for y in range(rows)]
    tiles = []
    for i in range(draw(st.integers(1, min(len(free), 5)))):
        kind = "memory" if i == 0 and not corrupt() else draw(st.sampled_from(KINDS))
        at = draw(st.sampled_from(free)) if corrupt() else free.pop(draw(st.integers(0, len(free) - 1)))
        t: dict = {}
        put(t, "name", st.just(f"t{i}"), st.sampled_from(["dmu 0", "t0", "", "1x"]))
        put(t, "kind", st.just(kind), st.sampled_from(["tpu", "DMU", "memory"]))
        put(t, "x", st.just(at[0]), st.sampled_from([-1, cols]))
        put(t, "y", st.just(at[1]), st.sampled_from([-1, rows]))
        supported = [d.key for d in UNIT_DTYPES[UnitKind.from_key(kind)]]
        if supported or corrupt():
            put(t, "dtypes", st.lists(st.sampled_from(supported or DTYPES), min_size=1,
                                      max_size=len(supported) or 1, unique=True),
                st.lists(st.sampled_from(DTYPES), max_size=3))
        for key, p in UNIT_PARAMS[UnitKind.from_key(kind)].items():
            put(t, key, st.sampled_from([p.default, p.lo, p.hi]),
                st.sampled_from([p.lo - 1, p.hi + 1, p.default + 1]))
        extra(t)
        tiles.append(t)
        if not free:
            break
    doc: dict = {}
    put(doc, "name", st.sampled_from(["default", "p", "my-pool_2"]),
        st.sampled_from(["../x", "x.y", "/abs", "", "-x"]))
    put(doc, "clock_mhz", st.sampled_from([10, 500, 5000, 333.3]),
        st.sampled_from([9, 5001, 0.5, float("nan"), float("inf")]))
    put(doc, "mesh", st.just(mesh))
    put(doc, "tile", st.just(tiles))
    extra(doc)
    return doc


#: ``<key>: <what is wrong>; accepted: <what>``: the key a schema path or an unknown key.
_KEY = re.compile(r"((tile(\[\d+\])?|mesh)\.)?[A-Za-z0-9_-]+|tile\[\d+\]")


def check_document(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("fuzz") / "pool.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    try:
        cfg = load_config(path)
    except ConfigError as e:
        msg = str(e)
        event("refused")
        assert msg.startswith(f"{path}: "), msg
        key, sep, tail = msg[len(f"{path}: "):].partition(": ")
        assert sep and _KEY.fullmatch(key), msg
        assert re.search(r"; accepted( keys)?: \S", tail), msg
        # the key is named once (a key such as "s" also ends the word "keys:", so count it
        # where a key stands: after the file or after another "key: ")
        assert msg.count(f": {key}: ") == 1, msg
    else:
        event("accepted")
        assert isinstance(cfg, PoolConfig)


_SETTINGS = dict(deadline=None, print_blob=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=200, **_SETTINGS)
@given(doc=pool_docs())
def test_loader_accepts_or_names_the_key(tmp_path_factory, doc):
    check_document(tmp_path_factory, doc)


@pytest.mark.slow
@settings(max_examples=5000, **_SETTINGS)
@given(doc=pool_docs())
def test_loader_accepts_or_names_the_key_long(tmp_path_factory, doc):
    check_document(tmp_path_factory, doc)


@settings(max_examples=100, **_SETTINGS)
@given(cut=st.integers(0, 2000), junk=st.binary(min_size=1, max_size=4))
def test_any_bytes_give_a_config_error_naming_the_file(tmp_path_factory, cut, junk):
    from accelpool.spec.config import DEFAULT_CONFIG
    raw = DEFAULT_CONFIG.read_bytes()
    cut = min(cut, len(raw))
    path = tmp_path_factory.mktemp("bytes") / "pool.toml"
    path.write_bytes(raw[:cut] + junk + raw[cut:])
    try:
        load_config(path)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ") and "accepted" in str(e), str(e)
