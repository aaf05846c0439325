"""The layer catalog checked op by op, and in networks end to end.

Part 1, one op at a time (tinygrad's helper_test_op): each catalog layer's numpy forward and
hand-written backward against torch autograd and ``jax.grad`` of the catalog's *own* torch and
jax forwards, float64 and float32, with the analytic row of ``harness.tolerances``. The
forward is compared first, then each gradient under its own label (dx, dW, db, dgamma, ...).
The same for every network loss (J and ds = ∂J/∂s) and every L2 form (J and dW).

Every comparison is also shown to fail: each op lists mutants, the mistakes learners make
(batch norm without the mean terms, dW transposed, dropout without its scale, ...), each
aimed at one label, and the same check must flag it there; a test asserts that the mutants
cover every label the op is compared on.

Part 2, networks composed of them through ``harness.runner.run_case`` with manual, torch, jax
and fd: every comparison passes; with a mutant in the manual arm the manual pairs fail, first
at the quantity the mistake enters, and the other pairs still agree.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from harness import activations as act
from harness.catalog import (
    L2_FORMS,
    LAYERS,
    NETWORK_LOSSES,
    act_backward,
    build_spec,
    l2_coefficient,
)
from harness.catalog import conv
from harness.catalog.norm import normalise_backward
from harness.compare import compare
from harness.network import Network, backprop
from harness.tolerances import ANALYTIC, lookup

DTYPES = ("float64", "float32")
M = 6  # batch: batch norm's statistics over 6 examples


@pytest.fixture(scope="session")
def fw(builtin):
    """The framework namespaces the catalog's torch/jax forwards take, from the session's backends
    (building the jax backend switches x64 on)."""
    t, j = builtin["torch"], builtin["jax"]
    return {"torch": SimpleNamespace(torch=t.torch, F=t.F, act=t.act),
            "jax": SimpleNamespace(jax=j.jax, jnp=j.jnp, act=j.act)}


def _check(label: str, manual: np.ndarray, ref: np.ndarray, framework: str, dtype: str):
    return compare("op", label, "manual", np.asarray(manual), framework, np.asarray(ref), ANALYTIC,
                   dtype, lookup(dtype, ANALYTIC))


def _assert_all_pass(comparisons: dict) -> None:
    bad = [c.message() for per in comparisons.values() for c in per.values() if not c.passed]
    assert not bad, "\n".join(bad)


# ============================================================================ layers

Backward = Callable[[Any, np.ndarray, Any], tuple[np.ndarray, dict]]


@dataclass
class LayerOp:
    """One layer as a case file writes it, the per-example input shape, and its mutants:
    label -> (mistake, wrong forward(spec, x, p, inp) -> y or wrong backward(spec, dy, cache))."""

    id: str
    raw: dict
    in_shape: tuple[int, ...]
    forward_mutant: tuple[str, Callable] | None = None
    backward_mutants: dict[str, tuple[str, Backward]] = field(default_factory=dict)
    act_mutant: tuple[str, Callable] | None = None  # fused activation: wrong dz from (da, z, a)
    x_scale: float = 1.5

    def spec(self):
        return build_spec(self.raw, 1, self.in_shape)


# The mutants call the correct backward and change one output, reading the cache as little as
# possible (its layout is the layer's business): dense's holds (a_prev, W, ...).

def _dense_dW_transposed(spec, dz, cache):
    da, g = LAYERS["dense"].backward(spec, dz, cache)
    g["W"] = g["W"].T  # dzᵀ a_prev: W's shape only when W is square
    return da, g


def _dense_W_not_transposed(spec, dz, cache):
    _, g = LAYERS["dense"].backward(spec, dz, cache)
    return dz @ cache[1], g  # da_prev = dz W instead of dz Wᵀ


def _dense_db_mean(spec, dz, cache):
    da, g = LAYERS["dense"].backward(spec, dz, cache)
    g["b"] = dz.reshape(-1, dz.shape[-1]).mean(axis=0, keepdims=True)  # the 1/m applied twice
    return da, g


def _dense_no_bias_forward(spec, x, p, inp):
    return x @ p["W"]


def _dense_WT_forward(spec, x, p, inp):
    return x @ p["W"].T


def _forgets_g_prime(da, z, a):
    return da


def _act_forgets_g_prime(spec, dy, cache):
    return dy, {}


def _act_wrong_sign(spec, dy, cache):
    return -dy, {}


def _scaled_forward(name):
    def wrong(spec, x, p, inp):  # g off by 0.1%: the smallest error worth catching
        return act.forward(name, x) * 1.001
    return wrong


def _softmax_elementwise(spec, dy, cache):
    _, y = cache
    return dy * y * (1 - y), {}  # the diagonal of the Jacobian only


def _softmax_over_batch(spec, x, p, inp):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def _flatten_column_major(spec, dy, shape):
    return dy.reshape(shape, order="F"), {}


def _flatten_column_major_forward(spec, x, p, inp):
    return x.reshape(x.shape[0], -1, order="F")


def _last_step_to_first(spec, dy, shape):
    dx = np.zeros(shape, dtype=dy.dtype)
    dx[:, 0] = dy
    return dx, {}


def _dropout_without_scale(spec, dy, mask):
    return dy * mask, {}


def _dropout_other_mask(spec, dy, mask):
    other = (np.random.default_rng(99).random(mask.shape) >= spec["rate"]).astype(dy.dtype)
    assert not np.array_equal(other, mask)
    return dy * other / (1 - spec["rate"]), {}


def _dropout_without_scale_forward(spec, x, p, inp):
    return x * inp["mask"]


def _norm_layer(spec):
    return LAYERS[spec.kind]


def _norm_without_mean_terms(spec, dy, cache):
    _x_hat, inv_sigma, gamma = cache  # the norms' cache: (x̂, 1/σ, γ broadcast)
    _, g = _norm_layer(spec).backward(spec, dy, cache)
    return dy * gamma * inv_sigma, g  # μ and σ treated as constants


def _norm_other_axes(spec, dy, cache):
    """The sums of the backward along the other axis: layer norm's for batch norm and back."""
    x_hat, inv_sigma, gamma = cache
    _, g = _norm_layer(spec).backward(spec, dy, cache)
    other = LAYERS["layernorm" if spec.kind == "batchnorm" else "batchnorm"]
    return normalise_backward(dy * gamma, x_hat, inv_sigma, other.axes(dy.ndim)), g


