"""Golden executor: runs a micro-op DAG in numpy with the hardware's arithmetic.

Two arithmetics (``Executor(graph, arithmetic=...)``, :func:`run_graph`):

``"onnx"`` (default)
    The model-level reference, compared with onnxruntime within :data:`TOLERANCES`:
    ACT, ELTWISE, AGGREGATE, QUANTIZE and DEQUANTIZE are the ONNX operators evaluated
    exactly (float64) and rounded once.
``"unit"``
    What the units compute, for bit-exact comparison with an RTL run: ACT, ELTWISE and
    AGGREGATE use the units' specified approximations (below); an op whose unit
    arithmetic is not defined raises :class:`GoldenError` naming the op and the mode
    (unless its type is listed in ``onnx_ops``, which then runs in ONNX arithmetic).

Arithmetic per micro-op, both modes
-----------------------------------
These are the units' own arithmetic already (bit-exact with the unit modules' references):

GEMM <bf16> (DMU)
    :func:`accelpool.spec.golden.numerics.bf16_gemm`: the accumulator starts at ``c`` (the bias,
    or the previous step's FP32 partial sum of an accumulation chain) or +0, then adds
    ``bf16_mul(a[m,k], b[k,n])`` for k ascending with ``fp32_add``. A BF16 result is
    rounded from FP32 with ``fp32_to_bf16`` (nearest even).
SPMM <bf16> (SMU)
    The same products and FP32 adds, k ascending, but only for the non-zeros of the sparse
    operand (zeros are skipped, not multiplied: the result can differ from the DMU's only
    in the sign of an exact zero). Without ``c`` this is :func:`accelpool.spec.golden.sparse.spmm_bf16`
    (the SMU starts at +0; with a sparse B, on the transposed product, which takes the
    same products in the same order). The SMU has no accumulator input, so in ``"unit"``
    mode an SPMM with ``c`` raises :class:`GoldenError`.
GEMM <int8> (LPU), CONV <int8> (CE)
    Integer sums into INT32 with two's complement wraparound (:func:`numerics.int8_gemm`;
    the convolution as an exact int64 sum wrapped to INT32 the same way), padding with ``attrs["pad_value"]`` (the input
    zero point), then :func:`numerics.requantize` with the fixed-point multiplier/shift
    from :func:`numerics.quantize_multiplier` when the result is INT8. (Integer sums are
    exact modulo 2**32, so the CE's ``sum (x - x_zp)(w - w_zp) + bias`` form gives the
    same INT32 as any algebraically equal form the compiler encodes.)
LAYOUT im2col, transpose, copy
    Exact copies (im2col pads with ``pad_value``; transpose ``out[j, i] = in[i, j]``, the
    element bits unchanged, any data type; copy ``out = in``).

``"onnx"`` arithmetic of ACT, ELTWISE, AGGREGATE <bf16>, QUANTIZE, DEQUANTIZE
-----------------------------------------------------------------------------
Each is the ONNX operator's definition evaluated in float64 on the exact operand values,
rounded once to BF16 (nearest even, via round-to-odd to FP32 then ``fp32_to_bf16``), or
for QUANTIZE rounded half to even and saturated to INT8. Mean aggregation is the float64
sum over neighbours divided by their count.

``"unit"`` arithmetic of ACT, ELTWISE (AFU) and AGGREGATE (GNN)
----------------------------------------------------------------
ACT <bf16>
    On the BF16 encodings, :mod:`accelpool.spec.golden.activations`: RELU ``bf16_relu``; LEAKY_RELU
    ``bf16_leaky_relu`` with ``alpha`` as the AFU takes it, a BF16
    (:func:`~accelpool.spec.golden.activations.leaky_relu_alpha_bits`); SIGMOID, TANH, GELU
    ``bf16_activation`` (256-segment piecewise-linear tables). GELU with
    ``approximate="tanh"`` has no unit arithmetic (the AFU's GELU is the erf form).
ACT <int8>
    With the quantisation of input and output (``attrs`` ``x_scale``, ``x_zero_point``,
    ``y_scale``, ``y_zero_point``, else the buffers' :class:`~accelpool.sched.ir.QuantParams`): the
    AFU's 256-entry table (``int8_table`` + ``int8_lut``); RELU with equal input and output
    quantisation is ``int8_relu`` (``max(x, zero_point)``).
ELTWISE <bf16>
    ``bf16_add`` / ``bf16_mul`` (FP32 add or BF16 product, rounded to BF16; FTZ), the
    broadcast operand repeated.
AGGREGATE <bf16>
    :func:`accelpool.spec.golden.sparse.gnn_aggregate` with the neighbours of each adjacency row
    its non-zeros in ascending column order (the CSR the compiler stores); a MEAN is the
    FP32 sum rounded to BF16 times the BF16 reciprocal of the degree. A BF16 result is
    that FP32 value rounded with ``fp32_to_bf16`` (RNE, FTZ), as the GNN unit writes it
    with its ``out_bf16`` flag.
DEQUANTIZE <int8>
    The AFU's DEQUANTIZE (:func:`~accelpool.spec.golden.activations.int8_dequantize`):
    ``bf16(bf16(q - zero_point) * bf16(scale))``, the scale rounded to BF16 first
    (:func:`~accelpool.spec.golden.activations.dequantize_scale_bits`); within ``2**-7 * |y|`` of
    the ONNX arithmetic.
QUANTIZE <bf16>
    The AFU's QUANTIZE (:func:`~accelpool.spec.golden.activations.bf16_quantize`):
    ``saturate(rne(x * multiplier * 2**-shift) + zero_point)`` with ``(multiplier, shift)``
    the 31-bit fixed point of ``1 / scale`` (:func:`~accelpool.spec.golden.activations.quantize_args`);
    equal to the ONNX arithmetic except within ``2**-22`` of a rounding tie (one step).
DEQUANTIZE <int32>, ELTWISE <int8>
    No unit arithmetic is specified (the AFU has no such EXEC function): GoldenError.

Graph inputs are written to memory by the host: float32 -> BF16 with ``fp32_to_bf16``, or
float32 -> INT8 for inputs quantised on the host (``Buffer.quant``), as ONNX
QuantizeLinear does it in float32.

Tolerances against onnxruntime (:data:`TOLERANCES`, :func:`compare_with_onnxruntime`)
-------------------------------------------------------------------------------------
The golden run matches its arithmetic definition bit for bit; against onnxruntime's
float32/int8 run of the original model it differs by BF16 rounding of inputs, weights and
every intermediate (relative 2^-9 each) and by fixed-point versus float requantisation
(at most one INT8 step, propagated). A float output passes if
``|golden - ort| <= atol + rtol * |ort|`` element-wise with ``rtol = 2^-6`` and
``atol = 2^-6 * max|ort|`` (the output's scale); an integer output if it is within
``int_atol = 1`` step. The ``"unit"`` approximations add at most a few BF16 ulps per
activation (tables within ``max(1e-3, 2 ulp)``, the mean two roundings of 2^-9), inside
the same tolerance; :func:`compare_outputs` compares two golden runs with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Collection, Mapping

import ml_dtypes
import numpy as np
import onnx
from scipy import special

from accelpool.sched.frontend import input_buffer_names
from accelpool.sched.ir import (ActFunc, AggFunc, BufferKind, EltwiseFunc, Graph, LayoutFunc,
                                MicroOp, OpType, TensorRef, sanitize)
from accelpool.spec.config import DType
from accelpool.spec.golden import activations as act, numerics as nm
from accelpool.spec.golden.compare import compare_arrays
from accelpool.spec.golden.sparse import gnn_aggregate

__all__ = ["Executor", "run_graph", "round_to_bf16", "Tolerance", "TOLERANCES",
           "Comparison", "compare_with_onnxruntime", "compare_outputs", "GoldenError",
           "ARITHMETICS"]

#: The golden executor's arithmetics (module docstring).
ARITHMETICS = ("onnx", "unit")

_NP = {DType.BF16: ml_dtypes.bfloat16, DType.FP32: np.float32, DType.INT8: np.int8,
       DType.INT32: np.int32}


class GoldenError(ValueError):
    """A golden run that cannot proceed (missing input, overflow); the message says which."""


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float64 values once to BF16, nearest even.

    float64 -> float32 rounds to odd (truncate, then set the last bit if anything was
    lost), so the following nearest-even rounding to BF16 (8 bits of significand, far
    fewer than float32's 24 - 2) is the correctly rounded result of the float64 value.
    """
    x = np.asarray(x, np.float64)
    f = x.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        inexact = np.isfinite(x) & (f.astype(np.float64) != x)
        # the float32 neighbour towards zero
        toward0 = np.where(np.abs(f.astype(np.float64)) > np.abs(x),
                           np.nextafter(f, np.float32(0)), f)
    bits = toward0.view(np.uint32) | np.uint32(1)
    odd = np.where(inexact, bits.view(np.float32), f)
    return nm.fp32_to_bf16(odd.astype(np.float32))


