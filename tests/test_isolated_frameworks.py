"""A serial `harness run` keeps torch and jax each in a process of its own (``backends.build.
ISOLATED``), so that a crash in their native code is an error for its case and the run goes on.

XLA 0.10.2 aborted the whole process on a CHECK failure while compiling a conv's gradient
(catalog-534): a serial run of the 1,000-case catalog sweep ended there with exit 134 and no
report. Here a `sitecustomize` makes jax abort on one case the way XLA did (SIGABRT, in the
process that computes), which reaches only the child in the default run and the whole run
with `--in-process`. The other tests hold the isolated arms to the bits of in-process ones.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest

from conftest import ROOT, run_cli

CASE = ('[[case]]\nname = "{name}"\nlayers = [3, 4, 2]\nactivations = "tanh"\nloss = "cross_entropy"\n'
        'batch = {batch}\nseed = {seed}\n\n')
CASES = "".join(CASE.format(name=n, batch=b, seed=s) for n, b, s in
                (("first", 2, 1), ("aborts", 3, 2), ("third", 4, 3)))

# Wraps JaxBackend.gradients once harness.backends.jax_backend is imported (in whichever process
# that is): a batch of 3 aborts the process, as XLA's CHECK failure did.
ABORTS_ON_BATCH_3 = '''
import importlib.abc, importlib.util, os, sys

class _AbortingJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "harness.backends.jax_backend":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            gradients = module.JaxBackend.gradients

            def aborting(self, model, arrays):
                if arrays["X"].shape[0] == 3:
                    os.abort()
                return gradients(self, model, arrays)

            module.JaxBackend.gradients = aborting

        spec.loader.exec_module = patched
        return spec

sys.meta_path.insert(0, _AbortingJax())
'''


def _aborting_env(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(ABORTS_ON_BATCH_3)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def test_a_framework_that_aborts_the_process_is_an_error_for_its_case_and_the_run_goes_on(tmp_path):
    (tmp_path / "c.toml").write_text(CASES)
    env = _aborting_env(tmp_path)
    proc = run_cli("run", tmp_path / "c.toml", "--backends", "manual,torch,jax", "--out", tmp_path / "out",
                   env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(c["name"], c["state"]) for c in doc["cases"]] == [("first", "agree"), ("aborts", "error"),
                                                               ("third", "agree")]
    [error] = doc["errors"]
    assert (error["case"], error["backend"]) == ("aborts", "jax")
    assert f"the jax process was killed by signal {int(signal.SIGABRT)} while computing gradients" in error["message"]
    # a fresh jax process served the third case: every pair compared there
    assert {p["a"] + " " + p["b"] for p in doc["pairs"] if p["elements"]} >= {"manual jax", "torch jax"}


def test_with_in_process_the_same_abort_ends_the_run(tmp_path):
    """What the isolation prevents (and what --in-process, the faster way on large cases, risks)."""
    (tmp_path / "c.toml").write_text(CASES)
    proc = run_cli("run", tmp_path / "c.toml", "--backends", "manual,torch,jax", "--out", tmp_path / "out",
                   "--in-process", env=_aborting_env(tmp_path))
    assert proc.returncode in (-signal.SIGABRT, 128 + signal.SIGABRT), (proc.returncode, proc.stderr)
    assert not (tmp_path / "out" / "results.json").exists()


# An MLP in each dtype, a conv net with batch norm and a max pool, a sequence net with an lstm
# and causal attention: every kind of intermediate the arms return.
SAMPLE = CASE.format(name="mlp64", batch=5, seed=11) + CASE.format(name="mlp32", batch=5, seed=12).replace(
    "seed = 12", "seed = 12\ndtype = \"float32\"") + """
[[case]]
name = "conv"
input = [2, 6, 6]
batch = 3
loss = "cross_entropy"
seed = 13
network = [
  {layer = "conv2d", filters = 3, kernel = 3, padding = 1},
  {layer = "batchnorm"},
  {layer = "relu"},
  {layer = "maxpool2d", size = 2},
  {layer = "flatten"},
  {layer = "dense", units = 3},
]

