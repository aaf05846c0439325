"""The finite-difference backend: step rule, precision, sampling."""

import numpy as np
import pytest

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
    assert "db1 3, dz1 3" in raw.notes and "central differences" in raw.notes
    assert np.ma.getmaskarray(raw["db1"]).all() and not np.ma.getmaskarray(raw["dW1"]).any()
    # Unmasked, the quotient at a crossed coordinate is far from the (g'(0) = 0) gradient:
    manual = builtin["manual"].gradients(case.model, case.arrays())
    assert np.abs(np.ma.getdata(raw["db1"]) - manual["db1"]).max() > 0.1
    result = run_case(case, list(builtin.values()))
    assert result.passed and "inconclusive" in result.notes["fd"]
    assert {c.n_checked for c in result.comparisons if c.quantity == "db1" and "fd" in c.pair} == {0}


# --------------------------------------------------------------------------- extreme input scales
# Inside the documented range (MAX_INPUT_SCALE = 1e10) logits and pre-activations reach 1e10.
# Each value a nudge moves is then rounded to ε·|z| ≈ 2e-6, whatever |J| is, and the old step
# (ε·max(1, |J|))^(1/3) left a quotient error of ε·|z|/u: 4× to 18,000× the fd tolerance on
# softmax + cross-entropy from input scale 1e5 up (issue: "fd false alarms at extreme scales").

EXTREME_MODELS = [
    Model((6, 5), ("softmax",), "cross_entropy", "float64"),
    Model((6, 10, 5), ("leaky_relu", "softmax"), "cross_entropy", "float64"),
    Model((4, 8, 8, 3), ("elu", "gelu", "softmax"), "cross_entropy", "float64"),
]
EXTREME = [Case(f"{'-'.join(m.activations)}-{scale:g}", m, 16, seed, input_scale=scale)
           for m in EXTREME_MODELS for seed, scale in ((1, 1e5), (2, 1e7), (3, 1e10))]


def test_noise_scale_is_the_size_of_the_values_moved_not_J():
    """Two logits of ±1e10 on a well-classified example: J = 0 exactly, yet each logit a nudge
    moves is rounded to ε·1e10. N, which sets the step, is that size."""
    from harness.cases import load_file

    (case,) = load_file_text("""
[[case]]
name = "confident"
layers = [2, 2]
activations = ["softmax"]
loss = "cross_entropy"
[case.values]
X  = [[1e10, 0.0]]
y  = [0]
W1 = [[1.0, -1.0], [0.5, 0.5]]
b1 = [[0.0, 0.0]]
""", load_file)
    fd = FiniteDifferenceBackend()
    out = fd.gradients(case.model, case.arrays())
    assert float(out["J"]) == 0.0
    np.testing.assert_allclose(fd._noise[("z", 1)], [1e10])  # |x||W| + |b| of the logits, not 1 + |J|


@pytest.mark.parametrize("case", EXTREME, ids=lambda c: c.name)
def test_extreme_scales_agree_with_a_wide_margin(case, builtin):
    result = run_case(case, [builtin["manual"], builtin["torch"], FiniteDifferenceBackend()])
    assert result.passed, [c.message() for c in result.failures()]
    worst = max(c.tol_used for c in result.comparisons if "fd" in c.pair)
    assert worst < 0.03, worst  # measured ≤ 0.4%; the old rule was 4× to 18,000× over


class _OneElementOff:
    """Manual backprop with the largest |dW^[l]| element off by a relative ``rel``."""

    kind = "analytic"

    def __init__(self, quantity: str, rel: float) -> None:
        from harness.backends.manual import ManualBackend

        self.name, self.quantity, self.rel, self.inner = "one-off", quantity, rel, ManualBackend()

    def gradients(self, model, arrays):
        out = dict(self.inner.gradients(model, arrays))
        q = out[self.quantity].copy()
        self.index = np.unravel_index(np.argmax(np.abs(q)), q.shape)
        q[self.index] *= 1 + self.rel
        out[self.quantity] = q
        return out


@pytest.mark.parametrize("dtype, rel", [("float64", 1e-6), ("float32", 1e-3)])
@pytest.mark.parametrize("scale", [1e5, 1e10])
def test_fd_still_flags_one_element_off_at_extreme_scales(dtype, rel, scale, builtin):
    """The resolving power survives the fix: fd's own error at these scales is a few hundredths
    of its tolerance, so one element off by 10× the row's rtol (1e-7 in float64, 1e-4 in
    float32) is flagged, alone and where it is, by a whole run (tolerance table, then the
    rounding floor of rounding.py). The hidden layer here; at the output the floor takes
    ∂ŷ/∂z ≈ ŷ (1 for the top class of a saturated softmax) times the logits' terms and clears
    such errors at these scales: the next test checks every layer against fd's own row."""
    for quantity in ("dW1",):
        model = Model((6, 10, 5), ("leaky_relu", "softmax"), "cross_entropy", dtype)
        case = Case(f"off-{scale:g}", model, 16, 3, input_scale=scale)
        wrong = _OneElementOff(quantity, rel)
        result = run_case(case, [FiniteDifferenceBackend(), wrong, builtin["manual"]])
        bad = result.failures()
        assert [(c.quantity, c.pair) for c in bad] == [(quantity, "fd-vs-one-off"), (quantity, "one-off-vs-manual")]
        assert bad[0].n_off == 1 and bad[0].index == tuple(int(i) for i in wrong.index)
        assert bad[0].tol_used > 3  # flagged clearly, not by a hair
        fd_vs_manual = max(c.tol_used for c in result.comparisons if c.pair == "fd-vs-manual")
        assert fd_vs_manual < 0.05  # while the correct gradient sits far inside the tolerance


