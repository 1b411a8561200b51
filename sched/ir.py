"""The micro-op IR: buffers, tensor regions, micro-ops, the DAG, its verifier and passes.

A model becomes a :class:`Graph`: named :class:`Buffer` s (graph inputs, constants,
intermediates, outputs) and a DAG of :class:`MicroOp` s on :mod:`networkx` (node = micro-op
id, node attribute ``op`` = the :class:`MicroOp`). Every operand and result of a micro-op
is a :class:`TensorRef`: a rectangular box (``offset``, ``shape``) of one buffer, so a tile
of a GEMM reads ``x[0:8, 64:128]`` of the layer's input buffer and writes ``y[0:8, 0:8]``
of its output buffer without any copy.

Conventions
-----------
- **Single assignment.** Every element of a non-input, non-constant buffer is written by
  exactly one micro-op. The DAG edges are *derived* from that: a micro-op depends on the
  micro-ops that wrote the elements it reads (:attr:`MicroOp.deps`, equal to its
  predecessors in the DAG). The verifier checks it.
- **Names.** Buffers: ``<onnx tensor>`` for graph inputs, constants and operator results
  (sanitised to ``[A-Za-z0-9_.]``); ``<op>.psum<k>`` for step ``k``'s partial sums of an
  accumulation chain (``<op>`` is the operator micro-op's id with ``/`` -> ``_``, e.g.
  ``fc1_gemm.psum0``); ``<tensor>.cols<n>`` for image ``n``'s im2col matrix;
  ``<buffer>.view<d0>x<d1>...`` for a layout-only alias; ``<const>.T`` for a constant
  transposed at compile time, ``<op>.aT`` / ``<op>.yT`` for a layer's transposed operand /
  result (a sparse weight computed as ``C^T = B^T A^T``, :mod:`accelpool.sched.decompose`). Micro-ops: ``<onnx node>/<what>``
  at operator level (``fc1/gemm``, ``conv1/im2col0``), tiles add ``.m<i>n<j>`` (GEMM
  output block) / ``.o<i>r<j>`` (CONV output-channel and row block) + ``k<s>`` (chain
  step, when K is split), ``.v<r>_<c>`` (vector), ``.r<i>f<j>`` (aggregation block);
  ``<op>.aT`` transposes a layer's operand, ``<op>.yT<j>`` transposes result columns back.
- **Operands** (``inputs`` order): GEMM/SPMM ``(a[M,K], b[K,N][, c])``; CONV ``(x[IC,H,W],
  w[OC,IC,KH,KW][, c])``; ACT/QUANTIZE/DEQUANTIZE ``(x,)``; ELTWISE ``(a, b)`` (``b`` may be
  a scalar, or a vector along the last dimension with ``attrs["broadcast"]``); AGGREGATE
  ``(adjacency rows[rows, nodes] (a constant), features[nodes, F])``; LAYOUT im2col
  ``(x[C,H,W],)`` -> ``cols[C*KH*KW, OH*OW]``; LAYOUT transpose ``(a[R,C],)`` ->
  ``out[C,R]`` (``out[j, i] = a[i, j]``, the data type is the element type, any of BF16,
  INT8, FP32, INT32). Leading size-1 dimensions of a box are ignored. One result each.
- **Attributes.** ``c_broadcast``: ``"row"`` (c is ``[1,N]``, added to every row) or
  ``"col"`` (``[M,1]``); ``requant``: ``{scale, multiplier, shift, zero_point}`` (INT32 ->
  INT8, :func:`accelpool.spec.golden.numerics.requantize`); ``sparse_operand``: 0/1 (SPMM);
  ``transposed``: True on a GEMM/SPMM tile that computes a block of its layer's result
  transposed (``C^T = B^T A^T``, so that a sparse weight is the left operand);
  ``strides`` (sh, sw), ``pads`` (top, left, bottom, right; per tile), ``pad_value`` (the
  input zero point), ``kernel``; ``alpha`` (LeakyReLU), ``approximate`` (GELU);
  ``scale``/``zero_point`` (QUANTIZE/DEQUANTIZE).
- **Aliases.** A buffer with ``alias_of`` shares the storage of another buffer
  (row-major, same number of elements, same data type): Reshape/Flatten cost nothing.
- **Accumulation chains.** A GEMM/SPMM/CONV whose reduction dimension (K, or input
  channels) is split into steps is a chain of micro-ops with the same ``attrs["chain"]``
  (a string naming the output tile), ``attrs["k_step"]`` = 0..``attrs["k_steps"]``-1. Step
  ``k > 0`` takes the previous step's partial sum as its third operand (the accumulator
  ``c``); step 0 takes the bias (or nothing: ``+0``). Every step but the last writes a
  partial-sum buffer in the accumulator type (FP32 for BF16, INT32 for INT8); the last
  writes the result buffer, rounding to its data type (FP32 -> BF16 round to nearest even,
  or INT32 -> INT8 requantisation when ``attrs["requant"]`` is set).
- **Data type** :attr:`MicroOp.dtype` is the type of the operands the unit consumes (what
  ``accelpool.spec.config.UNIT_DTYPES`` lists); the result's type is its buffer's. Which unit kinds
  can run what: :data:`CAPABLE_UNITS` / :attr:`MicroOp.units`.
- **Passes** (:class:`Pass`, :class:`Pipeline`): transforms return a new or updated graph,
  analyses annotate micro-ops in place; ``requires``/``ensures`` hooks; the pipeline
  verifies (:func:`verify`) after every pass and can dump the IR (:meth:`Graph.dump`).
- **Shape** :attr:`MicroOp.shape` holds the operation's named dimensions: GEMM/SPMM
  ``M, K, N``; CONV ``IC, H, W, OC, KH, KW, OH, OW``; ACT/ELTWISE/QUANTIZE/DEQUANTIZE ``n``;
  AGGREGATE ``nodes, edges, features``; LAYOUT ``n`` (elements moved: ``R*C`` for a
  transpose).
"""

