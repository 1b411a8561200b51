import numpy as np

from accelpool.spec.gemm_layout import GemmLayout


def test_padded_sizes_and_regions():
    lay = GemmLayout(4, 8, 32, m=5, n=9, k=3)
    assert (lay.mp, lay.np_) == (8, 16)
    assert lay.a_pitch(2) == 32                    # 3 BF16 = 6 bytes -> 1 word
    assert lay.region_bytes("a", 2) == 5 * 32      # M rows (not Mp) of one word
    assert lay.region_bytes("d", 4) == 8 * 16 * 4
    assert GemmLayout(4, 8, 32, m=2, n=1, k=17).a_pitch(2) == 64    # 34 bytes -> 2 words
    assert GemmLayout(4, 8, 32, m=2, n=1, k=32).a_pitch(1) == 32


def test_a_is_row_major_with_word_pitch():
    lay = GemmLayout(4, 8, 8, m=5, n=9, k=3)
    a = np.arange(1, 16, dtype=np.int8).reshape(5, 3)
    img = np.frombuffer(lay.a_image(a, pad_byte=0xEE), np.uint8).reshape(5, 8)
    assert np.array_equal(img[:, :3].view(np.int8), a) and np.all(img[:, 3:] == 0xEE)
    a16 = np.arange(1, 11, dtype=np.int16).reshape(2, 5)
    img = np.frombuffer(GemmLayout(4, 8, 8, m=2, n=1, k=5).a_image(a16), np.int16)
    assert np.array_equal(img.reshape(2, 8)[:, :5], a16) and not img.reshape(2, 8)[:, 5:].any()


def test_word_bytes_formula():
    from accelpool.hw.dmu import Dmu
    from accelpool.spec.gemm_layout import systolic_word_bytes
    from accelpool.hw.lpu import Lpu
    for r, c in ((8, 8), (4, 2), (1, 1), (2, 4), (16, 2)):
        assert Dmu(rows=r, cols=c).word_bytes == systolic_word_bytes(r, c, 2)
        assert Lpu(rows=r, cols=c).word_bytes == systolic_word_bytes(r, c, 1)
        assert systolic_word_bytes(r, c, 2) >= 2 * r     # R A elements fit in a word


def test_b_and_c_row_major_roundtrip():
    lay = GemmLayout(4, 8, 32, m=5, n=9, k=3)
    b = np.arange(27, dtype=np.int8).reshape(3, 9)
    img = np.frombuffer(lay.b_image(b), np.int8)[:3 * 16].reshape(3, 16)
    assert np.array_equal(img[:, :9], b) and not img[:, 9:].any()
    c = np.arange(45, dtype=np.int32).reshape(5, 9)
    assert np.array_equal(lay.d_from_image(lay.c_image(c), np.int32), c)
