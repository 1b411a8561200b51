"""The request server of a tile: performs the WRITE, READ_REQ and SIGNAL packets it receives.

Shared by the network interface (over the tile scratchpad) and the memory tile (over the
global memory). It takes packets from the request network one at a time:

- WRITE: writes the payload flit by flit from ``addr`` (the last flit masked to the
  packet's byte length), then sends a WRITE_ACK (one flit, same ``length``/``addr``)
  back to the source on the response network.
- READ_REQ: reads ``ceil(length / flit_bytes)`` flits at ``addr`` and sends them to the
  source as one READ_RESP packet whose ``addr`` is the request's reply address.
- SIGNAL: hands ``{token, count}`` to the ``signal`` stream.

It only ever waits on the response network, its memory ports and ``signal``, never on the
request network: that is what keeps request and response traffic from deadlocking
(``docs/noc.md``).

Memory addresses are flit addresses: the byte address shifted right by log2(flit bytes);
address bits beyond ``addr_width`` are ignored (the memory wraps).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .flit import LENGTH_FIELD_BITS, Header, PacketType, ReadReqBody, SignalAddr, flit_layout
from .reader import FlitReader
from .tokens import TokenInc

__all__ = ["PacketTarget", "WriteRequestSignature", "byte_mask", "count_down"]


class WriteRequestSignature(wiring.Signature):
    """A writer's side of a shared write port: ``req`` with address, data, byte mask; ``grant`` back."""

    def __init__(self, addr_width: int, flit_bits: int):
        super().__init__({
            "req": Out(1),
            "addr": Out(addr_width),
            "data": Out(flit_bits),
            "mask": Out(flit_bits // 8),
            "grant": In(1),
        })


def byte_mask(m: Module, remaining: Signal, flit_bytes: int) -> Signal:
    """Byte enables for the next flit of a payload with ``remaining`` bytes left."""
    mask = Signal(flit_bytes)
    with m.If(remaining >= flit_bytes):
        m.d.comb += mask.eq((1 << flit_bytes) - 1)
    with m.Else():
        m.d.comb += mask.eq((Const(1, flit_bytes + 1) << remaining[:flit_bytes.bit_length()]) - 1)
    return mask


def count_down(m: Module, remaining: Signal, flit_bytes: int):
    """Take one flit's bytes off ``remaining`` at the next clock edge, stopping at zero."""
    with m.If(remaining >= flit_bytes):
        m.d.sync += remaining.eq(remaining - flit_bytes)
    with m.Else():
        m.d.sync += remaining.eq(0)


class PacketTarget(wiring.Component):
    """Serves request packets against a flit-wide memory.

    Parameters
    ----------
    x, y : int
        This tile's coordinate (the source of its responses).
    flit_bits : int
        Flit payload width.
    addr_width : int
        Flit address width of the memory served.

    Attributes
    ----------
    req_in : In(stream.Signature(flit_layout))
        From the request network's ejection port.
    resp_out : Out(stream.Signature(flit_layout))
        To the response network's injection port.
    rd_req, rd_addr : Out; rd_grant : In(1); rd_data : In(flit_bits)
        A shared one-cycle-latency read port (see :class:`~accelpool.hw.noc.reader.FlitReader`).
    wr : Out(WriteRequestSignature)
        A shared write port.
    signal : Out(stream.Signature(TokenInc))
        Token increments from SIGNAL packets.
    """

    def __init__(self, *, x: int, y: int, flit_bits: int, addr_width: int):
        self._x, self._y = x, y
        self._flit_bits = flit_bits
        self._addr_width = addr_width
        layout = flit_layout(flit_bits)
        super().__init__({
            "req_in": In(stream.Signature(layout)),
            "resp_out": Out(stream.Signature(layout)),
            "rd_req": Out(1),
            "rd_addr": Out(addr_width),
            "rd_grant": In(1),
            "rd_data": In(flit_bits),
            "wr": Out(WriteRequestSignature(addr_width, flit_bits)),
            "signal": Out(stream.Signature(TokenInc)),
        })

    def elaborate(self, platform):
        m = Module()
        s = self._ports(m)
        self._ack_slot(m, s)
        with m.FSM() as fsm:
            self._write_states(m, s)
            self._read_states(m, s)
            self._other_states(m, s)
        m.d.comb += s.in_resp_data.eq(fsm.ongoing("RESP_DATA"))
        return m

    def _response(self, hdr, type_, addr):
        """A response header to ``hdr``'s source, as a single expression: constant fields
        assigned on their own become `always @*` blocks with nothing to wake them in Icarus,
        and stay X there."""
        return Cat(hdr.src_x, hdr.src_y, Const(self._x, 4), Const(self._y, 4),
                   Const(type_.value, 3), hdr.length, addr)

    def _ports(self, m) -> SimpleNamespace:
        """The flit reader on the read port, the packet registers, the write port and the
        ``signal`` payload; the namespace the states below share."""
        fb = self._flit_bits // 8
        shift = fb.bit_length() - 1
        m.submodules.reader = reader = FlitReader(addr_width=self._addr_width,
                                                  flit_bits=self._flit_bits)
        m.d.comb += [
            self.rd_req.eq(reader.req),
            self.rd_addr.eq(reader.addr),
            reader.grant.eq(self.rd_grant),
            reader.rdata.eq(self.rd_data),
        ]

        flit_in = self.req_in.payload
        hdr_in = data.View(Header, flit_in.data[:Header.size])
        hdr = Signal(Header)
        remaining = Signal(LENGTH_FIELD_BITS + 1)
        waddr = Signal(self._addr_width)
        reply_addr = Signal(32)
        left = Signal(LENGTH_FIELD_BITS + 1)   # READ_RESP flits still to send
        nflits = Signal.like(left)
        m.d.comb += nflits.eq((hdr.length + fb - 1) >> shift)

        resp_hdr = Signal(Header)
        m.d.comb += resp_hdr.as_value().eq(self._response(hdr, PacketType.READ_RESP, reply_addr))

        mask = byte_mask(m, remaining, fb)
        m.d.comb += [
            self.wr.addr.eq(waddr),
            self.wr.data.eq(flit_in.data[:self._flit_bits]),
            self.wr.mask.eq(mask),
        ]
        sig = data.View(SignalAddr, hdr.addr)
        m.d.comb += [self.signal.payload.token.eq(sig.token),
                     self.signal.payload.count.eq(sig.count)]
        return SimpleNamespace(fb=fb, shift=shift, reader=reader, flit_in=flit_in,
                               hdr_in=hdr_in, hdr=hdr, remaining=remaining, waddr=waddr,
                               reply_addr=reply_addr, left=left, nflits=nflits,
                               resp_hdr=resp_hdr)

    def _ack_slot(self, m, s):
        """The WRITE_ACK slot: filled when a WRITE completes, sent while the next packet is
        already being taken, so back-to-back WRITEs run without a gap. It goes out between
        packets only, never inside a READ_RESP."""
        ack_valid = Signal()
        ack_set = Signal()
        ack_hdr = Signal(Header)
        in_resp_data = Signal()
        with m.If(ack_valid & ~in_resp_data):
            m.d.comb += [self.resp_out.valid.eq(1),
                         self.resp_out.payload.data.eq(ack_hdr),
                         self.resp_out.payload.head.eq(1),
                         self.resp_out.payload.tail.eq(1)]
            with m.If(self.resp_out.ready):
                m.d.sync += ack_valid.eq(0)
        with m.If(ack_set):
            m.d.sync += [ack_valid.eq(1),
                         ack_hdr.as_value().eq(self._response(s.hdr, PacketType.WRITE_ACK,
                                                              s.hdr.addr))]
        s.ack_valid, s.ack_set, s.in_resp_data = ack_valid, ack_set, in_resp_data

    def _write_states(self, m, s):
        """IDLE (takes a packet's header and dispatches on its type), WRITE and ACK."""
        flit_in, hdr_in, remaining, waddr = s.flit_in, s.hdr_in, s.remaining, s.waddr
        ack_valid, ack_set = s.ack_valid, s.ack_set
        with m.State("IDLE"):
            m.d.comb += self.req_in.ready.eq(1)
            with m.If(self.req_in.valid):
                m.d.sync += [s.hdr.eq(hdr_in), remaining.eq(hdr_in.length),
                             waddr.eq(hdr_in.addr >> s.shift)]
                with m.If(~flit_in.head):
                    pass  # a stray body flit: nothing to do but drop it
                with m.Elif(hdr_in.type == PacketType.WRITE):
                    with m.If(flit_in.tail):
                        m.next = "ACK"
                    with m.Else():
                        m.next = "WRITE"
                with m.Elif((hdr_in.type == PacketType.READ_REQ) & ~flit_in.tail):
                    m.next = "READ_BODY"
                with m.Elif(hdr_in.type == PacketType.SIGNAL):
                    m.next = "SIGNAL"
                with m.Elif(~flit_in.tail):
                    m.next = "DRAIN"
        with m.State("WRITE"):
            # The tail waits for the acknowledgement slot (long free by then).
            can = Signal()
            m.d.comb += [can.eq(self.req_in.valid & (~flit_in.tail | ~ack_valid)),
                         self.wr.req.eq(can),
                         self.req_in.ready.eq(self.wr.grant & can)]
            with m.If(can & self.wr.grant):
                m.d.sync += waddr.eq(waddr + 1)
                count_down(m, remaining, s.fb)
                with m.If(flit_in.tail):
                    m.d.comb += ack_set.eq(1)
                    m.next = "IDLE"
        with m.State("ACK"):
            # Zero-length WRITE: queue its acknowledgement once the slot is free.
            with m.If(~ack_valid):
                m.d.comb += ack_set.eq(1)
                m.next = "IDLE"

    def _read_states(self, m, s):
        """READ_BODY (starts the flit reader), then the READ_RESP header and data."""
        flit_in, reader, nflits, left = s.flit_in, s.reader, s.nflits, s.left
        ack_valid = s.ack_valid
        with m.State("READ_BODY"):
            body = data.View(ReadReqBody, flit_in.data[:ReadReqBody.size])
            m.d.comb += [self.req_in.ready.eq(1),
                         reader.cmd.payload.addr.eq(s.hdr.addr >> s.shift),
                         reader.cmd.payload.count.eq(nflits)]
            with m.If(self.req_in.valid):
                # The reader is idle here: the previous response has been sent whole.
                m.d.comb += reader.cmd.valid.eq(nflits != 0)
                m.d.sync += [s.reply_addr.eq(body.reply_addr), left.eq(nflits)]
                with m.If(flit_in.tail):
                    m.next = "RESP_HEAD"
                with m.Else():
                    m.next = "DRAIN_THEN_RESP"
        with m.State("DRAIN_THEN_RESP"):
            m.d.comb += self.req_in.ready.eq(1)
            with m.If(self.req_in.valid & flit_in.tail):
                m.next = "RESP_HEAD"
        with m.State("RESP_HEAD"):
            with m.If(~ack_valid):
                m.d.comb += [self.resp_out.valid.eq(1),
                             self.resp_out.payload.data.eq(s.resp_hdr),
                             self.resp_out.payload.head.eq(1),
                             self.resp_out.payload.tail.eq(left == 0)]
            with m.If(~ack_valid & self.resp_out.ready):
                with m.If(left == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "RESP_DATA"
        with m.State("RESP_DATA"):
            m.d.comb += [self.resp_out.valid.eq(reader.data.valid),
                         self.resp_out.payload.data.eq(reader.data.payload),
                         self.resp_out.payload.tail.eq(left == 1),
                         reader.data.ready.eq(self.resp_out.ready)]
            with m.If(self.resp_out.valid & self.resp_out.ready):
                m.d.sync += left.eq(left - 1)
                with m.If(left == 1):
                    m.next = "IDLE"

    def _other_states(self, m, s):
        """SIGNAL (hands the token increment on) and DRAIN (drops a packet's body)."""
        with m.State("SIGNAL"):
            m.d.comb += self.signal.valid.eq(1)
            with m.If(self.signal.ready):
                m.next = "IDLE"
        with m.State("DRAIN"):
            m.d.comb += self.req_in.ready.eq(1)
            with m.If(self.req_in.valid & s.flit_in.tail):
                m.next = "IDLE"
