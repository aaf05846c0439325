"""Pairwise comparison of two backends' arrays: metrics, verdict, and a message.

Comparisons produce records; nothing here raises on a mismatch. The edges (CLI
exit code, pytest assertions) turn records into failures.
"""

from __future__ import annotations

import math
import threading
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


BLOCK = 32768  # elements per block of the blockwise comparison (``_compare_blockwise``)
_TINY = np.finfo(np.float64).tiny  # x/max(0, tiny): 0 where both are exactly zero
_BLOCKWISE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

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
    alone (its float64 values, |x|, ‖x‖, max |x|) is worked out once, not once per pair."""
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
    # The common case goes block by block: float arrays of finite values, one shape, and in a
    # pair the same elements masked (the max-pool ties mask every backend's output alike).
    masks = [np.ma.getmaskarray(v) if np.ma.is_masked(v) else None for v in arrays]
    max_abs = [_finite_max_abs(v, m) for v, m in zip(arrays, masks)]
    fast = [p for p, (i, j, *_) in enumerate(pairs)
            if out[p] is None and max_abs[i] is not None and max_abs[j] is not None
            and (masks[i] is masks[j] or (masks[i] is not None and masks[j] is not None
                                          and np.array_equal(masks[i], masks[j])))]
    shape = np.shape(arrays[pairs[fast[0]][0]]) if fast else ()
    fast = [p for p in fast if np.shape(arrays[pairs[p][0]]) == shape]
    if fast:
        done = _compare_blockwise([bases[p] for p in fast], arrays, masks, max_abs, [pairs[p] for p in fast],
                                  floor)
        for p, c in zip(fast, done):
            out[p] = c
    for p, (i, j, kind, tol, J_scale) in enumerate(pairs):
        if out[p] is None:
            out[p] = _compare_whole(bases[p], names[i], arrays[i], names[j], arrays[j], kind, tol, J_scale, floor)
    return out


def _finite_max_abs(v: object, mask: Array | None) -> float | None:
    """max |v| over the elements not masked, for a float32 or float64 array with at least one
    such element and every one of them finite; None for anything else (``_compare_whole``'s)."""
    if not isinstance(v, np.ndarray) or v.dtype not in _BLOCKWISE_DTYPES or not v.size:
        return None
    v = np.ma.getdata(v)
    if mask is not None:
        if mask.all():
            return None  # nothing compared: the whole way says so
        v = np.where(mask, 0, v)  # as _compare_whole: masked elements are zero in both
    top = max(float(v.max()), -float(v.min()))  # NaN or ±inf anywhere shows here
    return abs(top) if math.isfinite(top) else None  # abs: |-0.0|, as |x|.max() says


def sum_of_squares(v: Array) -> float:
    """Σ v² in float64, summed in a fixed order: numpy's pairwise sum within blocks of BLOCK
    elements, the blocks' sums added in turn. The same bits whatever the BLAS and however
    many threads it runs (``np.vdot``'s change with both, and waking BLAS threads for each
    dot cost ~10 ms on a busy machine); relative error ~(log₂ BLOCK + n/BLOCK)·ε at worst."""
    flat = np.ravel(v)
    (buf,) = _workspace(1, min(BLOCK, flat.size))
    s = 0.0
    with np.errstate(over="ignore"):  # an overflow is the caller's to see: s is inf
        for i in range(0, flat.size, BLOCK):
            blk, part = buf[:min(BLOCK, flat.size - i)], flat[i:i + BLOCK]
            if part.dtype != np.float64:  # np.square(float32, out=float64) would square in float32
                np.copyto(blk, part)
                part = blk
            s += float(np.add.reduce(np.square(part, out=blk)))
    return s


_LOCAL = threading.local()


def _workspace(count: int, size: int) -> list[Array]:
    """``count`` float64 buffers of ``size`` elements, kept per thread and reused. Fresh
    memory for every temporary (what whole-array numpy expressions take) is a page fault per
    4 KB: for a 512×512 quantity that cost more than the arithmetic."""
    bufs = getattr(_LOCAL, "bufs", [])
    if len(bufs) < count or bufs[0].size < size:
        bufs = [np.empty(max(size, bufs[0].size if bufs else 0)) for _ in range(max(count, len(bufs)))]
        _LOCAL.bufs = bufs
    return [b[:size] for b in bufs[:count]]


def _compare_blockwise(bases: list[dict], arrays: list[Array], masks: list[Array | None],
                       max_abs: list[float | None], pairs: list[tuple[int, int, str, Tolerance, float]],
                       floor: float | Array) -> list[Comparison | None]:
    """``_compare_whole``'s numbers for pairs of float arrays of finite values, the two of a
    pair masked alike (masked elements zero in both, as there), one block of BLOCK elements
    at a time.

    Every element goes through the same float64 operations as there, so each per-element value
    (|a − b|, the allowance, their ratio) has the same bits, and so have the maxima, the worst
    element (the first of equal ones) and the count. Two differences, both exact: fmax stands
    for maximum (the same without NaN, and twice as fast against a scalar); max(allowed, tiny)
    is skipped where allowed ≥ atol·s ≥ tiny holds already. Each array's float64 values and
    |x| are made once per block for all its pairs, and its ‖x‖² summed as ``sum_of_squares``
    sums. The blocks keep the temporaries in the core's cache and reuse them (``_workspace``).
    A pair whose ‖a − b‖² overflows is None: ``_compare_whole`` deals with it.
    """
    shape = np.shape(arrays[pairs[0][0]])
    n = int(np.prod(shape, dtype=np.int64))
    members = sorted({k for i, j, *_ in pairs for k in (i, j)})
    flats = {k: np.ravel(np.ma.getdata(arrays[k])) for k in members}
    mask_of = {k: np.ravel(masks[k]) for k in members if masks[k] is not None}
    casts = [k for k in members if flats[k].dtype != np.float64 or k in mask_of]  # copied into a buffer
    size = min(BLOCK, n)
    bufs = _workspace(4 + len(members) + len(casts), size)
    t_buf, u_buf, v_buf, w_buf = bufs[:4]
    abs_buf = dict(zip(members, bufs[4:]))
    cast_buf = dict(zip(casts, bufs[4 + len(members):]))
    floors = None
    if np.ndim(floor) or floor:
        floors = np.ravel(np.broadcast_to(np.nan_to_num(np.asarray(floor, dtype=np.float64), posinf=np.inf),
                                          shape))
    P = len(pairs)
    scale = [max(max_abs[i], max_abs[j]) for i, j, *_ in pairs]
    scale = [max(s, abs(J)) if is_finite_difference(kind) else s for s, (_, _, kind, _, J) in zip(scale, pairs)]
    atol_s = [tol.atol * s for s, (_, _, _, tol, _) in zip(scale, pairs)]
    # allowed = rtol·m + atol·s ≥ atol·s (rounding is monotonic): with atol·s ≥ tiny, max(allowed, tiny) is allowed
    clamp = [floors is not None or c < _TINY or tol.rtol < 0 for c, (*_, tol, _) in zip(atol_s, pairs)]
    sum_sq = {k: 0.0 for k in members}
    dd, top_abs, top_rel = [0.0] * P, [0.0] * P, [0.0] * P
    top_used, worst, allowed_at, n_off = [-1.0] * P, [0] * P, [0.0] * P, [0] * P
    with np.errstate(invalid="ignore", over="ignore"):  # an overflow shows in dd, below
        for start in range(0, n, BLOCK):
            k = min(BLOCK, n - start)
            t, u, v, w = t_buf[:k], u_buf[:k], v_buf[:k], w_buf[:k]
            x, ax = {}, {}
            for m in members:
                x[m] = flats[m][start:start + k]
                if m in cast_buf:
                    x[m] = cast_buf[m][:k]
                    np.copyto(x[m], flats[m][start:start + k])
                    if m in mask_of:
                        np.copyto(x[m], 0.0, where=mask_of[m][start:start + k])
                sum_sq[m] += float(np.add.reduce(np.square(x[m], out=t)))
                ax[m] = np.abs(x[m], out=abs_buf[m][:k])
            for p, (i, j, _, tol, _) in enumerate(pairs):
                d = np.subtract(x[i], x[j], out=t)
                dd[p] += float(np.add.reduce(np.square(d, out=w)))
                d = np.abs(d, out=t)  # |a − b|: what the rest needs
                top_abs[p] = max(top_abs[p], float(d.max()))
                mag = np.maximum(ax[i], ax[j], out=u)
                rel = np.divide(d, np.fmax(mag, _TINY, out=w), out=w)
                top_rel[p] = max(top_rel[p], float(rel.max()))
                allowed = np.add(np.multiply(mag, tol.rtol, out=u), atol_s[p], out=u)
                if floors is not None:
                    np.add(allowed, floors[start:start + k], out=allowed)
                bound = np.fmax(allowed, _TINY, out=w) if clamp[p] else allowed
                used = np.divide(d, bound, out=v)
                at = int(used.argmax())  # the first of the largest
                worst_here = float(used[at])
                if worst_here >= 1:  # |d| > bound implies |d| / bound ≥ 1 (division rounds monotonically)
                    n_off[p] += int(np.count_nonzero(d > bound))
                if worst_here > top_used[p]:  # strictly: the first of equal worst elements, as argmax
                    top_used[p], worst[p], allowed_at[p] = worst_here, start + at, float(allowed[at])
    out: list[Comparison | None] = []
    for p, (i, j, *_) in enumerate(pairs):
        if not (math.isfinite(dd[p]) and dd[p] < 1e300):
            out.append(None)
            continue
        norm_a, norm_b, norm_d = math.sqrt(sum_sq[i]), math.sqrt(sum_sq[j]), math.sqrt(dd[p])
        n_checked = n
        if i in mask_of:
            n_checked = n - int(np.count_nonzero(mask_of[i]))
            if top_used[p] == 0:  # every ratio 0: the worst is the first element compared, not a masked one
                worst[p] = int(np.argmin(mask_of[i]))
                mag = max(abs(float(flats[i][worst[p]])), abs(float(flats[j][worst[p]])))
                allowed_at[p] = pairs[p][3].rtol * mag + atol_s[p]  # the same two roundings as the array's
                if floors is not None:
                    allowed_at[p] += float(floors[worst[p]])
        idx = tuple(int(e) for e in np.unravel_index(worst[p], shape))
        out.append(Comparison(
            **bases[p], max_abs=top_abs[p], max_rel=top_rel[p],
            norm_rel=norm_d / (norm_a + norm_b) if norm_a + norm_b > 0 else 0.0, index=idx,
            a_at=float(flats[i][worst[p]]), b_at=float(flats[j][worst[p]]), allowed_at=allowed_at[p],
            n_off=n_off[p], n_checked=n_checked, scale=scale[p],
            floor=float(np.broadcast_to(np.asarray(floor, dtype=np.float64), shape)[idx]),
            tol_used=top_used[p], passed=not n_off[p]))
    return out


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
