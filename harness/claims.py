"""Claims: every statement of the derivation, checked with numbers against torch, JAX and fd.

Each claim pairs a *hand* side (the formula, in numpy) with what each framework computes
for the same thing (its autograd Jacobian, its gradients, its intermediates). Both sides
go through ``compare`` with the tolerance row of the case dtype, so a claim passes or
fails exactly like a backend comparison.

``python -m harness claims [--out DIR]`` runs them all; ``tests/test_claims.py`` runs
each MLP claim as a test, ``tests/test_network_claims.py`` each catalog layer claim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import cached_property

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX, forward as g
from .cases import Case
from .catalog import L2_FORMS
from .compare import compare
from .model import DTYPES, Model
from .network import forward as network_forward
from .selfcheck import build_network
from .tolerances import ANALYTIC, FINITE_DIFFERENCE, lookup

Array = np.ndarray
FRAMEWORKS = ("torch", "jax", "fd")


@dataclass(frozen=True)
class Instance:
    """One numeric instance of a claim: the hand side and each framework's side."""

    shape: str
    hand: Array
    by: dict[str, Array]  # framework -> its value of the same quantity


@dataclass(frozen=True)
class Claim:
    id: str
    formula: str
    instances: Callable[["Context"], Iterator[Instance]]


@dataclass(frozen=True)
class Outcome:
    claim: str
    formula: str
    dtype: str
    shape: str
    framework: str
    max_abs: float
    norm_rel: float
    tol_used: float
    passed: bool

    def as_row(self) -> dict:
        return asdict(self)


# Networks the network-level claims run on: every loss, every activation at least once.
NETWORKS: list[tuple[tuple[int, ...], tuple[str, ...], str, int]] = [
    ((4, 5, 3), ("tanh", "softmax"), "cross_entropy", 6),
    ((6, 8, 7, 4), ("relu", "gelu", "softmax"), "cross_entropy", 5),
    ((3, 4, 4, 2), ("sigmoid", "elu", "sigmoid"), "binary_cross_entropy", 4),
    ((5, 6, 3), ("softplus", "identity"), "half_sse", 3),
    ((4, 6, 5, 3), ("gelu_tanh", "leaky_relu", "softmax"), "half_sse", 4),
    ((3, 4, 2), ("leaky_relu", "tanh"), "half_sse", 2),
]
ROW_SIZES = (1, 4, 10)  # N for the Jacobian claims on one row z (1×N)

# Catalog networks of the layer claims: (name, input, layers, loss, m). No batchnorm, dropout
# or layernorm is layer 1, so its input a^[i-1] has a gradient in every framework's results
# (X has none); no relu, so fd has no kink to step around; layernorm's input is m×n with
# m ≠ n, so a transposition cannot pass unseen.
LAYER_NETWORKS: list[tuple[str, tuple[int, ...], list[dict], str, int]] = [
    ("bn-drop-ln", (5,), [
        {"layer": "dense", "units": 5, "activation": "tanh"},
        {"layer": "batchnorm"},
        {"layer": "dropout", "rate": 0.3},
        {"layer": "dense", "units": 7},
        {"layer": "layernorm"},
        {"layer": "tanh"},
        {"layer": "dense", "units": 3},
    ], "cross_entropy", 6),
    ("ln-drop-bn", (4,), [
        {"layer": "dense", "units": 3},
        {"layer": "layernorm"},
        {"layer": "dense", "units": 5, "activation": "sigmoid"},
        {"layer": "dropout", "rate": 0.5},
        {"layer": "batchnorm"},
        {"layer": "dense", "units": 2},
    ], "half_sse", 9),
    # conv at layer 1 (dW, db) and above it (dx too) with a non-square kernel, a stride of 2
    # along one axis and padding 1 (a column of x_pad no window reaches); a max pool above
    # layer 1 whose windows overlap and stride (3×3, stride 2), an average pool whose windows
    # overlap; a spatial batch norm. Small: fd measures every intermediate (≤ 512 of them).
    ("conv-pool-bn", (2, 6, 6), [
        {"layer": "conv2d", "filters": 2, "kernel": 2, "activation": "tanh"},
        {"layer": "maxpool2d", "size": 3, "stride": 2},
        {"layer": "batchnorm"},
        {"layer": "conv2d", "filters": 4, "kernel": [2, 1], "stride": [1, 2], "padding": 1,
         "activation": "sigmoid"},
        {"layer": "avgpool2d", "size": 2, "stride": 1},
        {"layer": "flatten"},
        {"layer": "dense", "units": 3},
    ], "cross_entropy", 2),
    # Sequences: token ids (vocab 5 over 3×6 = 18 positions: ids repeat), an rnn above layer 1
    # with its h0 a parameter (dx and dh0 are both compared), a causal 2-head attention on the
    # rnn's states, then a classifier. The sixth entry is the vocab.
    ("tokens-rnn-attention", (6,), [
        {"layer": "embedding", "dim": 4},
        {"layer": "dense", "units": 4, "activation": "tanh"},
        {"layer": "rnn", "hidden": 4, "h0": True},
        {"layer": "attention", "heads": 2, "causal": True},
        {"layer": "mean_over_time"},
        {"layer": "dense", "units": 3},
    ], "cross_entropy", 3, 5),
]
L2_LAMBDA = 0.3  # λ of the L2 claim, on the first of LAYER_NETWORKS in every form