def _norm_dgamma_without_xhat(spec, dy, cache):
    dx, g = _norm_layer(spec).backward(spec, dy, cache)
    g["gamma"] = g["beta"].copy()  # Σ dy, forgetting the x̂ of y = γ x̂ + β
    return dx, g


def _norm_dbeta_mean(spec, dy, cache):
    dx, g = _norm_layer(spec).backward(spec, dy, cache)
    n = dy.size // g["beta"].size
    g["beta"] = g["beta"] / n  # a mean where the sum belongs
    return dx, g


def _norm_forward_with(spec, x, p, inp, axes, unbiased=False):
    mu = x.mean(axis=axes, keepdims=True)
    n = math.prod(x.shape[a] for a in axes)
    var = ((x - mu) ** 2).sum(axis=axes, keepdims=True) / (n - 1 if unbiased else n)
    layer = _norm_layer(spec)
    bshape = layer._bshape(x.ndim, p["gamma"].size)
    return p["gamma"].reshape(bshape) * (x - mu) / np.sqrt(var + spec["eps"]) + p["beta"].reshape(bshape)


def _batchnorm_unbiased_forward(spec, x, p, inp):
    return _norm_forward_with(spec, x, p, inp, LAYERS["batchnorm"].axes(x.ndim), unbiased=True)


def _layernorm_over_batch_forward(spec, x, p, inp):
    return _norm_forward_with(spec, x, p, inp, LAYERS["batchnorm"].axes(x.ndim))


def _conv_true_convolution_forward(spec, x, p, inp):
    flipped = {**p, "W": p["W"][:, :, ::-1, ::-1]}  # the textbook convolution: kernel flipped
    return LAYERS["conv2d"].forward(spec, x, flipped, inp)[0]


def _conv_dx_unflipped(spec, dz, cache):
    x_pad, W = cache[0], cache[1]
    _, g = LAYERS["conv2d"].backward(spec, dz, cache)
    s, pad = conv._pair(spec["stride"]), conv._pair(spec["padding"])
    return conv.full_correlation_dx(dz, W[:, :, ::-1, ::-1], x_pad.shape, s, pad), g


def _conv_dx_stride_ignored(spec, dz, cache):
    x_pad, W = cache[0], cache[1]
    _, g = LAYERS["conv2d"].backward(spec, dz, cache)
    # dz placed on consecutive positions (as if the stride were 1), the rest of dx zero
    pad = conv._pair(spec["padding"])
    dx = conv.full_correlation_dx(dz, W, dz.shape[:2] + (dz.shape[2] + W.shape[2] - 1, dz.shape[3] + W.shape[3] - 1),
                                  (1, 1), (0, 0))
    out = np.zeros((x_pad.shape[0], x_pad.shape[1]) + x_pad.shape[2:], dtype=dz.dtype)
    out[:, :, :dx.shape[2], :dx.shape[3]] = dx
    return out[:, :, pad[0]:x_pad.shape[2] - pad[0], pad[1]:x_pad.shape[3] - pad[1]], g


def _conv_dW_last_example(spec, dz, cache):
    dx, g = LAYERS["conv2d"].backward(spec, dz, cache)
    g["W"] = LAYERS["conv2d"].param_backward(spec, dz[-1:], tuple(c[-1:] for c in (cache[0],)) + (cache[1], cache[2][-1:]))["W"]
    return dx, g


def _conv_db_batch_only(spec, dz, cache):
    dx, g = LAYERS["conv2d"].backward(spec, dz, cache)
    g["b"] = dz.sum(axis=0).mean(axis=(1, 2))  # Σ over the batch, then the positions averaged
    return dx, g


def _conv_scaled_forward(spec, x, p, inp):
    return 1.01 * _conv_true_convolution_forward(spec, x, p, inp)


def _conv_dx_last_filter(spec, dz, cache):
    _, g = LAYERS["conv2d"].backward(spec, dz, cache)
    last = {**dict(zip(("x_pad", "W", "cols"), cache))}
    dx, _ = LAYERS["conv2d"].backward(spec, dz[:, -1:], (last["x_pad"], last["W"][-1:], last["cols"]))
    return dx, g


def _maxpool_avg_forward(spec, x, p, inp):
    return LAYERS["avgpool2d"].forward(spec, x, p, inp)[0]


def _maxpool_spread(spec, dy, cache):
    x, _ = cache
    return LAYERS["avgpool2d"].backward(spec, dy * math.prod(conv._pair(spec["size"])), x.shape)[0], {}


def _avgpool_sum_forward(spec, x, p, inp):
    return LAYERS["avgpool2d"].forward(spec, x, p, inp)[0] * math.prod(conv._pair(spec["size"]))


def _avgpool_without_k2(spec, dy, shape):
    return LAYERS["avgpool2d"].backward(spec, dy * math.prod(conv._pair(spec["size"])), shape)[0], {}


_CONV_MUTANTS = {"dx": ("full correlation with the unflipped kernel", _conv_dx_unflipped),
                 "dW": ("dW of the last example only, no sum over the batch", _conv_dW_last_example),
                 "db": ("db summed over the batch only (positions averaged)", _conv_db_batch_only)}

_DENSE_MUTANTS = {"dx": ("da_prev = dz W, not dz Wᵀ", _dense_W_not_transposed),
                  "dW": ("dW = dzᵀ a_prev, transposed", _dense_dW_transposed)}
_NORM_MUTANTS = {"dx": ("without the mean terms (μ, σ constants)", _norm_without_mean_terms),
                 "dgamma": ("dγ = Σ dy, without x̂", _norm_dgamma_without_xhat),
                 "dbeta": ("dβ a mean, not a sum", _norm_dbeta_mean)}

