"""report.html: one self-contained page (plots embedded as data URIs, no network fetches).

Built with pandas (to_html / Styler) and matplotlib. Sections: verdict, agreement heatmap (up
to HEATMAP_MAX_CASES cases), the margin histogram and quantiles, summary, problems, per-case
tables (capped), claims and studies when their results are in DIR, and the environment.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .model import Model
from .claims_report import claim_cell, claims_table
from .compare import fmt as _fmt
from .runner import CaseResult, RunResult
from .tolerances import TOLERANCES
from .verdict import more_cases, shown_cases

CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #1d1d1f; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
.verdict { font-size: 1.4em; font-weight: 600; padding: 0.6em 1em; border-radius: 6px; }
.ok { background: #e6f4ea; color: #135c2c; } .bad { background: #fce8e6; color: #8a1c12; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; }
th { background: #f5f5f7; }
.fail { background: #f8c9c4 !important; font-weight: 600; } .nc { color: #999; }
img { max-width: 100%; } .meta { color: #555; font-size: 0.9em; } code { font-size: 0.95em; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


MAX_HEATMAP_ROWS = 80  # cases in the heatmap: the worst ones when there are more
HEATMAP_MAX_CASES = 60  # above this many cases the margin histogram stands in for the heatmap
MARGIN_FLOOR = 1e-9  # margins below (exact agreement: 0) are drawn here on the log axis
MAX_CASE_SECTIONS = 100  # per-case tables: failing cases first, then passing ones, this many in all
MAX_SUMMARY_ROWS = 1000  # the summary table: cases that did not agree first, then agreeing ones
HEATMAP_ROWS = ("analytic", "finite_difference")  # their rtol values are the red lines on the colour bar


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by Agg, without pyplot: importing pyplot cost half a second of
    every run, and nothing here needs its figure manager."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself: savefig and get_renderer draw with Agg
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _plain_log_ticks(axis) -> None:
    """Log-axis tick labels as plain text (1e-09, 0.001, 10): the default mathtext labels are
    parsed by pyparsing, a good part of the plots' time."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(NullFormatter())


def _text_inches(fig, texts: list[str], fontsize: float) -> float:
    """The width in inches of the widest of ``texts`` drawn at ``fontsize``, measured by the
    figure's own renderer, for margins set by hand. Matplotlib's constrained layout did this for
    every label and artist, several times over: two thirds of the plots' time."""
    renderer = fig.canvas.get_renderer()
    probe = fig.text(0, 0, "", fontsize=fontsize)
    widest = 0.0
    for t in texts:
        probe.set_text(t)
        widest = max(widest, probe.get_window_extent(renderer).width)
    probe.remove()
    return widest / fig.dpi


