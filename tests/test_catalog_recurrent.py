"""rnn and lstm, op by op: the numpy forward and hand-written BPTT against torch autograd and
``jax.grad`` of the catalog's own torch and jax loops, with the machinery of test_catalog.py.

Sequences of T = 1 (no step t+1 exists: BPTT is plain backprop through one step) and T > 1,
with h_0 zeros and h_0 a parameter, in float64 and float32. Each label (forward, dx, dWx, dWh,
db, dh0) has a mutant that the same check flags there, written the way a learner gets it
wrong (tests/test_catalog.py's convention); the BPTT mutants run a small learner-style loop
written here, independently of the catalog's, with one knob turned (``rnn_bptt``,
``lstm_bptt``). The mutant that drops the path from step t+1 must fail for T > 1 and pass
for T = 1, where that path does not exist.

Last, how it's done in industry: the same weights mapped onto torch.nn.RNN and torch.nn.LSTM
(torch's layout: weights transposed, two biases, LSTM gates in the order i, f, g, o) give our
forward and our gradients to float64 rounding, and do not without the mapping.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_catalog
from test_catalog import (
    DTYPES,
    LayerOp,
    M,
    _assert_all_pass,
    _layer_data,
    check_layer,
    layer_manual,
)

from harness.catalog import LAYERS, LayerError, build_spec

RNN, LSTM = LAYERS["rnn"], LAYERS["lstm"]
fw = test_catalog.fw  # the framework namespaces' fixture, bound here for pytest to find


class SeqOp(LayerOp):
    """A LayerOp whose spec knows the batch (h0 has one row per example)."""

    def spec(self):
        return build_spec(self.raw, 1, self.in_shape, batch=M)


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def torch_order(H: int) -> np.ndarray:
    """Our columns in torch.nn.LSTM's block order: ours is i, f, o, g, torch's i, f, g, o."""
    return np.concatenate([np.arange(H) + k * H for k in (0, 1, 3, 2)])


# ============================================================================ BPTT, learner style

def rnn_bptt(dy, cache, through_time=True):
    """da_t of every step, dh_0 and dh_1 of the rnn, a step at a time (0-based t here)."""
    N, T, H = dy.shape
    da = np.zeros_like(dy)
    dh_next = np.zeros((N, H), dy.dtype)
    for t in reversed(range(T)):
        dh = dy[:, t] + dh_next if through_time else dy[:, t]
        if t == 0:
            dh_1 = dh
        da[:, t] = dh * (1 - cache.hs[:, t + 1] ** 2)
        dh_next = da[:, t] @ cache.Wh.T
    return da, dh_next, dh_1


def lstm_bptt(dy, cache, through_time=True, carry_c=True, tanh_c_prime=True,
              sigma_prime=lambda s: s * (1 - s)):
    """da_t of every step, dh_0 and dh_1 of the lstm, a step at a time (0-based t here)."""
    N, T, H = dy.shape
    da = np.zeros(cache.gates.shape, dy.dtype)
    dh_next = np.zeros((N, H), dy.dtype)
    dc_next = np.zeros((N, H), dy.dtype)
    for t in reversed(range(T)):
        i, f, o, g = np.split(cache.gates[:, t], 4, axis=1)
        c, c_prev = cache.cs[:, t + 1], cache.cs[:, t]
        dh = dy[:, t] + dh_next if through_time else dy[:, t]
        if t == 0:
            dh_1 = dh
        dc = dc_next + dh * o * ((1 - np.tanh(c) ** 2) if tanh_c_prime else 1)
        di, df, do, dg = dc * g, dc * c_prev, dh * np.tanh(c), dc * i
        da[:, t] = np.concatenate([di * sigma_prime(i), df * sigma_prime(f), do * sigma_prime(o),
                                   dg * (1 - g ** 2)], axis=1)
        dc_next = dc * f if carry_c else dc
        dh_next = da[:, t] @ cache.Wh.T
    return da, dh_next, dh_1


BPTT = {"rnn": rnn_bptt, "lstm": lstm_bptt}


def _sums(spec, cache, da, dh0):
    return LAYERS[spec.kind].weight_gradients(spec, cache.x, cache.hs[:, :-1], da, cache.Wx, dh0)


def _loop_mutant(**knobs):
    """The backward with the per-step loop written with one knob turned."""
    def backward(spec, dy, cache):
        da, dh0, _ = BPTT[spec.kind](dy, cache, **knobs)
        return _sums(spec, cache, da, dh0)
    return backward


def _one_wrong(label, wrong):
    """The correct backward with one gradient replaced: ``wrong(spec, dy, cache, da, dh_1)``."""
    def backward(spec, dy, cache):
        da, dh0, dh_1 = BPTT[spec.kind](dy, cache)
        dx, g = _sums(spec, cache, da, dh0)
        value = wrong(spec, dy, cache, da, dh_1)
        if label == "dx":
            return value, g
        g[label[1:]] = value
        return dx, g
    return backward


drops_step_t_plus_1 = _loop_mutant(through_time=False)

# the mistakes, one per label (T = 1 needs a few of its own: a sum over one step is that step)
dx_W_not_transposed = _one_wrong("dx", lambda s, dy, c, da, dh_1: da @ c.Wx)  # rnn, D = H
dx_time_reversed = _one_wrong("dx", lambda s, dy, c, da, dh_1: (_rows(da) @ c.Wx.T).reshape(
    c.x.shape)[:, ::-1])  # da collected in the loop's order, T first, never reversed
dWx_transposed = _one_wrong("dWx", lambda s, dy, c, da, dh_1: (_rows(c.x).T @ _rows(da)).T)  # rnn, D = H
dWx_last_step = _one_wrong("dWx", lambda s, dy, c, da, dh_1: c.x[:, -1].T @ da[:, -1])
dWx_torch_order = _one_wrong("dWx", lambda s, dy, c, da, dh_1: (_rows(c.x).T @ _rows(da))[
    :, torch_order(s["hidden"])])
dWh_off_by_one = _one_wrong("dWh", lambda s, dy, c, da, dh_1: _rows(c.hs[:, 1:]).T @ _rows(da))
db_last_step = _one_wrong("db", lambda s, dy, c, da, dh_1: da[:, -1].sum(axis=0))
db_mean_over_time = _one_wrong("db", lambda s, dy, c, da, dh_1: da.sum(axis=0).mean(axis=0))
db_without_tanh_prime = _one_wrong("db", lambda s, dy, c, da, dh_1: dy.sum(axis=(0, 1)))  # rnn
dh0_without_Wh = _one_wrong("dh0", lambda s, dy, c, da, dh_1: da[:, 0])  # rnn: da_1, Whᵀ missing
dh0_is_dh1 = _one_wrong("dh0", lambda s, dy, c, da, dh_1: dh_1)  # lstm: dh_1, not through step 1
sigma_prime_as_tanh_prime = _loop_mutant(sigma_prime=lambda s: 1 - s * s)
dc_without_tanh_prime = _loop_mutant(tanh_c_prime=False)
dc_not_through_f = _loop_mutant(carry_c=False)


def _rnn_bias_after_tanh(spec, x, p, inp):
    return RNN.forward(spec, x, {**p, "b": 0 * p["b"]}, inp)[0] + p["b"]


def _lstm_torch_gate_order(spec, x, p, inp):
    cols = torch_order(spec["hidden"])  # our a_t read as [i | f | g | o]
    return LSTM.forward(spec, x, {**p, **{k: p[k][..., cols] for k in ("Wx", "Wh", "b")}}, inp)[0]


def _rnn_op(T: int, h0: bool) -> SeqOp:
    """D = H = 4: square Wx and Wh, so that a transposed one keeps its shape."""
    mutants = {"dx": ("dx = da Wx, Wx not transposed", dx_W_not_transposed),
               "dWx": ("dWx = Σ da_tᵀ x_t, transposed", dWx_transposed),
               "dWh": ("dWh = Σ h_tᵀ da_t: h_t for h_{t−1}", dWh_off_by_one),
               "db": ("db of the last step only, no Σ over time", db_last_step) if T > 1
               else ("db = Σ dy, tanh' skipped", db_without_tanh_prime)}
    if h0:
        mutants["dh0"] = ("dh_0 = da_1, missing the Whᵀ of step 1", dh0_without_Wh)
    return SeqOp(f"rnn-T{T}" + "-h0" * h0, {"layer": "rnn", "hidden": 4, "h0": h0}, (T, 4),
                 ("b added after the tanh", _rnn_bias_after_tanh), mutants)


def _lstm_op(T: int, h0: bool) -> SeqOp:
    mutants = {"dx": ("σ' as tanh' (1 − σ²) at the i, f, o gates", sigma_prime_as_tanh_prime),
               "dWx": ("dWx's gate blocks in torch's order i, f, g, o", dWx_torch_order),
               "dWh": ("dWh = Σ h_tᵀ da_t: h_t for h_{t−1}", dWh_off_by_one),
               "db": ("dc = dh∘o, tanh'(c_t) forgotten", dc_without_tanh_prime)}
    if h0:
        mutants["dh0"] = ("dh_0 = dh_1, not taken back through step 1", dh0_is_dh1)
    return SeqOp(f"lstm-T{T}" + "-h0" * h0, {"layer": "lstm", "hidden": 3, "h0": h0}, (T, 2),
                 ("gates read in torch's order i, f, g, o", _lstm_torch_gate_order), mutants)


SEQ_OPS = [*(_rnn_op(T, h0) for T in (1, 5) for h0 in (False, True)),
           *(_lstm_op(T, h0) for T in (1, 4) for h0 in (False, True))]
LONG = [op for op in SEQ_OPS if op.in_shape[0] > 1]

# aimed at a label another mutant covers: the textbook BPTT mistakes (T > 1 only)
EXTRA_MUTANTS = [
    ("rnn", "dx", "drops the path from step t+1", drops_step_t_plus_1),
    ("rnn", "dx", "dx of the steps in reverse order", dx_time_reversed),
    ("rnn", "dWx", "dWx of the last step only", dWx_last_step),
    ("rnn", "db", "db the mean over time, not the sum", db_mean_over_time),
    ("lstm", "dx", "drops the path from step t+1", drops_step_t_plus_1),
    ("lstm", "dx", "dc not carried back through f (dc_{t−1} = dc_t)", dc_not_through_f),
    ("lstm", "dWx", "dWx of the last step only", dWx_last_step),
    ("lstm", "db", "db of the last step only, no Σ over time", db_last_step),
]


def _mutants():
    for op in SEQ_OPS:
        yield pytest.param(op, "forward", op.forward_mutant[0], {"forward": op.forward_mutant[1]},
                           id=f"{op.id}-forward")
        for label, (what, bwd) in op.backward_mutants.items():
            yield pytest.param(op, label, what, {"backward": bwd}, id=f"{op.id}-{label}")
    for op in LONG:
        for kind, label, what, bwd in EXTRA_MUTANTS:
            if op.raw["layer"] == kind:
                yield pytest.param(op, label, what, {"backward": bwd}, id=f"{op.id}-{label}-{what}")


# ============================================================================ the checks

# test_catalog's check_layer: its jax reference is jax.grad under jit, as the jax backend runs a
# network (so the scan is shown to trace).

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", SEQ_OPS, ids=lambda o: o.id)
def test_recurrent_matches_torch_and_jax(op, dtype, fw):
    """Forward, dx, dWx, dWh, db (and dh0) against both frameworks; check_layer also asserts
    the manual arm keeps the case dtype."""
    result = check_layer(op, dtype, fw)
    _assert_all_pass(result)
    labels = {"forward", "dx", "dWx", "dWh", "db"} | ({"dh0"} if op.raw["h0"] else set())
    assert all(set(per) == labels for per in result.values()), {k: sorted(v) for k, v in result.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, label, what, mutant", list(_mutants()))
def test_recurrent_check_flags_the_mutant(op, label, what, mutant, dtype, fw):
    result = check_layer(op, dtype, fw, **mutant)
    for name, per in result.items():
        assert not per[label].passed, f"{op.id}: {what} not flagged at {label} against {name}"
        if label != "forward":
            assert per["forward"].passed, per["forward"].message()


def test_mutants_cover_every_label():
    for op in SEQ_OPS:
        spec, x, p, inp, dy = _layer_data(op, "float64")
        _, grads = layer_manual(spec, x, p, inp, dy)
        assert {"forward", *op.backward_mutants} == {"forward", *grads}, (op.id, sorted(grads))
    assert {op.spec().kind for op in SEQ_OPS} == {"rnn", "lstm"}


@pytest.mark.parametrize("op", SEQ_OPS, ids=lambda o: o.id)
def test_dropping_the_path_from_step_t_plus_1(op, fw):
    """For T > 1 the mutant is flagged at every gradient; for T = 1 there is no step t+1, so
    the same code is right, and the check says so (the mutant is the mistake, nothing else)."""
    result = check_layer(op, "float64", fw, backward=drops_step_t_plus_1)
    for name, per in result.items():
        for label, c in per.items():
            if op.in_shape[0] == 1 or label == "forward":
                assert c.passed, c.message()
            else:
                assert not c.passed, f"{op.id}: dropped path not flagged at {label} against {name}"


@pytest.mark.parametrize("op", SEQ_OPS, ids=lambda o: o.id)
def test_learner_loop_is_the_catalog_backward(op):
    """The loops the mutants turn knobs on, without a knob turned, are the catalog's BPTT."""
    spec, x, p, inp, dy = _layer_data(op, "float64")
    layer = LAYERS[spec.kind]
    _, cache = layer.forward(spec, x, p, inp)
    dx, grads = layer.backward(spec, dy, cache)
    dx_ref, grads_ref = _loop_mutant()(spec, dy, cache)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ============================================================================ specs

