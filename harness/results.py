"""results.json: a run's records in machine-readable form, with a schema version.

The schema is ``harness/results.schema.json`` (JSON Schema 2020-12). Non-finite numbers
(an infinite difference where a backend returned NaN, say) are written as null, since
JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path

from .network import Network
from .runner import RunResult
from .tolerances import TOLERANCES

SCHEMA_VERSION = 3  # 3: network cases (input, network, l2, l2_form); multiclass_hinge
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return x


def _architecture(model) -> dict:
    """The MLP form's layers + activations, or a network's input, layers and L2."""
    if isinstance(model, Network):
        return {"input": list(model.input), "l2": model.l2, "l2_form": model.l2_form,
                "network": [{"layer": s.kind, "index": s.index, **dict(s.attrs),
                             "in_shape": list(s.in_shape), "out_shape": list(s.out_shape)}
                            for s in model.network]}
    return {"layers": list(model.layers), "activations": list(model.activations)}


def to_dict(result: RunResult, environment: dict) -> dict:
    return {**_head(result, environment), "comparisons": [_comparison(x) for x in result.comparisons],
            "errors": _errors(result)}


def _comparison(x) -> dict:
    row = x.as_row()
    row["index"] = list(x.index)
    return _clean(row)


def _errors(result: RunResult) -> list[dict]:
    return [{"case": e.case, "backend": e.backend, "message": e.message} for e in result.errors]


def _head(result: RunResult, environment: dict) -> dict:
    """Everything but the comparisons and the errors (which come last, in that order)."""
    v = result.verdict
    cases = []
    for r in result.cases:
        c, m = r.case, r.case.model
        cases.append({
            "name": c.name, "source": c.source, "description": c.description,
            **_architecture(m), "loss": m.loss,
            "dtype": m.dtype, "batch": c.batch, "seed": c.seed, "input_scale": c.input_scale,
            "n_params": m.n_params, "passed": r.passed, "state": r.state,
            "first_disagreements": {pair: x.quantity for pair, x in r.first_disagreements().items()},
            "notes": dict(r.notes), "inconclusive": dict(r.inconclusive), "ties": dict(r.ties),
            "seconds": dict(r.seconds),
        })
    return _clean({
        "schema": "backprop-xval/results",
        "schema_version": SCHEMA_VERSION,
        "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "verdict": v.text,
        "passed": v.passed,
        "states": dict(v.counts),
        "pairs": [{"a": p.a, "b": p.b, "rows": list(p.rows), "comparisons": p.comparisons,
                   "elements": p.elements, "failing": p.failing} for p in v.pairs],
        "kind_notes": dict(result.kind_notes),
        "backends": list(result.backends),
        "environment": environment,
        "tolerances": [{"dtype": d, "kind": k, "rtol": t.rtol, "atol": t.atol, "reason": t.reason}
                       for (d, k), t in TOLERANCES.items()],
        "cases": cases,
    })


def _dumps(x) -> str:
    return json.dumps(x, indent=1, ensure_ascii=False, allow_nan=False)


def to_json(result: RunResult, environment: dict) -> str:
    return _dumps(to_dict(result, environment))


def json_chunks(result: RunResult, environment: dict, rows_per_chunk: int = 4096) -> Iterator[str]:
    """``to_json``'s text, piece by piece: the comparisons (nearly all of a large run's file)
    a few thousand at a time, so a sweep's results.json is never one string in memory (it
    was 5.6 kB of memory a comparison at the peak, twice the run's own records).
    ``tests/test_html_json.py`` checks that the pieces join to ``to_json``'s text."""
    # The head with the comparisons and errors as empty lists, its closing lines cut: "[]"
    # then, at indent 1, '"errors": []' and the closing brace.
    head = _dumps({**_head(result, environment), "comparisons": [], "errors": []})
    tail = '\n "errors": []\n}'
    assert head.endswith('"comparisons": [],' + tail), "json.dumps' layout changed"
    yield head[:-len("[]," + tail)]
    total = result.n_comparisons
    if not total:
        yield "[],"
    else:
        yield "[\n"
        rows: list[dict] = []
        written = 0
        for x in result.iter_comparisons():  # one case's comparisons in memory at a time
            rows.append(_comparison(x))
            if len(rows) == rows_per_chunk or written + len(rows) == total:
                written += len(rows)
                # each row at indent 2: json.dumps' own text of it, every line but the first shifted
                text = ",\n".join("  " + _dumps(r).replace("\n", "\n  ") for r in rows)
                yield text + (",\n" if written < total else "\n ],")
                rows = []
    errors = _dumps({"errors": _errors(result)})  # '{\n "errors": [...]\n}'
    yield "\n" + errors[2:]


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