class Context:
    """The frameworks, the dtype, and each network's arrays and framework results (cached)."""

    def __init__(self, frameworks: dict[str, object], dtype: str, seed: int = 0) -> None:
        self.fw, self.dtype, self.seed = frameworks, dtype, seed

    def rows(self, sizes=ROW_SIZES) -> Iterator[tuple[str, Array]]:
        rng = np.random.default_rng(self.seed)
        for n in sizes:
            # Away from the kinks at 0 so every g is differentiable at every sample point.
            z = rng.standard_normal((1, n)) * 1.5
            z = np.where(np.abs(z) < 0.05, 0.3, z)
            yield f"z: 1×{n}", z.astype(self.dtype)

    @cached_property
    def networks(self) -> list[tuple[Case, dict[str, Array], dict[str, dict[str, Array]]]]:
        out = []
        for i, (layers, acts, loss, m) in enumerate(NETWORKS):
            case = Case(f"net{i}", Model(layers, acts, loss, self.dtype), m, self.seed + i)
            arrays = case.arrays()
            results = {name: fw.gradients(case.model, arrays) for name, fw in self.fw.items()}
            out.append((case, arrays, results))
        return out

    def _run(self, case: Case, arrays: dict[str, Array]) -> dict[str, dict[str, Array]]:
        """Each framework's results on a catalog network (for fd, the values z{i}, a{i} of the
        numpy forward its nudges start from, which it also returns)."""
        _, values, _ = network_forward(case.model, arrays)
        return {name: {**values, **fw.gradients(case.model, arrays)} for name, fw in self.fw.items()}

    @cached_property
    def layer_networks(self) -> list[tuple[Case, dict[str, Array], dict[str, dict[str, Array]]]]:
        """LAYER_NETWORKS without L2: (case, arrays, {framework: its results})."""
        out = []
        for i, (name, input, layers, loss, m, *vocab) in enumerate(LAYER_NETWORKS):
            net = build_network(input, layers, loss, self.dtype, vocab=vocab[0] if vocab else 0, batch=m)
            case = Case(name, net, m, self.seed + 100 + i)
            arrays = case.arrays()
            out.append((case, arrays, self._run(case, arrays)))
        return out

    @cached_property
    def l2_networks(self) -> list[tuple[str, Case, dict[str, dict[str, Array]]]]:
        """The first layer network with λ = L2_LAMBDA in each form: (form, case, results).
        Its arrays are those of ``layer_networks[0]``: the L2 term draws nothing."""
        base, arrays, _ = self.layer_networks[0]
        out = []
        for form in L2_FORMS:
            case = replace(base, name=f"{base.name} l2={L2_LAMBDA:g}({form})",
                           model=replace(base.model, l2=L2_LAMBDA, l2_form=form))
            out.append((form, case, self._run(case, arrays)))
        return out

    def per_example(self, case: Case, arrays: dict[str, Array], i: int) -> dict[str, dict[str, Array]]:
        """Each framework's results on example i alone (a batch of one: J = 𝓛⁽ⁱ⁾)."""
        one = {k: (v if k[0] in "Wb" else v[i:i + 1]) for k, v in arrays.items()}
        return {name: fw.gradients(case.model, one) for name, fw in self.fw.items()}


def _shape(case: Case, extra: str = "") -> str:
    return f"{'-'.join(map(str, case.model.layers))} [{','.join(case.model.activations)}] m={case.batch}{extra}"


# --------------------------------------------------------------------------- the claims


def _jacobian_claim(op: str, hand: Callable[[Array], Array], sizes=ROW_SIZES):
    def instances(ctx: Context) -> Iterator[Instance]:
        for shape, z in ctx.rows(sizes):
            yield Instance(shape, hand(z), {n: fw.jacobian(op, z) for n, fw in ctx.fw.items()})
    return instances


def _softmax_jacobian(z: Array) -> Array:
    y = g(SOFTMAX, z)  # 1×N
    return np.diag(y[0]) - y.T @ y


def _one_hot_ce(ctx: Context) -> Iterator[Instance]:
    for case, arrays, results in ctx.networks:
        if case.model.loss != "cross_entropy":
            continue
        zL = results["torch"][f"z{case.model.L}"]
        for i in range(case.batch):
            # hand: the one-hot dot product; frameworks: their index-based loss on example i.
            y_bar = arrays["Y"][i:i + 1]
            hand = -(y_bar * np.log(g(SOFTMAX, zL[i:i + 1]))).sum()
            single = ctx.per_example(case, arrays, i)
            # fd evaluates J with the same one-hot numpy formula as the hand side: no evidence.
            yield Instance(_shape(case, f", i={i}, y={arrays['y'][i]}"), np.asarray(hand),
                           {n: r["J"] for n, r in single.items() if n != "fd"})


def _delta_L(model: Model, a: Array, z: Array, Y: Array) -> Array:
    """The claimed ∂𝓛/∂z^[L], row by row, written from the formulas."""
    out_act = model.activations[-1]
    if model.loss in ("cross_entropy", "binary_cross_entropy"):
        return a - Y  # ŷ − ȳ, a − y
    if out_act == SOFTMAX:
        da = a - Y  # (a − y) · (diag(ŷ) − ŷᵀŷ), row by row
        return a * (da - (da * a).sum(axis=1, keepdims=True))
    return (a - Y) * ACTIVATIONS[out_act].g_prime(z)


def _output_delta(loss: str):
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, results in ctx.networks:
            model = case.model
            if model.loss != loss:
                continue
            L = model.L
            for name, r in results.items():
                hand = _delta_L(model, r[f"a{L}"], r[f"z{L}"], arrays["Y"])
                # ∂𝓛⁽ⁱ⁾/∂z^[L] row by row is m · ∂J/∂z^[L].
                yield Instance(_shape(case, f", output {model.activations[-1]}"), hand,
                               {name: case.batch * r[f"dz{L}"]})
    return instances


