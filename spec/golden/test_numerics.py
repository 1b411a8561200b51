"""The reference arithmetic against numpy float32 / ml_dtypes.bfloat16 / exact rationals."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from accelpool.spec.golden import numerics as nx

BF16 = ml_dtypes.bfloat16
N_DEFAULT = 1_000_000
N_SLOW = 20_000_000


# ---------------------------------------------------------------------------------------
# Operand generators: random encodings that stress every path
# ---------------------------------------------------------------------------------------

def rand_fp32_bits(rng, n, close=False):
    """Random FP32 encodings: all exponents, plus (if ``close``) pairs with near exponents."""
    bits = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32)
    if close:  # exponents in a narrow band so that alignment/cancellation paths are hit
        exp = rng.integers(100, 140, n).astype(np.uint32)
        bits = (bits & np.uint32(0x807FFFFF)) | (exp << 23)
    return bits


def pair_close(rng, n):
    a = rand_fp32_bits(rng, n, close=True)
    # b: a's exponent +- a few, random fraction, random sign: cancellation and carries
    de = rng.integers(-30, 31, n)
    exp = np.clip(((a >> 23) & 0xFF).astype(np.int64) + de, 1, 254).astype(np.uint32)
    frac = rng.integers(0, 1 << 23, n).astype(np.uint32)
    # some b share a's fraction exactly (exact cancellation and ties)
    same = rng.random(n) < 0.1
    frac = np.where(same, a & 0x7FFFFF, frac)
    sign = rng.integers(0, 2, n).astype(np.uint32) << 31
    return a, sign | (exp << 23) | frac


def specials32():
    vals = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
            0x7F800001, 0xFFBFFFFF, 0x00000001, 0x807FFFFF, 0x00400000, 0x00800000,
            0x80800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000, 0xBF800000, 0x3F800001,
            0x33800000, 0x00800001, 0x7F000000, 0x01000000]
    return np.array(vals, dtype=np.uint32)


def specials16():
    vals = [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F81, 0xFFFF, 0x0001, 0x807F,
            0x0080, 0x8080, 0x7F7F, 0xFF7F, 0x3F80, 0xBF80, 0x3F81, 0x3FFF, 0x2000, 0x5F80,
            0x1F80, 0x0100, 0x7F00]
    return np.array(vals, dtype=np.uint16)


def is_sub32(bits):
    return ((bits & 0x7F800000) == 0) & ((bits & 0x7FFFFF) != 0)


def is_nan32(bits):
    return ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x7FFFFF) != 0)


def numpy_ftz32(bits):
    """numpy's IEEE result with the FTZ output rule applied (subnormal -> signed zero)."""
    return np.where(is_sub32(bits), bits & 0x80000000, bits).astype(np.uint32)


def check_against_numpy(got, want):
    """Bit-exact, except that NaNs compare as NaN (ours is canonical)."""
    nan_w = is_nan32(want)
    assert np.array_equal(is_nan32(got), nan_w)
    assert np.all(got[nan_w] == nx.FP32_QNAN)
    bad = np.flatnonzero((got != want) & ~nan_w)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. got {got[bad[:4]]} want {want[bad[:4]]}"


# ---------------------------------------------------------------------------------------
# fp32_add
# ---------------------------------------------------------------------------------------

def _check_add(a, b):
    a = nx.ftz_fp32_bits(a)
    b = nx.ftz_fp32_bits(b)   # numpy sees the same (DAZ) inputs
    with np.errstate(all="ignore"):
        want = numpy_ftz32((a.view(np.float32) + b.view(np.float32)).view(np.uint32))
    check_against_numpy(nx.fp32_add_bits(a, b), want)


def test_fp32_add_random_all_exponents():
    rng = np.random.default_rng(1)
    _check_add(rand_fp32_bits(rng, N_DEFAULT), rand_fp32_bits(rng, N_DEFAULT))


def test_fp32_add_random_close_exponents():
    rng = np.random.default_rng(2)
    _check_add(*pair_close(rng, N_DEFAULT))


