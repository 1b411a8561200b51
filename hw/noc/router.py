"""A 2-D mesh router: XY dimension-order routing, wormhole switching, credit flow control.

Each of the five inputs (local, north, east, south, west) has a ``buffer_flits`` deep
first-word-fall-through FIFO. Every cycle each output picks one input: an output that is
carrying a packet stays with it until its tail (wormhole); a free output takes a head
flit, chosen round-robin. A flit leaves when the output has a credit for the downstream
buffer (or, at the local ejection port, when the consumer is ready); the downstream
router returns a credit each time it pops a flit from that buffer.

Timing: a flit written into an input FIFO at a clock edge is routed, arbitrated and
crosses the switch in the next cycle, straight into the next router's FIFO. So a hop
takes one cycle at zero load, and a head flit injected in cycle ``t`` is offered at the
ejection port of a router ``h`` hops away in cycle ``t + h + 1``. The credit loop is
two cycles, so two buffer slots are enough for one flit per cycle per link.

Coordinates: ``x`` grows to the east, ``y`` grows to the south.
"""

from __future__ import annotations

import enum as py_enum

from amaranth import Array, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.isa import COORD_BITS

from ..params import check_int
from .arbiter import RoundRobin
from .flit import Header, check_flit_bits, flit_layout

__all__ = ["Port", "LinkSignature", "Router", "xy_route"]


class Port(py_enum.IntEnum):
    """Router ports, in the order they are numbered inside the router."""

    LOCAL = 0
    NORTH = 1
    EAST = 2
    SOUTH = 3
    WEST = 4

    @property
    def opposite(self) -> "Port":
        return {Port.NORTH: Port.SOUTH, Port.SOUTH: Port.NORTH,
                Port.EAST: Port.WEST, Port.WEST: Port.EAST, Port.LOCAL: Port.LOCAL}[self]


#: The direction ports of a router, with their member name prefixes.
DIRECTIONS = (Port.NORTH, Port.EAST, Port.SOUTH, Port.WEST)


class LinkSignature(wiring.Signature):
    """A router-to-router link, from the sender's side: ``valid`` and ``flit`` out, ``credit`` back.

    The sender may only raise ``valid`` while it holds a credit; the receiver pulses
    ``credit`` once for every flit it removes from its buffer.
    """

    def __init__(self, flit_bits: int):
        self._flit_bits = check_flit_bits(flit_bits)
        super().__init__({
            "valid": Out(1),
            "flit": Out(flit_layout(flit_bits)),
            "credit": In(1),
        })

    @property
    def flit_bits(self) -> int:
        return self._flit_bits

    def __eq__(self, other):
        return isinstance(other, LinkSignature) and other._flit_bits == self._flit_bits

    def __repr__(self):
        return f"LinkSignature({self._flit_bits})"


def xy_route(here: tuple[int, int], dst: tuple[int, int]) -> Port:
    """The output port XY routing takes at ``here`` for destination ``dst`` (Python model)."""
    if dst[0] > here[0]:
        return Port.EAST
    if dst[0] < here[0]:
        return Port.WEST
    if dst[1] > here[1]:
        return Port.SOUTH
    if dst[1] < here[1]:
        return Port.NORTH
    return Port.LOCAL


def _check_coord(name: str, value: object) -> int:
    check_int(value, f"Router {name}", "a non-negative integer")
    if not 0 <= value < (1 << COORD_BITS):
        raise ValueError(f"Router {name} must be between 0 and {(1 << COORD_BITS) - 1}, "
                         f"not {value!r}")
    return value


def check_buffer_flits(depth: object) -> int:
    """Validate an input buffer depth (at least 2 flits, for full link throughput)."""
    check_int(depth, "Buffer depth")
    if depth < 2:
        raise ValueError(f"Buffer depth must be at least 2 flits (the credit loop is two "
                         f"cycles), not {depth!r}")
    return depth


