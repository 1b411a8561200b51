"""Calibration in RTL: unit micro-benchmarks and NoC transfers on small SoCs, refit, store."""

from __future__ import annotations

import json

import pytest

from accelpool.spec.config import UnitKind, load_config
from accelpool.flow.calibration import (SWEEPS, _check_bench, calibrate_in_rtl, calibrated_params,
                                        calibration_path, calibration_pools, cost_model,
                                        load_calibration)
from accelpool.sched.cost.model import CostModel, KindParams
from accelpool.sched.pool import Pool


def test_calibration_pools_keep_the_unit_and_its_distance_to_memory():
    cfg = load_config("default")
    pools = {cp.unit.name: cp for cp in calibration_pools(cfg)}
    # The two DMUs have the same parameters: one small pool stands for both.
    assert sorted(pools) == ["afu0", "ce0", "dmu0", "gnn0", "lpu0", "smu0"]
    assert [t.name for t in pools["dmu0"].stands_for] == ["dmu0", "dmu1"]
    for name, cp in pools.items():
        t = cfg.tile(name)
        assert cp.unit.params == t.params and cp.unit.dtypes == t.dtypes
        assert cp.config.memory.params == cfg.memory.params
        assert cp.config.mesh.flit_bits == cfg.mesh.flit_bits
        assert cp.hops == cfg.mesh.hops(t.at, cfg.memory.at)
        assert cp.config.mesh.hops(cp.unit.at, cp.config.memory.at) == cp.hops
        assert len(cp.config.tiles) == 2


@pytest.mark.parametrize("kind", sorted(SWEEPS, key=lambda k: k.value), ids=lambda k: k.key)
def test_every_micro_benchmark_is_a_valid_exec(kind):
    # The functional model accepts each EXEC on the scratchpad the tile will hold
    # (regions inside the scratchpad, word-aligned, well-formed CSR).
    cfg = load_config("default")
    tile = cfg.tiles_of(kind)[0]
    benches = SWEEPS[kind](tile)
    assert len(benches) >= 8
    for b in benches:
        _check_bench(tile, b)
    model = CostModel(Pool(cfg))
    formula = {model.raw_cycles(kind, tile, b.shape) for b in benches}
    assert len(formula) >= 6          # the sweep spreads over the formula's range


def test_stored_calibration_is_used_and_stale_kinds_are_not(tmp_path):
    cfg = load_config("ce_pair")
    src = tmp_path / "pair.toml"
    src.write_text(open(cfg.source).read())
    cfg = load_config(src)
    pool = Pool(cfg)
    assert load_calibration(cfg) == {}
    assert cost_model(pool).params == CostModel(pool).params
    doc = {"config": cfg.name, "kinds": {"ce": {"scale": 1.5, "overhead": 7.0}},
           "units": {"ce0": {"kind": "ce", "dtypes": ["int8"], **dict(cfg.tile("ce0").params)}}}
    calibration_path(cfg).write_text(json.dumps(doc))
    assert load_calibration(cfg) == {UnitKind.CE: KindParams(1.5, 7.0)}
    assert calibrated_params(pool).kinds[UnitKind.CE] == KindParams(1.5, 7.0)
    assert cost_model(pool).params.kinds[UnitKind.CE] == KindParams(1.5, 7.0)
    # Scale and overhead of another formula than the model's (the CE's own) are not used.
    doc["kinds"]["ce"]["formula"] = "fallback"
    calibration_path(cfg).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="uses the unit formula"):
        assert cost_model(pool).params.kinds[UnitKind.CE] == \
            CostModel(pool).params.kinds[UnitKind.CE]
    doc["kinds"]["ce"]["formula"] = "unit"
    calibration_path(cfg).write_text(json.dumps(doc))
    assert cost_model(pool).params.kinds[UnitKind.CE] == KindParams(1.5, 7.0)
    doc["units"]["ce0"]["oc_lanes"] = 16
    calibration_path(cfg).write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="other unit parameters"):
        assert load_calibration(cfg) == {}
    calibration_path(cfg).write_text("{}")
    with pytest.raises(ValueError, match="not a calibration file"):
        load_calibration(cfg)


def test_a_partial_calibration_is_not_written():
    with pytest.raises(ValueError, match="Only a full calibration"):
        calibrate_in_rtl(load_config("default"), "icarus", kinds=(UnitKind.AFU,))


def test_reduced_calibration_of_two_kinds_on_icarus():
    cfg = load_config("default")
    out = calibrate_in_rtl(cfg, "icarus", write=False, kinds=(UnitKind.AFU, UnitKind.GNN),
                           reduced=True, transfer_bytes=(64, 1024))
    assert sorted(out["fit"]) == ["afu", "gnn"]
    for kind in ("afu", "gnn"):
        assert out["samples"][kind] >= 5
        # The units' cycle formulas (sched/cost/afu.py, gnn.py) count the tile's
        # unit_busy_cycles exactly: the model's defaults already hit every measurement and
        # the refit is the identity.
        assert out["before"][kind][0] == 0
        assert out["fit"][kind] == (1.0, 0.0)
        assert out["after"][kind][0] == 0 and out["held_out"][kind] < 1e-9
    # Measurements are attributed to the default pool's tiles.
    assert {m.tile.name for m in out["measurements"]} == {"afu0", "gnn0"}
    # Transfers: every default tile at the distance of a measured unit (1 hop: gnn0's pool,
    # 2 hops: afu0's) gets them, growing with the bytes; STOREs as the NoC model says.
    tiles = {t["tile"] for t in out["noc"]}
    assert tiles == {t.name for t in cfg.units}
    for t in out["noc"]:
        if t["op"] == "STORE":
            assert t["cycles"] == t["predicted"], t
    loads = [t["cycles"] for t in out["noc"] if t["tile"] == "afu0" and t["op"] == "LOAD"]
    assert len(loads) == 2 and loads[0] < loads[1]


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_ce_calibration_in_rtl(sim):
    cfg = load_config("ce_pair")
    out = calibrate_in_rtl(cfg, sim, write=False)
    # The CE's own cycle formula is exact against the RTL: the refit is the identity and
    # the remaining error is zero (never worse than before the refit).
    scale, overhead = out["fit"]["ce"]
    assert abs(scale - 1) < 1e-9 and abs(overhead) < 1e-6
    assert out["after"]["ce"][0] < 1e-9
    assert out["after"]["ce"][0] <= out["before"]["ce"][0] + 1e-9
    # Every transfer was measured (NI busy cycles grow with the bytes moved).
    loads = [t["cycles"] for t in out["noc"] if t["tile"] == "ce0" and t["op"] == "LOAD"]
    assert loads == sorted(loads) and len(loads) == 4
    assert calibration_path(cfg).name == "ce_pair.calibration.json"


def test_default_pool_calibration_is_stored_and_applies():
    # configs/default.calibration.json (python -m accelpool.flow.calibration --pool configs/default.toml)
    # covers every unit kind of the default pool, for the formulas the model uses now.
    cfg = load_config("default")
    pool = Pool(cfg)
    stored = load_calibration(cfg)
    assert set(stored) == {t.kind for t in cfg.units}
    doc = json.loads(calibration_path(cfg).read_text())
    assert all(max(doc["error_after"][k.key]) <= 0.05 for k in stored)
