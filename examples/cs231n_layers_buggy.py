"""The buggy twin of cs231n_layers.py: the same CS231n-style layers with exactly one classic
learner mistake planted in each backward (or loss) function family.

Used by ``python -m harness selfcheck`` and the tests to show the harness catches wrong
gradients in a user's layers file: every forward function is the correct one, byte for byte,
so the outputs agree and only the gradients disagree. PLANTED maps each function carrying a
plant to a one-line description of its mistake; every changed line is marked ``# PLANTED:``.

Every backward here is planted, so the three whole-sequence / spatial backwards that call a
step backward (spatial_batchnorm_backward, rnn_backward, lstm_backward) call private,
unplanted copies of the correct step (``_correct_batchnorm_backward``,
``_correct_rnn_step_backward``, ``_correct_lstm_step_backward``): each family carries its
own plant and no other. Conventions are cs231n_layers.py's.
"""

import numpy as np


PLANTED = {
    "affine_backward": "dw divided by N (an extra 1/N); dx and db right",
    "relu_backward": "dx = 1[x > 0], the local derivative never multiplied by dout",
    "softmax_loss": "dx not divided by N (the loss is right)",
    "svm_loss": "dx of the correct class −1, not −(number of positive margins)",
    "batchnorm_backward": "μ and σ treated as constants: dx = dout γ / √(var + eps)",
    "batchnorm_backward_alt": "the − x̂ Σ(dx̂ x̂) term of the closed form dropped from dx",
    "layernorm_backward": "dγ = Σ dout, the ∘ x̂ forgotten; dx and dβ right",
    "spatial_batchnorm_backward": "dx rows reshaped to (N, C, H, W), C not moved back from last",
    "dropout_backward": "the 1/p scale forgotten: dx = dout · 1[mask ≠ 0]",
    "conv_backward_naive": "dx scattered to windows at (i, j), not (i·stride, j·stride)",
    "max_pool_backward_naive": "each window's gradient sent to its top-left, not its argmax",
    "rnn_step_backward": "tanh' taken as 1 − next_h instead of 1 − next_h²",
    "rnn_backward": "dprev_h from step t+1 not added to dh[:, t]",
    "word_embedding_backward": "dW[x] = dout: a repeated id keeps one row, not the sum",
    "lstm_step_backward": "the dnext_c term forgotten in dc",
    "lstm_backward": "dprev_c discarded: the cell gradient not carried between steps",
    "temporal_affine_backward": "db from the last time step only (summed over N, not N and T)",
    "temporal_softmax_loss": "the mask ignored in dx (the loss is right)",
}


# ----------------------------------------------------------------------------- affine, relu

def affine_forward(x, w, b):
    """out = x_flat w + b, where x (N, d_1, ..., d_k) is reshaped to x_flat (N, D), D = d_1···d_k.

    w is (D, M), b is (M,). Returns out (N, M) and cache (x, w, b).
    """
    N = x.shape[0]
    out = x.reshape(N, -1) @ w + b
    cache = (x, w, b)
    return out, cache


