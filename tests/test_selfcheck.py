"""The sensitivity self-check: 100% of eligible mutants caught, and a correct backend is not."""

from conftest import run_cli
from harness.mutants import MUTANTS, Mutant
from harness.selfcheck import CASES, run_selfcheck, table


def test_every_mutant_is_caught_where_detectable(builtin):
    outcomes = run_selfcheck([builtin[n] for n in ("manual", "torch", "jax", "fd")])
    _, rate = table(outcomes)
    missed = [o for o in outcomes if o.detected is False]
    assert rate == 1.0, missed
    for m in MUTANTS:  # every mutant really ran somewhere, in both dtypes unless excluded for dtype
        ran = [o for o in outcomes if o.mutant == m.name and o.detected is not None]
        assert ran, m.name
    assert len(outcomes) == len(MUTANTS) * len(CASES)


def test_the_unmutated_backend_is_not_detected(builtin, monkeypatch):
    """Control: the same machinery with no mistake switched on reports nothing."""
    import harness.selfcheck as sc

    Correct = type("Correct", (Mutant,), {"name": "correct", "mistake": "none"})
    monkeypatch.setattr(sc, "MUTANTS", [Correct])
    outcomes = sc.run_selfcheck([builtin[n] for n in ("manual", "torch", "jax", "fd")])
    assert outcomes and all(o.detected is False for o in outcomes)


def test_cli(tmp_path):
    proc = run_cli("selfcheck", "--out", tmp_path)
    assert proc.returncode == 0, proc.stdout[-1500:]
    assert "Kill rate: 100%" in proc.stdout and (tmp_path / "selfcheck.md").exists()
