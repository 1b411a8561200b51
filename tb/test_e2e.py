"""Built-in models end to end on the default SoC's RTL (``configs/default.toml``).

Every built-in model (mlp, gcn, transformer, qcnn, cnn, mixed) is compiled, scheduled,
loaded into the simulated SoC, run to ``all_done`` and read back
(:func:`accelpool.flow.simflow.simulate`, what ``accelpool sim`` runs). The outputs must equal the
golden run in the units' arithmetic bit for bit; the scheduler's predicted makespan must be
within 10% of the measured cycles; the measured timeline (tiles' traces, the memory tile's
too) must show every EXEC taking exactly the cycles the unit's formula gives; every
scheduler must produce the same outputs (the schedule changes timing, never results).

Verilator runs every model (``make regress``: its build of the 8-tile SoC takes minutes;
cnn's longer DMU streams need a build with 2048-command memories, in its own folder).
Icarus (``make test``) runs the MLP, the GCN, the quantized CNN (the convolution engine)
and mixed (all six unit kinds and the memory tile's layout engine), which must also take
exactly as many cycles, and leave the same traces, as on Verilator; cnn, whose im2col runs
on the memory tile's layout engine, takes about 4 minutes of Icarus simulation, so it runs
on Verilator only. LeNet-sized maps whose rows are not whole flits (float and quantized)
run on Icarus too. Beside the models, SPMM tiles lowered for the SMU (a small graph of
``sched/test_codegen.py``) run on Icarus.
"""

from __future__ import annotations

import numpy as np
import pytest

from accelpool.sched.cost.model import CostModel
from accelpool.flow.measured import measured_ops
from accelpool.flow.simflow import simulate

LOWERED = ("mlp", "gcn", "transformer", "qcnn", "cnn", "mixed")
#: The predicted makespan must be within this fraction of the measured cycles.
TOLERANCE = 0.10

_REPORTS: dict = {}


def run(model: str, sim: str = "verilator", scheduler: str = "heft"):
    key = (model, sim, scheduler)
    if key not in _REPORTS:
        _REPORTS[key] = simulate(model, "default", sim=sim, scheduler=scheduler,
                                 progress=False)
    return _REPORTS[key]


def _check(report) -> None:
    assert report.outputs_ok, report.mismatch
    assert abs(report.measured_cycles - report.predicted_cycles) <= \
        TOLERANCE * report.measured_cycles, report.text()
    # every EXEC, as the hardware trace saw it, took its unit's formula cycles (+1: the
    # STORE after it issues the cycle after the unit's busy falls)
    prog, trace = report.program, report.trace
    cost = CostModel(prog.pool)
    for n, m in measured_ops(prog, trace).items():
        unit = prog.pool.unit(m.unit)
        want = cost.exec_cycles(prog.graph.op(n), unit)
        assert m.exec_end - m.exec_start == want + 1, (n, m, want)


# The default SoC's Verilator build takes about 3 minutes of both cores: these run with
# `make regress` (and `make sim` builds the same model); `make test` runs Icarus.
@pytest.mark.slow
@pytest.mark.parametrize("model", LOWERED)
def test_model_on_verilator(model):
    _check(run(model))


@pytest.mark.parametrize("model", ["mlp", "gcn", "qcnn", "mixed"])
def test_model_on_icarus(model):
    _check(run(model, "icarus"))


@pytest.mark.parametrize("build", ["lenet_maps", "qlenet_maps"])
def test_maps_whose_rows_are_not_whole_flits_on_icarus(build, tmp_path):
    """14x14 and 7x7 maps (BF16 rows of 28 and 14 bytes through the DMU and the layout
    engine, the 7x7 maps cropped by transposes; INT8 rows of 14 and 7 bytes on the
    convolution engine), bit-exact on the RTL."""
    import onnx

    from accelpool.sched import test_user_models
    path = tmp_path / f"{build}.onnx"
    onnx.save(getattr(test_user_models, build)(), path)
    _check(simulate(str(path), "default", sim="icarus", out_dir=tmp_path, progress=False))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "gcn", "qcnn", "mixed"])
