"""Each finite-difference variant against the analytic gradient; the directional check catches
wrong gradients; complex step is exact to rounding and says where it does not apply."""

import numpy as np
import pytest

from harness.backends import get
from harness.cases import Case
from harness.model import Model
from harness.runner import run_case

from mutants import ForgetsGPrime

SMOOTH = [
    Case("tanh", Model((5, 7, 6, 4), ("tanh", "tanh", "softmax"), "cross_entropy", "float64"), 8, 1),
    Case("softplus-bce", Model((4, 6, 3), ("softplus", "sigmoid"), "binary_cross_entropy", "float64"), 5, 2),
    Case("elu-sse-f32", Model((3, 5, 2), ("elu", "identity"), "half_sse", "float32"), 4, 3),
]
VARIANTS = ["fd", "fd-forward", "nudge", "fd-richardson", "fd-complex", "fd-directional"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", SMOOTH, ids=lambda c: c.name)
def test_variant_agrees_with_backprop(variant, case, builtin):
    result = run_case(case, [builtin["manual"], builtin["torch"], get(variant)])
    assert not result.errors, [e.message for e in result.errors]
    assert result.passed, [c.message() for c in result.failures()]
    assert variant in result.notes  # the report says which method and strategy ran


def _gradient_error(variant, case, builtin):
    """norm-rel error of dW1 from this variant against manual backprop, in float64."""
    exact = builtin["manual"].gradients(case.model, case.arrays())["dW1"]
    est = get(variant).gradients(case.model, case.arrays())["dW1"]
    return np.linalg.norm(est - exact) / np.linalg.norm(exact)


def test_accuracy_ranks_as_the_theory_says(builtin):
    """nudge (h=1e-3) ≫ forward (√ε) ≫ central (ε^⅓) ≳ Richardson; complex step ~ ε."""
    case = SMOOTH[0]
    err = {v: _gradient_error(v, case, builtin) for v in ("nudge", "fd-forward", "fd", "fd-richardson", "fd-complex")}
    assert 1e-5 < err["nudge"] < 1e-2
    assert err["fd-forward"] < err["nudge"] / 100
    assert err["fd"] < err["fd-forward"] / 10
    assert err["fd-richardson"] < 1e-9
    assert err["fd-complex"] < 1e-14


def test_complex_step_is_not_applicable_through_erf(builtin):
    case = Case("gelu", Model((3, 4, 2), ("gelu", "softmax"), "cross_entropy", "float64"), 3, 1)
    result = run_case(case, [builtin["manual"], get("fd-complex")])
    assert not result.errors  # a note, not an error...
    assert "not applicable" in result.notes["fd-complex"] and "erf" in result.notes["fd-complex"]
    # ...and not agreement either: with nothing compared the case is not passed (verdict.py)
    assert result.state == "nothing compared" and not result.passed
    with_torch = run_case(case, [builtin["manual"], builtin["torch"], get("fd-complex")])
    assert with_torch.state == "agree"


@pytest.mark.parametrize("variant", ["fd-directional", "nudge"])
def test_a_wrong_gradient_is_caught(variant, builtin):
    case = Case("square", Model((4, 4, 4, 4), ("tanh", "tanh", "softmax"), "cross_entropy", "float64"), 6, 5)
    result = run_case(case, [get(variant), ForgetsGPrime()])
    bad = {c.quantity for c in result.failures()}
    if variant == "fd-directional":
        assert bad == {"Jv", "dz2", "da1", "dz1"}  # dW, db are not measured one by one
    else:
        assert {"dW1", "db1", "dW2", "db2"} <= bad


def test_directional_is_the_default_on_large_cases(builtin):
    case = Case("wide", Model((40, 60, 10), ("relu", "softmax"), "cross_entropy", "float64"), 16, 7)
    assert case.model.n_params > 2000
    result = run_case(case, [builtin["manual"], builtin["torch"], get("fd")])
    assert result.passed, [c.message() for c in result.failures()]
    assert "directional strategy: vᵀ∇J for 8 seeded directions" in result.notes["fd"]
    jv = [c for c in result.comparisons if c.quantity == "Jv"]
    assert {c.pair for c in jv} == {"manual-vs-torch", "manual-vs-fd", "torch-vs-fd"}
    assert all(c.n_checked == 8 for c in jv)
    dW = [c for c in result.comparisons if c.quantity == "dW1" and "fd" in c.pair]
    assert all(c.n_checked == 0 for c in dW)  # shown as n/c, not as a pass on nothing


@pytest.mark.parametrize("variant", ["nudge", "fd-forward", "fd-richardson", "fd-complex"])
def test_variants_keep_their_method_on_large_cases(variant, builtin):
    """Above 2,000 parameters only the central fd goes directional; the others sample coordinates
    with their own quotient, so a variant is always what its name says."""
    case = Case("wide", Model((40, 60, 10), ("tanh", "softmax"), "cross_entropy", "float64"), 8, 7)
    result = run_case(case, [builtin["manual"], get(variant)])
    assert result.passed, [c.message() for c in result.failures()][:3]
    assert "directional" not in result.notes[variant]
    assert not any(c.quantity == "Jv" for c in result.comparisons)


def test_directional_is_central_only():
    from harness.backends.fd import FiniteDifferenceBackend

    with pytest.raises(ValueError, match="central"):
        FiniteDifferenceBackend(method="complex", strategy="directional")
