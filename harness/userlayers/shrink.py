"""The smallest failing input, found by hypothesis.

``hypothesis.find`` draws shapes from the family's ``space`` (batch, widths, channels,
spatial size, T, kernel, stride, padding) and shrinks any that fails towards the smallest
integers: the same shrinker hypothesis uses on a failing test. A shape fails when it
fails the way the layer did: disagrees with the manual arm (the fastest of the four; it
agrees with torch, jax and fd on every shape the full check runs), edits its input, raises,
or returns the wrong output. The values in a shape are drawn from its seed, so the reported shape
and the reproducing command give the same arrays.
"""

from __future__ import annotations

import math
import time

from .check import run_shape
from .families import Family


def _fails(attempt, verdict: str) -> bool:
    """Does this shape fail the way the layer failed? A smaller shape that fails otherwise
    (raises where the layer disagreed, or runs out of the time left) is another finding."""
    if verdict == "disagrees":
        return not attempt.problem and attempt.user_failed()
    if verdict == "modifies its input":
        return not attempt.problem and bool(attempt.edits)
    return attempt.kind == verdict  # raised, wrong output


def size(shape: dict) -> tuple:
    return (math.prod(max(v, 1) for v in shape.values()), sum(shape.values()))


def smallest(module, family: Family, verdict: str, dtype: str, timeout: float, known: dict) -> dict:
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis import strategies as st
    from hypothesis.errors import NoSuchExample

    stop = time.monotonic() + timeout
    strategy = st.fixed_dictionaries({k: st.integers(lo, hi) for k, lo, hi in family.space}).filter(family.valid)
    best = [known]  # the smallest failing shape seen: what is left when time runs out mid-shrink

    class OutOfTime(Exception):
        pass

    def fails(shape: dict) -> bool:
        left = stop - time.monotonic()
        if left <= 0.5:
            raise OutOfTime
        failed = _fails(run_shape(module, family, dict(shape), dtype, left, arms=("manual",)), verdict)
        if failed and size(shape) < size(best[0]):
            best[0] = {k: shape[k] for k, _, _ in family.space}  # in the family's key order
        return failed

    try:
        # generate and shrink only: the explain phase (which parts of the example matter)
        # re-runs the user's code hundreds of times more and reports nothing we show
        find(strategy, fails, settings=settings(max_examples=150, database=None, deadline=None, derandomize=True,
                                                phases=[Phase.generate, Phase.shrink],
                                                suppress_health_check=list(HealthCheck)))
    except (NoSuchExample, OutOfTime):
        pass
    except Exception as e:  # noqa: BLE001 - hypothesis wraps OutOfTime (and flaky user code) in its own errors
        if not any(isinstance(x, OutOfTime) for x in getattr(e, "exceptions", ())) and "Flaky" not in type(e).__name__:
            raise
    return best[0]
