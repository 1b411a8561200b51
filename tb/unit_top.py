"""A unit wired to a tile scratchpad: the test top for units that use scratchpad ports.

:class:`UnitTop` instantiates :class:`accelpool.hw.scratchpad.Scratchpad` with as many read and
write ports as the unit has, connects them, and exposes the unit's ``cmd`` and ``busy``
beside the scratchpad's stream channels (``wr_cmd``/``wr_data`` to load operands,
``rd_cmd``/``rd_data`` to read results back). Shared by the CE and AFU testbenches, in
amaranth.sim and (as Verilog) in cocotb.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from accelpool.hw.scratchpad import Scratchpad

__all__ = ["UnitTop"]


class UnitTop(wiring.Component):
    """``unit`` plus a scratchpad of ``depth`` words of the unit's port width.

    Parameters
    ----------
    unit : wiring.Component
        Has ``cmd``, ``busy`` and the named read/write ports.
    depth : int
        Scratchpad words.
    read_ports, write_ports : sequence of str
        Names of the unit's ``In(ReadPort.Signature)`` / ``In(WritePort.Signature)`` ports.
    """

    def __init__(self, unit, *, depth: int, read_ports=("rd",), write_ports=("wr",)):
        self._unit = unit
        self._read_names = tuple(read_ports)
        self._write_names = tuple(write_ports)
        port = getattr(unit, self._read_names[0])
        self._word_bits = len(port.data)
        self._spad = Scratchpad(word_bits=self._word_bits, depth=depth,
                                read_ports=len(self._read_names),
                                write_ports=len(self._write_names))
        sig = unit.signature.members
        spad_sig = self._spad.signature.members
        super().__init__({
            "cmd": sig["cmd"],
            "busy": Out(1),
            "spad_busy": Out(1),
            "rd_cmd": spad_sig["rd_cmd"],
            "rd_data": spad_sig["rd_data"],
            "wr_cmd": spad_sig["wr_cmd"],
            "wr_data": spad_sig["wr_data"],
        })

    @property
    def word_bits(self) -> int:
        return self._word_bits

    @property
    def word_bytes(self) -> int:
        return self._word_bits // 8

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self._unit
        m.submodules.spad = spad = self._spad
        wiring.connect(m, wiring.flipped(self.cmd), unit.cmd)
        for i, name in enumerate(self._read_names):
            wiring.connect(m, spad.read[i], getattr(unit, name))
        for i, name in enumerate(self._write_names):
            wiring.connect(m, spad.write[i], getattr(unit, name))
        for name in ("rd_cmd", "wr_cmd", "wr_data"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(spad, name))
        wiring.connect(m, spad.rd_data, wiring.flipped(self.rd_data))
        m.d.comb += [self.busy.eq(unit.busy), self.spad_busy.eq(spad.busy)]
        return m
