"""torch and jax are extras: without them the harness runs its numpy backends, and a framework
backend asked for reports, on every case, that it is not installed and how to install it."""

import os
import subprocess
import sys

from conftest import ROOT

# Make `import torch` and `import jax` fail in the run's process and in every process it starts
# (a serial run keeps torch and jax in processes of their own), as on a machine without the
# extras: a sitecustomize, which every interpreter imports at start.
HIDE = """
import sys
sys.modules["torch"] = None
sys.modules["jax"] = None
"""


CASES = """
[[case]]
name = "mlp"
layers = [3, 4, 2]
activations = ["tanh", "softmax"]
loss = "cross_entropy"
batch = 5

[[case]]
name = "bn-net"
input = [3]
batch = 5
loss = "multiclass_hinge"
network = [{layer = "dense", units = 4}, {layer = "batchnorm"}, {layer = "relu"}, {layer = "dense", units = 3}]
"""


def _run(tmp_path, *args):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env=env)


def test_numpy_backends_run_without_the_frameworks(tmp_path):
    (tmp_path / "c.toml").write_text(CASES)
    proc = _run(tmp_path, "run", tmp_path / "c.toml", "--backends", "manual,manual_columns,fd",
                "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL AGREE" in proc.stdout


def test_a_missing_framework_is_an_error_per_case_that_says_how_to_install_it(tmp_path):
    (tmp_path / "c.toml").write_text(CASES)
    for extra in ([], ["--in-process"]):
        out = tmp_path / ("out" + "".join(extra))
        proc = _run(tmp_path, "run", tmp_path / "c.toml", "--backends", "manual,torch",
                    "--out", out, "--quiet", "--allow-uncompared", *extra)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        report = (out / "report.md").read_text()
        assert "torch is not installed" in report and "backprop-xval[torch]" in report, (extra, report)