from __future__ import annotations

import enum
import gc
import json
import math
import operator
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import networkx as nx
import numpy as np

from accelpool.spec.config import DType, UnitKind
from accelpool.spec.unit import unit_specs

__all__ = [
    "IRError", "OpType", "ActFunc", "EltwiseFunc", "AggFunc", "LayoutFunc",
    "BufferKind", "QuantParams", "Buffer", "TensorRef", "MicroOp", "Graph",
    "CAPABLE_UNITS", "ACC_DTYPE", "capable_units", "verify", "Pass", "FunctionPass",
    "Pipeline", "sanitize", "sanitize_names", "image_dims", "channels_last_images",
]


class IRError(ValueError):
    """The IR breaks one of its invariants; the message names the micro-op or buffer."""


class OpType(enum.Enum):
    """What a micro-op does (which unit kinds can run it: :data:`CAPABLE_UNITS`)."""

    GEMM = "gemm"            #: dense C = A @ B (+ c)
    SPMM = "spmm"            #: C = A @ B (+ c) with one operand sparse (``attrs["sparse_operand"]``)
    CONV = "conv"            #: direct 2-D convolution of one image (NCHW, N = 1 per op)
    ACT = "act"              #: element-wise activation, :class:`ActFunc` in ``func``
    ELTWISE = "eltwise"      #: element-wise binary op, :class:`EltwiseFunc` in ``func``
    AGGREGATE = "aggregate"  #: neighbour aggregation over a constant CSR adjacency
    QUANTIZE = "quantize"    #: float -> INT8 (scale, zero point)
    DEQUANTIZE = "dequantize"  #: INT8/INT32 -> float (scale, zero point)
    LAYOUT = "layout"        #: pure data movement (:class:`LayoutFunc`), by the memory tile


class ActFunc(enum.Enum):
    RELU = "relu"
    LEAKY_RELU = "leaky_relu"  #: ``attrs["alpha"]``
    SIGMOID = "sigmoid"
    TANH = "tanh"
    GELU = "gelu"              #: ``attrs["approximate"]`` = "none" | "tanh"


class EltwiseFunc(enum.Enum):
    ADD = "add"
    MUL = "mul"


class AggFunc(enum.Enum):
    SUM = "sum"    #: out[i] = sum of x[j] over neighbours j (adjacency values all 1)
    MEAN = "mean"  #: out[i] = mean of x[j] over neighbours j (row values 1/deg)


class LayoutFunc(enum.Enum):
    IM2COL = "im2col"        #: ``attrs``: kernel, strides, pads, dilations (one image)
    TRANSPOSE = "transpose"  #: ``out[j, i] = in[i, j]`` of a 2-D box (any element type)
    #: ``out = in`` element for element (same shape): moves a tensor between two memory
    #: layouts, e.g. out of a channels-last image (:func:`accelpool.sched.decompose.ReorderChannelsLast`)
    COPY = "copy"


#: The accumulator type of a reduction over operands of a data type.
ACC_DTYPE: Mapping[DType, DType] = MappingProxyType({
    DType.BF16: DType.FP32, DType.FP32: DType.FP32, DType.INT8: DType.INT32,
    DType.INT32: DType.INT32})

class _CapableUnits(Mapping):
    """(operation, operand data type) -> unit kinds able to run it, preferred first: the
    kinds whose declaration ``runs`` it, then those that ``also_runs`` it
    (:class:`accelpool.spec.unit.UnitSpec`; an SPMM tile runs densely on a DMU, the zeros
    multiplied, not skipped). LAYOUT micro-ops run on the memory tile's layout engine."""

    def __init__(self):
        self._table: dict = {}
        self._count = 0

    def _current(self) -> dict:
        if len(UnitKind) != self._count:    # kinds are only ever added
            specs = unit_specs()
            table: dict = {}
            for attr in ("runs", "also_runs"):
                for spec in specs:
                    for op, dtype in getattr(spec, attr):
                        table.setdefault((OpType(op), DType.from_key(dtype)), []).append(spec.kind)
            for dtype in (DType.BF16, DType.INT8, DType.FP32, DType.INT32):
                table[(OpType.LAYOUT, dtype)] = [UnitKind.MEMORY]
            self._table = {k: tuple(v) for k, v in table.items()}
            self._count = len(UnitKind)
        return self._table

    def __getitem__(self, key):
        return self._current()[key]

    def __iter__(self):
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


#: (operation, operand data type) -> unit kinds able to run it, preferred first.
CAPABLE_UNITS: Mapping[tuple[OpType, DType], tuple[UnitKind, ...]] = _CapableUnits()


def capable_units(op: OpType, dtype: DType) -> tuple[UnitKind, ...]:
    """Unit kinds that can run ``op`` on ``dtype`` operands (preferred first; may be empty)."""
    return CAPABLE_UNITS.get((op, dtype), ())


_NAME_RE = re.compile(r"[^A-Za-z0-9_.]")


def sanitize(name: str) -> str:
    """A buffer/micro-op name from an ONNX name: characters outside ``[A-Za-z0-9_.]`` become ``_``."""
    s = _NAME_RE.sub("_", name)
    return s if s else "_"


def sanitize_names(names: Sequence[str]) -> dict[str, str]:
    """Distinct buffer names for distinct ONNX names (the graph inputs, in graph order).

    A name that is already valid keeps itself; every other name becomes :func:`sanitize`
    of it, followed by ``_1``, ``_2``, ... if that is taken, in the order given. The result
    depends only on ``names``, so every consumer of a model maps its inputs alike.

    Parameters
    ----------
    names : sequence of str
        Distinct ONNX names.

    Returns
    -------
    dict
        ONNX name -> buffer name, injective.
    """
    out = {n: n for n in names if sanitize(n) == n}
    taken = set(out)
    for n in names:
        if n in out:
            continue
        base = cand = sanitize(n)
        i = 0
        while cand in taken:
            i += 1
            cand = f"{base}_{i}"
        out[n] = cand
        taken.add(cand)
    return {n: out[n] for n in names}


