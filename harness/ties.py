"""Where a network's gradient is a choice, not a fact: max-pool windows with a tied maximum.

max has no derivative where two elements of a window share the maximum: any split of dy
between them is a valid (sub)gradient. torch and jax send it all to the first maximum in
row-major order, a naive ``x == max`` mask sends dy to each, a nudge of finite differences
straddles the tie. Like the relu kink, such elements are detected, counted and reported as
inconclusive; they are not compared, so they cannot fail a case.

Which elements depend on the choice: the layer's ``ties`` gives the change in its dx that
another valid routing makes (random weights, nonzero wherever the choice matters). Every
backward is linear in its upstream gradient once the forward is fixed, so pushing that
change down through the layers below with their own backwards marks exactly the quantities
(da, dz, parameter gradients) it reaches: below a relu that was off, nothing; through a
batch norm, its whole channel.

"Tied" means equal to within TIE_ULPS units in the last place of the layer input's largest
magnitude: arms compute the pooled values with different rounding, and two values that
close may be ordered differently by each.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .catalog import LAYERS, Layer, act_backward
from .network import Network, backprop, forward

Array = np.ndarray
TIE_ULPS = 64


def chooses(net: Network) -> bool:
    """Whether any layer of the network may have to choose its gradient."""
    return any(type(LAYERS[s.kind]).ties is not Layer.ties for s in net.network)


def tie_masks(net: Network, arrays: Mapping[str, Array], seed: int = 0) -> tuple[dict[str, Array], int]:
    """({quantity: boolean mask of the elements that depend on a tie}, number of tied windows)."""
    if not chooses(net):
        return {}, 0
    forwarded = forward(net, arrays)
    grads = backprop(net, arrays, forwarded=forwarded)
    _, values, caches = forwarded
    rng = np.random.default_rng(seed)
    eps = np.finfo(np.dtype(net.dtype)).eps
    masks: dict[str, Array] = {}
    windows = 0

    def mark(q: str, change: Array) -> None:
        hit = np.asarray(change != 0)
        masks[q] = masks[q] | hit if q in masks else hit

    delta = None  # the change in ∂J/∂a^[i] that the choices above layer i make
    skip: dict[int, Array | None] = {}  # the change at each residual's output, for its skip path
    for spec in reversed(net.network):
        i, layer = spec.index, LAYERS[spec.kind]
        if spec.kind == "residual":  # the body's change at its input, plus the skip's
            s = skip.pop(i)
            delta = s if delta is None else delta if s is None else delta + s
            continue
        for r in reversed(net.closers(i)):
            if delta is not None:
                mark(f"da{r}", delta)
            skip[r] = delta
        dy = grads[f"dz{i}"] if spec.activation else grads[f"da{i}"]
        if delta is not None:
            mark(f"da{i}", delta)
            if spec.activation:
                delta = act_backward(spec.activation, delta, values[f"z{i}"], values[f"a{i}"])
                mark(f"dz{i}", delta)
            delta, dparams = layer.backward(spec, delta, caches[i])
            for local, d in dparams.items():
                mark(f"d{spec.key(local)}", d)
        key = net.input_key(spec)
        x = arrays["X"] if key == "X" else values[key]
        tol = TIE_ULPS * eps * float(np.max(np.abs(x), initial=0.0))
        found = layer.ties(spec, x, dy, tol, rng)
        if found is not None and found[1]:
            windows += found[1]
            delta = found[0] if delta is None else delta + found[0]
    return {q: m for q, m in masks.items() if m.any()}, windows
