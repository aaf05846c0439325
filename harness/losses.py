"""The losses 𝓛 and the cost J = (1/m) Σᵢ 𝓛⁽ⁱ⁾, in numpy (stable forms).

Shared by the numpy backends (manual, fd); torch and JAX compute the same
quantities with their own ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .activations import log_softmax

Array = np.ndarray


@dataclass(frozen=True)
class Loss:
    name: str
    formula: str
    output_activation: str | None  # required output activation, None = any
    default_output: str  # used when a case names only the hidden activation
    targets: str  # what Y holds


LOSSES: dict[str, Loss] = {
    l.name: l
    for l in [
        Loss(
            "cross_entropy",
            "𝓛 = −ȳ·log ŷ = −log ŷ_y, ŷ = softmax(z^[L])",
            "softmax",
            "softmax",
            "class indices y ∈ {0..N−1} (Y is their one-hot ȳ)",
        ),
        Loss(
            "binary_cross_entropy",
            "𝓛 = −Σ_k [y_k log a_k + (1 − y_k) log(1 − a_k)], a = σ(z^[L])",
            "sigmoid",
            "sigmoid",
            "Y ∈ [0, 1], one column per output",
        ),
        Loss(
            "half_sse",
            "𝓛 = ½ Σ_k (a_k − y_k)²",
            None,
            "identity",
            "Y real, one column per output",
        ),
    ]
}


def per_example_loss(loss: str, z_L: Array, a_L: Array, Y: Array) -> Array:
    """𝓛⁽ⁱ⁾ for every row (works with extra leading axes). Stable for |z| ~ 1e3."""
    if loss == "cross_entropy":
        return -(Y * log_softmax(z_L)).sum(axis=-1)
    if loss == "binary_cross_entropy":
        # From the logits: −[y log σ(z) + (1−y) log σ(−z)] = max(z,0) − z y + log(1 + e^−|z|)
        return (np.maximum(z_L, 0) - z_L * Y + np.log1p(np.exp(-np.abs(z_L)))).sum(axis=-1)
    if loss == "half_sse":
        return 0.5 * ((a_L - Y) ** 2).sum(axis=-1)
    raise ValueError(f"unknown loss {loss!r}")


def cost(loss: str, z_L: Array, a_L: Array, Y: Array) -> Array:
    """J = (1/m) Σᵢ 𝓛⁽ⁱ⁾, the mean over the batch axis (the last-but-one)."""
    return per_example_loss(loss, z_L, a_L, Y).mean(axis=-1)
