"""Router parameters and routing function; traffic through routers is in test_mesh.py."""

import pytest
from amaranth.back import rtlil

from accelpool.hw.noc.router import LinkSignature, Port, Router, xy_route


def test_xy_route_goes_x_first():
    assert xy_route((1, 1), (3, 0)) is Port.EAST
    assert xy_route((1, 1), (0, 3)) is Port.WEST
    assert xy_route((1, 1), (1, 3)) is Port.SOUTH
    assert xy_route((1, 1), (1, 0)) is Port.NORTH
    assert xy_route((1, 1), (1, 1)) is Port.LOCAL


def test_ports_and_elaboration():
    r = Router(x=1, y=2, flit_bits=128, buffer_flits=3)
    assert (r.x, r.y, r.flit_bits, r.buffer_flits) == (1, 2, 128, 3)
    assert r.link_out(Port.EAST).signature == LinkSignature(128)
    assert len(r.inject.payload.data) == 128
    assert "credits_east" in rtlil.convert(r)


def test_narrow_flits_widen_the_link_to_the_header():
    r = Router(x=0, y=0, flit_bits=32, buffer_flits=2)
    assert len(r.inject.payload.data) == 64


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(x=-1, y=0, flit_bits=64, buffer_flits=4), ValueError,
     r"Router x must be between 0 and 15, not -1"),
    (dict(x=0, y="0", flit_bits=64, buffer_flits=4), TypeError,
     r"Router y must be a non-negative integer, not '0'"),
    (dict(x=0, y=0, flit_bits=48, buffer_flits=4), ValueError,
     r"Flit width must be a power of two from 32 to 512 bits, not 48"),
    (dict(x=0, y=0, flit_bits=64.0, buffer_flits=4), TypeError,
     r"Flit width must be a positive integer, not 64.0"),
    (dict(x=0, y=0, flit_bits=64, buffer_flits=1), ValueError,
     r"Buffer depth must be at least 2 flits \(the credit loop is two cycles\), not 1"),
    (dict(x=0, y=0, flit_bits=64, buffer_flits=None), TypeError,
     r"Buffer depth must be a positive integer, not None"),
])
def test_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        Router(**kwargs)
