"""The layer functions the harness recognises in a user's file, and how each maps to the catalog.

A ``Family`` is one recognised forward/backward pair (or one loss function): the function
names and parameter counts that identify it, the shapes it is checked on, and ``setup``,
which draws seeded inputs for one shape and states
- the calls made to the user's code (forward, then its backward with the forward's cache),
- the same computation as a chain of catalog layers (arms.py runs it four ways), and
- how to read the user's results and the arms' results as the same named quantities in
  the user's convention (CS231n's b is (M,), the catalog's dense b is (1, M); DLS's arrays
  are the transposes of ours and its dW, db carry the 1/m).

Shapes are dicts of small integers (N=3, D=5, ...). A normalisation over 2 values is left
out (batch norm's N, layer norm's D, at least 3): x̂ is ±1 whatever x, so dx is 0 in exact
arithmetic and only rounding noise would be compared. The fixed list covers what the classic
mistakes need to show (m > 1, T > 1, repeated ids, stride 2, overlapping and disjoint
windows, padding); hypothesis draws from ``space`` when shrinking a failure.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..catalog import build_spec
from .arms import Chain
from .child import Call, Ref

Array = np.ndarray
Shape = dict[str, int]


@dataclass
class Setup:
    """One family on one shape: the user's calls, the catalog chain, and the readers."""

    calls: list[Call]
    chain: Chain
    x: Array
    G: Array | None
    outputs: list[tuple[int, tuple[str, ...]]]  # per call: the names of what it returns
    to_user: Callable[[dict[str, Array]], dict[str, Array]]  # an arm's result, as the user's quantities
    from_user: Callable[[dict[str, Array]], dict[str, Array]] = lambda q: q  # reshape the user's
    after_user: Callable[[dict[str, Array]], str | None] | None = None  # e.g. read dropout's mask back
    note: str = ""


@dataclass(frozen=True)
class Family:
    name: str  # the row: "affine", "batchnorm (alt)"
    style: str  # "cs231n" or "dls"
    functions: tuple[str, ...]  # forward first, then the backward (a loss: one function)
    arity: tuple[int, ...]  # their parameter counts
    catalog: str  # the catalog layers it maps to, for the README table
    shapes: tuple[tuple[tuple[str, int], ...], ...]
    space: tuple[tuple[str, int, int], ...]  # (key, low, high) for shrinking
    build: Callable[[Shape, np.random.Generator, np.dtype], Setup]
    valid: Callable[[Shape], bool] = lambda s: True
    not_yet: str = ""  # why the catalog cannot check it yet ("" when it can)
    parameters: tuple[str, ...] = ()  # the user's names for the differentiated inputs

    def shape_list(self) -> list[Shape]:
        return [dict(s) for s in self.shapes]

    def setup(self, shape: Shape, dtype: str = "float64") -> Setup:
        seed = zlib.crc32(f"{self.name}:{sorted(shape.items())}".encode())
        return self.build(shape, np.random.default_rng(seed), np.dtype(dtype))


def show(shape: Shape) -> str:
    return ",".join(f"{k}={v}" for k, v in shape.items())


def _spec(raw: dict, i: int, in_shape, batch: int):
    return build_spec(raw, i, tuple(in_shape), batch=batch)


