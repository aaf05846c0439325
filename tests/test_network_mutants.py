"""The catalog network mutants: each is caught by torch and JAX on every network case of the
self-check where it can show, in both dtypes; a correct network backward is not; each mistake
changes only what lies below it; and ``excluded`` says why a mutant cannot show on a case.
(The full self-check, with manual and fd too, is tests/test_selfcheck.py.)"""

import numpy as np
import pytest

from harness.cases import Case
from harness.mutants import (MUTANTS, NETWORK_MUTANTS, AvgPoolUnscaled, BatchnormPerPosition,
                             BatchnormStatsConstant, ConvBackwardIgnoresStride, ConvDbPositionMean,
                             ConvDWLastExample, ConvUnflippedKernel, DropoutOtherMask, DropoutUnscaled,
                             L2HalfLambda, L2TwiceLambda, L2WithoutMean, LayernormOverBatch, MaxPoolSpread,
                             NetworkMutant, PoolBackwardIgnoresStride)
from harness.mutants import (AttentionBackwardUnscaled, AttentionMaskAfterSoftmax, EmbeddingAssigns,
                             LstmTanhPrimeForSigma, ResidualForgetsSkip, RnnBpttDropsStepPath)
from harness.network import Network, backprop
from harness.runner import run_case
from harness.selfcheck import CASES, NETWORK_CASES, build_network, excluded

MLP_CASES = [c for c in CASES if not isinstance(c.model, Network)]


def _disagrees_with(case, builtin, mutant, references=("torch", "jax")):
    """The references that disagree with the mutant on the case (a contract error counts)."""
    r = run_case(case, [*(builtin[n] for n in references), mutant])
    # A mutant that raises is a bug in the mutant, not a mistake caught (an LSTM mutant that
    # raised TypeError once passed here as "caught").
    assert not r.errors, [e.message for e in r.errors]
    return {c.a if c.b == mutant.name else c.b for c in r.first_disagreements().values()
            if mutant.name in (c.a, c.b)}


@pytest.mark.parametrize("mutant", NETWORK_MUTANTS, ids=lambda m: m.name)
def test_each_network_mutant_is_caught_by_torch_and_jax(mutant, builtin):
    ran = []
    for case in NETWORK_CASES:
        if excluded(mutant, case):
            continue
        assert _disagrees_with(case, builtin, mutant()) == {"torch", "jax"}, case.name
        ran.append(case.model.dtype)
    assert set(ran) == {"float64", "float32"}, ran


def test_a_correct_network_backward_is_not_flagged(builtin):
    """Control: the mutant machinery with no mistake agrees with every backend, fd included."""
    correct = type("Correct", (NetworkMutant,), {"name": "correct"})()
    for case in NETWORK_CASES:
        assert excluded(type(correct), case) is None
        assert _disagrees_with(case, builtin, correct, ("manual", "torch", "jax", "fd")) == set(), case.name


# ------------------------------------------------------------------- where each mistake is

CASE = NETWORK_CASES[0]  # float64, dense tanh, dropout, dense, batchnorm, sigmoid, dense tanh, layernorm, dense


def _changed(mutant, case=CASE):
    """The quantities the mutant gives differently from the correct backprop, and both results."""
    arrays = case.arrays()
    right, wrong = backprop(case.model, arrays), mutant().gradients(case.model, arrays)
    assert wrong.keys() == right.keys()
    return {q for q in right if not np.array_equal(right[q], wrong[q])}, right, wrong, arrays


def _same(mutant, case):
    """The mutant's results equal the correct backprop's, to rounding (the mutants compute what
    they change their own way, not with the catalog's GEMMs)."""
    arrays = case.arrays()
    right, wrong = backprop(case.model, arrays), mutant().gradients(case.model, arrays)
    assert wrong.keys() == right.keys()
    for q in right:
        np.testing.assert_allclose(wrong[q], right[q], rtol=1e-12, atol=1e-15, err_msg=f"{mutant.name} {q}")


def _index(case, kind):
    return next(s.index for s in case.model.network if s.kind == kind)


