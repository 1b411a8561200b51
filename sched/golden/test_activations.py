"""The AFU model against float64 (tolerance, monotonicity) and ml_dtypes (rounding)."""

import math

import ml_dtypes
import numpy as np
import pytest

from sched.golden import activations as act

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