@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@pytest.mark.parametrize("in_shape", [(5,), (2, 3, 4)])
def test_needs_a_sequence(kind, in_shape):
    with pytest.raises(LayerError) as err:
        build_spec({"layer": kind, "hidden": 4}, 1, in_shape)
    assert err.value.field == "" and f"{kind} needs a [T, D] input per example (a sequence)" in err.value.message
    assert str(list(in_shape)) in err.value.message


@pytest.mark.parametrize("kind, k", [("rnn", 1), ("lstm", 4)])
def test_shapes_params_and_describe(kind, k):
    spec = build_spec({"layer": kind, "hidden": 8, "h0": True}, 2, (7, 5), batch=3)
    layer = LAYERS[kind]
    assert spec.out_shape == (7, 8)
    params = layer.params(spec)
    assert list(params) == ["Wx", "Wh", "b", "h0"]
    assert [params[n].shape for n in params] == [(5, 8 * k), (8, 8 * k), (8 * k,), (3, 8)]
    assert [n for n, par in params.items() if par.regularised] == ["Wx", "Wh"]
    assert spec.describe() == f"{kind}8+h0"
    plain = build_spec({"layer": kind, "hidden": 16}, 1, (7, 5))
    assert plain.describe() == f"{kind}16" and list(layer.params(plain)) == ["Wx", "Wh", "b"]
    assert layer.check_batch(spec, 3) is None and "one row per example" in layer.check_batch(spec, 4)
    assert layer.check_batch(plain, 4) is None
    with pytest.raises(LayerError) as err:
        build_spec({"layer": kind}, 1, (7, 5))
    assert err.value.field == "hidden"
    with pytest.raises(LayerError) as err:
        build_spec({"layer": kind, "hidden": 0}, 1, (7, 5))
    assert err.value.field == "hidden"