def _below(q, i):
    """A backward quantity of a layer under layer i: da{i-1} and everything computed after it."""
    return q.startswith("d") and Network.layer_of(q) < i


@pytest.mark.parametrize("mutant,kind", [(BatchnormStatsConstant, "batchnorm"), (DropoutUnscaled, "dropout"),
                                         (DropoutOtherMask, "dropout")], ids=lambda x: getattr(x, "name", x))
def test_a_backward_mistake_changes_only_what_lies_below_the_layer(mutant, kind):
    i = _index(CASE, kind)
    changed, *_ = _changed(mutant)
    assert f"da{i - 1}" in changed
    assert all(_below(q, i) for q in changed), sorted(changed)


def test_batchnorm_stats_constant_keeps_dgamma_dbeta_and_drops_the_mean_terms():
    i = _index(CASE, "batchnorm")
    changed, right, wrong, _ = _changed(BatchnormStatsConstant)
    assert not {f"dgamma{i}", f"dbeta{i}"} & changed
    # dx = dy∘γ/σ: its column sums are not 0, while the right dx sums to 0 over the batch
    # (batch norm's output does not move when its whole input column shifts).
    assert np.allclose(right[f"da{i - 1}"].sum(axis=0), 0, atol=1e-12)
    assert not np.allclose(wrong[f"da{i - 1}"].sum(axis=0), 0, atol=1e-6)


def test_layernorm_over_batch_changes_the_forward_from_the_layer_up():
    i = _index(CASE, "layernorm")
    changed, *_ = _changed(LayernormOverBatch)
    assert {"J", f"a{i}"} <= changed
    assert not {q for q in changed if q[0] in "za" and int(q[1:]) < i}, sorted(changed)


@pytest.mark.parametrize("mutant,k", [(L2TwiceLambda, 2.0), (L2HalfLambda, 0.5)], ids=["2λW", "λW/2"])
def test_l2_mutants_change_dW_by_the_wrong_factor_only(mutant, k):
    net = CASE.model  # l2_form half: the right gradient is λW
    changed, right, wrong, arrays = _changed(mutant)
    assert changed == {f"d{key}" for key in net.regularised()}
    for key in net.regularised():
        np.testing.assert_allclose(wrong[f"d{key}"] - right[f"d{key}"], (k - 1) * net.l2 * arrays[key],
                                   rtol=1e-10, atol=1e-15)


# ------------------------------------------------------------ convolution and pooling

CONV = next(c for c in NETWORK_CASES if c.name == "conv-pool-bn-float64")
CONV_MUTANTS = [ConvUnflippedKernel, ConvDWLastExample, ConvDbPositionMean, MaxPoolSpread, AvgPoolUnscaled,
                BatchnormPerPosition, ConvBackwardIgnoresStride, PoolBackwardIgnoresStride]
# Other geometry than the self-check's: non-square kernels and strides, padding on one axis,
# a strided average pool and an overlapping max pool above layer 1, half_sse.
VARIANT = Case("conv-variant", build_network((2, 8, 7), [
    {"layer": "conv2d", "filters": 3, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "activation": "elu"},
    {"layer": "avgpool2d", "size": [2, 3]},
    {"layer": "batchnorm"},
    {"layer": "conv2d", "filters": 2, "kernel": [2, 1], "padding": [1, 0], "activation": "tanh"},
    {"layer": "maxpool2d", "size": 2, "stride": 1},
    {"layer": "flatten"},
    {"layer": "dense", "units": 2},
], "half_sse", "float64"), 3, 5)


def test_every_conv_mutant_is_a_network_mutant_and_runs_on_the_conv_cases():
    assert set(CONV_MUTANTS) <= set(NETWORK_MUTANTS)
    for case in [c for c in NETWORK_CASES if c.name.startswith("conv-")] + [VARIANT]:
        assert {m.name for m in CONV_MUTANTS if excluded(m, case)} == set(), case.name


