"""Finite differences of J: "the nudge" and its better-behaved relatives.

Methods (each a backend name, see ``VARIANTS``), for one coordinate θ_i and step h:

    forward     (J(θ + h eᵢ) − J(θ)) / h                      error O(h) + O(ε/h)
    central     (J(θ + h eᵢ) − J(θ − h eᵢ)) / 2h               error O(h²) + O(ε/h)
    richardson  (4 D(h/2) − D(h)) / 3, D the central quotient  error O(h⁴) + O(ε/h)
    complex     Im J(θ + i h eᵢ) / h                           error O(h²), no cancellation

Step rules (ε = machine epsilon of the precision J is evaluated in; absolute steps, see
``_steps`` for why not relative to |θ_i|):
    forward h = ε^(1/2), richardson h = ε^(1/5) (times max(1, |J|)^exponent): each balances
    that method's truncation error against the round-off ε|J|/h of the subtraction;
    central (the default ``fd``): per example, from N, the size of the values the nudge moves
    (z^[l] and every layer above, and the terms of the loss). Their rounding ε·N, not ε·|J|,
    is the round-off of the difference: at logits of 1e10 it is ε·1e10 even where J is 1.
    h = (ε·N)^(1/3) balances it against an O(1) curvature; where N > LARGE_NOISE the relative
    step ε^(1/3)·N is tried first and its truncation measured (see ``_central``);
    complex h = 1e-20: nothing is subtracted, so h can be as small as we like;
    "nudge" is the course's forward difference with a fixed h = 1e-3.
The denominator is the step actually represented in floating point, not the nominal h.
The central rule differences each example's loss 𝓛⁽ⁱ⁾ on its own (J is their mean): the
examples are independent networks sharing θ, so each gets the step its own values need, and
the losses the nudge does not move cancel exactly instead of adding ε·|J| of round-off.

Complex step needs every operation to be complex-analytic. The activations allow it except
gelu (numpy has no complex erf); relu, leaky_relu and elu are analytic piece by piece, their
branch chosen by the real part, which an imaginary step never moves.

Precision: J is evaluated in float64 by default, also for a float32 case (a float32 central
difference could not get better than about ε_32^(2/3) ≈ 2e-5), and the result is cast back
to the case dtype. ``precision="case"`` evaluates in the case dtype instead (the ε study).

Strategy: "coordinates" nudges every parameter (a seeded sample of about ``max_coords`` on
a large case, at least 32 of every array); "directional" measures vᵀ∇J for
``directional.N_DIRECTIONS`` seeded unit directions v: two forward passes each, whatever
the size. "auto" (the default) uses coordinates up to ``max_coords`` parameters and
directional above. The per-layer ∂J/∂z^[l], ∂J/∂a^[l] are always nudged by coordinates:
perturb one element of the intermediate and run only the layers above it.

A nudge that moves some z^[l] across a kink (relu, leaky_relu at 0) is inconclusive: J is
not differentiable along it. Those coordinates are masked (not compared) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..activations import ACTIVATIONS, ELU_ALPHA, GELU_TANH_C, LEAKY_SLOPE, SOFTMAX, forward as g
from ..directional import directions
from ..losses import cost, per_example_loss
from ..model import Model
from ..network import Network
from ..tolerances import TOLERANCES
from .base import Gradients, NotApplicable

Array = np.ndarray

MIN_PER_ARRAY = 32  # a sampled case still checks this many elements of every array
NUDGE_STEP = 1e-3  # the classic course's ε
COMPLEX_STEP = 1e-20
# The central rule (FiniteDifferenceBackend._central). Above LARGE_NOISE the balanced step's
# error 2(ε·N)^(2/3) (1.6e-9 of the slope at N = 100) would eat into the fd row's 1e-8, so the
# relative step ε^(1/3)·N is tried first, and kept where its measured error is below
# ACCEPT·ε^(2/3) (3.6e-10) of the slope.
LARGE_NOISE = 100.0
ACCEPT = 10.0
BEND_SCALE = 1.0  # steps wider than this (in units of z) must not cross a bend (see bend_side)
NOT_COMPLEX_ANALYTIC = {"gelu": "numpy has no complex erf"}


@dataclass(frozen=True)
class Method:
    name: str
    offsets: tuple[complex, ...]  # perturbations, in units of h
    exponent: float | None  # h = ε^exponent (see _steps); None: a fixed step
    rule: str


METHODS = {
    "forward": Method("forward", (1,), 1 / 2, "h = (ε·max(1,|J|))^(1/2) / max(1,|input|)"),
    "central": Method("central", (1, -1), 1 / 3,
                      "per example, h = (ε·N)^(1/3) / max(1,|input|), or ε^(1/3)·N / max(1,|input|) "
                      "checked at 2h where N > 100 (N: the size of the values the nudge moves)"),
    "richardson": Method("richardson", (1, -1, 0.5, -0.5), 1 / 5,
                         "h = (ε·max(1,|J|))^(1/5) / max(1,|input|), then h/2"),
    "complex": Method("complex", (1j,), None, f"h = {COMPLEX_STEP:g}, imaginary"),
}


def cost_from(model: Model, params: dict[str, Array], Y: Array, l: int, *,
              z: Array | None = None, a: Array | None = None,
              sides: list[Array] | None = None, rows: bool = False,
              bends: list[Array] | None = None) -> Array:
    """J as a function of z^[l] (given ``z``) or of a^[l] (given ``a``); layers above l run as usual.

    Any argument may carry a leading batch-of-networks axis (K, ...); J then has shape (K,).
    ``rows=True`` returns the per-example losses 𝓛⁽ⁱ⁾ instead, shape (K, m): J is their mean.
    ``cost_from(model, params, Y, 0, a=X)`` is the ordinary forward pass. If ``sides`` is a
    list, it receives, for every layer whose activation has kinks, which side of each kink
    every z lies on (to tell whether a perturbation crossed one); ``bends`` likewise for the
    smooth activations' bends (``bend_side``), the output's included. Complex inputs take the
    complex-analytic forms (complex step).
    """
    complex_mode = any(np.iscomplexobj(v) for v in (z, a, *params.values()) if v is not None)
    act = _g_complex if complex_mode else g

    def through(k: int, z: Array) -> Array:
        name = model.activations[k - 1]
        if sides is not None and name in ACTIVATIONS and ACTIVATIONS[name].kinks:
            sides.append(np.stack([np.sign(np.real(z) - kink) for kink in ACTIVATIONS[name].kinks], axis=-1))
        return act(name, z)

    # cross_entropy and BCE are computed from the logits z^[L]: ŷ = a^[L] itself is not needed.
    logits_only = model.loss in ("cross_entropy", "binary_cross_entropy")

    def out_of(k: int, z: Array) -> Array | None:
        if bends is not None:
            bend = bend_side(model.activations[k - 1], np.real(z))
            if bend is not None:
                bends.append(bend)
        return None if k == model.L and logits_only else through(k, z)

    if z is not None:
        a = out_of(l, z)
    for k in range(l + 1, model.L + 1):
        z = a @ params[f"W{k}"] + params[f"b{k}"]
        a = out_of(k, z)
    if complex_mode:
        return _cost_complex(model.loss, z, a, Y, rows)
    return per_example_loss(model.loss, z, a, Y) if rows else cost(model.loss, z, a, Y)


def bend_side(name: str, z: Array) -> Array | None:
    """Which side of its bend every z lies on, shape z.shape + (1,); None for identity, relu,
    leaky_relu (their kinks are ``sides``). A smooth activation bends around 0 (sigmoid, tanh,
    softplus, elu, gelu: straight or flat on either side once |z| is a few units); the softmax,
    and the log-sum-exp of cross-entropy, around a tie of the largest z: the side is which z is
    the largest. Within a few units of a bend these functions are analytic, their
    singularities at least π/2 off the real axis, so a step of 1 or less sees an ordinary
    curvature; a step far wider than that which crosses a bend sees a kink.
    """
    if name == SOFTMAX:
        return (z == z.max(axis=-1, keepdims=True))[..., None]
    if name in ACTIVATIONS and not ACTIVATIONS[name].kinks and name != "identity":
        return np.sign(z)[..., None]
    return None


def _g_complex(name: str, z: Array) -> Array:
    """Complex-analytic forms of the activations; branches follow the real part."""
    right = np.real(z) > 0
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "identity":
            return z
        if name == "sigmoid":
            return np.where(right, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))
        if name == "tanh":
            return np.tanh(z)
        if name == "relu":
            return np.where(right, z, 0)
        if name == "leaky_relu":
            return np.where(right, z, LEAKY_SLOPE * z)
        if name == "elu":
            return np.where(right, z, ELU_ALPHA * np.expm1(z))
        if name == "softplus":
            return np.where(right, z + np.log1p(np.exp(-z)), np.log1p(np.exp(z)))
        if name == "gelu_tanh":
            return 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + GELU_TANH_C * z**3)))
        if name == SOFTMAX:
            e = np.exp(z - np.real(z).max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"complex step is not available for {name}: {NOT_COMPLEX_ANALYTIC.get(name, 'not analytic')}")


def _cost_complex(loss: str, z: Array, a: Array, Y: Array, rows: bool = False) -> Array:
    if loss == "cross_entropy":
        shifted = z - np.real(z).max(axis=-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        per = -(Y * logp).sum(axis=-1)
    elif loss == "binary_cross_entropy":
        right = np.real(z) > 0
        with np.errstate(over="ignore", invalid="ignore"):
            per = np.where(right, z - z * Y + np.log1p(np.exp(-z)), -z * Y + np.log1p(np.exp(z))).sum(axis=-1)
    else:
        per = 0.5 * ((a - Y) ** 2).sum(axis=-1)  # (a − y)², not |a − y|²: analytic
    return per if rows else per.mean(axis=-1)


class FiniteDifferenceBackend:
    """Finite differences of J. ``method``: forward, central, richardson, complex; ``step``:
    a fixed h instead of the method's rule; ``strategy``: auto, coordinates, directional;
    ``precision``: "float64" or "case"."""

    name = "fd"
    kind = "finite_difference"

    def __init__(self, method: str = "central", step: float | None = None, strategy: str = "auto",
                 precision: str = "float64", max_coords: int = 2000, seed: int = 0,
                 chunk_elems: int = 2_000_000, name: str | None = None, kind: str | None = None,
                 intermediates: bool = True) -> None:
        self.method = METHODS[method]
        self.intermediates = intermediates  # also nudge z^[l], a^[l] for dz, da
        if precision not in ("float64", "case"):
            raise ValueError(f"precision must be 'float64' or 'case', got {precision!r}")
        if strategy == "directional" and (method != "central" or step is not None):
            raise ValueError("the directional strategy is a central difference with the central step rule")
        self.step, self.strategy, self.precision = step, strategy, precision
        self.max_coords, self.seed, self.chunk_elems = max_coords, seed, chunk_elems
        self._J_size = 1.0  # set from J by gradients()
        self.name = name or self.name
        self.kind = kind or self.kind

    def describe(self) -> str:
        rule = f"h = {self.step:g} fixed" if self.step is not None else self.method.rule
        return f"{self.method.name} differences, {rule}, J in {self.precision}"

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):  # a catalog network: J of the whole batch, see fd_network.py
            from .fd_network import network_gradients
            return network_gradients(self, model, arrays)
        work = np.float64 if self.precision == "float64" else model.np_dtype
        if self.method.name == "complex":
            for name in model.activations:
                if name in NOT_COMPLEX_ANALYTIC:
                    raise NotApplicable(f"complex step is not available for {name}: {NOT_COMPLEX_ANALYTIC[name]}")
        fl = {k: np.asarray(v, dtype=work) for k, v in arrays.items() if k != "y"}
        X, Y = fl["X"], fl["Y"]
        params = {k: fl[k] for k in model.param_shapes()}
        dt = model.np_dtype
        self._eps = float(np.finfo(work).eps)
        self._act_elems = X.shape[0] * max(model.layers)  # one network's activations, for chunking
        self.kink_crossings: dict[str, int] = {}
        self.unresolved: dict[str, int] = {}
        self.error_estimates: dict[str, Array] = {}
        self._tol = TOLERANCES.get((model.dtype, self.kind))  # the row this backend is checked with
        J = cost_from(model, params, Y, 0, a=X)
        self._J_abs = abs(float(J))
        self._J_size = max(1.0, abs(float(J)))  # the textbook rules' estimate of J's round-off: ε·|J|
        out: dict[str, Array] = {"J": np.asarray(J, dtype=dt)}
        notes = [self.describe()]

        # The unperturbed forward pass, once: the parameter nudges start from it, and it gives
        # the forward values z^[l], a^[l] and the points the intermediates are nudged around.
        a_in, z_base = {0: X}, {}
        for l in range(1, model.L + 1):
            z_base[l] = a_in[l - 1] @ params[f"W{l}"] + params[f"b{l}"]
            a_in[l] = g(model.activations[l - 1], z_base[l])
        # The central rule's noise scale N per example and layer (see _noise_scales).
        self._per_example = self.method.name == "central" and self.step is None
        self._noise = self._noise_scales(model, params, Y, z_base, a_in) if self._per_example else {}

        strategy = self.strategy
        if strategy == "auto":
            # Directional is a central difference; the other methods keep their own quotient
            # on a coordinate sample, so that a variant is always what its name says.
            central = self.method.name == "central" and self.step is None
            strategy = "directional" if central and model.n_params > self.max_coords else "coordinates"
        if strategy == "directional":
            # A few forward passes per direction; dW, db are not measured element by element.
            out["Jv"] = self._directional(model, params, X, Y, a_in).astype(dt)
            for name, theta in params.items():
                out[f"d{name}"] = np.ma.MaskedArray(np.zeros(theta.shape, dtype=dt), mask=True)
            notes.append(f"directional strategy: vᵀ∇J for {len(out['Jv'])} seeded directions "
                         f"({model.n_params} parameters > {self.max_coords}); dW, db not measured one by one")
        else:
            # ∂J/∂W^[l], ∂J/∂b^[l]: nudge one parameter, run the forward pass from its layer.
            # W^[l]_ij enters z as a^[l-1]_i W_ij: J bends along it on a scale of 1/|a^[l-1]_i|
            # (per example for the central rule; the largest over the batch for the others).
            reach = {}
            for l in range(1, model.L + 1):
                if not self._per_example:
                    row = np.maximum(1.0, np.abs(a_in[l - 1]).max(axis=0, initial=0.0))[:, None]
                    reach[f"W{l}"] = np.broadcast_to(1.0 / row, params[f"W{l}"].shape)

            def by_delta(name: str, coords: Array, deltas: Array, sides: list, rows: bool = False,
                         bends: list | None = None) -> Array:
                """J with W^[l]_ij (or b^[l]_j) moved by delta. Only column j of z^[l] moves, by
                delta·a^[l-1]_i (or delta), so only column j of a^[l] does, and z^[l+1] moves by
                that column times row j of W^[l+1]: the pass starts at layer l + 1. ``deltas``
                has one step per coordinate (R,) or one per coordinate and example (R, m): the
                examples are independent networks sharing θ, so each may be nudged by its own
                step; ``rows`` then returns the per-example losses (R, m)."""
                l, n = int(name[1:]), params[name].shape[1]
                i, j = np.divmod(coords, n)
                d = deltas if np.ndim(deltas) == 2 else deltas[:, None]
                shift = d * (a_in[l - 1][:, i].T if name[0] == "W" else 1.0)  # (R, m)
                if l == model.L:  # the output layer: perturb z^[L] itself
                    Z = np.broadcast_to(z_base[l], (len(coords),) + z_base[l].shape).astype(shift.dtype)
                    Z[np.arange(len(coords)), :, j] += shift
                    return cost_from(model, params, Y, l, z=Z, sides=sides, rows=rows, bends=bends)
                zj = z_base[l][:, j].T + shift  # (R, m): the moved column of z^[l]
                act = model.activations[l - 1]
                if ACTIVATIONS[act].kinks:
                    sides.append(np.stack([np.sign(np.real(zj) - k) for k in ACTIVATIONS[act].kinks],
                                          axis=-1)[:, :, None, :])
                if bends is not None and (bend := bend_side(act, zj)) is not None:
                    bends.append(bend[:, :, None, :])
                a_j = (_g_complex if np.iscomplexobj(zj) else g)(act, zj)
                da_j = a_j - a_in[l][:, j].T  # (R, m)
                Z = z_base[l + 1] + da_j[:, :, None] * params[f"W{l + 1}"][j][:, None, :]
                return cost_from(model, params, Y, l + 1, z=Z, sides=sides, rows=rows, bends=bends)

            for name, idx in self._coordinates({k: v.size for k, v in params.items()}).items():
                if self._per_example:
                    l, n = int(name[1:]), params[name].shape[1]
                    # W^[l]_ij moves z^[l]_rj of example r by δ·a^[l-1]_ri.
                    reach_rows = (None if name[0] == "b" else
                                  lambda c, a=a_in[l - 1], n=n: np.maximum(1.0, np.abs(a[:, c // n])).T)
                    out[f"d{name}"] = self._central(
                        f"d{name}", params[name], idx, dt, self._noise[("z", l)],
                        lambda c, H, sd, bd, n=name: by_delta(n, c, H, sd, rows=True, bends=bd), reach_rows,
                        self._act_elems)
                else:
                    out[f"d{name}"] = self._nudge(f"d{name}", params[name], idx, None, dt, reach.get(name),
                                                  J_delta=lambda c, d, sd, n=name: by_delta(n, c, d, sd))

        if self.intermediates:
            self._intermediates(model, params, Y, z_base, a_in, out)
        crossed = {q: n for q, n in self.kink_crossings.items() if n}
        unresolved = {q: n for q, n in self.unresolved.items() if n}
        inconclusive = sum(crossed.values()) + sum(unresolved.values())
        if crossed:
            notes.append("inconclusive where a nudge crossed a kink (relu/leaky_relu at 0), not "
                         "compared: " + ", ".join(f"{q} {n}" for q, n in crossed.items()))
        if unresolved:
            notes.append("inconclusive where the loss bends within the round-off of values of size N "
                         "(no step resolves the derivative to the tolerance in float64), not compared: "
                         + ", ".join(f"{q} {n}" for q, n in unresolved.items()))
        return Gradients(out, notes="; ".join(notes), inconclusive=inconclusive)

    def _intermediates(self, model: Model, params: dict[str, Array], Y: Array, zs: dict[int, Array],
                       as_: dict[int, Array], out: dict[str, Array]) -> None:
        dt = model.np_dtype
        # The forward values, and ∂J/∂z^[l], ∂J/∂a^[l]: nudge the intermediate, run the layers above.
        for l in range(1, model.L + 1):
            out[f"z{l}"], out[f"a{l}"] = zs[l].astype(dt), as_[l].astype(dt)
        values = {f"z{l}": zs[l] for l in zs} | {f"a{l}": as_[l] for l in range(1, model.L)}
        for key, idx in self._coordinates({k: v.size for k, v in values.items()}).items():
            l = int(key[1:])
            if self._per_example:
                # Element (r, j) moves example r only; the other examples' losses cancel exactly.
                def J_rows(c, H, sd, bd, key=key, l=l):
                    flat, n, K = values[key].ravel(), values[key].shape[1], len(H)
                    stacked = np.broadcast_to(flat, (K, flat.size)).copy()
                    stacked[np.arange(K), c] = flat[c] + H[np.arange(K), c // n]  # c // n: the example
                    at = {key[0]: stacked.reshape((K,) + values[key].shape)}  # z= or a=
                    return cost_from(model, params, Y, l, **at, sides=sd, rows=True, bends=bd)

                out[f"d{key}"] = self._central(f"d{key}", values[key], idx, dt, self._noise[(key[0], l)],
                                               J_rows, None, max(values[key].size, self._act_elems))
                continue
            f = ((lambda st, sd, l=l: cost_from(model, params, Y, l, z=st, sides=sd)) if key[0] == "z"
                 else (lambda st, sd, l=l: cost_from(model, params, Y, l, a=st, sides=sd)))
            out[f"d{key}"] = self._nudge(f"d{key}", values[key], idx, f, dt)

    def _noise_scales(self, model: Model, params: dict[str, Array], Y: Array, z: dict[int, Array],
                      a: dict[int, Array]) -> dict[tuple[str, int], Array]:
        """N per example: the size of the values a nudge moves, which sets the round-off of the
        difference J(θ + h) − J(θ − h). ("z", l) for W^[l], b^[l], z^[l]; ("a", l) for a^[l].

        A nudge at layer l moves z^[l] and every layer above it. Each moved value v is
        rounded to about ε·|v| when it is formed (z^[k] from terms of size |a^[k−1]||W^[k]| +
        |b^[k]|), and the loss is formed from terms of the size of the logits (cross-entropy:
        the log-sum-exp), of Σ|z^[L]| (BCE) or of Σ(|a^[L]| + |y|) (half SSE). Relative to
        what the nudge changes, the difference quotient is therefore off by about ε·N/u, u
        the step in units of the moved value: ε·|z| at logits of 1e10, whatever |J| is.
        """
        zL, aL = np.abs(z[model.L]), np.abs(a[model.L])
        if model.loss == "cross_entropy":
            run = zL.max(axis=1)
        elif model.loss == "binary_cross_entropy":
            run = zL.sum(axis=1)
        else:
            run = (aL + np.abs(Y)).sum(axis=1)
        run = np.maximum(1.0, run)
        N: dict[tuple[str, int], Array] = {}
        for l in range(model.L, 0, -1):
            terms = np.abs(a[l - 1]) @ np.abs(params[f"W{l}"]) + np.abs(params[f"b{l}"])
            run = np.maximum(run, terms.max(axis=1))
            N[("z", l)] = run
            if l < model.L:
                N[("a", l)] = np.maximum(N[("z", l + 1)], np.abs(a[l]).max(axis=1))
        return {k: np.where(np.isfinite(v), v, 1.0) for k, v in N.items()}

    def _central(self, quantity: str, theta: Array, idx: Array, dtype: np.dtype, N: Array, J_rows,
                 reach_rows, per_copy: int) -> Array:
        """The central difference of every example's loss at coordinates ``idx`` of ``theta``.

        ``N`` (m,): the noise scale per example (``_noise_scales``); ``reach_rows(coords)``
        (k, m): max(1, |input|) per coordinate and example, None for 1; ``J_rows(coords, H,
        sides, bends)``: the per-example losses (B·k, m) with coordinate c moved by H[b·k + c, r]
        in example r. J is the mean of the losses, so ∂J/∂θ is the mean of their quotients.

        Steps u are in units of the value the nudge moves (h = u / max(1, |input|)). The
        quotient D(u) errs by its truncation c·u² plus its round-off ε·N·G/u (G the example's
        slope): the textbook balance u₀ = (ε·N)^(1/3) assumes |c| ~ 1 and leaves an error of
        about 2(ε·N)^(2/3), 1.7e-4 of the slope at N = 1e10. So, where N > LARGE_NOISE:
          1. u = ε^(1/3)·N, whose round-off is ε^(2/3), as on a unit-scale case; a second
             quotient at 2u measures its truncation, (D(2u) − D(u))/3. Kept if the estimated
             error is below ACCEPT·ε^(2/3)·G and no kink, nor (u > BEND_SCALE) a bend, lies
             within 2u: a step far wider than a bend sees it as a kink, where D(u) = D(2u) =
             the mean of the two one-sided slopes and the check cannot tell.
          2. Otherwise: the step that balances the measured curvature against the round-off,
             u₁ = (ε·N·G / 2|c|)^(1/3) within [u₀, u/2], checked the same way at 2u₁, and u₀
             itself (estimated error 2(ε·N)^(2/3)·G); the smallest estimate wins.
        Where N ≤ LARGE_NOISE, u₀ alone. The estimated error of each coordinate is kept in
        ``self.error_estimates[quantity]`` (``_unresolvable`` uses it).
        """
        flat = theta.ravel()
        m = len(N)
        grad = np.zeros(flat.size)
        error = np.zeros(flat.size)
        crossed = np.zeros(flat.size, dtype=bool)
        eps = self._eps
        chunk = max(1, self.chunk_elems // (6 * per_copy))  # up to 6 perturbed copies per coordinate
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            Nk = np.broadcast_to(N, (len(sel), m))
            reach = np.broadcast_to(1.0 if reach_rows is None else reach_rows(sel), Nk.shape)
            large = Nk > LARGE_NOISE
            u0 = (eps * Nk) ** (1 / 3)
            balanced = 2 * (eps * Nk) ** (2 / 3)  # its error, relative to the slope
            u = np.where(large, eps ** (1 / 3) * Nk, u0)
            if not large.any():
                (D,), (cross,), _ = self._row_quotients(flat, sel, [u / reach], J_rows)
                E = balanced * np.abs(D)
            else:
                (D, D2), (k1, k2), (b1, b2) = self._row_quotients(flat, sel, [u / reach, 2 * u / reach], J_rows)
                G = np.maximum(np.abs(D), np.abs(D2))
                est = self._estimate(D, D2, k1 | k2 | ((b1 | b2) & (u > BEND_SCALE)), eps * Nk * G / u)
                redo = large & (est > ACCEPT * eps ** (2 / 3) * G)
                E = np.where(large, est, balanced * G)
                cross = k1 & ~large
                if redo.any():  # second round, for the coordinates with an example to redo
                    w = redo.any(axis=1)
                    Nw, Gw, uw, u0w, rw = Nk[w], G[w], u[w], u0[w], reach[w]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        curvature = np.abs(D2[w] - D[w]) / (3 * uw ** 2)  # |c| in D(u) = f' + c·u²
                        u1 = (eps * Nw * Gw / (2 * curvature)) ** (1 / 3)
                    u1 = np.clip(np.nan_to_num(u1, nan=u0w, posinf=uw / 2), u0w, uw / 2)
                    (E1, E2, E0), (x1, x2, x0), (y1, y2, _) = self._row_quotients(
                        flat, sel[w], [u1 / rw, 2 * u1 / rw, u0w / rw], J_rows)
                    est1 = self._estimate(E1, E2, x1 | x2 | ((y1 | y2) & (u1 > BEND_SCALE)), eps * Nw * Gw / u1)
                    est0 = np.where(x0, np.inf, balanced[w] * Gw)
                    ests = np.stack([est[w], est1, est0])
                    best = np.argmin(ests, axis=0)
                    D[w] = np.where(redo[w], np.choose(best, [D[w], E1, E0]), D[w])
                    E[w] = np.where(redo[w], ests.min(axis=0), E[w])
                    # A kink within every step tried: the example is inconclusive, like a kink
                    # crossed by u₀ where N is small.
                    cross[w] |= redo[w] & np.isinf(E[w])
            grad[sel] = D.mean(axis=1)
            error[sel] = np.where(np.isinf(E), 0.0, E).mean(axis=1)
            crossed[sel] = cross.any(axis=1)
        self.error_estimates[quantity] = error.reshape(theta.shape)
        value = grad.reshape(theta.shape).astype(dtype)
        checked = np.zeros(flat.size, dtype=bool)
        checked[idx] = True
        checked &= ~crossed
        self.kink_crossings[quantity] = int(crossed.sum())
        unresolved = self._unresolvable(grad, error, checked)
        self.unresolved[quantity] = int(unresolved.sum())
        checked &= ~unresolved
        mask = ~checked.reshape(theta.shape)
        return np.ma.MaskedArray(value, mask=mask) if mask.any() else value

    def _unresolvable(self, grad: Array, error: Array, checked: Array) -> Array:
        """Coordinates whose estimated error exceeds what this backend's tolerance row will
        allow them, |a − b| ≤ atol·s + rtol·|a| with s ≥ |J| (compare.py): the example's loss
        bends within the round-off of the values it is built from (two logits of 1e10 within 1
        of each other: their rounding is 2e-6, the loss bends on a scale of 1, and no step gets
        the derivative better than (ε·N)^(2/3) ≈ 1e-4). Inconclusive, like a kink, not a
        disagreement. None on the random sweeps; see tests/test_fd.py for one that is."""
        if self._tol is None:
            return np.zeros(grad.shape, dtype=bool)
        s = max(self._J_abs, float(np.abs(grad[checked]).max(initial=0.0)))
        return checked & (error > self._tol.atol * s + self._tol.rtol * np.abs(grad))

    @staticmethod
    def _estimate(D: Array, D2: Array, crossed: Array, noise: Array) -> Array:
        """The error of D = D(u) given D2 = D(2u): truncation (D(2u) − D(u))/3 (from D(u) =
        f' + c·u², D(2u) = f' + 4c·u²) plus the round-off ``noise``; infinite across a kink."""
        with np.errstate(invalid="ignore"):
            est = np.abs(D2 - D) / 3 + noise
        return np.where(crossed | np.isnan(est), np.inf, est)

    def _row_quotients(self, flat: Array, sel: Array, steps: list[Array], J_rows) -> tuple[list, list, list]:
        """For each step array h (k, m): the per-example quotients (𝓛(θ + h) − 𝓛(θ − h)) /
        ((θ + h) − (θ − h)), divided by the steps actually represented, and whether the nudge
        crossed a kink, and a bend, in that example. One batched evaluation for all steps."""
        theta = flat[sel][:, None]
        points = [((theta + h).astype(flat.dtype), (theta - h).astype(flat.dtype)) for h in steps]
        H = np.concatenate([p - theta for pair in points for p in pair])
        sides: list[Array] = []
        bends: list[Array] = []
        with np.errstate(over="ignore", invalid="ignore"):
            losses = J_rows(np.tile(sel, 2 * len(steps)), H, sides, bends)
        k = len(sel)
        quotients, kinks, bent = [], [], []
        for b, (plus, minus) in enumerate(points):
            Lp, Lm = losses[2 * b * k:(2 * b + 1) * k], losses[(2 * b + 1) * k:(2 * b + 2) * k]
            with np.errstate(divide="ignore", invalid="ignore"):
                quotients.append((Lp - Lm) / (plus - minus))
            for found, into in ((sides, kinks), (bends, bent)):
                cross = np.zeros(Lp.shape, dtype=bool)
                for side in found:
                    side = np.broadcast_to(side, (len(H),) + side.shape[-3:])
                    cross |= (side[2 * b * k:(2 * b + 1) * k] != side[(2 * b + 1) * k:(2 * b + 2) * k]).any(axis=(2, 3))
                into.append(cross)
        return quotients, kinks, bent

    def _steps(self, theta: Array, reach: Array | None = None) -> Array:
        """The step per coordinate: (ε·max(1, |J|))^exponent × ``reach`` (1 / max(1, |input|)
        for a weight).

        Not scaled by |θ|: how fast J bends along θ_i follows the layer's input and the
        activation, not the size of θ_i (a weight of 1000 on a saturating softmax is as curved
        as one of 1); the quotient divides by the step actually represented, so a large θ
        costs no accuracy. A weight fed inputs of size 50 gets a 50× smaller step.
        """
        if self.step is not None:
            return np.full(theta.shape, float(self.step))
        if self.method.exponent is None:
            return np.full(theta.shape, COMPLEX_STEP)
        # The textbook optimum h ≈ (ε|J| / |J⁽ⁿ⁾|)^(1/n), with |J⁽ⁿ⁾| ~ |input|ⁿ for a weight.
        h = np.full(theta.shape, (self._eps * self._J_size) ** self.method.exponent)
        return h if reach is None else h * reach

    def _quotient(self, theta: Array, h: Array, J: Array, J0: Array | float) -> Array:
        """Combine J at θ + offset·h (one row block per offset) into the derivative estimate."""
        offs = self.method.offsets
        k = len(theta)
        Js = [J[i * k:(i + 1) * k] for i in range(len(offs))]
        if self.method.name == "complex":
            return np.imag(Js[0]) / h
        pts = [(theta + o * h).astype(theta.dtype) for o in offs]  # the steps actually represented
        if self.method.name == "forward":
            return (Js[0] - J0) / (pts[0] - theta)
        central = (Js[0] - Js[1]) / (pts[0] - pts[1])
        if self.method.name == "central":
            return central
        half = (Js[2] - Js[3]) / (pts[2] - pts[3])
        return (4 * half - central) / 3

    def _stack(self, flat: Array, sel: Array, h: Array) -> Array:
        offs = self.method.offsets
        k = len(sel)
        dtype = np.result_type(flat.dtype, np.complex128 if self.method.name == "complex" else flat.dtype)
        if self.method.name == "complex" and flat.dtype == np.float32:
            dtype = np.complex64
        stacked = np.broadcast_to(flat.astype(dtype), (len(offs) * k, flat.size)).copy()
        rows = np.arange(k)
        for i, o in enumerate(offs):
            stacked[i * k + rows, sel] = flat[sel] + o * h
        return stacked

    def _nudge(self, quantity: str, theta: Array, idx: Array, J_of, dtype: np.dtype,
               reach: Array | None = None, J_delta=None) -> Array:
        """Difference quotients of J at coordinates ``idx`` of ``theta``, in batched chunks.

        ``J_of(stacked θ copies, sides)`` or, cheaper, ``J_delta(coordinates, steps, sides)``
        gives J for each perturbed copy.

        Returns an array of theta's shape in ``dtype``; masked where not computed, which
        includes coordinates whose nudge moved some z^[l] across a kink: there J is not
        differentiable along the nudge and the quotient means nothing.
        """
        flat = theta.ravel()
        grad = np.zeros(flat.size)
        crossed = np.zeros(flat.size, dtype=bool)
        n_off = len(self.method.offsets)
        base_sides: list[Array] = []
        forward = self.method.name == "forward"
        J0 = J_of(theta[None], base_sides) if forward and J_delta is None else 0.0
        # Bound the memory of one batched pass: n_off·chunk copies of θ (or, with J_delta, of
        # the perturbed layer) and of the activations.
        per_row = self._act_elems if J_delta is not None else max(flat.size, self._act_elems)
        chunk = max(1, self.chunk_elems // (n_off * per_row))
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            k = len(sel)
            h = self._steps(flat[sel], None if reach is None else np.ravel(reach)[sel])
            sides: list[Array] = []
            if J_delta is not None:
                # Only the perturbed coordinate moves: J_delta starts from it (no copies of θ).
                steps = [(flat[sel] + o * h) if self.method.name == "complex"
                         else (flat[sel] + o * h).astype(flat.dtype) for o in self.method.offsets]
                J = J_delta(np.tile(sel, n_off), np.concatenate([p - flat[sel] for p in steps]), sides)
                if forward:  # the base point, coordinate by coordinate: J_delta's sides cover
                    base_sides = []  # only the column each coordinate moves
                    J0 = J_delta(sel, np.zeros(k), base_sides)
            else:
                J = J_of(self._stack(flat, sel, h).reshape((n_off * k,) + theta.shape), sides)
            with np.errstate(divide="ignore", invalid="ignore"):  # a step that rounds away: 0/0
                grad[sel] = np.real(self._quotient(flat[sel], h, J, J0))
            for i, side in enumerate(sides):
                side = np.broadcast_to(side, (n_off * k,) + side.shape[-3:])
                blocks = [side[j * k:(j + 1) * k] for j in range(n_off)]
                if base_sides:
                    blocks.append(np.broadcast_to(base_sides[i], blocks[0].shape))
                for other in blocks[1:]:
                    crossed[sel] |= (blocks[0] != other).reshape(k, -1).any(axis=1)
        value = grad.reshape(theta.shape).astype(dtype)
        checked = np.zeros(flat.size, dtype=bool)
        checked[idx] = True
        checked &= ~crossed
        self.kink_crossings[quantity] = int(crossed.sum())
        mask = ~checked.reshape(theta.shape)
        return np.ma.MaskedArray(value, mask=mask) if mask.any() else value

    def _directional(self, model: Model, params: dict[str, Array], X: Array, Y: Array,
                     a_in: dict[int, Array]) -> Array:
        """vᵀ∇J for each seeded unit direction v: the mean over examples of the central
        difference of 𝓛⁽ⁱ⁾(θ + t·v) in t, with the per-example step rule of ``_central``.
        Per unit t, v moves z^[l] of example r by a^[l−1]_r V^[l] + v_b^[l]: the largest of
        those (at least 1) plays the part |input| plays for a single weight."""
        dirs = directions(model)
        V = [{k: v[k].astype(X.dtype) for k in v} for v in dirs]
        reach = np.ones((len(dirs), X.shape[0]))
        for d, v in enumerate(V):
            for l in range(1, model.L + 1):
                move = np.abs(a_in[l - 1] @ v[f"W{l}"] + v[f"b{l}"]).max(axis=1)
                reach[d] = np.maximum(reach[d], move)
        logits_only = model.loss in ("cross_entropy", "binary_cross_entropy")

        def J_rows(c: Array, T: Array, sides: list, bends: list) -> Array:
            """Per-example losses (K, m), copy k at θ + T[k, r]·v_{c[k]} in example r."""
            a = np.broadcast_to(X, (len(c),) + X.shape)
            for l in range(1, model.L + 1):
                z = a @ params[f"W{l}"] + params[f"b{l}"]
                shift = np.empty_like(z)
                for d in np.unique(c):
                    on = c == d
                    shift[on] = a[on] @ V[d][f"W{l}"] + V[d][f"b{l}"]
                z = z + T[:, :, None] * shift
                name = model.activations[l - 1]
                if name in ACTIVATIONS and ACTIVATIONS[name].kinks:
                    sides.append(np.stack([np.sign(z - k) for k in ACTIVATIONS[name].kinks], axis=-1))
                if (bend := bend_side(name, z)) is not None:
                    bends.append(bend)
                a = None if l == model.L and logits_only else g(name, z)
            return per_example_loss(model.loss, z, a, Y)

        return self._central("Jv", np.zeros(len(dirs), dtype=X.dtype), np.arange(len(dirs)), np.float64,
                             self._noise[("z", 1)], J_rows, lambda c: reach[c], self._act_elems)

    def _coordinates(self, sizes: dict[str, int], limit: int | None = None) -> dict[str, Array]:
        """Flat indices to check per array: all, or a seeded sample of about max_coords.

        A sample gives every array a floor of min(size, MIN_PER_ARRAY) coordinates first (so a
        small db^[l] next to a large W^[l] is never left unchecked), then spreads the rest
        uniformly over all elements.
        """
        limit = self.max_coords if limit is None else limit
        total = sum(sizes.values())
        if total <= limit:
            return {k: np.arange(n) for k, n in sizes.items()}
        rng = np.random.default_rng(self.seed)
        floor = {k: min(n, MIN_PER_ARRAY) for k, n in sizes.items()}
        rest = max(0, limit - sum(floor.values()))
        out = {}
        for k, n in sizes.items():
            share = min(n, floor[k] + int(round(rest * n / total)))
            out[k] = np.sort(rng.choice(n, size=share, replace=False))
        return out

    def jacobian(self, op: str, x: Array, W=None, b=None, loss=None, Y=None) -> Array:
        """The full Jacobian J[i, j] = ∂f_i/∂x_j of a map of one row x, column j by a central
        difference in float64 (the central step rule). ``op`` as in the torch backend."""
        if op == "exp":
            f = np.exp
        elif op == "linear":
            f = lambda a: a @ W + b  # noqa: E731
        elif op == "loss":
            f = lambda a: per_example_loss_of_output(loss, a, Y)  # noqa: E731
        else:
            f = lambda z: g(op, z)  # noqa: E731
        x64 = np.asarray(x, dtype=np.float64)
        h0 = float(np.finfo(np.float64).eps) ** (1 / 3)
        cols = []
        for j in range(x64.size):
            h = h0 * max(1.0, abs(x64.flat[j]))
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


# Backend names for the variants (harness.backends.get accepts each).
VARIANTS: dict[str, dict] = {
    "fd": {},
    "fd-forward": dict(method="forward", kind="forward_difference"),
    "nudge": dict(method="forward", step=NUDGE_STEP, kind="nudge"),
    "fd-richardson": dict(method="richardson"),
    "fd-complex": dict(method="complex", kind="complex_step"),
    "fd-directional": dict(strategy="directional"),
}


def variant(name: str) -> FiniteDifferenceBackend:
    return FiniteDifferenceBackend(name=name, **VARIANTS[name])