class BufferKind(enum.Enum):
    INPUT = "input"    #: a graph input, written by the host before the run
    CONST = "const"    #: a constant (weights), ``data`` holds its value
    TEMP = "temp"      #: an intermediate result
    OUTPUT = "output"  #: a graph output, read by the host after the run


@dataclass(frozen=True)
class QuantParams:
    """Affine quantisation ``real = scale * (q - zero_point)`` (per tensor)."""

    scale: float
    zero_point: int = 0


@dataclass(frozen=True, eq=False)
class Buffer:
    """A named tensor in memory.

    Attributes
    ----------
    name : str
    shape : tuple of int
    dtype : DType
    kind : BufferKind
    data : ndarray or None
        The value of a constant (numpy dtype: ``ml_dtypes.bfloat16`` for BF16, float32,
        int8, int32).
    alias_of : str or None
        Another buffer whose storage this one reinterprets (row-major reshape).
    quant : QuantParams or None
        For INT8/INT32 tensors from a quantised model, the real value they encode.
    """

    name: str
    shape: tuple[int, ...]
    dtype: DType
    kind: BufferKind = BufferKind.TEMP
    data: np.ndarray | None = field(default=None, repr=False)
    alias_of: str | None = None
    quant: QuantParams | None = None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def bytes(self) -> int:
        return self.size * self.dtype.bytes

    def to_json(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.key,
             "kind": self.kind.value, "bytes": self.bytes}
        if self.alias_of:
            d["alias_of"] = self.alias_of
        if self.quant:
            d["quant"] = {"scale": self.quant.scale, "zero_point": self.quant.zero_point}
        return d


@dataclass(frozen=True)
class TensorRef:
    """A box of a buffer: elements ``offset[i] <= idx[i] < offset[i] + shape[i]``."""

    buffer: str
    offset: tuple[int, ...]
    shape: tuple[int, ...]

    @classmethod
    def whole(cls, buf: Buffer) -> "TensorRef":
        return cls(buf.name, (0,) * len(buf.shape), tuple(buf.shape))

    @property
    def slices(self) -> tuple[slice, ...]:
        return tuple(map(slice, self.offset, map(operator.add, self.offset, self.shape)))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def last_dims(self, n: int) -> tuple[int, ...] | None:
        """The last ``n`` dimensions (a 1-D box counts as ``(1, len)``), or None if a
        leading dimension is not 1."""
        s = tuple(self.shape)
        if len(s) < n:
            s = (1,) * (n - len(s)) + s
        if any(d != 1 for d in s[:len(s) - n]):
            return None
        return s[len(s) - n:]

    @property
    def matrix_shape(self) -> tuple[int, ...]:
        """The shape with leading size-1 dimensions dropped (at least 1-D)."""
        s = list(self.shape)
        while len(s) > 1 and s[0] == 1:
            s.pop(0)
        return tuple(s)

    def __str__(self) -> str:
        return f"{self.buffer}[{','.join(f'{o}:{o + s}' for o, s in zip(self.offset, self.shape))}]"

    def to_json(self) -> dict:
        return {"buffer": self.buffer, "offset": list(self.offset), "shape": list(self.shape)}


Func = ActFunc | EltwiseFunc | AggFunc | LayoutFunc


@dataclass(eq=False)
class MicroOp:
    """One unit of work for one unit of the pool.

    Analyses annotate micro-ops in place (``sparsity``, ``flops``, ``bytes_in``,
    ``bytes_out``); :meth:`Graph.add_op` sets ``deps``. Operands, results and ``id`` must
    not change once the micro-op is in a graph.

    Attributes
    ----------
    id : str
        Unique name, ``<onnx node>/<what>[.<tile>]`` (e.g. ``fc1/gemm.m0n1k2``).
    op : OpType
    dtype : DType
        Operand data type the unit consumes.
    inputs, outputs : tuple of TensorRef
        Operands and results (see :class:`OpType` for each type's operand order).
    func : ActFunc, EltwiseFunc, AggFunc, LayoutFunc or None
    shape : mapping str -> int
        The operation's named dimensions (module docstring).
    attrs : mapping
        Operation parameters (strides, pads, alpha, requant, chain, ...).
    sparsity : float
        Measured fraction of zeros in the sparse/weight operand (0 for dense data).
    flops : int
        Arithmetic operations actually performed (a multiply-accumulate counts 2; for
        SPMM only the non-zeros count). Filled by :func:`accelpool.sched.decompose.annotate_costs`.
    bytes_in, bytes_out : int
        Bytes read and written (a sparse operand counts its non-zeros plus a bitmap).
    source : str
        The ONNX node name it came from; ``source_op`` its op_type.
    deps : tuple of str
        The micro-ops producing what it reads (its DAG predecessors), set by :meth:`Graph.add_op`.
    """

    id: str
    op: OpType
    dtype: DType
    inputs: tuple[TensorRef, ...]
    outputs: tuple[TensorRef, ...]
    func: Func | None = None
    shape: Mapping[str, int] = field(default_factory=dict)
    attrs: Mapping[str, Any] = field(default_factory=dict)
    sparsity: float = 0.0
    flops: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    source: str = ""
    source_op: str = ""
    deps: tuple[str, ...] = ()

    @property
    def units(self) -> tuple[UnitKind, ...]:
        """Unit kinds able to run this micro-op, preferred first."""
        return capable_units(self.op, self.dtype)

    def listing(self) -> str:
        """One readable line."""
        fn = f".{self.func.value}" if self.func is not None else ""
        dims = ",".join(f"{k}={v}" for k, v in self.shape.items())
        sp = f" sp={self.sparsity:.2f}" if self.sparsity else ""
        return (f"{self.id}: {self.op.value}{fn}<{self.dtype.key}>({dims}) "
                f"{', '.join(map(str, self.outputs))} <- {', '.join(map(str, self.inputs))}"
                f"{sp} flops={self.flops} in={self.bytes_in}B out={self.bytes_out}B")

    def to_json(self) -> dict:
        return {
            "id": self.id, "op": self.op.value, "func": self.func.value if self.func else None,
            "dtype": self.dtype.key, "shape": dict(self.shape),
            "inputs": [r.to_json() for r in self.inputs],
            "outputs": [r.to_json() for r in self.outputs],
            "attrs": _jsonable(dict(self.attrs)), "sparsity": self.sparsity,
            "flops": self.flops, "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
            "source": self.source, "source_op": self.source_op, "deps": list(self.deps),
            "units": [u.key for u in self.units],
        }


