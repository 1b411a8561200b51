"""The network interface of a compute tile, with its DMA engine.

The tile controller hands LOAD, STORE and SIGNAL commands (the ISA's 256-bit
:data:`accelpool.spec.isa.CommandLayout`) to ``cmd``:

- STORE ``{spad_addr, x, y, remote_addr, length}``: reads ``length`` bytes of the local
  scratchpad and sends them to tile (x, y) as WRITE packets of at most
  ``max_packet_bytes`` each. Every WRITE is acknowledged by the receiver.
- LOAD: sends READ_REQ packets (one per ``max_packet_bytes``) to tile (x, y); the READ_RESP
  packets that come back are written into the local scratchpad.
- SIGNAL ``{x, y, token, count}``: one SIGNAL packet; tile (x, y) adds ``count`` to its
  token counter ``token``.
- NOP is accepted and does nothing. Any other opcode, a scratchpad or remote address that
  is not a multiple of the flit size in bytes, or a destination outside the mesh sets the
  sticky ``error`` flag and the command is dropped.

A command is accepted only when the previous ones have completed: every WRITE
acknowledged, every READ_RESP written. So a SIGNAL is sent only after all data of the
earlier commands has landed, whichever tile it went to, and a command that follows a
LOAD sees the loaded data. ``busy`` is high from a command's acceptance until it has
completed. Lengths are any number of bytes; a partial last flit is written with byte
enables.

The NI also serves the packets other tiles send here (:class:`~accelpool.hw.noc.target.PacketTarget`):
writes and reads of this scratchpad, and SIGNALs, which leave on ``signal`` for the
tile's :class:`~accelpool.hw.noc.tokens.TokenCounters`.

It reaches the scratchpad through one read and one write port with Amaranth's memory
port signatures (the unit side, ``In(ReadPort.Signature)``, as
:class:`accelpool.hw.scratchpad.Scratchpad` documents), shared between its DMA engine and the
request server by round-robin arbiters, and packs a scratchpad word of ``word_bits`` as
``word_bits / flit_bits`` flits.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import MeshConfig
from accelpool.spec.isa import LENGTH_BITS, CommandLayout, Opcode

from ..params import check_positive
from .arbiter import RoundRobin
from .flit import (LENGTH_FIELD_BITS, MAX_PACKET_BYTES_LIMIT, Header, PacketType, ReadReqBody,
                   flit_layout)
from .mesh import check_coord, check_mesh
from .reader import FlitReader
from .signaller import SignalSender, header_bits
from .target import PacketTarget, byte_mask, count_down
from .tokens import TokenInc

__all__ = ["NetworkInterface"]


class NetworkInterface(wiring.Component):
    """A tile's network interface: DMA engine, request server and response sink.

    Parameters
    ----------
    mesh : MeshConfig
        The network (size, flit width).
    x, y : int
        This tile's coordinate.
    word_bits : int
        Scratchpad word width: a power-of-two multiple of ``mesh.flit_bits``.
    spad_bytes : int
        Scratchpad size in bytes (a power of two, at least one word).
    max_packet_bytes : int
        Largest payload per packet; a multiple of the flit size in bytes.

    Attributes
    ----------
    cmd : In(stream.Signature(CommandLayout))
        LOAD/STORE/SIGNAL (and NOP) commands.
    busy : Out(1)
        A command is in progress or has data in flight.
    error : Out(1)
        Sticky: a command was dropped (see the module docstring).
    req_out, resp_out : Out(stream.Signature(flit_layout))
        To the request and response networks' injection ports.
    req_in, resp_in : In(stream.Signature(flit_layout))
        From the request and response networks' ejection ports.
    spad_read : In(memory.ReadPort.Signature(addr_width=, shape=word_bits))
    spad_write : In(memory.WritePort.Signature(addr_width=, shape=word_bits, granularity=8))
        The scratchpad ports (word addresses; one-cycle read latency).
    signal : Out(stream.Signature(TokenInc))
        Increments for the local token counters.
    """

    def __init__(self, *, mesh: MeshConfig, x: int, y: int, word_bits: int, spad_bytes: int,
                 max_packet_bytes: int = 64):
        self._mesh = check_mesh(mesh)
        check_coord(mesh, x, y)
        self._x, self._y = x, y
        fbits = mesh.flit_bits
        check_positive(word_bits, "Scratchpad word width")
        k = word_bits // fbits
        if word_bits % fbits or k & (k - 1):
            raise ValueError(f"Scratchpad word width must be a power-of-two multiple of the "
                             f"flit width {fbits}, not {word_bits!r}")
        check_positive(spad_bytes, "Scratchpad size")
        if spad_bytes & (spad_bytes - 1) or spad_bytes < word_bits // 8:
            raise ValueError(f"Scratchpad size must be a power of two of at least one word "
                             f"({word_bits // 8} bytes), not {spad_bytes!r}")
        check_positive(max_packet_bytes, "Packet size")
        if max_packet_bytes % (fbits // 8) or max_packet_bytes > MAX_PACKET_BYTES_LIMIT:
            raise ValueError(f"Packet size must be a multiple of the flit size "
                             f"({fbits // 8} bytes) up to {MAX_PACKET_BYTES_LIMIT}, "
                             f"not {max_packet_bytes!r}")
        self._word_bits = word_bits
        self._spad_bytes = spad_bytes
        self._max_packet = max_packet_bytes
        self._spad_addr_width = max(1, (spad_bytes // (word_bits // 8) - 1).bit_length())
        layout = flit_layout(fbits)
        super().__init__({
            "cmd": In(stream.Signature(CommandLayout)),
            "busy": Out(1),
            "error": Out(1),
            "req_out": Out(stream.Signature(layout)),
            "req_in": In(stream.Signature(layout)),
            "resp_out": Out(stream.Signature(layout)),
            "resp_in": In(stream.Signature(layout)),
            "spad_read": In(memory.ReadPort.Signature(addr_width=self._spad_addr_width,
                                                      shape=word_bits)),
            "spad_write": In(memory.WritePort.Signature(addr_width=self._spad_addr_width,
                                                        shape=word_bits, granularity=8)),
            "signal": Out(stream.Signature(TokenInc)),
        })

    mesh = property(lambda self: self._mesh)
    x = property(lambda self: self._x)
    y = property(lambda self: self._y)
    word_bits = property(lambda self: self._word_bits)
    spad_bytes = property(lambda self: self._spad_bytes)
    max_packet_bytes = property(lambda self: self._max_packet)
    spad_addr_width = property(lambda self: self._spad_addr_width)

    def elaborate(self, platform):
        m = Module()
        s = self._geometry()
        self._request_server(m, s)
        self._spad_read_stream(m, s)
        self._spad_write_stream(m, s)
        self._outstanding(m, s)
        self._response_sink(m, s)
        self._command_state(m, s)
        self._signal_sender(m, s)
        self._packet_header(m, s)
        self._error_detection(m, s)
        with m.FSM(name="dma") as dma_fsm:
            self._command_intake(m, s)
            self._store_packetizer(m, s)
            self._load_packetizer(m, s)
        self._request_port(m, s)
        self._status(m, s, dma_fsm)
        return m

    def _geometry(self) -> SimpleNamespace:
        """Flit, lane and address widths; the namespace the sub-blocks below share."""
        fbits = self._mesh.flit_bits
        fb = fbits // 8
        lanes = self._word_bits // fbits
        lane_bits = lanes.bit_length() - 1
        return SimpleNamespace(fbits=fbits, fb=fb, shift=fb.bit_length() - 1, lanes=lanes,
                               lane_bits=lane_bits,
                               faw=self._spad_addr_width + lane_bits)    # flit address width

    def _request_server(self, m, s):
        """The packet target serving other tiles' requests, and the DMA engine's flit reader."""
        m.submodules.target = target = PacketTarget(x=self._x, y=self._y, flit_bits=s.fbits,
                                                    addr_width=s.faw)
        m.submodules.reader = reader = FlitReader(addr_width=s.faw, flit_bits=s.fbits)
        wiring.connect(m, wiring.flipped(self.req_in), target.req_in)
        wiring.connect(m, target.resp_out, wiring.flipped(self.resp_out))
        wiring.connect(m, target.signal, wiring.flipped(self.signal))
        s.target, s.reader = target, reader

    def _spad_read_stream(self, m, s):
        """Scratchpad read port: the request server (0) and the DMA engine (1) take turns."""
        fbits, lanes, lane_bits = s.fbits, s.lanes, s.lane_bits
        target, reader = s.target, s.reader
        m.submodules.rd_arb = rd_arb = RoundRobin(2)
        rd_addr = Signal(s.faw)
        rd_lane = Signal(max(1, lane_bits))
        m.d.comb += [
            rd_arb.requests.eq(Cat(target.rd_req, reader.req)),
            rd_arb.advance.eq(1),
            target.rd_grant.eq(rd_arb.valid & (rd_arb.grant == 0)),
            reader.grant.eq(rd_arb.valid & (rd_arb.grant == 1)),
            rd_addr.eq(Mux(rd_arb.grant == 0, target.rd_addr, reader.addr)),
            self.spad_read.addr.eq(rd_addr >> lane_bits),
            self.spad_read.en.eq(rd_arb.valid),
        ]
        if lanes > 1:
            with m.If(rd_arb.valid):
                m.d.sync += rd_lane.eq(rd_addr[:lane_bits])
            word_data = self.spad_read.data.word_select(rd_lane, fbits)
        else:
            word_data = self.spad_read.data
        m.d.comb += [target.rd_data.eq(word_data), reader.rdata.eq(word_data)]

    def _spad_write_stream(self, m, s):
        """Scratchpad write port: the request server (0) and the response sink (1) take turns,
        a flit at a time, with byte enables on the flit's lane of the word."""
        fbits, fb, lanes, lane_bits, faw = s.fbits, s.fb, s.lanes, s.lane_bits, s.faw
        target = s.target
        sink_req = Signal()
        sink_addr = Signal(faw)
        sink_mask = Signal(fb)
        m.submodules.wr_arb = wr_arb = RoundRobin(2)
        wr_addr = Signal(faw)
        wr_data = Signal(fbits)
        wr_mask = Signal(fb)
        m.d.comb += [
            wr_arb.requests.eq(Cat(target.wr.req, sink_req)),
            wr_arb.advance.eq(1),
            target.wr.grant.eq(wr_arb.valid & (wr_arb.grant == 0)),
        ]
        sink_grant = Signal()
        m.d.comb += sink_grant.eq(wr_arb.valid & (wr_arb.grant == 1))
        with m.If(wr_arb.grant == 0):
            m.d.comb += [wr_addr.eq(target.wr.addr), wr_data.eq(target.wr.data),
                         wr_mask.eq(target.wr.mask)]
        with m.Else():
            m.d.comb += [wr_addr.eq(sink_addr), wr_data.eq(self.resp_in.payload.data[:fbits]),
                         wr_mask.eq(sink_mask)]
        lane_of_write = wr_addr[:lane_bits] if lanes > 1 else Const(0, 1)
        m.d.comb += [
            self.spad_write.addr.eq(wr_addr >> lane_bits),
            self.spad_write.data.eq(wr_data.replicate(lanes)),
            self.spad_write.en.eq(Cat(Mux(wr_arb.valid & (lane_of_write == i), wr_mask, 0)
                                      for i in range(lanes))),
        ]
        s.sink_req, s.sink_addr, s.sink_mask = sink_req, sink_addr, sink_mask
        s.sink_grant = sink_grant

    def _outstanding(self, m, s):
        """Counters of outstanding WRITEs (awaiting WRITE_ACK) and READ_REQs (awaiting
        READ_RESP)."""
        acks = Signal(LENGTH_BITS)
        reads = Signal(LENGTH_BITS)
        ack_up, ack_dn, read_up, read_dn = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [acks.eq(acks + ack_up - ack_dn), reads.eq(reads + read_up - read_dn)]
        s.acks, s.reads = acks, reads
        s.ack_up, s.ack_dn, s.read_up, s.read_dn = ack_up, ack_dn, read_up, read_dn

    def _response_sink(self, m, s):
        """The response sink: counts WRITE_ACKs and writes READ_RESP payloads into the scratchpad
        through the write arbiter."""
        fb, shift = s.fb, s.shift
        sink_req, sink_addr, sink_mask = s.sink_req, s.sink_addr, s.sink_mask
        sink_grant = s.sink_grant
        ack_dn, read_dn = s.ack_dn, s.read_dn
        rflit = self.resp_in.payload
        rhdr = data.View(Header, rflit.data[:Header.size])
        sink_left = Signal(LENGTH_FIELD_BITS + 1)
        m.d.comb += sink_mask.eq(byte_mask(m, sink_left, fb))
        with m.FSM(name="sink"):
            with m.State("IDLE"):
                m.d.comb += self.resp_in.ready.eq(1)
                with m.If(self.resp_in.valid & rflit.head):
                    with m.If(rhdr.type == PacketType.WRITE_ACK):
                        m.d.comb += ack_dn.eq(1)
                    with m.Elif(rhdr.type == PacketType.READ_RESP):
                        m.d.sync += [sink_addr.eq(rhdr.addr >> shift), sink_left.eq(rhdr.length)]
                        with m.If(rflit.tail):
                            m.d.comb += read_dn.eq(1)
                        with m.Else():
                            m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [sink_req.eq(self.resp_in.valid),
                             self.resp_in.ready.eq(sink_grant)]
                with m.If(self.resp_in.valid & sink_grant):
                    m.d.sync += sink_addr.eq(sink_addr + 1)
                    count_down(m, sink_left, fb)
                    with m.If(rflit.tail):
                        m.d.comb += read_dn.eq(1)
                        m.next = "IDLE"

    def _command_state(self, m, s):
        """The DMA engine's per-command registers (destination, addresses, bytes left) and the
        size of the current packet."""
        cmd = self.cmd.payload
        s.dma = cmd.body.load        # LOAD and STORE share the DmaBody layout
        s.sigb = cmd.body.signal
        dst_x, dst_y = Signal(4), Signal(4)
        remote = Signal(32)
        spad = Signal(32)
        left = Signal(LENGTH_BITS)
        chunk = Signal(range(self._max_packet + 1))
        m.d.comb += chunk.eq(Mux(left > self._max_packet, self._max_packet, left))
        pkt_left = Signal(range(self._max_packet // s.fb + 2))
        s.dst_x, s.dst_y, s.remote, s.spad, s.left = dst_x, dst_y, remote, spad, left
        s.chunk, s.pkt_left = chunk, pkt_left

    def _signal_sender(self, m, s):
        """The SIGNAL path: the signal sender shared with the memory tile, and the DMA engine's
        own request stream."""
        m.submodules.signaller = sender = SignalSender(mesh=self._mesh, x=self._x, y=self._y)
        m.d.comb += sender.cmd.payload.eq(s.sigb)
        dma_out = stream.Signature(flit_layout(s.fbits)).create()
        s.sender, s.dma_out = sender, dma_out

    def _packet_header(self, m, s):
        """The header flit of the DMA engine's current WRITE or READ_REQ packet."""
        out_hdr = Signal(Header)
        out_type = Signal(PacketType)
        out_len = Signal(LENGTH_FIELD_BITS)
        out_addr = Signal(32)
        m.d.comb += [out_len.eq(s.chunk), out_addr.eq(s.remote),
                     out_hdr.as_value().eq(header_bits(s.dst_x, s.dst_y, self._x, self._y,
                                                       out_type, out_len, out_addr))]
        s.out_hdr, s.out_type = out_hdr, out_type

    def _error_detection(self, m, s):
        """The checks of a LOAD or STORE (flit alignment, destination in the mesh), the sticky
        error flag, and ``quiet``: nothing outstanding."""
        dma = s.dma
        align = s.fb - 1
        cols, rows = self._mesh.cols, self._mesh.rows
        s.bad_dma = ((dma.spad_addr & align) != 0) | ((dma.remote_addr & align) != 0) | \
            (dma.x >= cols) | (dma.y >= rows)
        quiet = Signal()
        dma_error = Signal()
        m.d.comb += quiet.eq((s.acks == 0) & (s.reads == 0))
        s.quiet, s.dma_error = quiet, dma_error

    def _command_intake(self, m, s):
        """The DMA engine's IDLE state: accepts a command once all earlier ones have completed,
        latches its fields and starts a STORE, a LOAD or a SIGNAL, or flags it as bad."""
        cmd, dma, shift, fb = self.cmd.payload, s.dma, s.shift, s.fb
        quiet, sender, reader, dma_error = s.quiet, s.sender, s.reader, s.dma_error
        with m.State("IDLE"):
            m.d.comb += self.cmd.ready.eq(quiet & ~sender.busy)
            with m.If(self.cmd.valid & quiet & ~sender.busy):
                with m.Switch(cmd.opcode):
                    with m.Case(Opcode.NOP):
                        pass
                    with m.Case(Opcode.LOAD, Opcode.STORE):
                        m.d.sync += [s.dst_x.eq(dma.x), s.dst_y.eq(dma.y), s.left.eq(dma.length),
                                     s.remote.eq(dma.remote_addr), s.spad.eq(dma.spad_addr)]
                        with m.If(s.bad_dma):
                            m.d.sync += dma_error.eq(1)
                        with m.Elif(dma.length == 0):
                            pass
                        with m.Elif(cmd.opcode == Opcode.STORE):
                            m.d.comb += [
                                reader.cmd.valid.eq(1),
                                reader.cmd.payload.addr.eq(dma.spad_addr >> shift),
                                reader.cmd.payload.count.eq((dma.length + fb - 1) >> shift),
                            ]
                            m.next = "STORE_HEAD"
                        with m.Else():
                            m.next = "LOAD_HEAD"
                    with m.Case(Opcode.SIGNAL):
                        m.d.comb += sender.cmd.valid.eq(1)
                    with m.Default():
                        m.d.sync += dma_error.eq(1)

    def _send_header(self, m, s, type_):
        """Offer the header flit of a ``type_`` packet (:meth:`_packet_header`) on the DMA
        engine's request stream."""
        m.d.comb += [s.out_type.eq(type_),
                     s.dma_out.valid.eq(1),
                     s.dma_out.payload.data.eq(s.out_hdr),
                     s.dma_out.payload.head.eq(1)]

    def _store_packetizer(self, m, s):
        """The STORE states: WRITE packets of at most ``max_packet_bytes`` toward the mesh, their
        payload streamed from the scratchpad by the flit reader."""
        fb, shift, dma_out, reader = s.fb, s.shift, s.dma_out, s.reader
        left, remote, chunk, pkt_left = s.left, s.remote, s.chunk, s.pkt_left
        with m.State("STORE_HEAD"):
            self._send_header(m, s, PacketType.WRITE)
            with m.If(dma_out.ready):
                m.d.comb += s.ack_up.eq(1)
                m.d.sync += pkt_left.eq((chunk + fb - 1) >> shift)
                m.next = "STORE_DATA"
        with m.State("STORE_DATA"):
            m.d.comb += [dma_out.valid.eq(reader.data.valid),
                         dma_out.payload.data.eq(reader.data.payload),
                         dma_out.payload.tail.eq(pkt_left == 1),
                         reader.data.ready.eq(dma_out.ready)]
            with m.If(dma_out.valid & dma_out.ready):
                m.d.sync += pkt_left.eq(pkt_left - 1)
                with m.If(pkt_left == 1):
                    m.d.sync += [left.eq(left - chunk), remote.eq(remote + chunk)]
                    with m.If(left == chunk):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "STORE_HEAD"

    def _load_packetizer(self, m, s):
        """The LOAD states: two-flit READ_REQ packets toward the mesh, one per
        ``max_packet_bytes``, each naming the scratchpad address its reply lands at."""
        dma_out, left, remote, spad, chunk = s.dma_out, s.left, s.remote, s.spad, s.chunk
        with m.State("LOAD_HEAD"):
            self._send_header(m, s, PacketType.READ_REQ)
            with m.If(dma_out.ready):
                m.next = "LOAD_BODY"
        with m.State("LOAD_BODY"):
            body = Signal(ReadReqBody)
            m.d.comb += [body.reply_addr.eq(spad),
                         dma_out.valid.eq(1),
                         dma_out.payload.data.eq(body),
                         dma_out.payload.tail.eq(1)]
            with m.If(dma_out.ready):
                m.d.comb += s.read_up.eq(1)
                m.d.sync += [left.eq(left - chunk), remote.eq(remote + chunk),
                             spad.eq(spad + chunk)]
                with m.If(left == chunk):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "LOAD_HEAD"

    def _request_port(self, m, s):
        """The request port: the signal sender while it holds a SIGNAL, else the DMA engine
        (which is idle then: a command is accepted only once the sender is free)."""
        with m.If(s.sender.busy):
            wiring.connect(m, s.sender.req_out, wiring.flipped(self.req_out))
        with m.Else():
            wiring.connect(m, s.dma_out, wiring.flipped(self.req_out))

    def _status(self, m, s, dma_fsm):
        """The ``busy`` and ``error`` outputs."""
        m.d.comb += [self.busy.eq(~dma_fsm.ongoing("IDLE") | ~s.quiet | s.sender.busy),
                     self.error.eq(s.dma_error | s.sender.error)]