def _normal(rng, shape, dt, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


def _away_from_zero(rng, shape, dt):
    """Standard normal values pushed at least 0.1 from 0: relu's kink is not an input."""
    v = rng.standard_normal(shape)
    return (np.sign(v) * (0.1 + np.abs(v))).astype(dt)


def _distinct(rng, shape, dt):
    """Values in a random order, at least 0.05 apart: no tied maximum in any pooling window."""
    n = math.prod(shape)
    return ((rng.permutation(n) - n / 2) * 0.05 + rng.uniform(0, 0.01, n)).reshape(shape).astype(dt)


def _fwd_bwd(fwd: str, fwd_args: tuple, bwd: str, dout: Array, *, after: tuple = ()) -> list[Call]:
    return [Call(fwd, fwd_args, keep_only=0), Call(bwd, (dout, Ref(0, 1), *after))]


# ----------------------------------------------------------------------------- CS231n


def _affine(shape, rng, dt):
    N, C, D, M = shape["N"], shape["C"], shape["D"], shape["M"]
    x_shape = (N, D) if C == 0 else (N, C, D)
    x = _normal(rng, x_shape, dt)
    w, b = _normal(rng, (math.prod(x_shape[1:]), M), dt, 1 / math.sqrt(C * D or D)), _normal(rng, (M,), dt, 0.5)
    specs = [] if C == 0 else [_spec({"layer": "flatten"}, 1, x_shape[1:], N)]
    dense = _spec({"layer": "dense", "units": M}, len(specs) + 1, (w.shape[0],), N)
    specs.append(dense)
    G = _normal(rng, (N, M), dt)
    W, B = dense.key("W"), dense.key("b")
    return Setup(_fwd_bwd("affine_forward", (x, w, b), "affine_backward", G),
                 Chain(specs, {W: w, B: b[None]}), x, G, [(0, ("out",)), (1, ("dx", "dw", "db"))],
                 lambda r: {"out": r["out"], "dx": r["dx"], "dw": r[f"d{W}"], "db": r[f"d{B}"][0]})


def _relu(shape, rng, dt):
    x = _away_from_zero(rng, (shape["N"], shape["D"]), dt)
    G = _normal(rng, x.shape, dt)
    return Setup(_fwd_bwd("relu_forward", (x,), "relu_backward", G),
                 Chain([_spec({"layer": "relu"}, 1, x.shape[1:], x.shape[0])], {}), x, G,
                 [(0, ("out",)), (1, ("dx",))], lambda r: {"out": r["out"], "dx": r["dx"]})


def _class_loss(fname: str, loss: str):
    def build(shape, rng, dt):
        N, C = shape["N"], shape["C"]
        x = _normal(rng, (N, C), dt, 2.0)
        y = rng.integers(0, C, N)
        if fname == "svm_loss":  # margins at least 0.05 from the hinge's kink at 0
            m = x - x[np.arange(N), y][:, None] + 1
            x = np.where((np.abs(m) < 0.05) & (np.arange(C) != y[:, None]), x + 0.1, x).astype(dt)
        T = {"y": y, "Y": np.eye(C, dtype=dt)[y]}
        return Setup([Call(fname, (x, y))], Chain([], {}, loss=loss, targets=T), x, None,
                     [(0, ("loss", "dx"))], lambda r: {"loss": r["J"], "dx": r["dx"]})
    return build


def _norm(kind: str, fwd: str, bwd: str, spatial: bool = False):
    def build(shape, rng, dt):
        N = shape["N"]
        feat = (shape["C"], shape["H"], shape["W"]) if spatial else (shape["D"],)
        n = feat[0] if spatial else feat[-1]
        x = (_normal(rng, (N, *feat), dt, 2.0) + 0.5).astype(dt)
        gamma, beta = (1 + _normal(rng, (n,), dt, 0.1)).astype(dt), _normal(rng, (n,), dt, 0.1)
        G = _normal(rng, x.shape, dt)
        param = {"eps": 1e-5} if kind == "layernorm" else {"mode": "train", "eps": 1e-5, "momentum": 0.9}
        spec = _spec({"layer": kind}, 1, feat, N)
        return Setup(_fwd_bwd(fwd, (x, gamma, beta, param), bwd, G),
                     Chain([spec], {"gamma1": gamma, "beta1": beta}), x, G,
                     [(0, ("out",)), (1, ("dx", "dgamma", "dbeta"))],
                     lambda r: {"out": r["out"], "dx": r["dx"], "dgamma": r["dgamma1"], "dbeta": r["dbeta1"]})
    return build


KEEP = 0.7  # dropout_param["p"]: the probability of keeping a unit (CS231n since 2017)


def _dropout(shape, rng, dt):
    N, D = shape["N"], shape["D"]
    x = _away_from_zero(rng, (N, D), dt)  # no zero input: out != 0 exactly where the unit is kept
    G = _normal(rng, x.shape, dt)
    spec = _spec({"layer": "dropout", "rate": 1 - KEEP}, 1, (D,), N)
    chain = Chain([spec], {}, {"mask1": np.ones(x.shape, dt)})
    setup = Setup(_fwd_bwd("dropout_forward", (x, {"p": KEEP, "mode": "train", "seed": 7}), "dropout_backward", G),
                  chain, x, G, [(0, ("out",)), (1, ("dx",))], lambda r: {"out": r["out"], "dx": r["dx"]})

    def read_mask(q):
        out = q.get("out")
        if not isinstance(out, np.ndarray) or out.shape != x.shape:
            return None
        kept = out != 0
        chain.inputs["mask1"] = kept.astype(dt)
        ratio = np.abs(out[kept] / x[kept])
        if kept.any() and np.allclose(ratio, 1 / (1 - KEEP), rtol=1e-4):
            return (f"your dropout_forward scales kept units by 1/(1 − p): it reads p as the drop "
                    f"probability; the harness passes p = {KEEP} as the keep probability (CS231n since 2017)")
        return None

    setup.after_user = read_mask
    setup.note = f"p = {KEEP} passed as the keep probability; the mask read back from your output (out != 0)"
    return setup


def _conv_geometry(s: Shape) -> tuple[int, int]:
    return ((s["Ho"] - 1) * s["S"] + s["K"] - 2 * s["P"], (s["Wo"] - 1) * s["S"] + s["K"] - 2 * s["P"])


def _conv(shape, rng, dt):
    N, C, F, K, S, P = (shape[k] for k in "N C F K S P".split())
    H, W = _conv_geometry(shape)
    x = _normal(rng, (N, C, H, W), dt)
    w, b = _normal(rng, (F, C, K, K), dt, 1 / math.sqrt(C * K * K)), _normal(rng, (F,), dt, 0.5)
    spec = _spec({"layer": "conv2d", "filters": F, "kernel": K, "stride": S, "padding": P}, 1, (C, H, W), N)
    G = _normal(rng, (N, *spec.out_shape), dt)
    return Setup(_fwd_bwd("conv_forward_naive", (x, w, b, {"stride": S, "pad": P}), "conv_backward_naive", G),
                 Chain([spec], {"W1": w, "b1": b}), x, G, [(0, ("out",)), (1, ("dx", "dw", "db"))],
                 lambda r: {"out": r["out"], "dx": r["dx"], "dw": r["dW1"], "db": r["db1"]})


def _pool(shape, rng, dt):
    N, C, K, S = shape["N"], shape["C"], shape["K"], shape["S"]
    H, W = (shape["Ho"] - 1) * S + K, (shape["Wo"] - 1) * S + K
    x = _distinct(rng, (N, C, H, W), dt)
    spec = _spec({"layer": "maxpool2d", "size": K, "stride": S}, 1, (C, H, W), N)
    G = _normal(rng, (N, *spec.out_shape), dt)
    return Setup(_fwd_bwd("max_pool_forward_naive", (x, {"pool_height": K, "pool_width": K, "stride": S}),
                          "max_pool_backward_naive", G),
                 Chain([spec], {}), x, G, [(0, ("out",)), (1, ("dx",))],
                 lambda r: {"out": r["out"], "dx": r["dx"]})


def _rnn_weights(rng, D, H, gates, dt):
    return (_normal(rng, (D, gates * H), dt, 1 / math.sqrt(D)), _normal(rng, (H, gates * H), dt, 1 / math.sqrt(H)),
            _normal(rng, (gates * H,), dt, 0.1))


def _rnn_step(shape, rng, dt):
    N, D, H = shape["N"], shape["D"], shape["H"]
    x, h = _normal(rng, (N, D), dt), _normal(rng, (N, H), dt, 0.5)
    Wx, Wh, b = _rnn_weights(rng, D, H, 1, dt)
    spec = _spec({"layer": "rnn", "hidden": H, "h0": True}, 1, (1, D), N)
    G = _normal(rng, (N, H), dt)
    return Setup(_fwd_bwd("rnn_step_forward", (x, h, Wx, Wh, b), "rnn_step_backward", G),
                 Chain([spec], {"Wx1": Wx, "Wh1": Wh, "b1": b, "h0_1": h}), x[:, None], G[:, None],
                 [(0, ("next_h",)), (1, ("dx", "dprev_h", "dWx", "dWh", "db"))],
                 lambda r: {"next_h": r["out"][:, 0], "dx": r["dx"][:, 0], "dprev_h": r["dh0_1"], "dWx": r["dWx1"],
                            "dWh": r["dWh1"], "db": r["db1"]})


def _sequence(kind: str, fwd: str, bwd: str):
    def build(shape, rng, dt):
        N, T, D, H = shape["N"], shape["T"], shape["D"], shape["H"]
        x, h0 = _normal(rng, (N, T, D), dt), _normal(rng, (N, H), dt, 0.5)
        Wx, Wh, b = _rnn_weights(rng, D, H, 4 if kind == "lstm" else 1, dt)
        spec = _spec({"layer": kind, "hidden": H, "h0": True}, 1, (T, D), N)
        G = _normal(rng, (N, T, H), dt)
        return Setup(_fwd_bwd(fwd, (x, h0, Wx, Wh, b), bwd, G),
                     Chain([spec], {"Wx1": Wx, "Wh1": Wh, "b1": b, "h0_1": h0}), x, G,
                     [(0, ("h",)), (1, ("dx", "dh0", "dWx", "dWh", "db"))],
                     lambda r: {"h": r["out"], "dx": r["dx"], "dh0": r["dh0_1"], "dWx": r["dWx1"],
                                "dWh": r["dWh1"], "db": r["db1"]})
    return build


def _embedding(shape, rng, dt):
    N, T, V, D = shape["N"], shape["T"], shape["V"], shape["D"]
    x = rng.integers(0, V, (N, T))
    if x.size > 1:
        x.flat[-1] = x.flat[0]  # an id that occurs twice: its rows of dout must add up
    W = _normal(rng, (V, D), dt)
    spec = _spec({"layer": "embedding", "dim": D, "vocab": V}, 1, (T,), N)
    G = _normal(rng, (N, T, D), dt)
    return Setup(_fwd_bwd("word_embedding_forward", (x, W), "word_embedding_backward", G),
                 Chain([spec], {"W1": W}), x, G, [(0, ("out",)), (1, ("dW",))],
                 lambda r: {"out": r["out"], "dW": r["dW1"]})


def _temporal_affine(shape, rng, dt):
    N, T, D, M = shape["N"], shape["T"], shape["D"], shape["M"]
    x = _normal(rng, (N, T, D), dt)
    w, b = _normal(rng, (D, M), dt, 1 / math.sqrt(D)), _normal(rng, (M,), dt, 0.5)
    spec = _spec({"layer": "dense", "units": M}, 1, (T, D), N)
    G = _normal(rng, (N, T, M), dt)
    return Setup(_fwd_bwd("temporal_affine_forward", (x, w, b), "temporal_affine_backward", G),
                 Chain([spec], {"W1": w, "b1": b[None]}), x, G, [(0, ("out",)), (1, ("dx", "dw", "db"))],
                 lambda r: {"out": r["out"], "dx": r["dx"], "dw": r["dW1"], "db": r["db1"][0]})


def _temporal_softmax(shape, rng, dt):
    N, T, V = shape["N"], shape["T"], shape["V"]
    x = _normal(rng, (N, T, V), dt, 2.0)
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) < 0.7
    if mask.size > 1:
        mask.flat[0], mask.flat[-1] = True, False  # a masked step and an unmasked one
    T_ = {"y": y, "Y": np.eye(V, dtype=dt)[y], "target_mask": mask.astype(dt)}
    return Setup([Call("temporal_softmax_loss", (x, y, mask))],
                 Chain([], {}, loss="cross_entropy", targets=T_), x, None, [(0, ("loss", "dx"))],
                 lambda r: {"loss": r["J"], "dx": r["dx"]})


