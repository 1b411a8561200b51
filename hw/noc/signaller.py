"""Sends SIGNAL packets: the one place a tile's SIGNAL command becomes a request packet.

Used by the compute tiles' :class:`~accelpool.hw.noc.ni.NetworkInterface` and by the memory tile
(:class:`~accelpool.hw.noc.memory_tile.MemoryTile`), so both send exactly the same packet with the
same timing. A SIGNAL ``{x, y, token, count}`` accepted in cycle ``t`` goes out as one
head-and-tail flit on the request network from cycle ``t + 1`` (``busy`` until the
network takes it); tile (x, y) adds ``count`` to its token counter ``token``. A
destination outside the mesh sets the sticky ``error`` and the SIGNAL is dropped.

Ordering after earlier data is the caller's business: the NI hands a SIGNAL over only
once every earlier WRITE is acknowledged; the memory tile's writes are its layout
engine's, complete when its EXEC ends.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig
from accelpool.spec.isa import SignalBody

from .flit import Header, PacketType, SignalAddr, flit_layout
from .mesh import check_coord, check_mesh

__all__ = ["SignalSender", "header_bits"]


def header_bits(dst_x, dst_y, src_x: int, src_y: int, type_, length, addr):
    """A head flit's :data:`~accelpool.hw.noc.flit.Header` as one expression.

    One expression on purpose: constant fields assigned on their own become ``always @*``
    blocks with nothing to wake them in Icarus, and stay X there.
    """
    return Cat(dst_x, dst_y, Const(src_x, 4), Const(src_y, 4), type_, length, addr)


class SignalSender(wiring.Component):
    """One SIGNAL packet per accepted command.

    Parameters
    ----------
    mesh : MeshConfig
    x, y : int
        The sending tile's coordinate (the packet's source).

    Attributes
    ----------
    cmd : In(stream.Signature(SignalBody))
        ``{x, y, token, count}``; ready when no SIGNAL is waiting to be sent.
    req_out : Out(stream.Signature(flit_layout))
        To the request network's injection port.
    busy : Out(1)
        A SIGNAL is waiting for the network.
    error : Out(1)
        Sticky: a SIGNAL to a destination outside the mesh was dropped.
    """

    def __init__(self, *, mesh: MeshConfig, x: int, y: int):
        self._mesh = check_mesh(mesh)
        check_coord(mesh, x, y)
        self._x, self._y = x, y
        super().__init__({
            "cmd": In(stream.Signature(SignalBody)),
            "req_out": Out(stream.Signature(flit_layout(mesh.flit_bits))),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dst_x, dst_y = Signal(4), Signal(4)
        sig_addr = Signal(SignalAddr)
        hdr = Signal(Header)
        m.d.comb += hdr.as_value().eq(header_bits(dst_x, dst_y, self._x, self._y,
                                                  Const(PacketType.SIGNAL.value, 3),
                                                  Const(0, 13), sig_addr))
        body = self.cmd.payload
        bad = (body.x >= self._mesh.cols) | (body.y >= self._mesh.rows)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [dst_x.eq(body.x), dst_y.eq(body.y),
                                 sig_addr.token.eq(body.token), sig_addr.count.eq(body.count)]
                    with m.If(bad):
                        m.d.sync += self.error.eq(1)
                    with m.Else():
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.busy.eq(1),
                             self.req_out.valid.eq(1),
                             self.req_out.payload.data.eq(hdr),
                             self.req_out.payload.head.eq(1),
                             self.req_out.payload.tail.eq(1)]
                with m.If(self.req_out.ready):
                    m.next = "IDLE"
        return m
