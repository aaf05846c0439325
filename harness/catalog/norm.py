"""batchnorm (training mode) and layernorm: the same normalisation over different axes.

Both compute, over a set of m values of one feature (batchnorm: the batch, and the
positions or steps; layernorm: one example's features),
    μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²  (biased),   x̂ = (x − μ)/√(σ² + eps),
    y = γ ∘ x̂ + β
and the backward, with dx̂ = dy ∘ γ and σ = √(σ² + eps), in its compact form
    dx = (1/(m σ)) (m dx̂ − Σ dx̂ − x̂ ∘ Σ (dx̂ ∘ x̂))
    dγ = Σ dy ∘ x̂,   dβ = Σ dy      (these two summed over everything but the feature)
The Σ dx̂ and x̂ Σ(dx̂ x̂) terms are μ's and σ's own dependence on x: dropping them treats
the statistics as constants, the most common mistake.
Layer norm is batch norm transposed: the sums run along the other axis.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Attr, Layer, LayerError, Param, small

EPS = 1e-5


def _eps(e: float) -> str | None:
    return None if 0 < e <= 1 else f"must be in (0, 1], got {e}"


def _near_one(rng: np.random.Generator, shape) -> np.ndarray:
    return 1.0 + 0.1 * rng.standard_normal(shape)


def normalise(x, axes, eps):
    """x̂ and 1/σ over ``axes`` (kept), biased variance."""
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    inv_sigma = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + eps)
    return xc * inv_sigma, inv_sigma


def normalise_backward(dx_hat, x_hat, inv_sigma, axes):
    """The compact form: dx = (1/(mσ)) (m dx̂ − Σ dx̂ − x̂ ∘ Σ(dx̂ ∘ x̂)), sums over ``axes``."""
    m = math.prod(dx_hat.shape[a] for a in axes)
    return (inv_sigma / m) * (m * dx_hat - dx_hat.sum(axis=axes, keepdims=True)
                              - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))


class _Norm(Layer):
    attrs = {"eps": Attr((int, float), EPS, _eps, doc="added to σ² (default 1e-5)")}

    def feature_axis(self, ndim: int) -> int:
        raise NotImplementedError

    def axes(self, ndim: int) -> tuple[int, ...]:
        """The axes the statistics are taken over, for an array of ``ndim`` (batch first)."""
        raise NotImplementedError

    def _bshape(self, ndim: int, n: int) -> tuple[int, ...]:
        shape = [1] * ndim
        shape[self.feature_axis(ndim)] = n
        return tuple(shape)

    def params(self, spec):
        n = spec.in_shape[self.feature_axis(len(spec.in_shape) + 1) - 1]
        return {"gamma": Param((n,), _near_one), "beta": Param((n,), small)}

    def forward(self, spec, x, p, inp):
        axes = self.axes(x.ndim)
        bshape = self._bshape(x.ndim, p["gamma"].size)
        x_hat, inv_sigma = normalise(x, axes, spec["eps"])
        y = p["gamma"].reshape(bshape) * x_hat + p["beta"].reshape(bshape)
        return y, (x_hat, inv_sigma, p["gamma"].reshape(bshape))

    def backward(self, spec, dy, cache):
        x_hat, inv_sigma, gamma = cache
        axes = self.axes(dy.ndim)
        others = tuple(a for a in range(dy.ndim) if a != self.feature_axis(dy.ndim))
        grads = {"gamma": (dy * x_hat).sum(axis=others), "beta": dy.sum(axis=others)}
        return normalise_backward(dy * gamma, x_hat, inv_sigma, axes), grads

    def describe(self, spec):
        return self.name if spec["eps"] == EPS else f"{self.name}(eps={spec['eps']:g})"


class BatchNorm(_Norm):
    """Batch norm in training mode: statistics of each feature over the batch (and over the
    positions of a [C, H, W] input, or the steps of a [T, D] input)."""

    name = "batchnorm"
    couples_examples = True
    formula = "y = γ (x − μ_B)/√(σ_B² + eps) + β, per feature over the batch"
    derivative = ("dx = (1/(mσ))(m dx̂ − Σ dx̂ − x̂ Σ dx̂∘x̂), dx̂ = dy∘γ; dγ = Σ dy∘x̂, dβ = Σ dy "
                  "(Σ and m over a feature's values: the batch, and its positions or steps)")
    torch_name = "F.batch_norm(x, None, None, γ, β, training=True, eps=eps)"
    jax_name = "jax.nn.standardize(x, axis=batch axes, epsilon=eps, algorithm='stable') * γ + β"
    differences = ("Normalisation uses the biased variance in both frameworks (and here); torch's "
                   "running_var, which this check does not use, is updated with the unbiased one. "
                   "jax.nn.standardize (and flax) default to algorithm='fast', σ² = E[x²] − E[x]², "
                   "which cancels when |μ| ≫ σ; the harness asks for the two-pass 'stable' form.")

    def feature_axis(self, ndim):
        return 1 if ndim == 4 else ndim - 1  # N×C×H×W: channels; N×n and N×T×D: the last

    def axes(self, ndim):
        return tuple(a for a in range(ndim) if a != self.feature_axis(ndim))

    def check_batch(self, spec, batch):
        if batch * math.prod(spec.in_shape) // spec.in_shape[self.feature_axis(len(spec.in_shape) + 1) - 1] < 2:
            return ("batchnorm over a batch of 1 with one value per feature (no positions or steps): each "
                    "value is its own mean, so the variance is 0 and x̂ is 0 (use batch >= 2)")
        return None

    def torch(self, spec, fw, x, p, inp):
        F = fw.F
        if x.ndim == 3:  # N×T×D: torch wants the features at dim 1
            return F.batch_norm(x.transpose(1, 2), None, None, p["gamma"], p["beta"], training=True,
                                eps=spec["eps"]).transpose(1, 2)
        return F.batch_norm(x, None, None, p["gamma"], p["beta"], training=True, eps=spec["eps"])

    def jax(self, spec, fw, x, p, inp):
        bshape = self._bshape(x.ndim, p["gamma"].size)
        x_hat = fw.jax.nn.standardize(x, axis=self.axes(x.ndim), epsilon=spec["eps"],
                                        algorithm="stable")
        return p["gamma"].reshape(bshape) * x_hat + p["beta"].reshape(bshape)


class LayerNorm(_Norm):
    """Layer norm: statistics of each example (each step) over its features, the last axis."""

    name = "layernorm"
    formula = "y = γ (x − μ)/√(σ² + eps) + β, per example over the last axis"
    derivative = ("dx = (1/(Dσ))(D dx̂ − Σ_f dx̂ − x̂ Σ_f dx̂∘x̂), dx̂ = dy∘γ (Σ_f over the D features "
                  "of one row); dγ = Σ_rows dy∘x̂, dβ = Σ_rows dy")
    torch_name = "F.layer_norm(x, (D,), γ, β, eps=eps)"
    jax_name = "jax.nn.standardize(x, axis=-1, epsilon=eps, algorithm='stable') * γ + β"
    differences = ("Both frameworks use the biased variance and eps inside the square root; "
                   "jax.nn.standardize's default algorithm='fast' is avoided as for batchnorm.")

    def out_shape(self, attrs, in_shape):
        if len(in_shape) == 3:
            raise LayerError("", f"layernorm on a [C, H, W] input {list(in_shape)} would normalise each "
                                 "row of each channel (the last axis) alone: use batchnorm (per channel), "
                                 "or add {layer = \"flatten\"} before it")
        if in_shape[-1] < 2:
            raise LayerError("", f"layernorm over {in_shape[-1]} feature: x̂ is always 0 (needs at "
                                 "least 2 features on the last axis)")
        return in_shape

    def feature_axis(self, ndim):
        return ndim - 1

    def axes(self, ndim):
        return (ndim - 1,)

    def torch(self, spec, fw, x, p, inp):
        return fw.F.layer_norm(x, (x.shape[-1],), p["gamma"], p["beta"], eps=spec["eps"])

    def jax(self, spec, fw, x, p, inp):
        x_hat = fw.jax.nn.standardize(x, axis=-1, epsilon=spec["eps"], algorithm="stable")
        return p["gamma"] * x_hat + p["beta"]
