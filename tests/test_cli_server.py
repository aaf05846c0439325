"""The tests' forked CLI runs (cli_server.py) behave as `python -m harness` in a new interpreter:
the same exit code, stdout and stderr, the working directory first on the import path, the
caller's environment, and a run that hangs is stopped at its timeout without stopping the server."""

import subprocess
import sys

import pytest
from cli_server import run_forked
from conftest import ROOT, run_cli

PLUGIN = '''
import os
from harness.backends.manual import ManualBackend

class Mine(ManualBackend):
    name = os.environ.get("XVAL_TEST_PLUGIN_NAME", "mine")
'''


@pytest.mark.parametrize("args", [
    ("run", "cases/hard.toml", "--backends", "manual,fd", "--quiet"),  # ALL AGREE, exit 0
    ("run", "cases/no-such-file.toml"),  # one line on stderr, exit 2
    ("run", "--jobs", "x"),  # argparse's usage message, exit 2
], ids=["agrees", "missing-file", "bad-option"])
def test_a_forked_run_says_what_a_new_interpreter_says(tmp_path, args):
    forked = run_cli(*args, "--out", tmp_path / "f")
    fresh = run_cli(*args, "--out", tmp_path / "f", fresh=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.returncode == (0 if args[-1] == "--quiet" else 2)


def test_the_working_directory_and_the_environment_are_the_callers(tmp_path, monkeypatch):
    """Relative paths are the working directory's (a plugin file, the case file, --out), and the
    plugin (in a process of its own, started from the run's) sees the caller's environment as it
    is at the call, not the server's."""
    (tmp_path / "mine_plugin.py").write_text(PLUGIN)
    (tmp_path / "c.toml").write_text((ROOT / "cases" / "hard.toml").read_text())
    monkeypatch.setenv("XVAL_TEST_PLUGIN_NAME", "from-the-caller")
    proc = run_cli("run", "c.toml", "--backends", "manual", "--backend", "mine_plugin.py:Mine", "--quiet",
                   "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backends manual, from-the-caller" in proc.stdout
    assert (tmp_path / "out" / "report.md").exists()


def test_a_run_past_its_timeout_is_stopped_and_the_server_goes_on(tmp_path):
    argv = [sys.executable, "-m", "harness", "study", "cost"]
    with pytest.raises(subprocess.TimeoutExpired):
        run_forked(argv, ["study", "cost", "--out", str(tmp_path / "slow")], ROOT, timeout=0.5)
    after = run_cli("run", "cases/no-such-file.toml", "--out", tmp_path / "o")
    assert after.returncode == 2 and "case file not found" in after.stderr