def affine_backward(dout, cache):
    """dx = dout wᵀ (reshaped like x), dw = x_flatᵀ dout, db = Σ_rows dout."""
    x, w, b = cache
    N = x.shape[0]
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(N, -1).T @ dout / N  # PLANTED: an extra 1/N in dw
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    """out = max(0, x) elementwise. Returns out and cache x."""
    out = np.maximum(0, x)
    cache = x
    return out, cache


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (the derivative at x = 0 is taken to be 0)."""
    x = cache
    dx = (x > 0).astype(dout.dtype)  # PLANTED: dout never multiplied in
    return dx


# ----------------------------------------------------------------------------- losses

def softmax_loss(x, y):
    """Softmax cross-entropy of scores x (N, C) with labels y (N,), averaged over N.

    Stable: the row maximum is subtracted before exponentiating, and the loss is taken from
    the log-probabilities (never log of a probability that underflowed to 0).
    dx = (softmax(x) − onehot(y)) / N.
    """
    N = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    loss = -log_probs[np.arange(N), y].sum() / N
    dx = probs.copy()
    dx[np.arange(N), y] -= 1
    # PLANTED: the `dx /= N` line is missing (the loss is averaged over N, dx is not)
    return loss, dx


def svm_loss(x, y):
    """Multiclass SVM (hinge) loss, margin 1: Σ_{j≠y} max(0, x_j − x_y + 1), averaged over N.

    dx_j = 1[margin_j > 0] for j ≠ y and dx_y = −(number of positive margins), all / N
    (a margin of exactly 0 counts as inactive).
    """
    N = x.shape[0]
    correct = x[np.arange(N), y][:, None]
    margins = np.maximum(0, x - correct + 1.0)
    margins[np.arange(N), y] = 0
    loss = margins.sum() / N
    positive = (margins > 0).astype(x.dtype)
    dx = positive.copy()
    dx[np.arange(N), y] -= 1  # PLANTED: not −(number of positive margins)
    dx /= N
    return loss, dx


# ----------------------------------------------------------------------------- normalisation

def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation of x (N, D), per feature over the batch.

    bn_param: 'mode' ('train' or 'test', required), 'eps' (default 1e-5), 'momentum'
    (default 0.9), 'running_mean' / 'running_var' (D,) (default zeros). In 'train' mode the
    batch statistics are used (biased variance) and the running averages are updated in
    bn_param: running = momentum · running + (1 − momentum) · batch statistic. In 'test'
    mode the running averages normalise x (and there is no backward).
    The cache keeps each intermediate of the computation graph for batchnorm_backward.
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    N, D = x.shape
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    running_var = bn_param.get("running_var", np.zeros(D, dtype=x.dtype))

    if mode == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc ** 2).mean(axis=0)
        std = np.sqrt(var + eps)
        inv_std = 1.0 / std
        x_hat = xc * inv_std
        out = gamma * x_hat + beta
        cache = (x_hat, xc, std, inv_std, gamma)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    elif mode == "test":
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
        cache = None
    else:
        raise ValueError(f'Invalid forward batchnorm mode "{mode}"')

    bn_param["running_mean"] = running_mean
    bn_param["running_var"] = running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Batch-norm backward, node by node through the forward's computation graph:
    out = γ x̂ + β, x̂ = xc · inv_std, inv_std = 1/std, std = √(var + eps), var = mean(xc²),
    xc = x − μ, μ = mean(x). Each line below is one node's local derivative."""
    x_hat, xc, std, inv_std, gamma = cache
    N = dout.shape[0]  # noqa: F841 - the student kept it from the first version
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = dx_hat * inv_std  # PLANTED: μ and σ treated as constants
    return dx, dgamma, dbeta


# Not a plant: the correct batchnorm_backward, byte for byte, under a private name, so that
# spatial_batchnorm_backward carries only its own plant.
def _correct_batchnorm_backward(dout, cache):
    """Batch-norm backward, node by node through the forward's computation graph:
    out = γ x̂ + β, x̂ = xc · inv_std, inv_std = 1/std, std = √(var + eps), var = mean(xc²),
    xc = x − μ, μ = mean(x). Each line below is one node's local derivative."""
    x_hat, xc, std, inv_std, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dxc = dx_hat * inv_std                      # x̂ = xc · inv_std, through xc
    dinv_std = (dx_hat * xc).sum(axis=0)        # ... and through inv_std
    dstd = -dinv_std / std ** 2                 # inv_std = 1 / std
    dvar = dstd * 0.5 / std                     # std = √(var + eps)
    dxc = dxc + dvar * 2.0 * xc / N             # var = (1/N) Σ xc²
    dmu = -dxc.sum(axis=0)                      # xc = x − μ
    dx = dxc + dmu / N                          # μ = (1/N) Σ x
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Batch-norm backward in the simplified closed form, dx̂ = dout · γ:
    dx = (inv_std / N) (N dx̂ − Σ dx̂ − x̂ Σ (dx̂ x̂)), sums over the batch."""
    x_hat, xc, std, inv_std, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    dx = (inv_std / N) * (N * dx_hat - dx_hat.sum(axis=0))  # PLANTED: − x̂ Σ(dx̂ x̂) dropped
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation of x (N, D): each row normalised over its D features (biased
    variance), then y = γ x̂ + β with γ, β of shape (D,). ln_param: 'eps' (default 1e-5).
    Train and test are the same computation."""
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = xc * inv_std
    out = gamma * x_hat + beta
    cache = (x_hat, inv_std, gamma)
    return out, cache


