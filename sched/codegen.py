"""The command-stream compiler: a schedule becomes per-tile command streams and a memory image.

Data flow (every result goes through the memory tile)
-----------------------------------------------------
For each micro-op, in its unit's schedule order, the unit's tile stream holds::

    WAIT   token=<producer tile> count=k      for every producer on another tile (below)
    LOAD   operand runs  memory -> scratchpad  (one command per contiguous run of the box)
    EXEC   the micro-op on its operands' scratchpad addresses
    STORE  result runs   scratchpad -> memory
    LOAD   (fence) the last 32 bytes it stored, back       only if another tile reads it
    SIGNAL (x, y) token=<this tile> count=1    once per consuming tile

and the stream ends with END. Every buffer has a fixed place in the memory image (row-major,
32-byte aligned; an alias shares its base's place), written once (single assignment), so an
operand box is a list of contiguous runs and needs no copy. The memory tile runs LAYOUT
micro-ops in place (EXEC on memory addresses, no LOAD/STORE).

Ordering: commands of a tile run in order and a LOAD completes before the next command. A
STORE is posted; the ISA orders a SIGNAL only after earlier STOREs *to the same
destination*, and the consumer is not the memory tile, so the producer first reads back
(LOAD) from the memory tile, which returns only after its earlier STOREs there have landed
(in-order delivery between one pair of tiles), and then signals.

Tokens: token ``t`` on a tile counts SIGNALs from the tile with index ``t`` (its position
in the config's tile list). A consumer's WAIT asks for as many more of that sender's
signals as it needs to cover the one sent after the result it reads, so each sender's
signals are consumed in the order sent and no WAIT can be satisfied by a signal meant for a
later micro-op. Every WAIT waits for an event earlier in the schedule, so the streams
cannot deadlock.

Unit formats in the memory image
--------------------------------
- INT8 weights (LPU GEMM, CE convolution) are the INT8 buffers themselves.
- The sparse operand of an SPMM placed on the SMU is stored per micro-op in the SMU's CSR
  (``hw/smu.py``, :mod:`sched.formats`): ``ptr`` (rows + 1 u32) then ``nz`` (nnz u32,
  column | BF16 value << 16), each padded to whole SMU words. An SPMM placed on a DMU
  reads its operand dense.

EXEC encoding
-------------
The EXEC argument structs belong to the unit modules (``hw/<kind>.py`` through
:func:`hw.isa.exec_spec`). Until a unit's module exists, its EXEC commands carry the
provisional software form ``{"uop": index into Program.ops, "in0".."in3": scratchpad
addresses, "out": address}``: the listing shows them and the functional executor
(:mod:`sched.funcsim`) runs them, but :attr:`TileStream.binary` is None for a stream with
such a command and :attr:`TileStream.missing` names the unit kinds whose layout is
missing. Everything else (LOAD/STORE/WAIT/SIGNAL/END) is encoded with :func:`hw.isa.assemble`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping

import ml_dtypes
import numpy as np

from hw import isa
from hw.config import DType, UnitKind
from sched.ir import BufferKind, Graph, MicroOp, OpType, TensorRef
from sched.pool import AllocationError, Pool, ScratchpadAllocator
from sched.schedulers import Schedule

__all__ = ["CodegenError", "MemoryImage", "TileStream", "Program", "compile_schedule",
           "encode_csr", "decode_csr", "box_runs", "NP_DTYPE", "EXEC_ARGS", "FENCE_BYTES"]

ALIGN = 32
FENCE_BYTES = 32
NP_DTYPE = {DType.BF16: ml_dtypes.bfloat16, DType.FP32: np.dtype("<f4"),
            DType.INT8: np.dtype("i1"), DType.INT32: np.dtype("<i4")}

#: Unit kind -> ``f(op, addrs) -> (func, args)`` building the unit's own EXEC arguments
#: (``hw/<kind>.py`` layout). Filled as the unit modules land; a kind missing here uses the
#: provisional form (module docstring) and its stream has no binary.
EXEC_ARGS: dict[UnitKind, Callable[[MicroOp, Mapping[str, int]], tuple[Any, dict]]] = {}


class CodegenError(ValueError):
    """A schedule that cannot be compiled (memory or scratchpad too small, bad schedule)."""


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def box_runs(ref: TensorRef, buffer_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Contiguous runs ``(first element, length)`` of a box in its buffer's row-major order."""
    if not ref.shape or math.prod(ref.shape) == 0:
        return []
    idx = np.indices(ref.shape).reshape(len(ref.shape), -1)
    idx = idx + np.asarray(ref.offset).reshape(-1, 1)
    flat = np.ravel_multi_index(tuple(idx), buffer_shape)
    breaks = np.flatnonzero(np.diff(flat) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [flat.size]))
    return [(int(flat[s]), int(e - s)) for s, e in zip(starts, ends)]


