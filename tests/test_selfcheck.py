"""The sensitivity self-check: 100% of eligible mutants caught, and a correct backend is not."""

import numpy as np

from conftest import run_cli
from harness.cases import Case
from harness.model import Model
from harness.mutants import NETWORK_MUTANTS, MUTANTS, Mutant, NetworkMutant
from harness.network import Network
from harness.selfcheck import CASES


def test_every_mutant_is_caught_where_detectable(tmp_path):
    """`python -m harness selfcheck` (the CLI, end to end): 100%, every mutant ran on every case
    where it can show, in both forms; its CSV holds one row per (mutant, case)."""
    import pandas as pd

    proc = run_cli("selfcheck", "--no-layer-files", "--out", tmp_path)  # those: tests/test_userlayers.py
    assert proc.returncode == 0, proc.stdout[-1500:]
    assert "Kill rate: 100%" in proc.stdout and (tmp_path / "selfcheck.md").exists()
    rows = pd.read_csv(tmp_path / "selfcheck.csv")
    assert len(rows) == len(MUTANTS) * len(CASES)
    ran = rows[rows["detected"].notna()]
    assert ran["detected"].astype(bool).all(), ran[~ran["detected"].astype(bool)]
    assert set(ran["mutant"]) == {m.name for m in MUTANTS}  # every mutant really ran somewhere
    # Caught by its values or by the output contract (BackendOutputError: a wrong shape), not
    # because it crashed: a mutant that raises anything else is a bug in the mutant.
    # (The MLP mutants W-not-transposed and off-by-one-layer fail numpy's shape check on a
    # non-square network: there the wrong shapes are the mistake showing.)
    network = ran["mutant"].isin({m.name for m in NETWORK_MUTANTS})
    crashed = ran[network & ran["by"].str.startswith("contract:") & ~ran["by"].str.contains("BackendOutputError")]
    assert crashed.empty, crashed[["mutant", "case", "by"]].to_string()
    assert {type(c.model) for c in CASES} == {Model, Network}


def test_the_unmutated_backend_is_not_detected(builtin, monkeypatch):
    """Control: the same machinery with no mistake switched on reports nothing, on every case
    of its form (MLP or catalog network) and is excluded from the other form's."""
    import harness.selfcheck as sc

    Correct = type("Correct", (Mutant,), {"name": "correct", "mistake": "none"})
    CorrectNetwork = type("CorrectNetwork", (NetworkMutant,), {"name": "correct-network", "mistake": "none"})
    monkeypatch.setattr(sc, "MUTANTS", [Correct, CorrectNetwork])
    outcomes = sc.run_selfcheck([builtin[n] for n in ("manual", "torch", "jax", "fd")])
    ran = {(o.mutant, o.case) for o in outcomes if o.detected is not None}
    assert ran == {("correct", c.name) for c in CASES if isinstance(c.model, Model)} | \
        {("correct-network", c.name) for c in CASES if isinstance(c.model, Network)}
    assert all(o.detected is False for o in outcomes if o.detected is not None)


DEEP = [Case("tanh-L5-f32", Model((5,) * 6, ("tanh",) * 4 + ("softmax",), "half_sse", "float32"), 4, 0),
        Case("tanh-L10-f64", Model((5,) * 11, ("tanh",) * 9 + ("softmax",), "half_sse", "float64"), 4, 0)]


def test_the_rounding_floor_never_hides_a_mutant_on_deep_networks(builtin):
    """The floor is an allowance for rounding only: on deep networks, where a bound of bounds
    would grow geometrically, a layer scaled by 2, one element off by 1e-5 (float64) and a
    missing g' in layer 1 are still caught, and the floor stays far below the errors."""
    from harness.mutants import ForgetsGPrimeInLayer1, PerturbedElement, ScaledLayer
    from harness.rounding import rounding_floor
    from harness.runner import run_case

    for case in DEEP:
        for mutant in (ScaledLayer, ForgetsGPrimeInLayer1) + ((PerturbedElement,) if case.model.dtype == "float64" else ()):
            r = run_case(case, [builtin["manual"], builtin["torch"], mutant()])
            assert any(mutant.name in pair for pair in r.first_disagreements()), (case.name, mutant.name)
        floor = rounding_floor(case, case.arrays())["dW1"]
        dW1 = builtin["manual"].gradients(case.model, case.arrays())["dW1"]
        assert np.max(floor) < 1e-3 * np.max(np.abs(dW1))


def test_a_replayed_reference_is_the_backend_itself_to_the_runner(builtin):
    """run_selfcheck runs each reference backend once per case and replays its result to every
    mutant: each run gets a fresh dict with the backend's notes, fd keeps its own tolerance row,
    and a backend that raised raises again (the runner records it in every run)."""
    from harness.runner import run_case
    from harness.selfcheck import NETWORK_CASES, _Replay, trusted

    case = NETWORK_CASES[0]
    fd = _Replay(builtin["fd"], case)
    first, second = fd.gradients(case.model, None), fd.gradients(case.model, None)
    assert first is not second and first.keys() == second.keys() and first.notes
    assert trusted([fd, _Replay(builtin["manual"], case)]) == {"fd"}

    class Broken:
        name, kind = "broken", "analytic"

        def gradients(self, model, arrays):
            raise RuntimeError("no gradients today")

    broken = _Replay(Broken(), case)
    for _ in range(2):
        r = run_case(case, [broken, _Replay(builtin["manual"], case)])
        assert [e.backend for e in r.errors] == ["broken"] and "no gradients today" in r.errors[0].message
    r = run_case(case, [fd, _Replay(builtin["manual"], case)], trust_kinds=trusted([fd]))
    assert r.first_disagreements() == {}  # fd checked with its own row, as when run directly