def layernorm_backward(dout, cache):
    """Batch norm's closed form with the sums along each row (the D features):
    dx = (inv_std / D) (D dx̂ − Σ_f dx̂ − x̂ Σ_f (dx̂ x̂)); dγ, dβ summed over the rows."""
    x_hat, inv_std, gamma = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = dout.sum(axis=0)  # PLANTED: dγ summed like dβ, the ∘ x̂ forgotten
    dx_hat = dout * gamma
    dx = (inv_std / D) * (D * dx_hat - dx_hat.sum(axis=1, keepdims=True)
                          - x_hat * (dx_hat * x_hat).sum(axis=1, keepdims=True))
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm of x (N, C, H, W) per channel, over N, H and W: the vanilla batchnorm on
    x moved to (N·H·W, C) rows. gamma, beta are (C,); bn_param as for batchnorm_forward."""
    N, C, H, W = x.shape
    x_rows = x.transpose(0, 2, 3, 1).reshape(-1, C)
    out_rows, cache = batchnorm_forward(x_rows, gamma, beta, bn_param)
    out = out_rows.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """The vanilla batchnorm backward on dout moved to (N·H·W, C) rows, dx moved back."""
    N, C, H, W = dout.shape
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    # (the correct batchnorm backward: see _correct_batchnorm_backward)
    dx_rows, dgamma, dbeta = _correct_batchnorm_backward(dout_rows, cache)
    dx = dx_rows.reshape(N, C, H, W)  # PLANTED: C not moved back from last
    return dx, dgamma, dbeta


# ----------------------------------------------------------------------------- dropout

def dropout_forward(x, dropout_param):
    """Inverted dropout. dropout_param: 'p', the probability of KEEPING each unit (the
    current CS231n assignment; older versions used p as the probability of dropping it),
    'mode' ('train' or 'test'), optional 'seed'.

    train: mask = (rand < p) / p, out = x · mask (the 1/p keeps the expected value, so test
    mode is the identity). The mask, scale included, is in the cache. A seed gives the same
    mask as the assignment's np.random.seed(seed); np.random.rand(...), from a private
    RandomState, without reseeding the global generator.
    """
    p, mode = dropout_param["p"], dropout_param["mode"]
    if mode == "train":
        seed = dropout_param.get("seed")
        rng = np.random.RandomState(seed) if seed is not None else np.random
        mask = (rng.rand(*x.shape) < p) / p
        out = (x * mask).astype(x.dtype, copy=False)
    elif mode == "test":
        mask = None
        out = x.copy()
    else:
        raise ValueError(f'Invalid forward dropout mode "{mode}"')
    cache = (dropout_param, mask)
    return out, cache


def dropout_backward(dout, cache):
    """train: dx = dout · mask (the same mask and 1/p as forward); test: dx = dout."""
    dropout_param, mask = cache
    if dropout_param["mode"] == "train":
        return dout * (mask != 0)  # PLANTED: the 1/p scale forgotten
    return dout


# ----------------------------------------------------------------------------- conv, pool

def conv_forward_naive(x, w, b, conv_param):
    """Convolution (cross-correlation, no kernel flip) with loops over every output.

    x (N, C, H, W), w (F, C, HH, WW), b (F,); conv_param 'stride', 'pad' (zeros on each
    side). out (N, F, H', W'), H' = 1 + (H + 2 pad − HH) // stride, W' likewise:
    out[n, f, i, j] = Σ x_pad[n, :, i·s : i·s + HH, j·s : j·s + WW] · w[f] + b[f].
    """
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    window = x_pad[n, :, hs:hs + HH, ws:ws + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache


def conv_backward_naive(dout, cache):
    """Loops over every output, as forward: each out[n, f, i, j] sends dout[n, f, i, j] · w[f]
    back to its window of x_pad (overlapping windows add up) and window · dout[n, f, i, j]
    to dw[f]; db sums dout over n, i, j. dx is dx_pad without the padding."""
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    dx_pad = np.zeros_like(x_pad, dtype=dout.dtype)
    dw = np.zeros_like(w, dtype=dout.dtype)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    g = dout[n, f, i, j]
                    dw[f] += x_pad[n, :, hs:hs + HH, ws:ws + WW] * g
                    dx_pad[n, :, i:i + HH, j:j + WW] += w[f] * g  # PLANTED: stride ignored
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    """Max pooling with loops: out[n, c, i, j] = max of x[n, c, i·s : i·s + ph, j·s : j·s + pw].

    pool_param: 'pool_height', 'pool_width', 'stride'; no padding.
    H' = 1 + (H − pool_height) // stride, W' likewise.
    """
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out = 1 + (H - ph) // stride
    W_out = 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    out[n, c, i, j] = np.max(x[n, c, hs:hs + ph, ws:ws + pw])
    cache = (x, pool_param)
    return out, cache


def max_pool_backward_naive(dout, cache):
    """Each window sends its dout to the position of its maximum (the first one, row-major,
    if the maximum is attained twice), nothing to the others; overlapping windows add up."""
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    window = x[n, c, hs:hs + ph, ws:ws + pw]  # noqa: F841 - computed, then not used: the plant
                    dx[n, c, hs, ws] += dout[n, c, i, j]  # PLANTED: top-left, not the argmax
    return dx


# ----------------------------------------------------------------------------- recurrent

def sigmoid(x):
    """σ(x) without overflow: e^(−|x|) never overflows."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One vanilla RNN step: next_h = tanh(x Wx + prev_h Wh + b).

    x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,). Returns next_h (N, H), cache.
    """
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)
    cache = (x, prev_h, Wx, Wh, next_h)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """da = dnext_h (1 − next_h²) (tanh' from its output); then dx = da Wxᵀ,
    dprev_h = da Whᵀ, dWx = xᵀ da, dWh = prev_hᵀ da, db = Σ_rows da."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h)  # PLANTED: tanh' written 1 − tanh, not 1 − tanh²
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


# Not a plant: the correct rnn_step_backward, byte for byte, under a private name, so that
# rnn_backward carries only its own plant.
def _correct_rnn_step_backward(dnext_h, cache):
    """da = dnext_h (1 − next_h²) (tanh' from its output); then dx = da Wxᵀ,
    dprev_h = da Whᵀ, dWx = xᵀ da, dWh = prev_hᵀ da, db = Σ_rows da."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h ** 2)
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """A vanilla RNN over a whole sequence x (N, T, D) from h0 (N, H): h (N, T, H) holds
    every hidden state h_1 … h_T."""
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx))
    caches = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t, :], prev_h, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def rnn_backward(dh, cache):
    """Backpropagation through time. dh (N, T, H) is the upstream gradient of every h_t; h_t
    also fed step t+1, so the gradient entering step t is dh[:, t] + dprev_h from step t+1.
    The weights are shared by all steps: their gradients add up over t."""
    caches = cache
    N, T, H = dh.shape
    D = caches[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(caches[0][2], dtype=dh.dtype)
    dWh = np.zeros_like(caches[0][3], dtype=dh.dtype)
    db = np.zeros(H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        # PLANTED: only the upstream dh[:, t] enters step t, the dprev_h from step t+1 is not added
        # (the step is the correct one: see _correct_rnn_step_backward)
        dx_t, dprev_h, dWx_t, dWh_t, db_t = _correct_rnn_step_backward(dh[:, t, :], caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db


def word_embedding_forward(x, W):
    """out[n, t] = W[x[n, t]]: x (N, T) integer ids in [0, V), W (V, D); out (N, T, D)."""
    out = W[x]
    cache = (x, W)
    return out, cache


def word_embedding_backward(dout, cache):
    """dW[v] = Σ of dout[n, t] over every (n, t) with x[n, t] = v. np.add.at adds the rows of
    repeated ids (dW[x] += dout would keep only one of them). There is no dx (ids)."""
    x, W = cache
    dW = np.zeros_like(W, dtype=dout.dtype)
    dW[x] = dout  # PLANTED: repeated ids keep one row, not their sum
    return dW


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step. a = x Wx + prev_h Wh + b (N, 4H), split into the gates in the column
    order i, f, o, g: i, f, o = σ(a_i), σ(a_f), σ(a_o), g = tanh(a_g);
    next_c = f prev_c + i g, next_h = o tanh(next_c).

    x (N, D), prev_h, prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns next_h, next_c (N, H) and cache.
    """
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    o = sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """next_c reaches the loss directly (dnext_c) and through next_h = o tanh(next_c):
    dc = dnext_c + dnext_h o (1 − tanh²(next_c)). Then the gates (σ' = s(1 − s),
    tanh' = 1 − g²), da in the order i, f, o, g, and the affine part as in rnn_step_backward;
    dprev_c = dc f."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    dc = dnext_h * o * (1 - tanh_c ** 2)  # PLANTED: the dnext_c term forgotten
    di = dc * g
    df = dc * prev_c
    do = dnext_h * tanh_c
    dg = dc * i
    da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)])
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dprev_c = dc * f
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


# Not a plant: the correct lstm_step_backward, byte for byte, under a private name, so that
# lstm_backward carries only its own plant.
def _correct_lstm_step_backward(dnext_h, dnext_c, cache):
    """next_c reaches the loss directly (dnext_c) and through next_h = o tanh(next_c):
    dc = dnext_c + dnext_h o (1 − tanh²(next_c)). Then the gates (σ' = s(1 − s),
    tanh' = 1 − g²), da in the order i, f, o, g, and the affine part as in rnn_step_backward;
    dprev_c = dc f."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_c ** 2)
    di = dc * g
    df = dc * prev_c
    do = dnext_h * tanh_c
    dg = dc * i
    da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g ** 2)])
    dx = da @ Wx.T
    dprev_h = da @ Wh.T
    dprev_c = dc * f
    dWx = x.T @ da
    dWh = prev_h.T @ da
    db = da.sum(axis=0)
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """An LSTM over a whole sequence x (N, T, D) from h0 (N, H); the initial cell state is
    zero. Returns h (N, T, H), every hidden state, and the per-step caches."""
    N, T, D = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx))
    prev_h = h0
    prev_c = np.zeros_like(h0)
    caches = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t, :], prev_h, prev_c, Wx, Wh, b)
        h[:, t, :] = prev_h
        caches.append(step_cache)
    return h, caches


