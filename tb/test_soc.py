"""Host-side pieces of the SoC driver: diagnosis, the Verilog text passes (start-up fix,
compact zero initialisation of memories, checked in both simulators on a small memory), and
the time base: the wrapper's clock and every wait of the driver follow the pool's clock."""

from __future__ import annotations

import pytest

from accelpool.spec import isa
from accelpool.spec.config import UnitKind, load_config
from accelpool.hw.tile import STATUS_BITS
from accelpool.tb.soc import config_doc, diagnose, start_up_safe, zero_memories

CFG = load_config("ce_pair")


def _regs(**status):
    bits = sum(1 << STATUS_BITS[k] for k, v in status.items() if v and k in STATUS_BITS)
    return {"status": bits, "pc": status.get("pc", 0), "error_pc": status.get("error_pc", 0)}


def _all(ce0, ce1, mem=None):
    # position 0 is the memory tile (done: it ran its lone END), 3 an empty router
    return {0: mem or _regs(done=1), 1: ce0, 2: ce1, 3: {}}


def test_diagnose_names_faulting_tile_and_command():
    stream = isa.assemble([isa.load(spad_addr=0x3fc0, x=0, y=0, remote_addr=0, length=128),
                           isa.end()])
    msg = diagnose(CFG, {"ce0": stream}, _all(_regs(fault=1, pc=0), _regs(done=1)), False, 10)
    assert msg == ("The run stopped after 10 cycles:\n  tile ce0 (ce at (1, 0)) halted at "
                   "command 0 (LOAD   spad=0x003fc0 <- (0,0):0x00000000 len=128): scratchpad "
                   "bytes 0x3fc0..0x403f are beyond its 16384 bytes")


def test_diagnose_a_fault_at_a_word_that_does_not_decode():
    # The controller runs a LOAD whatever its reserved bits hold; the diagnosis shows the word.
    word = isa.load(spad_addr=0x3fc0, x=0, y=0, remote_addr=0, length=128).encode() | 1 << 255
    stream = word.to_bytes(isa.COMMAND_BYTES, "little") + isa.assemble([isa.end()])
    msg = diagnose(CFG, {"ce0": stream}, _all(_regs(fault=1, pc=0), _regs(done=1)), False, 10)
    assert msg == ("The run stopped after 10 cycles:\n  tile ce0 (ce at (1, 0)) halted at "
                   f"command 0 (undecodable word 0x{word:064x} (LOAD word has reserved bit(s) "
                   "255 (bits 252..255) set; bits 92..255 must be zero))")


def test_diagnose_signal_to_an_empty_router():
    stream = isa.assemble([isa.signal(x=1, y=1, token=0), isa.end()])
    msg = diagnose(CFG, {"ce1": stream}, _all(_regs(done=1), _regs(fault=1)), False, 5)
    assert "tile ce1 (ce at (0, 1)) halted at command 0 (SIGNAL (1,1) token=0 count=1): " \
           "SIGNAL to (1, 1), where there is no tile" in msg


def test_diagnose_controller_error_and_timeout():
    msg = diagnose(CFG, {"ce0": isa.assemble([isa.nop()])},
                   _all(_regs(error=1, error_pc=0), _regs(running=1, ni_busy=1, pc=0)), True, 99)
    assert msg.startswith("Timeout after 99 cycles:")
    assert "tile ce0 (ce at (1, 0)) stopped with an error at command 0 (NOP)" in msg
    assert "tile ce1 (ce at (0, 1)) did not finish within 99 cycles: stuck at command 0 " \
           "(past the end of the 0-command stream)" in msg


