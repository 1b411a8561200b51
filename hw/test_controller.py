import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import enum, memory, data
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.hw.controller import TileController
from accelpool.spec.isa import Opcode, end, load, nop, signal, store, wait


class Func(enum.Enum, shape=8):
    RUN = 1


Args = data.StructLayout({"cycles": 16})


@pytest.fixture(autouse=True)
def toy_exec():
    saved = dict(isa._EXEC)
    isa.define_exec(UnitKind.AFU, Func, Args)
    yield
    isa._EXEC.clear()
    isa._EXEC.update(saved)


def run(unit_cycles):
    return isa.exec_cmd(UnitKind.AFU, Func.RUN, cycles=unit_cycles)


class Top(Elaboratable):
    """Controller plus its command memory; NI, unit and tokens are modelled by the testbench."""

    def __init__(self, cmds, depth=None):
        words = [c.encode() for c in cmds]
        self.depth = depth or len(words)
        self.ctl = TileController(depth=self.depth)
        self.mem = memory.Memory(shape=isa.COMMAND_BITS, depth=self.depth, init=words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctl = self.ctl
        m.submodules.mem = self.mem
        port = self.mem.read_port()
        m.d.comb += [port.addr.eq(self.ctl.fetch.addr), port.en.eq(self.ctl.fetch.en),
                     self.ctl.fetch.data.eq(port.data)]
        return m


def simulate(cmds, *, tokens=None, token_at=None, depth=None, limit=2000):
    """Run ``cmds``; return the event log [(cycle, what, detail)] and the final counters."""
    top = Top(cmds, depth)
    ctl = top.ctl
    log = []
    result = {}
    tokens = dict(tokens or {})

    async def testbench(ctx):
        ni_left = unit_left = 0
        ctx.set(ctl.start, 1)
        await ctx.tick()
        ctx.set(ctl.start, 0)
        for cycle in range(limit):
            if token_at and cycle == token_at[0]:
                tokens[token_at[1]] = tokens.get(token_at[1], 0) + 1
            ctx.set(ctl.ni_busy, ni_left > 0)
            ctx.set(ctl.ni_cmd.ready, ni_left == 0)
            ctx.set(ctl.unit_busy, unit_left > 0)
            ctx.set(ctl.unit_cmd.ready, unit_left == 0)
            w = ctx.get(ctl.tok_wait.payload)
            ctx.set(ctl.tok_wait.ready, tokens.get(w.token, 0) >= w.count)
            if ctx.get(ctl.ni_cmd.valid) and ni_left == 0:
                c = ctx.get(ctl.ni_cmd.payload)
                op = c.opcode
                body = c.body.load if op == Opcode.LOAD else c.body.store
                log.append((cycle, op.name, body.length if op != Opcode.SIGNAL else 0))
                # busy for exactly this many cycles after the accepting edge
                ni_left = 1 + (body.length if op in (Opcode.LOAD, Opcode.STORE) else 1)
            if ctx.get(ctl.unit_cmd.valid) and unit_left == 0:
                args = Args.from_bits(ctx.get(ctl.unit_cmd.payload).args)
                log.append((cycle, "EXEC", args.cycles))
                unit_left = 1 + args.cycles
            if ctx.get(ctl.tok_wait.valid) and ctx.get(ctl.tok_wait.ready):
                tokens[w.token] -= w.count
                log.append((cycle, "WAIT", w.token))
            if ctx.get(ctl.issued):
                result.setdefault("issued", []).append((ctx.get(ctl.pc), ctx.get(ctl.cycles),
                                                        cycle))
            await ctx.tick()
            ni_left = max(0, ni_left - 1)
            unit_left = max(0, unit_left - 1)
            if ctx.get(ctl.done) or ctx.get(ctl.error):
                break
        for name in ("done", "error", "error_pc", "cycles", "unit_busy_cycles",
                     "ni_busy_cycles", "wait_cycles", "stall_cycles"):
            result[name] = ctx.get(getattr(ctl, name))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    return log, result


def test_dispatch_order_and_hazards():
    cmds = [load(spad_addr=0, x=1, y=1, remote_addr=0, length=10),
            run(20),                                   # waits for the LOAD to land
            load(spad_addr=64, x=1, y=1, remote_addr=0, length=5),   # overlaps the EXEC
            store(spad_addr=0, x=1, y=1, remote_addr=0, length=4),   # waits for the EXEC
            signal(x=0, y=0, token=1),
            end()]
    log, res = simulate(cmds)
    kinds = [k for _, k, _ in log]
    assert kinds == ["LOAD", "EXEC", "LOAD", "STORE", "SIGNAL"]
    t = {i: c for i, (c, _, _) in enumerate(log)}
    assert t[1] >= t[0] + 10            # EXEC after the 10-cycle LOAD finished
    assert t[2] < t[1] + 20             # the second LOAD overlapped the EXEC
    assert t[3] >= t[1] + 20            # STORE after the EXEC finished
    assert res["done"] and not res["error"]
    assert res["unit_busy_cycles"] == 20
    assert res["ni_busy_cycles"] == 10 + 5 + 4 + 1
    assert res["stall_cycles"] > 0 and res["wait_cycles"] == 0
    assert res["cycles"] >= t[3] + 4


def test_every_command_is_stamped_once_when_it_issues():
    cmds = [load(spad_addr=0, x=1, y=1, remote_addr=0, length=10), run(20),
            store(spad_addr=0, x=1, y=1, remote_addr=0, length=4), signal(x=0, y=0, token=1),
            end()]
    log, res = simulate(cmds)
    stamps = res["issued"]
    assert [pc for pc, _, _ in stamps] == list(range(len(cmds)))
    # the stamp is the run's cycle counter at the accepting cycle: a constant offset from
    # the testbench's cycle, and the log's accept cycles for LOAD, EXEC, STORE, SIGNAL
    offsets = {cyc - cnt for _, cnt, cyc in stamps}
    assert len(offsets) == 1
    assert [cyc for _, _, cyc in stamps[:4]] == [c for c, _, _ in log]
    # END is stamped when the tile is done: after the STORE's 4 busy cycles
    assert stamps[-1][1] == res["cycles"] - 1 and stamps[-1][2] >= stamps[2][2] + 4


def test_wait_blocks_until_token_arrives():
    cmds = [wait(token=3, count=1), run(2), end()]
    log, res = simulate(cmds, token_at=(50, 3))
    assert [k for _, k, _ in log] == ["WAIT", "EXEC"]
    assert log[0][0] >= 50
    assert res["wait_cycles"] >= 45
    assert res["done"]


def test_unknown_opcode_stops_with_error_pc():
    words = [c.encode() for c in (nop(), run(1), nop(), end())]
    words[2] = 7  # opcode 7 is not defined

    class Raw:
        def __init__(self, word):
            self.word = word

        def encode(self):
            return self.word

    log, res = simulate([Raw(w) for w in words])
    assert res["error"] and not res["done"]
    assert res["error_pc"] == 2


def test_running_off_the_end_is_an_error():
    log, res = simulate([nop(), nop()])
    assert res["error"] and res["error_pc"] == 1


@pytest.mark.parametrize("depth, exc, msg", [
    (0, ValueError, r"Command memory depth must be a positive integer, not 0"),
    ("8", TypeError, r"Command memory depth must be a positive integer, not '8'"),
])
def test_parameter_errors(depth, exc, msg):
    with pytest.raises(exc, match=msg):
        TileController(depth=depth)
