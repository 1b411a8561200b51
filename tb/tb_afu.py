"""cocotb tests of the activation unit on a scratchpad (run through accelpool.tb.harness.run_cocotb).

Results are checked bit for bit against :mod:`accelpool.spec.golden.activations`, and independently
against float64 (BF16 tolerance, monotonicity) and ``round(f(x))`` (INT8 tables); cycle
counts against :func:`accelpool.sched.cost.afu.cycles`.
"""

import json
import math

import ml_dtypes
import numpy as np
import cocotb

from accelpool.spec.units.afu import AfuCommand, AfuDType, AfuFunc
from accelpool.sched.cost.afu import cycles as model_cycles
from accelpool.spec.golden import activations as act
from accelpool.tb.cocotb_unit import UnitTB
from accelpool.tb.harness import tb_params

A, B, T, OUT = 0, 0x2000, 0x4000, 0x4400     # byte addresses of operands, table, result
CHUNK = 4096                                  # elements per EXEC (8 KB of BF16)


def _tb(dut, stall=None):
    p = tb_params()
    tb = UnitTB(dut, word_bytes=2 * p["lanes"], addr_width=(p["depth"] - 1).bit_length(),
                stall=stall, seed=p.get("seed", 0))
    return p, tb


#: Element bytes (input, output) of the functions that change the element size.
CONVERSIONS = {AfuFunc.DEQUANTIZE: (1, 2), AfuFunc.QUANTIZE: (2, 1)}


async def run_op(tb, p, func, dtype, a, b=None, table=None, **extra):
    """One EXEC over ``a`` (and ``b``): returns the result as raw bytes."""
    esize = 1 if dtype is AfuDType.INT8 else 2
    in_size, out_size = CONVERSIONS.get(func, (esize, esize))
    count = len(a) // in_size
    await tb.load(A, a)
    if b is not None:
        await tb.load(B, b)
    if table is not None:
        await tb.load(T, table)
    args = dict(a_addr=A, b_addr=B, table_addr=T, out_addr=OUT, count=count, dtype=dtype, **extra)
    t = await tb.execute(AfuCommand.const({"func": func, "args": args}).as_value().value)
    want_t = model_cycles({"lanes": p["lanes"]}, func=func, dtype=dtype, count=count)
    assert t == want_t, f"{func.name} {dtype.name} x{count}: {t} cycles, model {want_t}"
    return await tb.read(OUT, count * out_size)


def _bf16_inputs(stride: int) -> np.ndarray:
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = bits.view(ml_dtypes.bfloat16).astype(np.float64)
    with np.errstate(invalid="ignore"):
        sel = np.isfinite(x) & (np.abs(x) <= 8)
    swept = bits[sel][::stride]
    specials = np.array([0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x8001, 0x4200, 0xC200,
                         0x4180, 0xC180, 0x7F7F, 0xFF7F], np.uint16)
    return np.unique(np.concatenate([swept, specials]))


def _ulp(y):
    e = np.floor(np.log2(np.maximum(np.abs(y), 2.0 ** -126)))
    return 2.0 ** (e - 7)


@cocotb.test()
async def bf16_sigmoid_tanh_gelu_sweep(dut):
    """Every BF16 in [-8, 8] (or a strided subset) plus specials, through the RTL."""
    p, tb = _tb(dut)
    await tb.reset()
    bits = _bf16_inputs(p.get("stride", 1))
    for name in act.TABLE_FUNCS:
        func = AfuFunc[name.upper()]
        out = []
        for i in range(0, len(bits), CHUNK):
            raw = await run_op(tb, p, func, AfuDType.BF16, bits[i:i + CHUNK].tobytes())
            out.append(np.frombuffer(raw, np.uint16))
        got = np.concatenate(out)
        want = act.bf16_activation(name, bits)
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, f"{name}: {bad.size} outputs differ from the model, first input " \
                              f"0x{bits[bad[0]]:04x}: 0x{got[bad[0]]:04x} != 0x{want[bad[0]]:04x}"
        # Independently of the model: tolerance and monotonicity against float64.
        x = bits.view(ml_dtypes.bfloat16).astype(np.float64)
        y = got.view(ml_dtypes.bfloat16).astype(np.float64)
        with np.errstate(invalid="ignore"):
            fin = np.isfinite(x) & (np.abs(x) <= 8)
        ref = act.reference(name, x[fin])
        err = np.abs(y[fin] - ref)
        tol = np.maximum(1e-3, 2 * _ulp(ref))
        assert (err <= tol).all(), f"{name}: error {err.max():.3g} beyond tolerance"
        order = np.argsort(x[fin], kind="stable")
        xs, ys = x[fin][order], y[fin][order]
        mono = xs >= (-0.75 if name == "gelu" else -9.0)
        assert (np.diff(ys[mono]) >= 0).all(), f"{name}: not monotone"
        dut._log.info(f"{name}: {fin.sum()} inputs in [-8, 8], max error {err.max():.3g}, "
                      f"mean {err.mean():.3g}")
    nan = got[bits == 0x7FC0]
    assert (nan == act.CANONICAL_NAN).all()


