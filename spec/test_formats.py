import ml_dtypes
import numpy as np
import pytest
import scipy.sparse

from accelpool.spec.formats import (MemoryImage, encode_csr, layout_gnn, layout_spmm, pack_csr,
                                    pack_dense_rows, pack_result_rows, padded_cols,
                                    unpack_bf16_rows, unpack_csr, unpack_dense_rows,
                                    unpack_fp32_rows, word_bytes)

BF16 = ml_dtypes.bfloat16


def test_encode_dense_drops_both_zeros_and_keeps_order():
    a = np.array([[0, 1.5, -0.0, 2], [0, 0, 0, 0], [3, 0, 0, -1]], dtype=BF16)
    csr = encode_csr(a)
    assert csr.indptr.tolist() == [0, 2, 2, 4]
    assert csr.indices.tolist() == [1, 3, 0, 3]
    assert csr.values.view(BF16).astype(float).tolist() == [1.5, 2, 3, -1]
    np.testing.assert_array_equal(csr.to_dense().astype(float), a.astype(float))


def test_encode_scipy_matches_dense_and_keeps_explicit_entries():
    rng = np.random.default_rng(0)
    d = rng.standard_normal((7, 9)).astype(BF16)
    d[rng.random(d.shape) < 0.6] = 0
    sp = scipy.sparse.coo_array(d.astype(np.float32))
    a, b = encode_csr(sp), encode_csr(d)
    assert a.indptr.tolist() == b.indptr.tolist() and a.indices.tolist() == b.indices.tolist()
    np.testing.assert_array_equal(a.values, b.values)


def test_pack_csr_layout():
    csr = encode_csr(np.array([[0, 2.0], [1.0, 0]], dtype=BF16))
    ptr, nz = pack_csr(csr, 4)                       # 8-byte words
    assert ptr == np.array([0, 1, 2], "<u4").tobytes() + bytes(4)
    assert nz == (1 | 0x4000 << 16).to_bytes(4, "little") + (0 | 0x3F80 << 16).to_bytes(4, "little")


def test_dense_rows_padded_and_results_unpacked():
    x = np.arange(6, dtype=np.float32).reshape(2, 3).astype(BF16)
    raw = pack_dense_rows(x, 2)
    assert len(raw) == 2 * padded_cols(3, 2) * 2
    assert np.frombuffer(raw, "<u2").reshape(2, 4)[:, 3].tolist() == [0, 0]
    res = np.arange(8, dtype="<u4").tobytes()
    assert unpack_fp32_rows(res, 2, 3, 2).tolist() == [[0, 1, 2], [4, 5, 6]]


def test_decoders_invert_the_encoders():
    rng = np.random.default_rng(1)
    d = rng.standard_normal((5, 9)).astype(BF16)
    d[rng.random(d.shape) < 0.5] = 0
    csr = encode_csr(d)
    ptr, nz = pack_csr(csr, 4)
    back = unpack_csr(ptr, nz, 5, 9)
    assert back.shape == (5, 9) and back.indptr.tolist() == csr.indptr.tolist()
    np.testing.assert_array_equal(back.to_dense().view(np.uint16), d.view(np.uint16))
    np.testing.assert_array_equal(unpack_dense_rows(pack_dense_rows(d, 4), 5, 9, 4),
                                  d.view(np.uint16))


def test_bf16_results_take_half_the_pitch():
    bits = np.arange(6, dtype=np.uint16).reshape(2, 3) + 0x3F80
    runs = pack_result_rows(bits, 4)                  # rows padded to 4 elements = 8 bytes
    assert [(o, len(r)) for o, r in runs] == [(0, 6), (8, 6)]
    raw = bytearray(16)
    for o, r in runs:
        raw[o:o + len(r)] = r
    assert unpack_bf16_rows(bytes(raw), 2, 3, 4).tolist() == bits.tolist()
    assert pack_result_rows(np.zeros((3, 4), np.uint32), 4) == [(0, bytes(48))]
    x = np.ones((3, 5), BF16)
    f32, b16 = layout_gnn(np.eye(3), x, 4), layout_gnn(np.eye(3), x, 4, out_bf16=True)
    assert (f32.out_bytes, b16.out_bytes) == (3 * 8 * 4, 3 * 8 * 2)
    assert (f32.args["out_bf16"], b16.args["out_bf16"]) == (0, 1)
    assert b16.read_result(b16.image.data).dtype == np.uint16


def test_unpack_csr_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"ptr array must start at 0 and never decrease"):
        unpack_csr(np.array([0, 2, 1], "<u4").tobytes(), bytes(8), 2, 4)
    with pytest.raises(ValueError, match=r"points to 3 entries; 2 are given"):
        unpack_csr(np.array([0, 2, 3], "<u4").tobytes(), bytes(8), 2, 4)
    with pytest.raises(ValueError, match=r"CSR row 1 holds column 7; the matrix has 4 columns"):
        unpack_csr(np.array([0, 1, 2], "<u4").tobytes(), np.array([1, 7], "<u4").tobytes(), 2, 4)


def test_memory_image_and_layout_are_word_aligned():
    img = MemoryImage(8, base=5)
    assert img.put(b"abc") == 16 and img.put(b"d") == 32
    job = layout_spmm(np.eye(3, dtype=BF16), np.ones((3, 5), BF16), 64, base=100)
    for key in ("a_ptr_addr", "a_nz_addr", "b_addr", "c_addr"):
        assert job.args[key] % word_bytes(64) == 0 and job.args[key] >= 100
    assert job.args["nnz"] == 3 and job.out_shape == (3, 5)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda: word_bytes(6), ValueError, r"Lane count must be a power of two of at least 2, not 6"),
    (lambda: word_bytes("8"), TypeError, r"Lane count must be a positive integer, not '8'"),
    (lambda: encode_csr(np.zeros(4)), ValueError, r"must be a 2-D matrix, not of shape \(4,\)"),
    (lambda: encode_csr(np.zeros((2, 70000))), ValueError, r"at most 65535 rows and 65536 columns"),
    (lambda: layout_spmm(np.eye(3), np.ones((4, 2)), 8), ValueError,
     r"dense operand must be \[3, N\] .* not \(4, 2\)"),
])
def test_errors(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()
