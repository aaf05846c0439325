"""`run --backend layers:FILE.py`: a whole network through the user's layer functions, compared
with the harness's arms; and a plugin's wrong result named by the known mistake it equals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent

CASES = '''
[[case]]
name = "conv-bn-pool"
input = [2, 6, 6]
batch = 3
loss = "cross_entropy"
network = [
  {layer = "conv2d", filters = 3, kernel = 3, stride = 1, padding = 1},
  {layer = "maxpool2d", size = 2},
  {layer = "batchnorm"},
  {layer = "relu"},
  {layer = "flatten"},
  {layer = "dense", units = 4},
]

[[case]]
name = "tokens-rnn-residual"
input = [4]
vocab = 6
batch = 2
loss = "cross_entropy"
network = [
  {layer = "embedding", dim = 3},
  {layer = "rnn", hidden = 3},
  {layer = "residual", body = [{layer = "layernorm"}, {layer = "dense", units = 3}]},
  {layer = "dense", units = 6},
]

[[case]]
name = "mlp-relu"
layers = [4, 5, 3]
activations = ["relu", "softmax"]
batch = 4
loss = "cross_entropy"

[[case]]
name = "with-dropout"
input = [5]
batch = 4
loss = "cross_entropy"
network = [{layer = "dense", units = 4}, {layer = "dropout", rate = 0.5}, {layer = "dense", units = 3}]
'''


def _run(tmp_path, layers_file, *extra):
    cases = tmp_path / "cases.toml"
    cases.write_text(CASES)
    out = tmp_path / "out"
    # manual alone beside the user's layers (fd on these networks would double the time); the
    # dropout case then compares nothing, which --allow-uncompared lets pass
    p = run_cli("run", cases, "--backends", "manual", "--backend", f"layers:{layers_file}", "--allow-uncompared",
                "--out", out, *extra, timeout=300)
    return p, out


def test_a_network_through_the_users_correct_layers_agrees(tmp_path):
    p, out = _run(tmp_path, ROOT / "examples" / "cs231n_layers.py")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = pd.read_csv(out / "agreement.csv")
    mine = rows[(rows.a == "cs231n_layers") | (rows.b == "cs231n_layers")]
    # conv, relu, batchnorm, pool, dense; embedding, rnn, layernorm, temporal affine; the MLP
    assert set(mine.case) == {"conv-bn-pool", "tokens-rnn-residual", "mlp-relu"}
    assert {"dW1", "dgamma3", "dW6", "da4", "dWx2", "dgamma4"} <= set(mine.quantity)
    assert mine.passed.all()
    report = (out / "report.md").read_text()
    assert "dropout_forward draws its own mask" in report  # with-dropout: a note, not an error


def test_the_users_buggy_layers_are_named_by_layer(tmp_path):
    p, out = _run(tmp_path, ROOT / "examples" / "cs231n_layers_buggy.py")
    assert p.returncode == 1
    rows = pd.read_csv(out / "agreement.csv")
    bad = rows[~rows.passed & ((rows.a == "cs231n_layers_buggy") | (rows.b == "cs231n_layers_buggy"))]
    # named by layer: dense's dW6 (dw / N), then everything below relu's backward (layer 4)
    assert {"dW6", "da3", "dgamma3", "dW1"} <= set(bad[bad.case == "conv-bn-pool"].quantity)
    assert "da5" not in set(bad[bad.case == "conv-bn-pool"].quantity)  # flatten's input: above the relu


def test_a_plugins_mistake_is_named_when_a_mutant_equals_it(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text("from harness.mutants import ForgetsGPrime\n\n"
                      "class Mine(ForgetsGPrime):\n    name = 'mine'\n\n"
                      "class Scaled(ForgetsGPrime):\n    name = 'scaled'\n"
                      "    def gradients(self, model, arrays):\n"
                      "        out = super().gradients(model, arrays)\n"
                      "        out['dW1'] = out['dW1'] * 1.5  # no known mistake\n        return out\n")
    cases = tmp_path / "cases.toml"
    cases.write_text(CASES)
    p = run_cli("run", cases, "--backends", "manual,manual_columns", "--backend", f"{plugin}:Mine",
                "--backend", f"{plugin}:Scaled", "--out", tmp_path / "o", timeout=300)
    assert p.returncode == 1
    report = (tmp_path / "o" / "report.md").read_text()
    assert "`mine`: dW1, db1 match 'dz^[l] = da^[l], without ∘ g'(z^[l])' (forgets-g-prime)" in report
    assert "`scaled`: no known mistake matches" in report
