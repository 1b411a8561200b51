"""The command-stream compiler: a schedule becomes per-tile binary command streams and a memory image.

A pass driver over the per-unit lowerings of :mod:`accelpool.sched.lower` (what one
micro-op's LOADs, EXEC and STOREs are on a unit kind; the cost model prices the same
plans): it lays the buffers out in memory, allocates scratchpads, orders each tile's
commands by the schedule and adds the tokens between tiles.

Data flow (every result goes through the memory tile)
-----------------------------------------------------
For each micro-op, in its unit's schedule order, the unit's tile stream holds::

    WAIT   token=<producer tile> count=k      for every producer on another tile (below)
    LOAD   operands memory -> scratchpad, in the unit's own layout (row by row, merged
           where memory and scratchpad are both contiguous; unit-format constants whole)
    EXEC   the unit's binary command (``spec/units/<kind>.py`` functions and arguments)
    STORE  the result rows scratchpad -> memory
    LOAD   (fence) the last 32 bytes it stored, back       only if a compute tile reads it
    SIGNAL (x, y) token=<this tile> count=1    once per consuming tile

and the stream ends with END. Every command is binary (:attr:`TileStream.binary`).

LAYOUT micro-ops (im2col, transpose, copy) run on the memory tile's layout engine
(``hw/layout_engine.py``), which reads and writes the global memory in place: the memory
tile has a stream of its own (in :attr:`Program.streams` like every tile's), per micro-op::

    WAIT   token=<producer tile> count=k      for every producer on another tile
    EXEC   memory.im2col / memory.transpose  (MemArgs: byte addresses and row pitches of
           the operand boxes in their buffers' layouts, element size, shapes)
    SIGNAL (x, y) token=<memory tile> count=1  once per consuming tile

and END; no LOAD or STORE (they fault there). The boxes' rows must be evenly spaced in
their buffers (one pitch per operand), row-major. A copy out of a channels-last image
(:class:`accelpool.sched.decompose.ReorderChannelsLast`) is one TRANSPOSE of its ``H*W`` pixel rows of
``C`` channels when the image is one channel block and the result row-major (a row per
channel, or unpadded rows); other copies are :class:`NotLowered`. Dilations other than 1
are :class:`NotLowered`,
a shape, kernel, stride, pad or pitch too large for its MemArgs field a
:class:`CodegenError` naming the field.

Memory layout (:class:`BufferLayout`)
-------------------------------------
- Every base buffer is row-major with its last dimension padded so that the row pitch in
  bytes is a multiple of the flit size (``pool.mesh.flit_bits // 8``, 8 bytes by default);
  bases are 32-byte aligned. A 1-D buffer is one row. The padding holds nothing: memory
  starts zeroed and the units may write anything there.
- An alias (reshape) shares its base's storage. When one keeps the base's last dimension
  it shares the padded layout; when one changes it (a convolution's ``[C, H*W]`` result
  of an image ``[C, H, W]``), the base and all its views are stored without row padding
  (:func:`dense_bases`), so each view is row-major over the same bytes, and only a view
  whose rows are flit multiples can be moved row by row (a LOAD/STORE of several
  unaligned rows is a :class:`CodegenError`).
- A LOAD or STORE moves contiguous runs whose address and length are flit multiples (the
  NI moves whole flits). A run is one row of an operand box, rounded out to flit
  boundaries only into that row's own padding: a box row must start on a flit boundary
  and end on one or at the row's last element, otherwise the run would cover another
  micro-op's elements and compiling fails naming the box.
- Images a CONV reads or writes (and images element-wise micro-ops share with them) are
  stored channels-last (:func:`channels_last_buffers`), the convolution engine's layout:
  rows of one flit of channels per pixel (``[C / block][H * W][block]``), or pixel-major
  ``[H * W][C]`` when a CONV reads more channels than one block. A reshape of such an
  image into something else (a flatten) is not a row-major view of it: an INT8 GEMM chain
  reads the flatten in stored order with its weight rows permuted to match (integer sums
  are order-free), anything else is :class:`NotLowered`.
- Unit-format constants follow the buffers, one blob per micro-op operand, each loaded
  with one LOAD: GEMM weights ``B`` packed K x Np, a bias or other constant accumulator
  expanded to Mp x Np, GNN adjacencies as CSR ``ptr`` and ``idx`` of the micro-op's rows,
  the SMU's sparse A as CSR ``ptr`` and ``nz``,
  AFU broadcast constants expanded to the micro-op's element layout (any constant operand
  of those units is packed the same way).

Unit layouts (the units' documented contracts)
----------------------------------------------
DMU/LPU GEMM (:mod:`accelpool.hw.systolic`): A row-major Mp x ``a_pitch`` (``a_pitch`` = K elements
rounded up to whole words), B K x Np, C (accumulate) Mp x Np of 32-bit, D Mp x Np of the
output element (DMU FP32 or BF16 with ``out_bf16``, LPU INT32 or INT8 with ``requant``);
SPMM placed on a DMU runs as a dense GEMM. AFU (:mod:`accelpool.hw.afu`): dense vectors of ``count``
elements; when the micro-op covers whole rows of buffers with one pitch, the padded rows
are one vector (the AFU also computes the padding, which nobody reads), otherwise the rows
are packed densely (each a flit multiple, or a single row). CE (:mod:`accelpool.hw.ce`): the
micro-op's input rows (its pixels, ``ceil(C / ic_lanes) * ic_lanes`` bytes each), weights
and bias as :mod:`accelpool.spec.ce_layout` packs them (the bias uncorrected for the input zero point,
which the CE takes as ``x_zero_point``: :func:`lower_ce`), output rows of
``ceil(M / oc_lanes) * oc_lanes`` channels. GNN (:mod:`accelpool.hw.gnn`): CSR
``ptr``/``idx``, features rows padded to ``ceil(F/L)*L`` BF16, output rows the same
(BF16 with ``out_bf16``, else FP32). Scratchpad regions are aligned to the unit's word
(at least 32 bytes).

INT8 activations use ``max(x, zero_point)`` (RELU with equal input and output quantisation)
or a 256-byte table blob (:func:`accelpool.spec.golden.activations.int8_table`).

DEQUANTIZE (INT8 -> BF16) and QUANTIZE (BF16 -> INT8) run on the AFU's conversion
functions, whose input and output element sizes differ: each box row takes
``S = ceil(w, flit)`` elements in the scratchpad (``w`` the row's elements), so the INT8
side has an ``S``-byte row pitch and the BF16 side ``2 S`` bytes, both whole flits, and
the unit converts ``rows * S`` elements (the padding too, which nobody reads). The EXEC
carries the scale as the unit takes it: DEQUANTIZE ``alpha`` = the scale rounded to BF16
and ``a_zero_point``; QUANTIZE ``multiplier``/``shift`` = the 31-bit fixed point of
``1 / scale`` and ``y_zero_point`` (:mod:`accelpool.spec.golden.activations`).

SMU SPMM (:mod:`accelpool.hw.smu`, :mod:`accelpool.spec.formats`): the sparse A must be a constant (the
decomposition makes a sparse weight B the left operand of a transposed product,
``sparse_operand`` 0); it is encoded at compile time as CSR blobs, ``ptr`` (``M + 1``
``uint32``) and ``nz`` (``column | bf16 << 16`` per non-zero, ascending columns), each
padded to whole words of ``2 L`` bytes (``L`` = lanes). B is loaded row by row with rows
padded to ``ceil(N/L) * L`` BF16 elements; C comes back from rows padded the same way,
FP32 or BF16 (``out_bf16``) as the result buffer's type. The SMU has no accumulator input:
an SPMM with ``c`` is not lowered there (it runs on a DMU).

Not lowered (:class:`NotLowered`): SPMM on the SMU with a sparse B, a non-constant A or an
accumulator, DEQUANTIZE of INT32, INT8 element-wise operations, GELU with
``approximate="tanh"``, a CONV split along its input channels (the CE has no partial-sum
input), a reshape of a channels-last image read other than by an INT8 GEMM along K, im2col
with dilations; the message names the micro-op and why.

Ordering: commands of a tile run in order and a LOAD completes before the next command. A
STORE is posted; the ISA orders a SIGNAL only after earlier STOREs *to the same
destination*. A consumer on a compute tile is not that destination, so the producer first
reads back (LOAD) from the memory tile, which returns only after its earlier STOREs there
have landed (in-order delivery between one pair of tiles), and then signals. A SIGNAL to
the memory tile needs no fence (it is the STOREs' destination); when the memory tile is
the only consumer there is none. The memory tile's own writes are complete when its EXEC
ends, so it signals right after it.

Tokens: token ``t`` on a tile counts SIGNALs from the tile with index ``t`` (its position
in the config's tile list). A consumer's WAIT asks for as many more of that sender's
signals as it needs to cover the one sent after the result it reads, so each sender's
signals are consumed in the order sent and no WAIT can be satisfied by a signal meant for a
later micro-op. Every WAIT waits for an event earlier in the schedule, so the streams
cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from accelpool.sched.ir import BufferKind, Graph, TensorRef
from accelpool.sched.lower import plan_op
from accelpool.sched.lower.common import (ALIGN, BufferLayout, CodegenError, FENCE_BYTES,
                                          NP_DTYPE, LowerCtx, Plan, ceil_div, exec_command,
                                          buffer_layouts, transfer_moves, operand_runs, row_runs,
                                          op_label)
from accelpool.sched.lower.layout import lower_layout
from accelpool.sched.pool import AllocationError, Pool, ScratchpadAllocator
from accelpool.sched.reference import Executor
from accelpool.sched.schedule import Schedule
from accelpool.spec import isa
from accelpool.spec.config import UnitKind

__all__ = ["MemoryImage", "TileStream", "Program", "compile_schedule", "set_inputs",
           "host_input_arrays"]


@dataclass
class MemoryImage:
    """The memory tile's initial contents.

    Attributes
    ----------
    data : bytearray
        ``size`` bytes; inputs and constants in place, everything else zero.
    initialized : ndarray of bool
        Which bytes hold defined data before the run (inputs, constants, unit blobs).
    padding : ndarray of bool
        Row padding of the buffers: no element lives there, so it may be read before it is
        written and written more than once.
    buffers : dict
        Base buffer name -> address.
    blobs : dict
        ``(micro-op id, operand index or name)`` -> ``(address, bytes)`` of unit-format
        constants.
    """

    size: int
    data: bytearray
    initialized: np.ndarray
    padding: np.ndarray
    buffers: dict[str, int]
    blobs: dict[tuple[str, Any], tuple[int, int]] = field(default_factory=dict)

    def put(self, addr: int, payload: bytes) -> None:
        self.data[addr:addr + len(payload)] = payload
        self.initialized[addr:addr + len(payload)] = True


@dataclass
class TileStream:
    """The command stream of one tile."""

    tile: Any
    commands: list[isa.Command]
    #: Per micro-op, in stream order: ``(op id, first command, its EXEC, last command)``
    #: (indices into :attr:`commands`; :mod:`accelpool.flow.measured` maps the hardware trace to
    #: micro-ops with them).
    spans: list[tuple[str, int, int, int]] = field(default_factory=list)

    @property
    def binary(self) -> bytes:
        """The stream's 256-bit command words (32 bytes each, little-endian)."""
        return isa.assemble(self.commands)

    def listing(self) -> str:
        head = f"; tile {self.tile.name} ({self.tile.kind.key} at {self.tile.x},{self.tile.y})"
        return head + "\n" + isa.listing(self.commands)


