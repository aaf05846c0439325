"""``run --backend layers:FILE.py``: a backend built from a user's layer functions.

Each catalog layer of a case runs through the user's forward and backward of that layer
(CS231n style: ``affine_forward`` / ``affine_backward`` for dense, ``relu_forward``,
``batchnorm_forward``, ``spatial_batchnorm_forward``, ``layernorm_forward``,
``conv_forward_naive``, ``max_pool_forward_naive``, ``word_embedding_forward``,
``rnn_forward``, ``lstm_forward``, ``temporal_affine_forward``; DLS style: ``relu`` and
``sigmoid`` with their backwards for activations). The harness adds only what has no
gradient to get wrong (flatten's reshape, a residual's sum) and the loss at the top (the
catalog's, as for every backend). A case with a layer the file does not cover, dropout
(the user's forward draws its own mask, the case's cannot be handed to it) or an L2 term
(a layer file has none) is not applicable: a note for that case, not an error.

The backend runs in the child process every ``--backend`` plugin runs in
(``backends/isolated.py``), so the user's code cannot end the run; it is imported there,
in that process, and every call gets copies of the arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..activations import ACTIVATIONS
from .base import NotApplicable
from ..catalog import LAYERS, NETWORK_LOSSES
from ..errors import InputError
from ..network import Network, targets

PREFIX = "layers:"


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class LayersBackend:
    kind = "analytic"

    def __init__(self, path: str) -> None:
        from .user_file import import_file

        if not Path(path).is_file():
            raise InputError(f"layers file {path!r} does not exist", field="--backend")
        module = import_file(path)
        self.f = {n: v for n, v in vars(module).items() if callable(v) and not n.startswith("_")}
        self.name = Path(path).stem

    # ------------------------------------------------------------------ one layer

    def _call(self, name: str, *args):
        return self.f[name](*[a.copy() if isinstance(a, np.ndarray) else a for a in args])

    def _need(self, spec_label: str, *names: str) -> None:
        missing = [n for n in names if n not in self.f]
        if missing:
            raise NotApplicable(f"{spec_label}: your file has no {', '.join(missing)}")

    def _activation(self, label: str, name: str):
        """(forward(z) -> (a, cache), backward(da, cache) -> dz) from the user's functions."""
        if name == "relu" and {"relu_forward", "relu_backward"} <= set(self.f):
            return (lambda z: self._call("relu_forward", z)), (lambda da, c: self._call("relu_backward", da, c))
        if name in ("relu", "sigmoid") and {name, f"{name}_backward"} <= set(self.f):  # DLS: elementwise
            return (lambda z: self._call(name, z)), (lambda da, c: self._call(f"{name}_backward", da, c))
        raise NotApplicable(f"{label}: activation {name!r} has no forward/backward pair in your file")

    def _layer(self, spec, p: dict):
        """(forward(x) -> (y, cache), backward(dy, cache) -> (dx, {local: grad}))."""
        kind, label = spec.kind, spec.label()
        if kind == "dense":
            b = p["b"][0] if "b" in p else np.zeros(p["W"].shape[1], p["W"].dtype)
            three = len(spec.in_shape) == 2
            fwd, bwd = ("temporal_affine_forward", "temporal_affine_backward") if three else \
                ("affine_forward", "affine_backward")
            self._need(label, fwd, bwd)

            def backward(dy, cache):
                dx, dW, db = self._call(bwd, dy, cache)
                return dx, {"W": dW, **({"b": np.asarray(db).reshape(1, -1)} if "b" in p else {})}
            return (lambda x: self._call(fwd, x, p["W"], b)), backward
        if kind in ACTIVATIONS or kind in ("relu", "sigmoid"):
            f, b_ = self._activation(label, kind)
            return f, (lambda dy, cache: (b_(dy, cache), {}))
        if kind in ("batchnorm", "layernorm"):
            four = len(spec.in_shape) == 3 and kind == "batchnorm"
            stem = "spatial_batchnorm" if four else kind
            self._need(label, f"{stem}_forward", f"{stem}_backward")
            param = {"mode": "train", "eps": spec["eps"], "momentum": 0.9} if kind == "batchnorm" else {"eps": spec["eps"]}
            rows = len(spec.in_shape) == 2  # N×T×D: per feature over batch and steps, as N·T rows

            def forward(x):
                shape = x.shape
                y, cache = self._call(f"{stem}_forward", x.reshape(-1, shape[-1]) if rows else x, p["gamma"],
                                      p["beta"], dict(param))
                return y.reshape(shape), (cache, shape)

            def backward(dy, cache):
                c, shape = cache
                dx, dgamma, dbeta = self._call(f"{stem}_backward", dy.reshape(-1, shape[-1]) if rows else dy, c)
                return np.asarray(dx).reshape(shape), {"gamma": dgamma, "beta": dbeta}
            return forward, backward
        if kind == "conv2d":
            (sh, sw), (ph, pw) = _pair(spec["stride"]), _pair(spec["padding"])
            if sh != sw or ph != pw:
                raise NotApplicable(f"{label}: conv_param takes one stride and one pad; this layer has "
                                    f"stride {spec['stride']}, padding {spec['padding']}")
            self._need(label, "conv_forward_naive", "conv_backward_naive")
            b = p.get("b", np.zeros(p["W"].shape[0], p["W"].dtype))

            def backward(dy, cache):
                dx, dW, db = self._call("conv_backward_naive", dy, cache)
                return dx, {"W": dW, **({"b": db} if "b" in p else {})}
            return (lambda x: self._call("conv_forward_naive", x, p["W"], b, {"stride": sh, "pad": ph})), backward
        if kind == "maxpool2d":
            (kh, kw), (sh, sw) = LAYERS[kind].geometry(spec)
            if sh != sw:
                raise NotApplicable(f"{label}: pool_param takes one stride; this layer has {spec['stride']}")
            self._need(label, "max_pool_forward_naive", "max_pool_backward_naive")
            param = {"pool_height": kh, "pool_width": kw, "stride": sh}
            return (lambda x: self._call("max_pool_forward_naive", x, dict(param))), \
                (lambda dy, cache: (self._call("max_pool_backward_naive", dy, cache), {}))
        if kind == "flatten":  # a reshape: nothing to get wrong, the harness does it
            return (lambda x: (x.reshape(x.shape[0], -1), x.shape)), (lambda dy, shape: (dy.reshape(shape), {}))
        if kind == "embedding":
            self._need(label, "word_embedding_forward", "word_embedding_backward")
            return (lambda x: self._call("word_embedding_forward", x, p["W"])), \
                (lambda dy, cache: (None, {"W": self._call("word_embedding_backward", dy, cache)}))
        if kind in ("rnn", "lstm"):
            self._need(label, f"{kind}_forward", f"{kind}_backward")

            def forward(x):
                h0 = p["h0"] if "h0" in p else np.zeros((x.shape[0], spec["hidden"]), x.dtype)
                return self._call(f"{kind}_forward", x, h0, p["Wx"], p["Wh"], p["b"])

            def backward(dy, cache):
                dx, dh0, dWx, dWh, db = self._call(f"{kind}_backward", dy, cache)
                return dx, {"Wx": dWx, "Wh": dWh, "b": db, **({"h0": dh0} if "h0" in p else {})}
            return forward, backward
        if kind == "dropout":
            raise NotApplicable(f"{label}: your dropout_forward draws its own mask; the case's mask{spec.index} "
                                "cannot be handed to it (check it with python -m harness layers)")
        raise NotApplicable(f"{label}: no function of a layers file covers {kind}")

    # ------------------------------------------------------------------ a network

    def gradients(self, model, arrays):
        if not isinstance(model, Network):
            return self._mlp(model, arrays)
        net = model
        m = arrays["X"].shape[0]
        if net.l2_coefficient(m):
            raise NotApplicable("an L2 term: a layers file has no function for it")
        ops = {}
        for spec in net.network:
            if spec.kind == "residual":
                continue
            p = {local: arrays[spec.key(local)] for local in LAYERS[spec.kind].params(spec)}
            ops[spec.index] = (self._layer(spec, p), self._activation(spec.label(), spec.activation)
                               if spec.activation else None)
        out, caches, acts = {}, {}, {}
        a, skips = arrays["X"], []
        for spec in net.network:
            i = spec.index
            if spec.kind == "residual":
                skips.append(a)
                continue
            (forward, _), act = ops[i]
            y, caches[i] = forward(a)
            y = np.asarray(y)
            if act is not None:
                out[f"z{i}"] = y
                y, acts[i] = act[0](y)
            a = out[f"a{i}"] = np.asarray(y)
            for r in net.closers(i):
                a = out[f"a{r}"] = LAYERS["residual"].merge(skips.pop(), a)
        loss = NETWORK_LOSSES[net.loss]
        T = targets(net, arrays)
        out["J"] = np.asarray(loss.cost(a, T))
        da = loss.grad(a, T)
        skip_da = {}
        for spec in reversed(net.network):
            i = spec.index
            if spec.kind == "residual":
                da, _ = LAYERS["residual"].backward(spec, skip_da.pop(i), da)
                continue
            for r in reversed(net.closers(i)):
                out[f"da{r}"] = skip_da[r] = da
            out[f"da{i}"] = da
            (_, backward), act = ops[i]
            if act is not None:
                da = out[f"dz{i}"] = np.asarray(act[1](da, acts[i]))
            da, grads = backward(da, caches[i])
            for local, g in grads.items():
                out[f"d{spec.key(local)}"] = np.asarray(g)
        return out

    def _mlp(self, model, arrays):
        """The MLP form: dense layers through affine_forward, hidden activations through the
        user's, the output activation and loss folded as the harness's manual arm does."""
        from ..backends.manual import output_delta
        from ..losses import cost

        L = model.L
        fwd = []
        for l in range(1, L + 1):
            W, b = arrays[f"W{l}"], arrays[f"b{l}"]
            self._need(f"layer {l} (dense)", "affine_forward", "affine_backward")
            act = self._activation(f"layer {l}", model.activations[l - 1]) if l < L else None
            fwd.append((W, b, act))
        out, caches, acts = {}, {}, {}
        a = arrays["X"]
        for l, (W, b, act) in enumerate(fwd, 1):
            z, caches[l] = self._call("affine_forward", a, W, b[0])
            out[f"z{l}"] = z = np.asarray(z)
            if act is not None:
                a, acts[l] = act[0](z)
                a = np.asarray(a)
            else:
                a = ACTIVATIONS[model.activations[-1]].g(z) if model.activations[-1] in ACTIVATIONS else None
                if a is None:
                    from ..activations import softmax
                    a = softmax(z)
            out[f"a{l}"] = a
        Y, m = arrays["Y"], arrays["X"].shape[0]
        out["J"] = np.asarray(cost(model.loss, out[f"z{L}"], a, Y))
        dz = output_delta(model, out[f"z{L}"], a, Y) / m
        for l in range(L, 0, -1):
            out[f"dz{l}"] = dz
            da, dW, db = self._call("affine_backward", dz, caches[l])
            out[f"dW{l}"], out[f"db{l}"] = np.asarray(dW), np.asarray(db).reshape(1, -1)
            if l > 1:
                out[f"da{l - 1}"] = da = np.asarray(da)
                dz = np.asarray(fwd[l - 2][2][1](da, acts[l - 1]))
        return out
