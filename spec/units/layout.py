"""The memory tile layout engine's EXEC contract: functions, argument layout, checks.

What the compiler emits and the RTL (``hw/layout_engine.py``) accepts: one definition for both.
"""

from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.kinds import UnitKind

__all__ = ["MemFunc", "MemArgs", "MemCommand", "MEM_SPEC"]

class MemFunc(enum.Enum, shape=8):
    """EXEC operations of the memory tile's layout engine."""

    IM2COL = 0
    TRANSPOSE = 1


MemArgs = data.StructLayout({
    "src_addr": 32,      # byte address of the source (element-aligned)
    "dst_addr": 32,      # byte address of the destination (element-aligned)
    "elem_log2": 2,      # element bytes: 0 -> 1, 1 -> 2, 2 -> 4
    "src_pitch": 20,     # bytes between consecutive source rows
    "dst_pitch": 20,     # bytes between consecutive destination rows
    "rows": 12,          # TRANSPOSE: source rows
    "cols": 12,          # TRANSPOSE: source columns
    "channels": 10,      # IM2COL: source x[channels, height, width]
    "height": 10,
    "width": 10,
    "kernel_h": 3,
    "kernel_w": 3,
    "stride_h": 2,
    "stride_w": 2,
    "pad_top": 3,
    "pad_left": 3,
    "out_h": 10,         # IM2COL output size (given, not derived)
    "out_w": 10,
    "pad_value": 32,     # raw bits of the padding element (its low elem bytes)
})

MemCommand = data.StructLayout({"func": MemFunc, "args": MemArgs})

def _mem_checks(func, a):
    """What the layout engine refuses (:class:`accelpool.spec.isa.ExecSpec`): an empty
    transpose or im2col."""
    tr, im = func == MemFunc.TRANSPOSE.value, func == MemFunc.IM2COL.value
    return [
        ("TRANSPOSE of 0 rows or columns", tr & ((a.rows == 0) | (a.cols == 0))),
        ("IM2COL of an empty image, kernel, stride or output",
         im & ((a.channels == 0) | (a.height == 0) | (a.width == 0) | (a.kernel_h == 0)
               | (a.kernel_w == 0) | (a.stride_h == 0) | (a.stride_w == 0) | (a.out_h == 0)
               | (a.out_w == 0))),
    ]


MEM_SPEC = isa.define_exec(UnitKind.MEMORY, MemFunc, MemArgs, _mem_checks)
