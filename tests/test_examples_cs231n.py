"""The shipped example examples/cs231n_layers.py (a correct CS231n-style layers.py) agrees with
the catalog's numpy forward and hand-written backward, quantity by quantity, in float64.

Each family's ``case_*`` runs the example and the matching catalog layer on the same seeded
inputs (N > 1, odd sizes, stride 2 with padding, overlapping and disjoint windows, T > 1,
repeated token ids) and returns (quantity, example's value, catalog's value) triples. Every
example call goes through ``checked``, which fails if the call modified an input array.
The comparison is shown able to fail: every quantity scaled by 1.001, and one classic
mistake per family planted into the example, are flagged.
"""

from __future__ import annotations

import importlib.util
import math
import types
from pathlib import Path

import numpy as np
import pytest

from harness.catalog import LAYERS, NETWORK_LOSSES, build_spec

ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-10, 1e-12


def _load_example():
    spec = importlib.util.spec_from_file_location("cs231n_layers_example",
                                                  ROOT / "examples" / "cs231n_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _load_example()


def same(got, want):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=RTOL, atol=ATOL)


def checked(f, *args):
    """f(*args), failing if f changed any array argument (the user's arrays are not theirs to
    edit; a parameter dict such as bn_param may be updated, that is the documented API)."""
    before = [a.copy() if isinstance(a, np.ndarray) else None for a in args]
    result = f(*args)
    for k, (a, b) in enumerate(zip(args, before)):
        if b is not None and not (a.dtype == b.dtype and np.array_equal(a, b)):
            raise AssertionError(f"{f.__name__} modified its argument {k} in place")
    return result


def catalog(raw, in_shape, x, params, dy=None, inp=None):
    """The catalog layer's numpy forward (and hand-written backward of dy): y, dx, grads, cache."""
    spec = build_spec(raw, 1, in_shape, batch=x.shape[0])
    layer = LAYERS[spec.kind]
    y, cache = layer.forward(spec, x, {k: v.copy() for k, v in params.items()}, inp or {})
    if dy is None:
        return y, None, None, cache
    dx, grads = layer.backward(spec, dy, cache)
    return y, dx, grads, cache


def rng_for(name):
    return np.random.default_rng(sum(map(ord, name)))


# ----------------------------------------------------------------------------- the cases

def case_affine(m):
    rng = rng_for("affine")
    out = []
    for shape in [(3, 2, 3, 5), (5, 7)]:  # x of any shape N×d1×…, reshaped to N×D
        N, D, M = shape[0], math.prod(shape[1:]), 3
        x = rng.standard_normal(shape)
        w, b = rng.standard_normal((D, M)) / math.sqrt(D), rng.standard_normal(M)
        y, cache = checked(m.affine_forward, x, w, b)
        dout = rng.standard_normal(y.shape)
        dx, dw, db = checked(m.affine_backward, dout, cache)
        flat = build_spec({"layer": "flatten"}, 1, shape[1:], batch=N)
        xf, fcache = LAYERS["flatten"].forward(flat, x, {}, {})
        z, dxf, g, _ = catalog({"layer": "dense", "units": M}, (D,), xf, {"W": w, "b": b[None]}, dout)
        dx_cat = LAYERS["flatten"].backward(flat, dxf, fcache)[0]
        out += [(f"out{shape}", y, z), (f"dx{shape}", dx, dx_cat), (f"dw{shape}", dw, g["W"]),
                (f"db{shape}", db, g["b"][0])]  # CS231n's b is (M,), dense's (1, M)
    return out


def case_relu(m):
    rng = rng_for("relu")
    x = rng.standard_normal((5, 3, 7))
    y, cache = checked(m.relu_forward, x)
    dout = rng.standard_normal(y.shape)
    dx = checked(m.relu_backward, dout, cache)
    z, dx_cat, _, _ = catalog({"layer": "relu"}, (3, 7), x, {}, dout)
    return [("out", y, z), ("dx", dx, dx_cat)]


def _class_targets(rng, N, C):
    y = rng.integers(0, C, N)
    return y, {"y": y, "Y": np.eye(C)[y]}


