"""cocotb tests of the convolution engine on a scratchpad (run through tb.harness.run_cocotb).

Each convolution is checked bit for bit against :mod:`sched.golden.conv` and its cycle
count against :func:`sched.cost.ce.cycles`.
"""

import numpy as np
import cocotb

from hw.ce import CeCommand, CeFunc
from hw.ce_layout import ConvShape, unpack_output
from hw.ce_sim import layout_image
from sched.cost.ce import cycles as model_cycles
from sched.golden.conv import conv_integer, conv_requantized
from sched.golden.numerics import quantize_multiplier
from tb.cocotb_unit import UnitTB
from tb.harness import tb_params


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


async def run_conv(tb, p, shape, rng, *, bias, requant=False, zero_points=True):
    ol, il = p["oc_lanes"], p["ic_lanes"]
    x = rng.integers(-128, 128, (shape.c_in, shape.height, shape.width)).astype(np.int8)
    w = rng.integers(-128, 128, (shape.c_out, shape.c_in, shape.kernel_h, shape.kernel_w)).astype(np.int8)
    b = rng.integers(-5000, 5000, shape.c_out).astype(np.int32) if bias else None
    xz, wz = (int(rng.integers(-20, 20)), int(rng.integers(-3, 4))) if zero_points else (0, 0)
    img, addr, end = layout_image(shape, x, w, b, oc_lanes=ol, ic_lanes=il, requant=requant)
    assert end <= p["depth"] * il, f"case needs {end} bytes of scratchpad"
    await tb.load(0, img)
    rq = {}
    if requant:
        mult, shift = quantize_multiplier(0.02 * 0.005 / float(rng.uniform(0.01, 0.2)))
        rq = dict(multiplier=mult, shift=shift, y_zero_point=int(rng.integers(-10, 10)))
    args = shape.exec_args(**addr, bias=bias, requant=requant, x_zero_point=xz, w_zero_point=wz, **rq)
    payload = CeCommand.const({"func": CeFunc.CONV, "args": args}).as_value().value
    t = await tb.execute(payload)
    raw = await tb.read(addr["out_addr"], shape.output_bytes(ol, requant))
    got = unpack_output(raw, shape, ol, requant)
    kw = dict(x_zero_point=xz, w_zero_point=wz, strides=(shape.stride,) * 2, pads=shape.pads, bias=b)
    want = (conv_requantized(x[None], w, **rq, **kw) if requant else conv_integer(x[None], w, **kw))[0]
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
    """Random shapes (kernels 1..5, strides 1..2, pads, zero points, bias, INT32 or requantized
    INT8 output), with random idle and backpressure cycles on every stream."""
    p, tb = _tb(dut, stall=0.3)
    await tb.reset()
    rng = np.random.default_rng(p.get("seed", 0))
    for i in range(p.get("cases", 6)):
        shape = random_case(rng, p["ic_lanes"])
        await run_conv(tb, p, shape, rng, bias=bool(i % 2), requant=bool(i % 3 != 1))


@cocotb.test()
async def layer_3x3_16_to_16_32x32(dut):
    """The utilization target layer: >= 85% of the MACs busy."""
    p, tb = _tb(dut)
    if not p.get("big_layer", False):
        return
    await tb.reset()
    rng = np.random.default_rng(5)
    shape = ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))
    t = await run_conv(tb, p, shape, rng, bias=True, requant=True)
    util = shape.macs / (t * p["oc_lanes"] * p["ic_lanes"])
    dut._log.info(f"3x3 16->16 32x32: {t} cycles, MAC utilization {util:.3f}")
    assert util >= 0.85