def _recurrence(ctx: Context) -> Iterator[Instance]:
    for case, arrays, results in ctx.networks:
        model = case.model
        for l in range(1, model.L):
            g_prime = ACTIVATIONS[model.activations[l - 1]].g_prime
            for name, r in results.items():
                hand = (r[f"dz{l + 1}"] @ arrays[f"W{l + 1}"].T) * g_prime(r[f"z{l}"])
                yield Instance(_shape(case, f", l={l}"), hand, {name: r[f"dz{l}"]})


def _param_gradient(kind: str):
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, results in ctx.networks:
            for l in range(1, case.model.L + 1):
                for name, r in results.items():
                    a_prev = arrays["X"] if l == 1 else r[f"a{l - 1}"]
                    if kind == "W":
                        hand = a_prev.T @ r[f"dz{l}"]
                    else:
                        hand = r[f"dz{l}"].sum(axis=0, keepdims=True)
                    yield Instance(_shape(case, f", l={l}"), hand, {name: r[f"d{kind}{l}"]})
    return instances


def _mean_of_examples(ctx: Context) -> Iterator[Instance]:
    for case, arrays, results in ctx.networks[:3]:
        singles = [ctx.per_example(case, arrays, i) for i in range(case.batch)]
        for q in ("dW1", "db1", f"dW{case.model.L}"):
            for name in results:
                hand = np.mean([s[name][q] for s in singles], axis=0)  # (1/m) Σᵢ ∂𝓛⁽ⁱ⁾/∂θ
                yield Instance(_shape(case, f", {q}"), hand, {name: results[name][q]})


def _chain_of_jacobians(ctx: Context) -> Iterator[Instance]:
    for case, arrays, results in ctx.networks:
        model, L = case.model, case.model.L
        ref = results["torch"]
        i = 0  # one example: the derivation is per example
        z = {l: ref[f"z{l}"][i:i + 1] for l in range(1, L + 1)}
        a = {l: ref[f"a{l}"][i:i + 1] for l in range(1, L + 1)}
        Y = arrays["Y"][i:i + 1]
        # Elementwise: δ^[L] from the shortcut formulas, then the recurrence with ∘ g'.
        out_act = model.activations[-1]
        elementwise = {L: _delta_L(model, a[L], z[L], Y)}
        for l in range(L - 1, 0, -1):
            elementwise[l] = (elementwise[l + 1] @ arrays[f"W{l + 1}"].T) * \
                ACTIVATIONS[model.activations[l - 1]].g_prime(z[l])
        # Full Jacobians from each framework: ∂𝓛/∂a^[L] · ∂a^[L]/∂z^[L] · Π (∂z^[k+1]/∂a^[k] · ∂a^[k]/∂z^[k]).
        for name, fw in ctx.fw.items():
            d = fw.jacobian("loss", a[L], loss=model.loss, Y=Y) @ fw.jacobian(out_act, z[L])
            chained = {L: d}
            for l in range(L - 1, 0, -1):
                W, b = arrays[f"W{l + 1}"], arrays[f"b{l + 1}"]
                d = d @ fw.jacobian("linear", a[l], W=W, b=b) @ fw.jacobian(model.activations[l - 1], z[l])
                chained[l] = d
            for l in range(L, 0, -1):
                yield Instance(_shape(case, f", i=0, l={l}"), elementwise[l], {name: chained[l]})


# ----------------------------------------------------------- claims of the catalog layers
# The hand side is the textbook formula in numpy (float64), written out here and fed each
# framework's own values (its forward a^[i-1], its ∂J/∂a^[i]); the framework's side is its
# own gradient of J (autograd, jax.grad, finite differences of J) at the layer's input.


def _layers_of(ctx: Context, kind: str):
    """(case, arrays, spec, {framework: results}) for every layer of ``kind`` in the layer networks."""
    for case, arrays, results in ctx.layer_networks:
        for spec in case.model.network:
            if spec.kind == kind:
                yield case, arrays, spec, results


def _where(case: Case, spec, extra: str) -> str:
    return f"{case.name}, {spec.label()} on {'×'.join(map(str, (case.batch, *spec.in_shape)))}, {extra}"


def _f64(x) -> Array:
    return np.asarray(x, dtype=np.float64)


def batchnorm_by_hand(x: Array, gamma: Array, dy: Array, eps: float) -> tuple[Array, Array, Array, Array]:
    """Batch norm of x (m×n, statistics per column over the m rows) and its backward, from the
    textbook: x̂ = (x − μ)/σ, σ = √(σ² + eps) with the biased σ², dx̂ = dy ∘ γ, and
        dx = (1/(mσ)) (m dx̂ − Σ dx̂ − x̂ ∘ Σ(dx̂ ∘ x̂)),   dγ = Σ dy ∘ x̂,   dβ = Σ dy.
    Returns x̂, dx, dγ, dβ (float64)."""
    x, gamma, dy = _f64(x), _f64(gamma), _f64(dy)
    m = x.shape[0]
    mu = x.mean(axis=0)
    sigma = np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)
    x_hat = (x - mu) / sigma
    dx_hat = dy * gamma
    dx = (m * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)) / (m * sigma)
    return x_hat, dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)


def columns(x: Array, per_position: bool = False) -> Array:
    """An N×C×H×W array as the m×n matrix batch norm works on, one column per feature.
    Spatial batch norm's feature is the channel: (N·H·W)×C, each column a channel's values at
    every example and position. ``per_position``: the learner's mistake, N×(C·H·W), a column
    per (c, h, w)."""
    N, C = x.shape[:2]
    return x.reshape(N, -1) if per_position else np.moveaxis(x, 1, -1).reshape(-1, C)


