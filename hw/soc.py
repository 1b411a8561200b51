"""The SoC generator: any pool config -> one Verilog top with a host interface.

:class:`Soc` holds the request and response meshes (:class:`accelpool.hw.noc.fabric.Fabric`), the
memory tile, a :class:`accelpool.hw.tile.ComputeTile` per unit of the config, and leaves the
routers of empty positions with nothing attached (their ejection ports always ready, so
a stray packet cannot block the network). :func:`accelpool.tb.soc.write_soc` writes ``soc.v`` into the
pool's build folder (:func:`accelpool.tb.soc.soc_build_dir`) and a small Verilog wrapper
``soc_top.v`` (:func:`clock_wrapper`) that generates the clock at the pool's ``clock_mhz`` (``always #1.000 clk = ~clk``
at 500 MHz, :func:`clock_half_period_ps`; Verilator ``--timing``), so that a testbench only
wakes up at transaction boundaries and a waveform of the SoC has the time base of the
reports' traces (:mod:`accelpool.flow.report`).

Host interface (plain ports, all synchronous to the SoC clock)
--------------------------------------------------------------
``start``                    pulse: every tile (the memory tile too) runs its command
                             stream from 0
``all_done``                 every tile has stopped (done, error or fault)
``any_fault``                some tile has stopped on a fault or an error
``cycles``                   cycles from ``start`` to ``all_done``
``mem_addr/mem_wdata/mem_we``  write the global memory (flit words, byte enables)
``mem_re/mem_rdata``         read the global memory (one cycle latency)
``token_sel/token_value``    the memory tile's token counters (SIGNALs addressed to it)
``cmd_tile/cmd_addr/cmd_data/cmd_en``  write command ``cmd_addr`` of compute tile
                             ``cmd_tile`` (index into :attr:`Soc.compute_tiles`; the
                             memory tile is index ``len(compute_tiles)``,
                             :attr:`Soc.memory_cmd_index`)
``reg_pos/reg_addr/reg_data``  read register ``reg_addr`` (:data:`accelpool.hw.tile.REGISTERS`) of
                             the tile at position ``reg_pos = y * cols + x``
                             (combinational); an empty position reads all ones
``trace_addr/trace_data``    the trace of the tile at ``reg_pos``: the cycle command
                             ``trace_addr`` issued in the last run (one cycle latency;
                             :class:`accelpool.hw.tile.ComputeTile`)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from amaranth.back import rtlil, verilog
from amaranth.hdl import Const, Module, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.config import PoolConfig
from accelpool.spec.isa import COMMAND_BITS, COUNT_BITS, TOKEN_BITS

from .controller import COUNTER_BITS
from .noc.fabric import Fabric, attach_memory
from .noc.memory_tile import MemoryTile
from .tile import NO_TILE, REG_ADDR_BITS, REG_BITS, ComputeTile, identity_registers

__all__ = ["Soc", "soc_verilog", "clock_wrapper", "clock_half_period_ps", "clock_period_ps",
           "zero_init_skipped", "SOC_TOP", "SOC_WRAPPER"]

#: Verilog module names of the SoC and of its clock wrapper.
SOC_TOP = "soc"
SOC_WRAPPER = "soc_top"


def clock_half_period_ps(pool: PoolConfig) -> int:
    """Half period, in ps, of the clock the SoC wrapper generates for ``pool``.

    The clock runs at the pool's ``clock_mhz``: a period of ``1000 / clock_mhz`` ns. The
    wrapper's ``timescale 1ns/1ps`` resolves delays to whole picoseconds, so the half period
    is ``500_000 / clock_mhz`` ps rounded to the nearest picosecond (a tie rounds up) and
    the period is twice that. A period that is a whole, even number of ps is exact (500 MHz:
    1000 ps half, 2 ns period); any other is off by at most 1 ps (333.3 MHz: 1500.15 ps ->
    1500 ps half, 3 ns period, 333.33 MHz).
    """
    return max(1, int(500_000 / pool.clock_mhz + 0.5))


def clock_period_ps(pool: PoolConfig) -> int:
    """Period, in ps, of the SoC's generated clock: twice :func:`clock_half_period_ps`."""
    return 2 * clock_half_period_ps(pool)