def test_simulators_agree_cycle_for_cycle(model):
    assert run(model, "icarus").measured_cycles == run(model).measured_cycles
    assert run(model, "icarus").trace == run(model).trace


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_every_scheduler_gives_identical_outputs(sim):
    from accelpool.sched.schedulers import SCHEDULERS
    names = list(SCHEDULERS)
    assert {"greedy", "heft"} <= set(names)
    reports = {s: run("gcn", sim, scheduler=s) for s in names}
    first = reports[names[0]]
    for s, r in reports.items():
        assert r.outputs_ok, (s, r.mismatch)
        for k, v in first.outputs.items():
            np.testing.assert_array_equal(r.outputs[k].view(np.uint8), v.view(np.uint8),
                                          err_msg=f"{s} vs {names[0]}: {k}")
    # and the schedules really differ in timing
    assert len({r.measured_cycles for r in reports.values()}) > 1


def test_smu_spmm_tiles_on_icarus():
    """SPMM tiles with a constant sparse A as codegen lowers them for the SMU (CSR blobs, B
    and C rows padded to its 64 lanes; BF16 and FP32 results; an empty row, a -0 weight),
    one more densely on a DMU (sched/test_codegen.py's graph), on the default SoC's RTL:
    bit-exact with the golden run, every SMU EXEC its formula (exact, from the rows'
    non-zeros) + 1 cycles, the streams' timing model within 10% of the measured cycles."""
    from accelpool.spec.config import load_config
    from accelpool.sched.codegen import compile_schedule
    from accelpool.sched.lower.common import NP_DTYPE
    from accelpool.sched.cost.smu import cycles as smu_cycles
    from accelpool.sched.cost.stream import program_timelines
    from accelpool.spec.formats import encode_csr
    from accelpool.sched.funcsim import compare_outputs, golden_outputs, run_program
    from accelpool.sched.pool import Pool
    from accelpool.sched.schedule import Schedule, Slot
    from accelpool.flow.simflow import image_runs
    from accelpool.sched.test_codegen import _sparse_tiles_graph
    from accelpool.tb.soc import SocJob, build_soc, run_job
    cfg = load_config("default")
    pool = Pool(cfg)
    g, inputs = _sparse_tiles_graph()
    s = Schedule("manual", pool, {"smu": Slot("smu0", 0, 1), "dmu": Slot("dmu0", 0, 1),
                                  "smu32": Slot("smu0", 1, 2)})
    prog = compile_schedule(g, s, inputs, fence=False)
    gold = golden_outputs(g, inputs)
    compare_outputs(run_program(prog, stores_complete=True).outputs, gold)
    res = run_job(build_soc(cfg, "icarus"), SocJob(
        streams={t: st.binary for t, st in prog.streams.items()},
        image=image_runs(prog.image.data, prog.image.initialized),
        readback={n: prog.buffer_region(n) for n in g.outputs}))
    compare_outputs({n: prog.layouts[n].unpack(res.readback[n], NP_DTYPE[g.base(n).dtype])
                     for n in g.outputs}, gold)
    ops = measured_ops(prog, res.trace)
    smu = cfg.units[[t.name for t in cfg.units].index("smu0")]
    for n in ("smu", "smu32"):
        a = g.op(n).inputs[0]
        rows = encode_csr(np.asarray(g.buffers[a.buffer].data[a.slices])).row_nnz
        want = smu_cycles(smu, m=len(rows), n=12, row_nnz=list(rows))
        assert ops[n].exec_end - ops[n].exec_start == want + 1, (n, ops[n], want)
    predicted = max(t[-1] for t in program_timelines(prog, cfg).values() if t)
    assert abs(predicted - res.cycles) <= TOLERANCE * res.cycles, (predicted, res.cycles)