class Executor:
    """Memory of a graph's buffers and the micro-op interpreter.

    Parameters
    ----------
    graph : Graph
    arithmetic : {"onnx", "unit"}
        ONNX-exact activations and aggregation (the model-level reference), or the units'
        specified arithmetic (for bit-exact comparison with an RTL run); module docstring.
    onnx_ops : collection of OpType
        In ``"unit"`` mode, op types to run in ONNX arithmetic instead of raising because
        their unit arithmetic is not defined (e.g. ``{OpType.DEQUANTIZE}`` for INT32); results of
        those ops are then not what a unit computes.
    """

    #: Class defaults, for subclasses that bypass ``__init__`` (the functional executor's
    #: one-op interpreter): ONNX arithmetic.
    arithmetic: str = "onnx"
    onnx_ops: frozenset = frozenset()

    def __init__(self, graph: Graph, arithmetic: str = "onnx",
                 onnx_ops: Collection[OpType] = ()):
        if arithmetic not in ARITHMETICS:
            accepted = ", ".join(map(repr, ARITHMETICS))
            raise ValueError(f"Golden arithmetic must be one of {accepted}, not {arithmetic!r}")
        bad = [o for o in onnx_ops if not isinstance(o, OpType)]
        if bad:
            raise TypeError(f"onnx_ops must hold OpType members, not {bad[0]!r}")
        self.arithmetic = arithmetic
        self.onnx_ops = frozenset(onnx_ops)
        self.g = graph
        self.mem: dict[str, np.ndarray] = {}
        for b in graph.buffers.values():
            if b.alias_of is None and b.kind is not BufferKind.CONST:
                self.mem[b.name] = np.zeros(b.shape, _NP[b.dtype])

    # memory
    def _array(self, name: str) -> np.ndarray:
        b = self.g.buffers[name]
        if b.kind is BufferKind.CONST:
            return b.data
        return self.mem[self.g.base(name).name].reshape(b.shape)

    def read(self, r: TensorRef) -> np.ndarray:
        return self._array(r.buffer)[r.slices]

    def write(self, r: TensorRef, value: np.ndarray) -> None:
        dst = self._array(r.buffer)
        want = _NP[self.g.buffers[r.buffer].dtype]
        if value.dtype != want:
            raise AssertionError(f"{r}: result is {value.dtype}, buffer holds {want}")
        dst[r.slices] = value.reshape(r.shape)

    def set_input(self, name: str, value: np.ndarray) -> None:
        """Write a graph input as the host does (float32 -> BF16, or host quantisation)."""
        b = self.g.buffers[name]
        value = np.asarray(value)
        if tuple(value.shape) != b.shape:
            raise GoldenError(f"input {name!r} has shape {list(value.shape)}, expected {list(b.shape)}")
        if b.dtype is DType.BF16:
            v = nm.fp32_to_bf16(value.astype(np.float32))
        elif b.dtype is DType.INT8 and b.quant is not None and value.dtype.kind == "f":
            v = host_quantize(value, b.quant.scale, b.quant.zero_point)
        else:
            v = value.astype(_NP[b.dtype])
        self.mem[name][...] = v

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run every micro-op in order; return the graph outputs (numpy, buffer data type)."""
        missing = [n for n in self.g.inputs if n not in inputs]
        if missing:
            raise GoldenError(f"missing graph input(s) {', '.join(missing)}; the graph takes "
                              f"{', '.join(self.g.inputs)}")
        for n in self.g.inputs:
            self.set_input(n, inputs[n])
        for op in self.g.ops:
            self.execute(op)
        return {n: self._array(n).copy() for n in self.g.outputs}

    def execute(self, op: MicroOp) -> None:
        """Run one micro-op in this executor's arithmetic."""
        if self.arithmetic == "unit" and op.op not in self.onnx_ops:
            _EXEC_UNIT.get(op.op, _EXEC[op.op])(self, op)
        else:
            _EXEC[op.op](self, op)


