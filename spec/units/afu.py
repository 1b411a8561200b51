"""The activation unit: its declaration and its EXEC contract: functions, element types, argument layout, checks.

What the compiler emits and the RTL (``hw/afu.py``) accepts: one definition for both.
"""

from amaranth.hdl import signed
from amaranth.lib import data, enum

from accelpool.spec import isa
from accelpool.spec.param import SCRATCHPAD, Param
from accelpool.spec.unit import UnitSpec, register_unit

__all__ = ["AFU", "COUNT_BITS", "AfuFunc", "AfuDType", "AfuArgs", "AfuCommand", "AFU_SPEC"]

AFU = register_unit(UnitSpec(
    key="afu", code=5, title="activation unit", dtypes=("bf16", "int8"),
    params={"scratchpad_bytes": SCRATCHPAD,
            "lanes": Param(8, 1, 64, doc="elements per cycle")},
    geometry=("lanes",),
    runs=(("act", "bf16"), ("act", "int8"), ("eltwise", "bf16"), ("eltwise", "int8"),
          ("quantize", "bf16"), ("dequantize", "int8"), ("dequantize", "int32"))))


COUNT_BITS = 20


class AfuFunc(enum.Enum, shape=8):
    """AFU EXEC operations."""

    RELU = 0
    LEAKY_RELU = 1
    SIGMOID = 2
    TANH = 3
    GELU = 4
    ADD = 5
    MUL = 6
    DEQUANTIZE = 7      # INT8 -> BF16
    QUANTIZE = 8        # BF16 -> INT8


class AfuDType(enum.Enum, shape=1):
    """Element type of an AFU operation."""

    BF16 = 0
    INT8 = 1


#: The EXEC arguments of the AFU (226 of the 240 bits).
AfuArgs = data.StructLayout({
    "a_addr": isa.SPAD_ADDR_BITS,       # byte address of operand A (word-aligned)
    "b_addr": isa.SPAD_ADDR_BITS,       # byte address of operand B (ADD, MUL)
    "out_addr": isa.SPAD_ADDR_BITS,     # byte address of the result
    "table_addr": isa.SPAD_ADDR_BITS,   # INT8 LEAKY_RELU/SIGMOID/TANH/GELU: 256-byte table
    "count": COUNT_BITS,                # elements
    "dtype": AfuDType,
    "alpha": 16,                        # BF16 LeakyReLU slope; DEQUANTIZE scale (BF16 encoding)
    "a_zero_point": signed(8),          # INT8 ADD/MUL operand zero points; DEQUANTIZE input zp
    "b_zero_point": signed(8),
    "y_zero_point": signed(8),          # INT8 ADD/MUL/QUANTIZE result zp; INT8 RELU: max(x, y_zp)
    "a_mult": signed(16),               # INT8 ADD: (a - a_zp) * a_mult + (b - b_zp) * b_mult
    "b_mult": signed(16),
    "multiplier": 31,                   # INT8 ADD/MUL requantization; QUANTIZE: 1/scale
    "shift": 6,                         #   as multiplier * 2**-shift
})

AfuCommand = data.StructLayout({"func": AfuFunc, "args": AfuArgs})

AFU_SPEC = isa.define_exec(AFU, AfuFunc, AfuArgs,
                           lambda func, a: [("count is 0", a.count == 0)])
