"""ISA-level functional models of the streaming units: the AFU and the CE's EXEC.

Registered with :func:`accelpool.sched.unitsim.register` for :attr:`UnitKind.AFU` and
:attr:`UnitKind.CE`. Each model reads its operands from the tile's scratchpad image exactly
where and how the unit's module documents them (``hw/afu.py``, ``hw/ce.py`` and
``spec/ce_layout.py``), computes with the golden arithmetic
(:func:`accelpool.spec.golden.activations.run_exec`, :func:`accelpool.spec.golden.conv.run_exec`) and writes
only the bytes the unit writes:

AFU
    ``count`` elements (BF16: 2 bytes, INT8: 1 byte, little-endian, packed) from
    ``a_addr`` (and ``b_addr`` for ADD/MUL), the 256-byte table at ``table_addr`` for INT8
    LEAKY_RELU/SIGMOID/TANH/GELU; ``count`` results at ``out_addr``. A partial last word is
    written with byte enables, so exactly ``count * element bytes`` bytes change.
    DEQUANTIZE reads ``count`` INT8 and writes ``count`` BF16, QUANTIZE the reverse,
    whatever ``dtype`` says; their output may not overlap the operand at all.
CE
    Input (HWC, channel blocks of ``ic_lanes``), weights (one word per output channel, tap
    and input block), optional INT32 bias, as :mod:`accelpool.spec.ce_layout` packs them. The unit
    writes every output pixel's ``ceil(M / oc_lanes) * oc_lanes`` channels, including the
    padding channels, which it computes from whatever the padded weight rows and bias
    entries hold; the model does the same (so its bytes equal the RTL's everywhere).
    Input channels beyond ``c_in`` are masked (they contribute nothing, whatever they hold).

Arguments the unit cannot run correctly raise :class:`accelpool.sched.unitsim.UnitSimError` naming
the field: byte addresses that are not word-aligned (the unit drops the low bits),
operands or results that leave the scratchpad, counts or shapes out of the unit's range,
zero points outside their documented range, and outputs that partly overlap an operand
(the AFU streams, so an output exactly on top of an operand is fine; the CE rereads its
input for every output-channel block, so its output may not overlap any operand).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from accelpool.sched.unitsim import (UnitSimError, register, check_run as _check_run,
                                     overlap as _overlap, spad_size as _spad_size)
from accelpool.spec.ce_layout import ConvShape
from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.golden import activations, conv
from accelpool.spec.units.afu import COUNT_BITS, AfuDType, AfuFunc
from accelpool.spec.units.ce import WEIGHT_DEPTH, CeFunc

__all__ = ["afu_exec", "ce_exec"]

_AFU_TABLE = (AfuFunc.LEAKY_RELU, AfuFunc.SIGMOID, AfuFunc.TANH, AfuFunc.GELU)
_AFU_BINARY = (AfuFunc.ADD, AfuFunc.MUL)
#: Functions whose input and output element sizes differ: (input, output) bytes.
_AFU_CONVERT = {AfuFunc.DEQUANTIZE: (1, 2), AfuFunc.QUANTIZE: (2, 1)}


def _member(enum_type, value, what: str):
    try:
        return value if isinstance(value, enum_type) else enum_type(value)
    except ValueError:
        raise UnitSimError(f"{what} must be one of "
                           f"{', '.join(f'{m.name}={m.value}' for m in enum_type)}, "
                           f"not {value!r}") from None


def _args(args: Mapping[str, Any]):
    def g(k: str) -> int:
        return int(args.get(k, 0))
    return g


@register(UnitKind.AFU)
def afu_exec(tile: TileConfig, func: Any, args: Mapping[str, Any],
             spad: bytearray) -> list[tuple[int, int]]:
    """One AFU EXEC on the scratchpad image ``spad`` (see the module docstring).

    Parameters
    ----------
    tile : TileConfig
        An AFU tile (``lanes``, ``scratchpad_bytes``).
    func : AfuFunc or int
    args : mapping
        :data:`accelpool.spec.units.afu.AfuArgs` fields (``dtype`` an :class:`AfuDType` or its value).
    spad : bytearray
        The tile's scratchpad, modified in place.

    Returns
    -------
    list of (int, int)
        ``[(out_addr, count * output element bytes)]``, or ``[]`` for ``count == 0``.
    """
    size = _spad_size(tile, spad)
    word = 2 * tile["lanes"]
    f = _member(AfuFunc, func, "AFU EXEC function")
    dt = _member(AfuDType, args.get("dtype", 0), "AFU dtype")
    g = _args(args)
    count = g("count")
    if not 0 <= count < 1 << COUNT_BITS:
        raise UnitSimError(f"AFU count must be between 0 and {(1 << COUNT_BITS) - 1}, "
                           f"not {count!r}")
    esize = 2 if dt is AfuDType.BF16 else 1
    in_size, out_size = _AFU_CONVERT.get(f, (esize, esize))
    nbytes = count * out_size
    runs = {"a_addr": (g("a_addr"), count * in_size), "out_addr": (g("out_addr"), nbytes)}
    if f in _AFU_BINARY:
        runs["b_addr"] = (g("b_addr"), nbytes)
    table = dt is AfuDType.INT8 and f in _AFU_TABLE
    if table:
        runs["table_addr"] = (g("table_addr"), 256)
    for name, (addr, n) in runs.items():
        _check_run("AFU", name, addr, n, size, word)
    out = runs["out_addr"]
    if f in _AFU_CONVERT and _overlap(runs["a_addr"], out):
        raise UnitSimError(f"AFU {f.name} out_addr {out[0]:#x} + {nbytes} bytes overlaps "
                           f"operand a_addr {runs['a_addr'][0]:#x} + {runs['a_addr'][1]} "
                           f"bytes: input and output advance at different byte rates, so "
                           f"they must lie apart")
    for name in ("a_addr", "b_addr"):
        if name in runs and runs[name][0] != out[0] and _overlap(runs[name], out):
            raise UnitSimError(f"AFU out_addr {out[0]:#x} + {nbytes} bytes partly overlaps "
                               f"operand {name} {runs[name][0]:#x}: the unit streams, so an "
                               f"output may only lie exactly on an operand or apart from it")
    if count == 0:
        return []

    def read(name: str, n: int, dtype) -> np.ndarray:
        addr = runs[name][0]
        return np.frombuffer(bytes(spad[addr:addr + n]), dtype)

    el = np.dtype("<u2") if dt is AfuDType.BF16 else np.dtype(np.int8)
    a_el = el
    if f in _AFU_CONVERT:
        a_el, el = ((np.dtype(np.int8), np.dtype("<u2")) if f is AfuFunc.DEQUANTIZE
                    else (np.dtype("<u2"), np.dtype(np.int8)))
    a = read("a_addr", count * in_size, a_el)
    b = read("b_addr", nbytes, el) if f in _AFU_BINARY else None
    t = read("table_addr", 256, np.int8) if table else None
    try:
        y = activations.run_exec(f, {**args, "dtype": dt.name.lower()}, a, b, t)
    except ValueError as e:
        raise UnitSimError(f"AFU {f.name} <{dt.name.lower()}>: {e}") from None
    data = np.asarray(y).astype(el).tobytes()
    assert len(data) == nbytes
    spad[out[0]:out[0] + nbytes] = data
    return [(out[0], nbytes)]


@lru_cache(maxsize=None)
def _blocks(n: int, lanes: int) -> int:
    return -(-n // lanes)


@register(UnitKind.CE)
def ce_exec(tile: TileConfig, func: Any, args: Mapping[str, Any],
            spad: bytearray) -> list[tuple[int, int]]:
    """One CE CONV on the scratchpad image ``spad`` (see the module docstring).

    Parameters
    ----------
    tile : TileConfig
        A CE tile (``oc_lanes``, ``ic_lanes``, ``scratchpad_bytes``).
    func : CeFunc or int
    args : mapping
        :data:`accelpool.spec.units.ce.CeArgs` fields.
    spad : bytearray
        The tile's scratchpad, modified in place.

    Returns
    -------
    list of (int, int)
        ``[(out_addr, output bytes)]``: every output pixel's ``ceil(M / oc_lanes) *
        oc_lanes`` channels, one byte each (``requant``) or four.
    """
    size = _spad_size(tile, spad)
    ol, il = tile["oc_lanes"], tile["ic_lanes"]
    _member(CeFunc, func, "CE EXEC function")
    g = _args(args)
    shape = ConvShape(c_in=g("c_in"), c_out=g("c_out"), height=g("height"), width=g("width"),
                      kernel_h=g("kernel_h"), kernel_w=g("kernel_w"), stride=g("stride"),
                      pads=(g("pad_top"), g("pad_left"), g("pad_bottom"), g("pad_right")))
    try:
        shape.check(ic_lanes=il, weight_depth=WEIGHT_DEPTH)
        shape.out_h, shape.out_w
    except ValueError as e:
        raise UnitSimError(str(e)) from None
    requant, bias = bool(g("requant")), bool(g("bias"))
    x_uns, y_uns = bool(g("x_unsigned")), bool(g("y_unsigned"))
    zps = [("x_zero_point", x_uns), ("w_zero_point", False)]
    if requant:
        zps.append(("y_zero_point", y_uns))
    for name, uns in zps:
        lo, hi = (0, 255) if uns else (-128, 127)
        if not lo <= g(name) <= hi:
            raise UnitSimError(f"CE {name} must be between {lo} and {hi}"
                               f"{' (unsigned)' if uns else ''}, not {g(name)!r}")
    runs = {"in_addr": (g("in_addr"), shape.input_bytes(il)),
            "w_addr": (g("w_addr"), shape.weight_bytes(ol, il)),
            "out_addr": (g("out_addr"), shape.output_bytes(ol, requant))}
    if bias:
        runs["bias_addr"] = (g("bias_addr"), shape.bias_bytes(ol))
    for name, (addr, n) in runs.items():
        _check_run("CE", name, addr, n, size, il)
    out = runs["out_addr"]
    for name, run in runs.items():
        if name != "out_addr" and _overlap(run, out):
            raise UnitSimError(f"CE out_addr {out[0]:#x} + {out[1]} bytes overlaps operand "
                               f"{name} {run[0]:#x} + {run[1]} bytes")

    def raw(name: str) -> bytes:
        addr, n = runs[name]
        return bytes(spad[addr:addr + n])

    c, m, h, w = shape.c_in, shape.c_out, shape.height, shape.width
    kh, kw = shape.kernel_h, shape.kernel_w
    icb, ocb = _blocks(c, il), _blocks(m, ol)
    x = np.frombuffer(raw("in_addr"), np.uint8 if x_uns else np.int8)
    x = x.reshape(h, w, icb * il)[:, :, :c].transpose(2, 0, 1)
    wt = np.frombuffer(raw("w_addr"), np.int8).reshape(ocb, kh, kw, icb, ol, il)
    # [ob, ky, kx, cb, o, i] -> [ob, o, cb, i, ky, kx]: every stored output channel
    wt = wt.transpose(0, 4, 3, 5, 1, 2).reshape(ocb * ol, icb * il, kh, kw)[:, :c]
    b = np.frombuffer(raw("bias_addr"), "<i4").astype(np.int32) if bias else None
    try:
        y = conv.run_exec(args, x, wt, b)
    except ValueError as e:
        raise UnitSimError(f"CE CONV: {e}") from None
    # y[M', oH, oW] -> HWC with all ocb * ol channels
    el = (np.uint8 if y_uns else np.int8) if requant else np.dtype("<i4")
    data = np.ascontiguousarray(np.asarray(y).transpose(1, 2, 0)).astype(el).tobytes()
    assert len(data) == out[1]
    spad[out[0]:out[0] + out[1]] = data
    return [out]
