"""The attention layer op by op: numpy forward and hand-written backward against torch
autograd and jax.grad of the catalog's torch and jax forms, float64 and float32, heads 1
and 4, causal or not, T = 5 and T = 1.

The jax arm runs under jax.jit (test_catalog's ``layer_jax``), as the jax backend runs a network.

Every label (forward, dx and the eight parameter gradients) has a mutant that the same check
flags there: the mistakes of a first attention backward (the 1/√d_k forgotten, the softmax's
Jacobian cut to its diagonal, a path missing from dx, a transpose, a mean for a sum) and of a
first forward (the mask after the softmax, heads taken as interleaved columns). The mutants
are one ``mistake`` away from a textbook form written here, which must equal the layer's
fast form (one GEMM for Q, K, V) when no mistake is made.

Last, how it is done in industry: the same weights in torch.nn.MultiheadAttention (which runs
F.scaled_dot_product_attention, a fused kernel with its own backward) give the same output
and, mapped back to our layout, the same gradients, to 1e-10 in float64.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import test_catalog
from test_catalog import (
    _REFS,
    LayerOp,
    _assert_all_pass,
    _layer_data,
    check_layer,
    layer_manual,
)

from harness.catalog import LAYERS, LayerError, build_spec
from harness.catalog.attention import future, merge_heads, split_heads
from harness.compare import compare
from harness.rounding import FLOOR_FACTOR
from harness.tolerances import ANALYTIC, lookup

DTYPES = ("float64", "float32")
D = 8
LAYER = LAYERS["attention"]
fw = test_catalog.fw  # the framework namespaces' fixture, bound here for pytest to find


# ============================================================================ the textbook form, and its mistakes

def _split(A, H, interleaved=False):
    """N×T×D -> N×H×T×d_k: column blocks, or (the mistake) head h takes columns h, h+H, ..."""
    N, T, _ = A.shape
    if interleaved:
        return A.reshape(N, T, -1, H).transpose(0, 3, 1, 2)
    return A.reshape(N, T, H, -1).transpose(0, 2, 1, 3)


def _merge(A, interleaved=False):
    N, H, T, d_k = A.shape
    if interleaved:
        return A.transpose(0, 2, 3, 1).reshape(N, T, H * d_k)
    return A.transpose(0, 2, 1, 3).reshape(N, T, H * d_k)


def textbook_forward(spec, x, p, mistake=None):
    """y, projection by projection and head by head (as arrays), the way the derivation reads."""
    H = spec["heads"]
    d_k = x.shape[-1] // H
    interleaved = mistake == "heads interleaved"
    Q, K, V = (_split(x @ p[f"W{n}"] + p[f"b{n}"], H, interleaved) for n in "qkv")
    S = Q @ K.swapaxes(-1, -2)
    if mistake != "scores without 1/√d_k":
        S = S / math.sqrt(d_k)
    hidden = future(x.shape[1]) if spec["causal"] else None
    if mistake == "mask transposed":
        hidden = hidden.T
    if hidden is not None and mistake != "mask after the softmax":
        S = np.where(hidden, -np.inf, S)
    e = np.exp(S - S.max(axis=-1, keepdims=True))
    P = e / e.sum(axis=-1, keepdims=True)
    if hidden is not None and mistake == "mask after the softmax":
        P = np.where(hidden, 0, P)  # the future zeroed, the rows no longer sum to 1
    O = _merge(P @ V, interleaved)
    return O @ (p["Wo"].T if mistake == "y = O Woᵀ" else p["Wo"]) + p["bo"]


def textbook_backward(spec, dy, cache, mistake=None):
    """dx and the gradients, step by step from the layer's cache; each mistake sits at the
    line where it is made."""
    x, Wo, P = cache.x, cache.Wo, cache.P
    Wq, Wk, Wv = np.split(cache.W_qkv, 3, axis=1)
    Q, K, V = cache.Q, cache.K, cache.V  # N×H×T×d_k
    H, d_k = Q.shape[1], Q.shape[3]
    O = cache.O
    rows = (0, 1)  # the parameter gradients sum over examples and steps

    g = {"Wo": np.einsum("ntd,nte->de", O, dy), "bo": dy.sum(axis=rows)}
    if mistake == "dWo = dyᵀ O":
        g["Wo"] = g["Wo"].T
    if mistake == "dbo a mean":
        g["bo"] = dy.mean(axis=rows)
    dO = _split(dy @ (Wo if mistake == "dO = dy Wo" else Wo.T), H)
    dP = dO @ V.swapaxes(-1, -2)
    dV = (P if mistake == "dV = P dO" else P.swapaxes(-1, -2)) @ dO
    if mistake == "softmax backward: diagonal only":
        dS = P * (1 - P) * dP
    elif mistake == "softmax backward: dS = P ∘ dP":
        dS = P * dP
    else:
        dS = P * (dP - (dP * P).sum(axis=-1, keepdims=True))
    if mistake != "backward without 1/√d_k":
        dS = dS / math.sqrt(d_k)
    dQ = dS @ K
    dK = (dS if mistake == "dK = dS Q" else dS.swapaxes(-1, -2)) @ Q
    dQ, dK, dV = _merge(dQ), _merge(dK), _merge(dV)
    dx = dQ @ Wq.T
    if mistake != "dx without the K path":
        dx = dx + dK @ Wk.T
    if mistake != "dx without the V path":
        dx = dx + dV @ Wv.T
    for n, dA in zip("qkv", (dQ, dK, dV)):
        g[f"W{n}"] = np.einsum("ntd,nte->de", x, dA)
        g[f"b{n}"] = dA.sum(axis=rows)
    if mistake == "dbq a mean":
        g["bq"] = dQ.mean(axis=rows)
    return dx, {k: g[k] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")}


def _forward_with(mistake):
    return mistake, lambda spec, x, p, inp: textbook_forward(spec, x, p, mistake)


def _backward_with(mistake):
    return mistake, lambda spec, dy, cache: textbook_backward(spec, dy, cache, mistake)


# One mutant per label (T > 1). dbk is 0 in exact arithmetic, so its mistake must make it
# non-zero: dS not transposed sums dS over queries, where the rows of dS sum to 0 but its
# columns do not. dbv = Σ dO whatever P is, so its mistake comes from dO.
MUTANTS = {"dx": _backward_with("dx without the K path"),
           "dWq": _backward_with("backward without 1/√d_k"),
           "dbq": _backward_with("dbq a mean"),
           "dWk": _backward_with("softmax backward: diagonal only"),
           "dbk": _backward_with("dK = dS Q"),
           "dWv": _backward_with("dV = P dO"),
           "dbv": _backward_with("dO = dy Wo"),
           "dWo": _backward_with("dWo = dyᵀ O"),
           "dbo": _backward_with("dbo a mean")}
# T = 1: one key, P = 1, the query and key sides get exactly 0 and the softmax's row-sum
# term is all of dS; only forgetting it entirely (dS = P ∘ dP) shows there. dx has no K path,
# and P (1×1) is its own transpose.
MUTANTS_T1 = {**MUTANTS, "dx": _backward_with("dx without the V path"), "dWv": _backward_with("dO = dy Wo"),
              **{label: _backward_with("softmax backward: dS = P ∘ dP") for label in ("dWq", "dbq", "dWk", "dbk")}}


def _op(id_, heads, causal, T, forward_mutant, mutants=MUTANTS):
    return LayerOp(id_, {"layer": "attention", "heads": heads, "causal": causal}, (T, D),
                   _forward_with(forward_mutant), dict(mutants))


OPS = [
    _op("attention1", 1, False, 5, "scores without 1/√d_k"),
    _op("attention4", 4, False, 5, "heads interleaved"),
    _op("attention1-causal", 1, True, 5, "mask after the softmax"),
    _op("attention4-causal", 4, True, 5, "mask after the softmax"),
    _op("attention1-T1", 1, False, 1, "y = O Woᵀ", MUTANTS_T1),
    _op("attention4-causal-T1", 4, True, 1, "y = O Woᵀ", MUTANTS_T1),
]
BY_ID = {op.id: op for op in OPS}
# Further mistakes aimed at labels already covered.
EXTRA_MUTANTS = [
    ("attention4-causal", "forward", _forward_with("heads interleaved")),
    ("attention4-causal", "forward", _forward_with("mask transposed")),
    ("attention1-causal", "forward", _forward_with("mask transposed")),
    ("attention4", "forward", _forward_with("scores without 1/√d_k")),
    ("attention4", "dx", _backward_with("dx without the V path")),
    ("attention4", "dx", _backward_with("backward without 1/√d_k")),
    ("attention4-causal", "dx", _backward_with("softmax backward: diagonal only")),
    ("attention4-causal", "dbk", _backward_with("softmax backward: diagonal only")),
    ("attention1", "dbk", _backward_with("softmax backward: dS = P ∘ dP")),
    ("attention1-causal", "dWq", _backward_with("backward without 1/√d_k")),
]


# ============================================================================ the check, with the rounding floor where the answer is 0

def _exact_zeros(op) -> tuple[str, ...]:
    """The gradients that are 0 in exact arithmetic: dbk always (bk adds a constant to each row
    of scores), and at T = 1 (P = 1) the whole query and key side."""
    return ("dWq", "dbq", "dWk", "dbk") if op.in_shape[0] == 1 else ("dbk",)


def rounding_floors(op, dtype: str) -> dict:
    """The rounding a correct backend may make on a gradient that is 0 (harness.rounding's
    FLOOR_FACTOR · ε · T): T the magnitudes of the terms through the softmax backward, from a
    float64 run, |dO| ≤ |dy||Wo|ᵀ, |dP| ≤ |dO||V|ᵀ, |dS| ≤ P(|dP| + Σ|dP|P), and on to the
    query and key sides. A 0 compared without it would be noise against noise."""
    spec, x, p, inp, dy = _layer_data(op, "float64")
    _, c = LAYER.forward(spec, x, p, inp)
    H = spec["heads"]
    T_dP = split_heads(np.abs(dy) @ np.abs(c.Wo).T, H) @ np.abs(c.V).swapaxes(-1, -2)
    T_dS = c.P * (T_dP + (T_dP * c.P).sum(axis=-1, keepdims=True)) / math.sqrt(D // H)
    T_dQ, T_dK = merge_heads(T_dS @ np.abs(c.K)), merge_heads(T_dS.swapaxes(-1, -2) @ np.abs(c.Q))
    ax = np.abs(x)
    T = {"dWq": np.einsum("ntd,nte->de", ax, T_dQ), "dbq": T_dQ.sum(axis=(0, 1)),
         "dWk": np.einsum("ntd,nte->de", ax, T_dK), "dbk": T_dK.sum(axis=(0, 1))}
    eps = np.finfo(dtype).eps
    return {k: FLOOR_FACTOR * eps * T[k] for k in _exact_zeros(op)}


def check_attention(op, dtype: str, f: dict, **mutant) -> dict:
    """test_catalog's check_layer (forward, then each gradient), its jax arm jitted, with the
    gradients that are 0 in exact arithmetic compared again allowing their rounding floor."""
    out = check_layer(op, dtype, f, **mutant)
    spec, x, p, inp, dy = _layer_data(op, dtype)
    _, grads = layer_manual(spec, x, p, inp, dy, **mutant)
    for label, floor in rounding_floors(op, dtype).items():
        for name in out:
            ref = _REFS[("layer", op.id, dtype, name)][1][label]
            out[name][label] = compare("op", label, "manual", grads[label], name, ref, ANALYTIC, dtype,
                                       lookup(dtype, ANALYTIC), floor=floor)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.id)
def test_attention_matches_torch_and_jax(op, dtype, fw):
    result = check_attention(op, dtype, fw)
    _assert_all_pass(result)
    assert set(result["torch"]) == {"forward", "dx", "dWq", "dbq", "dWk", "dbk", "dWv", "dbv", "dWo", "dbo"}


def _mutants():
    for op in OPS:
        yield pytest.param(op, "forward", *op.forward_mutant, "forward", id=f"{op.id}-forward")
        for label, (what, bwd) in op.backward_mutants.items():
            yield pytest.param(op, label, what, bwd, "backward", id=f"{op.id}-{label}")
    for op_id, label, (what, wrong) in EXTRA_MUTANTS:
        yield pytest.param(BY_ID[op_id], label, what, wrong, "forward" if label == "forward" else "backward",
                           id=f"{op_id}-{label}-{what}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, label, what, wrong, arm", list(_mutants()))
def test_attention_check_flags_the_mutant(op, label, what, wrong, arm, dtype, fw):
    """Flagged at the label it aims at, by both frameworks, in both dtypes; a backward mutant
    leaves the forward passing."""
    result = check_attention(op, dtype, fw, **{arm: wrong})
    for name, per in result.items():
        assert not per[label].passed, f"{op.id}: {what} not flagged at {label} against {name}"
        if label != "forward":
            assert per["forward"].passed, per["forward"].message()


def test_mutants_cover_every_label():
    for op in OPS:
        spec, x, p, inp, dy = _layer_data(op, "float64")
        _, grads = layer_manual(spec, x, p, inp, dy)
        assert {"forward", *op.backward_mutants} == {"forward", *grads}, op.id
    assert {(op.spec()["heads"], op.spec()["causal"], op.in_shape[0]) for op in OPS} >= \
        {(h, c, 5) for h in (1, 4) for c in (False, True)}


@pytest.mark.parametrize("op", OPS, ids=lambda o: o.id)
def test_textbook_form_is_the_layer(op):
    """The mutants are one mistake away from the layer itself: with no mistake, the textbook
    forward and backward equal the layer's fast ones (one GEMM for Q, K, V, heads as an axis)."""
    spec, x, p, inp, dy = _layer_data(op, "float64")
    y, cache = LAYER.forward(spec, x, p, inp)
    dx, grads = LAYER.backward(spec, dy, cache)
    np.testing.assert_allclose(y, textbook_forward(spec, x, p), rtol=1e-12, atol=1e-13)
    dx_ref, grads_ref = textbook_backward(spec, dy, cache)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-13)
    assert list(grads) == list(grads_ref) == list(LAYER.params(spec))
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-12, atol=1e-13, err_msg=k)
    assert LAYER.param_backward(spec, dy, cache).keys() == grads.keys()


