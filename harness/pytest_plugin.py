"""pytest plugin: ``pytest --xval CASEFILE`` makes every case × quantity × backend pair a test.

Registered through the ``pytest11`` entry point, so it is active wherever the harness is
installed; it does nothing unless ``--xval`` is given. Item ids read
``tanh-3-layer::dW2::manual-vs-jax``; a failure says where and how much. Works with
pytest-xdist: every worker collects the same items, and computes each case it runs once.
``--xval-report DIR`` writes the report (md, html, json, csv) at the end of the session.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from .backends import DEFAULT


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xval", "backprop cross-validation")
    group.addoption("--xval", action="append", default=[], metavar="CASEFILE",
                    help="collect every case × quantity × backend pair of CASEFILE as a test")
    group.addoption("--xval-backends", default=",".join(DEFAULT), metavar="NAMES",
                    help="comma-separated backends to compare (default: %(default)s)")
    group.addoption("--xval-backend", action="append", default=[], metavar="FILE.py:ClassName",
                    help="add a plugin backend from a file; may be repeated")
    group.addoption("--xval-report", default=None, metavar="DIR",
                    help="write report.md/html, results.json and agreement.csv to DIR at the end")


class XvalFailure(AssertionError):
    pass


class _Runs:
    """Per process: the backends, built once, and each case's result, computed once."""

    def __init__(self, names: list[str], plugins: list[str]) -> None:
        self.plugins, self._backends, self.results = plugins, None, {}
        # Plugin names are known only once their class is built; until then, the spec's class name.
        self.names = names + [p.rpartition(":")[2] for p in plugins]

    def backends(self):
        if self._backends is None:
            from .backends import get, load_plugin
            self._backends = [get(n) for n in self.names[:len(self.names) - len(self.plugins)]]
            self._backends += [load_plugin(p) for p in self.plugins]
        return self._backends

    def result(self, case):
        if case.name not in self.results:
            from .runner import run_case
            self.results[case.name] = run_case(case, self.backends())
        return self.results[case.name]


class XvalFile(pytest.File):
    def collect(self):
        from .cases import load_file
        from .errors import InputError

        runs = self.config.stash[_RUNS]
        try:
            cases = load_file(self.path)
        except InputError as e:
            raise self.CollectError(str(e)) from None
        pairs = [f"{a}-vs-{b}" for a, b in itertools.combinations(runs.names, 2)]
        for case in cases:
            for q in case.model.algorithm_order():
                for pair in pairs:
                    yield XvalItem.from_parent(self, name=f"{case.name}::{q}::{pair}",
                                               case=case, quantity=q, pair=pair)

    class CollectError(Exception):
        pass


class XvalItem(pytest.Item):
    def __init__(self, *, case, quantity: str, pair: str, **kw) -> None:
        super().__init__(**kw)
        self.case, self.quantity, self.pair = case, quantity, pair

    def runtest(self) -> None:
        result = self.config.stash[_RUNS].result(self.case)
        a, b = self.pair.split("-vs-")
        errors = [e for e in result.errors if e.backend in (a, b)]
        if errors:
            raise XvalFailure("; ".join(f"backend {e.backend} raised {e.message}" for e in errors))
        found = [c for c in result.comparisons if c.quantity == self.quantity and c.pair == self.pair]
        if not found:
            pytest.skip(f"{self.quantity} is not provided by both {a} and {b}")
        (c,) = found
        if not c.passed:
            raise XvalFailure(c.message())
        if not c.n_checked and c.n_total:
            pytest.skip(c.note)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, XvalFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.case.name} {self.quantity} {self.pair}"


_RUNS = pytest.StashKey[_Runs]()


def pytest_configure(config: pytest.Config) -> None:
    names = [n.strip() for n in config.getoption("xval_backends").split(",") if n.strip()]
    plugins = config.getoption("xval_backend")
    runs = _Runs(names, plugins)
    if plugins:  # the item ids need the plugins' real names: build them now
        runs.names = [b.name for b in runs.backends()]
    config.stash[_RUNS] = runs


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    for casefile in config.getoption("xval"):
        path = Path(casefile).resolve()
        if not path.is_file():
            raise pytest.UsageError(f"--xval: case file {casefile!r} does not exist")
        items.extend(XvalFile.from_parent(session, path=path).collect())


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    out = session.config.getoption("xval_report")
    if not out or hasattr(session.config, "workerinput"):
        return  # xdist workers leave the report to the controller
    from .cases import load_files
    from .report import write_report
    from .runner import RunResult

    runs = session.config.stash[_RUNS]
    cases = load_files(session.config.getoption("xval"))
    # Under xdist the results live in the workers: the controller recomputes them here.
    results = [runs.result(c) for c in cases]
    write_report(RunResult(runs.names, results), Path(out), command="pytest --xval")
