"""One verdict, decided in one place: zero comparisons is not agreement, an error is not a
disagreement, and every writer (terminal, md, html, json) says the same."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import ROOT, run_cli
from harness.report import claims_markdown

GELU = '[[case]]\nname = "gelu-only"\nlayers = [3, 4, 2]\nactivations = "gelu"\nloss = "cross_entropy"\nbatch = 3\n'


def test_a_pair_that_compared_nothing_fails_the_run(tmp_path):
    """fd-complex cannot run through gelu (no complex erf): on a gelu-only file it compares nothing."""
    (tmp_path / "g.toml").write_text(GELU)
    proc = run_cli("run", tmp_path / "g.toml", "--backends", "manual,fd-complex", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert "NOTHING COMPARED BY MANUAL VS FD-COMPLEX" in last and not last.startswith("ALL AGREE")
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["passed"] is False and doc["cases"][0]["state"] == "nothing compared"
    assert doc["pairs"] == [{"a": "manual", "b": "fd-complex", "rows": [], "comparisons": 0,
                             "elements": 0, "failing": 0}]
    assert "nothing compared" in (tmp_path / "out" / "report.md").read_text().split("## Tolerances")[0]
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'class="verdict bad"' in html and "0 (nothing compared)" in html


def test_allow_uncompared_exits_0_and_still_says_it(tmp_path):
    (tmp_path / "g.toml").write_text(GELU)
    proc = run_cli("run", tmp_path / "g.toml", "--backends", "manual,fd-complex,fd", "--out", tmp_path / "out",
                   "--allow-uncompared", "--quiet")
    assert proc.returncode == 0, proc.stdout
    last = proc.stdout.strip().splitlines()[-1].lower()
    assert last.startswith("all agree where compared")
    assert "nothing compared by manual vs fd-complex, fd-complex vs fd" in last
    assert "allowed by --allow-uncompared" in last


def test_an_errored_case_is_error_everywhere_not_disagree(tmp_path):
    (tmp_path / "c.toml").write_text(GELU)
    (tmp_path / "p.py").write_text("class P:\n    name = 'raises'\n"
                                   "    def gradients(self, model, arrays):\n        raise ValueError('nope')\n")
    proc = run_cli("run", tmp_path / "c.toml", "--backends", "manual,fd", "--backend", f"{tmp_path / 'p.py'}:P",
                   "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert "ERROR" in proc.stdout.splitlines()[2] and "DISAGREE" not in proc.stdout
    html = (tmp_path / "out" / "report.html").read_text()
    assert "gelu-only — ERROR" in html and "DISAGREE" not in html
    assert "| ERROR |" in (tmp_path / "out" / "report.md").read_text()
    assert json.loads((tmp_path / "out" / "results.json").read_text())["cases"][0]["state"] == "error"


class _Outcome:
    def __init__(self, fw, shape, max_abs, tol_used, passed=True):
        self.claim, self.formula, self.dtype, self.framework = "c", "f", "float64", fw
        self.shape, self.max_abs, self.tol_used, self.passed = shape, max_abs, tol_used, passed


def test_claims_md_shows_the_largest_difference_like_the_html(tmp_path):
    """Before: claims.md showed the instance with the worst tolerance use (here 1e-13),
    while its caption and report.html promise the largest difference (1e-12)."""
    outcomes = [_Outcome("torch", "1x4", 1e-12, 0.01), _Outcome("torch", "1x10", 1e-13, 0.5)]
    md = claims_markdown(outcomes, ["torch"])
    assert "| ✓ 1.0e-12 |" in md and "1.0e-13" not in md

    from harness.html_report import _claims_section

    pd.DataFrame([vars(o) for o in outcomes]).to_csv(tmp_path / "claims.csv", index=False)
    assert "✓ 1.0e-12" in _claims_section(tmp_path)


def test_usage_errors_name_the_right_command():
    top = run_cli()
    assert top.returncode == 2 and "see `python -m harness --help`" in top.stderr
    assert "harness harness" not in top.stderr
    sub = run_cli("run", "--jobs", "x")
    assert sub.returncode == 2 and "see `python -m harness run --help`" in sub.stderr


def test_jobs_above_the_core_count_are_capped(tmp_path):
    proc = run_cli("run", "cases/hard.toml", "--backends", "manual,torch", "--jobs", str((os.cpu_count() or 1) + 6),
                   "--quiet", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert f"capped at {os.cpu_count()}" in proc.stderr


def _wait_for_busy_workers(session: int, workers: int = 2, cpu_seconds: float = 3.0, limit: float = 60.0) -> None:
    """Until ``workers`` processes of the run's session besides its leader have each had
    ``cpu_seconds`` of CPU (past their start-up: running cases), at most ``limit`` seconds.
    A fixed sleep long enough for a loaded machine cost this test 12 s everywhere."""
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        busy = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            # after the command: state, ppid, pgrp, session, ..., utime (12th), stime (13th)
            if int(fields[3]) == session and int(stat.parent.name) != session:
                busy += (int(fields[11]) + int(fields[12])) / tick >= cpu_seconds
        if busy >= workers:
            return
        time.sleep(0.2)


def test_ctrl_c_with_jobs_prints_no_worker_tracebacks(tmp_path):
    slow = tmp_path / "slow.toml"
    slow.write_text('[[sweep]]\nname = "s"\ncount = 400\nseed = 1\nwidth = [20, 40]\nbatch = [20, 40]\n')
    # Ctrl-C reaches the whole foreground process group: parent and workers alike.
    # As a terminal starts a command: SIGINT at its default and not blocked. The suite may run
    # where SIGINT is ignored (a shell's `make test &`, nohup), and a child inherits that: the
    # run then rightly ignores the Ctrl-C and goes on to its end.
    here = (signal.getsignal(signal.SIGINT), sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))

    def as_from_a_terminal():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])

    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(slow), "--jobs", "2", "--quiet",
                             "--out", str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_from_a_terminal)
    try:
        _wait_for_busy_workers(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert proc.returncode == 130, (stderr, here)
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert not (tmp_path / "out").exists()


def test_a_stop_request_ends_the_run_at_the_next_case_even_if_the_exception_was_lost():
    """A signal handler's exception raised inside a finalizer or a framework callback is
    swallowed; the handler also sets runner.STOP, which the run checks between cases."""
    import pytest

    from harness import runner
    from harness.backends import get
    from harness.cases import Case
    from harness.model import Model

    model = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
    seen = []
    runner.STOP.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run([Case(f"c{i}", model, 3, i) for i in range(3)], [get("manual"), get("fd")],
                       progress=lambda done, n, name, failed: done and seen.append(name))
    finally:
        runner.STOP.clear()
    assert seen == []
