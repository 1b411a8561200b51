"""Run AFU operations in amaranth.sim on a unit + scratchpad (tests, cost-model checks)."""

from __future__ import annotations

from amaranth.sim import Simulator

from accelpool.hw.afu import ActivationUnit
from accelpool.tb.streams import always, stream_get, stream_put
from accelpool.tb.unit_top import UnitTop

__all__ = ["simulate_afu"]


def simulate_afu(ops, *, lanes=4, pattern=None):
    """Run a list of operations on one unit.

    ``ops`` holds dicts ``{func, args, a, b, table, out_bytes}``: ``a``/``b``/``table`` are
    bytes placed at ``args``' ``a_addr``/``b_addr``/``table_addr``; ``out_bytes`` bytes are
    read back from ``out_addr``. Returns a list of ``(out bytes, cycles)``.
    """
    wb = 2 * lanes
    end = 0
    for op in ops:
        a = op["args"]
        for key, blob in (("a_addr", op.get("a")), ("b_addr", op.get("b")),
                          ("table_addr", op.get("table"))):
            if blob is not None:
                end = max(end, a[key] + len(blob))
        end = max(end, a["out_addr"] + op["out_bytes"])
    depth = 1 << max(4, (-(-end // wb) - 1).bit_length())
    unit = ActivationUnit(lanes=lanes, addr_width=(depth - 1).bit_length())
    top = UnitTop(unit, depth=depth, read_ports=("rd_a", "rd_b"))
    results = []

    async def load(ctx, addr, blob, pat):
        blob = bytes(blob) + bytes(-len(blob) % wb)
        n = len(blob) // wb
        await stream_put(ctx, top.wr_cmd, {"addr": addr // wb, "count": n})
        for i in range(n):
            await stream_put(ctx, top.wr_data, int.from_bytes(blob[wb * i:wb * i + wb], "little"), pat)
        await ctx.tick().until(~top.spad_busy)

    async def tb(ctx):
        pat = pattern or always()
        for op in ops:
            a = op["args"]
            for key in ("a", "b", "table"):
                if op.get(key) is not None:
                    await load(ctx, a[f"{key}_addr"], op[key], pat)
            await stream_put(ctx, top.cmd, {"func": op["func"], "args": a}, pat)
            t = 0
            while ctx.get(top.busy):
                await ctx.tick()
                t += 1
            n = -(-op["out_bytes"] // wb)
            await stream_put(ctx, top.rd_cmd, {"addr": a["out_addr"] // wb, "count": n})
            words = [await stream_get(ctx, top.rd_data, pat) for _ in range(n)]
            out = b"".join(v.to_bytes(wb, "little") for v in words)[:op["out_bytes"]]
            results.append((out, t))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return results
