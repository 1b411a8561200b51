"""The command-stream timing model (:mod:`accelpool.sched.cost.stream`) against the tiles' traces.

Two small SoCs run on Icarus (one simulator process each, every job of
:mod:`accelpool.flow.stream_jobs` through :func:`accelpool.tb.soc.run_jobs`); the issue cycle of every command,
as the tiles' trace memories record it, must equal
:func:`accelpool.sched.cost.stream.soc_timelines` exactly when no two tiles' transfers overlap:

- ``configs/stream_pair.toml`` (memory + AFUs at 1 and 2 hops): LOAD and STORE lengths
  8 B .. 4 KiB back to back at both hop counts, LOADs while an EXEC runs (shorter and
  longer than it), EXEC after LOADs, STORE after EXEC, SIGNAL/WAIT between the tiles,
  NOP; micro-op groups as ``accelpool.sched.codegen`` emits them, whose :func:`op_cycles` add up
  to the stream's END; two tiles using the memory tile at once (contention), against
  :func:`accelpool.sched.cost.stream.shared_memory_timelines` (the memory tile as one packet server).
- ``configs/ce_pair.toml`` (memory + two CEs, 2 hops apart): a convolution's EXEC, a
  STORE into the other tile's scratchpad and SIGNAL/WAIT at 2 hops both ways; both CEs
  on the memory tile at once from its two router ports.

Where transfers overlap, :func:`accelpool.sched.cost.stream.soc_timelines` with
``memory_contention=True`` is compared with a stated tolerance instead.

Verilator runs the same jobs with ``make regress`` (slow: minutes of build).
"""

from __future__ import annotations

import pytest

from accelpool.spec import isa
from accelpool.spec.isa import Opcode
from accelpool.sched.cost import afu as afu_cost
from accelpool.sched.cost import noc
from accelpool.sched.cost.stream import (FIRST_ISSUE, ISSUE_INTERVAL, Step, StreamError,
                                         command_cycles, memory_service_cycles, op_cycles,
                                         op_memory_cycles, op_steps, program_timelines,
                                         shared_memory_finish, shared_memory_timelines,
                                         signal_arrival, soc_timelines, stream_timeline)
from accelpool.flow.stream_jobs import (CE_CONTENTION, CE_JOB, CE_PAIR, CONTENTION, GROUPS,
                                        GROUPS_1, GROUPS_2, LENGTHS, PAIR, PAIR_JOBS, RANDOM,
                                        SWEEP, WAITS, afu_exec, ce_exec, measure, relu)


@pytest.fixture(scope="module", params=[pytest.param("verilator", marks=pytest.mark.slow),
                                        "icarus"])
def traces(request):
    """Every job's measured traces: {job name: {tile: [issue cycle per command]}}."""
    return measure(request.param)


@pytest.mark.parametrize("job", ["sweep", "overlap1", "overlap2", "groups", "waits"])
def test_timeline_equals_the_trace(traces, job):
    assert soc_timelines(PAIR_JOBS[job], PAIR, afu_exec) == traces[job]


def test_ce_exec_and_two_hop_signals(traces):
    assert soc_timelines(CE_JOB, CE_PAIR, ce_exec) == traces["ce"]


def test_ce_pair_memory_contention(traces):
    """Two tiles reaching the memory tile from different router ports (east, south):
    LOADs and STOREs at once follow the packet server within one cycle."""
    shared = soc_timelines(CE_CONTENTION, CE_PAIR, memory_contention=True)
    for tile, measured in traces["ce_contention"].items():
        assert all(abs(a - b) <= 1 for a, b in zip(measured, shared[tile])), \
            (tile, measured, shared[tile])


@pytest.mark.parametrize("tile,hops", [("afu1", 1), ("afu2", 2)])
def test_back_to_back_dma_is_noc_duration_plus_one(traces, tile, hops):
    """A LOAD or STORE issued in cycle a frees the NI for the next one at a + 1 + d, with
    d from sched.cost.noc at the tile's distance from memory (checked here directly
    against the trace, not through the model)."""
    t = traces["sweep"][tile]
    first = 1 if tile == "afu2" else 0            # afu2 starts with its WAIT
    cmds = SWEEP[tile][first:first + 2 * len(LENGTHS)]
    for i, c in enumerate(cmds):
        n = c.fields["length"]
        d = (noc.load_cycles if c.opcode is Opcode.LOAD else noc.store_cycles)(n, hops)
        assert t[first + i + 1] - t[first + i] == max(ISSUE_INTERVAL, 1 + d), (tile, c.listing())


