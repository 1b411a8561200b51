"""The AFU model against float64 (tolerance, monotonicity) and ml_dtypes (rounding)."""

import math

import ml_dtypes
import numpy as np
import pytest

from accelpool.spec.golden import activations as act

BITS = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
with np.errstate(invalid="ignore"):
    X = BITS.view(ml_dtypes.bfloat16).astype(np.float64)
    IN_RANGE = np.isfinite(X) & (np.abs(X) <= 8)


def _ulp(y):
    e = np.floor(np.log2(np.maximum(np.abs(y), 2.0 ** -126)))
    return 2.0 ** (e - 7)


@pytest.mark.parametrize("func", act.TABLE_FUNCS)
def test_every_bf16_in_range_within_tolerance_and_monotone(func):
    bits, x = BITS[IN_RANGE], X[IN_RANGE]
    y = act.bf16_activation(func, bits).view(ml_dtypes.bfloat16).astype(np.float64)
    ref = act.reference(func, x)
    err = np.abs(y - ref)
    assert (err <= np.maximum(1e-3, 2 * _ulp(ref))).all()
    order = np.argsort(x, kind="stable")
    lo = -0.75 if func == "gelu" else -np.inf    # GELU decreases below about -0.75
    keep = x[order] >= lo
    assert (np.diff(y[order][keep]) >= 0).all()


@pytest.mark.parametrize("func", act.TABLE_FUNCS)
def test_outside_range_and_specials(func):
    out = act.bf16_activation(func, BITS)
    with np.errstate(invalid="ignore", over="ignore"):
        big = np.isfinite(X) & (np.abs(X) > 8)
        y = out.view(ml_dtypes.bfloat16).astype(np.float64)
        ref = act.reference(func, X[big])
    assert (np.abs(y[big] - ref) <= np.maximum(1e-3, 2 * _ulp(ref))).all()
    nan = np.isnan(X)
    assert (out[nan] == act.CANONICAL_NAN).all()
    inf = {0x7F80: {"sigmoid": 1.0, "tanh": 1.0, "gelu": math.inf},
           0xFF80: {"sigmoid": 0.0, "tanh": -1.0, "gelu": 0.0}}
    for b, want in inf.items():   # sigmoid(-inf) saturates at 1 - S(8 - 2**-16) = 3.5e-4
        assert y[b] == want[func] or abs(y[b] - want[func]) <= 1e-3


def test_table_shape_and_monotone_knots():
    for func in act.TABLE_FUNCS:
        c0, d = act.bf16_table(func)
        assert len(c0) == len(d) == act.SEGMENTS == 256
        assert (d >= 0).all() and c0.max() < 2 ** act.C0_BITS and d.max() < 2 ** act.D_BITS
    with pytest.raises(ValueError, match="No BF16 table for 'relu'"):
        act.bf16_table("relu")


def test_fixed_to_bf16_rounds_to_nearest_even():
    mag = np.concatenate([np.arange(0, 1 << 12), np.arange(1 << 12, 1 << 23, 97)]).astype(np.int64)
    got = act.fixed_to_bf16(np.zeros_like(mag), mag)
    want = (mag.astype(np.float64) / 65536).astype(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    assert (got == want).all()


def test_elementwise_bf16_matches_ml_dtypes_on_normal_values():
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(20000) * 10.0 ** rng.integers(-5, 5, 20000)).astype(ml_dtypes.bfloat16)
    b = (rng.standard_normal(20000) * 10.0 ** rng.integers(-5, 5, 20000)).astype(ml_dtypes.bfloat16)
    ab, bb = a.view(np.uint16), b.view(np.uint16)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    assert (act.bf16_add(ab, bb) == (af + bf).astype(ml_dtypes.bfloat16).view(np.uint16)).all()
    assert (act.bf16_mul(ab, bb) == (af * bf).astype(ml_dtypes.bfloat16).view(np.uint16)).all()
    alpha = int(np.array(0.01, ml_dtypes.bfloat16).view(np.uint16))
    want = np.where(af >= 0, af, (af * np.float32(np.array(alpha, np.uint16).view(ml_dtypes.bfloat16)))
                    ).astype(ml_dtypes.bfloat16).view(np.uint16)
    got = act.bf16_leaky_relu(ab, alpha)
    pos_zero = (ab == 0x8000)                       # -0 * alpha = -0, where() keeps -0 too
    assert (got[~pos_zero] == want[~pos_zero]).all()