def test_fp32_add_near_underflow_and_overflow():
    rng = np.random.default_rng(3)
    n = 200_000
    for lo, hi in ((1, 30), (225, 255)):
        exp_a = rng.integers(lo, hi, n).astype(np.uint32)
        exp_b = rng.integers(lo, hi, n).astype(np.uint32)
        a = (rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32) & 0x807FFFFF) | (exp_a << 23)
        b = (rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32) & 0x807FFFFF) | (exp_b << 23)
        _check_add(a, b)


def test_fp32_add_every_special_pair():
    s = specials32()
    a, b = np.meshgrid(s, s)
    _check_add(a.ravel(), b.ravel())


def test_fp32_add_signed_zeros_and_ftz():
    add = lambda x, y: int(nx.fp32_add_bits(np.uint32(x), np.uint32(y)))
    assert add(0x00000000, 0x80000000) == 0x00000000
    assert add(0x80000000, 0x80000000) == 0x80000000
    assert add(0x3F800000, 0xBF800000) == 0x00000000     # x + (-x) = +0
    assert add(0x00000001, 0x00000000) == 0x00000000     # subnormal input reads as zero
    assert add(0x80000001, 0x80000000) == 0x80000000     # ... of its sign
    # 1.5 * 2**-126 - 1.0 * 2**-126 = 2**-127 is subnormal: flushed, sign of the result
    assert add(0x00C00000, 0x80800000) == 0x00000000
    assert add(0x80C00000, 0x00800000) == 0x80000000
    assert add(0x7F800000, 0xFF800000) == nx.FP32_QNAN
    assert add(0xFFC00001, 0x3F800000) == nx.FP32_QNAN   # canonical, payload dropped


@settings(max_examples=3000, deadline=None)
@given(st.floats(width=32, allow_subnormal=False), st.floats(width=32, allow_subnormal=False))
def test_fp32_add_hypothesis_exact_rational(x, y):
    """Against exact rational arithmetic rounded by numpy's float32 conversion of the sum."""
    a, b = np.float32(x), np.float32(y)
    got = nx.fp32_add_bits(np.uint32(a.view(np.uint32)), np.uint32(b.view(np.uint32)))
    if np.isfinite(a) and np.isfinite(b) and (a != 0 or b != 0):
        exact = Fraction(float(a)) + Fraction(float(b))
        want = np.float32(np.float64(exact)) if exact != 0 else np.float32(0.0)
        # float64 holds the sum of two float32 exactly unless exponents are far apart; the
        # double rounding is then harmless because the sum is sticky far below FP32's ulp.
        wb = numpy_ftz32(np.uint32(np.asarray(want).view(np.uint32)))
        assert int(got) == int(wb) or (is_nan32(np.uint32(got)) and is_nan32(wb))


@pytest.mark.slow
def test_fp32_add_random_large():
    rng = np.random.default_rng(11)
    for _ in range(N_SLOW // N_DEFAULT):
        _check_add(rand_fp32_bits(rng, N_DEFAULT), rand_fp32_bits(rng, N_DEFAULT))
        _check_add(*pair_close(rng, N_DEFAULT))


# ---------------------------------------------------------------------------------------
# bf16_mul
# ---------------------------------------------------------------------------------------

def _check_mul(a16, b16):
    a16 = np.where((a16 & 0x7F80) == 0, a16 & 0x8000, a16).astype(np.uint16)   # DAZ
    b16 = np.where((b16 & 0x7F80) == 0, b16 & 0x8000, b16).astype(np.uint16)
    fa = nx.bits_to_bf16(a16).astype(np.float32)     # exact widening
    fb = nx.bits_to_bf16(b16).astype(np.float32)
    with np.errstate(all="ignore"):
        want = numpy_ftz32((fa * fb).view(np.uint32))
    check_against_numpy(nx.bf16_mul_bits(a16, b16), want)


def test_bf16_mul_exhaustive_fraction_pairs_random_rest():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 1 << 16, N_DEFAULT).astype(np.uint16)
    b = rng.integers(0, 1 << 16, N_DEFAULT).astype(np.uint16)
    _check_mul(a, b)


