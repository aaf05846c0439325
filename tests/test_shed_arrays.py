"""A run that saves no arrays drops them case by case (``CaseResult.shed_arrays``): the CLI's
run without --save-arrays, serially and on Dask workers. Its memory then grows by the records
alone, and every report says what it said with the arrays kept."""

import re

import pytest

from conftest import ROOT
from harness import environment, html_report, report, results
from harness.cases import InputError, load_file, load_files
from harness.runner import run
from test_ties import INT_IMAGE


def _reports(result, tmp_path):
    """report.md, results.json and report.html as text, less what differs between two writes of
    one result: the time, and the random ids pandas gives its styled tables."""
    env = environment.collect("python -m harness run", [])
    texts = report.markdown(result), results.to_json(result, env), html_report.render(result, env, tmp_path)
    return [re.sub(r"T_[0-9a-f]{5}(?=[\W_])", "T_ID",
                   re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", "TIME", t)) for t in texts]


def test_shedding_the_arrays_leaves_every_report_the_same(tmp_path, builtin):
    (tmp_path / "ties.toml").write_text(INT_IMAGE.format(act="relu", stride=""))
    cases = load_file(ROOT / "cases" / "hard.toml")[:3] + load_file(tmp_path / "ties.toml")
    result = run(cases, [builtin[n] for n in ("manual", "torch", "fd")])
    before = _reports(result, tmp_path)
    masked = [r.masked_counts() for r in result.cases]
    assert masked[-1] and not any(masked[:-1])  # the tied max-pool windows: counts to carry over
    for r in result.cases:
        r.shed_arrays()
    assert all(r.shed and r.inputs == {} and set(r.outputs) == {"manual", "torch", "fd"}
               and not any(r.outputs.values()) for r in result.cases)
    assert [r.masked_counts() for r in result.cases] == masked
    assert _reports(result, tmp_path) == before
    with pytest.raises(ValueError, match="shed its arrays"):  # --save-arrays needs them kept
        report._write_arrays(result, tmp_path / "arrays")


def test_run_keeps_the_arrays_unless_told_not_to(builtin):
    cases = load_file(ROOT / "cases" / "hard.toml")[:2]
    kept = run(cases, [builtin["manual"], builtin["fd"]])
    shed = run(cases, [builtin["manual"], builtin["fd"]], keep_arrays=False)
    assert all(r.outputs["manual"] and r.inputs and not r.shed for r in kept.cases)
    assert all(r.outputs == {"manual": {}, "fd": {}} and r.shed for r in shed.cases)
    rows = lambda res: [(c.case, c.quantity, c.pair, c.max_abs, c.tol_used) for c in res.comparisons]  # noqa: E731
    assert rows(kept) == rows(shed)


def test_the_memory_check_counts_arrays_only_where_they_are_kept(tmp_path, monkeypatch):
    """Four cases that fit one by one but not together with their arrays load together when the
    run sheds them."""
    import test_case_limits as limits

    from harness import cases

    monkeypatch.setattr(cases, "physical_memory", lambda: 4 * 2**30)
    m = limits._largest_batch((3, 4, 2), cases.memory_limit()) // 4
    files = [limits.write(tmp_path, limits.case_toml(name=f'"c{i}"', batch=str(2 * m)), f"c{i}.toml")
             for i in range(4)]
    with pytest.raises(InputError, match="too much for one run"):
        load_files(files)
    assert len(load_files(files, keep_arrays=False)) == 4
