"""Backprop in the column-vector convention, numpy only, written apart from manual.py.

Many courses put examples in columns. Then A^[0] = Xᵀ is n_0×m, W^[l] is n_l×n_{l-1},
b^[l] is n_l×1, and
    Z^[l] = W^[l] A^[l-1] + b^[l],          A^[l] = g^[l](Z^[l])
    dZ^[L] = (Ŷ − Ȳ)/m                       (softmax + cross-entropy)
    dW^[l] = dZ^[l] A^[l-1]ᵀ                 db^[l] = row sums of dZ^[l]
    dA^[l-1] = W^[l]ᵀ dZ^[l]                 dZ^[l-1] = dA^[l-1] ∘ g'(Z^[l-1])
Every array is the transpose of its row-convention twin (W_col = W_rowᵀ, Z_col = Z_rowᵀ, ...),
so the two conventions are the same computation read the other way round:
    (a_prev W + b)ᵀ = Wᵀ a_prevᵀ + bᵀ,  (a_prevᵀ dz)ᵀ = dzᵀ a_prev,  (dz Wᵀ)ᵀ = W dzᵀ.
``to_columns`` and ``to_rows`` are the only places where the transposes happen.
Shares only the elementwise g and g' of activations.py (orientation-free); never imports torch or jax.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS, SOFTMAX
from ..model import Model
from ..network import Network
from .base import NotApplicable

Array = np.ndarray


def to_columns(model: Model, arrays: dict[str, Array]) -> dict[str, Array]:
    """Row-convention inputs → column convention: A0 = Xᵀ, Y = Yᵀ, W^[l] = W_rowᵀ, b^[l] = b_rowᵀ."""
    cols = {"A0": arrays["X"].T, "Y": arrays["Y"].T}
    for l in range(1, model.L + 1):
        cols[f"W{l}"], cols[f"b{l}"] = arrays[f"W{l}"].T, arrays[f"b{l}"].T
    return cols


def to_rows(results: dict[str, Array]) -> dict[str, Array]:
    """Column-convention results → the row-convention keys the harness compares: transpose all."""
    return {k: np.ascontiguousarray(v.T) for k, v in results.items()}


def _softmax_cols(Z: Array) -> Array:
    E = np.exp(Z - Z.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


def _log_softmax_cols(Z: Array) -> Array:
    S = Z - Z.max(axis=0, keepdims=True)
    return S - np.log(np.exp(S).sum(axis=0, keepdims=True))


class ManualColumnsBackend:
    name = "manual_columns"
    kind = "analytic"

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):
            return _dense_network(model, arrays)
        c = to_columns(model, arrays)
        L, Y = model.L, c["Y"]
        m = Y.shape[1]
        acts = model.activations

        A, Z = {0: c["A0"]}, {}
        for l in range(1, L + 1):
            Z[l] = c[f"W{l}"] @ A[l - 1] + c[f"b{l}"]
            A[l] = _softmax_cols(Z[l]) if acts[l - 1] == SOFTMAX else ACTIVATIONS[acts[l - 1]].g(Z[l])

        ZL, AL = Z[L], A[L]
        if model.loss == "cross_entropy":
            losses = -(Y * _log_softmax_cols(ZL)).sum(axis=0)
            dZ = AL - Y
        elif model.loss == "binary_cross_entropy":
            losses = (np.maximum(ZL, 0) - ZL * Y + np.log1p(np.exp(-np.abs(ZL)))).sum(axis=0)
            dZ = AL - Y
        else:  # half_sse
            losses = 0.5 * ((AL - Y) ** 2).sum(axis=0)
            dA = AL - Y
            if acts[-1] == SOFTMAX:  # (diag(ŷ) − ŷŷᵀ) dA, one column per example
                dZ = AL * (dA - (dA * AL).sum(axis=0, keepdims=True))
            else:
                dZ = dA * ACTIVATIONS[acts[-1]].g_prime(ZL)
        dZ = dZ / m
        J = losses.sum() / m

        out: dict[str, Array] = {}
        for l in range(L, 0, -1):
            out[f"dz{l}"] = dZ
            out[f"dW{l}"] = dZ @ A[l - 1].T
            out[f"db{l}"] = dZ.sum(axis=1, keepdims=True)
            if l > 1:
                dA_prev = c[f"W{l}"].T @ dZ
                out[f"da{l - 1}"] = dA_prev
                dZ = dA_prev * ACTIVATIONS[acts[l - 2]].g_prime(Z[l - 1])
        for l in range(1, L + 1):
            out[f"z{l}"], out[f"a{l}"] = Z[l], A[l]
        rows = to_rows(out)
        rows["J"] = np.asarray(J)
        return rows


def _g_cols(name: str, Z: Array) -> Array:
    return _softmax_cols(Z) if name == SOFTMAX else ACTIVATIONS[name].g(Z)


def _dZ_cols(name: str, dA: Array, Z: Array, A: Array) -> Array:
    """dA through g: elementwise g', or the softmax Jacobian (diag(ŷ) − ŷŷᵀ) dA per column."""
    if name == SOFTMAX:
        return A * (dA - (dA * A).sum(axis=0, keepdims=True))
    return dA * ACTIVATIONS[name].g_prime(Z)


