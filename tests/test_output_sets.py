"""Reports are all-new or all-old, one writer at a time, and no two names share a file."""

import errno
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, run_cli
from harness import cli, files
from harness.cases import Case
from harness.model import Model
from harness.report import write_report
from harness.runner import run
from harness.backends import get

MODEL = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
ONE = '[[case]]\nname = "{name}"\nlayers = [3, 4, 2]\nactivations = "tanh"\nloss = "cross_entropy"\nbatch = 3\nseed = {seed}\n'


def _result(*names):
    return run([Case(n, MODEL, 3, i) for i, n in enumerate(names)], [get("manual"), get("fd")])


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent):
    return [p.name for p in parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_a_write_error_midway_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(_result("first"), out)
    before = _snapshot(out)
    real, calls = files.atomic_write, []

    def disk_full_on_third(path, data):
        calls.append(path.name)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    monkeypatch.setattr("harness.report.atomic_write", disk_full_on_third)
    with pytest.raises(files.OutputError, match="No space left on device.*previous report is unchanged"):
        write_report(_result("second"), out)
    assert _snapshot(out) == before  # not one file of the second run
    assert not _leftovers(tmp_path)


def test_disk_full_through_the_cli_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    casefile = tmp_path / "c.toml"
    casefile.write_text(ONE.format(name="c", seed=1))

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("harness.report.atomic_write", full)
    code = cli.main(["run", str(casefile), "--backends", "manual,fd", "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space left on device" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_whatever_the_previous_set_held_a_new_one_is_written(tmp_path):
    """DIR/arrays a file, report.md a directory, a case name too long for the file system."""
    out = tmp_path / "out"
    write_report(_result("first"), out)
    (out / "arrays").write_text("not a directory")
    (out / "report.md").unlink()
    (out / "report.md").mkdir()
    long_name = "n" * 300
    write_report(_result(long_name, "a/b"), out, save_arrays=True)
    assert (out / "report.md").is_file() and (out / "arrays").is_dir()
    folders = sorted(p.name for p in (out / "arrays").iterdir())
    assert len(folders) == 2 and all(len(f.encode()) <= files.MAX_NAME_BYTES for f in folders)
    assert all((out / "arrays" / f / "inputs.npz").is_file() for f in folders)


def test_files_other_commands_wrote_are_kept(tmp_path):
    out = tmp_path / "out"
    write_report(_result("first"), out)
    (out / "claims.csv").write_text("not, the claims csv\n")  # unreadable: noted in the html
    (out / "selfcheck.md").write_text("kept")
    write_report(_result("second"), out)
    assert (out / "selfcheck.md").read_text() == "kept"
    assert "could not be read" in (out / "report.html").read_text()
    assert "second" in (out / "report.md").read_text() and "first" not in (out / "report.md").read_text()


def test_a_directory_of_other_files_is_refused(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(files.OutputError, match="did not write.*mine.txt"):
        write_report(_result("first"), tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_leftovers_of_a_killed_run_are_cleaned(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.staging-dead").mkdir()
    (tmp_path / ".out.staging-dead" / "report.md").write_text("half")
    write_report(_result("first"), out)
    assert not _leftovers(tmp_path)


def test_a_second_writer_waits_and_never_interleaves(tmp_path, monkeypatch):
    """Two writers of one DIR: the second waits for the first's switch; each set is whole."""
    out = tmp_path / "out"
    inside, release = threading.Event(), threading.Event()
    seen = []

    def first():
        with files.output_set(out, ["a.txt", "b.txt"]) as stage:
            (stage / "a.txt").write_text("first")
            inside.set()
            release.wait(10)
            (stage / "b.txt").write_text("first")

    t = threading.Thread(target=first)
    t.start()
    inside.wait(10)

    def second():
        with files.output_set(out, ["a.txt", "b.txt"]) as stage:
            seen.append((out / "a.txt").read_text())  # the first set, already whole
            (stage / "a.txt").write_text("second")
            (stage / "b.txt").write_text("second")

    t2 = threading.Thread(target=second)
    t2.start()
    time.sleep(0.3)
    assert not (out / "a.txt").exists()  # nothing of either set is visible yet
    release.set()
    t.join(10)
    t2.join(10)
    assert seen == ["first"]
    assert (out / "a.txt").read_text() == (out / "b.txt").read_text() == "second"


def test_a_writer_that_waits_too_long_gets_a_clear_refusal(tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(files, "LOCK_WAIT_SECONDS", 0.3)
    fd = os.open(tmp_path / ".out.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(files.OutputError, match="another run has been writing"):
            write_report(_result("first"), out)
    finally:
        os.close(fd)
    assert not out.exists()


def test_sigterm_during_a_run_leaves_the_previous_report(tmp_path):
    casefile = tmp_path / "c.toml"
    casefile.write_text(ONE.format(name="quick", seed=1))
    out = tmp_path / "out"
    assert run_cli("run", casefile, "--backends", "manual,fd", "--out", out, "--quiet").returncode == 0
    before = _snapshot(out)
    slow = tmp_path / "slow.toml"
    slow.write_text('[[sweep]]\nname = "s"\ncount = 400\nseed = 1\nwidth = [20, 40]\nbatch = [20, 40]\n')
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(slow), "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never leave a run behind, whatever failed above
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "left as it was" in stderr
    assert _snapshot(out) == before and not _leftovers(tmp_path)


# --------------------------------------------------------------------------- names


def test_file_names_are_injective_and_readable():
    names = ["a/b", "a b", "a_b", "a?b", "ünïcode", "日本語", "中文", "x" * 400, "inputs",
             "case", "my plugin", "my_plugin", ".hidden", "a~0123456789abcdef"]
    mapped = [files.file_name(n) for n in names]
    assert len(set(mapped)) == len(names), dict(zip(names, mapped))
    assert files.file_name("a_b") == "a_b" and files.file_name("tanh-3-layer") == "tanh-3-layer"
    assert files.file_name("a/b").startswith("a_b~")
    assert all("/" not in m and len(m.encode()) <= files.MAX_NAME_BYTES for m in mapped)


def test_saved_arrays_of_cases_with_clashing_names_stay_apart(tmp_path):
    casefile = tmp_path / "c.toml"
    casefile.write_text("".join(ONE.format(name=n, seed=i) for i, n in
                                enumerate(["a/b", "a b", "a_b", "日本語", "中文"])))
    out = tmp_path / "out"
    proc = run_cli("run", casefile, "--backends", "manual,fd", "--save-arrays", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    folders = list((out / "arrays").iterdir())
    assert len(folders) == 5
    xs = {np.load(f / "inputs.npz")["X"].tobytes() for f in folders}
    assert len(xs) == 5  # five different draws: no case overwrote another


def test_a_backend_named_like_a_file_the_harness_writes_is_refused(tmp_path):
    plugin = tmp_path / "p.py"
    plugin.write_text("from harness.backends import get\n"
                      "class Inputs:\n    name = 'inputs'\n"
                      "    def gradients(self, model, arrays):\n        return get('manual').gradients(model, arrays)\n")
    casefile = tmp_path / "c.toml"
    casefile.write_text(ONE.format(name="c", seed=1))
    proc = run_cli("run", casefile, "--backends", "manual", "--backend", f"{plugin}:Inputs",
                   "--out", tmp_path / "out", "--save-arrays")
    assert proc.returncode == 2 and "may not be named 'inputs'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_plugins_whose_names_differ_only_by_a_space_keep_their_own_files(tmp_path):
    plugin = tmp_path / "p.py"
    plugin.write_text("from harness.backends import get\n"
                      "class Spaced:\n    name = 'my plugin'\n"
                      "    def gradients(self, model, arrays):\n        return get('manual').gradients(model, arrays)\n"
                      "class Under(Spaced):\n    name = 'my_plugin'\n")
    casefile = tmp_path / "c.toml"
    casefile.write_text(ONE.format(name="c", seed=1))
    out = tmp_path / "out"
    proc = run_cli("run", casefile, "--backends", "manual", "--backend", f"{plugin}:Spaced",
                   "--backend", f"{plugin}:Under", "--out", out, "--save-arrays", "--quiet")
    assert proc.returncode == 0, proc.stderr
    saved = sorted(p.name for p in (out / "arrays" / "c").iterdir())
    assert len(saved) == 4 and "inputs.npz" in saved and "my_plugin.npz" in saved


def test_without_renameat2_the_two_rename_switch_is_used(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(_result("first"), out)
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    write_report(_result("second"), out)
    assert "second" in (out / "report.md").read_text() and not _leftovers(tmp_path)
