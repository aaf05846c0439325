"""Pairwise comparison of two backends' arrays: metrics, verdict, and a message.

Comparisons produce records; nothing here raises on a mismatch. The edges (CLI
exit code, pytest assertions) turn records into failures.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .tolerances import Tolerance, is_finite_difference

Array = np.ndarray


@dataclass(frozen=True)
class Comparison:
    """One case × quantity × backend pair."""

    case: str
    quantity: str
    a: str
    b: str
    kind: str  # tolerance row: analytic or finite_difference
    dtype: str
    max_abs: float  # max |a − b|
    max_rel: float  # max |a − b| / max(|a|, |b|) over elements where either is non-zero
    norm_rel: float  # ‖a − b‖ / (‖a‖ + ‖b‖), 0 when both are zero
    index: tuple[int, ...]  # where |a − b| / allowed is largest
    a_at: float  # a and b at that index
    b_at: float
    allowed_at: float  # the tolerance at that index
    n_off: int  # elements out of tolerance
    n_checked: int  # elements compared (fewer than n_total when a backend sampled)
    n_total: int
    rtol: float
    atol: float
    scale: float  # s in atol·s
    floor: float  # the rounding allowance at the worst element (rounding.py)
    tol_used: float  # max |a − b| / allowed: below 1 passes; the margin is 1 / tol_used
    passed: bool
    note: str = ""  # e.g. non-finite values, or shape mismatch

    @property
    def pair(self) -> str:
        return f"{self.a}-vs-{self.b}"

    def message(self) -> str:
        """Where and how much, in one line."""
        head = f"{self.case} {self.quantity} {self.a} vs {self.b}"
        if self.note and (not np.isfinite(self.max_abs) or not self.n_checked):
            return f"{head}: {self.note}"
        pct = 100 * self.n_off / max(self.n_checked, 1)
        at = f" at index {self.index}" if self.index else ""
        return (f"{head}: {self.n_off} / {self.n_checked} elements off ({pct:.1f}%); worst element"
                f"{at}: |{self.a_at:.6g} − {self.b_at:.6g}| = {abs(self.a_at - self.b_at):.3g} "
                f"(allowed {self.allowed_at:.3g}: rtol {self.rtol:g}, atol {self.atol:g} × scale "
                f"{self.scale:.3g}{f' + rounding floor {self.floor:.2g}' if self.floor else ''}; {self._used()}); max abs diff {self.max_abs:.3g}, norm-rel {self.norm_rel:.3g}"
                + (f"; {self.note}" if self.note else ""))

    def _used(self) -> str:
        if self.tol_used <= 1:
            return f"{100 * self.tol_used:.3g}% of it used"
        return f"{self.tol_used:.3g}× the tolerance"

    def as_row(self) -> dict:
        row = {f.name: getattr(self, f.name) for f in fields(self)}  # flat: asdict's deep copy is slow
        row["pair"] = self.pair
        row["index"] = "" if not self.index else "(" + ",".join(map(str, self.index)) + ")"
        return row


def compare(case: str, quantity: str, a_name: str, a: Array, b_name: str, b: Array,
            kind: str, dtype: str, tol: Tolerance, J_scale: float = 0.0,
            floor: float | Array = 0.0) -> Comparison:
    """Compare two arrays of one quantity. Masked elements (not computed) are skipped.

    ``J_scale`` (|J|) joins the scale s for finite-difference pairs: their round-off
    is about ε|J|/h per element whatever the size of the gradient itself. ``floor`` is an
    absolute allowance per element (scalar or the array's shape): the rounding a correct
    implementation may make on this case (see rounding.py).
    """
    base = dict(case=case, quantity=quantity, a=a_name, b=b_name, kind=kind, dtype=dtype,
                rtol=tol.rtol, atol=tol.atol, n_total=int(np.size(a)))
    if np.shape(a) != np.shape(b):
        return Comparison(**base, max_abs=np.inf, max_rel=np.inf, norm_rel=np.inf, index=(),
                          a_at=np.nan, b_at=np.nan, allowed_at=0.0, n_off=int(np.size(a)),
                          n_checked=0, scale=0.0, floor=0.0, tol_used=np.inf, passed=False,
                          note=f"shape {np.shape(a)} vs {np.shape(b)}")
    x = np.asarray(np.ma.getdata(a), dtype=np.float64)
    y = np.asarray(np.ma.getdata(b), dtype=np.float64)
    masked = np.ma.is_masked(a) or np.ma.is_masked(b)
    use = ~(np.ma.getmaskarray(a) | np.ma.getmaskarray(b)) if masked else None
    n_checked = int(use.sum()) if masked else x.size
    if masked:  # masked elements (not computed) take no part: zero in both
        x, y = np.where(use, x, 0.0), np.where(use, y, 0.0)

    with np.errstate(invalid="ignore", over="ignore"):  # inf − inf, overflow: looked at below
        d = x - y
        dd = float(np.vdot(d, d))  # ‖a − b‖², and one cheap test that every element is finite
    if not np.isfinite(dd) and not (np.isfinite(x).all() and np.isfinite(y).all()):
        both = use if masked else np.ones(x.shape, dtype=bool)
        nonfinite = [(name, int((~np.isfinite(v) & both).sum())) for name, v in ((a_name, x), (b_name, y))]
        nonfinite = [(n, c) for n, c in nonfinite if c]
        where = ", ".join(f"{c} non-finite in {n}" for n, c in nonfinite)
        bad = ~(np.isfinite(x) & np.isfinite(y)) & both
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return Comparison(**base, max_abs=np.inf, max_rel=np.inf, norm_rel=np.inf, index=idx,
                          a_at=float(x[idx]), b_at=float(y[idx]), allowed_at=0.0,
                          n_off=int(bad.sum()), n_checked=n_checked, scale=0.0, floor=0.0, tol_used=np.inf,
                          passed=False,
                          note=f"{where} (NaN/Inf, not a disagreement of values)")

    diff = np.abs(d)
    mag = np.maximum(np.abs(x), np.abs(y))
    scale = float(mag.max()) if mag.size else 0.0
    if is_finite_difference(kind):
        scale = max(scale, abs(J_scale))
    allowed = tol.rtol * mag + tol.atol * scale
    if np.ndim(floor) or floor:
        allowed = allowed + np.nan_to_num(np.asarray(floor, dtype=np.float64), posinf=np.inf)
    tiny = np.finfo(np.float64).tiny  # x/max(0, tiny): 0 where both are exactly zero
    off = diff > np.maximum(allowed, tiny)  # an underflowed allowance still admits denormal noise
    if masked:
        off &= use
    with np.errstate(over="ignore"):
        rel = diff / np.maximum(mag, tiny)
        used = diff / np.maximum(allowed, tiny)
    if np.isfinite(dd) and dd < 1e300:
        norm_a, norm_b = float(np.sqrt(np.vdot(x, x))), float(np.sqrt(np.vdot(y, y)))
        norm_d = float(np.sqrt(dd))
    else:  # squares overflow: the norms of the arrays scaled down first
        k = max(scale, 1.0)
        norm_a, norm_b, norm_d = (k * float(np.linalg.norm(v / k)) for v in (x, y, diff))
    norm_rel = norm_d / (norm_a + norm_b) if norm_a + norm_b > 0 else 0.0
    if n_checked:
        flat = int(np.argmax(np.where(use, used, -1.0) if masked else used))
        idx = tuple(int(i) for i in np.unravel_index(flat, np.shape(x)))
    else:
        idx = ()
    pick = (lambda v: float(np.broadcast_to(v, np.shape(x))[idx])) if n_checked else (lambda v: np.nan)
    return Comparison(**base, max_abs=float(diff.max(initial=0.0)), max_rel=float(rel.max(initial=0.0)),
                      norm_rel=norm_rel, index=idx, a_at=pick(x), b_at=pick(y),
                      allowed_at=pick(allowed), n_off=int(np.count_nonzero(off)), n_checked=n_checked,
                      scale=scale, floor=pick(np.asarray(floor, dtype=np.float64)),
                      tol_used=float(used.max(initial=0.0)),
                      passed=not np.count_nonzero(off),
                      note="" if n_checked or not x.size else
                      "nothing compared: every element masked (not computed, or inconclusive)")


def fmt(x: float) -> str:
    """A difference or tolerance as report tables show it: 3.1e-08, 0, inf."""
    if not np.isfinite(x):
        return "inf" if x > 0 else str(x)
    return "0" if x == 0 else f"{x:.1e}"
