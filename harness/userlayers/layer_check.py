"""One layer family, checked: every shape, the verdict, then the mistake's name and the
smallest failing input (check.py decides; mistakes.py and shrink.py describe a failure)."""

from __future__ import annotations

from .arms import ARMS
from .check import DEFAULT_TIMEOUT, LayerResult, analyse, largest_failing, run_shape
from .child import UserModule
from .families import Family, show
from .mistakes import name_mistake
from .shrink import smallest


def check_family(module: UserModule, family: Family, dtype: str = "float64", shapes: list[dict] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, shrink: bool = True, file: str = "FILE.py",
                 arms: tuple[str, ...] = ARMS) -> LayerResult:
    if family.not_yet:
        return LayerResult(family, "not in the catalog yet", message=family.not_yet)
    spent = 0.0  # seconds in the user's code: the budget is theirs, not the arms' (jax compiles)
    attempts = []
    for shape in shapes or family.shape_list():
        attempts.append(run_shape(module, family, shape, dtype, max(1.0, timeout - spent), arms))
        spent += attempts[-1].user_seconds
        if attempts[-1].kind in ("timed out", "died"):
            break  # the next shape would do it again
    res = analyse(family, attempts)
    if res.verdict == "disagrees":
        res.mistake = name_mistake(family, largest_failing(attempts), dtype)
    if res.verdict in ("disagrees", "modifies its input", "wrong output", "raised") and shrink and family.space:
        res.smallest = smallest(module, family, res.verdict, dtype, max(timeout - spent, 1.0),
                                known=res.worst_shape or attempts[0].shape)
    if res.smallest is not None:
        res.command = (f"python -m harness layers {file} --only '{family.name}' --shape {show(res.smallest)}"
                       + (f" --dtype {dtype}" if dtype != "float64" else "")
                       + (f" --against {','.join(arms)}" if tuple(arms) != ARMS else ""))
    return res


