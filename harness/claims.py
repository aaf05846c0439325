"""Claims: every statement of the derivation, checked with numbers against torch, JAX and fd.

Each claim pairs a *hand* side (the formula, in numpy) with what each framework computes
for the same thing (its autograd Jacobian, its gradients, its intermediates). Both sides
go through ``compare`` with the tolerance row of the case dtype, so a claim passes or
fails exactly like a backend comparison.

``python -m harness claims [--out DIR]`` runs them all; ``tests/test_claims.py`` runs
each one as a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX, forward as g
from .cases import Case
from .compare import compare
from .model import DTYPES, Model
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


def run_claims(frameworks: dict[str, object], dtypes=DTYPES, claims=None) -> list[Outcome]:
    """Every claim in every dtype against the given frameworks ({"torch": ..., ...})."""
    out = []
    for dtype in dtypes:
        ctx = Context(frameworks, dtype)
        for claim in claims or CLAIMS:
            out.extend(check(claim, ctx))
    return out
