"""The layout engine against an independent numpy model of the contract, and its cycle formula.

The reference (:func:`accelpool.tb.layout_ref.reference`) works on the memory image as bytes and
keeps every byte outside the destination's real elements at its (random) initial value.
Every EXEC must take exactly :func:`accelpool.sched.cost.layout.cycles` cycles.
"""

from __future__ import annotations

import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.hw.layout_engine import LayoutEngine
from accelpool.spec.units.layout import MemArgs, MemFunc
from accelpool.tb.layout_sim import simulate_layout
from accelpool.sched.cost.layout import cycles
from accelpool.tb.layout_ref import im2col_case, reference, transpose_case

def _run_cases(cases, word_bits, rng):
    """Each case on its own random memory image: bytes equal the reference, cycles the formula."""
    for func, a, end in cases:
        image = rng.integers(0, 256, end + 16, dtype=np.uint8).tobytes()
        got, (t,) = simulate_layout(image, [(func, a)], word_bits=word_bits)
        want = reference(image, func, a)
        assert got[:len(want)] == want, (func, a)
        assert t == cycles(func, **a), (func, a, t)


@pytest.mark.parametrize("word_bits", [64, 32, 128])
def test_random_sweep(word_bits):
    rng = np.random.default_rng(word_bits)
    wb = word_bits // 8
    cases = [im2col_case(rng, wb) for _ in range(10)] + [transpose_case(rng, wb) for _ in range(8)]
    _run_cases(cases, word_bits, rng)


def test_edge_shapes():
    """Padding wider than the image (rows of padding only), stride 0, out_h/out_w smaller than
    derived, a 1x1 transpose, and empty EXECs (no element, 2 cycles, nothing written)."""
    rng = np.random.default_rng(5)
    base = dict(src_addr=8, dst_addr=512, elem_log2=1, src_pitch=10, dst_pitch=40,
                channels=2, height=2, width=3, kernel_h=3, kernel_w=3, stride_h=1,
                stride_w=2, pad_top=3, pad_left=2, out_h=4, out_w=3, pad_value=0xABCD1234)
    cases = [
        (MemFunc.IM2COL, base, 512 + 18 * 40),
        (MemFunc.IM2COL, {**base, "stride_h": 0, "out_h": 2, "out_w": 1}, 512 + 18 * 40),
        (MemFunc.IM2COL, {**base, "elem_log2": 2, "src_pitch": 12, "dst_pitch": 64,
                          "pad_top": 0, "pad_left": 0, "out_h": 1, "out_w": 1}, 512 + 18 * 64),
        (MemFunc.TRANSPOSE, dict(src_addr=3, dst_addr=100, elem_log2=0, src_pitch=1,
                                 dst_pitch=1, rows=1, cols=1), 101),
        (MemFunc.IM2COL, {**base, "out_w": 0}, 1024),
        (MemFunc.TRANSPOSE, dict(src_addr=0, dst_addr=64, elem_log2=0, src_pitch=5,
                                 dst_pitch=1, rows=0, cols=5), 1024),
    ]
    _run_cases(cases, 64, rng)
    assert cycles(MemFunc.TRANSPOSE, rows=0, cols=5) == 2


def test_back_to_back_execs():
    """Two EXECs in a row, the second reading what the first wrote (TRANSPOSE twice = identity)."""
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, 1024, dtype=np.uint8).tobytes()
    a1 = dict(src_addr=0, dst_addr=256, elem_log2=1, src_pitch=16, dst_pitch=14, rows=7, cols=5)
    a2 = dict(src_addr=256, dst_addr=640, elem_log2=1, src_pitch=14, dst_pitch=16, rows=5, cols=7)
    got, ts = simulate_layout(image, [(MemFunc.TRANSPOSE, a1), (MemFunc.TRANSPOSE, a2)])
    want = reference(reference(image, MemFunc.TRANSPOSE, a1), MemFunc.TRANSPOSE, a2)
    assert got == want
    assert got[640:640 + 7 * 16] != image[640:640 + 7 * 16]
    for r in range(7):
        assert got[640 + 16 * r:640 + 16 * r + 10] == image[16 * r:16 * r + 10]
    assert ts == [37, 37]


def test_contract_encoding():
    assert MemArgs.size <= isa.EXEC_ARGS_BITS
    assert isa.exec_spec(UnitKind.MEMORY).funcs is MemFunc
    assert [(f.name, f.value) for f in MemFunc] == [("IM2COL", 0), ("TRANSPOSE", 1)]
    widths = {n: f.width for n, f in MemArgs}
    assert widths == dict(src_addr=32, dst_addr=32, elem_log2=2, src_pitch=20, dst_pitch=20,
                          rows=12, cols=12, channels=10, height=10, width=10, kernel_h=3,
                          kernel_w=3, stride_h=2, stride_w=2, pad_top=3, pad_left=3,
                          out_h=10, out_w=10, pad_value=32)
    cmd = isa.exec_cmd(UnitKind.MEMORY, MemFunc.TRANSPOSE, rows=3, cols=4, elem_log2=1)
    back = isa.disassemble(isa.assemble([cmd]), UnitKind.MEMORY)[0]
    assert back.fields["func"] is MemFunc.TRANSPOSE and back.fields["args"]["cols"] == 4
    assert "memory.transpose" in back.listing()


def test_parameter_checks():
    with pytest.raises(ValueError, match=r"word width must be a power of two from 32 to 512 "
                                         r"bits, not 48"):
        LayoutEngine(word_bits=48, addr_width=8)
    with pytest.raises(TypeError, match=r"address width must be a positive integer, not '8'"):
        LayoutEngine(word_bits=64, addr_width="8")
    with pytest.raises(ValueError, match=r"Unknown layout engine function 'gather'; accepted: "
                                         r"im2col, transpose"):
        cycles("gather", rows=1)


def test_reference_matches_golden_im2col():
    """The reference's IM2COL equals the golden executor's formula on a plain contiguous case."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 1 << 16, (3, 5, 4), dtype=np.uint16)
    a = dict(src_addr=0, dst_addr=512, elem_log2=1, src_pitch=8, dst_pitch=2 * 3 * 2,
             channels=3, height=5, width=4, kernel_h=2, kernel_w=3, stride_h=2, stride_w=1,
             pad_top=1, pad_left=1, out_h=3, out_w=2, pad_value=7)
    image = bytearray(2048)
    image[:x.nbytes] = x.tobytes()
    got = np.frombuffer(reference(bytes(image), MemFunc.IM2COL, a)[512:512 + 18 * 12], np.uint16)
    got = got.reshape(18, 6)
    for c in range(3):
        for i in range(2):
            for j in range(3):
                for oy in range(3):
                    for ox in range(2):
                        yy, xx = oy * 2 + i - 1, ox + j - 1
                        v = x[c, yy, xx] if 0 <= yy < 5 and 0 <= xx < 4 else 7
                        assert got[(c * 2 + i) * 3 + j, oy * 2 + ox] == v


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_layout_engine_cocotb(sim):
    """The engine's Verilog on a scratchpad: random EXECs, bytes and cycles (tb/tb_layout_engine.py)."""
    from accelpool.tb.harness import run_cocotb
    from accelpool.tb.unit_top import UnitTop

    params = {"word_bits": 64, "depth": 2048, "cases": 24, "seed": 2}
    top = UnitTop(LayoutEngine(word_bits=64, addr_width=11), depth=2048)
    run_cocotb(top, name="layout_engine", params=params, test_module="accelpool.tb.tb_layout_engine",
               sim=sim)
