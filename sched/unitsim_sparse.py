"""ISA-level functional models of the sparse units' EXEC: the SMU's SPMM and the GNN's aggregation.

Registered with :func:`accelpool.sched.unitsim.register` for :attr:`UnitKind.SMU` and
:attr:`UnitKind.GNN`. Each model reads its operands from the scratchpad image exactly as
the unit does (layouts of :mod:`accelpool.spec.formats`: CSR ``ptr``/``nz`` arrays, BF16 dense rows
padded to ``ceil(N/L) * L`` elements), computes with the golden arithmetic
(:func:`accelpool.spec.golden.sparse.spmm_bf16`, :func:`accelpool.spec.golden.sparse.gnn_aggregate`, and
:func:`accelpool.spec.golden.numerics.fp32_to_bf16_bits` when ``out_bf16`` is set) and writes only
the real result elements (FP32, or BF16 with ``out_bf16``), leaving pad bytes alone, as
the hardware's byte enables do.

What the hardware would silently get wrong is an error here (:class:`UnitSimError`):

- a byte address that is not a multiple of the word (``2 L`` bytes; the hardware drops
  the low bits), or a region that ends past the scratchpad (the hardware wraps);
- a ``ptr`` array that does not start at 0, decreases, or does not end at the EXEC's
  non-zero count (``nnz`` / ``edges``; the hardware would hang or misread);
- an SMU column index not below ``k`` (B has ``k`` rows);
- a result region overlapping an operand (the passes re-read the operands);
- an argument that is not a field of the unit's struct or does not fit its width.

A command with no rows or no columns does nothing (as on the hardware) and writes nothing.
The GNN's X has as many rows as the largest neighbour index needs: an adjacency block of
``nodes`` rows may index any node (:mod:`accelpool.sched.decompose` tiles by output rows).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np
from amaranth.hdl import Shape

from accelpool.spec.config import TileConfig, UnitKind
from accelpool.spec.formats import (CsrMatrix, pack_result_rows, padded_cols, result_row_bytes,
                                    unpack_csr, unpack_dense_rows, word_bytes)
from accelpool.spec.golden.numerics import fp32_to_bf16_bits
from accelpool.spec.golden.sparse import gnn_aggregate, spmm_bf16
from accelpool.spec.units.gnn import GnnArgs, GnnFunc
from accelpool.spec.units.smu import SmuArgs, SmuFunc

from .unitsim import UnitSimError, register

__all__ = ["gnn_exec", "smu_exec"]


def _fields(unit: str, layout, args: Mapping[str, Any]) -> dict[str, int]:
    """``args`` as plain ints of the struct's fields (an omitted field is 0, as encoded)."""
    names = {n: Shape.cast(f.shape).width for n, f in layout}
    out = {}
    for k, v in args.items():
        if k not in names:
            raise UnitSimError(f"{unit} EXEC has no argument {k!r}; arguments: {', '.join(names)}")
        if isinstance(v, bool):
            v = int(v)
        if not isinstance(v, (int, np.integer)) or not 0 <= v < 1 << names[k]:
            raise UnitSimError(f"{unit} EXEC argument {k} must be an integer in "
                               f"0..{(1 << names[k]) - 1}, not {v!r}")
        out[k] = int(v)
    return {n: out.get(n, 0) for n in names}


def _func(unit: str, enum_cls, func):
    try:
        return enum_cls(func)
    except ValueError:
        raise UnitSimError(f"{unit} EXEC function must be one of "
                           f"{', '.join(m.name for m in enum_cls)}, not {func!r}") from None


class _Spad:
    """Bounds and alignment checks on one unit's scratchpad image."""

    def __init__(self, unit: str, tile: TileConfig, spad: bytearray):
        self.unit = unit
        self.lanes = tile["lanes"]
        self.wb = word_bytes(self.lanes)
        if len(spad) != tile.scratchpad_bytes:
            raise UnitSimError(f"{unit} EXEC on tile {tile.name}: the scratchpad image holds "
                               f"{len(spad)} bytes; the tile has {tile.scratchpad_bytes}")
        self.spad = spad
        self.regions: list[tuple[str, int, int]] = []

    def region(self, what: str, field: str, addr: int, nbytes: int) -> bytes:
        """Check the operand region ``[addr, addr + nbytes)``; return its bytes."""
        if addr % self.wb:
            raise UnitSimError(f"{self.unit} EXEC: {field} = {addr} is not a multiple of the "
                               f"{self.wb}-byte scratchpad word")
        if addr + nbytes > len(self.spad):
            raise UnitSimError(f"{self.unit} EXEC: {what} at {field} = {addr} takes {nbytes} "
                               f"bytes, past the end of the {len(self.spad)}-byte scratchpad")
        self.regions.append((what, addr, nbytes))
        return bytes(self.spad[addr:addr + nbytes])

    def check_out(self, field: str, addr: int, nbytes: int) -> None:
        """Check the result region (after every operand region was taken)."""
        self.region("the result", field, addr, nbytes)
        self.regions.pop()
        for what, a, n in self.regions:
            if n and nbytes and a < addr + nbytes and addr < a + n:
                raise UnitSimError(f"{self.unit} EXEC: the result [{addr}, {addr + nbytes}) "
                                   f"overlaps {what} [{a}, {a + n})")


