"""Live progress (harness/progress.py): what a terminal shows, that nothing is written
elsewhere, that the display is torn down on an exception, and that the commands and library
functions call it by the protocol progress(done, total, name, failed)."""

import io
import re
import subprocess
import sys

import numpy as np
import pytest

from harness.progress import Progress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str) -> str:
    return ANSI.sub("", text)


@pytest.fixture
def terminal(monkeypatch):
    """A fake terminal: a rich Console forced to be one, writing to a string."""
    from rich.console import Console

    monkeypatch.setenv("TERM", "xterm-256color")  # not "dumb": rich draws nothing live there
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=140), buf


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """Stands in for Progress: records the calls and how it was built."""

    made: list = []

    def __init__(self, *args, **kwargs) -> None:
        self.calls, self.args, self.kwargs = [], args, kwargs
        Recorder.made.append(self)

    def __call__(self, done, total, name="", failed=0):
        self.calls.append((done, total, name, failed))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def follows_the_protocol(calls) -> bool:
    """Starts at 0, ends at total, done never goes back, and nothing above total."""
    done = [c[0] for c in calls]
    total = calls[0][1]
    return (done[0] == 0 and done[-1] == total and done == sorted(done)
            and all(c[1] == total for c in calls))


# --------------------------------------------------------------------------- the display


def test_a_terminal_shows_done_total_rate_time_left_and_failures(terminal):
    console, buf = terminal
    clock = Clock()
    progress = Progress("selfcheck", "runs", console=console, get_time=clock, ticking=False)
    progress(0, 10, "")
    clock.now = 2.0  # 4 runs in 2 s: 2 runs/s, 6 left: 3 s
    progress(4, 10, "forgets-g-prime on square-ce", failed=1)
    line = plain(buf.getvalue()).split("\r")[-1]
    assert progress.live
    assert "selfcheck" in line and " 4/10 " in line, line
    assert "2.0 runs/s" in line and "0:00:03 left" in line, line
    assert "1 failed" in line and "forgets-g-prime on square-ce" in line, line
    # the last call closes it; transient: the line is erased and the cursor given back
    progress(10, 10, "", failed=1)
    assert not progress.live
    assert buf.getvalue().endswith("\x1b[2K") and "\x1b[?25h" in buf.getvalue()[-20:]


def test_before_the_first_item_rate_and_time_left_are_unknown(terminal):
    console, buf = terminal
    progress = Progress("claims", "claims", console=console, get_time=Clock(), ticking=False)
    progress(0, 64, "")
    line = plain(buf.getvalue()).split("\r")[-1]
    assert " 0/64 " in line and "? claims/s" in line and "-:--:-- left" in line and "0 failed" in line, line
    progress.close()


def test_nothing_is_written_when_stderr_is_not_a_terminal(terminal):
    stream = io.StringIO()  # isatty() is False: a pipe, a log file, pytest's capture
    progress = Progress(stream=stream)
    for done in range(4):
        progress(done, 3, f"case-{done}", failed=done)
    assert not progress.enabled and stream.getvalue() == ""
    # --quiet: nothing on a terminal either
    console, buf = terminal
    quiet = Progress(console=console, quiet=True)
    quiet(0, 3, "")
    quiet(1, 3, "a")
    assert not quiet.live and buf.getvalue() == ""


def test_nothing_to_do_shows_nothing(terminal):
    console, buf = terminal
    progress = Progress(console=console)
    progress(0, 0, "")
    assert not progress.live and buf.getvalue() == ""


def test_an_exception_inside_with_closes_the_display(terminal):
    console, buf = terminal
    with pytest.raises(KeyboardInterrupt):
        with Progress("run", console=console, get_time=Clock()) as progress:
            progress(0, 5, "")
            progress(1, 5, "case-a")
            assert progress.live
            raise KeyboardInterrupt  # Ctrl-C in the middle of a case
    assert not progress.live
    tail = buf.getvalue()[-20:]
    assert "\x1b[?25h" in tail and tail.endswith("\x1b[2K")  # cursor shown, line erased
    # and the display can start again (a second phase, or a second run)
    progress(0, 2, "")
    assert progress.live
    progress.close()


