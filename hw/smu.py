"""SMU: the sparse matrix unit, ``C[M,N] = A[M,K] @ B[K,N]`` with sparse BF16 A in CSR.

Sparse format
    CSR (:mod:`accelpool.spec.formats`, encoder :func:`accelpool.spec.formats.encode_csr` and
    :func:`accelpool.spec.formats.pack_csr`): ``ptr`` = ``M + 1`` ``uint32`` row pointers, ``nz`` =
    ``nnz`` ``uint32`` entries ``column | bf16_value << 16``, columns ascending within a row.
    CSR rather than a bitmap because the cycle count then follows the non-zeros alone: a
    bitmap would have to be scanned at its dense size.

Data layout (byte addresses in the EXEC args, each a multiple of the word size)
    Word = ``L`` BF16 lanes = ``16 L`` bits (1024 bits, 128 bytes with the default 64
    lanes). B: BF16, row-major, rows padded to ``ceil(N/L) * L`` elements. C: FP32,
    row-major, rows padded the same way (two words per ``L`` results), or with ``out_bf16``
    BF16 (one word per ``L`` results, each FP32 result rounded by
    :class:`accelpool.hw.arith.round.Fp32ToBf16`: RNE, FTZ, canonical NaN); only real columns are
    written (byte enables). See :mod:`accelpool.spec.formats` for the exact addresses.

Arithmetic
    ``L`` BF16 multipliers (:class:`accelpool.hw.arith.bf16mul.Bf16Multiplier`; the default 64 = the
    default DMU's 8 x 8 MACs) and ``L`` FP32 adders (:class:`accelpool.hw.arith.fp32add.Fp32Adder`).
    One non-zero ``A[i,k]`` per cycle is multiplied by the ``L``-wide slice ``B[k, j:j+L]``
    and added into ``L`` FP32 accumulators; C is computed slice by slice (``ceil(N/L)``
    passes over A). Order, bit-exact with :func:`accelpool.spec.golden.sparse.spmm_bf16`: per
    output element ``acc = +0``, then for the row's non-zeros in ascending column order
    ``acc = fp32_add(acc, bf16_mul(a, b))``. The multiply and the add each take one
    pipeline stage (the accumulate loop is one combinational FP32 add).

Cycles
    About ``ceil(N/L) * (sum_i max(nnz_i + 1, 2) + 5) + 4`` (either output
    format); exact model in :mod:`accelpool.sched.cost.smu`.

EXEC (:data:`SmuArgs`, 169 bits; function :class:`SmuFunc` ``SPMM``)::

    a_ptr_addr, a_nz_addr, b_addr, c_addr : 24-bit byte addresses
    m, n, k : 16-bit sizes (k is not used by the hardware: column indices address B)
    nnz     : 24-bit number of non-zeros of A (= ptr[m])
    out_bf16: 1 bit; 1: C in BF16, 0: C in FP32

Ports: ``cmd``, ``busy``, ``a_ptr_read``, ``a_nz_read``, ``b_read`` (read ports),
``c_write`` (write port); see :mod:`accelpool.hw.sparse_unit` for the contract.
"""

from __future__ import annotations

from accelpool.spec.config import UnitKind
from accelpool.spec.units.smu import SmuFunc, SmuArgs

from .arith.bf16mul import Bf16Multiplier
from .arith.fp32add import Fp32Adder
from .csr_engine import LaneDatapath
from .sparse_unit import SparseUnit
from .units import UNIT_RTL

__all__ = ["Smu", "SmuDatapath"]


class SmuDatapath(LaneDatapath):
    """Stage 1: ``L`` BF16 products ``a * B[k, lane]``; stage 2: FP32 accumulation."""

    init = 0

    def product(self, m, val, word, lanes):
        out = []
        for l in range(lanes):
            mul = Bf16Multiplier()
            m.submodules[f"mul{l}"] = mul
            m.d.comb += [mul.a.eq(val), mul.b.eq(word.word_select(l, 16))]
            out.append(mul.p)
        return out

    def combine(self, m, acc, x):
        add = Fp32Adder()
        m.submodules[f"add_{acc.name}"] = add
        m.d.comb += [add.a.eq(acc), add.b.eq(x)]
        return add.s


class Smu(SparseUnit):
    """The sparse matrix unit (see the module docstring).

    Parameters
    ----------
    lanes : int
        BF16 multipliers (``tile["lanes"]``, default 64); a power of two >= 2.
    scratchpad_bytes : int
        ``tile["scratchpad_bytes"]``.
    """

    FUNCS = SmuFunc
    ARGS = SmuArgs
    PORTS = ("a_ptr_read", "a_nz_read", "b_read", "c_write")

    def __init__(self, *, lanes: int = 64, scratchpad_bytes: int = 65536):
        super().__init__(lanes=lanes, scratchpad_bytes=scratchpad_bytes)

    def datapath(self, m, func):
        return SmuDatapath()

    def job_fields(self, args):
        return {"ptr": args.a_ptr_addr, "nz": args.a_nz_addr, "dense": args.b_addr,
                "out": args.c_addr, "rows": args.m, "cols": args.n, "nnz": args.nnz,
                "out_bf16": args.out_bf16}


def _from_tile(tile) -> Smu:
    """The SMU of a tile config."""
    return Smu(lanes=tile["lanes"], scratchpad_bytes=tile.scratchpad_bytes)


UNIT_RTL.register(UnitKind.SMU, _from_tile)
