"""The tolerance table is measured: on the shipped cases every row keeps a margin of 10× or more,
and each row is still tight enough to flag a 1e-3 relative error in one element. On the way,
every shipped case agrees across every built-in backend and variant."""

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from harness.cases import load_file
from harness.compare import compare
from harness.runner import run
from harness.network import Network
from harness.network_cases import SPATIAL_LAYERS
from harness.tolerances import TOLERANCES

ROOT = Path(__file__).resolve().parent.parent
MIN_MARGIN = 10.0
# The nudge's tolerance is its own truncation error (h = 1e-3): a smaller margin is its nature.
# Finite differences carry their own round-off too; on the hardest shipped case (saturated
# sigmoids, inputs of scale 50, cases/hard.toml) central differences sit 6× below their row.
MIN_MARGIN_FOR = {"nudge": 3.0, "finite_difference": 5.0, "forward_difference": 5.0}
# float32 catalog networks normalise a few features (layer norm over 4): the backward through
# it cancels, and the worst element of cases/networks.toml uses 10.5% of the float32 row
# (a dβ of 1e-7 at a scale of 0.1, torch vs jax). The sequence sweep's sample in
# cases/sequences.toml goes further: sequence-sweep-001 (an lstm, then a residual block that
# starts with a layer norm over 4 features) uses 17% at its output z9, manual vs jax (manual vs
# torch 11%, torch vs jax 6%), on the CPUs of 2026-11-30; on an AVX-512 AMD EPYC (2026-12-01)
# the same element uses 25.5% (manual vs torch 11.5%, torch vs jax 14%): JAX's float32 rounding
# follows the instructions XLA picks for the CPU. 3× still leaves the row far from its edge.
MIN_MARGIN_FOR_ROW = {("float32", "analytic"): 3.0}
NETWORK_FILES = ("networks.toml", "sequences.toml")
SEQUENCE_LAYERS = ("embedding", "rnn", "lstm", "attention", "residual")
VARIANTS = ("fd-forward", "nudge", "fd-richardson", "fd-complex", "fd-directional")
NETWORK_VARIANTS = ("fd-forward", "nudge")


def structurally_zero(case, quantity: str) -> bool:
    """Network.structurally_zero: a db or dβ that a batch norm cancels, attention's dbk. Both sides
    are rounding noise there, and their ratio to the tolerance says nothing about the table
    (the rounding floor clears it if needed)."""
    return isinstance(case.model, Network) and case.model.structurally_zero(quantity)


def test_structurally_zero_quantities():
    """Exactly the ones the docstring names: by exact arithmetic, checked in float64, both ways
    (every quantity claimed is 0, every other is not) on networks where a shift travels through
    linear layers to a batch norm, or is stopped on the way."""
    from harness.cases import Case
    from harness.network import backprop
    from harness.selfcheck import build_network

    conv = {"layer": "conv2d", "filters": 2, "kernel": 2}
    networks = [
        ((4, 6), [{"layer": "dense", "units": 6}, {"layer": "batchnorm"},
                  {"layer": "dense", "units": 6, "activation": "tanh"}, {"layer": "batchnorm"},
                  {"layer": "attention", "heads": 2}, {"layer": "last_step"}, {"layer": "dense", "units": 3}],
         {"db1", "dbk5"}),
        # a conv's shift, per channel, through a max pool; then a batch norm's β and a padded
        # conv's b through a flatten, an identity dense and a dense to a batch norm over features
        ((2, 6, 6), [{**conv, "activation": "identity"}, {"layer": "maxpool2d", "size": 2}, {"layer": "batchnorm"},
                     {**conv, "padding": 1}, {"layer": "flatten"},
                     {"layer": "dense", "units": 5, "activation": "identity"}, {"layer": "dense", "units": 4},
                     {"layer": "batchnorm"}, {"layer": "dense", "units": 3}],
         {"db1", "dbeta3", "db4", "db6", "db7"}),
        # a conv through a padded conv to a spatial batch norm is no longer one shift per channel
        ((2, 5, 5), [{**conv, "padding": 1}, {**conv, "padding": 1}, {"layer": "batchnorm"}, {"layer": "relu"},
                     {"layer": "flatten"}, {"layer": "dense", "units": 3}],
         {"db2"}),
        # a dense on [T, D] is one shift per feature over the steps: a batch norm over batch and time
        ((5, 4), [{"layer": "dense", "units": 4}, {"layer": "identity"}, {"layer": "batchnorm"},
                  {"layer": "mean_over_time"}, {"layer": "dense", "units": 3}],
         {"db1"}),
    ]
    for shape, layers, expected in networks:
        net = build_network(shape, layers, "cross_entropy", "float64")
        zero = {q for q in net.quantities() if net.structurally_zero(q)}
        assert zero == expected, (shape, zero)
        out = backprop(net, Case("z", net, 5, 0).arrays())
        for q in net.quantities()[1:]:
            big = np.abs(out[q]).max()
            assert (big < 1e-12) == (q in zero), (shape, q, big)