@pytest.mark.parametrize("func", ["sigmoid", "tanh", "gelu", "leaky_relu"])
def test_int8_table_is_round_of_f(func):
    s_in, zp_in, s_out, zp_out = 0.05, -7, 1 / 200, -100
    table = act.int8_table(func, s_in, zp_in, s_out, zp_out, alpha=0.1)
    x = np.arange(-128, 128)
    f = {"sigmoid": lambda v: 1 / (1 + math.exp(-v)), "tanh": math.tanh,
         "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
         "leaky_relu": lambda v: v if v >= 0 else 0.1 * v}[func]
    want = [min(127, max(-128, round(f((v - zp_in) * s_in) / s_out) + zp_out)) for v in x]
    assert list(act.int8_lut(x.astype(np.int8), table)) == want


def test_uint8_table():
    table = act.int8_table("sigmoid", 0.05, 128, 1 / 256, 0, unsigned=True)
    x = np.arange(256).astype(np.uint8)
    want = [min(255, round(1 / (1 + math.exp(-(v - 128) * 0.05)) * 256)) for v in range(256)]
    assert table.dtype == np.uint8 and list(act.int8_lut(x, table)) == want


def test_int8_relu_and_unknown_function():
    x = np.arange(-128, 128).astype(np.int8)
    assert (act.int8_relu(x, -3) == np.maximum(x, -3)).all()
    with pytest.raises(ValueError, match="Unknown activation 'swish'"):
        act.reference("swish", 1.0)


# -- DEQUANTIZE / QUANTIZE -------------------------------------------------------------

Q8 = np.arange(-128, 128, dtype=np.int8)


