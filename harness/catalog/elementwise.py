"""Activations as layers of their own (relu, tanh, ...) and softmax over the last axis.

The definitions (g, g', the framework forms and their constants) live in
``harness.activations``; a layer here only says how the network applies them.
"""

from __future__ import annotations

import numpy as np

from .. import activations as act
from .base import Layer


def act_backward(name: str, dy, z, y):
    """∂J/∂z from ∂J/∂a for a = g(z): dy ∘ g'(z) for an elementwise g; for softmax the
    row-times-Jacobian product dy (diag(ŷ) − ŷᵀŷ) = ŷ ∘ (dy − Σ_k dy_k ŷ_k), on the last axis."""
    if name == act.SOFTMAX:
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return act.times_g_prime(name, dy, z)


def act_kinks(name: str, z):
    """Which side of each kink z is on (an integer per element), or None for a smooth g."""
    kinks = act.ACTIVATIONS[name].kinks if name in act.ACTIVATIONS else ()
    if not kinks:
        return None
    return sum(np.sign(z - k).astype(np.int8) for k in kinks)


class Activation(Layer):
    """a = g(z) elementwise, z the layer's input; backward dz = da ∘ g'(z) (the diagonal
    Jacobian diag(g'(z)))."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.attrs = {}
        if name == act.SOFTMAX:
            self.formula = "ŷ = e^z / Σ_k e^(z_k), over the last axis"
            self.derivative = "dz = ŷ ∘ (dŷ − Σ_k dŷ_k ŷ_k)  (Jacobian diag(ŷ) − ŷᵀŷ)"
        else:
            a = act.ACTIVATIONS[name]
            self.formula, self.derivative = f"a = {a.formula}", f"dz = da ∘ g'(z), g'(z) = {a.derivative}"
        self.torch_name = act.DEFINITIONS[name]["torch"]
        self.jax_name = act.DEFINITIONS[name]["jax"]

    def forward(self, spec, x, p, inp):
        y = act.forward(self.name, x)
        return y, (x, y)

    def backward(self, spec, dy, cache):
        x, y = cache
        return act_backward(self.name, dy, x, y), {}

    def torch(self, spec, fw, x, p, inp):
        return act.TORCH[self.name](fw.torch, fw.F, x)

    def jax(self, spec, fw, x, p, inp):
        return act.JAX[self.name](fw.jax, fw.jnp, x)

    def kink_sides(self, spec, x):
        return act_kinks(self.name, x)


ACTIVATION_LAYERS = [Activation(n) for n in act.ALL_NAMES]
