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

``--xval-layers FILE.py`` checks a user's own layer functions as ``python -m harness layers``
does: one item per layer × quantity × pair (``layers.py::batchnorm::dx::yours-vs-torch``).
The file is never imported into pytest's process (``pytest_pycollect_makemodule`` hands it
to the harness, which runs it in a child); each layer is checked once per process.
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
    group.addoption("--xval-layers", action="append", default=[], metavar="FILE.py",
                    help="check your own layer functions (as python -m harness layers): one test per "
                         "layer × quantity × pair; may be repeated")
    group.addoption("--xval-layers-against", default=None, metavar="ARMS",
                    help="the arms --xval-layers compares your code with (default: manual,torch,jax,fd)")


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


class _LayerRuns:
    """Per process: each layers file's recognised families, and each family's check, once."""

    def __init__(self, paths: list[Path], arms: tuple[str, ...]) -> None:
        self.paths, self.arms = paths, arms
        self._modules: dict[Path, object] = {}
        self._results: dict[tuple[Path, str], object] = {}

    def module(self, path: Path):
        if path not in self._modules:
            from .userlayers.child import UserModule

            self._modules[path] = UserModule(path)  # the user's file, in a process of its own
        return self._modules[path]

    def result(self, path: Path, family):
        key = (path, family.name)
        if key not in self._results:
            from .userlayers.layer_check import check_family

            self._results[key] = check_family(self.module(path), family, file=str(path), arms=self.arms)
        return self._results[key]

    def close(self) -> None:
        for m in self._modules.values():
            m.close()


_LAYER_RUNS = pytest.StashKey[_LayerRuns]()


class LayersFile(pytest.File):
    """A user's layers file: collected by the harness (never imported into pytest's process)."""

    def collect(self):
        from .userlayers import recognise
        from .userlayers.check import YOURS
        from .userlayers.child import UserImportError

        runs = self.config.stash[_LAYER_RUNS]
        try:
            families = recognise(runs.module(self.path).functions)
        except UserImportError as e:
            raise self.CollectError(str(e)) from None
        if not families:
            raise self.CollectError(f"{self.path}: defines none of the recognised layer functions")
        names = [YOURS, *runs.arms]
        for fam in families:
            if fam.not_yet:
                yield LayersItem.from_parent(self, name=f"{fam.name}::not-in-the-catalog-yet", family=fam,
                                             quantity="", a="", b="")
                continue
            for q in _quantities(fam):
                for a, b in itertools.combinations(names, 2):
                    yield LayersItem.from_parent(self, name=f"{fam.name}::{q}::{a}-vs-{b}", family=fam,
                                                 quantity=q, a=a, b=b)


def _quantities(family) -> list[str]:
    """The quantities a family compares, in order, from the manual arm on its shapes (numpy only)."""
    from .userlayers.arms import manual

    out: dict[str, None] = {}
    for shape in family.shape_list():
        setup = family.setup(shape)
        out.update(dict.fromkeys(setup.to_user(manual(setup.chain, setup.x, setup.G))))
    return list(out)


class LayersItem(pytest.Item):
    def __init__(self, *, family, quantity: str, a: str, b: str, **kw) -> None:
        super().__init__(**kw)
        self.family, self.quantity, self.a, self.b = family, quantity, a, b

    def runtest(self) -> None:
        if self.family.not_yet:
            pytest.skip(f"{self.family.name}: not in the catalog yet ({self.family.not_yet})")
        r = self.config.stash[_LAYER_RUNS].result(self.path, self.family)
        if r.verdict not in ("agrees", "disagrees", "harness arms disagree"):
            raise XvalFailure(f"{self.family.name}: {r.verdict}: {r.message}")
        found = [c for c in r.comparisons if c.quantity == self.quantity and (c.a, c.b) == (self.a, self.b)]
        if not found:
            pytest.skip(f"{self.quantity} is not compared by {self.a} and {self.b} on any shape")
        bad = [c for c in found if not c.passed]
        if bad:
            worst = max(bad, key=lambda c: c.tol_used)
            lines = [worst.message()]
            if r.pattern:
                lines.append(f"pattern: {r.pattern}")
            if r.mistake and self.a == "yours":
                lines.append(f"mistake: {r.mistake}")
            if r.smallest and self.a == "yours":
                from .userlayers.families import show

                lines.append(f"smallest failing input: {show(r.smallest)}; reproduce: {r.command}")
            raise XvalFailure("\n".join(lines))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, XvalFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.family.name} {self.quantity} {self.a} vs {self.b}"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent):
    """A --xval-layers file is collected by the harness, in place of pytest's Module: pytest
    would import it into its own process; the harness runs it in a child (userlayers.child)."""
    return LayersFile.from_parent(parent, path=module_path) if _is_layers_file(parent.config, module_path) else None


def pytest_unconfigure(config: pytest.Config) -> None:
    runs = config.stash.get(_LAYER_RUNS, None)
    if runs is not None:
        runs.close()


def pytest_configure(config: pytest.Config) -> None:
    layer_files = config.getoption("xval_layers")
    if layer_files:
        paths = []
        for f in layer_files:
            path = Path(os.path.abspath(config.invocation_params.dir / f))
            if not path.is_file():
                raise pytest.UsageError(f"--xval-layers: {f!r} does not exist")
            paths.append(path)
        from .userlayers.arms import ARMS

        spec = config.getoption("xval_layers_against")
        arms = tuple(a.strip() for a in (spec or ",".join(ARMS)).split(",") if a.strip())
        unknown = [a for a in arms if a not in ARMS]
        if unknown:
            raise pytest.UsageError(f"--xval-layers-against: unknown arm {unknown[0]!r}; the arms are {', '.join(ARMS)}")
        arms = ("manual", *[a for a in arms if a != "manual"])  # manual always runs: shapes and shrinking read it
        config.stash[_LAYER_RUNS] = _LayerRuns(list(dict.fromkeys(paths)), arms)
        config.args.extend(str(p) for p in config.stash[_LAYER_RUNS].paths)
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


def _is_layers_file(config, file_path: Path) -> bool:
    runs = config.stash.get(_LAYER_RUNS, None)
    return runs is not None and Path(os.path.realpath(file_path)) in {Path(os.path.realpath(p)) for p in runs.paths}


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if _is_layers_file(parent.config, file_path):
        import fnmatch

        # pytest's python plugin asks pytest_pycollect_makemodule (above) for a path given on the
        # command line or named like a test file; any other is collected here, once.
        python = parent.session.isinitpath(file_path) or any(
            fnmatch.fnmatch(file_path.name, pat) for pat in parent.config.getini("python_files"))
        return None if python else LayersFile.from_parent(parent, path=file_path)
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
