"""The catalog network mutants: each is caught by torch and JAX on every network case of the
self-check where it can show, in both dtypes; a correct network backward is not; each mistake
changes only what lies below it; and ``excluded`` says why a mutant cannot show on a case.
(The full self-check, with manual and fd too, is tests/test_selfcheck.py.)"""

import numpy as np
import pytest

from harness.cases import Case
from harness.mutants import (MUTANTS, NETWORK_MUTANTS, BatchnormStatsConstant, DropoutOtherMask,
                             DropoutUnscaled, L2HalfLambda, L2TwiceLambda, L2WithoutMean,
                             LayernormOverBatch, NetworkMutant)
from harness.network import Network, backprop
from harness.runner import run_case
from harness.selfcheck import CASES, NETWORK_CASES, build_network, excluded

MLP_CASES = [c for c in CASES if not isinstance(c.model, Network)]


def _disagrees_with(case, builtin, mutant, references=("torch", "jax")):
    """The references that disagree with the mutant on the case (a contract error counts)."""
    r = run_case(case, [*(builtin[n] for n in references), mutant])
    if any(e.backend == mutant.name for e in r.errors):
        return set(references)
    assert not r.errors, r.errors
    return {c.a if c.b == mutant.name else c.b for c in r.first_disagreements().values()
            if mutant.name in (c.a, c.b)}


@pytest.mark.parametrize("mutant", NETWORK_MUTANTS, ids=lambda m: m.name)
def test_each_network_mutant_is_caught_by_torch_and_jax(mutant, builtin):
    ran = []
    for case in NETWORK_CASES:
        if excluded(mutant, case):
            continue
        assert _disagrees_with(case, builtin, mutant()) == {"torch", "jax"}, case.name
        ran.append(case.model.dtype)
    assert set(ran) == {"float64", "float32"}, ran


def test_a_correct_network_backward_is_not_flagged(builtin):
    """Control: the mutant machinery with no mistake agrees with every backend, fd included."""
    correct = type("Correct", (NetworkMutant,), {"name": "correct"})()
    for case in NETWORK_CASES:
        assert excluded(type(correct), case) is None
        assert _disagrees_with(case, builtin, correct, ("manual", "torch", "jax", "fd")) == set(), case.name


# ------------------------------------------------------------------- where each mistake is

CASE = NETWORK_CASES[0]  # float64, dense tanh, dropout, dense, batchnorm, sigmoid, dense tanh, layernorm, dense


def _changed(mutant, case=CASE):
    """The quantities the mutant gives differently from the correct backprop, and both results."""
    arrays = case.arrays()
    right, wrong = backprop(case.model, arrays), mutant().gradients(case.model, arrays)
    assert wrong.keys() == right.keys()
    return {q for q in right if not np.array_equal(right[q], wrong[q])}, right, wrong, arrays


def _index(case, kind):
    return next(s.index for s in case.model.network if s.kind == kind)


def _below(q, i):
    """A backward quantity of a layer under layer i: da{i-1} and everything computed after it."""
    return q.startswith("d") and Network.layer_of(q) < i


@pytest.mark.parametrize("mutant,kind", [(BatchnormStatsConstant, "batchnorm"), (DropoutUnscaled, "dropout"),
                                         (DropoutOtherMask, "dropout")], ids=lambda x: getattr(x, "name", x))
def test_a_backward_mistake_changes_only_what_lies_below_the_layer(mutant, kind):
    i = _index(CASE, kind)
    changed, *_ = _changed(mutant)
    assert f"da{i - 1}" in changed
    assert all(_below(q, i) for q in changed), sorted(changed)


def test_batchnorm_stats_constant_keeps_dgamma_dbeta_and_drops_the_mean_terms():
    i = _index(CASE, "batchnorm")
    changed, right, wrong, _ = _changed(BatchnormStatsConstant)
    assert not {f"dgamma{i}", f"dbeta{i}"} & changed
    # dx = dy∘γ/σ: its column sums are not 0, while the right dx sums to 0 over the batch
    # (batch norm's output does not move when its whole input column shifts).
    assert np.allclose(right[f"da{i - 1}"].sum(axis=0), 0, atol=1e-12)
    assert not np.allclose(wrong[f"da{i - 1}"].sum(axis=0), 0, atol=1e-6)


def test_layernorm_over_batch_changes_the_forward_from_the_layer_up():
    i = _index(CASE, "layernorm")
    changed, *_ = _changed(LayernormOverBatch)
    assert {"J", f"a{i}"} <= changed
    assert not {q for q in changed if q[0] in "za" and int(q[1:]) < i}, sorted(changed)


@pytest.mark.parametrize("mutant,k", [(L2TwiceLambda, 2.0), (L2HalfLambda, 0.5)], ids=["2λW", "λW/2"])
def test_l2_mutants_change_dW_by_the_wrong_factor_only(mutant, k):
    net = CASE.model  # l2_form half: the right gradient is λW
    changed, right, wrong, arrays = _changed(mutant)
    assert changed == {f"d{key}" for key in net.regularised()}
    for key in net.regularised():
        np.testing.assert_allclose(wrong[f"d{key}"] - right[f"d{key}"], (k - 1) * net.l2 * arrays[key],
                                   rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------------------- excluded


def test_mlp_and_network_mutants_are_excluded_from_each_others_cases():
    mlp_mutants = [m for m in MUTANTS if m not in NETWORK_MUTANTS]
    for case in NETWORK_CASES:
        for m in mlp_mutants:
            assert "MLP mistake" in excluded(m, case)
    for case in MLP_CASES:
        for m in NETWORK_MUTANTS:
            assert "MLP case" in excluded(m, case)
    with pytest.raises(TypeError, match="MLP"):
        DropoutUnscaled().gradients(MLP_CASES[0].model, MLP_CASES[0].arrays())


def test_network_mutants_are_excluded_where_the_mistake_cannot_show():
    plain = Case("plain", build_network((3,), [{"layer": "dense", "units": 4, "activation": "tanh"},
                                               {"layer": "dense", "units": 2}], "half_sse", "float64"), 4, 0)
    for m in NETWORK_MUTANTS:
        assert excluded(m, plain), m.name  # no batchnorm, dropout or layernorm layer; no L2
    drop = build_network((3,), [{"layer": "dense", "units": 4}, {"layer": "dropout", "rate": 0.0},
                                {"layer": "dense", "units": 2}], "half_sse", "float64")
    assert "rate 0" in excluded(DropoutUnscaled, Case("p0", drop, 4, 0))
    same_rows = Case("same-rows", drop, 4, 0, values={"mask2": np.tile([1.0, 0.0, 1.0, 1.0], (4, 1))})
    assert "rolled" in excluded(DropoutOtherMask, same_rows)
    # l2_form half: λW is the right gradient, the "1/m forgotten" mistake is no mistake there
    assert excluded(L2WithoutMean, NETWORK_CASES[0]) and not excluded(L2WithoutMean, NETWORK_CASES[2])
    for m in NETWORK_MUTANTS:
        assert m.kind == "analytic" and m.mistake and m.name != NetworkMutant.name
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