_ELEMENTWISE = (OpType.ACT, OpType.ELTWISE, OpType.QUANTIZE, OpType.DEQUANTIZE)


def image_dims(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a one-image shape ``[1, ..., C, H, W]``, else None."""
    shape = tuple(shape)
    if len(shape) < 3 or math.prod(shape[:-3]) != 1:
        return None
    return shape[-3:]


def channels_last_images(g: "Graph") -> set[str]:
    """Base buffers kept channels-last in memory: every one-image buffer a CONV micro-op
    reads or writes (the convolution engine's layout), and every image an element-wise
    micro-op reads or writes together with one of those, whole and of the same image
    shape (so an element-wise unit sees one element order on every operand). Codegen lays
    them out (:func:`accelpool.sched.codegen.channels_last_buffers`); the decomposition copies a
    reshape of one out to row-major where a reader needs it
    (:class:`accelpool.sched.decompose.ReorderChannelsLast`)."""
    base = lambda r: g.base(r.buffer)   # noqa: E731
    cl = {base(r).name for o in g.ops if o.op is OpType.CONV
          for r in (o.inputs[0], o.outputs[0])}
    cl = {n for n in cl if image_dims(g.buffers[n].shape)}
    changed = True
    while changed:
        changed = False
        for o in g.ops:
            if o.op not in _ELEMENTWISE:
                continue
            refs = [r for r in o.inputs + o.outputs if base(r).kind is not BufferKind.CONST]
            names = {base(r).name for r in refs}
            if names & cl and not names <= cl:
                imgs = {image_dims(g.buffers[r.buffer].shape) for r in refs}
                if None not in imgs and len(imgs) == 1:
                    cl |= names
                    changed = True
    return cl


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, QuantParams):
        return {"scale": v.scale, "zero_point": v.zero_point}
    return v


class Graph:
    """A micro-op DAG with its buffers.

    Attributes
    ----------
    name : str
    buffers : dict str -> Buffer
    dag : networkx.DiGraph
        Node = micro-op id, attribute ``op`` = :class:`MicroOp`; an edge u -> v means v
        reads something u wrote. Node order is insertion order (a topological order).
    inputs, outputs : list of str
        Graph input and output buffer names, in the model's order.
    """

    def __init__(self, name: str = "model"):
        self.name = name
        self.buffers: dict[str, Buffer] = {}
        self.dag = nx.DiGraph()
        # The cost model reaches the buffers (memory layout, transfer sizes) from the DAG.
        self.dag.graph["ir"] = self
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._index = _WriterIndex(self)
        self._op_ids: list[str] = []

    # -- building -----------------------------------------------------------------------
    def add_buffer(self, buf: Buffer) -> Buffer:
        """Add a buffer; graph inputs and outputs are also listed in :attr:`inputs`/:attr:`outputs`."""
        if buf.name in self.buffers:
            raise IRError(f"Buffer {buf.name!r} is defined twice")
        if any(not isinstance(d, int) or d < 1 for d in buf.shape):
            raise IRError(f"Buffer {buf.name!r} has shape {buf.shape}; every dimension must "
                          f"be a positive integer")
        if buf.alias_of is not None:
            base = self.buffers.get(buf.alias_of)
            if base is None:
                raise IRError(f"Buffer {buf.name!r} aliases unknown buffer {buf.alias_of!r}")
            if base.size != buf.size or base.dtype != buf.dtype:
                raise IRError(f"Buffer {buf.name!r} ({buf.shape}, {buf.dtype.key}) cannot alias "
                              f"{base.name!r} ({base.shape}, {base.dtype.key}): an alias keeps "
                              f"the element count and data type")
        if buf.kind is BufferKind.CONST:
            if buf.data is None or tuple(buf.data.shape) != tuple(buf.shape):
                raise IRError(f"Constant {buf.name!r} needs data of shape {buf.shape}")
        self.buffers[buf.name] = buf
        if buf.kind is BufferKind.INPUT:
            self.inputs.append(buf.name)
        elif buf.kind is BufferKind.OUTPUT:
            self.outputs.append(buf.name)
        return buf

    def base(self, name: str) -> Buffer:
        """The buffer owning the storage of ``name`` (itself unless it is an alias)."""
        b = self.buffers[name]
        while b.alias_of is not None:
            b = self.buffers[b.alias_of]
        return b

    def unique_name(self, stem: str) -> str:
        """``stem``, or ``stem.1``, ``stem.2``... whichever is not yet a buffer or micro-op."""
        name, i = stem, 0
        while name in self.buffers or name in self.dag:
            i += 1
            name = f"{stem}.{i}"
        return name

    def add_op(self, op: MicroOp) -> MicroOp:
        """Add a micro-op; its dependencies are derived from who wrote what it reads.

        Raises
        ------
        IRError
            An unknown buffer, a box out of bounds, an input element nobody wrote yet, or
            an output element already written.
        """
        if op.id in self.dag:
            raise IRError(f"Micro-op {op.id!r} is defined twice")
        for r in op.inputs + op.outputs:
            _check_ref(self, op.id, r)
        deps: list[str] = []
        for r in op.inputs:
            idx = self._index.writers(r)
            if idx is None:
                continue
            if idx[0] < 0:
                raise IRError(f"Micro-op {op.id!r} reads {r}, part of which no micro-op "
                              f"has written (inputs must be produced by a micro-op, a "
                              f"constant or a graph input)")
            for i in idx:
                d = self._op_ids[i]
                if d not in deps:
                    deps.append(d)
        index = len(self._op_ids)
        for r in op.outputs:
            other = self._index.write(op.id, r, index)
            if other is not None:
                raise IRError(f"Micro-op {op.id!r} writes {r}, already written by "
                              f"{self._op_ids[other]!r} (each element is written once)")
        op.deps = tuple(deps)
        self._op_ids.append(op.id)
        self.dag.add_node(op.id, op=op)
        for d in deps:
            self.dag.add_edge(d, op.id)
        return op

    def replace_op(self, op: MicroOp) -> None:
        """Swap in an updated micro-op with the same id, operands and results (for analyses)."""
        old = self.op(op.id)
        if old.inputs != op.inputs or old.outputs != op.outputs:
            raise IRError(f"replace_op({op.id!r}) must keep the operands and results")
        op.deps = old.deps
        self.dag.nodes[op.id]["op"] = op

    # -- reading ------------------------------------------------------------------------
    def op(self, op_id: str) -> MicroOp:
        return self.dag.nodes[op_id]["op"]

    @property
    def ops(self) -> Iterator[MicroOp]:
        """The micro-ops in insertion order (a topological order)."""
        for n in self.dag.nodes:
            yield self.dag.nodes[n]["op"]

    def __len__(self) -> int:
        return self.dag.number_of_nodes()

    def chains(self) -> dict[str, list[MicroOp]]:
        """Accumulation chains: ``attrs["chain"]`` -> its micro-ops in ``k_step`` order.

        A scheduler that keeps a chain on one unit can leave the partial sums in that
        unit's scratchpad (only the last step's result goes back to memory).
        """
        out: dict[str, list[MicroOp]] = {}
        for o in self.ops:
            c = o.attrs.get("chain")
            if c is not None:
                out.setdefault(c, []).append(o)
        for ops in out.values():
            ops.sort(key=lambda o: o.attrs["k_step"])
        return out

    def topological_ops(self) -> list[MicroOp]:
        return [self.op(n) for n in nx.topological_sort(self.dag)]

    def summary(self) -> dict:
        """Counts and totals: micro-ops by (type, dtype), FLOPs, bytes, sparsity."""
        by_kind: dict[str, int] = {}
        flops = bin_ = bout = 0
        sparse = []
        for o in self.ops:
            k = f"{o.op.value}{'.' + o.func.value if o.func else ''}<{o.dtype.key}>"
            by_kind[k] = by_kind.get(k, 0) + 1
            flops += o.flops
            bin_ += o.bytes_in
            bout += o.bytes_out
            if o.op in (OpType.GEMM, OpType.SPMM):
                sparse.append(o.sparsity)
        return {"micro_ops": len(self), "by_type": dict(sorted(by_kind.items())),
                "flops": flops, "bytes_in": bin_, "bytes_out": bout,
                "mean_gemm_sparsity": float(np.mean(sparse)) if sparse else 0.0,
                "buffers": len(self.buffers),
                "const_bytes": sum(b.bytes for b in self.buffers.values()
                                   if b.kind is BufferKind.CONST)}

    def dump(self) -> str:
        """A readable listing: buffers, then micro-ops in order."""
        lines = [f"graph {self.name}: {len(self)} micro-ops, {len(self.buffers)} buffers"]
        for b in self.buffers.values():
            extra = f" = {b.alias_of}" if b.alias_of else ""
            lines.append(f"  buffer {b.kind.value:6} {b.name}: {b.dtype.key}{list(b.shape)}{extra}")
        lines += ["  " + o.listing() for o in self.ops]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"name": self.name, "inputs": self.inputs, "outputs": self.outputs,
                "buffers": [b.to_json() for b in self.buffers.values()],
                "micro_ops": [o.to_json() for o in self.ops],
                "edges": [list(e) for e in self.dag.edges]}

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    def to_dot(self) -> str:
        """Graphviz text: one node per micro-op labelled with its type, edges = dependencies."""
        out = [f'digraph "{self.name}" {{', "  node [shape=box, fontsize=10];"]
        for o in self.ops:
            fn = f".{o.func.value}" if o.func else ""
            out.append(f'  "{o.id}" [label="{o.id}\\n{o.op.value}{fn}<{o.dtype.key}>"];')
        for u, v in self.dag.edges:
            out.append(f'  "{u}" -> "{v}";')
        out.append("}")
        return "\n".join(out) + "\n"

    def write_dot(self, path: str | Path) -> None:
        Path(path).write_text(self.to_dot())

    def copy_structure(self, name: str | None = None) -> "Graph":
        """A new graph with the same buffers and no micro-ops (for transforms that rebuild)."""
        g = Graph(name or self.name)
        for b in self.buffers.values():
            g.add_buffer(b)
        return g


class _WriterIndex:
    """Which micro-op (by index) wrote each element of each buffer.

    A numpy map per storage buffer (-1: not written) plus the exact boxes written, so a
    read of exactly a box some micro-op wrote (an accumulation chain's partial sum) needs
    no array work. Graph inputs and constants have no map (always readable, never written).
    """

    def __init__(self, g: "Graph"):
        self.g = g
        self.base_maps: dict[str, np.ndarray] = {}
        self.maps: dict[str, np.ndarray | None] = {}
        self.boxes: dict[tuple, int] = {}

    def _map(self, name: str) -> np.ndarray | None:
        try:
            return self.maps[name]
        except KeyError:
            pass
        base = self.g.base(name)
        m = None
        if base.kind not in (BufferKind.INPUT, BufferKind.CONST):
            bm = self.base_maps.get(base.name)
            if bm is None:
                bm = self.base_maps[base.name] = np.full(base.shape, -1, dtype=np.int64)
            m = bm.reshape(self.g.buffers[name].shape)
        self.maps[name] = m
        return m

    def writers(self, r: TensorRef) -> tuple[int, ...] | np.ndarray | None:
        """Sorted writer indices of box ``r`` (first is -1 if part is unwritten); None for
        an input or constant."""
        m = self._map(r.buffer)
        if m is None:
            return None
        i = self.boxes.get((r.buffer, r.offset, r.shape))
        if i is not None:
            return (i,)
        return _writers_of(m[r.slices])

    def write(self, op_id: str, r: TensorRef, index: int) -> int | None:
        """Record that micro-op ``index`` writes box ``r``; return an earlier writer if any."""
        m = self._map(r.buffer)
        if m is None:
            base = self.g.base(r.buffer)
            raise IRError(f"Micro-op {op_id!r} writes {r}, but {base.name!r} is a "
                          f"{base.kind.value}")
        w = m[r.slices]
        if w.max() >= 0:
            return int(w[w >= 0].flat[0])
        w[...] = index
        self.boxes[(r.buffer, r.offset, r.shape)] = index
        return None

    def unwritten(self, name: str) -> bool:
        m = self._map(name)
        return m is not None and bool((m < 0).any())


def _writers_of(w: np.ndarray) -> np.ndarray:
    """Sorted distinct writer indices of a box of a writer map (fast path: one writer)."""
    lo = w.min()
    if lo == w.max():
        return np.array([lo])
    return np.unique(w)


def _check_ref(g: Graph, op_id: str, r: TensorRef) -> None:
    buf = g.buffers.get(r.buffer)
    if buf is None:
        raise IRError(f"Micro-op {op_id!r} refers to unknown buffer {r.buffer!r}")
    shape, off, size = buf.shape, r.offset, r.shape
    if len(off) == len(shape) == len(size):
        for o, s, d in zip(off, size, shape):
            if o < 0 or s < 1 or o + s > d:
                break
        else:
            return
    raise IRError(f"Micro-op {op_id!r}: {r} is outside buffer {r.buffer!r} of shape "
                  f"{list(buf.shape)}")


# -- verifier ---------------------------------------------------------------------------

def _mat(r: TensorRef, op_id: str, what: str, n: int = 2) -> tuple[int, ...]:
    s = r.last_dims(n)
    if s is None:
        raise IRError(f"Micro-op {op_id!r}: {what} {r} must have {n} dimensions (leading "
                      f"dimensions of size 1 allowed), not shape {list(r.shape)}")
    return s


#: Data types of a micro-op's results, by (operation, operand type).
_RESULT_DTYPES: Mapping[tuple[OpType, DType], tuple[DType, ...]] = MappingProxyType({
    (OpType.GEMM, DType.BF16): (DType.BF16, DType.FP32),
    (OpType.SPMM, DType.BF16): (DType.BF16, DType.FP32),
    (OpType.GEMM, DType.INT8): (DType.INT8, DType.INT32),
    (OpType.CONV, DType.INT8): (DType.INT8, DType.INT32),
    (OpType.QUANTIZE, DType.BF16): (DType.INT8,),
    (OpType.DEQUANTIZE, DType.INT8): (DType.BF16,),
    (OpType.DEQUANTIZE, DType.INT32): (DType.BF16,),
})


def _check_dtypes(g: Graph, o: MicroOp) -> None:
    """Operands in the micro-op's data type, accumulators in its accumulator type, results
    in a type the operation produces (INT8 from an INT32 sum only with ``requant``)."""
    def fail(msg: str) -> None:
        raise IRError(f"Micro-op {o.id!r} ({o.op.value}<{o.dtype.key}>): {msg}")

    def dt(r: TensorRef) -> DType:
        return g.buffers[r.buffer].dtype

    reduce = o.op in (OpType.GEMM, OpType.SPMM, OpType.CONV)
    operands = o.inputs[:2] if reduce else o.inputs
    if o.op is OpType.AGGREGATE:
        operands = o.inputs[1:]
    for r in operands:
        if dt(r) is not o.dtype:
            fail(f"operand {r} is {dt(r).key}, not {o.dtype.key}")
    if reduce and len(o.inputs) == 3 and dt(o.inputs[2]) is not ACC_DTYPE[o.dtype]:
        fail(f"accumulator {o.inputs[2]} is {dt(o.inputs[2]).key}, not "
             f"{ACC_DTYPE[o.dtype].key}")
    out = dt(o.outputs[0])
    allowed = _RESULT_DTYPES.get((o.op, o.dtype), (o.dtype,) if o.op is not OpType.AGGREGATE
                                 else (DType.BF16, DType.FP32))
    if out not in allowed:
        fail(f"result {o.outputs[0]} is {out.key}; accepted: "
             f"{', '.join(d.key for d in allowed)}")
    if reduce and out is DType.INT8 and "requant" not in o.attrs:
        fail(f"an INT8 result {o.outputs[0]} needs attrs['requant'] (scale, zero_point)")


def _check_shapes(g: Graph, o: MicroOp) -> None:
    """Operand and result shapes consistent with the operation's dimensions."""
    def fail(msg: str) -> None:
        raise IRError(f"Micro-op {o.id!r} ({o.op.value}): {msg}")

    sh = o.shape
    if o.op in (OpType.GEMM, OpType.SPMM):
        if len(o.inputs) not in (2, 3) or len(o.outputs) != 1:
            fail("needs inputs (a, b[, c]) and one output")
        a, b = _mat(o.inputs[0], o.id, "a"), _mat(o.inputs[1], o.id, "b")
        y = _mat(o.outputs[0], o.id, "output")
        want = {"M": a[0], "K": a[1], "N": b[1]}
        if a[1] != b[0] or y != (a[0], b[1]) or dict(sh) != want:
            fail(f"shapes a{list(a)} @ b{list(b)} -> {list(y)} disagree with {dict(sh)}")
        if len(o.inputs) == 3:
            c = o.inputs[2]
            cs = _mat(c, o.id, "c")
            bc = o.attrs.get("c_broadcast")
            want_c = {None: y, "row": (1, y[1]), "col": (y[0], 1)}.get(bc)
            if want_c is None:
                fail(f"attrs['c_broadcast'] is {bc!r}; accepted: None, 'row', 'col'")
            if cs != want_c:
                fail(f"accumulator c{list(cs)} does not match the output {list(y)} "
                     f"(c_broadcast={bc!r})")
        if o.op is OpType.SPMM and o.attrs.get("sparse_operand") not in (0, 1):
            fail("attrs['sparse_operand'] must be 0 (a) or 1 (b)")
    elif o.op is OpType.CONV:
        if len(o.inputs) not in (2, 3) or len(o.outputs) != 1:
            fail("needs inputs (x, w[, c]) and one output")
        x, w = _mat(o.inputs[0], o.id, "x", 3), _mat(o.inputs[1], o.id, "w", 4)
        y = _mat(o.outputs[0], o.id, "output", 3)
        want = {"IC": x[0], "H": x[1], "W": x[2], "OC": w[0], "KH": w[2], "KW": w[3],
                "OH": y[1], "OW": y[2]}
        if w[1] != x[0] or y[0] != w[0] or dict(sh) != want:
            fail(f"shapes x{list(x)} * w{list(w)} -> y{list(y)} disagree with {dict(sh)}")
        (sh_, sw), (pt, pl, pb, pr) = o.attrs["strides"], o.attrs["pads"]
        oh = (x[1] + pt + pb - w[2]) // sh_ + 1
        ow = (x[2] + pl + pr - w[3]) // sw + 1
        if (oh, ow) != (y[1], y[2]):
            fail(f"output {y[1]}x{y[2]} but strides/pads give {oh}x{ow}")
        if len(o.inputs) == 3:
            cs = o.inputs[2].shape
            if o.inputs[2].last_dims(1) != (y[0],) and o.inputs[2].last_dims(3) != tuple(y):
                fail(f"accumulator c{list(cs)} must be per output channel [{y[0]}] or match "
                     f"the output {list(y)}")
    elif o.op in (OpType.ACT, OpType.QUANTIZE, OpType.DEQUANTIZE):
        if len(o.inputs) != 1 or len(o.outputs) != 1:
            fail("needs one input and one output")
        if o.inputs[0].size != o.outputs[0].size or sh.get("n") != o.outputs[0].size:
            fail(f"{o.inputs[0]} -> {o.outputs[0]} disagree with n={sh.get('n')}")
    elif o.op is OpType.ELTWISE:
        if len(o.inputs) != 2 or len(o.outputs) != 1:
            fail("needs two inputs and one output")
        n = o.outputs[0].size
        for r in o.inputs:
            if r.shape != o.outputs[0].shape and r.size != 1 and not (
                    o.attrs.get("broadcast") and r.size == o.outputs[0].shape[-1]):
                fail(f"operand {r} does not match the output {o.outputs[0]}")
        if sh.get("n") != n:
            fail(f"n={sh.get('n')} but the output has {n} elements")
    elif o.op is OpType.AGGREGATE:
        adj, x = g.buffers[o.inputs[0].buffer], _mat(o.inputs[1], o.id, "features")
        y = _mat(o.outputs[0], o.id, "output")
        if adj.kind is not BufferKind.CONST:
            fail(f"adjacency {adj.name!r} must be a constant")
        if y[1] != x[1] or o.inputs[0].shape != (y[0], x[0]) or sh.get("features") != x[1]:
            fail(f"adjacency {o.inputs[0]} x features{list(x)} -> {list(y)} disagree with {dict(sh)}")
    elif o.op is OpType.LAYOUT:
        if o.func is LayoutFunc.IM2COL:
            x, cols = _mat(o.inputs[0], o.id, "x", 3), _mat(o.outputs[0], o.id, "cols")
            kh, kw = o.attrs["kernel"]
            (sh_, sw), (pt, pl, pb, pr) = o.attrs["strides"], o.attrs["pads"]
            oh = (x[1] + pt + pb - kh) // sh_ + 1
            ow = (x[2] + pl + pr - kw) // sw + 1
            if cols != (x[0] * kh * kw, oh * ow):
                fail(f"im2col of {list(x)} with kernel {kh}x{kw} cannot give {list(cols)}")
        elif o.func is LayoutFunc.TRANSPOSE:
            if len(o.inputs) != 1 or len(o.outputs) != 1:
                fail("a transpose needs one input and one output")
            a, t = _mat(o.inputs[0], o.id, "input"), _mat(o.outputs[0], o.id, "output")
            if t != (a[1], a[0]) or dict(sh) != {"n": a[0] * a[1]}:
                fail(f"transpose of {list(a)} -> {list(t)} with {dict(sh)}; accepted: "
                     f"[R, C] -> [C, R] with n = R*C")
        elif o.func is LayoutFunc.COPY:
            if len(o.inputs) != 1 or tuple(o.inputs[0].shape) != tuple(o.outputs[0].shape):
                fail(f"a copy's input {list(o.inputs)} and output {o.outputs[0]} must have "
                     f"one shape")
        else:
            fail(f"layout function {o.func!r}; accepted: "
                 f"{', '.join(f.name for f in LayoutFunc)}")


def verify(g: Graph) -> None:
    """Check every invariant of the IR; raise :class:`IRError` naming the first failure.

    Checks: the DAG is acyclic; each node's ``op`` has the node's id; every operand box
    lies in its buffer; every element a micro-op reads was written by one of its DAG
    predecessors, or is a graph input or constant; every element is written at most once;
    the recorded dependencies equal the DAG edges; operand shapes agree with the
    operation's dimensions and operand/result data types with its data type; every graph output is completely written; every micro-op's
    result is used (no part of the graph is disconnected from the outputs).
    """
    order = list(g.dag.nodes)  # insertion order, topological if every edge goes forward
    pos = {n: i for i, n in enumerate(order)}
    if any(pos[u] >= pos[v] for u, v in g.dag.edges):
        if not nx.is_directed_acyclic_graph(g.dag):
            cycle = nx.find_cycle(g.dag)
            raise IRError(f"The micro-op graph has a cycle: "
                          f"{' -> '.join(u for u, _ in cycle)} -> {cycle[0][0]}")
        order = list(nx.topological_sort(g.dag))
    index = _WriterIndex(g)
    read: set[str] = set()
    for i, n in enumerate(order):
        o = g.dag.nodes[n].get("op")
        if not isinstance(o, MicroOp) or o.id != n:
            raise IRError(f"DAG node {n!r} has no micro-op with that id in its 'op' attribute")
        for r in o.inputs + o.outputs:
            _check_ref(g, o.id, r)
        preds = set(g.dag._pred[n])
        if set(o.deps) != preds:
            raise IRError(f"Micro-op {n!r}: recorded dependencies {sorted(o.deps)} differ from "
                          f"its DAG predecessors {sorted(preds)}")
        producers: set[str] = set()
        for r in o.inputs:
            read.add(r.buffer)
            idx = index.writers(r)
            if idx is None:
                continue
            if idx[0] < 0:
                raise IRError(f"Micro-op {n!r} reads {r}, part of which is not produced by a "
                              f"micro-op before it, a constant or a graph input")
            producers.update(order[j] for j in idx)
        if producers != preds:
            raise IRError(f"Micro-op {n!r}: it reads data from {sorted(producers)} but its "
                          f"DAG predecessors are {sorted(preds)}")
        for r in o.outputs:
            other = index.write(o.id, r, i)
            if other is not None:
                raise IRError(f"Micro-op {n!r} writes {r}, already written by {order[other]!r}")
        _check_shapes(g, o)
        _check_dtypes(g, o)
    for name in g.outputs:
        if index.unwritten(name):
            raise IRError(f"Graph output {name!r} is not completely written by the micro-ops")
    read = {g.base(b).name for b in read}
    # Disconnected parts: a micro-op whose results nobody reads and that is not an output.
    outs = {g.base(o).name for o in g.outputs}
    for o in g.ops:
        if g.dag.out_degree(o.id) == 0 and not any(g.base(r.buffer).name in outs
                                                   for r in o.outputs):
            raise IRError(f"Micro-op {o.id!r} is disconnected: nothing reads its result "
                          f"{', '.join(map(str, o.outputs))} and it is not a graph output")
    for name in g.inputs:
        if name not in read:
            raise IRError(f"Graph input {name!r} is disconnected: no micro-op reads it")


# -- passes -----------------------------------------------------------------------------

class Pass:
    """A named transformation or analysis of a :class:`Graph` (xDSL / torch.fx style).

    Subclasses set :attr:`name` and implement :meth:`run`, returning the (new or updated)
    graph. An analysis annotates micro-ops in place and returns the same graph.
    :meth:`requires` and :meth:`ensures` state a pass's pre- and postconditions beyond the
    IR's invariants; the :class:`Pipeline` checks them around :meth:`run`.
    """

    name: str = "pass"

    def run(self, graph: Graph) -> Graph:  # pragma: no cover - interface
        raise NotImplementedError

    def requires(self, graph: Graph) -> None:
        """Raise :class:`IRError` if ``graph`` is not a valid input of this pass."""

    def ensures(self, graph: Graph) -> None:
        """Raise :class:`IRError` if ``graph`` is not what this pass promises to produce."""

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)


class FunctionPass(Pass):
    """A pass made from a function ``Graph -> Graph``."""

    def __init__(self, name: str, fn: Callable[[Graph], Graph]):
        self.name = name
        self._fn = fn

    def run(self, graph: Graph) -> Graph:
        return self._fn(graph)


class Pipeline:
    """Run passes in order, verifying the IR after each one and optionally dumping it.

    Parameters
    ----------
    passes : sequence of Pass
    verify_each : bool
        Run :func:`verify` after every pass (and once before the first).
    dump : callable(str pass_name, Graph) or None
        Called after every pass, e.g. ``lambda name, g: print(g.dump())``.
    """

    def __init__(self, passes: Sequence[Pass], verify_each: bool = True,
                 dump: Callable[[str, Graph], None] | None = None):
        self.passes = list(passes)
        self.verify_each = verify_each
        self.dump = dump
        self.timings: dict[str, float] = {}

    def run(self, graph: Graph) -> Graph:
        # Building 1e5 micro-ops allocates millions of small objects and no garbage
        # cycles; the cyclic collector would rescan them all again and again.
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(graph)
        finally:
            if gc_enabled:
                gc.enable()

    def _run(self, graph: Graph) -> Graph:
        if self.verify_each:
            verify(graph)
        for p in self.passes:
            try:
                p.requires(graph)
            except IRError as e:
                raise IRError(f"before pass {p.name!r}: {e}") from None
            t0 = time.perf_counter()
            graph = p.run(graph)
            self.timings[p.name] = time.perf_counter() - t0
            try:
                if self.verify_each:
                    verify(graph)
                p.ensures(graph)
            except IRError as e:
                raise IRError(f"after pass {p.name!r}: {e}") from None
            if self.dump is not None:
                self.dump(p.name, graph)
        return graph
