"""The two studies of the nudge: slopes as theory says, costs as theory says, files written."""

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from harness.studies import cost_sweep, epsilon_sweep, fit_slopes


@pytest.fixture(scope="module")
def slopes():
    return fit_slopes(epsilon_sweep()).set_index(["method", "dtype"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method, expected", [("forward", 1), ("central", 2)])
def test_truncation_slopes_match_theory(slopes, method, expected, dtype):
    s = slopes.loc[(method, dtype)]
    assert s.fit_points >= 3
    assert abs(s.slope - expected) < 0.3, s


def test_best_steps_and_errors_are_where_theory_puts_them(slopes):
    eps = np.finfo(np.float64).eps
    fwd, cen = slopes.loc[("forward", "float64")], slopes.loc[("central", "float64")]
    assert 0.1 * eps ** 0.5 < fwd.best_eps < 10 * eps ** 0.5  # √ε ≈ 1.5e-8
    assert 0.1 * eps ** (1 / 3) < cen.best_eps < 10 * eps ** (1 / 3)  # ∛ε ≈ 6e-6
    assert cen.best_error < fwd.best_error / 10
    assert slopes.loc[("complex", "float64")].best_error < 1e-14  # no subtractive cancellation
    # the nudge itself: about 1e-3 relative error, in both dtypes
    assert 1e-4 < fwd.error_at_1e_3 < 1e-2 and 1e-4 < slopes.loc[("forward", "float32")].error_at_1e_3 < 1e-2


def test_the_slope_fit_measures_what_it_is_given():
    eps = np.logspace(0, -12, 49)
    synthetic = pd.DataFrame({"method": "central", "dtype": "float64", "eps": eps,
                              "error": 0.5 * eps ** 3 + 1e-14 / eps})
    (row,) = fit_slopes(synthetic).itertuples()
    assert abs(row.slope - 3) < 0.05


def test_cost_grows_with_P_for_finite_differences_only(builtin):
    frame = cost_sweep(widths=(6, 20, 64), repeats=3,
                       backends={n: builtin[n] for n in ("manual", "torch")})
    fd = frame[frame.method == "finite differences"].set_index("P")["forward_passes"]
    manual = frame[frame.method == "manual"].set_index("P")["forward_passes"]
    Ps = sorted(fd.index)
    assert fd[Ps[-1]] / fd[Ps[0]] > 10  # O(P) forward passes
    assert all(0.5 < manual[P] < 10 for P in Ps)  # a small constant
    assert not frame.extrapolated.any()


def test_cli_writes_studies_and_the_answer_joins_the_report(tmp_path):
    out = tmp_path / "out"
    assert run_cli("study", "epsilon", "--out", out).returncode == 0
    assert run_cli("study", "cost", "--out", out).returncode == 0
    for name in ("study-epsilon.csv", "study-epsilon.png", "study-epsilon.md", "study-cost.csv",
                 "study-cost.png", "study-cost.md", "nudge.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "study-epsilon.png").read_bytes()[:4] == b"\x89PNG"
    cost = pd.read_csv(out / "study-cost.csv")
    assert cost.P.min() < 1e3 and cost.P.max() > 5e5
    assert cost[cost.P == cost.P.max()].set_index("method").loc["finite differences", "extrapolated"]
    case = tmp_path / "c.toml"
    case.write_text('[[case]]\nname = "c"\nlayers = [3, 2]\nactivations = ["softmax"]\n'
                    'loss = "cross_entropy"\nbatch = 2\n')
    assert run_cli("run", case, "--backends", "manual,fd", "--out", out).returncode == 0
    report = (out / "report.md").read_text()
    assert "## Is the nudge used in practice?" in report and "O(P) forward passes" in report