def case_softmax_loss(m):
    rng = rng_for("softmax_loss")
    x = rng.standard_normal((5, 7)) * 2
    x[1] += 1000.0  # stability: a row of huge scores
    x[2, 3] -= 800.0
    y, T = _class_targets(rng, 5, 7)
    loss, dx = checked(m.softmax_loss, x, y)
    ce = NETWORK_LOSSES["cross_entropy"]
    return [("loss", loss, ce.cost(x, T)), ("dx", dx, ce.grad(x, T))]


def case_svm_loss(m):
    rng = rng_for("svm_loss")
    x = rng.standard_normal((6, 5)) * 1.5  # margins on both sides of 0
    y, T = _class_targets(rng, 6, 5)
    loss, dx = checked(m.svm_loss, x, y)
    hinge = NETWORK_LOSSES["multiclass_hinge"]
    return [("loss", loss, hinge.cost(x, T)), ("dx", dx, hinge.grad(x, T))]


def _norm_params(rng, n):
    return 1.0 + 0.3 * rng.standard_normal(n), 0.3 * rng.standard_normal(n)


def case_batchnorm(m, backward="batchnorm_backward"):
    rng = rng_for("batchnorm")
    out = []
    for eps, N, D in [(None, 5, 7), (1e-3, 3, 4)]:
        x = 2.0 * rng.standard_normal((N, D)) + 3.0
        gamma, beta = _norm_params(rng, D)
        bn_param = {"mode": "train"} if eps is None else {"mode": "train", "eps": eps}
        y, cache = checked(m.batchnorm_forward, x, gamma, beta, bn_param)
        dout = rng.standard_normal(y.shape)
        dx, dgamma, dbeta = checked(getattr(m, backward), dout, cache)
        raw = {"layer": "batchnorm"} if eps is None else {"layer": "batchnorm", "eps": eps}
        z, dx_cat, g, _ = catalog(raw, (D,), x, {"gamma": gamma, "beta": beta}, dout)
        out += [(f"out(eps={eps})", y, z), (f"dx(eps={eps})", dx, dx_cat),
                (f"dgamma(eps={eps})", dgamma, g["gamma"]), (f"dbeta(eps={eps})", dbeta, g["beta"])]
        if backward == "batchnorm_backward":  # the running averages and test mode, once
            e = 1e-5 if eps is None else eps
            rm, rv = 0.1 * x.mean(axis=0), 0.1 * x.var(axis=0)  # momentum 0.9, from zeros
            out += [(f"running_mean(eps={eps})", bn_param["running_mean"], rm),
                    (f"running_var(eps={eps})", bn_param["running_var"], rv)]
            bn_param["mode"] = "test"
            y_test, _ = checked(m.batchnorm_forward, x, gamma, beta, bn_param)
            out.append((f"test-mode out(eps={eps})", y_test, gamma * (x - rm) / np.sqrt(rv + e) + beta))
    return out


def case_batchnorm_alt(m):
    return case_batchnorm(m, backward="batchnorm_backward_alt")


def case_layernorm(m):
    rng = rng_for("layernorm")
    x = 2.0 * rng.standard_normal((5, 7)) - 1.0
    gamma, beta = _norm_params(rng, 7)
    y, cache = checked(m.layernorm_forward, x, gamma, beta, {})
    dout = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = checked(m.layernorm_backward, dout, cache)
    z, dx_cat, g, _ = catalog({"layer": "layernorm"}, (7,), x, {"gamma": gamma, "beta": beta}, dout)
    return [("out", y, z), ("dx", dx, dx_cat), ("dgamma", dgamma, g["gamma"]), ("dbeta", dbeta, g["beta"])]