def _dense_network(net: Network, arrays: dict[str, Array]) -> dict[str, Array]:
    """A catalog network of dense layers (each with or without bias and fused activation), in
    columns: Z^[i] = W^[i] A^[i-1] + b^[i], A^[i] = g(Z^[i]); the losses written for columns;
    L2 adds 2c·W^[i] to dW^[i] for the term c·Σ W². Other layers: not applicable."""
    others = [s for s in net.network if s.kind != "dense"]
    if others:
        raise NotApplicable(f"manual_columns covers networks of dense layers only; layer "
                            f"{others[0].index} is {others[0].kind}")
    X = arrays["X"]
    if X.ndim != 2:
        raise NotApplicable("manual_columns covers 2-D inputs (one row per example) only")
    m = X.shape[0]
    Y = arrays["Y"].T
    A, Z = {0: X.T}, {}
    for spec in net.network:
        i = spec.index
        W = arrays[f"W{i}"].T
        Z[i] = W @ A[i - 1] + (arrays[f"b{i}"].T if spec["bias"] else 0.0)
        A[i] = _g_cols(spec.activation, Z[i]) if spec.activation else Z[i]
    S = A[net.L]  # the scores: one column per example
    if net.loss == "cross_entropy":
        losses = -(Y * _log_softmax_cols(S)).sum(axis=0)
        dS = _softmax_cols(S) - Y
    elif net.loss == "binary_cross_entropy":
        losses = (np.maximum(S, 0) - S * Y + np.log1p(np.exp(-np.abs(S)))).sum(axis=0)
        dS = 0.5 * (1 + np.tanh(S / 2)) - Y  # σ(s) written as tanh: independent of the rows' form
    elif net.loss == "half_sse":
        losses = 0.5 * ((S - Y) ** 2).sum(axis=0)
        dS = S - Y
    else:  # multiclass_hinge: margins s_j − s_y + 1 over j ≠ y, one column per example
        margins = S - (S * Y).sum(axis=0, keepdims=True) + 1
        losses = (np.maximum(margins, 0) * (1 - Y)).sum(axis=0)
        active = (margins > 0) * (1 - Y)
        dS = active - Y * active.sum(axis=0, keepdims=True)
    c = net.l2_coefficient(m)
    weights = [arrays[f"W{s.index}"] for s in net.network]
    J = losses.sum() / m + (c * sum(float((W * W).sum()) for W in weights) if c else 0.0)
    out: dict[str, Array] = {}
    dA = dS / m
    for spec in reversed(net.network):
        i = spec.index
        out[f"da{i}"] = dA
        dZ = _dZ_cols(spec.activation, dA, Z[i], A[i]) if spec.activation else dA
        if spec.activation:
            out[f"dz{i}"], out[f"z{i}"] = dZ, Z[i]
        out[f"a{i}"] = A[i]
        W = arrays[f"W{i}"].T
        out[f"dW{i}"] = dZ @ A[i - 1].T + (2 * c * W if c else 0.0)
        if spec["bias"]:
            out[f"db{i}"] = dZ.sum(axis=1, keepdims=True)
        dA = W.T @ dZ
    rows = to_rows(out)
    rows["J"] = np.asarray(J, dtype=X.dtype)
    return rows
