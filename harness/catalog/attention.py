"""attention: multi-head self-attention on N×T×D batches, backward by hand.

Row-vector convention: an example is T×D, its step t is the row x_t. With H heads of width
d_k = D/H, and c = 1/√d_k:

    Q = x Wq + bq,   K = x Wk + bk,   V = x Wv + bv             (T×D each; W's D×D)
    head h takes the column block h·d_k … (h+1)·d_k − 1 of Q, K and V (as torch does):
    S_h = c Q_h K_hᵀ                                             (T×T: query t, key s)
          causal: S_h[t, s] = −∞ for s > t (query t does not see later keys), before the softmax
    P_h = softmax of each row of S_h                             (row t: query t's weights)
    O_h = P_h V_h                                                (T×d_k)
    O   = [O_1 … O_H]   (the heads side by side, in block order)
    y   = O Wo + bo

Backward, dy = ∂J/∂y, read from the output back (per example; the parameter gradients then
sum over the batch as well as the steps):

    dWo = Oᵀ dy,   dbo = Σ_t dy,   dO = dy Woᵀ                    (a dense layer's three)
    dO_h = column block h of dO
    O_h = P_h V_h:   dP_h = dO_h V_hᵀ,   dV_h = P_hᵀ dO_h
    softmax, one row p = softmax(s) at a time: ∂p/∂s = diag(p) − pᵀp, so
        ds = dp (diag(p) − pᵀp) = p ∘ (dp − Σ_j dp_j p_j)
    (a masked entry has p = 0 and gets ds = 0: no gradient crosses the mask, and the −∞
    never enters the backward's arithmetic)
    S_h = c Q_h K_hᵀ:   dQ_h = c dS_h K_h,   dK_h = c dS_hᵀ Q_h
    dQ = [dQ_1 … dQ_H], dK, dV likewise
    x feeds Q, K and V, so its gradient is the sum of the three paths:
        dx = dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ
    dWq = xᵀ dQ,  dbq = Σ_t dQ   (and the same for K and V)

Two consequences worth knowing when the numbers come out:
- dbk is 0 in exact arithmetic: bk adds q_t·bk to every score of query t's row, and a
  softmax does not see a constant added to its row. Every backend returns rounding noise.
- dbv = Σ_t dO: each row of P sums to 1, so bv passes to O unchanged.

Computed with the three projections as one GEMM, x [Wq Wk Wv] + [bq bk bv], and back,
dx = [dQ dK dV] [Wq Wk Wv]ᵀ: the sum over the three paths is that GEMM's inner dimension.
The heads are an axis (N×H×T×d_k views of the one projection, no copy), so every per-head
product is one batched matmul: no Python loop over examples, heads or steps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .base import Array, Attr, Layer, LayerError, Param, Spec, fan_in, positive, small


def future(T: int) -> Array:
    """T×T, True where key s comes after query t (s > t): what a causal mask hides."""
    return np.triu(np.ones((T, T), dtype=bool), 1)


def split_heads(A: Array, heads: int) -> Array:
    """N×T×D -> N×H×T×d_k: head h is the column block h·d_k … (h+1)·d_k − 1 (a view)."""
    N, T, D = A.shape
    return A.reshape(N, T, heads, D // heads).transpose(0, 2, 1, 3)


def merge_heads(A: Array) -> Array:
    """N×H×T×d_k -> N×T×D, the heads side by side in block order (the inverse of split_heads)."""
    N, H, T, d_k = A.shape
    return A.transpose(0, 2, 1, 3).reshape(N, T, H * d_k)


def softmax_rows(S: Array) -> Array:
    """Softmax of each row (last axis), in place. The row's maximum is subtracted first
    (exp never overflows); a row's −∞ entries become 0, and no row is all −∞ (every query
    sees itself), so no 0/0."""
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S


def softmax_rows_backward(P: Array, dP: Array) -> Array:
    """dS = P ∘ (dP − Σ_j dP_j P_j), row by row: each row is dp (diag(p) − pᵀp), the row
    times the softmax's Jacobian, without forming the T×T Jacobian of every row."""
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))


class Cache(NamedTuple):
    """What the backward reads: the input, the weights, and every product the forward made
    (Q, K, V, P per head; O merged)."""

    x: Array  # N×T×D
    W_qkv: Array  # D×3D: [Wq Wk Wv]
    Wo: Array  # D×D
    Q: Array  # N×H×T×d_k
    K: Array
    V: Array
    P: Array  # N×H×T×T, rows sum to 1, 0 where masked
    O: Array  # N×T×D


