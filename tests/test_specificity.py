"""Specificity: correct backends never disagree on random correct networks (a sample of the
500-case sweep in cases/sweeps/specificity.toml: depth 1-5, widths 1-64, batch 1-128, every
activation and loss, both dtypes, input scales 1e-3 to 1e2). The whole sweep is a command:
python -m harness run cases/sweeps/specificity.toml --backends manual,manual_columns,torch,jax"""

from pathlib import Path

from harness.cases import load_file
from harness.runner import run

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "cases" / "sweeps" / "specificity.toml"


def _run_without_disagreement(cases, backends):
    """Run the cases; assert no backend error and no comparison out of tolerance."""
    result = run(cases, backends)
    assert not result.errors, [e.message for e in result.errors]
    bad = [c.message() for c in result.comparisons if not c.passed]
    assert not bad, bad[:5]
    return result


def _assert_covers_every_activation_and_loss_in_both_dtypes(sample):
    from harness.activations import ALL_NAMES
    from harness.losses import LOSSES

    dtypes = ("float32", "float64")
    assert {(a, c.model.dtype) for c in sample for a in c.model.activations} == \
        {(a, d) for a in ALL_NAMES for d in dtypes}
    assert {(c.model.loss, c.model.dtype) for c in sample} == {(l, d) for l in LOSSES for d in dtypes}


def test_no_false_alarms_on_a_sample_of_the_sweep(builtin):
    cases = load_file(SWEEP)
    assert len(cases) == 500
    # 28 cases spread over the whole sweep (one JAX compile each, most of the time): every
    # activation and every loss in both dtypes, depth 1 to 5, width 1 and 64, batch 3 to 127,
    # input scales 4.5e-3 to 62, and spec-432, the tightest float32 margin of the former
    # every-eighth sample (22% of its tolerance).
    sample = cases[::18]
    _assert_covers_every_activation_and_loss_in_both_dtypes(sample)
    assert {c.model.L for c in sample} == {1, 2, 3, 4, 5}
    assert {1, 64} <= {n for c in sample for n in c.model.layers}
    assert "spec-432" in {c.name for c in sample}
    result = _run_without_disagreement(sample, [builtin[n] for n in ("manual", "manual_columns", "torch", "jax")])
    for dtype in ("float32", "float64"):
        used = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        print(f"{dtype}: worst element uses {100 * used:.3g}% of its tolerance (margin {1 / used:.0f}×)")
        assert used < 1 / 3


EXTREME = ROOT / "cases" / "sweeps" / "extreme_scales.toml"


def test_no_false_alarms_at_extreme_input_scales(builtin):
    """Inputs of scale 1e3 to 1e10 (MAX_INPUT_SCALE): logits and pre-activations of 1e10, where
    the round-off of a finite difference is ε·|z| of the values the nudge moves, not ε·|J|.
    Every fifteenth case of cases/sweeps/extreme_scales.toml (every loss and activation, seven
    cases of each dtype) with manual, torch, jax and fd: no disagreement, fd pairs within a
    tenth of their tolerance (under the old step rule every eighth case had fd disagreements
    in most float64 cases)."""
    from harness.activations import ALL_NAMES
    from harness.cases import MAX_INPUT_SCALE

    cases = load_file(EXTREME)
    assert len(cases) == 200
    sample = cases[::15]  # 14 cases spread over the whole sweep
    scales = [c.input_scale for c in sample]
    assert min(scales) < 1e4 and max(scales) > 1e9 and max(scales) <= MAX_INPUT_SCALE
    assert {c.model.loss for c in sample} == {"cross_entropy", "binary_cross_entropy", "half_sse"}
    assert {a for c in sample for a in c.model.activations} == set(ALL_NAMES)
    assert sorted(c.model.dtype for c in sample) == ["float32"] * 7 + ["float64"] * 7
    result = _run_without_disagreement(sample, [builtin[n] for n in ("manual", "torch", "jax", "fd")])
    for dtype in ("float32", "float64"):
        every = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        fd = max(c.tol_used for c in result.comparisons if c.dtype == dtype and "fd" in c.pair)
        print(f"extreme {dtype}: worst element uses {100 * every:.3g}% of its tolerance (margin "
              f"{1 / every:.0f}×); fd pairs {100 * fd:.3g}% (margin {1 / fd:.0f}×)")
        assert every < 1 / 3 and fd < 1 / 10
