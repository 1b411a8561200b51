"""Decomposition: operator-level micro-ops tiled to the pool's units, then analysed.

Passes (each a :class:`~accelpool.sched.ir.Pass`, run by :func:`decompose` in a verifying
:class:`~accelpool.sched.ir.Pipeline`):

:class:`TileOperators`
    Rebuilds the graph with every operator split into micro-ops sized for the unit that
    will run it (tile sizes from the pool config, :class:`TilePlan`):

    - GEMM: output blocks ``tm x tn`` (the array's rows x cols: DMU for BF16, LPU for
      INT8) and reduction steps of ``tk`` (``max_k_tile``, and what fits in
      ``spad_fraction`` of the scratchpad). The K steps of one output block form an
      **accumulation chain** (see :mod:`accelpool.sched.ir`): step k adds into step k-1's FP32/INT32
      partial sum, step 0 starts from the bias (or +0), the last step rounds/requantises
      into the result. A BF16 tile whose constant operand's block has a measured zero
      fraction >= ``sparse_threshold`` becomes SPMM (if the pool has an SMU), so one
      layer can yield dense and sparse tiles.
    - Sparse weights are computed transposed. The SMU's sparse operand is its left one
      (``C = A_sparse @ B``), but a layer's weight is B. Every output column block with a
      sparse K step is computed as ``C^T[n-block, :] = B[:, n-block]^T @ A^T``: ``B^T`` is
      transposed at compile time into a constant ``<B>.T`` (the transposed column blocks
      only, one after the other), ``A^T`` is made once per layer by a TRANSPOSE LAYOUT
      micro-op ``<op>.aT`` (memory tile) into ``<op>.aT``, the block's tiles (all its K
      steps, GEMM or SPMM with ``sparse_operand`` 0, ``attrs["transposed"]``; bias and
      partial sums transposed likewise, ``c_broadcast`` row <-> col) write ``<op>.yT``, and
      one TRANSPOSE ``<op>.yT[<i>]`` per run of adjacent transposed blocks writes it back
      into the result's columns. Bit-exact with the untransposed product: each output
      element takes the same products (a BF16 product is commutative, exact in FP32 but
      for overflow/FTZ, which are symmetric too) added in the same ascending-k order, the
      zeros of the same weight skipped; the DMU can still run such a tile densely (a
      constant A).
    - CONV (INT8, CE): output-channel blocks of ``oc_lanes``, output-row blocks that fit
      the scratchpad, input-channel steps of ``ic_lanes`` (times what ``max_k_tile``
      allows) chained like GEMM; each tile reads only the input rows it needs and carries
      its own top/bottom padding.
    - ACT, ELTWISE, QUANTIZE, DEQUANTIZE: vectors of at most ``vector`` elements (a
      multiple of the AFU lanes that fits the scratchpad) over a 2-D view ``[rows, last
      dim]`` of the tensors.
    - AGGREGATE: output-row blocks x feature blocks; each reads its rows of the adjacency.
    - LAYOUT (im2col, transpose, copy): kept whole (im2col: one per image).
:class:`ReorderChannelsLast`
    Images a CONV reads or writes are kept channels-last in memory (the convolution
    engine's layout, :func:`accelpool.sched.ir.channels_last_images`), so a reshape of one into
    anything but an image is not a row-major view of memory. A micro-op reading such a
    reshape then reads a LAYOUT ``copy`` of it instead (the memory tile moves it to
    row-major), except an INT8 GEMM reading the whole flatten as its A row: codegen feeds
    that in stored order with the weight rows permuted (integer sums are order-free).
:class:`AnnotateCosts`
    Analysis: measured sparsity of constant operands, FLOPs, bytes in/out per micro-op.
:class:`CheckPoolSupport`
    Every micro-op has a unit kind in the pool that takes its data type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from accelpool.spec.config import DType, PoolConfig, load_config
from accelpool.spec.unit import unit_spec

from . import models
from .frontend import FrontendError, check_pool_support, import_model
from .ir import (ACC_DTYPE, AggFunc, Buffer, BufferKind, Graph, IRError, LayoutFunc, MicroOp,
                 OpType, Pass, Pipeline, TensorRef, channels_last_images, image_dims, sanitize)

__all__ = ["DecomposeOptions", "TilePlan", "TileOperators", "ReorderChannelsLast",
           "AnnotateCosts", "CheckPoolSupport", "decompose", "compile_model",
           "estimate_micro_ops"]


@dataclass(frozen=True)
class DecomposeOptions:
    """Knobs of the decomposition.

    Attributes
    ----------
    sparse_threshold : float
        A BF16 GEMM tile whose constant operand block has at least this fraction of
        zeros becomes an SPMM micro-op.
    max_k_tile : int
        Longest reduction (K, or IC*KH*KW for convolutions) in one micro-op; longer
        reductions become accumulation chains.
    spad_fraction : float
        Fraction of a scratchpad one micro-op's operands and result may occupy (the
        rest is for double buffering).
    max_vector : int
        Longest vector of an element-wise micro-op.
    max_micro_ops : int
        Most micro-ops a decomposition may yield; a graph whose tiling would yield more is
        refused before any tile is made (:func:`estimate_micro_ops`).
    """

    sparse_threshold: float = 0.5
    max_k_tile: int = 64
    spad_fraction: float = 0.5
    max_vector: int = 4096
    # The built-in models yield at most about a hundred micro-ops; a program of 50,000
    # micro-ops still schedules in seconds, while a 1024^3 MatMul (262,144 micro-ops)
    # schedules for minutes and does not fit the default memory tile anyway. Larger
    # decompositions (benchmarks) pass a larger budget explicitly.
    max_micro_ops: int = 50_000

    def __post_init__(self):
        if not 0 < self.sparse_threshold <= 1:
            raise ValueError(f"sparse_threshold must be in (0, 1], not {self.sparse_threshold!r}")
        if self.max_k_tile < 1:
            raise ValueError(f"max_k_tile must be a positive integer, not {self.max_k_tile!r}")
        if not 0 < self.spad_fraction <= 1:
            raise ValueError(f"spad_fraction must be in (0, 1], not {self.spad_fraction!r}")
        if self.max_vector < 1:
            raise ValueError(f"max_vector must be a positive integer, not {self.max_vector!r}")
        if self.max_micro_ops < 1:
            raise ValueError(f"max_micro_ops must be a positive integer, not "
                             f"{self.max_micro_ops!r}")


def _first(pool: PoolConfig, op: OpType, dtype: DType):
    """The first tile of ``pool`` whose unit is built for ``op`` on ``dtype`` (its
    declaration's ``runs``), or None."""
    pair = (op.value, dtype.key)
    return next((t for t in pool.units if pair in unit_spec(t.kind).runs), None)


@dataclass(frozen=True)
class TilePlan:
    """Tile sizes read from the pool config: of the first unit built for each operation
    (GEMM on BF16 and on INT8, CONV, activations, aggregation); defaults if absent. The
    fields are named after the built-in units that run them."""

    options: DecomposeOptions
    dmu_rows: int = 8
    dmu_cols: int = 8
    dmu_spad: int = 65536
    lpu_rows: int = 8
    lpu_cols: int = 16
    lpu_spad: int = 65536
    ce_oc: int = 8
    ce_ic: int = 8
    ce_spad: int = 65536
    afu_lanes: int = 8
    afu_spad: int = 16384
    gnn_lanes: int = 8
    gnn_spad: int = 65536
    has_smu: bool = True
    flit_bytes: int = 8

    @classmethod
    def from_pool(cls, pool: PoolConfig, options: DecomposeOptions = DecomposeOptions()) -> "TilePlan":
        has_smu = _first(pool, OpType.SPMM, DType.BF16) is not None
        kw: dict = {"options": options, "has_smu": has_smu,
                    "flit_bytes": pool.mesh.flit_bits // 8}
        if (t := _first(pool, OpType.GEMM, DType.BF16)) is not None:
            kw.update(dmu_rows=t["rows"], dmu_cols=t["cols"], dmu_spad=t.scratchpad_bytes)
        if (t := _first(pool, OpType.GEMM, DType.INT8)) is not None:
            kw.update(lpu_rows=t["rows"], lpu_cols=t["cols"], lpu_spad=t.scratchpad_bytes)
        if (t := _first(pool, OpType.CONV, DType.INT8)) is not None:
            kw.update(ce_oc=t["oc_lanes"], ce_ic=t["ic_lanes"], ce_spad=t.scratchpad_bytes)
        if (t := _first(pool, OpType.ACT, DType.BF16)) is not None:
            kw.update(afu_lanes=t["lanes"], afu_spad=t.scratchpad_bytes)
        if (t := _first(pool, OpType.AGGREGATE, DType.BF16)) is not None:
            kw.update(gnn_lanes=t["lanes"], gnn_spad=t.scratchpad_bytes)
        return cls(**kw)

    def gemm_tile(self, dtype: DType, m: int, k: int, n: int) -> tuple[int, int, int]:
        """(tm, tk, tn) for a GEMM of operand type ``dtype``."""
        if dtype is DType.INT8:
            rows, cols, spad = self.lpu_rows, self.lpu_cols, self.lpu_spad
        else:
            rows, cols, spad = self.dmu_rows, self.dmu_cols, self.dmu_spad
        tm, tn = min(m, rows), min(n, cols)
        budget = spad * self.options.spad_fraction
        acc = ACC_DTYPE[dtype].bytes
        fit_k = int((budget - 2 * acc * tm * tn) // (dtype.bytes * (tm + tn)))
        tk = max(1, min(k, self.options.max_k_tile, fit_k))
        return tm, tk, tn

    def conv_tile(self, ic: int, kh: int, kw: int, oc: int, oh: int, ow: int, w: int,
                  stride: int) -> tuple[int, int, int]:
        """(toc, tic, toh) for an INT8 convolution on the CE."""
        toc = min(oc, self.ce_oc)
        steps = max(1, self.options.max_k_tile // (self.ce_ic * kh * kw))
        tic = min(ic, self.ce_ic * steps)
        budget = self.ce_spad * self.options.spad_fraction
        toh = oh
        while toh > 1:
            rows_in = (toh - 1) * stride + kh
            need = tic * rows_in * w + toc * tic * kh * kw + 2 * 4 * toc * toh * ow
            if need <= budget:
                break
            toh = (toh + 1) // 2
        return toc, tic, toh

    def vector(self, bytes_per_element: int) -> int:
        """Elements per element-wise micro-op: a multiple of the AFU lanes that fits."""
        fit = int(self.afu_spad * self.options.spad_fraction // bytes_per_element)
        v = min(self.options.max_vector, fit)
        return max(self.afu_lanes, v - v % self.afu_lanes)

    def aggregate_tile(self, nodes: int, feats: int, dtype: DType) -> tuple[int, int]:
        """(rows, features) per aggregation micro-op."""
        tf = min(feats, 8 * self.gnn_lanes)
        budget = self.gnn_spad * self.options.spad_fraction
        # a block of adjacency rows (dense bytes bound), the features column block, the result
        per_row = nodes * dtype.bytes + tf * dtype.bytes
        fixed = nodes * tf * dtype.bytes
        tr = max(1, min(nodes, int((budget - fixed) // per_row) if budget > fixed else 1))
        return tr, tf


# -- helpers for boxes ------------------------------------------------------------------

def _sub(ref: TensorRef, starts: tuple[int, ...], sizes: tuple[int, ...]) -> TensorRef:
    """A sub-box of ``ref`` over its last ``len(starts)`` dimensions."""
    off, shape = ref.offset, ref.shape
    if len(off) == 2 and len(starts) == 2:  # the common case, kept fast
        return TensorRef(ref.buffer, (off[0] + starts[0], off[1] + starts[1]), sizes)
    lead = len(shape) - len(starts)
    if lead < 0:
        raise ValueError(f"{ref} has fewer than {len(starts)} dimensions")
    return TensorRef(ref.buffer, off[:lead] + tuple(o + s for o, s in zip(off[lead:], starts)),
                     shape[:lead] + tuple(sizes))


def _blocks(total: int, step: int) -> list[tuple[int, int]]:
    return [(s, min(step, total - s)) for s in range(0, total, step)]


def _const_box(g: Graph, ref: TensorRef) -> np.ndarray | None:
    b = g.buffers[ref.buffer]
    if b.kind is not BufferKind.CONST:
        return None
    return b.data[ref.slices]


# -- tiling -----------------------------------------------------------------------------

_Tiler = Callable[[Graph, MicroOp, TilePlan], None]
_TILERS: dict[OpType, _Tiler] = {}


def _tiles(*ops: OpType) -> Callable[[_Tiler], _Tiler]:
    def deco(fn: _Tiler) -> _Tiler:
        for o in ops:
            _TILERS[o] = fn
        return fn
    return deco


def _tile(op: MicroOp, tid: str, ins, out: TensorRef, shape: dict, attrs: Mapping,
          kind: OpType | None = None) -> MicroOp:
    """A tile of ``op``: same function, data type and source, its own boxes and shape."""
    return MicroOp(tid, kind or op.op, op.dtype, tuple(ins), (out,), op.func, shape, attrs,
                   source=op.source, source_op=op.source_op)


def _runs(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Blocks ``(start, size)`` in ascending order merged into maximal contiguous runs."""
    out: list[list[int]] = []
    for s0, n in blocks:
        if out and out[-1][0] + out[-1][1] == s0:
            out[-1][1] += n
        else:
            out.append([s0, n])
    return [(a, b) for a, b in out]


def _transposed(g: Graph, op: MicroOp, ref: TensorRef, runs: list[tuple[int, int]],
                what: str) -> str:
    """A buffer holding ``ref[:, run]^T`` for the column runs of the 2-D box ``ref``, one
    after the other (``[sum of run sizes, rows]``); return its name.

    A constant is transposed now, into a new constant ``<buffer>.T``; anything else by one
    TRANSPOSE LAYOUT micro-op per run (``<op>.<what>T[<i>]``, on the memory tile) into
    ``<op>.<what>T``.
    """
    src = g.buffers[ref.buffer]
    rows = ref.last_dims(2)[0]
    width = sum(n for _, n in runs)
    if src.kind is BufferKind.CONST:
        mat = np.asarray(_const_box(g, ref)).reshape(ref.last_dims(2))
        data = np.ascontiguousarray(np.concatenate([mat[:, c0:c0 + n] for c0, n in runs],
                                                   axis=1).T)
        return g.add_buffer(Buffer(g.unique_name(f"{src.name}.T"), (width, rows), src.dtype,
                                   BufferKind.CONST, data=data, quant=src.quant)).name
    dt = g.base(ref.buffer).dtype
    buf = g.add_buffer(Buffer(g.unique_name(f"{sanitize(op.id)}.{what}T"), (width, rows), dt))
    r0 = 0
    for i, (c0, n) in enumerate(runs):
        tid = f"{op.id}.{what}T" + (f"{i}" if len(runs) > 1 else "")
        g.add_op(MicroOp(tid, OpType.LAYOUT, dt, (_sub(ref, (0, c0), (rows, n)),),
                         (TensorRef(buf.name, (r0, 0), (n, rows)),), LayoutFunc.TRANSPOSE,
                         {"n": rows * n}, source=op.source, source_op=op.source_op))
        r0 += n
    return buf.name


def _sparse_blocks(g: Graph, a: TensorRef, b: TensorRef, sparse_operand: int, mblocks,
                   nblocks, ksteps, threshold: float) -> dict[tuple[int, int], bool]:
    """Which blocks of the constant operand are sparse, by (N block if B is the constant,
    M block if A, K step): a zero fraction of at least ``threshold``."""
    out = {}
    for i, (o0, os_) in enumerate(nblocks if sparse_operand == 1 else mblocks):
        for j, (k0, ks) in enumerate(ksteps):
            box = _const_box(g, _sub(b, (k0, o0), (ks, os_)) if sparse_operand == 1
                             else _sub(a, (o0, k0), (os_, ks)))
            out[(i, j)] = 1 - np.count_nonzero(box) / box.size >= threshold
    return out


def _transpose_back(g: Graph, op: MicroOp, yT: Buffer, y: TensorRef,
                    runs: list[tuple[int, int]], m: int) -> None:
    """LAYOUT micro-ops moving the transposed result ``yT`` into ``y``'s column runs."""
    r0 = 0
    for i, (c0, cs) in enumerate(runs):
        tid = f"{op.id}.yT" + (f"{i}" if len(runs) > 1 else "")
        g.add_op(MicroOp(tid, OpType.LAYOUT, g.buffers[y.buffer].dtype,
                         (TensorRef(yT.name, (r0, 0), (cs, m)),), (_sub(y, (0, c0), (m, cs)),),
                         LayoutFunc.TRANSPOSE, {"n": cs * m}, source=op.source,
                         source_op=op.source_op))
        r0 += cs


@_tiles(OpType.GEMM, OpType.SPMM)
def _tile_gemm(g: Graph, op: MicroOp, plan: TilePlan) -> None:
    m, k, n = op.shape["M"], op.shape["K"], op.shape["N"]
    a, b = op.inputs[0], op.inputs[1]
    c = op.inputs[2] if len(op.inputs) > 2 else None
    y = op.outputs[0]
    tm, tk, tn = plan.gemm_tile(op.dtype, m, k, n)
    ksteps, mblocks, nblocks = _blocks(k, tk), _blocks(m, tm), _blocks(n, tn)
    acc = ACC_DTYPE[op.dtype]
    stem = sanitize(op.id)
    a_const = g.buffers[a.buffer].kind is BufferKind.CONST
    b_const = g.buffers[b.buffer].kind is BufferKind.CONST
    sparse_operand = 1 if b_const else (0 if a_const else None)
    may_sparse = (op.dtype is DType.BF16 and plan.has_smu and sparse_operand is not None)
    bc = op.attrs.get("c_broadcast")
    base_attrs = {k_: v for k_, v in op.attrs.items() if k_ not in ("c_broadcast", "requant")}
    sparse_tile = (_sparse_blocks(g, a, b, sparse_operand, mblocks, nblocks, ksteps,
                                  plan.options.sparse_threshold) if may_sparse else {})
    # A sparse weight B is the SMU's A only in the transposed product C^T = B^T A^T: every
    # output column block with a sparse step is computed transposed (all its K steps, so a
    # chain keeps one orientation) into yT, and transposed back into y at the end.
    tcols = [ni for ni in range(len(nblocks))
             if sparse_operand == 1 and any(sparse_tile.get((ni, j)) for j in range(len(ksteps)))]
    trow: dict[int, int] = {}              # transposed N block -> its first row of yT
    for ni in tcols:
        trow[ni] = sum(nblocks[i][1] for i in tcols if i < ni)
    if tcols:
        runs = _runs([nblocks[ni] for ni in tcols])
        nt = sum(s for _, s in runs)
        bT = _transposed(g, op, b, runs, "b")                       # [nt, K], a constant
        aT = _transposed(g, op, a, [(0, k)], "a")                   # [K, M]
        cT = None
        if c is not None:                  # the bias / accumulator, transposed likewise
            cT = _transposed(g, op, c, [(0, 1)] if bc == "col" else runs, "c")
        yT = g.add_buffer(Buffer(g.unique_name(f"{stem}.yT"), (nt, m), g.buffers[y.buffer].dtype))
        psumsT = [g.add_buffer(Buffer(g.unique_name(f"{stem}.psumT{j}"), (nt, m), acc))
                  for j in range(len(ksteps) - 1)]
    psums = [g.add_buffer(Buffer(g.unique_name(f"{stem}.psum{j}"), (m, n), acc))
             for j in range(len(ksteps) - 1)] if len(tcols) < len(nblocks) else []
    for mi, (m0, ms) in enumerate(mblocks):
        for ni, (n0, ns) in enumerate(nblocks):
            chain = f"{op.id}.m{mi}n{ni}"
            tr = ni in trow
            for j, (k0, ks) in enumerate(ksteps):
                attrs = dict(base_attrs)
                last = j == len(ksteps) - 1
                if tr:                     # C^T[n, m] = B^T[n, k] @ A^T[k, m]
                    r0 = trow[ni]
                    ins = [TensorRef(bT, (r0, k0), (ns, ks)), TensorRef(aT, (k0, m0), (ks, ms))]
                    if j == 0 and c is not None:
                        if bc == "row":
                            ins.append(TensorRef(cT, (r0, 0), (ns, 1)))
                            attrs["c_broadcast"] = "col"
                        elif bc == "col":
                            ins.append(TensorRef(cT, (0, m0), (1, ms)))
                            attrs["c_broadcast"] = "row"
                        else:
                            ins.append(TensorRef(cT, (r0, m0), (ns, ms)))
                    elif j > 0:
                        ins.append(TensorRef(psumsT[j - 1].name, (r0, m0), (ns, ms)))
                    out = TensorRef(yT.name if last else psumsT[j].name, (r0, m0), (ns, ms))
                    shape = {"M": ns, "K": ks, "N": ms}
                    attrs["transposed"] = True
                else:
                    ins = [_sub(a, (m0, k0), (ms, ks)), _sub(b, (k0, n0), (ks, ns))]
                    if j == 0 and c is not None:
                        if bc == "row":
                            ins.append(_sub(c, (0, n0), (1, ns)))
                        elif bc == "col":
                            ins.append(_sub(c, (m0, 0), (ms, 1)))
                        else:
                            ins.append(_sub(c, (m0, n0), (ms, ns)))
                        if bc:
                            attrs["c_broadcast"] = bc
                    elif j > 0:
                        ins.append(TensorRef(psums[j - 1].name, (m0, n0), (ms, ns)))
                    out = _sub(y, (m0, n0), (ms, ns)) if last else \
                        TensorRef(psums[j].name, (m0, n0), (ms, ns))
                    shape = {"M": ms, "K": ks, "N": ns}
                if last and "requant" in op.attrs:
                    attrs["requant"] = op.attrs["requant"]
                if len(ksteps) > 1:
                    attrs.update(chain=chain, k_step=j, k_steps=len(ksteps))
                kind = OpType.GEMM
                if sparse_tile.get((ni if sparse_operand == 1 else mi, j)):
                    kind = OpType.SPMM
                    attrs["sparse_operand"] = 0 if tr else sparse_operand
                tid = f"{op.id}.m{mi}n{ni}k{j}" if len(ksteps) > 1 else f"{op.id}.m{mi}n{ni}"
                g.add_op(_tile(op, tid, ins, out, shape, attrs, kind))
    if tcols:                              # yT back into the result's columns
        _transpose_back(g, op, yT, y, runs, m)


@_tiles(OpType.CONV)
def _tile_conv(g: Graph, op: MicroOp, plan: TilePlan) -> None:
    s = op.shape
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    c = op.inputs[2] if len(op.inputs) > 2 else None
    (sh, sw), (pt, pl, pb, pr) = op.attrs["strides"], op.attrs["pads"]
    toc, tic, toh = plan.conv_tile(s["IC"], s["KH"], s["KW"], s["OC"], s["OH"], s["OW"], s["W"], sh)
    icsteps = _blocks(s["IC"], tic)
    stem = sanitize(op.id)
    acc = ACC_DTYPE[op.dtype]
    psums = [g.add_buffer(Buffer(g.unique_name(f"{stem}.psum{j}"), (s["OC"], s["OH"], s["OW"]), acc))
             for j in range(len(icsteps) - 1)]
    base_attrs = {k_: v for k_, v in op.attrs.items() if k_ not in ("requant", "pads")}
    for oi, (oc0, ocs) in enumerate(_blocks(s["OC"], toc)):
        for ri, (oh0, ohs) in enumerate(_blocks(s["OH"], toh)):
            first = oh0 * sh - pt
            last_row = (oh0 + ohs - 1) * sh - pt + s["KH"] - 1
            lo, hi = max(first, 0), min(last_row, s["H"] - 1)
            tpads = (max(0, -first), pl, max(0, last_row - (s["H"] - 1)), pr)
            chain = f"{op.id}.o{oi}r{ri}"
            for j, (ic0, ics) in enumerate(icsteps):
                ins = [_sub(x, (ic0, lo, 0), (ics, hi - lo + 1, s["W"])),
                       TensorRef(w.buffer, (oc0, ic0, 0, 0), (ocs, ics, s["KH"], s["KW"]))]
                if j == 0 and c is not None:
                    ins.append(_sub(c, (oc0,), (ocs,)))
                elif j > 0:
                    ins.append(TensorRef(psums[j - 1].name, (oc0, oh0, 0), (ocs, ohs, s["OW"])))
                lastj = j == len(icsteps) - 1
                out = _sub(y, (oc0, oh0, 0), (ocs, ohs, s["OW"])) if lastj else \
                    TensorRef(psums[j].name, (oc0, oh0, 0), (ocs, ohs, s["OW"]))
                attrs = dict(base_attrs, pads=tpads)
                if lastj and "requant" in op.attrs:
                    attrs["requant"] = op.attrs["requant"]
                if len(icsteps) > 1:
                    attrs.update(chain=chain, k_step=j, k_steps=len(icsteps))
                tid = f"{op.id}.o{oi}r{ri}" + (f"k{j}" if len(icsteps) > 1 else "")
                g.add_op(_tile(op, tid, ins, out,
                                {"IC": ics, "H": hi - lo + 1, "W": s["W"], "OC": ocs,
                                 "KH": s["KH"], "KW": s["KW"], "OH": ohs, "OW": s["OW"]}, attrs))


def _view2d(g: Graph, ref: TensorRef, cols: int | None = None) -> TensorRef:
    """A whole-buffer ref as a ref to a ``[rows, cols]`` view of its buffer (``cols``: the
    last dimension unless given)."""
    b = g.buffers[ref.buffer]
    if ref.shape != b.shape:
        raise ValueError(f"element-wise operand {ref} must cover its whole buffer")
    if cols is None or cols == (b.shape[-1] if b.shape else 1):
        if len(b.shape) == 2:
            return ref
        shape = (math.prod(b.shape[:-1]) if len(b.shape) > 1 else 1, b.shape[-1])
    else:
        shape = (b.size // cols, cols)
    name = f"{b.name}.view{shape[0]}x{shape[1]}"
    if name not in g.buffers:
        g.add_buffer(Buffer(name, shape, b.dtype, alias_of=b.name, quant=b.quant))
    return TensorRef(name, (0, 0), shape)


def _vector_cols(g: Graph, op: MicroOp, fb: int) -> int | None:
    """The row length of an element-wise micro-op's 2-D views: the last dimension, or, when
    its rows are not whole flits of every operand, the trailing dimensions merged until
    they are (a 14 x 14 map's rows of 28 bytes become rows of 196 elements), so the rows
    move as whole flits. None (the last dimension) when an operand broadcasts or nothing
    merges to whole flits."""
    shape = tuple(g.buffers[op.outputs[0].buffer].shape)
    refs = [r for r in op.inputs if r.size > 1] + list(op.outputs)
    if len(shape) < 2 or any(tuple(g.buffers[r.buffer].shape) != shape
                             or tuple(r.shape) != shape for r in refs):
        return None
    sizes = {g.buffers[r.buffer].dtype.bytes for r in refs}
    for k in range(1, len(shape) + 1):
        cols = math.prod(shape[-k:])
        if all(cols * e % fb == 0 for e in sizes):
            return None if k == 1 else cols
    return None


@_tiles(OpType.ACT, OpType.ELTWISE, OpType.QUANTIZE, OpType.DEQUANTIZE)
def _tile_vector(g: Graph, op: MicroOp, plan: TilePlan) -> None:
    vcols = _vector_cols(g, op, plan.flit_bytes)
    y = _view2d(g, op.outputs[0], vcols)
    rows, cols = y.shape
    per_elem = sum(g.buffers[r.buffer].dtype.bytes for r in op.inputs + op.outputs)
    vec = plan.vector(per_elem)
    tc = min(cols, vec)
    tr = max(1, vec // tc)
    ins2 = []
    for r in op.inputs:
        if r.size == 1:
            ins2.append(("scalar", r))
        elif r.shape == op.outputs[0].shape or r.size == y.size:
            ins2.append(("full", _view2d(g, r, vcols)))
        else:  # a vector broadcast along the last dimension
            ins2.append(("row", r))
    for ri, (r0, rs) in enumerate(_blocks(rows, tr)):
        for ci, (c0, cs) in enumerate(_blocks(cols, tc)):
            ins = []
            for how, r in ins2:
                if how == "scalar":
                    ins.append(r)
                elif how == "full":
                    ins.append(_sub(r, (r0, c0), (rs, cs)))
                else:
                    ins.append(_sub(r, (c0,), (cs,)))
            g.add_op(_tile(op, f"{op.id}.v{ri}_{ci}", ins, _sub(y, (r0, c0), (rs, cs)),
                           {"n": rs * cs}, op.attrs))


@_tiles(OpType.AGGREGATE)
def _tile_aggregate(g: Graph, op: MicroOp, plan: TilePlan) -> None:
    adj, x, y = op.inputs[0], op.inputs[1], op.outputs[0]
    nodes, feats = op.shape["nodes"], op.shape["features"]
    data = g.buffers[adj.buffer].data[adj.slices]
    tr, tf = plan.aggregate_tile(nodes, feats, op.dtype)
    for ri, (r0, rs) in enumerate(_blocks(nodes, tr)):
        edges = int(np.count_nonzero(data[r0:r0 + rs]))
        for fi, (f0, fs) in enumerate(_blocks(feats, tf)):
            g.add_op(_tile(op, f"{op.id}.r{ri}f{fi}",
                           [_sub(adj, (r0, 0), (rs, adj.shape[1])),
                            _sub(x, (0, f0), (x.shape[-2], fs))], _sub(y, (r0, f0), (rs, fs)),
                           {"nodes": rs, "edges": edges, "features": fs}, op.attrs))


@_tiles(OpType.LAYOUT)
def _keep(g: Graph, op: MicroOp, plan: TilePlan) -> None:
    g.add_op(_tile(op, op.id, op.inputs, op.outputs[0], dict(op.shape), op.attrs))


class TileOperators(Pass):
    """Split every micro-op into tiles sized for its unit (module docstring)."""

    name = "tile-operators"

    def __init__(self, plan: TilePlan):
        self.plan = plan

    def run(self, graph: Graph) -> Graph:
        g = graph.copy_structure()
        g.outputs = list(graph.outputs)
        for op in graph.ops:
            _TILERS[op.op](g, op, self.plan)
        return g

    def requires(self, graph: Graph) -> None:
        for op in graph.ops:
            if "chain" in op.attrs:
                raise IRError(f"Micro-op {op.id!r} is already a tile of an accumulation "
                              f"chain; tile-operators takes an operator-level graph")

    def ensures(self, graph: Graph) -> None:
        """Every tile's operands and result fit the scratchpad of the unit it is sized for."""
        p = self.plan
        spad = {OpType.GEMM: {DType.BF16: p.dmu_spad, DType.INT8: p.lpu_spad},
                OpType.SPMM: {DType.BF16: p.dmu_spad}, OpType.CONV: {DType.INT8: p.ce_spad},
                OpType.AGGREGATE: {DType.BF16: p.gnn_spad, DType.FP32: p.gnn_spad}}
        for op in graph.ops:
            limit = spad.get(op.op, {}).get(op.dtype)
            if op.op in (OpType.ACT, OpType.ELTWISE, OpType.QUANTIZE, OpType.DEQUANTIZE):
                limit = p.afu_spad
            if limit is None:
                continue
            need = sum(_ref_bytes(graph, r) for r in op.inputs + op.outputs)
            if need > limit:
                raise IRError(f"Micro-op {op.id!r} needs {need} bytes of operands and result, "
                              f"more than the {limit}-byte scratchpad of its unit; give the "
                              f"unit a larger scratchpad_bytes in the pool config")


class ReorderChannelsLast(Pass):
    """Read reshapes of channels-last images through a row-major LAYOUT copy (module docstring)."""

    name = "reorder-channels-last"

    @staticmethod
    def _stored_order_ok(g: Graph, op: MicroOp, i: int) -> bool:
        """An INT8 GEMM reading a whole flatten ``[1, C*H*W]`` as A, with constant weights."""
        r = op.inputs[i]
        return (op.op is OpType.GEMM and op.dtype is DType.INT8 and i == 0
                and tuple(g.buffers[r.buffer].shape) == (1, g.buffers[r.buffer].size)
                and g.base(op.inputs[1].buffer).kind is BufferKind.CONST)

    def _views(self, g: Graph) -> dict[str, None]:
        cl = channels_last_images(g)
        views: dict[str, None] = {}
        for op in g.ops:
            for i, r in enumerate(op.inputs):
                b = g.buffers[r.buffer]
                if (g.base(r.buffer).name in cl
                        and image_dims(b.shape) != image_dims(g.base(r.buffer).shape)
                        and not self._stored_order_ok(g, op, i)):
                    views[r.buffer] = None
        return views

    def run(self, graph: Graph) -> Graph:
        views = self._views(graph)
        if not views:
            return graph
        g = graph.copy_structure()
        g.outputs = list(graph.outputs)
        copies: dict[str, str] = {}
        for op in graph.ops:
            ins = []
            for r in op.inputs:
                if r.buffer in views and r.buffer not in copies:
                    b = graph.buffers[r.buffer]
                    nb = g.add_buffer(Buffer(g.unique_name(f"{sanitize(b.name)}.rowmajor"),
                                             b.shape, b.dtype, BufferKind.TEMP,
                                             quant=b.quant or graph.base(b.name).quant))
                    copies[r.buffer] = nb.name
                    g.add_op(MicroOp(g.unique_name(f"{sanitize(b.name)}/copy"), OpType.LAYOUT,
                                     b.dtype, (TensorRef.whole(b),), (TensorRef.whole(nb),),
                                     func=LayoutFunc.COPY, shape={"n": b.size},
                                     source=op.source, source_op="Reshape"))
                ins.append(TensorRef(copies[r.buffer], r.offset, r.shape)
                           if r.buffer in copies else r)
            g.add_op(MicroOp(op.id, op.op, op.dtype, tuple(ins), op.outputs, func=op.func,
                             shape=dict(op.shape), attrs=dict(op.attrs), source=op.source,
                             source_op=op.source_op))
        return g

    def ensures(self, graph: Graph) -> None:
        left = self._views(graph)
        readers = {r.buffer for o in graph.ops if o.func is not LayoutFunc.COPY for r in o.inputs}
        bad = [v for v in left if v in readers]
        if bad:
            raise IRError(f"reorder-channels-last left reshapes {bad} of channels-last images "
                          f"read directly")


# -- analysis ---------------------------------------------------------------------------

_BYTES = {d: d.bytes for d in DType}


def _ref_bytes(g: Graph, r: TensorRef) -> int:
    return r.size * _BYTES[g.buffers[r.buffer].dtype]


class AnnotateCosts(Pass):
    """Measured sparsity of constant operands, FLOPs and bytes of every micro-op.

    Conventions: a multiply-accumulate is 2 FLOPs; SPMM counts only the sparse operand's
    non-zeros; an activation, add or multiply is 1 FLOP per element, (de)quantisation 2;
    aggregation 1 per edge and feature (plus 1 per output for the mean); layout (im2col,
    transpose) 0. Bytes are the operand and result boxes; an SPMM's sparse operand counts
    as the SMU's CSR (:mod:`accelpool.spec.formats`): 4 bytes per non-zero (BF16 value and 16-bit
    column) and 4 per row pointer (rows + 1).
    """

    name = "annotate-costs"

    def run(self, graph: Graph) -> Graph:
        nnz_cache: dict = {}
        for op in graph.ops:
            self.annotate(graph, op, nnz_cache)
        return graph

    @staticmethod
    def annotate(g: Graph, op: MicroOp, nnz_cache: dict | None = None) -> MicroOp:
        """Set ``op``'s sparsity, FLOPs and bytes (in place) and return it."""
        def nnz_of(r: TensorRef) -> tuple[int, int]:
            key = (r.buffer, r.offset, r.shape)
            if nnz_cache is not None and key in nnz_cache:
                return nnz_cache[key]
            box = _const_box(g, r)
            v = (int(np.count_nonzero(box)), box.size)
            if nnz_cache is not None:
                nnz_cache[key] = v
            return v

        s = op.shape
        sparsity = 0.0
        bytes_in = sum(_ref_bytes(g, r) for r in op.inputs)
        bytes_out = sum(_ref_bytes(g, r) for r in op.outputs)
        if op.op in (OpType.GEMM, OpType.SPMM):
            dense = 2 * s["M"] * s["K"] * s["N"]
            flops = dense
            which = op.attrs.get("sparse_operand")
            if which is None:
                which = 1 if g.buffers[op.inputs[1].buffer].kind is BufferKind.CONST else (
                    0 if g.buffers[op.inputs[0].buffer].kind is BufferKind.CONST else None)
            if which is not None:
                nnz, size = nnz_of(op.inputs[which])
                sparsity = 1 - nnz / size
                if op.op is OpType.SPMM:
                    other = s["M"] if which == 1 else s["N"]
                    flops = 2 * nnz * other
                    # the SMU's CSR (of B^T for a sparse B): a 4-byte entry per non-zero,
                    # a 4-byte pointer per row and one more
                    rows = s["M"] if which == 0 else s["N"]
                    bytes_in += 4 * nnz + 4 * (rows + 1) - _ref_bytes(g, op.inputs[which])
        elif op.op is OpType.CONV:
            flops = 2 * s["OC"] * s["OH"] * s["OW"] * s["IC"] * s["KH"] * s["KW"]
            nnz, size = nnz_of(op.inputs[1])
            sparsity = 1 - nnz / size
        elif op.op in (OpType.ACT, OpType.ELTWISE):
            flops = s["n"]
        elif op.op in (OpType.QUANTIZE, OpType.DEQUANTIZE):
            flops = 2 * s["n"]
        elif op.op is OpType.AGGREGATE:
            flops = s["edges"] * s["features"]
            if op.func is AggFunc.MEAN:
                flops += s["nodes"] * s["features"]
            nnz, size = nnz_of(op.inputs[0])
            sparsity = 1 - nnz / size
            # the adjacency travels as CSR: values + 16-bit column indices + row pointers
            bytes_in += s["edges"] * (op.dtype.bytes + 2) + 4 * (s["nodes"] + 1) \
                - _ref_bytes(g, op.inputs[0])
        else:
            flops = 0
        op.sparsity, op.flops = float(sparsity), int(flops)
        op.bytes_in, op.bytes_out = int(bytes_in), int(bytes_out)
        return op


class CheckPoolSupport(Pass):
    """Fail if a micro-op has no unit in the pool taking its operation and data type."""

    name = "check-pool-support"

    def __init__(self, pool: PoolConfig):
        self.pool = pool

    def run(self, graph: Graph) -> Graph:
        check_pool_support(graph, self.pool)
        return graph


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _tile_count(g: Graph, op: MicroOp, plan: TilePlan) -> int:
    """Tiles the tiler of ``op`` makes, from the tile sizes alone (layout moves not counted)."""
    s = op.shape
    if op.op in (OpType.GEMM, OpType.SPMM):
        tm, tk, tn = plan.gemm_tile(op.dtype, s["M"], s["K"], s["N"])
        return _ceil_div(s["M"], tm) * _ceil_div(s["N"], tn) * _ceil_div(s["K"], tk)
    if op.op is OpType.CONV:
        toc, tic, toh = plan.conv_tile(s["IC"], s["KH"], s["KW"], s["OC"], s["OH"], s["OW"],
                                       s["W"], op.attrs["strides"][0])
        return _ceil_div(s["OC"], toc) * _ceil_div(s["OH"], toh) * _ceil_div(s["IC"], tic)
    if op.op in (OpType.ACT, OpType.ELTWISE, OpType.QUANTIZE, OpType.DEQUANTIZE):
        shape = g.buffers[op.outputs[0].buffer].shape
        cols = shape[-1] if shape else 1
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        per_elem = sum(g.buffers[r.buffer].dtype.bytes for r in op.inputs + op.outputs)
        vec = plan.vector(per_elem)
        tc = min(cols, vec)
        return _ceil_div(rows, max(1, vec // tc)) * _ceil_div(cols, tc)
    if op.op is OpType.AGGREGATE:
        tr, tf = plan.aggregate_tile(s["nodes"], s["features"], op.dtype)
        return _ceil_div(s["nodes"], tr) * _ceil_div(s["features"], tf)
    return 1


def estimate_micro_ops(graph: Graph, plan: TilePlan) -> int:
    """Micro-ops :class:`TileOperators` makes of ``graph``, without making them.

    Counts the compute tiles from the tile sizes; the few layout moves of transposed
    sparse blocks and channels-last copies come on top.
    """
    return sum(_tile_count(graph, op, plan) for op in graph.ops)


def decompose(graph: Graph, pool: PoolConfig | None = None,
              options: DecomposeOptions = DecomposeOptions(), verify_each: bool = True,
              dump: Callable[[str, Graph], None] | None = None) -> Graph:
    """Tile an operator-level graph to ``pool`` and annotate costs (verifying after each pass).

    Parameters
    ----------
    graph : Graph
        From :func:`accelpool.sched.frontend.import_model`.
    pool : PoolConfig, optional
        Default: ``configs/default.toml``.
    options : DecomposeOptions, optional

    Raises
    ------
    FrontendError
        If the decomposition would yield more than ``options.max_micro_ops`` micro-ops.
    """
    pool = pool or load_config()
    plan = TilePlan.from_pool(pool, options)
    n = estimate_micro_ops(graph, plan)
    if n > options.max_micro_ops:
        raise FrontendError(
            f"model {graph.name!r} would decompose into {n} micro-ops for pool {pool.name!r}, "
            f"more than the budget of {options.max_micro_ops} (DecomposeOptions."
            f"max_micro_ops); accepted: smaller models, larger tiles in the pool config, or "
            f"a larger budget")
    return Pipeline([CheckPoolSupport(pool), ReorderChannelsLast(), TileOperators(plan),
                     AnnotateCosts()],
                    verify_each=verify_each, dump=dump).run(graph)


def compile_model(model, pool: PoolConfig | None = None,
                  options: DecomposeOptions = DecomposeOptions(), **import_kw) -> Graph:
    """ONNX model (path, bytes, ModelProto) or built-in name -> tiled, annotated micro-op DAG."""
    pool = pool or load_config()
    if isinstance(model, str) and model in models.BUILTIN_MODELS:
        import_kw.setdefault("name", model)
        model = models.build(model)
    return decompose(import_model(model, pool, **import_kw), pool, options)