def test_the_floor_of_a_bias_a_batch_norm_cancels_covers_any_order_of_its_sum():
    """db1 of a dense right before a batch norm is 0 in exact arithmetic: every arm returns the
    rounding of a sum that cancels, and moving the inputs cannot move it, so the perturbation
    floor alone measured only the manual arm's own noise (catalog-015 failed on it, torch vs
    jax, on an AVX-512 CPU). The floor now holds ε·Σ|da1| over the rows, 8 times: the same sum
    in another order stays inside it, and a db1 off by a thousandth of what it sums does not."""
    from harness.cases import Case
    from harness.compare import compare
    from harness.network import backprop
    from harness.rounding import FLOOR_FACTOR, rounding_floor
    from harness.selfcheck import build_network
    from harness.tolerances import lookup

    net = build_network((6,), [{"layer": "dense", "units": 8}, {"layer": "batchnorm"}, {"layer": "tanh"},
                               {"layer": "dense", "units": 3}], "cross_entropy", "float32")
    assert net.structurally_zero("db1")
    case = Case("zero-sum", net, 7, 3)
    inputs = case.arrays()
    floor = rounding_floor(case, inputs)["db1"]
    out = backprop(net, inputs)
    da1 = out["da1"]
    eps = float(np.finfo(np.float32).eps)
    assert np.all(floor >= FLOOR_FACTOR * eps * np.abs(da1.astype(np.float64)).sum(axis=0).reshape(floor.shape))
    tol = lookup("float32", "analytic")
    orders = {"rows reversed": da1[::-1].sum(axis=0), "one row at a time": np.add.accumulate(da1, axis=0)[-1],
              "pairs of rows": da1[0::2].sum(axis=0) + da1[1::2].sum(axis=0)}
    for name, other in orders.items():
        other = other.astype(np.float32).reshape(out["db1"].shape)
        assert compare("c", "db1", "manual", out["db1"], "other", other, "analytic", "float32", tol, 0.0, floor).passed, name
    wrong = out["db1"] + np.float32(1e-3) * np.abs(da1).sum(axis=0).reshape(out["db1"].shape)
    assert not compare("c", "db1", "manual", out["db1"], "wrong", wrong, "analytic", "float32", tol, 0.0, floor).passed


# catalog-213's network (T = 2 token ids) in float64, where the manual arm's dbk is often
# exactly 0 and so was its perturbation floor; a float32 one with two causal heads.
KEY_BIAS_NETWORKS = {
    "catalog-213": ((2,), [{"layer": "embedding", "dim": 7}, {"layer": "attention", "heads": 1, "causal": True},
                           {"layer": "mean_over_time"}, {"layer": "dense", "units": 3, "activation": "gelu"}],
                    "half_sse", "float64", 3, [5, 696296856]),
    "two heads": ((5, 8), [{"layer": "attention", "heads": 2, "causal": True}, {"layer": "mean_over_time"},
                           {"layer": "dense", "units": 3}], "cross_entropy", "float32", 0, [4, 25]),
}


