"""The tile scratchpad: a word-wide SRAM with ports for the unit and streams for the network.

Units reach the scratchpad through Amaranth's standard memory port signatures
(``lib.memory.ReadPort.Signature`` / ``WritePort.Signature``): one-cycle read latency,
byte write enables. The network interface reaches it through two streams, built from
:class:`accelpool.hw.spad_stream.StreamReader` and :class:`accelpool.hw.spad_stream.StreamWriter`: a read
channel (command ``{addr, count}`` in, ``count`` words out) and a write channel (command
``{addr, count}`` in, then ``count`` words in), each with backpressure.

Addresses on every port are word addresses; the command encoding's byte addresses are
divided by :attr:`Scratchpad.word_bytes` by the caller.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_int
from .spad_stream import StreamReader, StreamWriter, TransferLayout

__all__ = ["Scratchpad"]


class Scratchpad(wiring.Component):
    """Tile scratchpad SRAM.

    Parameters
    ----------
    word_bits : int
        Width of one word; a multiple of 8.
    depth : int
        Number of words.
    read_ports : int
        Number of unit read ports (``read[i]``).
    write_ports : int
        Number of unit write ports (``write[i]``).

    Attributes
    ----------
    read : array of ``Out(ReadPort.Signature)`` (the memory side; a unit uses ``In``)
        Unit read ports: ``addr``, ``en``; ``data`` one cycle later.
    write : array of ``Out(WritePort.Signature)``
        Unit write ports: ``addr``, ``data``, ``en`` (one bit per byte).
    rd_cmd : ``In(stream.Signature(TransferLayout))``
        Stream read channel command: ``{addr, count}``.
    rd_data : ``Out(stream.Signature(word_bits))``
        The ``count`` words read, in address order.
    wr_cmd : ``In(stream.Signature(TransferLayout))``
        Stream write channel command: ``{addr, count}``.
    wr_data : ``In(stream.Signature(word_bits))``
        The ``count`` words to write, in address order.
    busy : ``Out(1)``
        A stream transfer is in progress.
    """

    def __init__(self, *, word_bits: int, depth: int, read_ports: int = 1, write_ports: int = 1):
        for name, value, lo in (("Word width", word_bits, 8), ("Depth", depth, 2),
                                ("Read port count", read_ports, 0),
                                ("Write port count", write_ports, 0)):
            check_int(value, name, "an integer")
            if value < lo:
                raise ValueError(f"{name} must be at least {lo}, not {value!r}")
        if word_bits % 8:
            raise ValueError(f"Word width must be a multiple of 8 bits, not {word_bits!r}")
        self._word_bits = word_bits
        self._depth = depth
        self._addr_width = max(1, (depth - 1).bit_length())
        layout = TransferLayout(self._addr_width)
        rsig = memory.ReadPort.Signature(addr_width=self._addr_width, shape=word_bits)
        wsig = memory.WritePort.Signature(addr_width=self._addr_width, shape=word_bits,
                                          granularity=8)
        members = {
            "rd_cmd": In(stream.Signature(layout)),
            "rd_data": Out(stream.Signature(word_bits)),
            "wr_cmd": In(stream.Signature(layout)),
            "wr_data": In(stream.Signature(word_bits)),
            "busy": Out(1),
        }
        if read_ports:
            members["read"] = Out(rsig).array(read_ports)
        if write_ports:
            members["write"] = Out(wsig).array(write_ports)
        super().__init__(members)
        self._read_ports = read_ports
        self._write_ports = write_ports

    @property
    def word_bits(self) -> int:
        return self._word_bits

    @property
    def word_bytes(self) -> int:
        return self._word_bits // 8

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def addr_width(self) -> int:
        return self._addr_width

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self._word_bits, depth=self._depth, init=[])

        for i in range(self._read_ports):
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.read[i].addr), port.en.eq(self.read[i].en),
                         self.read[i].data.eq(port.data)]
        for i in range(self._write_ports):
            port = mem.write_port(granularity=8)
            m.d.comb += [port.addr.eq(self.write[i].addr), port.en.eq(self.write[i].en),
                         port.data.eq(self.write[i].data)]

        m.submodules.reader = reader = StreamReader(addr_width=self._addr_width,
                                                    data_width=self._word_bits)
        m.submodules.writer = writer = StreamWriter(addr_width=self._addr_width,
                                                    data_width=self._word_bits)
        rport = mem.read_port()
        wport = mem.write_port(granularity=8)
        wiring.connect(m, wiring.flipped(self.rd_cmd), reader.cmd)
        wiring.connect(m, reader.data, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_cmd), writer.cmd)
        wiring.connect(m, wiring.flipped(self.wr_data), writer.data)
        m.d.comb += [
            rport.addr.eq(reader.port.addr), rport.en.eq(reader.port.en),
            reader.port.data.eq(rport.data),
            wport.addr.eq(writer.port.addr), wport.en.eq(writer.port.en),
            wport.data.eq(writer.port.data),
            self.busy.eq(reader.busy | writer.busy),
        ]
        return m
