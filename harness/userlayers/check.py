"""Check one user layer family: run it and the four arms on every shape, compare every pair,
name the pattern and the known mistake, and shrink a failure to the smallest input.

Pairs: the user's code ("yours") against manual, torch, jax and fd, and the arms against
each other (a disagreement there is the harness's own, reported as such). Tolerances are
the rows of ``harness.tolerances``: the user's code is an analytic backprop.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..compare import Comparison, compare, sum_of_squares
from ..tolerances import ANALYTIC, FINITE_DIFFERENCE, lookup, pair_kind
from .arms import ARMS, run_arm
from .child import UserError, UserModule
from .families import Family, Setup, show

YOURS = "yours"
KIND = {YOURS: ANALYTIC, "manual": ANALYTIC, "torch": ANALYTIC, "jax": ANALYTIC, "fd": FINITE_DIFFERENCE}
DEFAULT_TIMEOUT = 60.0  # seconds for one layer: all its shapes and the shrinking


class BadOutput(Exception):
    """The user's function returned the wrong number of values or a wrong shape."""


@dataclass
class Attempt:
    """One shape: the comparisons, or why there are none."""

    shape: dict
    comparisons: list[Comparison] = field(default_factory=list)
    problem: str = ""  # raised, hung, bad output: one line
    kind: str = ""  # the problem's kind: raised, timed out, died, wrong output, harness error
    detail: str = ""  # the user's traceback, for a function that raised
    edits: list[str] = field(default_factory=list)
    user: dict = field(default_factory=dict)
    setup: Setup | None = None
    notes: list[str] = field(default_factory=list)
    user_seconds: float = 0.0  # time in the user's code (the per-layer timeout counts only that)
    right: dict = field(default_factory=dict)  # the manual arm's answer, in the user's terms

    @property
    def note(self) -> str:
        return "; ".join(self.notes)

    def user_failed(self) -> bool:
        return any(not c.passed for c in self.comparisons if YOURS in (c.a, c.b))


@dataclass
class LayerResult:
    family: Family
    verdict: str  # agrees, disagrees, raised, not in the catalog yet, harness arms disagree
    attempts: list[Attempt] = field(default_factory=list)
    first: str = ""  # the first quantity of the user's that disagrees
    worst: float = 0.0  # the largest norm-relative difference of the user's, over failing pairs
    worst_shape: dict | None = None
    message: str = ""  # where and how much (Comparison.message) or the problem
    pattern: str = ""
    mistake: str = ""
    smallest: dict | None = None
    command: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict in ("agrees", "not in the catalog yet")

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for a in self.attempts for c in a.comparisons]


def _read(setup: Setup, results: list) -> dict:
    """The user's results as named quantities; BadOutput on a wrong arity."""
    q = {}
    for (call_index, names), (value, arity) in zip(setup.outputs, results):
        name = setup.calls[call_index].name
        if setup.calls[call_index].keep_only is not None:
            if arity != 2:
                got = f"{arity} values" if arity else "a single value, not a tuple"
                raise BadOutput(f"{name} returned {got}; expected (out, cache)")
        if len(names) == 1:
            q[names[0]] = value
            continue
        if not isinstance(value, tuple) or len(value) != len(names):
            got = f"{len(value)} values" if isinstance(value, tuple) else f"{type(value).__name__}"
            raise BadOutput(f"{name} returned {got}; expected ({', '.join(names)})")
        q.update(zip(names, value))
    return setup.from_user(q)


def _check_shapes(user: dict, want: dict, family: Family) -> None:
    for k, w in want.items():
        u = user.get(k)
        if u is None:
            raise BadOutput(f"{k} is missing from what {family.functions[-1]} returned")
        if not isinstance(u, np.ndarray):
            raise BadOutput(f"{k} is a {type(u).__name__}, not an array")
        if u.dtype.kind not in "biuf":  # strings, objects, complex: not a real-valued gradient
            raise BadOutput(f"{k} has dtype {u.dtype}, not real numbers")
        if u.shape != np.shape(w) and u.size == np.size(w) and np.ndim(w) == 0:
            continue
        if u.shape != np.shape(w):
            raise BadOutput(f"{k} has shape {u.shape}, expected {np.shape(w)}")


def _to_user(setup: Setup, out: dict) -> dict:
    return {k: np.asarray(v) if not np.ma.isMaskedArray(v) else v for k, v in setup.to_user(out).items()}


