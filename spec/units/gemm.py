"""The EXEC arguments every systolic GEMM unit (DMU, LPU) shares.

What the compiler emits and the RTL (``hw/systolic.py``) accepts: one definition for both.
"""

__all__ = ["ADDR_BITS", "DIM_BITS", "GemmArgs"]

#: Width of the byte addresses and of the M, N, K fields of the EXEC arguments.
ADDR_BITS = 24
DIM_BITS = 16

#: Arguments common to every systolic GEMM command.
GemmArgs = {
    "a_addr": ADDR_BITS,
    "b_addr": ADDR_BITS,
    "c_addr": ADDR_BITS,
    "d_addr": ADDR_BITS,
    "m": DIM_BITS,
    "n": DIM_BITS,
    "k": DIM_BITS,
    "accumulate": 1,
}
