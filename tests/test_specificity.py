"""Specificity: correct backends never disagree on random correct networks (a sample of the
500-case sweep in cases/sweeps/specificity.toml: depth 1-5, widths 1-64, batch 1-128, every
activation and loss, both dtypes, input scales 1e-3 to 1e2)."""

from pathlib import Path

from harness.cases import load_file
from harness.runner import run

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "cases" / "sweeps" / "specificity.toml"


def test_no_false_alarms_on_a_sample_of_the_sweep(builtin):
    cases = load_file(SWEEP)
    assert len(cases) == 500
    sample = cases[::8]  # 63 cases spread over the whole sweep
    result = run(sample, [builtin[n] for n in ("manual", "manual_columns", "torch", "jax")])
    assert not result.errors, [e.message for e in result.errors]
    bad = [c.message() for c in result.comparisons if not c.passed]
    assert not bad, bad[:5]
    for dtype in ("float32", "float64"):
        used = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        print(f"{dtype}: worst element uses {100 * used:.3g}% of its tolerance (margin {1 / used:.0f}×)")
        assert used < 1 / 3
