"""The sequence plumbing around rnn, lstm and attention: embedding (token ids in), last_step and
mean_over_time (a sequence to one row per example), and residual (a skip around a body).

Shapes per example: token ids [T] (integers in [0, V), never differentiated), a sequence
[T, D] (a batch is N×T×D, each step a row).
"""

from __future__ import annotations

import numpy as np

from .base import Array, Attr, Layer, LayerError, Param, positive


def _sequence(kind: str, in_shape) -> None:
    if len(in_shape) != 2:
        raise LayerError("", f"{kind} needs a [T, D] input per example (a sequence), its input is "
                             f"{list(in_shape)}")


def _unit_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Embedding rows drawn N(0, 1) (a module-level function: a Network is pickled to plugins)."""
    return rng.standard_normal(shape)


class Embedding(Layer):
    """a[n, t] = W[x[n, t]]: row x of the V×dim table W for each token id x.

    Backward: each occurrence of id v sends its upstream row to row v of dW, and an id that
    occurs twice sends both: dW[v] = Σ_{(n,t): x[n,t] = v} da[n, t] (a scatter-add,
    ``np.add.at``; ``dW[x] = da`` would keep only the last occurrence's row). Ids are inputs,
    not differentiated: there is no dx.
    """

    name = "embedding"
    attrs = {
        "dim": Attr((int,), check=positive, doc="the width of each id's row"),
        "vocab": Attr((int,), 0, doc="V, the number of ids: set from the case's `vocab`"),
    }
    formula = "a[n, t] = W[x[n, t]], W V×dim"
    derivative = "dW[v] = Σ_{(n,t): x[n,t]=v} da[n, t] (np.add.at: repeated ids add up); no dx"
    torch_name = "F.embedding(x, W) (nn.Embedding(V, dim).weight = W)"
    jax_name = "W[x] (jnp.take(W, x, axis=0); flax.linen.Embed)"
    differences = "None: both frameworks scatter-add the rows of repeated ids in backward."

    def out_shape(self, attrs, in_shape):
        if len(in_shape) != 1:
            raise LayerError("", f"embedding takes token ids, input = [T] with vocab = V at the case "
                                 f"level; its input is {list(in_shape)}")
        return (in_shape[0], attrs["dim"])

    def params(self, spec):
        return {"W": Param((spec["vocab"], spec["dim"]), _unit_normal,
                           regularised=True)}

    def forward(self, spec, x, p, inp):
        return p["W"][x], (x, p["W"].shape)

    def param_backward(self, spec, dy, cache):
        x, shape = cache
        dW = np.zeros(shape, dtype=dy.dtype)
        np.add.at(dW, x, dy)  # repeated ids accumulate
        return {"W": dW}

    def backward(self, spec, dy, cache):
        return None, self.param_backward(spec, dy, cache)

    def torch(self, spec, fw, x, p, inp):
        return fw.F.embedding(x, p["W"])

    def jax(self, spec, fw, x, p, inp):
        return fw.jnp.take(p["W"], x, axis=0)

    def describe(self, spec):
        return f"embedding{spec['vocab']}x{spec['dim']}"


class LastStep(Layer):
    """a = x[:, T−1]: the last step's row. Backward: da goes to step T alone, zeros elsewhere."""

    name = "last_step"
    formula = "a = x[:, T−1] (N×T×H → N×H)"
    derivative = "dx[:, T−1] = da, dx[:, t] = 0 for t < T−1"
    torch_name = "x[:, -1]"
    jax_name = "x[:, -1]"

    def out_shape(self, attrs, in_shape):
        _sequence(self.name, in_shape)
        return (in_shape[1],)

    def forward(self, spec, x, p, inp):
        return x[:, -1], x.shape

    def backward(self, spec, dy, shape):
        dx = np.zeros(shape, dtype=dy.dtype)
        dx[:, -1] = dy
        return dx, {}

    def torch(self, spec, fw, x, p, inp):
        return x[:, -1]

    def jax(self, spec, fw, x, p, inp):
        return x[:, -1]


class MeanOverTime(Layer):
    """a = (1/T) Σ_t x[:, t]. Backward: every step gets da/T."""

    name = "mean_over_time"
    formula = "a = (1/T) Σ_t x[:, t] (N×T×H → N×H)"
    derivative = "dx[:, t] = da / T for every t"
    torch_name = "x.mean(dim=1)"
    jax_name = "jnp.mean(x, axis=1)"

    def out_shape(self, attrs, in_shape):
        _sequence(self.name, in_shape)
        return (in_shape[1],)

    def forward(self, spec, x, p, inp):
        return x.mean(axis=1), x.shape

    def backward(self, spec, dy, shape):
        T = shape[1]
        return np.broadcast_to((dy / T)[:, None], shape).copy(), {}

    def torch(self, spec, fw, x, p, inp):
        return x.mean(dim=1)

    def jax(self, spec, fw, x, p, inp):
        return fw.jnp.mean(x, axis=1)


class Residual(Layer):
    """a = x + body(x): the body's layers (numbered right after this one, depth-first) run on
    x, and the skip adds x back. The output a{i} is recorded after the body.

    Backward: the gradient reaching a{i} flows two ways, through the body (its layers'
    backwards, from the last down to the first, which gives d_body = ∂J/∂x along that path)
    and along the skip unchanged (the identity's Jacobian is I):
        dx = da + d_body
    ``backward(spec, da, d_body)`` is that sum; the walk through the body is the network's.
    """

    name = "residual"
    attrs = {"body": Attr((list,), doc="the layers of the body, as in `network`; output shape = input shape")}
    formula = "a = x + body(x)"
    derivative = "dx = da (the skip) + the body's backward of da"
    torch_name = "x + body(x)"
    jax_name = "x + body(x)"
    differences = "None: a skip connection is an addition in every framework."

    def merge(self, skip, body_out):
        """The skip added back (numpy, torch or jax arrays alike)."""
        return skip + body_out

    def backward(self, spec, dy: Array, d_body: Array):
        return dy + d_body, {}

    def describe(self, spec):
        return "residual"
