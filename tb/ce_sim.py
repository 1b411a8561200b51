"""Run one CE convolution in amaranth.sim on a unit + scratchpad (tests, cost-model checks)."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from accelpool.hw.ce import ConvEngine
from accelpool.spec.ce_layout import ConvShape, pack_bias, pack_input, pack_weights, unpack_output
from accelpool.spec.units.ce import CeFunc
from accelpool.tb.streams import always, stream_get, stream_put
from accelpool.tb.unit_top import UnitTop

__all__ = ["layout_image", "simulate_conv"]


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


def layout_image(shape: ConvShape, x, w, bias, *, oc_lanes: int, ic_lanes: int, requant: bool):
    """Place input, weights and bias one after another; returns (image bytes, addresses)."""
    wb = ic_lanes
    xin = pack_input(x, ic_lanes)
    win = pack_weights(w, oc_lanes, ic_lanes)
    bin_ = pack_bias(bias if bias is not None else np.zeros(shape.c_out, np.int32), oc_lanes)
    addr = {"in_addr": 0}
    addr["w_addr"] = _align(len(xin), wb)
    addr["bias_addr"] = _align(addr["w_addr"] + len(win), wb)
    addr["out_addr"] = _align(addr["bias_addr"] + len(bin_), wb)
    img = bytearray(addr["out_addr"])
    for key, blob in (("in_addr", xin), ("w_addr", win), ("bias_addr", bin_)):
        img[addr[key]:addr[key] + len(blob)] = blob
    end = addr["out_addr"] + shape.output_bytes(oc_lanes, requant)
    return bytes(img), addr, end


def simulate_conv(shape: ConvShape, x, w, bias=None, *, oc_lanes=8, ic_lanes=8, requant=False,
                  x_zero_point=0, w_zero_point=0, y_zero_point=0, multiplier=0, shift=0,
                  y_unsigned=False, pattern=None):
    """Run one convolution; returns ``(y[M, oH, oW], cycles from acceptance to not busy)``."""
    img, addr, end = layout_image(shape, x, w, bias, oc_lanes=oc_lanes, ic_lanes=ic_lanes,
                                  requant=requant)
    wb = ic_lanes
    depth = 1 << max(4, (-(-end // wb) - 1).bit_length())
    ce = ConvEngine(oc_lanes=oc_lanes, ic_lanes=ic_lanes, addr_width=(depth - 1).bit_length())
    top = UnitTop(ce, depth=depth)
    args = shape.exec_args(**addr, bias=bias is not None, requant=requant,
                           x_zero_point=x_zero_point, w_zero_point=w_zero_point,
                           y_zero_point=y_zero_point, multiplier=multiplier, shift=shift,
                           x_unsigned=np.asarray(x).dtype == np.uint8, y_unsigned=y_unsigned)
    res = {}

    async def tb(ctx):
        pat = pattern or always()
        n = len(img) // wb
        await stream_put(ctx, top.wr_cmd, {"addr": 0, "count": n})
        for i in range(n):
            await stream_put(ctx, top.wr_data, int.from_bytes(img[wb * i:wb * i + wb], "little"), pat)
        await ctx.tick().until(~top.spad_busy)
        await stream_put(ctx, top.cmd, {"func": CeFunc.CONV, "args": args}, pat)
        t = 0
        while ctx.get(top.busy):
            await ctx.tick()
            t += 1
        res["cycles"] = t
        nout = shape.output_bytes(oc_lanes, requant) // wb
        await stream_put(ctx, top.rd_cmd, {"addr": addr["out_addr"] // wb, "count": nout})
        words = [await stream_get(ctx, top.rd_data, pat) for _ in range(nout)]
        res["out"] = b"".join(v.to_bytes(wb, "little") for v in words)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return unpack_output(res["out"], shape, oc_lanes, requant, y_unsigned), res["cycles"]
