"""results.json: a run's records in machine-readable form, with a schema version.

The schema is ``harness/results.schema.json`` (JSON Schema 2020-12). Non-finite numbers
(an infinite difference where a backend returned NaN, say) are written as null, since
JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
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
    comparisons = []
    for x in result.comparisons:
        row = x.as_row()
        row["index"] = list(x.index)
        comparisons.append(row)
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
        "comparisons": comparisons,
        "errors": [{"case": e.case, "backend": e.backend, "message": e.message} for e in result.errors],
    })


def to_json(result: RunResult, environment: dict) -> str:
    return json.dumps(to_dict(result, environment), indent=1, ensure_ascii=False, allow_nan=False)


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
