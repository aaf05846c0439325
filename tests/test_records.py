"""A run's comparison records kept on disk as they arrive (``harness.records``): the CLI's runs,
serially and on Dask. Every verdict, report and table must say what it said with the records in
memory; the records left in memory are the failures; a disk that cannot take them is one line
and exit 2."""

import copy
import gc
import pickle
import re

import pytest

import mutants
from conftest import ROOT, run_cli
from harness import environment, html_report, report, results
from harness.cases import Case, load_file
from harness.compare import Comparison
from harness.model import Model
from harness.files import OutputError
from harness.records import Spill, SpilledComparisons
from harness.runner import run
from test_ties import INT_IMAGE


def _rows(comparisons):
    """Comparisons as text: NaN compares unequal to itself, its repr does not."""
    return [repr(c) for c in comparisons]


def _texts(result, tmp_path):
    """Every report's text and the verdict, less the time and pandas' random table ids."""
    env = environment.collect("python -m harness run", [])
    texts = ["".join(report.agreement_chunks(result)), report.markdown(result),
             "".join(results.json_chunks(result, env)), html_report.render(result, env, tmp_path),
             report.summary_table(result), repr(result.verdict)]
    return [re.sub(r"T_[0-9a-f]{5}(?=[\W_])", "T_ID",
                   re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?\+00:00| UTC)", "TIME", t)) for t in texts]


class _Sometimes:
    """Right on most cases; by batch size: raises (3), gives NaN (5), is off by 1% (6)."""

    name, kind = "sometimes", "analytic"

    def gradients(self, model, arrays):
        from harness.backends import get

        m = arrays["X"].shape[0]
        if m == 3:
            raise RuntimeError("raised on purpose")
        out = get("manual").gradients(model, arrays)
        if m in (5, 6):
            out["dW1"] = out["dW1"] * (1.01 if m == 6 else float("nan"))
        return out


@pytest.fixture(scope="module")
def mixed(builtin, tmp_path_factory):
    """Agreeing cases, max-pool ties, a backend that disagrees, gives NaN on one case and raises
    on another: a run in memory, and the same run spilled."""
    folder = tmp_path_factory.mktemp("records")
    (folder / "ties.toml").write_text(INT_IMAGE.format(act="relu", stride=""))
    model = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
    cases = [Case(f"mlp-{m}", model, m, m) for m in (3, 4, 5, 6, 7)] + load_file(folder / "ties.toml")
    backends = [builtin["manual"], builtin["torch"], builtin["fd"], _Sometimes()]
    kept, spilled = run(cases, backends, keep_arrays=False), run(cases, backends, keep_arrays=False, spill=Spill())
    for a, b in zip(kept.cases, spilled.cases):  # the one thing two runs differ in: the time
        b.seconds = a.seconds
    return kept, spilled


def test_a_spilled_run_says_what_the_run_in_memory_says(mixed, tmp_path):
    kept, spilled = mixed
    assert all(isinstance(r.comparisons, list) for r in kept.cases)
    assert all(isinstance(r.comparisons, SpilledComparisons) for r in spilled.cases)
    # The run has every state a writer must carry: agreement, disagreement, errors, NaN, ties.
    assert {r.state for r in kept.cases} >= {"agree", "disagree", "error"} and kept.errors
    assert kept.failures() and any(r.ties for r in kept.cases)
    assert _rows(spilled.iter_comparisons()) == _rows(kept.comparisons) == _rows(spilled.comparisons)
    assert spilled.n_comparisons == kept.n_comparisons == len(kept.comparisons)
    for a, b in zip(kept.cases, spilled.cases):
        assert (a.state, a.compared_any, a.pair_tallies()) == (b.state, b.compared_any, b.pair_tallies())
        assert _rows(a.failures()) == _rows(b.failures())
        assert _rows(a.first_disagreements().values()) == _rows(b.first_disagreements().values())
        assert len(a.comparisons) == len(b.comparisons) and bool(a.comparisons) == bool(b.comparisons)
        if a.comparisons:
            assert repr(b.comparisons[-1]) == repr(a.comparisons[-1])
    assert _texts(spilled, tmp_path) == _texts(kept, tmp_path)


def _reachable(root) -> list:
    """Every object reachable from ``root``, not going into classes, modules or functions
    (through which everything is reachable)."""
    import types

    seen, todo, out = set(), [root], []
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType, types.MethodType)):
            continue
        seen.add(id(o))
        out.append(o)
        todo.extend(gc.get_referents(o))
    return out


