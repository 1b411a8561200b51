"""The shared sparse row engine with an integer datapath: control and data movement only."""

import ml_dtypes
import numpy as np
import pytest
import scipy.sparse

from accelpool.hw.csr_engine import CsrRowEngine, LaneDatapath
from accelpool.hw.smu import Smu
from accelpool.spec.units.smu import SmuFunc
from accelpool.spec.formats import CsrMatrix, layout_spmm, padded_cols
from accelpool.tb.sparse_sim import run_sparse


class IntDatapath(LaneDatapath):
    """Integer stand-in: acc += val * lane (mod 2**32); a row's result is acc + count."""

    init = 0

    def product(self, m, val, word, lanes):
        return [(val * word.word_select(l, 16))[:32] for l in range(lanes)]

    def combine(self, m, acc, x):
        return (acc + x)[:32]

    def finish(self, m, acc, count):
        return [(a + count)[:32] for a in acc]


def int_reference(csr: CsrMatrix, d: np.ndarray) -> np.ndarray:
    out = np.zeros((csr.shape[0], d.shape[1]), dtype=np.uint64)
    for i in range(csr.shape[0]):
        lo, hi = csr.indptr[i], csr.indptr[i + 1]
        for k, v in zip(csr.indices[lo:hi], csr.values[lo:hi]):
            out[i] += np.uint64(v) * d[k].astype(np.uint64)
        out[i] += np.uint64(hi - lo)
    return (out & 0xFFFFFFFF).astype(np.uint32)


def random_csr(rng, rows, cols, density, empty_rows=()):
    mask = rng.random((rows, cols)) < density
    mask[list(empty_rows)] = False
    pat = scipy.sparse.csr_array(mask.astype(np.int8))
    pat.sort_indices()
    return CsrMatrix((rows, cols), pat.indptr.astype(np.int64), pat.indices.astype(np.int64),
                     rng.integers(0, 1 << 16, pat.nnz).astype(np.uint16))


class IntSmu(Smu):
    """The SMU's shell and engine with the integer datapath."""

    def datapath(self, m, func):
        return IntDatapath()


def run_engine(csr, d, lanes, *, poison=0xA5):
    job = layout_spmm(csr, d.view(ml_dtypes.bfloat16), lanes, out_fill=poison)
    run = run_sparse(IntSmu(lanes=lanes, scratchpad_bytes=8192), job, SmuFunc.SPMM,
                     max_cycles=50 + 4 * (csr.nnz + 2 * csr.shape[0] + 8) * -(-d.shape[1] // lanes))
    pc = padded_cols(d.shape[1], lanes)
    arr = np.frombuffer(run.raw, dtype="<u4").reshape(csr.shape[0], pc)
    return arr[:, :d.shape[1]], arr[:, d.shape[1]:], run.cycles


@pytest.mark.parametrize("lanes, rows, k, cols, density, empty", [
    (4, 9, 12, 10, 0.3, (0, 3, 4, 8)),     # empty rows first, back to back and last
    (8, 6, 20, 8, 1.0, ()),                 # fully dense, one pass
    (2, 5, 7, 5, 0.0, ()),                  # all-zero matrix, three passes
    (4, 17, 40, 3, 0.5, (2,)),              # more rows than entries per word
])
def test_engine_integer_datapath(lanes, rows, k, cols, density, empty):
    rng = np.random.default_rng(rows * 100 + cols)
    csr = random_csr(rng, rows, k, density, empty)
    d = rng.integers(0, 1 << 16, (k, cols)).astype(np.uint16)
    got, pad, cycles = run_engine(csr, d, lanes)
    np.testing.assert_array_equal(got, int_reference(csr, d))
    assert (pad == 0xA5A5A5A5).all(), "pad lanes were written"


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(lanes=12, addr_width=8), ValueError, r"Lane count must be a power of two of at least 2, not 12"),
    (dict(lanes=4, addr_width=0), ValueError, r"Address width must be a positive integer, not 0"),
])
def test_engine_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        CsrRowEngine(datapath=IntDatapath(), **kwargs)
