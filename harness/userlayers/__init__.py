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
from .child import InProcessModule, UserImportError, UserModule
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
    low = [f"{k} >= {lo}" for k, lo, _ in family.space if shape[k] < lo]
    if low or not family.valid(shape):
        why = f": needs {', '.join(low)}" if low else ""
        raise InputError(f"{show(shape)} is not a valid shape for {family.name}{why}", field="--shape")
    try:
        family.setup(shape)  # the catalog's own checks (layernorm over 1 feature, say)
    except ValueError as e:
        raise InputError(f"{show(shape)} is not a valid shape for {family.name}: {e}", field="--shape") from None
    return shape


def check_file(path: str | Path, only: list[str] | None = None, dtype: str = "float64",
               timeout: float = DEFAULT_TIMEOUT, shape: str | None = None, shrink: bool = True,
               progress=None, against: tuple[str, ...] = ARMS) -> list[LayerResult]:
    """Every recognised layer of the file, checked. InputError: the file cannot be read or
    imported (one line with file and line), or --only names nothing the file defines.
    ``against``: the arms compared with the user's code and each other (manual always runs:
    the shapes and the shrinking read it). ``progress(done, total, name, failed)``
    (``progress.Progress``) counts the layers, and as failures those that do not pass
    (disagree, raise, time out)."""
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
        if progress is not None:
            progress(0, len(families), "")
        for fam in families:
            shapes = [parse_shape(shape, fam)] if shape is not None else None
            results.append(check_family(module, fam, dtype, shapes, timeout, shrink, file=str(path), arms=against))
            if progress is not None:
                progress(len(results), len(families), fam.name, sum(not r.passed for r in results))
        return results
    finally:
        module.close()


def check_layer(forward, backward=None, layer: str | None = None, dtype: str = "float64",
                shapes: list[dict] | None = None, timeout: float = DEFAULT_TIMEOUT,
                against: tuple[str, ...] = ARMS) -> LayerResult:
    """For tests: check one layer; AssertionError saying where and how much, the pattern, the
    mistake and the smallest failing input.

    Either ``check_layer("my_layers.py", layer="batchnorm")`` (the file runs in a child
    process, as the command runs it) or ``check_layer(batchnorm_forward, batchnorm_backward,
    layer="batchnorm")`` with the functions themselves, called in this process (a loss family
    takes only ``forward``). ``layer`` is a row name of the README's table.
    """
    if layer is None and isinstance(backward, str):  # check_layer(path, "batchnorm")
        layer, backward = backward, None
    fams = [f for f in FAMILIES if f.name == layer]
    if not fams:
        raise ValueError(f"unknown layer {layer!r}; the layers: {', '.join(f.name for f in FAMILIES)}")
    fam = fams[0]
    if fam.not_yet:
        raise AssertionError(f"{layer}: not in the catalog yet ({fam.not_yet}): nothing was checked")
    arms = ("manual", *[a for a in against if a != "manual"])
    if callable(forward):
        given = [forward, backward][:len(fam.functions)]
        if any(not callable(g) for g in given) or len(fam.functions) > 2:
            raise ValueError(f"{layer} takes the functions {', '.join(fam.functions)}")
        module = InProcessModule(dict(zip(fam.functions, given)))
        where = f"{getattr(forward, '__module__', '?')}.{getattr(forward, '__name__', '?')}"
    else:
        module, where = UserModule(forward), str(forward)
        if not all(n in module.functions for n in fam.functions):
            module.close()
            raise AssertionError(f"{forward} does not define {', '.join(fam.functions)} ({layer})")
    try:
        res = check_family(module, fam, dtype, shapes, timeout, shrink=True, file=where, arms=arms)
    finally:
        module.close()
    if not res.passed:
        lines = [f"{layer}: {res.verdict}: {res.message}"]
        if res.pattern:
            lines.append(f"pattern: {res.pattern}")
        if res.mistake:
            lines.append(f"mistake: {res.mistake}")
        if res.smallest:
            lines.append(f"smallest failing input: {show(res.smallest)}")
        raise AssertionError("\n".join(lines))
    return res
