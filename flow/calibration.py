"""Calibration in RTL: unit micro-benchmarks and NoC transfers on the SoC, refit, store.

``python -m accelpool.flow.calibration [--pool CFG] [--sim verilator|icarus]`` measures every unit
kind of the pool that has a sweep here (DMU, LPU, SMU, CE, AFU, GNN) with EXEC
micro-benchmarks (each EXEC alone on its tile, after a LOAD of whatever operands the unit
needs to terminate; the tile's ``unit_busy_cycles`` counter is the measurement) and a
sweep of LOADs and STOREs (the NI's ``ni_busy_cycles``), then

- fits ``scale * formula + overhead`` per unit kind with :func:`accelpool.sched.cost.model.calibrate`
  (fit on one half of the sweep, error measured on the other half),
- prints the predicted-against-measured error before (the model's defaults) and after,
- writes the fitted parameters beside the config (``configs/<name>.calibration.json``),
  which :func:`calibrated_params` / :func:`cost_model` read back for a
  :class:`accelpool.sched.cost.model.CostModel` of that pool.

Where the measurements come from
    The whole pool's SoC takes minutes to build (the 8-tile default pool: ~40 s of
    Verilog generation and ~2.5 min of Verilator build, ``bench/results/socbuild.json``)
    and simulates every router each cycle, so by default (``per_unit=True``) every
    distinct unit of the pool (same kind, unit parameters and data types) is measured on
    a **small pool of its own**, generated here (:func:`calibration_pools`): the pool's
    memory tile and that one unit on an ``(h + 1) x 1`` mesh, ``h`` the unit's hop
    distance to the memory tile in the pool (XY routing: a straight route of the same
    number of hops), with the pool's mesh parameters (flit width, buffers) and the same
    unit and memory parameters (Icarus builds one in 5-20 s). Unit busy cycles depend
    only on the unit and its EXEC, so the measurements are attributed to the pool's
    tiles with that unit (the first of them stands for the others in the fit). A
    LOAD/STORE measured there is attributed to every tile of the pool at the same hop
    distance from the memory tile (the zero-load transfer time depends on the hops, the
    flit width and the transfer, not on the unit; the table says on which small pool
    each was measured). ``per_unit=False`` builds and measures the pool itself (cheap
    for ``configs/ce_pair.toml``).

Micro-benchmarks (one sweep per kind, :data:`SWEEPS`)
    DMU/LPU   GEMM shapes incl. ragged M, N, K (and K just past a word of A, where the
              block period grows), with and without ``accumulate``; DMU ``out_bf16``,
              LPU ``requant``. Operands are not loaded: the systolic engine's timing does
              not depend on the data (:mod:`accelpool.hw.systolic`).
    AFU       every function x BF16/INT8 x element counts (partial last words).
    GNN       random CSR graphs (several sizes, mean degrees, empty rows), SUM/MEAN/MAX,
              FP32/BF16 output, feature counts over one and several lane passes.
    SMU       random sparse A of several densities and shapes, FP32/BF16 output.
    CE        :func:`ce_sweep`, every third shape with an INT32 bias.

    The sparse units get a well-formed CSR (``ptr``, ``nz``) LOADed from a memory image
    (:func:`accelpool.spec.formats.layout_spmm` / :func:`accelpool.spec.formats.layout_gnn` layout); the
    dense operands' contents do not affect their timing and are not loaded. Every EXEC
    is first run through the unit's functional model (:func:`accelpool.sched.unitsim.execute`) on
    the scratchpad image the tile will hold, which rejects out-of-range or misaligned
    regions and malformed CSR before any RTL runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse

from accelpool.flow.tables import print_table
from accelpool.sched.cost.model import CostModel, KindParams, calibrate, Measurement
from accelpool.sched.pool import Pool
from accelpool.sched.unitsim import UnitSimError, execute
from accelpool.spec import isa
from accelpool.spec.ce_layout import ConvShape
from accelpool.spec.config import (PoolConfig, TileConfig, UnitKind, load_config, CONFIG_DIR,
                                   parse_config)
from accelpool.spec.formats import layout_gnn, layout_spmm
from accelpool.spec.gemm_layout import GemmLayout, systolic_word_bytes
from accelpool.spec.unit import Registry
from accelpool.spec.units.afu import AfuDType, AfuFunc
from accelpool.spec.units.ce import CeFunc
from accelpool.spec.units.dmu import DmuFunc
from accelpool.spec.units.gnn import GnnFunc
from accelpool.spec.units.lpu import LpuFunc
from accelpool.spec.units.smu import SmuFunc
from accelpool.tb.soc import SocJob, run_jobs, build_soc, config_doc

__all__ = ["Bench", "ce_sweep", "dmu_sweep", "lpu_sweep", "afu_sweep", "gnn_sweep", "smu_sweep",
           "SWEEPS", "TRANSFER_BYTES", "CalibrationPool", "calibration_pools", "measure",
           "calibrate_in_rtl", "calibration_path", "load_calibration",
           "calibrated_params", "cost_model", "main"]


@dataclass(frozen=True)
class Bench:
    """One micro-benchmark: the EXEC, the scratchpad image it needs, the formula's shape.

    Attributes
    ----------
    shape : dict
        The cost formula's arguments (``sched/cost/<kind>.py``) and a description of the
        case (flags, density); stored with the measurement.
    func : enum member
        The unit's EXEC function.
    args : dict
        The EXEC argument fields.
    image : bytes
        Bytes LOADed from global memory address 0 to scratchpad address 0 before the EXEC
        (empty: nothing loaded).
    """

    shape: dict
    func: Any
    args: dict
    image: bytes = b""

    def command(self, kind: UnitKind) -> isa.Command:
        return isa.exec_cmd(kind, self.func, **self.args)


def _round_up(x: int, q: int) -> int:
    return -(-x // q) * q


def _regions(sizes: Sequence[int], word: int, limit: int, what: str) -> list[int]:
    """Word-aligned addresses of consecutive regions of ``sizes`` bytes from 0."""
    out, at = [], 0
    for n in sizes:
        out.append(at)
        at = _round_up(at + max(n, 1), word)
    if at > limit:
        raise ValueError(f"{what} needs {at} scratchpad bytes; the tile has {limit}")
    return out


# -- sweeps ----------------------------------------------------------------------------

def ce_sweep() -> list[dict]:
    """CE convolution shapes spanning channels, extents, kernels, strides and output modes."""
    out = []
    for i, (c_in, c_out, hw, k, stride, pad, requant) in enumerate([
            (8, 8, 4, 1, 1, 0, False), (8, 8, 6, 3, 1, 1, True), (16, 8, 6, 3, 1, 0, False),
            (8, 16, 8, 3, 2, 1, True), (4, 8, 8, 5, 1, 2, False), (16, 16, 5, 3, 1, 1, True),
            (8, 8, 10, 3, 1, 1, False), (24, 8, 6, 1, 1, 0, True), (8, 24, 7, 3, 2, 0, False),
            (8, 8, 12, 3, 1, 0, True)]):
        out.append(dict(c_in=c_in, c_out=c_out, height=hw, width=hw, kernel_h=k, kernel_w=k,
                        stride=stride, pads=(pad, pad, pad, pad), requant=requant))
    return out


def _ce_benches(tile: TileConfig, reduced: bool = False) -> list[Bench]:
    shapes = ce_sweep()
    if reduced:
        shapes = shapes[:5]
    out = []
    for i, shape in enumerate(shapes):
        shape = {**shape, "bias": i % 3 == 1}    # every third with an INT32 bias
        s = ConvShape(c_in=shape["c_in"], c_out=shape["c_out"], height=shape["height"],
                      width=shape["width"], kernel_h=shape["kernel_h"],
                      kernel_w=shape["kernel_w"], stride=shape["stride"],
                      pads=tuple(shape["pads"]))
        args = s.exec_args(in_addr=0, w_addr=0x1000, out_addr=0x2000, bias_addr=0x3000,
                           bias=shape["bias"], requant=shape["requant"],
                           multiplier=1 << 20, shift=30)
        out.append(Bench(shape, CeFunc.CONV, args))
    return out


#: (M, N, K, accumulate, flag) per GEMM micro-benchmark; ``flag`` is the DMU's ``out_bf16``
#: or the LPU's ``requant``. Ragged M/N/K against 8 x 8 / 8 x 16 arrays, K past a word of
#: A (16 BF16 / 64 INT8 elements per word on the default arrays) and tiny shapes.
GEMM_SHAPES = (
    (8, 8, 8, False, False), (16, 8, 16, True, False), (13, 21, 7, False, True),
    (32, 32, 32, False, False), (24, 40, 17, True, True), (9, 17, 33, False, False),
    (64, 16, 48, True, False), (40, 24, 20, False, True), (1, 1, 1, False, False),
    (64, 64, 64, False, True), (17, 9, 100, True, False), (33, 65, 5, False, False),
    (48, 48, 66, True, True), (5, 130, 12, False, False), (24, 24, 130, False, True),
    (56, 32, 3, True, False),
)


def _gemm_benches(tile: TileConfig, reduced: bool, *, in_bytes: int, funcs, flag: str,
                  extra: Mapping[str, int]) -> list[Bench]:
    r, c = tile["rows"], tile["cols"]
    wb = systolic_word_bytes(r, c, in_bytes)
    shapes = GEMM_SHAPES[::3] if reduced else GEMM_SHAPES
    out = []
    for m, n, k, acc, fl in shapes:
        lay = GemmLayout(r, c, wb, m, n, k)
        a, b, cc, d = _regions([lay.region_bytes("a", in_bytes), lay.region_bytes("b", in_bytes),
                                lay.region_bytes("c", 4), lay.region_bytes("d", 4)],
                               wb, tile.scratchpad_bytes, f"{tile.kind.key} GEMM {m}x{n}x{k}")
        args = dict(a_addr=a, b_addr=b, c_addr=cc, d_addr=d, m=m, n=n, k=k,
                    accumulate=int(acc), **{flag: int(fl)})
        if fl:
            args.update(extra)
        out.append(Bench(dict(m=m, n=n, k=k, accumulate=acc, **{flag: fl}), funcs.GEMM, args))
    return out


def dmu_sweep(tile: TileConfig, reduced: bool = False) -> list[Bench]:
    """DMU GEMMs (:data:`GEMM_SHAPES`; the flag is ``out_bf16``)."""
    return _gemm_benches(tile, reduced, in_bytes=2, funcs=DmuFunc, flag="out_bf16", extra={})


def lpu_sweep(tile: TileConfig, reduced: bool = False) -> list[Bench]:
    """LPU GEMMs (:data:`GEMM_SHAPES`; the flag is ``requant``)."""
    return _gemm_benches(tile, reduced, in_bytes=1, funcs=LpuFunc, flag="requant",
                         extra=dict(multiplier=1 << 30, shift=36, zero_point=3))


#: Element counts of the AFU sweep (partial last words, one word, many words).
AFU_COUNTS = (1, 8, 37, 256, 1000, 2048)


def afu_sweep(tile: TileConfig, reduced: bool = False) -> list[Bench]:
    """Every AFU function on BF16 and INT8 vectors of :data:`AFU_COUNTS` elements (the
    counts rotate over the functions so that every combination sees three of them)."""
    word = 2 * tile["lanes"]
    region = _round_up(2 * max(AFU_COUNTS), word)
    a_addr, b_addr, out_addr, table_addr = _regions([region, region, region, 256], word,
                                                    tile.scratchpad_bytes, "AFU sweep")
    dtypes = [d for d in AfuDType if d.name.lower() in {t.key for t in tile.dtypes}]
    if reduced:
        cases = [(f, d, n) for f, d, n in ((AfuFunc.RELU, AfuDType.BF16, 8),
                                           (AfuFunc.RELU, AfuDType.BF16, 1000),
                                           (AfuFunc.SIGMOID, AfuDType.INT8, 37),
                                           (AfuFunc.SIGMOID, AfuDType.INT8, 2048),
                                           (AfuFunc.ADD, AfuDType.BF16, 256),
                                           (AfuFunc.GELU, AfuDType.BF16, 2048)) if d in dtypes]
    else:
        cases, i = [], 0
        for f in AfuFunc:
            for dt in dtypes:
                cases += [(f, dt, AFU_COUNTS[(i + j) % len(AFU_COUNTS)]) for j in (0, 2, 4)]
                i += 1
    out = []
    for f, dt, n in cases:
        args = dict(a_addr=a_addr, b_addr=b_addr, out_addr=out_addr, table_addr=table_addr,
                    count=n, dtype=dt, alpha=0x3DCD)   # alpha: BF16 0.1 (LeakyReLU slope)
        if dt is AfuDType.INT8 and f in (AfuFunc.ADD, AfuFunc.MUL):
            args.update(a_mult=1 << 14, b_mult=1 << 14, multiplier=1 << 30, shift=31)
        out.append(Bench(dict(func=f.name.lower(), dtype=dt.name.lower(), count=n), f, args))
    return out


def _random_csr(rng: np.random.Generator, rows: int, cols: int, mean_nnz: float,
                empty: float) -> "scipy.sparse.csr_array":
    """Random CSR pattern: Poisson non-zeros per row (about ``empty`` of rows empty),
    distinct columns, values 1.0 (BF16-exact, never dropped)."""
    counts = np.minimum(rng.poisson(mean_nnz, rows), cols)
    counts[rng.random(rows) < empty] = 0
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.sort(rng.choice(cols, n, replace=False)) for n in counts]
                             + [np.zeros(0, np.int64)]).astype(np.int64)
    data = np.ones(len(indices), np.float32)
    return scipy.sparse.csr_array((data, indices, indptr), shape=(rows, cols))


#: (nodes, mean degree, features, function, out_bf16) of the GNN sweep.
GNN_CASES = (
    (4, 1.0, 8, "sum", False), (16, 3.0, 8, "mean", True), (50, 2.0, 30, "max", False),
    (120, 8.0, 16, "sum", True), (32, 0.5, 64, "mean", False), (64, 4.0, 20, "max", True),
    (10, 6.0, 3, "sum", False), (100, 1.5, 40, "mean", False), (24, 12.0, 8, "max", False),
    (80, 3.0, 64, "sum", False), (7, 0.0, 16, "mean", True), (40, 5.0, 9, "max", False),
)


def gnn_sweep(tile: TileConfig, reduced: bool = False, seed: int = 1) -> list[Bench]:
    """GNN aggregations over random graphs (:data:`GNN_CASES`; about 1 in 8 nodes isolated)."""
    rng = np.random.default_rng(seed)
    cases = GNN_CASES[::3] + GNN_CASES[1:2] if reduced else GNN_CASES
    out = []
    for nodes, deg, feats, fn, bf16 in cases:
        adj = _random_csr(rng, nodes, nodes, deg, 0.125)
        job = layout_gnn(adj, np.zeros((nodes, feats), np.float32), tile["lanes"],
                         out_bf16=bf16)
        if len(job.image.data) > tile.scratchpad_bytes:
            raise ValueError(f"GNN case {nodes} nodes x {feats} features needs "
                             f"{len(job.image.data)} scratchpad bytes; {tile.name} has "
                             f"{tile.scratchpad_bytes}")
        csr_end = job.args["x_addr"]       # ptr and idx come first: the CSR alone
        degrees = [int(v) for v in np.diff(adj.indptr)]
        out.append(Bench(dict(nodes=nodes, features=feats, degrees=degrees,
                              edges=int(adj.nnz), func=fn, out_bf16=bf16),
                         GnnFunc[fn.upper()], dict(job.args),
                         job.image.data[:csr_end]))
    return out


#: (M, K, N, density, out_bf16) of the SMU sweep.
SMU_CASES = (
    (8, 16, 8, 0.5, False), (32, 64, 64, 0.1, True), (100, 128, 30, 0.02, False),
    (16, 32, 200, 0.3, False), (64, 64, 64, 0.6, True), (40, 100, 100, 0.05, False),
    (128, 32, 16, 0.25, True), (12, 96, 130, 0.15, False), (64, 64, 65, 0.02, False),
    (24, 48, 1, 0.4, True),
)


def smu_sweep(tile: TileConfig, reduced: bool = False, seed: int = 2) -> list[Bench]:
    """SMU SPMMs with random sparse A (:data:`SMU_CASES`; about 1 in 10 rows empty)."""
    rng = np.random.default_rng(seed)
    cases = SMU_CASES[::3] + SMU_CASES[1:2] if reduced else SMU_CASES
    out = []
    for m, k, n, density, bf16 in cases:
        a = _random_csr(rng, m, k, density * k, 0.1)
        job = layout_spmm(a, np.zeros((k, n), np.float32), tile["lanes"], out_bf16=bf16)
        if len(job.image.data) > tile.scratchpad_bytes:
            raise ValueError(f"SMU case {m}x{k}x{n} needs {len(job.image.data)} scratchpad "
                             f"bytes; {tile.name} has {tile.scratchpad_bytes}")
        row_nnz = [int(v) for v in np.diff(a.indptr)]
        out.append(Bench(dict(m=m, n=n, k=k, row_nnz=row_nnz, nnz=int(a.nnz),
                              density=density, out_bf16=bf16),
                         SmuFunc.SPMM, dict(job.args), job.image.data[:job.args["b_addr"]]))
    return out


#: Unit kind -> sweep ``(tile, reduced) -> [Bench]`` (a unit package registers its own in
#: its ``flow`` submodule).
SWEEPS: Mapping[UnitKind, Callable[..., list[Bench]]] = Registry("flow", "calibration sweep")
SWEEPS.register(UnitKind.DMU, dmu_sweep)
SWEEPS.register(UnitKind.LPU, lpu_sweep)
SWEEPS.register(UnitKind.SMU, smu_sweep)
SWEEPS.register(UnitKind.CE, _ce_benches)
SWEEPS.register(UnitKind.AFU, afu_sweep)
SWEEPS.register(UnitKind.GNN, gnn_sweep)
#: Bytes of the NoC transfer sweep.
TRANSFER_BYTES = (64, 256, 1024, 4096)


def _check_bench(tile: TileConfig, bench: Bench) -> None:
    """Run the EXEC on the functional model over the scratchpad the tile will hold."""
    spad = bytearray(tile.scratchpad_bytes)
    spad[:len(bench.image)] = bench.image
    try:
        execute(tile, bench.func, bench.args, spad)
    except UnitSimError as e:
        raise ValueError(f"calibration micro-benchmark {bench.shape} is not a valid "
                         f"{tile.kind.key} EXEC on {tile.name}: {e}") from None


# -- small pools -------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationPool:
    """A small pool measuring one unit of a larger pool.

    Attributes
    ----------
    config : PoolConfig
        The memory tile and the unit on an ``(hops + 1) x 1`` mesh.
    unit : TileConfig
        The unit in ``config``.
    stands_for : tuple of TileConfig
        The tiles of the calibrated pool with this unit (same kind, parameters, data types).
    hops : int
        The unit's distance to the memory tile (that of ``stands_for[0]`` in the pool).
    """

    config: PoolConfig
    unit: TileConfig
    stands_for: tuple[TileConfig, ...]
    hops: int


def _unit_key(t: TileConfig) -> tuple:
    return (t.kind, t.dtypes, tuple(sorted(t.params.items())))


def calibration_pools(cfg: PoolConfig, kinds: Iterable[UnitKind] | None = None, *,
                      memory_bytes: int | None = None) -> list[CalibrationPool]:
    """One small pool per distinct unit of ``cfg`` (see the module docstring).

    Parameters
    ----------
    cfg : PoolConfig
    kinds : iterable of UnitKind, optional
        Only units of these kinds (default: every kind with a sweep).
    memory_bytes : int or None
        Size of the small pools' memory (at most ``cfg``'s); None: ``cfg``'s. (Its size
        does not change its timing: 64 KiB and 1 MiB give the same LOAD/STORE cycles.)
    """
    keep = set(SWEEPS) if kinds is None else set(kinds) & set(SWEEPS)
    groups: dict[tuple, list[TileConfig]] = {}
    for t in cfg.units:
        if t.kind in keep:
            groups.setdefault(_unit_key(t), []).append(t)
    doc = config_doc(cfg)
    by_name = {d["name"]: d for d in doc["tile"]}
    mem = cfg.memory
    mem_bytes = mem["bytes"] if memory_bytes is None else min(mem["bytes"], memory_bytes)
    out = []
    for tiles in groups.values():
        first = tiles[0]
        h = cfg.mesh.hops(first.at, mem.at)
        small = parse_config({
            "name": f"{cfg.name}_calib_{first.name}", "clock_mhz": cfg.clock_mhz,
            "mesh": {**doc["mesh"], "cols": h + 1, "rows": 1},
            "tile": [{**by_name[mem.name], "x": 0, "y": 0, "bytes": mem_bytes},
                     {**by_name[first.name], "x": h, "y": 0}]},
            source=f"<calibration pool of {first.name} in {cfg.name}>")
        out.append(CalibrationPool(small, small.tile(first.name), tuple(tiles), h))
    return out


# -- measurement -------------------------------------------------------------------------

def measure(cfg: PoolConfig, build, *, kinds: Iterable[UnitKind] | None = None,
            reduced: bool = False, transfer_bytes: Sequence[int] = TRANSFER_BYTES
            ) -> tuple[list, list]:
    """Run the sweeps on a built SoC of ``cfg`` (every unit of a kind in ``kinds``).

    Returns
    -------
    (unit measurements, transfers)
        :class:`accelpool.sched.cost.model.Measurement` per EXEC (tiles of ``cfg``); per transfer a
        dict with ``op``, ``tile``, ``src``, ``dst``, ``bytes`` and measured ``cycles``.
    """

    keep = set(SWEEPS) if kinds is None else set(kinds)
    mem = cfg.memory
    jobs, meta = [], []
    for tile in cfg.units:
        if tile.kind not in keep or tile.kind not in SWEEPS:
            continue
        for bench in SWEEPS[tile.kind](tile, reduced):
            _check_bench(tile, bench)
            cmds = []
            image = []
            if bench.image:
                blob = bench.image + bytes(-len(bench.image) % (cfg.mesh.flit_bits // 8))
                image = [(0, blob)]
                cmds.append(isa.load(spad_addr=0, x=mem.x, y=mem.y, remote_addr=0,
                                     length=len(blob)))
            cmds += [bench.command(tile.kind), isa.end()]
            jobs.append(SocJob(streams={tile.name: isa.assemble(cmds)}, image=image,
                               timeout_cycles=500_000))
            meta.append(("unit", tile, bench.shape))
    for tile in cfg.units:
        if tile.kind not in keep:
            continue
        for n in transfer_bytes:
            for op in (isa.load, isa.store):
                cmd = op(spad_addr=0, x=mem.x, y=mem.y, remote_addr=0, length=n)
                jobs.append(SocJob(streams={tile.name: isa.assemble([cmd, isa.end()])},
                                   timeout_cycles=100_000))
                meta.append(("noc", tile, {"op": cmd.opcode.name, "bytes": n}))
    units, transfers = [], []
    if not jobs:
        return units, transfers
    for (what, tile, shape), res in zip(meta, run_jobs(build, jobs)):
        if res.status != "ok":
            raise RuntimeError(f"calibration run on {tile.name} ({shape}) failed:\n{res.message}")
        regs = res.tile_registers(cfg, tile.name)
        if what == "unit":
            units.append(Measurement(tile, dict(shape), regs["unit_busy_cycles"]))
        else:
            transfers.append({**shape, "tile": tile.name, "src": (tile.x, tile.y),
                              "dst": (mem.x, mem.y), "cycles": regs["ni_busy_cycles"]})
    return units, transfers


def calibration_path(cfg: PoolConfig) -> Path:
    """Where the fitted parameters of ``cfg`` are stored: beside its config file."""
    src = Path(cfg.source)
    if src.suffix == ".toml" and src.parent.exists():
        return src.with_name(f"{src.stem}.calibration.json")
    return CONFIG_DIR / f"{cfg.name}.calibration.json"


def _errors(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    rel = [abs(p - m) / max(m, 1.0) for p, m in points]
    return max(rel), sum(rel) / len(rel)


def _measure_per_unit(cfg: PoolConfig, sim: str | None, kinds, reduced: bool,
                      transfer_bytes: Sequence[int], log: Callable[[str], None]):
    """Measurements on the small pools, attributed to ``cfg``'s tiles."""

    units, pools = [], []
    simulator = None
    for cp in calibration_pools(cfg, kinds):
        log(f"building {cp.config.name} ({cp.unit.kind.key}, {cp.hops} hop"
            f"{'s' if cp.hops != 1 else ''} from memory) ...")
        build = build_soc(cp.config, sim)
        simulator = build.sim
        log(f"  built in {build.seconds:.0f} s; running the sweep ...")
        u, t = measure(cp.config, build, reduced=reduced, transfer_bytes=transfer_bytes)
        log(f"  {len(u)} micro-benchmarks, {len(t)} transfers")
        units += [Measurement(cp.stands_for[0], m.shape, m.cycles) for m in u]
        pools.append((cp, t))
    mem = cfg.memory
    noc = []
    for tile in cfg.units:
        hops = cfg.mesh.hops(tile.at, mem.at)
        # The tile's own small pool when it was measured at the tile's distance, else
        # another small pool at that distance.
        at_hops = [(cp, t) for cp, t in pools if cp.hops == hops and t]
        at_hops.sort(key=lambda p: tile not in p[0].stands_for)
        if not at_hops:
            continue
        cp, ts = at_hops[0]
        for t in ts:
            noc.append({**t, "tile": tile.name, "src": tile.at, "dst": mem.at,
                        "measured_on": cp.config.name})
    pools = [cp for cp, _ in pools]
    return units, noc, pools, simulator