def lstm_backward(dh, cache):
    """Backpropagation through time for the LSTM: the gradient entering step t is
    dh[:, t] + dprev_h from step t+1 for h, and dprev_c from step t+1 for c (zero after the
    last step); the weight gradients add up over t."""
    caches = cache
    N, T, H = dh.shape
    D = caches[0][0].shape[1]
    dx = np.zeros((N, T, D), dtype=dh.dtype)
    dWx = np.zeros_like(caches[0][3], dtype=dh.dtype)
    dWh = np.zeros_like(caches[0][4], dtype=dh.dtype)
    db = np.zeros(4 * H, dtype=dh.dtype)
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        # PLANTED: dprev_c unpacked into _, so the cell gradient is never carried back (stays zero)
        # (the step is the correct one: see _correct_lstm_step_backward)
        dx_t, dprev_h, _, dWx_t, dWh_t, db_t = _correct_lstm_step_backward(
            dh[:, t, :] + dprev_h, dprev_c, caches[t])
        dx[:, t, :] = dx_t
        dWx += dWx_t
        dWh += dWh_t
        db += db_t
    dh0 = dprev_h
    return dx, dh0, dWx, dWh, db


def temporal_affine_forward(x, w, b):
    """The affine layer at every time step: x (N, T, D), w (D, M), b (M,) -> out (N, T, M)."""
    N, T, D = x.shape
    M = b.shape[0]
    out = (x.reshape(N * T, D) @ w + b).reshape(N, T, M)
    cache = (x, w, b)
    return out, cache


