"""dropout, inverted, with the mask as an input: every backend drops the same units."""

from __future__ import annotations

import functools

import numpy as np

from .base import Attr, Layer


def _rate(p: float) -> str | None:
    return None if 0 <= p < 1 else f"must be in [0, 1) (the probability of dropping), got {p}"


def _keep_mask(p: float, rng: np.random.Generator, shape) -> np.ndarray:
    """1 where a unit is kept (probability 1 − p). Module level, bound with functools.partial:
    a Network is pickled to plugin processes."""
    return (rng.random(shape) >= p).astype(np.float64)


class Dropout(Layer):
    """Inverted dropout in training mode: a = x ∘ mask / (1 − p), mask ∈ {0, 1}.

    The mask is not drawn inside the layer (torch and jax would each draw their own): it
    is the input ``mask{i}``, drawn from the case seed (kept with probability 1 − p),
    saved in inputs.npz and overridable in ``[case.values]``. Then the layer is linear in x
    with a diagonal Jacobian, and the backward uses the *same* mask and scale:
        dx = da ∘ mask / (1 − p)
    """

    name = "dropout"
    attrs = {"rate": Attr((int, float), check=_rate, doc="p, the probability of dropping a unit")}
    formula = "a = x ∘ mask / (1 − p)"
    derivative = "dx = da ∘ mask / (1 − p)"
    torch_name = "x * mask / (1 - p) (F.dropout draws its own mask)"
    jax_name = "x * mask / (1 - p) (flax's Dropout draws its own mask)"
    differences = ("The frameworks draw the mask inside the layer; here it is an input, so that "
                   "every backend uses the same one.")

    def inputs(self, spec, batch):
        p = float(spec["rate"])
        return {"mask": ((batch, *spec.in_shape), functools.partial(_keep_mask, p))}

    def check_input(self, spec, name, value):
        bad = (value != 0) & (value != 1)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"a dropout mask holds 0 and 1 only; found {value[idx]} at index {idx}"
        return None

    def forward(self, spec, x, p, inp):
        mask = inp["mask"]
        return x * mask / (1 - spec["rate"]), mask

    def backward(self, spec, dy, mask):
        return dy * mask / (1 - spec["rate"]), {}

    def torch(self, spec, fw, x, p, inp):
        return x * inp["mask"] / (1 - spec["rate"])

    def jax(self, spec, fw, x, p, inp):
        return x * inp["mask"] / (1 - spec["rate"])

    def describe(self, spec):
        return f"dropout({spec['rate']:g})"
