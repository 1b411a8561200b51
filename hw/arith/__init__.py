"""Arithmetic blocks of the dense units, each bit-exact with :mod:`accelpool.spec.golden.numerics`.

One concept per module:

- :mod:`.fpformat` -- FP32/BF16 field helpers shared by the floating-point blocks,
- :mod:`.bf16mul` -- BF16 x BF16 -> FP32 product,
- :mod:`.fp32add` -- FP32 + FP32, round to nearest even,
- :mod:`.round` -- FP32 -> BF16, round to nearest even,
- :mod:`.intmac` -- INT8 x INT8 + INT32 multiply-accumulate,
- :mod:`.requant` -- INT32 -> INT8 requantisation (fixed-point multiplier, shift, zero point).

All are combinational components (the units register around them); semantics (FTZ,
canonical NaN, signed zeros, wraparound, saturation) are those documented in
:mod:`accelpool.spec.golden.numerics`.
"""
