"""LPU: the low-precision unit, an R x C systolic array of INT8 MACs with INT32 accumulators.

One EXEC ``GEMM`` command computes ``acc = (C[M,N] if accumulate else 0) + A[M,K] x B[K,N]``
(INT8 operands, INT32 wraparound accumulation, :func:`accelpool.spec.golden.numerics.int8_gemm`)
and writes ``D = acc`` (INT32) or, with ``requant``, ``D = requantize(acc, multiplier,
shift, zero_point)`` (INT8, :func:`accelpool.spec.golden.numerics.requantize`: ONNX
QuantizeLinear/QLinearMatMul output stage with a fixed-point scale, round half to even,
saturate). Input zero points are not applied by the hardware (symmetric operands, or
fold them into C on the compiler side).

Same engine as the DMU (:class:`accelpool.hw.systolic.SystolicGemm`; data layout there, with
1-byte A/B elements and 4-byte C, and D elements of 4 bytes or 1 byte with ``requant``).
With the default 8 x 16 array (128 INT8 MACs/cycle, twice the 8 x 8 DMU's 64) the
scratchpad word is 512 bits (one row of 16 INT32 results, 64 INT8 elements of an A row).

EXEC arguments (:data:`LpuArgs`, 191 bits)::

    a_addr, b_addr, c_addr, d_addr : 24-bit byte addresses (multiples of word_bytes)
    m, n, k                         : 16-bit sizes
    accumulate                      : 1 = start from C (INT32) at c_addr, 0 = from 0
    requant                         : 1 = write INT8 requantised results, 0 = INT32
    multiplier (31 bits), shift (6 bits), zero_point (signed 8 bits): see requantize
"""

from amaranth.hdl import Cat, Module, Mux

from accelpool.spec.config import UnitKind
from accelpool.spec.units.lpu import LpuFunc, LpuArgs

from .arith.intmac import Int8Mac
from .arith.requant import Requantizer
from .systolic import MacKind, SystolicGemm
from .units import UNIT_RTL

__all__ = ["INT8_MAC", "Lpu"]


INT8_MAC = MacKind(in_bits=8, acc_bits=32, factory=Int8Mac)


class Lpu(SystolicGemm):
    """The LPU (see the module docstring and :class:`accelpool.hw.systolic.SystolicGemm`).

    Parameters
    ----------
    rows, cols : int
        Array size (``tile["rows"]``, ``tile["cols"]``); powers of two in 1..64.
    scratchpad_bytes : int
        Scratchpad size (``tile["scratchpad_bytes"]``).
    """

    kind = INT8_MAC
    funcs = LpuFunc
    args = LpuArgs
    out_bits_max = 32

    def out_log2_bytes(self, args):
        return Mux(args.requant, 0, 2)

    def output_row(self, m: Module, args, row):
        q = []
        for j, acc in enumerate(row):
            m.submodules[f"requant_{j}"] = rq = Requantizer()
            m.d.comb += [rq.acc.eq(acc), rq.multiplier.eq(args.multiplier),
                         rq.shift.eq(args.shift), rq.zero_point.eq(args.zero_point)]
            q.append(rq.y)
        return Mux(args.requant, Cat(*q), Cat(*row))


UNIT_RTL.register(UnitKind.LPU, Lpu.from_tile)
