"""Cycle model of the activation unit (``hw/afu.py``), checked against the RTL over a sweep.

The unit reads one scratchpad word per cycle (``lanes`` BF16 or ``2 * lanes`` INT8
elements) through a fixed pipeline, so an EXEC takes ``words + OVERHEAD`` cycles from
acceptance until ``busy`` falls, plus ``table words + 2`` for the INT8 functions that read
their 256-byte table first (LEAKY_RELU, SIGMOID, TANH, GELU). DEQUANTIZE (INT8 -> BF16)
and QUANTIZE (BF16 -> INT8) stream ``lanes`` elements per cycle whatever ``dtype`` says
(one word on the BF16 side, half a word on the INT8 side), so they take the cycles of a
BF16 function on ``count`` elements.
"""

from __future__ import annotations

from typing import Any, Mapping

from accelpool.sched.ir import OpType
from accelpool.spec.config import TileConfig, DType, UnitKind

from .formula import FORMULAS, Formula

__all__ = ["cycles", "OVERHEAD", "TABLE_FUNCS", "CONVERSIONS"]

#: Setup, the cycle that ends the run, and the pipeline (ActivationUnit.LATENCY + 1).
OVERHEAD = 6
#: INT8 functions computed through the loaded table.
TABLE_FUNCS = ("leaky_relu", "sigmoid", "tanh", "gelu")
#: Functions converting between INT8 and BF16 (``lanes`` elements per cycle).
CONVERSIONS = ("dequantize", "quantize")
_FUNCS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "add", "mul") + CONVERSIONS


def _key(v) -> str:
    return (v.name if hasattr(v, "name") else str(v)).lower()


def cycles(tile: TileConfig | dict, *, func, dtype, count: int, **_: object) -> int:
    """Cycles from the AFU accepting an EXEC until ``busy`` falls.

    Parameters
    ----------
    tile : TileConfig or mapping
        Supplies ``lanes``.
    func : str or AfuFunc
        ``relu``, ``leaky_relu``, ``sigmoid``, ``tanh``, ``gelu``, ``add``, ``mul``,
        ``dequantize`` or ``quantize``.
    dtype : str, DType or AfuDType
        ``bf16`` or ``int8`` (no effect on ``dequantize`` and ``quantize``).
    count : int
        Elements.
    """
    f, d = _key(func), _key(dtype)
    if f not in _FUNCS:
        raise ValueError(f"Unknown AFU function {f!r}; accepted: {', '.join(_FUNCS)}")
    if d not in ("bf16", "int8"):
        raise ValueError(f"AFU data type must be bf16 or int8, not {d!r}")
    word_bytes = 2 * tile["lanes"]
    narrow = d == "int8" and f not in CONVERSIONS     # a whole word of INT8 per cycle
    words = -(-count * (1 if narrow else 2) // word_bytes)
    table = (max(1, 256 // word_bytes) + 2) if d == "int8" and f in TABLE_FUNCS else 0
    return OVERHEAD + words + table


def afu_arguments(op: Any, shape: Mapping[str, int], tile: Any = None) -> dict[str, Any]:
    """The AFU formula's arguments ``(func, dtype, count)`` for a micro-op; QUANTIZE and
    DEQUANTIZE are AFU functions of their own."""
    func = op.func.value if op.op in (OpType.ACT, OpType.ELTWISE) else op.op.value
    dtype = op.dtype if op.dtype in (DType.BF16, DType.INT8) else DType.INT8
    return {"func": func, "dtype": dtype.key, "count": shape["n"]}


FORMULAS.register(UnitKind.AFU, Formula(cycles, afu_arguments))