def test_the_records_left_in_memory_are_the_failures(mixed):
    """What makes a run's memory grow by its cases only: once spilled, the Comparison objects
    the run holds are the failing ones each case keeps for the verdict and the reports."""
    kept, spilled = mixed
    held = lambda result: {id(o) for o in _reachable(result) if isinstance(o, Comparison)}  # noqa: E731
    failing = {id(c) for r in spilled.cases for c in r.failures()}
    assert len(held(kept)) == kept.n_comparisons  # the walk finds records where they are
    assert held(spilled) == failing and 0 < len(failing) < spilled.n_comparisons / 4


def test_spilled_comparisons_are_a_sequence_and_pickle_as_a_list(mixed):
    _, spilled = mixed
    r = next(r for r in spilled.cases if r.case.name == "mlp-6")  # failing, no NaN (NaN != NaN)
    seq = r.comparisons
    as_list = list(seq)
    assert len(as_list) == len(seq) and seq == as_list and seq[0] == as_list[0] and seq[-2:] == as_list[-2:]
    back = pickle.loads(pickle.dumps(seq))
    assert type(back) is list and back == as_list  # a Dask result or a copy carries the records
    case = copy.deepcopy(r)
    assert type(case.comparisons) is list and case.comparisons == as_list
    assert "comparisons" in repr(seq)


@pytest.mark.parametrize("rows_per_chunk", [6, 7, 4096])
def test_agreement_csv_in_pieces_is_one_tables_text(mixed, rows_per_chunk):
    """The pieces join to the text pandas writes of the whole table at once, at any chunk size
    (414 rows: 6 divides them, the last piece is full; 7 does not), NaN and the error's missing
    rows included, and with no comparisons at all."""
    import pandas as pd

    kept, spilled = mixed
    whole = pd.DataFrame([c.as_row() for c in kept.comparisons], columns=report.AGREEMENT_COLUMNS).to_csv(index=False)
    assert kept.n_comparisons == 414
    assert "".join(report.agreement_chunks(spilled, rows_per_chunk)) == whole
    assert "".join(report.agreement_chunks(kept, rows_per_chunk)) == whole
    empty = type(kept)(kept.backends, [])
    assert "".join(report.agreement_chunks(empty, rows_per_chunk)) == ",".join(report.AGREEMENT_COLUMNS) + "\n"


def test_a_spilled_failure_still_fails_the_run(builtin):
    """The verdict reads the spilled cases' tallies and failures, never the records: a
    disagreement kept only on disk would pass the run. (Each of these was made to fail by
    dropping the failures or the tallies' failing count at ``Spill.put``.)"""
    cases = load_file(ROOT / "cases" / "hard.toml")[:2]
    result = run(cases, [builtin["manual"], mutants.ForgetsMean()], keep_arrays=False, spill=Spill())
    assert not result.passed and result.verdict.counts["disagree"] == 2
    pair = result.verdict.pairs[0]
    assert pair.failing == len(result.failures()) > 0 and pair.comparisons == result.n_comparisons
    assert "disagreement" in result.verdict.text


def test_a_disk_that_cannot_take_the_records_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(OutputError, match="cannot keep the run's records in .*missing"):
        Spill(str(tmp_path / "missing"))
    spill = Spill(str(tmp_path))

    class Full:
        def seek(self, offset):
            pass

        def write(self, blob):
            raise OSError(28, "No space left on device")

    spill._file = Full()
    with pytest.raises(OutputError, match="No space left on device"):
        spill.put([])


def test_the_cli_says_where_it_could_not_keep_the_records(tmp_path):
    case = ROOT / "cases" / "default.toml"
    p = run_cli("run", str(case), "--backends", "manual,fd", "--out", str(tmp_path / "out"),
                env={"XVAL_RECORDS_DIR": str(tmp_path / "no-such-dir")})
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot keep the run's records" in lines[0] and "Traceback" not in p.stderr


def test_the_cli_run_keeps_its_records_on_disk(tmp_path, monkeypatch):
    """The serial CLI spills each case as it is done (the Dask path: tests/test_dask.py); its
    reports are then written from the spilled records."""
    from harness import cli

    seen = []
    write = cli.write_report
    monkeypatch.setattr(cli, "write_report", lambda result, *a, **k: (seen.append(result), write(result, *a, **k)))
    path, out = tmp_path / "two.toml", tmp_path / "out"
    path.write_text("".join(f'[[case]]\nname = "c{i}"\nlayers = [3, 4, 2]\nactivations = ["tanh", "softmax"]\n'
                            f'loss = "cross_entropy"\nbatch = 4\nseed = {i}\n' for i in range(2)))
    assert cli.main(["run", str(path), "--backends", "manual,fd", "--out", str(out), "--quiet"]) == 0
    (result,) = seen
    assert len(result.cases) == 2 and all(isinstance(r.comparisons, SpilledComparisons) for r in result.cases)
    rows = (out / "agreement.csv").read_text().splitlines()
    assert len(rows) == 1 + result.n_comparisons and result.n_comparisons > 10


