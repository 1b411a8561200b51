"""Router parameters and routing function; traffic through routers is in test_mesh.py."""

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from accelpool.hw.noc.flit import PacketType, encode_header, flit_value
from accelpool.hw.noc.router import DIRECTIONS, LinkSignature, Port, Router, xy_route


def test_xy_route_goes_x_first():
    assert xy_route((1, 1), (3, 0)) is Port.EAST
    assert xy_route((1, 1), (0, 3)) is Port.WEST
    assert xy_route((1, 1), (1, 3)) is Port.SOUTH
    assert xy_route((1, 1), (1, 0)) is Port.NORTH
    assert xy_route((1, 1), (1, 1)) is Port.LOCAL


def _driven_ports(router: Router, dsts):
    """For each destination, the output ports on which the router (amaranth.sim) sends a
    single-flit packet injected at its local port."""
    out = {}

    async def bench(ctx):
        ctx.set(router.eject.ready, 1)
        for dst in dsts:
            hdr = encode_header(dst=dst, src=(router.x, router.y), type=PacketType.WRITE)
            ctx.set(router.inject.payload.as_value(),
                    flit_value(router.flit_bits, data=hdr, head=True, tail=True))
            ctx.set(router.inject.valid, 1)
            await ctx.tick().until(router.inject.ready)
            ctx.set(router.inject.valid, 0)
            seen = set()
            for _ in range(4):
                fired = [d for d in DIRECTIONS if ctx.get(router.link_out(d).valid)]
                if ctx.get(router.eject.valid):
                    fired.append(Port.LOCAL)
                seen.update(fired)
                for d in fired:                 # the downstream buffer frees its slot
                    if d is not Port.LOCAL:
                        ctx.set(router.link_out(d).credit, 1)
                await ctx.tick()
                for d in DIRECTIONS:
                    ctx.set(router.link_out(d).credit, 0)
            out[dst] = seen

    sim = Simulator(router)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("here", [(1, 1), (0, 0), (3, 2)])
def test_rtl_routes_x_first(here):
    """The router's RTL takes the XY output for destinations in every direction, diagonals
    included (X first: east or west while the column differs, then south or north)."""
    dsts = [(x, y) for x in range(4) for y in range(4)]
    got = _driven_ports(Router(x=here[0], y=here[1], flit_bits=64, buffer_flits=2), dsts)
    want = {d: {xy_route(here, d)} for d in dsts}
    assert got == want
    if here == (1, 1):
        assert got[(3, 0)] == {Port.EAST} and got[(0, 3)] == {Port.WEST}
        assert got[(1, 3)] == {Port.SOUTH} and got[(1, 0)] == {Port.NORTH}


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
