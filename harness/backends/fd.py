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

from ..activations import ACTIVATIONS, forward as g
from ..losses import cost
from ..model import Model

Array = np.ndarray

H0 = float(np.finfo(np.float64).eps) ** (1 / 3)
MIN_PER_ARRAY = 32  # a sampled case still checks this many elements of every array


def cost_from(model: Model, params: dict[str, Array], Y: Array, l: int, *,
              z: Array | None = None, a: Array | None = None,
              sides: list[Array] | None = None) -> Array:
    """J as a function of z^[l] (given ``z``) or of a^[l] (given ``a``); layers above l run as usual.

    Any argument may carry a leading batch-of-networks axis (K, ...); J then has shape (K,).
    ``cost_from(model, params, Y, 0, a=X)`` is the ordinary forward pass. If ``sides`` is a
    list, it receives, for every layer whose activation has kinks, which side of each kink
    every z lies on (to tell whether a perturbation crossed one).
    """
    def through(k: int, z: Array) -> Array:
        name = model.activations[k - 1]
        if sides is not None and name in ACTIVATIONS and ACTIVATIONS[name].kinks:
            sides.append(np.stack([np.sign(z - kink) for kink in ACTIVATIONS[name].kinks], axis=-1))
        return g(name, z)

    if z is not None:
        a = through(l, z)
    for k in range(l + 1, model.L + 1):
        z = a @ params[f"W{k}"] + params[f"b{k}"]
        a = through(k, z)
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

        self.kink_crossings: dict[str, int] = {}

        # ∂J/∂W^[l], ∂J/∂b^[l]: nudge one parameter, run the whole forward pass.
        def by_param(name: str, stacked: Array, sides: list) -> Array:
            return cost_from(model, {**params, name: stacked}, Y, 0, a=X, sides=sides)

        for name, idx in self._coordinates({k: v.size for k, v in params.items()}).items():
            out[f"d{name}"] = self._nudge(f"d{name}", params[name], idx,
                                          lambda st, sd, n=name: by_param(n, st, sd), dt)

        # The forward values, and ∂J/∂z^[l], ∂J/∂a^[l]: nudge the intermediate, run the layers above.
        zs, as_ = {}, {0: X}
        for l in range(1, model.L + 1):
            zs[l] = as_[l - 1] @ params[f"W{l}"] + params[f"b{l}"]
            as_[l] = g(model.activations[l - 1], zs[l])
            out[f"z{l}"], out[f"a{l}"] = zs[l].astype(dt), as_[l].astype(dt)
        values = {f"z{l}": zs[l] for l in zs} | {f"a{l}": as_[l] for l in range(1, model.L)}
        for key, idx in self._coordinates({k: v.size for k, v in values.items()}).items():
            l = int(key[1:])
            f = ((lambda st, sd, l=l: cost_from(model, params, Y, l, z=st, sides=sd)) if key[0] == "z"
                 else (lambda st, sd, l=l: cost_from(model, params, Y, l, a=st, sides=sd)))
            out[f"d{key}"] = self._nudge(f"d{key}", values[key], idx, f, dt)
        crossed = {q: n for q, n in self.kink_crossings.items() if n}
        if crossed:
            out["_notes"] = ("inconclusive where a nudge crossed a kink (relu/leaky_relu at 0), not "
                             "compared: " + ", ".join(f"{q} {n}" for q, n in crossed.items()))
        return out

    def _coordinates(self, sizes: dict[str, int]) -> dict[str, Array]:
        """Flat indices to check per array: all, or a seeded sample of about max_coords.

        A sample gives every array a floor of min(size, MIN_PER_ARRAY) coordinates first (so a
        small db^[l] next to a large W^[l] is never left unchecked), then spreads the rest
        uniformly over all elements.
        """
        total = sum(sizes.values())
        if total <= self.max_coords:
            return {k: np.arange(n) for k, n in sizes.items()}
        rng = np.random.default_rng(self.seed)
        floor = {k: min(n, MIN_PER_ARRAY) for k, n in sizes.items()}
        rest = max(0, self.max_coords - sum(floor.values()))
        out = {}
        for k, n in sizes.items():
            share = min(n, floor[k] + int(round(rest * n / total)))
            out[k] = np.sort(rng.choice(n, size=share, replace=False))
        return out

    def _nudge(self, quantity: str, theta: Array, idx: Array, J_of, dtype: np.dtype) -> Array:
        """Central differences of J_of at coordinates ``idx`` of ``theta``, in batched chunks.

        Returns an array of theta's shape in ``dtype``; masked where not computed, which
        includes coordinates whose ±h nudge moved some z^[l] across a kink: there J is not
        differentiable along the nudge and the difference quotient means nothing.
        """
        flat = theta.ravel()
        grad = np.zeros(flat.size)
        crossed = np.zeros(flat.size, dtype=bool)
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
            sides: list[Array] = []
            J = J_of(stacked.reshape((2 * k,) + theta.shape), sides)
            # The step actually represented in floating point, not the nominal 2h.
            grad[sel] = (J[:k] - J[k:]) / (plus - minus)
            for side in sides:
                side = np.broadcast_to(side, (2 * k,) + side.shape[-3:])
                crossed[sel] |= (side[:k] != side[k:]).reshape(k, -1).any(axis=1)
        value = grad.reshape(theta.shape).astype(dtype)
        checked = np.zeros(flat.size, dtype=bool)
        checked[idx] = True
        checked &= ~crossed
        self.kink_crossings[quantity] = int(crossed.sum())
        mask = ~checked.reshape(theta.shape)
        return np.ma.MaskedArray(value, mask=mask) if mask.any() else value

    def jacobian(self, op: str, x: Array, W=None, b=None, loss=None, Y=None) -> Array:
        """The full Jacobian J[i, j] = ∂f_i/∂x_j of a map of one row x, column j by a central
        difference in float64 (same step rule). ``op`` as in the torch backend."""
        if op == "exp":
            f = np.exp
        elif op == "linear":
            f = lambda a: a @ W + b  # noqa: E731
        elif op == "loss":
            f = lambda a: per_example_loss_of_output(loss, a, Y)  # noqa: E731
        else:
            f = lambda z: g(op, z)  # noqa: E731
        x64 = np.asarray(x, dtype=np.float64)
        cols = []
        for j in range(x64.size):
            h = H0 * max(1.0, abs(x64.flat[j]))
            xp, xm = x64.copy(), x64.copy()
            xp.flat[j] += h
            xm.flat[j] -= h
            cols.append((np.ravel(f(xp)) - np.ravel(f(xm))) / (xp.flat[j] - xm.flat[j]))
        return np.stack(cols, axis=1).astype(x.dtype)


def per_example_loss_of_output(loss: str, a: Array, Y: Array) -> Array:
    """𝓛 as a function of the output a^[L] (not of the logits), summed over the row."""
    if loss == "cross_entropy":
        return -(Y * np.log(a)).sum()
    if loss == "binary_cross_entropy":
        return -(Y * np.log(a) + (1 - Y) * np.log(1 - a)).sum()
    return 0.5 * ((a - Y) ** 2).sum()