@pytest.mark.parametrize("name", KEY_BIAS_NETWORKS)
def test_the_floor_of_attentions_key_bias_covers_other_orders_and_not_a_wrong_dk(name):
    """dbk is 0 in exact arithmetic (a constant on each row of scores), so every arm returns
    noise, and the perturbation floor sees only the manual arm's own (catalog-213 failed on it
    in float64, jax 1.1e-16 against an allowance of 5e-17; catalog-230 in float32). The floor
    now holds ε times the |terms| of the softmax backward that dbk sums (key_bias_terms), 8
    times: dbk from P normalised another way (exp(S − logsumexp S): 4.9× the old allowance on
    catalog-213's network with seed 5), summed in other orders, or in float64, stays inside
    it; dbk off by a thousandth of those terms, or from a dK that forgot its transpose
    (dS Q for dSᵀ Q), does not."""
    from harness.cases import Case
    from harness.catalog import LAYERS
    from harness.catalog.attention import future, merge_heads, softmax_rows_backward, split_heads
    from harness.compare import compare
    from harness.network import backprop, forward
    from harness.rounding import FLOOR_FACTOR, rounding_floor
    from harness.selfcheck import build_network
    from harness.tolerances import lookup

    shape, layers, loss, dtype, vocab, seeds = KEY_BIAS_NETWORKS[name]
    net = build_network(shape, layers, loss, dtype, vocab=vocab)
    i = next(s.index for s in net.network if s.kind == "attention")
    q = f"dbk{i}"
    assert net.structurally_zero(q)
    spec, T = net.network[i - 1], shape[0]
    H = spec["heads"]
    eps, tol = float(np.finfo(dtype).eps), lookup(dtype, "analytic")
    for seed in seeds:
        case = Case("zero-sum-key", net, 4, seed)
        inputs = case.arrays()
        floor = rounding_floor(case, inputs)[q]
        forwarded = forward(net, inputs)
        out = backprop(net, inputs, forwarded=forwarded)
        cache, dy = forwarded[2][i], out[f"da{i}"]
        terms = LAYERS["attention"].key_bias_terms(spec, dy, cache)
        assert np.all(floor >= FLOOR_FACTOR * eps * terms) and np.all(terms > 0)
        c = np.sqrt(cache.Q.shape[-1]).astype(dtype)

        def dbk(P, Q=cache.Q, V=cache.V, transpose=True, steps=slice(None)):
            dS = softmax_rows_backward(P, split_heads(dy @ cache.Wo.T, H) @ V.swapaxes(-1, -2)) / c
            return merge_heads((dS.swapaxes(-1, -2) if transpose else dS) @ Q)[:, steps].sum(axis=(0, 1))

        S = np.where(future(T), -np.inf, cache.Q @ cache.K.swapaxes(-1, -2) / c)
        top = S.max(axis=-1, keepdims=True)
        dS = softmax_rows_backward(cache.P, split_heads(dy @ cache.Wo.T, H) @ cache.V.swapaxes(-1, -2)) / c
        logsumexp = top + np.log(np.exp(S - top).sum(axis=-1, keepdims=True))
        orders = {"P = exp(S − logsumexp S)": dbk(np.exp(S - logsumexp)),
                  "steps reversed": dbk(cache.P, steps=slice(None, None, -1)),
                  "row sums first": merge_heads(cache.Q * dS.sum(axis=-1, keepdims=True)).sum(axis=(0, 1)),
                  "float64": dbk(*(np.asarray(a, dtype=np.float64) for a in (cache.P, cache.Q, cache.V))),
                  "exactly 0 (no key bias)": np.zeros_like(out[q])}
        for how, other in orders.items():
            other = other.astype(dtype).reshape(out[q].shape)
            assert compare("c", q, "manual", out[q], "other", other, "analytic", dtype, tol, 0.0, floor).passed, \
                (seed, how)
        wrongs = {"a thousandth of the terms": out[q] + 1e-3 * terms.astype(dtype),
                  "dS Q for dSᵀ Q": dbk(cache.P, transpose=False)}
        for how, wrong in wrongs.items():
            assert not compare("c", q, "manual", out[q], "wrong", wrong, "analytic", dtype, tol, 0.0, floor).passed, \
                (seed, how)


