import pytest

from accelpool.spec.config import load_config
from accelpool.tb.verilog import blocks, lint, write_verilog

CFG = load_config()


@pytest.mark.parametrize("block", sorted(blocks(CFG)))
def test_block_verilog_passes_verilator_lint(tmp_path, block):
    path, = write_verilog(tmp_path, CFG, [block])
    assert f"module {block}(" in path.read_text()
    res = lint(path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_lint_catches_real_errors(tmp_path):
    # The waivers are by name: a genuine error (multiple drivers) still fails.
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input a, output y);\n  assign y = a;\n  assign y = ~a;\nendmodule\n")
    assert lint(bad).returncode != 0


def test_unknown_block_is_named(tmp_path):
    with pytest.raises(SystemExit, match=r"Unknown block\(s\) nope; blocks: scratchpad"):
        write_verilog(tmp_path, CFG, ["nope"])
