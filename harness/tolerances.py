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
COMPLEX_STEP = "complex_step"
FINITE_DIFFERENCE = "finite_difference"  # central (and Richardson) differences
FORWARD_DIFFERENCE = "forward_difference"
NUDGE = "nudge"  # forward difference with the fixed h = 1e-3 of the course


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
        "Central difference of each example's loss, the step set by the size N of the values the "
        "nudge moves (their rounding ε·N, not ε·|J|, is the round-off: 2e-6 at logits of 1e10): "
        "truncation O(h²)·|J'''| plus round-off ε·N/h, about 1e-10 of the scale, also at inputs of "
        "1e10 (tests/test_specificity.py)."),
    ("float64", COMPLEX_STEP): Tolerance(
        1e-10, 1e-12,
        "Complex step subtracts nothing: its error is rounding, like an analytic backend's."),
    ("float32", COMPLEX_STEP): Tolerance(
        1e-4, 1e-5,
        "Evaluated in float64; the float32 backprop's rounding dominates: the float32 analytic row."),
    ("float64", FORWARD_DIFFERENCE): Tolerance(
        1e-4, 1e-5,
        "Forward difference, h ≈ √(ε|J|)/|input|: its error is about √(ε|J|)·|input|, 1e-8 "
        "of the scale on unit inputs but ~1e-6 on inputs of scale 50 (cases/hard.toml)."),
    ("float32", FORWARD_DIFFERENCE): Tolerance(
        1e-4, 1e-5,
        "Evaluated in float64 (error ~1e-8); the float32 backprop's rounding dominates."),
    ("float64", NUDGE): Tolerance(
        3e-2, 3e-3,
        "The course's nudge, h = 1e-3 fixed: truncation h·J''/2 is about 1e-3 of the scale, "
        "so it only tells right from clearly wrong (a missing g', 1/m or transpose)."),
    ("float32", NUDGE): Tolerance(
        3e-2, 3e-3,
        "As float64: the nudge's truncation error dwarfs float32 rounding."),
    ("float32", FINITE_DIFFERENCE): Tolerance(
        1e-4, 1e-5,
        "fd runs in float64, so the float32 backprop's own rounding dominates: the float32 "
        "analytic row."),
}


# Kinds from the most to the least accurate; a pair is checked with the row of its less
# accurate member.
KINDS = (ANALYTIC, COMPLEX_STEP, FINITE_DIFFERENCE, FORWARD_DIFFERENCE, NUDGE)


def pair_kind(kind_a: str, kind_b: str) -> str:
    """The kind whose tolerance row checks a pair: the less accurate of the two."""
    rank = {k: i for i, k in enumerate(KINDS)}
    return max(kind_a, kind_b, key=lambda k: rank.get(k, 0))


def is_finite_difference(kind: str) -> bool:
    """Kinds whose round-off is about ε·|J|/h per element (|J| joins the scale)."""
    return kind in (FINITE_DIFFERENCE, FORWARD_DIFFERENCE, NUDGE)


def lookup(dtype: str, kind: str) -> Tolerance:
    return TOLERANCES[(dtype, kind)]
