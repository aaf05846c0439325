"""Check your own layers: a user's CS231n- or DLS-style layer functions against the catalog.

``python -m harness layers FILE.py`` imports the user's file (in a child process: the
user's own code runs, as pytest runs a test file), recognises the functions it knows by
name and parameter count (families.py), runs each forward/backward pair on seeded inputs
of several shapes, and compares the user's outputs and gradients with the catalog's manual,
torch, jax and fd arms (arms.py), pairwise. A disagreement is described (check.py), matched
against the known mistakes (mistakes.py) and shrunk to the smallest failing shape with
hypothesis (shrink.py). Nothing here imports torch or jax until an arm runs.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .arms import ARMS
from .check import DEFAULT_TIMEOUT, LayerResult
from .layer_check import check_family
from .child import UserImportError, UserModule
from .families import FAMILIES, Family, show

__all__ = ["check_file", "recognise", "check_layer", "parse_shape", "FAMILIES", "LayerResult"]


def _takes(params: list[str], n: int) -> bool:
    """A function with these parameters accepts n positional arguments: the names as
    inspect shows them, a default marked by a trailing "=", *args by a leading "*"."""
    plain = [p for p in params if not p.startswith("*")]
    required = [p for p in plain if not p.endswith("=")]
    return len(required) <= n and (n <= len(plain) or any(p.startswith("*") and not p.startswith("**")
                                                          for p in params))


def recognise(functions: dict[str, list[str]]) -> list[Family]:
    """The families whose functions the file defines, each taking the expected number of
    positional arguments (a parameter with a default may be left out, *args takes any)."""
    found = []
    for fam in FAMILIES:
        if all(name in functions and _takes(functions[name], n) for name, n in zip(fam.functions, fam.arity)):
            found.append(fam)
    return found


def parse_shape(text: str, family: Family) -> dict:
    """"N=2,D=3" -> {N: 2, D: 3} with every key of the family; InputError otherwise."""
    keys = [k for k, _, _ in family.space] or [k for k, _ in family.shapes[0]]
    try:
        shape = {k.strip(): int(v) for k, v in (kv.split("=") for kv in text.split(","))}
    except ValueError:
        raise InputError(f"--shape takes KEY=VALUE pairs like {show(family.shape_list()[0])}, got {text!r}",
                         field="--shape") from None
    if set(shape) != set(keys):
        raise InputError(f"{family.name} shapes have the keys {', '.join(keys)}; got {', '.join(shape)}",
                         field="--shape")
    shape = {k: shape[k] for k in keys}
    if any(v < 0 for v in shape.values()) or not family.valid(shape):
        raise InputError(f"{show(shape)} is not a valid shape for {family.name}", field="--shape")
    return shape


def check_file(path: str | Path, only: list[str] | None = None, dtype: str = "float64",
               timeout: float = DEFAULT_TIMEOUT, shape: str | None = None, shrink: bool = True,
               progress=None, against: tuple[str, ...] = ARMS) -> list[LayerResult]:
    """Every recognised layer of the file, checked. InputError: the file cannot be read or
    imported (one line with file and line), or --only names nothing the file defines.
    ``against``: the arms compared with the user's code and each other (manual always runs:
    the shapes and the shrinking read it)."""
    path = Path(path)
    unknown = [a for a in against if a not in ARMS]
    if unknown:
        raise InputError(f"unknown arm {unknown[0]!r}; the arms are {', '.join(ARMS)}", field="--against")
    against = ("manual", *[a for a in against if a != "manual"])
    if not path.is_file():
        raise InputError("no such file", file=str(path))
    try:
        module = UserModule(path)
    except UserImportError as e:
        raise InputError(str(e)) from None
    try:
        families = recognise(module.functions)
        if only:
            names = {f.name for f in families}
            unknown = [n for n in only if n not in names]
            if unknown:
                known = ", ".join(sorted(names)) or "none"
                raise InputError(f"--only {', '.join(unknown)}: not a layer this file defines (recognised: {known})",
                                 file=str(path), field="--only")
            families = [f for f in families if f.name in only]
        if not families:
            raise InputError("defines none of the recognised layer functions (see the README's table: "
                             "affine_forward/affine_backward, linear_forward/linear_backward, ...)", file=str(path))
        if shape is not None and len(families) != 1:
            raise InputError("--shape needs --only with one layer", field="--shape")
        results = []
        for fam in families:
            shapes = [parse_shape(shape, fam)] if shape is not None else None
            results.append(check_family(module, fam, dtype, shapes, timeout, shrink, file=str(path), arms=against))
            if progress is not None:
                progress(results[-1])
        return results
    finally:
        module.close()


def check_layer(path: str | Path, layer: str, dtype: str = "float64", shapes: list[dict] | None = None,
                timeout: float = DEFAULT_TIMEOUT, against: tuple[str, ...] = ARMS) -> LayerResult:
    """For tests: check one layer of a user's file; AssertionError saying where and how much."""
    module = UserModule(path)
    try:
        fams = [f for f in recognise(module.functions) if f.name == layer]
        if not fams:
            raise AssertionError(f"{path} does not define the functions of {layer!r}")
        res = check_family(module, fams[0], dtype, shapes, timeout, shrink=True, file=str(path),
                           arms=("manual", *[a for a in against if a != "manual"]))
    finally:
        module.close()
    if not res.passed:
        lines = [f"{layer}: {res.verdict}: {res.message}"]
        if res.pattern:
            lines.append(f"pattern: {res.pattern}")
        if res.mistake:
            lines.append(f"mistake: {res.mistake}")
        if res.smallest:
            lines.append(f"smallest failing input: {show(res.smallest)} ({res.command})")
        raise AssertionError("\n".join(lines))
    return res
