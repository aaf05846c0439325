"""Typed access to one table of a case file, and errors that name file, case and field.

Shared by the two case forms (``cases`` for the MLP form and sweeps, ``network_cases`` for
catalog networks).
"""

from __future__ import annotations

import reprlib
import sys
from typing import Any

import numpy as np

from .errors import InputError, did_you_mean


class _Brief(reprlib.Repr):
    """A value from the file as echoed in an error message: short and on one line, whatever
    its size or nesting (the plain repr of a table nested 10,000 deep, which TOML's dotted
    keys make in one line, exceeds the recursion limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict = 3, 6, 4
        self.maxstring = self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() <= 64:
            return str(x)
        try:
            digits = str(len(str(abs(x))))
        except ValueError:  # more digits than Python converts
            digits = f"more than {sys.get_int_max_str_digits()}"
        return f"{'a negative' if x < 0 else 'an'} integer of {digits} digits"


_show = _Brief().repr


class _Fields:
    """Typed access to one table's fields, raising InputError with full context."""

    def __init__(self, raw: dict, allowed: set[str], src: str, label: str) -> None:
        self.raw, self.src, self.label = raw, src, label
        name = raw.get("name")
        if isinstance(name, str) and name.strip():
            self.label = name
        for key in raw:
            if key not in allowed:
                self.fail(key, f"unknown key{did_you_mean(key, allowed)}")

    def fail(self, fld: str, msg: str) -> None:
        raise InputError(msg, file=self.src, case=self.label, field=fld)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., what: str = "") -> Any:
        if key not in self.raw:
            if default is ...:
                self.fail(key, "missing required field")
            return default
        val = self.raw[key]
        # bool is an int subclass in Python; never accept true/false as a number.
        if isinstance(val, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(key, f"expected {what or _kind_name(kind)}, got {_show(val)}")
        if not isinstance(val, kind):
            self.fail(key, f"expected {what or _kind_name(kind)}, got {_show(val)}")
        return val

    def int_range(self, key: str, default: Any, lo: int, hi: int) -> Any:
        val = self.get(key, int, default)
        if val is not default:
            if val < lo:
                self.fail(key, f"must be >= {lo}, got {_show(val)}")
            if val > hi:
                self.fail(key, f"must be at most {_limit(hi)}, got {_show(val)}")
        return val


def _limit(n: int) -> str:
    """2147483647 as "2**31-1 = 2147483647": the bound and where it comes from."""
    k = (n + 1).bit_length() - 1
    return f"2**{k}-1 = {n}" if n + 1 == 2**k else str(n)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_labels(f: _Fields, fld: str, val: Any, n_classes: int) -> np.ndarray:
    if not isinstance(val, list) or not val:
        f.fail(fld, "must be a non-empty list of class indices")
    for i, v in enumerate(val):
        if isinstance(v, bool) or not isinstance(v, int):
            f.fail(f"{fld}[{i}]", f"class index must be an integer, got {_show(v)}")
        if not 0 <= v < n_classes:
            f.fail(f"{fld}[{i}]", f"label {_show(v)} out of range 0..{n_classes - 1}")
    return np.array(val, dtype=np.int64)
