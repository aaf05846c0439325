"""Pairwise comparison of two backends' arrays: metrics, verdict, and a message.

Comparisons produce records; nothing here raises on a mismatch. The edges (CLI
exit code, pytest assertions) turn records into failures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
    tol_used: float  # max |a − b| / allowed: at most 1 passes (the report's margin, html_report.margins)
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


_TINY = np.finfo(np.float64).tiny  # x/max(0, tiny): 0 where both are exactly zero
_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# One pair of a ``compare_pairs`` call: the names of its two arrays, the tolerance kind and
# row, and |J| (``compare``'s J_scale).
Pair = tuple[str, str, str, Tolerance, float]


def compare(case: str, quantity: str, a_name: str, a: Array, b_name: str, b: Array,
            kind: str, dtype: str, tol: Tolerance, J_scale: float = 0.0,
            floor: float | Array = 0.0) -> Comparison:
    """Compare two arrays of one quantity. Masked elements (not computed) are skipped.

    ``J_scale`` (|J|) joins the scale s for finite-difference pairs: their round-off
    is about ε|J|/h per element whatever the size of the gradient itself. ``floor`` is an
    absolute allowance per element (scalar or the array's shape): the rounding a correct
    implementation may make on this case (see rounding.py).
    """
    return _compare_many(case, quantity, [a_name, b_name], [a, b], [(0, 1, kind, tol, J_scale)],
                         dtype, floor)[0]


def compare_pairs(case: str, quantity: str, arrays: Mapping[str, Array], pairs: Sequence[Pair],
                  dtype: str, floor: float | Array = 0.0) -> list[Comparison]:
    """``compare`` for each pair ``(a, b, kind, tol, J_scale)`` of ``arrays`` (one quantity from
    several backends), in the order given, with the same results; what concerns one array
    alone (‖x‖, max |x|, whether it is finite) is worked out once, not once per pair."""
    names = list(arrays)
    at = {name: i for i, name in enumerate(names)}
    return _compare_many(case, quantity, names, [arrays[n] for n in names],
                         [(at[a], at[b], kind, tol, J_scale) for a, b, kind, tol, J_scale in pairs],
                         dtype, floor)


def _compare_many(case: str, quantity: str, names: list[str], arrays: list[Array],
                  pairs: list[tuple[int, int, str, Tolerance, float]], dtype: str,
                  floor: float | Array) -> list[Comparison]:
    bases = [dict(case=case, quantity=quantity, a=names[i], b=names[j], kind=kind, dtype=dtype,
                  rtol=tol.rtol, atol=tol.atol, n_total=int(np.size(arrays[i])))
             for i, j, kind, tol, _ in pairs]
    out: list[Comparison | None] = [None] * len(pairs)
    for p, (i, j, *_) in enumerate(pairs):
        if np.shape(arrays[i]) != np.shape(arrays[j]):
            out[p] = Comparison(**bases[p], max_abs=np.inf, max_rel=np.inf, norm_rel=np.inf, index=(),
                                a_at=np.nan, b_at=np.nan, allowed_at=0.0, n_off=int(np.size(arrays[i])),
                                n_checked=0, scale=0.0, floor=0.0, tol_used=np.inf, passed=False,
                                note=f"shape {np.shape(arrays[i])} vs {np.shape(arrays[j])}")
    # The common case goes through the compiled loop (kernels.py): float arrays of finite
    # values, in a pair the same elements masked (the max-pool ties mask every backend's output
    # alike), no rounding floor (added only where the table alone flagged something). Anything
    # else goes the whole-array way, which also says what is wrong.
    masks = [np.ma.getmaskarray(v) if np.ma.is_masked(v) else None for v in arrays]
    members = {k for p, (i, j, *_) in enumerate(pairs) if out[p] is None for k in (i, j)}
    stats = {k: _array_stats(arrays[k], masks[k]) for k in members}
    for p, (i, j, kind, tol, J_scale) in enumerate(pairs):
        if out[p] is not None:
            continue
        if (stats[i] is not None and stats[j] is not None and _same_mask(masks[i], masks[j])
                and not (np.ndim(floor) or floor)):
            out[p] = _compare_fast(bases[p], np.shape(arrays[i]), masks[i], stats[i], stats[j], kind, tol, J_scale)
        if out[p] is None:
            out[p] = _compare_whole(bases[p], names[i], arrays[i], names[j], arrays[j], kind, tol, J_scale, floor)
    return out


def _same_mask(a: Array | None, b: Array | None) -> bool:
    return a is b or (a is not None and b is not None and np.array_equal(a, b))


def _array_stats(v: object, mask: Array | None) -> tuple[Array, float, float, bool] | None:
    """(its values as one row, ‖v‖², max |v|, whether it holds a tiny value: ``kernels.squares``)
    of a float32 or float64 array, masked elements zero (a copy then), with at least one element
    not masked, every one of them finite and ‖v‖² finite; None for anything else (the
    whole-array way's)."""
    if not isinstance(v, np.ndarray) or v.dtype not in _FAST_DTYPES or not v.size:
        return None
    if mask is not None and mask.all():
        return None  # nothing compared: the whole way says so
    from . import kernels

    flat = np.ravel(np.ma.getdata(v))
    if mask is not None:
        flat = np.where(np.ravel(mask), flat.dtype.type(0), flat)
    sum_sq, top, small = kernels.squares(flat)
    return (flat, sum_sq, top, small) if sum_sq < 1e300 else None  # NaN, ±inf or ‖v‖² overflowing: the whole way


def sum_of_squares(v: Array) -> float:
    """Σ v² in float64, summed in a fixed order (``kernels.squares``): the same bits whatever
    the BLAS and however many threads it runs (``np.vdot``'s change with both)."""
    from . import kernels

    flat = np.ravel(np.asarray(v))
    if flat.dtype not in _FAST_DTYPES:
        flat = flat.astype(np.float64)
    return float(kernels.squares(flat)[0])  # an overflow is the caller's to see: the sum is inf


def _compare_fast(base: dict, shape: tuple[int, ...], mask: Array | None, stats_a: tuple[Array, float, float, bool],
                  stats_b: tuple[Array, float, float, bool], kind: str, tol: Tolerance,
                  J_scale: float) -> Comparison | None:
    """``_compare_whole``'s numbers for a pair of float arrays of finite values masked alike,
    without a rounding floor, from one pass of ``kernels.pair``: every per-element value has the
    same bits as there, and so have the maxima, the worst element (the first of equal ones) and
    the count. None where ‖a − b‖² overflows: ``_compare_whole`` deals with it."""
    from . import kernels

    (x, sum_a, top_a, small_a), (y, sum_b, top_b, small_b) = stats_a, stats_b
    scale = max(top_a, top_b)
    if is_finite_difference(kind):
        scale = max(scale, abs(J_scale))
    atol_s = tol.atol * scale
    dd, top_abs, top_rel, top_used, worst, allowed_at, n_off = kernels.pair(x, y, tol.rtol, atol_s, small_a or small_b)
    if not dd < 1e300:
        return None
    if worst < 0:  # every ratio 0: the worst is the first element compared, as argmax says
        worst = int(np.argmin(mask)) if mask is not None else 0
        allowed_at = tol.rtol * max(abs(float(x[worst])), abs(float(y[worst]))) + atol_s
    norm_a, norm_b, norm_d = math.sqrt(sum_a), math.sqrt(sum_b), math.sqrt(dd)
    return Comparison(
        **base, max_abs=top_abs, max_rel=top_rel,
        norm_rel=norm_d / (norm_a + norm_b) if norm_a + norm_b > 0 else 0.0,
        index=tuple(int(e) for e in np.unravel_index(worst, shape)), a_at=float(x[worst]), b_at=float(y[worst]),
        allowed_at=float(allowed_at), n_off=int(n_off),
        n_checked=x.size - (int(np.count_nonzero(mask)) if mask is not None else 0),
        scale=scale, floor=0.0, tol_used=float(top_used), passed=not n_off)


def _compare_whole(base: dict, a_name: str, a: Array, b_name: str, b: Array, kind: str,
                   tol: Tolerance, J_scale: float, floor: float | Array) -> Comparison:
    """The general way, on whole arrays: masks, NaN/Inf, overflow, other dtypes."""
    x = np.asarray(np.ma.getdata(a), dtype=np.float64)
    y = np.asarray(np.ma.getdata(b), dtype=np.float64)
    masked = np.ma.is_masked(a) or np.ma.is_masked(b)
    use = ~(np.ma.getmaskarray(a) | np.ma.getmaskarray(b)) if masked else None
    n_checked = int(use.sum()) if masked else x.size
    if masked:  # masked elements (not computed) take no part: zero in both
        x, y = np.where(use, x, 0.0), np.where(use, y, 0.0)

    with np.errstate(invalid="ignore", over="ignore"):  # inf − inf, overflow: looked at below
        d = x - y
        dd = sum_of_squares(d)  # ‖a − b‖², and one cheap test that every element is finite
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
    off = diff > np.maximum(allowed, _TINY)  # an underflowed allowance still admits denormal noise
    if masked:
        off &= use
    with np.errstate(over="ignore"):
        rel = diff / np.maximum(mag, _TINY)
        used = diff / np.maximum(allowed, _TINY)
    if np.isfinite(dd) and dd < 1e300:
        norm_a, norm_b = math.sqrt(sum_of_squares(x)), math.sqrt(sum_of_squares(y))
        norm_d = math.sqrt(dd)
    else:  # squares overflow: the norms of the arrays scaled down first
        k = max(scale, 1.0)
        norm_a, norm_b, norm_d = (k * math.sqrt(sum_of_squares(v / k)) for v in (x, y, diff))
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
