"""Case files: TOML in, validated ``Case`` records out, and the one seeded draw of arrays.

A file holds ``[[case]]`` tables (one network each) and ``[[sweep]]`` tables
(``count`` random networks drawn from ranges). Files are parsed as data only
(tomllib); every problem raises ``InputError`` naming file, case and field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .activations import ACTIVATIONS, ALL_NAMES, OUTPUT_ONLY, SOFTMAX
from .errors import InputError, did_you_mean
from .losses import LOSSES
from .model import DTYPES, Model

CASE_KEYS = {"name", "description", "layers", "activations", "output", "loss", "batch",
             "dtype", "seed", "input_scale", "values"}
SWEEP_KEYS = {"name", "count", "seed", "depth", "width", "activations", "losses", "dtypes",
              "batch", "input_scale"}
TOP_KEYS = {"case", "sweep"}
MAX_ELEMENTS = 200_000_000  # parameters + activations of one case: 1.6 GB in float64
MAX_INPUT_SCALE = 1e10  # beyond this, z = x W overflows float32 for any width


@dataclass(frozen=True, eq=False)
class Case:
    """One network with its inputs: a ``Model`` plus batch, seed and explicit values."""

    name: str
    model: Model
    batch: int
    seed: int
    source: str = "<memory>"
    input_scale: float = 1.0
    description: str = ""
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The inputs every backend gets: X, Y (y too for cross_entropy), W1, b1, ...

        One ``numpy.random.Generator`` seeded with ``seed`` draws everything in a
        fixed order (X, targets, then W^[l], b^[l] by layer) in float64, then casts
        to the case dtype. Explicit ``values`` replace their draw afterwards, so
        overriding one array leaves the others' bits unchanged.
        """
        model, m = self.model, self.batch
        rng = np.random.default_rng(self.seed)
        n_out = model.layers[-1]
        out: dict[str, np.ndarray] = {"X": rng.standard_normal((m, model.layers[0])) * self.input_scale}
        if model.loss == "cross_entropy":
            out["y"] = rng.integers(0, n_out, size=m)
        elif model.loss == "binary_cross_entropy":
            out["Y"] = rng.uniform(0.0, 1.0, size=(m, n_out))
        else:
            out["Y"] = rng.standard_normal((m, n_out))
        for name, shape in model.param_shapes().items():
            scale = 1 / math.sqrt(shape[0]) if name.startswith("W") else 0.1
            out[name] = rng.standard_normal(shape) * scale
        out.update({k: v.copy() for k, v in self.values.items()})  # never hand out our own
        if model.loss == "cross_entropy":
            out["y"] = np.asarray(out["y"], dtype=np.int64)
            out["Y"] = np.eye(n_out)[out["y"]]  # ȳ, the one-hot of y
        dt = model.np_dtype
        return {k: (v if k == "y" else np.asarray(v, dtype=dt)) for k, v in out.items()}


# --------------------------------------------------------------------------- loading


def load_file(path: str | Path) -> list[Case]:
    """Parse and validate one case file."""
    src = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError("case file not found", file=src) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read case file: {e}", file=src) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"malformed TOML: {e}", file=src) from None
    for key in doc:
        if key not in TOP_KEYS:
            raise InputError(f"unknown top-level key {key!r}{did_you_mean(key, TOP_KEYS)}; "
                             "expected [[case]] or [[sweep]] tables", file=src)
    cases: list[Case] = []
    for i, raw in enumerate(_table_list(doc, "case", src)):
        cases.append(_parse_case(raw, src, f"case #{i + 1}"))
    for i, raw in enumerate(_table_list(doc, "sweep", src)):
        cases.extend(_expand_sweep(raw, src, f"sweep #{i + 1}"))
    seen: set[str] = set()
    for c in cases:
        if c.name in seen:
            raise InputError("duplicate case name (names must be unique in a file)",
                             file=src, case=c.name, field="name")
        seen.add(c.name)
    if not cases:
        raise InputError("no [[case]] or [[sweep]] tables", file=src)
    return cases


