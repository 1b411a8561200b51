"""Scratchpad data formats of the sparse units (SMU, GNN) and their Python encoders.

The compiler lays operands out with these functions; the hardware (``hw/smu.py``,
``hw/gnn.py``) reads exactly this layout. Everything is little-endian: byte ``b`` of a
scratchpad word is bits ``8b .. 8b+7``, and a scratchpad of ``word_bytes``-byte words
holds byte address ``a`` in word ``a // word_bytes``.

Word width
    A sparse unit with ``L`` lanes uses scratchpad words of ``L`` BF16 elements
    (``word_bytes = 2 * L``: 128 bytes for the SMU's 64 lanes, 16 bytes for the GNN's 8),
    so one read delivers one lane-wide slice of a dense row. ``L`` is a power of two >= 2.

CSR (sparse A of the SMU, adjacency of the GNN)
    Two arrays, each starting on a word boundary:

    ``ptr``  ``rows + 1`` little-endian ``uint32``: ``ptr[0] = 0``, ``ptr[i+1] - ptr[i]``
             = non-zeros of row ``i``, ``ptr[rows] = nnz`` (scipy's ``indptr``).
    ``nz``   ``nnz`` little-endian ``uint32`` entries, row by row, columns ascending within
             a row: bits 0..15 the column index, bits 16..31 the BF16 value (the GNN
             ignores the value: an adjacency's entries are neighbour indices).

    Each array is padded with zero bytes to whole words. Entries per word: ``L / 2``.

Dense row-major with padded rows (B of the SMU, node features X of the GNN)
    A ``[R, N]`` BF16 matrix is stored row-major with every row padded to
    ``ceil(N / L) * L`` elements (zero padding; the hardware never uses the pad), so
    element ``(r, j)`` is at byte ``base + (r * ceil(N/L) + j // L) * word_bytes + 2*(j % L)``.

Results (C of the SMU, aggregated features of the GNN)
    ``[R, N]``, row-major, rows padded to ``ceil(N / L) * L`` elements, in the format the
    EXEC's ``out_bf16`` flag selects (element size ``e`` = 4 bytes FP32, 2 bytes BF16;
    row pitch ``ceil(N/L) * L * e`` bytes): element ``(r, j)`` at byte
    ``base + r * ceil(N/L) * L * e + j * e``; so FP32 rows take two words per ``L``
    elements, BF16 rows one. The hardware writes only the bytes of real elements (byte
    enables); pad bytes keep whatever they held.

The decoders (:func:`unpack_csr`, :func:`unpack_dense_rows`, :func:`unpack_fp32_rows`,
:func:`unpack_bf16_rows`, :func:`pack_result_rows`) are the encoders' inverses, used by
the functional models (:mod:`accelpool.sched.unitsim_sparse`) to read a scratchpad image.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
import scipy.sparse

__all__ = ["check_lanes", "word_bytes", "CsrMatrix", "encode_csr", "pack_csr", "unpack_csr",
           "SparseJob", "layout_spmm", "layout_gnn", "pack_dense_rows", "unpack_dense_rows",
           "unpack_fp32_rows", "unpack_bf16_rows", "pack_result_rows", "result_elem_bytes",
           "result_row_bytes", "padded_cols", "MemoryImage"]

#: Largest column index a CSR entry can hold (16 bits).
MAX_COLS = 1 << 16
#: Largest row count the units take (16-bit EXEC fields).
MAX_ROWS = (1 << 16) - 1


def check_lanes(lanes: int) -> int:
    """Check a lane count: a power of two, at least 2 (two FP32 results fill one word pair)."""
    if isinstance(lanes, bool) or not isinstance(lanes, int):
        raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
    if lanes < 2 or lanes & (lanes - 1):
        raise ValueError(f"Lane count must be a power of two of at least 2, not {lanes!r}")
    return lanes


def word_bytes(lanes: int) -> int:
    """Scratchpad word size in bytes of a sparse unit with ``lanes`` lanes (``2 * lanes``)."""
    return 2 * check_lanes(lanes)


def padded_cols(n: int, lanes: int) -> int:
    """``n`` rounded up to a whole number of lane-wide slices."""
    return -(-n // lanes) * lanes


def result_elem_bytes(out_bf16: bool) -> int:
    """Bytes of one result element: 2 (BF16) or 4 (FP32)."""
    return 2 if out_bf16 else 4


def result_row_bytes(cols: int, lanes: int, out_bf16: bool = False) -> int:
    """Row pitch in bytes of a ``cols``-wide result: ``ceil(cols/L) * L`` elements."""
    return padded_cols(cols, lanes) * result_elem_bytes(out_bf16)


@dataclass(frozen=True)
class CsrMatrix:
    """A sparse matrix in the units' CSR form.

    Attributes
    ----------
    shape : (rows, cols)
    indptr : numpy.ndarray of int64, [rows + 1]
    indices : numpy.ndarray of int64, [nnz], ascending within each row
    values : numpy.ndarray of uint16, [nnz], BF16 encodings
    """

    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def row_nnz(self) -> np.ndarray:
        """Non-zeros of each row."""
        return np.diff(self.indptr)

    def to_dense(self) -> np.ndarray:
        """The matrix as a dense BF16 array (absent entries +0)."""
        bits = np.zeros(self.shape, dtype=np.uint16)
        rows = np.repeat(np.arange(self.shape[0]), self.row_nnz)
        bits[rows, self.indices] = self.values
        return bits.view(ml_dtypes.bfloat16)


def encode_csr(a) -> CsrMatrix:
    """Encode a matrix for the SMU/GNN.

    Parameters
    ----------
    a : dense array_like (converted to BF16 with round-to-nearest-even) or scipy.sparse matrix
        For a dense array, the entries whose value is zero (+0 or -0) are dropped; a sparse
        matrix keeps its stored entries (explicit zeros included), its values rounded to
        BF16 and duplicates summed first (scipy's ``sum_duplicates``).

    Returns
    -------
    CsrMatrix

    Raises
    ------
    ValueError
        If the matrix is not 2-D, has more than 65535 rows or 65536 columns.
    """
    if scipy.sparse.issparse(a):
        csr = scipy.sparse.csr_array(a, dtype=np.float32)
        csr.sum_duplicates()
        csr.sort_indices()
        shape = csr.shape
        indptr, indices = csr.indptr.astype(np.int64), csr.indices.astype(np.int64)
        values = np.asarray(csr.data, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
    else:
        dense = np.asarray(a)
        if dense.ndim != 2:
            raise ValueError(f"A sparse operand must be a 2-D matrix, not of shape {dense.shape}")
        bits = dense.astype(ml_dtypes.bfloat16).view(np.uint16)
        mask = (bits & 0x7FFF) != 0
        shape = dense.shape
        pattern = scipy.sparse.csr_array(mask.astype(np.int8))
        pattern.sort_indices()
        indptr, indices = pattern.indptr.astype(np.int64), pattern.indices.astype(np.int64)
        rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
        values = bits[rows, indices]
    if len(shape) != 2:
        raise ValueError(f"A sparse operand must be a 2-D matrix, not of shape {shape}")
    if shape[0] > MAX_ROWS or shape[1] > MAX_COLS:
        raise ValueError(f"A sparse operand may have at most {MAX_ROWS} rows and {MAX_COLS} "
                         f"columns, not {shape[0]}x{shape[1]}")
    return CsrMatrix((int(shape[0]), int(shape[1])), indptr, indices, values.astype(np.uint16))


def _pad(raw: bytes, wb: int) -> bytes:
    return raw + bytes(-len(raw) % wb)


def pack_csr(csr: CsrMatrix, lanes: int) -> tuple[bytes, bytes]:
    """The ``ptr`` and ``nz`` arrays of ``csr`` as scratchpad bytes, each padded to whole words."""
    wb = word_bytes(lanes)
    ptr = csr.indptr.astype("<u4").tobytes()
    entries = (csr.indices.astype(np.uint32) | (csr.values.astype(np.uint32) << 16)).astype("<u4")
    return _pad(ptr, wb), _pad(entries.tobytes(), wb)


def unpack_csr(ptr_raw: bytes, nz_raw: bytes, rows: int, cols: int) -> CsrMatrix:
    """The CSR matrix held in the ``ptr`` and ``nz`` arrays (the inverse of :func:`pack_csr`).

    ``ptr_raw`` holds at least ``rows + 1`` entries, ``nz_raw`` at least ``ptr[rows]``.

    Raises
    ------
    ValueError
        If ``ptr`` does not start at 0, decreases, or points past ``nz_raw``, or a column
        index is not below ``cols``.
    """
    ptr = np.frombuffer(ptr_raw, dtype="<u4", count=rows + 1).astype(np.int64)
    if ptr[0] != 0 or (np.diff(ptr) < 0).any():
        raise ValueError(f"A CSR ptr array must start at 0 and never decrease, not "
                         f"{ptr[:8].tolist()}{' ...' if rows > 7 else ''}")
    nnz = int(ptr[-1])
    if 4 * nnz > len(nz_raw):
        raise ValueError(f"A CSR ptr array points to {nnz} entries; {len(nz_raw) // 4} are given")
    entries = np.frombuffer(nz_raw, dtype="<u4", count=nnz)
    indices = (entries & 0xFFFF).astype(np.int64)
    if nnz and indices.max() >= cols:
        row = int(np.searchsorted(ptr, int(np.argmax(indices >= cols)), side="right")) - 1
        raise ValueError(f"CSR row {row} holds column {int(indices.max())}; the matrix has "
                         f"{cols} columns")
    return CsrMatrix((rows, cols), ptr, indices, (entries >> 16).astype(np.uint16))


def pack_dense_rows(x, lanes: int) -> bytes:
    """A ``[R, N]`` matrix as BF16 rows padded to whole words (the B / X layout)."""
    bits = np.asarray(x).astype(ml_dtypes.bfloat16).view(np.uint16)
    if bits.ndim != 2:
        raise ValueError(f"A dense operand must be a 2-D matrix, not of shape {bits.shape}")
    r, n = bits.shape
    out = np.zeros((r, padded_cols(n, lanes)), dtype="<u2")
    out[:, :n] = bits
    return out.tobytes()


def unpack_dense_rows(raw: bytes, rows: int, cols: int, lanes: int) -> np.ndarray:
    """BF16 encodings (``uint16`` ``[rows, cols]``) of a matrix in the B / X layout."""
    pc = padded_cols(cols, lanes)
    arr = np.frombuffer(raw[:rows * pc * 2], dtype="<u2").reshape(rows, pc)
    return arr[:, :cols].astype(np.uint16)


def unpack_fp32_rows(raw: bytes, rows: int, cols: int, lanes: int) -> np.ndarray:
    """FP32 encodings (``uint32`` ``[rows, cols]``) of a result written in the padded-row layout."""
    pc = padded_cols(cols, lanes)
    arr = np.frombuffer(raw[:rows * pc * 4], dtype="<u4").reshape(rows, pc)
    return arr[:, :cols].astype(np.uint32)


def unpack_bf16_rows(raw: bytes, rows: int, cols: int, lanes: int) -> np.ndarray:
    """BF16 encodings (``uint16`` ``[rows, cols]``) of a BF16 result (``out_bf16``)."""
    return unpack_dense_rows(raw, rows, cols, lanes)


def pack_result_rows(bits, lanes: int) -> list[tuple[int, bytes]]:
    """A result's real elements as ``(byte offset, bytes)`` runs of the padded-row layout.

    ``bits`` are ``uint32`` (FP32) or ``uint16`` (BF16) encodings ``[rows, cols]``; the
    offsets are from the result's base address, one run per row (all rows in one run
    when there is no padding). Pad bytes are in no run: the hardware leaves them alone.
    """
    bits = np.asarray(bits)
    if bits.ndim != 2 or bits.dtype not in (np.uint16, np.uint32):
        raise ValueError(f"A result must be a 2-D uint16 or uint32 array, not "
                         f"{bits.dtype} of shape {bits.shape}")
    rows, cols = bits.shape
    if rows == 0 or cols == 0:
        return []
    le = bits.astype(bits.dtype.newbyteorder("<"))
    pitch = padded_cols(cols, lanes) * bits.dtype.itemsize
    if pitch == cols * bits.dtype.itemsize:
        return [(0, le.tobytes())]
    return [(r * pitch, le[r].tobytes()) for r in range(rows)]


class MemoryImage:
    """A scratchpad image being laid out: word-aligned regions appended one after another.

    Parameters
    ----------
    lanes : int
        The unit's lane count (sets the word size).
    base : int
        First byte address to use (rounded up to a word).
    """

    def __init__(self, lanes: int, base: int = 0):
        self.word_bytes = word_bytes(lanes)
        self.lanes = lanes
        #: First byte address of the image's contents (``base`` rounded up to a word).
        self.start = -(-base // self.word_bytes) * self.word_bytes
        self._buf = bytearray(self.start)

    def put(self, raw: bytes) -> int:
        """Append ``raw`` on a word boundary; return its byte address."""
        addr = len(self._buf)
        self._buf += _pad(bytes(raw), self.word_bytes)
        return addr

    def reserve(self, nbytes: int) -> int:
        """Reserve ``nbytes`` zero bytes on a word boundary; return their byte address."""
        return self.put(bytes(nbytes))

    @property
    def data(self) -> bytes:
        """Bytes 0 .. end of the image (zeros below :attr:`start`)."""
        return bytes(self._buf)

    @property
    def contents(self) -> bytes:
        """Bytes :attr:`start` .. end: what a loader writes at byte address ``start``."""
        return bytes(self._buf[self.start:])

    def words(self) -> list[int]:
        """The image as scratchpad words (integers)."""
        wb = self.word_bytes
        return [int.from_bytes(self._buf[i:i + wb], "little") for i in range(0, len(self._buf), wb)]


@dataclass(frozen=True)
class SparseJob:
    """A sparse unit's operands laid out in a scratchpad image, and its EXEC arguments.

    Attributes
    ----------
    image : MemoryImage
        Operands (and the result region, filled with ``out_fill``) at word-aligned byte
        addresses.
    args : dict
        EXEC argument values (byte addresses, sizes, ``out_bf16``) for ``isa.exec_cmd``.
    out_addr : int
        Byte address of the result.
    out_shape : (rows, cols)
    out_bf16 : bool
        The result is BF16 (else FP32).
    """

    image: MemoryImage
    args: dict
    out_addr: int
    out_shape: tuple[int, int]
    out_bf16: bool = False

    @property
    def out_bytes(self) -> int:
        """Bytes of the result region (pad elements included)."""
        rows, cols = self.out_shape
        return rows * result_row_bytes(cols, self.image.lanes, self.out_bf16)

    def read_result(self, memory: bytes) -> np.ndarray:
        """The result's encodings from a scratchpad dump (byte 0 = address 0): ``uint32``
        FP32 encodings, or ``uint16`` BF16 encodings when :attr:`out_bf16`."""
        rows, cols = self.out_shape
        raw = memory[self.out_addr:self.out_addr + self.out_bytes]
        unpack = unpack_bf16_rows if self.out_bf16 else unpack_fp32_rows
        return unpack(raw, rows, cols, self.image.lanes)


def _layout(csr: CsrMatrix, dense, lanes: int, base: int, out_fill: int, out_bf16: bool):
    dense = np.asarray(dense)
    if dense.ndim != 2 or dense.shape[0] != csr.shape[1]:
        raise ValueError(f"The dense operand must be [{csr.shape[1]}, N] for a sparse operand "
                         f"of shape {csr.shape}, not {dense.shape}")
    img = MemoryImage(lanes, base)
    ptr, nz = pack_csr(csr, lanes)
    a_ptr, a_nz = img.put(ptr), img.put(nz)
    a_dense = img.put(pack_dense_rows(dense, lanes))
    rows, cols = csr.shape[0], dense.shape[1]
    a_out = img.put(bytes([out_fill]) * (rows * result_row_bytes(cols, lanes, out_bf16)))
    return img, a_ptr, a_nz, a_dense, a_out, rows, cols


def layout_spmm(a, b, lanes: int, base: int = 0, out_fill: int = 0,
                out_bf16: bool = False) -> SparseJob:
    """Lay out an SMU product ``A @ B`` (A: anything :func:`encode_csr` takes, B: [K, N]).

    The image holds, in order, A's ``ptr``, A's ``nz``, B and C's region (filled with
    ``out_fill`` bytes; FP32, or BF16 with ``out_bf16``); ``args`` are the
    :data:`accelpool.spec.units.smu.SmuArgs` values.
    """
    csr = a if isinstance(a, CsrMatrix) else encode_csr(a)
    img, p, z, d, o, rows, cols = _layout(csr, b, lanes, base, out_fill, out_bf16)
    args = dict(a_ptr_addr=p, a_nz_addr=z, b_addr=d, c_addr=o, m=rows, n=cols,
                k=csr.shape[1], nnz=csr.nnz, out_bf16=int(out_bf16))
    return SparseJob(img, args, o, (rows, cols), bool(out_bf16))


def layout_gnn(adj, x, lanes: int, base: int = 0, out_fill: int = 0,
               out_bf16: bool = False) -> SparseJob:
    """Lay out a GNN aggregation over adjacency ``adj`` ([nodes, K]) of features ``x`` ([K, F]).

    The image holds the adjacency's ``ptr`` and ``nz`` (neighbour indices, rows of X), X
    and the output region (FP32, or BF16 with ``out_bf16``); ``args`` are the
    :data:`accelpool.spec.units.gnn.GnnArgs` values.
    """
    csr = adj if isinstance(adj, CsrMatrix) else encode_csr(adj)
    img, p, z, d, o, rows, cols = _layout(csr, x, lanes, base, out_fill, out_bf16)
    args = dict(ptr_addr=p, idx_addr=z, x_addr=d, out_addr=o, nodes=rows, features=cols,
                edges=csr.nnz, out_bf16=int(out_bf16))
    return SparseJob(img, args, o, (rows, cols), bool(out_bf16))