class Soc(wiring.Component):
    """The whole pool: mesh, memory tile and compute tiles, with the host interface.

    Parameters
    ----------
    pool : PoolConfig
        The pool to build.
    cmd_depth : int
        Commands each tile's command memory holds.
    tokens : int
        Token counters per tile.

    Raises
    ------
    hw.tile.TileError
        If a tile's unit kind has no RTL yet (naming the tile and the kind).
    """

    def __init__(self, pool: PoolConfig, *, cmd_depth: int = 1024, tokens: int = 16):
        if not isinstance(pool, PoolConfig):
            raise TypeError(f"Pool must be a PoolConfig, not {pool!r}")
        self._pool = pool
        mesh = pool.mesh
        self._tiles = [ComputeTile(t, pool, cmd_depth=cmd_depth, tokens=tokens)
                       for t in pool.units]
        mem = pool.memory
        self._memory = MemoryTile(mesh=mesh, x=mem.x, y=mem.y, bytes=mem["bytes"],
                                  tokens=tokens, cmd_depth=cmd_depth, tiles=pool.tiles,
                                  identity=identity_registers(mem, mesh, cmd_depth))
        self._cmd_depth = cmd_depth
        positions = mesh.cols * mesh.rows
        super().__init__({
            "start": In(1),
            "all_done": Out(1),
            "any_fault": Out(1),
            "cycles": Out(32),
            "mem_addr": In(self._memory.addr_width),
            "mem_wdata": In(mesh.flit_bits),
            "mem_we": In(mesh.flit_bits // 8),
            "mem_re": In(1),
            "mem_rdata": Out(mesh.flit_bits),
            "token_sel": In(TOKEN_BITS),
            "token_value": Out(COUNT_BITS),
            "cmd_tile": In(range(max(2, len(self._tiles) + 1))),
            "cmd_addr": In(max(1, (cmd_depth - 1).bit_length())),
            "cmd_data": In(COMMAND_BITS),
            "cmd_en": In(1),
            "reg_pos": In(range(max(2, positions))),
            "reg_addr": In(REG_ADDR_BITS),
            "reg_data": Out(REG_BITS),
            "trace_addr": In(max(1, (cmd_depth - 1).bit_length())),
            "trace_data": Out(COUNTER_BITS),
        })

    @property
    def pool(self) -> PoolConfig:
        return self._pool

    @property
    def compute_tiles(self) -> list[ComputeTile]:
        """The compute tiles, in config order (the ``cmd_tile`` index)."""
        return list(self._tiles)

    @property
    def cmd_depth(self) -> int:
        return self._cmd_depth

    @property
    def memory_tile(self) -> MemoryTile:
        return self._memory

    @property
    def memory_cmd_index(self) -> int:
        """The ``cmd_tile`` index of the memory tile's command memory."""
        return len(self._tiles)

    def elaborate(self, platform):
        m = Module()
        pool, mesh = self._pool, self._pool.mesh
        m.submodules.fabric = fabric = Fabric(mesh)
        m.submodules.memory = mem = self._memory
        attach_memory(m, fabric, mem)
        m.d.comb += [
            mem.host_write.addr.eq(self.mem_addr), mem.host_write.data.eq(self.mem_wdata),
            mem.host_write.en.eq(self.mem_we),
            mem.host_read.addr.eq(self.mem_addr), mem.host_read.en.eq(self.mem_re),
            self.mem_rdata.eq(mem.host_read.data),
            mem.host_token.eq(self.token_sel), self.token_value.eq(mem.host_token_value),
        ]
        mem_pos = mem.y * mesh.cols + mem.x
        m.d.comb += [
            mem.cmd_addr.eq(self.cmd_addr), mem.cmd_data.eq(self.cmd_data),
            mem.cmd_en.eq(self.cmd_en & (self.cmd_tile == len(self._tiles))),
            mem.start.eq(self.start),
            mem.reg_addr.eq(self.reg_addr),
            mem.trace_addr.eq(self.trace_addr),
        ]
        finished, faults = [mem.finished], [mem.fault | mem.error]
        reg_by_pos, trace_by_pos = {mem_pos: mem.reg_data}, {mem_pos: mem.trace_data}
        for i, tile in enumerate(self._tiles):
            m.submodules[tile.tile.name] = tile
            wiring.connect(m, tile.req_out, fabric.req_inject[tile.y][tile.x])
            wiring.connect(m, fabric.req_eject[tile.y][tile.x], tile.req_in)
            wiring.connect(m, tile.resp_out, fabric.resp_inject[tile.y][tile.x])
            wiring.connect(m, fabric.resp_eject[tile.y][tile.x], tile.resp_in)
            m.d.comb += [
                tile.cmd_addr.eq(self.cmd_addr), tile.cmd_data.eq(self.cmd_data),
                tile.cmd_en.eq(self.cmd_en & (self.cmd_tile == i)),
                tile.start.eq(self.start),
                tile.reg_addr.eq(self.reg_addr),
                tile.trace_addr.eq(self.trace_addr),
            ]
            trace_by_pos[tile.y * mesh.cols + tile.x] = tile.trace_data
            finished.append(tile.finished)
            faults.append(tile.fault | tile.error)
            reg_by_pos[tile.y * mesh.cols + tile.x] = tile.reg_data

        # Empty positions: their routers eject nothing anyone waits for; drain them.
        for y in range(mesh.rows):
            for x in range(mesh.cols):
                if pool.at(x, y) is None:
                    m.d.comb += [fabric.req_eject[y][x].ready.eq(1),
                                 fabric.resp_eject[y][x].ready.eq(1)]

        with m.Switch(self.reg_pos):
            for pos in range(mesh.cols * mesh.rows):
                with m.Case(pos):
                    m.d.comb += self.reg_data.eq(reg_by_pos.get(pos, Const(NO_TILE, REG_BITS)))
            with m.Default():
                m.d.comb += self.reg_data.eq(NO_TILE)
        # The trace read has a cycle of latency: select with the position of that cycle.
        trace_pos = Signal.like(self.reg_pos)
        m.d.sync += trace_pos.eq(self.reg_pos)
        with m.Switch(trace_pos):
            for pos, data in trace_by_pos.items():
                with m.Case(pos):
                    m.d.comb += self.trace_data.eq(data)

        all_done = Signal()
        m.d.comb += [all_done.eq(_all(finished)), self.any_fault.eq(_any(faults))]
        # all_done is registered so that it rises one cycle after the last tile stops and
        # a start pulse clears it at once.
        running = Signal()
        with m.If(self.start):
            m.d.sync += [running.eq(1), self.cycles.eq(0), self.all_done.eq(0)]
        with m.Elif(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(all_done):
                m.d.sync += [running.eq(0), self.all_done.eq(1)]
        return m


def _all(signals):
    out = Const(1, 1)
    for s in signals:
        out = out & s
    return out


def _any(signals):
    out = Const(0, 1)
    for s in signals:
        out = out | s
    return out


def soc_verilog(pool: PoolConfig, **kw) -> str:
    """Verilog of the SoC (top module :data:`SOC_TOP`)."""
    return verilog.convert(Soc(pool, **kw), name=SOC_TOP, emit_src=False)


def clock_wrapper(soc: Soc) -> str:
    """Verilog of :data:`SOC_WRAPPER`: the SoC with its clock generated in HDL.

    The wrapper's ports are the SoC's host ports (``rst`` included); ``clk`` is internal
    and visible to the testbench as ``soc_top.clk``. It toggles every
    :func:`clock_half_period_ps` (written in ns with three decimals, whole ps under the
    ``timescale 1ns/1ps``), so cycle ``n`` of a waveform lasts as long as cycle ``n`` of the
    reports' traces, which time cycles at the pool's ``clock_mhz``.
    """
    half = clock_half_period_ps(soc.pool)
    ports, conns = ["input wire rst"], [".clk(clk)", ".rst(rst)"]
    for name, member in soc.signature.members.items():
        width = Shape.cast(member.shape).width
        direction = "input" if member.flow is In else "output"
        rng = f"[{width - 1}:0] " if width > 1 else ""
        ports.append(f"{direction} wire {rng}{name}")
        conns.append(f".{name}({name})")
    return (
        "`timescale 1ns/1ps\n"
        f"// Generated by accelpool.hw.soc for pool {soc.pool.name!r}: the SoC with an HDL clock.\n"
        f"module {SOC_WRAPPER} (\n    " + ",\n    ".join(ports) + "\n);\n"
        "    reg clk = 1'b0;\n"
        f"    // {soc.pool.clock_mhz:g} MHz: a period of {2 * half} ps\n"
        f"    always #{half // 1000}.{half % 1000:03d} clk = ~clk;\n"
        f"    {SOC_TOP} dut (\n        " + ",\n        ".join(conns) + "\n    );\n"
        "endmodule\n")


@contextmanager
def zero_init_skipped() -> Iterator[None]:
    """Within: Amaranth's RTLIL back end leaves out the initialiser of all-zero memories.

    Amaranth writes every memory's initial contents as one ``$meminit_v2`` constant, which
    Yosys turns into one Verilog line per word: for the default SoC's 1 MiB global memory
    8 Mbit of RTLIL and 131k lines, some 25 s of its generation. Without the cell a memory
    has no ``initial`` block, and :func:`accelpool.tb.soc.zero_memories` gives each such memory a
    zero loop again, so the Verilog keeps Amaranth's semantics (every memory starts at
    zero) in a fraction of the text. Memories with non-zero contents (a ROM) keep theirs.
    This wraps a private method of Amaranth 0.5 (``ModuleEmitter.emit_memory``); should it
    change, the initialisers are simply written out as before.
    """

    emitter = getattr(rtlil, "ModuleEmitter", None)
    original = getattr(emitter, "emit_memory", None)
    if original is None:
        yield
        return

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            original(self, cell_idx, cell)

    emitter.emit_memory = emit_memory
    try:
        yield
    finally:
        emitter.emit_memory = original