def test_op_cycles_add_up_to_the_stream(traces):
    """afu1's groups start with a LOAD and end with a SIGNAL after their EXEC: their
    occupancies add up to the measured END exactly."""
    total = FIRST_ISSUE
    for g, (loads, count, stores, fence, to) in zip(GROUPS_1, [
            ([64] * 4, 128, [64] * 4, 32, 1), ([1024], 512, [256, 256], 32, 1),
            ([8, 8], 8, [8], 0, 2)]):
        exec_c = afu_cost.cycles(PAIR.tile("afu1"), func="relu", dtype="bf16", count=count)
        by_steps = op_cycles(stream_steps(g, "afu1"))
        by_lengths = op_cycles(loads, exec_c, stores, hops=1, signals=to, fence_bytes=fence)
        assert by_steps == by_lengths
        total += by_lengths
    assert traces["groups"]["afu1"][-1] == total


def stream_steps(cmds, tile):
    from accelpool.sched.cost.stream import steps_of
    return steps_of(cmds, PAIR.tile(tile), lambda c: afu_exec(PAIR.tile(tile), c))


def test_wait_first_groups_are_bounded_by_op_cycles(traces):
    """afu2's groups start with a WAIT. Given afu1's measured SIGNALs the single-tile
    timeline is exact; with every WAIT satisfied from the start, the sum of the groups'
    occupancies bounds the stream from above by at most ISSUE_INTERVAL per group."""
    t = traces["waits"]
    ex2 = lambda c: afu_exec(PAIR.tile("afu2"), c)
    arrivals = {1: [signal_arrival(t["afu1"][i], 1) for i, c in enumerate(WAITS["afu1"])
                    if c.opcode is Opcode.SIGNAL]}
    assert stream_timeline(WAITS["afu2"], "afu2", PAIR, ex2, signal_arrivals=arrivals) == t["afu2"]
    alone = stream_timeline(WAITS["afu2"], "afu2", PAIR, ex2, signal_arrivals={1: [0] * 3})
    total = FIRST_ISSUE + sum(op_cycles(stream_steps(g, "afu2")) for g in GROUPS_2)
    assert alone[-1] <= total <= alone[-1] + ISSUE_INTERVAL * len(GROUPS_2)


@pytest.mark.parametrize("job", list(CONTENTION))
def test_memory_tile_contention(traces, job):
    """Both tiles on the memory tile at once: it serves one packet at a time, so each
    tile's commands take far longer than alone; the packet-server model follows the RTL
    to within one cycle (exactly but for the LOAD against a STORE, one cycle late)."""
    streams = []
    for tile, hops, cmds in (("afu1", 1, CONTENTION[job][0]), ("afu2", 2, CONTENTION[job][1])):
        nops = sum(c.opcode is Opcode.NOP for c in cmds)
        streams.append((FIRST_ISSUE + ISSUE_INTERVAL * nops, hops,
                        [(c.opcode, c.fields["length"]) for c in cmds if c.opcode is not Opcode.NOP]))
    model = shared_memory_timelines(streams)
    for (tile, m) in zip(("afu1", "afu2"), model):
        measured = traces[job][tile][-len(m):]
        assert all(abs(a - b) <= 1 for a, b in zip(measured, m)), (tile, measured, m)
        alone = soc_timelines({tile: PAIR_JOBS[job][tile]}, PAIR)[tile]
        assert measured[-1] > alone[-1]


@pytest.mark.parametrize("job", ["concurrent", *RANDOM, *CONTENTION])
def test_soc_timelines_with_memory_contention(traces, job):
    """Streams whose transfers overlap: with the memory tile modelled as one packet
    server, the END of each tile is within 1% of the RTL's and no command is more than
    16 cycles off (the order in which two tiles' packets interleave at the memory tile
    differs in details: both-STORE phases shift single commands by up to ~12 cycles);
    single-command contention and the codegen-like pair are within one cycle. Without the
    server the model is optimistic."""
    streams = PAIR_JOBS[job]
    shared = soc_timelines(streams, PAIR, afu_exec, memory_contention=True)
    alone = soc_timelines(streams, PAIR, afu_exec)
    tol = 16 if job in RANDOM else 1
    for tile, measured in traces[job].items():
        assert all(abs(a - b) <= tol for a, b in zip(measured, shared[tile])), \
            (tile, measured, shared[tile])
        assert abs(measured[-1] - shared[tile][-1]) <= 0.01 * measured[-1]
        assert all(a >= b for a, b in zip(measured, alone[tile]))