# ============================================================================ industry

def _module_case(kind: str, seed: int = 3):
    N, T, D, H = 4, 6, 3, 5
    spec = build_spec({"layer": kind, "hidden": H, "h0": True}, 1, (T, D), batch=N)
    layer = LAYERS[kind]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D))
    p = {k: par.draw(rng, par.shape) for k, par in layer.params(spec).items()}
    dy = rng.standard_normal((N, T, H))
    y, cache = layer.forward(spec, x, p, {})
    dx, grads = layer.backward(spec, dy, cache)
    return spec, x, p, dy, y, dx, grads


def _run_module(torch, module, x, p, dy, lstm: bool):
    """The module's output and its autograd gradients w.r.t. x, its parameters and h_0."""
    xt = torch.from_numpy(x).requires_grad_()
    h0 = torch.from_numpy(p["h0"][None].copy()).requires_grad_()  # 1×N×H: one layer
    state = (h0, torch.zeros_like(h0)) if lstm else h0  # c_0 = 0
    y, _ = module(xt, state)
    names = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    grads = torch.autograd.grad(y, [xt, h0, *(getattr(module, n) for n in names)], torch.from_numpy(dy))
    return y.detach().numpy(), {"x": grads[0].numpy(), "h0": grads[1].numpy()[0],
                                **{n: g.numpy() for n, g in zip(names, grads[2:])}}