@pytest.mark.parametrize("dtype, rel", [("float64", 1e-6), ("float32", 1e-3)])
@pytest.mark.parametrize("quantity", ["dW1", "dW2", "dW3"])
def test_fd_resolves_10x_its_rtol_at_1e10_in_every_layer(quantity, dtype, rel, builtin):
    """fd's own check, against its tolerance row, through elu and gelu layers and the softmax
    output at inputs of 1e10. (A whole run then adds the rounding floor of rounding.py, which
    at z ~ 1e10 bounds |g''| by 1 and ∂ŷ/∂z by ŷ and clears errors up to ~1e-4 in float64 and
    beyond 10% in float32: there the floor, not fd, sets the run's resolving power.)"""
    from harness.compare import compare
    from harness.tolerances import lookup

    model = Model((4, 8, 8, 3), ("elu", "gelu", "softmax"), "cross_entropy", dtype)
    case = Case("smooth-1e10", model, 16, 3, input_scale=1e10)
    fd = FiniteDifferenceBackend().gradients(model, case.arrays())
    wrong = _OneElementOff(quantity, rel)
    off = wrong.gradients(model, case.arrays())
    right = builtin["manual"].gradients(model, case.arrays())
    row, J = lookup(dtype, "finite_difference"), abs(float(fd["J"]))
    flagged = compare("c", quantity, "fd", fd[quantity], "one-off", off[quantity], "finite_difference",
                      dtype, row, J)
    assert not flagged.passed and flagged.n_off == 1 and flagged.index == tuple(int(i) for i in wrong.index)
    assert flagged.tol_used > 3
    clean = compare("c", quantity, "fd", fd[quantity], "manual", right[quantity], "finite_difference",
                    dtype, row, J)
    assert clean.passed and clean.tol_used < 0.05


TIE = """
[[case]]
name = "near-tie-at-1e10"
layers = [2, 3]
activations = ["softmax"]
loss = "cross_entropy"
[case.values]
X  = [[1e10, 0.5], [-3e9, 2.0]]
y  = [1, 0]
W1 = [[1.0, 1.0, -1.0], [0.0, 2.0, 0.3]]
b1 = [[0.0, -0.5, 0.0]]
"""


def test_a_tie_of_logits_of_1e10_is_neither_averaged_nor_a_false_alarm(builtin):
    """Example 0 has logits 1e10 and 1e10 + 0.5: the loss bends on a scale of 1 where values are
    rounded to 2e-6. A step of ε^(1/3)·1e10 ≈ 6e4 would jump the tie, and its quotient and the
    check at twice the step would agree on the mean of the two one-sided slopes (30% off for
    dz1): the step must not cross a bend (which logit is largest). The parameters through that
    example cannot be differenced better than (ε·1e10)^(2/3) ≈ 2e-4 by any step: fd reports
    those coordinates inconclusive, and checks the rest."""
    from harness.cases import load_file

    (case,) = load_file_text(TIE, load_file)
    fd = FiniteDifferenceBackend()
    raw = fd.gradients(case.model, case.arrays())
    manual = builtin["manual"].gradients(case.model, case.arrays())
    np.testing.assert_allclose(raw["dz1"], manual["dz1"], rtol=1e-4, atol=0)
    np.testing.assert_allclose(raw["db1"], manual["db1"], rtol=1e-4, atol=0)
    assert fd.unresolved == {"dW1": 2, "db1": 0, "dz1": 0} and fd.kink_crossings["dW1"] == 0
    assert np.ma.getmaskarray(raw["dW1"]).sum() == 2 and "bends within the round-off" in raw.notes
    result = run_case(case, [builtin["manual"], builtin["torch"], fd])
    assert result.passed, [c.message() for c in result.failures()]
    assert {c.n_checked for c in result.comparisons if c.quantity == "dW1" and "fd" in c.pair} == {4}


def test_directional_step_follows_the_size_of_the_inputs(builtin):
    """Above 2,000 parameters fd measures vᵀ∇J; its old fixed step ε^(1/3) moved z by ~1e-3 on
    inputs of 3.5e3 and the truncation was 6× its tolerance. The direction's own movement of z
    now plays the part |input| plays for one weight."""
    case = Case("wide-3.5e3", Model((49, 43, 48), ("sigmoid", "softmax"), "cross_entropy", "float64"),
                13, 641383946, input_scale=3503.043243762948)
    assert case.model.n_params > 2000
    result = run_case(case, [builtin["manual"], FiniteDifferenceBackend()])
    assert result.passed, [c.message() for c in result.failures()]
    (jv,) = [c for c in result.comparisons if c.quantity == "Jv"]
    assert jv.n_checked == 8 and jv.tol_used < 0.2


def load_file_text(text, load_file):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "case.toml"
        path.write_text(text)
        return load_file(path)
