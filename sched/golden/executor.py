"""Golden executor: runs a micro-op DAG in numpy with the hardware's arithmetic.

Arithmetic per micro-op
-----------------------
GEMM <bf16> (DMU)
    :func:`sched.golden.numerics.bf16_gemm`: the accumulator starts at ``c`` (the bias,
    or the previous step's FP32 partial sum of an accumulation chain) or +0, then adds
    ``bf16_mul(a[m,k], b[k,n])`` for k ascending with ``fp32_add``. A BF16 result is
    rounded from FP32 with ``fp32_to_bf16`` (nearest even).
SPMM <bf16> (SMU)
    The same products and FP32 adds, k ascending, but only for the non-zeros of the sparse
    operand (zeros are skipped, not multiplied: the result can differ from the DMU's only
    in the sign of an exact zero).
GEMM <int8> (LPU), CONV <int8> (CE)
    Integer sums into INT32 with two's complement wraparound (:func:`numerics.int8_gemm`;
    the convolution as an exact int64 sum wrapped to INT32 the same way), padding with ``attrs["pad_value"]`` (the input
    zero point), then :func:`numerics.requantize` with the fixed-point multiplier/shift
    from :func:`numerics.quantize_multiplier` when the result is INT8.
ACT, ELTWISE, AGGREGATE <bf16>, QUANTIZE, DEQUANTIZE (AFU, GNN)
    The units' exact approximations are not defined yet (their issues will pin them):
    here each is the ONNX operator's definition evaluated in float64 on the exact operand
    values, rounded once to BF16 (nearest even, via round-to-odd to FP32 then
    ``fp32_to_bf16``), or for QUANTIZE rounded half to even and saturated to INT8.
    Mean aggregation is the float64 sum over neighbours divided by their count.
LAYOUT im2col
    An exact copy (padding with ``pad_value``).

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
``int_atol = 1`` step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import ml_dtypes
import numpy as np
from scipy import special

from hw.config import DType
from sched.golden import numerics as nm
from sched.ir import (ActFunc, AggFunc, BufferKind, EltwiseFunc, Graph, LayoutFunc, MicroOp,
                      OpType, TensorRef, sanitize)

__all__ = ["Executor", "run_graph", "round_to_bf16", "Tolerance", "TOLERANCES",
           "Comparison", "compare_with_onnxruntime", "GoldenError"]

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
    """Memory of a graph's buffers and the micro-op interpreter."""

    def __init__(self, graph: Graph):
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
        _EXEC[op.op](self, op)


def host_quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """ONNX QuantizeLinear in float32: saturate(round_half_even(x / scale) + zero_point) to int8."""
    q = np.rint(np.asarray(x, np.float32) / np.float32(scale)).astype(np.float64) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def run_graph(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``graph`` on ``inputs`` (name -> array); return its outputs."""
    return Executor(graph).run(inputs)


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
    """Result of :func:`compare_with_onnxruntime` for one output."""

    name: str
    dtype: DType
    max_abs_error: float
    max_ref: float
    bound: float
    ok: bool

    def __str__(self) -> str:
        return (f"{self.name} <{self.dtype.key}>: max |golden - onnxruntime| = "
                f"{self.max_abs_error:.3g} (output scale {self.max_ref:.3g}) "
                f"{'within' if self.ok else 'OUTSIDE'} tolerance")


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


def compare_with_onnxruntime(model, graph: Graph, inputs: Mapping[str, np.ndarray],
                             tolerances: Mapping[DType, Tolerance] = TOLERANCES
                             ) -> list[Comparison]:
    """Golden outputs of ``graph`` against onnxruntime on ``model``, output by output (in order)."""
    ref = onnxruntime_outputs(model, inputs)
    gold = run_graph(graph, {sanitize(k): v for k, v in inputs.items()})
    result = []
    for (rname, r), gname in zip(ref.items(), graph.outputs):
        dt = graph.buffers[gname].dtype
        tol = tolerances[dt]
        g = gold[gname].astype(np.float64).reshape(r.shape)
        r = r.astype(np.float64)
        err = np.abs(g - r)
        scale = float(np.abs(r).max()) if r.size else 0.0
        if dt in (DType.INT8, DType.INT32):
            bound = np.full(r.shape, float(tol.int_atol))
        else:
            bound = tol.atol_frac * scale + tol.rtol * np.abs(r)
        ok = bool(np.all(err <= bound))
        result.append(Comparison(rname, dt, float(err.max()) if err.size else 0.0, scale,
                                 float(bound.min()) if bound.size else 0.0, ok))
    return result