def test_bf16_mul_every_special_pair():
    s = specials16()
    a, b = np.meshgrid(s, s)
    _check_mul(a.ravel(), b.ravel())


def test_bf16_mul_is_exact_and_ftz():
    m = lambda x, y: int(nx.bf16_mul_bits(np.uint16(x), np.uint16(y)))
    assert m(0x3FFF, 0x3FFF) == np.float32(np.float32(1.9921875) ** 2).view(np.uint32)
    assert m(0x0080, 0x3F00) == 0x00000000        # 2**-126 * 0.5: subnormal -> +0
    assert m(0x8080, 0x3F00) == 0x80000000
    assert m(0x0001, 0x7F7F) == 0x00000000        # subnormal input
    assert m(0x7F80, 0x0000) == nx.FP32_QNAN       # inf * 0
    assert m(0xFF80, 0x3F80) == 0xFF800000
    assert m(0x7F7F, 0x7F7F) == 0x7F800000        # overflow
    assert m(0x8000, 0x3F80) == 0x80000000        # -0 * 1 = -0


def test_bf16_mul_is_commutative():
    """What computing a sparse weight's tile transposed (C^T = B^T A^T) relies on: every
    encoding against a shuffled copy of every encoding, and every pair of specials."""
    a = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    b = np.random.default_rng(9).permutation(a)
    s = specials16()
    sa, sb = (v.ravel() for v in np.meshgrid(s, s))
    for x, y in ((a, b), (sa, sb)):
        np.testing.assert_array_equal(nx.bf16_mul_bits(x, y), nx.bf16_mul_bits(y, x))


@pytest.mark.slow
def test_bf16_mul_exhaustive():
    """All 2**32 operand pairs, in slices."""
    grid = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    for hi in range(0, 1 << 16, 1 << 8):
        a = np.repeat(np.arange(hi, hi + (1 << 8), dtype=np.uint32).astype(np.uint16), 1 << 16)
        _check_mul(a, np.tile(grid, 1 << 8))


# ---------------------------------------------------------------------------------------
# fp32_to_bf16
# ---------------------------------------------------------------------------------------

def _check_round(x):
    x = nx.ftz_fp32_bits(x)
    with np.errstate(invalid="ignore"):   # ml_dtypes warns on NaN casts
        want = x.view(np.float32).astype(BF16).view(np.uint16)
    got = nx.fp32_to_bf16_bits(x)
    nan_w = ((want & 0x7F80) == 0x7F80) & ((want & 0x7F) != 0)
    nan_g = ((got & 0x7F80) == 0x7F80) & ((got & 0x7F) != 0)
    assert np.array_equal(nan_w, nan_g)
    assert np.all(got[nan_g] == nx.BF16_QNAN)
    bad = np.flatnonzero((got != want) & ~nan_w)
    assert bad.size == 0, f"{bad.size} mismatches, e.g. x={x[bad[:4]]}"


def test_fp32_to_bf16_random_and_ties():
    rng = np.random.default_rng(5)
    x = rand_fp32_bits(rng, N_DEFAULT)
    ties = (x & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    _check_round(np.concatenate([x, ties, specials32()]))


@pytest.mark.slow
def test_fp32_to_bf16_exhaustive():
    for hi in range(0, 1 << 32, 1 << 24):
        _check_round(np.arange(hi, hi + (1 << 24), dtype=np.uint64).astype(np.uint32))


def test_fp32_to_bf16_values():
    r = lambda x: int(nx.fp32_to_bf16_bits(np.uint32(x)))
    assert r(0x3F808000) == 0x3F80     # tie, even stays
    assert r(0x3F818000) == 0x3F82     # tie, odd rounds up
    assert r(0x7F7FFFFF) == 0x7F80     # rounds to infinity
    assert r(0x807FFFFF) == 0x8000     # subnormal -> -0
    assert r(0xFF800001) == nx.BF16_QNAN


# ---------------------------------------------------------------------------------------
# bf16_gemm
# ---------------------------------------------------------------------------------------

def _loop_gemm(a, b, c):
    """The documented order written out scalar by scalar through the element functions."""
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n), dtype=np.float32)
    for i in range(m):
        for j in range(n):
            acc = np.float32(0.0) if c is None else nx.bits_to_fp32(nx.ftz_fp32_bits(nx.fp32_bits(c[i, j])))
            for kk in range(k):
                acc = nx.fp32_add(acc, nx.bf16_mul(a[i, kk], b[kk, j]))
            out[i, j] = acc
    return out