def case_dropout(m):
    rng = rng_for("dropout")
    x = rng.standard_normal((5, 3, 7))
    out = []
    for p in (0.7, 0.35):  # p = the probability of KEEPING a unit
        param = {"p": p, "mode": "train", "seed": 3}
        y, cache = checked(m.dropout_forward, x, param)
        keep = (np.asarray(cache[1]) != 0).astype(np.float64)  # the mask the forward drew
        assert np.array_equal(keep, (y != 0).astype(np.float64)), "mask from cache vs from output"
        assert 0 < keep.mean() < 1
        dout = rng.standard_normal(y.shape)
        dx = checked(m.dropout_backward, dout, cache)
        z, dx_cat, _, _ = catalog({"layer": "dropout", "rate": 1 - p}, (3, 7), x, {}, dout,
                                  inp={"mask": keep})
        out += [(f"out(p={p})", y, z), (f"dx(p={p})", dx, dx_cat)]
    test = {"p": 0.7, "mode": "test"}
    y, cache = checked(m.dropout_forward, x, test)
    dout = rng.standard_normal(y.shape)
    out += [("test-mode out", y, x), ("test-mode dx", checked(m.dropout_backward, dout, cache), dout)]
    return out


CONV_SHAPES = [  # (N, C, H, W), (F, HH, WW), stride, pad
    ((2, 3, 7, 5), (4, 3, 3), 2, 1),  # stride 2 + padding 1, overlapping windows
    ((2, 2, 6, 6), (3, 2, 2), 2, 0),  # disjoint windows
    ((3, 2, 5, 7), (2, 3, 2), 1, 1),  # a non-square kernel, stride 1
    ((2, 1, 6, 5), (2, 3, 3), 2, 1),  # the last rows left over by the stride
]


def case_conv(m):
    rng = rng_for("conv")
    out = []
    for (N, C, H, W), (F, HH, WW), s, pad in CONV_SHAPES:
        tag = f"[{N}x{C}x{H}x{W} k{HH}x{WW} s{s} p{pad}]"
        x = rng.standard_normal((N, C, H, W))
        w, b = rng.standard_normal((F, C, HH, WW)) / math.sqrt(C * HH * WW), rng.standard_normal(F)
        y, cache = checked(m.conv_forward_naive, x, w, b, {"stride": s, "pad": pad})
        dout = rng.standard_normal(y.shape)
        dx, dw, db = checked(m.conv_backward_naive, dout, cache)
        raw = {"layer": "conv2d", "filters": F, "kernel": [HH, WW], "stride": s, "padding": pad}
        z, dx_cat, g, _ = catalog(raw, (C, H, W), x, {"W": w, "b": b}, dout)
        out += [("out" + tag, y, z), ("dx" + tag, dx, dx_cat), ("dw" + tag, dw, g["W"]),
                ("db" + tag, db, g["b"])]
    return out


POOL_SHAPES = [  # (N, C, H, W), (pool_height, pool_width), stride
    ((2, 3, 7, 7), (3, 3), 2),  # overlapping windows
    ((2, 3, 6, 8), (2, 2), 2),  # disjoint windows
    ((2, 2, 5, 7), (3, 2), 1),  # non-square, heavily overlapping
    ((3, 1, 7, 5), (2, 2), 2),  # the last row and column left over
]


def case_maxpool(m):
    rng = rng_for("maxpool")
    out = []
    for (N, C, H, W), (ph, pw), s in POOL_SHAPES:
        tag = f"[{N}x{C}x{H}x{W} {ph}x{pw}/s{s}]"
        x = rng.standard_normal((N, C, H, W))
        param = {"pool_height": ph, "pool_width": pw, "stride": s}
        y, cache = checked(m.max_pool_forward_naive, x, param)
        dout = rng.standard_normal(y.shape)
        dx = checked(m.max_pool_backward_naive, dout, cache)
        z, dx_cat, _, _ = catalog({"layer": "maxpool2d", "size": [ph, pw], "stride": s}, (C, H, W), x, {}, dout)
        out += [("out" + tag, y, z), ("dx" + tag, dx, dx_cat)]
    return out


def case_spatial_batchnorm(m):
    rng = rng_for("spatial_batchnorm")
    N, C, H, W = 3, 4, 5, 3
    x = 2.0 * rng.standard_normal((N, C, H, W)) + rng.standard_normal((1, C, 1, 1))
    gamma, beta = _norm_params(rng, C)
    y, cache = checked(m.spatial_batchnorm_forward, x, gamma, beta, {"mode": "train"})
    dout = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = checked(m.spatial_batchnorm_backward, dout, cache)
    z, dx_cat, g, _ = catalog({"layer": "batchnorm"}, (C, H, W), x, {"gamma": gamma, "beta": beta}, dout)
    return [("out", y, z), ("dx", dx, dx_cat), ("dgamma", dgamma, g["gamma"]), ("dbeta", dbeta, g["beta"])]


