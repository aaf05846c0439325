"""Reports: report.md, agreement.csv, errors.csv, optional arrays, and the terminal summary.

Every file is written atomically (a temporary file, then a rename), so an
interrupted run never leaves a half-written report behind.
"""

from __future__ import annotations

import io
import itertools
import platform
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from .claims_report import claims_markdown, claims_terminal, write_claims  # noqa: F401 - re-exported
from .compare import Comparison, fmt as _fmt
from .files import RUN_FILES, atomic_write, file_name, output_set
from .model import Model
from .progress import Progress  # noqa: F401 - re-exported: the display lives in progress.py now
from .runner import CaseResult, RunResult
from .tolerances import TOLERANCES
from .verdict import more_cases, shown_cases


# --------------------------------------------------------------------------- files


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    # Masked (not computed) elements are saved as NaN; y stays integer.
    plain = {k: (np.ma.filled(v.astype(np.float64), np.nan) if np.ma.isMaskedArray(v) else v)
             for k, v in arrays.items()}
    np.savez(buf, **plain)
    return buf.getvalue()


def write_report(result: RunResult, out: Path, *, save_arrays: bool = False, command: str = "") -> None:
    """Write report.md, report.html, results.json, agreement.csv and errors.csv (and arrays/).

    The set is written into a staging directory and switched in at ``out`` in one step
    (``files.output_set``): a reader sees the previous set or this one, never a mix.
    Raises ``files.OutputError`` (one line) when it cannot be written; ``out`` is then unchanged.
    """
    from . import environment, html_report, results

    env = environment.collect(command, sorted({r.case.source for r in result.cases}), result.frameworks)
    errors = pd.DataFrame([{"case": e.case, "backend": e.backend, "message": e.message}
                           for e in result.errors], columns=["case", "backend", "message"])
    with output_set(Path(out), RUN_FILES) as stage:
        atomic_write(stage / "agreement.csv", (text.encode() for text in agreement_chunks(result)))
        atomic_write(stage / "errors.csv", errors.to_csv(index=False).encode())
        if save_arrays:
            _write_arrays(result, stage / "arrays")
        nudge = stage / "nudge.md"  # written by `python -m harness study ...` into the same DIR
        tail = ["\n" + nudge.read_text()] if nudge.exists() else []
        atomic_write(stage / "report.md", (text.encode() for text in itertools.chain(markdown_chunks(result, command), tail)))
        atomic_write(stage / "results.json", (piece.encode() for piece in results.json_chunks(result, env)))
        atomic_write(stage / "report.html", html_report.render(result, env, stage).encode())


AGREEMENT_COLUMNS = [*Comparison.__dataclass_fields__, "pair"]


def agreement_chunks(result: RunResult, rows_per_chunk: int = 4096) -> Iterator[str]:
    """agreement.csv's text, a few thousand rows at a time (a whole sweep's table was the run's
    peak of memory): the header, then each chunk's rows as pandas writes them. The pieces join
    to the text of one table of every row (``tests/test_records.py``)."""
    rows: list[dict] = []
    header = True
    for c in result.iter_comparisons():
        rows.append(c.as_row())
        if len(rows) == rows_per_chunk:
            yield pd.DataFrame(rows, columns=AGREEMENT_COLUMNS).to_csv(index=False, header=header)
            rows, header = [], False
    if rows or header:
        yield pd.DataFrame(rows, columns=AGREEMENT_COLUMNS).to_csv(index=False, header=header)


def _write_arrays(result: RunResult, folder: Path) -> None:
    """arrays/<case>/inputs.npz and arrays/<case>/<backend>.npz; names mapped by ``file_name``
    (injective), so no two cases or backends share a file."""
    if any(r.shed for r in result.cases):
        raise ValueError("the run shed its arrays (run(..., keep_arrays=False)): nothing to save")
    for r in result.cases:
        case_dir = folder / file_name(r.case.name)
        atomic_write(case_dir / "inputs.npz", _npz_bytes(r.inputs))
        for backend, arrays in r.outputs.items():
            atomic_write(case_dir / f"{file_name(backend)}.npz", _npz_bytes(arrays))


# --------------------------------------------------------------------------- markdown


def verdict(result: RunResult) -> str:
    """The verdict's words (``verdict.run_verdict`` decides them for every writer)."""
    return result.verdict.text


def pairs_markdown(result: RunResult) -> list[str]:
    """Which tolerance row each pair used and how much it compared; notes on declared kinds."""
    lines = ["| pair | tolerance rows | comparisons | elements compared | failing |", "|---|---|---|---|---|"]
    for p in result.verdict.pairs:
        lines.append(f"| {p.pair} | {', '.join(p.rows) or '—'} | {p.comparisons} | "
                     f"{p.elements}{' **(nothing compared)**' if not p.elements else ''} | {p.failing} |")
    lines += [f"- `{name}` {note}." for name, note in result.kind_notes.items()]
    return lines