def test_diagnose_memory_tile_fault_and_stuck_exec():
    stream = isa.assemble([isa.store(spad_addr=0, x=1, y=0, remote_addr=0, length=8),
                           isa.end()])
    msg = diagnose(CFG, {"mem": stream}, _all(_regs(done=1), _regs(done=1), _regs(fault=1)),
                   False, 7)
    assert msg == ("The run stopped after 7 cycles:\n  tile mem (memory at (0, 0)) halted at "
                   "command 0 (STORE  spad=0x000000 -> (1,0):0x00000000 len=8): STORE is not a "
                   "command of the memory tile (it runs WAIT, EXEC, SIGNAL, NOP and END)")
    from accelpool.spec.units.layout import MemFunc
    stream = isa.assemble([isa.exec_cmd(UnitKind.MEMORY, MemFunc.TRANSPOSE, rows=4, cols=4),
                           isa.end()])
    msg = diagnose(CFG, {"mem": stream},
                   _all(_regs(done=1), _regs(done=1), _regs(running=1, unit_busy=1, pc=1)),
                   True, 50)
    assert "tile mem (memory at (0, 0)) did not finish within 50 cycles: stuck at command 1 " \
           "(END): the unit never completed command 0 (EXEC   memory.transpose" in msg


def test_start_up_safe_gives_every_always_block_a_trigger():
    text = ("module m(a, o);\n  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n"
            "  reg [7:0] h;\n  always @*\n    h[3:0] = 4'h1;\n  always @* begin\n"
            "    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n"
            "    h[7:4] = a;\n  end\nendmodule\nmodule n(x);\n  input x;\n  reg y;\n"
            "  always @*\n    y = x;\nendmodule\n")
    out = start_up_safe(text)
    assert out.count("initial #0.001") == 2
    assert ("  always @* begin\n    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) "
            "begin end\n    h[3:0] = 4'h1;\n  end\n") in out
    assert "  reg \\icarus_t0  = 0;\n  initial #0.001 \\icarus_t0  = 1;" in out
    assert "if (\\icarus_t0 ) begin end\n    y = x;" in out


def test_config_doc_round_trips():
    from accelpool.spec.config import parse_config
    again = parse_config(config_doc(CFG))
    assert again.tiles == CFG.tiles and again.mesh == CFG.mesh


def test_zero_memories_loops_only_all_zero_word_runs():
    text = ("module m(clk);\n  reg [63:0] mem [2:0];\n  initial begin\n"
            "    mem[0] = 64'h0000000000000000;\n    mem[1] = 64'h0000000000000000;\n"
            "    mem[2] = 64'h0000000000000000;\n  end\n"
            "  reg [7:0] \\buf$3  [1:0];\n  initial begin\n    \\buf$3 [0] = 8'h00;\n"
            "    \\buf$3 [1] = 8'h00;\n  end\n"
            "  reg [31:0] rom [1:0];\n  initial begin\n    rom[0] = 32'd5;\n"
            "    rom[1] = 32'h00000000;\n  end\n"
            "  reg [7:0] gap [3:0];\n  initial begin\n    gap[0] = 8'h00;\n    gap[2] = 8'h00;\n"
            "  end\nendmodule\n")
    out = zero_memories(text)
    assert ("  initial begin : accelpool_zero_1\n    integer i;\n"
            "    for (i = 0; i <= 2; i = i + 1)\n      mem[i] = 64'h0;\n  end\n") in out
    assert ("  initial begin : accelpool_zero_2\n    integer i;\n"
            "    for (i = 0; i <= 1; i = i + 1)\n      \\buf$3 [i] = 8'h0;\n  end\n") in out
    # a ROM's contents and a block that skips a word stay as they are
    assert "    rom[0] = 32'd5;\n    rom[1] = 32'h00000000;\n" in out
    assert "    gap[0] = 8'h00;\n    gap[2] = 8'h00;\n" in out
    assert "mem[1] =" not in out and out.count("accelpool_zero_") == 2


def test_zero_memories_gives_a_memory_without_initialiser_a_loop():
    text = ("module m(clk);\n  reg [15:0] \\m$2  [7:0];\n  reg b [3:0];\n  reg [3:0] r;\n"
            "  reg [7:0] rom [1:0];\n  initial begin\n    rom[0] = 8'd5;\n    rom[1] = 8'd6;\n"
            "  end\nendmodule\n")
    out = zero_memories(text)
    assert ("  reg [15:0] \\m$2  [7:0];\n  initial begin : accelpool_zero_1\n    integer i;\n"
            "    for (i = 0; i <= 7; i = i + 1)\n      \\m$2 [i] = 16'h0;\n  end\n") in out
    assert ("  reg b [3:0];\n  initial begin : accelpool_zero_2\n    integer i;\n"
            "    for (i = 0; i <= 3; i = i + 1)\n      b[i] = 1'h0;\n  end\n  reg [3:0] r;\n") in out
    # a memory with contents keeps them, and the pass is idempotent
    assert "  reg [7:0] rom [1:0];\n  initial begin\n    rom[0] = 8'd5;\n" in out
    assert zero_memories(out) == out


