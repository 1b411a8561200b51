"""Python side of the systolic GEMM scratchpad layout (see :mod:`accelpool.hw.systolic`).

The compiler, the testbenches and the benchmarks place A, B and C in a scratchpad image
and read D back with these functions, so the layout is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GemmLayout", "systolic_word_bytes", "a_pitch"]


def _ceil_to(x: int, q: int) -> int:
    return -(-x // q) * q


def systolic_word_bytes(rows: int, cols: int, in_bytes: int, out_bytes_max: int = 4,
                        acc_bytes: int = 4) -> int:
    """Scratchpad word size (bytes) of an R x C systolic unit (:class:`accelpool.hw.systolic.SystolicGemm`).

    The word holds one B slice (C operands), one C or D row (C accumulators or outputs)
    and at least R operands of an A row (so that R row reads fit in the time the array
    consumes one word of every row); at least 4 bytes.
    """
    return max(rows * in_bytes, cols * in_bytes, cols * out_bytes_max, cols * acc_bytes, 4)


def a_pitch(k: int, elem_bytes: int, word_bytes: int) -> int:
    """Byte stride between rows of A: ``ceil(K*e / word_bytes) * word_bytes``."""
    return _ceil_to(k * elem_bytes, word_bytes)


@dataclass(frozen=True)
class GemmLayout:
    """The layout of one GEMM's operands for an R x C array.

    Parameters
    ----------
    rows, cols : int
        Array size.
    word_bytes : int
        Scratchpad word size; every region starts on a word boundary.
    m, n, k : int
        GEMM shape.
    """

    rows: int
    cols: int
    word_bytes: int
    m: int
    n: int
    k: int

    @property
    def mp(self) -> int:
        """M padded to the array rows."""
        return _ceil_to(self.m, self.rows)

    @property
    def np_(self) -> int:
        """N padded to the array columns."""
        return _ceil_to(self.n, self.cols)

    def a_pitch(self, elem_bytes: int) -> int:
        """Byte stride between rows of A (K elements rounded up to whole words)."""
        return a_pitch(self.k, elem_bytes, self.word_bytes)

    def region_bytes(self, which: str, elem_bytes: int) -> int:
        """Bytes of region ``"a"``, ``"b"``, ``"c"`` or ``"d"`` rounded up to whole words.

        The A region is the M rows of :meth:`a_pitch` bytes the unit reads (rows M..Mp-1
        are never read).
        """
        if which == "a":
            return self.m * self.a_pitch(elem_bytes)
        count = {"b": self.k * self.np_, "c": self.mp * self.np_, "d": self.mp * self.np_}[which]
        return _ceil_to(count * elem_bytes, self.word_bytes)

    def a_image(self, a: np.ndarray, pad_byte: int = 0) -> bytes:
        """A[M,K] row-major, M rows of :meth:`a_pitch` bytes, each row's padding (bytes
        K*e up to the pitch) filled with ``pad_byte`` (the unit never reads it)."""
        e = a.dtype.itemsize
        out = np.full((self.m, self.a_pitch(e)), pad_byte, dtype=np.uint8)
        out[:, :self.k * e] = np.ascontiguousarray(a).view(np.uint8).reshape(self.m, self.k * e)
        return out.tobytes()

    def b_image(self, b: np.ndarray) -> bytes:
        """B[K,N] stored K x Np row-major (padding zero)."""
        out = np.zeros((self.k, self.np_), dtype=b.dtype)
        out[:, :self.n] = b
        return self._pad(out.tobytes())

    def c_image(self, c: np.ndarray) -> bytes:
        """C[M,N] (or D) stored Mp x Np row-major (padding zero)."""
        out = np.zeros((self.mp, self.np_), dtype=c.dtype)
        out[:self.m, :self.n] = c
        return self._pad(out.tobytes())

    def d_from_image(self, image: bytes, dtype) -> np.ndarray:
        """D[M,N] read back from its Mp x Np row-major region."""
        dt = np.dtype(dtype)
        full = np.frombuffer(image[:self.mp * self.np_ * dt.itemsize], dtype=dt)
        return full.reshape(self.mp, self.np_)[:self.m, :self.n].copy()

    def _pad(self, raw: bytes) -> bytes:
        return raw + bytes(_ceil_to(len(raw), self.word_bytes) - len(raw))
