"""A unit added from outside accelpool: its own package and one registration line.

The package declares a copy of the dense matrix unit under a new name and kind code,
``dmu2``, and registers its parts in each layer (``docs/adding-a-unit.md``); the line is
``ACCELPOOL_UNITS=dmu2units``. The installed ``accelpool`` command, run from a folder that
is not the checkout, then takes a pool of a memory tile and a ``dmu2`` through the whole
flow: config, RTL, discovery, cost, schedule, codegen, golden, functional executor and an
RTL run whose outputs are checked bit for bit.
"""
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ACCELPOOL = Path(sys.executable).with_name("accelpool")

#: The unit's package: the declaration and EXEC contract, then one module per layer.
PACKAGE = {
    "__init__.py": '''
        """dmu2: a second dense matrix unit, declared outside accelpool."""
        from accelpool.spec import isa
        from accelpool.spec.param import SCRATCHPAD, Param
        from accelpool.spec.unit import UnitSpec, register_unit
        from accelpool.spec.units.dmu import EXEC as DMU_EXEC

        DMU2 = register_unit(UnitSpec(
            key="dmu2", code=7, title="second dense matrix unit", dtypes=("bf16",),
            params={"scratchpad_bytes": SCRATCHPAD,
                    "rows": Param(8, 1, 64, power_of_two=True, doc="array rows"),
                    "cols": Param(8, 1, 64, power_of_two=True, doc="array columns")},
            geometry=("rows", "cols"), runs=(("gemm", "bf16"),), package=__name__))

        EXEC = isa.define_exec(DMU2, DMU_EXEC.funcs, DMU_EXEC.args, DMU_EXEC.checks)
    ''',
    "hw.py": '''
        from accelpool.hw.dmu import Dmu
        from accelpool.hw.units import UNIT_RTL

        from . import DMU2

        UNIT_RTL.register(DMU2, Dmu.from_tile)
    ''',
    "sched.py": '''
        from accelpool.sched.cost import dmu as dmu_cost
        from accelpool.sched.cost.formula import FORMULAS, Formula
        from accelpool.sched.cost.systolic import gemm_arguments
        from accelpool.sched.ir import OpType
        from accelpool.sched.lower.common import LOWERINGS
        from accelpool.sched.lower.gemm import lower_gemm
        from accelpool.sched.unitsim import MODELS, model_for
        from accelpool.spec.config import UnitKind

        from . import DMU2

        LOWERINGS.register((DMU2, OpType.GEMM), lower_gemm)
        FORMULAS.register(DMU2, Formula(dmu_cost.cycles, gemm_arguments))
        MODELS.register(DMU2, model_for(UnitKind.DMU))
    ''',
}

POOL = """
name = "plugin"
clock_mhz = 500

[mesh]
cols = 2
rows = 1
flit_bits = 64
buffer_flits = 4

[[tile]]
name = "mem"
kind = "memory"
x = 0
y = 0
bytes = 1048576

[[tile]]
name = "big0"
kind = "dmu2"
x = 1
y = 0
rows = 8
cols = 8
"""


def _matmul_model() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w = numpy_helper.from_array(rng.standard_normal((32, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def user_dir(tmp_path):
    pkg = tmp_path / "units" / "dmu2units"
    pkg.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (pkg / name).write_text(textwrap.dedent(text).lstrip())
    work = tmp_path / "work"
    work.mkdir()
    (work / "plugin.toml").write_text(POOL)
    onnx.save(_matmul_model(), work / "matmul.onnx")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ACCELPOOL_UNITS")}
    env.update(PYTHONPATH=str(tmp_path / "units"), ACCELPOOL_UNITS="dmu2units",
               PYTHONNOUSERSITE="1", ACCELPOOL_BUILD=str(tmp_path / "build"))
    return work, env


def _run(args, cwd, env, timeout=1200):
    return subprocess.run([str(ACCELPOOL), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_unit_package_is_refused_without_its_registration_line(user_dir):
    work, env = user_dir
    env = {k: v for k, v in env.items() if k != "ACCELPOOL_UNITS"}
    r = _run(["schedule", "matmul.onnx", "--pool", "plugin.toml"], work, env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "tile[1].kind: 'dmu2' is not a unit kind; accepted: memory, dmu" in r.stderr


def test_a_unit_added_by_its_package_runs_the_whole_flow(user_dir):
    work, env = user_dir
    r = _run(["schedule", "matmul.onnx", "--pool", "plugin.toml"], work, env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "big0" in r.stdout and "makespan" in r.stdout
    r = _run(["sim", "matmul.onnx", "--pool", "plugin.toml"], work, env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # Discovery checked the new kind's code (7) in the RTL's capability registers against
    # the config before the run; the RTL ran the tile's EXECs and matched the golden
    # reference bit for bit, and both cycle predictions priced the new unit.
    assert "outputs: OK (bit-exact against the golden reference)" in out, out
    assert re.search(r"unit busy \(EXEC cycles over the run\): big0 [1-9]", out), out
    assert re.search(r"cycles: measured \d+, predicted \d+ by the schedule", out), out
