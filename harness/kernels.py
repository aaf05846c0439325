"""The comparison's inner loops, compiled with numba: one pass over an array, or over the two
arrays of a pair, gives every number a ``Comparison`` holds.

Why compiled: numpy needs a pass over memory (and a temporary) for each step of the per-element
arithmetic, |a − b|, max(|a|, |b|), the allowance, two ratios, a square, and a reduction for
each maximum; on the benchmark's mid-size case that made comparing every pair cost about half
as much as the three backends' gradients (benchmarks ``--only overhead``). One loop does all of
it in a single read of each array.

Each element goes through the float64 operations ``compare._compare_whole`` writes with numpy
arrays, in the same order, so each per-element value has the same bits, and so have the maxima,
the worst element (the first of equal ones) and the count. (Masked elements are zeros in both
arrays there: the caller passes such copies. A rounding floor, rare, goes the whole-array way.)
The sums of squares are the one place where the order is ours: four
running sums, element k in sum k mod 4, added as (s0 + s1) + (s2 + s3) at the end
(``squares``, which ``compare.sum_of_squares`` also uses, so both ways agree bit for bit and
the result depends neither on the BLAS nor on its threads).

Why four elements a step: their four chains of additions and maxima run side by side, and one
test decides whether any of the four may be a new worst element. Only then are the ratios
divided out (``_new_worst``): |a − b| / max(|a|, |b|) and |a − b| / allowed. x / y > t implies
x > t·y exactly; with t' = t·LOW, t'·y is below x by a relative 2⁻⁴¹, so fl(t'·y) < x as long
as t'·y is not a subnormal number near x, which takes 0 < x < 2⁻¹⁰³⁴, and then an array holds
a value below SMALL = 2⁻⁹⁰⁰ (two values of which one is at least 2⁻⁹⁰⁰ differ by 0 or by at
least 2⁻⁹⁵³). So an element with x ≤ fl(t'·y) cannot be a new maximum, unless ``careful``
(such a value seen by ``squares``) sends every element the exact way. The test is strict, so a
zero difference (a relu's zeros, bit-identical arms) never passes it, and it uses max(|a|, |b|)
where the ratio uses max(|a|, |b|, tiny): a product only smaller, the test only wider, and no
data-dependent branch (a max with tiny in the test made a random pattern of zeros cost three
times as much). A division costs more than everything else an element needs. Measured on the
benchmark's arrays (256×512, 512×512): 1.6 to 2.0 ns an element this way; 3.1 to 5.5 ns as one
plain loop over elements with the same tests; 15 ns with a per-element mask test in the loop
(why masked arrays come as zero-filled copies).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError as e:  # pragma: no cover - numba is a dependency of the package
    raise ImportError("harness needs numba for its comparisons (pip install numba)") from e

TINY = float(np.finfo(np.float64).tiny)  # x / max(0, tiny): 0 where both are exactly zero
LOW = 1.0 - 2.0 ** -40  # t' = t·LOW < t: the screen is a little wider than needed, never narrower
SMALL = 2.0 ** -900  # below it, the screen's product t'·y may round to x itself (the docstring above)

# The running state of the two maxima of a ratio, in one float64 array (``pair``'s ``best``).
TOP_REL, REL_LOW, TOP_USED, USED_LOW, WORST, ALLOWED_AT = range(6)


def _jit(fn=None, **more):
    """nogil: the run's helper thread compares while the main thread runs backends. Cached on
    disk beside the module (or in the user's cache) where it can be written; compiled once per
    process where nothing can."""
    if fn is None:
        return lambda f: _jit(f, **more)
    options = dict(nogil=True, error_model="numpy", boundscheck=False, **more)
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**options)(fn)


@_jit(inline="always")
def _tail_sum(j, square, s0, s1, s2):
    """Sums 0, 1 and 2 with ``square`` added to sum j: the up to three elements past the last
    step of four, element full + j being element k with k mod 4 = j."""
    if j == 0:
        return s0 + square, s1, s2
    if j == 1:
        return s0, s1 + square, s2
    return s0, s1, s2 + square


@_jit
def squares(x):
    """(Σ x², max |x|, whether some x ≠ 0 has |x| < SMALL) in float64, x² of element k added to
    sum k mod 4. A NaN or ±inf anywhere makes Σ x² NaN or inf."""
    s0 = s1 = s2 = s3 = 0.0
    t0 = t1 = t2 = t3 = 0.0
    small = 0
    n = x.size
    full = n - n % 4
    for k in range(0, full, 4):
        v0, v1, v2, v3 = np.float64(x[k]), np.float64(x[k + 1]), np.float64(x[k + 2]), np.float64(x[k + 3])
        s0 += v0 * v0
        s1 += v1 * v1
        s2 += v2 * v2
        s3 += v3 * v3
        t0, t1, t2, t3 = max(t0, abs(v0)), max(t1, abs(v1)), max(t2, abs(v2)), max(t3, abs(v3))
        small += (((abs(v0) < SMALL) & (v0 != 0.0)) | ((abs(v1) < SMALL) & (v1 != 0.0))
                  | ((abs(v2) < SMALL) & (v2 != 0.0)) | ((abs(v3) < SMALL) & (v3 != 0.0)))
    for k in range(full, n):
        v = np.float64(x[k])
        s0, s1, s2 = _tail_sum(k - full, v * v, s0, s1, s2)
        t0 = max(t0, abs(v))
        small += (abs(v) < SMALL) & (v != 0.0)
    return (s0 + s1) + (s2 + s3), max(max(t0, t1), max(t2, t3)), small > 0


@_jit(inline="always")
def _new_worst(k, d, mag, allowed, bound, best):
    """Element k against the largest ratios so far (``best``, updated in place): the first
    element with the largest |a − b| / bound is the worst one (strictly larger: as argmax)."""
    m = max(mag, TINY)
    if d > 0.0 and d >= best[REL_LOW] * m:
        rel = d / m
        if rel > best[TOP_REL]:
            best[TOP_REL] = rel
            best[REL_LOW] = rel * LOW
    if d > 0.0 and d >= best[USED_LOW] * bound:
        used = d / bound
        if used > best[TOP_USED]:
            best[TOP_USED] = used
            best[USED_LOW] = used * LOW
            best[WORST] = k
            best[ALLOWED_AT] = allowed


@_jit(inline="always")
def _element(x, y, k, rtol, atol_s):
    """d = |a − b|, mag = max(|a|, |b|), allowed = rtol·mag + atol·s and bound =
    max(allowed, tiny) of element k, in float64."""
    a = np.float64(x[k])
    b = np.float64(y[k])
    d = abs(a - b)
    mag = max(abs(a), abs(b))
    allowed = rtol * mag + atol_s
    return d, mag, allowed, max(allowed, TINY)


@_jit
def pair(x, y, rtol, atol_s, careful):
    """One pair of finite arrays of one shape (flat). ``careful``: an array holds a value
    0 < |v| < SMALL (``squares``), and every element goes the exact way.

    Returns Σ d² (summed as ``squares``), max d, max d / max(mag, tiny), max d / bound and the
    first element where it is reached (-1 where every ratio is 0: no element was a new worst),
    allowed there, and the count of d > bound (``_element``'s names).
    """
    s0 = s1 = s2 = s3 = 0.0
    t0 = t1 = t2 = t3 = 0.0
    n_off = 0
    best = np.zeros(6)
    best[WORST] = -1.0
    n = x.size
    full = n - n % 4
    for k in range(0, full, 4):
        d0, m0, l0, q0 = _element(x, y, k, rtol, atol_s)
        d1, m1, l1, q1 = _element(x, y, k + 1, rtol, atol_s)
        d2, m2, l2, q2 = _element(x, y, k + 2, rtol, atol_s)
        d3, m3, l3, q3 = _element(x, y, k + 3, rtol, atol_s)
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        t0, t1, t2, t3 = max(t0, d0), max(t1, d1), max(t2, d2), max(t3, d3)
        n_off += (d0 > q0) + (d1 > q1) + (d2 > q2) + (d3 > q3)
        u, r = best[USED_LOW], best[REL_LOW]
        if careful or ((d0 > u * q0) | (d1 > u * q1) | (d2 > u * q2) | (d3 > u * q3)
                       | (d0 > r * m0) | (d1 > r * m1) | (d2 > r * m2) | (d3 > r * m3)):
            _new_worst(k, d0, m0, l0, q0, best)
            _new_worst(k + 1, d1, m1, l1, q1, best)
            _new_worst(k + 2, d2, m2, l2, q2, best)
            _new_worst(k + 3, d3, m3, l3, q3, best)
    for k in range(full, n):
        d, m, allowed, bound = _element(x, y, k, rtol, atol_s)
        s0, s1, s2 = _tail_sum(k - full, d * d, s0, s1, s2)
        t0 = max(t0, d)
        n_off += d > bound
        _new_worst(k, d, m, allowed, bound, best)
    return ((s0 + s1) + (s2 + s3), max(max(t0, t1), max(t2, t3)), best[TOP_REL], best[TOP_USED],
            int(best[WORST]), best[ALLOWED_AT], n_off)


def warm() -> None:
    """Compile the loops for both dtypes now, or load them from the cache (0.6 s, importing
    numba included; 3 s to compile): a Dask worker's set-up, so its first case does not pay it."""
    for dtype in (np.float32, np.float64):
        x = np.zeros(4, dtype=dtype)
        squares(x)
        pair(x, x, 0.0, 0.0, False)
