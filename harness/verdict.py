"""The one place that decides a case's state and a run's verdict; every writer asks here.

A case is, in this order of precedence:
    error            a backend raised or broke the contract on it
    disagree         some comparison has elements out of tolerance
    nothing compared no element of any quantity was compared (fewer than two backends
                     ran, or every element was masked)
    agree            everything compared agreed

A run passes only when every case agrees and every pair of backends compared at least one
element somewhere in the run: zero comparisons is not agreement (``fd-complex`` on gelu
cases only, a backend that is "not applicable" everywhere, every element masked). A user
who expects that passes ``--allow-uncompared``; the verdict still says it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

ERROR, DISAGREE, UNCOMPARED, AGREE = "error", "disagree", "nothing compared", "agree"
STATES = (ERROR, DISAGREE, UNCOMPARED, AGREE)


def case_state(r) -> str:
    """The state of one ``CaseResult``."""
    if r.errors:
        return ERROR
    if r.failures():
        return DISAGREE
    if not r.compared_any:
        return UNCOMPARED
    return AGREE


def shown_cases(cases: list, limit: int) -> list:
    """At most ``limit`` of a run's case results for a summary table, in run order: those that
    did not agree first, then agreeing ones."""
    keep = [r for r in cases if not r.passed][:limit]
    keep += [r for r in cases if r.passed][:limit - len(keep)]
    ids = {id(r) for r in keep}
    return [r for r in cases if id(r) in ids]


def more_cases(cases: list, shown: list) -> tuple[int, int]:
    """What a summary table of ``shown`` (``shown_cases``) leaves out: (cases, of which agree)."""
    return len(cases) - len(shown), sum(r.passed for r in cases) - sum(r.passed for r in shown)


@dataclass(frozen=True)
class PairSummary:
    """What one pair of backends did over a whole run."""

    a: str
    b: str
    rows: tuple[str, ...]  # tolerance rows used, "dtype kind"
    comparisons: int
    elements: int  # elements compared, over every case and quantity
    failing: int  # comparisons with elements out of tolerance

    @property
    def pair(self) -> str:
        return f"{self.a} vs {self.b}"


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str  # "all agree", "2 disagreements, 1 error", "... ; fd-complex vs manual compared nothing"
    counts: dict[str, int]  # cases per state
    empty_pairs: tuple[str, ...]  # pairs that compared no element in the whole run
    pairs: tuple[PairSummary, ...]


def pair_summaries(result) -> list[PairSummary]:
    """Per pair of the run's backends, in backend order: rows used and elements compared.
    Added up from each case's tallies (``CaseResult.pair_tallies``), so a run whose records
    are on disk (``records.Spill``) reads none of them back."""
    found: dict[tuple[str, str], list] = {}  # pair -> [rows (ordered), comparisons, elements, failing]
    for r in result.cases:
        for pair, (rows, n, elements, failing) in r.pair_tallies().items():
            total = found.setdefault(pair, [{}, 0, 0, 0])
            total[0].update(dict.fromkeys(rows))
            total[1] += n
            total[2] += elements
            total[3] += failing
    out = []
    for a, b in itertools.combinations(result.backends, 2):
        rows, n, elements, failing = found.get((a, b)) or found.get((b, a)) or [{}, 0, 0, 0]
        out.append(PairSummary(a, b, tuple(rows), n, elements, failing))
    return out


def run_verdict(result, allow_uncompared: bool = False) -> Verdict:
    """The verdict of a ``RunResult``: passed, and the words every report uses."""
    counts = {s: 0 for s in STATES}
    for r in result.cases:
        counts[case_state(r)] += 1
    pairs = pair_summaries(result)
    empty = tuple(p.pair for p in pairs if not p.elements)
    n_fail = sum(len(r.failures()) for r in result.cases)
    n_err = len(result.errors)
    parts = []
    if n_fail:
        parts.append(f"{n_fail} disagreement{'s' * (n_fail != 1)}")
    if n_err:
        parts.append(f"{n_err} error{'s' * (n_err != 1)}")
    if counts[UNCOMPARED]:
        parts.append(f"{counts[UNCOMPARED]} case{'s' * (counts[UNCOMPARED] != 1)} with nothing compared")
    if empty:
        parts.append(f"nothing compared by {', '.join(empty)}")
    if not result.cases:
        parts.append("no cases")
    text = "all agree" if not parts else ", ".join(parts)
    if not n_fail and not n_err and parts and allow_uncompared:
        text = "all agree where compared (" + ", ".join(parts) + "; allowed by --allow-uncompared)"
    uncompared_ok = allow_uncompared or (not counts[UNCOMPARED] and not empty and result.cases)
    passed = not n_fail and not n_err and bool(uncompared_ok)
    return Verdict(passed, text, counts, empty, tuple(pairs))
