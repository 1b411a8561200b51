"""The unit registry: the open UnitKind, declarations, the tables derived from them, and
the layers' registries (a unit package's submodules loaded on first use)."""
import os
import pickle
import subprocess
import sys
import textwrap
import types

import pytest

from accelpool.spec.capabilities import GEOMETRY_KEYS
from accelpool.spec.config import UNIT_DTYPES, UNIT_PARAMS, DType, UnitKind
from accelpool.spec.unit import Registry, UnitSpec, register_unit, unit_spec, unit_specs


def test_unit_kind_behaves_as_an_enumeration():
    assert [k.key for k in UnitKind] == ["memory", "dmu", "lpu", "smu", "ce", "afu", "gnn"]
    assert UnitKind(3) is UnitKind.SMU is UnitKind["SMU"] is UnitKind.from_key("smu")
    assert UnitKind(UnitKind.CE) is UnitKind.CE and UnitKind.CE.value == 4
    assert repr(UnitKind.GNN) == "<UnitKind.GNN: 6>" and str(UnitKind.GNN) == "UnitKind.GNN"
    assert pickle.loads(pickle.dumps(UnitKind.LPU)) is UnitKind.LPU
    assert UnitKind.DMU in UnitKind and len(UnitKind) == 7
    assert list(UnitKind.__members__) == ["MEMORY", "DMU", "LPU", "SMU", "CE", "AFU", "GNN"]
    with pytest.raises(ValueError, match="42 is not a valid UnitKind"):
        UnitKind(42)
    with pytest.raises(ValueError, match=r"Unknown unit kind 'tpu'; accepted: memory, dmu, "
                                         r"lpu, smu, ce, afu, gnn"):
        UnitKind.from_key("tpu")
    with pytest.raises(AttributeError, match="no attribute 'TPU'"):
        UnitKind.TPU
    with pytest.raises(AttributeError, match="read-only"):
        UnitKind.DMU.value = 9


def test_tables_are_read_from_the_declarations():
    dmu = unit_spec(UnitKind.DMU)
    assert dmu.kind is UnitKind.DMU and dmu.code == 1 and dmu.title == "dense matrix unit"
    assert [s.key for s in unit_specs()] == ["dmu", "lpu", "smu", "ce", "afu", "gnn"]
    assert UNIT_DTYPES[UnitKind.AFU] == (DType.BF16, DType.INT8) and UNIT_DTYPES[UnitKind.MEMORY] == ()
    assert list(UNIT_PARAMS[UnitKind.CE]) == ["scratchpad_bytes", "oc_lanes", "ic_lanes"]
    assert list(UNIT_PARAMS[UnitKind.MEMORY]) == ["bytes"]
    assert GEOMETRY_KEYS[UnitKind.LPU] == ("rows", "cols") and GEOMETRY_KEYS[UnitKind.MEMORY] == ()
    assert list(UNIT_DTYPES) == list(UnitKind)


def test_a_declaration_that_collides_or_is_malformed_is_refused():
    with pytest.raises(ValueError, match="unit kind code 1 is taken by dmu"):
        register_unit(UnitSpec(key="dmu9", code=1, title="x", dtypes=("bf16",), params={}))
    with pytest.raises(ValueError, match="unit kind name 'DMU' is taken by dmu"):
        register_unit(UnitSpec(key="dmu", code=99, title="x", dtypes=("bf16",), params={}))
    with pytest.raises(ValueError, match="Unknown data type 'fp8'"):
        UnitSpec(key="u", code=99, title="x", dtypes=("fp8",), params={})
    with pytest.raises(ValueError, match="geometry names lanes, which are not among its params"):
        UnitSpec(key="u", code=99, title="x", dtypes=("bf16",), params={}, geometry=("lanes",))
    assert len(UnitKind) == 7


def test_registry_loads_its_builtin_modules_on_first_use(monkeypatch):
    reg = Registry("sched", "thing", builtin=("fake_builtin_parts",))
    mod = types.ModuleType("fake_builtin_parts")
    monkeypatch.setitem(sys.modules, "fake_builtin_parts", mod)
    reg.register(UnitKind.DMU, "dmu's thing")
    assert reg[UnitKind.DMU] == "dmu's thing" and UnitKind.SMU not in reg
    with pytest.raises(ValueError, match="thing for dmu is registered twice"):
        reg.register(UnitKind.DMU, "another")
    with pytest.raises(ValueError, match="layer 'gpu' is not one of hw, sched, tb, flow"):
        Registry("gpu", "thing")


PACKAGE = '''
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit

VEC = register_unit(UnitSpec(
    key="vec", code=9, title="vector unit", dtypes=("bf16", "int8"),
    params={"scratchpad_bytes": SCRATCHPAD, "lanes": Param(16, 1, 64, doc="lanes")},
    geometry=("lanes",), runs=(("eltwise", "bf16"),), also_runs=(("act", "bf16"),),
    sparse=True, package=__name__))
'''

PROBE = '''
from accelpool.spec.config import UNIT_PARAMS, UnitKind, parse_config
from accelpool.spec.capabilities import GEOMETRY_KEYS, capability_registers
from accelpool.sched.ir import CAPABLE_UNITS, OpType
from accelpool.sched.pool import KIND_OPS, is_sparse
from accelpool.spec.config import DType
from accelpool.spec.unit import Registry
vec = UnitKind.VEC
print(vec.value, list(UNIT_PARAMS[vec]), GEOMETRY_KEYS[vec])
print([k.key for k in CAPABLE_UNITS[(OpType.ELTWISE, DType.BF16)]],
      [k.key for k in CAPABLE_UNITS[(OpType.ACT, DType.BF16)]])
print(sorted(o.value + ":" + d.key for o, d in KIND_OPS[vec]), is_sparse(vec))
cfg = parse_config({"name": "p", "mesh": {"cols": 2, "rows": 1},
                    "tile": [{"name": "mem", "kind": "memory", "x": 0, "y": 0},
                             {"name": "v0", "kind": "vec", "x": 1, "y": 0, "lanes": 32}]})
regs = capability_registers(cfg.tile("v0"))
print(cfg.tile("v0")["lanes"], [regs[r] for r in sorted(regs)][:4])
reg = Registry("sched", "probe")
print(reg[vec], len(reg))
'''


def test_a_unit_package_extends_every_table_and_loads_its_layer_modules(tmp_path):
    pkg = tmp_path / "vecunit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    # Registry("sched", ...) imports vecunit.sched, which registers into it on import.
    (pkg / "sched.py").write_text("import gc\nfrom accelpool.spec.unit import Registry\n"
                                  "from . import VEC\n"
                                  "for r in [o for o in gc.get_objects() if isinstance(o, Registry)]:\n"
                                  "    if r.what == 'probe':\n"
                                  "        r.register(VEC, 'vec probe')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "ACCELPOOL_UNITS": "vecunit"}
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "9 ['scratchpad_bytes', 'lanes'] ('lanes',)",
        "['afu', 'vec'] ['afu', 'vec']",
        "['act:bf16', 'eltwise:bf16'] True",
        "32 [9, 256, 5, 32]",
        "vec probe 1",
    ]


def test_a_unit_package_that_cannot_be_imported_is_named(tmp_path):
    env = {**os.environ, "ACCELPOOL_UNITS": "no_such_unit_package"}
    code = "from accelpool.spec.config import UnitKind; print(list(UnitKind))"
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode != 0
    assert "ACCELPOOL_UNITS: unit package 'no_such_unit_package' cannot be imported" in r.stderr