def _set(torch, module, **values):
    with torch.no_grad():
        for name, v in values.items():
            getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(v)))


TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def test_torch_nn_rnn_gives_our_forward_and_gradients(fw):
    """nn.RNN(nonlinearity='tanh', batch_first=True) computes h_t = tanh(x_t W_ihᵀ + b_ih +
    h_{t−1} W_hhᵀ + b_hh): W_ih = Wxᵀ, W_hh = Whᵀ, and b split between the two biases (here in
    halves). Each bias gets the whole db: ∂J/∂b_ih = ∂J/∂b_hh = ∂J/∂b."""
    torch = fw["torch"].torch
    spec, x, p, dy, y, dx, grads = _module_case("rnn")
    H = spec["hidden"]
    module = torch.nn.RNN(x.shape[-1], H, nonlinearity="tanh", batch_first=True).double()
    _set(torch, module, weight_ih_l0=p["Wx"].T, weight_hh_l0=p["Wh"].T, bias_ih_l0=p["b"] / 2,
         bias_hh_l0=p["b"] / 2)
    y_t, g = _run_module(torch, module, x, p, dy, lstm=False)
    np.testing.assert_allclose(y, y_t, **TIGHT)
    np.testing.assert_allclose(dx, g["x"], **TIGHT)
    np.testing.assert_allclose(grads["Wx"], g["weight_ih_l0"].T, **TIGHT)
    np.testing.assert_allclose(grads["Wh"], g["weight_hh_l0"].T, **TIGHT)
    np.testing.assert_allclose(grads["b"], g["bias_ih_l0"], **TIGHT)
    np.testing.assert_allclose(grads["b"], g["bias_hh_l0"], **TIGHT)
    np.testing.assert_allclose(grads["h0"], g["h0"], **TIGHT)
    # negative control: b given to both biases counts it twice
    _set(torch, module, bias_hh_l0=p["b"])
    assert not np.allclose(y, _run_module(torch, module, x, p, dy, lstm=False)[0], rtol=1e-3, atol=1e-3)


