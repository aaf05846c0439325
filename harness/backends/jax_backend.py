"""JAX: the forward pass in jax.numpy / jax.nn, gradients from ``jax.value_and_grad`` under ``jit``.

Imported only when the backend is built. 64-bit mode is switched on here; a
float64 case whose result comes back float32 is an error (checked again by the
runner for every backend).
"""

from __future__ import annotations

import numpy as np

from ..model import Model

Array = np.ndarray


class JaxBackend:
    name = "jax"
    kind = "analytic"

    def __init__(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        if not jax.config.jax_enable_x64:
            raise RuntimeError("could not enable jax_enable_x64; float64 cases would run in float32")
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        # The definitions of harness.activations, in jax ops (see activations.DEFINITIONS).
        self.act = {
            "identity": lambda z: z,
            "sigmoid": jax.nn.sigmoid,
            "tanh": jnp.tanh,
            "relu": jax.nn.relu,
            # not jax.nn.leaky_relu: its `z >= 0` gives gradient 1 at z = 0, we define 0.01.
            "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
            "elu": lambda z: jax.nn.elu(z, alpha=1.0),
            "softplus": lambda z: jnp.logaddexp(z, 0.0),
            # jax.nn.gelu defaults to the tanh approximation; "gelu" here is the exact form.
            "gelu": lambda z: jax.nn.gelu(z, approximate=False),
            "gelu_tanh": lambda z: jax.nn.gelu(z, approximate=True),
            "softmax": lambda z: jax.nn.softmax(z, axis=1),
        }
        self._compiled: dict[tuple, object] = {}

    def _value_and_grad(self, activations: tuple[str, ...], loss: str):
        """One jitted function per (activations, loss); jit itself caches per shape and dtype."""
        key = (activations, loss)
        if key not in self._compiled:
            jax, jnp, act = self.jax, self.jnp, self.act

            def J(params, X, T):
                a = X
                for (W, b), name in zip(params, activations):
                    z = a @ W + b
                    a = act[name](z)
                if loss == "cross_entropy":  # T = y, class indices
                    logp = jax.nn.log_softmax(z, axis=1)
                    return -jnp.mean(jnp.take_along_axis(logp, T[:, None], axis=1))
                if loss == "binary_cross_entropy":  # from the logits
                    ll = T * jax.nn.log_sigmoid(z) + (1 - T) * jax.nn.log_sigmoid(-z)
                    return -jnp.mean(jnp.sum(ll, axis=1))
                if loss == "half_sse":
                    return 0.5 * jnp.mean(jnp.sum((a - T) ** 2, axis=1))
                raise ValueError(f"unknown loss {loss!r}")

            self._compiled[key] = jax.jit(jax.value_and_grad(J))
        return self._compiled[key]

    def gradients(self, model: Model, arrays: dict[str, Array]) -> dict[str, Array]:
        jnp = self.jnp
        dt = model.np_dtype
        params = [(jnp.asarray(arrays[f"W{l}"], dtype=dt), jnp.asarray(arrays[f"b{l}"], dtype=dt))
                  for l in range(1, model.L + 1)]
        T = arrays["y"] if model.loss == "cross_entropy" else arrays["Y"]
        fn = self._value_and_grad(tuple(model.activations), model.loss)
        J, grads = fn(params, jnp.asarray(arrays["X"], dtype=dt), jnp.asarray(T))
        out = {"J": np.asarray(J)}
        for l, (dW, db) in enumerate(grads, start=1):
            out[f"dW{l}"], out[f"db{l}"] = np.asarray(dW), np.asarray(db)
        return out
