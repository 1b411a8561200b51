import ml_dtypes
import numpy as np
import pytest
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.hw.afu import ActivationUnit
from accelpool.spec.units.afu import AfuArgs, AfuDType, AfuFunc
from accelpool.tb.afu_sim import simulate_afu
from accelpool.spec.config import UnitKind
from accelpool.sched.cost.afu import cycles as model_cycles
from accelpool.spec.golden import activations as act
from accelpool.tb.harness import run_cocotb
from accelpool.tb.streams import random_pattern
from accelpool.tb.unit_top import UnitTop

SPECIALS = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x7F80, 0xFF80, 0x7FC0, 0xFFC1, 0x3F80,
                     0xBF80, 0x4100, 0xC100, 0x40FF, 0xC0FF, 0x3F40, 0xBF40], np.uint16)


def _op(func, dtype, a, b=None, table=None, **extra):
    esize = 1 if dtype is AfuDType.INT8 else 2
    args = dict(a_addr=0, b_addr=1024, table_addr=2048, out_addr=2560, count=len(a) // esize,
                dtype=dtype, **extra)
    return dict(func=func, args=args, a=a, b=b, table=table, out_bytes=len(a))


def test_every_function_matches_model_and_cost_model():
    """One unit, every function and type; results bit-exact, cycles equal to the model."""
    rng = np.random.default_rng(0)
    lanes = 4
    bits = np.concatenate([SPECIALS, rng.integers(0, 1 << 16, 90).astype(np.uint16),
                           (rng.uniform(-8, 8, 90)).astype(ml_dtypes.bfloat16).view(np.uint16)])
    other = rng.integers(0, 1 << 16, len(bits)).astype(np.uint16)
    x8 = np.arange(-128, 128, dtype=np.int8)
    y8 = rng.integers(-128, 128, 256).astype(np.int8)
    alpha = 0x3E4D  # ~0.2
    q = dict(a_zero_point=-4, b_zero_point=9, y_zero_point=-2, multiplier=1 << 30, shift=36)
    tab = act.int8_table("tanh", 0.04, 2, 1 / 127, 0)
    cases = [
        (_op(AfuFunc.SIGMOID, AfuDType.BF16, bits.tobytes()), act.bf16_activation("sigmoid", bits)),
        (_op(AfuFunc.TANH, AfuDType.BF16, bits.tobytes()), act.bf16_activation("tanh", bits)),
        (_op(AfuFunc.GELU, AfuDType.BF16, bits.tobytes()), act.bf16_activation("gelu", bits)),
        (_op(AfuFunc.RELU, AfuDType.BF16, bits.tobytes()), act.bf16_relu(bits)),
        (_op(AfuFunc.LEAKY_RELU, AfuDType.BF16, bits.tobytes(), alpha=alpha),
         act.bf16_leaky_relu(bits, alpha)),
        (_op(AfuFunc.ADD, AfuDType.BF16, bits.tobytes(), other.tobytes()), act.bf16_add(bits, other)),
        (_op(AfuFunc.MUL, AfuDType.BF16, bits.tobytes(), other.tobytes()), act.bf16_mul(bits, other)),
        (_op(AfuFunc.RELU, AfuDType.INT8, x8[:251].tobytes(), y_zero_point=3), act.int8_relu(x8[:251], 3)),
        (_op(AfuFunc.TANH, AfuDType.INT8, x8.tobytes(), table=tab.tobytes()), act.int8_lut(x8, tab)),
        (_op(AfuFunc.ADD, AfuDType.INT8, x8.tobytes(), y8.tobytes(), a_mult=3, b_mult=-5, **q),
         act.int8_add(x8, y8, a_mult=3, b_mult=-5, **q)),
        (_op(AfuFunc.MUL, AfuDType.INT8, x8[:77].tobytes(), y8[:77].tobytes(), **q),
         act.int8_mul(x8[:77], y8[:77], **q)),
    ]
    results = simulate_afu([c for c, _ in cases], lanes=lanes)
    for (op, want), (raw, t) in zip(cases, results):
        got = np.frombuffer(raw, want.dtype)
        assert np.array_equal(got, want), f"{op['func'].name} {op['args']['dtype'].name}"
        a = np.frombuffer(op["a"], want.dtype)
        b = None if op.get("b") is None else np.frombuffer(op["b"], want.dtype)
        t8 = None if op.get("table") is None else np.frombuffer(op["table"], np.int8)
        assert np.array_equal(act.run_exec(op["func"], op["args"], a, b, t8), got)
        assert t == model_cycles({"lanes": lanes}, func=op["func"], dtype=op["args"]["dtype"],
                                 count=op["args"]["count"])