def host_quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear in float32: saturate(round_half_even(x / scale) + zero_point) to int8."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray], arithmetic: str = "onnx",
              onnx_ops: Collection[OpType] = ()) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` (name -> array); return its outputs.

    ``arithmetic`` and ``onnx_ops`` as for :class:`Executor`.
    """
    return Executor(graph, arithmetic, onnx_ops).run(inputs)


# -- micro-op semantics -------------------------------------------------------------------

def _m(x: np.ndarray, n: int = 2) -> np.ndarray:
    """The last ``n`` dimensions (leading dimensions are 1)."""
    s = x.shape
    if len(s) < n:
        s = (1,) * (n - len(s)) + s
    return x.reshape(s[len(s) - n:])


def _accumulator(ex: Executor, op: MicroOp, m: int, n: int, dtype) -> np.ndarray | None:
    if len(op.inputs) < 3:
        return None
    c = _m(ex.read(op.inputs[2]))
    return np.ascontiguousarray(np.broadcast_to(c, (m, n)), dtype=dtype)


def _store_acc(ex: Executor, op: MicroOp, acc: np.ndarray) -> None:
    out = op.outputs[0]
    dt = ex.g.buffers[out.buffer].dtype
    if dt is DType.BF16:
        ex.write(out, nm.fp32_to_bf16(acc.astype(np.float32)))
    elif dt is DType.INT8:
        ex.write(out, _requantize(op, acc))
    else:
        ex.write(out, acc.astype(_NP[dt]))


def _requantize(op: MicroOp, acc: np.ndarray) -> np.ndarray:
    """INT32 -> INT8 with the micro-op's fixed-point multiplier and shift (what codegen encodes)."""
    rq = op.attrs["requant"]
    if "multiplier" in rq:
        mult, shift = rq["multiplier"], rq["shift"]
    else:
        mult, shift = nm.quantize_multiplier(rq["scale"])
    return np.asarray(nm.requantize(np.asarray(acc, np.int32), mult, shift, rq["zero_point"]),
                      np.int8)


def _gemm(ex: Executor, op: MicroOp) -> None:
    a, b = _m(ex.read(op.inputs[0])), _m(ex.read(op.inputs[1]))
    m, n = a.shape[0], b.shape[1]
    if op.dtype is DType.BF16:
        acc = nm.bf16_gemm(a, b, _accumulator(ex, op, m, n, np.float32))
    elif op.dtype is DType.INT8:
        acc = nm.int8_gemm(a, b, _accumulator(ex, op, m, n, np.int32))
    else:
        raise GoldenError(f"{op.id}: no GEMM arithmetic for {op.dtype.key}")
    _store_acc(ex, op, np.asarray(acc))


def _spmm(ex: Executor, op: MicroOp) -> None:
    a, b = _m(ex.read(op.inputs[0])), _m(ex.read(op.inputs[1]))
    m, k = a.shape
    n = b.shape[1]
    acc = _accumulator(ex, op, m, n, np.float32)
    if acc is None:
        acc = np.zeros((m, n), np.float32)
    sparse_b = op.attrs["sparse_operand"] == 1
    for kk in range(k):
        ak = np.ascontiguousarray(np.broadcast_to(a[:, kk:kk + 1], (m, n)))
        bk = np.ascontiguousarray(np.broadcast_to(b[kk:kk + 1, :], (m, n)))
        nz = (bk != 0) if sparse_b else (ak != 0)
        if not nz.any():
            continue
        acc = np.where(nz, nm.fp32_add(acc, nm.bf16_mul(ak, bk)), acc).astype(np.float32)
    _store_acc(ex, op, acc)


def _conv(ex: Executor, op: MicroOp) -> None:
    x, w = _m(ex.read(op.inputs[0]), 3), ex.read(op.inputs[1])
    (sh, sw), (pt, pl, pb, pr) = op.attrs["strides"], op.attrs["pads"]
    xp = np.pad(x.astype(np.int64), ((0, 0), (pt, pb), (pl, pr)),
                constant_values=op.attrs.get("pad_value", 0))
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    acc = np.einsum("chwij,ocij->ohw", win, w.astype(np.int64))
    oc, oh, ow = acc.shape
    if len(op.inputs) > 2:
        c = ex.read(op.inputs[2]).astype(np.int64)
        acc = acc + (c.reshape(oc, 1, 1) if c.size == oc else _m(c, 3))
    acc = acc.astype(np.int32)  # two's complement wraparound, as the LPU's INT32 sums
    out = op.outputs[0]
    if ex.g.buffers[out.buffer].dtype is DType.INT8:
        ex.write(out, _requantize(op, acc))
    else:
        ex.write(out, acc)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + special.erf(x / math.sqrt(2)))


def _act(ex: Executor, op: MicroOp) -> None:
    x = ex.read(op.inputs[0]).astype(np.float64)
    f = op.func
    if f is ActFunc.RELU:
        y = np.maximum(x, 0)
    elif f is ActFunc.LEAKY_RELU:
        y = np.where(x >= 0, x, x * float(np.float32(op.attrs.get("alpha", 0.01))))
    elif f is ActFunc.SIGMOID:
        y = special.expit(x)
    elif f is ActFunc.TANH:
        y = np.tanh(x)
    elif f is ActFunc.GELU:
        y = _gelu(x, op.attrs.get("approximate", "none"))
    else:
        raise GoldenError(f"{op.id}: no arithmetic for activation {f}")
    ex.write(op.outputs[0], round_to_bf16(y))


def _eltwise(ex: Executor, op: MicroOp) -> None:
    a, b = (ex.read(r).astype(np.float64) for r in op.inputs)
    shape = op.outputs[0].shape
    a = a.reshape(shape) if a.size == math.prod(shape) else a.reshape(-1)
    b = b.reshape(shape) if b.size == math.prod(shape) else b.reshape(-1)
    y = a + b if op.func is EltwiseFunc.ADD else a * b
    ex.write(op.outputs[0], round_to_bf16(y))


def _aggregate(ex: Executor, op: MicroOp) -> None:
    adj = ex.read(op.inputs[0])
    x = _m(ex.read(op.inputs[1])).astype(np.float64)
    nb = (adj != 0).astype(np.float64)
    # float64 sums of BF16 values are exact unless the summands span more than ~45 binades
    y = nb @ x
    if op.func is AggFunc.MEAN:
        y = y / nb.sum(axis=1, keepdims=True)
    ex.write(op.outputs[0], round_to_bf16(y))


def _quantize(ex: Executor, op: MicroOp) -> None:
    x = ex.read(op.inputs[0]).astype(np.float64)
    q = np.rint(x / op.attrs["scale"]) + op.attrs["zero_point"]
    ex.write(op.outputs[0], np.clip(q, -128, 127).astype(np.int8))


def _dequantize(ex: Executor, op: MicroOp) -> None:
    q = ex.read(op.inputs[0]).astype(np.float64)
    ex.write(op.outputs[0], round_to_bf16((q - op.attrs["zero_point"]) * op.attrs["scale"]))


def _layout(ex: Executor, op: MicroOp) -> None:
    if op.func is LayoutFunc.TRANSPOSE:
        ex.write(op.outputs[0], np.ascontiguousarray(_m(ex.read(op.inputs[0]), 2).T))
        return
    if op.func is LayoutFunc.COPY:
        ex.write(op.outputs[0], np.array(ex.read(op.inputs[0])))
        return
    if op.func is not LayoutFunc.IM2COL:
        raise GoldenError(f"{op.id}: no semantics for layout {op.func}")
    x = _m(ex.read(op.inputs[0]), 3)
    kh, kw = op.attrs["kernel"]
    (sh, sw), (pt, pl, pb, pr) = op.attrs["strides"], op.attrs["pads"]
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)),
                constant_values=x.dtype.type(op.attrs.get("pad_value", 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    c, oh, ow = win.shape[:3]
    cols = win.transpose(0, 3, 4, 1, 2).reshape(c * kh * kw, oh * ow)
    ex.write(op.outputs[0], np.ascontiguousarray(cols))


_EXEC = {OpType.GEMM: _gemm, OpType.SPMM: _spmm, OpType.CONV: _conv, OpType.ACT: _act,
         OpType.ELTWISE: _eltwise, OpType.AGGREGATE: _aggregate, OpType.QUANTIZE: _quantize,
         OpType.DEQUANTIZE: _dequantize, OpType.LAYOUT: _layout}



# -- "unit" arithmetic: the AFU's and the GNN unit's specified approximations -------------

def _no_unit(op: MicroOp, why: str) -> GoldenError:
    return GoldenError(f"{op.id}: {op.op.value} <{op.dtype.key}> has no unit arithmetic in "
                       f"arithmetic='unit' ({why}); use arithmetic='onnx', or list "
                       f"OpType.{op.op.name} in onnx_ops to run it in ONNX arithmetic")


def _bf16_operand(ex: Executor, op: MicroOp, r: TensorRef) -> np.ndarray:
    """A BF16 operand's encodings (uint16)."""
    dt = ex.g.buffers[r.buffer].dtype
    if dt is not DType.BF16:
        raise _no_unit(op, f"operand {r} is {dt.key}; the unit reads bf16")
    return np.ascontiguousarray(ex.read(r)).view(np.uint16)


def _store_bf16_bits(ex: Executor, op: MicroOp, bits: np.ndarray) -> None:
    out = op.outputs[0]
    if ex.g.buffers[out.buffer].dtype is not DType.BF16:
        raise _no_unit(op, f"result {out} is {ex.g.buffers[out.buffer].dtype.key}; the unit "
                           f"writes bf16")
    ex.write(out, np.asarray(bits, np.uint16).view(ml_dtypes.bfloat16))


def _quant_of(ex: Executor, op: MicroOp, r: TensorRef, side: str) -> tuple[float, int]:
    a = op.attrs
    if f"{side}_scale" in a:
        return float(a[f"{side}_scale"]), int(a.get(f"{side}_zero_point", 0))
    q = ex.g.buffers[r.buffer].quant or ex.g.base(r.buffer).quant
    if q is None:
        raise _no_unit(op, f"the AFU's INT8 table needs the quantisation of {r}: attrs "
                           f"{side}_scale/{side}_zero_point or the buffer's quant")
    return float(q.scale), int(q.zero_point)


def _act_unit(ex: Executor, op: MicroOp) -> None:
    f = op.func
    if f is ActFunc.GELU and op.attrs.get("approximate", "none") != "none":
        raise _no_unit(op, f"GELU approximate={op.attrs['approximate']!r}; the AFU computes "
                           f"the erf form, approximate='none'")
    if op.dtype is DType.INT8:
        return _act_unit_int8(ex, op)
    if op.dtype is not DType.BF16:
        raise _no_unit(op, "the AFU's activations take bf16 or int8")
    x = _bf16_operand(ex, op, op.inputs[0])
    if f is ActFunc.RELU:
        y = act.bf16_relu(x)
    elif f is ActFunc.LEAKY_RELU:
        y = act.bf16_leaky_relu(x, act.leaky_relu_alpha_bits(op.attrs.get("alpha", 0.01)))
    elif f in (ActFunc.SIGMOID, ActFunc.TANH, ActFunc.GELU):
        y = act.bf16_activation(f.value, x)
    else:
        raise _no_unit(op, f"activation {f}")
    _store_bf16_bits(ex, op, y)


def _act_unit_int8(ex: Executor, op: MicroOp) -> None:
    f = op.func
    x, out = op.inputs[0], op.outputs[0]
    for r in (x, out):
        if ex.g.buffers[r.buffer].dtype is not DType.INT8:
            raise _no_unit(op, f"{r} is {ex.g.buffers[r.buffer].dtype.key}, not int8")
    xs, xz = _quant_of(ex, op, x, "x")
    ys, yz = _quant_of(ex, op, out, "y")
    v = ex.read(x)
    if f is ActFunc.RELU and (xs, xz) == (ys, yz):
        ex.write(out, np.asarray(act.int8_relu(v, xz), np.int8))
        return
    name = {ActFunc.RELU: "leaky_relu", ActFunc.LEAKY_RELU: "leaky_relu"}.get(f, f.value)
    alpha = 0.0 if f is ActFunc.RELU else float(op.attrs.get("alpha", 0.01))
    table = act.int8_table(name, xs, xz, ys, yz, alpha=alpha)
    ex.write(out, np.asarray(act.int8_lut(v, table), np.int8))


def _eltwise_unit(ex: Executor, op: MicroOp) -> None:
    if op.dtype is not DType.BF16:
        raise _no_unit(op, "the AFU's INT8 add/mul need requantisation multipliers the IR "
                           "does not carry")
    shape = op.outputs[0].shape
    a, b = (_bf16_operand(ex, op, r) for r in op.inputs)
    a = a.reshape(shape) if a.size == math.prod(shape) else a.reshape(-1)
    b = b.reshape(shape) if b.size == math.prod(shape) else b.reshape(-1)
    a, b = np.broadcast_arrays(a, b)
    y = act.bf16_add(a, b) if op.func is EltwiseFunc.ADD else act.bf16_mul(a, b)
    _store_bf16_bits(ex, op, y)


def _aggregate_unit(ex: Executor, op: MicroOp) -> None:
    adj = ex.read(op.inputs[0])
    x = _m(_bf16_operand(ex, op, op.inputs[1])).view(ml_dtypes.bfloat16)
    adj2 = _m(adj)
    if adj2.shape[1] != x.shape[0]:
        raise GoldenError(f"{op.id}: adjacency {op.inputs[0]} has {adj2.shape[1]} columns for "
                          f"{x.shape[0]} feature rows")
    acc = gnn_aggregate(np.asarray(adj2 != 0, np.float32), x, op.func.value).view(np.float32)
    out = op.outputs[0]
    dt = ex.g.buffers[out.buffer].dtype
    if dt is DType.BF16:
        ex.write(out, nm.fp32_to_bf16(acc))
    elif dt is DType.FP32:
        ex.write(out, acc)
    else:
        raise _no_unit(op, f"result {out} is {dt.key}; the GNN unit writes fp32 (or bf16 "
                           f"rounded from it)")


def _spmm_unit(ex: Executor, op: MicroOp) -> None:
    # An SPMM with an accumulator runs on a DMU (the SMU starts every sum at +0, so the pool
    # offers it only the DMUs), as a dense GEMM: the DMU's arithmetic.
    if len(op.inputs) > 2:
        _gemm(ex, op)
    else:
        _spmm(ex, op)


def _dequantize_unit(ex: Executor, op: MicroOp) -> None:
    x = op.inputs[0]
    dt = ex.g.buffers[x.buffer].dtype
    if dt is not DType.INT8:
        raise _no_unit(op, f"operand {x} is {dt.key}; the AFU's DEQUANTIZE reads int8")
    try:
        scale_bits = act.dequantize_scale_bits(op.attrs["scale"])
        y = act.int8_dequantize(ex.read(x), int(op.attrs["zero_point"]), scale_bits)
    except ValueError as e:
        raise _no_unit(op, str(e)) from None
    _store_bf16_bits(ex, op, y)


def _quantize_unit(ex: Executor, op: MicroOp) -> None:
    x = _bf16_operand(ex, op, op.inputs[0])
    out = op.outputs[0]
    dt = ex.g.buffers[out.buffer].dtype
    if dt is not DType.INT8:
        raise _no_unit(op, f"result {out} is {dt.key}; the AFU's QUANTIZE writes int8")
    zp = int(op.attrs["zero_point"])
    if not -128 <= zp <= 127:
        raise _no_unit(op, f"zero point {zp} is not an INT8")
    try:
        mult, shift = act.quantize_args(op.attrs["scale"])
    except ValueError as e:
        raise _no_unit(op, str(e)) from None
    ex.write(out, act.bf16_quantize(x, mult, shift, zp))


_EXEC_UNIT = {OpType.ACT: _act_unit, OpType.ELTWISE: _eltwise_unit,
              OpType.AGGREGATE: _aggregate_unit, OpType.SPMM: _spmm_unit,
              OpType.QUANTIZE: _quantize_unit, OpType.DEQUANTIZE: _dequantize_unit}


# -- comparison with onnxruntime --------------------------------------------------------

@dataclass(frozen=True)
class Tolerance:
    """``|golden - ref| <= atol_frac * max|ref| + rtol * |ref|`` (float) or ``<= int_atol`` (int)."""

    rtol: float
    atol_frac: float
    int_atol: int = 1


#: Tolerance of a golden output of each data type against onnxruntime.
TOLERANCES: Mapping[DType, Tolerance] = {
    DType.BF16: Tolerance(rtol=2 ** -6, atol_frac=2 ** -6),
    DType.FP32: Tolerance(rtol=2 ** -6, atol_frac=2 ** -6),
    DType.INT8: Tolerance(rtol=0, atol_frac=0, int_atol=1),
    DType.INT32: Tolerance(rtol=0, atol_frac=0, int_atol=1),
}


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_with_onnxruntime` or :func:`compare_outputs` for one output."""

    name: str
    dtype: DType
    max_abs_error: float
    max_ref: float
    bound: float
    ok: bool
    reference: str = "onnxruntime"
    worst: str = ""     # the worst element, its index and bound (compare.Mismatch.where)

    def __str__(self) -> str:
        text = (f"{self.name} <{self.dtype.key}>: max |golden - {self.reference}| = "
                f"{self.max_abs_error:.3g} (output scale {self.max_ref:.3g}) "
                f"{'within' if self.ok else 'OUTSIDE'} tolerance")
        return text if self.ok or not self.worst else f"{text}; {self.worst}"


def onnxruntime_outputs(model, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the original model on onnxruntime's CPU provider."""
    import onnxruntime as ort
    data = model.SerializeToString() if hasattr(model, "SerializeToString") else \
        open(model, "rb").read()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, dict(inputs))))


