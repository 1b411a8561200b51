import pytest

from accelpool.hw.noc.flit import (HEADER_BITS, PacketType, decode_header, encode_header,
                                   flit_layout, link_bits, packet_flits)


def test_header_round_trip_and_field_positions():
    h = encode_header(dst=(3, 2), src=(1, 0), type=PacketType.READ_REQ, length=4095,
                      addr=0x89ABCDEF)
    assert decode_header(h) == {"dst": (3, 2), "src": (1, 0), "type": PacketType.READ_REQ,
                                "length": 4095, "addr": 0x89ABCDEF}
    # Spec: dst_x in bits 0-3, dst_y 4-7, src_x 8-11, src_y 12-15, type 16-18,
    # length 19-31, addr 32-63.
    assert h == 3 | 2 << 4 | 1 << 8 | 0 << 12 | 1 << 16 | 4095 << 19 | 0x89ABCDEF << 32
    assert HEADER_BITS == 64


def test_flit_layout_and_packets():
    assert flit_layout(128).size == 130
    assert link_bits(32) == 64 and link_bits(256) == 256
    flits = packet_flits(64, 0xAB, [1, 2])
    assert [f >> 64 for f in flits] == [0b01, 0b00, 0b10]     # head, body, tail marks
    assert [f & ((1 << 64) - 1) for f in flits] == [0xAB, 1, 2]
    assert packet_flits(64, 5, []) == [5 | 0b11 << 64]          # head and tail at once


@pytest.mark.parametrize("bits,exc,msg", [
    (48, ValueError, r"Flit width must be a power of two from 32 to 512 bits, not 48"),
    (1024, ValueError, r"Flit width must be a power of two from 32 to 512 bits, not 1024"),
    ("64", TypeError, r"Flit width must be a positive integer, not '64'"),
])
def test_bad_flit_width(bits, exc, msg):
    with pytest.raises(exc, match=msg):
        flit_layout(bits)