# ----------------------------------------------------------------------------- DLS (columns)


def _dls_linear(activation: str | None):
    def build(shape, rng, dt):
        m, n_prev, n = shape["m"], shape["n_prev"], shape["n"]
        A = _normal(rng, (n_prev, m), dt)
        W, b = _normal(rng, (n, n_prev), dt, 1 / math.sqrt(n_prev)), _normal(rng, (n, 1), dt, 0.5)
        specs = [_spec({"layer": "dense", "units": n}, 1, (n_prev,), m)]
        if activation:  # relu's kink: fd masks any element whose nudge crosses it
            specs.append(_spec({"layer": activation}, 2, (n,), m))
        dZ = _normal(rng, (n, m), dt)
        if activation:
            calls = _fwd_bwd("linear_activation_forward", (A, W, b, activation), "linear_activation_backward",
                             dZ, after=(activation,))
            names = [(0, ("A",)), (1, ("dA_prev", "dW", "db"))]
            out_name = "A"
        else:
            calls = _fwd_bwd("linear_forward", (A, W, b), "linear_backward", dZ)
            names = [(0, ("Z",)), (1, ("dA_prev", "dW", "db"))]
            out_name = "Z"
        # The course's dZ is ∂𝓛/∂Z per example (no 1/m); its dW, db carry the 1/m of J.
        return Setup(calls, Chain(specs, {"W1": np.ascontiguousarray(W.T), "b1": np.ascontiguousarray(b.T)}),
                     np.ascontiguousarray(A.T), np.ascontiguousarray(dZ.T), names,
                     lambda r: {out_name: r["out"].T, "dA_prev": r["dx"].T, "dW": r["dW1"].T / m,
                                "db": r["db1"].T / m},
                     note="dW and db compared with (1/m) × the gradient of Σ dZ∘Z, as the course defines them")
    return build