def _recurrent_params(rng, D, H, gates):
    return (rng.standard_normal((D, gates * H)) / math.sqrt(D),
            rng.standard_normal((H, gates * H)) / math.sqrt(H), 0.3 * rng.standard_normal(gates * H))


def case_rnn_step(m):
    """One step is the catalog's rnn with T = 1 and h0 = prev_h (a parameter, one row per example)."""
    rng = rng_for("rnn_step")
    N, D, H = 3, 5, 4
    x, prev_h = rng.standard_normal((N, D)), 0.5 * rng.standard_normal((N, H))
    Wx, Wh, b = _recurrent_params(rng, D, H, 1)
    next_h, cache = checked(m.rnn_step_forward, x, prev_h, Wx, Wh, b)
    dnext = rng.standard_normal(next_h.shape)
    dx, dprev_h, dWx, dWh, db = checked(m.rnn_step_backward, dnext, cache)
    z, dx_cat, g, _ = catalog({"layer": "rnn", "hidden": H, "h0": True}, (1, D), x[:, None],
                              {"Wx": Wx, "Wh": Wh, "b": b, "h0": prev_h}, dnext[:, None])
    return [("next_h", next_h, z[:, 0]), ("dx", dx, dx_cat[:, 0]), ("dprev_h", dprev_h, g["h0"]),
            ("dWx", dWx, g["Wx"]), ("dWh", dWh, g["Wh"]), ("db", db, g["b"])]


def case_rnn(m):
    rng = rng_for("rnn")
    N, T, D, H = 3, 4, 5, 6
    x, h0 = rng.standard_normal((N, T, D)), 0.5 * rng.standard_normal((N, H))
    Wx, Wh, b = _recurrent_params(rng, D, H, 1)
    h, cache = checked(m.rnn_forward, x, h0, Wx, Wh, b)
    dh = rng.standard_normal(h.shape)
    dx, dh0, dWx, dWh, db = checked(m.rnn_backward, dh, cache)
    z, dx_cat, g, _ = catalog({"layer": "rnn", "hidden": H, "h0": True}, (T, D), x,
                              {"Wx": Wx, "Wh": Wh, "b": b, "h0": h0}, dh)
    return [("h", h, z), ("dx", dx, dx_cat), ("dh0", dh0, g["h0"]), ("dWx", dWx, g["Wx"]),
            ("dWh", dWh, g["Wh"]), ("db", db, g["b"])]


def case_word_embedding(m):
    rng = rng_for("word_embedding")
    N, T, V, D = 3, 5, 4, 6
    x = rng.integers(0, V, (N, T))  # 15 ids from 4: repeated ids for sure
    x[0, :2] = 2  # and one id twice in one sequence
    W = rng.standard_normal((V, D))
    y, cache = checked(m.word_embedding_forward, x, W)
    dout = rng.standard_normal(y.shape)
    dW = checked(m.word_embedding_backward, dout, cache)
    z, _, g, _ = catalog({"layer": "embedding", "dim": D, "vocab": V}, (T,), x, {"W": W}, dout)
    return [("out", y, z), ("dW", dW, g["W"])]


