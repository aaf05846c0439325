"""Sensitivity self-check: every mutant (a learner's mistake) must be caught on every case
where it is detectable. ``python -m harness selfcheck [--out DIR]``; exit 1 below 100%."""

from __future__ import annotations

from dataclasses import dataclass

from .cases import Case
from .model import Model
from .mutants import MUTANTS, PerturbedElement, SoftmaxElementwise
from .runner import run_case

# Square hidden layers, so that the shape-preserving mistakes (Wᵀ vs W, a^[l] vs a^[l-1],
# the layer off by one) give arrays of the right shape and must be caught by their values.
CASES = [
    Case(f"square-ce-{dt}", Model((5, 5, 5, 5), ("tanh", "sigmoid", "softmax"), "cross_entropy", dt), 6, 11)
    for dt in ("float64", "float32")
] + [
    Case(f"sse-softmax-{dt}", Model((4, 4, 4), ("elu", "softmax"), "half_sse", dt), 5, 12)
    for dt in ("float64", "float32")
] + [
    Case(f"bce-{dt}", Model((4, 4, 4, 3), ("tanh", "gelu", "sigmoid"), "binary_cross_entropy", dt), 4, 13)
    for dt in ("float64", "float32")
]


def excluded(mutant: type, case: Case) -> str | None:
    """Why a mutant cannot show on a case, or None when it must be caught there."""
    if mutant is SoftmaxElementwise and not (case.model.loss == "half_sse" and case.model.activations[-1] == "softmax"):
        return "the softmax Jacobian is used only by half_sse through softmax (CE and BCE use ŷ − ȳ)"
    if mutant is PerturbedElement and case.model.dtype == "float32":
        return "a relative 1e-5 is below the float32 tolerance (rtol 1e-4)"
    return None


@dataclass(frozen=True)
class Outcome:
    mutant: str
    mistake: str
    case: str
    detected: bool | None  # None: excluded
    by: str  # "quantity pair" of the first disagreement, the contract error, or the exclusion reason


def run_selfcheck(backends: list) -> list[Outcome]:
    out = []
    for mutant in MUTANTS:
        for case in CASES:
            reason = excluded(mutant, case)
            if reason:
                out.append(Outcome(mutant.name, mutant.mistake, case.name, None, reason))
                continue
            r = run_case(case, [*backends, mutant()])
            errors = [e for e in r.errors if e.backend == mutant.name]
            firsts = [c for pair, c in r.first_disagreements().items() if mutant.name in pair]
            if errors:
                out.append(Outcome(mutant.name, mutant.mistake, case.name, True, f"contract: {errors[0].message}"))
            elif firsts:
                c = firsts[0]
                out.append(Outcome(mutant.name, mutant.mistake, case.name, True,
                                   f"{c.quantity} {c.a} vs {c.b} (+{len(firsts) - 1} more pairs)"))
            else:
                out.append(Outcome(mutant.name, mutant.mistake, case.name, False, "not detected"))
    return out


def table(outcomes: list[Outcome]) -> tuple[str, float]:
    """Markdown table per mutant, and the kill rate over the eligible (mutant, case) runs."""
    lines = ["| mutant | mistake | cases run | detected | detected by (first) | excluded |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(o.mutant for o in outcomes):
        rows = [o for o in outcomes if o.mutant == name]
        run = [o for o in rows if o.detected is not None]
        hit = [o for o in run if o.detected]
        excl = [f"{o.case}: {o.by}" for o in rows if o.detected is None]
        lines.append(f"| `{name}` | {rows[0].mistake} | {len(run)} | {len(hit)}/{len(run)} | "
                     f"{hit[0].by if hit else '—'} | {'; '.join(excl) or '—'} |")
    eligible = [o for o in outcomes if o.detected is not None]
    rate = sum(o.detected for o in eligible) / max(len(eligible), 1)
    return "\n".join(lines), rate
