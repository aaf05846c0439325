"""The reference: backprop written from the formulas, numpy only (row-vector convention).

Forward, layer by layer, caching z^[l] and a^[l]:
    z^[l] = a^[l-1] W^[l] + b^[l],   a^[l] = g^[l](z^[l]),   a^[0] = X
Backward, from the output down:
    dz^[L] = ∂J/∂z^[L]                      (ŷ − ȳ)/m for softmax + cross-entropy
    dW^[l] = a^[l-1]ᵀ dz^[l]                db^[l] = column sums of dz^[l]
    da^[l-1] = dz^[l] W^[l]ᵀ                dz^[l-1] = da^[l-1] ∘ g'(z^[l-1])
Here d· means ∂J/∂·, so the 1/m of J = (1/m) Σᵢ 𝓛⁽ⁱ⁾ enters once, in dz^[L].
This module never imports torch or jax.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS, SOFTMAX, forward as g, times_g_prime
from ..losses import cost
from ..model import Model
from ..network import Network, backprop

Array = np.ndarray


def forward_pass(model: Model, arrays: dict[str, Array]) -> tuple[dict[int, Array], dict[int, Array]]:
    """Return the caches z[l] and a[l] (a[0] = X) for l = 1..L."""
    a: dict[int, Array] = {0: arrays["X"]}
    z: dict[int, Array] = {}
    for l in range(1, model.L + 1):
        W, b = arrays[f"W{l}"], arrays[f"b{l}"]
        z[l] = a[l - 1] @ W
        z[l] += b  # into the product's own fresh array: one m×n_l array per z, not two
        a[l] = g(model.activations[l - 1], z[l])
    return z, a


def output_delta(model: Model, z_L: Array, a_L: Array, Y: Array) -> Array:
    """∂𝓛/∂z^[L] for every example (one row each), before the 1/m of the mean."""
    if model.loss == "cross_entropy":  # softmax + cross-entropy: ŷ − ȳ
        return a_L - Y
    if model.loss == "binary_cross_entropy":  # sigmoid + BCE: a − y, per output
        return a_L - Y
    # half_sse: ∂𝓛/∂a^[L] = a − y, then through the output activation's Jacobian.
    da = a_L - Y
    if model.activations[-1] == SOFTMAX:
        # row · (diag(ŷ) − ŷᵀŷ)  =  ŷ ∘ (da − (da·ŷ))
        return a_L * (da - (da * a_L).sum(axis=1, keepdims=True))
    return da * ACTIVATIONS[model.activations[-1]].g_prime(z_L)


class ManualBackend:
    """Hand-written backprop. ``gradients`` returns J, dW1, db1, ..., dWL, dbL and the
    per-layer z{l}, a{l}, dz{l}, da{l}."""

    name = "manual"
    kind = "analytic"

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):  # a stack of catalog layers: each one's own backward
            return backprop(model, arrays)
        z, a = forward_pass(model, arrays)
        L, Y = model.L, arrays["Y"]
        m = arrays["X"].shape[0]
        grads: dict[str, Array] = {"J": np.asarray(cost(model.loss, z[L], a[L], Y))}
        for l in range(1, L + 1):
            grads[f"z{l}"], grads[f"a{l}"] = z[l], a[l]

        dz = output_delta(model, z[L], a[L], Y) / m  # ∂J/∂z^[L]
        for l in range(L, 0, -1):
            a_prev, W = a[l - 1], arrays[f"W{l}"]
            grads[f"dz{l}"] = dz
            grads[f"dW{l}"] = a_prev.T @ dz
            grads[f"db{l}"] = dz.sum(axis=0, keepdims=True)
            if l > 1:
                da_prev = dz @ W.T  # ∂J/∂a^[l-1]
                grads[f"da{l - 1}"] = da_prev
                dz = times_g_prime(model.activations[l - 2], da_prev, z[l - 1])  # da^[l-1] ∘ g'(z^[l-1])
        return grads
