import numpy as np
import pytest

from accelpool.hw.ce import ConvEngine
from accelpool.spec.units.ce import CeArgs, CeFunc
from accelpool.spec.ce_layout import ConvShape
from accelpool.tb.ce_sim import simulate_conv
from accelpool.spec.config import UnitKind
from accelpool.spec import isa
from accelpool.sched.cost.ce import cycles as model_cycles
from accelpool.spec.golden.conv import conv_integer, conv_requantized, run_exec
from accelpool.spec.golden.numerics import quantize_multiplier
from accelpool.tb.harness import run_cocotb
from accelpool.tb.streams import random_pattern
from accelpool.tb.unit_top import UnitTop


REQUANT = dict(multiplier=quantize_multiplier(0.02 * 0.005 / 0.05)[0],
               shift=quantize_multiplier(0.02 * 0.005 / 0.05)[1], y_zero_point=4)


def _case(rng, shape, bias, zp=(0, 0), requant=False, unsigned=False):
    lo, dt = (0, np.uint8) if unsigned else (-128, np.int8)
    x = rng.integers(lo, lo + 256, (shape.c_in, shape.height, shape.width)).astype(dt)
    w = rng.integers(-128, 128, (shape.c_out, shape.c_in, shape.kernel_h, shape.kernel_w)).astype(np.int8)
    b = rng.integers(-9999, 9999, shape.c_out).astype(np.int32) if bias else None
    kw = dict(x_zero_point=zp[0], w_zero_point=zp[1], strides=(shape.stride,) * 2,
              pads=shape.pads, bias=b)
    if requant:
        rq = dict(REQUANT, y_zero_point=REQUANT["y_zero_point"] + 128 * unsigned)
        want = conv_requantized(x[None], w, **rq, y_unsigned=unsigned, **kw)[0]
    else:
        want = conv_integer(x[None], w, **kw)[0]
    return x, w, b, want


# (shape, oc_lanes, ic_lanes, bias, requant): kernel sizes 1..5, both strides, asymmetric
# pads, channel counts that are not multiples of the lanes, writer-bound 1x1 layers. The
# cost-model sweep: every case's cycle count must equal the model's.
SWEEP = [
    (ConvShape(5, 10, 6, 5, 3, 3, 1, (1, 1, 1, 1)), 8, 8, True, True),
    (ConvShape(8, 24, 4, 5, 1, 1, 1, (0, 0, 0, 0)), 8, 8, False, False),
    (ConvShape(8, 8, 4, 4, 1, 1, 1, (0, 0, 0, 0)), 8, 8, True, True),
    (ConvShape(3, 4, 7, 7, 5, 5, 2, (2, 2, 2, 2)), 8, 4, True, False),
    (ConvShape(8, 16, 5, 6, 2, 2, 2, (0, 0, 0, 0)), 8, 8, False, True),
    (ConvShape(6, 9, 5, 7, 4, 3, 1, (0, 2, 3, 0)), 8, 4, True, False),
    (ConvShape(4, 5, 6, 6, 3, 3, 2, (1, 1, 0, 0)), 4, 2, False, True),
]


@pytest.mark.parametrize("shape, ol, il, bias, requant", SWEEP, ids=lambda v: getattr(v, "c_in", None) and
                         f"{v.c_in}to{v.c_out}_{v.height}x{v.width}_k{v.kernel_h}{v.kernel_w}s{v.stride}")
def test_conv_matches_reference_and_cost_model(shape, ol, il, bias, requant):
    rng = np.random.default_rng(shape.c_in * 100 + shape.c_out)
    zp = (int(rng.integers(-9, 9)), int(rng.integers(-2, 3)))
    x, w, b, want = _case(rng, shape, bias, zp, requant)
    got, t = simulate_conv(shape, x, w, b, oc_lanes=ol, ic_lanes=il, requant=requant,
                           x_zero_point=zp[0], w_zero_point=zp[1],
                           **(REQUANT if requant else {}))
    np.testing.assert_array_equal(got, want)
    assert t == model_cycles({"oc_lanes": ol, "ic_lanes": il}, c_in=shape.c_in, c_out=shape.c_out,
                             height=shape.height, width=shape.width, kernel_h=shape.kernel_h,
                             kernel_w=shape.kernel_w, stride=shape.stride, pads=shape.pads,
                             bias=bias, requant=requant)


