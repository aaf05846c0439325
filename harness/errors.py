"""Errors for bad input: each says which file, case and field, in one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(Exception):
    """Bad input (case file, command line, plugin path). The CLI exits 2 with ``str(err)``."""

    def __init__(self, message: str, *, file: str | None = None, case: str | None = None,
                 field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.file, self.case, self.field = message, file, case, field

    def __str__(self) -> str:
        where = [self.file or "", f"case {self.case!r}" if self.case else "",
                 f"field {self.field!r}" if self.field else ""]
        prefix = ": ".join(w for w in where if w)
        return f"{prefix}: {self.message}" if prefix else self.message


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'tanh'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe(e: BaseException) -> str:
    """``Type: message`` on one line, even for an exception whose ``__str__`` raises."""
    try:
        line = getattr(e, "xval_message", None)  # raised in a plugin's own process (isolated.py)
    except BaseException:  # noqa: BLE001 - a user's __getattr__ may raise anything
        line = None
    if isinstance(line, str):
        return line
    try:
        name = type(e).__name__
    except Exception:  # noqa: BLE001
        name = "exception"
    try:
        text = str(e)
    except BaseException as inner:  # noqa: BLE001 - the user's __str__ may do anything
        try:
            text = f"<str() of the exception raised {type(inner).__name__}>"
        except BaseException:  # noqa: BLE001
            text = "<str() of the exception failed>"
    return f"{name}: {text}".strip().replace("\n", " ")