def _compare(name: str, dt: DType, golden: np.ndarray, ref: np.ndarray, tol: Tolerance,
             reference: str) -> Comparison:
    if dt in (DType.INT8, DType.INT32):
        m = compare_arrays(name, golden, ref, atol=float(tol.int_atol))
    else:
        m = compare_arrays(name, golden, ref, rtol=tol.rtol, atol_frac=tol.atol_frac)
    return Comparison(name, dt, m.error, m.scale, m.bound, m.ok, reference, m.where())


def compare_with_onnxruntime(model, graph: Graph, inputs: Mapping[str, np.ndarray],
                             tolerances: Mapping[DType, Tolerance] = TOLERANCES,
                             arithmetic: str = "onnx", onnx_ops: Collection[OpType] = ()
                             ) -> list[Comparison]:
    """Golden outputs of ``graph`` against onnxruntime on ``model``, output by output (in order).

    ``arithmetic`` and ``onnx_ops`` select the golden's arithmetic (:class:`Executor`).
    onnxruntime is exact on every CPU for what the front end accepts: its integer operators
    take INT8 activations only (a UINT8 quantisation is refused), and onnxruntime's
    CPU-dependent kernel is the u8s8 one (UINT8 activations, INT8 weights, inexact without
    VNNI; :mod:`accelpool.spec.golden.test_conv` arbitrates that case with onnx's reference
    evaluator).
    """
    ref = onnxruntime_outputs(model, inputs)
    names = input_buffer_names(model if hasattr(model, "graph") else onnx.load(model))
    gold = run_graph(graph, {names.get(k, sanitize(k)): v for k, v in inputs.items()},
                     arithmetic, onnx_ops)
    result = []
    for (rname, r), gname in zip(ref.items(), graph.outputs):
        dt = graph.buffers[gname].dtype
        result.append(_compare(rname, dt, gold[gname], r, tolerances[dt], "onnxruntime"))
    return result


def compare_outputs(graph: Graph, golden: Mapping[str, np.ndarray],
                    reference: Mapping[str, np.ndarray], reference_name: str = "reference",
                    tolerances: Mapping[DType, Tolerance] = TOLERANCES) -> list[Comparison]:
    """Two runs of ``graph`` (e.g. ``"unit"`` against ``"onnx"`` arithmetic), output by output,
    within ``tolerances`` of ``reference``."""
    missing = [n for n in graph.outputs if n not in golden or n not in reference]
    if missing:
        raise GoldenError(f"output(s) {', '.join(missing)} missing from a run; the graph's "
                          f"outputs are {', '.join(graph.outputs)}")
    return [_compare(n, graph.buffers[n].dtype, golden[n], reference[n],
                     tolerances[graph.buffers[n].dtype], reference_name)
            for n in graph.outputs]
