"""Where a pool's SoC builds go: one folder per config content, always under the build root."""

from pathlib import Path

import pytest

from accelpool.spec.config import load_config, parse_config
from accelpool.tb import harness
from accelpool.tb.soc import DEFAULT_CMD_DEPTH, config_doc, soc_build_dir


@pytest.fixture
def build_root(tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "SIM_BUILD", tmp_path / "sim_build")
    return tmp_path / "sim_build"


def test_two_configs_with_one_name_build_apart(build_root):
    cfg = load_config("default")
    doc = config_doc(cfg)
    doc["mesh"]["buffer_flits"] = 8
    edited = parse_config(doc)
    assert edited.name == cfg.name
    a, b = soc_build_dir(cfg), soc_build_dir(edited)
    assert a != b
    assert a.parent == b.parent == build_root
    assert a.name == f"default-{cfg.digest}"


def test_one_config_always_one_folder(tmp_path, build_root):
    cfg = load_config("default")
    copy = tmp_path / "copy.toml"
    copy.write_text("# a copy with the same content\n" + Path(cfg.source).read_text())
    assert soc_build_dir(load_config(copy)) == soc_build_dir(cfg)
    # Defaults written out or left implicit are the same content.
    assert soc_build_dir(parse_config(config_doc(cfg))) == soc_build_dir(cfg)


def test_deeper_command_memories_build_in_their_own_folder(build_root):
    cfg = load_config("default")
    deep = soc_build_dir(cfg, 2 * DEFAULT_CMD_DEPTH)
    assert deep.name == f"default-{cfg.digest}_cmd{2 * DEFAULT_CMD_DEPTH}"
    assert deep.parent == build_root
    assert deep != soc_build_dir(cfg)


def test_write_soc_writes_into_the_build_folder(build_root):
    from accelpool.tb.soc import write_soc
    cfg = load_config("ce_pair")
    soc_v, top_v = write_soc(cfg)
    assert soc_v.parent == top_v.parent == soc_build_dir(cfg)
    assert soc_v.is_file()