def test_bf16_gemm_order_matches_scalar_loop():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 7)).astype(BF16)
    b = rng.standard_normal((7, 3)).astype(BF16)
    c = rng.standard_normal((5, 3)).astype(np.float32)
    for cc in (None, c):
        assert np.array_equal(nx.fp32_bits(nx.bf16_gemm(a, b, cc)), nx.fp32_bits(_loop_gemm(a, b, cc)))


def test_bf16_gemm_k_split_is_exact():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((9, 40)).astype(BF16)
    b = rng.standard_normal((40, 11)).astype(BF16)
    whole = nx.bf16_gemm(a, b)
    part = nx.bf16_gemm(a[:, 17:], b[17:], nx.bf16_gemm(a[:, :17], b[:17]))
    assert np.array_equal(nx.fp32_bits(whole), nx.fp32_bits(part))


def test_bf16_gemm_within_bf16_tolerance_of_float32_matmul():
    rng = np.random.default_rng(8)
    a = rng.standard_normal((64, 256)).astype(BF16)
    b = rng.standard_normal((256, 64)).astype(BF16)
    want = a.astype(np.float32) @ b.astype(np.float32)
    got = nx.bf16_gemm(a, b)
    scale = np.abs(a.astype(np.float32)) @ np.abs(b.astype(np.float32))
    assert np.all(np.abs(got - want) <= 256 * np.finfo(np.float32).eps * scale)
    # ... and well within BF16's own resolution of the result
    assert np.all(np.abs(got - want) <= 2.0 ** -8 * scale)


def test_bf16_gemm_specials():
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    a = np.array([[1, inf], [0, -0.0], [inf, -inf]], dtype=BF16)
    b = np.array([[1, 0], [1, -0.0]], dtype=BF16)
    got = nx.bf16_gemm(a, b)
    assert got[0, 0] == inf and np.isnan(got[0, 1])          # inf * 0 -> NaN
    assert nx.fp32_bits(got[1]).tolist() == [0, 0]             # +0 + (-0) = +0
    assert np.isnan(got[2, 0])                                 # inf - inf
    c = np.array([[nan, -0.0]] * 3, dtype=np.float32)
    got = nx.bf16_gemm(np.zeros((3, 2), BF16) * -1, np.zeros((2, 2), BF16), c)
    assert np.isnan(got[0, 0]) and nx.fp32_bits(got[0, 1]) == 0x80000000


def test_gemm_argument_errors():
    with pytest.raises(TypeError, match="bf16_gemm operands must be bfloat16"):
        nx.bf16_gemm(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"needs a\[M,K\] and b\[K,N\]"):
        nx.bf16_gemm(np.zeros((2, 3), BF16), np.zeros((2, 2), BF16))
    with pytest.raises(ValueError, match="accumulator must have shape"):
        nx.int8_gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), np.zeros((3, 3), np.int32))


# ---------------------------------------------------------------------------------------
# int8_gemm and requantize
# ---------------------------------------------------------------------------------------