def calibrate_in_rtl(cfg: PoolConfig, sim: str | None = None, *, write: bool = True,
                     kinds: Iterable[UnitKind] | None = None, reduced: bool = False,
                     per_unit: bool = True, transfer_bytes: Sequence[int] = TRANSFER_BYTES,
                     log: Callable[[str], None] | None = None) -> dict:
    """Measure, refit, report the error before and after, and store the parameters.

    Parameters
    ----------
    cfg : PoolConfig
    sim : {"verilator", "icarus"}, optional
    write : bool
        Write :func:`calibration_path` (a full calibration only: ``kinds`` None and not
        ``reduced``, else ValueError).
    kinds : iterable of UnitKind, optional
        Only these unit kinds (default: all with a sweep).
    reduced : bool
        A few shapes per kind (tests).
    per_unit : bool
        Measure on small pools of one unit each (module docstring); False builds ``cfg``.
    transfer_bytes : sequence of int
        Sizes of the LOAD/STORE sweep (empty: none).
    log : callable, optional
        Progress messages.

    Returns
    -------
    dict
        ``before``/``after`` per kind: (max, mean) relative error over every measurement;
        ``held_out``: per kind, the maximum relative error on the validation half;
        ``fit``: kind -> (scale, overhead); ``samples``: kind -> count; ``noc``: per
        transfer, measured and predicted cycles; ``path``: the file written (if any);
        ``measurements``: the :class:`accelpool.sched.cost.model.Measurement` list.
    """

    log = log or (lambda s: None)
    kinds = None if kinds is None else tuple(kinds)
    if write and (kinds is not None or reduced):
        raise ValueError("Only a full calibration (every kind, whole sweeps) is written; "
                         f"pass write=False with kinds={kinds!r}, reduced={reduced!r}")
    if per_unit:
        units, noc, pools, simulator = _measure_per_unit(cfg, sim, kinds, reduced,
                                                         transfer_bytes, log)
    else:
        build = build_soc(cfg, sim)
        simulator = build.sim
        units, noc = measure(cfg, build, kinds=kinds, reduced=reduced,
                             transfer_bytes=transfer_bytes)
        pools = []
    pool = Pool(cfg)
    before_model = CostModel(pool)
    result = calibrate(units, before_model.params, tolerance=math.inf)
    # Stored (and used for the "after" figures) to 1e-9 in scale and 1e-6 cycles in
    # overhead: an exact formula then stores 1 and 0, not 0.9999999999999998 (which the
    # model's ceil would turn into one cycle less or more).
    fitted = {k: KindParams(round(kp.scale, 9), round(kp.overhead, 6) + 0.0)
              for k, kp in result.fit.items()}
    after_params = dataclasses.replace(before_model.params,
                                       kinds={**before_model.params.kinds, **fitted})
    after_model = CostModel(pool, after_params)
    out = {"before": {}, "after": {}, "held_out": {}, "fit": {}, "samples": {}, "noc": [],
           "measurements": units, "simulator": simulator,
           "pools": {cp.unit.name: cp.config.name for cp in pools}}
    for kind in sorted({m.tile.kind for m in units}, key=lambda k: k.value):
        ms = [m for m in units if m.tile.kind is kind]

        def predict(model, m):
            kp = model.params.kinds[kind]
            return kp.scale * model.raw_cycles(kind, m.tile, m.shape) + kp.overhead

        out["before"][kind.key] = _errors([(predict(before_model, m), m.cycles) for m in ms])
        out["after"][kind.key] = _errors([(predict(after_model, m), m.cycles) for m in ms])
        out["held_out"][kind.key] = result.max_rel_error[kind]
        out["fit"][kind.key] = (fitted[kind].scale, fitted[kind].overhead)
        out["samples"][kind.key] = len(ms)
    for t in noc:
        at = tuple(t["src"])
        pred = (before_model.load_cycles(t["bytes"], at) if t["op"] == "LOAD"
                else before_model.store_cycles(t["bytes"], at))
        out["noc"].append({**t, "predicted": pred})
    if write:
        path = calibration_path(cfg)
        path.write_text(json.dumps({
            "config": cfg.name, "simulator": simulator,
            "kinds": {k: {"scale": s, "overhead": o,
                          "formula": "unit"}
                      for k, (s, o) in out["fit"].items()},
            "error_before": out["before"], "error_after": out["after"],
            "error_held_out": out["held_out"], "samples": out["samples"],
            "units": {t.name: {"kind": t.kind.key, "dtypes": [d.key for d in t.dtypes],
                               **dict(t.params)} for t in cfg.units},
            "measured_on": out["pools"],
            "noc_transfers": [{k: v for k, v in t.items()} for t in out["noc"]],
        }, indent=2, default=list) + "\n")
        out["path"] = path
    return out