@pytest.mark.parametrize("job", ["sweep", "overlap1", "groups", "waits"])
def test_memory_contention_changes_nothing_alone(job):
    assert soc_timelines(PAIR_JOBS[job], PAIR, afu_exec, memory_contention=True) == \
        soc_timelines(PAIR_JOBS[job], PAIR, afu_exec)


def test_memory_service():
    assert memory_service_cycles("load", 4096) == 64 * (noc.LOAD_PACKET_OVERHEAD + 8)
    assert memory_service_cycles("store", 4096) == 64 * 9
    assert memory_service_cycles("load", 72) == (4 + 8) + (4 + 1)
    # alone, the shared model is the zero-contention duration
    for op, n, h in (("load", 200, 1), ("store", 1000, 2), ("load", 8, 3), ("store", 0, 1)):
        assert shared_memory_finish([(10, op, n, h)]) == [10 + 1 + command_cycles(op, n, h)]
    assert op_memory_cycles([64] * 4, [72], fence_bytes=32) == 4 * 12 + (4 + 4) + (9 + 2)
    with pytest.raises(ValueError, match=r"The memory tile serves load and store, not 'signal'"):
        memory_service_cycles("signal", 8)


#: Cycles a single command's issue may be off in
#: :func:`test_lowered_models_predicted_from_their_streams` (default 16).
COMMAND_BOUND = {"qcnn": 96}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "gcn", "transformer", "qcnn"])
def test_lowered_models_predicted_from_their_streams(model):
    """The compiled streams of whole models on the default SoC (Icarus; minutes to build,
    under a minute per model): with the memory tile's packet server, every tile's END is
    within 0.5% of the trace and no command more than :data:`COMMAND_BOUND` cycles off
    (measured: mlp, gcn, transformer END exact to 2 cycles, at most 2 on any command;
    qcnn END within 27 cycles (0.26%), but up to 84 on single commands: the CE's 2 KiB
    input LOAD and the LPU's 1 KiB weight LOADs run at once, and with XY routing the CE's
    requests pass the LPU's router (1, 0) and share its link into the memory tile, so the
    mesh arbitrates them there, by router port, not tile by tile at the memory tile as the
    server model does)."""
    from accelpool.spec.config import load_config
    from accelpool.tb.soc import build_soc, run_job
    from accelpool.flow.stream_jobs import compiled_model

    cfg = load_config("default")
    _, prog, job = compiled_model(model, cfg)
    res = run_job(build_soc(cfg, "icarus"), job)
    pred = program_timelines(prog, cfg)
    assert set(pred) == set(res.trace)
    for tile, measured in res.trace.items():
        assert abs(pred[tile][-1] - measured[-1]) <= 0.005 * measured[-1], tile
        assert all(abs(a - b) <= COMMAND_BOUND.get(model, 16)
                   for a, b in zip(measured, pred[tile])), tile


# ---- plain Python --------------------------------------------------------------------

def test_rules_by_hand():
    """The rules on a three-command stream, worked out in the module docstring's terms."""
    steps = [Step(Opcode.LOAD, length=64, hops=1), Step(Opcode.EXEC, exec_cycles=10),
             Step(Opcode.STORE, length=8, hops=1), Step(Opcode.END)]
    load = noc.load_cycles(64, 1)                  # 8 flits + 4 + 2 + 2 = 16
    t = stream_timeline(steps, "afu1", PAIR)
    assert t[0] == 2
    assert t[1] == 2 + 1 + load                    # EXEC waits for the NI
    assert t[2] == t[1] + 1 + 10                   # STORE waits for the unit
    assert t[3] == t[2] + 1 + noc.store_cycles(8, 1)
    assert op_cycles([64], 10, [8], hops=1) == t[3] - FIRST_ISSUE


def test_command_cycles():
    assert command_cycles("load", 64, 1) == noc.load_cycles(64, 1)
    assert command_cycles(Opcode.STORE, 4096, 2) == noc.store_cycles(4096, 2)
    assert command_cycles("signal") == 1 and command_cycles("nop") == 0
    with pytest.raises(ValueError, match=r"command_cycles takes load, store, signal or nop, "
                                         r"not 'exec'"):
        command_cycles("exec")
    with pytest.raises(ValueError, match=r"Unknown command 'jump'; accepted: nop, load"):
        command_cycles("jump")