_ZERO_TB = """`timescale 1ns/1ps
module zero_tb;
  reg clk = 0;
  reg [5:0] addr = 0;
  reg [63:0] wdata = 0;
  reg we = 0;
  wire [63:0] data;
  top dut(.clk(clk), .rst(1'b0), .addr(addr), .wdata(wdata), .we(we), .data(data));
  integer i, nonzero = 0;
  initial begin
    #1;
    for (i = 0; i < 40; i = i + 1) begin
      addr = i; #1;
      if (data !== 64'h0) nonzero = nonzero + 1;
    end
    addr = 7; wdata = 64'h0123456789abcdef; we = 1; #1 clk = 1; #1 clk = 0; we = 0; #1;
    if (nonzero == 0 && data === 64'h0123456789abcdef) $display("ZERO-INIT OK");
    else $display("ZERO-INIT BAD: %0d words not zero, word 7 = %h", nonzero, data);
    $finish;
  end
endmodule
"""


@pytest.mark.parametrize("sim", ["icarus", "verilator"])
def test_zero_memories_start_at_zero_in_the_simulator(sim, tmp_path):
    """A memory of the compacted text reads zero before it is written, then what was written."""
    import subprocess

    from amaranth.hdl import Module
    from amaranth.lib import memory, wiring
    from amaranth.lib.wiring import In, Out

    from accelpool.tb.harness import generate_verilog, simulator_environment, verilator_lint_args

    class Mem(wiring.Component):
        def __init__(self):
            super().__init__({"addr": In(6), "wdata": In(64), "we": In(1), "data": Out(64)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = memory.Memory(shape=64, depth=40, init=[])
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data), wr.addr.eq(self.addr),
                         wr.data.eq(self.wdata), wr.en.eq(self.we)]
            return m

    from accelpool.hw.soc import zero_init_skipped

    # as tb.soc.write_soc does it: no initialiser emitted, a loop added after the declaration
    with zero_init_skipped():
        bare = generate_verilog(Mem(), "top")
    assert "initial" not in bare
    text = zero_memories(bare)
    assert "accelpool_zero_1" in text
    # the same loop as for the word-by-word initialiser Amaranth writes otherwise
    full = zero_memories(generate_verilog(Mem(), "top"))
    assert "[39] =" not in full and full == text
    (tmp_path / "top.v").write_text(text)
    (tmp_path / "tb.v").write_text(_ZERO_TB)
    with simulator_environment():
        if sim == "icarus":
            subprocess.run(["iverilog", "-g2005", "-o", "zero.vvp", "tb.v", "top.v"],
                           cwd=tmp_path, check=True)
            run = ["vvp", "-n", "zero.vvp"]
        else:
            subprocess.run(["verilator", "--binary", "--timing", "-CFLAGS", "-std=c++20",
                            *verilator_lint_args(), "--top-module", "zero_tb", "-o", "zero",
                            "-Mdir", "obj", "tb.v", "top.v"],
                           cwd=tmp_path, check=True, capture_output=True)
            # random initial values wherever the text does not set them
            run = ["obj/zero", "+verilator+rand+reset+2"]
        out = subprocess.run(run, cwd=tmp_path, check=True, capture_output=True, text=True)
    assert "ZERO-INIT OK" in out.stdout, out.stdout


def test_a_build_log_is_streamed_while_the_build_writes_it(tmp_path, capsys):
    import threading
    import time

    from accelpool.tb.soc import _streamed
    log = tmp_path / "build.log"
    log.write_text("an earlier build\n")

    def build():
        with open(log, "a") as f:
            for i in range(3):
                f.write(f"step {i}\n")
                f.flush()
                time.sleep(0.1)

    with _streamed(log, enabled=True, poll=0.02):
        t = threading.Thread(target=build)
        t.start()
        t.join()
    assert capsys.readouterr().err == "step 0\nstep 1\nstep 2\n"
    with _streamed(log, enabled=False):
        log.write_text("quiet\n")
    assert capsys.readouterr().err == ""