def test_rich_is_imported_only_when_a_display_starts():
    code = ("import sys, io, harness, harness.progress\n"
            "p = harness.progress.Progress(stream=io.StringIO())\n"
            "p(0, 2, ''); p(2, 2, '')\n"
            "assert 'rich' not in sys.modules, [m for m in sys.modules if m.startswith('rich')]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_report_progress_is_the_same_class():
    from harness import report

    assert report.Progress is Progress


# --------------------------------------------------------------------------- the wiring


def test_layers_quiet_prints_only_the_final_line_and_counts_the_failing_layer(monkeypatch, capsys, tmp_path):
    """`python -m harness layers ... --quiet`, in-process: one line on stdout, nothing on
    stderr; the display was asked to be quiet, and was told 1 layer of 1 failed."""
    from conftest import ROOT
    from harness import cli

    Recorder.made = []
    monkeypatch.setattr(cli, "Progress", Recorder)
    code = cli.main(["layers", str(ROOT / "examples" / "cs231n_layers_buggy.py"), "--only", "affine",
                     "--against", "manual", "--out", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines() == ["DISAGREE: 1 of 1 layers (affine)"], out
    assert err == ""
    (made,) = Recorder.made
    assert made.kwargs.get("quiet") is True
    assert made.calls == [(0, 1, "", 0), (1, 1, "affine", 1)]


def test_claims_count_pairs_and_failing_ones():
    from harness import claims
    from harness.backends import get

    wrong = claims.Claim("exp-jacobian-doubled", "2 diag(e^z)",
                         claims._jacobian_claim("exp", lambda z: 2 * np.diag(np.exp(z[0]))))
    seen = Recorder()
    claims.run_claims({"fd": get("fd")}, dtypes=("float64",), claims=[claims.CLAIMS[0], wrong], progress=seen)
    assert follows_the_protocol(seen.calls)
    assert [c[3] for c in seen.calls] == [0, 0, 1]  # the doubled Jacobian is the failure
    assert seen.calls[-1][2] == "exp-jacobian-doubled float64"


def test_selfcheck_counts_eligible_runs_and_uncaught_mutants(monkeypatch):
    import harness.selfcheck as sc
    from harness.backends import get
    from harness.model import Model
    from harness.mutants import ForgetsGPrime, Mutant, NetworkMutant

    Correct = type("Correct", (Mutant,), {"name": "correct", "mistake": "none"})  # never caught
    CorrectNetwork = type("CorrectNetwork", (NetworkMutant,), {"name": "correct-network", "mistake": "none"})
    monkeypatch.setattr(sc, "MUTANTS", [ForgetsGPrime, Correct, CorrectNetwork])
    monkeypatch.setattr(sc, "CASES", [c for c in sc.CASES if isinstance(c.model, Model)][:1])
    seen = Recorder()
    sc.run_selfcheck([get("manual")], progress=seen)
    # the network mutant is excluded on an MLP case: not a run, not counted
    assert [(d, t, f) for d, t, _, f in seen.calls] == [(0, 2, 0), (1, 2, 0), (2, 2, 1)]
    assert seen.calls[-1][2].startswith("correct on ")


def test_selfcheck_layer_files_show_progress_per_file_without_failures():
    from conftest import ROOT
    from harness.selfcheck import layer_files

    def check(path, against, progress):
        progress(0, 2, "")
        progress(1, 2, "affine", 1)
        progress(2, 2, "relu", 1)
        return []

    seen = Recorder()
    layer_files(ROOT, check=check, progress=seen)
    assert seen.calls[:3] == [(0, 2, "cs231n_layers_buggy.py: ", 0), (1, 2, "cs231n_layers_buggy.py: affine", 0),
                              (2, 2, "cs231n_layers_buggy.py: relu", 0)]
    assert len(seen.calls) == 6 and seen.calls[3][2].startswith("dls_layers_buggy.py")


def test_studies_count_points_and_timings():
    from harness import studies
    from harness.backends.manual import ManualBackend

    seen = Recorder()
    studies.epsilon_sweep(epsilons=[1e-3, 1e-5], methods=("central",), progress=seen)
    assert follows_the_protocol(seen.calls) and seen.calls[-1][1] == 4  # 2 dtypes × 1 method × 2 ε
    seen = Recorder()
    studies.cost_sweep(widths=(6,), repeats=1, backends={"manual": ManualBackend()}, progress=seen)
    assert follows_the_protocol(seen.calls) and [c[2] for c in seen.calls[1:]] == [
        "P=154 forward pass", "P=154 manual", "P=154 finite differences"]


def test_the_line_stays_short_of_the_terminal_width(monkeypatch):
    """A full-width line would leave the ^C a terminal echoes on the next line, which the
    display then erases instead of its own: seen in tmux, the bar stayed on the screen."""
    from rich.console import Console

    monkeypatch.setenv("TERM", "xterm-256color")
    buf = io.StringIO()
    progress = Progress("selfcheck", "runs", console=Console(file=buf, force_terminal=True, width=60),
                        get_time=Clock(), ticking=False)
    progress(0, 115, "")
    progress(56, 115, "batchnorm-stats-constant on ln-drop-bn-sse-float64", failed=2)
    frames = [f for f in plain(buf.getvalue()).replace("\n", "\r").split("\r") if f]
    assert frames and max(len(f) for f in frames) <= 57, max(frames, key=len)
    progress.close()