# -- using a stored calibration ----------------------------------------------------------

def load_calibration(cfg: PoolConfig) -> dict:
    """The stored per-kind parameters of ``cfg`` (``{UnitKind: KindParams}``; empty when
    :func:`calibration_path` does not exist).

    A kind is left out (with a warning) when the calibration is stale for it: the file
    records the units it was measured on and a tile of that kind in ``cfg`` now has other
    parameters, or the file says the scale and overhead apply to another formula than
    the unit's own (``"formula"`` other than ``"unit"``, ``sched/cost/<kind>.py``'s, which
    the cost model uses).
    """
    path = calibration_path(cfg)
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
        stored = {UnitKind.from_key(k): KindParams(float(v["scale"]), float(v["overhead"]))
                  for k, v in doc["kinds"].items()}
        formulas = {UnitKind.from_key(k): v.get("formula") for k, v in doc["kinds"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a calibration file ({{'kinds': {{kind: {{'scale': s, "
                         f"'overhead': o}}}}}}): {e!r}") from None
    recorded = doc.get("units")
    seen = None if recorded is None else {
        (r["kind"], tuple(r.get("dtypes", ())),
         tuple(sorted((k, v) for k, v in r.items() if k not in ("kind", "dtypes"))))
        for r in recorded.values()}
    out = {}
    for kind, kp in stored.items():
        now = {(t.kind.key, tuple(d.key for d in t.dtypes), tuple(sorted(t.params.items())))
               for t in cfg.tiles_of(kind)}
        if seen is not None and not now <= seen:
            warnings.warn(f"{path}: the {kind.key} calibration was measured on other unit "
                          f"parameters than {cfg.name}'s {kind.key} tiles now have; not used",
                          stacklevel=2)
            continue
        if formulas[kind] not in (None, "unit"):
            warnings.warn(f"{path}: the {kind.key} calibration scales the {formulas[kind]} "
                          f"formula; the cost model uses the unit formula; not used",
                          stacklevel=2)
            continue
        out[kind] = kp
    return out


def calibrated_params(pool: Any, **cost_kw: Any):
    """The :class:`accelpool.sched.cost.model.CostParams` of ``pool``: the model's defaults with the
    stored calibration of the pool's config (:func:`load_calibration`) on top.

    ``cost_kw`` are the other :class:`~accelpool.sched.cost.model.CostModel` arguments (they can
    change the defaults)."""
    model = CostModel(pool, **cost_kw)
    base = model.params
    stored = load_calibration(pool.config)
    return dataclasses.replace(base, kinds={**base.kinds, **stored})


def cost_model(pool: Any, **cost_kw: Any):
    """A :class:`accelpool.sched.cost.model.CostModel` of ``pool`` using its stored calibration when
    ``configs/<name>.calibration.json`` exists (else the model's defaults)."""
    return CostModel(pool, calibrated_params(pool, **cost_kw), **cost_kw)


# -- command line ------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:

    ap = argparse.ArgumentParser(prog="python -m accelpool.flow.calibration",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="default")
    ap.add_argument("--sim", default=None, choices=("verilator", "icarus"))
    ap.add_argument("--kinds", default=None,
                    help="comma-separated unit kinds (default: all with a sweep); "
                         "the result is then not written")
    ap.add_argument("--reduced", action="store_true", help="a few shapes per kind (not written)")
    ap.add_argument("--whole-pool", action="store_true",
                    help="build and measure the pool itself, not one small pool per unit")
    args = ap.parse_args(argv)
    cfg = load_config(args.pool)
    kinds = None
    if args.kinds:
        try:
            kinds = [UnitKind.from_key(k.strip()) for k in args.kinds.split(",")]
        except ValueError as e:
            ap.error(f"--kinds: {e}")
    out = calibrate_in_rtl(cfg, args.sim, kinds=kinds, reduced=args.reduced,
                           per_unit=not args.whole_pool,
                           write=kinds is None and not args.reduced,
                           log=lambda s: print(s, flush=True))
    rows = [[k, out["samples"][k], f"{out['fit'][k][0]:.6f}", f"{out['fit'][k][1]:.3f}",
             f"{100 * out['before'][k][0]:.2f}%", f"{100 * out['before'][k][1]:.2f}%",
             f"{100 * out['after'][k][0]:.2f}%", f"{100 * out['after'][k][1]:.2f}%",
             f"{100 * out['held_out'][k]:.2f}%"]
            for k in out["fit"]]
    print_table(f"Unit cycles on {cfg.name} ({out['simulator']}): fit on half the sweep, "
                f"error over all of it",
                ["kind", "samples", "scale", "overhead", "max err before", "mean err before",
                 "max err after", "mean err after", "held-out max"], rows)
    if out["pools"]:
        print("measured on: " + ", ".join(f"{u} <- {p}" for u, p in out["pools"].items()))
    if out["noc"]:
        print_table("NoC transfers (NI busy cycles) against the cost model's load_cycles / "
                    "store_cycles", ["tile", "hops", "op", "bytes", "measured", "predicted",
                                     "error", "measured on"],
                    [[t["tile"], cfg.mesh.hops(tuple(t["src"]), tuple(t["dst"])), t["op"],
                      t["bytes"], t["cycles"], t["predicted"],
                      f"{100 * (t['predicted'] - t['cycles']) / t['cycles']:+.1f}%",
                      t.get("measured_on", cfg.name)] for t in out["noc"]])
    missing = sorted({t.kind.key for t in cfg.units} - set(out["fit"]))
    if missing:
        print(f"not calibrated: {', '.join(missing)}")
    bad = [k for k, e in out["held_out"].items() if e > 0.05]
    if bad:
        print(f"held-out error above 5%: {', '.join(bad)} (the formula misses the RTL)")
    if "path" in out:
        print(f"wrote {out['path']}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
