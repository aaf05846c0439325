"""The claims of the catalog layers (batch norm, dropout, L2, layer norm, conv, max and average
pooling, BPTT, the attention softmax, the embedding) hold against torch, JAX and fd in both dtypes, and the learners' wrong versions of
each are refuted."""

import numpy as np
import pytest

from harness.claims import (FRAMEWORKS, L2_GRADIENT, NETWORK_CLAIMS, Claim, Context, _attention_softmax_rows,
                            _avgpool_dx, _bptt_two_paths, _embedding_accumulates, attention_dx_by_hand,
                            rnn_bptt_by_hand, softmax_row_jacobian,
                            _batchnorm_backward, _conv_db, _conv_dW, _conv_dx, _dropout_backward, _l2_gradient,
                            _layernorm_transposed, _maxpool_dx, avgpool_dx_by_hand, batchnorm_by_hand, check,
                            conv_dW_by_hand, conv_dx_by_hand, layernorm_as_batchnorm, maxpool_dx_by_hand)
from harness.mutants import (AvgPoolUnscaled, BatchnormPerPosition, ConvBackwardIgnoresStride, ConvDbPositionMean,
                             ConvDWLastExample, ConvUnflippedKernel, MaxPoolSpread, PoolBackwardIgnoresStride)


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


# ------------------------------------------------------------ convolution and pooling


def test_conv_dx_with_the_unflipped_kernel_is_refuted(ctx):
    """The full correlation of dz with W itself (F↔C swapped), the 180° rotation forgotten."""
    _refuted(_conv_dx(lambda dz, W, s, p, hw: conv_dx_by_hand(dz, W[:, :, ::-1, ::-1], s, p, hw)), ctx,
             every_instance=True)


def test_conv_dx_without_dilating_dz_is_refuted(ctx):
    """dz not dilated by the stride: the backward as if the forward had stride 1."""
    _refuted(_conv_dx(lambda dz, W, s, p, hw: conv_dx_by_hand(dz, W, 1, p, hw)), ctx, every_instance=True)


@pytest.mark.parametrize("wrong", ["last example", "mean over the batch"])
def test_conv_dW_without_the_sum_over_the_batch_is_refuted(ctx, wrong):
    """dW from the last example only (dW = where dW += belongs), or the batch's mean."""
    def hand(x, dz, k, s, p):
        if wrong == "last example":
            return conv_dW_by_hand(x[-1:], dz[-1:], k, s, p)
        return conv_dW_by_hand(x, dz, k, s, p) / len(x)
    _refuted(_conv_dW(hand), ctx, every_instance=True)


def test_conv_db_summed_over_the_batch_only_is_refuted(ctx):
    """db = Σ_n dz (the dense layer's Σ_rows), made to fit b by the mean over the positions."""
    _refuted(_conv_db(lambda dz: np.asarray(dz, dtype=np.float64).sum(axis=0).mean(axis=(1, 2))), ctx,
             every_instance=True)


def test_maxpool_gradient_spread_over_the_window_is_refuted(ctx):
    """dy copied to every element of its window (the arg-max mask forgotten)."""
    def hand(x, dy, k, s):
        return avgpool_dx_by_hand(dy, np.shape(x), k, s) * (k[0] * k[1])
    outcomes = check(Claim("wrong", "", _maxpool_dx(hand)), ctx)
    refuted = {o.framework for o in outcomes if not o.passed}
    assert refuted == set(FRAMEWORKS), refuted
    assert all(o.passed for o in outcomes if "arg-max" in o.shape)  # the frameworks do leave them at 0


def test_avgpool_without_the_share_is_refuted(ctx):
    """dy to every element of its window, without the 1/(kh·kw)."""
    _refuted(_avgpool_dx(lambda dy, shape, k, s: avgpool_dx_by_hand(dy, shape, k, s) * (k[0] * k[1])), ctx,
             every_instance=True)


