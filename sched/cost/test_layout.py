"""The layout engine's cycle formula as a function (its RTL check is hw/test_layout_engine.py)."""

import pytest

from accelpool.spec.units.layout import MemFunc
from accelpool.sched.cost.layout import OVERHEAD, cycles, elements


def test_formula_terms():
    im2col = dict(channels=3, kernel_h=3, kernel_w=2, out_h=4, out_w=5, stride_h=2, pad_top=1,
                  elem_log2=2, src_pitch=100)
    assert elements("im2col", **im2col) == 3 * 3 * 2 * 4 * 5
    assert cycles(MemFunc.IM2COL, **im2col) == 360 + OVERHEAD == 362
    assert cycles("TRANSPOSE", rows=7, cols=5, elem_log2=0) == 37
    assert cycles(MemFunc.TRANSPOSE) == 2            # omitted fields are 0: no element


def test_unknown_function():
    with pytest.raises(ValueError, match=r"Unknown layout engine function 'gather'; accepted: "
                                         r"im2col, transpose"):
        elements("gather")