LAYER_OPS: list[LayerOp] = [
    # dense: square where a transposed W or dW keeps its shape and must be caught by value
    LayerOp("dense", {"layer": "dense", "units": 5}, (5,),
            ("bias not added", _dense_no_bias_forward),
            {**_DENSE_MUTANTS, "db": ("db = mean of dz (1/m twice)", _dense_db_mean)}),
    LayerOp("dense-no-bias", {"layer": "dense", "units": 4, "bias": False}, (4,),
            ("z = a Wᵀ", _dense_WT_forward), dict(_DENSE_MUTANTS)),
    LayerOp("dense-tanh", {"layer": "dense", "units": 4, "activation": "tanh"}, (4,),
            ("z = a Wᵀ", lambda spec, x, p, inp: np.tanh(x @ p["W"].T + p["b"])),
            {**_DENSE_MUTANTS, "db": ("db = mean of dz (1/m twice)", _dense_db_mean)},
            act_mutant=("dz = da, forgetting g'", _forgets_g_prime)),
    LayerOp("dense-on-TxD", {"layer": "dense", "units": 4, "activation": "gelu"}, (3, 4),
            ("z = a Wᵀ", lambda spec, x, p, inp: act.forward("gelu", x @ p["W"].T + p["b"])),
            {**_DENSE_MUTANTS, "db": ("db = mean of dz (1/m twice)", _dense_db_mean)},
            act_mutant=("dz = da, forgetting g'", _forgets_g_prime)),
    *[LayerOp(name, {"layer": name}, (5,), ("g off by 0.1%", _scaled_forward(name)),
              {"dx": ("dx = −dy", _act_wrong_sign) if name == "identity"
               else ("dx = dy, forgetting g'", _act_forgets_g_prime)})
      for name in act.ACTIVATIONS],
    LayerOp("softmax", {"layer": "softmax"}, (5,), ("softmax over the batch axis", _softmax_over_batch),
            {"dx": ("diagonal of the Jacobian only", _softmax_elementwise)}),
    LayerOp("flatten", {"layer": "flatten"}, (3, 4), ("column-major order", _flatten_column_major_forward),
            {"dx": ("reshaped back column-major", _flatten_column_major)}),
    LayerOp("last_step", {"layer": "last_step"}, (4, 3), ("the first step", lambda spec, x, p, inp: x[:, 0]),
            {"dx": ("da sent to the first step", _last_step_to_first)}),
    LayerOp("mean_over_time", {"layer": "mean_over_time"}, (4, 3),
            ("the sum over time (no 1/T)", lambda spec, x, p, inp: x.sum(axis=1)),
            {"dx": ("da to every step, without the 1/T", lambda spec, dy, shape: (
                np.broadcast_to(dy[:, None], shape).copy(), {}))}),
    LayerOp("dropout", {"layer": "dropout", "rate": 0.3}, (7,), ("without 1/(1 − p)", _dropout_without_scale_forward),
            {"dx": ("without 1/(1 − p)", _dropout_without_scale)}),
    LayerOp("batchnorm", {"layer": "batchnorm"}, (5,), ("unbiased variance", _batchnorm_unbiased_forward),
            dict(_NORM_MUTANTS)),
    LayerOp("batchnorm-eps", {"layer": "batchnorm", "eps": 0.1}, (3,), ("unbiased variance", _batchnorm_unbiased_forward),
            dict(_NORM_MUTANTS)),
    LayerOp("batchnorm-on-TxD", {"layer": "batchnorm"}, (3, 4), ("unbiased variance", _batchnorm_unbiased_forward),
            {**_NORM_MUTANTS, "dx": ("sums over the features (layer norm's)", _norm_other_axes)}),
    LayerOp("batchnorm-on-CxHxW", {"layer": "batchnorm"}, (2, 3, 3), ("unbiased variance", _batchnorm_unbiased_forward),
            {**_NORM_MUTANTS, "dx": ("sums over the features (layer norm's)", _norm_other_axes)}),
    LayerOp("layernorm", {"layer": "layernorm"}, (5,), ("normalised over the batch", _layernorm_over_batch_forward),
            {**_NORM_MUTANTS, "dx": ("sums over the batch (batch norm's)", _norm_other_axes)}),
    LayerOp("layernorm-on-TxD", {"layer": "layernorm"}, (3, 4), ("normalised over the batch", _layernorm_over_batch_forward),
            dict(_NORM_MUTANTS)),
    LayerOp("conv2d", {"layer": "conv2d", "filters": 3, "kernel": 3}, (2, 5, 5),
            ("kernel flipped (a true convolution)", _conv_true_convolution_forward), dict(_CONV_MUTANTS)),
    LayerOp("conv2d-rect-stride2-pad1-relu", {"layer": "conv2d", "filters": 2, "kernel": [3, 2], "stride": 2,
                                              "padding": 1, "activation": "relu"}, (3, 6, 7),
            ("kernel flipped (a true convolution)", lambda spec, x, p, inp: np.maximum(
                _conv_true_convolution_forward(spec, x, p, inp), 0)),
            {**_CONV_MUTANTS, "dx": ("stride ignored in backward", _conv_dx_stride_ignored)},
            act_mutant=("dz = da, forgetting g'", _forgets_g_prime)),
    LayerOp("conv2d-1x1-no-bias", {"layer": "conv2d", "filters": 4, "kernel": 1, "bias": False}, (1, 3, 4),
            ("kernel flipped, then scaled", _conv_scaled_forward),
            {"dx": ("the last filter's share only (= instead of += over filters)", _conv_dx_last_filter),
             "dW": _CONV_MUTANTS["dW"]}),
    LayerOp("maxpool2d", {"layer": "maxpool2d", "size": 2}, (2, 5, 4), ("the window's mean", _maxpool_avg_forward),
            {"dx": ("dy spread over the whole window", _maxpool_spread)}),
    LayerOp("maxpool2d-overlapping", {"layer": "maxpool2d", "size": [3, 2], "stride": 1}, (1, 4, 5),
            ("the window's mean", _maxpool_avg_forward),
            {"dx": ("dy spread over the whole window", _maxpool_spread)}),
    LayerOp("avgpool2d", {"layer": "avgpool2d", "size": 2, "stride": [1, 2]}, (2, 5, 5),
            ("the window's sum (no 1/k²)", _avgpool_sum_forward),
            {"dx": ("without the 1/(kh·kw)", _avgpool_without_k2)}),
]

