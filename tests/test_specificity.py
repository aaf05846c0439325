"""Specificity: correct backends never disagree on random correct networks (a sample of the
500-case sweep in cases/sweeps/specificity.toml: depth 1-5, widths 1-64, batch 1-128, every
activation and loss, both dtypes, input scales 1e-3 to 1e2)."""

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


def test_no_false_alarms_on_a_sample_of_the_sweep(builtin):
    cases = load_file(SWEEP)
    assert len(cases) == 500
    sample = cases[::8]  # 63 cases spread over the whole sweep
    result = _run_without_disagreement(sample, [builtin[n] for n in ("manual", "manual_columns", "torch", "jax")])
    for dtype in ("float32", "float64"):
        used = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        print(f"{dtype}: worst element uses {100 * used:.3g}% of its tolerance (margin {1 / used:.0f}×)")
        assert used < 1 / 3


EXTREME = ROOT / "cases" / "sweeps" / "extreme_scales.toml"


def test_no_false_alarms_at_extreme_input_scales(builtin):
    """Inputs of scale 1e3 to 1e10 (MAX_INPUT_SCALE): logits and pre-activations of 1e10, where
    the round-off of a finite difference is ε·|z| of the values the nudge moves, not ε·|J|.
    Every eighth case of cases/sweeps/extreme_scales.toml (every loss and activation, both
    dtypes) with manual, torch, jax and fd: no disagreement, fd pairs within a tenth of their
    tolerance (under the old step rule this sample had fd disagreements in most float64 cases)."""
    from harness.cases import MAX_INPUT_SCALE

    cases = load_file(EXTREME)
    assert len(cases) == 200
    sample = cases[::8]  # 25 cases spread over the whole sweep
    scales = [c.input_scale for c in sample]
    assert min(scales) < 1e4 and max(scales) > 1e9 and max(scales) <= MAX_INPUT_SCALE
    assert {c.model.loss for c in sample} == {"cross_entropy", "binary_cross_entropy", "half_sse"}
    assert {c.model.dtype for c in sample} == {"float32", "float64"}
    result = _run_without_disagreement(sample, [builtin[n] for n in ("manual", "torch", "jax", "fd")])
    for dtype in ("float32", "float64"):
        every = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        fd = max(c.tol_used for c in result.comparisons if c.dtype == dtype and "fd" in c.pair)
        print(f"extreme {dtype}: worst element uses {100 * every:.3g}% of its tolerance (margin "
              f"{1 / every:.0f}×); fd pairs {100 * fd:.3g}% (margin {1 / fd:.0f}×)")
        assert every < 1 / 3 and fd < 1 / 10
