"""The command-stream compiler: a schedule becomes per-tile binary command streams and a memory image.

Data flow (every result goes through the memory tile)
-----------------------------------------------------
For each micro-op, in its unit's schedule order, the unit's tile stream holds::

    WAIT   token=<producer tile> count=k      for every producer on another tile (below)
    LOAD   operands memory -> scratchpad, in the unit's own layout (row by row, merged
           where memory and scratchpad are both contiguous; unit-format constants whole)
    EXEC   the unit's binary command (``hw/<kind>.py`` enums and argument struct)
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
  (:func:`_dense_bases`), so each view is row-major over the same bytes, and only a view
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
which the CE takes as ``x_zero_point``: :func:`_lower_ce`), output rows of
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

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import ml_dtypes
import numpy as np

from accelpool.spec import isa
from accelpool.spec.config import DType, UnitKind
from accelpool.sched.ir import (ActFunc, AggFunc, BufferKind, EltwiseFunc, Graph, MicroOp, OpType,
                      TensorRef, channels_last_images, image_dims)
from accelpool.sched.pool import AllocationError, Pool, ScratchpadAllocator
from accelpool.sched.schedule import Schedule

__all__ = ["CodegenError", "NotLowered", "BufferLayout", "MemoryImage", "TileStream",
           "Program", "compile_schedule", "NP_DTYPE", "LOWERINGS", "FENCE_BYTES",
           "set_inputs", "op_transfers", "layout_exec", "layout_shape"]

ALIGN = 32
FENCE_BYTES = 32
NP_DTYPE = {DType.BF16: ml_dtypes.bfloat16, DType.FP32: np.dtype("<f4"),
            DType.INT8: np.dtype("i1"), DType.INT32: np.dtype("<i4")}


class CodegenError(ValueError):
    """A schedule that cannot be compiled (memory or scratchpad too small, bad layout)."""


class NotLowered(CodegenError):
    """A micro-op placed on a unit for which codegen emits no command (message says why)."""


def _ceil(n: int, q: int) -> int:
    return -(-n // q) * q


@dataclass(frozen=True)
class BufferLayout:
    """Where a buffer's elements are: ``addr + row * pitch + col * elem``.

    Row-major (the default): ``row`` is the row-major index over every dimension but the
    last and ``col`` the last index. Channels-last (``channels_last``, an image ``[..., C,
    H, W]`` whose leading dimensions are 1; the convolution engine's layout): ``row`` is
    the pixel ``h * W + w`` and ``col`` the channel ``c``. ``view_of`` names the
    channels-last buffer a reshape aliases when the reshape's elements are not rows of that
    layout (a flatten): its elements can only be moved by a lowering that knows the
    permutation (:func:`_channels_last_runs`)."""

    name: str
    addr: int
    shape: tuple[int, ...]
    elem: int
    pitch: int
    channels_last: bool = False
    view_of: str | None = None
    block: int = 0                    # channels-last: channels per block (C: pixel-major)

    @property
    def _img(self) -> tuple[int, int, int]:
        c, h, w = self.shape[-3:]
        return c, h * w, -(-c // self.block)

    @property
    def cols(self) -> int:
        if self.channels_last:
            return self.block
        return self.shape[-1] if self.shape else 1

    @property
    def rows(self) -> int:
        if self.channels_last:
            _, hw, cb = self._img
            return cb * hw
        return math.prod(self.shape[:-1]) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.rows * self.pitch

    def box_rows(self, ref: TensorRef) -> tuple[np.ndarray, int, int]:
        """``(row indices, first column, columns)`` of a box of this buffer."""
        if self.view_of is not None:
            raise CodegenError(
                f"{ref}: {self.name!r} reshapes the channels-last buffer {self.view_of!r} "
                f"(the convolution engine's pixel-major layout), so its rows are not rows in "
                f"memory. Accepted: the whole flatten read along K by an integer GEMM "
                f"(its weights are permuted to the stored order), or the image itself")
        shape = tuple(ref.shape) or (1,)
        offset = tuple(ref.offset) or (0,)
        bshape = self.shape or (1,)
        if self.channels_last:
            (c0, h0, w0), (cs, hs, ws) = offset[-3:], shape[-3:]
            c, hw, cb = self._img
            hh, ww = np.meshgrid(np.arange(h0, h0 + hs), np.arange(w0, w0 + ws), indexing="ij")
            pix = (hh * bshape[-1] + ww).reshape(-1).astype(np.int64)
            b0, b1 = c0 // self.block, (c0 + cs - 1) // self.block
            if b0 == b1:
                return pix + b0 * hw, int(c0 % self.block), int(cs)
            if c0 % self.block or (c0 + cs) % self.block and c0 + cs != c:
                raise CodegenError(f"{ref}: channels {c0}..{c0 + cs - 1} of {self.name!r} "
                                   f"cross its blocks of {self.block} channels part way")
            rows = (np.arange(b0, b1 + 1)[:, None] * hw + pix[None, :]).reshape(-1)
            return rows, 0, self.block
        if len(shape) == 1:
            rows = np.zeros(1, np.int64)
        else:
            idx = np.indices(shape[:-1]).reshape(len(shape) - 1, -1)
            idx = idx + np.asarray(offset[:-1]).reshape(-1, 1)
            rows = np.ravel_multi_index(tuple(idx), bshape[:-1]).astype(np.int64)
        return rows, int(offset[-1]), int(shape[-1])

    def flat_order(self) -> np.ndarray:
        """Channels-last: the row-major (``c * H * W + p``) index of each stored element,
        in storage order (rows of ``block`` channels; -1 for missing channels)."""
        c, hw, cb = self._img
        ch = np.arange(cb * self.block).reshape(cb, 1, self.block)
        idx = ch * hw + np.arange(hw).reshape(1, hw, 1)
        return np.where(ch < c, idx, -1).reshape(-1)

    def _matrix(self, values: np.ndarray) -> np.ndarray:
        """Logical values -> ``[rows, cols]`` in this layout's row order."""
        v = np.ascontiguousarray(values)
        if self.channels_last:
            c, hw, cb = self._img
            full = np.zeros((cb * self.block, hw), v.dtype)
            full[:c] = v.reshape(c, hw)
            return full.reshape(cb, self.block, hw).transpose(0, 2, 1).reshape(cb * hw, self.block)
        return v.reshape(self.rows, self.cols)

    def pack(self, values: np.ndarray) -> bytes:
        """The buffer's bytes in this layout (padding zero)."""
        e = self.elem
        raw = np.ascontiguousarray(self._matrix(values)).view(np.uint8)
        out = np.zeros((self.rows, self.pitch), np.uint8)
        out[:, :self.cols * e] = raw.reshape(self.rows, self.cols * e)
        return out.tobytes()

    def unpack(self, raw: bytes, dtype) -> np.ndarray:
        """The buffer's values from its bytes in this layout."""
        e = self.elem
        a = np.frombuffer(raw, np.uint8, self.nbytes).reshape(self.rows, self.pitch)
        a = np.ascontiguousarray(a[:, :self.cols * e]).view(dtype)
        if self.channels_last:
            c, hw, cb = self._img
            a = a.reshape(cb, hw, self.block).transpose(0, 2, 1).reshape(cb * self.block, hw)[:c]
        return np.ascontiguousarray(a).reshape(self.shape)


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
        return _row_runs(self.layouts, ref, self.flit_bytes, who)

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

def _row_runs(layouts: Mapping[str, "BufferLayout"], ref: TensorRef, fb: int,
              who: str = "") -> list[tuple[int, int]]:
    """Memory ``(address, bytes)`` of each row of a box (see :meth:`Program.row_runs`)."""
    lay = layouts[ref.buffer]
    rows, c0, w = lay.box_rows(ref)
    e = lay.elem
    if lay.pitch % fb == 0 and ((c0 * e) % fb or ((c0 + w) * e % fb and c0 + w != lay.cols)):
        raise CodegenError(
            f"{who}{ref}: a LOAD/STORE moves whole {fb}-byte flits and may round a row "
            f"out only into the row's padding, but columns {c0}..{c0 + w - 1} of "
            f"{ref.buffer} (rows of {lay.cols} x {e}-byte elements, pitch {lay.pitch}) "
            f"share a flit with other elements of the row. Accepted: boxes whose columns "
            f"start at a multiple of {fb // math.gcd(fb, e)} and end at one or at the "
            f"row's last column")
    length = _ceil(w * e, fb)
    base = lay.addr + c0 * e
    if lay.pitch % fb:
        start = rows * lay.pitch + c0 * e
        end = start + w * e
        if (start % fb).any() or ((end % fb != 0) & (end != lay.nbytes)).any():
            raise CodegenError(
                f"{who}{ref}: a LOAD/STORE moves whole {fb}-byte flits, but the rows of "
                f"{ref.buffer} ({lay.cols} x {e}-byte elements) are stored without padding, "
                f"{lay.pitch} bytes apart, because a reshape of the buffer changes its last "
                f"dimension; the box's rows do not start and end on flit boundaries. "
                f"Accepted: a view of the buffer whose rows are multiples of {fb} bytes, or "
                f"a box ending at the buffer's end")
    return [(base + int(r) * lay.pitch, length) for r in rows]


def channels_last_buffers(g: Graph, fb: int) -> dict[str, int]:
    """Base buffers stored channels-last (:class:`BufferLayout`), with their block size.

    Channels-last: :func:`accelpool.sched.ir.channels_last_images` (the images CONVs read and write,
    and those element-wise micro-ops share with them). Blocks of one flit of channels
    (``fb // element bytes``, at most ``C``), so a micro-op writing a block of output
    channels writes contiguous memory; pixel-major (one block of ``C``) when a CONV reads
    more channels than one block, as the CE's input layout wants."""
    base = lambda r: g.base(r.buffer)   # noqa: E731
    cl = channels_last_images(g)
    blocks = {}
    for n in cl:
        c = g.buffers[n].shape[-3]
        blocks[n] = min(c, max(1, fb // g.buffers[n].dtype.bytes))
    for o in g.ops:
        if o.op is OpType.CONV:
            n = base(o.inputs[0]).name
            if n in blocks and o.inputs[0].shape[-3] > blocks[n]:
                blocks[n] = g.buffers[n].shape[-3]
    return blocks


def _dense_bases(g: Graph, cl: Mapping[str, int]) -> set[str]:
    """Row-major base buffers a reshape views with another last dimension: stored without
    row padding, so every view is a row-major view of the same bytes."""
    out = set()
    for b in g.buffers.values():
        if b.alias_of is None:
            continue
        base = g.base(b.name)
        if base.name not in cl and (tuple(b.shape) or (1,))[-1] != (tuple(base.shape) or (1,))[-1]:
            out.add(base.name)
    return out


def _layouts(g: Graph, fb: int) -> tuple[dict[str, BufferLayout], int]:
    lays: dict[str, BufferLayout] = {}
    top = 0
    cl = channels_last_buffers(g, fb)
    dense = _dense_bases(g, cl)
    for b in g.buffers.values():
        if b.alias_of is None:
            e = b.dtype.bytes
            shape = tuple(b.shape)
            blk = cl.get(b.name, 0)
            lay = BufferLayout(b.name, top, shape, e, 0, channels_last=bool(blk), block=blk)
            pitch = lay.cols * e if b.name in dense else _ceil(lay.cols * e, fb)
            lays[b.name] = lay = BufferLayout(b.name, top, shape, e, pitch,
                                              channels_last=bool(blk), block=blk)
            top += _ceil(lay.nbytes, ALIGN)
    for b in g.buffers.values():
        if b.alias_of is None:
            continue
        base = lays[g.base(b.name).name]
        e = base.elem
        shape = tuple(b.shape)
        if base.channels_last:
            same = image_dims(shape) == image_dims(base.shape)
            lays[b.name] = BufferLayout(b.name, base.addr, shape, e, base.pitch,
                                        channels_last=same, block=base.block if same else 0,
                                        view_of=None if same else base.name)
            continue
        cols = shape[-1] if shape else 1
        pitch = cols * e if base.name in dense else base.pitch
        lays[b.name] = BufferLayout(b.name, base.addr, shape, e, pitch)
    return lays, top


def _const_array(g: Graph, ref: TensorRef) -> np.ndarray:
    b = g.buffers[ref.buffer]
    base = g.base(ref.buffer)
    return np.asarray(base.data).astype(NP_DTYPE[base.dtype]).reshape(b.shape)[ref.slices]


def _layout_memory(g: Graph, pool: Pool, lays: Mapping[str, BufferLayout], top: int,
                   blobs: Mapping[tuple[str, Any], bytes],
                   inputs: Mapping[str, np.ndarray] | None) -> MemoryImage:
    size = pool.memory["bytes"]
    blob_at: dict[tuple[str, Any], tuple[int, int]] = {}
    for key, blob in blobs.items():
        blob_at[key] = (top, len(blob))
        top += _ceil(len(blob), ALIGN)
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
    from accelpool.sched.reference import Executor
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

@dataclass
class _Operand:
    """One scratchpad region of a micro-op: a blob (constant) or rows of a memory box."""

    key: Any
    region: int                       # bytes
    blob: bytes | None = None
    ref: TensorRef | None = None
    pitch: int = 0                    # scratchpad bytes between the box's rows
    runs: list[tuple[int, int]] | None = None   # memory (address, bytes), if not the box's rows


@dataclass
class _Plan:
    operands: list[_Operand]
    out: _Operand
    build: Callable[[Mapping[Any, int]], tuple[Any, dict]]   # addresses -> (func, args)
    align: int


class _Ctx:
    """What a lowering needs: the graph, the layouts, the flit size, the unit's tile."""

    def __init__(self, g: Graph, lays: Mapping[str, BufferLayout], fb: int):
        self.g, self.lays, self.fb = g, lays, fb

    def dtype(self, ref: TensorRef) -> DType:
        return self.g.base(ref.buffer).dtype

    def is_const(self, ref: TensorRef) -> bool:
        return self.g.base(ref.buffer).kind is BufferKind.CONST


def _who(op: MicroOp, tile) -> str:
    return f"Micro-op {op.id!r} ({op.op.value}<{op.dtype.key}>) on {tile.name}: "


def _blob_rows(values: np.ndarray, rows: int, pitch: int, region: int) -> bytes:
    """2-D ``values`` placed row ``i`` at byte ``i * pitch`` of a zeroed ``region``."""
    v = np.ascontiguousarray(values)
    r, c = v.shape
    raw = v.view(np.uint8).reshape(r, c * v.dtype.itemsize)
    out = np.zeros(region, np.uint8)
    view = out[:rows * pitch].reshape(rows, pitch)
    view[:r, :raw.shape[1]] = raw
    return out.tobytes()


def _matrix(ref: TensorRef, who: str, what: str) -> tuple[int, int]:
    d = ref.last_dims(2)
    if d is None:
        raise CodegenError(f"{who}operand {what} {ref} is not a matrix (a leading dimension "
                           f"is not 1)")
    return d


def _requant(op: MicroOp, who: str) -> tuple[int, int, int]:
    """``(multiplier, shift, zero point)`` of an INT8 result's requantisation (attrs
    ``requant``: the fixed point itself, or the scale it is derived from)."""
    from accelpool.spec.golden.numerics import quantize_multiplier
    rq = op.attrs.get("requant")
    if rq is None:
        raise CodegenError(f"{who}an INT8 result needs attrs['requant']")
    mult, shift = ((rq["multiplier"], rq["shift"]) if "multiplier" in rq
                   else quantize_multiplier(rq["scale"]))
    return int(mult), int(shift), int(rq["zero_point"])


def _lower_gemm(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    from accelpool.spec.gemm_layout import a_pitch, systolic_word_bytes
    who = _who(op, tile)
    e = op.dtype.bytes
    R, C = tile["rows"], tile["cols"]
    wb = systolic_word_bytes(R, C, e)
    a, b = op.inputs[0], op.inputs[1]
    m, k = _matrix(a, who, "A")
    k2, n = _matrix(b, who, "B")
    if k2 != k:
        raise CodegenError(f"{who}A {a} and B {b} do not chain (K {k} != {k2})")
    mp, np_ = _ceil(m, R), _ceil(n, C)
    acc_dt = DType.FP32 if tile.kind is UnitKind.DMU else DType.INT32
    out = op.outputs[0]
    odt = ctx.dtype(out)
    if tile.kind is UnitKind.DMU:
        from accelpool.spec.units.dmu import DmuFunc as funcs
        if odt not in (DType.FP32, DType.BF16):
            raise CodegenError(f"{who}the DMU writes FP32 or BF16, not {odt.key} ({out})")
        extra = {"out_bf16": int(odt is DType.BF16)}
    else:
        from accelpool.spec.units.lpu import LpuFunc as funcs
        if odt not in (DType.INT32, DType.INT8):
            raise CodegenError(f"{who}the LPU writes INT32 or INT8, not {odt.key} ({out})")
        extra = {"requant": 0}
        if odt is DType.INT8:
            mult, shift, zp = _requant(op, who)
            extra = {"requant": 1, "multiplier": mult, "shift": shift, "zero_point": zp}

    def place(ref, key, rows_p, cols, elem, pitch, dt, broadcast_to=None):
        region = _ceil(rows_p * pitch, wb)
        if ctx.is_const(ref):
            v = _const_array(ctx.g, ref)
            v = v.reshape(_matrix(ref, who, str(key)))
            if broadcast_to is not None:
                v = np.broadcast_to(v, broadcast_to)
            v = np.asarray(v).astype(NP_DTYPE[dt])
            return _Operand(key, region, blob=_blob_rows(v, rows_p, pitch, region))
        if broadcast_to is not None and _matrix(ref, who, str(key)) != broadcast_to:
            raise NotLowered(f"{who}the accumulator {ref} is broadcast but not a constant; "
                             f"the unit reads a full Mp x Np accumulator")
        return _Operand(key, region, ref=ref, pitch=pitch)

    if ctx.lays[a.buffer].view_of is not None and not ctx.is_const(a):
        runs, perm = _flatten_runs(ctx, op, a, b, who)
        pa = a_pitch(k, e, wb)
        ops = [_Operand("a", _ceil(mp * pa, wb), ref=a, pitch=pa, runs=runs)]
        w_rows = np.asarray(ctx.g.base(b.buffer).data).reshape(ctx.g.buffers[b.buffer].shape)
        v = w_rows[perm][:, b.offset[1]:b.offset[1] + n].astype(NP_DTYPE[op.dtype])
        region = _ceil(k * np_ * e, wb)
        ops.append(_Operand("b", region, blob=_blob_rows(v, k, np_ * e, region)))
    else:
        ops = [place(a, "a", mp, k, e, a_pitch(k, e, wb), op.dtype),
               place(b, "b", k, n, e, np_ * e, op.dtype)]
    if len(op.inputs) > 2:
        ops.append(place(op.inputs[2], "c", mp, n, 4, np_ * 4, acc_dt, broadcast_to=(m, n)))
    o = odt.bytes
    d = _Operand("out", _ceil(mp * np_ * o, wb), ref=out, pitch=np_ * o)
    func = funcs.GEMM

    def build(addr):
        args = {"a_addr": addr["a"], "b_addr": addr["b"], "d_addr": addr["out"],
                "m": m, "n": n, "k": k, "accumulate": int("c" in addr),
                "c_addr": addr.get("c", 0), **extra}
        return func, args
    return _Plan(ops, d, build, max(ALIGN, wb))


def _flatten_runs(ctx: _Ctx, op: MicroOp, a: TensorRef, b: TensorRef, who: str
                  ) -> tuple[list[tuple[int, int]], np.ndarray]:
    """A GEMM's A operand ``[1, k]`` read from the flatten of a channels-last image.

    The image's bytes are pixel-major (``p * C + c``) while the flatten counts ``c * H * W
    + p``, so the micro-op reads the ``k`` elements *stored* at its K range and multiplies
    them by the weight rows of the flatten indices stored there. Over a GEMM chain covering
    all of K every product is made exactly once; integer sums do not depend on the order,
    so the result is the golden one bit for bit (a floating-point sum would round
    differently: not lowered). Returns the memory run and the flatten index of each
    element of it."""
    lay = ctx.lays[a.buffer]
    base = ctx.lays[lay.view_of]
    order = base.flat_order()
    total = math.prod(base.shape)
    e, fb = lay.elem, ctx.fb
    _, c0 = a.offset if len(a.offset) == 2 else (0, 0)
    k = a.shape[-1]
    why = None
    if op.dtype is not DType.INT8:
        why = (f"{op.dtype.key} sums depend on the order of the products, and the "
               f"image's channels-last bytes hold the flatten in another order")
    elif tuple(lay.shape) != (1, total) or tuple(a.shape) != (1, k):
        why = f"{a} is not one row of the flatten [1, {total}] of {base.name!r}"
    elif base.pitch != base.cols * e or len(order) != total:
        why = f"the rows of {base.name!r} are padded (blocks of {base.block} channels)"
    elif (c0 * e) % fb or ((c0 + k) * e % fb and c0 + k != total):
        why = f"columns {c0}..{c0 + k - 1} do not start and end on {fb}-byte flits"
    elif not ctx.is_const(b) or b.offset[0] != c0 or ctx.g.buffers[b.buffer].shape[0] != total:
        why = f"the weights {b} are not rows {c0}.. of a constant [{total}, N]"
    else:
        perm = order[c0:c0 + k]
        writers = _writers(ctx, base.name)
        extra = set(writers[perm]) - set(writers[c0:c0 + k])
        if extra:
            why = (f"its stored elements {c0}..{c0 + k - 1} are written by micro-op(s) "
                   f"{sorted(extra)[:3]} it does not depend on")
    if why:
        raise NotLowered(f"{who}not lowered: A reads the flatten {a.buffer!r} of the "
                         f"channels-last image {base.name!r}, and {why}. Accepted: an INT8 "
                         f"GEMM chain over whole flits of the flatten with constant weights")
    return [(base.addr + c0 * e, _ceil(k * e, fb))], perm


def _writers(ctx: _Ctx, name: str) -> np.ndarray:
    """The micro-op writing each element of base buffer ``name`` (row-major index), or ''."""
    cache = ctx.__dict__.setdefault("_writers", {})
    if name not in cache:
        g = ctx.g
        shape = tuple(g.buffers[name].shape)
        who = np.full(shape, "", dtype=object)
        for o in g.ops:
            for r in o.outputs:
                if g.base(r.buffer).name == name:
                    rb = g.buffers[r.buffer]
                    view = who.reshape(rb.shape)
                    view[r.slices] = o.id
        cache[name] = who.reshape(-1)
    return cache[name]


_AFU_ACT = {ActFunc.RELU: "RELU", ActFunc.LEAKY_RELU: "LEAKY_RELU", ActFunc.SIGMOID: "SIGMOID",
            ActFunc.TANH: "TANH", ActFunc.GELU: "GELU"}
_AFU_ELT = {EltwiseFunc.ADD: "ADD", EltwiseFunc.MUL: "MUL"}


def _quant_of(ctx: _Ctx, op: MicroOp, r: TensorRef, side: str, who: str) -> tuple[float, int]:
    """Quantisation of an INT8 operand (``x``) or result (``y``), as the golden executor's
    units' arithmetic takes it: ``attrs`` ``<side>_scale``/``<side>_zero_point``, else the
    buffer's."""
    a = op.attrs
    if f"{side}_scale" in a:
        return float(a[f"{side}_scale"]), int(a.get(f"{side}_zero_point", 0))
    q = ctx.g.buffers[r.buffer].quant or ctx.g.base(r.buffer).quant
    if q is None:
        raise CodegenError(f"{who}the AFU's INT8 table needs the quantisation of {r}: attrs "
                           f"{side}_scale/{side}_zero_point or the buffer's quant")
    return float(q.scale), int(q.zero_point)


def _lower_afu(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    from accelpool.spec.units.afu import AfuDType, AfuFunc
    from accelpool.spec.golden import activations as act
    who = _who(op, tile)
    if op.op is OpType.ELTWISE and op.dtype is not DType.BF16:
        raise NotLowered(f"{who}not lowered: the AFU's INT8 add/mul need requantisation "
                         f"multipliers the micro-op does not carry. Accepted on the AFU: BF16 "
                         f"and INT8 activations, BF16 ADD and MUL")
    if op.dtype not in (DType.BF16, DType.INT8):
        raise CodegenError(f"{who}the AFU takes BF16 or INT8, not {op.dtype.key}")
    if op.func is ActFunc.GELU and op.attrs.get("approximate", "none") != "none":
        raise NotLowered(f"{who}not lowered: GELU approximate="
                         f"{op.attrs['approximate']!r}; the AFU computes the erf form "
                         f"(approximate='none')")
    wb = 2 * tile["lanes"]
    fb = ctx.fb
    e = op.dtype.bytes
    out = op.outputs[0]
    for r in op.inputs + op.outputs:
        if not ctx.is_const(r) and ctx.dtype(r) is not op.dtype:
            raise CodegenError(f"{who}{r} is {ctx.dtype(r).key}; the AFU reads and writes "
                               f"{op.dtype.key} here")
        if not ctx.is_const(r) and r.size != out.size:
            raise NotLowered(f"{who}not lowered: operand {r} is broadcast but not a constant; "
                             f"the AFU reads dense vectors of the result's length")
    olay = ctx.lays[out.buffer]
    rows_idx, c0, w = olay.box_rows(out)
    rows = len(rows_idx)
    full = [r for r in op.inputs if not ctx.is_const(r)] + [out]
    whole = all(ctx.lays[r.buffer].box_rows(r)[1:] == (0, ctx.lays[r.buffer].cols)
                and tuple(r.shape) == tuple(out.shape)
                and ctx.lays[r.buffer].pitch == olay.pitch for r in full)
    if whole:                         # padded rows, padding computed too
        stride = olay.pitch
        count = rows * stride // e
    elif (w * e) % fb == 0 or rows == 1:
        stride = _ceil(w * e, fb)
        count = rows * w
    else:
        raise CodegenError(f"{who}rows of {w} {op.dtype.key} elements are not whole {fb}-byte "
                           f"flits and do not cover whole buffer rows, so they can neither be "
                           f"packed densely nor loaded with their padding")
    region = _ceil(rows * stride, wb)
    operands = []
    for i, r in enumerate(op.inputs):
        if ctx.is_const(r):
            v = np.asarray(_const_array(ctx.g, r)).astype(NP_DTYPE[op.dtype])
            v = (v.reshape(rows, w) if v.size == rows * w
                 else np.broadcast_to(v.reshape(-1), (rows, w)))
            operands.append(_Operand(i, region, blob=_blob_rows(v, rows, stride, region)))
        else:
            operands.append(_Operand(i, region, ref=r, pitch=stride))
    res = _Operand("out", region, ref=out, pitch=stride)
    extra: dict[str, Any] = {}
    if op.op is OpType.ELTWISE:
        func = AfuFunc[_AFU_ELT[op.func]]
    elif op.dtype is DType.BF16:
        func = AfuFunc[_AFU_ACT[op.func]]
        if op.func is ActFunc.LEAKY_RELU:
            extra["alpha"] = act.leaky_relu_alpha_bits(op.attrs.get("alpha", 0.01))
    else:                             # INT8: max(x, zp) or the 256-entry table
        xs, xz = _quant_of(ctx, op, op.inputs[0], "x", who)
        ys, yz = _quant_of(ctx, op, out, "y", who)
        if op.func is ActFunc.RELU and (xs, xz) == (ys, yz):
            func = AfuFunc.RELU
            extra["y_zero_point"] = xz
        else:
            name = "leaky_relu" if op.func in (ActFunc.RELU, ActFunc.LEAKY_RELU) else op.func.value
            alpha = 0.0 if op.func is ActFunc.RELU else float(op.attrs.get("alpha", 0.01))
            func = AfuFunc[_AFU_ACT[op.func if op.func is not ActFunc.RELU
                                    else ActFunc.LEAKY_RELU]]
            table = act.int8_table(name, xs, xz, ys, yz, alpha=alpha)
            blob = np.asarray(table, np.int8).tobytes()
            operands.append(_Operand("table", _ceil(len(blob), wb), blob=blob + bytes(
                _ceil(len(blob), wb) - len(blob))))
    dt = AfuDType.BF16 if op.dtype is DType.BF16 else AfuDType.INT8

    def build(addr):
        args = {"a_addr": addr[0], "out_addr": addr["out"], "count": count, "dtype": dt,
                **extra}
        if op.op is OpType.ELTWISE:
            args["b_addr"] = addr[1]
        if "table" in addr:
            args["table_addr"] = addr["table"]
        return func, args
    return _Plan(operands, res, build, max(ALIGN, wb))


def _lower_afu_convert(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    """DEQUANTIZE (INT8 -> BF16) or QUANTIZE (BF16 -> INT8) on the AFU (module docstring)."""
    from accelpool.spec.units.afu import AfuDType, AfuFunc
    from accelpool.spec.golden import activations as act
    who = _who(op, tile)
    x, out = op.inputs[0], op.outputs[0]
    deq = op.op is OpType.DEQUANTIZE
    in_dt, out_dt = (DType.INT8, DType.BF16) if deq else (DType.BF16, DType.INT8)
    if ctx.dtype(x) is not in_dt:
        if deq and ctx.dtype(x) is DType.INT32:
            raise NotLowered(f"{who}not lowered: the AFU's DEQUANTIZE reads INT8, not INT32 "
                             f"({x})")
        raise CodegenError(f"{who}{x} is {ctx.dtype(x).key}; the AFU's {op.op.name} reads "
                           f"{in_dt.key}")
    if ctx.dtype(out) is not out_dt:
        raise CodegenError(f"{who}{out} is {ctx.dtype(out).key}; the AFU's {op.op.name} "
                           f"writes {out_dt.key}")
    wb = 2 * tile["lanes"]
    olay = ctx.lays[out.buffer]
    rows_idx, _, w = olay.box_rows(out)
    rows = len(rows_idx)
    xrows, _, xw = ctx.lays[x.buffer].box_rows(x)
    if (len(xrows), xw) != (rows, w):
        raise CodegenError(f"{who}operand {x} has {len(xrows)} rows of {xw} elements but the "
                           f"result {out} {rows} of {w}; the AFU converts row for row")
    stride = _ceil(w, ctx.fb)          # elements per scratchpad row: whole flits both sides
    count = rows * stride
    in_pitch, out_pitch = stride * in_dt.bytes, stride * out_dt.bytes
    in_region, out_region = _ceil(rows * in_pitch, wb), _ceil(rows * out_pitch, wb)
    if ctx.is_const(x):
        v = np.asarray(_const_array(ctx.g, x)).astype(NP_DTYPE[in_dt]).reshape(rows, w)
        operand = _Operand(0, in_region, blob=_blob_rows(v, rows, in_pitch, in_region))
    else:
        operand = _Operand(0, in_region, ref=x, pitch=in_pitch)
    res = _Operand("out", out_region, ref=out, pitch=out_pitch)
    zp = int(op.attrs["zero_point"])
    if not -128 <= zp <= 127:
        raise CodegenError(f"{who}zero point {zp} is not an INT8 (-128..127)")
    try:
        if deq:
            func, dt = AfuFunc.DEQUANTIZE, AfuDType.INT8
            extra = {"alpha": act.dequantize_scale_bits(op.attrs["scale"]), "a_zero_point": zp}
        else:
            func, dt = AfuFunc.QUANTIZE, AfuDType.BF16
            mult, shift = act.quantize_args(op.attrs["scale"])
            extra = {"multiplier": mult, "shift": shift, "y_zero_point": zp}
    except ValueError as e:
        raise CodegenError(f"{who}{e}") from None

    def build(addr):
        return func, {"a_addr": addr[0], "out_addr": addr["out"], "count": count,
                      "dtype": dt, **extra}
    return _Plan([operand], res, build, max(ALIGN, wb))


def _lower_gnn(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    from accelpool.spec.units.gnn import GnnFunc
    from accelpool.spec.formats import encode_csr, padded_cols, word_bytes
    who = _who(op, tile)
    lanes = tile["lanes"]
    wb = word_bytes(lanes)
    adj, x = op.inputs
    if not ctx.is_const(adj):
        raise CodegenError(f"{who}the adjacency {adj} must be a constant")
    if ctx.dtype(x) is not DType.BF16:
        raise NotLowered(f"{who}not lowered: the GNN reads BF16 features, not "
                         f"{ctx.dtype(x).key} ({x})")
    rows, nodes = _matrix(adj, who, "adjacency")
    kx, f = _matrix(x, who, "features")
    if kx != nodes:
        raise CodegenError(f"{who}the adjacency {adj} has {nodes} columns but the features "
                           f"{x} have {kx} rows")
    dense = _const_array(ctx.g, adj).reshape(rows, nodes)
    csr = encode_csr((dense != 0).astype(np.float32))
    ptr = csr.indptr.astype("<u4").tobytes()
    idx = csr.indices.astype("<u4").tobytes()
    ptr_b = ptr + bytes(_ceil(len(ptr), wb) - len(ptr))
    idx_b = idx + bytes(max(wb, _ceil(len(idx), wb)) - len(idx))
    fp = padded_cols(f, lanes)
    out = op.outputs[0]
    odt = ctx.dtype(out)
    if odt not in (DType.BF16, DType.FP32):
        raise CodegenError(f"{who}the GNN writes BF16 or FP32, not {odt.key} ({out})")
    o = odt.bytes
    operands = [_Operand("ptr", len(ptr_b), blob=ptr_b), _Operand("idx", len(idx_b), blob=idx_b),
                _Operand("x", _ceil(nodes * fp * 2, wb), ref=x, pitch=fp * 2)]
    if ctx.is_const(x):
        v = np.asarray(_const_array(ctx.g, x)).astype(ml_dtypes.bfloat16).reshape(nodes, f)
        operands[2] = _Operand("x", operands[2].region,
                               blob=_blob_rows(v, nodes, fp * 2, operands[2].region))
    res = _Operand("out", _ceil(rows * fp * o, wb), ref=out, pitch=fp * o)
    func = {AggFunc.SUM: GnnFunc.SUM, AggFunc.MEAN: GnnFunc.MEAN}[op.func]

    def build(addr):
        return func, {"ptr_addr": addr["ptr"], "idx_addr": addr["idx"], "x_addr": addr["x"],
                      "out_addr": addr["out"], "nodes": rows, "features": f,
                      "edges": csr.nnz, "out_bf16": int(odt is DType.BF16)}
    return _Plan(operands, res, build, max(ALIGN, wb))


def _lower_smu(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    """SPMM on the SMU: ``C = A @ B`` with the sparse A a constant, as CSR blobs (module
    docstring); B rows and C rows padded to ``ceil(N/L) * L`` elements."""
    from accelpool.spec.units.smu import SmuFunc
    from accelpool.spec.formats import encode_csr, pack_csr, padded_cols, word_bytes
    who = _who(op, tile)
    lanes = tile["lanes"]
    wb = word_bytes(lanes)
    if op.attrs.get("sparse_operand") != 0:
        raise NotLowered(f"{who}not lowered: the SMU's sparse operand is its left one (A), "
                         f"but this micro-op's sparse operand is B (sparse_operand="
                         f"{op.attrs.get('sparse_operand')!r}); sched.decompose computes such "
                         f"tiles transposed, C^T = B^T A^T")
    if len(op.inputs) > 2:
        raise NotLowered(f"{who}not lowered: the SMU has no accumulator input (every sum "
                         f"starts at +0), but the micro-op adds {op.inputs[2]}")
    a, b = op.inputs[0], op.inputs[1]
    if not ctx.is_const(a):
        raise NotLowered(f"{who}not lowered: the SMU's sparse A {a} must be a constant "
                         f"(encoded as CSR at compile time)")
    for r in (a, b):
        if ctx.dtype(r) is not DType.BF16:
            raise CodegenError(f"{who}the SMU reads BF16 operands, not {ctx.dtype(r).key} ({r})")
    m, k = _matrix(a, who, "A")
    k2, n = _matrix(b, who, "B")
    if k2 != k:
        raise CodegenError(f"{who}A {a} and B {b} do not chain (K {k} != {k2})")
    out = op.outputs[0]
    odt = ctx.dtype(out)
    if odt not in (DType.BF16, DType.FP32):
        raise CodegenError(f"{who}the SMU writes FP32 or BF16, not {odt.key} ({out})")
    csr = encode_csr(np.asarray(_const_array(ctx.g, a)).reshape(m, k))
    ptr_b, nz_b = pack_csr(csr, lanes)
    nz_b = nz_b or bytes(wb)               # no non-zeros: still a (never read) region
    npad = padded_cols(n, lanes)
    operands = [_Operand("ptr", len(ptr_b), blob=ptr_b), _Operand("nz", len(nz_b), blob=nz_b)]
    b_region = _ceil(k * npad * 2, wb)
    if ctx.is_const(b):
        v = np.asarray(_const_array(ctx.g, b)).astype(ml_dtypes.bfloat16).reshape(k, n)
        operands.append(_Operand("b", b_region, blob=_blob_rows(v, k, npad * 2, b_region)))
    else:
        operands.append(_Operand("b", b_region, ref=b, pitch=npad * 2))
    o = odt.bytes
    res = _Operand("out", _ceil(m * npad * o, wb), ref=out, pitch=npad * o)

    def build(addr):
        return SmuFunc.SPMM, {"a_ptr_addr": addr["ptr"], "a_nz_addr": addr["nz"],
                              "b_addr": addr["b"], "c_addr": addr["out"], "m": m, "n": n,
                              "k": k, "nnz": csr.nnz, "out_bf16": int(odt is DType.BF16)}
    return _Plan(operands, res, build, max(ALIGN, wb))


def _lower_ce(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    """CONV on the convolution engine (:mod:`accelpool.hw.ce`).

    The image and the result are channels-last buffers (:func:`channels_last_buffers`), so
    the micro-op's input rows (pixels ``lo..hi`` of its input channels) are the CE's input
    layout and its result rows land where the CE writes them. The golden CONV pads with
    ``pad_value`` (the input zero point) and takes a bias already corrected for it; the CE
    subtracts ``x_zero_point`` from real taps and skips padded ones, so codegen passes
    ``x_zero_point = pad_value`` and the uncorrected bias ``b + pad_value * sum(w)`` (per
    output channel, in INT32 wraparound): the same sums bit for bit."""
    from accelpool.spec.units.ce import WEIGHT_DEPTH, CeFunc
    from accelpool.spec.ce_layout import ConvShape, pack_bias, pack_weights
    who = _who(op, tile)
    ol, il = tile["oc_lanes"], tile["ic_lanes"]
    if op.attrs.get("k_steps", 1) > 1:
        raise NotLowered(f"{who}not lowered: the CE has no partial-sum input, and this "
                         f"convolution is split along its input channels (k_step "
                         f"{op.attrs.get('k_step')} of {op.attrs['k_steps']})")
    if tuple(op.attrs.get("dilations", (1, 1))) != (1, 1):
        raise NotLowered(f"{who}not lowered: the CE has no dilation "
                         f"({op.attrs['dilations']})")
    sh, sw = op.attrs["strides"]
    if sh != sw:
        raise NotLowered(f"{who}not lowered: the CE's stride is one value for both axes, "
                         f"not {sh} x {sw}")
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if op.dtype is not DType.INT8 or ctx.dtype(x) is not DType.INT8:
        raise CodegenError(f"{who}the CE reads INT8 images, not {ctx.dtype(x).key} ({x})")
    odt = ctx.dtype(y)
    if odt not in (DType.INT8, DType.INT32):
        raise CodegenError(f"{who}the CE writes INT8 or INT32, not {odt.key} ({y})")
    for r in (x, y):
        if not ctx.lays[r.buffer].channels_last:
            raise CodegenError(f"{who}{r} is not stored channels-last")
    if not ctx.is_const(w):
        raise CodegenError(f"{who}the CE's weights {w} must be a constant")
    s = op.shape
    shape = ConvShape(c_in=s["IC"], c_out=s["OC"], height=s["H"], width=s["W"],
                      kernel_h=s["KH"], kernel_w=s["KW"], stride=sh,
                      pads=tuple(int(p) for p in op.attrs["pads"]))
    try:
        shape.check(ic_lanes=il, weight_depth=WEIGHT_DEPTH)
    except ValueError as e:
        raise NotLowered(f"{who}not lowered: {e}") from None
    if (shape.out_h, shape.out_w) != (s["OH"], s["OW"]):
        raise CodegenError(f"{who}the output {s['OH']}x{s['OW']} is not what a "
                           f"{shape.height}x{shape.width} image gives ({shape.out_h}x{shape.out_w})")
    wv = np.asarray(_const_array(ctx.g, w)).astype(np.int8).reshape(s["OC"], s["IC"], s["KH"], s["KW"])
    pv = int(op.attrs.get("pad_value", 0))
    if not -128 <= pv <= 127:
        raise CodegenError(f"{who}pad value {pv} is not an INT8")
    bias = np.zeros(s["OC"], np.int64)
    if len(op.inputs) > 2:
        if not ctx.is_const(op.inputs[2]):
            raise NotLowered(f"{who}not lowered: the CE's bias {op.inputs[2]} must be a "
                             f"constant (the CE has no partial-sum input)")
        bias = np.asarray(_const_array(ctx.g, op.inputs[2])).astype(np.int64).reshape(-1)
    bias = bias + pv * wv.astype(np.int64).sum(axis=(1, 2, 3))
    bias = ((bias + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    extra: dict[str, Any] = {"requant": False}
    if odt is DType.INT8:
        mult, shift, zp = _requant(op, who)
        extra = {"requant": True, "multiplier": mult, "shift": shift, "y_zero_point": zp}

    def blob(raw: bytes) -> bytes:
        return raw + bytes(_ceil(len(raw), ALIGN) - len(raw))
    icb, ocb = -(-s["IC"] // il), -(-s["OC"] // ol)
    ob = 1 if extra["requant"] else 4
    operands = [_Operand("x", _ceil(shape.input_bytes(il), ALIGN), ref=x, pitch=icb * il),
                _Operand("w", 0, blob=blob(pack_weights(wv, ol, il))),
                _Operand("bias", 0, blob=blob(pack_bias(bias, ol)))]
    for o in operands[1:]:
        o.region = len(o.blob)
    res = _Operand("out", _ceil(shape.output_bytes(ol, extra["requant"]), ALIGN), ref=y,
                   pitch=ocb * ol * ob)

    def build(addr):
        return CeFunc.CONV, shape.exec_args(in_addr=addr["x"], w_addr=addr["w"],
                                            bias_addr=addr["bias"], out_addr=addr["out"],
                                            bias=True, x_zero_point=pv, **extra)
    return _Plan(operands, res, build, ALIGN)


#: (unit kind, operation) -> lowering of a micro-op into scratchpad regions and one EXEC.
LOWERINGS: dict[tuple[UnitKind, OpType], Callable[[_Ctx, MicroOp, Any], _Plan]] = {
    (UnitKind.DMU, OpType.GEMM): _lower_gemm,
    (UnitKind.DMU, OpType.SPMM): _lower_gemm,
    (UnitKind.LPU, OpType.GEMM): _lower_gemm,
    (UnitKind.AFU, OpType.ACT): _lower_afu,
    (UnitKind.AFU, OpType.ELTWISE): _lower_afu,
    (UnitKind.AFU, OpType.QUANTIZE): _lower_afu_convert,
    (UnitKind.AFU, OpType.DEQUANTIZE): _lower_afu_convert,
    (UnitKind.GNN, OpType.AGGREGATE): _lower_gnn,
    (UnitKind.CE, OpType.CONV): _lower_ce,
    (UnitKind.SMU, OpType.SPMM): _lower_smu,
}

#: Why a placement is not lowered (one sentence each).
_WHY_NOT = {
    UnitKind.MEMORY: "the memory tile's layout engine runs LAYOUT micro-ops only",
}


def _accepted() -> str:
    return ", ".join(f"{o.value} on {k.key}" for k, o in LOWERINGS)


def _plan(ctx: _Ctx, op: MicroOp, tile) -> _Plan:
    low = LOWERINGS.get((tile.kind, op.op))
    if low is None:
        why = _WHY_NOT.get(op.op) or _WHY_NOT.get(tile.kind) or \
            f"no lowering of {op.op.value} on a {tile.kind.key}"
        raise NotLowered(f"{_who(op, tile)}not lowered: {why}. Accepted: {_accepted()}")
    return low(ctx, op, tile)


# -- the memory tile: LAYOUT micro-ops on its layout engine --------------------------------
#
# The memory tile runs its own stream (WAIT / EXEC / SIGNAL / END) and its EXEC reads and
# writes the global memory in place (hw/layout_engine.py, MEMLAYOUT contract): no LOAD,
# STORE or scratchpad. Everything about it is in this section.

def _layout_spec():
    """``(MemFunc, MemArgs)`` of the layout engine (``hw/layout_engine.py``)."""
    from accelpool.spec.units.layout import MemArgs, MemFunc
    return MemFunc, MemArgs


def _even_rows(lay: BufferLayout, ref: TensorRef, who: str, what: str) -> tuple[int, int]:
    """``(byte address of the box's first element, bytes between consecutive box rows)``:
    the engine steps through rows with one pitch, so the box's rows must be evenly spaced."""
    rows, c0, _ = lay.box_rows(ref)
    step = int(rows[1] - rows[0]) if len(rows) > 1 else 1
    if len(rows) > 1 and (np.diff(rows) != step).any():
        raise CodegenError(f"{who}the rows of {what} {ref} are not evenly spaced in "
                           f"{ref.buffer} {list(lay.shape)} (the box cuts an inner dimension), "
                           f"but the layout engine steps through rows with one pitch. "
                           f"Accepted: boxes covering every dimension but the outermost "
                           f"non-1 one and the last")
    return lay.addr + int(rows[0]) * lay.pitch + c0 * lay.elem, step * lay.pitch


def _pad_bits(value: float, dtype: DType) -> int:
    """The raw bits of a padding element of ``dtype`` (little-endian, low bytes)."""
    raw = np.asarray([value]).astype(NP_DTYPE[dtype]).view(np.uint8).tobytes()
    return int.from_bytes(raw, "little")


def layout_shape(op: MicroOp, tile) -> tuple[Any, dict[str, int]]:
    """``(MemFunc, MemArgs shape fields)`` of a LAYOUT im2col or transpose on the memory
    tile's layout engine: everything but the addresses and pitches (what its cycle count
    depends on, :mod:`accelpool.sched.cost.layout`). A copy's EXEC depends on its source's memory
    layout: :func:`layout_exec`.

    Raises
    ------
    NotLowered
        Not a LAYOUT micro-op, a layout function the engine lacks, dilations other than 1.
    CodegenError
        Shapes that do not agree, an element size the engine does not move.
    """
    from accelpool.sched.ir import LayoutFunc
    MemFunc, _ = _layout_spec()
    who = _who(op, tile)
    if op.op is not OpType.LAYOUT:
        raise NotLowered(f"{who}not lowered: {_WHY_NOT[UnitKind.MEMORY]}")
    x, out = op.inputs[0], op.outputs[0]
    e = op.dtype.bytes
    if e not in (1, 2, 4):
        raise CodegenError(f"{who}{op.dtype.key} elements of {e} bytes; the layout engine "
                           f"moves 1-, 2- or 4-byte elements")
    args = {"elem_log2": e.bit_length() - 1}
    if op.func is LayoutFunc.IM2COL:
        xd, cd = x.last_dims(3), out.last_dims(2)
        if xd is None or cd is None:
            raise CodegenError(f"{who}im2col takes one image x[C, H, W] ({x}) to cols[C*kh*kw, "
                               f"OH*OW] ({out}); a leading dimension is not 1")
        c, h, w = xd
        kh, kw = op.attrs["kernel"]
        sh, sw = op.attrs.get("strides", (1, 1))
        pt, pl, pb, pr = op.attrs.get("pads", (0, 0, 0, 0))
        dil = tuple(op.attrs.get("dilations", (1, 1)))
        if any(d != 1 for d in dil):
            raise NotLowered(f"{who}not lowered: dilations {list(dil)}; the layout engine's "
                             f"im2col takes dilation 1 only")
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        if cd != (c * kh * kw, oh * ow):
            raise CodegenError(f"{who}im2col of {list(xd)} with kernel {kh}x{kw}, strides "
                               f"{sh}x{sw}, pads {[pt, pl, pb, pr]} gives [{c * kh * kw}, "
                               f"{oh * ow}], not {list(cd)} ({out})")
        args.update(channels=c, height=h, width=w, kernel_h=kh, kernel_w=kw, stride_h=sh,
                    stride_w=sw, pad_top=pt, pad_left=pl, out_h=oh, out_w=ow,
                    pad_value=_pad_bits(op.attrs.get("pad_value", 0), op.dtype))
        return MemFunc.IM2COL, args
    if op.func is LayoutFunc.TRANSPOSE:
        xd, od = x.last_dims(2), out.last_dims(2)
        if xd is None or od is None or od != xd[::-1]:
            raise CodegenError(f"{who}transpose takes a matrix [R, C] ({x}) to [C, R] ({out})")
        args.update(rows=xd[0], cols=xd[1])
        return MemFunc.TRANSPOSE, args
    if op.func is LayoutFunc.COPY:
        raise CodegenError(f"{who}a copy's EXEC follows its source's memory layout: "
                           f"layout_exec() compiles it (one TRANSPOSE out of a channels-last "
                           f"image)")
    raise NotLowered(f"{who}not lowered: the layout engine has no {op.func}; it runs "
                     f"{', '.join(f.name.lower() for f in MemFunc)}")


def _copy_out_of_channels_last(ctx: _Ctx, op: MicroOp, who: str) -> tuple[Any, dict[str, int]]:
    """A LAYOUT copy of a channels-last image (or a reshape of one) into a row-major
    buffer: the image's one channel block is ``H*W`` pixel rows of ``C`` channels, so the
    copy (channel ``c``'s pixels at row-major element ``c * H * W``) is one TRANSPOSE."""
    MemFunc, _ = _layout_spec()
    x, out = op.inputs[0], op.outputs[0]
    xl, ol = ctx.lays[x.buffer], ctx.lays[out.buffer]
    img = ctx.lays[xl.view_of] if xl.view_of is not None else xl
    if not img.channels_last:
        raise NotLowered(f"{who}not lowered: a copy between row-major buffers ({x} -> "
                         f"{out}); the layout engine copies out of a channels-last image")
    c, hw, blocks = img._img
    if blocks != 1:
        raise NotLowered(f"{who}not lowered: {img.name} holds its {c} channels in {blocks} "
                         f"blocks of {img.block}; one layout-engine TRANSPOSE moves one block")
    whole = lambda r, lay: (tuple(r.offset) == (0,) * len(r.offset)   # noqa: E731
                            and r.size == math.prod(ctx.g.buffers[r.buffer].shape))
    if not (whole(x, xl) and whole(out, ol)) or out.size != c * hw:
        raise NotLowered(f"{who}not lowered: a copy of part of an image ({x} -> {out}); the "
                         f"layout engine copies whole images")
    if ol.channels_last or ol.view_of is not None:
        raise NotLowered(f"{who}not lowered: the copy's result {out} is not row-major")
    e = img.elem
    if ol.cols == hw:                       # one result row per channel
        dst_pitch = ol.pitch
    elif ol.pitch == ol.cols * e:           # unpadded rows: the channels follow each other
        dst_pitch = hw * e
    else:
        raise NotLowered(f"{who}not lowered: the result {out} has padded rows of {ol.cols} "
                         f"elements, which do not hold whole channels of {hw} pixels")
    return MemFunc.TRANSPOSE, {"src_addr": img.addr, "dst_addr": ol.addr,
                               "elem_log2": e.bit_length() - 1, "src_pitch": img.pitch,
                               "dst_pitch": dst_pitch, "rows": hw, "cols": c}


def _lower_layout(ctx: _Ctx, op: MicroOp, tile) -> tuple[Any, dict[str, int]]:
    """``(MemFunc, MemArgs fields)`` of a LAYOUT micro-op on the memory tile's engine."""
    from amaranth.hdl import Shape
    from accelpool.sched.ir import LayoutFunc
    _, MemArgs = _layout_spec()
    who = _who(op, tile)
    x, out = op.inputs[0], op.outputs[0]
    for r in (x, out):
        if ctx.dtype(r) is not op.dtype:
            raise CodegenError(f"{who}{r} is {ctx.dtype(r).key}; the layout engine copies "
                               f"{op.dtype.key} elements unchanged")
    e = op.dtype.bytes
    if op.func is LayoutFunc.COPY:
        func, args = _copy_out_of_channels_last(ctx, op, who)
    else:
        func, shape = layout_shape(op, tile)
        for r in (x, out):
            lay = ctx.lays[r.buffer]
            if lay.channels_last or lay.view_of is not None:
                raise NotLowered(f"{who}not lowered: {r} is stored channels-last (the "
                                 f"convolution engine's layout); the layout engine's "
                                 f"{op.func.value} takes row-major operands")
        src, src_pitch = _even_rows(ctx.lays[x.buffer], x, who, "the source")
        dst, dst_pitch = _even_rows(ctx.lays[out.buffer], out, who, "the result")
        args = {"src_addr": src, "dst_addr": dst, "src_pitch": src_pitch,
                "dst_pitch": dst_pitch, **shape}
    for name, fld in MemArgs:
        width = Shape.cast(fld.shape).width
        if not 0 <= args.get(name, 0) < 1 << width:
            raise CodegenError(f"{who}the layout engine's {name} field ({width} bits) holds "
                               f"0..{(1 << width) - 1}, not {args[name]}")
    for name in ("src_addr", "dst_addr", "src_pitch", "dst_pitch"):
        if args[name] % e:
            raise CodegenError(f"{who}{name} {args[name]:#x} is not a multiple of the "
                               f"{e}-byte element")
    return func, args


def layout_exec(graph: Graph, op: MicroOp, tile, flit_bytes: int) -> tuple[Any, dict[str, int]]:
    """The layout engine's EXEC ``(MemFunc, MemArgs fields)`` :func:`compile_schedule` emits
    for the LAYOUT micro-op ``op`` on the memory tile ``tile`` (buffer layouts for
    ``flit_bytes``): what the cost model prices the memory tile's EXEC with.

    Raises
    ------
    NotLowered, CodegenError
        As :func:`compile_schedule` would for this placement.
    """
    return _lower_layout(_Ctx(graph, _graph_layouts(graph, flit_bytes), flit_bytes), op, tile)


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
        c = _exec_command(UnitKind.MEMORY, func, args, _who(g.op(n), tile))
        exec_at = len(cmds)
        cmds.append(c)
        cmds += signals(n)
        spans.append((n, first, exec_at, len(cmds) - 1))
    cmds.append(isa.end())
    return TileStream(tile, cmds, spans)


# -- streams -----------------------------------------------------------------------------

def _moves(runs: list[tuple[int, int]], spad: int, pitch: int, who: str
           ) -> list[tuple[int, int, int]]:
    """``(spad address, memory address, bytes)`` transfers of rows placed ``pitch`` apart,
    merged where both sides are contiguous."""
    out: list[list[int]] = []
    for i, (addr, n) in enumerate(runs):
        if n > pitch:
            raise CodegenError(f"{who}a row of {n} bytes does not fit the unit's {pitch}-byte "
                               f"row pitch")
        s = spad + i * pitch
        if out and out[-1][1] + out[-1][2] == addr and out[-1][0] + out[-1][2] == s:
            out[-1][2] += n
        else:
            out.append([s, addr, n])
    return [tuple(m) for m in out]


def _graph_layouts(graph: Graph, flit_bytes: int) -> dict[str, BufferLayout]:
    """:func:`_layouts` of ``graph`` for ``flit_bytes``, cached on the graph."""
    lays = graph.__dict__.get("_layouts_fb", {}).get(flit_bytes)
    if lays is None:
        lays = _layouts(graph, flit_bytes)[0]
        graph.__dict__.setdefault("_layouts_fb", {})[flit_bytes] = lays
    return lays


def _exec_command(kind: UnitKind, func: Any, args: Mapping[str, Any], who: str) -> isa.Command:
    """The EXEC command of a micro-op, checked to encode (:class:`CodegenError` if not)."""
    c = isa.exec_cmd(kind, func, **args)
    try:
        c.encode()
    except isa.EncodingError as e:
        raise CodegenError(f"{who}its EXEC does not encode: {e}") from None
    problems = isa.exec_spec(kind).problems(func, args)
    if problems:
        raise CodegenError(f"{who}the {kind.key} unit refuses its EXEC: {'; '.join(problems)}")
    return c


def _operand_runs(lays: Mapping[str, BufferLayout], o: _Operand, fb: int, who: str
                  ) -> list[tuple[int, int]]:
    """Memory runs an operand is loaded from: its own, or its box's rows."""
    return o.runs if o.runs is not None else _row_runs(lays, o.ref, fb, who)


def op_transfers(graph: Graph, op: MicroOp, tile, flit_bytes: int) -> tuple[list[int], list[int]]:
    """The byte lengths of the LOADs and of the STOREs :func:`compile_schedule` emits for
    ``op`` on ``tile`` (operands into the unit's layout, result rows back), without the
    fence: what the cost model charges for moving the micro-op's data.

    Raises
    ------
    NotLowered, CodegenError
        As :func:`compile_schedule` would for this placement.
    """
    cache = graph.__dict__.setdefault("_op_transfers", {})
    key = (op.id, tile.name, flit_bytes)
    hit = cache.get(key)
    if hit is not None:
        return hit
    lays = _graph_layouts(graph, flit_bytes)
    if tile.kind is UnitKind.MEMORY:        # the layout engine works in place: no transfers
        _lower_layout(_Ctx(graph, lays, flit_bytes), op, tile)
        cache[key] = hit = ([], [])
        return hit
    plan = _plan(_Ctx(graph, lays, flit_bytes), op, tile)
    who = _who(op, tile)
    loads: list[int] = []
    for o in plan.operands:
        if o.blob is not None:
            loads.append(len(o.blob))
        else:
            loads += [m[2] for m in _moves(_operand_runs(lays, o, flit_bytes, who), 0,
                                           o.pitch, who)]
    stores = [m[2] for m in _moves(_row_runs(lays, plan.out.ref, flit_bytes, who), 0,
                                   plan.out.pitch, who)]
    cache[key] = hit = (loads, stores)
    return hit


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
    dag = g.dag
    missing = [n for n in dag.nodes if n not in schedule.slots]
    if missing:
        raise CodegenError(f"The schedule does not place micro-op(s) {missing[:5]!r}")
    placement = {n: schedule.slots[n].unit for n in dag.nodes}
    order = schedule.unit_order()
    fb = pool.mesh.flit_bits // 8
    lays, top = _layouts(g, fb)
    ctx = _Ctx(g, lays, fb)
    plans: dict[str, _Plan] = {}
    layout_execs: dict[str, tuple[Any, dict]] = {}     # the memory tile's EXECs
    blobs: dict[tuple[str, Any], bytes] = {}
    for unit_name, seq in order.items():
        tile = pool.unit(unit_name).tile
        if tile.kind is UnitKind.MEMORY:
            layout_execs.update((n, _lower_layout(ctx, g.op(n), tile)) for n in seq)
            continue
        for n in seq:
            p = plans[n] = _plan(ctx, g.op(n), tile)
            for o in p.operands:
                if o.blob is not None:
                    blobs[(n, o.key)] = o.blob
    img = _layout_memory(g, pool, lays, top, blobs, inputs)
    tiles = list(pool.config.tiles)
    tindex = {t.name: i for i, t in enumerate(tiles)}
    mem = pool.memory
    prog = Program(g, schedule, pool, {}, img, lays, placement)

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

    def waits(n: str, consumed: dict[str, int]) -> list[isa.Command]:
        """WAITs for the tokens of ``n``'s producers on other tiles (``consumed``: per
        sender, the signals this tile has waited for so far; updated)."""
        unit_name = placement[n]
        need: dict[str, int] = {}
        for p in dag.predecessors(n):
            s = placement[p]
            if s != unit_name:
                need[s] = max(need.get(s, 0), sig_no[(p, unit_name)] + 1)
        out = []
        for s in sorted(need, key=lambda t: tindex[t]):
            k = need[s] - consumed.get(s, 0)
            if k > 0:
                out.append(isa.wait(token=tindex[s], count=k))
                consumed[s] = need[s]
        return out

    def signals(n: str) -> list[isa.Command]:
        """A SIGNAL to each tile consuming ``n``'s result."""
        return [isa.signal(x=pool.unit(t).tile.x, y=pool.unit(t).tile.y,
                           token=tindex[placement[n]], count=1) for t in consumers_of[n]]

    for unit_name, seq in order.items():
        unit = pool.unit(unit_name)
        tile = unit.tile
        if tile.kind is UnitKind.MEMORY:
            prog.streams[unit_name] = _memory_stream(g, tile, seq, layout_execs, waits, signals)
            continue
        cmds: list[isa.Command] = []
        spans: list[tuple[str, int, int, int]] = []
        consumed: dict[str, int] = {}
        fence_addr = tile.scratchpad_bytes - FENCE_BYTES
        spad = None
        for n in seq:
            op = g.op(n)
            plan = plans[n]
            who = _who(op, tile)
            if spad is None:
                spad = ScratchpadAllocator(fence_addr, f"{tile.name} scratchpad", plan.align)
            first = len(cmds)
            # 1. tokens from producers on other tiles
            cmds += waits(n, consumed)
            # 2. operands into the scratchpad, in the unit's layout
            addrs: dict[Any, int] = {}
            try:
                for o in plan.operands + [plan.out]:
                    addrs[o.key] = spad.alloc((n, o.key), o.region)
            except AllocationError as e:
                raise CodegenError(f"{who}{e}") from None
            for o in plan.operands:
                if o.blob is not None:
                    baddr, nbytes = img.blobs[(n, o.key)]
                    cmds.append(isa.load(spad_addr=addrs[o.key], x=mem.x, y=mem.y,
                                         remote_addr=baddr, length=nbytes))
                else:
                    for s, a, b in _moves(_operand_runs(lays, o, fb, who), addrs[o.key],
                                          o.pitch, who):
                        cmds.append(isa.load(spad_addr=s, x=mem.x, y=mem.y, remote_addr=a,
                                             length=b))
            # 3. compute
            func, args = plan.build(addrs)
            c = _exec_command(tile.kind, func, args, who)
            exec_at = len(cmds)
            cmds.append(c)
            # 4. result rows to memory
            out_moves = _moves(prog.row_runs(plan.out.ref, who), addrs["out"], plan.out.pitch, who)
            for s, a, b in out_moves:
                cmds.append(isa.store(spad_addr=s, x=mem.x, y=mem.y, remote_addr=a, length=b))
            # 5. fence before telling other tiles (a SIGNAL to the memory tile is ordered
            # after the STOREs there already)
            if fence and any(pool.unit(t).kind is not UnitKind.MEMORY for t in consumers_of[n]):
                _, addr, b = out_moves[-1]
                fbytes = min(b, FENCE_BYTES)
                cmds.append(isa.load(spad_addr=fence_addr, x=mem.x, y=mem.y,
                                     remote_addr=addr + b - fbytes, length=fbytes))
            for o in plan.operands + [plan.out]:
                spad.free((n, o.key))
            cmds += signals(n)
            spans.append((n, first, exec_at, len(cmds) - 1))
        cmds.append(isa.end())
        prog.streams[unit_name] = TileStream(tile, cmds, spans)
    return prog
