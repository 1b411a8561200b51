"""Host-side pieces of the SoC driver that need no simulator: diagnosis, Verilog start-up fix."""

from __future__ import annotations

from hw import isa
from hw.config import load_config
from hw.tile import STATUS_BITS
from tb.soc import config_doc, diagnose, start_up_safe

CFG = load_config("ce_pair")


def _regs(**status):
    bits = sum(1 << STATUS_BITS[k] for k, v in status.items() if v and k in STATUS_BITS)
    return {"status": bits, "pc": status.get("pc", 0), "error_pc": status.get("error_pc", 0)}


def _all(ce0, ce1):
    return {0: {}, 1: ce0, 2: ce1, 3: {}}


def test_diagnose_names_faulting_tile_and_command():
    stream = isa.assemble([isa.load(spad_addr=0x3fc0, x=0, y=0, remote_addr=0, length=128),
                           isa.end()])
    msg = diagnose(CFG, {"ce0": stream}, _all(_regs(fault=1, pc=0), _regs(done=1)), False, 10)
    assert msg == ("The run stopped after 10 cycles:\n  tile ce0 (ce at (1, 0)) halted at "
                   "command 0 (LOAD   spad=0x003fc0 <- (0,0):0x00000000 len=128): scratchpad "
                   "bytes 0x3fc0..0x403f are beyond its 16384 bytes")


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
    from hw.config import parse_config
    again = parse_config(config_doc(CFG))
    assert again.tiles == CFG.tiles and again.mesh == CFG.mesh