class Attention(Layer):
    """Multi-head self-attention: y = [softmax(c Q_h K_hᵀ + mask) V_h]_h Wo + bo (see above)."""

    name = "attention"
    attrs = {
        "heads": Attr((int,), 1, positive, doc="H, dividing D: each head takes D/H columns (default 1)"),
        "causal": Attr((bool,), False, doc="query t sees only keys s ≤ t (default false)"),
    }
    formula = ("Q = x Wq + bq, K = x Wk + bk, V = x Wv + bv; per head h (column block h of Q, K, V, "
               "d_k = D/H): O_h = softmax(Q_h K_hᵀ/√d_k + mask) V_h, rows; y = [O_1 … O_H] Wo + bo")
    derivative = ("dWo = Oᵀ dy, dbo = Σ dy, dO = dy Woᵀ; dP_h = dO_h V_hᵀ, dV_h = P_hᵀ dO_h; "
                  "dS = P ∘ (dP − Σ_j dP_j P_j) per row; dQ_h = dS K_h/√d_k, dK_h = dSᵀ Q_h/√d_k; "
                  "dx = dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ, dWq = xᵀ dQ, dbq = Σ dQ (K, V alike)")
    torch_name = ("nn.MultiheadAttention(D, H, batch_first=True): in_proj_weight = [Wqᵀ; Wkᵀ; Wvᵀ] (rows), "
                  "in_proj_bias = [bq, bk, bv], out_proj.weight = Woᵀ, out_proj.bias = bo; causal: "
                  "attn_mask = −inf above the diagonal (or is_causal with that mask); the harness writes "
                  "softmax(Q_h K_hᵀ/√d_k, masked_fill −inf) V_h in torch ops")
    jax_name = ("flax.linen.MultiHeadDotProductAttention(num_heads=H), or jax.nn.dot_product_attention("
                "q, k, v, is_causal=causal) on N×T×H×d_k; the harness writes softmax(QKᵀ/√d_k) V in jnp "
                "ops, jax.nn.softmax and jnp.where for the mask")
    differences = ("torch's nn.MultiheadAttention stores the transposes (weight is out×in) and the three "
                   "input projections stacked in one in_proj_weight; its attn_mask is additive (−inf) as a "
                   "float and means 'hidden' where True as a bool (the opposite of flax's mask, True = "
                   "attend); need_weights=True (its default) also returns the head-averaged P. flax's "
                   "MultiHeadDotProductAttention keeps per-head kernels D×H×d_k and out H×d_k×D (the same "
                   "numbers reshaped), default dropout 0 but broadcast_dropout on. The key bias bk has a "
                   "zero gradient in exact arithmetic (a constant on each row of scores), which is why "
                   "some models drop it. F.scaled_dot_product_attention's fused CPU kernel (what the "
                   "module runs) left rounding noise on a one-head T = 1 network where the "
                   "query and key gradients are exactly 0 in plain ops, so the harness's torch form uses "
                   "plain ops.")

    def out_shape(self, attrs, in_shape):
        if len(in_shape) != 2:
            raise LayerError("", f"attention needs a [T, D] input per example (T steps of D features), its "
                                 f"input is {list(in_shape)} (give input = [T, D], or keep the layer before "
                                 "any flatten)")
        D, heads = in_shape[1], attrs["heads"]
        if D % heads:
            options = [h for h in range(1, D + 1) if D % h == 0]
            raise LayerError("heads", f"{heads} heads do not divide the width D = {D}: each head takes D/heads "
                                      f"columns (heads could be {', '.join(map(str, options))})")
        return in_shape

    def params(self, spec: Spec) -> dict[str, Param]:
        D = spec.in_shape[1]
        out = {}  # Wq, bq, Wk, bk, Wv, bv, Wo, bo
        for name in "qkvo":
            out[f"W{name}"] = Param((D, D), fan_in, regularised=True)
            out[f"b{name}"] = Param((D,), small)
        return out

    def forward(self, spec, x, p, inp):
        N, T, D = x.shape
        H = spec["heads"]
        d_k = D // H
        W_qkv = np.concatenate([p["Wq"], p["Wk"], p["Wv"]], axis=1)
        b_qkv = np.concatenate([p["bq"], p["bk"], p["bv"]])
        QKV = x.reshape(N * T, D) @ W_qkv  # one GEMM for the three projections
        QKV += b_qkv
        # columns [Q | K | V], each split into H blocks of d_k: axes (which, head, column)
        Q, K, V = QKV.reshape(N, T, 3, H, d_k).transpose(2, 0, 3, 1, 4)  # each N×H×T×d_k, views
        S = Q @ K.swapaxes(-1, -2)
        S *= 1 / math.sqrt(d_k)
        if spec["causal"]:
            np.copyto(S, -np.inf, where=future(T))  # before the softmax: each row still sums to 1
        P = softmax_rows(S)
        O = merge_heads(P @ V)
        y = O @ p["Wo"]
        y += p["bo"]
        return y, Cache(x, W_qkv, p["Wo"], Q, K, V, P, O)

    def backward(self, spec, dy, cache, with_dx=True):
        x, W_qkv, Wo, Q, K, V, P, O = cache
        N, T, D = x.shape
        H = spec["heads"]
        d_k = D // H
        dy2 = dy.reshape(N * T, D)
        dWo, dbo = O.reshape(N * T, D).T @ dy2, dy2.sum(axis=0)
        dO = split_heads(dy @ Wo.T, H)
        dP = dO @ V.swapaxes(-1, -2)
        dS = softmax_rows_backward(P, dP)  # masked entries: P = 0, so dS = 0
        dS *= 1 / math.sqrt(d_k)
        # dQ, dK, dV written straight into the columns [dQ | dK | dV] of one N·T×3D array,
        # head h's block where the forward took it from
        dQKV = np.empty((N, T, 3, H, d_k), dtype=dy.dtype)
        dQ, dK, dV = dQKV.transpose(2, 0, 3, 1, 4)
        np.matmul(dS, K, out=dQ)
        np.matmul(dS.swapaxes(-1, -2), Q, out=dK)
        np.matmul(P.swapaxes(-1, -2), dO, out=dV)
        dQKV = dQKV.reshape(N * T, 3 * D)
        dW_qkv = x.reshape(N * T, D).T @ dQKV  # [xᵀdQ  xᵀdK  xᵀdV], summed over examples and steps
        db_qkv = dQKV.sum(axis=0)
        grads = {}
        for i, name in enumerate("qkv"):
            grads[f"W{name}"], grads[f"b{name}"] = dW_qkv[:, i * D:(i + 1) * D], db_qkv[i * D:(i + 1) * D]
        grads["Wo"], grads["bo"] = dWo, dbo
        if not with_dx:
            return None, grads
        return (dQKV @ W_qkv.T).reshape(N, T, D), grads  # dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ in one GEMM

    def param_backward(self, spec, dy, cache):
        return self.backward(spec, dy, cache, with_dx=False)[1]  # the first layer: no dx GEMM

    def key_bias_terms(self, spec: Spec, dy: Array, cache: Cache) -> Array:
        """Σ|terms| of dbk, one number per element of bk (float64): what bounds the rounding
        of a gradient that is 0 in exact arithmetic (``rounding._zero_sum``).

        dbk = Σ_s dK[s] = c Σ_t Q[t] Σ_s dS[t, s] over examples, and every row of dS sums to
        0 for any dP, Q, K or V when the row of P sums to 1: rounding in the projections or
        in dP = dO Vᵀ moves no arm off 0. What does is the rounding of dS itself (its terms
        P ∘ |dP| and P·Σ_u |dP_u| P_u, the row's sum r), of the row's normalisation (P sums to
        1 within a few ε, which leaves r·(1 − Σ P) on the row), and of the two products and
        the sum that follow, each of which errs by ε times the |terms| summed here:
            c Σ_{examples, s, t} (P[t, s] (|dP[t, s]| + Σ_u |dP[t, u]| P[t, u])) |Q[t]|.
        |dP| is taken from |dO| |V|ᵀ, the terms of dP rather than its cancelled value."""
        Wo, Q, V, P = (np.asarray(a, dtype=np.float64) for a in (cache.Wo, cache.Q, cache.V, cache.P))
        D = cache.x.shape[2]
        H = spec["heads"]
        dO = np.abs(split_heads(np.asarray(dy, dtype=np.float64) @ Wo.T, H))
        dP = dO @ np.abs(V).swapaxes(-1, -2)
        dS = P * (dP + (dP * P).sum(axis=-1, keepdims=True))  # |terms| of each entry of dS
        dK = dS.swapaxes(-1, -2) @ np.abs(Q) / math.sqrt(D // H)  # N×H×T×d_k: |terms| of dK
        return merge_heads(dK).sum(axis=(0, 1))  # over examples and steps, as dbk sums

    def torch(self, spec, fw, x, p, inp):
        N, T, D = x.shape
        H = spec["heads"]

        def heads(A):  # N×T×D -> N×H×T×d_k, column blocks
            return A.reshape(N, T, H, D // H).transpose(1, 2)

        Q, K, V = (heads(x @ p[f"W{n}"] + p[f"b{n}"]) for n in "qkv")
        S = Q @ K.transpose(-1, -2) / math.sqrt(D // H)
        if spec["causal"]:
            S = S.masked_fill(fw.torch.ones(T, T, dtype=fw.torch.bool).triu(1), -math.inf)
        O = fw.torch.softmax(S, dim=-1) @ V
        return O.transpose(1, 2).reshape(N, T, D) @ p["Wo"] + p["bo"]

    def jax(self, spec, fw, x, p, inp):
        jnp = fw.jnp
        N, T, D = x.shape
        H = spec["heads"]
        d_k = D // H

        def heads(A):
            return A.reshape(N, T, H, d_k).transpose(0, 2, 1, 3)

        Q, K, V = (heads(x @ p[f"W{n}"] + p[f"b{n}"]) for n in "qkv")
        S = Q @ jnp.swapaxes(K, -1, -2) / math.sqrt(d_k)
        if spec["causal"]:
            S = jnp.where(jnp.tril(jnp.ones((T, T), dtype=bool)), S, -jnp.inf)
        O = fw.jax.nn.softmax(S, axis=-1) @ V
        return O.transpose(0, 2, 1, 3).reshape(N, T, D) @ p["Wo"] + p["bo"]

    def describe(self, spec):
        return f"attention{spec['heads']}" + (",causal" if spec["causal"] else "")
