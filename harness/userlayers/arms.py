"""The harness's four answers for one layer on one input: manual, torch, jax and fd.

A family (families.py) states the user's function as a short *chain* of catalog layers
(affine is flatten then dense; DLS's linear_activation is dense then relu), optionally
ending in a catalog loss. Each arm computes, for the same arrays,
    out = the chain's output s (and J = loss(s) when there is a loss),
    d{x, key} = the gradient of  Σ out ∘ G  (no loss: G is the upstream gradient ``dout``
                handed to the user's backward)  or of J (a loss)
with respect to the input x and each parameter, keyed like the case arrays (W1, b2).

- manual: the catalog's numpy forwards and hand-written backwards, chained by hand;
- torch: the layers' torch forms, ``torch.autograd.grad``;
- jax: the layers' jax forms, ``jax.grad`` under ``jax.jit`` (one compile per chain and shape);
- fd: central differences of the numpy forward in float64, one element at a time; an
  element whose nudge moves any kink (relu's 0, a max pool's argmax, a hinge) is masked as
  inconclusive, not compared.
None of them reads another's gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..catalog import LAYERS, NETWORK_LOSSES, Spec

Array = np.ndarray
ARMS = ("manual", "torch", "jax", "fd")


@dataclass
class Chain:
    """Catalog layers applied in order to x, then optionally a loss of targets T."""

    specs: list[Spec]
    params: dict[str, Array]  # keyed W1, b1, gamma2, ...
    inputs: dict[str, Array] = field(default_factory=dict)  # not differentiated: mask1, ...
    loss: str | None = None
    targets: dict[str, Array] = field(default_factory=dict)  # y, Y, target_mask

    def local(self, spec: Spec) -> tuple[dict[str, str], dict[str, str]]:
        """{local name: array key} of the layer's parameters and of its extra inputs."""
        layer = LAYERS[spec.kind]
        return ({n: spec.key(n) for n in layer.params(spec)},
                {n: spec.key(n) for n in layer.inputs(spec, 1)})


def _walk(chain: Chain, x, params, inputs, forward):
    a = x
    for spec in chain.specs:
        pk, ik = chain.local(spec)
        a = forward(LAYERS[spec.kind], spec, a, {n: params[k] for n, k in pk.items()},
                    {n: inputs[k] for n, k in ik.items()})
    return a


def numpy_forward(chain: Chain, x: Array, params: dict[str, Array]) -> tuple[Array, Array | None]:
    """(s, J) by the catalog's numpy forwards (J None without a loss)."""
    s = _walk(chain, x, params, chain.inputs,
              lambda layer, spec, a, p, inp: layer.forward(spec, a, p, inp)[0])
    J = NETWORK_LOSSES[chain.loss].cost(s, chain.targets) if chain.loss else None
    return s, J


def manual(chain: Chain, x: Array, G: Array | None, backward_of: dict | None = None) -> dict[str, Array]:
    """``backward_of`` {kind: backward(spec, dy, cache)} stands in for layers' backwards (the
    self-check's mutants, to name a user's mistake)."""
    caches = []
    a = x
    for spec in chain.specs:
        pk, ik = chain.local(spec)
        a, cache = LAYERS[spec.kind].forward(spec, a, {n: chain.params[k] for n, k in pk.items()},
                                             {n: chain.inputs[k] for n, k in ik.items()})
        caches.append(cache)
    out = {"out": a}
    if chain.loss:
        loss = NETWORK_LOSSES[chain.loss]
        out["J"] = np.asarray(loss.cost(a, chain.targets))
        d = loss.grad(a, chain.targets)
    else:
        d = G
    for spec, cache in zip(reversed(chain.specs), reversed(caches)):
        backward = (backward_of or {}).get(spec.kind, LAYERS[spec.kind].backward)
        d, grads = backward(spec, d, cache)
        out.update({f"d{spec.key(n)}": g for n, g in grads.items()})
    if np.issubdtype(x.dtype, np.floating):
        out["dx"] = d
    return out


def _torch_fw():
    import torch
    import torch.nn.functional as F

    return SimpleNamespace(torch=torch, F=F)


def torch_arm(chain: Chain, x: Array, G: Array | None) -> dict[str, Array]:
    fw = _torch_fw()
    torch = fw.torch
    t = lambda v: torch.from_numpy(np.array(v))  # noqa: E731 - a copy: torch shares memory
    params = {k: t(v).requires_grad_() for k, v in chain.params.items()}
    xt = t(x)
    floating = np.issubdtype(x.dtype, np.floating)
    if floating:
        xt.requires_grad_()
    s = _walk(chain, xt, params, {k: t(v) for k, v in chain.inputs.items()},
              lambda layer, spec, a, p, inp: layer.torch(spec, fw, a, p, inp))
    out = {"out": s.detach().numpy()}
    if chain.loss:
        J = NETWORK_LOSSES[chain.loss].torch(fw, s, {k: t(v) for k, v in chain.targets.items()})
        out["J"] = J.detach().numpy()
    else:
        J = (s * t(G)).sum()
    wrt = list(params.values()) + ([xt] if floating else [])
    grads = torch.autograd.grad(J, wrt, allow_unused=True)
    for k, g in zip(params, grads):
        out[f"d{k}"] = np.zeros_like(chain.params[k]) if g is None else g.numpy()
    if floating:
        out["dx"] = np.zeros_like(x) if grads[-1] is None else grads[-1].numpy()
    return out


