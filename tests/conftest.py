import subprocess
import sys
from pathlib import Path

import pytest

from harness import backends as registry

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def builtin():
    """The four built-in backends, built once per session (JAX compiles are cached inside)."""
    return {name: registry.get(name) for name in registry.DEFAULT}


def run_cli(*args, cwd=ROOT, env=None):
    """Run `python -m harness ...` in a subprocess; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)
