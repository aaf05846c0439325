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

The per-layer ∂J/∂z^[l] and ∂J/∂a^[l] are nudged the same way: perturb one element of
z^[l] (or a^[l]) and run only the layers above it. Their sample budget is separate.
"""

from __future__ import annotations

import numpy as np

from ..activations import forward as g
from ..losses import cost
from ..model import Model

Array = np.ndarray

H0 = float(np.finfo(np.float64).eps) ** (1 / 3)


def cost_from(model: Model, params: dict[str, Array], Y: Array, l: int, *,
              z: Array | None = None, a: Array | None = None) -> Array:
    """J as a function of z^[l] (given ``z``) or of a^[l] (given ``a``); layers above l run as usual.

    Any argument may carry a leading batch-of-networks axis (K, ...); J then has shape (K,).
    ``cost_from(model, params, Y, 0, a=X)`` is the ordinary forward pass.
    """
    if z is not None:
        a = g(model.activations[l - 1], z)
    for k in range(l + 1, model.L + 1):
        z = a @ params[f"W{k}"] + params[f"b{k}"]
        a = g(model.activations[k - 1], z)
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
        dt = model.np_dtype
        self._act_elems = X.shape[0] * max(model.layers)  # one network's activations, for chunking
        out: dict[str, Array] = {"J": np.asarray(cost_from(model, params, Y, 0, a=X), dtype=dt)}

        # ∂J/∂W^[l], ∂J/∂b^[l]: nudge one parameter, run the whole forward pass.
        def by_param(name: str, stacked: Array) -> Array:
            return cost_from(model, {**params, name: stacked}, Y, 0, a=X)

        for name, idx in self._coordinates({k: v.size for k, v in params.items()}).items():
            out[f"d{name}"] = self._nudge(params[name], idx, lambda st, n=name: by_param(n, st), dt)

        # The forward values, and ∂J/∂z^[l], ∂J/∂a^[l]: nudge the intermediate, run the layers above.
        zs, as_ = {}, {0: X}
        for l in range(1, model.L + 1):
            zs[l] = as_[l - 1] @ params[f"W{l}"] + params[f"b{l}"]
            as_[l] = g(model.activations[l - 1], zs[l])
            out[f"z{l}"], out[f"a{l}"] = zs[l].astype(dt), as_[l].astype(dt)
        values = {f"z{l}": zs[l] for l in zs} | {f"a{l}": as_[l] for l in range(1, model.L)}
        for key, idx in self._coordinates({k: v.size for k, v in values.items()}).items():
            l = int(key[1:])
            f = ((lambda st, l=l: cost_from(model, params, Y, l, z=st)) if key[0] == "z"
                 else (lambda st, l=l: cost_from(model, params, Y, l, a=st)))
            out[f"d{key}"] = self._nudge(values[key], idx, f, dt)
        return out

    def _coordinates(self, sizes: dict[str, int]) -> dict[str, Array]:
        """Flat indices to check per array: all, or a seeded uniform sample of max_coords."""
        total = sum(sizes.values())
        if total <= self.max_coords:
            return {k: np.arange(n) for k, n in sizes.items()}
        rng = np.random.default_rng(self.seed)
        flat = np.sort(rng.choice(total, size=self.max_coords, replace=False))
        offsets = np.cumsum([0] + list(sizes.values()))
        return {k: flat[(flat >= lo) & (flat < hi)] - lo
                for k, lo, hi in zip(sizes, offsets[:-1], offsets[1:])}

    def _nudge(self, theta: Array, idx: Array, J_of, dtype: np.dtype) -> Array:
        """Central differences of J_of at coordinates ``idx`` of ``theta``, in batched chunks.

        Returns an array of theta's shape in ``dtype``; masked where not computed.
        """
        flat = theta.ravel()
        grad = np.zeros(flat.size)
        # Bound the memory of one batched pass: 2·chunk copies of θ and of the activations.
        chunk = max(1, self.chunk_elems // (2 * max(flat.size, self._act_elems)))
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            k = len(sel)
            h = H0 * np.maximum(1.0, np.abs(flat[sel]))
            plus, minus = flat[sel] + h, flat[sel] - h
            stacked = np.broadcast_to(flat, (2 * k, flat.size)).copy()
            rows = np.arange(k)
            stacked[rows, sel] = plus
            stacked[k + rows, sel] = minus
            J = J_of(stacked.reshape((2 * k,) + theta.shape))
            # The step actually represented in floating point, not the nominal 2h.
            grad[sel] = (J[:k] - J[k:]) / (plus - minus)
        value = grad.reshape(theta.shape).astype(dtype)
        checked = np.zeros(flat.size, dtype=bool)
        checked[idx] = True
        mask = ~checked.reshape(theta.shape)
        return np.ma.MaskedArray(value, mask=mask) if mask.any() else value