def test_the_memory_check_counts_a_spilled_case_as_its_case_bytes(tmp_path, monkeypatch):
    """Cases too many to keep with their records in memory load when the run keeps the records
    on disk, as the CLI does (each then counts cases.CASE_BYTES), and a run past that is still
    refused."""
    from harness import cases
    from harness.cases import InputError, _memory_parts, load_files

    monkeypatch.setattr(cases, "physical_memory", lambda: 2 * 2**30)  # a run may use 1 GiB
    model = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
    kept_records = _memory_parts(model, 4)[0]
    assert _memory_parts(model, 4, spilled=True)[0] == cases.CASE_BYTES < kept_records / 10
    room = cases.memory_limit() - cases.BASE_BYTES - sum(_memory_parts(model, 4)[2:])
    fits_kept, fits_spilled = room // kept_records, room // cases.CASE_BYTES
    path = tmp_path / "many.toml"

    def write(n):
        path.write_text("".join(f'[[case]]\nname = "c{i}"\nlayers = [3, 4, 2]\nactivations = ["tanh", "softmax"]\n'
                                f'loss = "cross_entropy"\nbatch = 4\nseed = {i}\n' for i in range(n)))
        return [path]

    n = 2 * fits_kept
    with pytest.raises(InputError, match="too much for one run"):
        load_files(write(n), keep_arrays=False)
    assert len(load_files(write(n), keep_arrays=False, spilled=True)) == n
    with pytest.raises(InputError, match="too much for one run"):
        load_files(write(fits_spilled + 10), keep_arrays=False, spilled=True)


def test_a_large_sweeps_terminal_summary_stays_a_screenful(mixed):
    """Every case that did not agree, then agreeing ones up to MAX_SUMMARY_ROWS, and a line
    counting the rest; first disagreements, problems and errors capped at 20 lines each. A run
    under the cap prints every case, as before."""
    import dataclasses

    from harness.runner import RunResult

    _, spilled = mixed
    small = report.summary_table(spilled)
    assert all(f"{r.case.name} " in small for r in spilled.cases) and "more cases" not in small
    copies = [dataclasses.replace(r, case=dataclasses.replace(r.case, name=f"{r.case.name}-{k}"))
              for k in range(40) for r in spilled.cases]  # 240 cases: 40 raise, 80 disagree
    big = RunResult(spilled.backends, copies)
    text = report.summary_table(big)
    lines = text.splitlines()
    bad = [r for r in copies if not r.passed]
    assert len(bad) == 120 > report.MAX_SUMMARY_ROWS
    table = [ln for ln in lines if ln.endswith(("ok", "ERROR", "DISAGREE"))]
    assert len(table) == report.MAX_SUMMARY_ROWS and not any(ln.endswith("ok") for ln in table)
    assert [ln.split()[0] for ln in table] == [r.case.name for r in bad[:report.MAX_SUMMARY_ROWS]]
    assert f"... and {len(copies) - report.MAX_SUMMARY_ROWS:,} more cases (120 agree, 20 do not;" in text
    assert "... and 20 more errors (see errors.csv)" in text and sum(ln.startswith("  ! ") for ln in lines) == 20
    assert "more first disagreements (see report.md)" in text
    assert lines[-1].startswith(big.verdict.text.upper()) and len(lines) < report.MAX_SUMMARY_ROWS + 80


def test_a_large_sweeps_html_summary_lists_the_cases_that_matter(mixed, tmp_path, monkeypatch):
    """The HTML summary table lists at most html_report.MAX_SUMMARY_ROWS cases: those that did
    not agree first, then agreeing ones, and says how many more there are."""
    import dataclasses

    from harness.runner import RunResult

    _, spilled = mixed
    monkeypatch.setattr(html_report, "MAX_SUMMARY_ROWS", 30)
    copies = [dataclasses.replace(r, case=dataclasses.replace(r.case, name=f"{r.case.name}-{k}"))
              for k in range(10) for r in spilled.cases]  # 60 cases: 10 raise, 20 disagree
    page = html_report.render(RunResult(spilled.backends, copies), environment.collect("", []), tmp_path)
    summary = page.split("<h2>Summary</h2>", 1)[1].split("<h2>Pairs</h2>", 1)[0]
    listed = re.findall(r"<td>(mlp-\d-\d+|int-image-\d+)</td>", summary)
    assert listed == [r.case.name for r in copies if not r.passed]  # 30: every one that did not agree
    assert "30 more cases (30 agree, 0 do not) are not listed" in summary
    whole = html_report.render(spilled, environment.collect("", []), tmp_path)
    assert "more cases" not in whole.split("<h2>Pairs</h2>", 1)[0]
