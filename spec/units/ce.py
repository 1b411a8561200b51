"""The convolution engine: its declaration and its EXEC contract: function, argument layout, limits, checks.

What the compiler emits and the RTL (``hw/ce.py``) accepts: one definition for both.
"""

from amaranth.hdl import signed
from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.golden.numerics import REQUANT_MULTIPLIER_BITS, REQUANT_SHIFT_BITS
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit

__all__ = ["CE", "MAX_KERNEL", "WEIGHT_DEPTH", "EXTENT_BITS", "CHANNEL_BITS", "CeFunc", "CeArgs", "CeCommand", "CE_SPEC"]

CE = register_unit(UnitSpec(
    key="ce", code=4, title="convolution engine", dtypes=("int8",),
    params={"scratchpad_bytes": SCRATCHPAD,
            "oc_lanes": Param(8, 1, 64, doc="output channels computed in parallel"),
            "ic_lanes": Param(8, 1, 64, doc="input channels reduced in parallel")},
    geometry=("oc_lanes", "ic_lanes"), runs=(("conv", "int8"),)))


#: Largest kernel extent (kernel_h, kernel_w).
MAX_KERNEL = 5
#: Weight-buffer entries of a CE built from a pool config (:meth:`ConvEngine.from_tile`).
WEIGHT_DEPTH = 256
#: Widths of the shape fields.
EXTENT_BITS = 10
CHANNEL_BITS = 10


class CeFunc(enum.Enum, shape=8):
    """CE EXEC operations."""

    CONV = 0


#: The EXEC arguments of the CE (223 of the 240 bits).
CeArgs = data.StructLayout({
    "in_addr": isa.SPAD_ADDR_BITS,      # byte address of the input (word-aligned)
    "w_addr": isa.SPAD_ADDR_BITS,       # byte address of the weights
    "bias_addr": isa.SPAD_ADDR_BITS,    # byte address of the bias (if ``bias``)
    "out_addr": isa.SPAD_ADDR_BITS,     # byte address of the output
    "height": EXTENT_BITS,              # input H
    "width": EXTENT_BITS,               # input W
    "c_in": CHANNEL_BITS,               # input channels C
    "c_out": CHANNEL_BITS,              # output channels M
    "kernel_h": 3,                      # 1..5
    "kernel_w": 3,                      # 1..5
    "stride": 2,                        # 1 or 2 (both axes)
    "pad_top": 3,                       # 0..kernel_h-1
    "pad_left": 3,
    "pad_bottom": 3,
    "pad_right": 3,
    "x_zero_point": signed(9),          # -128..127, or 0..255 with x_unsigned
    "w_zero_point": signed(8),
    "y_zero_point": signed(9),          # -128..127, or 0..255 with y_unsigned
    # requantization: y = sat(rne(acc * multiplier / 2**shift) + y_zp)
    "multiplier": REQUANT_MULTIPLIER_BITS,
    "shift": REQUANT_SHIFT_BITS,
    "bias": 1,                          # add the INT32 bias
    "requant": 1,                       # requantize to INT8 (else write INT32)
    "x_unsigned": 1,                    # activations are UINT8 (else INT8)
    "y_unsigned": 1,                    # requantize to UINT8 (else INT8)
})

#: The command payload the unit accepts on ``cmd``.
CeCommand = data.StructLayout({"func": CeFunc, "args": CeArgs})

def _ce_checks(func, a):
    """What the CE refuses (:class:`accelpool.spec.isa.ExecSpec`): empty tensors, a kernel
    outside 1..MAX_KERNEL, a stride other than 1 or 2, a pad not below the kernel, an
    input smaller than the kernel."""
    return [
        ("c_in is 0", a.c_in == 0), ("c_out is 0", a.c_out == 0),
        ("height is 0", a.height == 0), ("width is 0", a.width == 0),
        (f"kernel_h is outside 1..{MAX_KERNEL}", (a.kernel_h == 0) | (a.kernel_h > MAX_KERNEL)),
        (f"kernel_w is outside 1..{MAX_KERNEL}", (a.kernel_w == 0) | (a.kernel_w > MAX_KERNEL)),
        ("stride is not 1 or 2", (a.stride == 0) | (a.stride == 3)),
        ("a pad is not below the kernel", (a.pad_top >= a.kernel_h) | (a.pad_bottom >= a.kernel_h)
         | (a.pad_left >= a.kernel_w) | (a.pad_right >= a.kernel_w)),
        ("the padded input is smaller than the kernel",
         (a.height + a.pad_top + a.pad_bottom < a.kernel_h)
         | (a.width + a.pad_left + a.pad_right < a.kernel_w)),
    ]


CE_SPEC = isa.define_exec(CE, CeFunc, CeArgs, _ce_checks)