def temporal_affine_backward(dout, cache):
    """affine_backward over the N·T rows: the weights' gradients add up over the steps."""
    x, w, b = cache
    N, T, D = x.shape
    M = b.shape[0]
    dout_rows = dout.reshape(N * T, M)
    dx = (dout_rows @ w.T).reshape(N, T, D)
    dw = x.reshape(N * T, D).T @ dout_rows
    db = dout[:, -1, :].sum(axis=0)  # PLANTED: the last time step only
    return dx, dw, db


def temporal_softmax_loss(x, y, mask):
    """Softmax cross-entropy at every step: x (N, T, V) scores, y (N, T) ids in [0, V),
    mask (N, T) booleans (which steps count). The loss is summed over the steps where mask
    is true and averaged over the N sequences (not over the N·T tokens).
    dx = mask · (softmax(x) − onehot(y)) / N. Stable as softmax_loss."""
    N, T, V = x.shape
    x_rows = x.reshape(N * T, V)
    y_rows = y.reshape(N * T)
    mask_rows = mask.reshape(N * T)
    shifted = x_rows - x_rows.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -np.sum(mask_rows * log_probs[np.arange(N * T), y_rows]) / N
    dx_rows = np.exp(log_probs)
    dx_rows[np.arange(N * T), y_rows] -= 1
    dx_rows /= N
    # PLANTED: the `dx_rows *= mask_rows[:, None]` line is missing (the loss is masked, dx is not)
    dx = dx_rows.reshape(N, T, V)
    return loss, dx
