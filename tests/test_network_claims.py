"""The claims of the catalog layers (batch norm, dropout, L2, layer norm) hold against torch,
JAX and fd in both dtypes, and the learners' wrong versions of each are refuted."""

import numpy as np
import pytest

from harness.claims import (FRAMEWORKS, L2_GRADIENT, NETWORK_CLAIMS, Claim, Context, _batchnorm_backward,
                            _dropout_backward, _l2_gradient, _layernorm_transposed, batchnorm_by_hand,
                            check, layernorm_as_batchnorm)


@pytest.fixture(scope="module", params=["float64", "float32"])
def ctx(request, builtin):
    return Context({name: builtin[name] for name in FRAMEWORKS}, request.param)


@pytest.mark.parametrize("claim", NETWORK_CLAIMS, ids=lambda c: c.id)
def test_network_claim_holds(claim, ctx):
    outcomes = check(claim, ctx)
    assert {o.framework for o in outcomes} == set(FRAMEWORKS)
    bad = [f"{o.shape} vs {o.framework}: max diff {o.max_abs:.3g} ({o.tol_used:.3g}× tol)"
           for o in outcomes if not o.passed]
    assert not bad, "\n".join(bad)


def _refuted(instances, ctx, every_instance=False):
    """Every framework refutes the wrong claim (on at least one instance, or on all)."""
    outcomes = check(Claim("wrong", "", instances), ctx)
    assert {o.framework for o in outcomes} == set(FRAMEWORKS)
    refuted = {o.framework for o in outcomes if not o.passed}
    assert refuted == set(FRAMEWORKS), refuted
    if every_instance:
        assert not [o.shape for o in outcomes if o.passed]


def test_batchnorm_without_the_mean_terms_is_refuted(ctx):
    """dx = dx̂/σ: μ and σ taken as constants (dγ, dβ stay right)."""
    def hand(x, gamma, dy, eps):
        x_hat, _, dgamma, dbeta = batchnorm_by_hand(x, gamma, dy, eps)
        sigma = np.sqrt(np.asarray(x, dtype=np.float64).var(axis=0) + eps)
        return x_hat, dy * gamma / sigma, dgamma, dbeta
    _refuted(_batchnorm_backward(hand), ctx)


def test_batchnorm_without_gamma_in_dx_hat_is_refuted(ctx):
    """dx̂ = dy (γ forgotten on the way back)."""
    def hand(x, gamma, dy, eps):
        return batchnorm_by_hand(x, np.ones_like(gamma), dy, eps)
    _refuted(_batchnorm_backward(hand), ctx)


def test_dropout_without_the_scale_is_refuted(ctx):
    _refuted(_dropout_backward(lambda dy, mask, p: dy * mask), ctx, every_instance=True)


def test_dropout_with_another_mask_is_refuted(ctx):
    _refuted(_dropout_backward(lambda dy, mask, p: dy * np.roll(mask, 1, axis=0) / (1 - p)), ctx,
             every_instance=True)


def test_l2_with_another_forms_factor_is_refuted(ctx):
    """Each form given another form's gradient: half 2λW, sum λ/m W, half_mean λW."""
    wrong = {"half": L2_GRADIENT["sum"], "sum": L2_GRADIENT["half_mean"], "half_mean": L2_GRADIENT["half"]}
    _refuted(_l2_gradient(wrong), ctx, every_instance=True)


def test_l2_factors_are_the_textbook_ones():
    lam, m = 0.3, 6
    assert [L2_GRADIENT[f](lam, m) for f in ("half", "sum", "half_mean")] == [lam, 2 * lam, lam / m]


def test_layernorm_as_untransposed_batchnorm_is_refuted(ctx):
    """Layer norm's statistics over the batch (batch norm of X itself, not of Xᵀ)."""
    def hand(x, gamma, beta, dy, eps):
        x_hat, dx, _, _ = batchnorm_by_hand(x, gamma, dy, eps)
        return gamma * x_hat + beta, dx
    _refuted(_layernorm_transposed(hand), ctx, every_instance=True)


def test_layernorm_as_batchnorm_matches_its_definition():
    """The hand side against layer norm written directly over the rows (numpy, float64)."""
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    gamma, beta, eps = 1 + 0.1 * rng.standard_normal(7), 0.1 * rng.standard_normal(7), 1e-5
    x_hat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    y, dx = layernorm_as_batchnorm(x, gamma, beta, dy, eps)
    np.testing.assert_allclose(y, gamma * x_hat + beta, rtol=1e-12)
    # dx by central differences of Σ dy ∘ y(x)
    def f(x):
        xh = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
        return (dy * (gamma * xh + beta)).sum()
    h, fd = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        fd[idx] = (f(x + e) - f(x - e)) / (2 * h)
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)