def test_spatial_batchnorm_per_position_is_refuted(ctx):
    """μ, σ per (c, h, w) over the batch only, γ and β per channel: refuted at the spatial batch
    norm (the vector ones are the same either way)."""
    outcomes = check(Claim("wrong", "", _batchnorm_backward(per_position=True)), ctx)
    refuted = {o.framework for o in outcomes if not o.passed}
    assert refuted == set(FRAMEWORKS), refuted
    spatial = [o for o in outcomes if o.shape.startswith("conv-")]
    assert spatial and not any(o.passed for o in spatial if o.shape.endswith(("dx", "dγ")))
    assert all(o.passed for o in outcomes if o not in spatial)


# Each conv mutant of the self-check, taken as a framework: the claim of its layer refutes it.
MUTANT_CLAIMS = [(ConvUnflippedKernel, "conv-dx-full-correlation-flipped"),
                 (ConvDWLastExample, "conv-dW-patches-times-dz"),
                 (ConvDbPositionMean, "conv-db-sum"),
                 (MaxPoolSpread, "maxpool-argmax-only"),
                 (AvgPoolUnscaled, "avgpool-even-share"),
                 (BatchnormPerPosition, "batchnorm-backward"),
                 (ConvBackwardIgnoresStride, "conv-dx-full-correlation-flipped"),
                 (ConvBackwardIgnoresStride, "conv-dW-patches-times-dz"),
                 (PoolBackwardIgnoresStride, "maxpool-argmax-only")]


@pytest.fixture(scope="module")
def mutant_contexts():
    return {}


@pytest.mark.parametrize("mutant,claim_id", MUTANT_CLAIMS, ids=lambda x: getattr(x, "name", x))
def test_each_conv_mutant_is_refuted_by_its_claim(mutant, claim_id, mutant_contexts):
    ctx = mutant_contexts.setdefault(mutant, Context({mutant.name: mutant()}, "float64"))
    claim = next(c for c in NETWORK_CLAIMS if c.id == claim_id)
    outcomes = check(claim, ctx)
    assert outcomes and not all(o.passed for o in outcomes)
    if mutant is MaxPoolSpread:  # the elements that are no window's arg-max get its dy
        assert not any(o.passed for o in outcomes if "arg-max" in o.shape)


def test_the_conv_and_pool_hand_sides_match_their_definitions():
    """The hand sides (correlations, loops over the windows) against the forward's definition
    written out element by element: dx and dW scatter each output's dz back through the window
    it was computed from; the pools' dx by central differences of Σ dy ∘ pool(x)."""
    rng = np.random.default_rng(0)
    N, C, F, H, W, (kh, kw), (sh, sw), (ph, pw) = 2, 3, 2, 7, 6, (3, 2), (2, 3), (1, 2)
    x, Wt = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, kh, kw))
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    dz = rng.standard_normal((N, F, Ho, Wo))
    dx_pad, dW = np.zeros_like(x_pad), np.zeros_like(Wt)
    for n, f, i, j in np.ndindex(dz.shape):
        window = (n, slice(None), slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw))
        dx_pad[window] += Wt[f] * dz[n, f, i, j]
        dW[f] += x_pad[window] * dz[n, f, i, j]
    np.testing.assert_allclose(conv_dx_by_hand(dz, Wt, (sh, sw), (ph, pw), (H, W)),
                               dx_pad[:, :, ph:ph + H, pw:pw + W], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv_dW_by_hand(x, dz, (kh, kw), (sh, sw), (ph, pw)), dW, rtol=1e-12, atol=1e-12)

    def pool(x, reduce, k, s):
        Ho, Wo = (x.shape[2] - k[0]) // s[0] + 1, (x.shape[3] - k[1]) // s[1] + 1
        return np.stack([np.stack([reduce(x[:, :, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]],
                                          axis=(2, 3)) for j in range(Wo)], -1) for i in range(Ho)], -2)

    for reduce, hand in ((np.max, maxpool_dx_by_hand), (np.mean, None)):
        k, s = (3, 2), (2, 1)  # overlapping along the rows and the columns
        dy = rng.standard_normal(pool(x, reduce, k, s).shape)
        h, fd = 1e-6, np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            e = np.zeros_like(x)
            e[idx] = h
            fd[idx] = ((dy * pool(x + e, reduce, k, s)).sum() - (dy * pool(x - e, reduce, k, s)).sum()) / (2 * h)
        got = hand(x, dy, k, s) if hand else avgpool_dx_by_hand(dy, x.shape, k, s)
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- sequences