def test_zero_gradients_are_zero_in_the_manual_arm():
    """dbk is rounding noise next to dbq; at T = 1 the query and key sides are exactly 0, and
    the rounding floors those comparisons allow are far below the gradients that are not 0."""
    for op in OPS:
        spec, x, p, inp, dy = _layer_data(op, "float64")
        _, grads = layer_manual(spec, x, p, inp, dy)
        assert np.abs(grads["dbk"]).max() < 1e-12 * np.abs(grads["dbv"]).max(), op.id
        if op.in_shape[0] == 1:
            assert all(not grads[k].any() for k in ("dWq", "dbq", "dWk", "dbk")), op.id
        else:
            assert np.abs(grads["dbq"]).max() > 1e-3
        for label, floor in rounding_floors(op, "float32").items():
            assert floor.max() < 1e-3 * np.abs(grads["dWv"]).max(), (op.id, label)


def test_causal_first_query_sees_only_itself():
    """Row 0 of P is [1, 0, ..., 0] (no NaN from the −∞), and the rows sum to 1 everywhere."""
    op = BY_ID["attention4-causal"]
    for dtype in DTYPES:
        spec, x, p, inp, _ = _layer_data(op, dtype)
        y, cache = LAYER.forward(spec, x, p, inp)
        assert np.isfinite(y).all() and y.dtype == np.dtype(dtype)
        assert (cache.P[:, :, 0, 0] == 1).all() and not cache.P[:, :, 0, 1:].any()
        assert not cache.P[..., future(5)].any()
        np.testing.assert_allclose(cache.P.sum(axis=-1), 1, rtol=1e-6)


