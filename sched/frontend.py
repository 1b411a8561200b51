"""ONNX import: an ONNX model becomes an operator-level micro-op :class:`~accelpool.sched.ir.Graph`.

Each supported ONNX operator becomes one whole-tensor micro-op (or a few: a float Conv is
an im2col plus a GEMM per image); :mod:`accelpool.sched.decompose` then tiles them to the pool.

Data types
----------
Float32 models are lowered to the pool's data types: every float tensor becomes BF16
(weights rounded to nearest even when the model is imported, graph inputs when they are
written to memory), GEMMs accumulate in FP32 and round their result to BF16, biases are
kept in FP32 as the accumulator's initial value. INT8 tensors of quantised operators
stay INT8, their accumulators INT32. So a float model's results differ from float32
onnxruntime by BF16 rounding (see :mod:`accelpool.sched.reference` for the tolerances).

What is accepted
----------------
Models of ai.onnx opset :data:`SUPPORTED_OPSETS` using :data:`SUPPORTED_OPS`, every
dimension of a graph input at least 1; with a pool, the inputs, outputs, constants and the
largest set of live intermediate results must fit its memory tile (:func:`check_memory_fit`).
Constant sub-graphs (Transpose/Reshape/DequantizeLinear of a
weight, Shape arithmetic, Constant nodes) are folded at import with
:class:`onnx.reference.ReferenceEvaluator`, so they may use any ONNX operator. Layout
operators (Flatten, Reshape, Squeeze, Unsqueeze, Identity, and Transpose moving only
size-1 dimensions) of computed tensors become buffer aliases: no data moves. A
``MatMul(A, X)`` with a constant sparse square ``A`` whose non-zeros are all 1 (sum) or
1/row-degree (mean) is graph aggregation (GNN unit). Quantised operators need per-tensor
scales, int8 data and symmetric weights (weight zero point 0); the activation zero point
is folded into the INT32 bias (``-zp * column sums of W``) and, for convolutions, is the
padding value. QDQ-format models (DequantizeLinear -> MatMul/Conv -> QuantizeLinear) are
first rewritten into QLinearMatMul/QLinearConv (:func:`fuse_qdq`). A float graph input
read only by QuantizeLinear is quantised by the host as it is written to memory.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ml_dtypes
import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from accelpool.spec.config import DType, PoolConfig
from accelpool.spec.golden.numerics import fp32_to_bf16, quantize_multiplier

from .ir import (ACC_DTYPE, ActFunc, AggFunc, Buffer, BufferKind, EltwiseFunc, Graph, LayoutFunc,
                 MicroOp, OpType, QuantParams, TensorRef, capable_units, sanitize, sanitize_names)

__all__ = ["FrontendError", "SUPPORTED_OPS", "load_onnx", "import_model", "check_pool_support",
           "fuse_qdq", "AGGREGATE_MAX_DENSITY", "input_buffer_names", "graph_inputs",
           "SUPPORTED_OPSETS", "memory_needed", "check_memory_fit"]


class FrontendError(ValueError):
    """A model the frontend cannot take; the message names the node or tensor and what is accepted."""


#: Opset versions of the default domain (``ai.onnx``, written ``""`` in a model) that are
#: accepted: from the oldest onnxruntime guarantees to the newest for which the installed
#: onnxruntime (1.32) implements every supported operator (it has no QuantizeLinear of
#: opset 28); the golden comparison runs every model on it.
SUPPORTED_OPSETS = range(7, 28)

#: A constant left operand of MatMul is recognised as an adjacency if at most this fraction is non-zero.
AGGREGATE_MAX_DENSITY = 0.5

_ELEM_TO_DTYPE = {onnx.TensorProto.FLOAT: DType.BF16, onnx.TensorProto.INT8: DType.INT8,
                  onnx.TensorProto.INT32: DType.INT32}
_NP = {DType.BF16: ml_dtypes.bfloat16, DType.FP32: np.float32, DType.INT8: np.int8,
       DType.INT32: np.int32}


def _elem_name(t: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(t).name if t else "undefined"


def _optional_input(node: onnx.NodeProto, i: int) -> str:
    """The name of ``node``'s input ``i``, or ``''`` when the node has fewer inputs."""
    return node.input[i] if len(node.input) > i else ""


# -- loading ----------------------------------------------------------------------------

def load_onnx(model: str | Path | bytes | onnx.ModelProto,
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> onnx.ModelProto:
    """Read, check and shape-infer an ONNX model.

    Parameters
    ----------
    model : path, bytes or ModelProto
    input_shapes : mapping name -> shape, optional
        Fixed shapes for graph inputs with dynamic dimensions.

    Raises
    ------
    FrontendError
        For an unreadable or invalid file, a cyclic or disconnected graph, or shapes that
        cannot be resolved.
    """
    where = str(model) if isinstance(model, (str, Path)) else "<model>"
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        try:
            data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        except OSError as e:
            raise FrontendError(f"{where}: cannot read the model ({e.strerror})") from None
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as e:  # protobuf DecodeError and friends
            raise FrontendError(f"{where}: not a valid ONNX file (protobuf decoding failed: "
                                f"{type(e).__name__}: {e})") from None
        if not proto.graph.node and not proto.graph.output:
            raise FrontendError(f"{where}: not a valid ONNX file (no graph: the file is empty "
                                f"or not an ONNX model)")
    _check_text(proto, where)
    _check_opset(proto, where)
    _check_initializers(proto, where)
    _check_structure(proto, where)
    _fix_input_shapes(proto, where, dict(input_shapes or {}))
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # ValidationError, and UnicodeDecodeError of a corrupt string
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise FrontendError(f"{where}: the ONNX checker rejects the model: {why}") from None
    try:
        proto = shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                             data_prop=True)
    except Exception as e:
        raise FrontendError(f"{where}: ONNX shape inference failed: "
                            f"{str(e).splitlines()[0]}") from None
    fuse_qdq(proto)
    return proto


# -- QDQ fusion ---------------------------------------------------------------------------

def fuse_qdq(proto: onnx.ModelProto) -> int:
    """Rewrite QDQ-format quantised MatMul/Conv into QLinearMatMul/QLinearConv, in place.

    The pattern (as onnxruntime's static quantisation writes it)::

        DequantizeLinear(x_q) --+
        DequantizeLinear(W_q) --+-- MatMul|Conv -- QuantizeLinear --> y_q
        [DequantizeLinear(B_q)]-+

    with int8 ``x_q``, constant int8 ``W_q`` with per-tensor scale and zero point 0,
    optional constant int32 bias ``B_q`` of scale ``x_scale * w_scale`` (Conv only), and the
    product read only by the QuantizeLinear, becomes one integer operator (LPU or CE work)
    producing ``y_q``. Anything else stays as it is (float operators with Q/DQ on the AFU,
    which is correct but does not use the INT8 units). Returns the number of fusions.
    """
    g = proto.graph
    qdq = _QdqGraph(proto)
    new_inits: list[onnx.TensorProto] = []
    replaced: dict[int, onnx.NodeProto] = {}
    dropped: set[int] = set()
    for node in list(g.node):
        found = qdq.match(node)
        if found is None:
            continue
        qn, x, w, bias = found
        replaced[id(node)] = _qlinear_node(node, qn, x, w, bias, new_inits)
        dropped.add(id(qn))
    if not replaced:
        return 0
    nodes = [replaced.get(id(n), n) for n in g.node if id(n) not in dropped]
    nodes = _without_unread_dequantize(nodes, qdq.outputs)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new_inits)
    return len(replaced)


#: ``(DequantizeLinear node, q tensor, scale tensor, zero-point tensor or '')``
_DqParts = tuple[onnx.NodeProto, str, str, str]


