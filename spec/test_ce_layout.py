import numpy as np
import pytest

from accelpool.spec.ce_layout import ConvShape, pack_bias, pack_input, pack_weights, unpack_output


def test_input_is_hwc_with_padded_channel_blocks():
    x = np.arange(3 * 2 * 2, dtype=np.int8).reshape(3, 2, 2)          # C=3, H=W=2
    raw = np.frombuffer(pack_input(x, 4), np.int8).reshape(2, 2, 4)
    assert (raw[:, :, :3] == x.transpose(1, 2, 0)).all() and (raw[:, :, 3] == 0).all()


def test_weight_words_are_ordered_block_tap_inblock_outchannel():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (5, 6, 2, 3)).astype(np.int8)          # M=5, C=6, 2x3
    ol, il = 4, 4
    raw = np.frombuffer(pack_weights(w, ol, il), np.int8)
    assert len(raw) == 2 * 2 * 3 * 2 * 4 * 4                              # OCB, kH, kW, ICB, ol, il
    for m, c, ky, kx in [(0, 0, 0, 0), (4, 5, 1, 2), (3, 4, 1, 0), (1, 2, 0, 1)]:
        word = (((m // ol * 2 + ky) * 3 + kx) * 2 + c // il) * ol + m % ol
        assert raw[word * il + c % il] == w[m, c, ky, kx]
    empty = (((1 * 2 + 0) * 3 + 0) * 2 + 0) * ol + 1      # output channel 5 does not exist
    assert not raw.reshape(-1, il)[empty].any()


def test_bias_and_output_roundtrip():
    b = np.array([1, -2, 3], np.int32)
    assert np.frombuffer(pack_bias(b, 4), "<i4").tolist() == [1, -2, 3, 0]
    shape = ConvShape(2, 3, 4, 4, 3, 3, 1, (1, 1, 1, 1))
    y = np.arange(3 * 4 * 4, dtype=np.int32).reshape(3, 4, 4) - 20
    hwc = np.zeros((4, 4, 4), "<i4")
    hwc[:, :, :3] = y.transpose(1, 2, 0)
    assert (unpack_output(hwc.tobytes(), shape, 4, requant=False) == y).all()
    assert (unpack_output(hwc.astype(np.int8).tobytes(), shape, 4, requant=True) == y.astype(np.int8)).all()
    assert shape.output_bytes(4, requant=False) == len(hwc.tobytes())


def test_exec_args_checks():
    shape = ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))
    shape.check(ic_lanes=8, weight_depth=256)
    args = shape.exec_args(in_addr=0, w_addr=64, out_addr=128, requant=True)
    assert args["pad_top"] == 1 and args["requant"] == 1 and args["kernel_w"] == 3
    with pytest.raises(ValueError, match="c_out must be between 1 and 1023, not 0"):
        ConvShape(16, 0, 8, 8).check(ic_lanes=8, weight_depth=256)