def test_conv_mutants_are_caught_by_torch_on_other_geometry(builtin):
    """Each conv mutant disagrees with torch on the variant network too, and the correct
    backward agrees with it there (torch only: a jax compile per new network costs seconds)."""
    correct = type("Correct", (NetworkMutant,), {"name": "correct"})()
    assert _disagrees_with(VARIANT, builtin, correct, ("torch",)) == set()
    caught = {m.name for m in CONV_MUTANTS if _disagrees_with(VARIANT, builtin, m(), ("torch",))}
    assert caught == {m.name for m in CONV_MUTANTS}


@pytest.mark.parametrize("mutant,kind", [(ConvUnflippedKernel, "conv2d"), (MaxPoolSpread, "maxpool2d"),
                                         (AvgPoolUnscaled, "avgpool2d"), (PoolBackwardIgnoresStride, "maxpool2d")],
                         ids=lambda x: getattr(x, "name", x))
def test_a_conv_or_pool_dx_mistake_changes_only_what_lies_below_the_layer(mutant, kind):
    i = max(s.index for s in CONV.model.network if s.kind == kind)  # the topmost: above layer 1
    changed, *_ = _changed(mutant, CONV)
    assert f"da{i - 1}" in changed
    assert all(_below(q, i) for q in changed), sorted(changed)
    assert not {f"dW{i}", f"db{i}"} & changed  # a conv's own dW, db stay right


def test_the_unflipped_kernel_is_right_for_a_kernel_that_is_its_own_flip():
    """The mistake is the flip alone: with every kernel of the upper conv rotated-180°-symmetric
    the mutant's dx is the right one."""
    i = max(s.index for s in CONV.model.network if s.kind == "conv2d")
    W = CONV.arrays()[f"W{i}"]
    symmetric = Case("sym", CONV.model, CONV.batch, CONV.seed, values={f"W{i}": W + W[:, :, ::-1, ::-1]})
    _same(ConvUnflippedKernel, symmetric)


