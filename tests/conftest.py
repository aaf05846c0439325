import subprocess
import sys
from pathlib import Path

import pytest

from harness import backends as registry

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Under xdist (make test: two workers on two cores), one compute thread per worker, as
    the CLI's --jobs workers have: two workers each running BLAS, torch and XLA thread pools on
    two cores spent the suite's time switching between them. A plain ``pytest`` keeps the
    libraries' own thread counts, so in-process runs with them stay tested too."""
    import os

    # The pytest sessions the tests start (tests/test_pytest_plugin.py) skip hypothesis's own
    # plugin too, as pyproject's addopts does here: it costs 1.5 s of imports per process.
    if "no:hypothesispytest" not in os.environ.get("PYTEST_ADDOPTS", ""):
        os.environ["PYTEST_ADDOPTS"] = (os.environ.get("PYTEST_ADDOPTS", "") + " -p no:hypothesispytest").strip()
    # One JAX compilation cache for the whole suite: the runs it starts from a tmp folder
    # (pytest --xval sessions, CLI runs) would otherwise compile into tmp/.cache/jax, cold each time.
    os.environ.setdefault("XVAL_JAX_CACHE", str(ROOT / ".cache" / "jax"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from harness.runner import pin_threads

        pin_threads()


# The longest tests that compute in the worker itself, with their seconds in a cold run on this
# machine (2026-12-01, -n 2): they go first, so that xdist's two workers start on them and end on
# short tests (in file order the 68 s of the spatial margins started late and left one worker
# idle at the end). Tests that start processes of their own (--jobs 2, Dask) are not moved:
# first, they ran beside these and took twice their time (25 s -> 43 s).
HEAVY_FIRST = {
    "test_tolerances.py::test_margin_on_shipped_networks[spatial]": 68,
    "test_specificity.py::test_no_false_alarms_on_a_sample_of_the_sweep": 39,
    "test_tolerances.py::test_margin_on_shipped_networks[dense]": 37,
    "test_tolerances.py::test_margin_on_wide_deep_random_networks": 15,
}


def pytest_collection_modifyitems(config, items):
    """HEAVY_FIRST's tests first, longest first; the rest in file order. A name there that no
    longer exists is an error, so the list cannot silently go stale (checked on a whole run)."""
    found = {}
    for item in items:
        name = item.nodeid.rpartition("/")[2]
        if name in HEAVY_FIRST:
            found[name] = item
    if config.args == [] or [str(a) for a in config.args] == ["tests"]:
        missing = set(HEAVY_FIRST) - set(found)
        if missing:
            raise pytest.UsageError(f"tests/conftest.py HEAVY_FIRST names tests that do not exist: {sorted(missing)}")
    first = sorted(found.values(), key=lambda item: -HEAVY_FIRST[item.nodeid.rpartition("/")[2]])
    chosen = set(first)
    items[:] = first + [item for item in items if item not in chosen]


@pytest.fixture(scope="session")
def builtin():
    """The four built-in backends, built once per session (JAX compiles are cached inside)."""
    return {name: registry.get(name) for name in registry.DEFAULT}


def run_cli(*args, cwd=ROOT, env=None, fresh=False, timeout=600, isolated=None):
    """Run `python -m harness ...` in a process of its own; return the CompletedProcess.

    The process is forked from a server that has imported the harness, torch, JAX, pandas and
    matplotlib once (``cli_server.py``): those imports are 3-7 s of every CLI run, and the suite
    makes about a hundred. ``fresh=True``, or an ``env`` (which the imports could read), starts
    a new interpreter instead: a few tests keep the whole ``python -m harness`` path covered.

    A serial `run` keeps torch and jax each in a process of its own, which imports them again:
    3-4 s of every such run that the server's imports would have saved. Forked from the server,
    `run` therefore gets `--in-process` unless ``isolated=True``; a fresh interpreter runs as a
    user's does. tests/test_isolated_frameworks.py holds the two ways to the same bits.
    """
    args = [str(a) for a in args]
    if isolated is None:
        isolated = fresh or env is not None
    if args and args[0] == "run" and not isolated and "--in-process" not in args:
        args.append("--in-process")
    argv = [sys.executable, "-m", "harness", *args]
    if fresh or env is not None:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    from cli_server import run_forked

    return run_forked(argv, args, cwd, timeout=timeout)