def test_uint8_activations_and_output():
    rng = np.random.default_rng(8)
    shape = ConvShape(11, 10, 5, 6, 3, 3, 2, (1, 1, 1, 1))
    x, w, b, want = _case(rng, shape, True, zp=(131, 0), requant=True, unsigned=True)
    got, _ = simulate_conv(shape, x, w, b, requant=True, x_zero_point=131,
                           **dict(REQUANT, y_zero_point=REQUANT["y_zero_point"] + 128), y_unsigned=True)
    assert got.dtype == np.uint8 and np.unique(want).size > 20
    np.testing.assert_array_equal(got, want)
    # The golden executor's entry point, from the EXEC arguments, agrees.
    args = shape.exec_args(in_addr=0, w_addr=0, out_addr=0, bias=True, requant=True,
                           x_zero_point=131, x_unsigned=True, y_unsigned=True,
                           **dict(REQUANT, y_zero_point=REQUANT["y_zero_point"] + 128))
    np.testing.assert_array_equal(run_exec(args, x, w, b), got)


def test_conv_with_idle_streams():
    rng = np.random.default_rng(3)
    shape = ConvShape(9, 6, 5, 4, 3, 3, 1, (1, 1, 1, 1))
    x, w, b, want = _case(rng, shape, True)
    got, _ = simulate_conv(shape, x, w, b, oc_lanes=4, ic_lanes=4, pattern=random_pattern(0.6, 1))
    np.testing.assert_array_equal(got, want)


def test_exec_args_fit_and_roundtrip():
    assert CeArgs.size <= isa.EXEC_ARGS_BITS
    shape = ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))
    args = shape.exec_args(in_addr=0, w_addr=16384, out_addr=20480, bias_addr=18688, bias=True,
                           requant=True, x_zero_point=-3, y_zero_point=7, multiplier=1 << 30, shift=40)
    cmd = isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **args)
    back = isa.decode(cmd.encode(), UnitKind.CE)
    assert back.fields["func"] is CeFunc.CONV
    assert back.fields["args"]["x_zero_point"] == -3 and back.fields["args"]["shift"] == 40
    assert "ce.conv" in back.listing()


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(ic_lanes=6), ValueError, r"Input-channel lanes must be a power of two, not 6"),
    (dict(ic_lanes="8"), TypeError, r"Input-channel lanes must be a positive integer, not '8'"),
    (dict(oc_lanes=12, ic_lanes=8), ValueError, r"Output-channel lanes must be a multiple of the input-channel lanes \(8\), not 12"),
    (dict(weight_depth=0), ValueError, r"Weight depth must be between 1 and 65536, not 0"),
])
def test_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        ConvEngine(**kwargs)


@pytest.mark.parametrize("shape, msg", [
    (ConvShape(8, 8, 8, 8, 6, 6), r"kernel_h must be between 1 and 5, not 6"),
    (ConvShape(8, 8, 8, 8, 3, 3, 3), r"stride must be 1 or 2, not 3"),
    (ConvShape(8, 8, 8, 8, 3, 3, 1, (3, 0, 0, 0)), r"pad_top must be between 0 and 2, not 3"),
    (ConvShape(300, 8, 8, 8, 5, 5), r"needs 950 weight-buffer entries"),
])
def test_shape_errors(shape, msg):
    with pytest.raises(ValueError, match=msg):
        shape.check(ic_lanes=8, weight_depth=256)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_ce_cocotb(sim):
    params = {"oc_lanes": 8, "ic_lanes": 8, "depth": 8192}
    top = UnitTop(ConvEngine(oc_lanes=8, ic_lanes=8, addr_width=13), depth=8192)
    tests = ["random_convolutions_with_backpressure"]
    if sim == "verilator":     # 37k cycles: Verilator only (it is also the benchmark's layer)
        tests.append("layer_3x3_16_to_16_32x32")
    run_cocotb(top, name="ce", params=params, test_module="accelpool.tb.tb_ce", sim=sim, testcase=tests,
               env={"cases": 8 if sim == "verilator" else 3, "seed": 1})


def test_from_default_config_tile():
    from accelpool.spec.config import load_config
    tile = load_config().tiles_of(UnitKind.CE)[0]
    ce = ConvEngine.from_tile(tile)
    assert (ce.oc_lanes, ce.ic_lanes, ce.word_bits) == (tile["oc_lanes"], tile["ic_lanes"], 8 * tile["ic_lanes"])
    assert 2 ** ce.addr_width * ce.word_bytes == tile.scratchpad_bytes