def load_files(paths: list[str | Path]) -> list[Case]:
    """Load several files; a case name may appear only once in a run."""
    cases: list[Case] = []
    where: dict[str, str] = {}
    for p in paths:
        for c in load_file(p):
            if c.name in where:
                raise InputError(f"case name already used in {where[c.name]}; names must be "
                                 "unique across the files of one run", file=c.source,
                                 case=c.name, field="name")
            where[c.name] = c.source
            cases.append(c)
    return cases


def _table_list(doc: dict, key: str, src: str) -> list[dict]:
    val = doc.get(key, [])
    if not isinstance(val, list) or not all(isinstance(t, dict) for t in val):
        raise InputError(f"{key!r} must be an array of tables, written [[{key}]]", file=src)
    return val


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
            self.fail(key, f"expected {what or _kind_name(kind)}, got {val!r}")
        if not isinstance(val, kind):
            self.fail(key, f"expected {what or _kind_name(kind)}, got {val!r}")
        return val

    def int_range(self, key: str, default: Any, lo: int) -> Any:
        val = self.get(key, int, default)
        if val is not default and val < lo:
            self.fail(key, f"must be >= {lo}, got {val}")
        return val


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "an array",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _parse_case(raw: dict, src: str, label: str) -> Case:
    f = _Fields(raw, CASE_KEYS, src, label)
    name = f.get("name", str)
    if not name.strip():
        f.fail("name", "must not be empty")
    layers = f.get("layers", list, what="an array of layer sizes [n_0, ..., n_L]")
    if len(layers) < 2:
        f.fail("layers", f"needs at least [n_0, n_1], got {layers}")
    for i, n in enumerate(layers):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            f.fail(f"layers[{i}]", f"layer sizes must be positive integers, got {n!r}")
    L = len(layers) - 1
    loss = f.get("loss", str)
    if loss not in LOSSES:
        f.fail("loss", f"unknown loss {loss!r}{did_you_mean(loss, LOSSES)}; "
                       f"known: {', '.join(LOSSES)}")
    acts = _parse_activations(f, L, loss)
    _check_output(f, acts[-1], loss, layers[-1])
    dtype = f.get("dtype", str, "float64")
    if dtype not in DTYPES:
        f.fail("dtype", f"unknown dtype {dtype!r}{did_you_mean(dtype, DTYPES)}; known: float32, float64")
    seed = f.int_range("seed", 0, 0)
    scale = f.get("input_scale", (int, float), 1.0)
    if not (math.isfinite(scale) and 0 < scale <= MAX_INPUT_SCALE):
        f.fail("input_scale", f"must be a number in (0, {MAX_INPUT_SCALE:g}], got {scale!r}")
    description = f.get("description", str, "")
    model = Model(tuple(layers), tuple(acts), loss, dtype)
    values = _parse_values(f, model)
    batch = f.int_range("batch", None, 1)
    if "X" in values:
        m_x = values["X"].shape[0]
        if batch is not None and batch != m_x:
            f.fail("batch", f"batch = {batch} but values.X has {m_x} rows")
        batch = m_x
    if batch is None:
        f.fail("batch", "missing required field (or give values.X)")
    _check_size(f, model, batch)
    for key in ("X", "Y"):
        if key in values and values[key].shape[0] != batch:
            f.fail(f"values.{key}", f"has {values[key].shape[0]} rows, batch is {batch}")
    if "y" in values and values["y"].shape[0] != batch:
        f.fail("values.y", f"has {values['y'].shape[0]} labels, batch is {batch}")
    return Case(name, model, batch, seed, src, float(scale), description, values)


def _check_size(f: _Fields, model: Model, batch: int) -> None:
    """Refuse a case whose arrays alone would not fit in memory, before anything is drawn."""
    elements = model.n_params + batch * sum(model.layers)
    if elements > MAX_ELEMENTS:
        f.fail("batch" if batch * sum(model.layers) > model.n_params else "layers",
               f"case too large: {elements:.3g} array elements (parameters + activations), "
               f"limit {MAX_ELEMENTS:.0e}")


