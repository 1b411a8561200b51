"""Tests of the functional executor's command semantics on a compiled program."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import DType, UnitKind
from accelpool.sched import models
from accelpool.sched.codegen import compile_schedule
from accelpool.sched.cost.model import CostModel
from accelpool.sched.decompose import compile_model
from accelpool.sched.funcsim import (ExecutionError, MismatchError, compare_outputs, golden_outputs,
                           run_program)
from accelpool.sched.ir import ActFunc, Buffer, BufferKind, Graph, MicroOp, OpType, TensorRef
from accelpool.sched.pool import Pool
from accelpool.sched.schedulers import heft

POOL = Pool.from_config("default")


@pytest.fixture(scope="module")
def mlp():
    g = compile_model("mlp")
    inputs = models.example_inputs(models.build("mlp"))
    prog = compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)), inputs)
    return prog, golden_outputs(g, inputs)


def with_stream(prog, tile, cmds):
    streams = dict(prog.streams)
    streams[tile] = dataclasses.replace(streams[tile], commands=cmds)
    return dataclasses.replace(prog, streams=streams)


def busiest(prog):
    return max(prog.streams, key=lambda t: len(prog.streams[t].commands))


def test_unmodified_program_runs(mlp):
    prog, gold = mlp
    compare_outputs(run_program(prog).outputs, gold)


def test_stream_without_end(mlp):
    prog, _ = mlp
    t = busiest(prog)
    with pytest.raises(ExecutionError, match=f"tile {t} command .*: the stream ends without END"):
        run_program(with_stream(prog, t, prog.streams[t].commands[:-1]))


def test_extra_signal_is_an_unconsumed_token(mlp):
    prog, _ = mlp
    t = busiest(prog)
    afu = prog.pool.unit("afu0").tile
    cmds = prog.streams[t].commands[:-1] + [isa.signal(x=afu.x, y=afu.y, token=9), isa.end()]
    with pytest.raises(ExecutionError, match=r"Tokens signalled but never waited for: afu0 token 9: 1"):
        run_program(with_stream(prog, t, cmds))


def test_signal_to_an_empty_router(mlp):
    prog, _ = mlp
    t = busiest(prog)
    cmds = [isa.signal(x=2, y=2, token=1)] + prog.streams[t].commands
    with pytest.raises(ExecutionError, match=r"SIGNAL to \(2,2\), where there is no tile"):
        run_program(with_stream(prog, t, cmds))


def test_load_from_a_tile_that_is_not_memory(mlp):
    prog, _ = mlp
    t = busiest(prog)
    cmds = [isa.load(spad_addr=0, x=0, y=0, remote_addr=0, length=4)] + prog.streams[t].commands
    with pytest.raises(ExecutionError, match=r"LOAD from \(0,0\), not the memory tile \(1, 1\)"):
        run_program(with_stream(prog, t, cmds))


def test_store_of_unloaded_scratchpad_and_out_of_range(mlp):
    prog, _ = mlp
    t = busiest(prog)
    mem = prog.pool.memory
    top = prog.image.size
    cmds = [isa.store(spad_addr=0x8000, x=mem.x, y=mem.y, remote_addr=top - 64, length=8)]
    with pytest.raises(ExecutionError, match="reads scratchpad byte 0x8000, which no LOAD or EXEC wrote"):
        run_program(with_stream(prog, t, cmds + prog.streams[t].commands))
    cmds = [isa.load(spad_addr=0, x=mem.x, y=mem.y, remote_addr=top - 4, length=8)]
    with pytest.raises(ExecutionError, match="outside the 1048576-byte memory"):
        run_program(with_stream(prog, t, cmds + prog.streams[t].commands))


def test_a_result_element_is_stored_once(mlp):
    prog, _ = mlp
    t, i = next((t, i) for t, s in prog.streams.items() for i, c in enumerate(s.commands)
                if c.opcode is isa.Opcode.STORE)
    cmds = list(prog.streams[t].commands)
    cmds.insert(i + 1, cmds[i])
    with pytest.raises(ExecutionError, match=r"stores over memory byte 0x[0-9a-f]+, already "
                                             rf"written by tile {t}"):
        run_program(with_stream(prog, t, cmds))


def test_exec_without_its_operand_loads_reads_poison(mlp):
    # Without the first LOAD of a tile, its first EXEC reads a scratchpad region that still
    # holds the poison pattern: the result is wrong (or refused).
    prog, gold = mlp
    for t in ("dmu0", "dmu1", "afu0"):
        cmds = list(prog.streams[t].commands)
        i = next(i for i, c in enumerate(cmds) if c.opcode is isa.Opcode.LOAD)
        del cmds[i]
        with pytest.raises((ExecutionError, MismatchError)):
            compare_outputs(run_program(with_stream(prog, t, cmds)).outputs, gold)


def test_padding_is_read_before_it_is_written():
    # [2, 5] BF16 rows are 10 bytes, padded to 16: the AFU loads, computes and stores whole
    # padded rows, so it reads the input's padding (never written: zeros) and writes the
    # output's. Both are allowed; the elements are still checked.
    g = Graph("pad")
    g.add_buffer(Buffer("x", (2, 5), DType.BF16, BufferKind.INPUT))
    g.add_buffer(Buffer("y", (2, 5), DType.BF16, BufferKind.OUTPUT))
    g.add_op(MicroOp("relu", OpType.ACT, DType.BF16, (TensorRef("x", (0, 0), (2, 5)),),
                     (TensorRef("y", (0, 0), (2, 5)),), ActFunc.RELU, {"n": 10}))
    x = np.array([[1, -2, 3, -4, 5], [-6, 7, -8, 9, -10]], np.float32)
    prog = compile_schedule(g, heft(g.dag, POOL, CostModel(POOL)), {"x": x})
    lay = prog.layouts["y"]
    assert lay.pitch == 16
    assert prog.image.padding[lay.addr:lay.addr + 32].reshape(2, 16)[:, 10:].all()
    cmds = prog.streams["afu0"].commands
    assert [c.fields["length"] for c in cmds if c.opcode is isa.Opcode.LOAD] == [32]
    ex = next(c for c in cmds if c.opcode is isa.Opcode.EXEC)
    assert ex.fields["args"]["count"] == 16
    out = run_program(prog).outputs["y"]
    assert np.array_equal(out.astype(np.float32), np.maximum(x, 0))
    assert out.dtype == ml_dtypes.bfloat16


def test_output_mismatch_is_reported(mlp):
    prog, gold = mlp
    name = next(iter(gold))
    bad = {k: v.copy() for k, v in gold.items()}
    bad[name].flat[3] = bad[name].flat[3] + 1
    with pytest.raises(MismatchError, match=f"Output {name!r} differs from the golden run"):
        compare_outputs(bad, gold)
