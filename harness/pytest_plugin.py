"""pytest plugin: ``pytest --xval CASEFILE`` makes every case × quantity × backend pair a test.

Registered through the ``pytest11`` entry point, so it is loaded by every pytest session
wherever the harness is installed: it does nothing unless ``--xval`` is given, and imports
nothing of the harness (no numpy, pandas, torch or jax) until then.

Each ``--xval`` file is added to the collection arguments and collected by
``pytest_collect_file`` as an ``XvalFile``, so a bad case file is an ordinary collection
error whose message is the harness's one-line ``InputError``. Bad options (an unknown
backend, a missing ``--xval-backend`` file, an unwritable ``--xval-report`` directory) are
usage errors, found at configure time before anything runs.

Item ids read ``tanh-3-layer::dW2::manual-vs-jax``; the item keeps the two backend names
separately (a name may itself contain ``-vs-``). A failure says where and how much. Works
with pytest-xdist: every worker collects the same items, and computes each case it runs
once. ``--xval-report DIR`` writes the report (md, html, json, csv) at the end of the
session.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xval", "backprop cross-validation")
    group.addoption("--xval", action="append", default=[], metavar="CASEFILE",
                    help="collect every case × quantity × backend pair of CASEFILE as a test; may be repeated")
    # No default list here: reading harness.backends.DEFAULT would import numpy in every session.
    group.addoption("--xval-backends", default=None, metavar="NAMES",
                    help="comma-separated backends to compare (default: harness.backends.DEFAULT, "
                         "the same as `python -m harness run`)")
    group.addoption("--xval-backend", action="append", default=[], metavar="FILE.py:ClassName",
                    help="add a plugin backend from a file; may be repeated")
    group.addoption("--xval-report", default=None, metavar="DIR",
                    help="write report.md/html, results.json and agreement.csv to DIR at the end")


class XvalFailure(AssertionError):
    pass


class _Runs:
    """Per process: the backends, built once, and each case's result, computed once."""

    def __init__(self, paths: list[Path], names: list[str], plugins: list) -> None:
        self.paths = paths  # the --xval files: absolute, as pytest names them, without repeats
        self.real = {Path(os.path.realpath(p)) for p in paths}  # the same, symlinks resolved
        self.builtin = names  # registry names, built on first use
        self.plugins = plugins  # plugin backends, built at configure (their names make the ids)
        self.names = names + [p.name for p in plugins]
        self._backends = None
        self.results: dict[tuple[str, str], object] = {}
        self.messages: list[str] = []  # for the terminal summary

    def backends(self) -> list:
        if self._backends is None:
            from .backends.build import build_backends  # one that fails to build errs on every case
            from .backends.isolated import DEFAULT_TIMEOUT

            # Installed entry-point backends are the user's code too: each in its own process.
            self._backends = build_backends(self.builtin, DEFAULT_TIMEOUT) + self.plugins
        return self._backends

    def result(self, case):
        # Keyed by file and name: two case files may both have a case called "tanh".
        key = (os.path.realpath(case.source), case.name)
        if key not in self.results:
            from .runner import run_case
            self.results[key] = run_case(case, self.backends())
        return self.results[key]


_RUNS = pytest.StashKey[_Runs]()


class XvalFile(pytest.File):
    def collect(self):
        from .cases import load_file
        from .errors import InputError

        runs = self.config.stash[_RUNS]
        try:
            cases = load_file(self.path)
        except InputError as e:
            raise self.CollectError(str(e)) from None  # pytest's own: shown as the one line
        for case in cases:
            for q in case.model.algorithm_order():
                for a, b in itertools.combinations(runs.names, 2):
                    yield XvalItem.from_parent(self, name=f"{case.name}::{q}::{a}-vs-{b}",
                                               case=case, quantity=q, a=a, b=b)


def verdict(result, quantity: str, a: str, b: str) -> None:
    """Pass (return), fail (XvalFailure) or skip one quantity of one pair from a case's result."""
    errors = [e for e in result.errors if e.backend in (a, b, "inputs")]  # "inputs": the case's own
    if errors:
        raise XvalFailure("; ".join(f"backend {e.backend} raised {e.message}" for e in errors))
    found = [c for c in result.comparisons if c.quantity == quantity and (c.a, c.b) == (a, b)]
    if not found:
        notes = [f"{n}: {result.notes[n]}" for n in (a, b) if n in result.notes]
        pytest.skip(f"{quantity} is not provided by both {a} and {b}" + (f" ({'; '.join(notes)})" if notes else ""))
    (c,) = found
    if not c.passed:
        raise XvalFailure(c.message())
    if not c.n_checked:  # every element masked (or none at all): not a pass
        reason = c.note if c.note.startswith("nothing compared") else \
            "nothing compared" + (f": {c.note}" if c.note else f" ({c.n_total} elements, none checked)")
        pytest.skip(reason)


class XvalItem(pytest.Item):
    def __init__(self, *, case, quantity: str, a: str, b: str, **kw) -> None:
        super().__init__(**kw)
        self.case, self.quantity, self.a, self.b = case, quantity, a, b

    @property
    def pair(self) -> str:
        """For display only: the names are ``self.a`` and ``self.b``."""
        return f"{self.a}-vs-{self.b}"

    def runtest(self) -> None:
        verdict(self.config.stash[_RUNS].result(self.case), self.quantity, self.a, self.b)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, XvalFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.case.name} {self.quantity} {self.a} vs {self.b}"


