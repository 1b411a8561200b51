"""What each unit refuses in an EXEC (:class:`accelpool.spec.isa.ExecSpec` ``checks``): the same
rules in Python (diagnosis, codegen, the functional executor) and in the tile's hardware."""

import random

import pytest
from amaranth.hdl import Module, Shape, Signal
from amaranth.lib.data import View
from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.spec.config import UnitKind

KINDS = [k for k in UnitKind]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.key)
def test_all_zero_arguments_are_refused_by_every_unit(kind):
    spec = isa.exec_spec(kind)
    for func in spec.funcs:
        assert spec.problems(func, {}), (kind, func)


def test_a_valid_ce_convolution_is_accepted_and_each_rule_names_its_field():
    spec = isa.exec_spec(UnitKind.CE)
    (conv,) = spec.funcs
    ok = dict(height=6, width=6, c_in=8, c_out=8, kernel_h=3, kernel_w=3, stride=1,
              pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    assert spec.problems(conv, ok) == []
    assert spec.problems(conv, {**ok, "stride": 3}) == ["stride is not 1 or 2"]
    assert spec.problems(conv, {**ok, "kernel_w": 6, "pad_left": 1, "pad_right": 1}) == [
        "kernel_w is outside 1..5"]
    assert spec.problems(conv, {**ok, "pad_top": 3}) == ["a pad is not below the kernel"]
    assert spec.problems(conv, {**ok, "height": 1, "pad_top": 0, "pad_bottom": 0}) == [
        "the padded input is smaller than the kernel"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.key)
def test_the_hardware_refuses_exactly_what_python_names(kind):
    """``ExecSpec.invalid`` (the tile's gate) against ``ExecSpec.problems`` on random
    arguments, small values favoured so that zero and the limits come up often."""
    spec = isa.exec_spec(kind)
    rng = random.Random(kind.value)
    names = list(spec.args.members)
    func_bits = max(1, max(f.value for f in spec.funcs).bit_length())
    cases = []
    for _ in range(60):
        func = rng.choice(list(spec.funcs))
        args = {}
        for n in names:
            width = spec.args[n].width
            top = (1 << min(width, 4)) - 1 if rng.random() < 0.8 else (1 << width) - 1
            args[n] = rng.randint(0, top)
        cases.append((func, args))

    raw = Signal(spec.args.size)
    fsig = Signal(func_bits)
    out = Signal()
    m = Module()
    m.d.comb += out.eq(spec.invalid(fsig, View(spec.args, raw)))
    sim = Simulator(m)
    seen = []

    async def bench(ctx):
        for func, args in cases:
            word = 0
            for n, v in args.items():
                f = spec.args[n]
                word |= (v & ((1 << f.width) - 1)) << f.offset
            ctx.set(raw, word)
            ctx.set(fsig, func.value)
            seen.append(ctx.get(out))

    sim.add_testbench(bench)
    sim.run()
    for (func, args), hw in zip(cases, seen):
        signed_args = {}
        for n, v in args.items():
            f = spec.args[n]
            negative = Shape.cast(f.shape).signed and v >> (f.width - 1)
            signed_args[n] = v - (1 << f.width) if negative else v
        assert bool(hw) == bool(spec.problems(func, signed_args)), (func, args)