def compare_all(label: str, answers: dict[str, dict], dtype: str, J_scale: float) -> list[Comparison]:
    comps = []
    names = list(answers)
    for a, b in itertools.combinations(names, 2):
        kind = pair_kind(KIND[a], KIND[b])
        tol = lookup(dtype, kind)
        for q in answers[b]:
            if q not in answers[a]:
                continue
            x, y = answers[a][q], answers[b][q]
            if np.ndim(x) == 0 or np.ndim(y) == 0:
                x, y = np.asarray(x, np.float64).reshape(()), np.asarray(y, np.float64).reshape(())
            comps.append(compare(label, q, a, x, b, y, kind, dtype, tol, J_scale=J_scale))
    return comps


def run_shape(module: UserModule, family: Family, shape: dict, dtype: str, timeout: float,
              arms: tuple[str, ...] = ARMS) -> Attempt:
    attempt = Attempt(shape)
    setup = attempt.setup = family.setup(shape, dtype)
    label = f"{family.name} [{show(shape)}]"
    t0 = time.monotonic()
    try:
        results, attempt.edits = module.run(setup.calls, timeout)
        attempt.user_seconds = time.monotonic() - t0
        user = attempt.user = _read(setup, results)
        if setup.after_user is not None and (note := setup.after_user(user)):
            attempt.notes.append(note)
    except UserError as e:
        attempt.user_seconds = time.monotonic() - t0
        attempt.problem, attempt.detail, attempt.kind = e.message, e.detail, e.kind
        return attempt
    except BadOutput as e:
        attempt.problem, attempt.kind = f"wrong output: {e}", "wrong output"
        return attempt
    answers = {}
    for arm in arms:
        try:
            answers[arm] = _to_user(setup, run_arm(arm, setup.chain, setup.x, setup.G))
        except ImportError as e:  # torch or jax not installed (they are extras): that arm is left out
            attempt.notes.append(f"{arm} left out: {e}")
        except Exception as e:  # noqa: BLE001 - the harness's own failure: said, never the user's
            attempt.problem, attempt.kind = f"the harness's {arm} arm raised {type(e).__name__}: {e}", "harness error"
            return attempt
    attempt.right = answers["manual"]
    try:
        _check_shapes(user, answers["manual"], family)
    except BadOutput as e:
        attempt.problem, attempt.kind = f"wrong output: {e}", "wrong output"
        return attempt
    J = answers["manual"].get("loss", answers["manual"].get("cost"))
    scale = abs(float(J)) if J is not None else float(np.abs(np.asarray(setup.G)).sum()) if setup.G is not None else 0.0
    cast = {k: np.asarray(v, dtype=np.float64) for k, v in user.items() if k in answers["manual"]}
    attempt.comparisons = compare_all(label, {YOURS: cast, **answers}, dtype, scale)
    return attempt


def _pattern(user: np.ndarray, ref: np.ndarray, quantity: str, shape: dict) -> str:
    """A recognisable shape of the difference, or ""."""
    u, r = np.asarray(user, np.float64), np.asarray(ref, np.float64)
    if u.shape != r.shape or not np.isfinite(u).all():
        return ""
    if not u.any() and r.any():
        return f"{quantity} is all zeros"
    # numpy's own sums, not BLAS's dot (np.vdot, np.linalg.norm): it wakes its threads for each
    # call (see compare.sum_of_squares)
    rr = sum_of_squares(r)
    if rr > 0 and np.count_nonzero(r) >= 3:  # with one or two elements any two vectors look proportional
        k = float(np.add.reduce((u * r).ravel())) / rr
        if abs(k - 1) > 1e-6 and math.sqrt(sum_of_squares(u - k * r)) <= 1e-6 * math.sqrt(sum_of_squares(u)):
            named = [f"{n} = {v}" for n, v in shape.items() if v > 1 and (abs(k - v) < 1e-9 * v or abs(k * v - 1) < 1e-9)]
            why = (f" (1/{named[0].split()[0]}, {named[0]})" if named and k < 1 else f" ({named[0]})" if named
                   else "")
            return f"all of {quantity} is off by the same factor: {k:.6g}× the right value{why}"
    if u.ndim == 2 and u.shape == r.shape[::-1] and np.allclose(u, r.T):
        return f"{quantity} is the transpose of the right value"
    if u.ndim == 3 and "T" in shape and shape["T"] > 1 and u.shape[1] == shape["T"]:
        ok = [bool(np.allclose(u[:, t], r[:, t], rtol=1e-6, atol=1e-9 * max(1.0, np.abs(r).max()))) for t in range(u.shape[1])]
        if any(ok) and not all(ok):
            if ok == [i == len(ok) - 1 for i in range(len(ok))]:
                return f"only the last time step of {quantity} is right (t = {len(ok) - 1}): the path back through time is missing"
            if ok == [i == 0 for i in range(len(ok))]:
                return f"only the first time step of {quantity} is right"
            return f"time steps {[t for t, g in enumerate(ok) if g]} of {quantity} are right, the others not"
    return ""


