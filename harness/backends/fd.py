"""Finite differences of J: "the nudge", done as a central difference in float64.

For each checked parameter θ_i:
    ∂J/∂θ_i ≈ (J(θ + h e_i) − J(θ − h e_i)) / ((θ_i + h) − (θ_i − h))
Step rule: h = ε_64^(1/3) · max(1, |θ_i|) ≈ 6.1e-6 · max(1, |θ_i|). For a central
difference the truncation error grows as h² and the round-off as ε/h; ε^(1/3)
balances the two (error ~ ε^(2/3) ≈ 4e-11 relative). The denominator is the step
actually represented in floating point, not the nominal 2h.

Precision: J is always evaluated in float64, also for a float32 case (the float32
inputs are exactly representable in float64). A float32 central difference could
not get better than about ε_32^(2/3) ≈ 2e-5, too coarse to check anything; the
result is cast back to the case dtype.

Cost: two forward passes per checked coordinate. The perturbed forward passes are
batched: ``chunk`` copies of the network run at once along a leading axis. A case
with more than ``max_coords`` parameters is checked on a seeded random sample of
coordinates; the others are returned masked (numpy.ma) and not compared.
"""

from __future__ import annotations

import numpy as np

from ..activations import forward as g
from ..losses import cost
from ..model import Model

Array = np.ndarray

H0 = float(np.finfo(np.float64).eps) ** (1 / 3)


def cost_of(model: Model, params: dict[str, Array], X: Array, Y: Array) -> Array:
    """J for parameters that may carry a leading batch-of-networks axis (K, ...)."""
    a = X
    for l in range(1, model.L + 1):
        z = a @ params[f"W{l}"] + params[f"b{l}"]
        a = g(model.activations[l - 1], z)
    return cost(model.loss, z, a, Y)


class FiniteDifferenceBackend:
    name = "fd"
    kind = "finite_difference"

    def __init__(self, max_coords: int = 2000, seed: int = 0, chunk_elems: int = 2_000_000) -> None:
        self.max_coords, self.seed, self.chunk_elems = max_coords, seed, chunk_elems

    def gradients(self, model: Model, arrays: dict[str, Array]) -> dict[str, Array]:
        f64 = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k != "y"}
        X, Y = f64["X"], f64["Y"]
        params = {k: f64[k] for k in model.param_shapes()}
        out: dict[str, Array] = {"J": np.asarray(cost_of(model, params, X, Y), dtype=model.np_dtype)}

        chosen = self._coordinates(model)
        m, width = X.shape[0], max(model.layers)
        for name, idx in chosen.items():
            theta = params[name]
            # Bound the memory of one batched pass: 2·chunk copies of θ and of the activations.
            chunk = max(1, self.chunk_elems // (2 * max(m * width, theta.size)))
            grad = np.zeros(theta.size)
            for start in range(0, len(idx), chunk):
                grad[idx[start:start + chunk]] = self._central(model, params, name, idx[start:start + chunk], X, Y)
            checked = np.zeros(theta.size, dtype=bool)
            checked[idx] = True
            value = grad.reshape(theta.shape).astype(model.np_dtype)
            mask = ~checked.reshape(theta.shape)
            out[f"d{name}"] = np.ma.MaskedArray(value, mask=mask) if mask.any() else value
        return out

    def _coordinates(self, model: Model) -> dict[str, Array]:
        """Flat indices to check per parameter: all, or a seeded uniform sample."""
        shapes = model.param_shapes()
        sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
        total = sum(sizes.values())
        if total <= self.max_coords:
            return {k: np.arange(n) for k, n in sizes.items()}
        rng = np.random.default_rng(self.seed)
        flat = np.sort(rng.choice(total, size=self.max_coords, replace=False))
        offsets = np.cumsum([0] + list(sizes.values()))
        return {k: flat[(flat >= lo) & (flat < hi)] - lo
                for k, lo, hi in zip(sizes, offsets[:-1], offsets[1:])}

    def _central(self, model: Model, params: dict[str, Array], name: str, idx: Array,
                 X: Array, Y: Array) -> Array:
        """Central differences for coordinates ``idx`` of ``name``, as one batched pass."""
        theta = params[name].ravel()
        k = len(idx)
        h = H0 * np.maximum(1.0, np.abs(theta[idx]))
        plus, minus = theta[idx] + h, theta[idx] - h
        stacked = np.broadcast_to(theta, (2 * k, theta.size)).copy()
        rows = np.arange(k)
        stacked[rows, idx] = plus
        stacked[k + rows, idx] = minus
        batched = dict(params)
        batched[name] = stacked.reshape((2 * k,) + params[name].shape)
        J = cost_of(model, batched, X, Y)
        return (J[:k] - J[k:]) / (plus - minus)