def _dls_activation(kind: str):
    def build(shape, rng, dt):
        n, m = shape["n"], shape["m"]
        Z = _away_from_zero(rng, (n, m), dt)
        dA = _normal(rng, (n, m), dt)
        return Setup(_fwd_bwd(kind, (Z,), f"{kind}_backward", dA),
                     Chain([_spec({"layer": kind}, 1, (n,), m)], {}), np.ascontiguousarray(Z.T),
                     np.ascontiguousarray(dA.T), [(0, ("A",)), (1, ("dZ",))],
                     lambda r: {"A": r["out"].T, "dZ": r["dx"].T})
    return build


def _dls_model(shape, rng, dt):
    m = shape["m"]
    dims = [shape["n0"], shape["n1"]] + ([shape["n2"]] if shape["n2"] else []) + [1]
    X = _normal(rng, (dims[0], m), dt)
    Y = (rng.random((1, m)) < 0.5).astype(dt)
    if m > 1:
        Y[0, 0], Y[0, 1] = 1, 0  # both classes
    params, row_params, specs = {}, {}, []
    for l in range(1, len(dims)):
        W = _normal(rng, (dims[l], dims[l - 1]), dt, 1 / math.sqrt(dims[l - 1]))
        b = _normal(rng, (dims[l], 1), dt, 0.3)
        params[f"W{l}"], params[f"b{l}"] = W, b
        spec = _spec({"layer": "dense", "units": dims[l]}, len(specs) + 1, (dims[l - 1],), m)
        specs.append(spec)
        row_params[spec.key("W")], row_params[spec.key("b")] = np.ascontiguousarray(W.T), np.ascontiguousarray(b.T)
        if l < len(dims) - 1:
            specs.append(_spec({"layer": "relu"}, len(specs) + 1, (dims[l],), m))
    L = len(dims) - 1
    dense = [s for s in specs if s.kind == "dense"]
    calls = [Call("L_model_forward", (X, params), keep_only=0), Call("compute_cost", (Ref(0, 0), Y)),
             Call("L_model_backward", (Ref(0, 0), Y, Ref(0, 1)))]

    def to_user(r):
        q = {"AL": 1 / (1 + np.exp(-r["out"].T)), "cost": r["J"], "dA0": r["dx"].T * m}
        for l, s in enumerate(dense, 1):
            q[f"dW{l}"], q[f"db{l}"] = r[f"d{s.key('W')}"].T, r[f"d{s.key('b')}"].T
        return q

    def from_user(q):
        grads = q.pop("grads", None)
        if isinstance(grads, dict):
            for k in ["dA0"] + [f"d{p}{l}" for l in range(1, L + 1) for p in "Wb"]:
                q[k] = grads.get(k)
        return q

    return Setup(calls, Chain(specs, row_params, loss="binary_cross_entropy", targets={"Y": np.ascontiguousarray(Y.T)}),
                 np.ascontiguousarray(X.T), None, [(0, ("AL",)), (1, ("cost",)), (2, ("grads",))], to_user,
                 from_user=from_user,
                 note="relu hidden layers, sigmoid output, cross-entropy cost; grads['dA0'] compared with "
                      "m × ∂J/∂X (the course's dA carry no 1/m)")