def _summary(attempt: Attempt) -> tuple[list[str], list[str]]:
    """The user's quantities that disagree with the manual arm, and those that agree."""
    bad, good = [], []
    for c in attempt.comparisons:
        if c.a == YOURS and c.b == "manual":
            (good if c.passed else bad).append(c.quantity)
    return bad, good


def largest_failing(attempts: list[Attempt]) -> Attempt:
    """The largest shape where the user's result disagrees: it shows a pattern best."""
    return max((a for a in attempts if a.user_failed()), key=lambda a: a.setup.x.size)


def analyse(family: Family, attempts: list[Attempt]) -> LayerResult:
    problems = [a for a in attempts if a.problem]
    arms_fail = [c for a in attempts for c in a.comparisons if YOURS not in (c.a, c.b) and not c.passed]
    edited = [a for a in attempts if a.edits]
    if problems:
        a = problems[0]
        message = a.problem + (f" ({where})" if (where := _user_line(a.detail)) else "")
        return LayerResult(family, a.kind or "raised", attempts, message=message, worst_shape=a.shape)
    if arms_fail:  # the harness's own arms disagree: nothing can be said of the user's code
        c = arms_fail[0]
        return LayerResult(family, "harness arms disagree", attempts, first=c.quantity, message=c.message())
    if any(a.user_failed() for a in attempts):
        first_attempt = largest_failing(attempts)
        order = list(dict.fromkeys(c.quantity for c in first_attempt.comparisons))
        bad_q = {c.quantity for c in first_attempt.comparisons if YOURS in (c.a, c.b) and not c.passed}
        first = next(q for q in order if q in bad_q)
        user_fail = [c for a in attempts for c in a.comparisons if YOURS in (c.a, c.b) and not c.passed]
        worst = max(user_fail, key=lambda c: c.norm_rel if np.isfinite(c.norm_rel) else 1e308)
        worst_attempt = next(a for a in attempts if worst in a.comparisons)
        main = next(c for c in first_attempt.comparisons if c.quantity == first and YOURS in (c.a, c.b)
                    and not c.passed)
        res = LayerResult(family, "disagrees", attempts, first=first, worst=worst.norm_rel,
                          worst_shape=worst_attempt.shape, message=main.message())
        bad, good = _summary(first_attempt)
        right = first_attempt.right
        pats = [p for q in bad if (p := _pattern(first_attempt.user[q], right[q], q, first_attempt.shape))]
        if good and bad:
            pats.insert(0, f"{', '.join(good)} right; only {', '.join(bad)} wrong")
        pats += first_attempt.notes
        pats += list(dict.fromkeys(e for a in edited for e in a.edits))
        res.pattern = "; ".join(pats)
        return res
    if edited:
        return LayerResult(family, "modifies its input", attempts,
                           message="; ".join(dict.fromkeys(e for a in edited for e in a.edits)),
                           worst_shape=edited[0].shape)
    return LayerResult(family, "agrees", attempts,
                       worst=max((c.norm_rel for a in attempts for c in a.comparisons if YOURS in (c.a, c.b)),
                                 default=0.0))


def _user_line(detail: str) -> str:
    """FILE:LINE of the innermost frame outside the harness in a traceback from the child."""
    frames = [ln.strip() for ln in detail.splitlines() if ln.strip().startswith('File "')]
    user = [f for f in frames if "/harness/" not in f]
    if not user:
        return ""
    path, _, rest = user[-1][len('File "'):].partition('", line ')
    return f"{path}:{rest.split(',')[0]}"
