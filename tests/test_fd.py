"""The finite-difference backend: step rule, precision, sampling."""

import numpy as np

from harness.backends.fd import METHODS, FiniteDifferenceBackend
from harness.cases import Case
from harness.model import Model
from harness.runner import run_case


def test_step_rules():
    fd = FiniteDifferenceBackend()
    fd._eps = np.finfo(np.float64).eps
    theta = np.array([0.5, -4.0])
    np.testing.assert_array_equal(fd._steps(theta), fd._eps ** (1 / 3) * np.array([1.0, 1.0]))
    assert {m: METHODS[m].exponent for m in ("forward", "central", "richardson")} == \
        {"forward": 1 / 2, "central": 1 / 3, "richardson": 1 / 5}
    nudge = FiniteDifferenceBackend(method="forward", step=1e-3)
    np.testing.assert_array_equal(nudge._steps(theta), [1e-3, 1e-3])


def test_float32_case_is_differenced_in_float64():
    """A float32 central difference could not reach 1e-6; this one matches float64 backprop."""
    case = Case("c", Model((4, 6, 3), ("tanh", "softmax"), "cross_entropy", "float32"), 8, 4)
    arrays = case.arrays()
    fd = FiniteDifferenceBackend().gradients(case.model, arrays)
    assert fd["dW1"].dtype == np.float32
    model64 = Model((4, 6, 3), ("tanh", "softmax"), "cross_entropy", "float64")
    from harness.backends.manual import ManualBackend
    exact = ManualBackend().gradients(model64, {k: v.astype(np.float64) if k != "y" else v
                                                for k, v in arrays.items()})
    scale = np.abs(exact["dW1"]).max()
    # fd error ≈ 1e-10 of the scale, then rounded to float32 (ε32 = 1.2e-7 relative).
    assert np.abs(fd["dW1"] - exact["dW1"]).max() < 2e-7 * scale


def test_large_case_is_sampled_and_the_count_reported(builtin):
    case = Case("big", Model((30, 40, 10), ("relu", "softmax"), "cross_entropy", "float64"), 8, 2)
    fd = FiniteDifferenceBackend(max_coords=300, strategy="coordinates")
    result = run_case(case, [builtin["manual"], fd])
    out = result.outputs["fd"]
    counts = {q: int(np.ma.count(out[q])) for q in ("dW1", "db1", "dW2", "db2")}
    assert 290 <= sum(counts.values()) <= 310  # about max_coords
    # Every array gets its floor, so the 10-element db2 beside a 1200-element W1 is fully checked.
    assert counts["db2"] == 10 and min(counts.values()) >= 10
    assert all(c.passed for c in result.comparisons)
    assert {c.quantity: c.n_checked for c in result.comparisons if c.quantity in counts} == counts
    # The sample is seeded: the same coordinates every run.
    again = FiniteDifferenceBackend(max_coords=300, strategy="coordinates").gradients(case.model, case.arrays())
    assert all((np.ma.getmaskarray(out[q]) == np.ma.getmaskarray(again[q])).all() for q in ("dW1", "dW2"))


def test_sampled_fd_still_catches_a_wrong_gradient(builtin):
    case = Case("big", Model((30, 40, 10), ("tanh", "softmax"), "cross_entropy", "float64"), 8, 2)
    result = run_case(case, [FiniteDifferenceBackend(max_coords=300, strategy="coordinates")])
    wrong = {k: v for k, v in builtin["manual"].gradients(case.model, case.arrays()).items()}
    wrong["dW1"] = wrong["dW1"] * 1.001
    from harness.compare import compare
    from harness.tolerances import lookup
    c = compare("big", "dW1", "fd", result.outputs["fd"]["dW1"], "wrong", wrong["dW1"],
                "finite_difference", "float64", lookup("float64", "finite_difference"), 1.0)
    assert not c.passed and 0 < c.n_checked < 1200


def test_large_logits_stay_finite(builtin):
    case = Case("hot", Model((5, 4), ("softmax",), "cross_entropy", "float64"), 6, 1, input_scale=1000.0)
    result = run_case(case, list(builtin.values()))
    assert abs(float(result.outputs["manual"]["J"])) > 100  # the logits really are large
    assert result.passed, [c.message() for c in result.failures()] + [e.message for e in result.errors]


KINK = """
[[case]]
name = "on-the-kink"
layers = [2, 3, 2]
activations = ["relu", "softmax"]
loss = "cross_entropy"
[case.values]
X  = [[0.0, 0.0], [1.0, -0.5]]
y  = [0, 1]
W1 = [[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]
b1 = [[0.0, 0.0, 0.0]]
W2 = [[0.7, -0.8], [0.9, 0.1], [-0.2, 0.3]]
b2 = [[0.0, 0.1]]
"""


def test_nudges_across_a_kink_are_inconclusive_not_failures(tmp_path, builtin):
    """Row 0 of X is zero and b1 = 0, so z1 = 0 exactly there: relu's kink. Nudging b1 moves
    z1 to ±h, and the difference quotient gives ½(g'(0−) + g'(0+)) = 0.5, not g'(0) = 0."""
    from harness.cases import load_file

    path = tmp_path / "kink.toml"
    path.write_text(KINK)
    (case,) = load_file(path)
    fd = FiniteDifferenceBackend()
    raw = fd.gradients(case.model, case.arrays())
    assert fd.kink_crossings == {"dW1": 0, "db1": 3, "dW2": 0, "db2": 0, "dz1": 3, "da1": 0, "dz2": 0}
    assert "db1 3, dz1 3" in raw["_notes"] and "central differences" in raw["_notes"]
    assert np.ma.getmaskarray(raw["db1"]).all() and not np.ma.getmaskarray(raw["dW1"]).any()
    # Unmasked, the quotient at a crossed coordinate is far from the (g'(0) = 0) gradient:
    manual = builtin["manual"].gradients(case.model, case.arrays())
    assert np.abs(np.ma.getdata(raw["db1"]) - manual["db1"]).max() > 0.1
    result = run_case(case, list(builtin.values()))
    assert result.passed and "inconclusive" in result.notes["fd"]
    assert {c.n_checked for c in result.comparisons if c.quantity == "db1" and "fd" in c.pair} == {0}