def _conversion_cases(rng):
    """DEQUANTIZE over every INT8 input, QUANTIZE over specials, random encodings (every
    exponent), saturation and ties; with normalized and with raw (clamp-exercising)
    multiplier/shift pairs. Odd counts leave partial words."""
    x8 = np.arange(-128, 128, dtype=np.int8)
    cases = []
    for zp, scale_bits in ((-3, act.dequantize_scale_bits(0.1)), (0, act.dequantize_scale_bits(1 / 127)),
                           (127, 0x7F7F), (0, 0x0080), (-128, act.dequantize_scale_bits(3.7))):
        for n in (256, 251):
            op = _op(AfuFunc.DEQUANTIZE, AfuDType.INT8, x8[:n].tobytes(), alpha=scale_bits,
                     a_zero_point=zp)
            op["out_bytes"] = 2 * n
            cases.append((op, act.int8_dequantize(x8[:n], zp, scale_bits)))
    ties = (np.arange(-130, 130) + 0.5).astype(ml_dtypes.bfloat16).view(np.uint16)
    bits = np.concatenate([SPECIALS, rng.integers(0, 1 << 16, 300).astype(np.uint16), ties,
                           rng.uniform(-300, 300, 100).astype(ml_dtypes.bfloat16).view(np.uint16)])
    qargs = [(*act.quantize_args(0.1), 5), (*act.quantize_args(1.0), -128),
             (*act.quantize_args(2.0 ** -30), 0), (*act.quantize_args(2.0 ** 33), 127),
             (3, 0, -100), (1 << 30, 63, 0), ((1 << 31) - 1, 17, 64)]
    for k, (mult, shift, zp) in enumerate(qargs):
        b = bits if k % 2 == 0 else bits[:-3]
        op = _op(AfuFunc.QUANTIZE, AfuDType.BF16, b.tobytes(), multiplier=mult, shift=shift,
                 y_zero_point=zp)
        op["out_bytes"] = len(b)
        cases.append((op, act.bf16_quantize(b, mult, shift, zp)))
    return cases


@pytest.mark.parametrize("lanes", [1, 2, 8])
def test_conversions_match_spec_and_cost_model(lanes):
    """DEQUANTIZE (INT8 -> BF16) and QUANTIZE (BF16 -> INT8): bit-exact with the spec,
    cycles equal to the cost model (that of a BF16 function on ``count`` elements), and
    the dtype argument has no effect; then a BF16 function still runs unchanged."""
    rng = np.random.default_rng(lanes)
    cases = _conversion_cases(rng)
    flipped = dict(cases[0][0])                      # dtype is ignored by the conversions
    flipped["args"] = {**flipped["args"], "dtype": AfuDType.BF16}
    cases.append((flipped, cases[0][1]))
    bits = rng.integers(0, 1 << 16, 37).astype(np.uint16)
    cases.append((_op(AfuFunc.TANH, AfuDType.BF16, bits.tobytes()), act.bf16_activation("tanh", bits)))
    results = simulate_afu([c for c, _ in cases], lanes=lanes)
    for (op, want), (raw, t) in zip(cases, results):
        a = op["args"]
        name = f"{op['func'].name} {a}"
        got = np.frombuffer(raw, want.dtype)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"{name}: {bad.size} differ, first at {bad[:4]}"
        assert t == model_cycles({"lanes": lanes}, func=op["func"], dtype=a["dtype"],
                                 count=a["count"]), name
        if op["func"] in (AfuFunc.DEQUANTIZE, AfuFunc.QUANTIZE):
            assert t == model_cycles({"lanes": lanes}, func="mul", dtype="bf16", count=a["count"])


def test_partial_word_leaves_following_bytes_alone():
    a = np.arange(-20, 3, dtype=np.int8)              # 23 elements: not a whole 8-byte word
    ops = [_op(AfuFunc.RELU, AfuDType.INT8, np.full(32, -1, np.int8).tobytes()),
           _op(AfuFunc.RELU, AfuDType.INT8, a.tobytes())]
    ops[0]["args"]["y_zero_point"] = -1
    ops[1]["out_bytes"] = 32
    (_, _), (raw, _) = simulate_afu(ops, lanes=4, pattern=random_pattern(0.6, 3))
    got = np.frombuffer(raw, np.int8)
    assert list(got[:23]) == [max(v, 0) for v in a] and (got[23:] == -1).all()