def _parse_activations(f: _Fields, L: int, loss: str) -> list[str]:
    acts = f.get("activations", (list, str), what="a list of L names or one hidden-layer name")
    if isinstance(acts, str):
        # One name: every hidden layer; the output activation from `output` or the loss.
        output = f.get("output", str, LOSSES[loss].default_output)
        fields = [("activations", acts)] + [("output", output)]  # checked even when L = 1
        acts = [acts] * (L - 1) + [output]
    else:
        if "output" in f.raw:
            f.fail("output", "give the output activation either as the last entry of "
                             "`activations` or in `output`, not both")
        if len(acts) != L:
            f.fail("activations", f"needs L = {L} names (g^[1]..g^[L]) for layers "
                                  f"{f.raw['layers']}, got {len(acts)}")
        fields = [(f"activations[{i}]", a) for i, a in enumerate(acts)]
    for fld, a in fields:
        if not isinstance(a, str) or a not in ALL_NAMES:
            f.fail(fld, f"unknown activation {a!r}{did_you_mean(str(a), ALL_NAMES)}; "
                        f"known: {', '.join(ALL_NAMES)}")
    for fld, a in fields[:-1]:
        if a in OUTPUT_ONLY:
            f.fail(fld, f"{a} is not elementwise and is allowed only as the output activation")
    return list(acts)


def _check_output(f: _Fields, out: str, loss: str, n_out: int) -> None:
    need = LOSSES[loss].output_activation
    fld = "output" if "output" in f.raw else "activations"
    if need is not None and out != need:
        f.fail(fld, f"loss {loss} needs output activation {need}, got {out}")
    if out == SOFTMAX and n_out < 2:
        f.fail("layers", f"softmax over {n_out} class is constant 1 (zero gradient); "
                         "n_L must be >= 2")


def _parse_values(f: _Fields, model: Model) -> dict[str, np.ndarray]:
    raw = f.get("values", dict, {})
    shapes = model.param_shapes()
    n0, nL = model.layers[0], model.layers[-1]
    target = "y" if model.loss == "cross_entropy" else "Y"
    allowed = {"X", target, *shapes}
    out: dict[str, np.ndarray] = {}
    for key, val in raw.items():
        fld = f"values.{key}"
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            if key == "Y" and target == "y":
                hint = " (cross_entropy takes y = [class indices], not one-hot Y)"
            elif key == "y" and target == "Y":
                hint = f" ({model.loss} takes targets as a 2-D array Y)"
            f.fail(fld, f"unknown array{hint}; allowed: {', '.join(sorted(allowed))}")
        if key == "y":
            out[key] = _parse_labels(f, fld, val, nL)
            continue
        bad_leaf = _first_non_number(val)
        if bad_leaf is not None:
            f.fail(fld, f"must be an array of numbers, found {bad_leaf!r}")
        try:
            arr = np.array(val, dtype=np.float64)
        except (ValueError, TypeError):
            f.fail(fld, "must be a rectangular array of numbers")
        if arr.ndim == 1 and key.startswith("b"):
            arr = arr[None, :]  # b may be written as a flat row
        want = shapes.get(key) or (None, n0 if key == "X" else nL)
        if arr.ndim != 2 or any(w is not None and w != s for w, s in zip(want, arr.shape)):
            shown = "×".join("m" if w is None else str(w) for w in want)
            f.fail(fld, f"shape {'×'.join(map(str, arr.shape))} does not match {shown} "
                        f"(row-vector convention)")
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            f.fail(fld, f"non-finite value {arr[idx]} at index {idx}")
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(arr.astype(model.np_dtype))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            f.fail(fld, f"value {arr[idx]} at index {idx} overflows {model.dtype}")
        if key == "Y" and model.loss == "binary_cross_entropy" and ((arr < 0) | (arr > 1)).any():
            f.fail(fld, "binary_cross_entropy targets must lie in [0, 1]")
        out[key] = arr
    return out