def heatmap_png(result: RunResult) -> bytes:
    """Cases × backend pairs, coloured by the worst norm-relative difference (log scale)."""
    from matplotlib.colors import LogNorm

    pairs = list(dict.fromkeys(c.pair for c in result.iter_comparisons()))
    cases = result.cases
    if len(cases) > MAX_HEATMAP_ROWS:  # the worst cases, in run order, so the page stays readable
        worst = sorted(cases, key=lambda r: (r.passed, -max((c.tol_used for c in r.comparisons), default=0)))
        keep = {id(r) for r in worst[:MAX_HEATMAP_ROWS]}
        cases = [r for r in cases if id(r) in keep]
    names = [r.case.name for r in cases]
    worst = np.full((len(names), len(pairs)), np.nan)
    failed = np.zeros_like(worst, dtype=bool)
    for i, r in enumerate(cases):
        for c in r.comparisons:
            j = pairs.index(c.pair)
            v = c.norm_rel if np.isfinite(c.norm_rel) else 1.0
            if c.n_checked:
                worst[i, j] = max(np.nan_to_num(worst[i, j], nan=0.0), v)
            failed[i, j] |= not c.passed
    shown = np.clip(worst, 1e-18, 1.0)
    pair_labels = [p.replace("-vs-", "\nvs ") for p in pairs]
    # Margins in inches: the case names on the left, the title and the two-line pair names on
    # top, the colour bar and its label on the right; the cells take what is left.
    probe = _figure(1, 1)
    left = 0.15 + _text_inches(probe, names, 7)
    label_w = _text_inches(probe, pair_labels, 7)
    top, bottom, bar = 0.8, 0.15, 1.25
    width = max(7.0, left + max(3.5, 0.8 * len(pairs)) + bar)
    height = top + max(0.22 * len(names), 0.6) + bottom
    cells_w = width - left - bar
    fig = _figure(width, height)
    ax = fig.add_axes((left / width, bottom / height, cells_w / width, (height - top - bottom) / height))
    cax = fig.add_axes(((left + cells_w + 0.1) / width, bottom / height, 0.12 / width,
                        (height - top - bottom) / height))
    im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", cmap="viridis",
                   norm=LogNorm(vmin=1e-18, vmax=1.0), interpolation="nearest")
    for i, j in zip(*np.nonzero(failed)):
        ax.text(j, i, "✗", ha="center", va="center", color="red", fontsize=10, fontweight="bold")
    # Pair names wider than their column are drawn smaller rather than over each other.
    ax.set_xticks(range(len(pairs)), pair_labels, fontsize=7 if label_w <= cells_w / max(len(pairs), 1) else 5)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.xaxis.tick_top()
    bar = fig.colorbar(im, cax=cax)
    bar.set_label("worst ‖a−b‖/(‖a‖+‖b‖) over quantities", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    # The tolerance lines: the rtol of each row in use, where agreement turns into disagreement.
    for rtol in sorted({t.rtol for (_, kind), t in TOLERANCES.items() if kind in HEATMAP_ROWS}):
        bar.ax.axhline(rtol, color="red", lw=1.5)
    fig.suptitle("worst norm-relative difference per case and pair; ✗ = out of tolerance", fontsize=9,
                 y=1 - 0.08 / height, va="top")
    return _png(fig)


def margins(result: RunResult) -> dict[tuple[str, str], np.ndarray]:
    """Per (pair kind, dtype), in that order: each comparison's margin, the worst element's
    |a − b| ÷ the tolerance allowed there (``Comparison.tol_used``: at most 1 passes, above 1
    is out of tolerance; inf for NaN/Inf or mismatched shapes). A comparison that compared
    nothing (every element masked) has no margin and is left out."""
    groups: dict[tuple[str, str], list[float]] = {}
    for c in result.iter_comparisons():
        if c.n_checked or not c.n_total:
            groups.setdefault((c.kind, c.dtype), []).append(c.tol_used)
    return {k: np.asarray(groups[k], dtype=float) for k in sorted(groups)}


def margin_quantiles(values: np.ndarray) -> dict[str, float]:
    """Median, 99th percentile and largest margin: observed values (no interpolation, which
    would make NaN of an inf beside a finite margin)."""
    q = np.quantile(values, [0.5, 0.99], method="inverted_cdf")
    return {"median": float(q[0]), "p99": float(q[1]), "max": float(values.max())}


def margin_histogram_png(groups: dict[tuple[str, str], np.ndarray]) -> bytes:
    """One panel per (pair kind, dtype): how many comparisons have each margin, log x, the
    tolerance (margin 1) as a red line. Margins below MARGIN_FLOOR are drawn at it, non-finite
    ones at the right edge."""
    finite = np.concatenate([v[np.isfinite(v)] for v in groups.values()])
    top = max(10.0, float(finite.max()) * 2 if finite.size else 10.0)
    # Just above 1 is a bin edge (bins are [left, right)): a bin holds comparisons either within
    # tolerance (margin 1 included) or out of it, never both.
    bins = np.concatenate([np.logspace(np.log10(MARGIN_FLOOR), 0, 46)[:-1], [np.nextafter(1.0, 2.0)],
                           np.logspace(0, np.log10(top), 15)[1:]])
    height = 0.75 + 1.5 * len(groups)
    fig = _figure(8.0, height)
    # Margins in inches, set by hand (see _text_inches): the y labels on the left, each panel's
    # title above it, the x label below the last.
    fig.subplots_adjust(left=0.75 / 8, right=1 - 0.15 / 8, top=1 - 0.3 / height, bottom=0.5 / height,
                        hspace=0.35 / 1.15)
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)
    for ax, ((kind, dtype), v) in zip(axes[:, 0], groups.items()):
        shown = np.clip(np.where(np.isfinite(v), v, top), MARGIN_FLOOR, top)
        ax.hist([shown[v <= 1], shown[~(v <= 1)]], bins=bins, histtype="stepfilled", log=True, stacked=True,
                color=["#3b6fb6", "#c0392b"])
        ax.axvline(1.0, color="red", lw=1.2)
        off = int((v > 1).sum())
        ax.set_title(f"{kind.replace('_', ' ')} · {dtype}: {len(v):,} comparisons"
                     + (f", {off:,} out of tolerance" if off else ""), fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_ylabel("comparisons", fontsize=7)
        _plain_log_ticks(ax.yaxis)
    axes[-1, 0].set_xscale("log")
    _plain_log_ticks(axes[-1, 0].xaxis)
    axes[-1, 0].set_xlabel("margin: worst element's |a − b| ÷ its allowed tolerance (red: 1, beyond it out of "
                           "tolerance)", fontsize=8)
    return _png(fig)


def _margins_section(result: RunResult) -> str:
    groups = margins(result)
    if not groups:
        return ""
    rows = [{"pair kind": kind.replace("_", " "), "dtype": dtype, "comparisons": len(v),
             **{k: _fmt(x) for k, x in margin_quantiles(v).items()},
             "out of tolerance (margin > 1)": int((v > 1).sum())}
            for (kind, dtype), v in groups.items()]
    return ("<h2>Margins</h2><p class='meta'>Each comparison's margin: its worst element's |a − b| ÷ the "
            "tolerance allowed there (rtol·max(|a|, |b|) + atol·s, plus the rounding floor where it was "
            f"added). At most 1 agrees; above 1 is out of tolerance. Margins below {MARGIN_FLOOR:g} "
            "(exact agreement included) are drawn at it, NaN/Inf at the right edge.</p>"
            + _img(margin_histogram_png(groups), "margin histogram")
            + pd.DataFrame(rows).to_html(index=False, escape=True))


def _case_table(r: CaseResult) -> str:
    cells = {(c.quantity, c.pair): c for c in r.comparisons}
    pairs = list(dict.fromkeys(c.pair for c in r.comparisons))
    quantities = [q for q in r.case.model.algorithm_order() + ["Jv"] if any((q, p) in cells for p in pairs)]
    values = pd.DataFrame(index=quantities, columns=[p.replace("-vs-", " vs ") for p in pairs], dtype=object)
    css = pd.DataFrame("", index=values.index, columns=values.columns)
    for q in quantities:
        for p, col in zip(pairs, values.columns):
            c = cells.get((q, p))
            if c is None:
                values.loc[q, col] = "—"
            elif not c.n_checked and c.n_total:
                values.loc[q, col], css.loc[q, col] = "n/c", "nc"
            else:
                values.loc[q, col] = _fmt(c.norm_rel) + ("" if c.passed else f" ✗ {c.n_off}/{c.n_checked}")
                if not c.passed:
                    css.loc[q, col] = "fail"
    # Backend names are the user's (a plugin's `name`): every cell, header and tooltip escaped.
    styler = values.style.set_td_classes(css).format(escape="html")
    styler = styler.format_index(escape="html", axis=0).format_index(escape="html", axis=1)
    tips = pd.DataFrame("", index=values.index, columns=values.columns)
    for q in quantities:
        for p, col in zip(pairs, values.columns):
            c = cells.get((q, p))
            if c is not None and not c.passed:
                tips.loc[q, col] = html.escape(c.message())
    styler = styler.set_tooltips(tips, props="visibility: hidden; position: absolute; z-index: 1; "
                                 "background: #333; color: #fff; padding: 4px; font-size: 0.8em;")
    return styler.to_html()


def _md_inline(text: str) -> str:
    """The little markdown the nudge section uses: **bold**, `code`, [text](link)."""
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"\[(.+?)\]\((.+?)\)", r"\1", t)  # links to sibling .md files: keep the text