def test_int8_gemm_against_python_ints_with_wraparound():
    rng = np.random.default_rng(9)
    a = rng.integers(-128, 128, (6, 50), dtype=np.int8)
    b = rng.integers(-128, 128, (50, 4), dtype=np.int8)
    c = rng.integers(-(1 << 31), 1 << 31, (6, 4), dtype=np.int64).astype(np.int32)
    c[0, 0] = np.int32(2**31 - 1)
    got = nx.int8_gemm(a, b, c)
    for i in range(6):
        for j in range(4):
            s = int(c[i, j]) + sum(int(a[i, k]) * int(b[k, j]) for k in range(50))
            s = (s + 2**31) % 2**32 - 2**31
            assert got[i, j] == s
    ext = np.full((1, 3), -128, np.int8)
    assert nx.int8_gemm(ext, np.full((3, 1), -128, np.int8))[0, 0] == 3 * 16384


def _onnx_quantize(y, zp):
    """QuantizeLinear on exact rationals: round half to even, saturate."""
    out = []
    for v in y:
        q = round(v)             # Python's round on a Fraction is half-to-even
        out.append(max(-128, min(127, q + zp)))
    return np.array(out, dtype=np.int8)


def test_requantize_equals_exact_rational_rounding_of_fixed_point():
    rng = np.random.default_rng(10)
    acc = rng.integers(-(1 << 31), 1 << 31, 20000, dtype=np.int64).astype(np.int32)
    acc[:6] = [0, 1, -1, 2**31 - 1, -2**31, 3]
    for mult, shift, zp in ((1 << 30, 31, 0), (1234567891, 40, -7), (1 << 30, 30, 5),
                            (3, 1, 0), (2**31 - 1, 63, 127), (12345, 0, -128)):
        got = nx.requantize(acc, mult, shift, zp)
        want = _onnx_quantize([Fraction(int(x) * mult, 2**shift) for x in acc], zp)
        assert np.array_equal(got, want)


def test_requantize_ties_to_even():
    acc = np.array([1, 3, 5, -1, -3, -5], dtype=np.int32)
    assert nx.requantize(acc, 1, 1, 0).tolist() == [0, 2, 2, 0, -2, -2]


@settings(max_examples=500, deadline=None)
@given(st.floats(min_value=2.0 ** -30, max_value=2.0 ** 20),
       st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=1, max_size=20),
       st.integers(-128, 127))
def test_quantize_multiplier_error_bound(scale, accs, zp):
    mult, shift = nx.quantize_multiplier(scale)
    assert (1 << 30) <= mult < (1 << 31)
    approx = Fraction(mult, 2**shift)
    assert abs(approx - Fraction(scale)) <= Fraction(scale) * Fraction(1, 2**31)
    acc = np.array(accs, dtype=np.int32)
    got = nx.requantize(acc, mult, shift, zp).astype(int)
    exact = _onnx_quantize([Fraction(int(x)) * Fraction(scale) for x in acc], zp).astype(int)
    assert np.all(np.abs(got - exact) <= 1)


def test_requantize_against_onnxruntime_quantizelinear():
    """ONNX QuantizeLinear on float inputs that are exactly acc * 2**-shift (no approximation)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    rng = np.random.default_rng(12)
    acc = rng.integers(-(1 << 12), 1 << 12, 4096).astype(np.int32)
    shift, zp = 4, 3
    x = (acc.astype(np.float64) / 2**shift).astype(np.float32)    # exact
    node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    graph = helper.make_graph(
        [node], "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [acc.size])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [acc.size])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [1.0]),
         helper.make_tensor("z", TensorProto.INT8, [], [zp])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    assert np.array_equal(nx.requantize(acc, 1, shift, zp), want)


def test_requantize_argument_errors():
    acc = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match=r"shift must be in 0\.\.63, not 64"):
        nx.requantize(acc, 1, 64, 0)
    with pytest.raises(ValueError, match=r"zero_point must be in -128\.\.127"):
        nx.requantize(acc, 1, 0, 128)
    with pytest.raises(TypeError, match="requantize takes an int32 array, not int64"):
        nx.requantize(np.zeros(3, np.int64), 1, 0, 0)
    with pytest.raises(ValueError, match="finite positive number"):
        nx.quantize_multiplier(0.0)
    with pytest.raises(ValueError, match="must be below 2\\*\\*31"):
        nx.quantize_multiplier(2.0 ** 31)