def encode_csr(dense: np.ndarray, lanes: int) -> bytes:
    """The SMU's CSR of a 2-D BF16 block (:mod:`sched.formats`): the ``ptr`` array, then the
    ``nz`` array, each padded to whole words of a ``lanes``-lane unit."""
    from sched.formats import encode_csr as _encode, pack_csr
    ptr, nz = pack_csr(_encode(np.asarray(dense)), lanes)
    return ptr + nz


def decode_csr(blob: bytes, rows: int, cols: int, lanes: int) -> np.ndarray:
    """Inverse of :func:`encode_csr`: the dense BF16 matrix (absent entries +0)."""
    from sched.formats import word_bytes
    wb = word_bytes(lanes)
    ptr = np.frombuffer(blob, "<u4", rows + 1).astype(np.int64)
    nnz = int(ptr[-1])
    nz_at = -(-4 * (rows + 1) // wb) * wb
    nz = np.frombuffer(blob, "<u4", nnz, nz_at)
    bits = np.zeros((rows, cols), np.uint16)
    r = np.repeat(np.arange(rows), np.diff(ptr))
    bits[r, (nz & 0xFFFF).astype(np.int64)] = (nz >> 16).astype(np.uint16)
    return bits.view(ml_dtypes.bfloat16)


def csr_bytes(rows: int, nnz: int, lanes: int) -> int:
    """Bytes of :func:`encode_csr`'s output for ``rows`` rows and ``nnz`` non-zeros."""
    from sched.formats import word_bytes
    wb = word_bytes(lanes)
    return -(-4 * (rows + 1) // wb) * wb + -(-4 * nnz // wb) * wb


@dataclass
class MemoryImage:
    """The memory tile's initial contents.

    Attributes
    ----------
    data : bytearray
        ``size`` bytes; inputs and weights in place, everything else zero.
    initialized : ndarray of bool
        Which bytes hold defined data before the run (inputs, constants, CSR blobs).
    buffers : dict
        Base buffer name -> address.
    blobs : dict
        ``(micro-op id, operand index)`` -> ``(address, bytes)`` of unit-format operands.
    """

    size: int
    data: bytearray
    initialized: np.ndarray
    buffers: dict[str, int]
    blobs: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)

    def put(self, addr: int, payload: bytes) -> None:
        self.data[addr:addr + len(payload)] = payload
        self.initialized[addr:addr + len(payload)] = True


@dataclass
class TileStream:
    """The command stream of one tile."""

    tile: Any
    commands: list[isa.Command]
    missing: tuple[str, ...] = ()

    @property
    def binary(self) -> bytes | None:
        """The stream's 256-bit words, or None while a unit's EXEC layout is missing."""
        if self.missing:
            return None
        return isa.assemble(self.commands)

    def listing(self) -> str:
        head = f"; tile {self.tile.name} ({self.tile.kind.key} at {self.tile.x},{self.tile.y})"
        if self.missing:
            head += (f"; EXEC in provisional form: no EXEC layout yet for "
                     f"{', '.join(self.missing)}")
        return head + "\n" + isa.listing(self.commands)


@dataclass
class Program:
    """A compiled schedule: streams per tile, the memory image, and the tables the
    functional executor needs (micro-ops by EXEC index, operand layouts)."""

    graph: Graph
    schedule: Schedule
    pool: Pool
    streams: dict[str, TileStream]
    image: MemoryImage
    ops: list[MicroOp]
    placement: dict[str, str]                     # micro-op id -> tile name
    sparse_on_unit: dict[str, int]                # SPMM micro-op id -> CSR operand index

    def buffer_runs(self, ref: TensorRef) -> list[tuple[int, int]]:
        """Memory ``(address, bytes)`` runs of a box."""
        g = self.graph
        base = g.base(ref.buffer)
        eb = base.dtype.bytes
        addr = self.image.buffers[base.name]
        return [(addr + s * eb, n * eb) for s, n in box_runs(ref, g.buffers[ref.buffer].shape)]

    def listing(self) -> str:
        return "\n\n".join(s.listing() for s in self.streams.values())

    def misaligned(self, flit_bytes: int | None = None) -> list[tuple[str, int]]:
        """``(tile, command index)`` of LOADs/STOREs whose scratchpad or remote address is
        not a multiple of the flit size (the NI of branch ``noc`` drops those)."""
        fb = flit_bytes or self.pool.mesh.flit_bits // 8
        return [(t, i) for t, s in self.streams.items() for i, c in enumerate(s.commands)
                if c.opcode in (isa.Opcode.LOAD, isa.Opcode.STORE)
                and (c.fields["spad_addr"] % fb or c.fields["remote_addr"] % fb)]

    def token_summary(self) -> dict[str, int]:
        """Counts of WAIT and SIGNAL commands and of cross-tile dependencies."""
        waits = sum(c.fields["count"] for s in self.streams.values() for c in s.commands
                    if c.opcode is isa.Opcode.WAIT)
        signals = sum(1 for s in self.streams.values() for c in s.commands
                      if c.opcode is isa.Opcode.SIGNAL)
        cross = sum(1 for u, v in self.graph.dag.edges if self.placement[u] != self.placement[v])
        return {"waits": waits, "signals": signals, "cross_tile_edges": cross}


def _const_array(g: Graph, ref: TensorRef) -> np.ndarray:
    b = g.buffers[ref.buffer]
    base = g.base(ref.buffer)
    return np.asarray(base.data).reshape(b.shape)[ref.slices]


def _layout_memory(g: Graph, pool: Pool, smu_sparse: dict[str, int],
                   inputs: Mapping[str, np.ndarray] | None, lanes: Mapping[str, int]) -> MemoryImage:
    size = pool.memory["bytes"]
    addrs: dict[str, int] = {}
    top = 0
    for b in g.buffers.values():
        if b.alias_of is None:
            addrs[b.name] = top
            top += _align(b.bytes)
    blobs: dict[tuple[str, int], bytes] = {}
    for op_id, idx in smu_sparse.items():
        op = g.op(op_id)
        ref = op.inputs[idx]
        if g.base(ref.buffer).kind is not BufferKind.CONST:
            raise CodegenError(f"Micro-op {op_id!r}: the SMU's sparse operand {ref} must be a "
                               f"constant (weights)")
        rows, cols = ref.last_dims(2)
        blobs[(op_id, idx)] = encode_csr(_const_array(g, ref).reshape(rows, cols), lanes[op_id])
    blob_at: dict[tuple[str, int], tuple[int, int]] = {}
    for key, blob in blobs.items():
        blob_at[key] = (top, len(blob))
        top += _align(len(blob))
    if top > size:
        raise CodegenError(f"The program needs {top} bytes of memory (buffers and CSR "
                           f"operands) but the memory tile {pool.memory.name} has {size}")
    img = MemoryImage(size, bytearray(size), np.zeros(size, bool), addrs, blob_at)
    for b in g.buffers.values():
        if b.kind is BufferKind.CONST and b.alias_of is None:
            img.put(addrs[b.name], np.asarray(b.data).astype(NP_DTYPE[b.dtype]).tobytes())
    for key, blob in blobs.items():
        img.put(blob_at[key][0], blob)
    if inputs is not None:
        set_inputs(img, g, inputs)
    return img


def host_input_arrays(g: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Graph inputs converted as the host writes them (the golden executor's conversion)."""
    from sched.golden.executor import Executor
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


def set_inputs(img: MemoryImage, g: Graph, inputs: Mapping[str, np.ndarray]) -> None:
    """Write the graph inputs into the image."""
    for n, arr in host_input_arrays(g, inputs).items():
        b = g.buffers[n]
        img.put(img.buffers[n], np.asarray(arr).astype(NP_DTYPE[b.dtype]).tobytes())


def compile_schedule(graph: Graph, schedule: Schedule, inputs: Mapping[str, np.ndarray] | None = None,
                     fence: bool = True) -> Program:
    """Compile ``schedule`` of ``graph`` into per-tile command streams and a memory image.

    Parameters
    ----------
    graph : Graph
        The decomposed micro-op graph the schedule was made for.
    schedule : Schedule
    inputs : mapping, optional
        Graph input values (float32/int arrays) to place in the memory image.
    fence : bool
        Read back from memory before signalling (needed under the ISA's guarantee, which
        orders a SIGNAL only after STOREs to the same destination). The NI of branch
        ``noc`` completes every command, STOREs acknowledged, before the next, so
        ``fence=False`` is enough for it (run the executor with ``stores_complete=True``).

    Raises
    ------
    CodegenError
        If the schedule misses a micro-op, the memory tile is too small, or a scratchpad
        cannot hold a micro-op's operands and result (naming it and the sizes).
    """
    pool = schedule.pool
    g = graph
    dag = g.dag
    missing = [n for n in dag.nodes if n not in schedule.slots]
    if missing:
        raise CodegenError(f"The schedule does not place micro-op(s) {missing[:5]!r}")
    placement = {n: schedule.slots[n].unit for n in dag.nodes}
    order = schedule.unit_order()
    ops = [g.op(n) for n in dag.nodes]
    uop_index = {o.id: i for i, o in enumerate(ops)}
    smu_sparse = {n: g.op(n).attrs.get("sparse_operand", 0) for n in dag.nodes
                  if g.op(n).op is OpType.SPMM and pool.unit(placement[n]).kind is UnitKind.SMU}
    img = _layout_memory(g, pool, smu_sparse, inputs,
                         {n: pool.unit(placement[n]).tile["lanes"] for n in smu_sparse})
    tiles = list(pool.config.tiles)
    tindex = {t.name: i for i, t in enumerate(tiles)}
    mem = pool.memory
    prog = Program(g, schedule, pool, {}, img, ops, placement, smu_sparse)

    # Pass 1: the signals each tile sends, in stream order: (producer op, consumer tile) -> #
    sig_no: dict[tuple[str, str], int] = {}
    sent: dict[tuple[str, str], int] = {}
    consumers_of: dict[str, list[str]] = {}
    for unit_name, seq in order.items():
        for n in seq:
            cons = []
            for c in dag.successors(n):
                t = placement[c]
                if t != unit_name and t not in cons:
                    cons.append(t)
            cons.sort(key=lambda t: tindex[t])
            consumers_of[n] = cons
            for t in cons:
                k = sent.get((unit_name, t), 0)
                sig_no[(n, t)] = k
                sent[(unit_name, t)] = k + 1

    for unit_name, seq in order.items():
        unit = pool.unit(unit_name)
        tile = unit.tile
        cmds: list[isa.Command] = []
        consumed: dict[str, int] = {}
        missing_kinds: set[str] = set()
        spad = None if unit.kind is UnitKind.MEMORY else ScratchpadAllocator(
            tile.scratchpad_bytes - FENCE_BYTES, f"{tile.name} scratchpad")
        fence_addr = tile.scratchpad_bytes - FENCE_BYTES
        for n in seq:
            op = g.op(n)
            # 1. tokens from producers on other tiles
            need: dict[str, int] = {}
            for p in dag.predecessors(n):
                s = placement[p]
                if s != unit_name:
                    need[s] = max(need.get(s, 0), sig_no[(p, unit_name)] + 1)
            for s in sorted(need, key=lambda t: tindex[t]):
                k = need[s] - consumed.get(s, 0)
                if k > 0:
                    cmds.append(isa.wait(token=tindex[s], count=k))
                    consumed[s] = need[s]
            if unit.kind is UnitKind.MEMORY:
                # 2'. in place on the memory tile
                addrs = {f"in{i}": prog.buffer_runs(r)[0][0] for i, r in enumerate(op.inputs)}
                addrs["out"] = prog.buffer_runs(op.outputs[0])[0][0]
                for r in op.inputs + op.outputs:
                    if len(prog.buffer_runs(r)) != 1:
                        raise CodegenError(f"Micro-op {n!r} on the memory tile needs {r} "
                                           f"contiguous")
                cmds.append(_exec(op, unit.kind, uop_index[n], addrs, missing_kinds))
            else:
                # 2. operands into the scratchpad
                addrs = {}
                try:
                    for i, r in enumerate(op.inputs):
                        if smu_sparse.get(n) == i:
                            baddr, nbytes = img.blobs[(n, i)]
                            a = spad.alloc((n, i), nbytes)
                            cmds.append(isa.load(spad_addr=a, x=mem.x, y=mem.y,
                                                 remote_addr=baddr, length=nbytes))
                        else:
                            runs = prog.buffer_runs(r)
                            a = spad.alloc((n, i), sum(b for _, b in runs))
                            off = a
                            for addr, b in runs:
                                cmds.append(isa.load(spad_addr=off, x=mem.x, y=mem.y,
                                                     remote_addr=addr, length=b))
                                off += b
                        addrs[f"in{i}"] = a
                    out_runs = prog.buffer_runs(op.outputs[0])
                    out_addr = spad.alloc((n, "out"), sum(b for _, b in out_runs))
                except AllocationError as e:
                    raise CodegenError(f"Micro-op {n!r} on {tile.name}: {e}") from None
                addrs["out"] = out_addr
                # 3. compute
                cmds.append(_exec(op, unit.kind, uop_index[n], addrs, missing_kinds))
                # 4. result to memory
                off = out_addr
                for addr, b in out_runs:
                    cmds.append(isa.store(spad_addr=off, x=mem.x, y=mem.y, remote_addr=addr,
                                          length=b))
                    off += b
                # 5. fence before telling other tiles
                if consumers_of[n] and fence:
                    addr, b = out_runs[-1]
                    fb = min(b, FENCE_BYTES)
                    cmds.append(isa.load(spad_addr=fence_addr, x=mem.x, y=mem.y,
                                         remote_addr=addr + b - fb, length=fb))
                for i in range(len(op.inputs)):
                    spad.free((n, i))
                spad.free((n, "out"))
            for t in consumers_of[n]:
                tt = pool.unit(t).tile
                cmds.append(isa.signal(x=tt.x, y=tt.y, token=tindex[unit_name], count=1))
        cmds.append(isa.end())
        prog.streams[unit_name] = TileStream(tile, cmds, tuple(sorted(missing_kinds)))
    return prog


def _exec(op: MicroOp, kind: UnitKind, index: int, addrs: Mapping[str, int],
          missing: set[str]) -> isa.Command:
    builder = EXEC_ARGS.get(kind)
    if builder is not None:
        func, args = builder(op, addrs)
        return isa.exec_cmd(kind, func, **args)
    missing.add(kind.key)
    return isa.Command(isa.Opcode.EXEC,
                       {"func": _Provisional(op.op.value), "args": {"uop": index, **addrs}}, kind)


class _Provisional(str):
    """The name of a provisional EXEC function (listing shows it like an enum member)."""

    @property
    def name(self) -> str:
        return str(self)
