"""The margin (worst element's |a − b| ÷ its allowed tolerance) and the report of a large run:
the margin histogram and quantiles stand in for the heatmap, the per-case sections stay capped."""

import re

import numpy as np

from harness.cases import Case
from harness.compare import Comparison, compare
from harness import html_report
from harness.html_report import HEATMAP_MAX_CASES, MAX_CASE_SECTIONS, margin_quantiles, margins, render
from harness.model import Model
from harness.runner import CaseResult, RunResult
from harness.tolerances import Tolerance, lookup

EXACT = Tolerance(rtol=0.0, atol=2.0 ** -10, reason="allowed = 2⁻¹⁰ × scale 1, exactly")


def test_the_margin_is_at_most_one_exactly_when_the_comparison_passes():
    a = np.array([1.0, 0.0])  # scale s = 1: allowed is 2⁻¹⁰ at every element
    at_the_limit = compare("c", "dW1", "a", a, "b", np.array([1.0, 2.0 ** -10]), "analytic", "float64", EXACT)
    past_it = compare("c", "dW1", "a", a, "b", np.array([1.0, np.nextafter(2.0 ** -10, 1)]), "analytic",
                      "float64", EXACT)
    assert at_the_limit.passed and at_the_limit.tol_used == 1.0
    assert not past_it.passed and past_it.tol_used > 1
    rng = np.random.default_rng(0)  # around the limit, every dtype and tolerance row
    for dtype in ("float32", "float64"):
        for kind in ("analytic", "finite_difference"):
            tol = lookup(dtype, kind)
            for _ in range(300):
                x = rng.standard_normal(20).astype(dtype)
                y = (x * (1 + tol.rtol * rng.uniform(0, 3) * rng.standard_normal(20))).astype(dtype)
                c = compare("c", "dW1", "a", x, "b", y, kind, dtype, tol, 1.0)
                assert (c.tol_used > 1) == (not c.passed), c.message()
    for broken in (np.array([1.0, np.nan]), np.ones(3)):  # NaN, another shape: inf, out of tolerance
        c = compare("c", "dW1", "a", np.ones(2), "b", broken, "analytic", "float64", EXACT)
        assert not c.passed and c.tol_used == np.inf


def row(case: str, quantity: str, kind: str, dtype: str, margin: float, n_checked: int = 10) -> Comparison:
    """A comparison row with the given margin (what a run would record; the other fields plausible)."""
    return Comparison(case=case, quantity=quantity, a="manual", b="torch" if kind == "analytic" else "fd",
                      kind=kind, dtype=dtype, max_abs=margin * 1e-6, max_rel=margin * 1e-6,
                      norm_rel=margin * 1e-7, index=(0, 0), a_at=1.0, b_at=1.0 + margin * 1e-6, allowed_at=1e-6,
                      n_off=int(margin > 1), n_checked=n_checked, n_total=10, rtol=1e-6, atol=1e-7, scale=1.0,
                      floor=0.0, tol_used=margin, passed=not margin > 1)


def fake_run(n: int) -> RunResult:
    """n cases, each one analytic float64 comparison of margin (i + 1)/100 (so the last
    n − 100 are out of tolerance) and one finite-difference float32 comparison; case 0's
    finite-difference one is NaN (margin inf), case 1's compared nothing (every element masked)."""
    model = Model((2, 3, 2), ("tanh", "softmax"), "cross_entropy", "float64")
    cases = []
    for i in range(n):
        r = CaseResult(Case(f"case-{i:04d}", model, 4, i), {})
        fd = np.inf if i == 0 else 0.0 if i == 2 else 1e-3 * (i + 1)
        r.comparisons = [row(r.case.name, "dW1", "analytic", "float64", (i + 1) / 100),
                         row(r.case.name, "dW2", "finite_difference", "float32", fd, n_checked=0 if i == 1 else 10)]
        cases.append(r)
    return RunResult(["manual", "torch", "fd"], cases)


def test_margins_are_grouped_by_pair_kind_and_dtype():
    groups = margins(fake_run(120))
    assert list(groups) == [("analytic", "float64"), ("finite_difference", "float32")]
    assert np.array_equal(groups["analytic", "float64"], (np.arange(120) + 1) / 100)
    fd = groups["finite_difference", "float32"]
    assert len(fd) == 119 and np.isinf(fd).sum() == 1 and (fd == 0).sum() == 1  # case 1 compared nothing
    q = margin_quantiles(groups["analytic", "float64"])
    assert q == {"median": 0.6, "p99": 1.19, "max": 1.2}  # observed values: the 60th and 119th of 120
    assert margin_quantiles(fd)["max"] == np.inf and np.isfinite(margin_quantiles(fd)["p99"])


def cells(page: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first``."""
    m = re.search(rf"<tr>\s*<td>{re.escape(first)}</td>(.*?)</tr>", page, re.S)
    assert m, first
    return re.findall(r"<td>(.*?)</td>", m.group(1))


def test_a_large_run_shows_the_margin_histogram_in_place_of_the_heatmap(tmp_path):
    result = fake_run(120)
    assert len(result.cases) > HEATMAP_MAX_CASES and 120 > MAX_CASE_SECTIONS
    page = render(result, {"command": "python -m harness run sweep.toml"}, tmp_path)
    assert "Agreement heatmap" not in page and 'alt="agreement heatmap"' not in page
    assert "id='no-heatmap'" in page and "the margin histogram below stands in for it" in page
    assert re.search(r'<img alt="margin histogram" src="data:image/png;base64,[A-Za-z0-9+/]{1000}', page)
    # pair kind, dtype, comparisons, median, p99, max, out of tolerance
    assert cells(page, "analytic") == ["float64", "120", "6.0e-01", "1.2e+00", "1.2e+00", "20"]
    fd = cells(page, "finite difference")
    assert fd[:2] == ["float32", "119"] and fd[4:] == ["inf", "1"]
    # the per-case sections: every failing case (the last 20), then passing ones up to the cap
    shown = re.findall(r"<details [^>]*id='case-(case-\d+)'", page)
    assert len(shown) == MAX_CASE_SECTIONS
    failing = {r.case.name for r in result.cases if not r.passed}
    assert len(failing) == 21 and failing <= set(shown)  # 20 analytic ones, and case 0's NaN
    assert f"{120 - MAX_CASE_SECTIONS} more passing cases are not shown" in page


def test_the_case_sections_stay_capped_when_most_cases_fail(tmp_path, monkeypatch):
    """A mistake that fails every case of a large sweep: failing sections up to the cap (the
    first in run order), no passing one, and a line that counts both kinds left out."""
    monkeypatch.setattr(html_report, "MAX_CASE_SECTIONS", 12)
    result = fake_run(120)
    failing = [r.case.name for r in result.cases if not r.passed]
    page = render(result, {}, tmp_path)
    shown = re.findall(r"<details [^>]*id='case-(case-\d+)'", page)
    assert shown == failing[:12]
    assert f"{len(failing) - 12:,} more failing and {120 - len(failing):,} more passing cases are not shown" in page


def test_a_run_at_the_limit_shows_the_heatmap_and_the_histogram(tmp_path):
    n = HEATMAP_MAX_CASES
    page = render(fake_run(n), {}, tmp_path)
    assert "<h2>Agreement heatmap</h2>" in page and "id='no-heatmap'" not in page
    assert 'alt="margin histogram"' in page and "<h2>Margins</h2>" in page
    assert len(re.findall(r"<details ", page)) == n