@cocotb.test()
async def int8_every_input(dut):
    """All 256 INT8 inputs: tables (sigmoid, tanh, GELU, LeakyReLU with scales) and ReLU."""
    p, tb = _tb(dut, stall=0.3)
    await tb.reset()
    x = np.arange(-128, 128, dtype=np.int8)
    cases = [("sigmoid", 0.0625, 3, 1 / 256, -128), ("tanh", 0.03, -10, 1 / 128, 0),
             ("gelu", 0.05, 0, 0.04, -20), ("leaky_relu", 0.1, 5, 0.08, 2)]
    for name, s_in, zp_in, s_out, zp_out in cases:
        table = act.int8_table(name, s_in, zp_in, s_out, zp_out, alpha=0.1)
        raw = await run_op(tb, p, AfuFunc[name.upper()], AfuDType.INT8, x.tobytes(), table=table.tobytes())
        got = np.frombuffer(raw, np.int8).astype(int)
        # round(f(x)) with the configured scales, from the float64 definition.
        real = (x.astype(float) - zp_in) * s_in
        f = {"sigmoid": lambda v: 1 / (1 + math.exp(-v)), "tanh": math.tanh,
             "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
             "leaky_relu": lambda v: v if v >= 0 else 0.1 * v}[name]
        want = [min(127, max(-128, round(f(v) / s_out) + zp_out)) for v in real]
        assert list(got) == want, f"INT8 {name} differs at {np.nonzero(got != want)[0][:5]}"
    raw = await run_op(tb, p, AfuFunc.RELU, AfuDType.INT8, x.tobytes(), y_zero_point=-7)
    assert list(np.frombuffer(raw, np.int8)) == [max(int(v), -7) for v in x]


@cocotb.test()
async def elementwise_with_backpressure(dut):
    """BF16 and INT8 add / multiply, BF16 ReLU / LeakyReLU, odd lengths, random stalls."""
    p, tb = _tb(dut, stall=0.3)
    await tb.reset()
    rng = np.random.default_rng(p.get("seed", 0))
    n = 301
    a = rng.integers(0, 1 << 16, n).astype(np.uint16)
    b = rng.integers(0, 1 << 16, n).astype(np.uint16)
    # Normal-range operands too, where the result is checked against ml_dtypes as well.
    a[:150] = (rng.standard_normal(150) * 4).astype(ml_dtypes.bfloat16).view(np.uint16)
    b[:150] = (rng.standard_normal(150) * 4).astype(ml_dtypes.bfloat16).view(np.uint16)
    af = a[:150].view(ml_dtypes.bfloat16).astype(np.float32)
    bf = b[:150].view(ml_dtypes.bfloat16).astype(np.float32)
    for func, model, ref in ((AfuFunc.ADD, act.bf16_add, af + bf), (AfuFunc.MUL, act.bf16_mul, af * bf)):
        got = np.frombuffer(await run_op(tb, p, func, AfuDType.BF16, a.tobytes(), b.tobytes()), np.uint16)
        assert (got == model(a, b)).all(), f"BF16 {func.name} differs from the model"
        assert (got[:150] == ref.astype(ml_dtypes.bfloat16).view(np.uint16)).all()
    alpha = int(np.array(0.2, ml_dtypes.bfloat16).view(np.uint16))
    got = np.frombuffer(await run_op(tb, p, AfuFunc.LEAKY_RELU, AfuDType.BF16, a.tobytes(), alpha=alpha), np.uint16)
    assert (got == act.bf16_leaky_relu(a, alpha)).all()
    got = np.frombuffer(await run_op(tb, p, AfuFunc.RELU, AfuDType.BF16, a.tobytes()), np.uint16)
    assert (got == act.bf16_relu(a)).all()
    a8 = rng.integers(-128, 128, 333).astype(np.int8)
    b8 = rng.integers(-128, 128, 333).astype(np.int8)
    q = dict(a_zero_point=5, b_zero_point=-3, y_zero_point=1, multiplier=1518500250, shift=33)
    got = np.frombuffer(await run_op(tb, p, AfuFunc.ADD, AfuDType.INT8, a8.tobytes(), b8.tobytes(),
                                     a_mult=181, b_mult=-90, **q), np.int8)
    assert (got == act.int8_add(a8, b8, a_mult=181, b_mult=-90, **q)).all()
    got = np.frombuffer(await run_op(tb, p, AfuFunc.MUL, AfuDType.INT8, a8.tobytes(), b8.tobytes(), **q), np.int8)
    assert (got == act.int8_mul(a8, b8, **q)).all()


