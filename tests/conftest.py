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


@pytest.fixture(scope="session")
def builtin():
    """The four built-in backends, built once per session (JAX compiles are cached inside)."""
    return {name: registry.get(name) for name in registry.DEFAULT}


def run_cli(*args, cwd=ROOT, env=None, fresh=False, timeout=600):
    """Run `python -m harness ...` in a process of its own; return the CompletedProcess.

    The process is forked from a server that has imported the harness, torch, JAX, pandas and
    matplotlib once (``cli_server.py``): those imports are 3-7 s of every CLI run, and the suite
    makes about a hundred. ``fresh=True``, or an ``env`` (which the imports could read), starts
    a new interpreter instead: a few tests keep the whole ``python -m harness`` path covered.
    """
    args = [str(a) for a in args]
    argv = [sys.executable, "-m", "harness", *args]
    if fresh or env is not None:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    from cli_server import run_forked

    return run_forked(argv, args, cwd, timeout=timeout)
