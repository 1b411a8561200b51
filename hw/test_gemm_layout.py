import numpy as np

from hw.gemm_layout import GemmLayout


def test_padded_sizes_and_regions():
    lay = GemmLayout(4, 8, 32, m=5, n=9, k=3)
    assert (lay.mp, lay.np_) == (8, 16)
    assert lay.region_bytes("a", 2) == 64          # 3 x 8 BF16 = 48 -> 2 words
    assert lay.region_bytes("d", 4) == 8 * 16 * 4


def test_a_is_transposed_and_zero_padded():
    lay = GemmLayout(4, 8, 32, m=5, n=9, k=3)
    a = np.arange(1, 16, dtype=np.int8).reshape(5, 3)
    img = np.frombuffer(lay.a_image(a), np.int8)[:3 * 8].reshape(3, 8)
    assert np.array_equal(img[:, :5], a.T) and not img[:, 5:].any()


def test_b_and_c_row_major_roundtrip():
    lay = GemmLayout(4, 8, 32, m=5, n=9, k=3)
    b = np.arange(27, dtype=np.int8).reshape(3, 9)
    img = np.frombuffer(lay.b_image(b), np.int8)[:3 * 16].reshape(3, 16)
    assert np.array_equal(img[:, :9], b) and not img[:, 9:].any()
    c = np.arange(45, dtype=np.int32).reshape(5, 9)
    assert np.array_equal(lay.d_from_image(lay.c_image(c), np.int32), c)
