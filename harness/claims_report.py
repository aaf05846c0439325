"""The claims' tables: markdown, CSV and terminal (``python -m harness claims``); report.html
draws its claims section from ``claims_table`` too."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .compare import fmt
from .files import atomic_write


def claims_table(outcomes: list) -> list[dict]:
    """One row per (claim, dtype): the formula, and per framework its instances' summary:
    whether all passed and the largest |hand − framework| (the same numbers report.html shows)."""
    rows: dict[tuple[str, str], dict] = {}
    for o in outcomes:
        row = rows.setdefault((o.claim, o.dtype), {"claim": o.claim, "formula": o.formula,
                                                   "dtype": o.dtype, "shapes": set(), "fw": {}})
        row["shapes"].add(o.shape)
        passed, largest = row["fw"].get(o.framework, (True, 0.0))
        row["fw"][o.framework] = (passed and o.passed, max(largest, o.max_abs))
    return list(rows.values())


def claim_cell(cell) -> str:
    if cell is None:
        return "—"
    passed, largest = cell
    return f"{'✓' if passed else '✗'} {fmt(largest)}"


def claims_markdown(outcomes: list, frameworks: list[str]) -> str:
    rows = claims_table(outcomes)
    failed = sum(not o.passed for o in outcomes)
    lines = ["# Claims of the derivation, checked", "",
             f"**Verdict: {'every claim holds' if not failed else f'{failed} failing instances'}.** "
             f"{len(rows)} claim × dtype rows, {len(outcomes)} instances "
             f"(each a shape or a layer, against each framework).", "",
             "Each cell: ✓ or ✗, and the largest |hand − framework| over the instances (the "
             "tolerance is the harness's table for the dtype: analytic for torch and JAX, "
             "finite-difference for fd). — : no independent evidence from that framework.", "",
             "| claim | formula | dtype | instances | " + " | ".join(frameworks) + " |",
             "|---|---|---|---|" + "---|" * len(frameworks)]
    for r in rows:
        cells = " | ".join(claim_cell(r["fw"].get(f)) for f in frameworks)
        lines.append(f"| `{r['claim']}` | {r['formula']} | {r['dtype']} | {len(r['shapes'])} | {cells} |")
    return "\n".join(lines) + "\n"


def write_claims(outcomes: list, out: Path, frameworks: list[str]) -> None:
    out = Path(out)
    frame = pd.DataFrame([o.as_row() for o in outcomes])
    atomic_write(out / "claims.csv", frame.to_csv(index=False).encode())
    atomic_write(out / "claims.md", claims_markdown(outcomes, frameworks).encode())


def claims_terminal(outcomes: list, frameworks: list[str]) -> str:
    rows = claims_table(outcomes)
    table = [("claim", "dtype", "n", *frameworks)]
    for r in rows:
        table.append((r["claim"], r["dtype"], str(len(r["shapes"])),
                      *[claim_cell(r["fw"].get(f)) for f in frameworks]))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths)) for row in table]
    lines.insert(1, "-" * len(lines[0]))
    failed = [o for o in outcomes if not o.passed]
    for o in failed[:20]:
        lines.append(f"  ✗ {o.claim} {o.dtype} {o.shape} vs {o.framework}: max |hand − {o.framework}| "
                     f"= {o.max_abs:.3g}, {o.tol_used:.3g}× the tolerance")
    lines += ["", f"{'ALL CLAIMS HOLD' if not failed else f'{len(failed)} FAILING INSTANCES'}: "
                  f"{len(rows)} claim × dtype rows, {len(outcomes)} instances"]
    return "\n".join(lines)