def from_columns(cols: Array, shape: tuple[int, ...], per_position: bool = False) -> Array:
    """``columns`` undone: back to N×C×H×W."""
    N, C, H, W = shape
    return cols.reshape(shape) if per_position else np.moveaxis(cols.reshape(N, H, W, C), -1, 1)


def _batchnorm_backward(hand: Callable = batchnorm_by_hand, per_position: bool = False):
    """``hand(x, γ, dy, eps)`` -> (x̂, dx, dγ, dβ) on an m×n matrix (statistics per column):
    the claimed backward, against each framework's ∂J/∂a^[i-1], ∂J/∂γ, ∂J/∂β at every
    batchnorm layer. A spatial one (N×C×H×W) is given to ``hand`` as ``columns`` of its
    input, and its dx, dγ, dβ taken back (``per_position``: the columns of the mistake, γ
    repeated at every position, dγ and dβ summed over the positions)."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "batchnorm"):
            i, gamma = spec.index, arrays[spec.key("gamma")]
            for name, r in results.items():
                x, dy = r[f"a{i - 1}"], r[f"da{i}"]
                if np.ndim(x) == 4:
                    if np.ma.is_masked(dy):
                        continue  # fd left some of ∂J/∂a^[i] unmeasured: no hand side from it
                    shape, positions = np.shape(x), math.prod(np.shape(x)[2:])
                    g = np.repeat(_f64(gamma), positions) if per_position else gamma
                    _, dx, dgamma, dbeta = hand(columns(_f64(x), per_position), g,
                                                columns(_f64(dy), per_position), spec["eps"])
                    dx = from_columns(dx, shape, per_position)
                    if per_position:
                        dgamma, dbeta = (d.reshape(-1, positions).sum(axis=1) for d in (dgamma, dbeta))
                else:
                    _, dx, dgamma, dbeta = hand(x, gamma, dy, spec["eps"])
                yield Instance(_where(case, spec, "dx"), dx, {name: r[f"da{i - 1}"]})
                yield Instance(_where(case, spec, "dγ"), dgamma, {name: r[f"d{spec.key('gamma')}"]})
                yield Instance(_where(case, spec, "dβ"), dbeta, {name: r[f"d{spec.key('beta')}"]})
    return instances


def _dropout_backward(hand: Callable[[Array, Array, float], Array] = lambda dy, mask, p: dy * mask / (1 - p)):
    """``hand(dy, mask, p)``: the claimed dx, against each framework's ∂J/∂a^[i-1]."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "dropout"):
            i, mask = spec.index, _f64(arrays[spec.key("mask")])
            for name, r in results.items():
                yield Instance(_where(case, spec, f"p={spec['rate']:g}"),
                               hand(_f64(r[f"da{i}"]), mask, spec["rate"]), {name: r[f"da{i - 1}"]})
    return instances


# The gradient of each form's term, as the textbook writes it (not from l2_coefficient).
L2_GRADIENT = {"half": lambda lam, m: lam, "sum": lambda lam, m: 2 * lam, "half_mean": lambda lam, m: lam / m}


def _l2_gradient(factor: dict[str, Callable[[float, int], float]] = L2_GRADIENT):
    """``factor[form](λ, m)``: k in the claimed ∂(L2 term)/∂W = k·W."""
    def instances(ctx: Context) -> Iterator[Instance]:
        _, arrays, plain = ctx.layer_networks[0]
        for form, case, results in ctx.l2_networks:
            k = factor[form](L2_LAMBDA, case.batch)
            for key in case.model.regularised():
                W = _f64(arrays[key])
                for name, r in results.items():
                    # hand: the framework's own ∂J/∂W without L2, plus k·W
                    yield Instance(f"{case.name}, d{key} {'×'.join(map(str, W.shape))}",
                                   _f64(plain[name][f"d{key}"]) + k * W, {name: r[f"d{key}"]})
    return instances


def layernorm_as_batchnorm(x: Array, gamma: Array, beta: Array, dy: Array, eps: float) -> tuple[Array, Array]:
    """Layer norm of x (m×n) and its dx, as batch norm of xᵀ (γ = 1, β = 0: those are per
    feature, along the other axis) transposed back: y = γ ∘ x̂ᵀ + β, dx = dx_BNᵀ given (dy ∘ γ)ᵀ."""
    x_hat_T, dx_T, _, _ = batchnorm_by_hand(_f64(x).T, np.ones(x.shape[0]), (_f64(dy) * _f64(gamma)).T, eps)
    return _f64(gamma) * x_hat_T.T + _f64(beta), dx_T.T