def case_lstm_step(m):
    """The catalog's lstm starts from c_0 = 0 and its only output is h, so one step alone
    cannot be given a prev_c or a dnext_c. Two example steps are chained instead, against the
    catalog's lstm with T = 2 (h0 a parameter): step 2 starts from a nonzero prev_c (c_1), and
    step 1's backward receives a nonzero dnext_c (step 2's dprev_c), whose every error shows in
    step 1's dx, dprev_h (= dh0) and weight gradients."""
    rng = rng_for("lstm_step")
    N, D, H = 3, 5, 4
    x, h0 = rng.standard_normal((N, 2, D)), 0.5 * rng.standard_normal((N, H))
    Wx, Wh, b = _recurrent_params(rng, D, H, 4)
    c0 = np.zeros((N, H))
    h1, c1, cache1 = checked(m.lstm_step_forward, x[:, 0], h0, c0, Wx, Wh, b)
    h2, c2, cache2 = checked(m.lstm_step_forward, x[:, 1], h1, c1, Wx, Wh, b)
    dy = rng.standard_normal((N, 2, H))
    dx2, dh1, dc1, dWx2, dWh2, db2 = checked(m.lstm_step_backward, dy[:, 1], np.zeros((N, H)), cache2)
    dx1, dh0, _, dWx1, dWh1, db1 = checked(m.lstm_step_backward, dy[:, 0] + dh1, dc1, cache1)
    z, dx_cat, g, cc = catalog({"layer": "lstm", "hidden": H, "h0": True}, (2, D), x,
                               {"Wx": Wx, "Wh": Wh, "b": b, "h0": h0}, dy)
    return [("next_h(1)", h1, z[:, 0]), ("next_h(2)", h2, z[:, 1]),
            ("next_c(1)", c1, cc.cs[:, 1]), ("next_c(2)", c2, cc.cs[:, 2]),
            ("dx(1)", dx1, dx_cat[:, 0]), ("dx(2)", dx2, dx_cat[:, 1]), ("dprev_h(1)", dh0, g["h0"]),
            ("dWx(1)+dWx(2)", dWx1 + dWx2, g["Wx"]), ("dWh(1)+dWh(2)", dWh1 + dWh2, g["Wh"]),
            ("db(1)+db(2)", db1 + db2, g["b"])]


def case_lstm(m):
    rng = rng_for("lstm")
    N, T, D, H = 3, 4, 5, 4
    x, h0 = rng.standard_normal((N, T, D)), 0.5 * rng.standard_normal((N, H))
    Wx, Wh, b = _recurrent_params(rng, D, H, 4)
    h, cache = checked(m.lstm_forward, x, h0, Wx, Wh, b)
    dh = rng.standard_normal(h.shape)
    dx, dh0, dWx, dWh, db = checked(m.lstm_backward, dh, cache)
    z, dx_cat, g, _ = catalog({"layer": "lstm", "hidden": H, "h0": True}, (T, D), x,
                              {"Wx": Wx, "Wh": Wh, "b": b, "h0": h0}, dh)
    return [("h", h, z), ("dx", dx, dx_cat), ("dh0", dh0, g["h0"]), ("dWx", dWx, g["Wx"]),
            ("dWh", dWh, g["Wh"]), ("db", db, g["b"])]


def case_temporal_affine(m):
    rng = rng_for("temporal_affine")
    N, T, D, M = 3, 4, 5, 6
    x, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)) / math.sqrt(D), rng.standard_normal(M)
    y, cache = checked(m.temporal_affine_forward, x, w, b)
    dout = rng.standard_normal(y.shape)
    dx, dw, db = checked(m.temporal_affine_backward, dout, cache)
    z, dx_cat, g, _ = catalog({"layer": "dense", "units": M}, (T, D), x, {"W": w, "b": b[None]}, dout)
    return [("out", y, z), ("dx", dx, dx_cat), ("dw", dw, g["W"]), ("db", db, g["b"][0])]


def case_temporal_softmax_loss(m):
    rng = rng_for("temporal_softmax_loss")
    N, T, V = 3, 4, 6
    x = 2.0 * rng.standard_normal((N, T, V))
    x[0, 1] += 500.0
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) < 0.7
    mask[0, 0], mask[1, 3] = False, True
    loss, dx = checked(m.temporal_softmax_loss, x, y, mask)
    ce = NETWORK_LOSSES["cross_entropy"]
    T_ = {"y": y, "Y": np.eye(V)[y], "target_mask": mask.astype(np.float64)}
    return [("loss", loss, ce.cost(x, T_)), ("dx", dx, ce.grad(x, T_))]


FAMILIES = {name.removeprefix("case_"): f for name, f in globals().items() if name.startswith("case_")}


