"""The DMU/LPU functional models against the RTL units (amaranth.sim): same scratchpad bytes
in, same bytes out; the argument checks; the registry and the ISA decode path."""

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import DType, TileConfig, UnitKind
from accelpool.hw.dmu import Dmu
from accelpool.spec.units.dmu import DmuFunc
from accelpool.spec.gemm_layout import GemmLayout
from accelpool.tb.gemm_sim import run_image
from accelpool.hw.lpu import Lpu
from accelpool.spec.units.lpu import LpuFunc
from accelpool.sched import unitsim
from accelpool.spec.golden import numerics as nx
from accelpool.sched.unitsim import UnitSimError
from accelpool.sched.unitsim_gemm import dmu_exec, lpu_exec

SPAD = 4096
BF16 = ml_dtypes.bfloat16


def _tile(kind, rows, cols):
    dt = DType.BF16 if kind is UnitKind.DMU else DType.INT8
    return TileConfig(kind.key, kind, 0, 0, (dt,),
                      {"rows": rows, "cols": cols, "scratchpad_bytes": SPAD})


def _place(rng, sizes, wb):
    """Word-aligned, non-overlapping regions of ``sizes`` in a random order with gaps."""
    order = rng.permutation(len(sizes))
    at, out = 0, [0] * len(sizes)
    for i in order:
        at += int(rng.integers(0, 3)) * wb
        out[i] = at
        at += -(-sizes[i] // wb) * wb
    assert at <= SPAD
    return out


def _case(rng, kind, unit, m, n, k, in_place, structured):
    """A random scratchpad image (garbage everywhere, padding included) and EXEC arguments."""
    e = 2 if kind is UnitKind.DMU else 1
    lay = GemmLayout(unit.rows, unit.cols, unit.word_bytes, m, n, k)
    acc = bool(rng.integers(0, 2)) or in_place
    args = dict(m=m, n=n, k=k, accumulate=int(acc))
    if kind is UnitKind.DMU:
        args["out_bf16"] = int(rng.integers(0, 2))
        o = 2 if args["out_bf16"] else 4
    else:
        args["requant"] = int(rng.integers(0, 2))
        mult, shift = nx.quantize_multiplier(float(rng.uniform(1e-4, 1e-2)))
        args.update(multiplier=mult, shift=shift, zero_point=int(rng.integers(-128, 128)))
        o = 1 if args["requant"] else 4
    sizes = [lay.region_bytes("a", e), lay.region_bytes("b", e), lay.region_bytes("c", 4),
             lay.region_bytes("d", o)]
    a_at, b_at, c_at, d_at = _place(rng, sizes, unit.word_bytes)
    if in_place and o == 4:
        d_at = c_at
    args.update(a_addr=a_at, b_addr=b_at, c_addr=c_at, d_addr=d_at)
    image = bytearray(rng.integers(0, 256, SPAD, dtype=np.uint8).tobytes())
    if structured:       # ordinary values in the operands (the garbage stays in the padding)
        if kind is UnitKind.DMU:
            a = rng.standard_normal((m, k)).astype(BF16)
            b = rng.standard_normal((k, n)).astype(BF16)
            c = rng.standard_normal((m, n)).astype(np.float32)
        else:
            a = rng.integers(-128, 128, (m, k)).astype(np.int8)
            b = rng.integers(-128, 128, (k, n)).astype(np.int8)
            c = rng.integers(-2**20, 2**20, (m, n)).astype(np.int32)
        pitch = lay.a_pitch(e)
        for i in range(m):
            image[a_at + i * pitch:a_at + i * pitch + k * e] = a[i].tobytes()
        for kk in range(k):
            at = b_at + kk * lay.np_ * e
            image[at:at + n * e] = b[kk].tobytes()
        for i in range(m):
            at = c_at + i * lay.np_ * 4
            image[at:at + n * 4] = c[i].tobytes()
    return image, args


CASES = [
    # kind, rows, cols, m, n, k, in_place, structured
    (UnitKind.DMU, 2, 4, 5, 9, 3, False, True),
    (UnitKind.DMU, 2, 4, 3, 5, 17, False, False),      # ragged K, one-element last chunk
    (UnitKind.DMU, 4, 2, 6, 3, 5, True, True),         # R = W, in place
    (UnitKind.DMU, 4, 2, 7, 4, 8, False, False),
    (UnitKind.LPU, 2, 4, 5, 9, 3, False, False),
    (UnitKind.LPU, 4, 2, 6, 3, 9, True, True),
    (UnitKind.LPU, 4, 8, 5, 17, 33, False, True),
    (UnitKind.LPU, 4, 8, 9, 5, 12, False, False),
]


@pytest.mark.parametrize("kind, rows, cols, m, n, k, in_place, structured", CASES)
def test_model_matches_rtl_bytes(kind, rows, cols, m, n, k, in_place, structured):
    rng = np.random.default_rng(rows * 1000 + m * 100 + n * 10 + k)
    unit = (Dmu if kind is UnitKind.DMU else Lpu)(rows=rows, cols=cols, scratchpad_bytes=SPAD)
    image, args = _case(rng, kind, unit, m, n, k, in_place, structured)
    rtl, _ = run_image(unit, bytes(image), args)
    model = bytearray(image)
    func = DmuFunc.GEMM if kind is UnitKind.DMU else LpuFunc.GEMM
    runs = unitsim.execute(_tile(kind, rows, cols), func, args, model)
    assert bytes(model) == rtl, "the model and the RTL leave different scratchpads"
    o = {UnitKind.DMU: 2 if args.get("out_bf16") else 4,
         UnitKind.LPU: 1 if args.get("requant") else 4}[kind]
    assert sum(nb for _, nb in runs) == m * n * o
    written = np.zeros(SPAD, bool)
    for at, nb in runs:
        written[at:at + nb] = True
    changed = np.frombuffer(bytes(model), np.uint8) != np.frombuffer(bytes(image), np.uint8)
    assert not (changed & ~written).any(), "bytes changed outside the reported runs"


def test_registry_and_isa_decode_path():
    assert unitsim.model_for(UnitKind.DMU) is dmu_exec
    assert unitsim.model_for(UnitKind.LPU) is lpu_exec
    tile = _tile(UnitKind.DMU, 8, 8)
    a = np.arange(1, 7, dtype=np.float32).reshape(2, 3).astype(BF16)
    b = np.ones((3, 2), BF16)
    lay = GemmLayout(8, 8, 32, 2, 2, 3)
    spad = bytearray(SPAD)
    spad[0:len(lay.a_image(a))] = lay.a_image(a)
    spad[256:256 + len(lay.b_image(b))] = lay.b_image(b)
    cmd = isa.exec_cmd(UnitKind.DMU, DmuFunc.GEMM, a_addr=0, b_addr=256, d_addr=512,
                       m=2, n=2, k=3, out_bf16=1)
    back = isa.decode(cmd.encode(), UnitKind.DMU).fields
    runs = unitsim.execute(tile, back["func"], back["args"], spad)
    assert runs == [(512, 4), (512 + 16, 4)]          # D rows of Np = 8 BF16
    d = np.frombuffer(bytes(spad[512:512 + 32]), BF16).reshape(2, 8)[:, :2]
    assert d.astype(np.float32).tolist() == [[6, 6], [15, 15]]


def _args(**kw):
    base = dict(a_addr=0, b_addr=256, c_addr=512, d_addr=1024, m=3, n=4, k=5, accumulate=1)
    base.update(kw)
    return base


@pytest.mark.parametrize("kw, msg", [
    (dict(a_addr=8), r"DMU a_addr must be a multiple of the 32-byte scratchpad word, not 0x8"),
    (dict(d_addr=SPAD - 32), r"DMU d_addr 0xfe0 \+ 80 bytes leaves the 4096-byte scratchpad"),
    (dict(c_addr=SPAD - 64), r"DMU c_addr 0xfc0 \+ 256 bytes leaves"),
    (dict(b_addr=SPAD), r"DMU b_addr 0x1000 \+ 80 bytes leaves"),
    (dict(d_addr=256), r"DMU D \(0x100 \+ 80 bytes\) overlaps the operand at b_addr 0x100"),
    (dict(d_addr=544), r"overlaps the operand at c_addr 0x200; only d_addr == c_addr"),
])
def test_dmu_argument_errors(kw, msg):
    with pytest.raises(UnitSimError, match=msg):
        dmu_exec(_tile(UnitKind.DMU, 8, 8), DmuFunc.GEMM, _args(**kw), bytearray(SPAD))


def test_a_region_is_m_rows_and_other_errors():
    tile = _tile(UnitKind.DMU, 8, 8)
    # A of 3 rows x one 32-byte word ending exactly at the scratchpad end is accepted
    # (rows 3..7 of the padded block are never read)
    assert dmu_exec(tile, DmuFunc.GEMM, _args(a_addr=SPAD - 96, accumulate=0), bytearray(SPAD))
    with pytest.raises(UnitSimError, match=r"DMU a_addr 0xfc0 \+ 96 bytes leaves"):
        dmu_exec(tile, DmuFunc.GEMM, _args(a_addr=SPAD - 64), bytearray(SPAD))
    with pytest.raises(UnitSimError, match=r"DMU EXEC function must be GEMM=0, not 3"):
        dmu_exec(tile, 3, _args(), bytearray(SPAD))
    with pytest.raises(UnitSimError, match=r"scratchpad image of dmu is 100 bytes; the tile has 4096"):
        dmu_exec(tile, DmuFunc.GEMM, _args(), bytearray(100))
    # zero sizes: nothing read, nothing written, whatever the addresses
    assert dmu_exec(tile, DmuFunc.GEMM, _args(k=0, a_addr=3), bytearray(SPAD)) == []
    lt = _tile(UnitKind.LPU, 8, 16)
    with pytest.raises(UnitSimError, match=r"LPU Requantization shift must be in 0..63, not 64"):
        lpu_exec(lt, LpuFunc.GEMM, _args(requant=1, multiplier=1, shift=64), bytearray(SPAD))
    with pytest.raises(UnitSimError, match=r"LPU a_addr must be a multiple of the 64-byte"):
        lpu_exec(lt, LpuFunc.GEMM, _args(a_addr=32), bytearray(SPAD))
