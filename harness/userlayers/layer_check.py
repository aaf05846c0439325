"""One layer family, checked: every shape, the verdict, then the mistake's name and the
smallest failing input (check.py decides; mistakes.py and shrink.py describe a failure)."""

from __future__ import annotations

import time

from .arms import ARMS
from .check import DEFAULT_TIMEOUT, YOURS, LayerResult, analyse, run_shape
from .child import UserModule
from .families import Family, show
from .mistakes import name_mistake
from .shrink import smallest


def check_family(module: UserModule, family: Family, dtype: str = "float64", shapes: list[dict] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, shrink: bool = True, file: str = "FILE.py",
                 arms: tuple[str, ...] = ARMS) -> LayerResult:
    if family.not_yet:
        return LayerResult(family, "not in the catalog yet", message=family.not_yet)
    start = time.monotonic()
    attempts = []
    for shape in shapes or family.shape_list():
        left = max(1.0, timeout - (time.monotonic() - start))
        attempts.append(run_shape(module, family, shape, dtype, left, arms))
        if "its process" in attempts[-1].problem:
            break  # a hang or a death: the next shape would do it again
    res = analyse(family, attempts)
    if res.verdict == "disagrees":
        res.mistake = name_mistake(family, max((a for a in attempts if any(
            not c.passed and YOURS in (c.a, c.b) for c in a.comparisons)), key=lambda a: a.setup.x.size), dtype)
    if res.verdict in ("disagrees", "modifies its input", "wrong output", "raised") and shrink and family.space:
        left = timeout - (time.monotonic() - start)
        res.smallest = smallest(module, family, res.verdict, dtype, max(left, 1.0),
                                known=res.worst_shape or attempts[0].shape)
    if res.smallest is not None:
        res.command = (f"python -m harness layers {file} --only '{family.name}' --shape {show(res.smallest)}"
                       + (f" --dtype {dtype}" if dtype != "float64" else "")
                       + (f" --against {','.join(arms)}" if tuple(arms) != ARMS else ""))
    return res