@dataclass
class Program:
    """A compiled schedule: streams per tile, the memory image and its layout."""

    graph: Graph
    schedule: Schedule
    pool: Pool
    streams: dict[str, TileStream]
    image: MemoryImage
    layouts: dict[str, BufferLayout]              # every buffer (aliases included)
    placement: dict[str, str]                     # micro-op id -> tile name

    @property
    def flit_bytes(self) -> int:
        return self.pool.mesh.flit_bits // 8

    def row_runs(self, ref: TensorRef, who: str = "") -> list[tuple[int, int]]:
        """Memory ``(address, bytes)`` of each row of a box, rounded out to flits into the
        row's padding only (:class:`CodegenError` if a row would need more)."""
        return row_runs(self.layouts, ref, self.flit_bytes, who)

    def buffer_region(self, name: str) -> tuple[int, int]:
        """``(address, bytes)`` of a whole buffer, padding included."""
        lay = self.layouts[name]
        return lay.addr, lay.nbytes

    def read_buffer(self, memory: bytes, name: str) -> np.ndarray:
        """A buffer's values from a memory image laid out by this program."""
        lay = self.layouts[name]
        dt = NP_DTYPE[self.graph.base(name).dtype]
        return lay.unpack(bytes(memory[lay.addr:lay.addr + lay.nbytes]), dt)

    def listing(self) -> str:
        return "\n\n".join(s.listing() for s in self.streams.values())

    def misaligned(self, flit_bytes: int | None = None) -> list[tuple[str, int]]:
        """``(tile, command index)`` of LOADs/STOREs whose scratchpad or remote address or
        length is not a multiple of the flit size (the NI drops those)."""
        fb = flit_bytes or self.flit_bytes
        return [(t, i) for t, s in self.streams.items() for i, c in enumerate(s.commands)
                if c.opcode in (isa.Opcode.LOAD, isa.Opcode.STORE)
                and (c.fields["spad_addr"] % fb or c.fields["remote_addr"] % fb
                     or c.fields["length"] % fb)]

    def token_summary(self) -> dict[str, int]:
        """Counts of WAIT and SIGNAL commands and of cross-tile dependencies."""
        waits = sum(c.fields["count"] for s in self.streams.values() for c in s.commands
                    if c.opcode is isa.Opcode.WAIT)
        signals = sum(1 for s in self.streams.values() for c in s.commands
                      if c.opcode is isa.Opcode.SIGNAL)
        cross = sum(1 for u, v in self.graph.dag.edges if self.placement[u] != self.placement[v])
        return {"waits": waits, "signals": signals, "cross_tile_edges": cross}