# Extra mutants aimed at a label another mutant already covers: the textbook mistakes the issue names.
EXTRA_LAYER_MUTANTS = [
    ("dropout", "dx", "other-mask", "a different mask in backward", _dropout_other_mask),
    ("batchnorm", "dx", "layernorm-sums", "sums over the features (layer norm's)", _norm_other_axes),
]


def _layer_data(op: LayerOp, dtype: str, seed: int = 0):
    """spec, x, params, extra inputs, dy: drawn as the case draw does (the catalog's own draws)."""
    spec = op.spec()
    layer = LAYERS[spec.kind]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, *op.in_shape)) * op.x_scale
    p = {k: par.draw(rng, par.shape) for k, par in layer.params(spec).items()}
    inp = {k: draw(rng, shape) for k, (shape, draw) in layer.inputs(spec, M).items()}
    dy = rng.standard_normal((M, *spec.out_shape))
    cast = lambda d: {k: v.astype(dtype) for k, v in d.items()}
    return spec, x.astype(dtype), cast(p), cast(inp), dy.astype(dtype)


_REFS: dict[tuple, tuple] = {}  # the framework results, computed once per op, dtype, framework


def layer_manual(spec, x, p, inp, dy, backward=None, forward=None, act_bwd=None):
    """y and {dx, d<param>} by the catalog's numpy forward and hand-written backward (a fused
    activation as the network applies it)."""
    layer = LAYERS[spec.kind]
    z, cache = layer.forward(spec, x, p, inp)
    y = act.forward(spec.activation, z) if spec.activation else z
    dz = (act_bwd or (lambda da, z, a: act_backward(spec.activation, da, z, a)))(dy, z, y) if spec.activation else dy
    dx, grads = (backward or layer.backward)(spec, dz, cache)
    if forward is not None:
        y = forward(spec, x, p, inp)
    return y, {"dx": dx, **{f"d{k}": g for k, g in grads.items()}}


def layer_torch(f, spec, x, p, inp, dy):
    torch = f.torch
    layer = LAYERS[spec.kind]
    xt = torch.from_numpy(x.copy()).requires_grad_()
    pt = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in p.items()}
    it = {k: torch.from_numpy(v.copy()) for k, v in inp.items()}
    y = layer.torch(spec, f, xt, pt, it)
    if spec.activation:
        y = f.act[spec.activation](y)
    grads = torch.autograd.grad((y * torch.from_numpy(dy)).sum(), [xt, *pt.values()])
    return y.detach().numpy(), {"dx": grads[0].numpy(), **{f"d{k}": g.numpy() for k, g in zip(pt, grads[1:])}}


def layer_jax(f, spec, x, p, inp, dy):
    """y and jax.grad of Σ y∘dy under jax.jit, as the jax backend runs a network: one compile
    of the layer's forward and backward (cached on disk), where eager mode compiled every
    primitive on its own (about 40 ms each, cold: most of this file's time)."""
    jax, jnp = f.jax, f.jnp
    layer = LAYERS[spec.kind]

    @jax.jit
    def run(xj, pj, ij, dyj):
        def out(xj, pj):
            y = layer.jax(spec, f, xj, pj, ij)
            y = f.act[spec.activation](y) if spec.activation else y
            return jnp.sum(y * dyj), y
        return jax.grad(out, argnums=(0, 1), has_aux=True)(xj, pj)

    (gx, gp), y = run(*(jax.tree_util.tree_map(jnp.asarray, a) for a in (x, p, inp, dy)))
    return np.asarray(y), {"dx": np.asarray(gx), **{f"d{k}": np.asarray(g) for k, g in gp.items()}}


def check_layer(op: LayerOp, dtype: str, f: dict, **mutant) -> dict[str, dict[str, Any]]:
    """{framework: {label: Comparison}}: the forward first, then each gradient."""
    spec, x, p, inp, dy = _layer_data(op, dtype)
    y, grads = layer_manual(spec, x, p, inp, dy, **mutant)
    if not mutant:  # the manual arm keeps the case dtype
        assert y.dtype == np.dtype(dtype) and all(g.dtype == np.dtype(dtype) for g in grads.values()), \
            (y.dtype, {k: g.dtype for k, g in grads.items()})
    out = {}
    for name, run in (("torch", layer_torch), ("jax", layer_jax)):
        key = ("layer", op.id, dtype, name)
        if key not in _REFS:
            _REFS[key] = run(f[name], spec, x, p, inp, dy)
        y_ref, g_ref = _REFS[key]
        assert set(g_ref) == set(grads)
        out[name] = {"forward": _check("forward", y, y_ref, name, dtype),
                     **{k: _check(k, grads[k], g_ref[k], name, dtype) for k in grads}}
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", LAYER_OPS, ids=lambda o: o.id)
def test_layer_matches_torch_and_jax(op, dtype, fw):
    _assert_all_pass(check_layer(op, dtype, fw))


def _layer_mutants():
    for op in LAYER_OPS:
        if op.forward_mutant:
            yield pytest.param(op, "forward", op.forward_mutant[0], {"forward": op.forward_mutant[1]},
                               id=f"{op.id}-forward")
        for label, (what, bwd) in op.backward_mutants.items():
            yield pytest.param(op, label, what, {"backward": bwd}, id=f"{op.id}-{label}")
        if op.act_mutant:
            yield pytest.param(op, "dx", op.act_mutant[0], {"act_bwd": op.act_mutant[1]}, id=f"{op.id}-act")
    by_id = {op.id: op for op in LAYER_OPS}
    for op_id, label, short, what, bwd in EXTRA_LAYER_MUTANTS:
        yield pytest.param(by_id[op_id], label, what, {"backward": bwd}, id=f"{op_id}-{label}-{short}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, label, what, mutant", list(_layer_mutants()))
