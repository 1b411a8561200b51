"""Tests of the pool manager: capabilities, discovery, allocation, balance."""

from __future__ import annotations

import pytest

from accelpool.spec.config import DType, UnitKind, load_config
from accelpool.sched.ir import MicroOp, OpType
from accelpool.spec.capabilities import CAP_VERSION, CapReg, capability_registers
from accelpool.sched.pool import (AllocationError, DiscoveryError, Pool, PoolState,
                        ScratchpadAllocator, UnschedulableError, balance_report,
                        discover)


@pytest.fixture
def cfg():
    return load_config("default")


def op(kind: OpType, dtype: DType, name: str = "x/op") -> MicroOp:
    return MicroOp(name, kind, dtype, (), ())


def test_capabilities_from_config(cfg):
    pool = Pool.from_config(cfg)
    assert [u.name for u in pool.units] == [t.name for t in cfg.tiles]
    dmu = pool.unit("dmu0")
    assert dmu.caps.supports(OpType.GEMM, DType.BF16)
    assert not dmu.caps.supports(OpType.GEMM, DType.INT8)
    assert dict(dmu.caps.tile_sizes) == {"rows": 8, "cols": 8}
    assert dmu.caps.scratchpad_bytes == 65536
    assert pool.unit("smu0").caps.sparse and not dmu.caps.sparse
    assert pool.unit("afu0").caps.dtypes == (DType.BF16, DType.INT8)
    assert dict(pool.unit("ce0").caps.tile_sizes) == {"oc_lanes": 8, "ic_lanes": 8}
    assert [u.name for u in pool.candidates(op(OpType.SPMM, DType.BF16))] == ["dmu0", "dmu1", "smu0"]
    assert [u.name for u in pool.candidates(op(OpType.LAYOUT, DType.INT8))] == ["mem"]


def test_spmm_the_smu_cannot_take_goes_to_a_dmu(cfg):
    """The SMU multiplies a sparse A and starts every sum at +0: an SPMM tile with a sparse
    B or an accumulator operand (a bias, a later K step) is offered only the DMUs."""
    from accelpool.sched.ir import TensorRef
    pool = Pool.from_config(cfg)
    r = TensorRef("t", (0, 0), (8, 8))
    with_c = MicroOp("c", OpType.SPMM, DType.BF16, (r, r, r), (r,))
    sparse_b = MicroOp("b", OpType.SPMM, DType.BF16, (r, r), (r,), attrs={"sparse_operand": 1})
    plain = MicroOp("p", OpType.SPMM, DType.BF16, (r, r), (r,), attrs={"sparse_operand": 0})
    assert [u.name for u in pool.candidates(with_c)] == ["dmu0", "dmu1"]
    assert [u.name for u in pool.candidates(sparse_b)] == ["dmu0", "dmu1"]
    assert [u.name for u in pool.candidates(plain)] == ["dmu0", "dmu1", "smu0"]
    smu_only = Pool.from_config(cfg, kinds=[UnitKind.SMU, UnitKind.MEMORY])
    with pytest.raises(UnschedulableError, match=r"Micro-op 'c' \(spmm on bf16\) is supported "
                                                 r"by no unit of pool 'default' \(the SMU has no "
                                                 r"accumulator input, this micro-op adds one\)"):
        smu_only.candidates(with_c)


def test_config_dtypes_restrict_capabilities(cfg):
    import dataclasses
    tiles = tuple(dataclasses.replace(t, dtypes=(DType.BF16,)) if t.name == "afu0" else t
                  for t in cfg.tiles)
    pool = Pool(dataclasses.replace(cfg, tiles=tiles))
    with pytest.raises(UnschedulableError, match=r"Micro-op 'r' \(act on int8\) is supported by "
                                                 r"no unit of pool 'default'; the pool offers"):
        pool.candidates(op(OpType.ACT, DType.INT8, "r"))
    assert pool.candidates(op(OpType.ACT, DType.BF16))


def test_baseline_pools(cfg):
    dense = Pool.dense_only(cfg)
    assert {u.kind for u in dense.units} == {UnitKind.MEMORY, UnitKind.DMU, UnitKind.AFU}
    assert [u.name for u in dense.candidates(op(OpType.CONV, DType.INT8))] == ["dmu0", "dmu1"]
    ds = Pool.dense_sparse(cfg)
    assert [u.name for u in ds.candidates(op(OpType.AGGREGATE, DType.BF16))] == ["dmu0", "dmu1", "smu0"]


