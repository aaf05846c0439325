"""Max-pool ties: a window whose maximum is attained twice has no single arg-max. The harness
detects such windows, masks every element that depends on the choice in every backend, and
counts them; nothing else is masked, so a wrong gradient elsewhere still fails."""

import numpy as np
import pytest

from harness.cases import load_file
from harness.catalog import LAYERS
from harness.catalog.conv import windows
from harness.network import backprop
from harness.runner import run_case
from harness.ties import tie_masks

# An integer image (ties everywhere) through a 1×1 conv, max pooling and a dense head: the
# choice of maximum decides da1, and what flows from it into conv 1's gradients (where its
# activation is live: not below a relu that is off, as for the negated channel).
INT_IMAGE = """
[[case]]
name = "int-image"
input = [1, 4, 4]
batch = 2
loss = "cross_entropy"
network = [
  {{layer = "conv2d", filters = 2, kernel = 1, activation = "{act}"}},
  {{layer = "maxpool2d", size = 2{stride}}},
  {{layer = "flatten"}},
  {{layer = "dense", units = 3}},
]
[case.values]
X = [[[[1, 1, 0, 2], [0, 1, 2, 2], [3, 0, 1, 1], [0, 3, 1, 0]]],
     [[[1, 2, 0, 0], [0, 0, 2, 0], [5, 4, 1, 1], [4, 5, 1, 1]]]]
W1 = [[[[1.0]]], [[[-0.5]]]]
b1 = [0.25, 0.5]
"""

RANDOM = """
[[case]]
name = "random-{dtype}"
dtype = "{dtype}"
input = [2, 8, 8]
batch = 4
loss = "cross_entropy"
network = [
  {{layer = "conv2d", filters = 3, kernel = 3, padding = 1}},
  {{layer = "maxpool2d", size = 2}},
  {{layer = "conv2d", filters = 4, kernel = 2, activation = "tanh"}},
  {{layer = "maxpool2d", size = 2, stride = 1}},
  {{layer = "flatten"}},
  {{layer = "dense", units = 3}},
]
"""


def _case(tmp_path, text, **fmt):
    path = tmp_path / "c.toml"
    path.write_text(text.format(**fmt))
    (case,) = load_file(path)
    return case


def _every_maximum(spec, dy, cache):
    """The naive backward many learners write: dy to every element equal to the window's max."""
    x, _ = cache
    (kh, kw), (sh, sw) = LAYERS["maxpool2d"].geometry(spec)
    win = windows(x, (kh, kw), (sh, sw))
    is_max = win == win.max(axis=(-2, -1), keepdims=True)
    dx = np.zeros(x.shape, dtype=dy.dtype)
    Ho, Wo = dy.shape[2:]
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += np.where(is_max[..., u, v], dy, 0)
    return dx, {}


class EveryMaximum:
    """A backend whose max pool sends dy to every tied maximum (a valid choice, not torch's)."""

    name = "every-max"

    def gradients(self, model, arrays):
        return backprop(model, arrays, backward_of={"maxpool2d": _every_maximum})


@pytest.mark.parametrize("stride", ["", ", stride = 1"], ids=["disjoint", "overlapping"])
def test_another_valid_routing_at_ties_differs_only_where_masked(tmp_path, builtin, stride):
    case = _case(tmp_path, INT_IMAGE, act="relu", stride=stride)
    arrays = case.arrays()
    torch_out = builtin["torch"].gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    other = EveryMaximum().gradients(case.model, {k: v.copy() for k, v in arrays.items()})
    masks, n_windows = tie_masks(case.model, arrays)
    assert n_windows > 0
    differs = {q for q in other if not np.allclose(other[q], torch_out[q], rtol=1e-12, atol=1e-12)}
    assert "da1" in differs and not differs & {"J", "a1", "a2", "dW4", "db4", "da2", "da3"}
    # Complete: every element where the two routings differ is masked. Precise: the mask
    # reaches no quantity above the pool, and not all of da1.
    for q in differs:
        off = ~np.isclose(other[q], torch_out[q], rtol=1e-12, atol=1e-12)
        assert not (off & ~masks[q]).any(), q
    assert masks.keys() <= {"da1", "dz1", "dW1", "db1"}
    assert masks["da1"].sum() < masks["da1"].size
    r = run_case(case, [builtin["torch"], builtin["manual"], EveryMaximum()])
    assert not r.errors and r.passed, [c.message() for c in r.failures()]
    assert r.ties["windows"] == n_windows and r.ties["elements"] == sum(int(m.sum()) for m in masks.values())


def test_without_the_mask_the_other_routing_would_fail(tmp_path, builtin):
    """The mask is what lets a valid choice pass, not a loose tolerance: unmasked, it fails."""
    case = _case(tmp_path, INT_IMAGE, act="relu", stride="")
    import harness.runner as runner

    original = runner._mask_ties
    try:
        runner._mask_ties = lambda *a: None
        r = run_case(case, [builtin["torch"], EveryMaximum()])
    finally:
        runner._mask_ties = original
    assert not r.passed and "da1" in {c.quantity for c in r.failures()}


def test_a_wrong_gradient_outside_the_ties_still_fails(tmp_path, builtin):
    case = _case(tmp_path, INT_IMAGE, act="relu", stride="")

    class WrongHead:
        name = "wrong-head"

        def gradients(self, model, arrays):
            out = backprop(model, arrays)
            out["dW4"] = out["dW4"] * 1.01
            return out

    r = run_case(case, [builtin["torch"], WrongHead()])
    assert r.ties["windows"] > 0
    assert {c.quantity for c in r.failures()} == {"dW4"}


def test_a_choice_below_an_off_relu_stops_there(tmp_path):
    """Channel 2 of the conv is −0.5·X + 0.5: its relu is off wherever X ≥ 1, so windows tied
    at 0 decide da1 there and nothing below; with identity the same ties reach dz1, dW1, db1."""
    relu = _case(tmp_path, INT_IMAGE, act="relu", stride="")
    masks, _ = tie_masks(relu.model, relu.arrays())
    z1 = backprop(relu.model, relu.arrays())["z1"]
    off = z1 <= 0
    assert (masks["da1"] & off).any() and not (masks["dz1"] & off).any()
    identity = _case(tmp_path, INT_IMAGE, act="identity", stride="")
    masks_id, _ = tie_masks(identity.model, identity.arrays())
    assert masks_id["dz1"].sum() > masks["dz1"].sum()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_random_draws_have_no_ties(tmp_path, dtype):
    case = _case(tmp_path, RANDOM, dtype=dtype)
    masks, n_windows = tie_masks(case.model, case.arrays())
    assert n_windows == 0 and masks == {}


def test_finite_differences_at_ties_are_inconclusive_not_failed(tmp_path, builtin):
    case = _case(tmp_path, INT_IMAGE, act="relu", stride="")
    r = run_case(case, [builtin["manual"], builtin["fd"]])
    assert r.passed, [c.message() for c in r.failures()]
    assert r.ties["windows"] > 0


def test_the_reports_count_the_ties(tmp_path):
    from conftest import run_cli

    (tmp_path / "c.toml").write_text(INT_IMAGE.format(act="relu", stride=""))
    p = run_cli("run", tmp_path / "c.toml", "--backends", "manual,torch", "--out", tmp_path / "out")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "max-pool windows tied" in p.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Max-pool ties:" in report and "not compared" in report
