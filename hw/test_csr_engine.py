"""The shared sparse row engine with an integer datapath: control and data movement only."""

import numpy as np
import pytest
import scipy.sparse
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.csr_engine import CsrRowEngine, LaneDatapath
from sched.formats import CsrMatrix, MemoryImage, pack_csr, padded_cols
from tb.streams import stream_put
from tb.unit_memory import UnitWithMemory


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


def run_engine(csr, d, lanes, *, poison=0xA5):
    wb = 2 * lanes
    img = MemoryImage(lanes)
    ptr_b, nz_b = pack_csr(csr, lanes)
    a_ptr, a_nz = img.put(ptr_b), img.put(nz_b)
    dpad = np.zeros((d.shape[0], padded_cols(d.shape[1], lanes)), dtype="<u2")
    dpad[:, :d.shape[1]] = d
    a_d = img.put(dpad.tobytes())
    out_bytes = csr.shape[0] * padded_cols(d.shape[1], lanes) * 4
    a_out = img.put(bytes([poison]) * out_bytes)
    words = img.words()
    depth = max(16, 1 << (len(words) - 1).bit_length())
    aw = (depth - 1).bit_length()
    eng = CsrRowEngine(lanes=lanes, addr_width=aw, datapath=IntDatapath())
    top = UnitWithMemory(eng, reads=["ptr_read", "nz_read", "dense_read"], writes=["out_write"],
                         word_bits=16 * lanes, depth=depth, init=words, ports=("job", "busy"))
    result = {}

    async def tb(ctx):
        await stream_put(ctx, top.job, {"ptr": a_ptr // wb, "nz": a_nz // wb, "dense": a_d // wb,
                                        "out": a_out // wb, "rows": csr.shape[0],
                                        "cols": d.shape[1], "nnz": csr.nnz})
        cycles = 0
        limit = 50 + 4 * (csr.nnz + 2 * csr.shape[0] + 8) * -(-d.shape[1] // lanes)
        while ctx.get(top.busy):
            await ctx.tick()
            cycles += 1
            assert cycles < limit, "the engine did not finish"
        result["cycles"] = cycles
        raw = b"".join(ctx.get(top.mem.data[a_out // wb + i]).to_bytes(wb, "little")
                       for i in range(out_bytes // wb))
        result["raw"] = raw

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    pc = padded_cols(d.shape[1], lanes)
    arr = np.frombuffer(result["raw"], dtype="<u4").reshape(csr.shape[0], pc)
    return arr[:, :d.shape[1]], arr[:, d.shape[1]:], result["cycles"]


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
