"""Calibration in RTL: unit micro-benchmarks and NoC transfers on the SoC, refit, store.

``python -m sched.calibration [--pool CFG] [--sim verilator|icarus]`` builds the pool's
SoC, runs a sweep of EXEC micro-benchmarks on every unit kind it has a sweep for (each
EXEC alone on a tile; the tile's ``unit_busy_cycles`` counter is the measurement) and a
sweep of LOADs and STOREs (the NI's ``ni_busy_cycles``), then

- fits ``scale * formula + overhead`` per unit kind with :func:`sched.cost.model.calibrate`
  (fit on one half of the sweep, error measured on the other half),
- prints the predicted-against-measured error before (the model's defaults) and after,
- writes the fitted parameters beside the config (``configs/<name>.calibration.json``).

Unit sweeps exist for the CE (the only unit in ``configs/ce_pair.toml``); a kind without
a sweep is listed as not calibrated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from hw import isa
from hw.config import PoolConfig, UnitKind, load_config

__all__ = ["ce_sweep", "measure", "calibrate_in_rtl", "calibration_path", "main"]


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


def _ce_exec(shape: dict) -> isa.Command:
    from hw.ce import CeFunc
    from hw.ce_layout import ConvShape
    s = ConvShape(c_in=shape["c_in"], c_out=shape["c_out"], height=shape["height"],
                  width=shape["width"], kernel_h=shape["kernel_h"], kernel_w=shape["kernel_w"],
                  stride=shape["stride"], pads=tuple(shape["pads"]))
    args = s.exec_args(in_addr=0, w_addr=0x1000, out_addr=0x2000, requant=shape["requant"],
                       multiplier=1 << 20, shift=30)
    return isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **args)


#: Unit kind -> (sweep of shapes, EXEC builder).
SWEEPS = {UnitKind.CE: (ce_sweep, _ce_exec)}
#: Bytes of the NoC transfer sweep.
TRANSFER_BYTES = (64, 256, 1024, 4096)


def measure(cfg: PoolConfig, build) -> tuple[list, list]:
    """Run the sweeps on a built SoC.

    Returns
    -------
    (unit measurements, transfers)
        :class:`sched.cost.model.Measurement` per EXEC; per transfer a dict with
        ``op``, ``tile``, ``src``, ``dst``, ``bytes`` and measured ``cycles``.
    """
    from sched.cost.model import Measurement
    from tb.soc import SocJob, run_jobs

    jobs, meta = [], []
    for tile in cfg.units:
        sweep = SWEEPS.get(tile.kind)
        if sweep is None:
            continue
        for shape in sweep[0]():
            jobs.append(SocJob(streams={tile.name: isa.assemble([sweep[1](shape), isa.end()])},
                               timeout_cycles=200_000))
            meta.append(("unit", tile, shape))
    mem = cfg.memory
    for tile in cfg.units:
        for n in TRANSFER_BYTES:
            for op in (isa.load, isa.store):
                cmd = op(spad_addr=0, x=mem.x, y=mem.y, remote_addr=0, length=n)
                jobs.append(SocJob(streams={tile.name: isa.assemble([cmd, isa.end()])},
                                   timeout_cycles=100_000))
                meta.append(("noc", tile, {"op": cmd.opcode.name, "bytes": n}))
    units, transfers = [], []
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
    from hw.config import CONFIG_DIR
    return CONFIG_DIR / f"{cfg.name}.calibration.json"


def _errors(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    rel = [abs(p - m) / max(m, 1.0) for p, m in points]
    return max(rel), sum(rel) / len(rel)


def calibrate_in_rtl(cfg: PoolConfig, sim: str | None = None, *, write: bool = True) -> dict:
    """Measure, refit, report the error before and after, and store the parameters.

    Returns
    -------
    dict
        ``before``/``after`` per kind: (max, mean) relative error over every measurement;
        ``fit``: kind -> (scale, overhead); ``noc``: per transfer, measured and predicted
        cycles; ``path``: the file written.
    """
    from sched.cost.model import CostModel, CostParams, calibrate
    from sched.pool import Pool
    from tb.soc import build_soc

    build = build_soc(cfg, sim)
    units, transfers = measure(cfg, build)
    pool = Pool(cfg)
    before_model = CostModel(pool)
    result = calibrate(units, CostParams())
    after_model = CostModel(pool, result.params)
    out = {"before": {}, "after": {}, "fit": {}, "samples": {}, "noc": []}
    for kind in {m.tile.kind for m in units}:
        ms = [m for m in units if m.tile.kind is kind]
        kp0 = before_model.params.kinds.get(kind)
        kp1 = result.params.kinds[kind]

        def predict(model, kp, m):
            raw = model.raw_cycles(kind, m.tile, m.shape)
            return kp.scale * raw + kp.overhead

        from sched.cost.model import KindParams
        kp0 = kp0 or KindParams()
        out["before"][kind.key] = _errors([(predict(before_model, kp0, m), m.cycles) for m in ms])
        out["after"][kind.key] = _errors([(predict(after_model, kp1, m), m.cycles) for m in ms])
        out["fit"][kind.key] = (kp1.scale, kp1.overhead)
        out["samples"][kind.key] = len(ms)
    for t in transfers:
        pred = before_model.transfer_cycles(t["bytes"], t["src"], t["dst"])
        out["noc"].append({**t, "predicted": pred})
    if write:
        path = calibration_path(cfg)
        path.write_text(json.dumps({
            "config": cfg.name, "simulator": build.sim,
            "kinds": {k: {"scale": s, "overhead": o} for k, (s, o) in out["fit"].items()},
            "error_before": out["before"], "error_after": out["after"],
            "noc_transfers": [{k: v for k, v in t.items()} for t in out["noc"]],
        }, indent=2, default=list) + "\n")
        out["path"] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from bench.common import print_table

    ap = argparse.ArgumentParser(prog="python -m sched.calibration", description=__doc__.splitlines()[0])
    ap.add_argument("--pool", default="ce_pair")
    ap.add_argument("--sim", default=None, choices=("verilator", "icarus"))
    args = ap.parse_args(argv)
    cfg = load_config(args.pool)
    out = calibrate_in_rtl(cfg, args.sim)
    rows = [[k, out["samples"][k], f"{out['fit'][k][0]:.4f}", f"{out['fit'][k][1]:.1f}",
             f"{100 * out['before'][k][0]:.2f}%", f"{100 * out['before'][k][1]:.2f}%",
             f"{100 * out['after'][k][0]:.2f}%", f"{100 * out['after'][k][1]:.2f}%"]
            for k in out["fit"]]
    print_table(f"Unit cycles on {cfg.name} ({args.sim or 'verilator'}): fit on half the sweep, "
                f"error over all of it", ["kind", "samples", "scale", "overhead", "max err before", "mean err before",
                 "max err after", "mean err after"], rows)
    print_table("NoC transfers (NI busy cycles) against the cost model's transfer_cycles",
                ["tile", "op", "bytes", "measured", "predicted", "error"],
                [[t["tile"], t["op"], t["bytes"], t["cycles"], t["predicted"],
                  f"{100 * (t['predicted'] - t['cycles']) / t['cycles']:+.1f}%"] for t in out["noc"]])
    missing = sorted({t.kind.key for t in cfg.units} - set(out["fit"]))
    if missing:
        print(f"not calibrated (no RTL sweep yet): {', '.join(missing)}")
    print(f"wrote {out['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
