"""How much rounding a correct implementation may make on this very case: a running error
bound from the magnitudes of the terms that produce each quantity.

Floating-point sums and products err by about ε times the sum of the |terms|, not times
|result|: where terms cancel (a small dW element from large a·dz products, ŷ − ȳ on a
well-fitted example, 1 − tanh²(z) at a saturated unit, a z^[1] summed from inputs of scale
30) the result can be tiny while its rounding error is not. This module propagates those
term magnitudes T through the forward and backward pass on |·| values (T_z = T_a|W| + |b|,
T_dW = T_aᵀ T_dz, ...), and the comparison allows FLOOR_FACTOR · ε · T per element on top of
the tolerance table. Where the case is well conditioned this floor is far below atol·s and
changes nothing; a wrong gradient is off by far more than rounding.
"""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX, forward as g
from .cases import Case

Array = np.ndarray
FLOOR_FACTOR = 8.0
NO_CURVATURE = {"identity", "relu", "leaky_relu"}  # g'' = 0 away from the kink; elsewhere |g''| ≤ 1


def term_magnitudes(case: Case, inputs: dict[str, Array]) -> dict[str, Array]:
    """T for every quantity (same shapes), in float64: the |terms| each is computed from."""
    model = case.model
    L, acts = model.L, model.activations
    f = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items() if k != "y"}
    X, Y = f["X"], f["Y"]
    m = X.shape[0]
    W = {l: f[f"W{l}"] for l in range(1, L + 1)}
    aW = {l: np.abs(W[l]) for l in W}
    ab = {l: np.abs(f[f"b{l}"]) for l in W}

    z, a, gp, T = {}, {0: X}, {}, {"a0": np.abs(X)}
    for l in range(1, L + 1):
        z[l] = a[l - 1] @ W[l] + f[f"b{l}"]
        a[l] = g(acts[l - 1], z[l])
        T[f"z{l}"] = T[f"a{l - 1}"] @ aW[l] + ab[l]
        gp[l] = (np.abs(a[l]) if acts[l - 1] == SOFTMAX else np.abs(ACTIVATIONS[acts[l - 1]].g_prime(z[l])))
        T[f"a{l}"] = np.abs(a[l]) + gp[l] * T[f"z{l}"]

    zL, TzL = np.abs(z[L]), T[f"z{L}"]
    if model.loss == "cross_entropy":  # log-sum-exp minus z_y: terms of the size of the logits
        T["J"] = np.asarray(np.mean(2 * (zL + TzL).max(axis=1) + 1))
        T_dz = (np.abs(a[L]) + np.abs(Y) + gp[L] * TzL) / m
    elif model.loss == "binary_cross_entropy":
        T["J"] = np.asarray(np.mean((zL + TzL + 1).sum(axis=1)))
        T_dz = (np.abs(a[L]) + np.abs(Y) + gp[L] * TzL) / m
    else:
        resid = T[f"a{L}"] + np.abs(Y)
        T["J"] = np.asarray(np.mean((resid ** 2).sum(axis=1)))
        T_dz = (resid * gp[L] + np.abs(a[L] - Y) * (1 + TzL)) / m

    for l in range(L, 0, -1):
        T[f"dz{l}"] = T_dz
        T[f"dW{l}"] = T[f"a{l - 1}"].T @ T_dz
        T[f"db{l}"] = T_dz.sum(axis=0, keepdims=True)
        if l > 1:
            T_da = T_dz @ aW[l].T
            T[f"da{l - 1}"] = T_da
            da = np.abs(T_da)  # |da| ≤ T_da: bounds the size of da where g'(z) errs
            curvature = 0.0 if acts[l - 2] in NO_CURVATURE else 1.0
            T_dz = T_da * gp[l - 1] + da * (1 + gp[l - 1] + curvature * T[f"z{l - 1}"])
    T.pop("a0")
    return T


def rounding_floor(case: Case, inputs: dict[str, Array]) -> dict[str, Array]:
    """FLOOR_FACTOR · ε(case dtype) · T per quantity: the per-element allowance for rounding."""
    eps = float(np.finfo(case.model.np_dtype).eps)
    with np.errstate(all="ignore"):
        return {q: FLOOR_FACTOR * eps * t for q, t in term_magnitudes(case, inputs).items()}