def _check_report_dir(out: str) -> None:
    """The report is written at the very end: find out now, not after the run, that it cannot be."""
    import tempfile

    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise pytest.UsageError(f"--xval-report: cannot write to {out!r}: {e.strerror or e}") from None


def pytest_configure(config: pytest.Config) -> None:
    casefiles = config.getoption("xval")
    if not casefiles:
        if config.getoption("xval_report"):
            raise pytest.UsageError("--xval-report needs --xval CASEFILE")
        return  # inert: nothing of the harness is imported

    paths: list[Path] = []
    for casefile in casefiles:
        path = Path(os.path.abspath(config.invocation_params.dir / casefile))
        if not path.is_file():
            raise pytest.UsageError(f"--xval: case file {casefile!r} does not exist")
        if not any(os.path.samefile(path, p) for p in paths):
            paths.append(path)

    from .backends import DEFAULT, available
    from .backends import build
    from .errors import InputError, did_you_mean

    spec = config.getoption("xval_backends")
    names = [n.strip() for n in (",".join(DEFAULT) if spec is None else spec).split(",") if n.strip()]
    known = available()
    for n in names:
        if n not in known:
            raise pytest.UsageError(f"--xval-backends: unknown backend {n!r}{did_you_mean(n, known)}; "
                                    f"available: {', '.join(known)}")
    try:
        # The user's code runs in a process of its own: an os._exit or a hang in it becomes a
        # failing item, not the end of the pytest session (backends/isolated.py).
        plugins = build.plugins(config.getoption("xval_backend"))
    except InputError as e:
        raise pytest.UsageError(f"--xval-backend: {InputError(e.message, file=e.file, case=e.case)}") from None
    all_names = names + [p.name for p in plugins]
    dup = next((n for n in all_names if all_names.count(n) > 1), None)
    if dup is not None:
        raise pytest.UsageError(f"--xval-backends/--xval-backend: two backends are named {dup!r}; "
                                "names must be unique")
    if len(all_names) < 2:
        raise pytest.UsageError("--xval-backends: at least two backends are needed to compare")

    out = config.getoption("xval_report")
    if out and not hasattr(config, "workerinput"):  # xdist workers leave the report to the controller
        _check_report_dir(out)

    config.stash[_RUNS] = _Runs(paths, names, plugins)
    # The case files are collected like any path on the command line (pytest drops repeats
    # and files inside a directory also given), through pytest_collect_file below.
    config.args.extend(str(p) for p in paths)


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    runs = parent.config.stash.get(_RUNS, None)
    if runs is None or Path(os.path.realpath(file_path)) not in runs.real:
        return None
    if file_path.is_relative_to(parent.config.rootpath):
        return XvalFile.from_parent(parent, path=file_path)
    # Outside the rootdir pytest would give the file the id "" (its items "::case::..."):
    # name it by its path from the rootdir, so that two such files keep apart.
    return XvalFile.from_parent(parent, path=file_path, nodeid=_file_id(file_path, parent.config.rootpath))


def _file_id(path: Path, rootpath: Path) -> str:
    """The file's part of the item ids: its path from the rootdir."""
    return os.path.relpath(path, rootpath).replace(os.sep, "/")


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    config = session.config
    out = config.getoption("xval_report")
    runs = config.stash.get(_RUNS, None)
    if not out or runs is None or hasattr(config, "workerinput"):
        return  # xdist workers leave the report to the controller
    say = runs.messages.append  # shown by pytest_terminal_summary, which runs after this hook

    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        say(f"report not written to {out}: the session did not run to its end ({pytest.ExitCode(exitstatus).name})")
        return

    import dataclasses

    from .cases import load_file
    from .errors import InputError
    from .files import OutputError
    from .report import write_report
    from .runner import RunResult

    loaded = []
    for path in runs.paths:
        try:
            loaded.append((path, load_file(path)))
        except InputError as e:  # already reported as that file's collection error
            say(f"left out of the report: {e}")
    # Under xdist the results live in the workers: the controller recomputes them here.
    results = [(path, runs.result(c)) for path, cases in loaded for c in cases]
    # One report for every file: a name used in two files is qualified by its file there.
    counts: dict[str, int] = {}
    for _, r in results:
        counts[r.case.name] = counts.get(r.case.name, 0) + 1
    for i, (path, r) in enumerate(results):
        if counts[r.case.name] > 1:
            name = f"{_file_id(path, config.rootpath)}::{r.case.name}"
            r = dataclasses.replace(
                r, case=dataclasses.replace(r.case, name=name),
                comparisons=[dataclasses.replace(c, case=name) for c in r.comparisons],
                errors=[dataclasses.replace(e, case=name) for e in r.errors])
        results[i] = (path, r)
    try:
        write_report(RunResult(runs.names, [r for _, r in results]), Path(out), command="pytest --xval")
    except (OSError, OutputError) as e:
        say(f"report not written to {out}: {getattr(e, 'strerror', None) or e}")
        if session.exitstatus == pytest.ExitCode.OK:  # asked for, not written: not a success
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return
    say(f"report written to {out}")


def pytest_terminal_summary(terminalreporter) -> None:
    runs = terminalreporter.config.stash.get(_RUNS, None)
    for line in runs.messages if runs is not None else ():
        terminalreporter.write_line(f"xval: {line}")