def _at(mhz: float):
    from accelpool.spec.config import parse_config
    return parse_config({**config_doc(CFG), "clock_mhz": mhz})


@pytest.mark.parametrize("mhz, half_ps, delay", [
    (500, 1000, "#1.000"), (250, 2000, "#2.000"), (333.3, 1500, "#1.500"),
    (5000, 100, "#0.100"), (10, 50_000, "#50.000"), (300, 1667, "#1.667")])
def test_the_wrapper_clock_runs_at_the_pools_clock(mhz, half_ps, delay):
    from accelpool.hw.soc import Soc, clock_half_period_ps, clock_period_ps, clock_wrapper
    cfg = _at(mhz)
    assert clock_half_period_ps(cfg) == half_ps and clock_period_ps(cfg) == 2 * half_ps
    text = clock_wrapper(Soc(cfg))
    assert text.startswith("`timescale 1ns/1ps\n")
    assert f"    always {delay} clk = ~clk;\n" in text
    assert text.count("always") == 1


def test_the_default_pool_has_one_time_base_with_its_reports():
    """At the default 500 MHz a cycle is 2 ns in the waveform as in the reports' traces."""
    from accelpool.spec.config import DEFAULT_CONFIG
    from accelpool.hw.soc import clock_period_ps
    cfg = load_config(DEFAULT_CONFIG)
    assert clock_period_ps(cfg) == round(1e6 / cfg.clock_mhz) == 2000


def test_the_source_key_follows_the_clock():
    from accelpool.tb.soc import _source_key
    assert _source_key(_at(500), {}) != _source_key(_at(250), {})


class _Signal:
    def __init__(self, value=0):
        self.value = value


class _Dut:
    def __getattr__(self, name):
        sig = _Signal()
        setattr(self, name, sig)
        return sig


@pytest.fixture
def waits(monkeypatch):
    """Stand-ins for cocotb's triggers that complete at once and record what was awaited."""
    import sys
    import types

    log = []

    class _Trigger:
        def __init__(self, *args, **kw):
            self.args = args
            log.append((type(self).__name__, args))

        def __await__(self):
            return iter(())

    class Timer(_Trigger):
        pass

    class RisingEdge(_Trigger):
        pass

    class ClockCycles(_Trigger):
        pass

    class First(_Trigger):
        def __await__(self):             # the first trigger (all_done) fires
            yield from ()
            return self.args[0]

    mod = types.ModuleType("cocotb.triggers")
    mod.Timer, mod.RisingEdge, mod.ClockCycles, mod.First = Timer, RisingEdge, ClockCycles, First
    monkeypatch.setitem(sys.modules, "cocotb.triggers", mod)
    return log


@pytest.mark.parametrize("mhz", [500, 250, 333.3])
def test_every_wait_of_the_driver_is_a_fraction_of_the_pools_period(waits, mhz):
    """Reads sample a quarter period after a rising edge (off both edges) and the timeout is
    in periods: at 500 MHz a fixed 1 ns offset would fall on the falling edge."""
    import asyncio

    from accelpool.hw.soc import clock_period_ps
    from accelpool.tb.soc import SocDriver
    cfg = _at(mhz)
    period = clock_period_ps(cfg)
    drv = SocDriver(_Dut(), cfg)
    assert (drv.period_ps, drv.sample_ps) == (period, period // 4)

    async def reads():
        await drv.read_registers(0)
        await drv.read_memory(0, 16)
        await drv.read_trace(CFG.tile("ce0"), 3)
        await drv.read_memory_tokens(4)
    asyncio.run(reads())
    timers = [args for kind, args in waits if kind == "Timer"]
    assert timers and all(t == (period // 4, "ps") for t in timers)
    # every sample follows a rising edge
    for i, (kind, _) in enumerate(waits):
        if kind == "Timer":
            assert waits[i - 1][0] == "RisingEdge"
    waits.clear()
    assert asyncio.run(drv.run(1234)) == (True, 0)
    assert [args for kind, args in waits if kind == "Timer"] == [(1234 * period, "ps")]
