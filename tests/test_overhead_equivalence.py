"""The comparison's numbers are those of the whole-array implementation it replaced.

``harness.compare`` compares a pair in one pass of a compiled loop (``harness.kernels``), each
array's own numbers worked out once for all its pairs (issue 15: the harness's own time).
``reference_compare`` below is the whole-array numpy code it replaced, kept verbatim (only
renamed) as the slow reference: every field of every row must be the same, bit for bit, except
``norm_rel``. The reference sums ‖·‖² with ``np.vdot``, whose order of summation changes with
the BLAS and its thread count; the new code sums in a fixed order (``sum_of_squares``). The two agree to ~1e-14 relative (measured), far below the
three significant digits any report shows, so ``norm_rel`` is held to 1e-12 relative.
"""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from harness.backends import get
from harness.cases import Case
from harness.compare import Comparison, compare, compare_pairs
from harness.model import Model
from harness.rounding import rounding_floor
from harness.runner import run_case
from harness.tolerances import Tolerance, is_finite_difference, lookup

NORM_REL_RTOL = 1e-12
Array = np.ndarray


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """The reference's np.vdot wakes the BLAS threads for every call: seconds on a busy
    machine. One thread, as the CLI and the xdist workers run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def reference_compare(case: str, quantity: str, a_name: str, a: Array, b_name: str, b: Array,
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


def differences(ref: Comparison, new: Comparison) -> list[str]:
    """The fields in which two comparison rows differ (NaN equals NaN; 0.0 and -0.0 differ:
    they print differently in the JSON)."""
    out = []
    for f in dataclasses.fields(Comparison):
        a, b = getattr(ref, f.name), getattr(new, f.name)
        if isinstance(a, float) and isinstance(b, float):
            if math.isnan(a) and math.isnan(b):
                continue
            if f.name == "norm_rel" and math.isfinite(a) and abs(a - b) <= NORM_REL_RTOL * abs(a):
                continue
            if a == b and math.copysign(1, a) == math.copysign(1, b):
                continue
        elif type(a) is type(b) and a == b:
            continue
        out.append(f"{f.name}: {a!r} (reference) vs {b!r}")
    return out


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(Comparison)])
def test_the_row_check_catches_a_change_in_any_field(field):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(50)
    b = a + 1e-3 * rng.standard_normal(50)
    row = reference_compare("c", "dW1", "x", a, "y", b, "analytic", "float64", lookup("float64", "analytic"))
    value = getattr(row, field)
    changed = {bool: lambda v: not v, int: lambda v: v + 1, str: lambda v: v + "!",
               tuple: lambda v: v + (0,)}.get(type(value), lambda v: v * (1 + 1e-9) if v else 1e-300)
    assert differences(row, dataclasses.replace(row, **{field: changed(value)})), field
    assert not differences(row, row)
    if field == "max_abs":  # the sign of zero counts
        zero = dataclasses.replace(row, max_abs=0.0)
        assert differences(zero, dataclasses.replace(row, max_abs=-0.0))


def arrays_of_every_kind(dtype: str, shape: tuple[int, ...], seed: int) -> dict[str, np.ndarray]:
    """One quantity as several backends might return it: equal, rounded differently, wrong in
    a few elements, zeros (both exactly zero: no relative error), non-finite, masked, another
    shape; for every dtype the compiled loop takes and one it does not."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)
    out = {"same": x.astype(dtype), "copy": x.astype(dtype).copy(),
           "rounded": (x * (1 + 1e-6 * rng.standard_normal(shape))).astype(dtype),
           "wrong": (x + (rng.random(shape) < 0.01)).astype(dtype),
           "zeros": np.where(rng.random(shape) < 0.3, 0.0, x).astype(dtype),
           "float64": x.astype(np.float64), "float16": x.astype(np.float16)}
    if x.size > 3:
        nan = out["same"].copy()
        nan.flat[x.size // 2] = np.nan
        out["nan"] = nan
        mask = rng.random(shape) < 0.1  # the max-pool ties mask every backend's output alike
        out["masked"] = np.ma.masked_array(out["rounded"], mask=mask)
        out["masked too"] = np.ma.masked_array(out["same"], mask=mask.copy())
        out["masked wrong"] = np.ma.masked_array(out["wrong"], mask=mask)
        out["all masked"] = np.ma.masked_array(out["same"], mask=True)
        out["unmasked"] = np.ma.masked_array(out["rounded"], mask=False)
        out["other shape"] = np.zeros(x.size + 1, dtype)
    return out


LARGE = 3 * 32768 + 5  # more elements than a cache holds; odd: the sums' even and odd halves differ


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (LARGE,), (2, 3), (9, 11), (40,)])
def test_every_pair_of_every_kind_gives_the_reference_row(dtype, shape):
    """Every kind of array against every other, with every tolerance kind and floor (a large
    array: a few)."""
    arrays = arrays_of_every_kind(dtype, shape, seed=len(shape) + np.prod(shape, dtype=int))
    floor = np.abs(np.random.default_rng(1).standard_normal(shape)) * 1e-6
    small = np.prod(shape, dtype=int) < LARGE  # every kind and floor; a large array: a few
    runs = ([(kind, J, fl) for kind, J in (("analytic", 0.0), ("finite_difference", 2.5), ("nudge", 0.0))
             for fl in (0.0, 1e-7, floor)] if small else
            [("analytic", 0.0, 0.0), ("analytic", 0.0, floor), ("finite_difference", 2.5, 1e-7)])
    for kind, J, fl in runs:
        tol = lookup(dtype, kind)
        pairs = [(a, b, kind, tol, J) for a, b in itertools.combinations(arrays, 2)]
        rows = compare_pairs("c", "q", arrays, pairs, dtype, fl)
        for (a, b, *_), row in zip(pairs, rows, strict=True):
            ref = reference_compare("c", "q", a, arrays[a], b, arrays[b], kind, dtype, tol, J, fl)
            assert not differences(ref, row), (a, b, kind, differences(ref, row))
            if small:  # one pair at a time: the same
                assert not differences(ref, compare("c", "q", a, arrays[a], b, arrays[b], kind, dtype, tol, J, fl))


