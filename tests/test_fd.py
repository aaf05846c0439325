"""The finite-difference backend: step rule, precision, sampling."""

import numpy as np

from harness.backends.fd import H0, FiniteDifferenceBackend
from harness.cases import Case
from harness.model import Model
from harness.runner import run_case


def test_step_is_cube_root_of_float64_epsilon():
    assert H0 == np.finfo(np.float64).eps ** (1 / 3)


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
    fd = FiniteDifferenceBackend(max_coords=300)
    result = run_case(case, [builtin["manual"], fd])
    out = result.outputs["fd"]
    checked = sum(int(np.ma.count(out[q])) for q in ("dW1", "db1", "dW2", "db2"))
    assert checked == 300
    assert all(c.passed for c in result.comparisons)
    assert sum(c.n_checked for c in result.comparisons if c.quantity[:2] in ("dW", "db")) == 300
    # The sample is seeded: the same coordinates every run.
    again = FiniteDifferenceBackend(max_coords=300).gradients(case.model, case.arrays())
    assert all((np.ma.getmaskarray(out[q]) == np.ma.getmaskarray(again[q])).all() for q in ("dW1", "dW2"))


def test_sampled_fd_still_catches_a_wrong_gradient(builtin):
    case = Case("big", Model((30, 40, 10), ("tanh", "softmax"), "cross_entropy", "float64"), 8, 2)
    result = run_case(case, [FiniteDifferenceBackend(max_coords=300)])
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