def _shipped(networks: bool) -> list:
    files = sorted((ROOT / "cases").glob("*.toml"))
    if networks:
        return [c for name in NETWORK_FILES for c in load_file(ROOT / "cases" / name)]
    return [c for f in files if f.name not in NETWORK_FILES for c in load_file(f)]


def worst_used(builtin, networks: bool, part: str = "") -> dict:
    """{row: the largest share of its tolerance any element used} over the shipped MLP cases
    (every builtin and variant) or the shipped catalog networks (``part``: "dense" or
    "spatial", the conv and sequence networks; two tests, so that xdist runs them side by side)."""
    from harness.backends import get

    cases = _shipped(networks)
    if networks:
        # The catalog networks take the variants that bring a row of their own: fd-richardson and
        # fd-directional share fd's row, and complex step is not written for networks.
        # The conv networks run the builtin backends only: the variants' rows (forward differences,
        # the nudge) are measured on the MLPs and the dense networks, and fd on a conv net is fd's
        # own row; their nudges of every intermediate would double this test's time.
        # The sequence networks likewise (their fd nudges every step of every intermediate).
        spatial = [c for c in cases if any(s.kind in SPATIAL_LAYERS + SEQUENCE_LAYERS for s in c.model.network)]
        dense = [c for c in cases if c not in spatial]
        cases = dense if part == "dense" else spatial
        results = [run(dense, list(builtin.values()) + [get(v) for v in NETWORK_VARIANTS]) if part == "dense"
                   else run(spatial, [b for n, b in builtin.items() if n != "manual_columns"])]  # dense only
    else:
        results = [run(cases, list(builtin.values()) + [get(v) for v in VARIANTS])]
    comparisons = [c for r in results for c in r.comparisons]
    for result in results:
        assert not result.errors, [e.message for e in result.errors]
        assert result.passed, [c.message() for c in result.comparisons if not c.passed][:5]
    # The agreement rule, case by case: every pair of analytic arms compares every quantity,
    # per-layer values included (manual_columns runs on the MLPs; on catalog networks only
    # where every layer is dense, and says why elsewhere).
    analytic = {"manual", "manual_columns", "torch", "jax"}
    pairs = defaultdict(lambda: defaultdict(int))
    for c in comparisons:
        if c.a in analytic and c.b in analytic:
            pairs[c.case][(c.a, c.b)] += 1
    for case in cases:
        ran = {n for pair in pairs[case.name] for n in pair}
        assert ran == analytic if not networks else {"manual", "torch", "jax"} <= ran, (case.name, ran)
        assert len(pairs[case.name]) == len(ran) * (len(ran) - 1) // 2, case.name
        # fd-directional (run on the MLPs) brings vᵀ∇J, which every pair then compares too
        quantities = len(case.model.algorithm_order()) + (0 if networks else 1)
        assert set(pairs[case.name].values()) == {quantities}, case.name
    worst = defaultdict(float)
    by_name = {c.name: c for c in cases}
    for c in comparisons:
        if not structurally_zero(by_name[c.case], c.quantity):
            worst[(c.dtype, c.kind)] = max(worst[(c.dtype, c.kind)], c.tol_used)
    return dict(worst)


def _short(worst: dict, rows) -> list[str]:
    short = []
    for row in rows:
        used = worst.get(row, 0.0)
        need = MIN_MARGIN_FOR_ROW.get(row, MIN_MARGIN_FOR.get(row[1], MIN_MARGIN))
        print(f"{row}: worst element uses {100 * used:.3g}% of its tolerance (margin {1 / used if used else 0:.0f}×)")
        if not 0 < used <= 1 / need:
            short.append(f"{row}: margin {1 / used if used else 0:.1f}×, needs {need:g}×")
    return short


# Two tests, the MLP files and the catalog networks, so that the two xdist workers share the
# work (each is one test: a fixture shared by per-row tests ran on both workers).