[[case]]
name = "sequence"
input = [4, 6]
batch = 3
loss = "cross_entropy"
dtype = "float32"
seed = 14
network = [
  {layer = "lstm", hidden = 6},
  {layer = "attention", heads = 2, causal = true},
  {layer = "mean_over_time"},
  {layer = "dense", units = 3},
]
"""


def test_isolated_arms_give_the_bits_of_in_process_ones(tmp_path):
    """Every array torch and jax return (J, every z, a, da and gradient), saved by --save-arrays,
    the same bit for bit whether they ran in the CLI's process or each in its own; so are the
    agreement tables. Both runs pin one compute thread (the CLI does), the children too."""
    (tmp_path / "c.toml").write_text(SAMPLE)
    outs = {}
    for how, extra in (("isolated", []), ("in-process", ["--in-process"])):
        outs[how] = tmp_path / how
        proc = run_cli("run", tmp_path / "c.toml", "--backends", "manual,torch,jax", "--out", outs[how],
                       "--save-arrays", "--quiet", *extra, isolated=not extra)
        assert proc.returncode == 0, (how, proc.stdout, proc.stderr)
    iso, inp = outs["isolated"], outs["in-process"]
    assert (iso / "agreement.csv").read_text() == (inp / "agreement.csv").read_text()
    compared = 0
    for case_dir in sorted((inp / "arrays").iterdir()):
        for arm in ("torch", "jax"):
            with np.load(case_dir / f"{arm}.npz") as a, np.load(iso / "arrays" / case_dir.name / f"{arm}.npz") as b:
                assert sorted(a.files) == sorted(b.files), (case_dir.name, arm)
                for k in a.files:
                    assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), (case_dir.name, arm, k)
                    compared += 1
    assert len(list((inp / "arrays").iterdir())) == 4 and compared > 100, compared
    env = json.loads((iso / "results.json").read_text())["environment"]
    assert env["torch"]["loaded"] and env["torch"]["threads"] == 1 and env["jax"]["loaded"], env


@pytest.mark.skipif(sys.platform != "linux", reason="counts the processes under this one in /proc")
def test_the_framework_processes_end_with_the_run(tmp_path):
    """No child outlives a run: isolated arms are closed when it ends."""
    from harness.cli import main

    (tmp_path / "c.toml").write_text(CASE.format(name="one", batch=2, seed=1))
    before = _children()
    assert not before
    assert main(["run", str(tmp_path / "c.toml"), "--backends", "manual,torch,jax", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    assert not _children()


def _children() -> set[int]:
    """The spawned children of this process (not multiprocessing's resource tracker, which
    lives as long as the process that started it)."""
    me = str(os.getpid())
    kids = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parent = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
                command = open(f"/proc/{pid}/cmdline").read()
            except OSError:
                continue
            if parent == me and "spawn_main" in command:
                kids.add(int(pid))
    return kids


def test_an_interrupted_case_leaves_no_late_answer_for_the_next(tmp_path, monkeypatch):
    """A backend in a process of its own is sent its case before the others run: stopped in
    between (Ctrl-C), its process is closed, so its late answer cannot be taken for the next
    case's. A plugin stands in for torch and jax (the same class), and the stop comes at the
    first backend's turn."""
    from harness import runner
    from harness.backends import build
    from harness.cases import load_file

    (tmp_path / "slow.py").write_text("import time\nfrom harness.backends import get\n\nclass P:\n    name = 'slow'\n"
                                      "    def gradients(self, model, arrays):\n        time.sleep(0.3)\n"
                                      "        return get('manual').gradients(model, arrays)\n")
    (tmp_path / "c.toml").write_text(CASES)
    first, _, third = load_file(tmp_path / "c.toml")
    backends = build.build(["manual"], [f"{tmp_path / 'slow.py'}:P"], 60)
    calls = 0

    def stop_inside_the_case():
        nonlocal calls
        calls += 1
        if calls == 2:  # run()'s own check, then the first backend's turn: the plugin has its case
            raise KeyboardInterrupt("stop requested")

    try:
        monkeypatch.setattr(runner, "_check_stop", stop_inside_the_case)
        with pytest.raises(KeyboardInterrupt):
            runner.run([first], backends)
        monkeypatch.undo()
        result = runner.run([third], backends)
        assert result.cases[0].passed, [c.message() for c in result.cases[0].comparisons if not c.passed][:2]
    finally:
        build.close(backends)
