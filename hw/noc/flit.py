"""Flit and packet format of the mesh network-on-chip.

A packet is a head flit followed by zero or more payload flits; the last flit carries
``tail``. On a link every flit is a :data:`flit_layout` struct: ``data`` plus the ``head``
and ``tail`` marks. In a head flit, ``data`` holds a :data:`Header`:

=========  =====  ===========================================================
field      bits   meaning
=========  =====  ===========================================================
dst_x/y    4+4    destination router (XY routing uses only these)
src_x/y    4+4    source router (replies and acknowledgements go back there)
type       3      :class:`PacketType`
length     13     payload bytes carried by this packet (WRITE, READ_RESP), or
                  bytes asked for (READ_REQ)
addr       32     byte address at the destination (WRITE, READ_REQ: remote
                  address; READ_RESP: requester's scratchpad address); for
                  SIGNAL: ``token`` in bits 0-7 and ``count`` in bits 8-23
=========  =====  ===========================================================

The header is 64 bits, so a link's ``data`` is ``max(flit_bits, 64)`` bits wide; payload
flits carry ``flit_bits`` bits of data (little-endian: byte ``i`` of a flit is bits
``8*i .. 8*i+7``). A READ_REQ carries one payload flit with the requester's reply address
(:data:`ReadReqBody`).
"""

from __future__ import annotations

from amaranth.lib import data, enum

from accelpool.spec.isa import COORD_BITS

from ..params import check_int

__all__ = ["PacketType", "Header", "HEADER_BITS", "ReadReqBody", "SignalAddr",
           "encode_header", "decode_header", "flit_value", "packet_flits",
           "MAX_PACKET_BYTES_LIMIT", "link_bits", "flit_layout", "check_flit_bits",
           "REQUEST_TYPES", "RESPONSE_TYPES"]


class PacketType(enum.Enum, shape=3):
    """What a packet does at its destination."""

    #: Write the payload at ``addr`` (request network); answered by WRITE_ACK.
    WRITE = 0
    #: Read ``length`` bytes at ``addr`` (request network); answered by READ_RESP.
    READ_REQ = 1
    #: Add ``count`` to token counter ``token`` (request network); not answered.
    SIGNAL = 2
    #: Read data for the requester's scratchpad at ``addr`` (response network).
    READ_RESP = 4
    #: A WRITE has been performed (response network); single flit.
    WRITE_ACK = 5


#: Packet types carried by the request network and by the response network.
REQUEST_TYPES = (PacketType.WRITE, PacketType.READ_REQ, PacketType.SIGNAL)
RESPONSE_TYPES = (PacketType.READ_RESP, PacketType.WRITE_ACK)

LENGTH_FIELD_BITS = 13
#: The largest payload one packet can carry (the header's length field).
MAX_PACKET_BYTES_LIMIT = (1 << LENGTH_FIELD_BITS) - 1

Header = data.StructLayout({
    "dst_x": COORD_BITS,
    "dst_y": COORD_BITS,
    "src_x": COORD_BITS,
    "src_y": COORD_BITS,
    "type": PacketType,
    "length": LENGTH_FIELD_BITS,
    "addr": 32,
})
HEADER_BITS = Header.size
assert HEADER_BITS == 64

#: The payload flit of a READ_REQ: where the response data goes at the requester.
ReadReqBody = data.StructLayout({"reply_addr": 32})

#: How a SIGNAL packet's ``addr`` field carries the token and the count.
SignalAddr = data.StructLayout({"token": 8, "count": 16, "reserved": 8})


def check_flit_bits(flit_bits: object) -> int:
    """Validate a flit payload width (a power of two from 32 to 512 bits)."""
    check_int(flit_bits, "Flit width")
    if flit_bits < 32 or flit_bits > 512 or flit_bits & (flit_bits - 1):
        raise ValueError(f"Flit width must be a power of two from 32 to 512 bits, "
                         f"not {flit_bits!r}")
    return flit_bits


def link_bits(flit_bits: int) -> int:
    """Width of a link's ``data``: the payload width, widened to hold a header if needed."""
    return max(check_flit_bits(flit_bits), HEADER_BITS)


def flit_layout(flit_bits: int) -> data.StructLayout:
    """The struct of one flit on a link for payload width ``flit_bits``."""
    return data.StructLayout({
        "data": link_bits(flit_bits),
        "head": 1,
        "tail": 1,
    })


def encode_header(*, dst: tuple[int, int], src: tuple[int, int], type: PacketType,
                  length: int = 0, addr: int = 0) -> int:
    """The header as an integer (Python side: testbenches, reference models)."""
    return Header.const({"dst_x": dst[0], "dst_y": dst[1], "src_x": src[0], "src_y": src[1],
                         "type": type, "length": length, "addr": addr}).as_value().value


def decode_header(value: int) -> dict:
    """The fields of a header integer as a dict (``type`` as a :class:`PacketType`)."""
    v = Header.from_bits(value & ((1 << HEADER_BITS) - 1))
    return {"dst": (int(v.dst_x), int(v.dst_y)), "src": (int(v.src_x), int(v.src_y)),
            "type": PacketType(v.type), "length": int(v.length),
            "addr": int(v.addr)}


def flit_value(flit_bits: int, *, data: int, head: bool, tail: bool) -> int:
    """One flit of :func:`flit_layout` as an integer."""
    return flit_layout(flit_bits).const({"data": data, "head": int(head),
                                         "tail": int(tail)}).as_value().value


def packet_flits(flit_bits: int, header: int, payload: list[int]) -> list[int]:
    """The flits of a packet (header, then ``payload`` words) as :func:`flit_value` integers."""
    words = [header] + list(payload)
    return [flit_value(flit_bits, data=w, head=i == 0, tail=i == len(words) - 1)
            for i, w in enumerate(words)]
