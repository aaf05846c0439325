"""Tolerances, as data: one row per (dtype, pair kind), each with its reason.

An element passes when
    |a − b| ≤ atol · s + rtol · max(|a|, |b|)
where s is the scale of the quantity: the largest |element| of either array
(for a pair with a finite-difference backend, also |J|, see below). atol is
therefore relative to the quantity, not absolute: a gradient of size 1e-6
is checked as strictly as one of size 1e3.

The numbers were set from measurement (``tests/test_tolerances.py`` re-measures
the worst observed difference on the shipped cases and asserts the margin).
"""

from __future__ import annotations

from dataclasses import dataclass

ANALYTIC = "analytic"
FINITE_DIFFERENCE = "finite_difference"


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", ANALYTIC): Tolerance(
        1e-10, 1e-12,
        "Two exact backprops differ only in rounding order: a few ε (2.2e-16) of the "
        "quantity's scale. 1e-10 flags one element off by 1e-9 relative."),
    ("float32", ANALYTIC): Tolerance(
        1e-4, 1e-5,
        "float32 rounding (ε = 1.2e-7) accumulated over batch sums, depth and erf/exp: "
        "a few hundred ε of the scale. A missing g', 1/m or transpose is off by O(1)."),
    ("float64", FINITE_DIFFERENCE): Tolerance(
        1e-7, 1e-8,
        "Central difference with h = ε^(1/3)·max(1,|θ|): truncation O(h²)·|J'''| plus "
        "round-off O(ε|J|/h), about 1e-10 of the scale; larger where J''' is large."),
    ("float32", FINITE_DIFFERENCE): Tolerance(
        1e-4, 1e-5,
        "fd runs in float64, so the float32 backprop's own rounding dominates: the float32 "
        "analytic row."),
}


def pair_kind(kind_a: str, kind_b: str) -> str:
    """A pair with any finite-difference backend is checked with the finite-difference row."""
    return FINITE_DIFFERENCE if FINITE_DIFFERENCE in (kind_a, kind_b) else ANALYTIC


def lookup(dtype: str, kind: str) -> Tolerance:
    return TOLERANCES[(dtype, kind)]
