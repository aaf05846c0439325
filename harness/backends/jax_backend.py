"""JAX: the forward pass in jax.numpy / jax.nn, gradients from ``jax.value_and_grad`` under ``jit``.

Imported only when the backend is built. 64-bit mode is switched on here; a
float64 case whose result comes back float32 is an error (checked again by the
runner for every backend).

Compiling is nearly all of this backend's time on a cold run (a small network's gradient
takes a second or more of XLA's time, then runs in milliseconds), so compiles are counted and
kept: one executable per *signature*, the static structure (an MLP's activations and loss, a
network's layer specs, loss, dtype and L2) with the shapes and dtypes of the arrays. Names,
seeds and values are not in it, so cases that differ only there share one compile.
Arrays cross into jax as numpy arrays: ``jnp.asarray`` compiled a conversion of its own for
every new shape, one more compile per case.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
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
    # No size limit (jax_compilation_cache_max_size): with one JAX locks each read and write, but
    # it also expects an "-atime" file beside every entry, and a single entry written without
    # one (by a process without the limit, or before it) makes every later write fail with a
    # warning. Without the lock, processes sharing the folder (pytest workers, --jobs workers)
    # can at worst read an entry while it is being written: JAX warns and compiles it again.
    return folder


KEPT_SIGNATURES = 128  # compiled functions kept in memory, least recently used dropped first


def _recent(kept: OrderedDict, key):
    """``kept[key]``, now the most recently used, or None."""
    value = kept.get(key)
    if value is not None:
        kept.move_to_end(key)
    return value


def _keep(kept: OrderedDict, key, value):
    kept[key] = value
    while len(kept) > KEPT_SIGNATURES:
        kept.popitem(last=False)
    return value


@dataclass
class CompileStats:
    """Compiles of one backend: signatures compiled, and seconds in ``Traced.lower`` (tracing
    the Python function, lowering to StableHLO) and in ``Lowered.compile`` (XLA, or reading
    the persistent cache)."""

    compiles: int = 0
    lower_seconds: float = 0.0
    compile_seconds: float = 0.0

    def add(self, lower: float, compile: float) -> None:
        self.compiles += 1
        self.lower_seconds += lower
        self.compile_seconds += compile


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
        # structure -> jax.jit of its value_and_grad; signature -> compiled. Both keep the
        # KEPT_SIGNATURES used last: a sweep of random networks compiles one per case, and
        # each kept executable holds 2.6 MiB (0.14 MiB once dropped, measured on 40 small
        # MLPs); one dropped and met again is read back from the persistent cache.
        self._jitted: OrderedDict[tuple, object] = OrderedDict()
        self._executables: OrderedDict[tuple, object] = OrderedDict()
        # What compiling cost this backend: how many signatures, and the seconds spent tracing
        # and lowering to StableHLO (every run) vs in XLA (or the persistent cache, when warm).
        self.stats = CompileStats()

    def _call(self, structure: tuple, make, *args):
        """Run the value-and-grad of ``structure`` (``make()`` builds the function) on ``args``,
        compiling it once per signature: the structure with each array's shape and dtype."""
        jax = self.jax
        leaves, tree = jax.tree_util.tree_flatten(args)
        # The x64 mode too: with it off, jax compiles a float64 array's function for float32
        # (the precision trap a test provokes), and that executable refuses float64 once it is on.
        signature = (structure, tree, tuple((np.shape(x), np.result_type(x).str) for x in leaves),
                     bool(jax.config.jax_enable_x64))
        compiled = _recent(self._executables, signature)
        if compiled is None:
            jitted = _recent(self._jitted, structure)
            if jitted is None:
                jitted = _keep(self._jitted, structure,
                               jax.jit(jax.value_and_grad(make(), argnums=(0, 1), has_aux=True)))
            t0 = time.perf_counter()
            lowered = jitted.lower(*args)
            t1 = time.perf_counter()
            compiled = _keep(self._executables, signature, lowered.compile())
            self.stats.add(t1 - t0, time.perf_counter() - t1)
        return compiled(*args)

    def _mlp_loss(self, activations: tuple[str, ...], loss: str):
        """J(params, taps, X, T) of an MLP, with its intermediates: what jax differentiates."""
        from ..catalog import NETWORK_LOSSES

        act, fw = self.act, self.fw

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

        return J

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):
            return self._network_gradients(model, arrays)
        dt = model.np_dtype
        params = [(np.asarray(arrays[f"W{l}"], dtype=dt), np.asarray(arrays[f"b{l}"], dtype=dt))
                  for l in range(1, model.L + 1)]
        T = {k: np.asarray(arrays[k]) for k in ("y", "Y") if k in arrays}
        m = arrays["X"].shape[0]
        tz = [np.zeros((m, n), dtype=dt) for n in model.layers[1:]]
        ta = [np.zeros((m, n), dtype=dt) for n in model.layers[1:-1]]
        structure = ("mlp", tuple(model.activations), model.loss)
        (J, (zs, as_)), (grads, (dz, da)) = self._call(
            structure, lambda: self._mlp_loss(*structure[1:]),
            params, (tz, ta), np.asarray(arrays["X"], dtype=dt), T)
        out = {"J": np.asarray(J)}
        for l, (dW, db) in enumerate(grads, start=1):
            out[f"dW{l}"], out[f"db{l}"] = np.asarray(dW), np.asarray(db)
            out[f"z{l}"], out[f"a{l}"] = np.asarray(zs[l - 1]), np.asarray(as_[l - 1])
            out[f"dz{l}"] = np.asarray(dz[l - 1])
            if l < model.L:
                out[f"da{l}"] = np.asarray(da[l - 1])
        return out

    def _network_loss(self, net: Network):
        """J(params, taps, X, T, inputs) of a network, with its intermediates. All of ``net`` is
        static here (layer specs, loss, dtype, L2), and ``net`` holds nothing else (no case name,
        seed or values): a frozen dataclass compared by value, so equal networks share a key."""
        from ..catalog import NETWORK_LOSSES
        from ..network import walk

        jnp, fw = self.jnp, self.fw

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

        return J

    def _network_gradients(self, net: Network, arrays: dict[str, Array]) -> dict[str, Array]:
        dt = net.np_dtype
        m = arrays["X"].shape[0]
        params = {k: np.asarray(arrays[k], dtype=dt) for k in net.param_shapes()}
        inputs = {k: np.asarray(arrays[k], dtype=dt) for k in net.input_specs(m)}
        taps = {q: np.zeros(net.shape_of(q, m), dtype=dt)
                for q in net.intermediates() if not q.startswith("d")}
        T = {k: np.asarray(arrays[k]) for k in TARGET_KEYS if k in arrays}
        X = np.asarray(arrays["X"]) if net.vocab else np.asarray(arrays["X"], dtype=dt)  # ids stay ints
        (J, values), (grads, dtaps) = self._call(("network", net), lambda: self._network_loss(net),
                                                 params, taps, X, T, inputs)
        out = {"J": np.asarray(J)}
        out.update({f"d{k}": np.asarray(g) for k, g in grads.items()})
        for q, v in values.items():
            out[q], out[f"d{q}"] = np.asarray(v), np.asarray(dtaps[q])
        return out

    def jacobian(self, op: str, x: Array, **kw) -> Array:
        """The full Jacobian J[i, j] = ∂f_i/∂x_j of a map of one row x (1×n), by ``jax.jacfwd``.

        ``op`` as in the torch backend: "exp", an activation name, "linear", "loss".
        """
        jax, jnp = self.jax, self.jnp
        loss = kw.pop("loss", None)
        # Under jit, one compile per op and shape: eager jacfwd compiled each primitive it met
        # on its own (about 40 ms each, cold), most of the claims' time.
        jac = _recent(self._jitted, ("jacobian", op, loss))
        if jac is None:
            jac = _keep(self._jitted, ("jacobian", op, loss),
                        jax.jit(lambda x, arrays: jax.jacfwd(self._op(op, loss=loss, **arrays))(x)))
        arrays = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        return np.asarray(jac(jnp.asarray(x), arrays)).reshape(-1, x.size)

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