def test_layer_check_flags_the_mutant(op, label, what, mutant, dtype, fw):
    """The same check on a wrong forward or backward: flagged at the label it aims at, by both
    frameworks, in both dtypes."""
    result = check_layer(op, dtype, fw, **mutant)
    for name, per in result.items():
        assert not per[label].passed, f"{op.id}: {what} not flagged at {label} against {name}"
        if label != "forward":
            assert per["forward"].passed, per["forward"].message()


def test_mutants_cover_every_label():
    """Each label an op is compared on has a mutant that must fail there."""
    for op in LAYER_OPS:
        spec, x, p, inp, dy = _layer_data(op, "float64")
        _, grads = layer_manual(spec, x, p, inp, dy)
        covered = set(op.backward_mutants) | ({"forward"} if op.forward_mutant else set())
        assert covered == {"forward", *grads}, (op.id, covered, sorted(grads))
    assert {op.spec().kind for op in LAYER_OPS} | set(OPS_ELSEWHERE) == set(LAYERS), \
        "every catalog layer type has an op"
    for kind, where in OPS_ELSEWHERE.items():
        assert kind in (ROOT / where).read_text(encoding="utf-8"), (kind, where)


# Layer types checked op by op in a file of their own (the sequence ops build their spec with the
# batch, for h0), or that are not an op alone: embedding takes integer ids (no dx), a residual
# wraps other layers.
OPS_ELSEWHERE = {"rnn": "tests/test_catalog_recurrent.py", "lstm": "tests/test_catalog_recurrent.py",
                 "attention": "tests/test_catalog_attention.py", "embedding": "tests/test_sequence_cases.py",
                 "residual": "tests/test_sequence_cases.py"}
ROOT = Path(__file__).resolve().parent.parent


# ============================================================================ losses

N_CLASSES = 4


@dataclass
class LossOp:
    name: str
    mutants: dict[str, tuple[str, Callable]]  # "J": wrong cost(s, T); "ds": wrong grad(s, T)


def _ce_sum_over_batch(s, T):
    return NETWORK_LOSSES["cross_entropy"].cost(s, T) * s.shape[0]


def _ce_grad_without_1_over_m(s, T):
    return NETWORK_LOSSES["cross_entropy"].grad(s, T) * s.shape[0]


def _bce_mean_over_outputs(s, T):  # torch's reduction="mean" divides by m·N
    return NETWORK_LOSSES["binary_cross_entropy"].cost(s, T) / s.shape[1]


def _bce_grad_wrong_sign(s, T):
    return -NETWORK_LOSSES["binary_cross_entropy"].grad(s, T)


def _sse_without_half(s, T):
    return 2 * NETWORK_LOSSES["half_sse"].cost(s, T)


def _sse_grad_without_half(s, T):
    return 2 * NETWORK_LOSSES["half_sse"].grad(s, T)


def _hinge_counting_y(s, T):  # the j = y term, max(0, 1) = 1 per example, not left out
    return NETWORK_LOSSES["multiclass_hinge"].cost(s, T) + 1


def _hinge_grad_wrong_sign_at_y(s, T):
    Y = T["Y"]
    margins = s - (s * Y).sum(axis=-1, keepdims=True) + 1
    active = (margins > 0) * (1 - Y)
    return (active + Y * active.sum(axis=-1, keepdims=True)) / s.shape[0]


LOSS_OPS = [
    LossOp("cross_entropy", {"J": ("summed over the batch, not averaged", _ce_sum_over_batch),
                             "ds": ("without the 1/m", _ce_grad_without_1_over_m)}),
    LossOp("binary_cross_entropy", {"J": ("averaged over the outputs too", _bce_mean_over_outputs),
                                    "ds": ("y − σ(s), the wrong sign", _bce_grad_wrong_sign)}),
    LossOp("half_sse", {"J": ("without the ½", _sse_without_half),
                        "ds": ("2(s − y)/m, without the ½", _sse_grad_without_half)}),
    LossOp("multiclass_hinge", {"J": ("the j = y term counted", _hinge_counting_y),
                                "ds": ("+count at y instead of −count", _hinge_grad_wrong_sign_at_y)}),
]


