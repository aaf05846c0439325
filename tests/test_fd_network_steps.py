"""Finite differences on networks: the shorter steps tried after a kink crossing, and the
per-example nudges of intermediates where no layer couples the examples. Each is shown to
matter (without it the check is inconclusive, or slower) and to stay right (it agrees with
the manual arm, and a wrong gradient still fails against it)."""

import numpy as np
import pytest

import harness.backends.fd_network as fd_network
from harness.backends import get
from harness.cases import load_file
from harness.network import backprop
from harness.runner import run_case

# One relu input sits 3e-6 from its kink: closer than the central step h0 ≈ 6e-6 for |J| < 1,
# farther than h0/16. Nudging W1[0, 0] (X[0, 0] = 1) by ±h0 moves it across.
NEAR_KINK = """
[[case]]
name = "near-kink"
input = [2]
batch = 1
loss = "half_sse"
network = [{layer = "dense", units = 2, activation = "relu"}, {layer = "dense", units = 1}]
[case.values]
X = [[1.0, 0.0]]
W1 = [[3e-6, 1.0], [0.5, 0.5]]
b1 = [0.0, 0.0]
W2 = [[0.7], [-0.4]]
b2 = [0.1]
Y = [[0.2]]
"""

CONV = """
[[case]]
name = "conv-{dtype}"
dtype = "{dtype}"
input = [2, 6, 6]
batch = 3
loss = "cross_entropy"
network = [
  {{layer = "conv2d", filters = 3, kernel = 3, padding = 1, activation = "tanh"}},
  {{layer = "maxpool2d", size = 2}},
  {{layer = "conv2d", filters = 2, kernel = 2, activation = "relu"}},
  {{layer = "flatten"}},
  {{layer = "dense", units = 3}},
]
"""


def _case(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    (case,) = load_file(path)
    return case


def _fd():
    fd = get("fd")
    fd.intermediates = True
    return fd


def test_a_kink_within_h_is_resolved_by_a_shorter_step(tmp_path, monkeypatch):
    case = _case(tmp_path, NEAR_KINK)
    arrays = case.arrays()
    exact = backprop(case.model, arrays)["dW1"]
    out = _fd().gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    assert not np.ma.is_masked(out["dW1"])
    assert np.allclose(np.asarray(out["dW1"]), exact, rtol=1e-6, atol=1e-9)
    monkeypatch.setattr(fd_network, "KINK_RETRY", ())
    without = _fd().gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    assert np.ma.getmaskarray(without["dW1"])[0, 0] and without.inconclusive >= 1


def test_a_kink_at_every_step_stays_inconclusive(tmp_path):
    """z exactly at the kink: no step avoids it, the coordinate is not compared."""
    case = _case(tmp_path, NEAR_KINK.replace("W1 = [[3e-6, 1.0]", "W1 = [[0.0, 1.0]"))
    out = _fd().gradients(case.model, case.arrays())
    assert np.ma.getmaskarray(out["dW1"])[0, 0] and out.inconclusive >= 1


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_per_example_nudges_agree_with_whole_batch_ones(tmp_path, monkeypatch, builtin, dtype):
    case = _case(tmp_path, CONV.format(dtype=dtype))
    arrays = case.arrays()
    per_example = _fd().gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    assert "on its own example" in per_example.notes
    monkeypatch.setattr(fd_network._Evaluator, "separable", property(lambda self: False))
    whole = _fd().gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    assert "on its own example" not in whole.notes
    for q in ("da1", "dz1", "da2", "dz3"):
        a, b = np.ma.filled(per_example[q].astype(float), np.nan), np.ma.filled(whole[q].astype(float), np.nan)
        both = ~np.isnan(a) & ~np.isnan(b)
        assert both.sum() >= 20, q  # the same seeded sample of coordinates in both
        assert np.allclose(a[both], b[both], rtol=1e-6, atol=1e-8 * np.abs(b[both]).max()), q


def test_per_example_fd_still_catches_a_wrong_intermediate(tmp_path, builtin):
    case = _case(tmp_path, CONV.format(dtype="float64"))

    class WrongDa2:
        name = "wrong-da2"

        def gradients(self, model, arrays):
            out = backprop(model, arrays)
            out["da2"] = out["da2"] * 1.001
            return out

    r = run_case(case, [builtin["fd"], WrongDa2()])
    assert "da2" in {c.quantity for c in r.failures()}
    r = run_case(case, [builtin["fd"], builtin["manual"]])
    assert r.passed, [c.message() for c in r.failures()]


def test_batch_norm_keeps_the_whole_batch(tmp_path):
    case = _case(tmp_path, CONV.format(dtype="float64").replace(
        '{layer = "flatten"}', '{layer = "batchnorm"},\n  {layer = "flatten"}'))
    out = _fd().gradients(case.model, case.arrays())
    assert "on its own example" not in out.notes