def test_torch_nn_lstm_gives_our_forward_and_gradients(fw):
    """nn.LSTM(batch_first=True) keeps its gate blocks in the order i, f, g, o; ours is i, f,
    o, g. With the blocks permuted (W_ih = Wx[:, perm]ᵀ, W_hh = Wh[:, perm]ᵀ, b_ih = b[perm],
    b_hh = 0), h_0 given and c_0 = 0, its output and gradients (permuted back) are ours; with
    the blocks in our order they are not."""
    torch = fw["torch"].torch
    spec, x, p, dy, y, dx, grads = _module_case("lstm")
    H = spec["hidden"]
    perm = torch_order(H)
    back = np.argsort(perm)  # torch's columns in our order
    module = torch.nn.LSTM(x.shape[-1], H, batch_first=True).double()
    _set(torch, module, weight_ih_l0=p["Wx"][:, perm].T, weight_hh_l0=p["Wh"][:, perm].T,
         bias_ih_l0=p["b"][perm], bias_hh_l0=np.zeros(4 * H))
    y_t, g = _run_module(torch, module, x, p, dy, lstm=True)
    np.testing.assert_allclose(y, y_t, **TIGHT)
    np.testing.assert_allclose(dx, g["x"], **TIGHT)
    np.testing.assert_allclose(grads["Wx"], g["weight_ih_l0"].T[:, back], **TIGHT)
    np.testing.assert_allclose(grads["Wh"], g["weight_hh_l0"].T[:, back], **TIGHT)
    np.testing.assert_allclose(grads["b"], g["bias_ih_l0"][back], **TIGHT)
    np.testing.assert_allclose(grads["b"], g["bias_hh_l0"][back], **TIGHT)
    np.testing.assert_allclose(grads["h0"], g["h0"], **TIGHT)
    # negative control: our i, f, o, g blocks handed over as they are
    _set(torch, module, weight_ih_l0=p["Wx"].T, weight_hh_l0=p["Wh"].T, bias_ih_l0=p["b"])
    y_wrong, g_wrong = _run_module(torch, module, x, p, dy, lstm=True)
    assert not np.allclose(y, y_wrong, rtol=1e-3, atol=1e-3)
    assert not np.allclose(grads["Wx"], g_wrong["weight_ih_l0"].T, rtol=1e-3, atol=1e-3)