class Router(wiring.Component):
    """One mesh router at ``(x, y)``.

    Parameters
    ----------
    x, y : int
        This router's coordinate.
    flit_bits : int
        Flit payload width (see :mod:`accelpool.hw.noc.flit`).
    buffer_flits : int
        Depth of each input FIFO (at least 2).

    Attributes
    ----------
    inject : In(stream.Signature(flit_layout))
        Flits from the local network interface.
    eject : Out(stream.Signature(flit_layout))
        Flits for the local network interface; it may stall at will.
    north_out, east_out, south_out, west_out : Out(LinkSignature)
        Links to the neighbours.
    north_in, east_in, south_in, west_in : In(LinkSignature)
        Links from the neighbours.
    """

    def __init__(self, *, x: int, y: int, flit_bits: int, buffer_flits: int):
        self._x = _check_coord("x", x)
        self._y = _check_coord("y", y)
        self._flit_bits = check_flit_bits(flit_bits)
        self._depth = check_buffer_flits(buffer_flits)
        layout = flit_layout(flit_bits)
        members = {
            "inject": In(stream.Signature(layout)),
            "eject": Out(stream.Signature(layout)),
        }
        for d in DIRECTIONS:
            members[f"{d.name.lower()}_out"] = Out(LinkSignature(flit_bits))
            members[f"{d.name.lower()}_in"] = In(LinkSignature(flit_bits))
        super().__init__(members)

    x = property(lambda self: self._x)
    y = property(lambda self: self._y)
    flit_bits = property(lambda self: self._flit_bits)
    buffer_flits = property(lambda self: self._depth)

    def link_out(self, port: Port):
        return getattr(self, f"{port.name.lower()}_out")

    def link_in(self, port: Port):
        return getattr(self, f"{port.name.lower()}_in")

    def elaborate(self, platform):
        m = Module()
        layout = flit_layout(self._flit_bits)
        n = len(Port)

        # Input buffers.
        fifos = []
        for p in Port:
            q = fifo.SyncFIFO(width=layout.size, depth=self._depth)
            m.submodules[f"in_{p.name.lower()}"] = q
            fifos.append(q)
            if p is Port.LOCAL:
                m.d.comb += [
                    q.w_data.eq(self.inject.payload),
                    q.w_en.eq(self.inject.valid),
                    self.inject.ready.eq(q.w_rdy),
                ]
            else:
                link = self.link_in(p)
                m.d.comb += [
                    q.w_data.eq(link.flit),
                    q.w_en.eq(link.valid),
                    link.credit.eq(q.r_en & q.r_rdy),
                ]
        heads = [data.View(layout, q.r_data) for q in fifos]

        # Route of the flit at the front of each input: computed from a head flit,
        # remembered for the body flits behind it.
        routes = []
        for p, q, f in zip(Port, fifos, heads):
            hdr = data.View(Header, f.data[:Header.size])
            computed = Signal(range(n), name=f"route_calc_{p.name.lower()}")
            # XY order; the "< 0" tests at the west/north edge are left out (constant,
            # and lint says so).
            tests = [(hdr.dst_x > self._x, Port.EAST)]
            if self._x:
                tests.append((hdr.dst_x < self._x, Port.WEST))
            tests.append((hdr.dst_y > self._y, Port.SOUTH))
            if self._y:
                tests.append((hdr.dst_y < self._y, Port.NORTH))
            for k, (cond, port) in enumerate(tests):
                with (m.If if k == 0 else m.Elif)(cond):
                    m.d.comb += computed.eq(port)
            with m.Else():
                m.d.comb += computed.eq(Port.LOCAL)
            held = Signal(range(n), name=f"route_held_{p.name.lower()}")
            route = Signal(range(n), name=f"route_{p.name.lower()}")
            m.d.comb += route.eq(held)
            with m.If(f.head):
                m.d.comb += route.eq(computed)
            with m.If(q.r_en & q.r_rdy & f.head):
                m.d.sync += held.eq(computed)
            routes.append(route)

        # Output allocation.
        pops = [[] for _ in Port]
        for o in Port:
            locked = Signal(name=f"locked_{o.name.lower()}")
            owner = Signal(range(n), name=f"owner_{o.name.lower()}")
            arb = RoundRobin(n)
            m.submodules[f"arb_{o.name.lower()}"] = arb
            for i in Port:
                m.d.comb += arb.requests[i].eq(
                    fifos[i].r_rdy & (routes[i] == o) & heads[i].head & ~locked)
            sel = Signal(range(n), name=f"sel_{o.name.lower()}")
            has = Signal(name=f"has_{o.name.lower()}")
            with m.If(locked):
                m.d.comb += [sel.eq(owner), has.eq(Array(q.r_rdy for q in fifos)[owner])]
            with m.Else():
                m.d.comb += [sel.eq(arb.grant), has.eq(arb.valid)]
            flit = data.View(layout, Array(q.r_data for q in fifos)[sel])
            fire = Signal(name=f"fire_{o.name.lower()}")
            if o is Port.LOCAL:
                m.d.comb += [
                    self.eject.valid.eq(has),
                    self.eject.payload.eq(flit),
                    fire.eq(has & self.eject.ready),
                ]
            else:
                link = self.link_out(o)
                credits = Signal(range(self._depth + 1), init=self._depth,
                                 name=f"credits_{o.name.lower()}")
                m.d.comb += [
                    fire.eq(has & (credits != 0)),
                    link.valid.eq(fire),
                    link.flit.eq(flit),
                ]
                m.d.sync += credits.eq(credits - fire + link.credit)
            m.d.comb += arb.advance.eq(fire & ~locked)
            with m.If(fire):
                with m.If(flit.tail):
                    m.d.sync += locked.eq(0)
                with m.Elif(flit.head):
                    m.d.sync += [locked.eq(1), owner.eq(sel)]
            for i in Port:
                pops[i].append(fire & (sel == i))
        for i in Port:
            m.d.comb += fifos[i].r_en.eq(_any(pops[i]))
        return m


def _any(terms):
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out