def test_signal_arrivals_with_counts():
    cmds = [isa.wait(token=3, count=2), isa.end()]
    assert stream_timeline(cmds, "afu1", PAIR, signal_arrivals={3: [(40, 2)]}) == [40, 43]
    assert stream_timeline(cmds, "afu1", PAIR, signal_arrivals={3: [50, 30]}) == [50, 53]


def test_errors_name_the_problem():
    with pytest.raises(StreamError, match=r"The streams deadlock: afu1 at command 0 \(WAIT "
                                          r"token=3 count=2\) waits for a token nobody sends"):
        stream_timeline([isa.wait(token=3, count=2), isa.end()], "afu1", PAIR,
                        signal_arrivals={3: [10]})
    with pytest.raises(StreamError, match=r"afu2 at command 0 .* afu1 at command 0"):
        soc_timelines({"afu2": [isa.wait(token=0), isa.signal(x=1, y=0, token=0)],
                       "afu1": [isa.wait(token=0), isa.signal(x=1, y=1, token=0)]}, PAIR)


def test_exec_cycles_default_to_the_kind_formula(traces):
    """Without exec_cycles an EXEC is priced by sched/cost/<kind>.py from its arguments."""
    assert soc_timelines(PAIR_JOBS["overlap1"], PAIR) == traces["overlap1"]
    assert soc_timelines(CE_JOB, CE_PAIR) == traces["ce"]
    assert stream_timeline([relu(8), isa.end()], "afu1", PAIR) == \
        [2, 2 + 1 + afu_cost.cycles(PAIR.tile("afu1"), func="relu", dtype="bf16", count=8)]


def test_op_steps_order():
    s = op_steps([8, 16], 5, [24], hops=2, signals=2, waits=1, fence_bytes=32)
    assert [x.op for x in s] == [Opcode.WAIT, Opcode.LOAD, Opcode.LOAD, Opcode.EXEC,
                                 Opcode.STORE, Opcode.LOAD, Opcode.SIGNAL, Opcode.SIGNAL]
    assert op_cycles([8, 16], 5, [24], hops=2, signals=2, waits=1, fence_bytes=32) == \
        op_cycles(s)


def test_op_cycles_closed_form():
    """The group sum of docs/integration.md: sum(1 + d) over LOAD/STORE, max(3, 1 + exec),
    3 per SIGNAL and WAIT, equal to the rules engine (which the RTL tests check)."""
    import random
    rng = random.Random(5)
    for _ in range(200):
        loads = [8 * rng.randint(1, 600) for _ in range(rng.randint(0, 5))]
        stores = [8 * rng.randint(1, 600) for _ in range(rng.randint(0, 4))]
        e, h = rng.randint(0, 3000), rng.randint(1, 6)
        # codegen fences only after STOREs (a fence LOAD right after the EXEC overlaps it)
        sig, waits, fence = rng.randint(0, 3), rng.randint(0, 2), rng.choice([0, 32])
        fence = fence if stores else 0
        want = (sum(1 + noc.load_cycles(n, h) for n in loads + ([fence] if fence else []))
                + sum(1 + noc.store_cycles(n, h) for n in stores) + max(3, 1 + e)
                + 3 * (sig + waits))
        assert op_cycles(loads, e, stores, hops=h, signals=sig, waits=waits,
                         fence_bytes=fence) == want
        # the rules engine on the same group
        assert op_cycles(op_steps(loads, e, stores, hops=h, signals=sig, waits=waits,
                                  fence_bytes=fence)) == want
    # a fence right after the EXEC (no STORE) overlaps it: less than the closed form
    assert op_cycles([64], 500, [], hops=1, fence_bytes=32) == \
        1 + noc.load_cycles(64, 1) + 1 + 500 < \
        1 + noc.load_cycles(64, 1) + 501 + 1 + noc.load_cycles(32, 1)


def test_assembled_stream_and_commands_agree():
    from accelpool.flow.stream_jobs import OVERLAP
    ex = lambda c: afu_exec(PAIR.tile("afu1"), c)
    assert stream_timeline(isa.assemble(OVERLAP), "afu1", PAIR, ex) == \
        stream_timeline(OVERLAP, PAIR.tile("afu1"), PAIR, ex) == \
        soc_timelines({"afu1": OVERLAP}, PAIR, afu_exec)["afu1"]