def test_bptt_that_forgets_the_step_path_is_refuted(ctx):
    """∂J/∂h_{t−1} = the layer above's alone: dx and dh0 both wrong, on every instance."""
    _refuted(_bptt_two_paths(from_step=False), ctx, every_instance=True)


def test_attention_softmax_with_the_diagonal_only_is_refuted(ctx):
    """ds = dp ∘ p (diag(p), the elementwise rule) instead of dp (diag(p) − pᵀp)."""
    _refuted(_attention_softmax_rows(lambda p: np.diag(p)), ctx, every_instance=True)


def test_attention_softmax_jacobian_transposed_is_its_own_refutation_check(ctx):
    """diag(p) − pᵀp is symmetric, so its transpose must pass too: the refutation above is
    about the missing −pᵀp, not about which side the row multiplies."""
    outcomes = check(Claim("transposed", "", _attention_softmax_rows(
        lambda p: softmax_row_jacobian(p).T)), ctx)
    assert outcomes and all(o.passed for o in outcomes)


def test_embedding_assigning_instead_of_accumulating_is_refuted(ctx):
    _refuted(_embedding_accumulates(accumulate=False), ctx, every_instance=True)


def test_the_sequence_hands_match_their_definitions():
    """Each hand form against a finite difference of its own forward, float64: BPTT's dx and
    dh0 of tanh(x_t Wx + h_{t−1} Wh + b) and the attention's dx, on random small arrays."""
    rng = np.random.default_rng(1)
    N, T, D, H = 2, 4, 3, 3
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = rng.standard_normal((D, H)) / 2, rng.standard_normal((H, H)) / 2, rng.standard_normal(H)
    dy = rng.standard_normal((N, T, H))

    def rnn(x, h0):
        h, hs = h0, []
        for t in range(T):
            h = np.tanh(x[:, t] @ Wx + h @ Wh + b)
            hs.append(h)
        return np.stack(hs, 1)

    def fd(f, a):
        g, e = np.zeros_like(a), 1e-6
        for idx in np.ndindex(a.shape):
            d = np.zeros_like(a)
            d[idx] = e
            g[idx] = ((dy_of(f(a + d))).sum() - (dy_of(f(a - d))).sum()) / (2 * e)
        return g

    dy_of = lambda out: dy * out  # noqa: E731
    dx, dh0 = rnn_bptt_by_hand(rnn(x, h0), h0, dy, Wx, Wh)
    np.testing.assert_allclose(dx, fd(lambda a: rnn(a, h0), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dh0, fd(lambda a: rnn(x, a), h0), rtol=1e-6, atol=1e-8)

    D, heads = 4, 2
    x = rng.standard_normal((N, T, D))
    params = {f"W{k}": rng.standard_normal((D, D)) / 2 for k in "qkvo"} | {f"b{k}": rng.standard_normal(D) for k in "qkvo"}
    dy = rng.standard_normal((N, T, D))
    for causal in (False, True):
        def attention(a):
            out = np.zeros_like(a)
            d_k = D // heads
            for n in range(N):
                Q, K, V = (a[n] @ params[f"W{k}"] + params[f"b{k}"] for k in "qkv")
                O = np.zeros((T, D))
                for h in range(heads):
                    c = slice(h * d_k, (h + 1) * d_k)
                    S = Q[:, c] @ K[:, c].T / np.sqrt(d_k)
                    if causal:
                        S = np.where(np.tril(np.ones((T, T))) > 0, S, -np.inf)
                    P = np.exp(S - S.max(1, keepdims=True))
                    O[:, c] = (P / P.sum(1, keepdims=True)) @ V[:, c]
                out[n] = O @ params["Wo"] + params["bo"]
            return out
        np.testing.assert_allclose(attention_dx_by_hand(x, params, dy, heads, causal), fd(attention, x),
                                   rtol=1e-6, atol=1e-8)
