"""The one output comparator: golden against onnxruntime, RTL and the functional executor
against the golden run.

``|got - want| <= atol + atol_frac * max|finite want| + rtol * |want|``, element by element,
with non-finite values compared as values, never as bounds:

- NaN matches NaN (in the same place); a NaN on one side only is a mismatch;
- +Inf matches +Inf and -Inf matches -Inf; anything else against an infinity is a mismatch;
- the output's scale is the largest *finite* reference magnitude, so an infinity in the
  reference never widens the bound of the other elements.

With ``bitwise=True`` the elements must have the same bit pattern (the units' arithmetic is
reproduced exactly), which also tells a NaN's payload and the sign of zero apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mismatch", "compare_arrays"]


@dataclass(frozen=True)
class Mismatch:
    """The comparison of one output: whether it passed, and its worst element.

    ``index`` is the worst element's index (``None`` for an empty output or a shape
    mismatch), ``got``/``want`` its two values, ``error`` its absolute difference (``inf``
    where non-finite values disagree), ``bound`` its allowed difference, ``scale`` the
    largest finite reference magnitude.
    """

    name: str
    ok: bool
    error: float
    bound: float
    scale: float
    index: tuple[int, ...] | None = None
    got: float | None = None
    want: float | None = None
    shape_problem: str = ""

    def where(self) -> str:
        """``worst at [i, j]: got g, want w (bound b)``, or the shape problem."""
        if self.shape_problem:
            return self.shape_problem
        if self.index is None:
            return "no elements"
        return (f"worst at {list(self.index)}: got {self.got!r}, want {self.want!r} "
                f"(|difference| {self.error:.6g}, bound {self.bound:.6g})")


def compare_arrays(name: str, got, want, *, atol: float = 0.0, rtol: float = 0.0,
                   atol_frac: float = 0.0, bitwise: bool = False) -> Mismatch:
    """Compare ``got`` with the reference ``want`` (see the module docstring).

    Parameters
    ----------
    name : str
        The output's name, carried into the result.
    got, want : array_like
        Same number of elements; ``got`` is reshaped to ``want``'s shape.
    atol, rtol, atol_frac : float
        Absolute, relative and scale-relative tolerance (ignored with ``bitwise``).
    bitwise : bool
        Require identical bit patterns (``got`` cast to ``want``'s dtype first).
    """
    w = np.asarray(want)
    g = np.asarray(got)
    if g.size != w.size:
        return Mismatch(name, False, float("inf"), 0.0, 0.0,
                        shape_problem=f"shape {list(g.shape)} against {list(w.shape)}")
    g = g.reshape(w.shape)
    wf = w.astype(np.float64)
    gf = g.astype(np.float64)
    finite_w = np.isfinite(wf)
    scale = float(np.abs(wf[finite_w]).max()) if finite_w.any() else 0.0
    with np.errstate(invalid="ignore"):
        err = np.abs(gf - wf)
    both_nan = np.isnan(gf) & np.isnan(wf)
    same_inf = np.isinf(gf) & np.isinf(wf) & (np.sign(gf) == np.sign(wf))
    err = np.where(both_nan | same_inf, 0.0, err)
    err = np.where(np.isnan(err), np.inf, err)
    if bitwise:
        gb = np.ascontiguousarray(g.astype(w.dtype))
        wb = np.ascontiguousarray(w)
        item = wb.dtype.itemsize
        view = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[item]
        differs = gb.view(view) != wb.view(view)
        bound = np.zeros(w.shape)
        # a differing bit pattern of equal value (-0 and +0, NaN payloads) still fails
        err = np.where(differs & (err == 0), np.finfo(np.float64).tiny, err)
        err = np.where(differs, err, 0.0)
        bad = differs
    else:
        bound = atol + atol_frac * scale + rtol * np.where(finite_w, np.abs(wf), 0.0)
        bad = err > bound
    ok = not bool(bad.any())
    if w.size == 0:
        return Mismatch(name, True, 0.0, 0.0, scale)
    excess = np.where(bad, err - bound, -np.inf) if not ok else err - bound
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(excess)), w.shape))
    return Mismatch(name, ok, float(err[idx]), float(bound[idx]), scale, idx,
                    g[idx].item(), w[idx].item())