# ============================================================================ attributes and shapes

def test_spec_checks_and_describe():
    assert build_spec({"layer": "attention"}, 1, (5, 8)).describe() == "attention1"
    spec = build_spec({"layer": "attention", "heads": 2, "causal": True}, 3, (5, 8))
    assert spec.describe() == "attention2,causal" and spec.out_shape == (5, 8)
    assert list(LAYER.params(spec)) == ["Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo"]
    assert {k: v.shape for k, v in LAYER.params(spec).items()} == {
        **{f"W{n}": (8, 8) for n in "qkvo"}, **{f"b{n}": (8,) for n in "qkvo"}}
    assert [k for k, v in LAYER.params(spec).items() if v.regularised] == ["Wq", "Wk", "Wv", "Wo"]
    with pytest.raises(LayerError) as e:
        build_spec({"layer": "attention", "heads": 3}, 1, (5, 8))
    assert e.value.field == "heads" and "1, 2, 4, 8" in e.value.message
    with pytest.raises(LayerError) as e:
        build_spec({"layer": "attention", "heads": 0}, 1, (5, 8))
    assert e.value.field == "heads"
    for shape in ((8,), (2, 5, 8)):
        with pytest.raises(LayerError) as e:
            build_spec({"layer": "attention"}, 1, shape)
        assert e.value.field == "" and "[T, D]" in e.value.message