def test_conv_dW_last_example_is_the_last_term_of_the_sum_over_the_batch():
    """The right dW (L2 term aside) is the sum of one term per example, each the conv's
    backward on that example's input and dz; the mutant's is the last term."""
    from harness.catalog import LAYERS
    from harness.network import layer_params

    changed, right, wrong, arrays = _changed(ConvDWLastExample, CONV)
    convs = [s for s in CONV.model.network if s.kind == "conv2d"]
    assert changed == {f"dW{s.index}" for s in convs}
    l2 = 2 * CONV.model.l2_coefficient(CONV.batch)
    for spec in convs:
        i, conv = spec.index, LAYERS["conv2d"]
        x = arrays["X"] if i == 1 else right[f"a{i - 1}"]
        dz = right[f"dz{i}"] if spec.activation else right[f"da{i}"]
        terms = [conv.backward(spec, dz[n:n + 1], conv.forward(spec, x[n:n + 1], layer_params(spec, arrays), {})[1])[1]["W"]
                 for n in range(CONV.batch)]
        np.testing.assert_allclose(sum(terms) + l2 * arrays[f"W{i}"], right[f"dW{i}"], rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(terms[-1] + l2 * arrays[f"W{i}"], wrong[f"dW{i}"], rtol=1e-12, atol=1e-15)


def test_conv_db_position_mean_is_the_sum_over_the_positions():
    i = 1  # layer 1's bias (layer 3's is cancelled by the batch norm above it: ∂J/∂b = 0)
    changed, right, wrong, _ = _changed(ConvDbPositionMean, CONV)
    assert f"db{i}" in changed and changed <= {f"db{s.index}" for s in CONV.model.network if s.kind == "conv2d"}
    _, Ho, Wo = CONV.model.network[i - 1].out_shape
    np.testing.assert_allclose(wrong[f"db{i}"] * Ho * Wo, right[f"db{i}"], rtol=1e-12)


def test_maxpool_spread_sends_gradient_to_elements_the_right_dx_leaves_at_exactly_zero():
    i = _index(CONV, "maxpool2d")
    _, right, wrong, _ = _changed(MaxPoolSpread, CONV)
    off = right[f"da{i - 1}"] == 0  # every element that is no window's arg-max
    assert off.mean() > 0.5  # 2×2 windows without overlap: 3 in 4 of the elements
    assert np.all(wrong[f"da{i - 1}"][off] != 0)
    # every element gets its window's dy: summed over a window, k² times the window's dy
    np.testing.assert_allclose(wrong[f"da{i - 1}"].sum(), 4 * right[f"da{i}"].sum(), rtol=1e-12)


def test_avgpool_unscaled_is_k_squared_times_the_right_dx():
    i = _index(CONV, "avgpool2d")
    _, right, wrong, _ = _changed(AvgPoolUnscaled, CONV)
    k = CONV.model.network[i - 1]["size"]
    np.testing.assert_allclose(wrong[f"da{i - 1}"], k * k * right[f"da{i - 1}"], rtol=1e-12, atol=1e-30)


def test_batchnorm_per_position_normalises_each_position_over_the_batch():
    """The forward is wrong from the layer up (nothing below it changes), and its output is the
    per-(c, h, w) normalisation: each position's values over the batch have mean β_c."""
    i = _index(CONV, "batchnorm")
    changed, right, wrong, arrays = _changed(BatchnormPerPosition, CONV)
    assert {"J", f"a{i}"} <= changed
    assert not {q for q in changed if q[0] in "za" and int(q[1:]) < i}, sorted(changed)
    beta = arrays[f"beta{i}"][:, None, None]
    np.testing.assert_allclose(wrong[f"a{i}"].mean(axis=0), np.broadcast_to(beta, wrong[f"a{i}"].shape[1:]),
                               atol=1e-12)
    assert not np.allclose(right[f"a{i}"].mean(axis=0), beta, atol=1e-3)
    from harness.catalog import LAYERS
    from harness.catalog.norm import BatchNorm
    assert type(LAYERS["batchnorm"]) is BatchNorm  # the stand-in is gone after the pass


def test_the_stride_mutants_are_right_without_a_stride():
    """Stride 1 everywhere: the mutants compute exactly what the catalog does (hence excluded)."""
    flat = Case("stride-1", build_network((1, 5, 5), [
        {"layer": "conv2d", "filters": 2, "kernel": 2, "activation": "tanh"},
        {"layer": "maxpool2d", "size": 2, "stride": 1},
        {"layer": "conv2d", "filters": 2, "kernel": 2},
        {"layer": "avgpool2d", "size": 2, "stride": 1},
        {"layer": "flatten"}, {"layer": "dense", "units": 2}], "half_sse", "float64"), 2, 0)
    for mutant in (ConvBackwardIgnoresStride, PoolBackwardIgnoresStride):
        assert "stride" in excluded(mutant, flat)
        _same(mutant, flat)


def test_conv_mutants_are_excluded_where_the_mistake_cannot_show():
    def case(input, layers, batch=2):
        return Case("x", build_network(input, [*layers, {"layer": "flatten"}, {"layer": "dense", "units": 2}],
                                       "half_sse", "float64"), batch, 0)

    conv1 = {"layer": "conv2d", "filters": 2, "kernel": 1}
    # a 1×1 kernel is its own flip; layer 1's dx is no quantity
    assert "1×1" in excluded(ConvUnflippedKernel, case((2, 3, 3), [conv1, conv1]))
    assert excluded(ConvUnflippedKernel, case((2, 3, 3), [{"layer": "conv2d", "filters": 2, "kernel": 2}]))
    assert "batch of 1" in excluded(ConvDWLastExample, case((1, 3, 3), [conv1], batch=1))
    # one output position: the mean is the sum; no bias; a bias a batch norm above cancels
    assert excluded(ConvDbPositionMean, case((1, 2, 2), [{"layer": "conv2d", "filters": 2, "kernel": 2}]))
    assert excluded(ConvDbPositionMean, case((1, 3, 3), [{**conv1, "bias": False}]))
    assert excluded(ConvDbPositionMean, case((1, 4, 4), [conv1, {"layer": "maxpool2d", "size": 2},
                                                          {"layer": "batchnorm"}]))
    assert not excluded(ConvDbPositionMean, case((1, 4, 4), [{**conv1, "activation": "tanh"},
                                                              {"layer": "batchnorm"}]))
    for mutant, pool in ((MaxPoolSpread, "maxpool2d"), (AvgPoolUnscaled, "avgpool2d")):
        assert excluded(mutant, case((1, 4, 4), [{"layer": pool, "size": 2}]))  # layer 1
        assert excluded(mutant, case((1, 4, 4), [conv1, {"layer": pool, "size": 1}]))  # 1×1 window
        assert not excluded(mutant, case((1, 4, 4), [conv1, {"layer": pool, "size": 2}]))
    assert "vector" in excluded(BatchnormPerPosition, Case("v", build_network(
        (3,), [{"layer": "dense", "units": 4}, {"layer": "batchnorm"}, {"layer": "dense", "units": 2}],
        "half_sse", "float64"), 4, 0))
    assert excluded(BatchnormPerPosition, case((2, 3, 3), [{"layer": "conv2d", "filters": 2, "kernel": 3},
                                                           {"layer": "batchnorm"}]))  # 1×1 positions
    # a stride along one window only: i·s = 0 = i
    assert excluded(ConvBackwardIgnoresStride, case((1, 3, 5), [{"layer": "conv2d", "filters": 2, "kernel": [3, 1],
                                                                 "stride": [2, 1]}]))
    assert not excluded(ConvBackwardIgnoresStride, case((1, 5, 5), [{"layer": "conv2d", "filters": 2, "kernel": 3,
                                                                     "stride": [2, 1]}]))
    assert excluded(PoolBackwardIgnoresStride, case((1, 4, 4), [{"layer": "avgpool2d", "size": 2}]))  # layer 1


# ----------------------------------------------------------------------------- excluded


def test_mlp_and_network_mutants_are_excluded_from_each_others_cases():
    mlp_mutants = [m for m in MUTANTS if m not in NETWORK_MUTANTS]
    for case in NETWORK_CASES:
        for m in mlp_mutants:
            assert "MLP mistake" in excluded(m, case)
    for case in MLP_CASES:
        for m in NETWORK_MUTANTS:
            assert "MLP case" in excluded(m, case)
    with pytest.raises(TypeError, match="MLP"):
        DropoutUnscaled().gradients(MLP_CASES[0].model, MLP_CASES[0].arrays())


def test_network_mutants_are_excluded_where_the_mistake_cannot_show():
    plain = Case("plain", build_network((3,), [{"layer": "dense", "units": 4, "activation": "tanh"},
                                               {"layer": "dense", "units": 2}], "half_sse", "float64"), 4, 0)
    for m in NETWORK_MUTANTS:
        assert excluded(m, plain), m.name  # no batchnorm, dropout or layernorm layer; no L2
    drop = build_network((3,), [{"layer": "dense", "units": 4}, {"layer": "dropout", "rate": 0.0},
                                {"layer": "dense", "units": 2}], "half_sse", "float64")
    assert "rate 0" in excluded(DropoutUnscaled, Case("p0", drop, 4, 0))
    same_rows = Case("same-rows", drop, 4, 0, values={"mask2": np.tile([1.0, 0.0, 1.0, 1.0], (4, 1))})
    assert "rolled" in excluded(DropoutOtherMask, same_rows)
    # l2_form half: λW is the right gradient, the "1/m forgotten" mistake is no mistake there
    assert excluded(L2WithoutMean, NETWORK_CASES[0]) and not excluded(L2WithoutMean, NETWORK_CASES[2])
    for m in NETWORK_MUTANTS:
        assert m.kind == "analytic" and m.mistake and m.name != NetworkMutant.name
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


# ------------------------------------------------------------------------ sequences

SEQ = next(c for c in NETWORK_CASES if c.name == "tokens-res-attn-rnn-lstm-float64")
# embedding 1, residual 2 (layernorm 3, causal attention 4), rnn 5, lstm 6, mean_over_time 7, dense 8


@pytest.mark.parametrize("mutant,kind", [(RnnBpttDropsStepPath, "rnn"), (LstmTanhPrimeForSigma, "lstm"),
                                         (AttentionBackwardUnscaled, "attention"), (ResidualForgetsSkip, "residual")],
                         ids=lambda x: getattr(x, "name", x))
def test_a_sequence_backward_mistake_changes_only_what_lies_below_the_layer(mutant, kind):
    """The forward and everything the backward computes above the layer stay exact; the
    mistake shows from the layer's own parameters (or its input gradient) down."""
    i = _index(SEQ, kind)
    changed, *_ = _changed(mutant, SEQ)
    assert changed and not {q for q in changed if q[0] in "Jza"}, sorted(changed)
    assert all(Network.layer_of(q) <= i for q in changed), sorted(changed)
    assert f"da{_index(SEQ, 'embedding')}" in changed  # it reaches the bottom


def test_the_causal_mask_after_the_softmax_changes_the_forward_from_the_attention_up():
    i = _index(SEQ, "attention")
    changed, *_ = _changed(AttentionMaskAfterSoftmax, SEQ)
    assert {"J", f"a{i}"} <= changed
    made = [q for q in SEQ.model.intermediates() if q[0] in "za"]  # in the order of the pass
    assert not set(made[:made.index(f"a{i}")]) & changed, sorted(changed)


def test_embedding_assigns_changes_dW_only_and_only_at_repeated_ids():
    i = _index(SEQ, "embedding")
    changed, right, wrong, arrays = _changed(EmbeddingAssigns, SEQ)
    assert changed == {f"dW{i}"}
    ids, counts = np.unique(arrays["X"], return_counts=True)
    rows = {int(v) for v in np.flatnonzero(np.any(right[f"dW{i}"] != wrong[f"dW{i}"], axis=1))}
    assert rows and rows <= {int(v) for v, n in zip(ids, counts) if n > 1}


def test_sequence_mutants_say_why_they_cannot_show():
    """T = 1 has no step t+1; ids that never repeat make assigning the same as adding; a
    residual on X feeds no compared gradient; no causal attention, no mask to misplace."""
    from harness.selfcheck import build_network
    from harness.cases import Case

    one_step = Case("t1", build_network((1, 3), [{"layer": "rnn", "hidden": 3}, {"layer": "last_step"},
                                                 {"layer": "dense", "units": 2}], "cross_entropy", "float64"), 3, 1)
    assert "T = 1" in RnnBpttDropsStepPath.why_not(one_step.model, one_step.arrays())
    right, wrong = backprop(one_step.model, one_step.arrays()), RnnBpttDropsStepPath().gradients(
        one_step.model, one_step.arrays())
    for q in right:
        np.testing.assert_allclose(wrong[q], right[q], rtol=1e-13, atol=1e-16, err_msg=q)
    distinct = Case("ids", build_network((3,), [{"layer": "embedding", "dim": 2}, {"layer": "mean_over_time"},
                                                {"layer": "dense", "units": 2}], "cross_entropy", "float64",
                                         vocab=9), 2, 1, values={"X": np.array([[0, 1, 2], [3, 4, 5]])})
    assert "no id occurs twice" in EmbeddingAssigns.why_not(distinct.model, distinct.arrays())
    on_x = build_network((3, 4), [{"layer": "residual", "body": [{"layer": "dense", "units": 4}]},
                                  {"layer": "last_step"}, {"layer": "dense", "units": 2}], "cross_entropy", "float64")
    assert "on X" in ResidualForgetsSkip.why_not(on_x, {})
    open_attention = build_network((3, 4), [{"layer": "attention", "heads": 2}, {"layer": "last_step"},
                                            {"layer": "dense", "units": 2}], "cross_entropy", "float64")
    assert "causal" in AttentionMaskAfterSoftmax.why_not(open_attention, {})