def _claims_section(out: Path) -> str:
    path = out / "claims.csv"
    if not path.exists():
        return ""

    try:
        frame = pd.read_csv(path)
        frameworks = list(dict.fromkeys(frame["framework"]))
        table = claims_table(list(frame.itertuples(index=False)))
    except (OSError, ValueError, KeyError, AttributeError, pd.errors.ParserError) as e:
        # claims.csv is another command's file: a stale or edited one must not break this report
        return (f"<h2>Claims of the derivation</h2><p class='bad'>claims.csv in this folder could not "
                f"be read ({html.escape(type(e).__name__)}); run python -m harness claims again.</p>")
    # The cells of claims.md, from the same function: the two never show different numbers.
    rows = [{"claim": r["claim"], "formula": r["formula"], "dtype": r["dtype"],
             **{fw: claim_cell(r["fw"].get(fw)) for fw in frameworks}}
            for r in table]
    n_bad = int((~frame.passed).sum())
    head = "every claim holds" if not n_bad else f"{n_bad} failing instances"
    return (f"<h2>Claims of the derivation</h2><p>{head}: {len(frame)} instances. Each cell: the largest "
            "|hand − framework| over the instances; —: no independent evidence from that framework.</p>"
            + pd.DataFrame(rows).to_html(index=False, escape=True))