# ============================================================================ how it's done in industry

def _mha(f, spec, p, wrong=None):
    """torch.nn.MultiheadAttention(D, H, batch_first=True) holding our weights: in_proj_weight
    = [Wqᵀ; Wkᵀ; Wvᵀ] (3D×D, out×in as nn.Linear stores it), in_proj_bias = [bq, bk, bv],
    out_proj.weight = Woᵀ, out_proj.bias = bo."""
    torch = f.torch
    mha = torch.nn.MultiheadAttention(D, spec["heads"], batch_first=True, dtype=torch.float64)
    Wq = p["Wq"] if wrong == "Wq for Wqᵀ" else p["Wq"].T
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(np.concatenate([Wq, p["Wk"].T, p["Wv"].T])))
        mha.in_proj_bias.copy_(torch.from_numpy(np.concatenate([p["bq"], p["bk"], p["bv"]])))
        mha.out_proj.weight.copy_(torch.from_numpy(p["Wo"].T))
        mha.out_proj.bias.copy_(torch.from_numpy(p["bo"]))
    return mha


def _mha_run(f, spec, x, p, dy, mask_kind="float", wrong=None):
    """y and the gradients of Σ y∘dy, mapped back to x, Wq, bq, ... of our layout."""
    torch = f.torch
    mha = _mha(f, spec, p, wrong)
    T = x.shape[1]
    mask = None
    if spec["causal"] and wrong != "no mask":
        hidden = torch.from_numpy(future(T))
        # a float mask is added to the scores; a bool mask means hidden where True
        mask = hidden if mask_kind == "bool" else torch.zeros(T, T, dtype=torch.float64).masked_fill(hidden, -math.inf)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    y, weights = mha(xt, xt, xt, need_weights=False, attn_mask=mask)
    assert weights is None
    params = [mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias]
    dx, d_in_w, d_in_b, d_out_w, d_out_b = (g.numpy() for g in
                                            torch.autograd.grad((y * torch.from_numpy(dy)).sum(), [xt, *params]))
    grads = {}
    for i, n in enumerate("qkv"):
        grads[f"W{n}"], grads[f"b{n}"] = d_in_w[i * D:(i + 1) * D].T, d_in_b[i * D:(i + 1) * D]
    grads["Wo"], grads["bo"] = d_out_w.T, d_out_b
    return y.detach().numpy(), {"dx": dx, **{f"d{k}": v for k, v in grads.items()}}