def test_margin_on_shipped_cases(builtin):
    """The MLP files, every builtin and variant: every row of the table is measured here, and
    every case passes with every pair of analytic arms comparing every quantity (this was
    tests/test_agreement.py's test per case, which ran the same 53 cases through the same
    arms a second time: 23 s of the suite)."""
    worst = worst_used(builtin, networks=False)
    short = _short(worst, TOLERANCES)
    assert not short, short


@pytest.mark.parametrize("part", ["dense", "spatial"])
def test_margin_on_shipped_networks(builtin, part):
    """The catalog networks (cases/networks.toml, cases/sequences.toml): every row they reach
    (analytic, fd, forward differences, the nudge) keeps its margin there too. "dense": the
    networks without conv or sequence layers, with the fd variants; "spatial": the conv and
    sequence networks, with the built-in backends."""
    worst = worst_used(builtin, networks=True, part=part)
    rows = {"analytic", "finite_difference"} | ({"forward_difference", "nudge"} if part == "dense" else set())
    assert {kind for _, kind in worst} >= rows
    short = _short(worst, [row for row in TOLERANCES if row in worst])
    assert not short, short


@pytest.mark.parametrize("row", list(TOLERANCES), ids=lambda r: f"{r[0]}-{r[1]}")
def test_each_row_flags_one_element_off_by_1e_minus_3(row):
    """...except the nudge row, whose own error is ~1e-3: it flags one element off by 10%."""
    dtype, kind = row
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 5)).astype(dtype)
    b = a.copy()
    b[2, 3] *= 1 + (0.1 if kind == "nudge" else 1e-3)
    r = compare("c", "dW1", "a", a, "b", b, kind, dtype, TOLERANCES[row], J_scale=1.0)
    assert not r.passed and r.n_off == 1 and r.index == (2, 3)


def test_margin_on_wide_deep_random_networks(builtin):
    """Harder than the shipped cases: width 64, depth 3-5, batch 128, input scale 1e-3..1e2.
    Every other one of 16 seeded draws (one JAX compile per network, most of the time): eight
    activations, every loss, every depth, and wide-14, the tightest of the 16 (float32: its
    gradients use 27% of the tolerance, its intermediates 64%; the odd draws at most 5% and 17%;
    measured 2026-11-30; on the AVX-512 EPYC of 2026-12-01 the eight take 5.4% and 13.7%)."""
    from harness.activations import ACTIVATIONS
    from harness.cases import Case
    from harness.losses import LOSSES
    from harness.model import Model

    rng = np.random.default_rng(0)
    cases = []
    for i in range(16):
        L = int(rng.integers(3, 6))
        act, loss = str(rng.choice(list(ACTIVATIONS))), str(rng.choice(list(LOSSES)))
        out = LOSSES[loss].default_output
        scale = float(10 ** rng.uniform(-3, 2))
        if i % 2:
            continue  # drawn all the same, so that the even draws stay the networks they were
        for dtype in ("float32", "float64"):
            model = Model((64,) * L + (10,), (act,) * (L - 1) + (out,), loss, dtype)
            cases.append(Case(f"wide-{i}-{dtype}", model, 128, i, input_scale=scale))
    assert {c.model.loss for c in cases} == set(LOSSES) and {c.model.L for c in cases} == {3, 4, 5}
    result = run(cases, [builtin[n] for n in ("manual", "torch", "jax")])
    assert result.passed, [c.message() for c in result.comparisons if not c.passed]
    for dtype in ("float32", "float64"):
        grads = max(c.tol_used for c in result.comparisons
                    if c.dtype == dtype and c.quantity in c_required(result, c.case))
        every = max(c.tol_used for c in result.comparisons if c.dtype == dtype)
        print(f"wide {dtype} analytic: J/dW/db use {100 * grads:.3g}% (margin {1 / grads:.0f}×), "
              f"with z/a/dz/da {100 * every:.3g}% (margin {1 / every:.1f}×)")
        assert grads <= 1 / 3
        # Intermediates of a saturated float32 layer sit closer (see README): only required to pass.
        assert every <= 1


def c_required(result, case_name):
    (r,) = [r for r in result.cases if r.case.name == case_name]
    return set(r.case.model.quantities())
