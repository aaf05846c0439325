"""What ``python -m harness layers`` prints and writes: one row per layer on the terminal,
DIR/layers.csv (one row per layer × quantity × pair × shape, with ``passed``), DIR/layers.md,
DIR/layers.json, and DIR/layers.html (the section ``run``'s report.html also shows)."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd

from ..compare import fmt
from .check import YOURS, LayerResult
from .families import show

COLUMNS = ["layer", "verdict", "first disagreeing", "worst norm-rel", "shape"]


def rows(results: list[LayerResult]) -> list[dict]:
    out = []
    for r in results:
        shape = r.worst_shape if not r.passed and r.worst_shape else None
        out.append({"layer": r.family.name, "verdict": r.verdict, "first disagreeing": r.first or "—",
                    "worst norm-rel": fmt(r.worst) if r.verdict in ("agrees", "disagrees") else "—",
                    "shape": show(shape) if shape else "—"})
    return out


def details(results: list[LayerResult]) -> list[str]:
    """For each layer that does not agree: what, where, how much, the pattern, the mistake,
    the smallest failing input and its command."""
    lines = []
    for r in results:
        if r.passed:
            continue
        lines.append(f"{r.family.name}: {r.verdict}: {r.message}")
        if r.attempts and r.attempts[0].setup is not None and r.attempts[0].setup.note:
            lines.append(f"  convention: {r.attempts[0].setup.note}")
        for label, text in (("pattern", r.pattern), ("mistake", r.mistake)):
            if text:
                lines.append(f"  {label}: {text}")
        if r.smallest:
            lines.append(f"  smallest failing input: {show(r.smallest)}")
            lines.append(f"  reproduce: {r.command}")
    return lines


def verdict_line(results: list[LayerResult]) -> str:
    bad = [r.family.name for r in results if not r.passed]
    skipped = [r.family.name for r in results if r.verdict == "not in the catalog yet"]
    checked = len(results) - len(skipped)
    tail = f"; not in the catalog yet: {', '.join(skipped)}" if skipped else ""
    if bad:
        return f"DISAGREE: {len(bad)} of {checked} layers ({', '.join(bad)}){tail}"
    if not checked:
        return f"NOTHING CHECKED{tail}"
    arms = list(dict.fromkeys(n for r in results for c in r.comparisons for n in (c.a, c.b) if n != YOURS))
    return f"ALL AGREE: {checked} layers match {', '.join(arms) or 'nothing'}{tail}"


def table_text(results: list[LayerResult]) -> str:
    frame = pd.DataFrame(rows(results), columns=COLUMNS)
    return frame.to_string(index=False)


def comparisons_frame(results: list[LayerResult]) -> pd.DataFrame:
    recs = []
    for r in results:
        for a in r.attempts:
            for c in a.comparisons:
                recs.append({"layer": r.family.name, "shape": show(a.shape), "quantity": c.quantity,
                             "pair": c.pair, "involves_yours": YOURS in (c.a, c.b), "kind": c.kind,
                             "dtype": c.dtype, "norm_rel": c.norm_rel, "max_abs": c.max_abs,
                             "worst_index": "" if not c.index else "(" + ",".join(map(str, c.index)) + ")",
                             "tol_used": c.tol_used, "n_off": c.n_off, "n_checked": c.n_checked,
                             "passed": c.passed})
            if a.problem:
                recs.append({"layer": r.family.name, "shape": show(a.shape), "quantity": "", "pair": "",
                             "involves_yours": True, "kind": "", "dtype": "", "norm_rel": np.nan,
                             "max_abs": np.nan, "worst_index": "", "tol_used": np.nan, "n_off": 0,
                             "n_checked": 0, "passed": False, "problem": a.problem})
    return pd.DataFrame(recs)


def markdown(results: list[LayerResult], path: str, dtype: str) -> str:
    frame = pd.DataFrame(rows(results), columns=COLUMNS)
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |\n"
                   for row in frame.itertuples(index=False))
    det = details(results)
    return (f"# Your layers: {path} ({dtype})\n\n{verdict_line(results)}\n\n{head}{body}\n"
            + ("## What disagrees\n\n" + "\n".join(f"    {d}" if d.startswith("  ") else f"- {d}" for d in det) + "\n"
               if det else ""))


def as_json(results: list[LayerResult], path: str, dtype: str) -> dict:
    return {"file": path, "dtype": dtype, "verdict": verdict_line(results),
            "passed": all(r.passed for r in results) and any(r.verdict == "agrees" for r in results),
            "layers": [{"layer": r.family.name, "functions": list(r.family.functions), "verdict": r.verdict,
                        "passed": r.passed, "first": r.first,
                        "worst_norm_rel": r.worst if np.isfinite(r.worst) else None,
                        "shape": r.worst_shape, "message": r.message, "pattern": r.pattern,
                        "mistake": r.mistake, "smallest": r.smallest, "command": r.command,
                        "convention": r.attempts[0].setup.note if r.attempts and r.attempts[0].setup else "",
                        "shapes_checked": [a.shape for a in r.attempts]}
                       for r in results]}


def html_section(data: dict) -> str:
    """The "Your layers" section, from layers.json (what ``run``'s report.html embeds too)."""
    head = (f"<h2>Your layers: {html.escape(str(data.get('file', '')))}</h2>"
            f"<p>{html.escape(str(data.get('verdict', '')))} ({html.escape(str(data.get('dtype', '')))})</p>")
    frame = pd.DataFrame([{"layer": lay["layer"], "verdict": lay["verdict"], "first disagreeing": lay["first"] or "—",
                           "worst norm-rel": fmt(lay["worst_norm_rel"]) if lay["worst_norm_rel"] is not None else "—",
                           "smallest failing input": show(lay["smallest"]) if lay["smallest"] else "—",
                           "what": " · ".join(t for t in (lay["pattern"], lay["mistake"]) if t)}
                          for lay in data.get("layers", [])])
    return head + frame.to_html(index=False, escape=True)


def html_page(data: dict) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Your layers</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
            + html_section(data) + "</body></html>\n")


def dumps(data: dict) -> str:
    return json.dumps(data, indent=1, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
