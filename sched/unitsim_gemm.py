"""ISA-level functional models of the systolic GEMM units: the DMU and the LPU EXEC ``GEMM``.

Registered with :func:`accelpool.sched.unitsim.register` for :attr:`UnitKind.DMU` and
:attr:`UnitKind.LPU`. Each model reads its operands from the tile's scratchpad image
where the engine's module documents them (:mod:`accelpool.hw.systolic`; the helpers of
:mod:`accelpool.spec.gemm_layout` pack the same layout), computes with the golden arithmetic of
:mod:`accelpool.spec.golden.numerics` and writes exactly the bytes the unit writes. With ``Mp``,
``Np`` the padded M and N, ``e`` the operand bytes, ``WB`` the scratchpad word:

A
    M x K row-major, row pitch ``ceil(K*e/WB)*WB``: ``A[i,k]`` at ``a_addr + i*pitch + k*e``
    (the unit reads rows i < M only, whole words).
B
    K x Np row-major: ``B[k,j]`` at ``b_addr + (k*Np + j)*e``.
C
    With ``accumulate``: Mp x Np row-major, 4-byte elements (FP32 on the DMU, INT32 on
    the LPU); the unit reads all Mp rows.
D
    Mp x Np row-major of the output element (DMU: FP32, or BF16 with ``out_bf16``; LPU:
    INT32, or INT8 with ``requant``); only the M x N real elements are written (the
    unit's byte enables), so the model returns one run per row (merged when N = Np).

DMU: ``D = bf16_gemm(A, B, C or None)``, with ``out_bf16`` then ``fp32_to_bf16``.
LPU: ``acc = int8_gemm(A, B, C or None)``; ``D = acc``, or with ``requant``
``requantize(acc, multiplier, shift, zero_point)``.

A command with M, N or K equal to 0 reads and writes nothing (as the unit). Arguments the
unit cannot run correctly raise :class:`accelpool.sched.unitsim.UnitSimError` naming the field:
byte addresses that are not word-aligned (the unit drops the low bits), operands or the
result leaving the scratchpad (the unit's addresses would wrap), and a D region that
overlaps A or B, or overlaps C other than exactly in place (``d_addr == c_addr``, which the
unit supports: each block's C rows are read before its D rows are written).
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_dtypes
import numpy as np

from accelpool.sched.unitsim import (UnitSimError, register, check_run as _check_run,
                                     overlap as _overlap, spad_size as _spad_size)
from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.gemm_layout import a_pitch, systolic_word_bytes
from accelpool.spec.golden import numerics as nx
from accelpool.spec.units.dmu import DmuFunc
from accelpool.spec.units.lpu import LpuFunc

__all__ = ["dmu_exec", "lpu_exec"]


def _ceil_to(x: int, q: int) -> int:
    return -(-x // q) * q


def _func(enum_type, value, unit: str):
    try:
        f = value if isinstance(value, enum_type) else enum_type(value)
    except ValueError:
        f = None
    if f is not enum_type.GEMM:
        raise UnitSimError(f"{unit} EXEC function must be GEMM={enum_type.GEMM.value}, "
                           f"not {value!r}")
    return f


def _gemm(unit: str, tile: TileConfig, args: Mapping[str, Any], spad: bytearray,
          in_dtype, acc_dtype, out_dtype, compute) -> list[tuple[int, int]]:
    """Shared body: checks, operand reads, ``compute(a, b, c) -> D [M, N]``, D writes."""
    size = _spad_size(tile, spad)
    rows, cols = tile["rows"], tile["cols"]
    e = np.dtype(in_dtype).itemsize
    wb = systolic_word_bytes(rows, cols, e)
    m, n, k = (int(args[f]) for f in ("m", "n", "k"))
    acc = bool(args.get("accumulate", 0))
    addr = {f: int(args[f]) for f in ("a_addr", "b_addr", "c_addr", "d_addr")}
    if m == 0 or n == 0 or k == 0:
        return []
    mp, np_ = _ceil_to(m, rows), _ceil_to(n, cols)
    pitch = a_pitch(k, e, wb)
    o = np.dtype(out_dtype).itemsize
    regions = {"a_addr": (addr["a_addr"], m * pitch), "b_addr": (addr["b_addr"], k * np_ * e),
               "d_addr": (addr["d_addr"], (m - 1) * np_ * o + n * o)}
    if acc:
        regions["c_addr"] = (addr["c_addr"], mp * np_ * 4)
    for field, (at, nbytes) in regions.items():
        _check_run(unit, field, at, nbytes, size, wb)
    dreg = regions["d_addr"]
    for field in ("a_addr", "b_addr", "c_addr"):
        if field not in regions or (field == "c_addr" and addr["c_addr"] == addr["d_addr"]):
            continue
        if _overlap(dreg, regions[field]):
            raise UnitSimError(f"{unit} D ({addr['d_addr']:#x} + {dreg[1]} bytes) overlaps "
                               f"the operand at {field} {addr[field]:#x}; only d_addr == "
                               f"c_addr (in place) is allowed")

    buf = np.frombuffer(spad, np.uint8)
    at = addr["a_addr"]
    a = buf[at:at + m * pitch].reshape(m, pitch)[:, :k * e].copy().view(in_dtype)
    at = addr["b_addr"]
    b = buf[at:at + k * np_ * e].copy().view(in_dtype).reshape(k, np_)[:, :n]
    c = None
    if acc:
        at = addr["c_addr"]
        c = buf[at:at + mp * np_ * 4].copy().view(acc_dtype).reshape(mp, np_)[:m, :n].copy()
    out = np.ascontiguousarray(compute(np.ascontiguousarray(a), np.ascontiguousarray(b), c))

    runs: list[tuple[int, int]] = []
    for i in range(m):
        at = addr["d_addr"] + i * np_ * o
        spad[at:at + n * o] = out[i].tobytes()
        if runs and runs[-1][0] + runs[-1][1] == at:
            runs[-1] = (runs[-1][0], runs[-1][1] + n * o)
        else:
            runs.append((at, n * o))
    return runs


@register(UnitKind.DMU)
def dmu_exec(tile: TileConfig, func: Any, args: Mapping[str, Any],
             spad: bytearray) -> list[tuple[int, int]]:
    """One DMU EXEC (``GEMM``) on ``spad`` (see the module docstring)."""
    _func(DmuFunc, func, "DMU")
    out_bf16 = bool(args.get("out_bf16", 0))

    def compute(a, b, c):
        d = nx.bf16_gemm(a, b, c)
        return nx.fp32_to_bf16(d) if out_bf16 else d

    return _gemm("DMU", tile, args, spad, ml_dtypes.bfloat16, np.float32,
                 ml_dtypes.bfloat16 if out_bf16 else np.float32, compute)


@register(UnitKind.LPU)
def lpu_exec(tile: TileConfig, func: Any, args: Mapping[str, Any],
             spad: bytearray) -> list[tuple[int, int]]:
    """One LPU EXEC (``GEMM``) on ``spad`` (see the module docstring)."""
    _func(LpuFunc, func, "LPU")
    requant = bool(args.get("requant", 0))
    if requant:
        mult, shift, zp = (int(args.get(f, 0)) for f in ("multiplier", "shift", "zero_point"))
        if zp > 127:             # an 8-bit field given as its unsigned encoding
            zp -= 256
        try:
            nx.requantize(np.zeros(1, np.int32), mult, shift, zp)
        except ValueError as err:
            raise UnitSimError(f"LPU {err}") from None

    def compute(a, b, c):
        acc = nx.int8_gemm(a, b, c)
        return nx.requantize(acc, mult, shift, zp) if requant else acc

    return _gemm("LPU", tile, args, spad, np.int8, np.int32,
                 np.int8 if requant else np.int32, compute)