class _QdqGraph:
    """The lookups :func:`fuse_qdq` makes on a graph: producers, readers and constants."""

    def __init__(self, proto: onnx.ModelProto):
        g = proto.graph
        self.proto = proto
        self.inits = {t.name: t for t in g.initializer}
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        self.outputs = {o.name for o in g.output}

    def const(self, name: str) -> np.ndarray | None:
        """The value of initializer ``name``, or None if it is not one."""
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def dq_parts(self, t: str, want_const: bool, dtype) -> _DqParts | None:
        """The parts of the per-tensor DequantizeLinear producing ``t``: of a constant
        ``dtype`` tensor with ``want_const``, else of a computed INT8 one; or None."""
        const = self.const
        n = self.producer.get(t)
        if n is None or n.op_type != "DequantizeLinear" or n.domain not in ("", "ai.onnx"):
            return None
        if any(a.name == "axis" for a in n.attribute) and const(n.input[1]) is not None \
                and const(n.input[1]).size != 1:
            return None
        q, sc = n.input[0], n.input[1]
        zp = _optional_input(n, 2)
        scv = const(sc)
        if scv is None or scv.size != 1 or (zp and (const(zp) is None or const(zp).size != 1)):
            return None
        qv = const(q)
        if want_const:
            if qv is None or qv.dtype != dtype:
                return None
        else:
            et = _value_elem_type(self.proto, q)
            if qv is not None or et != onnx.TensorProto.INT8:
                return None
        return n, q, sc, zp

    def match(self, node: onnx.NodeProto
              ) -> tuple[onnx.NodeProto, _DqParts, _DqParts, _DqParts | None] | None:
        """``(QuantizeLinear, x, W, bias or None)`` when ``node`` is the MatMul or Conv of
        the pattern :func:`fuse_qdq` fuses, else None."""
        const = self.const
        if node.op_type not in ("MatMul", "Conv") or node.domain not in ("", "ai.onnx"):
            return None
        users = self.consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or node.output[0] in self.outputs:
            return None
        qn = users[0]
        if len(qn.input) < 3 or const(qn.input[1]) is None or const(qn.input[2]) is None \
                or const(qn.input[2]).dtype != np.int8 or const(qn.input[1]).size != 1:
            return None
        x = self.dq_parts(node.input[0], False, None)
        w = self.dq_parts(node.input[1], True, np.int8)
        if x is None or w is None or (w[3] and np.any(const(w[3]) != 0)):
            return None
        bias = None
        if node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
            b = self.dq_parts(node.input[2], True, np.int32)
            want = np.float32(const(x[2]).reshape(())) * np.float32(const(w[2]).reshape(()))
            if b is None or (b[3] and np.any(const(b[3]) != 0)) or \
                    not np.isclose(np.float32(const(b[2]).reshape(())), want, rtol=1e-6):
                return None
            bias = b
        if node.op_type == "MatMul" and (len(_value_shape(self.proto, w[1]) or ()) != 2):
            return None
        return qn, x, w, bias


def _qlinear_node(node: onnx.NodeProto, qn: onnx.NodeProto, x: _DqParts, w: _DqParts,
                  bias: _DqParts | None, new_inits: list[onnx.TensorProto]) -> onnx.NodeProto:
    """The QLinearMatMul or QLinearConv replacing ``node`` and its QuantizeLinear ``qn``; a
    zero point the pattern leaves out becomes an INT8 zero appended to ``new_inits``."""
    zero = f"{node.name or node.output[0]}_qdq_zero"
    x_zp = x[3]
    if not x_zp:
        x_zp = zero + "_x"
        new_inits.append(numpy_helper.from_array(np.int8(0), x_zp))
    w_zp = w[3]
    if not w_zp:
        w_zp = zero + "_w"
        new_inits.append(numpy_helper.from_array(np.int8(0), w_zp))
    ins = [x[1], x[2], x_zp, w[1], w[2], w_zp, qn.input[1], qn.input[2]]
    if node.op_type == "Conv":
        if bias is not None:
            ins.append(bias[1])
        new = onnx.helper.make_node("QLinearConv", ins, [qn.output[0]], name=node.name)
        new.attribute.extend(node.attribute)
    else:
        new = onnx.helper.make_node("QLinearMatMul", ins, [qn.output[0]], name=node.name)
    return new