# ----------------------------------------------------------------------------- the tests

@pytest.mark.parametrize("family", FAMILIES)
def test_example_matches_catalog(family):
    """Forward output and every gradient equal the catalog's (and no call edited its inputs)."""
    results = FAMILIES[family](EXAMPLE)
    assert results
    for name, got, want in results:
        assert np.asarray(got).shape == np.asarray(want).shape, f"{family} {name}: shape"
        assert np.abs(np.asarray(want)).max() > 0, f"{family} {name}: a zero reference shows nothing"
        try:
            same(got, want)
        except AssertionError as e:
            raise AssertionError(f"{family}: {name} differs from the catalog\n{e}") from None


@pytest.mark.parametrize("family", FAMILIES)
def test_every_quantity_can_fail(family):
    """The same comparison flags each quantity when it is 0.1% off."""
    for name, got, want in FAMILIES[family](EXAMPLE):
        with pytest.raises(AssertionError):
            same(np.asarray(got) * 1.001, want)


# One classic mistake per family, planted into the example (names as the example's cache
# layouts have them); the comparison must flag it.

def _bad_affine(dout, cache):
    dx, dw, db = EXAMPLE.affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)  # db averaged instead of summed


def _bad_relu(dout, cache):
    return dout * (cache >= -0.5)  # the mask taken at the wrong place


def _bad_softmax_loss(x, y):
    loss, dx = EXAMPLE.softmax_loss(x, y)
    return loss, dx * x.shape[0]  # dx without the 1/N


def _bad_svm_loss(x, y):
    loss, dx = EXAMPLE.svm_loss(x, y)
    dx = dx.copy()
    dx[np.arange(x.shape[0]), y] = 0  # forgot the −(count) at the correct class
    return loss, dx


def _bn_constants(dout, cache):  # μ and σ treated as constants
    dx, dgamma, dbeta = EXAMPLE.batchnorm_backward(dout, cache)
    x_hat, xc, std, inv_std, gamma = cache
    return dout * gamma * inv_std, dgamma, dbeta


def _bad_layernorm(dout, cache):  # batch norm's sums (over the batch axis) kept
    x_hat, inv_std, gamma = cache
    dx, dgamma, dbeta = EXAMPLE.layernorm_backward(dout, cache)
    N, dx_hat = dout.shape[0], dout * gamma
    return (inv_std / N) * (N * dx_hat - dx_hat.sum(axis=0) - x_hat * (dx_hat * x_hat).sum(axis=0)), dgamma, dbeta


def _bad_dropout(dout, cache):
    param, mask = cache
    return dout * (mask != 0) if param["mode"] == "train" else dout  # forgot the 1/p


def _bad_conv(dout, cache):  # dx with the kernel flipped (the textbook convolution)
    x, w, b, conv_param = cache
    dx = EXAMPLE.conv_backward_naive(dout, (x, w[:, :, ::-1, ::-1], b, conv_param))[0]
    return (dx, *EXAMPLE.conv_backward_naive(dout, cache)[1:])


def _bad_maxpool(dout, cache):  # every element of the window gets dout (a `>=` mask on ties, writ large)
    x, param = cache
    ph, pw, s = param["pool_height"], param["pool_width"], param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] = dout[:, :, i:i + 1, j:j + 1]
    return dx


def _bad_spatial_bn(dout, cache):  # dout reshaped to rows without moving C last
    N, C, H, W = dout.shape
    dx, dgamma, dbeta = EXAMPLE.batchnorm_backward(dout.reshape(-1, C), cache)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), dgamma, dbeta


def _bad_rnn_step(dnext_h, cache):  # tanh' taken as 1 − tanh(next_h)², tanh applied twice
    x, prev_h, Wx, Wh, next_h = cache
    return EXAMPLE.rnn_step_backward(dnext_h * (1 - np.tanh(next_h) ** 2) / (1 - next_h ** 2), cache)


def _bad_rnn(dh, cache):  # h_t's path into step t+1 forgotten
    N, T, H = dh.shape
    grads = [EXAMPLE.rnn_step_backward(dh[:, t], cache[t]) for t in range(T)]
    return (np.stack([g[0] for g in grads], axis=1), grads[0][1], *(sum(g[k] for g in grads) for k in (2, 3, 4)))