def _first_non_number(val: Any) -> Any:
    """The first leaf of a nested list that is not an int or float (TOML bools, strings)."""
    if isinstance(val, list):
        for v in val:
            bad = _first_non_number(v)
            if bad is not None:
                return bad
        return None
    return None if isinstance(val, (int, float)) and not isinstance(val, bool) else val


def _parse_labels(f: _Fields, fld: str, val: Any, n_classes: int) -> np.ndarray:
    if not isinstance(val, list) or not val:
        f.fail(fld, "must be a non-empty list of class indices")
    for i, v in enumerate(val):
        if isinstance(v, bool) or not isinstance(v, int):
            f.fail(f"{fld}[{i}]", f"class index must be an integer, got {v!r}")
        if not 0 <= v < n_classes:
            f.fail(f"{fld}[{i}]", f"label {v} out of range 0..{n_classes - 1}")
    return np.array(val, dtype=np.int64)


# --------------------------------------------------------------------------- sweeps


def _expand_sweep(raw: dict, src: str, label: str) -> list[Case]:
    f = _Fields(raw, SWEEP_KEYS, src, label)
    prefix = f.get("name", str)
    if not prefix.strip():
        f.fail("name", "must not be empty")
    count = f.int_range("count", ..., 1)
    seed = f.int_range("seed", 0, 0)
    depth = _range(f, "depth", [1, 4], 1)
    width = _range(f, "width", [1, 16], 1)
    batch = _range(f, "batch", [1, 32], 1)
    hidden = _names(f, "activations", list(ACTIVATIONS), set(ACTIVATIONS))
    losses = _names(f, "losses", list(LOSSES), set(LOSSES))
    dtypes = _names(f, "dtypes", list(DTYPES), set(DTYPES))
    scales = f.get("input_scale", list, [1.0, 1.0], what="[lo, hi]")
    if (len(scales) != 2
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                       and 0 < s <= MAX_INPUT_SCALE for s in scales)
            or scales[0] > scales[1]):
        f.fail("input_scale", f"must be [lo, hi] with 0 < lo <= hi, got {scales}")
    lo_s, hi_s = scales
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        L = int(rng.integers(depth[0], depth[1] + 1))
        loss = str(rng.choice(losses))
        sizes = [int(rng.integers(width[0], width[1] + 1)) for _ in range(L + 1)]
        acts = [str(rng.choice(hidden)) for _ in range(L - 1)]
        if loss == "half_sse":
            out = str(rng.choice(hidden + [SOFTMAX]))
        else:
            out = LOSSES[loss].output_activation or "identity"
        if out == SOFTMAX:
            sizes[-1] = max(sizes[-1], 2)
        scale = float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s))))
        model = Model(tuple(sizes), tuple(acts + [out]), loss, str(rng.choice(dtypes)))
        m = int(rng.integers(batch[0], batch[1] + 1))
        _check_size(f, model, m)
        cases.append(Case(f"{prefix}-{i:03d}", model, m, int(rng.integers(0, 2**31)), src, scale,
                          f"from sweep {prefix!r}"))
    return cases


def _range(f: _Fields, key: str, default: list[int], lo: int) -> list[int]:
    val = f.get(key, list, default, what="[lo, hi]")
    if (len(val) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in val)
            or not lo <= val[0] <= val[1]):
        f.fail(key, f"must be [lo, hi] with {lo} <= lo <= hi, got {val}")
    return val


def _names(f: _Fields, key: str, default: list[str], known: set[str]) -> list[str]:
    val = f.get(key, list, default)
    if not val:
        f.fail(key, "must not be empty")
    for i, v in enumerate(val):
        if not isinstance(v, str) or v not in known:
            f.fail(f"{key}[{i}]", f"unknown name {v!r}{did_you_mean(str(v), known)}; "
                                  f"known: {', '.join(sorted(known))}")
    return list(val)
