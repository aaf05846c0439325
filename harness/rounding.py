"""How much rounding a correct implementation may make on this very case: a running error
bound from the magnitudes of the terms that produce each quantity.

Floating-point sums and products err by about ε times the sum of the |terms|, not times
|result|: where terms cancel (a small dW element from large a·dz products, ŷ − ȳ on a
well-fitted example, 1 − tanh²(z) at a saturated unit, a z^[1] summed from inputs of scale
30) the result can be tiny while its rounding error is not. This module takes, for every quantity, the |terms|
of the operation that produces it and the error its operands bring through that operation,
from the real magnitudes of a float64 backprop (T_z = |a||W| + |b|, T_dW = T_aᵀ|dz|, ...), and
the comparison allows FLOOR_FACTOR · ε · T per element on top of the tolerance table. Where the case is well conditioned this floor is far below atol·s and
changes nothing; a wrong gradient is off by far more than rounding.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX
from .backends.manual import ManualBackend
from .cases import Case
from .catalog import LAYERS
from .directional import directions, project
from .network import Network, backprop, forward

Array = np.ndarray
FLOOR_FACTOR = 8.0
PERTURBATIONS = 4  # reruns of a catalog network with its inputs moved by ε (perturbation_floor)
NO_CURVATURE = {"identity", "relu", "leaky_relu"}  # g'' = 0 away from the kink; elsewhere |g''| ≤ 1


def term_magnitudes(case: Case, inputs: dict[str, Array]) -> dict[str, Array]:
    """T for every quantity (same shapes): the |terms| of the operation that produces it, plus
    the error of its operands passed on by that one operation, from the real magnitudes of a
    float64 backprop of the case (not from bounds of bounds, which grow geometrically with
    depth and would hide wrong gradients)."""
    model = case.model
    L, acts = model.L, model.activations
    f = {k: (v if k == "y" else np.asarray(v, dtype=np.float64)) for k, v in inputs.items()}
    model64 = replace(model, dtype="float64")
    ref = ManualBackend().gradients(model64, f)
    X, Y = f["X"], f["Y"]
    m = X.shape[0]
    aW = {l: np.abs(f[f"W{l}"]) for l in range(1, L + 1)}
    a = {0: np.abs(X)} | {l: np.abs(ref[f"a{l}"]) for l in range(1, L + 1)}
    z = {l: ref[f"z{l}"] for l in range(1, L + 1)}

    T, gp = {}, {}
    for l in range(1, L + 1):
        T[f"z{l}"] = a[l - 1] @ aW[l] + np.abs(f[f"b{l}"])
        gp[l] = a[l] if acts[l - 1] == SOFTMAX else np.abs(ACTIVATIONS[acts[l - 1]].g_prime(z[l]))
        T[f"a{l}"] = a[l] + gp[l] * T[f"z{l}"]  # g(z) itself, and z's rounding through g'

    zL, TzL = np.abs(z[L]), T[f"z{L}"]
    if model.loss == "cross_entropy":  # log-sum-exp minus z_y: terms of the size of the logits
        T["J"] = np.asarray(np.mean(2 * (zL + TzL).max(axis=1) + 1))
    elif model.loss == "binary_cross_entropy":
        T["J"] = np.asarray(np.mean((zL + TzL + 1).sum(axis=1)))
    else:
        T["J"] = np.asarray(np.mean(((a[L] + np.abs(Y)) ** 2).sum(axis=1)))
    for l in range(L, 0, -1):
        dz = np.abs(ref[f"dz{l}"])
        if l == L:  # ŷ − ȳ (or (a − y)·g'): its terms, and z^[L]'s rounding through g'
            T[f"dz{l}"] = (a[L] + np.abs(Y) + gp[L] * TzL) / m
        else:
            da = np.abs(ref[f"da{l}"])
            curvature = 0.0 if acts[l - 1] in NO_CURVATURE else 1.0  # |g''| ≤ 1 for the smooth ones
            T[f"dz{l}"] = T[f"da{l}"] * gp[l] + da * (gp[l] + curvature * T[f"z{l}"])
        # dW = a_prevᵀ dz: the error of dz through |a_prev|, and a_prev's through |dz| (first order).
        T[f"dW{l}"] = a[l - 1].T @ T[f"dz{l}"] + (T[f"a{l - 1}"].T @ dz if l > 1 else 0.0)
        T[f"db{l}"] = T[f"dz{l}"].sum(axis=0, keepdims=True)
        if l > 1:
            T[f"da{l - 1}"] = dz @ aW[l].T
    return T


def rounding_floor(case: Case, inputs: dict[str, Array]) -> dict[str, Array]:
    """FLOOR_FACTOR · ε(case dtype) · T per quantity: the per-element allowance for rounding
    (a catalog network: ``perturbation_floor``)."""
    if isinstance(case.model, Network):
        return perturbation_floor(case, inputs)
    eps = float(np.finfo(case.model.np_dtype).eps)
    with np.errstate(all="ignore"):
        return {q: FLOOR_FACTOR * eps * t for q, t in term_magnitudes(case, inputs).items()}


def perturbation_floor(case: Case, inputs: dict[str, Array]) -> dict[str, Array]:
    """The rounding allowance of a catalog network, measured rather than bounded.

    Every input and parameter is moved by a random relative ε (one unit in the last place,
    what storing it in the case dtype may already do), and the manual backprop is rerun in
    the case dtype, PERTURBATIONS times. The largest change of each element is how far a
    correct implementation that rounds differently can land from this one: the condition of
    the computation times ε, with the computation's own rounding in it. Bounds written layer
    by layer (the MLP's ``term_magnitudes``) compound through normalisations that project most
    of an error away; a measurement does not. Allowed per element: FLOOR_FACTOR × (that
    change + 10% of the quantity's largest change, so one element that happened not to move
    is not held to zero). Masks, class targets and token ids stay exact.
    """
    net = case.model
    eps = float(np.finfo(net.np_dtype).eps)
    moved_keys = ([] if net.vocab else ["X"]) + list(net.param_shapes())  # token ids are exact, like y
    forwarded = forward(net, inputs)
    base = backprop(net, inputs, forwarded=forwarded)
    dirs = directions(net)
    base["Jv"] = project(net, base, dirs)  # vᵀ∇J, for a backend that measured only that
    spread = {q: np.zeros(np.shape(v)) for q, v in base.items()}
    rng = np.random.default_rng([case.seed, 7919])
    with np.errstate(all="ignore"):
        for _ in range(PERTURBATIONS):
            moved = dict(inputs)
            for k in moved_keys:
                v = inputs[k]
                moved[k] = (v * (1 + eps * rng.uniform(-1, 1, v.shape))).astype(v.dtype)
            out = backprop(net, moved)
            out["Jv"] = project(net, out, dirs)
            for q in spread:
                spread[q] = np.maximum(spread[q], np.abs(out[q].astype(np.float64) - base[q]))
        floors = {q: FLOOR_FACTOR * (s + 0.1 * (s.max() if s.size else 0.0)) for q, s in spread.items()}
        for q in net.quantities():
            summed = _zero_sum(net, q, base, spread, eps, forwarded[2])
            if summed is not None:
                floors[q] = np.maximum(floors[q], FLOOR_FACTOR * summed)
        return floors


def _zero_sum(net: Network, quantity: str, base: dict[str, Array], spread: dict[str, Array],
              eps: float, caches: dict) -> Array | None:
    """For a bias gradient that is 0 in exact arithmetic (``Network.structurally_zero``: db, dβ
    whose shift a batch norm removes), ε·Σ|g| + Σ spread(g) over the elements of the upstream
    gradient g it sums (dz, or da where there is no z), per element of the bias; for
    attention's dbk, ε times the |terms| of the softmax backward it sums (``key_bias_terms``:
    no rounding before dS moves it, so no spread); None for any other quantity.

    Moving the inputs cannot move such a quantity: it stays 0 whatever they are, so its
    perturbation spread sees only the manual arm's own rounding of a sum that cancels, and
    another arm that sums in another order lands further away (on an AVX-512 CPU torch and
    jax gave db = −6e-8 and 1.2e-7 in float32, four times the measured spread). What bounds any
    order is the size of what is summed: each term's rounding (ε|g|) and how far each term
    itself may move (its own spread)."""
    if not net.structurally_zero(quantity):
        return None
    i = Network.layer_of(quantity)
    spec = net.network[i - 1]
    g = f"dz{i}" if f"dz{i}" in base else f"da{i}"
    if g not in base or g not in spread:
        return None
    if quantity.startswith("dbk"):
        terms = LAYERS["attention"].key_bias_terms(spec, base[g], caches[i])
        return eps * terms.reshape(np.shape(base[quantity]))
    up = np.abs(np.asarray(base[g], dtype=np.float64))
    # the axis the bias runs along: a norm's feature axis (its own rule), else the filters of a
    # conv's m×F×H×W or a dense's last axis
    if spec.kind in ("batchnorm", "layernorm"):
        channel = LAYERS[spec.kind].feature_axis(up.ndim)
    else:
        channel = 1 if spec.kind == "conv2d" else up.ndim - 1
    axes = tuple(a for a in range(up.ndim) if a != channel)
    summed = eps * up.sum(axis=axes) + spread[g].sum(axis=axes)
    return summed.reshape(np.shape(base[quantity]))