def _layers_section(out: Path) -> str:
    """The "Your layers" section of ``python -m harness layers`` run into the same folder."""
    path = out / "layers.json"
    if not path.exists():
        return ""
    import json

    from .userlayers.report import html_section

    try:
        return html_section(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # another command's file
        return (f"<h2>Your layers</h2><p class='bad'>layers.json in this folder could not be read "
                f"({html.escape(type(e).__name__)}); run python -m harness layers again.</p>")


def _studies_section(out: Path) -> str:
    parts = []
    for name, title in (("study-epsilon.png", "Error against ε"), ("study-cost.png", "Cost against size")):
        if (out / name).exists():
            parts.append(f"<h3>{title}</h3>" + _img((out / name).read_bytes(), title))
    nudge = out / "nudge.md"
    if nudge.exists():
        paras = [p for p in nudge.read_text().split("\n\n") if p.strip() and not p.startswith("## ")]
        parts.append("".join(f"<p>{_md_inline(p)}</p>" for p in paras))
    return ("<h2>Is the nudge used in practice?</h2>" + "".join(parts)) if parts else ""


def _environment_section(env: dict) -> str:
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            rows.append((prefix, str(value)))

    walk("", env)
    return "<h2>Environment</h2>" + pd.DataFrame(rows, columns=["setting", "value"]).to_html(index=False)


def _pairs_table(result: RunResult) -> str:
    rows = [{"pair": p.pair, "tolerance rows": ", ".join(p.rows) or "—", "comparisons": p.comparisons,
             "elements compared": p.elements if p.elements else "0 (nothing compared)",
             "failing": p.failing} for p in result.verdict.pairs]
    notes = "".join(f"<p class='bad'>{html.escape(name)} {html.escape(note)}.</p>"
                    for name, note in result.kind_notes.items())
    return pd.DataFrame(rows, columns=["pair", "tolerance rows", "comparisons", "elements compared",
                                       "failing"]).to_html(index=False, escape=True) + notes


def render(result: RunResult, environment: dict, out: Path) -> str:

    n_comps, failures = result.n_comparisons, result.failures()
    v = result.verdict.text
    body = [
        "<h1>Backprop cross-validation report</h1>",
        f'<div class="verdict {"ok" if result.passed else "bad"}" id="verdict">Verdict: {html.escape(v)}</div>',
        f'<p class="meta">{len(result.cases)} cases · {len(result.backends)} backends '
        f'({html.escape(", ".join(result.backends))}) · {n_comps} comparisons, '
        f'{n_comps - len(failures)} agree · command <code>{html.escape(environment.get("command", ""))}</code></p>',
    ]
    if len(result.cases) > HEATMAP_MAX_CASES:  # a row per case: unreadable at this size
        body.append(f"<p class='meta' id='no-heatmap'>{len(result.cases):,} cases: the agreement heatmap (a "
                    f"row per case) is left out above {HEATMAP_MAX_CASES} cases; the margin histogram "
                    "below stands in for it.</p>")
    else:
        body += [
            "<h2>Agreement heatmap</h2>", _img(heatmap_png(result), "agreement heatmap"),
            (f"<p class='meta'>The {MAX_HEATMAP_ROWS} worst of {len(result.cases)} cases.</p>"
             if len(result.cases) > MAX_HEATMAP_ROWS else ""),
            "<p class='meta'>Red lines on the colour bar: the rtol of the tolerance rows "
            + ", ".join(f"{d} {k.replace('_', ' ')} {t.rtol:g}" for (d, k), t in TOLERANCES.items()
                        if k in HEATMAP_ROWS)
            + ". A cell is ✗ when any element of any quantity is out of tolerance.</p>",
        ]
    body.append(_margins_section(result))
    summary = []
    listed = shown_cases(result.cases, MAX_SUMMARY_ROWS)
    for r in listed:
        firsts = "; ".join(f"{p}: {c.quantity}" for p, c in r.first_disagreements().items())
        summary.append({"case": r.case.name, "network": r.case.model.describe(), "m": r.case.batch,
                        "verdict": r.state if r.passed else r.state.upper(),
                        "first disagreement": firsts})
    body += ["<h2>Summary</h2>", pd.DataFrame(summary).to_html(index=False, escape=True)]
    if len(listed) < len(result.cases):
        rest, agree = more_cases(result.cases, listed)
        body.append(f"<p class='meta' id='more-cases'>{rest:,} more cases ({agree:,} agree, {rest - agree:,} do "
                    "not) are not listed; report.md, agreement.csv and results.json hold them all.</p>")
    body += ["<h2>Pairs</h2><p class='meta'>The tolerance row each pair of backends was checked "
             "with, and how much it compared over the run. A pair that compared nothing fails the "
             "run unless --allow-uncompared was given.</p>", _pairs_table(result)]
    problems = [c.message() for c in failures] + \
        [f"{e.case}: backend {e.backend} raised {e.message}" for e in result.errors]
    if problems:
        body += ["<h2>Problems</h2><ul>"] + [f"<li>{html.escape(p)}</li>" for p in problems[:200]] + ["</ul>"]
    body += [_claims_section(out), _studies_section(out), _layers_section(out), "<h2>Cases</h2>"]
    # Failing cases first, then passing ones, MAX_CASE_SECTIONS in all, so that a 100,000-case
    # sweep stays a page even when a mistake fails every case (the summary lists them).
    detailed = shown_cases(result.cases, MAX_CASE_SECTIONS)
    if len(detailed) < len(result.cases):
        rest, more_passing = more_cases(result.cases, detailed)
        parts = ([f"{rest - more_passing:,} more failing"] if rest > more_passing else []) + (
            [f"{more_passing:,} more passing"] if more_passing else [])
        body.append(f"<p class='meta' id='more-sections'>{' and '.join(parts)} cases are not shown here; "
                    "report.md, agreement.csv and results.json hold them all.</p>")
    for r in detailed:
        c, m = r.case, r.case.model
        arch = (f"layers {'-'.join(map(str, m.layers))} · activations {', '.join(m.activations)} · loss {m.loss}"
                if hasattr(m, "activations") else m.describe().rsplit(" ", 1)[0])
        info = (f"{arch} · "
                f"{m.dtype} · batch {c.batch} · seed {c.seed} · input scale {c.input_scale:g} · {m.n_params} parameters")
        extra = [f"<p>{html.escape(c.description)}</p>"] if c.description else []
        if any(s.kind == "residual" for s in getattr(m, "network", ())):
            extra.append(f"<p class='meta'>layers: {html.escape(m.numbered())}</p>")
        extra += [f"<p class='meta'>{html.escape(b)}: {html.escape(n)}</p>" for b, n in r.notes.items()]
        if r.ties:
            extra.append(f"<p class='meta'>max-pool ties: {r.ties['windows']} windows, {r.ties['elements']} "
                         "elements not compared (the gradient there is a choice)</p>")
        extra += [f"<p><b>Error in {html.escape(e.backend)}:</b> {html.escape(e.message)}</p>" for e in r.errors]
        for pair, x in r.first_disagreements().items():
            layer = Model.layer_of(x.quantity)
            extra.append(f"<p class='fail'>{html.escape(pair)}: first disagreement at <code>{x.quantity}</code>"
                         + (f" (layer {layer})" if layer is not None else "") + "</p>")
        table = _case_table(r) if r.comparisons else "<p>No comparisons: fewer than two backends succeeded.</p>"
        body.append(f"<details {'open' if not r.passed else ''} id='case-{html.escape(c.name)}'>"
                    f"<summary>{html.escape(c.name)} — {html.escape(r.state if r.passed else r.state.upper())}</summary>"
                    f"<p class='meta'>{html.escape(info)}</p>{''.join(extra)}{table}</details>")
    body.append(_environment_section(environment))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>Backprop cross-validation: {html.escape(v)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