def test_exec_args_fit_and_roundtrip():
    assert AfuArgs.size <= isa.EXEC_ARGS_BITS
    cmd = isa.exec_cmd(UnitKind.AFU, AfuFunc.GELU, a_addr=0x100, out_addr=0x200, count=1000,
                       dtype=AfuDType.BF16)
    back = isa.decode(cmd.encode(), UnitKind.AFU)
    assert back.fields["func"] is AfuFunc.GELU and back.fields["args"]["count"] == 1000
    assert "afu.gelu" in back.listing()


def test_cost_model_errors():
    with pytest.raises(ValueError, match="Unknown AFU function 'softmax'"):
        model_cycles({"lanes": 8}, func="softmax", dtype="bf16", count=8)
    with pytest.raises(ValueError, match="AFU data type must be bf16 or int8, not 'fp32'"):
        model_cycles({"lanes": 8}, func="relu", dtype="fp32", count=8)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lanes=3), ValueError, r"AFU lanes must be a power of two from 1 to 64, not 3"),
    (dict(lanes=8.0), TypeError, r"AFU lanes must be a positive integer, not 8.0"),
    (dict(addr_width=40), ValueError, r"Address width must be between 2 and 24, not 40"),
])
def test_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        ActivationUnit(**kwargs)


TESTS = ["bf16_sigmoid_tanh_gelu_sweep", "int8_every_input", "elementwise_with_backpressure"]


def _cocotb(sim, stride, testcase=TESTS):
    params = {"lanes": 8, "depth": 2048}
    top = UnitTop(ActivationUnit(lanes=8, addr_width=11), depth=2048, read_ports=("rd_a", "rd_b"))
    run_cocotb(top, name="afu", params=params, test_module="accelpool.tb.tb_afu", sim=sim,
               env={"stride": stride, "seed": 3}, testcase=testcase)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_afu_cocotb(sim):
    """Verilator: every BF16 in [-8, 8]; Icarus: every 61st (plus specials). Both: all INT8."""
    _cocotb(sim, stride=1 if sim == "verilator" else 61)


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_afu_cocotb_conversions(sim):
    """DEQUANTIZE of every INT8; QUANTIZE of every finite BF16 on Verilator, every 61st on
    Icarus (plus specials)."""
    _cocotb(sim, stride=1 if sim == "verilator" else 61, testcase=["int8_bf16_conversions"])


@pytest.mark.slow
def test_afu_cocotb_icarus_full_sweep():
    _cocotb("icarus", stride=1, testcase=["bf16_sigmoid_tanh_gelu_sweep"])


def test_from_default_config_tile():
    from accelpool.spec.config import load_config
    tile = load_config().tiles_of(UnitKind.AFU)[0]
    afu = ActivationUnit.from_tile(tile)
    assert afu.lanes == tile["lanes"] and afu.word_bits == 16 * tile["lanes"]
    assert 2 ** afu.addr_width * afu.word_bytes == tile.scratchpad_bytes


def test_rom_holds_the_golden_bf16_tables():
    """The BF16 table ROM as simulated (amaranth.sim) holds every entry of the golden tables:
    row ``f*256 + s`` is ``d << C0_BITS | c0`` of segment ``s`` of function ``f``, in the order
    the unit selects them (SIGMOID 0, TANH 1, GELU 2)."""
    m = ActivationUnit(lanes=1).elaborate(None)
    rom = m.submodules.rom
    assert (Shape.cast(rom.shape).width, rom.depth) == (32, 3 * act.SEGMENTS)
    rows = []

    async def bench(ctx):
        rows.extend(ctx.get(rom.data[i]) for i in range(rom.depth))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for f, name in enumerate(("sigmoid", "tanh", "gelu")):
        c0, d = act.bf16_table(name)
        got = np.array(rows[f * act.SEGMENTS:(f + 1) * act.SEGMENTS], np.int64)
        for what, want, have in (("c0", c0, got & ((1 << act.C0_BITS) - 1)),
                                 ("d", d, got >> act.C0_BITS)):
            bad = np.flatnonzero(have != want)
            assert not len(bad), (f"{name} {what}: segments {bad[:5].tolist()} hold "
                                  f"{have[bad[:5]].tolist()}, the golden table "
                                  f"{want[bad[:5]].tolist()}")