def _sparse_exec(unit: str, sp: _Spad, *, ptr_field: str, nz_field: str, nnz_field: str,
                 dense_field: str, out_field: str, a: dict[str, int], rows: int, cols: int,
                 k: int | None, compute: Callable[[CsrMatrix, np.ndarray], np.ndarray]
                 ) -> list[tuple[int, int]]:
    """The walk shared by both units: CSR in, dense rows in, padded result rows out.

    ``k`` bounds the column indices (SMU); ``None`` takes X's rows from them (GNN).
    """
    if rows == 0 or cols == 0:
        return []
    nnz = a[nnz_field]
    ptr = np.frombuffer(sp.region("the CSR ptr array", ptr_field, a[ptr_field], 4 * (rows + 1)),
                        dtype="<u4").astype(np.int64)
    if ptr[0] != 0 or (np.diff(ptr) < 0).any() or ptr[-1] != nnz:
        raise UnitSimError(f"{unit} EXEC: the CSR ptr array at {ptr_field} = {a[ptr_field]} "
                           f"must rise from 0 to {nnz_field} = {nnz}; it holds "
                           f"{ptr[0]} .. {ptr[-1]}"
                           f"{' and decreases' if (np.diff(ptr) < 0).any() else ''}")
    nz_raw = sp.region("the CSR entries", nz_field, a[nz_field], 4 * nnz)
    try:
        csr = unpack_csr(ptr.astype("<u4").tobytes(), nz_raw, rows, 1 << 16 if k is None else k)
    except ValueError as e:
        raise UnitSimError(f"{unit} EXEC (k = {k}): {e}") from None
    dense_rows = k if k is not None else (int(csr.indices.max()) + 1 if nnz else 0)
    if k is None:
        csr = CsrMatrix((rows, dense_rows), csr.indptr, csr.indices, csr.values)
    pitch = padded_cols(cols, sp.lanes) * 2
    dense = unpack_dense_rows(sp.region("the dense operand", dense_field, a[dense_field],
                                        dense_rows * pitch), dense_rows, cols, sp.lanes)
    out_bf16 = bool(a["out_bf16"])
    sp.check_out(out_field, a[out_field], rows * result_row_bytes(cols, sp.lanes, out_bf16))
    result = compute(csr, dense.view(ml_dtypes.bfloat16))
    if out_bf16:
        result = fp32_to_bf16_bits(result)
    written = []
    for off, raw in pack_result_rows(result, sp.lanes):
        addr = a[out_field] + off
        sp.spad[addr:addr + len(raw)] = raw
        written.append((addr, len(raw)))
    return written


@register(UnitKind.GNN)
def gnn_exec(tile: TileConfig, func, args: Mapping[str, Any],
             spad: bytearray) -> list[tuple[int, int]]:
    """One GNN EXEC (:class:`accelpool.spec.units.gnn.GnnFunc` ``SUM``/``MEAN``/``MAX``, :data:`accelpool.spec.units.gnn.GnnArgs`)
    on ``spad``, as :func:`accelpool.sched.unitsim.execute` documents."""
    f = _func("GNN", GnnFunc, func)
    a = _fields("GNN", GnnArgs, args)
    sp = _Spad("GNN", tile, spad)
    op = f.name.lower()
    return _sparse_exec("GNN", sp, ptr_field="ptr_addr", nz_field="idx_addr", nnz_field="edges",
                        dense_field="x_addr", out_field="out_addr", a=a, rows=a["nodes"],
                        cols=a["features"], k=None,
                        compute=lambda csr, x: gnn_aggregate(csr, x, op))


@register(UnitKind.SMU)
def smu_exec(tile: TileConfig, func, args: Mapping[str, Any],
             spad: bytearray) -> list[tuple[int, int]]:
    """One SMU EXEC (:class:`accelpool.spec.units.smu.SmuFunc` ``SPMM``, :data:`accelpool.spec.units.smu.SmuArgs`) on ``spad``,
    as :func:`accelpool.sched.unitsim.execute` documents."""
    _func("SMU", SmuFunc, func)
    a = _fields("SMU", SmuArgs, args)
    sp = _Spad("SMU", tile, spad)
    return _sparse_exec("SMU", sp, ptr_field="a_ptr_addr", nz_field="a_nz_addr", nnz_field="nnz",
                        dense_field="b_addr", out_field="c_addr", a=a, rows=a["m"], cols=a["n"],
                        k=a["k"], compute=spmm_bf16)
