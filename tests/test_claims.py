"""Every claim of the MLP derivation as a test, in both dtypes; and wrong claims are refuted.
(The catalog layers' claims: tests/test_network_claims.py.)"""

import numpy as np
import pytest

from harness.activations import SOFTMAX, forward as g
from harness.claims import CLAIMS, FRAMEWORKS, NETWORK_CLAIMS, Claim, Context, check, _jacobian_claim

MLP_CLAIMS = [c for c in CLAIMS if c not in NETWORK_CLAIMS]


@pytest.fixture(scope="module", params=["float64", "float32"])
def ctx(request, builtin):
    return Context({name: builtin[name] for name in FRAMEWORKS}, request.param)


@pytest.mark.parametrize("claim", MLP_CLAIMS, ids=lambda c: c.id)
def test_claim_holds(claim, ctx):
    outcomes = check(claim, ctx)
    assert outcomes, "a claim with no instance proves nothing"
    assert {o.framework for o in outcomes} >= {"torch", "jax"}
    bad = [f"{o.shape} vs {o.framework}: max diff {o.max_abs:.3g} ({o.tol_used:.3g}× tol)"
           for o in outcomes if not o.passed]
    assert not bad, "\n".join(bad)


def _refuted_everywhere(claim, ctx):
    outcomes = check(claim, ctx)
    frameworks = {o.framework for o in outcomes}
    refuted = {o.framework for o in outcomes if not o.passed}
    assert refuted == frameworks == set(FRAMEWORKS), (refuted, frameworks)


def test_wrong_softmax_jacobian_is_refuted(ctx):
    """The learner's slip: treating softmax as elementwise, ∂ŷ/∂z = diag(ŷ(1 − ŷ))."""
    def wrong(z):
        y = g(SOFTMAX, z)[0]
        return np.diag(y * (1 - y))
    _refuted_everywhere(Claim("wrong", "", _jacobian_claim(SOFTMAX, wrong, sizes=(3, 5))), ctx)


def test_wrong_activation_derivative_is_refuted(ctx):
    """g(z) in place of g'(z) for tanh."""
    _refuted_everywhere(Claim("wrong", "", _jacobian_claim("tanh", lambda z: np.diag(np.tanh(z)[0]))), ctx)


def test_recurrence_without_g_prime_is_refuted(ctx):
    """The recurrence's hand side without ∘ g'(z^[l]), on the same networks."""
    from harness.claims import Instance

    def wrong(c):
        for case, arrays, results in c.networks:
            for l in range(1, case.model.L):
                if case.model.activations[l - 1] == "identity":
                    continue  # g' = 1: the mistake is invisible there
                for name, r in results.items():
                    yield Instance("x", r[f"dz{l + 1}"] @ arrays[f"W{l + 1}"].T, {name: r[f"dz{l}"]})
    _refuted_everywhere(Claim("wrong", "", wrong), ctx)


def _networks_claim(hand_of):
    """A claim over the claims' networks whose hand side is ``hand_of(case, arrays, r, l)``."""
    from harness.claims import Instance

    def instances(c):
        for case, arrays, results in c.networks:
            for l in range(1, case.model.L + 1):
                for name, r in results.items():
                    hand, theirs = hand_of(case, arrays, r, l)
                    if hand is not None:
                        yield Instance("x", hand, {name: theirs})
    return instances


def test_bias_gradient_as_a_mean_is_refuted(ctx):
    """db = mean of the rows of dz (the 1/m counted twice)."""
    _refuted_everywhere(Claim("wrong", "", _networks_claim(
        lambda case, arrays, r, l: (r[f"dz{l}"].mean(axis=0, keepdims=True), r[f"db{l}"]))), ctx)


def test_output_delta_through_an_elementwise_softmax_is_refuted(ctx):
    """∂𝓛/∂z^[L] = (ŷ − ȳ) ∘ ŷ(1 − ŷ): softmax + CE treated like a sigmoid with squared error."""
    def hand(case, arrays, r, l):
        if l != case.model.L or case.model.loss != "cross_entropy":
            return None, None
        a = r[f"a{l}"]
        return (a - arrays["Y"]) * a * (1 - a), case.batch * r[f"dz{l}"]
    _refuted_everywhere(Claim("wrong", "", _networks_claim(hand)), ctx)
