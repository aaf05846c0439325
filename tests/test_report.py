"""The CLI writes report.md, agreement.csv, errors.csv and the arrays, and exits by the verdict."""

import numpy as np
import pandas as pd

from conftest import run_cli
from harness.compare import Comparison

CASES = """
[[case]]
name = "ce"
layers = [3, 5, 4]
activations = ["relu", "softmax"]
loss = "cross_entropy"
batch = 6
seed = 3

[[case]]
name = "bce-f32"
layers = [2, 3]
activations = ["sigmoid"]
loss = "binary_cross_entropy"
batch = 1
dtype = "float32"
"""


def test_run_writes_every_file(tmp_path):
    casefile = tmp_path / "cases.toml"
    casefile.write_text(CASES)
    out = tmp_path / "out"
    proc = run_cli("run", casefile, "--out", out, "--save-arrays")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # J, z/a per layer, dz, dW, db per layer, da below the top: 12 quantities for L = 2, 6 for L = 1
    assert "ALL AGREE: 2 cases, backends manual, manual_columns, torch, jax, fd, 180 comparisons" in proc.stdout

    frame = pd.read_csv(out / "agreement.csv")
    assert len(frame) == (12 + 6) * 10  # quantities × 10 pairs
    assert set(Comparison.__dataclass_fields__) <= set(frame.columns)
    assert frame["passed"].all()
    names = ["manual", "manual_columns", "torch", "jax", "fd"]
    assert set(frame["pair"]) == {f"{a}-vs-{b}" for i, a in enumerate(names) for b in names[i + 1:]}
    assert len(pd.read_csv(out / "errors.csv")) == 0

    md = (out / "report.md").read_text()
    assert md.startswith("# Backprop cross-validation report\n\n**Verdict: all agree.** 2 cases")
    assert "### ce" in md and "| dW2 |" in md and "## Tolerances" in md

    inputs = np.load(out / "arrays" / "ce" / "inputs.npz", allow_pickle=False)
    assert set(inputs.files) == {"X", "Y", "y", "W1", "b1", "W2", "b2"}
    assert inputs["y"].dtype == np.int64 and inputs["X"].shape == (6, 3)
    for backend in ("manual", "manual_columns", "torch", "jax", "fd"):
        grads = np.load(out / "arrays" / "ce" / f"{backend}.npz", allow_pickle=False)
        assert set(grads.files) == {"J", "dW1", "db1", "dW2", "db2",
                                    "z1", "a1", "z2", "a2", "dz1", "dz2", "da1"}
        assert grads["dW1"].shape == (3, 5)
    assert np.load(out / "arrays" / "bce-f32" / "torch.npz")["dW1"].dtype == np.float32


def test_a_disagreement_exits_1_and_is_in_the_report(tmp_path):
    casefile = tmp_path / "cases.toml"
    casefile.write_text(CASES)
    plugin = tmp_path / "wrong.py"
    plugin.write_text("from harness.backends import get\n"
                      "class Doubled:\n    name = 'doubled-db'\n"
                      "    def gradients(self, model, arrays):\n"
                      "        g = get('manual').gradients(model, arrays)\n"
                      "        g['db1'] = 2 * g['db1']\n        return g\n")
    out = tmp_path / "out"
    proc = run_cli("run", casefile, "--backends", "manual,fd", "--backend", f"{plugin}:Doubled",
                   "--out", out)
    assert proc.returncode == 1
    frame = pd.read_csv(out / "agreement.csv")
    bad = frame[~frame["passed"]]
    assert set(bad["quantity"]) == {"db1"} and set(bad["b"]) == {"doubled-db"}
    md = (out / "report.md").read_text()
    assert "**Verdict: 4 disagreements.**" in md
    assert "## Problems" in md and "ce db1 manual vs doubled-db:" in md


def test_an_interrupted_write_leaves_the_previous_report(tmp_path, monkeypatch):
    import pytest

    from harness import files

    target = tmp_path / "report.md"
    target.write_text("previous")

    class Boom(Exception):
        pass

    def explode(*a, **k):
        raise Boom

    monkeypatch.setattr(files.os, "replace", explode)
    with pytest.raises(Boom):
        files.atomic_write(target, b"new half-written")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no temporary left behind