def _without_unread_dequantize(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` less the DequantizeLinear nodes nothing reads any more (those that only fed
    fused operators), repeated until none is left."""
    while True:
        read = {t for n in nodes for t in n.input} | outputs
        keep = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
        if len(keep) == len(nodes):
            return nodes
        nodes = keep


def _value_elem_type(proto: onnx.ModelProto, name: str) -> int:
    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        if vi.name == name:
            return vi.type.tensor_type.elem_type
    return 0


def _value_shape(proto: onnx.ModelProto, name: str) -> tuple[int, ...] | None:
    for t in proto.graph.initializer:
        if t.name == name:
            return tuple(t.dims)
    return None


def _node_name(node: onnx.NodeProto, i: int) -> str:
    return node.name or f"{node.op_type}_{i}"


def _check_text(proto: onnx.ModelProto, where: str) -> None:
    """Every name in the graph must be UTF-8 text (protobuf hands invalid text over as bytes)."""
    g = proto.graph
    items = [("graph input", vi.name) for vi in g.input] + \
        [("graph output", vi.name) for vi in g.output] + \
        [("value_info", vi.name) for vi in g.value_info] + \
        [("initializer", t.name) for t in g.initializer]
    for i, n in enumerate(g.node):
        items += [(f"node {i}'s name", n.name), (f"node {i}'s op_type", n.op_type),
                  (f"node {i}'s domain", n.domain)]
        items += [(f"a tensor name of node {i}", t) for t in list(n.input) + list(n.output)]
        items += [(f"an attribute name of node {i}", a.name) for a in n.attribute]
    for what, text in items:
        if not isinstance(text, str):
            raise FrontendError(f"{where}: not a valid ONNX file: {what} ({text!r}) is not "
                                f"UTF-8 text")


def _check_opset(proto: onnx.ModelProto, where: str) -> None:
    """The model's ``ai.onnx`` opset must be in :data:`SUPPORTED_OPSETS`."""
    lo, hi = SUPPORTED_OPSETS[0], SUPPORTED_OPSETS[-1]
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise FrontendError(f"{where}: the model imports no opset of the default domain "
                            f"ai.onnx; accepted: ai.onnx opset {lo} to {hi}")
    for v in versions:
        if v not in SUPPORTED_OPSETS:
            raise FrontendError(f"{where}: the model uses ai.onnx opset {v}; accepted: ai.onnx "
                                f"opset {lo} to {hi}")


def _check_initializers(proto: onnx.ModelProto, where: str) -> None:
    """Every initializer's data must decode to its declared shape, and names be unique."""
    seen: set[str] = set()
    for t in proto.graph.initializer:
        if t.name in seen:
            raise FrontendError(f"{where}: initializer {t.name!r} is defined twice; every "
                                f"tensor must have one producer")
        seen.add(t.name)
        try:
            numpy_helper.to_array(t)
        except Exception as e:
            raise FrontendError(f"{where}: initializer {t.name!r} of shape {list(t.dims)} "
                                f"cannot be decoded ({type(e).__name__}: {e}); its data must "
                                f"hold exactly the values its shape declares") from None


def _check_structure(proto: onnx.ModelProto, where: str) -> None:
    """Cycles and disconnected parts, then sort the nodes topologically."""
    g = proto.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer}
    named: dict[str, int] = {}
    for i, n in enumerate(g.node):
        if not n.name:
            continue
        if n.name in named:
            j = named[n.name]
            raise FrontendError(f"{where}: two nodes are named {n.name!r} (a "
                                f"{g.node[j].op_type} and a {n.op_type}); node names must "
                                f"be unique")
        named[n.name] = i
    seen_inputs: set[str] = set()
    for inp in g.input:
        if inp.name in seen_inputs:
            raise FrontendError(f"{where}: graph input {inp.name!r} is listed twice; graph "
                                f"input names must be unique")
        seen_inputs.add(inp.name)
    producer: dict[str, int] = {}
    for i, n in enumerate(g.node):
        for o in n.output:
            if not o:
                continue
            if o in producer:
                j = producer[o]
                raise FrontendError(
                    f"{where}: tensor {o!r} is written by two nodes, "
                    f"{_node_name(g.node[j], j)!r} ({g.node[j].op_type}) and "
                    f"{_node_name(n, i)!r} ({n.op_type}); every tensor must have one producer")
            if o in known:
                what = "an initializer" if o in {t.name for t in g.initializer} else \
                    "a graph input"
                raise FrontendError(
                    f"{where}: node {_node_name(n, i)!r} ({n.op_type}) writes tensor {o!r}, "
                    f"which is {what}; every tensor must have one producer")
            producer[o] = i
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(g.node)))
    for i, n in enumerate(g.node):
        for t in n.input:
            if not t:
                continue
            if t in producer:
                dag.add_edge(producer[t], i)
            elif t not in known:
                raise FrontendError(
                    f"{where}: the graph is disconnected: node {_node_name(n, i)!r} "
                    f"({n.op_type}) reads tensor {t!r}, which no node, initializer or graph "
                    f"input produces")
    if not nx.is_directed_acyclic_graph(dag):
        cyc = nx.find_cycle(dag)
        names = [f"{_node_name(g.node[u], u)} ({g.node[u].op_type})" for u, _ in cyc]
        raise FrontendError(f"{where}: the graph has a cycle: {' -> '.join(names)} -> "
                            f"{names[0]}; ONNX graphs must be acyclic")
    for o in g.output:
        if o.name not in producer and o.name not in known:
            raise FrontendError(f"{where}: the graph is disconnected: graph output "
                                f"{o.name!r} is produced by no node")
    # Nodes that do not lead to any output, and inputs nobody reads.
    needed: set[int] = set()
    for o in g.output:
        if o.name in producer:
            p = producer[o.name]
            needed |= {p} | nx.ancestors(dag, p)
    for i, n in enumerate(g.node):
        if i not in needed:
            raise FrontendError(f"{where}: the graph is disconnected: node "
                                f"{_node_name(n, i)!r} ({n.op_type}) contributes to no graph "
                                f"output")
    used = {t for n in g.node for t in n.input} | {o.name for o in g.output}
    inits = {t.name for t in g.initializer}
    for i in g.input:
        if i.name not in used and i.name not in inits:
            raise FrontendError(f"{where}: the graph is disconnected: graph input {i.name!r} "
                                f"is read by no node")
    order = list(nx.lexicographical_topological_sort(dag))
    nodes = [g.node[i] for i in order]
    taken = set(named)
    for i, n in enumerate(nodes):
        if not n.name:
            name, k = f"{n.op_type}_{order[i]}", 0
            while name in taken:
                k += 1
                name = f"{n.op_type}_{order[i]}_{k}"
            n.name = name
            taken.add(name)
    del g.node[:]
    g.node.extend(nodes)


def _fix_input_shapes(proto: onnx.ModelProto, where: str,
                      shapes: dict[str, Sequence[int]]) -> None:
    inits = {t.name for t in proto.graph.initializer}
    names = [i.name for i in proto.graph.input if i.name not in inits]
    for name in shapes:
        if name not in names:
            raise FrontendError(f"{where}: input_shapes names {name!r}, which is not a graph "
                                f"input; inputs: {', '.join(names)}")
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dims = tt.shape.dim
        if inp.name in shapes:
            want = [int(d) for d in shapes[inp.name]]
            if len(want) != len(dims) or any(d < 1 for d in want):
                raise FrontendError(f"{where}: shape {want} for input {inp.name!r} must have "
                                    f"{len(dims)} positive dimensions")
            for d, v in zip(dims, want):
                if d.HasField("dim_value") and d.dim_value != v:
                    raise FrontendError(f"{where}: input {inp.name!r} dimension is fixed at "
                                        f"{d.dim_value}, not {v}")
                d.Clear()
                d.dim_value = v
            continue
        if not tt.HasField("shape"):
            raise FrontendError(f"{where}: input {inp.name!r} has no shape (unknown rank); "
                                f"dynamic shapes cannot be resolved: give it a fixed shape "
                                f"(input_shapes / accelpool compile --shape {inp.name}=...)")
        shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        for k, d in enumerate(dims):
            if d.HasField("dim_value") and d.dim_value == 0:
                raise FrontendError(
                    f"{where}: input {inp.name!r} has shape {shown}: dimension {k} is 0; "
                    f"zero-sized tensors are not supported (every dimension must be >= 1)")
        for k, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise FrontendError(
                    f"{where}: input {inp.name!r} has dynamic shape {shown}: dimension {k} "
                    f"({shown[k]!r}) cannot be resolved; give a fixed shape (input_shapes / "
                    f"accelpool compile --shape {inp.name}="
                    f"{','.join(str(s) if isinstance(s, int) and s > 0 else '1' for s in shown)})")


# -- import -----------------------------------------------------------------------------

def graph_inputs(proto: onnx.ModelProto) -> list[str]:
    """The names of the graph inputs that are not initializers, in graph order."""
    inits = {t.name for t in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in inits]


def input_buffer_names(proto: onnx.ModelProto) -> dict[str, str]:
    """ONNX graph input name -> name of its input buffer in the imported graph.

    Every consumer of host inputs keyed by ONNX name (the golden run, codegen's memory
    image) translates them with this mapping (:func:`accelpool.sched.ir.sanitize_names`).
    """
    return sanitize_names(graph_inputs(proto))

Handler = Callable[["_Importer", onnx.NodeProto], None]
_HANDLERS: dict[str, Handler] = {}


def _handles(*ops: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for o in ops:
            _HANDLERS[o] = fn
        return fn
    return deco


#: Pooling has no unit in the pool; rejected with a message that says so.
_POOLING = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")


class _Importer:
    """State of one import: constants, tensor -> buffer map, the graph being built."""

    def __init__(self, proto: onnx.ModelProto, name: str, flit_bytes: int = 8):
        self.proto = proto
        self.flit_bytes = flit_bytes        # the pool's NoC flit: rows move in whole flits
        self.graph = Graph(name)
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                              for t in proto.graph.initializer}
        self.tensor_buf: dict[str, str] = {}  # ONNX tensor -> buffer name
        self.types: dict[str, tuple[int, tuple[int, ...] | None]] = {}
        for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
            tt = vi.type.tensor_type
            shape = None
            if tt.HasField("shape"):
                dims = tt.shape.dim
                if all(d.HasField("dim_value") for d in dims):
                    shape = tuple(d.dim_value for d in dims)
            self.types[vi.name] = (tt.elem_type, shape)
        self.output_names = [o.name for o in proto.graph.output]
        self.node: onnx.NodeProto | None = None
        self._const_count = 0

    # errors naming the node
    def fail(self, msg: str) -> FrontendError:
        n = self.node
        return FrontendError(f"node {n.name!r} ({n.op_type}): {msg}")

    # tensors
    def is_const(self, t: str) -> bool:
        return t in self.consts

    def const(self, t: str, what: str) -> np.ndarray:
        if t not in self.consts:
            raise self.fail(f"{what} ({t!r}) must be a constant (an initializer or computed "
                            f"from constants only)")
        return self.consts[t]

    def shape(self, t: str) -> tuple[int, ...]:
        if t in self.consts:
            return tuple(self.consts[t].shape)
        et, shape = self.types.get(t, (0, None))
        if shape is None:
            raise FrontendError(f"node {self.node.name!r} ({self.node.op_type}): the shape of "
                                f"tensor {t!r} could not be inferred (dynamic shapes cannot be "
                                f"resolved); give the graph inputs fixed shapes")
        return shape

    def dtype(self, t: str) -> DType:
        et = self.types.get(t, (0, None))[0]
        if et not in _ELEM_TO_DTYPE:
            raise self.fail(f"tensor {t!r} has data type {_elem_name(et)}; accepted: float32 "
                            f"(lowered to bf16), int8, int32")
        return _ELEM_TO_DTYPE[et]

    def buf(self, t: str) -> Buffer:
        """The buffer holding computed tensor ``t``."""
        if t in self.consts:
            raise AssertionError(f"{t} is a constant")
        return self.graph.buffers[self.tensor_buf[t]]

    def const_buffer(self, value: np.ndarray, dtype: DType, stem: str,
                     quant: QuantParams | None = None) -> Buffer:
        """A constant buffer holding ``value`` converted to ``dtype`` (BF16 rounds to nearest even)."""
        if dtype is DType.BF16:  # the host's conversion: RNE, flush to zero (numerics)
            data = np.asarray(fp32_to_bf16(np.asarray(value, np.float32)))
        elif dtype in (DType.INT8, DType.INT32):
            v = np.asarray(value)
            info = np.iinfo(_NP[dtype])
            if v.size and (v.min() < info.min or v.max() > info.max):
                raise self.fail(f"constant {stem!r} does not fit {dtype.key}")
            data = v.astype(_NP[dtype])
        else:
            data = np.asarray(value, np.float32)
        if data.ndim == 0:
            data = data.reshape(1)
        name = self.graph.unique_name(sanitize(stem))
        return self.graph.add_buffer(Buffer(name, tuple(data.shape), dtype, BufferKind.CONST,
                                            data=data, quant=quant))

    def result(self, t: str, dtype: DType, shape: tuple[int, ...] | None = None,
               quant: QuantParams | None = None) -> Buffer:
        """A new buffer for node output ``t`` (a graph output if ``t`` is one)."""
        shape = shape or self.shape(t)
        kind = BufferKind.OUTPUT if t in self.output_names else BufferKind.TEMP
        b = self.graph.add_buffer(Buffer(self.graph.unique_name(sanitize(t)), tuple(shape),
                                         dtype, kind, quant=quant))
        self.tensor_buf[t] = b.name
        return b

    def alias(self, t: str, src: Buffer, shape: tuple[int, ...]) -> Buffer:
        """Make ``t`` a reshaped view of ``src``."""
        if t in self.output_names:
            kind = BufferKind.OUTPUT
        else:
            kind = BufferKind.TEMP
        b = self.graph.add_buffer(Buffer(self.graph.unique_name(sanitize(t)), tuple(shape),
                                         src.dtype, kind, alias_of=src.name, quant=src.quant))
        self.tensor_buf[t] = b.name
        return b

    def view(self, src: Buffer, shape: tuple[int, ...]) -> Buffer:
        """An internal view of ``src`` with another shape (reused if it exists)."""
        if tuple(shape) == src.shape:
            return src
        name = f"{src.name}.view{'x'.join(map(str, shape))}"
        if name in self.graph.buffers:
            return self.graph.buffers[name]
        if src.kind is BufferKind.CONST:    # a constant's view is a constant of that shape
            return self.graph.add_buffer(Buffer(name, tuple(shape), src.dtype, BufferKind.CONST,
                                                data=np.asarray(src.data).reshape(shape),
                                                quant=src.quant))
        return self.graph.add_buffer(Buffer(name, tuple(shape), src.dtype, alias_of=src.name,
                                            quant=src.quant))

    def add(self, what: str, op: OpType, dtype: DType, inputs, outputs, **kw) -> MicroOp:
        n = self.node
        return self.graph.add_op(MicroOp(self.graph.unique_name(f"{sanitize(n.name)}/{what}"),
                                         op, dtype, tuple(inputs), tuple(outputs),
                                         source=n.name, source_op=n.op_type, **kw))

    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    # folding
    def fold(self, node: onnx.NodeProto) -> bool:
        """Evaluate ``node`` now if all its inputs are constants (exact ONNX semantics)."""
        ins = [t for t in node.input if t]
        if node.op_type == "Shape":
            shape = self.shape(node.input[0])
            start, end = self.attr("start", 0), self.attr("end", None)
            self.consts[node.output[0]] = np.array(shape[start:end], np.int64)
            return True
        if not all(t in self.consts for t in ins):
            return False
        opset = [o for o in self.proto.opset_import]
        g = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(t, onnx.helper.np_dtype_to_tensor_dtype(
                self.consts[t].dtype), self.consts[t].shape) for t in ins],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in node.output if o])
        m = onnx.helper.make_model(g, opset_imports=opset)
        try:
            outs = ReferenceEvaluator(m).run(None, {t: self.consts[t] for t in ins})
        except Exception as e:
            raise self.fail(f"cannot fold this constant sub-expression: {e}") from None
        for o, v in zip([o for o in node.output if o], outs):
            self.consts[o] = np.asarray(v)
        return True


def import_model(model: str | Path | bytes | onnx.ModelProto, pool: PoolConfig | None = None,
                 name: str | None = None,
                 input_shapes: Mapping[str, Sequence[int]] | None = None) -> Graph:
    """Import an ONNX model as an operator-level micro-op graph.

    Parameters
    ----------
    model : path, bytes or ModelProto
    pool : PoolConfig, optional
        If given, every micro-op must have a unit in the pool (:func:`check_pool_support`).
    name : str, optional
        Graph name (default: the file stem or the ONNX graph name).
    input_shapes : mapping, optional
        Fixed shapes for dynamic graph inputs.

    Raises
    ------
    FrontendError
        Unsupported operators or data types, invalid files or graphs, dynamic shapes.
    """
    proto = load_onnx(model, input_shapes)
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else (proto.graph.name or "model")
    imp = _Importer(proto, sanitize(name),
                    flit_bytes=pool.mesh.flit_bits // 8 if pool is not None else 8)
    inits = {t.name for t in proto.graph.initializer}
    in_names = input_buffer_names(proto)
    for inp in proto.graph.input:
        if inp.name in inits:
            continue
        imp.node = onnx.helper.make_node("Input", [], [inp.name], name=inp.name)
        dt = imp.dtype(inp.name)
        quant = _host_quantized(imp, inp.name)
        b = imp.graph.add_buffer(Buffer(in_names[inp.name], imp.shape(inp.name),
                                        DType.INT8 if quant else dt, BufferKind.INPUT,
                                        quant=quant))
        imp.tensor_buf[inp.name] = b.name
    for node in proto.graph.node:
        imp.node = node
        if node.op_type in _POOLING:
            raise imp.fail(f"pooling is not supported: no unit in the pool takes it (the AFU "
                           f"does activations and element-wise add/mul); supported operators: "
                           f"{', '.join(SUPPORTED_OPS)}")
        if imp.fold(node):
            continue
        handler = _HANDLERS.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise imp.fail(f"unsupported operator {node.op_type!r}"
                           f"{' in domain ' + repr(node.domain) if node.domain else ''}; "
                           f"supported operators: {', '.join(SUPPORTED_OPS)}")
        handler(imp, node)
    g = imp.graph
    for o in proto.graph.output:
        if o.name in imp.consts:
            raise FrontendError(f"graph output {o.name!r} is a constant (computed from "
                                f"constants only); the graph is disconnected from its inputs")
    g.outputs = [imp.tensor_buf[o] for o in imp.output_names]
    if pool is not None:
        check_pool_support(g, pool)
        check_memory_fit(g, pool)
    return g


def memory_needed(graph: Graph) -> tuple[int, int, int]:
    """Bytes the pool's memory must hold at least: (resident, largest live set, total).

    Resident are the graph inputs, outputs and constants (they stay in memory for the
    whole run); the live set is, over the micro-ops in order, the most intermediate
    results held at once (each from the micro-op writing it to the last one reading it).
    ``total = resident + largest live set`` is a lower bound: decomposition adds partial
    sums and the memory image pads rows.
    """
    resident_names = set()
    for b in graph.buffers.values():
        if b.kind is not BufferKind.TEMP:
            resident_names.add(graph.base(b.name).name)
    resident = sum(graph.buffers[n].bytes for n in resident_names)
    ops = list(graph.ops)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, o in enumerate(ops):
        for r in o.inputs + o.outputs:
            n = graph.base(r.buffer).name
            if n in resident_names:
                continue
            first.setdefault(n, i)
            last[n] = i
    delta = [0] * (len(ops) + 1)
    for n, i in first.items():
        delta[i] += graph.buffers[n].bytes
        delta[last[n] + 1] -= graph.buffers[n].bytes
    live = peak = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return resident, peak, resident + peak


def check_memory_fit(graph: Graph, pool: PoolConfig) -> None:
    """Raise :class:`FrontendError` if the graph cannot fit the pool's memory tile.

    Compares :func:`memory_needed` (a lower bound) with the memory tile's ``bytes``.
    """
    resident, peak, total = memory_needed(graph)
    size = pool.memory["bytes"]
    if total > size:
        raise FrontendError(
            f"model {graph.name!r} needs at least {total} bytes of memory ({resident} for its "
            f"inputs, outputs and constants, {peak} for the largest set of intermediate "
            f"results live at once), but the memory tile {pool.memory.name!r} of pool "
            f"{pool.name!r} has {size} bytes; accepted: models that fit, or a pool config "
            f"with a larger memory tile (bytes =)")


def check_pool_support(graph: Graph, pool: PoolConfig) -> None:
    """Raise :class:`FrontendError` if a micro-op's operation and data type has no unit in ``pool``."""
    have = {(t.kind, d) for t in pool.units for d in t.dtypes}
    for o in graph.ops:
        kinds = capable_units(o.op, o.dtype)
        if any(k.name == "MEMORY" for k in kinds):
            continue
        if not any((k, o.dtype) in have for k in kinds):
            offer = sorted({f"{t.kind.key}({'/'.join(d.key for d in t.dtypes)})" for t in pool.units})
            need = ", ".join(k.key for k in kinds) or "no unit kind at all"
            raise FrontendError(
                f"node {o.source!r} ({o.source_op}): {o.op.value} on {o.dtype.key} data needs "
                f"{need} with {o.dtype.key}, which no unit in pool {pool.name!r} supports; the "
                f"pool has: {', '.join(offer)}")


# -- handlers ---------------------------------------------------------------------------

def _matrix(imp: _Importer, b: Buffer) -> Buffer:
    """A 2-D view [prod(leading), last] of a buffer."""
    if len(b.shape) == 2:
        return b
    if len(b.shape) == 1:
        return imp.view(b, (1, b.shape[0]))
    return imp.view(b, (math.prod(b.shape[:-1]), b.shape[-1]))


def _as_matrix_const(imp: _Importer, v: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(v)
    while v.ndim > 2 and v.shape[0] == 1:
        v = v[0]
    if v.ndim == 1:
        v = v.reshape(-1, 1) if what == "b" else v.reshape(1, -1)
    if v.ndim != 2:
        raise imp.fail(f"constant operand {what} of shape {list(v.shape)} must be a matrix "
                       f"(batched matrix products are not supported)")
    return v


def _float_operand(imp: _Importer, t: str) -> None:
    if imp.dtype(t) is not DType.BF16:
        raise imp.fail(f"input {t!r} is {imp.dtype(t).key}; this operator takes float32 "
                       f"(bf16) tensors; quantised forms: QLinearMatMul, QLinearConv, "
                       f"MatMulInteger, ConvInteger")


def _adjacency_kind(a: np.ndarray) -> AggFunc | None:
    """SUM if the non-zeros are all 1, MEAN if each row's are 1/degree, else None."""
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.size == 0:
        return None
    nz = a != 0
    if nz.mean() > AGGREGATE_MAX_DENSITY or not nz.any(axis=1).all():
        return None
    if np.all(a[nz] == 1):
        return AggFunc.SUM
    deg = nz.sum(axis=1, keepdims=True)
    want = np.broadcast_to(np.float32(1) / deg.astype(np.float32), a.shape)
    if np.all(a[nz] == want[nz]):
        return AggFunc.MEAN
    return None


@_handles("MatMul")
def _matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    ta, tb = node.input
    out = node.output[0]
    if imp.is_const(ta) and not imp.is_const(tb):
        a = np.asarray(imp.consts[ta], np.float32)
        kind = _adjacency_kind(a)
        _float_operand(imp, tb)
        x = imp.buf(tb)
        if kind is not None and len(x.shape) == 2:
            adj = imp.const_buffer(a, DType.BF16, f"{ta}")
            y = imp.result(out, DType.BF16)
            nnz = int(np.count_nonzero(a))
            imp.add("aggregate", OpType.AGGREGATE, DType.BF16,
                    [TensorRef.whole(adj), TensorRef.whole(x)], [TensorRef.whole(y)],
                    func=kind, shape={"nodes": a.shape[0], "edges": nnz, "features": x.shape[1]},
                    sparsity=1 - nnz / a.size)
            return
        am = _as_matrix_const(imp, a, "a")
        if len(x.shape) != 2:
            raise imp.fail(f"a constant left operand needs a matrix right operand, not "
                           f"{list(x.shape)}")
        abuf = imp.const_buffer(am, DType.BF16, ta)
        y = imp.result(out, DType.BF16)
        imp.add("gemm", OpType.GEMM, DType.BF16, [TensorRef.whole(abuf), TensorRef.whole(x)],
                [TensorRef.whole(_matrix(imp, y))], shape={"M": am.shape[0], "K": am.shape[1],
                                                           "N": x.shape[1]})
        return
    _float_operand(imp, ta)
    _gemm_core(imp, out, imp.buf(ta), tb, None, DType.BF16)


def _b_operand(imp: _Importer, tb: str, dtype: DType, quant: QuantParams | None = None) -> Buffer:
    if imp.is_const(tb):
        v = _as_matrix_const(imp, imp.consts[tb], "b")
        return imp.const_buffer(v, dtype, tb, quant)
    b = imp.buf(tb)
    if b.dtype is not dtype:
        raise imp.fail(f"operand {tb!r} is {b.dtype.key}, expected {dtype.key}")
    bs = [d for d in b.shape]
    while len(bs) > 2 and bs[0] == 1:
        bs.pop(0)
    if len(bs) != 2:
        raise imp.fail(f"right operand {tb!r} of shape {list(b.shape)} must be a matrix "
                       f"(batched matrix products are not supported)")
    return imp.view(b, tuple(bs))


def _gemm_core(imp: _Importer, out: str, a: Buffer, tb: str, c: Buffer | None, dtype: DType,
               out_dtype: DType | None = None, c_broadcast: str | None = None,
               requant: dict | None = None, quant_b: QuantParams | None = None,
               quant_out: QuantParams | None = None) -> None:
    """y = a @ b (+ c) as one GEMM micro-op; ``a`` may have leading dimensions (flattened)."""
    am = _matrix(imp, a)
    b = _b_operand(imp, tb, dtype, quant_b)
    if am.shape[1] != b.shape[0]:
        raise imp.fail(f"inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    y = imp.result(out, out_dtype or (DType.BF16 if dtype is DType.BF16 else DType.INT32),
                   quant=quant_out)
    ym = imp.view(y, (am.shape[0], b.shape[1]))
    ins = [TensorRef.whole(am), TensorRef.whole(b)] + ([TensorRef.whole(c)] if c else [])
    attrs: dict[str, Any] = {}
    if c_broadcast:
        attrs["c_broadcast"] = c_broadcast
    if requant:
        attrs["requant"] = requant
    imp.add("gemm", OpType.GEMM, dtype, ins, [TensorRef.whole(ym)],
            shape={"M": am.shape[0], "K": am.shape[1], "N": b.shape[1]}, attrs=attrs)


def _bias_buffer(imp: _Importer, v: np.ndarray, m: int, n: int, dtype: DType,
                 stem: str) -> tuple[Buffer, str | None]:
    """A bias as an accumulator-type constant: [1,N] row-broadcast, [M,1] column-broadcast or [M,N]."""
    v = np.asarray(v)
    if v.ndim == 0 or v.size == 1:
        v = np.full((1, n), v.reshape(()), v.dtype)
    v = v.reshape(v.shape[-2:]) if v.ndim > 2 else v
    if v.ndim == 1:
        v = v.reshape(1, -1)
    if v.shape == (m, n):
        return imp.const_buffer(v, dtype, stem), None
    if v.shape == (1, n):
        return imp.const_buffer(v, dtype, stem), "row"
    if v.shape == (m, 1):
        return imp.const_buffer(v, dtype, stem), "col"
    raise imp.fail(f"bias of shape {list(v.shape)} does not broadcast to [{m}, {n}]")


@_handles("Gemm")
def _gemm(imp: _Importer, node: onnx.NodeProto) -> None:
    ta, tb = node.input[0], node.input[1]
    tc = node.input[2] if len(node.input) > 2 and node.input[2] else None
    alpha, beta = imp.attr("alpha", 1.0), imp.attr("beta", 1.0)
    trans_a, trans_b = imp.attr("transA", 0), imp.attr("transB", 0)
    if imp.is_const(ta):
        raise imp.fail("a constant A operand is not supported for Gemm; accepted: a computed "
                       "A (a constant left operand is accepted by MatMul)")
    _float_operand(imp, ta)
    if tc is not None and not imp.is_const(tc) and beta != 1.0:
        raise imp.fail("beta != 1 needs a constant C")
    if trans_a:
        raise imp.fail("transA=1 on a computed tensor moves data and no unit transposes; "
                       "accepted: transA=0")
    a = imp.buf(ta)
    if imp.is_const(tb):
        bv = np.asarray(imp.consts[tb], np.float32)
        bv = (bv.T if trans_b else bv) * np.float32(alpha)
        imp.consts[f"{tb}.folded"] = bv
        tb = f"{tb}.folded"
    elif trans_b or alpha != 1.0:
        raise imp.fail("transB=1 or alpha != 1 needs a constant B; accepted for computed B: "
                       "transB=0, alpha=1")
    m = a.shape[0]
    n = imp.shape(tb)[-1]
    c = bc = None
    if tc is not None and imp.is_const(tc):
        c, bc = _bias_buffer(imp, np.asarray(imp.consts[tc], np.float32) * np.float32(beta),
                             m, n, DType.FP32, tc)
    if tc is not None and not imp.is_const(tc):
        tmp = f"{node.output[0]}.ab"
        imp.types[tmp] = (onnx.TensorProto.FLOAT, (m, n))
        _gemm_core(imp, tmp, a, tb, None, DType.BF16)
        _eltwise_bufs(imp, EltwiseFunc.ADD, imp.buf(tmp), imp.buf(tc), node.output[0])
        return
    _gemm_core(imp, node.output[0], a, tb, c, DType.BF16, c_broadcast=bc)


def _conv_attrs(imp: _Importer, x_shape: Sequence[int], w_shape: Sequence[int]):
    """(strides, pads (top, left, bottom, right), OH, OW) after checking group/dilation/auto_pad."""
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise imp.fail(f"only 2-D convolutions (NCHW input, OIHW weights) are supported, not "
                       f"input {list(x_shape)} and weights {list(w_shape)}")
    if imp.attr("group", 1) != 1:
        raise imp.fail(f"group={imp.attr('group')} is not supported; accepted: group=1")
    dil = list(imp.attr("dilations", [1, 1]))
    if dil != [1, 1]:
        raise imp.fail(f"dilations {dil} are not supported; accepted: [1, 1]")
    sh, sw = list(imp.attr("strides", [1, 1]))
    kh, kw = w_shape[2], w_shape[3]
    h, w = x_shape[2], x_shape[3]
    auto_pad = imp.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pt, pl, pb, pr = list(imp.attr("pads", [0, 0, 0, 0]))
    elif auto_pad == "VALID":
        pt = pl = pb = pr = 0
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s in ((h, kh, sh), (w, kw, sw)):
            o = -(-size // s)
            total = max(0, (o - 1) * s + k - size)
            lo = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            pads.append((lo, total - lo))
        (pt, pb), (pl, pr) = pads
    else:
        raise imp.fail(f"auto_pad={auto_pad!r} is not supported")
    oh = (h + pt + pb - kh) // sh + 1
    ow = (w + pl + pr - kw) // sw + 1
    return (sh, sw), (pt, pl, pb, pr), oh, ow


@_handles("Conv")
def _conv(imp: _Importer, node: onnx.NodeProto) -> None:
    """Float conv: per image, im2col (memory-tile data movement) then a GEMM on the DMU.

    The GEMM writes each output channel's ``OH*OW`` map as one row, moved in whole flits.
    When a map is not a whole number of flits (BF16 ``OH*OW`` not a multiple of
    ``flit / 2``: 7x7, 13x13), the im2col is padded on the right to ``OWp`` output columns
    (the row length rounded up to whole flits), the GEMM writes ``[OC, OH*OWp]`` into a
    temporary, and two memory-tile transposes crop it to ``[OC*OH, OW]`` rows of the
    result (``T(T(wide[:, :OW]))``)."""
    tx, tw = node.input[0], node.input[1]
    tbias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    _float_operand(imp, tx)
    x = imp.buf(tx)
    w = np.asarray(imp.const(tw, "the weight"), np.float32)
    strides, pads, oh, ow = _conv_attrs(imp, x.shape, w.shape)
    n, c, _, _ = x.shape
    oc, _, kh, kw = w.shape
    wbuf = imp.const_buffer(w.reshape(oc, -1), DType.BF16, tw)
    cbuf = None
    if tbias:
        cbuf = imp.const_buffer(np.asarray(imp.const(tbias, "the bias"), np.float32).reshape(oc, 1),
                                DType.FP32, tbias)
    y = imp.result(node.output[0], DType.BF16)
    e, fb = DType.BF16.bytes, imp.flit_bytes
    owp = ow if oh * ow * e % fb == 0 else -(-ow * e // fb) * fb // e
    if owp == ow:
        yv = imp.view(y, (n, oc, oh * ow))
    else:
        wide = imp.graph.add_buffer(Buffer(imp.graph.unique_name(f"{y.name}.wide"),
                                           (n, oc, oh, owp), DType.BF16))
        yv, wrows = imp.view(wide, (n, oc, oh * owp)), imp.view(wide, (n * oc * oh, owp))
        yrows = imp.view(y, (n * oc * oh, ow))
        pt, pl, pb, pr = pads
        pads = (pt, pl, pb, pr + (owp - ow) * strides[1])
    for i in range(n):
        cols = imp.graph.add_buffer(Buffer(imp.graph.unique_name(f"{y.name}.cols{i}"),
                                           (c * kh * kw, oh * owp), DType.BF16))
        imp.add(f"im2col{i}", OpType.LAYOUT, DType.BF16,
                [TensorRef(x.name, (i, 0, 0, 0), (1,) + x.shape[1:])], [TensorRef.whole(cols)],
                func=LayoutFunc.IM2COL, shape={"n": cols.size},
                attrs={"kernel": (kh, kw), "strides": strides, "pads": pads, "pad_value": 0})
        ins = [TensorRef.whole(wbuf), TensorRef.whole(cols)]
        attrs = {}
        if cbuf is not None:
            ins.append(TensorRef.whole(cbuf))
            attrs["c_broadcast"] = "col"
        imp.add(f"gemm{i}", OpType.GEMM, DType.BF16, ins,
                [TensorRef(yv.name, (i, 0, 0), (1, oc, oh * owp))],
                shape={"M": oc, "K": c * kh * kw, "N": oh * owp}, attrs=attrs)
        if owp != ow:
            rows = oc * oh
            t = imp.graph.add_buffer(Buffer(imp.graph.unique_name(f"{y.name}.crop{i}"),
                                            (ow, rows), DType.BF16))
            imp.add(f"crop{i}.T", OpType.LAYOUT, DType.BF16,
                    [TensorRef(wrows.name, (i * rows, 0), (rows, ow))], [TensorRef.whole(t)],
                    func=LayoutFunc.TRANSPOSE, shape={"n": rows * ow})
            imp.add(f"crop{i}.TT", OpType.LAYOUT, DType.BF16, [TensorRef.whole(t)],
                    [TensorRef(yrows.name, (i * rows, 0), (rows, ow))],
                    func=LayoutFunc.TRANSPOSE, shape={"n": rows * ow})


_ACTS = {"Relu": ActFunc.RELU, "LeakyRelu": ActFunc.LEAKY_RELU, "Sigmoid": ActFunc.SIGMOID,
         "Tanh": ActFunc.TANH, "Gelu": ActFunc.GELU}


@_handles(*_ACTS)
def _activation(imp: _Importer, node: onnx.NodeProto) -> None:
    _float_operand(imp, node.input[0])
    x = imp.buf(node.input[0])
    y = imp.result(node.output[0], DType.BF16)
    attrs = {}
    if node.op_type == "LeakyRelu":
        attrs["alpha"] = float(imp.attr("alpha", 0.01))
    if node.op_type == "Gelu":
        ap = imp.attr("approximate", b"none")
        attrs["approximate"] = ap.decode() if isinstance(ap, bytes) else ap
    imp.add(_ACTS[node.op_type].value, OpType.ACT, DType.BF16, [TensorRef.whole(x)],
            [TensorRef.whole(y)], func=_ACTS[node.op_type], shape={"n": y.size}, attrs=attrs)


def _eltwise_bufs(imp: _Importer, func: EltwiseFunc, a: Buffer, b: Buffer, out: str) -> None:
    y = imp.result(out, DType.BF16)
    refs, bcast = [], False
    for src in (a, b):
        if src.shape == y.shape or src.size == y.size:
            refs.append(TensorRef.whole(imp.view(src, y.shape)))
        elif src.size == 1:
            refs.append(TensorRef.whole(src))
        elif src.size == y.shape[-1] and all(d == 1 for d in src.shape[:-1]):
            refs.append(TensorRef.whole(imp.view(src, (y.shape[-1],))))
            bcast = True
        else:
            raise imp.fail(f"broadcasting {list(src.shape)} to {list(y.shape)} is not "
                           f"supported; accepted: equal shapes, a scalar, or a vector along "
                           f"the last dimension")
    imp.add(func.value, OpType.ELTWISE, DType.BF16, refs, [TensorRef.whole(y)], func=func,
            shape={"n": y.size}, attrs={"broadcast": True} if bcast else {})


@_handles("Add", "Mul")
def _add_mul(imp: _Importer, node: onnx.NodeProto) -> None:
    func = EltwiseFunc.ADD if node.op_type == "Add" else EltwiseFunc.MUL
    bufs = []
    for t in node.input:
        if imp.is_const(t):
            bufs.append(imp.const_buffer(np.asarray(imp.consts[t], np.float32), DType.BF16, t))
        else:
            _float_operand(imp, t)
            bufs.append(imp.buf(t))
    _eltwise_bufs(imp, func, bufs[0], bufs[1], node.output[0])


@_handles("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity")
def _layout_alias(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.buf(node.input[0])
    imp.alias(node.output[0], x, imp.shape(node.output[0]))


@_handles("Transpose")
def _transpose(imp: _Importer, node: onnx.NodeProto) -> None:
    x = imp.buf(node.input[0])
    perm = list(imp.attr("perm", list(reversed(range(len(x.shape))))))
    moved = [p for p in perm if x.shape[p] != 1]
    if moved != sorted(moved):
        raise imp.fail(f"Transpose perm={perm} of computed tensor {node.input[0]!r} (shape "
                       f"{list(x.shape)}) moves data and no unit transposes; accepted: "
                       f"transposes of constants (folded), or perms that move only size-1 "
                       f"dimensions")
    imp.alias(node.output[0], x, imp.shape(node.output[0]))


# quantised forms

def _scalar(imp: _Importer, t: str | None, what: str, default: float | int = 0) -> Any:
    if not t:
        return default
    v = np.asarray(imp.const(t, what))
    if v.size != 1:
        raise imp.fail(f"{what} ({t!r}) has {v.size} values; only per-tensor quantisation "
                       f"(one scale and zero point) is supported")
    return v.reshape(()).item()


def _int8_operand(imp: _Importer, t: str, what: str) -> None:
    et = imp.consts[t].dtype if imp.is_const(t) else None
    if et is not None:
        if et == np.uint8:
            raise imp.fail(f"{what} ({t!r}) is uint8; the LPU and CE take int8: quantise "
                           f"with int8 (signed) tensors")
        if et != np.int8:
            raise imp.fail(f"{what} ({t!r}) is {et}; accepted: int8")
        return
    if imp.types.get(t, (0,))[0] == onnx.TensorProto.UINT8:
        raise imp.fail(f"{what} ({t!r}) is uint8; the LPU and CE take int8: quantise with "
                       f"int8 (signed) tensors")
    if imp.dtype(t) is not DType.INT8:
        raise imp.fail(f"{what} ({t!r}) is {imp.dtype(t).key}; accepted: int8")


def _host_quantized(imp: _Importer, name: str) -> QuantParams | None:
    """Quantisation of a float graph input read only by QuantizeLinear nodes of one scale.

    Such an input is quantised by the host as it is written to memory (float32
    arithmetic, as onnxruntime does): the pool never sees it in float.
    """
    users = [n for n in imp.proto.graph.node if name in n.input]
    if imp.types.get(name, (0,))[0] != onnx.TensorProto.FLOAT or not users:
        return None
    params = set()
    for n in users:
        if n.op_type != "QuantizeLinear" or n.input[0] != name or len(n.input) < 3:
            return None
        s, z = imp.consts.get(n.input[1]), imp.consts.get(n.input[2])
        if s is None or z is None or s.size != 1 or z.size != 1 or z.dtype != np.int8:
            return None
        params.add((float(s.reshape(())), int(z.reshape(()))))
    return QuantParams(*params.pop()) if len(params) == 1 else None


@_handles("QuantizeLinear")
def _quantize(imp: _Importer, node: onnx.NodeProto) -> None:
    tx = node.input[0]
    scale = float(_scalar(imp, node.input[1], "y_scale"))
    zp_t = _optional_input(node, 2)
    if not zp_t:
        raise imp.fail("y_zero_point must be given (an int8 constant); without it ONNX "
                       "quantises to uint8, which the LPU and CE do not take")
    _int8_operand(imp, zp_t, "y_zero_point")
    zp = int(_scalar(imp, zp_t, "y_zero_point"))
    x = imp.buf(tx)
    q = QuantParams(scale, zp)
    if x.kind is BufferKind.INPUT and x.quant == q and x.dtype is DType.INT8:
        imp.alias(node.output[0], x, x.shape)  # quantised by the host on input
        return
    _float_operand(imp, tx)
    y = imp.result(node.output[0], DType.INT8, quant=q)
    imp.add("quantize", OpType.QUANTIZE, DType.BF16, [TensorRef.whole(x)], [TensorRef.whole(y)],
            shape={"n": y.size}, attrs={"scale": scale, "zero_point": zp})


@_handles("DequantizeLinear")
def _dequantize(imp: _Importer, node: onnx.NodeProto) -> None:
    tx = node.input[0]
    x = imp.buf(tx)
    if x.dtype not in (DType.INT8, DType.INT32):
        raise imp.fail(f"input {tx!r} is {x.dtype.key}; accepted: int8, int32")
    scale = float(_scalar(imp, node.input[1], "x_scale"))
    zp = int(_scalar(imp, _optional_input(node, 2), "x_zero_point"))
    y = imp.result(node.output[0], DType.BF16)
    imp.add("dequantize", OpType.DEQUANTIZE, x.dtype, [TensorRef.whole(x)], [TensorRef.whole(y)],
            shape={"n": y.size}, attrs={"scale": scale, "zero_point": zp})


def _int8_weight(imp: _Importer, t: str, zp_t: str, what: str) -> np.ndarray:
    _int8_operand(imp, t, what)
    w = np.asarray(imp.const(t, what))
    if zp_t:
        wzp = np.asarray(imp.const(zp_t, f"{what} zero point"))
        if np.any(wzp != 0):
            raise imp.fail(f"{what} zero point must be 0 (symmetric weights); got "
                           f"{wzp.reshape(-1)[:4].tolist()}")
    return w


def _a_zero_point(imp: _Importer, zp_t: str, what: str) -> int:
    if not zp_t:
        return 0
    _int8_operand(imp, zp_t, what)
    return int(_scalar(imp, zp_t, what))


def _requant(imp: _Importer, scale: float, zp: int) -> dict:
    """Requantisation parameters; multiplier/shift come from the golden arithmetic module."""
    try:
        mult, shift = quantize_multiplier(scale)
    except ValueError as e:
        raise imp.fail(f"the requantisation scale (input scale * weight scale / output "
                       f"scale) is {scale!r}, which the integer units cannot apply: "
                       f"{e}") from None
    return {"scale": scale, "multiplier": int(mult), "shift": int(shift), "zero_point": int(zp)}


def _int_gemm(imp: _Importer, node: onnx.NodeProto, ta: str, a_zp: int, tb: str, w: np.ndarray,
              bias: np.ndarray | None, requant: dict | None, quant_out: QuantParams | None) -> None:
    _int8_operand(imp, ta, "A")
    a = imp.buf(ta)
    wm = _as_matrix_const(imp, w, "b")
    imp.consts[f"{tb}.int8"] = wm
    n = wm.shape[1]
    c = np.zeros((1, n), np.int64)
    if bias is not None:
        c = c + np.asarray(bias, np.int64).reshape(1, n)
    if a_zp:
        c = c - a_zp * wm.astype(np.int64).sum(axis=0, keepdims=True)
    am = _matrix(imp, a)
    cbuf, bc = (None, None)
    if bias is not None or a_zp:
        cbuf, bc = _bias_buffer(imp, c, am.shape[0], n, DType.INT32, f"{node.output[0]}.bias")
    _gemm_core(imp, node.output[0], a, f"{tb}.int8", cbuf, DType.INT8,
               out_dtype=DType.INT8 if requant else DType.INT32, c_broadcast=bc,
               requant=requant, quant_out=quant_out)


def _qlinear_scales(imp: _Importer, ta_scale: str, a_what: str, tb_scale: str, b_what: str,
                    ty_scale: str, ty_zp: str) -> tuple[float, QuantParams]:
    """The scale of a QLinear operator's integer sums (the product of its two input scales)
    and the quantisation of its INT8 output (``y_scale``, ``y_zero_point``)."""
    a_s, b_s = float(_scalar(imp, ta_scale, a_what)), float(_scalar(imp, tb_scale, b_what))
    y_s = float(_scalar(imp, ty_scale, "y_scale"))
    _int8_operand(imp, ty_zp, "y_zero_point")
    y_zp = int(_scalar(imp, ty_zp, "y_zero_point"))
    return a_s * b_s, QuantParams(y_s, y_zp)


@_handles("QLinearMatMul")
def _qlinear_matmul(imp: _Importer, node: onnx.NodeProto) -> None:
    ta, tas, tazp, tb, tbs, tbzp, tys, tyzp = node.input
    w = _int8_weight(imp, tb, tbzp, "B")
    sums_scale, quant = _qlinear_scales(imp, tas, "a_scale", tbs, "b_scale", tys, tyzp)
    rq = _requant(imp, sums_scale / quant.scale, quant.zero_point)
    _int_gemm(imp, node, ta, _a_zero_point(imp, tazp, "a_zero_point"), tb, w, None, rq, quant)


@_handles("MatMulInteger")
def _matmul_integer(imp: _Importer, node: onnx.NodeProto) -> None:
    ta, tb = node.input[0], node.input[1]
    tazp, tbzp = _optional_input(node, 2), _optional_input(node, 3)
    w = _int8_weight(imp, tb, tbzp, "B")
    _int_gemm(imp, node, ta, _a_zero_point(imp, tazp, "a_zero_point"), tb, w, None, None, None)


def _int_conv(imp: _Importer, node: onnx.NodeProto, tx: str, x_zp: int, tw: str, w: np.ndarray,
              bias: np.ndarray | None, requant: dict | None, quant_out: QuantParams | None) -> None:
    _int8_operand(imp, tx, "x")
    x = imp.buf(tx)
    strides, pads, oh, ow = _conv_attrs(imp, x.shape, w.shape)
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    wbuf = imp.const_buffer(w, DType.INT8, tw)
    cv = np.zeros(oc, np.int64)
    if bias is not None:
        cv += np.asarray(bias, np.int64).reshape(oc)
    if x_zp:
        cv -= x_zp * w.astype(np.int64).reshape(oc, -1).sum(axis=1)
    cbuf = imp.const_buffer(cv, DType.INT32, f"{node.output[0]}.bias") \
        if (bias is not None or x_zp) else None
    y = imp.result(node.output[0], DType.INT8 if requant else DType.INT32, quant=quant_out)
    for i in range(n):
        ins = [TensorRef(x.name, (i, 0, 0, 0), (1, c, h, wd)), TensorRef.whole(wbuf)]
        if cbuf is not None:
            ins.append(TensorRef.whole(cbuf))
        attrs = {"strides": strides, "pads": pads, "pad_value": x_zp}
        if requant:
            attrs["requant"] = requant
        imp.add(f"conv{i}", OpType.CONV, DType.INT8, ins,
                [TensorRef(y.name, (i, 0, 0, 0), (1, oc, oh, ow))],
                shape={"IC": c, "H": h, "W": wd, "OC": oc, "KH": kh, "KW": kw, "OH": oh, "OW": ow},
                attrs=attrs)


@_handles("QLinearConv")
def _qlinear_conv(imp: _Importer, node: onnx.NodeProto) -> None:
    tx, txs, txzp, tw, tws, twzp, tys, tyzp = node.input[:8]
    tb = node.input[8] if len(node.input) > 8 and node.input[8] else None
    w = _int8_weight(imp, tw, twzp, "w")
    sums_scale, quant = _qlinear_scales(imp, txs, "x_scale", tws, "w_scale", tys, tyzp)
    bias = np.asarray(imp.const(tb, "the bias")) if tb else None
    _int_conv(imp, node, tx, _a_zero_point(imp, txzp, "x_zero_point"), tw, w, bias,
              _requant(imp, sums_scale / quant.scale, quant.zero_point), quant)


@_handles("ConvInteger")
def _conv_integer(imp: _Importer, node: onnx.NodeProto) -> None:
    tx, tw = node.input[0], node.input[1]
    txzp, twzp = _optional_input(node, 2), _optional_input(node, 3)
    w = _int8_weight(imp, tw, twzp, "w")
    _int_conv(imp, node, tx, _a_zero_point(imp, txzp, "x_zero_point"), tw, w, None, None, None)


#: ONNX operators the frontend accepts (on computed tensors; constant sub-graphs are folded).
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_HANDLERS))