# -- memory layout ---------------------------------------------------------------------


def _layout_memory(g: Graph, pool: Pool, lays: Mapping[str, BufferLayout], top: int,
                   blobs: Mapping[tuple[str, Any], bytes],
                   inputs: Mapping[str, np.ndarray] | None) -> MemoryImage:
    size = pool.memory["bytes"]
    blob_at: dict[tuple[str, Any], tuple[int, int]] = {}
    for key, blob in blobs.items():
        blob_at[key] = (top, len(blob))
        top += ceil_div(len(blob), ALIGN)
    if top > size:
        raise CodegenError(f"The program needs {top} bytes of memory (buffers and unit-format "
                           f"constants) but the memory tile {pool.memory.name} has {size}")
    pad = np.zeros(size, bool)
    for b in g.buffers.values():
        if b.alias_of is None:
            lay = lays[b.name]
            if lay.pitch > lay.cols * lay.elem:
                rows = pad[lay.addr:lay.addr + lay.nbytes].reshape(lay.rows, lay.pitch)
                rows[:, lay.cols * lay.elem:] = True
    img = MemoryImage(size, bytearray(size), np.zeros(size, bool), pad,
                      {n: lays[n].addr for n, b in g.buffers.items() if b.alias_of is None},
                      blob_at)
    for b in g.buffers.values():
        if b.kind is BufferKind.CONST and b.alias_of is None:
            lay = lays[b.name]
            img.put(lay.addr, lay.pack(np.asarray(b.data).astype(NP_DTYPE[b.dtype])))
    for key, blob in blobs.items():
        img.put(blob_at[key][0], blob)
    if inputs is not None:
        set_inputs(img, g, inputs, lays)
    return img