EDGES = {
    "both zero": (np.zeros(5), np.zeros(5)),
    "signed zeros": (-np.zeros(5), np.zeros(5)),
    "subnormal": (np.array([1e-310, 0.0, 3e-320]), np.array([0.0, 1e-310, 0.0])),
    "subnormal scale": (np.array([1e-310, 2e-310]), np.array([1.5e-310, 2e-310])),
    "nan": (np.array([1.0, np.nan]), np.array([1.0, 2.0])),
    "inf both": (np.array([np.inf, 1.0]), np.array([np.inf, 1.0])),
    "difference overflows": (np.array([1e308, -1e308]), np.array([-1e308, 1e308])),
    "squares overflow": (np.array([1e200, 1.0]), np.array([1.01e200, 2.0])),
    "empty": (np.array([], float), np.array([], float)),
    "shapes differ": (np.ones((2, 3)), np.ones((3, 2))),
    "transposed": (np.arange(12.0).reshape(3, 4).T, np.arange(12.0).reshape(4, 3) + 1e-9),
    "every element masked": (np.ma.masked_all((3,)), np.ones(3)),
    "masked alike, the rest equal": (np.ma.masked_array([1.0, 2.0, 3.0], mask=[1, 0, 0]),
                                     np.ma.masked_array([5.0, 2.0, 3.0], mask=[1, 0, 0])),
    "masked alike, NaN under the mask": (np.ma.masked_array([np.nan, 2.0, 3.0], mask=[1, 0, 0]),
                                         np.ma.masked_array([5.0, 2.0, 3.1], mask=[1, 0, 0])),
    "integers": (np.arange(5), np.arange(5) + 1),
    "scalar J": (np.array(1.0), np.array(1.0 + 1e-3)),
    "equal worst elements": (np.array([5.0, 5.0, 1.0]), np.array([6.0, 6.0, 1.0])),
    # the same worst ratio far apart, opposite signs: the first one is the worst element
    "equal worst far apart": (np.zeros(LARGE), np.where(np.arange(LARGE) % 32768 == 7,
                                                         (-1.0) ** (np.arange(LARGE) // 32768), 0.0)),
    # each element a new worst: the compiled loop divides at every one (its screen lets all through)
    "ratios rising": (np.ones(1000), 1.0 + np.linspace(1e-12, 1e-6, 1000)),
    "ratios falling": (np.ones(1000), 1.0 + np.linspace(1e-6, 1e-12, 1000)),
    # differences below 2^-1034, where a product t·y rounds to x itself (the screen's edge)
    "subnormal differences after a larger one": (np.array([0.0, 0.0, 0.0, 0.0]),
                                                  np.array([4e-323, 5e-324, 1e-322, 1.5e-323])),
    "zeros, then a difference": (np.zeros(9), np.r_[np.zeros(8), 1e-3]),
    "infinite floor": (np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 3.5])),
    "negative floor": (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9])),
}


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("kind", ["analytic", "nudge"])
def test_edge_cases_give_the_reference_row(edge, kind):
    a, b = EDGES[edge]
    tol = lookup("float64", kind)
    floors = {"negative floor": [0.0, -1e-9], "infinite floor": [np.inf, np.array([np.inf, 0.0, np.inf])]}.get(
        edge, [0.0, np.full(np.shape(a), np.nan) if np.size(a) else 0.0])
    for fl in floors:
        for x, y in ((a, b), (b, a)):
            ref = reference_compare("c", "q", "a", x, "b", y, kind, "float64", tol, 2.0, fl)
            new = compare("c", "q", "a", x, "b", y, kind, "float64", tol, 2.0, fl)
            assert not differences(ref, new), (edge, differences(ref, new))
    assert compare("c", "q", "a", a, "b", b, kind, "float64", Tolerance(0.0, 0.0, "none")).n_total == np.size(a)


