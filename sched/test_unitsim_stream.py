"""The AFU and CE EXEC models against their RTL units: same scratchpad in, same scratchpad out.

Each test fills a whole scratchpad with random bytes, places operands, runs a sequence of
EXEC commands (encoded and decoded through the ISA, as the functional executor sees them)
on the RTL unit in amaranth.sim and on the model, and compares the entire scratchpad after
every command: so the model computes the same results and writes no more and no fewer
bytes than the unit (partial last words, padding channels, untouched neighbours).
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.hw.afu import ActivationUnit
from accelpool.spec.units.afu import AfuDType, AfuFunc
from accelpool.hw.ce import ConvEngine
from accelpool.spec.units.ce import CeFunc
from accelpool.spec.ce_layout import ConvShape, pack_bias, pack_input, pack_weights, unpack_output
from accelpool.spec.config import TileConfig, UnitKind
from accelpool.sched import unitsim
from accelpool.spec.golden import activations as act
from accelpool.spec.golden import conv
from accelpool.sched.unitsim import UnitSimError
from accelpool.sched.unitsim_stream import afu_exec, ce_exec
from accelpool.tb.streams import always, stream_get, stream_put
from accelpool.tb.unit_top import UnitTop


def _tile(kind, **params) -> TileConfig:
    return TileConfig(kind.key + "0", kind, 1, 1, (), params)


def run_rtl(unit, image: bytes, cmds, read_ports=("rd",)) -> list[bytes]:
    """Load ``image`` into a scratchpad wired to ``unit``, run ``cmds`` ({func, args}) one
    after another, and return the whole scratchpad after each."""
    wb = len(unit.wr.data) // 8
    assert len(image) % wb == 0
    depth = len(image) // wb
    top = UnitTop(unit, depth=depth, read_ports=read_ports)
    images = []

    async def tb(ctx):
        pat = always()
        await stream_put(ctx, top.wr_cmd, {"addr": 0, "count": depth})
        for i in range(depth):
            await stream_put(ctx, top.wr_data, int.from_bytes(image[wb * i:wb * (i + 1)], "little"))
        await ctx.tick().until(~top.spad_busy)
        for cmd in cmds:
            await stream_put(ctx, top.cmd, cmd, pat)
            await ctx.tick().until(~top.busy)
            await stream_put(ctx, top.rd_cmd, {"addr": 0, "count": depth})
            words = [await stream_get(ctx, top.rd_data) for _ in range(depth)]
            images.append(b"".join(v.to_bytes(wb, "little") for v in words))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return images


def run_model(kind, tile, image: bytes, cmds):
    """The same through :func:`accelpool.sched.unitsim.execute` on decoded EXEC words."""
    spad = bytearray(image)
    images, writes = [], []
    for cmd in cmds:
        dec = isa.decode(isa.exec_cmd(kind, cmd["func"], **cmd["args"]).encode(), kind)
        writes.append(unitsim.execute(tile, dec.fields["func"], dec.fields["args"], spad))
        images.append(bytes(spad))
    return images, writes


def _diff(a: bytes, b: bytes) -> str:
    d = np.nonzero(np.frombuffer(a, np.uint8) != np.frombuffer(b, np.uint8))[0]
    return f"{len(d)} bytes differ, first at {d[:8].tolist()}"


# ------------------------------------------------------------------------------- AFU

AFU_LANES = 4
AFU_SPAD = 2048
SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x3F80,
                     0xBF80, 0x4100, 0xC100, 0x40FF, 0xC0FF, 0x3F40, 0xBF40], np.uint16)


def _afu_case():
    rng = np.random.default_rng(7)
    image = bytearray(rng.integers(0, 256, AFU_SPAD, dtype=np.uint8).tobytes())
    bf = np.concatenate([SPECIALS, rng.uniform(-9, 9, 112).astype(ml_dtypes.bfloat16)
                         .view(np.uint16)])                           # 128 BF16 = 256 bytes
    other = rng.uniform(-4, 4, 128).astype(ml_dtypes.bfloat16).view(np.uint16)
    i8 = rng.integers(-128, 128, 256).astype(np.int8)
    tab = act.int8_table("sigmoid", 0.05, -3, 1 / 256, -128)
    image[0x000:0x100] = bf.tobytes()
    image[0x100:0x200] = other.tobytes()
    image[0x200:0x300] = i8.tobytes()
    image[0x300:0x400] = tab.tobytes()
    q = dict(a_zero_point=-4, b_zero_point=9, y_zero_point=-2, multiplier=1 << 30, shift=36)
    B, I8 = AfuDType.BF16, AfuDType.INT8

    def op(func, dtype, count, a, out, **kw):
        return {"func": func, "args": dict(a_addr=a, out_addr=out, count=count, dtype=dtype,
                                           b_addr=kw.pop("b", 0x7F8), **kw)}

    cmds = [
        op(AfuFunc.SIGMOID, B, 13, 0x000, 0x400),                  # 13 = 3 words + 1 lane
        op(AfuFunc.GELU, B, 128, 0x000, 0x500),
        op(AfuFunc.TANH, B, 37, 0x000, 0x600),
        op(AfuFunc.LEAKY_RELU, B, 30, 0x000, 0x640, alpha=0x3E4D),  # alpha ~0.2 as BF16
        op(AfuFunc.RELU, B, 5, 0x000, 0x6C0),
        op(AfuFunc.ADD, B, 7, 0x000, 0x6E0, b=0x100),
        op(AfuFunc.MUL, B, 64, 0x000, 0x700, b=0x100),
        op(AfuFunc.RELU, I8, 23, 0x200, 0x780, y_zero_point=3),
        op(AfuFunc.SIGMOID, I8, 45, 0x200, 0x7A0, table_addr=0x300),
        op(AfuFunc.ADD, I8, 19, 0x200, 0x7D0, b=0x280, a_mult=3, b_mult=-5, **q),
        op(AfuFunc.MUL, I8, 10, 0x200, 0x7E8, b=0x280, **q),
        op(AfuFunc.TANH, B, 9, 0x500, 0x500),                      # in place
        op(AfuFunc.GELU, B, 0, 0x000, 0x400),                      # nothing
        op(AfuFunc.DEQUANTIZE, I8, 45, 0x200, 0x400, alpha=act.dequantize_scale_bits(0.1),
           a_zero_point=-5),                                       # INT8 -> BF16, 90 bytes
        op(AfuFunc.QUANTIZE, B, 61, 0x000, 0x480, y_zero_point=3,  # BF16 -> INT8, 61 bytes
           **dict(zip(("multiplier", "shift"), act.quantize_args(0.05)))),
        op(AfuFunc.QUANTIZE, I8, 128, 0x000, 0x500, y_zero_point=-9,   # dtype is ignored
           multiplier=(1 << 31) - 1, shift=37),
    ]
    return bytes(image), cmds


def test_afu_model_equals_rtl():
    """16 EXECs (every function, both types, partial words, in place, count 0, the
    INT8 <-> BF16 conversions) on one scratchpad: the whole image equals the RTL unit's
    after each."""
    image, cmds = _afu_case()
    tile = _tile(UnitKind.AFU, lanes=AFU_LANES, scratchpad_bytes=AFU_SPAD)
    want = run_rtl(ActivationUnit.from_tile(tile), image, cmds, read_ports=("rd_a", "rd_b"))
    got, writes = run_model(UnitKind.AFU, tile, image, cmds)
    prev = image
    for cmd, w, g, wr in zip(cmds, want, got, writes):
        a = cmd["args"]
        name = f"{cmd['func'].name} {a['dtype'].name} count {a['count']}"
        assert g == w, f"{name}: {_diff(g, w)}"
        nbytes = a["count"] * (2 if a["dtype"] is AfuDType.BF16 else 1)
        if cmd["func"] in (AfuFunc.DEQUANTIZE, AfuFunc.QUANTIZE):
            nbytes = a["count"] * (2 if cmd["func"] is AfuFunc.DEQUANTIZE else 1)
        assert wr == ([(a["out_addr"], nbytes)] if nbytes else []), name
        changed = np.nonzero(np.frombuffer(w, np.uint8) != np.frombuffer(prev, np.uint8))[0]
        assert all(a["out_addr"] <= i < a["out_addr"] + nbytes for i in changed), name
        prev = w
    # the results themselves, independently of the RTL
    sig = np.frombuffer(got[0][0x400:0x400 + 26], "<u2")
    assert np.array_equal(sig, act.bf16_activation("sigmoid", np.frombuffer(image[:26], "<u2")))
    i8 = np.frombuffer(image[0x200:0x200 + 45], np.int8)
    tab = np.frombuffer(image[0x300:0x400], np.int8)
    assert np.array_equal(np.frombuffer(got[8][0x7A0:0x7A0 + 45], np.int8), tab[i8.astype(np.uint8)])
    deq = np.frombuffer(got[13][0x400:0x400 + 90], "<u2")
    assert np.array_equal(deq, act.int8_dequantize(i8, -5, act.dequantize_scale_bits(0.1)))
    q = np.frombuffer(got[14][0x480:0x480 + 61], np.int8)
    assert np.array_equal(q, act.bf16_quantize(np.frombuffer(image[:122], "<u2"),
                                               *act.quantize_args(0.05), 3))


def _afu_args(**kw):
    args = dict(a_addr=0, b_addr=0x100, out_addr=0x200, table_addr=0x300, count=8,
                dtype=AfuDType.BF16)
    args.update(kw)
    return args


@pytest.mark.parametrize("func, kw, msg", [
    (AfuFunc.RELU, dict(a_addr=4), r"AFU a_addr must be a multiple of the 8-byte scratchpad word, not 0x4"),
    (AfuFunc.RELU, dict(out_addr=0x7F8, count=5),
     r"AFU out_addr 0x7f8 \+ 10 bytes leaves the 2048-byte scratchpad"),
    (AfuFunc.ADD, dict(b_addr=0x7F8, count=8), r"AFU b_addr 0x7f8 \+ 16 bytes leaves"),
    (AfuFunc.TANH, dict(dtype=AfuDType.INT8, table_addr=0x780),
     r"AFU table_addr 0x780 \+ 256 bytes leaves"),
    (AfuFunc.RELU, dict(count=1 << 20), r"AFU count must be between 0 and 1048575, not 1048576"),
    (AfuFunc.RELU, dict(out_addr=0x8, count=16), r"AFU out_addr 0x8 \+ 32 bytes partly overlaps operand a_addr"),
    (9, {}, r"AFU EXEC function must be one of RELU=0, .*, not 9"),
    (AfuFunc.RELU, dict(dtype=2), r"AFU dtype must be one of BF16=0, INT8=1, not 2"),
    (AfuFunc.DEQUANTIZE, dict(a_addr=0x200, out_addr=0x1F8, count=16),
     r"AFU DEQUANTIZE out_addr 0x1f8 \+ 32 bytes overlaps operand a_addr 0x200 \+ 16 bytes: "
     r"input and output advance at different byte rates"),
    (AfuFunc.QUANTIZE, dict(a_addr=0x200, out_addr=0x200, count=16),
     r"AFU QUANTIZE out_addr 0x200 \+ 16 bytes overlaps operand a_addr 0x200 \+ 32 bytes"),
    (AfuFunc.DEQUANTIZE, dict(out_addr=0x7F8, count=8),
     r"AFU out_addr 0x7f8 \+ 16 bytes leaves the 2048-byte scratchpad"),
])
def test_afu_errors(func, kw, msg):
    tile = _tile(UnitKind.AFU, lanes=AFU_LANES, scratchpad_bytes=AFU_SPAD)
    spad = bytearray(AFU_SPAD)
    with pytest.raises(UnitSimError, match=msg):
        unitsim.execute(tile, func, _afu_args(**kw), spad)
    assert spad == bytearray(AFU_SPAD)


def test_afu_unary_ignores_b_and_table():
    """A BF16 unary function reads neither b_addr nor table_addr (out of range is fine)."""
    tile = _tile(UnitKind.AFU, lanes=AFU_LANES, scratchpad_bytes=AFU_SPAD)
    spad = bytearray(b"\xAA" * AFU_SPAD)
    spad[0:2] = (0xBF80).to_bytes(2, "little")                       # -1.0
    assert afu_exec(tile, AfuFunc.RELU, _afu_args(count=1, b_addr=0xFFFFF8, table_addr=0xFFFFF8),
                    spad) == [(0x200, 2)]
    assert spad[0x200:0x203] == b"\0\0\xAA"


def test_image_must_be_the_tile_scratchpad():
    tile = _tile(UnitKind.AFU, lanes=AFU_LANES, scratchpad_bytes=AFU_SPAD)
    with pytest.raises(UnitSimError, match=r"The scratchpad image of afu0 is 1024 bytes; the tile has 2048"):
        afu_exec(tile, AfuFunc.RELU, _afu_args(), bytearray(1024))


# -------------------------------------------------------------------------------- CE

CE_OL, CE_IL, CE_SPAD = 8, 4, 4096


def _ce_place(rng, image, shape, addr, *, bias, x_unsigned=False):
    """Random operands, with random bytes in every padding channel and padded weight row."""
    icb, ocb = -(-shape.c_in // CE_IL), -(-shape.c_out // CE_OL)
    raw = rng.integers(0, 256, (icb * CE_IL, shape.height, shape.width)).astype(np.uint8)
    x_full = raw if x_unsigned else raw.view(np.int8)
    w_full = rng.integers(-128, 128, (ocb * CE_OL, icb * CE_IL, shape.kernel_h, shape.kernel_w)
                          ).astype(np.int8)
    b_full = rng.integers(-5000, 5000, ocb * CE_OL).astype(np.int32)
    blobs = {"in_addr": pack_input(x_full, CE_IL), "w_addr": pack_weights(w_full, CE_OL, CE_IL)}
    if bias:
        blobs["bias_addr"] = pack_bias(b_full, CE_OL)
    for k, blob in blobs.items():
        image[addr[k]:addr[k] + len(blob)] = blob
    return x_full[:shape.c_in], w_full[:shape.c_out, :shape.c_in], b_full[:shape.c_out]


def _ce_case():
    rng = np.random.default_rng(11)
    image = bytearray(rng.integers(0, 256, CE_SPAD, dtype=np.uint8).tobytes())
    cases = []
    # C=6, M=5: partial input and output channel blocks; 3x3, pads 1, bias, INT8 out
    s1 = ConvShape(c_in=6, c_out=5, height=5, width=6, kernel_h=3, kernel_w=3, pads=(1, 1, 1, 1))
    a1 = dict(in_addr=0x000, w_addr=0x100, bias_addr=0x400, out_addr=0x500)
    r1 = _ce_place(rng, image, s1, a1, bias=True)
    cases.append((s1, a1, r1, dict(bias=True, requant=True, x_zero_point=-3, w_zero_point=2,
                                   y_zero_point=5, multiplier=1 << 30, shift=40)))
    # stride 2, 3x2 kernel, asymmetric pads, M=11 (two blocks), INT32 out, no bias
    s2 = ConvShape(c_in=4, c_out=11, height=7, width=6, kernel_h=3, kernel_w=2, stride=2,
                   pads=(0, 1, 2, 0))
    a2 = dict(in_addr=0x600, w_addr=0x6C0, bias_addr=0, out_addr=0x900)
    r2 = _ce_place(rng, image, s2, a2, bias=False)
    cases.append((s2, a2, r2, dict(x_zero_point=7)))
    # UINT8 in and out, 1x1 kernel
    s3 = ConvShape(c_in=3, c_out=8, height=4, width=4, kernel_h=1, kernel_w=1)
    a3 = dict(in_addr=0xC00, w_addr=0xC40, bias_addr=0xC60, out_addr=0xD00)
    r3 = _ce_place(rng, image, s3, a3, bias=True, x_unsigned=True)
    cases.append((s3, a3, r3, dict(bias=True, requant=True, x_zero_point=131, y_zero_point=7,
                                   multiplier=1 << 30, shift=38, x_unsigned=True, y_unsigned=True)))
    cmds = [{"func": CeFunc.CONV, "args": s.exec_args(**a, **kw)} for s, a, _, kw in cases]
    return bytes(image), cases, cmds


def test_ce_model_equals_rtl():
    """Three convolutions (partial channel blocks, stride 2, asymmetric pads, INT32, INT8 and
    UINT8 output) on one scratchpad: the whole image equals the RTL unit's after each, and
    the real channels equal the ONNX reference on the unpacked operands."""
    image, cases, cmds = _ce_case()
    tile = _tile(UnitKind.CE, oc_lanes=CE_OL, ic_lanes=CE_IL, scratchpad_bytes=CE_SPAD)
    want = run_rtl(ConvEngine.from_tile(tile), image, cmds)
    got, writes = run_model(UnitKind.CE, tile, image, cmds)
    for (s, a, (x, w, b), kw), wnt, g, wr in zip(cases, want, got, writes):
        assert g == wnt, f"{s}: {_diff(g, wnt)}"
        requant = kw.get("requant", False)
        nbytes = s.output_bytes(CE_OL, requant)
        assert wr == [(a["out_addr"], nbytes)]
        y = unpack_output(g[a["out_addr"]:a["out_addr"] + nbytes], s, CE_OL, requant,
                          kw.get("y_unsigned", False))
        ref = conv.run_exec(s.exec_args(**a, **kw), x, w, b)
        assert np.array_equal(y, ref), str(s)


def _ce_args(**kw):
    s = ConvShape(c_in=4, c_out=8, height=4, width=4, kernel_h=1, kernel_w=1)
    args = s.exec_args(in_addr=0, w_addr=0x100, out_addr=0x800, bias_addr=0x700)
    args.update(kw)
    return args


@pytest.mark.parametrize("kw, msg", [
    (dict(w_addr=0x102), r"CE w_addr must be a multiple of the 4-byte scratchpad word, not 0x102"),
    (dict(out_addr=0xF80), r"CE out_addr 0xf80 \+ 512 bytes leaves the 4096-byte scratchpad"),
    (dict(bias=1, bias_addr=0xFF0), r"CE bias_addr 0xff0 \+ 32 bytes leaves"),
    (dict(stride=3), r"CE convolution stride must be 1 or 2, not 3"),
    (dict(kernel_h=0), r"CE convolution kernel_h must be between 1 and 5, not 0"),
    (dict(kernel_h=3, pad_top=3), r"CE convolution pad_top must be between 0 and 2, not 3"),
    (dict(c_in=120, kernel_h=5, kernel_w=5, height=5, width=5),
     r"CE convolution needs 750 weight-buffer entries .* the unit has 256"),
    (dict(height=1, kernel_h=3), r"Convolution of extent 1 with kernel 3"),
    (dict(x_zero_point=200), r"CE x_zero_point must be between -128 and 127, not 200"),
    (dict(requant=1, y_unsigned=1, y_zero_point=-1),
     r"CE y_zero_point must be between 0 and 255 \(unsigned\), not -1"),
    (dict(out_addr=0x80), r"CE out_addr 0x80 \+ 512 bytes overlaps operand w_addr 0x100"),
])
def test_ce_errors(kw, msg):
    tile = _tile(UnitKind.CE, oc_lanes=CE_OL, ic_lanes=CE_IL, scratchpad_bytes=CE_SPAD)
    spad = bytearray(CE_SPAD)
    with pytest.raises(UnitSimError, match=msg):
        unitsim.execute(tile, CeFunc.CONV, _ce_args(**kw), spad)
    assert spad == bytearray(CE_SPAD)


def test_registered_models():
    assert unitsim.model_for(UnitKind.AFU) is afu_exec
    assert unitsim.model_for(UnitKind.CE) is ce_exec