def _bad_embedding(dout, cache):  # dW[x] = dout keeps one row of each repeated id
    x, W = cache
    dW = np.zeros_like(W)
    dW[x] = dout
    return dW


def _bad_lstm_step(dnext_h, dnext_c, cache):  # dprev_c = dc, the forget gate left out
    dx, dprev_h, dprev_c, dWx, dWh, db = EXAMPLE.lstm_step_backward(dnext_h, dnext_c, cache)
    f = cache[6]
    return dx, dprev_h, dprev_c / f, dWx, dWh, db


def _bad_lstm(dh, cache):  # the cell state's gradient not carried back through time
    N, T, H = dh.shape
    dprev_h, total, dxs = np.zeros((N, H)), None, []
    for t in reversed(range(T)):
        dx_t, dprev_h, _, *g = EXAMPLE.lstm_step_backward(dh[:, t] + dprev_h, np.zeros((N, H)), cache[t])
        dxs.insert(0, dx_t)
        total = g if total is None else [a + b for a, b in zip(total, g)]
    return (np.stack(dxs, axis=1), dprev_h, *total)


def _bad_temporal_affine(dout, cache):  # dw from the last step only
    x, w, b = cache
    dx, dw, db = EXAMPLE.temporal_affine_backward(dout, cache)
    return dx, x[:, -1].T @ dout[:, -1], db


def _bad_temporal_softmax_loss(x, y, mask):  # torch's reduction="mean": / (N·T)
    loss, dx = EXAMPLE.temporal_softmax_loss(x, y, mask)
    return loss / x.shape[1], dx / x.shape[1]


MISTAKES = {
    "affine": {"affine_backward": _bad_affine},
    "relu": {"relu_backward": _bad_relu},
    "softmax_loss": {"softmax_loss": _bad_softmax_loss},
    "svm_loss": {"svm_loss": _bad_svm_loss},
    "batchnorm": {"batchnorm_backward": _bn_constants},
    "batchnorm_alt": {"batchnorm_backward_alt": _bn_constants},
    "layernorm": {"layernorm_backward": _bad_layernorm},
    "dropout": {"dropout_backward": _bad_dropout},
    "conv": {"conv_backward_naive": _bad_conv},
    "maxpool": {"max_pool_backward_naive": _bad_maxpool},
    "spatial_batchnorm": {"spatial_batchnorm_backward": _bad_spatial_bn},
    "rnn_step": {"rnn_step_backward": _bad_rnn_step},
    "rnn": {"rnn_backward": _bad_rnn},
    "word_embedding": {"word_embedding_backward": _bad_embedding},
    "lstm_step": {"lstm_step_backward": _bad_lstm_step},
    "lstm": {"lstm_backward": _bad_lstm},
    "temporal_affine": {"temporal_affine_backward": _bad_temporal_affine},
    "temporal_softmax_loss": {"temporal_softmax_loss": _bad_temporal_softmax_loss},
}


def test_every_family_has_a_planted_mistake():
    assert set(MISTAKES) == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_planted_mistake_is_flagged(family):
    buggy = types.SimpleNamespace(**vars(EXAMPLE))
    for name, f in MISTAKES[family].items():
        f.__name__ = name
        setattr(buggy, name, f)
    failed = []
    for name, got, want in FAMILIES[family](buggy):
        try:
            same(got, want)
        except AssertionError:
            failed.append(name)
    assert failed, f"{family}: the planted mistake {list(MISTAKES[family])} went unnoticed"


def test_in_place_edit_is_flagged():
    def relu_forward(x):
        x[x < 0] = 0  # the mistake: edits the caller's array
        return x, x
    with pytest.raises(AssertionError, match="in place"):
        checked(relu_forward, np.array([-1.0, 2.0]))


def test_example_imports_no_framework():
    text = (ROOT / "examples" / "cs231n_layers.py").read_text()
    assert "import torch" not in text and "import jax" not in text and "from jax" not in text
