"""The layout engine's functional model (:mod:`accelpool.sched.unitsim_layout`) against numpy.

The reference builds every destination element with numpy from the contract's formulas
(im2col by padding and slicing, transpose by ``.T``) on a random memory image; the model
must write exactly those bytes and no others (row padding and everything around stays).
"""

from __future__ import annotations

import numpy as np
import pytest

from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.units.layout import MemFunc
from accelpool.sched.unitsim import UnitSimError, execute
from accelpool.sched.unitsim_layout import layout_runs

SIZE = 1 << 16
MEM = TileConfig("mem", UnitKind.MEMORY, 1, 1, (), {"bytes": SIZE})
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _image(seed: int) -> bytearray:
    return bytearray(np.random.default_rng(seed).integers(0, 256, SIZE, np.uint8).tobytes())


def _rows(mem: bytes, addr: int, pitch: int, rows: int, elems: int, e: int) -> np.ndarray:
    a = np.frombuffer(bytes(mem), np.uint8)
    out = np.stack([a[addr + r * pitch: addr + r * pitch + elems * e] for r in range(rows)])
    return out.view(UINT[e]).reshape(rows, elems)


def _im2col_ref(x: np.ndarray, kh, kw, sh, sw, pt, pl, oh, ow, pad) -> np.ndarray:
    c, h, w = x.shape
    # pad generously on every side, then take the windows at the contract's positions
    big = np.pad(x, ((0, 0), (pt, oh * sh + kh), (pl, ow * sw + kw)), constant_values=pad)
    out = np.empty((c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i, j] = big[:, i:i + oh * sh:sh, j:j + ow * sw:sw][:, :oh, :ow]
    return out.reshape(c * kh * kw, oh * ow)


def _written_elsewhere(before: bytearray, after: bytearray, runs) -> np.ndarray:
    keep = np.ones(SIZE, bool)
    for a, n in runs:
        keep[a:a + n] = False
    return np.flatnonzero(keep & (np.frombuffer(bytes(before), np.uint8)
                                  != np.frombuffer(bytes(after), np.uint8)))


IM2COL_CASES = [
    # e, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, pad_value
    (2, 3, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 0),
    (2, 8, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 0x3F80),
    (1, 5, 7, 9, 2, 4, 3, 1, 0, 3, 2, 0, 0xAB_CD_F7),        # pad: low byte 0xF7
    (4, 2, 5, 6, 7, 7, 1, 2, 7, 7, 7, 7, 0xDEADBEEF),
    (2, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0),
    (1, 3, 10, 4, 5, 1, 2, 3, 2, 0, 4, 6, 0x80),
    (2, 4, 6, 6, 3, 2, 3, 3, 0, 1, 0, 1, 0xFFFF),
]


@pytest.mark.parametrize("case", IM2COL_CASES)
def test_im2col_matches_numpy(case):
    e, c, h, w, kh, kw, sh, sw, pt, pl, pb, pr, pad = case
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    src_pitch = w * e + 3 * e            # rows padded: the padding is never read
    dst_pitch = oh * ow * e + 5 * e      # nor written
    args = dict(src_addr=64 + e, dst_addr=20000, elem_log2=e.bit_length() - 1,
                src_pitch=src_pitch, dst_pitch=dst_pitch, channels=c, height=h, width=w,
                kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl,
                out_h=oh, out_w=ow, pad_value=pad)
    mem = _image(sum(case))
    before = bytearray(mem)
    x = _rows(mem, args["src_addr"], src_pitch, c * h, w, e).reshape(c, h, w)
    want = _im2col_ref(x, kh, kw, sh, sw, pt, pl, oh, ow, pad & ((1 << 8 * e) - 1))
    written = execute(MEM, MemFunc.IM2COL, args, mem)
    assert written == [(20000 + r * dst_pitch, oh * ow * e) for r in range(c * kh * kw)]
    got = _rows(mem, 20000, dst_pitch, c * kh * kw, oh * ow, e)
    np.testing.assert_array_equal(got, want)
    assert _written_elsewhere(before, mem, written).size == 0
    reads, writes = layout_runs(MemFunc.IM2COL, args, SIZE)
    assert writes == written
    assert reads == [(args["src_addr"] + r * src_pitch, w * e) for r in range(c * h)]


def test_im2col_equals_the_golden_executor():
    """The model and the golden LAYOUT im2col agree (x [C, H, W] BF16, ONNX-style pads)."""
    import ml_dtypes

    from accelpool.spec.config import DType
    from accelpool.sched.reference import Executor
    from accelpool.sched.ir import Buffer, BufferKind, Graph, LayoutFunc, MicroOp, OpType, TensorRef
    c, h, w, kh, kw, s, pads = 4, 9, 7, 3, 2, 2, (1, 0, 2, 1)
    oh, ow = (h + pads[0] + pads[2] - kh) // s + 1, (w + pads[1] + pads[3] - kw) // s + 1
    g = Graph("im2col")
    xb = g.add_buffer(Buffer("x", (1, c, h, w), DType.BF16, BufferKind.INPUT))
    yb = g.add_buffer(Buffer("y", (c * kh * kw, oh * ow), DType.BF16, BufferKind.OUTPUT))
    g.add_op(MicroOp("i", OpType.LAYOUT, DType.BF16, (TensorRef.whole(xb),),
                     (TensorRef.whole(yb),), LayoutFunc.IM2COL, {"n": yb.size},
                     attrs={"kernel": (kh, kw), "strides": (s, s), "pads": pads,
                            "pad_value": 1.5}))
    vals = np.random.default_rng(0).standard_normal((1, c, h, w)).astype(np.float32)
    ex = Executor(g)
    want = np.asarray(ex.run({"x": vals})["y"]).astype(ml_dtypes.bfloat16).view(np.uint16)
    mem = bytearray(SIZE)
    xv = np.asarray(ex.mem["x"]).astype(ml_dtypes.bfloat16).view(np.uint16)
    mem[0:xv.nbytes] = xv.tobytes()
    pad = int(np.asarray([1.5], ml_dtypes.bfloat16).view(np.uint16)[0])
    execute(MEM, MemFunc.IM2COL, dict(src_addr=0, dst_addr=8192, elem_log2=1, src_pitch=2 * w,
                                      dst_pitch=2 * oh * ow, channels=c, height=h, width=w,
                                      kernel_h=kh, kernel_w=kw, stride_h=s, stride_w=s,
                                      pad_top=pads[0], pad_left=pads[1], out_h=oh, out_w=ow,
                                      pad_value=pad), mem)
    np.testing.assert_array_equal(_rows(mem, 8192, 2 * oh * ow, c * kh * kw, oh * ow, 2), want)


@pytest.mark.parametrize("e,rows,cols", [(1, 5, 13), (2, 8, 64), (4, 17, 3), (2, 1, 9),
                                         (1, 33, 1)])
def test_transpose_matches_numpy(e, rows, cols):
    src_pitch = -(-cols * e // 8) * 8
    dst_pitch = -(-rows * e // 8) * 8 + 8
    args = dict(src_addr=128, dst_addr=30000, elem_log2=e.bit_length() - 1,
                src_pitch=src_pitch, dst_pitch=dst_pitch, rows=rows, cols=cols)
    mem = _image(rows * cols + e)
    before = bytearray(mem)
    want = _rows(mem, 128, src_pitch, rows, cols, e).T
    written = execute(MEM, MemFunc.TRANSPOSE, args, mem)
    assert written == [(30000 + j * dst_pitch, rows * e) for j in range(cols)]
    np.testing.assert_array_equal(_rows(mem, 30000, dst_pitch, cols, rows, e), want)
    assert _written_elsewhere(before, mem, written).size == 0


def _args(**kw):
    base = dict(src_addr=0, dst_addr=4096, elem_log2=1, src_pitch=16, dst_pitch=16,
                rows=4, cols=8, channels=2, height=4, width=8, kernel_h=1, kernel_w=1,
                stride_h=1, stride_w=1, pad_top=0, pad_left=0, out_h=4, out_w=8, pad_value=0)
    return {**base, **kw}


@pytest.mark.parametrize("func,kw,msg", [
    (MemFunc.TRANSPOSE, {"elem_log2": 3}, r"elem_log2 must be 0, 1 or 2 .* not 3"),
    (MemFunc.TRANSPOSE, {"src_addr": 3}, r"src_addr 0x3 is not a multiple of the 2-byte"),
    (MemFunc.IM2COL, {"dst_pitch": 6, "elem_log2": 2}, r"dst_pitch 0x6 is not a multiple of "
                                                       r"the 4-byte"),
    (MemFunc.IM2COL, {"stride_w": 0}, r"IM2COL stride_w must be at least 1, not 0"),
    (MemFunc.TRANSPOSE, {"dst_pitch": 6}, r"dst_pitch 6 is shorter than a destination row "
                                          r"of 8 bytes"),
    (MemFunc.TRANSPOSE, {"dst_addr": SIZE - 16}, r"destination rows .* leave the 65536-byte "
                                                 r"memory"),
    (MemFunc.IM2COL, {"src_addr": SIZE - 64, "dst_pitch": 64}, r"source rows .* leave the 65536-byte memory"),
    (MemFunc.TRANSPOSE, {"dst_addr": 32}, r"destination 0x20 overlaps the source 0x0: the "
                                          r"engine does not work in place"),
    (5, {}, r"EXEC function must be one of IM2COL=0, TRANSPOSE=1, not 5"),
])
def test_arguments_the_engine_cannot_run_are_refused(func, kw, msg):
    with pytest.raises(UnitSimError, match=msg):
        execute(MEM, func, _args(**kw), bytearray(SIZE))


def test_memory_image_must_be_the_whole_memory():
    with pytest.raises(UnitSimError, match="memory image of mem is 100 bytes; the tile has "
                                           "65536"):
        execute(MEM, MemFunc.TRANSPOSE, _args(), bytearray(100))


def test_interleaved_rows_that_do_not_touch_are_not_an_overlap():
    # destination rows between the source rows (same region, disjoint bytes) are fine
    mem = _image(7)
    args = _args(src_addr=0, src_pitch=32, dst_addr=16, dst_pitch=32, rows=4, cols=4)
    want = _rows(mem, 0, 32, 4, 4, 2).T
    execute(MEM, MemFunc.TRANSPOSE, args, mem)
    np.testing.assert_array_equal(_rows(mem, 16, 32, 4, 4, 2), want)