def test_a_difference_exactly_at_the_allowance_passes_both_ways():
    """|a − b| = rtol·max(|a|, |b|) exactly (1 = 0.5·2): in tolerance, 100% of it used."""
    tol = Tolerance(0.5, 0.0, "exact halves")
    a, b = np.array([2.0, 4.0, 1.0]), np.array([1.0, 2.0, 1.0])
    for x, y in ((a, b), (b, a)):
        ref = reference_compare("c", "q", "a", x, "b", y, "analytic", "float64", tol)
        new = compare("c", "q", "a", x, "b", y, "analytic", "float64", tol)
        assert not differences(ref, new), differences(ref, new)
        assert new.passed and new.n_off == 0 and new.tol_used == 1.0 and new.index == (0,)


def test_tiny_values_take_the_exact_way():
    """Values below 2⁻⁹⁰⁰ and a difference of 6e-314: the compiled loop's screen (x > fl(t'·y))
    would pass over element 4, whose ratio is the larger, because t'·y rounds to x itself in the
    subnormal range; ``kernels.squares`` sees the tiny values and the pair goes the exact way.
    (Found by a search against the loop without that way.)"""
    a = np.array([8.884532549071927e-302, 0, 0, 0, 1.440609045147021e-301, 0, 0, 0])
    b = np.array([8.884532549067176e-302, 0, 0, 0, 1.4406090451464018e-301, 0, 0, 0])
    tol = Tolerance(0.5, 2.0 ** -1001 / 1.440609045147021e-301, "a row wide enough to vary along the array")
    ref = reference_compare("c", "q", "a", a, "b", b, "analytic", "float64", tol)
    new = compare("c", "q", "a", a, "b", b, "analytic", "float64", tol)
    assert not differences(ref, new), differences(ref, new)
    assert new.index == (4,)


class OffBackend:
    """The manual backend with dW2 a little wrong and an intermediate a little rounded: some
    rows fail (so the rounding floor is added and compared again), some pass."""

    name = "off"

    def gradients(self, model, arrays):
        out = dict(get("manual").gradients(model, arrays))
        out["dW2"] = out["dW2"] * (1 + 1e-3)
        out["z1"] = out["z1"] * (1 + 1e-8)
        return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_case_run_gives_the_reference_rows_in_the_same_order(dtype):
    """run_case (the pairs of every quantity compared together) against the old per-pair loop:
    the same rows, the same order (pair by pair, each in algorithm order), the same numbers."""
    case = Case(f"fixed-{dtype}", Model((64, 300, 120, 5), ("tanh", "relu", "softmax"), "cross_entropy", dtype),
                128, 3)  # dW1 (19,200 elements) and z1 (38,400) larger than a core's cache
    backends = [get("manual"), get("manual_columns"), OffBackend()]
    result = run_case(case, backends)
    assert not result.errors
    outs = result.outputs
    floors = rounding_floor(case, result.inputs)  # the off backend fails, so the floor was added
    expected = []
    for a, b in itertools.combinations([be.name for be in backends], 2):
        tol = lookup(dtype, "analytic")
        for q in case.model.algorithm_order():
            expected.append(reference_compare(case.name, q, a, outs[a][q], b, outs[b][q], "analytic", dtype,
                                              tol, 0.0, floors.get(q, 0.0)))
    assert [(c.quantity, c.pair) for c in result.comparisons] == [(c.quantity, c.pair) for c in expected]
    for ref, new in zip(expected, result.comparisons):
        assert not differences(ref, new), (new.quantity, new.pair, differences(ref, new))
    assert {c.quantity for c in result.failures()} >= {"dW2"}  # the floor path really ran
    assert any(c.passed for c in result.comparisons)
