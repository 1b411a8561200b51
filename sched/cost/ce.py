"""Cycle model of the convolution engine (``hw/ce.py``), checked against the RTL over a sweep.

The model follows the unit's schedule: per block of ``oc_lanes`` output channels, one
cycle to start, the weight load (``E * oc_lanes`` words + 2), the bias load if any
(``4 * oc_lanes / ic_lanes`` words + 2), then one cycle per (pixel, tap, input-channel
block) with ``E = kernel_h * kernel_w * ceil(c_in / ic_lanes)`` per pixel, then a
:data:`DRAIN`-cycle pipeline drain. Finished pixels reach the output FIFO
:data:`LATENCY` cycles after their last MAC cycle and a writer stores each in
``out_words`` cycles (``oc_lanes / ic_lanes`` words for INT8 output, four times that for
INT32); a pixel may only start while one of :data:`FIFO_DEPTH` output slots is free. When
``E >= out_words`` (the usual case) the writer never holds the MACs back and the count
is the closed form :func:`cycles_compute_bound` as long as a slot comes back before the
MACs need it again (``(FIFO_DEPTH - 1) * E >= LATENCY + out_words - 1``); otherwise the
slot recurrence is evaluated pixel by pixel.
"""

from __future__ import annotations

from typing import Any, Mapping

from accelpool.spec.config import TileConfig, UnitKind

from .formula import FORMULAS, Formula

__all__ = ["cycles", "cycles_compute_bound", "utilization", "SETUP", "DRAIN", "LATENCY",
           "FIFO_DEPTH", "FINISH"]

#: Cycles from command acceptance to the first block (SETUP, SETUP2).
SETUP = 2
#: Cycles from a block's last MAC cycle to the start of the next block.
DRAIN = 6
#: Cycles from a pixel's last MAC cycle to its first output word being written.
LATENCY = 6
#: Cycles from the last output word to ``busy`` falling.
FINISH = 2
#: Output FIFO slots (``ConvEngine(out_fifo_depth=)``).
FIFO_DEPTH = 8


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _terms(tile, c_in, c_out, out_h, out_w, kernel_h, kernel_w, bias, requant):
    ol, il = tile["oc_lanes"], tile["ic_lanes"]
    e = kernel_h * kernel_w * _ceil(c_in, il)
    ocb = _ceil(c_out, ol)
    load = 1 + (e * ol + 2) + ((4 * ol // il + 2) if bias else 0)
    out_words = ol // il if requant else 4 * ol // il
    return e, ocb, load, out_words, out_h * out_w


def _out_extent(size, kernel, stride, pad_begin, pad_end):
    return (size + pad_begin + pad_end - kernel) // stride + 1


def cycles(tile: TileConfig | dict, *, c_in: int, c_out: int, height: int, width: int,
           kernel_h: int = 3, kernel_w: int = 3, stride: int = 1, pads=None, pad_top: int = 0,
           pad_left: int = 0, pad_bottom: int = 0, pad_right: int = 0,
           bias: bool = False, requant: bool = False, **_: object) -> int:
    """Cycles from the CE accepting a CONV command until ``busy`` falls.

    Takes the CE's EXEC arguments (:data:`accelpool.spec.units.ce.CeArgs`; addresses and zero points are
    ignored), so ``cycles(tile, **shape.exec_args(...))`` works.

    Parameters
    ----------
    tile : TileConfig or mapping
        Supplies ``oc_lanes`` and ``ic_lanes``.
    c_in, c_out, height, width, kernel_h, kernel_w, stride, bias, requant
        The EXEC arguments.
    pads : (top, left, bottom, right), optional
        Instead of ``pad_top``, ``pad_left``, ``pad_bottom``, ``pad_right``.
    """
    if pads is None:
        pads = (pad_top, pad_left, pad_bottom, pad_right)
    oh = _out_extent(height, kernel_h, stride, pads[0], pads[2])
    ow = _out_extent(width, kernel_w, stride, pads[1], pads[3])
    e, ocb, load, out_words, p = _terms(tile, c_in, c_out, oh, ow, kernel_h, kernel_w, bias, requant)
    if e >= out_words and (FIFO_DEPTH - 1) * e >= LATENCY + out_words - 1:
        return cycles_compute_bound(e, ocb, load, out_words, p)
    # Writer-bound: pixel i starts when the MACs are free and an output slot is.
    t = SETUP
    slot_free = [0] * FIFO_DEPTH          # cycle from which each slot may be taken again
    writer_free = 0                       # first cycle the writer can start a pixel
    last_write = 0
    k = 0
    for _b in range(ocb):
        t += load
        for _i in range(p):
            start = max(t, slot_free[k % FIFO_DEPTH])
            ready = start + e - 1 + LATENCY
            w0 = max(ready, writer_free)
            last_write = w0 + out_words - 1
            writer_free = last_write + 1
            slot_free[k % FIFO_DEPTH] = last_write + 1
            k += 1
            t = start + e
        t += DRAIN - 1
    return max(last_write + FINISH, t - DRAIN + 1 + LATENCY + FINISH)


def cycles_compute_bound(e: int, ocb: int, load: int, out_words: int, pixels: int) -> int:
    """The closed form when the MACs never wait for an output slot or the writer."""
    return SETUP + ocb * (load + pixels * e) + (ocb - 1) * (DRAIN - 1) + LATENCY - 1 \
        + out_words + FINISH - 1


def utilization(tile, **shape) -> float:
    """MACs (padded taps included) over ``cycles * oc_lanes * ic_lanes``."""
    pads = shape.get("pads") or tuple(shape.get(f"pad_{s}", 0) for s in ("top", "left", "bottom", "right"))
    oh = _out_extent(shape["height"], shape.get("kernel_h", 3), shape.get("stride", 1), pads[0], pads[2])
    ow = _out_extent(shape["width"], shape.get("kernel_w", 3), shape.get("stride", 1), pads[1], pads[3])
    macs = oh * ow * shape.get("kernel_h", 3) * shape.get("kernel_w", 3) * shape["c_in"] * shape["c_out"]
    return macs / (cycles(tile, **shape) * tile["oc_lanes"] * tile["ic_lanes"])


def conv_arguments(op: Any, shape: Mapping[str, int], tile: Any = None) -> dict[str, Any]:
    """The CE formula's arguments for a CONV micro-op: its EXEC's input extent, channels,
    kernel, stride and pads."""
    return {"c_in": shape["IC"], "c_out": shape["OC"], "height": shape["H"],
            "width": shape["W"], "kernel_h": shape["KH"], "kernel_w": shape["KW"],
            "stride": op.attrs.get("strides", (1, 1))[0],
            "pads": tuple(op.attrs.get("pads", (0, 0, 0, 0))),
            "bias": len(op.inputs) > 2, "requant": "requant" in op.attrs}


FORMULAS.register(UnitKind.CE, Formula(cycles, conv_arguments))
