"""Python side of the systolic GEMM scratchpad layout (see :mod:`hw.systolic`).

The compiler, the testbenches and the benchmarks place A, B and C in a scratchpad image
and read D back with these functions, so the layout is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GemmLayout"]


def _ceil_to(x: int, q: int) -> int:
    return -(-x // q) * q


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

    def region_bytes(self, which: str, elem_bytes: int) -> int:
        """Bytes of region ``"a"``, ``"b"``, ``"c"`` or ``"d"`` rounded up to whole words."""
        count = {"a": self.k * self.mp, "b": self.k * self.np_,
                 "c": self.mp * self.np_, "d": self.mp * self.np_}[which]
        return _ceil_to(count * elem_bytes, self.word_bytes)

    def a_image(self, a: np.ndarray) -> bytes:
        """A[M,K] stored transposed, K x Mp row-major (padding zero)."""
        out = np.zeros((self.k, self.mp), dtype=a.dtype)
        out[:, :self.m] = a.T
        return self._pad(out.tobytes())

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