def _ort_single(node_type, x, scale, zp, out_name="y"):
    """One onnxruntime QuantizeLinear / DequantizeLinear node on ``x``."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    in_t = TensorProto.INT8 if node_type == "DequantizeLinear" else TensorProto.FLOAT
    out_t = TensorProto.FLOAT if node_type == "DequantizeLinear" else TensorProto.INT8
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [float(np.float32(scale))]),
             helper.make_tensor("z", TensorProto.INT8, [], [int(zp)])]
    g = helper.make_graph([helper.make_node(node_type, ["x", "s", "z"], [out_name])], "g",
                          [helper.make_tensor_value_info("x", in_t, [len(x)])],
                          [helper.make_tensor_value_info(out_name, out_t, [len(x)])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_dequantize_by_hand():
    s = act.dequantize_scale_bits(0.1)
    assert s == 0x3DCD                                   # 0.10009765625
    y = act.int8_dequantize(np.array([5, -3, 127, -128, 0], np.int8), -3, s)
    # 8 * 0.10009765625 = 0.80078125 -> 0x3F4D exactly; q = zp -> +0;
    # 130 * s = 13.0126953125 -> 13.0 (0x4150); -125 * s = -12.512... -> -12.5 (0xC148);
    # 3 * s = 0.30029296875 = 153.75 * 2**-9 -> 154 * 2**-9 = 0.30078125 (0x3E9A)
    assert y.tolist() == [0x3F4D, 0x0000, 0x4150, 0xC148, 0x3E9A]
    assert act.dequantize_scale_bits(0.5) == 0x3F00
    assert act.int8_dequantize(np.array([-128], np.int8), 127, 0x7F7F)[0] == 0xFF80  # -inf
    assert act.int8_dequantize(np.array([1], np.int8), 0, 0x0080)[0] == 0x0080        # 2**-126
    assert act.int8_dequantize(np.array([-1], np.int8), 0, 0x0080)[0] == 0x8080
    assert act.int8_dequantize(np.array([1], np.int8), 2, 0x0080)[0] == 0x8080


@pytest.mark.parametrize("scale,zp", [(0.1, -3), (1 / 127, 0), (0.0123, 100), (3.7, -128),
                                      (2.0 ** -120, 5), (1e30, 0)])
def test_dequantize_every_int8_is_one_rounding_and_near_onnxruntime(scale, zp):
    """All 256 inputs: the BF16 rounding (ml_dtypes) of the exact (q - zp) * bf16(scale),
    and within 2**-7 relative of onnxruntime's float32 DequantizeLinear (two BF16
    roundings of at most 2**-8 each: the scale's and the result's)."""
    sb = act.dequantize_scale_bits(scale)
    y = act.int8_dequantize(Q8, zp, sb)
    s16 = np.array(sb, np.uint16).view(ml_dtypes.bfloat16).astype(np.float64)
    exact = (Q8.astype(np.float64) - zp) * s16          # exact in float64 (8 x 8 bits)
    want = exact.astype(np.float32).astype(ml_dtypes.bfloat16)  # float32 exact, then RNE
    np.testing.assert_array_equal(y, want.view(np.uint16))
    ref = _ort_single("DequantizeLinear", Q8, scale, zp).astype(np.float64)
    got = y.view(ml_dtypes.bfloat16).astype(np.float64)
    fin = np.isfinite(ref) & (np.abs(ref) < 3e38)
    assert (np.abs(got[fin] - ref[fin]) <= 2.0 ** -7 * np.abs(ref[fin])).all()


def test_dequantize_argument_errors():
    for bad in (0.0, -1.0, float("nan"), float("inf"), 1e-39, 4e38):
        with pytest.raises(ValueError, match=r"Dequantize scale must be a positive number whose "
                                             r"BF16 rounding is normal and finite"):
            act.dequantize_scale_bits(bad)
    with pytest.raises(ValueError, match=r"Dequantize zero point must be an INT8 \(-128..127\), "
                                         r"not 128"):
        act.int8_dequantize(Q8, 128, 0x3F80)


def test_quantize_by_hand():
    m, s = act.quantize_args(1.0)
    assert (m, s) == (1 << 30, 30)
    # 126.6 is 126.5 in BF16: a tie, to the even 126
    x = np.array([2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.5, 126.6, 127.5, 300.0, -129.0, -1e30],
                 ml_dtypes.bfloat16).view(np.uint16)
    assert act.bf16_quantize(x, m, s, 0).tolist() == [2, 4, -2, -4, 0, 0, 2, 126, 127, 127,
                                                      -128, -128]
    specials = np.array([0x0000, 0x8000, 0x0001, 0x807F, 0x7FC0, 0xFFC1, 0x7F80, 0xFF80],
                        np.uint16)                  # zeros, subnormals, NaNs, infinities
    assert act.bf16_quantize(specials, m, s, -7).tolist() == [-7] * 6 + [127, -128]
    # 0.3 / 0.1 with the scale's fixed-point inverse; zero point added after rounding
    m, s = act.quantize_args(0.1)
    x = np.array([0.30078125, -0.30078125, 12.75, -12.75], ml_dtypes.bfloat16).view(np.uint16)
    assert act.bf16_quantize(x, m, s, 120).tolist() == [123, 117, 127, -8]


def test_quantize_argument_errors():
    for bad in (0.0, -0.5, float("inf"), float("nan"), 2.0 ** -31, 2.0 ** 34):
        with pytest.raises(ValueError, match=r"Quantize scale must be a finite positive number "
                                             r"from 2\*\*-30 to 2\*\*33"):
            act.quantize_args(bad)
    for ok in (2.0 ** -30, 2.0 ** 33, 1e-5, 1 / 127):
        m, s = act.quantize_args(ok)
        assert 1 << 30 <= m < 1 << 31 and 0 <= s <= 63


@pytest.mark.parametrize("scale,zp", [(0.1, -3), (1 / 127, 0), (0.0123, 100), (3.7, -128),
                                      (2.0 ** -20, 7), (1000.0, 0)])
def test_quantize_every_finite_bf16_against_exact_and_onnxruntime(scale, zp):
    """Every finite BF16: equal to exact round_half_even(x / scale) + zp saturated, except
    within 2**-20 of a tie, and within one step of onnxruntime's QuantizeLinear (equal for
    all but a few)."""
    bits = BITS[np.isfinite(X)]
    x = X[np.isfinite(X)]
    m, s = act.quantize_args(scale)
    got = act.bf16_quantize(bits, m, s, zp).astype(np.int64)
    v = x / float(np.float32(scale))
    exact = np.clip(np.rint(v) + zp, -128, 127)
    near_tie = np.abs(np.abs(v - np.floor(v)) - 0.5) < 2.0 ** -20 * np.maximum(1, np.abs(v))
    sub = (bits & 0x7F80) == 0                            # subnormal inputs read as zero
    exact = np.where(sub, zp, exact)
    assert (got[~near_tie] == exact[~near_tie]).all()
    assert (np.abs(got - exact) <= 1).all()
    ref = _ort_single("QuantizeLinear", x.astype(np.float32), scale, zp).astype(np.int64)
    diff = np.abs(got - ref)
    assert diff.max() <= 1 and np.count_nonzero(diff) <= max(4, len(bits) // 2000)


def test_run_exec_dispatches_conversions():
    sb = act.dequantize_scale_bits(0.25)
    np.testing.assert_array_equal(
        act.run_exec("dequantize", {"a_zero_point": 1, "alpha": sb, "dtype": "int8"}, Q8),
        act.int8_dequantize(Q8, 1, sb))
    m, s = act.quantize_args(0.25)
    bits = np.array([0x3F80, 0xC000, 0x7FC0], np.uint16)
    np.testing.assert_array_equal(
        act.run_exec("quantize", {"multiplier": m, "shift": s, "y_zero_point": 2}, bits),
        [6, -6, 2])