def _versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for pkg in ("numpy", "pandas", "torch", "jax"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def _worst(r: CaseResult) -> Comparison | None:
    """The comparison nearest its tolerance (or furthest past it), leaving out the quantities
    that are 0 in exact arithmetic (noise against noise) unless one of them fails."""
    zero = getattr(r.case.model, "structurally_zero", lambda q: False)
    shown = ([c for c in r.comparisons if not c.passed]
             or [c for c in r.comparisons if not zero(c.quantity)] or r.comparisons)
    return max(shown, key=lambda c: c.tol_used, default=None)


def markdown(result: RunResult, command: str = "") -> str:
    return "".join(markdown_chunks(result, command))


def markdown_chunks(result: RunResult, command: str = "") -> Iterator[str]:
    """report.md's text: the head (verdict, tolerances, pairs, summary, problems), then one
    piece per case, so a large sweep's report is never one string in memory."""
    n_cases = len(result.cases)
    n_comps = result.n_comparisons
    problems = result.failures()
    lines = [
        "# Backprop cross-validation report",
        "",
        f"**Verdict: {verdict(result)}.** {n_cases} cases, {len(result.backends)} backends "
        f"({', '.join(result.backends)}), {n_comps} comparisons "
        f"({n_comps - len(problems)} agree).",
        "",
        f"- Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `{command}`"
        if command else f"- Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- {_versions()}; {platform.machine()} {platform.system()}",
        "- Cells show the norm-relative difference ‖a−b‖/(‖a‖+‖b‖); ✗ marks a quantity with "
        "elements out of tolerance; n/c: nothing compared (every element masked). An element passes when |a−b| ≤ atol·s + rtol·max(|a|,|b|), "
        "s the largest |element| of the quantity (and |J| for finite-difference pairs).",
    ]
    kinks = [(r.case.name, b, n) for r in result.cases for b, n in r.inconclusive.items()]
    if kinks:
        total = sum(n for _, _, n in kinks)
        lines.append(f"- Inconclusive, not compared: {total} finite-difference coordinates whose nudge "
                     "crossed a kink or that no step resolved; each case's notes say which ("
                     + ", ".join(f"{c}: {b} {n}" for c, b, n in kinks) + ").")
    tied = [(r.case.name, r.ties) for r in result.cases if r.ties]
    if tied:
        lines.append(f"- Ties, not compared: {sum(t['windows'] for _, t in tied)} max-pool windows whose "
                     "maximum is attained twice; the gradient there is a choice (torch and jax take the "
                     "first maximum), so the elements that depend on it are masked in every backend ("
                     + ", ".join(f"{c}: {t['windows']} windows, {t['elements']} elements" for c, t in tied)
                     + ").")
    lines += [
        "",
        "## Tolerances",
        "",
        "| dtype | pair kind | rtol | atol (× scale) | why |",
        "|---|---|---|---|---|",
    ]
    for (dtype, kind), tol in TOLERANCES.items():
        lines.append(f"| {dtype} | {kind} | {tol.rtol:g} | {tol.atol:g} | {tol.reason} |")

    lines += ["", "## Pairs", "", *pairs_markdown(result)]
    lines += ["", "## Summary", "",
              "| case | network | m | worst quantity · pair | norm-rel | tolerance used | verdict |",
              "|---|---|---|---|---|---|---|"]
    for r in result.cases:
        w = _worst(r)
        where = f"{w.quantity} · {w.pair}" if w else "—"
        state = r.state if r.passed else r.state.upper()
        lines.append(f"| [{r.case.name}](#{_anchor(r.case.name)}) | {r.case.model.describe()} | "
                     f"{r.case.batch} | {where} | {_fmt(w.norm_rel) if w else '—'} | "
                     f"{f'{100 * w.tol_used:.2g}%' if w else '—'} | {state} |")

    if problems or result.errors:
        lines += ["", "## Problems", ""]
        for r in result.cases:
            lines += [f"- **{r.case.name}** {c.a} vs {c.b}: first disagreement at `{c.quantity}`"
                      f"{_layer_text(c.quantity)}" for c in r.first_disagreements().values()]
        lines += [f"- **{c.case}** `{c.quantity}` {c.a} vs {c.b}: {c.message()}" for c in problems]
        lines += [f"- **{e.case}** backend `{e.backend}` raised: {e.message}" for e in result.errors]

    lines += ["", "## Cases"]
    yield "\n".join(lines)
    for r in result.cases:
        yield "\n" + "\n".join(["", *_case_section(r)])
    yield "\n"


def _layer_text(quantity: str) -> str:
    l = Model.layer_of(quantity)
    return f" (layer {l})" if l is not None else ""


def _anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", name.lower()).replace(" ", "-")


def _case_section(r: CaseResult) -> list[str]:
    c = r.case
    lines = [f"### {c.name}", ""]
    if c.description:
        lines += [c.description, ""]
    lines.append(f"`{c.model.describe()}`, batch m = {c.batch}, seed {c.seed}, "
                 f"input scale {c.input_scale:g}, {c.model.n_params} parameters; from `{c.source}`.")
    if any(s.kind == "residual" for s in getattr(c.model, "network", ())):
        lines += ["", f"Layers (a residual's body numbered right after it): {c.model.numbered()}."]
    times = ", ".join(f"{b} {1000 * s:.1f} ms" for b, s in r.seconds.items())
    lines += ["", f"Time per backend: {times}."]
    for backend, (masked, checked, total) in r.masked_counts().items():
        if masked:
            lines.append(f"`{backend}` checked {checked} of {total} elements of {', '.join(masked)} "
                         "(a seeded sample on large cases, minus kink crossings and max-pool ties).")
    if r.ties:
        lines.append(f"Max-pool ties: {r.ties['windows']} windows with their maximum attained twice; "
                     f"{r.ties['elements']} elements depend on which one gets the gradient and are not "
                     "compared.")
    for backend, note in r.notes.items():
        lines.append(f"`{backend}`: {note}.")
    for e in r.errors:
        lines.append(f"**Error in `{e.backend}`:** {e.message}")
    for x in r.first_disagreements().values():
        lines.append(f"**{x.a} vs {x.b}: first disagreement at `{x.quantity}`{_layer_text(x.quantity)}** "
                     "(in algorithm order; the quantities computed from it disagree too).")
    if not r.comparisons:
        return lines + ["", "No comparisons: fewer than two backends succeeded."]
    pairs = list(dict.fromkeys(x.pair for x in r.comparisons))
    cells = {(x.quantity, x.pair): x for x in r.comparisons}
    lines += ["", "| quantity | " + " | ".join(p.replace("-vs-", " vs ") for p in pairs) + " |",
              "|---" * (len(pairs) + 1) + "|"]
    for q in c.model.algorithm_order() + ["Jv"]:
        if not any((q, p) in cells for p in pairs):
            continue
        row = []
        for p in pairs:
            x = cells.get((q, p))
            if x is None:
                row.append("—")  # one of the pair does not provide this intermediate
                continue
            if not x.n_checked and x.n_total:
                row.append("n/c")  # nothing compared: all elements masked
                continue
            row.append(_fmt(x.norm_rel) + ("" if x.passed else f" ✗ ({x.n_off}/{x.n_checked})"))
        lines.append(f"| {q} | " + " | ".join(row) + " |")
    return lines


# --------------------------------------------------------------------------- terminal


MAX_SUMMARY_ROWS = 100  # cases in the terminal's table: every other case, then agreeing ones up to this


def summary_table(result: RunResult, out_dir: Path | None = None) -> str:
    """The compact table printed at the end of a run. A large sweep's table stays a screenful or
    two: the cases that did not agree first (up to MAX_SUMMARY_ROWS), then agreeing ones up to
    that many, in run order, and a line that counts the rest (report.md lists every case); the
    first disagreements, problems and errors, 20 lines each at most."""
    rows = [("case", "network", "m", "worst: quantity pair norm-rel", "verdict")]
    shown = shown_cases(result.cases, MAX_SUMMARY_ROWS)
    for r in shown:
        w = _worst(r)
        worst = f"{w.quantity} {w.pair} {_fmt(w.norm_rel)}" if w else "-"
        state = "ok" if r.passed else r.state.upper()
        rows.append((r.case.name, r.case.model.describe(), str(r.case.batch), worst, state))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    if len(shown) < len(result.cases):
        rest, agree = more_cases(result.cases, shown)
        lines.append(f"... and {rest:,} more cases ({agree:,} agree, {rest - agree:,} do not; "
                     "report.md lists every case)")
    firsts = [(r.case.name, c) for r in shown for c in r.first_disagreements().values()]
    for name, c in firsts[:20]:
        lines.append(f"  ✗ {name}: {c.a} vs {c.b} first disagree at {c.quantity}{_layer_text(c.quantity)}")
    if len(firsts) > 20:
        lines.append(f"  ... and {len(firsts) - 20} more first disagreements (see report.md)")
    problems = result.failures()
    for c in problems[:20]:
        lines.append(f"  ✗ {c.message()}")
    if len(problems) > 20:
        lines.append(f"  ... and {len(problems) - 20} more (see report.md)")
    errors = result.errors
    for e in errors[:20]:
        lines.append(f"  ! {e.case}: backend {e.backend} raised {e.message}")
    if len(errors) > 20:
        lines.append(f"  ... and {len(errors) - 20} more errors (see errors.csv)")
    n_kink = sum(n for r in result.cases for n in r.inconclusive.values())
    if n_kink:
        lines.append(f"  ~ {n_kink} finite-difference coordinates inconclusive (a nudge crossed a kink, "
                     "or no step resolved them), not compared")
    n_tied = sum(r.ties.get("windows", 0) for r in result.cases)
    if n_tied:
        lines.append(f"  ~ {n_tied} max-pool windows tied (maximum attained twice): the "
                     f"{sum(r.ties['elements'] for r in result.cases if r.ties)} elements that depend "
                     "on them are not compared")
    lines.append("")
    lines.append(f"{verdict(result).upper()}: {len(result.cases)} cases, backends "
                 f"{', '.join(result.backends)}, {result.n_comparisons} comparisons"
                 + (f"; report in {out_dir}/report.md" if out_dir else ""))
    return "\n".join(lines)


__all__ = ["write_report", "markdown", "summary_table", "verdict", "Progress", "write_claims",
           "claims_markdown", "claims_terminal"]
