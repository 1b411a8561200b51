"""What every programmable tile builds around its :class:`~accelpool.hw.controller.TileController`.

Written once, used by the compute tiles (:class:`accelpool.hw.tile.ComputeTile`) and the memory tile
(:class:`accelpool.hw.noc.memory_tile.MemoryTile`), so both offer the host the same interface:

- :func:`command_memory`: the 256-bit command memory, written by the host
  (``cmd_addr``/``cmd_data``/``cmd_en``), fetched by the controller;
- :func:`trace_memory`: the cycle each command issued, written by the controller, read
  by the host (``trace_addr`` -> ``trace_data``, one cycle of latency);
- :func:`exec_to_unit`: EXEC's ``{func, args}`` handed to the unit, the 240-bit ``args``
  seen through the unit's registered argument layout;
- :func:`gate_commands`: the commands for the network side pass a check first; one that
  fails is not sent and halts the tile with a sticky ``fault`` at that command's ``pc``;
- :func:`register_file`: the 32-bit registers of :data:`REGISTERS`.
"""

from __future__ import annotations

from typing import Mapping

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import memory
from amaranth.lib.data import View
from amaranth.lib.wiring import In, Out

from accelpool.spec.isa import COMMAND_BITS, COORD_BITS

from .controller import COUNTER_BITS, TileController

__all__ = ["REGISTERS", "REG_BITS", "REG_ADDR_BITS", "NO_TILE", "STATUS_BITS",
           "command_memory", "trace_memory", "exec_to_unit", "gate_commands",
           "register_file", "is_tile", "host_members"]

#: Width of every register.
REG_BITS = 32
REG_ADDR_BITS = 4
#: What an empty router position (no tile) reads back in every register.
NO_TILE = (1 << REG_BITS) - 1

#: Register map: name -> index. Registers 0-4 are the capability registers whose map and
#: values :mod:`accelpool.sched.pool` defines (:class:`accelpool.sched.pool.CapReg`,
#: :func:`accelpool.sched.pool.capability_registers`), so the hardware and the discovery check
#: share one definition.
REGISTERS: Mapping[str, int] = {
    "kind": 0,         # UnitKind.value
    "version": 1,      # major << 8 | minor
    "dtypes": 2,       # bit DType.value per input data type
    "geometry": 3,     # array size (see sched.pool)
    "spad_bytes": 4,   # scratchpad bytes (memory tile: global memory bytes)
    "coord": 5,        # y << 8 | x
    "mesh": 6,         # flit_bits << 16 | rows << 8 | cols
    "cmd_depth": 7,    # commands the command memory holds
    "status": 8,       # see STATUS_BITS
    "pc": 9,           # the command being issued (or the one a fault halted at)
    "error_pc": 10,
    "cycles": 11,      # the controller's cycle counters of the last run
    "unit_busy_cycles": 12,
    "ni_busy_cycles": 13,
    "wait_cycles": 14,
    "stall_cycles": 15,
}

#: Bits of the ``status`` register (the memory tile: ``unit_busy`` is its layout engine,
#: ``ni_busy``/``ni_error`` its SIGNAL sender).
STATUS_BITS: Mapping[str, int] = {
    "running": 0, "done": 1, "error": 2, "fault": 3, "ni_error": 4, "token_error": 5,
    "unit_busy": 6, "ni_busy": 7, "range_fault": 8,
}
# range_fault (compute tiles): the unit addressed its scratchpad beyond the scratchpad's
# size; the access did nothing, the tile halted at its next command, and ``error_pc``
# names the EXEC the unit was running.


def host_members(ctl: TileController) -> dict:
    """The host port every programmable tile exposes (``wiring`` members): command memory
    writes, ``start``, ``finished``/``fault``/``error``, registers and the trace."""
    return {"cmd_addr": In(ctl.addr_width), "cmd_data": In(COMMAND_BITS), "cmd_en": In(1),
            "start": In(1), "finished": Out(1), "fault": Out(1), "error": Out(1),
            "reg_addr": In(REG_ADDR_BITS), "reg_data": Out(REG_BITS),
            "trace_addr": In(ctl.addr_width), "trace_data": Out(COUNTER_BITS)}


def command_memory(m: Module, ctl: TileController, depth: int, *, addr, data, en) -> None:
    """The command memory: the host writes it (``addr``/``data``/``en``), ``ctl`` fetches."""
    m.submodules.cmd_mem = cmd_mem = memory.Memory(shape=COMMAND_BITS, depth=depth, init=[])
    fetch = cmd_mem.read_port()
    host_wr = cmd_mem.write_port()
    m.d.comb += [
        fetch.addr.eq(ctl.fetch.addr), fetch.en.eq(ctl.fetch.en),
        ctl.fetch.data.eq(fetch.data),
        host_wr.addr.eq(addr), host_wr.data.eq(data), host_wr.en.eq(en),
    ]