def _layernorm_transposed(hand: Callable = layernorm_as_batchnorm):
    """``hand(x, γ, β, dy, eps)`` -> (y, dx): the claimed layer norm and its backward, against
    each framework's a^[i] and ∂J/∂a^[i-1] at every layernorm layer."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "layernorm"):
            i = spec.index
            gamma, beta = arrays[spec.key("gamma")], arrays[spec.key("beta")]
            for name, r in results.items():
                y, dx = hand(r[f"a{i - 1}"], gamma, beta, r[f"da{i}"], spec["eps"])
                if name != "fd":  # fd's a^[i] is the numpy forward of the catalog, not a framework's
                    yield Instance(_where(case, spec, "forward"), y, {name: r[f"a{i}"]})
                yield Instance(_where(case, spec, "dx"), dx, {name: r[f"da{i - 1}"]})
    return instances


# Convolution and pooling, N×C×H×W, written as loops over the output positions (not with
# the catalog's window views and GEMMs: its backward is what is being checked).


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_dx_by_hand(dz: Array, W: Array, stride, padding, in_hw: tuple[int, int]) -> Array:
    """dx of a conv2d as the full correlation of dz with the flipped kernel: dz dilated by
    the stride s (s − 1 zeros between its elements, zeros up to the Hp − kh + 1 rows a stride-1
    correlation has), padded by k − 1 on each side, correlated at stride 1 with W rotated by
    180° in its spatial axes and its F, C axes swapped; then the padding p cut off:
        dx_pad[n, c, h, w] = Σ_{f,u,v} dz_full[n, f, h + u, w + v] · W[f, c, kh−1−u, kw−1−v]."""
    dz, W = _f64(dz), _f64(W)
    (sh, sw), (ph, pw), (H, Wd) = _pair(stride), _pair(padding), in_hw
    N, F, Ho, Wo = dz.shape
    _, C, kh, kw = W.shape
    Hp, Wp = H + 2 * ph, Wd + 2 * pw
    dilated = np.zeros((N, F, Hp - kh + 1, Wp - kw + 1))
    for i in range(Ho):
        for j in range(Wo):
            dilated[:, :, i * sh, j * sw] = dz[:, :, i, j]
    full = np.pad(dilated, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    flipped = W[:, :, ::-1, ::-1]
    dx_pad = np.zeros((N, C, Hp, Wp))
    for h in range(Hp):
        for w in range(Wp):
            dx_pad[:, :, h, w] = np.einsum("nfuv,fcuv->nc", full[:, :, h:h + kh, w:w + kw], flipped)
    return dx_pad[:, :, ph:ph + H, pw:pw + Wd]


def conv_dW_by_hand(x: Array, dz: Array, kernel, stride, padding) -> Array:
    """dW of a conv2d: for each kernel offset (u, v), the correlation of the input patch that
    offset sees (x_pad[n, c, i·s + u, j·s + v] over the output positions i, j) with dz, summed
    over the batch:  dW[f, c, u, v] = Σ_n Σ_{i,j} x_pad[n, c, i·s + u, j·s + v] · dz[n, f, i, j]."""
    x, dz = _f64(x), _f64(dz)
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = dz.shape[2:]
    dW = np.zeros((dz.shape[1], x.shape[1], kh, kw))
    for u in range(kh):
        for v in range(kw):
            patch = x_pad[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw]  # N×C×Ho×Wo
            dW[:, :, u, v] = sum(np.einsum("cij,fij->fc", patch[n], dz[n]) for n in range(len(x)))
    return dW


def maxpool_dx_by_hand(x: Array, dy: Array, size, stride) -> Array:
    """dx of a max pool: each window's dy added to its arg-max element (the first maximum in
    row-major order), nothing to the others; overlapping windows add."""
    x, dy = _f64(x), _f64(dy)
    (kh, kw), (sh, sw) = _pair(size), _pair(stride)
    dx = np.zeros_like(x)
    for n, c, i, j in np.ndindex(dy.shape):
        window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
        u, v = divmod(int(np.argmax(window)), kw)
        dx[n, c, i * sh + u, j * sw + v] += dy[n, c, i, j]
    return dx


def avgpool_dx_by_hand(dy: Array, in_shape: tuple[int, ...], size, stride) -> Array:
    """dx of an average pool: each window's dy/(kh·kw) added to every element of the window."""
    dy = _f64(dy)
    (kh, kw), (sh, sw) = _pair(size), _pair(stride)
    dx = np.zeros(in_shape)
    for i in range(dy.shape[2]):
        for j in range(dy.shape[3]):
            dx[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += dy[:, :, i:i + 1, j:j + 1] / (kh * kw)
    return dx


def _upstream(r: dict[str, Array], spec) -> Array | None:
    """∂J/∂ of the layer's own output (dz^[i] with a fused activation), or None where fd left
    any of it unmeasured: a hand side cannot be built from a gap."""
    dy = r[f"dz{spec.index}" if spec.activation else f"da{spec.index}"]
    return None if np.ma.is_masked(dy) else np.asarray(dy)


def _input(r: dict[str, Array], arrays: dict[str, Array], spec) -> Array:
    return arrays["X"] if spec.index == 1 else r[f"a{spec.index - 1}"]


# Sequences: backprop through time, the attention softmax, the embedding. Loops over steps,
# examples, heads and queries, each Jacobian formed whole: the catalog's vectorised backwards
# are what is being checked.


def rnn_bptt_by_hand(h: Array, h0: Array, dy: Array, Wx: Array, Wh: Array,
                     from_step: bool = True) -> tuple[Array, Array]:
    """dx and dh_0 of an rnn with outputs h (N×T×H, h_t = tanh(a_t)) and upstream dy, stepping
    from T down to 1 with ∂J/∂h_{t−1} = dy_{t−1} (the layer above) + da_t Whᵀ (step t), where
    da_t = ∂J/∂h_t ∘ (1 − h_t²). ``from_step`` False: the learner's BPTT that forgets step t."""
    h, h0, dy, Wx, Wh = (_f64(a) for a in (h, h0, dy, Wx, Wh))
    N, T, _ = h.shape
    dx = np.zeros((N, T, Wx.shape[0]))
    dh = dy[:, T - 1].copy()  # ∂J/∂h_T: the layer above only
    for t in range(T, 0, -1):
        da = dh * (1 - h[:, t - 1] ** 2)
        dx[:, t - 1] = da @ Wx.T
        through_step = da @ Wh.T if from_step else 0.0
        dh = (dy[:, t - 2] if t > 1 else 0.0) + through_step  # ∂J/∂h_{t−1}; at t = 1 it is dh_0
    return dx, dh


def _bptt_two_paths(from_step: bool = True):
    """The rnn's dx and dh0 from ``rnn_bptt_by_hand``, against each framework's ∂J/∂a^[i-1]
    and ∂J/∂h0 at every rnn above layer 1 whose h0 is a parameter."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "rnn"):
            i = spec.index
            if i == 1 or not spec["h0"]:
                continue
            h0, Wx, Wh = (arrays[spec.key(k)] for k in ("h0", "Wx", "Wh"))
            for name, r in results.items():
                dy = _upstream(r, spec)
                if dy is None:
                    continue
                dx, dh0 = rnn_bptt_by_hand(r[f"a{i}"], h0, dy, Wx, Wh, from_step)
                yield Instance(_where(case, spec, "dx"), dx, {name: r[f"da{i - 1}"]})
                yield Instance(_where(case, spec, "dh0"), dh0, {name: r[f"d{spec.key('h0')}"]})
    return instances


def softmax_row_jacobian(p: Array) -> Array:
    """∂p/∂s of one row p = softmax(s): diag(p) − pᵀp (p a 1×T row)."""
    p = p.reshape(1, -1)
    return np.diag(p[0]) - p.T @ p


def attention_dx_by_hand(x: Array, params: dict[str, Array], dy: Array, heads: int, causal: bool,
                         jacobian: Callable[[Array], Array] = softmax_row_jacobian) -> Array:
    """dx of multi-head self-attention, one example, head and query at a time: the softmax
    backward is each query's row ds = dp · ``jacobian``(p), then the 1/√d_k, the three
    projections' paths summed."""
    x, dy = _f64(x), _f64(dy)
    W = {k: _f64(v) for k, v in params.items()}
    N, T, D = x.shape
    d_k = D // heads
    dx = np.zeros_like(x)
    for n in range(N):
        Q, K, V = (x[n] @ W[f"W{k}"] + W[f"b{k}"] for k in "qkv")
        dO = dy[n] @ W["Wo"].T
        dQ, dK, dV = np.zeros((T, D)), np.zeros((T, D)), np.zeros((T, D))
        for h in range(heads):
            cols = slice(h * d_k, (h + 1) * d_k)
            for t in range(T):
                seen = t + 1 if causal else T  # query t sees keys 0..t when causal
                s = Q[t, cols] @ K[:seen, cols].T / math.sqrt(d_k)
                p = np.exp(s - s.max())
                p /= p.sum()
                dp = dO[t, cols] @ V[:seen, cols].T
                ds = dp @ jacobian(p)
                dQ[t, cols] += ds @ K[:seen, cols] / math.sqrt(d_k)
                dK[:seen, cols] += np.outer(ds, Q[t, cols]) / math.sqrt(d_k)
                dV[:seen, cols] += np.outer(p, dO[t, cols])
        dx[n] = dQ @ W["Wq"].T + dK @ W["Wk"].T + dV @ W["Wv"].T
    return dx


def _attention_softmax_rows(jacobian: Callable[[Array], Array] = softmax_row_jacobian):
    """``attention_dx_by_hand`` with the claimed per-query Jacobian, against each framework's
    ∂J/∂a^[i-1] at every attention above layer 1 (its forward input the framework's own)."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "attention"):
            i = spec.index
            if i == 1:
                continue
            params = {k: arrays[spec.key(k)] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")}
            for name, r in results.items():
                dy = _upstream(r, spec)
                if dy is None:
                    continue
                dx = attention_dx_by_hand(r[f"a{i - 1}"], params, dy, spec["heads"], spec["causal"], jacobian)
                yield Instance(_where(case, spec, f"dx, {spec['heads']} heads"), dx, {name: r[f"da{i - 1}"]})
    return instances


def embedding_dW_by_hand(ids: Array, da: Array, vocab: int, accumulate: bool = True) -> Array:
    """dW of an embedding: for every position (n, t), its upstream row added to row ids[n, t]
    (``accumulate`` False: written there, the last occurrence winning)."""
    da = _f64(da)
    dW = np.zeros((vocab, da.shape[-1]))
    for n, t in np.ndindex(ids.shape):
        dW[ids[n, t]] = dW[ids[n, t]] + da[n, t] if accumulate else da[n, t]
    return dW


def _embedding_accumulates(accumulate: bool = True):
    """``embedding_dW_by_hand`` against each framework's ∂J/∂W at every embedding."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "embedding"):
            for name, r in results.items():
                da = _upstream(r, spec)
                if da is None:
                    continue
                dW = embedding_dW_by_hand(arrays["X"], da, spec["vocab"], accumulate)
                yield Instance(_where(case, spec, "dW"), dW, {name: r[f"d{spec.key('W')}"]})
    return instances


def _pool_geometry(spec) -> tuple[tuple[int, int], tuple[int, int]]:
    k = _pair(spec["size"])
    return k, k if spec["stride"] is None else _pair(spec["stride"])


def _conv_dx(hand: Callable = conv_dx_by_hand):
    """``hand(dz, W, stride, padding, (H, W))``: the claimed dx, against each framework's
    ∂J/∂a^[i-1] at every conv2d above layer 1."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "conv2d"):
            i = spec.index
            for name, r in results.items():
                dz = _upstream(r, spec)
                if i > 1 and dz is not None:
                    dx = hand(dz, arrays[spec.key("W")], spec["stride"], spec["padding"], spec.in_shape[1:])
                    yield Instance(_where(case, spec, "dx"), dx, {name: r[f"da{i - 1}"]})
    return instances


def _conv_params(kind: str, hand: Callable):
    """``hand`` of (x, dz, spec) for dW, of (dz,) for db: the claimed gradient, against each
    framework's ∂J/∂W or ∂J/∂b at every conv2d."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "conv2d"):
            if kind == "b" and not spec["bias"]:
                continue
            for name, r in results.items():
                dz = _upstream(r, spec)
                if dz is None:
                    continue
                value = hand(_input(r, arrays, spec), dz, spec) if kind == "W" else hand(dz)
                yield Instance(_where(case, spec, f"d{kind}"), value, {name: r[f"d{spec.key(kind)}"]})
    return instances


def _conv_dW(hand: Callable = conv_dW_by_hand):
    return _conv_params("W", lambda x, dz, spec: hand(x, dz, spec["kernel"], spec["stride"], spec["padding"]))


def _conv_db(hand: Callable[[Array], Array] = lambda dz: _f64(dz).sum(axis=(0, 2, 3))):
    return _conv_params("b", hand)


def _maxpool_dx(hand: Callable = maxpool_dx_by_hand):
    """``hand(x, dy, size, stride)``: the claimed dx, against each framework's ∂J/∂a^[i-1] at
    every maxpool2d; and apart, the framework's dx at the elements that are no window's
    arg-max, against 0 (all of them exactly: a single nonzero is above the tolerance, which is
    relative to the largest of them)."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "maxpool2d"):
            i, (k, s) = spec.index, _pool_geometry(spec)
            for name, r in results.items():
                dy, x = _upstream(r, spec), _input(r, arrays, spec)
                if i == 1 or dy is None:
                    continue
                yield Instance(_where(case, spec, "dx"), hand(x, dy, k, s), {name: r[f"da{i - 1}"]})
                # The elements no window routes to, from the arg-max of each window (a dy of 1).
                off = maxpool_dx_by_hand(x, np.ones_like(_f64(dy)), k, s) == 0
                yield Instance(_where(case, spec, f"dx at the {int(off.sum())} elements no window's arg-max"),
                               np.zeros(int(off.sum())), {name: r[f"da{i - 1}"][off]})
    return instances


def _avgpool_dx(hand: Callable = avgpool_dx_by_hand):
    """``hand(dy, x's shape, size, stride)``: the claimed dx, against each framework's
    ∂J/∂a^[i-1] at every avgpool2d."""
    def instances(ctx: Context) -> Iterator[Instance]:
        for case, arrays, spec, results in _layers_of(ctx, "avgpool2d"):
            i, (k, s) = spec.index, _pool_geometry(spec)
            for name, r in results.items():
                dy = _upstream(r, spec)
                if i > 1 and dy is not None:
                    yield Instance(_where(case, spec, "dx"), hand(dy, (case.batch, *spec.in_shape), k, s),
                                   {name: r[f"da{i - 1}"]})
    return instances


NETWORK_CLAIMS: list[Claim] = [
    Claim("batchnorm-backward",
          "dx = (1/(mσ))(m dx̂ − Σ dx̂ − x̂ ∘ Σ(dx̂ ∘ x̂)), dx̂ = dy ∘ γ, Σ over the batch (and, "
          "on N×C×H×W, the positions: per channel);  "
          "dγ = Σ dy ∘ x̂, dβ = Σ dy", _batchnorm_backward()),
    Claim("dropout-backward", "dx = dy ∘ mask/(1 − p): the forward's mask and scale", _dropout_backward()),
    Claim("l2-gradient", "∂J/∂W = ∂J₀/∂W + λW (half: λ/2 Σ W²), + 2λW (sum: λ Σ W²), "
                         "+ (λ/m)W (half_mean: λ/(2m) Σ W²)", _l2_gradient()),
    Claim("layernorm-is-transposed-batchnorm",
          "layernorm(X) = γ ∘ BN(Xᵀ)ᵀ + β and dX = BN's dx of Xᵀ given (dy ∘ γ)ᵀ, transposed "
          "(BN with γ = 1, β = 0)", _layernorm_transposed()),
    Claim("conv-dx-full-correlation-flipped",
          "conv dx = full correlation of dz (dilated by the stride, padded by k − 1) with W rotated "
          "180° (F↔C swapped), padding cropped", _conv_dx()),
    Claim("conv-dW-patches-times-dz",
          "conv dW[f,c,u,v] = Σ_n Σ_{i,j} x_pad[n,c,i·s+u,j·s+v] dz[n,f,i,j]: the input patches "
          "correlated with dz, summed over the batch", _conv_dW()),
    Claim("conv-db-sum", "conv db[f] = Σ_{n,i,j} dz[n,f,i,j]: over the batch and the positions", _conv_db()),
    Claim("maxpool-argmax-only",
          "max-pool dx = each window's dy at its arg-max; every other element gets exactly 0 "
          "(overlapping windows add)", _maxpool_dx()),
    Claim("avgpool-even-share",
          "average-pool dx = dy/(kh·kw) at every element of each window (overlapping windows add)",
          _avgpool_dx()),
    Claim("bptt-two-paths",
          "rnn: ∂J/∂h_{t−1} = ∂J/∂y_{t−1} (the layer above) + ∂J/∂a_t Whᵀ (step t), a_t = x_t Wx + "
          "h_{t−1} Wh + b, ∂J/∂a_t = ∂J/∂h_t ∘ (1 − h_t²); dx_t = ∂J/∂a_t Wxᵀ; dh_0 = ∂J/∂a_1 Whᵀ",
          _bptt_two_paths()),
    Claim("attention-softmax-rows",
          "attention: each query's row ds = dp (diag(p) − pᵀp), p = softmax(q Kᵀ/√d_k + mask); dQ = dS K/√d_k, "
          "dK = dSᵀ Q/√d_k, dV = Pᵀ dO; dx = dQ Wqᵀ + dK Wkᵀ + dV Wvᵀ", _attention_softmax_rows()),
    Claim("embedding-accumulates",
          "embedding: dW[v] = Σ_{(n,t): x[n,t]=v} ∂J/∂a[n,t]: repeated ids add up", _embedding_accumulates()),
]


CLAIMS: list[Claim] = [
    Claim("exp-jacobian", "∂(e^z)/∂z = diag(e^z)  (z a 1×N row, elementwise e^z)",
          _jacobian_claim("exp", lambda z: np.diag(np.exp(z[0])))),
    Claim("softmax-jacobian", "∂ŷ/∂z = diag(ŷ) − ŷᵀŷ,  ŷ = softmax(z)",
          _jacobian_claim(SOFTMAX, _softmax_jacobian, sizes=(2, 4, 10))),
    *[Claim(f"activation-jacobian[{name}]", f"∂g(z)/∂z = diag(g'(z)),  g = {name}, g' = {act.derivative}",
            _jacobian_claim(name, lambda z, act=act: np.diag(act.g_prime(z)[0])))
      for name, act in ACTIVATIONS.items()],
    Claim("one-hot-cross-entropy", "−ȳ·log ŷ = −log ŷ_y  (ȳ the one-hot of y)", _one_hot_ce),
    Claim("output-delta[cross_entropy]", "∂𝓛/∂z^[L] = ŷ − ȳ  (softmax + cross-entropy)",
          _output_delta("cross_entropy")),
    Claim("output-delta[binary_cross_entropy]", "∂𝓛/∂z^[L] = a^[L] − y  (sigmoid + BCE)",
          _output_delta("binary_cross_entropy")),
    Claim("output-delta[half_sse]",
          "∂𝓛/∂z^[L] = (a − y) ∘ g'(z^[L]);  with softmax output (a − y)(diag(ŷ) − ŷᵀŷ)",
          _output_delta("half_sse")),
    Claim("recurrence", "∂𝓛/∂z^[l] = (∂𝓛/∂z^[l+1] W^[l+1]ᵀ) ∘ g'(z^[l])", _recurrence),
    Claim("weight-gradient", "∂J/∂W^[l] = a^[l-1]ᵀ ∂J/∂z^[l]", _param_gradient("W")),
    Claim("bias-gradient", "∂J/∂b^[l] = Σ_rows ∂J/∂z^[l]", _param_gradient("b")),
    Claim("mean-of-examples", "∂J/∂θ = (1/m) Σᵢ ∂𝓛⁽ⁱ⁾/∂θ  (J is the mean)", _mean_of_examples),
    Claim("chain-of-jacobians",
          "elementwise δ^[l] = chain of full Jacobians ∂𝓛/∂a^[L] ∂a^[L]/∂z^[L] Π_k W^[k+1]ᵀ diag(g'(z^[k]))",
          _chain_of_jacobians),
    *NETWORK_CLAIMS,
]


def check(claim: Claim, ctx: Context) -> list[Outcome]:
    """Evaluate every instance of a claim for every framework that has a value."""
    outcomes = []
    for inst in claim.instances(ctx):
        for name, value in inst.by.items():
            kind = FINITE_DIFFERENCE if name == "fd" else ANALYTIC
            tol = lookup(ctx.dtype, kind)
            # value as it is: a masked fd element (not measured, or across a kink) is not compared
            c = compare(claim.id, claim.id, "hand", np.asarray(inst.hand, dtype=ctx.dtype), name,
                        value if np.ma.isMaskedArray(value) else np.asarray(value), kind, ctx.dtype, tol)
            outcomes.append(Outcome(claim.id, claim.formula, ctx.dtype, inst.shape, name,
                                    c.max_abs, c.norm_rel, c.tol_used, c.passed))
    return outcomes


def run_claims(frameworks: dict[str, object], dtypes=DTYPES, claims=None, progress=None) -> list[Outcome]:
    """Every claim in every dtype against the given frameworks ({"torch": ..., ...}), each a
    ``backends.JacobianBackend`` (TypeError otherwise: the claims need its ``jacobian``).
    ``progress(done, total, name, failed)`` (``progress.Progress``) counts (claim, dtype)
    pairs, the rows of the table (a claim's instances are drawn as it runs, so their number
    is not known before), and as failures the pairs with a failing instance."""
    from .backends import JacobianBackend

    for name, fw in frameworks.items():
        if not isinstance(fw, JacobianBackend):
            raise TypeError(f"{name} has no jacobian(op, x, **kw): the claims need a "
                            "backends.JacobianBackend")
    out = []
    claims = claims or CLAIMS
    total, done, failed = len(dtypes) * len(claims), 0, 0
    if progress is not None:
        progress(0, total, "")
    for dtype in dtypes:
        ctx = Context(frameworks, dtype)
        for claim in claims:
            outcomes = check(claim, ctx)
            out.extend(outcomes)
            done, failed = done + 1, failed + (not all(o.passed for o in outcomes))
            if progress is not None:
                progress(done, total, f"{claim.id} {dtype}", failed)
    return out