INDUSTRY = [(1, False, "float"), (4, False, "float"), (1, True, "float"), (4, True, "float"), (4, True, "bool")]


@pytest.mark.parametrize("heads, causal, mask_kind", INDUSTRY)
def test_torch_multihead_attention_agrees_with_the_manual_layer(heads, causal, mask_kind, fw):
    """float64, rtol 1e-10: the module's output and autograd gradients are our forward and
    hand-written backward. (dbk is 0 in exact arithmetic: both sides are noise far below the atol.)"""
    op = LayerOp("industry", {"layer": "attention", "heads": heads, "causal": causal}, (6, D))
    spec, x, p, inp, dy = _layer_data(op, "float64")
    y, grads = layer_manual(spec, x, p, inp, dy)
    y_mha, grads_mha = _mha_run(fw["torch"], spec, x, p, dy, mask_kind)
    scale = max(np.abs(g).max() for g in grads.values())
    np.testing.assert_allclose(y, y_mha, rtol=1e-10, atol=1e-12 * np.abs(y).max())
    assert grads.keys() == grads_mha.keys()
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_mha[k], rtol=1e-10, atol=1e-12 * scale, err_msg=k)


@pytest.mark.parametrize("heads, causal", [(1, False), (4, True)])
def test_torch_multihead_attention_negative_controls(heads, causal, fw):
    """The agreement above is not automatic: Wq given untransposed, or (4 heads) our heads
    taken as interleaved columns, or (causal) the mask left out, each change the output."""
    op = LayerOp("industry", {"layer": "attention", "heads": heads, "causal": causal}, (6, D))
    spec, x, p, inp, dy = _layer_data(op, "float64")
    y = LAYER.forward(spec, x, p, inp)[0]

    def differs(a, b):
        return not np.allclose(a, b, rtol=1e-3, atol=1e-3)

    assert differs(y, _mha_run(fw["torch"], spec, x, p, dy, wrong="Wq for Wqᵀ")[0])
    y_mha = _mha_run(fw["torch"], spec, x, p, dy)[0]
    if heads > 1:
        assert differs(textbook_forward(spec, x, p, "heads interleaved"), y_mha)
    if causal:
        assert differs(y, _mha_run(fw["torch"], spec, x, p, dy, wrong="no mask")[0])