def _shapes(*rows: str) -> tuple:
    return tuple(tuple((k, int(v)) for k, v in (kv.split("=") for kv in row.split())) for row in rows)


def _sp(spec: str) -> tuple:
    return tuple((k, int(lo), int(hi)) for k, lo, hi in (t.split(":") for t in spec.split()))


def _conv_valid(s):
    H, W = _conv_geometry(s)
    return H >= 1 and W >= 1 and s["P"] < s["K"]


FAMILIES: list[Family] = [
    Family("affine", "cs231n", ("affine_forward", "affine_backward"), (3, 2), "flatten (x of more than 2 axes), dense",
           _shapes("N=1 C=0 D=3 M=2", "N=4 C=2 D=3 M=5", "N=3 C=0 D=7 M=1"), _sp("N:1:5 C:0:3 D:1:5 M:1:5"), _affine),
    Family("relu", "cs231n", ("relu_forward", "relu_backward"), (1, 2), "relu",
           _shapes("N=1 D=3", "N=4 D=5"), _sp("N:1:5 D:1:6"), _relu),
    Family("softmax_loss", "cs231n", ("softmax_loss",), (2,), "cross_entropy loss",
           _shapes("N=1 C=3", "N=5 C=7"), _sp("N:1:6 C:2:7"), _class_loss("softmax_loss", "cross_entropy")),
    Family("svm_loss", "cs231n", ("svm_loss",), (2,), "multiclass_hinge loss",
           _shapes("N=1 C=3", "N=6 C=5"), _sp("N:1:6 C:2:7"), _class_loss("svm_loss", "multiclass_hinge")),
    Family("batchnorm", "cs231n", ("batchnorm_forward", "batchnorm_backward"), (4, 2), "batchnorm",
           _shapes("N=3 D=3", "N=5 D=4", "N=7 D=1"), _sp("N:3:7 D:1:5"),
           _norm("batchnorm", "batchnorm_forward", "batchnorm_backward")),
    Family("batchnorm (alt)", "cs231n", ("batchnorm_forward", "batchnorm_backward_alt"), (4, 2), "batchnorm",
           _shapes("N=3 D=3", "N=5 D=4", "N=7 D=1"), _sp("N:3:7 D:1:5"),
           _norm("batchnorm", "batchnorm_forward", "batchnorm_backward_alt")),
    Family("layernorm", "cs231n", ("layernorm_forward", "layernorm_backward"), (4, 2), "layernorm",
           _shapes("N=1 D=3", "N=4 D=5"), _sp("N:1:6 D:3:6"),
           _norm("layernorm", "layernorm_forward", "layernorm_backward")),
    Family("dropout", "cs231n", ("dropout_forward", "dropout_backward"), (2, 2), "dropout (mask read back)",
           _shapes("N=1 D=8", "N=4 D=6"), _sp("N:1:5 D:1:8"), _dropout),
    Family("conv", "cs231n", ("conv_forward_naive", "conv_backward_naive"), (4, 2), "conv2d",
           _shapes("N=2 C=3 Ho=3 Wo=3 F=2 K=3 S=1 P=1", "N=1 C=1 Ho=2 Wo=3 F=3 K=2 S=2 P=0",
                   "N=2 C=2 Ho=3 Wo=3 F=2 K=3 S=2 P=1"),
           _sp("N:1:3 C:1:3 Ho:1:3 Wo:1:3 F:1:3 K:1:3 S:1:2 P:0:1"), _conv, valid=_conv_valid),
    Family("max_pool", "cs231n", ("max_pool_forward_naive", "max_pool_backward_naive"), (2, 2), "maxpool2d",
           _shapes("N=2 C=1 Ho=2 Wo=2 K=2 S=2", "N=1 C=2 Ho=2 Wo=3 K=3 S=2", "N=2 C=2 Ho=3 Wo=2 K=2 S=1"),
           _sp("N:1:3 C:1:3 Ho:1:3 Wo:1:3 K:1:3 S:1:3"), _pool),
    Family("spatial_batchnorm", "cs231n", ("spatial_batchnorm_forward", "spatial_batchnorm_backward"), (4, 2),
           "batchnorm over [C, H, W]", _shapes("N=2 C=3 H=2 W=2", "N=1 C=2 H=3 W=4"),
           _sp("N:1:3 C:1:3 H:1:3 W:1:3"), _norm("batchnorm", "spatial_batchnorm_forward",
                                                  "spatial_batchnorm_backward", spatial=True),
           valid=lambda s: s["N"] * s["H"] * s["W"] >= 3),
    Family("rnn_step", "cs231n", ("rnn_step_forward", "rnn_step_backward"), (5, 2), "rnn, T = 1, h0",
           _shapes("N=1 D=3 H=4", "N=3 D=5 H=2"), _sp("N:1:4 D:1:4 H:1:4"), _rnn_step),
    Family("rnn", "cs231n", ("rnn_forward", "rnn_backward"), (5, 2), "rnn with h0",
           _shapes("N=1 T=1 D=3 H=2", "N=3 T=4 D=2 H=5"), _sp("N:1:3 T:1:4 D:1:3 H:1:3"),
           _sequence("rnn", "rnn_forward", "rnn_backward")),
    Family("word_embedding", "cs231n", ("word_embedding_forward", "word_embedding_backward"), (2, 2), "embedding",
           _shapes("N=1 T=1 V=3 D=2", "N=2 T=4 V=5 D=3"), _sp("N:1:3 T:1:4 V:1:5 D:1:3"), _embedding),
    Family("lstm_step", "cs231n", ("lstm_step_forward", "lstm_step_backward"), (6, 3), "",
           (), (), _rnn_step, not_yet="the catalog's lstm starts from c0 = 0; a step with prev_c needs an "
                                      "initial cell state"),
    Family("lstm", "cs231n", ("lstm_forward", "lstm_backward"), (5, 2), "lstm with h0 (gates i, f, o, g)",
           _shapes("N=1 T=1 D=3 H=2", "N=2 T=3 D=4 H=3"), _sp("N:1:3 T:1:4 D:1:3 H:1:3"),
           _sequence("lstm", "lstm_forward", "lstm_backward")),
    Family("temporal_affine", "cs231n", ("temporal_affine_forward", "temporal_affine_backward"), (3, 2),
           "dense on [T, D]", _shapes("N=1 T=1 D=2 M=3", "N=3 T=4 D=5 M=2"), _sp("N:1:4 T:1:4 D:1:4 M:1:4"),
           _temporal_affine),
    Family("temporal_softmax_loss", "cs231n", ("temporal_softmax_loss",), (3,),
           "cross_entropy per step, target_mask", _shapes("N=1 T=1 V=3", "N=3 T=4 V=5"),
           _sp("N:1:4 T:1:4 V:2:5"), _temporal_softmax),
    Family("linear", "dls", ("linear_forward", "linear_backward"), (3, 2), "dense (columns: the transposes)",
           _shapes("m=1 n_prev=3 n=2", "m=5 n_prev=4 n=3"), _sp("m:1:5 n_prev:1:4 n:1:4"), _dls_linear(None)),
    Family("linear_activation[relu]", "dls", ("linear_activation_forward", "linear_activation_backward"), (4, 3),
           "dense, relu", _shapes("m=1 n_prev=3 n=2", "m=5 n_prev=4 n=3"), _sp("m:1:5 n_prev:1:4 n:1:4"),
           _dls_linear("relu")),
    Family("linear_activation[sigmoid]", "dls", ("linear_activation_forward", "linear_activation_backward"),
           (4, 3), "dense, sigmoid", _shapes("m=1 n_prev=3 n=2", "m=5 n_prev=4 n=3"),
           _sp("m:1:5 n_prev:1:4 n:1:4"), _dls_linear("sigmoid")),
    Family("relu (DLS)", "dls", ("relu", "relu_backward"), (1, 2), "relu",
           _shapes("n=3 m=1", "n=4 m=5"), _sp("n:1:5 m:1:5"), _dls_activation("relu")),
    Family("sigmoid (DLS)", "dls", ("sigmoid", "sigmoid_backward"), (1, 2), "sigmoid",
           _shapes("n=3 m=1", "n=4 m=5"), _sp("n:1:5 m:1:5"), _dls_activation("sigmoid")),
    Family("L_model", "dls", ("L_model_forward", "compute_cost", "L_model_backward"), (2, 2, 3),
           "dense, relu, …, dense; binary_cross_entropy",
           _shapes("m=5 n0=4 n1=3 n2=0", "m=4 n0=5 n1=4 n2=3", "m=1 n0=3 n1=2 n2=0"),
           _sp("m:1:5 n0:1:4 n1:1:4 n2:0:3"), _dls_model),
]
