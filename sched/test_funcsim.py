"""Tests of the functional executor's command semantics on a compiled program."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("sched.golden.executor", reason="the golden executor (branch frontend) "
                    "has not been merged")

from hw import isa  # noqa: E402
from sched import models  # noqa: E402
from sched.codegen import compile_schedule  # noqa: E402
from sched.cost.model import CostModel  # noqa: E402
from sched.decompose import compile_model  # noqa: E402
from sched.funcsim import ExecutionError, MismatchError, compare_outputs, run_program  # noqa: E402
from sched.golden.executor import run_graph  # noqa: E402
from sched.pool import Pool  # noqa: E402
from sched.schedulers import heft  # noqa: E402


@pytest.fixture(scope="module")
def gcn():
    pool = Pool.from_config("default")
    g = compile_model("gcn")
    inputs = models.example_inputs(models.build("gcn"))
    prog = compile_schedule(g, heft(g.dag, pool, CostModel(pool)), inputs)
    return prog, run_graph(g, inputs)


def with_stream(prog, tile, cmds):
    streams = dict(prog.streams)
    streams[tile] = dataclasses.replace(streams[tile], commands=cmds)
    return dataclasses.replace(prog, streams=streams)


def busiest(prog):
    return max(prog.streams, key=lambda t: len(prog.streams[t].commands))


def test_unmodified_program_runs(gcn):
    prog, gold = gcn
    compare_outputs(run_program(prog).outputs, gold)


def test_stream_without_end(gcn):
    prog, _ = gcn
    t = busiest(prog)
    with pytest.raises(ExecutionError, match=f"tile {t} command .*: the stream ends without END"):
        run_program(with_stream(prog, t, prog.streams[t].commands[:-1]))


def test_extra_signal_is_an_unconsumed_token(gcn):
    prog, _ = gcn
    t = busiest(prog)
    afu = prog.pool.unit("afu0").tile
    cmds = prog.streams[t].commands[:-1] + [isa.signal(x=afu.x, y=afu.y, token=9), isa.end()]
    with pytest.raises(ExecutionError, match=r"Tokens signalled but never waited for: afu0 token 9: 1"):
        run_program(with_stream(prog, t, cmds))


def test_signal_to_an_empty_router(gcn):
    prog, _ = gcn
    t = busiest(prog)
    cmds = [isa.signal(x=2, y=2, token=1)] + prog.streams[t].commands
    with pytest.raises(ExecutionError, match=r"SIGNAL to \(2,2\), where there is no tile"):
        run_program(with_stream(prog, t, cmds))


def test_load_from_a_tile_that_is_not_memory(gcn):
    prog, _ = gcn
    t = busiest(prog)
    cmds = [isa.load(spad_addr=0, x=0, y=0, remote_addr=0, length=4)] + prog.streams[t].commands
    with pytest.raises(ExecutionError, match=r"LOAD from \(0,0\), not the memory tile \(1, 1\)"):
        run_program(with_stream(prog, t, cmds))


def test_store_of_unloaded_scratchpad_and_out_of_range(gcn):
    prog, _ = gcn
    t = busiest(prog)
    mem = prog.pool.memory
    top = prog.image.size
    cmds = [isa.store(spad_addr=0x8000, x=mem.x, y=mem.y, remote_addr=top - 64, length=8)]
    with pytest.raises(ExecutionError, match="reads scratchpad byte 0x8000, which no LOAD or EXEC wrote"):
        run_program(with_stream(prog, t, cmds + prog.streams[t].commands))
    cmds = [isa.load(spad_addr=0, x=mem.x, y=mem.y, remote_addr=top - 4, length=8)]
    with pytest.raises(ExecutionError, match="outside the 1048576-byte memory"):
        run_program(with_stream(prog, t, cmds + prog.streams[t].commands))


def test_exec_on_the_wrong_tile(gcn):
    prog, _ = gcn
    t = busiest(prog)
    i = next(i for i, c in enumerate(prog.streams[t].commands) if c.opcode is isa.Opcode.EXEC)
    other = next(u for u in prog.streams if u != t and any(
        c.opcode is isa.Opcode.EXEC for c in prog.streams[u].commands))
    stolen = prog.streams[t].commands[i]
    cmds = [stolen] + prog.streams[other].commands
    with pytest.raises(ExecutionError, match=f"which the schedule placed on {t}"):
        run_program(with_stream(prog, other, cmds))


def test_output_mismatch_is_reported(gcn):
    prog, gold = gcn
    name = next(iter(gold))
    bad = {k: v.copy() for k, v in gold.items()}
    bad[name].flat[3] = bad[name].flat[3] + 1
    with pytest.raises(MismatchError, match=f"Output {name!r} differs from the golden run"):
        compare_outputs(bad, gold)
