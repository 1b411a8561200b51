"""The tile controller: fetches the tile's command stream and dispatches it in order.

Commands (``spec/isa.py``) are read from the tile's command memory, one 256-bit word per
command, starting at address 0 when ``start`` is pulsed, and sent on:

- LOAD, STORE, SIGNAL, NOP -> the network interface (``ni_cmd``), which runs one at a time;
- EXEC -> the unit (``unit_cmd``: the 8-bit function and the 240-bit argument field,
  which the tile views through the unit's own argument layout);
- WAIT -> the token counters (``tok_wait``), which accept it once the token is there;
- END -> the controller drains and raises ``done``.

Ordering. Issue is strictly in order; what a command waits for before it issues is
chosen so the compiler can overlap data movement with compute and still reason simply:

========  ============================================================================
command   issues when
========  ============================================================================
LOAD      the NI accepts it (the NI finishes one transfer before taking the next). It
          does not wait for the unit: a LOAD may overlap the most recent EXEC, so the
          compiler must not LOAD into that EXEC's operands or result (ping-pong buffers).
EXEC      the NI is idle (every earlier LOAD has landed) and the unit is idle.
STORE     the unit is idle (every earlier EXEC's results are written) and the NI
SIGNAL    accepts it; the NI sends a SIGNAL only after its earlier writes are acked.
WAIT      the token counter holds ``count`` (then it is consumed).
END       the NI and the unit are idle.
========  ============================================================================

An unknown opcode, or running past the end of the command memory, stops the controller
with ``error`` set and ``error_pc`` naming the command.

Cycle counters (from ``start`` to ``done``): ``cycles`` in all, ``unit_busy_cycles``
(unit running), ``ni_busy_cycles`` (NI moving data), ``wait_cycles`` (a WAIT blocked on
its token) and ``stall_cycles`` (a command blocked on the NI or the unit).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.isa import COMMAND_BITS, CommandLayout, ExecBody, Opcode, WaitBody

from .params import check_positive

__all__ = ["TileController", "COUNTER_BITS"]

#: Width of the cycle counters.
COUNTER_BITS = 32


class TileController(wiring.Component):
    """In-order command fetch and dispatch for one tile.

    Parameters
    ----------
    depth : int
        Number of commands the command memory holds.

    Attributes
    ----------
    start : In(1)
        Pulse to run the stream from command 0.
    running, done, error : Out(1)
        ``done`` and ``error`` stay high until the next ``start``.
    pc, error_pc : Out(range(depth + 1))
        The command being issued; the command that caused ``error``.
    fetch : In(ReadPort.Signature(addr_width, 256))
        The command memory's read port.
    ni_cmd : Out(stream.Signature(CommandLayout))
        LOAD, STORE, SIGNAL and NOP for the network interface.
    ni_busy : In(1)
        The NI has a transfer in flight.
    unit_cmd : Out(stream.Signature(ExecBody))
        EXEC's function and raw argument bits for the unit.
    unit_busy : In(1)
        The unit is running.
    tok_wait : Out(stream.Signature(WaitBody))
        WAIT for the token counters.
    cycles, unit_busy_cycles, ni_busy_cycles, wait_cycles, stall_cycles : Out(32)
        Cycle counters of the last run.
    issued : Out(1)
        High in the cycle the command at ``pc`` leaves ISSUE (accepted by the NI, the unit
        or the token counters; END: the tile is done). With ``cycles`` it timestamps every
        command: the tile's trace (:class:`accelpool.hw.tile.ComputeTile`) records it.
    """

    def __init__(self, *, depth: int):
        self._depth = check_positive(depth, "Command memory depth")
        self._addr_width = max(1, (depth - 1).bit_length())
        super().__init__({
            "start": In(1),
            "running": Out(1),
            "done": Out(1),
            "error": Out(1),
            "pc": Out(range(depth + 1)),
            "error_pc": Out(range(depth + 1)),
            "fetch": In(memory.ReadPort.Signature(addr_width=self._addr_width,
                                                  shape=COMMAND_BITS)),
            "ni_cmd": Out(stream.Signature(CommandLayout)),
            "ni_busy": In(1),
            "unit_cmd": Out(stream.Signature(ExecBody)),
            "unit_busy": In(1),
            "tok_wait": Out(stream.Signature(WaitBody)),
            "cycles": Out(COUNTER_BITS),
            "unit_busy_cycles": Out(COUNTER_BITS),
            "ni_busy_cycles": Out(COUNTER_BITS),
            "wait_cycles": Out(COUNTER_BITS),
            "stall_cycles": Out(COUNTER_BITS),
            "issued": Out(1),
        })

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def addr_width(self) -> int:
        return self._addr_width

    def elaborate(self, platform):
        m = Module()
        cmd = data.View(CommandLayout, Signal(COMMAND_BITS))
        pc = Signal(range(self._depth + 1))
        m.d.comb += [
            self.pc.eq(pc),
            self.fetch.addr.eq(pc),
            self.fetch.en.eq(1),
            self.ni_cmd.payload.eq(cmd),
            self.unit_cmd.payload.eq(cmd.body.exec),
            self.tok_wait.payload.eq(cmd.body.wait),
        ]

        blocked_on_token = Signal()
        blocked = Signal()
        with m.If(self.running):
            m.d.sync += [
                self.cycles.eq(self.cycles + 1),
                self.unit_busy_cycles.eq(self.unit_busy_cycles + self.unit_busy),
                self.ni_busy_cycles.eq(self.ni_busy_cycles + self.ni_busy),
                self.wait_cycles.eq(self.wait_cycles + blocked_on_token),
                self.stall_cycles.eq(self.stall_cycles + blocked),
            ]

        def next_command():
            m.d.comb += self.issued.eq(1)
            with m.If(pc + 1 >= self._depth):
                m.d.sync += [self.error.eq(1), self.error_pc.eq(pc), self.running.eq(0)]
                m.next = "IDLE"
            with m.Else():
                m.d.sync += pc.eq(pc + 1)
                m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        pc.eq(0), self.running.eq(1), self.done.eq(0), self.error.eq(0),
                        self.error_pc.eq(0), self.cycles.eq(0), self.unit_busy_cycles.eq(0),
                        self.ni_busy_cycles.eq(0), self.wait_cycles.eq(0),
                        self.stall_cycles.eq(0),
                    ]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # The read port has one cycle of latency: the word arrives in DECODE.
                m.next = "DECODE"
            with m.State("DECODE"):
                m.d.sync += cmd.as_value().eq(self.fetch.data)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                with m.Switch(cmd.opcode):
                    with m.Case(Opcode.LOAD, Opcode.NOP):
                        m.d.comb += [self.ni_cmd.valid.eq(1), blocked.eq(~self.ni_cmd.ready)]
                        with m.If(self.ni_cmd.ready):
                            next_command()
                    with m.Case(Opcode.STORE, Opcode.SIGNAL):
                        m.d.comb += [self.ni_cmd.valid.eq(~self.unit_busy),
                                     blocked.eq(self.unit_busy | ~self.ni_cmd.ready)]
                        with m.If(~self.unit_busy & self.ni_cmd.ready):
                            next_command()
                    with m.Case(Opcode.EXEC):
                        ok = ~self.ni_busy & ~self.unit_busy
                        m.d.comb += [self.unit_cmd.valid.eq(ok),
                                     blocked.eq(~ok | ~self.unit_cmd.ready)]
                        with m.If(ok & self.unit_cmd.ready):
                            next_command()
                    with m.Case(Opcode.WAIT):
                        m.d.comb += [self.tok_wait.valid.eq(1),
                                     blocked_on_token.eq(~self.tok_wait.ready)]
                        with m.If(self.tok_wait.ready):
                            next_command()
                    with m.Case(Opcode.END):
                        m.d.comb += blocked.eq(self.ni_busy | self.unit_busy)
                        with m.If(~self.ni_busy & ~self.unit_busy):
                            m.d.comb += self.issued.eq(1)
                            m.d.sync += [self.done.eq(1), self.running.eq(0)]
                            m.next = "IDLE"
                    with m.Default():
                        m.d.sync += [self.error.eq(1), self.error_pc.eq(pc),
                                     self.running.eq(0)]
                        m.next = "IDLE"
        return m