def _loss_data(name: str, dtype: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((M, N_CLASSES)) * 2
    loss = NETWORK_LOSSES[name]
    if loss.target == "y":
        y = rng.integers(0, N_CLASSES, size=M)
        T = {"y": y, "Y": np.eye(N_CLASSES)[y].astype(dtype)}
    elif name == "binary_cross_entropy":
        T = {"Y": rng.uniform(0, 1, size=(M, N_CLASSES)).astype(dtype)}
    else:
        T = {"Y": rng.standard_normal((M, N_CLASSES)).astype(dtype)}
    return s.astype(dtype), T


def check_loss(op: LossOp, dtype: str, f: dict, cost=None, grad=None):
    loss = NETWORK_LOSSES[op.name]
    s, T = _loss_data(op.name, dtype)
    J = (cost or loss.cost)(s, T)
    ds = (grad or loss.grad)(s, T)
    if cost is grad is None:
        assert np.asarray(J).dtype == ds.dtype == np.dtype(dtype)
    key = ("loss", op.name, dtype)
    if key not in _REFS:
        torch = f["torch"].torch
        st = torch.from_numpy(s.copy()).requires_grad_()
        Jt = loss.torch(f["torch"], st, {k: torch.from_numpy(v) for k, v in T.items()})
        (dst,) = torch.autograd.grad(Jt, st)
        jax, jnp = f["jax"].jax, f["jax"].jnp
        Tj = {k: jnp.asarray(v) for k, v in T.items()}
        Jj, dsj = jax.jit(jax.value_and_grad(lambda sj, Tj: loss.jax(f["jax"], sj, Tj)))(jnp.asarray(s), Tj)
        _REFS[key] = (("torch", Jt.detach().numpy(), dst.numpy()), ("jax", np.asarray(Jj), np.asarray(dsj)))
    return {name: {"J": _check("J", J, Jr, name, dtype), "ds": _check("ds", ds, dr, name, dtype)}
            for name, Jr, dr in _REFS[key]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", LOSS_OPS, ids=lambda o: o.name)
def test_loss_matches_torch_and_jax(op, dtype, fw):
    _assert_all_pass(check_loss(op, dtype, fw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, label", [(op, label) for op in LOSS_OPS for label in ("J", "ds")],
                         ids=lambda v: v.name if isinstance(v, LossOp) else v)
def test_loss_check_flags_the_mutant(op, label, dtype, fw):
    what, wrong = op.mutants[label]
    result = check_loss(op, dtype, fw, **{"cost" if label == "J" else "grad": wrong})
    for name, per in result.items():
        assert not per[label].passed, f"{op.name}: {what} not flagged at {label} against {name}"


def test_hinge_kink_has_relu_convention(fw):
    """At a margin of exactly 0 the hinge's gradient takes relu's g'(0) = 0, as torch's and
    jax's relu do; the examples away from it are checked as usual."""
    s = np.array([[0.0, 1.0, -2.0], [0.5, -0.5, 3.0]])  # j = 0 of example 1 and j = 1 of example 2 at 0
    y = np.array([1, 0])
    T = {"y": y, "Y": np.eye(3)[y]}
    loss = NETWORK_LOSSES["multiclass_hinge"]
    torch = fw["torch"].torch
    st = torch.from_numpy(s.copy()).requires_grad_()
    (dst,) = torch.autograd.grad(loss.torch(fw["torch"], st, {k: torch.from_numpy(v) for k, v in T.items()}), st)
    jax, jnp = fw["jax"].jax, fw["jax"].jnp
    dsj = jax.grad(lambda v: loss.jax(fw["jax"], v, {k: jnp.asarray(a) for k, a in T.items()}))(jnp.asarray(s))
    ds = loss.grad(s, T)
    assert ds[0, 0] == 0 and ds[1, 1] == 0
    for ref in (dst.numpy(), np.asarray(dsj)):
        np.testing.assert_array_equal(ds, ref)
    assert (loss.kink_sides(s, T) == 0).sum() == 4  # the two y entries and the two kinks


def test_every_network_loss_is_checked():
    assert {op.name for op in LOSS_OPS} == set(NETWORK_LOSSES)


def test_hinge_data_has_active_and_inactive_margins():
    """The hinge check means something only if both sides of the kink occur, none at it."""
    s, T = _loss_data("multiclass_hinge", "float64")
    margins = (s - (s * T["Y"]).sum(axis=-1, keepdims=True) + 1)[T["Y"] == 0]
    assert (margins > 0.01).any() and (margins < -0.01).any() and (np.abs(margins) > 1e-3).all()


# ============================================================================ L2

# The forms as issue 11 states them, written here independently of the catalog.
ISSUE_L2 = {"half": lambda lam, m: lam / 2, "sum": lambda lam, m: lam, "half_mean": lambda lam, m: lam / (2 * m)}
LAM = 0.3


def _l2_net(form: str, dtype: str, lam: float = LAM) -> Network:
    spec = build_spec({"layer": "dense", "units": 3, "bias": False}, 1, (4,))
    return Network((4,), (spec,), "half_sse", dtype, lam, form)


def l2_manual(form: str, dtype: str):
    """J and dW1 of the L2 term alone, by the manual arm (``network.backprop``): X = 0 and Y = 0
    make the data term and its gradient exactly 0."""
    W = (np.random.default_rng(2).standard_normal((4, 3))).astype(dtype)
    arrays = {"X": np.zeros((M, 4), dtype), "Y": np.zeros((M, 3), dtype), "W1": W}
    out = backprop(_l2_net(form, dtype), arrays)
    return W, out["J"], out["dW1"]


def check_l2(form: str, dtype: str, f: dict, wrong_J=None, wrong_dW=None):
    W, J, dW = l2_manual(form, dtype)
    if wrong_J is not None:
        J = wrong_J(W)
    if wrong_dW is not None:
        dW = wrong_dW(W)
    key = ("l2", form, dtype)
    if key not in _REFS:
        c = ISSUE_L2[form](LAM, M)
        torch = f["torch"].torch
        Wt = torch.from_numpy(W.copy()).requires_grad_()
        Jt = c * (Wt * Wt).sum()
        (dWt,) = torch.autograd.grad(Jt, Wt)
        jax, jnp = f["jax"].jax, f["jax"].jnp
        Jj, dWj = jax.value_and_grad(lambda w: c * jnp.sum(w * w))(jnp.asarray(W))
        _REFS[key] = (("torch", Jt.detach().numpy(), dWt.numpy()), ("jax", np.asarray(Jj), np.asarray(dWj)))
    return {name: {"J": _check("J", J, Jr, name, dtype), "dW": _check("dW", dW, dr, name, dtype)}
            for name, Jr, dr in _REFS[key]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", list(L2_FORMS))
def test_l2_form_matches_torch_and_jax(form, dtype, fw):
    _assert_all_pass(check_l2(form, dtype, fw))
    assert l2_coefficient(LAM, form, M) == pytest.approx(ISSUE_L2[form](LAM, M), rel=1e-15)


# The gradient with the wrong factor: λW, 2λW, (λ/m)W swapped; J with the coefficient of another form.
L2_MUTANTS = {"half": (lambda W: 2 * LAM * W, lambda W: LAM * (W * W).sum()),
              "sum": (lambda W: LAM * W, lambda W: LAM / 2 * (W * W).sum()),
              "half_mean": (lambda W: LAM * W, lambda W: LAM / 2 * (W * W).sum())}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", list(L2_FORMS))
def test_l2_check_flags_the_wrong_factor(form, dtype, fw):
    wrong_dW, wrong_J = L2_MUTANTS[form]
    for label, kw in (("dW", {"wrong_dW": wrong_dW}), ("J", {"wrong_J": wrong_J})):
        for name, per in check_l2(form, dtype, fw, **kw).items():
            assert not per[label].passed, f"l2 {form}: wrong factor not flagged at {label} against {name}"


def test_l2_covers_weight_matrices_only():
    specs, shape = [], (4,)
    for i, raw in enumerate([{"layer": "dense", "units": 5}, {"layer": "batchnorm"}, {"layer": "relu"},
                             {"layer": "dense", "units": 3, "bias": False}, {"layer": "layernorm"}], start=1):
        specs.append(build_spec(raw, i, shape))
        shape = specs[-1].out_shape
    net = Network((4,), tuple(specs), "half_sse", "float64", 0.1, "half")
    assert list(net.param_shapes()) == ["W1", "b1", "gamma2", "beta2", "W4", "gamma5", "beta5"]
    assert net.regularised() == ["W1", "W4"]


# ============================================================================ networks end to end

NETWORKS = {
    # issue 11's example
    "bn-dropout-mlp": """
        input = [20]
        batch = 16
        loss = "cross_entropy"
        l2 = 0.05
        l2_form = "half"
        network = [
          {layer = "dense", units = 32},
          {layer = "batchnorm"},
          {layer = "relu"},
          {layer = "dropout", rate = 0.3},
          {layer = "dense", units = 16, activation = "tanh"},
          {layer = "layernorm"},
          {layer = "dense", units = 5},
        ]""",
    # flatten of a [T, D] input, softmax as a layer before half_sse, no-bias dense, l2 "sum"
    "flatten-ln-softmax": """
        input = [3, 4]
        batch = 5
        loss = "half_sse"
        l2 = 0.1
        l2_form = "sum"
        network = [
          {layer = "dense", units = 4, bias = false},
          {layer = "flatten"},
          {layer = "dense", units = 6, activation = "gelu"},
          {layer = "layernorm", eps = 0.01},
          {layer = "dense", units = 3, bias = false},
          {layer = "softmax"},
        ]""",
    # the hinge loss after batch norm, leaky_relu, dropout; a square dense (layer 5); l2 "half_mean"
    "bn-hinge": """
        input = [5]
        batch = 8
        loss = "multiclass_hinge"
        l2 = 0.2
        l2_form = "half_mean"
        network = [
          {layer = "dense", units = 6},
          {layer = "batchnorm"},
          {layer = "leaky_relu"},
          {layer = "dropout", rate = 0.25},
          {layer = "dense", units = 6, activation = "elu"},
          {layer = "dense", units = 3},
        ]""",
    # activations as layers between dense layers, binary cross-entropy from the logits
    "acts-bce": """
        input = [4]
        batch = 6
        loss = "binary_cross_entropy"
        network = [
          {layer = "dense", units = 5, activation = "sigmoid"},
          {layer = "dense", units = 5},
          {layer = "softplus"},
          {layer = "dense", units = 4},
          {layer = "gelu_tanh"},
          {layer = "identity"},
          {layer = "dense", units = 2, bias = false},
        ]""",
    # per-step layers on a [T, D] input: dense on the last axis, batch norm over batch and time
    "sequence-bn": """
        input = [3, 4]
        batch = 4
        loss = "half_sse"
        network = [
          {layer = "dense", units = 5, activation = "tanh"},
          {layer = "batchnorm"},
          {layer = "layernorm"},
          {layer = "flatten"},
          {layer = "dense", units = 2},
        ]""",
}


@pytest.fixture(scope="session")
def network_cases(tmp_path_factory):
    """{(name, dtype): Case}, loaded from one case file as a user writes it."""
    from harness.cases import load_file

    text = "".join(f'\n[[case]]\nname = "{name}-{dtype}"\ndtype = "{dtype}"\nseed = 7\n{body}\n'
                   for name, body in NETWORKS.items() for dtype in DTYPES)
    path = tmp_path_factory.mktemp("catalog") / "networks.toml"
    path.write_text(text.replace("\n        ", "\n"))
    cases = load_file(path)
    return {(c.name.rsplit("-", 1)[0], c.model.dtype): c for c in cases}


_OUTPUTS: dict[tuple, dict] = {}


class _Once:
    """A built-in backend whose result on given inputs is computed once: the agreement test
    and the mutant tests run the same cases through torch, jax and fd."""

    def __init__(self, backend) -> None:
        self.backend, self.name, self.kind = backend, backend.name, getattr(backend, "kind", "analytic")

    def gradients(self, model, arrays):
        import hashlib

        digest = hashlib.sha256(b"".join(k.encode() + np.ascontiguousarray(v).tobytes()
                                         for k, v in sorted(arrays.items()))).hexdigest()
        key = (self.name, model, digest)
        if key not in _OUTPUTS:
            _OUTPUTS[key] = self.backend.gradients(model, arrays)
        out = copy.copy(_OUTPUTS[key])  # the same type: notes and inconclusive counts travel with it
        for k, v in out.items():
            if isinstance(v, np.ndarray):
                out[k] = v.copy()
        return out


def _backends(builtin, manual=None):
    return [manual or builtin["manual"], *(_Once(builtin[n]) for n in ("torch", "jax", "fd"))]


# fd keeps its finite-difference row behind the wrapper (run_case trusts only the harness's own class)
TRUST = ("fd",)


def test_networks_use_every_layer_loss_and_form(network_cases):
    nets = [c.model for c in network_cases.values()]
    kinds = {s.kind for n in nets for s in n.network} | {s.activation for n in nets for s in n.network}
    assert {"dense", "flatten", "dropout", "batchnorm", "layernorm", "softmax"} <= kinds
    assert {n.loss for n in nets} == set(NETWORK_LOSSES)
    assert {n.l2_form for n in nets if n.l2} == set(L2_FORMS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_agrees_across_backends(name, dtype, network_cases, builtin):
    from harness.runner import run_case

    case = network_cases[(name, dtype)]
    result = run_case(case, _backends(builtin), TRUST)
    assert not result.errors, [e.message for e in result.errors]
    assert set(result.outputs) == {"manual", "torch", "jax", "fd"}
    pairs = {c.pair for c in result.comparisons}
    assert len(pairs) == 6 and not result.kind_notes
    assert {c.kind for c in result.comparisons if "fd" in c.pair} == {"finite_difference"}
    assert "central differences" in result.notes.get("fd", ""), result.notes  # fd's notes came through
    bad = [c.message() for c in result.comparisons if not c.passed]
    assert not bad, "\n".join(bad[:6])
    # every parameter gradient was compared on every pair, fd included
    for q in case.model.quantities():
        assert {c.pair for c in result.comparisons if c.quantity == q} == pairs, q


class _Mutant:
    """The manual arm with a mistake: layer backwards replaced (``backprop``'s ``backward_of``),
    or its output edited after the fact."""

    kind = "analytic"

    def __init__(self, name: str, backward_of=None, edit=None) -> None:
        self.name, self.backward_of, self.edit = name, backward_of or {}, edit

    def gradients(self, model, arrays):
        out = backprop(model, arrays, self.backward_of)
        if self.edit:
            self.edit(model, arrays, out)
        return out


def _only_layer(index: int, wrong: Backward, kind: str) -> dict:
    def backward(spec, dy, cache):
        return (wrong if spec.index == index else LAYERS[kind].backward)(spec, dy, cache)
    return {kind: backward}


def _l2_gradient_without_the_2(model, arrays, out):
    c = model.l2_coefficient(arrays["X"].shape[0])
    for k in model.regularised():
        out[f"d{k}"] = out[f"d{k}"] - c * arrays[k]  # c·W instead of 2c·W


def _hinge_wrong_sign(monkeypatch):
    monkeypatch.setattr(NETWORK_LOSSES["multiclass_hinge"], "grad", _hinge_grad_wrong_sign_at_y)


# (network, mistake, the mutant, where the manual pairs first disagree)
NETWORK_MUTANTS = [
    ("bn-dropout-mlp", "batchnorm backward without the mean terms",
     {"backward_of": {"batchnorm": _norm_without_mean_terms}}, "da1"),
    ("bn-dropout-mlp", "dropout backward without 1/(1 − p)",
     {"backward_of": {"dropout": _dropout_without_scale}}, "da3"),
    ("bn-dropout-mlp", "layernorm backward summing over the batch",
     {"backward_of": {"layernorm": _norm_other_axes}}, "da5"),
    ("bn-hinge", "dW of the square dense transposed",
     {"backward_of": _only_layer(5, _dense_dW_transposed, "dense")}, "dW5"),
    ("bn-hinge", "hinge gradient with the wrong sign at y", "hinge", "da6"),
    ("flatten-ln-softmax", "softmax backward without the off-diagonal terms",
     {"backward_of": {"softmax": _softmax_elementwise}}, "da5"),
    ("flatten-ln-softmax", "L2 gradient c·W instead of 2c·W", {"edit": _l2_gradient_without_the_2}, "dW5"),
    ("acts-bce", "softplus layer forgets g'", {"backward_of": {"softplus": _act_forgets_g_prime}}, "da2"),
    ("sequence-bn", "flatten reshaped back column-major",
     {"backward_of": {"flatten": _flatten_column_major}}, "da3"),
]


@pytest.mark.parametrize("name, what, mutant, first", NETWORK_MUTANTS, ids=[m[1] for m in NETWORK_MUTANTS])
def test_network_check_flags_the_mutant(name, what, mutant, first, network_cases, builtin, monkeypatch):
    """float64: each manual pair fails, first at ``first``; torch, jax and fd still agree."""
    from harness.runner import run_case

    if mutant == "hinge":
        _hinge_wrong_sign(monkeypatch)
        mutant = {}
    case = network_cases[(name, "float64")]
    result = run_case(case, _backends(builtin, _Mutant("manual", **mutant)), TRUST)
    assert not result.errors, [e.message for e in result.errors]
    firsts = result.first_disagreements()
    assert set(firsts) == {"manual-vs-torch", "manual-vs-jax", "manual-vs-fd"}, (what, sorted(firsts))
    for pair, c in firsts.items():
        assert c.quantity == first, (what, pair, c.message())


@pytest.mark.parametrize("first", ['{layer = "flatten"}', '{layer = "dropout", rate = 0.5}', '{layer = "tanh"}'])
def test_network_may_start_with_a_layer_without_parameters(first, builtin, tmp_path):
    from harness.cases import load_file
    from harness.runner import run_case

    path = tmp_path / "first.toml"
    path.write_text(f'[[case]]\nname = "first"\ninput = [2, 3]\nbatch = 4\nloss = "half_sse"\n'
                    f'network = [{first}, {{layer = "flatten"}}, {{layer = "dense", units = 2}}]\n')
    result = run_case(load_file(path)[0], _backends(builtin), TRUST)
    assert not result.errors, [e.message for e in result.errors]
    assert result.comparisons and all(c.passed for c in result.comparisons)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 0), ([3, 2], 2, 1), (1, [2, 1], 0), ([2, 4], 3, [1, 2])])
def test_conv_dx_by_col2im_is_the_full_correlation_with_the_flipped_kernel(kernel, stride, padding):
    """The identity the fast backward relies on: the transposed convolution (col2im of Wᵀ dz)
    equals the textbook full correlation of the dilated dz with the kernel rotated by 180°;
    with the kernel not rotated it does not (the check can fail)."""
    spec = build_spec({"layer": "conv2d", "filters": 3, "kernel": kernel, "stride": stride,
                       "padding": padding}, 2, (2, 7, 8))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 7, 8))
    p = {k: par.draw(rng, par.shape) for k, par in LAYERS["conv2d"].params(spec).items()}
    z, cache = LAYERS["conv2d"].forward(spec, x, p, {})
    dz = rng.standard_normal(z.shape)
    dx, _ = LAYERS["conv2d"].backward(spec, dz, cache)
    s, pad = conv._pair(spec["stride"]), conv._pair(spec["padding"])
    assert np.allclose(dx, conv.full_correlation_dx(dz, p["W"], cache[0].shape, s, pad), rtol=1e-12, atol=1e-12)
    if kernel != 1:  # a 1×1 kernel is its own rotation
        assert not np.allclose(dx, conv.full_correlation_dx(dz, p["W"][:, :, ::-1, ::-1], cache[0].shape, s, pad),
                               rtol=1e-3, atol=1e-3)