def host_input_arrays(g: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Graph inputs converted as the host writes them (the golden executor's conversion)."""
    ex = Executor(g)
    missing = [n for n in g.inputs if n not in inputs]
    if missing:
        raise CodegenError(f"missing graph input(s) {', '.join(missing)}; the graph takes "
                           f"{', '.join(g.inputs)}")
    out = {}
    for n in g.inputs:
        ex.set_input(n, inputs[n])
        out[n] = ex.mem[n]
    return out


def set_inputs(img: MemoryImage, g: Graph, inputs: Mapping[str, np.ndarray],
               layouts: Mapping[str, BufferLayout]) -> None:
    """Write the graph inputs into the image, rows padded as their layout says."""
    for n, arr in host_input_arrays(g, inputs).items():
        b = g.buffers[n]
        lay = layouts[n]
        img.put(lay.addr, lay.pack(np.asarray(arr).astype(NP_DTYPE[b.dtype])))


# -- lowering plans ----------------------------------------------------------------------


# -- the memory tile: LAYOUT micro-ops on its layout engine --------------------------------
#
# The memory tile runs its own stream (WAIT / EXEC / SIGNAL / END) and its EXEC reads and
# writes the global memory in place (hw/layout_engine.py, MEMLAYOUT contract): no LOAD,
# STORE or scratchpad. Everything about it is in this section.


def _memory_stream(g: Graph, tile, seq: list, execs: Mapping[str, tuple[Any, dict]],
                   waits: Callable[[str, dict], list], signals: Callable[[str], list]
                   ) -> TileStream:
    """The memory tile's stream: per LAYOUT micro-op its WAITs, the EXEC, a SIGNAL to each
    consuming tile (its writes are complete when the EXEC ends), then END."""
    cmds: list[isa.Command] = []
    spans: list[tuple[str, int, int, int]] = []
    consumed: dict[str, int] = {}
    for n in seq:
        first = len(cmds)
        cmds += waits(n, consumed)
        func, args = execs[n]
        c = exec_command(UnitKind.MEMORY, func, args, op_label(g.op(n), tile))
        exec_at = len(cmds)
        cmds.append(c)
        cmds += signals(n)
        spans.append((n, first, exec_at, len(cmds) - 1))
    cmds.append(isa.end())
    return TileStream(tile, cmds, spans)


# -- streams -----------------------------------------------------------------------------


def compile_schedule(graph: Graph, schedule: Schedule, inputs: Mapping[str, np.ndarray] | None = None,
                     fence: bool = True) -> Program:
    """Compile ``schedule`` of ``graph`` into per-tile binary command streams and a memory image.

    Parameters
    ----------
    graph : Graph
        The decomposed micro-op graph the schedule was made for.
    schedule : Schedule
    inputs : mapping, optional
        Graph input values (float32/int arrays) to place in the memory image.
    fence : bool
        Read back from memory before signalling (needed under the ISA's guarantee, which
        orders a SIGNAL only after STOREs to the same destination). The network
        interface (``hw/noc/ni.py``) completes every command, STOREs acknowledged, before the next, so
        ``fence=False`` is enough for it (run the executor with ``stores_complete=True``).

    Raises
    ------
    NotLowered
        If a micro-op is placed where codegen emits no command (an SPMM the SMU cannot
        take, DEQUANTIZE of INT32, INT8 element-wise operations, a CONV the CE cannot take,
        im2col with dilations), naming it and why.
    CodegenError
        If the schedule misses a micro-op, a layout rule is broken (alias, flit rounding),
        the memory tile is too small, or a scratchpad cannot hold a micro-op's operands and
        result (naming it and the sizes).
    """
    pool = schedule.pool
    g = graph
    missing = [n for n in g.dag.nodes if n not in schedule.slots]
    if missing:
        raise CodegenError(f"The schedule does not place micro-op(s) {missing[:5]!r}")
    placement = {n: schedule.slots[n].unit for n in g.dag.nodes}
    order = schedule.unit_order()
    fb = pool.mesh.flit_bits // 8
    lays, top = buffer_layouts(g, fb)
    plans, layout_execs, blobs = _lower_ops(LowerCtx(g, lays, fb), pool, order)
    img = _layout_memory(g, pool, lays, top, blobs, inputs)
    prog = Program(g, schedule, pool, {}, img, lays, placement)
    tokens = _Tokens(pool, g.dag, order, placement)
    for unit_name, seq in order.items():
        tile = pool.unit(unit_name).tile
        if tile.kind is UnitKind.MEMORY:
            prog.streams[unit_name] = _memory_stream(g, tile, seq, layout_execs, tokens.waits,
                                                     tokens.signals)
        else:
            prog.streams[unit_name] = _unit_stream(prog, tile, seq, plans, tokens, fence)
    return prog


def _lower_ops(ctx: LowerCtx, pool: Pool, order: Mapping[str, list]
               ) -> tuple[dict[str, Plan], dict[str, tuple[Any, dict]], dict[tuple[str, Any], bytes]]:
    """Lower every micro-op on the unit the schedule puts it on.

    Returns
    -------
    plans : dict
        Micro-op -> :class:`Plan`, for the micro-ops of the compute tiles.
    layout_execs : dict
        Micro-op -> ``(func, args)`` of the memory tile's EXEC, for the LAYOUT micro-ops.
    blobs : dict
        ``(micro-op, operand key)`` -> the unit-format constant of that operand.
    """
    g = ctx.g
    plans: dict[str, Plan] = {}
    layout_execs: dict[str, tuple[Any, dict]] = {}
    blobs: dict[tuple[str, Any], bytes] = {}
    for unit_name, seq in order.items():
        tile = pool.unit(unit_name).tile
        if tile.kind is UnitKind.MEMORY:
            layout_execs.update((n, lower_layout(ctx, g.op(n), tile)) for n in seq)
            continue
        for n in seq:
            p = plans[n] = plan_op(ctx, g.op(n), tile)
            for o in p.operands:
                if o.blob is not None:
                    blobs[(n, o.key)] = o.blob
    return plans, layout_execs, blobs


class _Tokens:
    """The WAITs and SIGNALs between tiles of one schedule.

    Each tile's signals to another tile are numbered in its stream order: a consumer waits
    until its count from the producer's tile has reached the producer's number plus one.
    """

    def __init__(self, pool: Pool, dag, order: Mapping[str, list], placement: Mapping[str, str]):
        self.pool, self.dag, self.placement = pool, dag, placement
        self.tindex = {t.name: i for i, t in enumerate(pool.config.tiles)}
        #: (producer op, consumer tile) -> the number of its signal from the producer's tile
        self.sig_no: dict[tuple[str, str], int] = {}
        #: op -> the other tiles reading its result, in tile order
        self.consumers_of: dict[str, list[str]] = {}
        sent: dict[tuple[str, str], int] = {}
        for unit_name, seq in order.items():
            for n in seq:
                cons = []
                for c in dag.successors(n):
                    t = placement[c]
                    if t != unit_name and t not in cons:
                        cons.append(t)
                cons.sort(key=lambda t: self.tindex[t])
                self.consumers_of[n] = cons
                for t in cons:
                    k = sent.get((unit_name, t), 0)
                    self.sig_no[(n, t)] = k
                    sent[(unit_name, t)] = k + 1

    def waits(self, n: str, consumed: dict[str, int]) -> list[isa.Command]:
        """WAITs for the tokens of ``n``'s producers on other tiles (``consumed``: per
        sender, the signals this tile has waited for so far; updated)."""
        unit_name = self.placement[n]
        need: dict[str, int] = {}
        for p in self.dag.predecessors(n):
            s = self.placement[p]
            if s != unit_name:
                need[s] = max(need.get(s, 0), self.sig_no[(p, unit_name)] + 1)
        out = []
        for s in sorted(need, key=lambda t: self.tindex[t]):
            k = need[s] - consumed.get(s, 0)
            if k > 0:
                out.append(isa.wait(token=self.tindex[s], count=k))
                consumed[s] = need[s]
        return out

    def signals(self, n: str) -> list[isa.Command]:
        """A SIGNAL to each tile consuming ``n``'s result."""
        pool = self.pool
        return [isa.signal(x=pool.unit(t).tile.x, y=pool.unit(t).tile.y,
                           token=self.tindex[self.placement[n]], count=1)
                for t in self.consumers_of[n]]

    def read_by_compute_tile(self, n: str) -> bool:
        """Whether a tile other than the memory tile reads ``n``'s result."""
        return any(self.pool.unit(t).kind is not UnitKind.MEMORY for t in self.consumers_of[n])


def _unit_stream(prog: Program, tile, seq: list, plans: Mapping[str, Plan], tokens: _Tokens,
                 fence: bool) -> TileStream:
    """A compute tile's stream: per micro-op its WAITs, LOADs, EXEC, STOREs, the fence and a
    SIGNAL to each consuming tile, then END."""
    cmds: list[isa.Command] = []
    spans: list[tuple[str, int, int, int]] = []
    consumed: dict[str, int] = {}
    fence_addr = tile.scratchpad_bytes - FENCE_BYTES
    spad = None
    for n in seq:
        plan = plans[n]
        who = op_label(prog.graph.op(n), tile)
        if spad is None:
            spad = ScratchpadAllocator(fence_addr, f"{tile.name} scratchpad", plan.align)
        first = len(cmds)
        # 1. tokens from producers on other tiles
        cmds += tokens.waits(n, consumed)
        # 2. operands into the scratchpad, in the unit's layout
        addrs: dict[Any, int] = {}
        try:
            for o in plan.operands + [plan.out]:
                addrs[o.key] = spad.alloc((n, o.key), o.region)
        except AllocationError as e:
            raise CodegenError(f"{who}{e}") from None
        cmds += _operand_loads(prog, n, plan, addrs, who)
        # 3. compute
        func, args = plan.build(addrs)
        c = exec_command(tile.kind, func, args, who)
        exec_at = len(cmds)
        cmds.append(c)
        # 4. result rows to memory; 5. the fence before telling other tiles (a SIGNAL to
        # the memory tile is ordered after the STOREs there already)
        cmds += _result_stores(prog, plan, addrs, who,
                               fence_addr if fence and tokens.read_by_compute_tile(n) else None)
        for o in plan.operands + [plan.out]:
            spad.free((n, o.key))
        cmds += tokens.signals(n)
        spans.append((n, first, exec_at, len(cmds) - 1))
    cmds.append(isa.end())
    return TileStream(tile, cmds, spans)


def _operand_loads(prog: Program, n: str, plan: Plan, addrs: Mapping[Any, int],
                   who: str) -> list[isa.Command]:
    """The LOADs of micro-op ``n``'s operands to their scratchpad addresses ``addrs``: a
    unit-format constant as one LOAD of its blob, any other operand row by row."""
    mem = prog.pool.memory
    cmds = []
    for o in plan.operands:
        if o.blob is not None:
            baddr, nbytes = prog.image.blobs[(n, o.key)]
            cmds.append(isa.load(spad_addr=addrs[o.key], x=mem.x, y=mem.y,
                                 remote_addr=baddr, length=nbytes))
        else:
            for s, a, b in transfer_moves(operand_runs(prog.layouts, o, prog.flit_bytes, who),
                                          addrs[o.key], o.pitch, who):
                cmds.append(isa.load(spad_addr=s, x=mem.x, y=mem.y, remote_addr=a, length=b))
    return cmds


def _result_stores(prog: Program, plan: Plan, addrs: Mapping[Any, int], who: str,
                   fence_addr: int | None) -> list[isa.Command]:
    """The STOREs of a micro-op's result rows; with ``fence_addr``, then a LOAD of the last
    bytes stored back to that scratchpad address (the fence)."""
    mem = prog.pool.memory
    out_moves = transfer_moves(prog.row_runs(plan.out.ref, who), addrs["out"], plan.out.pitch, who)
    cmds = [isa.store(spad_addr=s, x=mem.x, y=mem.y, remote_addr=a, length=b)
            for s, a, b in out_moves]
    if fence_addr is not None:
        _, addr, b = out_moves[-1]
        fbytes = min(b, FENCE_BYTES)
        cmds.append(isa.load(spad_addr=fence_addr, x=mem.x, y=mem.y,
                             remote_addr=addr + b - fbytes, length=fbytes))
    return cmds