_JAX: dict[tuple, Any] = {}


def jax_arm(chain: Chain, x: Array, G: Array | None) -> dict[str, Array]:
    import jax

    from ..backends.jax_backend import enable_compilation_cache

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    fw = SimpleNamespace(jax=jax, jnp=jnp)
    floating = np.issubdtype(x.dtype, np.floating)
    key = (tuple(chain.specs), chain.loss, floating)
    if not _JAX:
        enable_compilation_cache(jax)  # as the jax backend does: a second run compiles nothing
    if key not in _JAX:
        def f(params, x, inputs, T, G):
            s = _walk(chain, x, params, inputs, lambda layer, spec, a, p, inp: layer.jax(spec, fw, a, p, inp))
            J = NETWORK_LOSSES[chain.loss].jax(fw, s, T) if chain.loss else jnp.sum(s * G)
            return J, s

        _JAX[key] = jax.jit(jax.value_and_grad(f, argnums=(0, 1) if floating else 0, has_aux=True))
    (J, s), grads = _JAX[key](chain.params, x, chain.inputs, chain.targets,
                              np.zeros((), x.dtype) if G is None else G)
    dparams, dx = grads if floating else (grads, None)
    out = {"out": np.asarray(s)}
    if chain.loss:
        out["J"] = np.asarray(J)
    out.update({f"d{k}": np.asarray(g) for k, g in dparams.items()})
    if floating:
        out["dx"] = np.asarray(dx)
    return out


def _kinks(chain: Chain, x: Array, params: dict[str, Array]) -> list:
    """Which side of every kink each layer's input (and the loss's) is on."""
    sides = []
    a = x
    for spec in chain.specs:
        pk, ik = chain.local(spec)
        layer = LAYERS[spec.kind]
        sides.append(layer.kink_sides(spec, a))
        a = layer.forward(spec, a, {n: params[k] for n, k in pk.items()},
                          {n: chain.inputs[k] for n, k in ik.items()})[0]
    if chain.loss:
        sides.append(NETWORK_LOSSES[chain.loss].kink_sides(a, chain.targets))
    return sides


def _same_sides(a: list, b: list) -> bool:
    return all((u is None and v is None) or (u is not None and v is not None and np.array_equal(u, v))
               for u, v in zip(a, b))


def fd(chain: Chain, x: Array, G: Array | None) -> dict[str, Array]:
    """Central differences in float64, h = 1e-6 · max(1, |v|) per element (error ~1e-10 of the
    scale on these unit-sized inputs; the float64 finite-difference tolerance is 1e-7)."""
    c64 = Chain(chain.specs, {k: np.array(v, np.float64, order="C") for k, v in chain.params.items()},
                {k: np.asarray(v, np.float64) for k, v in chain.inputs.items()}, chain.loss, chain.targets)
    floating = np.issubdtype(x.dtype, np.floating)
    x64 = np.array(x, np.float64, order="C") if floating else x  # copies: nudged in place below
    G64 = None if G is None else np.asarray(G, np.float64)

    def f(xv, params):
        s, J = numpy_forward(c64, xv, params)
        return float(J) if chain.loss else float((s * G64).sum())

    base_sides = _kinks(c64, x64, c64.params)
    s0, J0 = numpy_forward(c64, x64, c64.params)
    out = {"out": s0}
    if chain.loss:
        out["J"] = np.asarray(J0)

    def grad_of(v: Array, call) -> Array:
        g = np.empty(v.shape)
        bad = np.zeros(v.shape, dtype=bool)
        flat, gflat, bflat = v.reshape(-1), g.reshape(-1), bad.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            h = 1e-6 * max(1.0, abs(keep))
            flat[i] = keep + h
            up, up_sides = call()
            flat[i] = keep - h
            down, down_sides = call()
            flat[i] = keep
            gflat[i] = (up - down) / (2 * h)
            bflat[i] = not (_same_sides(up_sides, base_sides) and _same_sides(down_sides, base_sides))
        return np.ma.masked_array(g, mask=bad) if bad.any() else g

    for k in c64.params:
        v = c64.params[k]
        out[f"d{k}"] = grad_of(v, lambda: (f(x64, c64.params), _kinks(c64, x64, c64.params)))
    if floating:
        xv = x64.copy()
        out["dx"] = grad_of(xv, lambda: (f(xv, c64.params), _kinks(c64, xv, c64.params)))
    return out


def run_arm(arm: str, chain: Chain, x: Array, G: Array | None) -> dict[str, Array]:
    return {"manual": manual, "torch": torch_arm, "jax": jax_arm, "fd": fd}[arm](chain, x, G)