def registers_of(cfg, tweak=None):
    regs = {t.name: capability_registers(t) for t in cfg.tiles}
    if tweak:
        tweak(regs)
    return lambda tile, reg: regs[tile.name][reg]


def test_discovery_accepts_matching_hardware(cfg):
    pool = discover(cfg, registers_of(cfg))
    assert len(pool.units) == len(cfg.tiles)
    r = capability_registers(cfg.tile("dmu0"))
    assert r == {CapReg.KIND: 1, CapReg.VERSION: CAP_VERSION, CapReg.DTYPES: 0b1,
                 CapReg.GEOMETRY: (8 << 16) | 8, CapReg.SPAD_BYTES: 65536}
    assert capability_registers(cfg.tile("afu0"))[CapReg.DTYPES] == 0b101
    # a newer minor version is accepted
    discover(cfg, registers_of(cfg, lambda r: r["dmu0"].__setitem__(CapReg.VERSION, CAP_VERSION + 3)))


def test_discovery_refuses_a_mismatch(cfg):
    def swap(r):
        r["dmu1"][CapReg.GEOMETRY] = (16 << 16) | 16
        r["lpu0"][CapReg.KIND] = UnitKind.SMU.value
    with pytest.raises(DiscoveryError, match=r"dmu1 \(2,1\) GEOMETRY: config says 0x80008, "
                                             r"hardware reports 0x100010.*lpu0 \(1,0\) KIND: "
                                             r"config says 2 \(lpu\), hardware reports 3 \(smu\)"):
        discover(cfg, registers_of(cfg, swap))
    with pytest.raises(DiscoveryError, match=r"afu0 \(0,2\) DTYPES: config says 0x5 \(bf16/int8\), "
                                             r"hardware reports 0x1 \(bf16\)"):
        discover(cfg, registers_of(cfg, lambda r: r["afu0"].__setitem__(CapReg.DTYPES, 1)))
    with pytest.raises(DiscoveryError, match=r"VERSION: hardware 2.0, this software supports 1.x"):
        discover(cfg, registers_of(cfg, lambda r: r["mem"].__setitem__(CapReg.VERSION, 0x200)))


def test_scratchpad_allocator():
    sp = ScratchpadAllocator(1024, "dmu0 scratchpad")
    a = sp.alloc("a", 100)
    b = sp.alloc("b", 200)
    c = sp.alloc("c", 300)
    assert (a, b, c) == (0, 128, 352)
    sp.free("b")
    assert sp.alloc("d", 64) == 128          # first fit reuses the hole
    sp.free("a"); sp.free("d")
    assert sp.largest_free == 1024 - 352 - 320
    with pytest.raises(AllocationError, match=r"Micro-op 'big' needs 900 bytes of dmu0 "
                                              r"scratchpad \(1024 bytes, 704 free, largest free "
                                              r"block 352\); it does not fit"):
        sp.alloc("big", 900)
    sp.free("c")
    assert sp.free_bytes == 1024 and sp.largest_free == 1024
    with pytest.raises(AllocationError, match="'zz' holds no block"):
        sp.free("zz")
    with pytest.raises(ValueError, match="positive number of bytes, not 0"):
        sp.alloc("e", 0)


def test_reservations_one_micro_op_at_a_time(cfg):
    pool = Pool.from_config(cfg)
    st = PoolState(pool)
    u = pool.unit("dmu0")
    st.reserve(u, "a", 0, 10, 1000)
    st.reserve(u, "b", 20, 30)
    with pytest.raises(AllocationError, match=r"dmu0 is busy with 'a' during \[0, 10\); cannot "
                                              r"run 'c' at \[5, 12\)"):
        st.reserve(u, "c", 5, 12)
    with pytest.raises(AllocationError, match=r"busy with 'b'"):
        st.reserve(u, "c", 15, 21)
    assert st.earliest_slot(u, 0, 10) == 10
    assert st.earliest_slot(u, 0, 11) == 30
    assert st.earliest_slot(u, 0, 5, insertion=False) == 30
    with pytest.raises(AllocationError, match=r"Micro-op 'huge' needs 70000 bytes of scratchpad "
                                              r"\(operands and result\) but dmu0 has 65536"):
        st.reserve(u, "huge", 40, 50, 70000)


def test_balance_report(cfg):
    pool = Pool.from_config(cfg)
    rep = balance_report(pool, {"dmu0": 50, "dmu1": 100, "afu0": 10}, 200)
    assert rep["util.dmu0"] == 0.25 and rep["util.dmu1"] == 0.5
    assert rep["balance.dmu"] == 0.5
    assert rep["util.mean"] == pytest.approx(160 / (200 * 7))   # 7 compute units