@cocotb.test()
async def int8_bf16_conversions(dut):
    """DEQUANTIZE of every INT8, QUANTIZE of every finite BF16 (or a strided subset) plus
    specials, with random stalls: bit-exact with the spec, and independently the BF16
    rounding of the exact product (ml_dtypes) / the exact rounding of x / scale."""
    p, tb = _tb(dut, stall=0.3)
    await tb.reset()
    x8 = np.arange(-128, 128, dtype=np.int8)
    for scale, zp in ((0.1, -3), (1 / 127, 0), (3.7, 127), (2.0 ** -125, -128)):
        sb = act.dequantize_scale_bits(scale)
        got = np.frombuffer(await run_op(tb, p, AfuFunc.DEQUANTIZE, AfuDType.INT8, x8[:-1].tobytes(),
                                         alpha=sb, a_zero_point=zp), np.uint16)
        assert (got == act.int8_dequantize(x8[:-1], zp, sb)).all(), f"DEQUANTIZE {scale}"
        s16 = np.array(sb, np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
        ref = ((x8[:-1].astype(np.float64) - zp) * s16).astype(np.float32)
        ref = np.where(np.abs(ref) < 2.0 ** -126, 0 * ref, ref).astype(ml_dtypes.bfloat16)
        assert (got.view(ml_dtypes.bfloat16).astype(np.float64) == ref.astype(np.float64)).all()
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = bits.view(ml_dtypes.bfloat16).astype(np.float64)
    fin = np.isfinite(x)
    specials = np.array([0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x0001, 0x8001, 0x0000, 0x8000], np.uint16)
    sweep = np.concatenate([bits[fin][::p.get("stride", 1)], specials])
    for scale, zp in ((0.1, 5), (1 / 127, -128), (0.003, 0)):
        mult, shift = act.quantize_args(scale)
        out = []
        for i in range(0, len(sweep), CHUNK):
            raw = await run_op(tb, p, AfuFunc.QUANTIZE, AfuDType.BF16, sweep[i:i + CHUNK].tobytes(),
                               multiplier=mult, shift=shift, y_zero_point=zp)
            out.append(np.frombuffer(raw, np.int8))
        got = np.concatenate(out).astype(np.int64)
        want = act.bf16_quantize(sweep, mult, shift, zp)
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, f"QUANTIZE {scale}: {bad.size} differ, first input 0x{sweep[bad[0]]:04x}"
        xs = sweep.view(ml_dtypes.bfloat16).astype(np.float64)
        with np.errstate(invalid="ignore"):
            v = np.where((sweep & 0x7F80) == 0, 0.0, xs) / float(np.float32(scale))
            exact = np.clip(np.rint(v) + zp, -128, 127)
            exact = np.where(np.isnan(v), zp, exact)
            tie = np.abs(np.abs(v - np.floor(v)) - 0.5) < 2.0 ** -20 * np.maximum(1, np.abs(v))
        assert (got[~tie] == exact[~tie]).all(), f"QUANTIZE {scale}: not round(x / scale)"
        dut._log.info(f"QUANTIZE scale {scale}: {len(sweep)} inputs, {tie.sum()} near ties")


@cocotb.test()
async def bench_errors(dut):
    """For the benchmark: RTL error of every BF16 function over [-8, 8], to ``bench_out``."""

    p, tb = _tb(dut)
    await tb.reset()
    bits = _bf16_inputs(1)
    x = bits.view(ml_dtypes.bfloat16).astype(np.float64)
    with np.errstate(invalid="ignore"):
        fin = np.isfinite(x) & (np.abs(x) <= 8)
    res = {}
    alpha = int(np.array(0.01, ml_dtypes.bfloat16).view(np.uint16))
    for name in act.TABLE_FUNCS + ("relu", "leaky_relu"):
        func = AfuFunc[name.upper()]
        out = []
        for i in range(0, len(bits), CHUNK):
            raw = await run_op(tb, p, func, AfuDType.BF16, bits[i:i + CHUNK].tobytes(), alpha=alpha)
            out.append(np.frombuffer(raw, np.uint16))
        y = np.concatenate(out).view(ml_dtypes.bfloat16).astype(np.float64)[fin]
        xf = x[fin]
        ref = np.where(xf >= 0, xf, 0.01 * xf) if name == "leaky_relu" else act.reference(name, xf)
        err = np.abs(y - ref)
        tol = np.maximum(1e-3, 2 * _ulp(ref))
        res[name] = {"inputs": int(fin.sum()), "max_err": float(err.max()),
                     "mean_err": float(err.mean()), "max_err_over_tol": float((err / tol).max())}
        assert res[name]["max_err_over_tol"] <= 1 or name in ("relu", "leaky_relu")
    if "bench_out" in p:
        with open(p["bench_out"], "w") as f:
            json.dump(res, f)
