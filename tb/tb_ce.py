"""cocotb tests of the convolution engine on a scratchpad (run through accelpool.tb.harness.run_cocotb).

Each convolution is checked bit for bit against :mod:`accelpool.spec.golden.conv` and its cycle
count against :func:`accelpool.sched.cost.ce.cycles`.
"""

import json

import numpy as np
import cocotb

from accelpool.spec.units.ce import CeCommand, CeFunc
from accelpool.spec.ce_layout import ConvShape, unpack_output
from accelpool.tb.ce_sim import layout_image
from accelpool.sched.cost.ce import cycles as model_cycles
from accelpool.spec.golden.conv import conv_integer, conv_requantized
from accelpool.spec.golden.numerics import quantize_multiplier
from accelpool.tb.cocotb_unit import UnitTB
from accelpool.tb.harness import tb_params


def random_case(rng, ic_lanes):
    k = int(rng.integers(1, 6))
    kw = int(rng.choice([k, int(rng.integers(1, 6))]))
    s = int(rng.integers(1, 3))
    pads = tuple(int(rng.integers(0, kk)) for kk in (k, kw, k, kw))
    h = int(rng.integers(max(1, k - pads[0] - pads[2]), 9))
    w = int(rng.integers(max(1, kw - pads[1] - pads[3]), 9))
    c = int(rng.integers(1, 3 * ic_lanes + 1))
    mo = int(rng.integers(1, 20))
    return ConvShape(c, mo, h, w, k, kw, s, pads)


async def run_conv(tb, p, shape, rng, *, bias, requant=False, zero_points=True, unsigned=False):
    ol, il = p["oc_lanes"], p["ic_lanes"]
    lo, dt = (0, np.uint8) if unsigned else (-128, np.int8)
    x = rng.integers(lo, lo + 256, (shape.c_in, shape.height, shape.width)).astype(dt)
    w = rng.integers(-128, 128, (shape.c_out, shape.c_in, shape.kernel_h, shape.kernel_w)).astype(np.int8)
    b = rng.integers(-5000, 5000, shape.c_out).astype(np.int32) if bias else None
    xz, wz = (int(rng.integers(-20, 20)), int(rng.integers(-3, 4))) if zero_points else (0, 0)
    xz += 128 * unsigned
    img, addr, end = layout_image(shape, x, w, b, oc_lanes=ol, ic_lanes=il, requant=requant)
    assert end <= p["depth"] * il, f"case needs {end} bytes of scratchpad"
    await tb.load(0, img)
    rq = {}
    if requant:
        mult, shift = quantize_multiplier(0.02 * 0.005 / float(rng.uniform(0.01, 0.2)))
        rq = dict(multiplier=mult, shift=shift, y_zero_point=int(rng.integers(-10, 10)) + 128 * unsigned)
    args = shape.exec_args(**addr, bias=bias, requant=requant, x_zero_point=xz, w_zero_point=wz,
                           x_unsigned=unsigned, y_unsigned=unsigned and requant, **rq)
    payload = CeCommand.const({"func": CeFunc.CONV, "args": args}).as_value().value
    t = await tb.execute(payload)
    raw = await tb.read(addr["out_addr"], shape.output_bytes(ol, requant))
    got = unpack_output(raw, shape, ol, requant, unsigned)
    kw = dict(x_zero_point=xz, w_zero_point=wz, strides=(shape.stride,) * 2, pads=shape.pads, bias=b)
    want = (conv_requantized(x[None], w, **rq, y_unsigned=unsigned, **kw) if requant
            else conv_integer(x[None], w, **kw))[0]
    assert np.array_equal(got, want), f"{shape}: {np.sum(got != want)} outputs differ"
    predicted = model_cycles({"oc_lanes": ol, "ic_lanes": il}, c_in=shape.c_in, c_out=shape.c_out,
                             height=shape.height, width=shape.width, kernel_h=shape.kernel_h,
                             kernel_w=shape.kernel_w, stride=shape.stride, pads=shape.pads,
                             bias=bias, requant=requant)
    assert t == predicted, f"{shape}: {t} cycles, cost model says {predicted}"
    return t


def _tb(dut, stall=None):
    p = tb_params()
    return p, UnitTB(dut, word_bytes=p["ic_lanes"], addr_width=(p["depth"] - 1).bit_length(),
                     stall=stall, seed=p.get("seed", 0))


@cocotb.test()
async def random_convolutions_with_backpressure(dut):
    """Random shapes (kernels 1..5, strides 1..2, pads, zero points, bias, INT8 or UINT8
    activations, INT32 or requantized output), with random idle and backpressure cycles on
    every stream."""
    p, tb = _tb(dut, stall=0.3)
    await tb.reset()
    rng = np.random.default_rng(p.get("seed", 0))
    for i in range(p.get("cases", 6)):
        shape = random_case(rng, p["ic_lanes"])
        await run_conv(tb, p, shape, rng, bias=bool(i % 2), requant=bool(i % 3 != 1),
                       unsigned=i % 4 == 3)


@cocotb.test()
async def layer_3x3_16_to_16_32x32(dut):
    """The utilization target layer: >= 85% of the MACs busy."""
    p, tb = _tb(dut)
    await tb.reset()
    rng = np.random.default_rng(5)
    shape = ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))
    t = await run_conv(tb, p, shape, rng, bias=True, requant=True)
    util = shape.macs / (t * p["oc_lanes"] * p["ic_lanes"])
    dut._log.info(f"3x3 16->16 32x32: {t} cycles, MAC utilization {util:.3f}")
    assert util >= 0.85


BENCH_SHAPES = [  # (name, shape): every layer with bias and requantization to INT8
    ("3x3 16->16 32x32", ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))),
    ("3x3 3->16 32x32", ConvShape(3, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))),
    ("1x1 16->32 16x16", ConvShape(16, 32, 16, 16, 1, 1, 1, (0, 0, 0, 0))),
    ("3x3 32->32 16x16 s2", ConvShape(32, 32, 16, 16, 3, 3, 2, (1, 1, 1, 1))),
    ("5x5 8->16 16x16", ConvShape(8, 16, 16, 16, 5, 5, 1, (2, 2, 2, 2))),
    ("3x3 64->64 8x8", ConvShape(64, 64, 8, 8, 3, 3, 1, (1, 1, 1, 1))),
    ("1x1 64->64 8x8", ConvShape(64, 64, 8, 8, 1, 1, 1, (0, 0, 0, 0))),
]


@cocotb.test()
async def bench_layers(dut):
    """For the benchmark: RTL cycles of BENCH_SHAPES, checked, written to ``bench_out``."""

    p, tb = _tb(dut)
    await tb.reset()
    rng = np.random.default_rng(9)
    rows = []
    for name, shape in BENCH_SHAPES:
        t = await run_conv(tb, p, shape, rng, bias=True, requant=True)
        rows.append({"name": name, "macs": shape.macs, "cycles": t})
    if "bench_out" in p:
        with open(p["bench_out"], "w") as f:
            json.dump(rows, f)