def trace_memory(m: Module, ctl: TileController, depth: int, *, addr, data) -> None:
    """The trace: ``ctl.cycles`` when each command left ISSUE; the host reads ``addr`` -> ``data``."""
    m.submodules.trace_mem = trace_mem = memory.Memory(shape=COUNTER_BITS, depth=depth, init=[])
    trace_wr = trace_mem.write_port()
    trace_rd = trace_mem.read_port()
    m.d.comb += [
        trace_wr.addr.eq(ctl.pc), trace_wr.data.eq(ctl.cycles), trace_wr.en.eq(ctl.issued),
        trace_rd.addr.eq(addr), data.eq(trace_rd.data),
    ]


def exec_to_unit(m: Module, ctl: TileController, unit, spec, halt=None) -> Signal:
    """Hand EXEC to ``unit.cmd`` (``{func, args}``, ``args`` seen through ``spec.args``) and
    report ``unit.busy`` to the controller.

    An EXEC whose arguments ``spec`` finds invalid (:meth:`accelpool.spec.isa.ExecSpec.invalid`)
    never reaches the unit: the returned ``fault`` rises and stays until the next ``start``,
    and the controller stays at that command (``pc``), as for a refused LOAD or STORE.
    While ``halt`` is high no EXEC is handed over (the controller waits at it).
    """
    halt = Const(0, 1) if halt is None else halt
    payload = unit.cmd.payload
    args_bits = spec.args.size
    func_bits = len(payload.as_value()) - args_bits
    args = View(spec.args, ctl.unit_cmd.payload.args[:args_bits])
    bad = Signal()
    fault = Signal()
    m.d.comb += bad.eq(spec.invalid(ctl.unit_cmd.payload.func[:func_bits], args))
    with m.If(ctl.start):
        m.d.sync += fault.eq(0)
    with m.Elif(ctl.unit_cmd.valid & bad):
        m.d.sync += fault.eq(1)
    m.d.comb += [
        unit.cmd.valid.eq(ctl.unit_cmd.valid & ~bad & ~fault & ~halt),
        ctl.unit_cmd.ready.eq(unit.cmd.ready & ~bad & ~fault & ~halt),
        payload.as_value().eq(Cat(ctl.unit_cmd.payload.func[:func_bits],
                                  ctl.unit_cmd.payload.args[:args_bits])),
        ctl.unit_busy.eq(unit.busy),
    ]
    return fault


def gate_commands(m: Module, ctl: TileController, bad, *, valid, ready, halt=None) -> Signal:
    """Pass ``ctl.ni_cmd`` on (``valid`` out, ``ready`` back) unless ``bad``.

    A bad command is not passed on: the returned ``fault`` rises and stays until the
    next ``start``, and the controller stays at that command (``pc``). While ``halt`` is
    high nothing is passed on (the controller waits at the command).
    """
    halt = Const(0, 1) if halt is None else halt
    fault = Signal()
    with m.If(ctl.start):
        m.d.sync += fault.eq(0)
    with m.Elif(ctl.ni_cmd.valid & bad):
        m.d.sync += fault.eq(1)
    m.d.comb += [valid.eq(ctl.ni_cmd.valid & ~bad & ~fault & ~halt),
                 ctl.ni_cmd.ready.eq(ready & ~bad & ~fault & ~halt)]
    return fault


def register_file(m: Module, ctl: TileController, constants: Mapping[str, int], status, *,
                  addr, data, error_pc=None) -> None:
    """``addr`` -> ``data`` (combinational): the ``constants`` (capabilities, coordinate,
    mesh, command depth), ``status`` (:data:`STATUS_BITS`), pc and ``ctl``'s counters;
    ``error_pc`` is ``ctl.error_pc`` unless given."""
    values = {REGISTERS[k]: Const(v, REG_BITS) for k, v in constants.items()}
    values.update({
        REGISTERS["status"]: status, REGISTERS["pc"]: ctl.pc,
        REGISTERS["error_pc"]: ctl.error_pc if error_pc is None else error_pc,
        REGISTERS["cycles"]: ctl.cycles,
        REGISTERS["unit_busy_cycles"]: ctl.unit_busy_cycles,
        REGISTERS["ni_busy_cycles"]: ctl.ni_busy_cycles,
        REGISTERS["wait_cycles"]: ctl.wait_cycles,
        REGISTERS["stall_cycles"]: ctl.stall_cycles,
    })
    with m.Switch(addr):
        for index, value in values.items():
            with m.Case(index):
                m.d.comb += data.eq(value)


def is_tile(m: Module, tiles, x, y) -> Signal:
    """1 when (``x``, ``y``) is the coordinate of one of ``tiles`` (a SIGNAL's destination)."""
    hit = Signal()
    with m.Switch(Cat(x, y)):
        for t in tiles:
            with m.Case(t.x | (t.y << COORD_BITS)):
                m.d.comb += hit.eq(1)
    return hit
