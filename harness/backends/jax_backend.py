"""JAX: the forward pass in jax.numpy / jax.nn, gradients from ``jax.value_and_grad`` under ``jit``.

Imported only when the backend is built. 64-bit mode is switched on here; a
float64 case whose result comes back float32 is an error (checked again by the
runner for every backend).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..model import Model
from ..network import TARGET_KEYS, Network

Array = np.ndarray


def enable_compilation_cache(jax) -> str | None:
    """JAX's persistent compilation cache in the project's .cache/jax (XVAL_JAX_CACHE overrides
    the folder; "off" disables it), so a second run compiles nothing it compiled before.
    Every compile is cached: the default threshold of 1 s would skip all of ours."""
    folder = os.environ.get("XVAL_JAX_CACHE", str(Path.cwd() / ".cache" / "jax"))
    if folder == "off":
        return None
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None  # a read-only checkout: run without the cache
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


class JaxBackend:
    name = "jax"
    kind = "analytic"

    def __init__(self) -> None:
        try:
            import jax
        except ImportError as e:  # an extra of the package since the catalog issue
            raise ImportError(f"jax is not installed ({e}); install it with pip install -c constraints.txt "
                              "'backprop-xval[jax]'") from e

        jax.config.update("jax_enable_x64", True)
        if not jax.config.jax_enable_x64:
            raise RuntimeError("could not enable jax_enable_x64; float64 cases would run in float32")
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.fw = SimpleNamespace(jax=jax, jnp=jnp)  # what the catalog's jax forms receive
        self.cache_dir = enable_compilation_cache(jax)
        from ..activations import JAX

        # The definitions of harness.activations, in jax ops: written there, with its constants.
        self.act = {name: (lambda z, f=f: f(jax, jnp, z)) for name, f in JAX.items()}
        self._compiled: dict[tuple, object] = {}

    def _value_and_grad(self, activations: tuple[str, ...], loss: str):
        """One jitted function per (activations, loss); jit itself caches per shape and dtype."""
        key = (activations, loss)
        if key not in self._compiled:
            from ..catalog import NETWORK_LOSSES

            jax, act, fw = self.jax, self.act, self.fw

            def J(params, taps, X, T):
                # taps = (tz, ta): zeros added to z^[l] and a^[l]. ∂J/∂tz^[l] is ∂J/∂z^[l] on
                # the real graph, so jax.grad gives the per-layer gradients without re-deriving them.
                tz, ta = taps
                a = X
                zs, as_ = [], []
                for l, ((W, b), name) in enumerate(zip(params, activations)):
                    z = a @ W + b + tz[l]
                    a = act[name](z)
                    if l < len(params) - 1:
                        a = a + ta[l]
                    zs.append(z)
                    as_.append(a)
                # The catalog's jax form of the loss: from the logits where it applies the
                # output function itself (cross-entropy, BCE), from a^[L] otherwise.
                J = NETWORK_LOSSES[loss].jax(fw, z if NETWORK_LOSSES[loss].applies else a, T)
                return J, (zs, as_)

            self._compiled[key] = jax.jit(jax.value_and_grad(J, argnums=(0, 1), has_aux=True))
        return self._compiled[key]

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):
            return self._network_gradients(model, arrays)
        jnp = self.jnp
        dt = model.np_dtype
        params = [(jnp.asarray(arrays[f"W{l}"], dtype=dt), jnp.asarray(arrays[f"b{l}"], dtype=dt))
                  for l in range(1, model.L + 1)]
        T = {k: jnp.asarray(arrays[k]) for k in ("y", "Y") if k in arrays}
        m = arrays["X"].shape[0]
        tz = [np.zeros((m, n), dtype=dt) for n in model.layers[1:]]  # numpy: see _network_gradients
        ta = [np.zeros((m, n), dtype=dt) for n in model.layers[1:-1]]
        fn = self._value_and_grad(tuple(model.activations), model.loss)
        (J, (zs, as_)), (grads, (dz, da)) = fn(params, (tz, ta), jnp.asarray(arrays["X"], dtype=dt),
                                                T)
        out = {"J": np.asarray(J)}
        for l, (dW, db) in enumerate(grads, start=1):
            out[f"dW{l}"], out[f"db{l}"] = np.asarray(dW), np.asarray(db)
            out[f"z{l}"], out[f"a{l}"] = np.asarray(zs[l - 1]), np.asarray(as_[l - 1])
            out[f"dz{l}"] = np.asarray(dz[l - 1])
            if l < model.L:
                out[f"da{l}"] = np.asarray(da[l - 1])
        return out

    def _network_value_and_grad(self, net: Network):
        """One jitted function per network (its layers, loss and L2 are static)."""
        key = ("network", net)
        if key not in self._compiled:
            from ..catalog import NETWORK_LOSSES
            from ..network import walk

            jax, jnp, fw = self.jax, self.jnp, self.fw

            def J(params, taps, X, T, inputs):
                # taps: zeros added to every z{i}, a{i}; ∂J/∂tap is ∂J/∂value on the real graph.
                m = X.shape[0]
                a, values = walk(net, X, params, inputs,
                                 lambda layer, spec, x, p, inp: layer.jax(spec, fw, x, p, inp),
                                 lambda name, z: self.act[name](z), lambda q, v: v + taps[q])
                J = NETWORK_LOSSES[net.loss].jax(fw, a, T)
                c = net.l2_coefficient(m)
                if c:
                    J = J + c * sum(jnp.sum(params[k] * params[k]) for k in net.regularised())
                return J, values

            self._compiled[key] = jax.jit(jax.value_and_grad(J, argnums=(0, 1), has_aux=True))
        return self._compiled[key]

    def _network_gradients(self, net: Network, arrays: dict[str, Array]) -> dict[str, Array]:
        jnp, dt = self.jnp, net.np_dtype
        m = arrays["X"].shape[0]
        params = {k: jnp.asarray(arrays[k], dtype=dt) for k in net.param_shapes()}
        inputs = {k: jnp.asarray(arrays[k], dtype=dt) for k in net.input_specs(m)}
        # numpy zeros: jnp.zeros compiles a broadcast for every new shape (a second of a cold
        # run's compiles on a network case); the jitted function takes numpy arrays as they are.
        taps = {q: np.zeros(net.shape_of(q, m), dtype=dt)
                for q in net.intermediates() if not q.startswith("d")}
        T = {k: jnp.asarray(arrays[k]) for k in TARGET_KEYS if k in arrays}
        X = jnp.asarray(arrays["X"]) if net.vocab else jnp.asarray(arrays["X"], dtype=dt)  # ids stay ints
        fn = self._network_value_and_grad(net)
        (J, values), (grads, dtaps) = fn(params, taps, X, T, inputs)
        out = {"J": np.asarray(J)}
        out.update({f"d{k}": np.asarray(g) for k, g in grads.items()})
        for q, v in values.items():
            out[q], out[f"d{q}"] = np.asarray(v), np.asarray(dtaps[q])
        return out

    def jacobian(self, op: str, x: Array, **kw) -> Array:
        """The full Jacobian J[i, j] = ∂f_i/∂x_j of a map of one row x (1×n), by ``jax.jacfwd``.

        ``op`` as in the torch backend: "exp", an activation name, "linear", "loss".
        """
        jnp = self.jnp
        f = self._op(op, **{k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()})
        jac = self.jax.jacfwd(f)(jnp.asarray(x))
        return np.asarray(jac).reshape(-1, x.size)

    def _op(self, op: str, W=None, b=None, loss=None, Y=None):
        jnp = self.jnp
        if op == "exp":
            return jnp.exp
        if op == "linear":
            return lambda a: a @ W + b
        if op == "loss":  # 𝓛 as a function of the output a^[L] (not of the logits)
            return {"cross_entropy": lambda a: -(Y * jnp.log(a)).sum(),
                    "binary_cross_entropy": lambda a: -(Y * jnp.log(a) + (1 - Y) * jnp.log(1 - a)).sum(),
                    "half_sse": lambda a: 0.5 * ((a - Y) ** 2).sum()}[loss]
        return self.act[op]

