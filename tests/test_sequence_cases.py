"""Sequence networks in case files: bad input, residual numbering, token input and the
per-step loss with its mask, the embedding's accumulation, and the shipped cases' coverage.

Every bad sequence input is one line naming file, case, layer and field, through ``load_file``
and through the CLI's ``main`` (exit 2, nothing written). The per-step J is checked against a
loop written from its definition, J = (1/N) Σ_n Σ_t mask·𝓛_{n,t}, in every analytic arm, and
shown to differ from torch's default reduction by the factor the README states.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_conv_cases import _check_exit_2, _run_main_on_each
from test_network_cases import _assert_one_line, assert_input_error

from harness.cases import load_file
from harness.errors import InputError
from harness.network import backprop

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ROOT / "cases" / "sequences.toml"


def case_text(network: str, *, input: str = "[4, 3]", loss: str = "cross_entropy", batch: int = 2,
              extra: str = "", values: str = "") -> str:
    lines = ["[[case]]", 'name = "net"', f"input = {input}", f'loss = "{loss}"', f"batch = {batch}", extra,
             f"network = [{network}]"]
    if values:
        lines += ["[case.values]", values]
    return "\n".join(lines) + "\n"


HEAD = '{layer = "last_step"}, {layer = "dense", units = 3}'
TOKENS = 'vocab = 5'
EMB = '{layer = "embedding", dim = 4}'

# (id, case text, field, layer named in the line, words the message holds)
BAD = [
    ("token-id-out-of-range", case_text(f"{EMB}, {HEAD}", input="[3]", extra=TOKENS,
                                        values="X = [[0, 1, 5], [2, 2, 2]]"),
     "values.X", None, ["token id 5", "(0, 2)", "0..4"]),
    ("token-id-negative", case_text(f"{EMB}, {HEAD}", input="[3]", extra=TOKENS,
                                    values="X = [[0, -1, 2], [2, 2, 2]]"),
     "values.X", None, ["token id -1", "0..4"]),
    ("token-id-not-integer", case_text(f"{EMB}, {HEAD}", input="[3]", extra=TOKENS,
                                       values="X = [[0, 1.5, 2], [2, 2, 2]]"),
     "values.X", None, ["token id 1.5", "integer"]),
    ("heads-not-dividing-D", case_text('{layer = "attention", heads = 3}, ' + HEAD, input="[4, 8]"),
     "layer 1 (attention).heads", "layer 1 (attention)", ["3", "8"]),
    ("residual-changes-shape", case_text('{layer = "residual", body = [{layer = "dense", units = 5}]}, ' + HEAD),
     "layer 1 (residual).body", "layer 1 (residual)", ["[4, 3]", "[4, 5]", "must match"]),
    ("residual-empty-body", case_text('{layer = "residual", body = []}, ' + HEAD),
     "layer 1 (residual).body", "layer 1 (residual)", ["at least one layer"]),
    ("T-0", case_text('{layer = "rnn", hidden = 3}, ' + HEAD, input="[0, 3]"),
     "input[0]", None, ["sizes must be integers in 1..", "got 0"]),
    ("target-mask-wrong-shape", case_text('{layer = "rnn", hidden = 3}, {layer = "dense", units = 3}',
                                          values="target_mask = [[1, 1, 0], [1, 0, 0]]"),
     "values.target_mask", None, ["2×3", "m×4"]),
    ("target-mask-not-0-1", case_text('{layer = "rnn", hidden = 3}, {layer = "dense", units = 3}',
                                      values="target_mask = [[1, 1, 0, 2], [1, 0, 0, 0]]"),
     "values.target_mask", None, ["target_mask value 2", "(0, 3)", "0 or 1"]),
    ("target-mask-without-per-step-loss", case_text(f'{{layer = "rnn", hidden = 3}}, {HEAD}',
                                                    values="target_mask = [[1, 1, 0, 0], [1, 0, 0, 0]]"),
     "values.target_mask", None, ["unknown array", "N×T×V"]),
    ("rnn-on-a-vector", case_text('{layer = "rnn", hidden = 3}, {layer = "dense", units = 3}', input="[6]"),
     "layer 1 (rnn)", "layer 1 (rnn)", ["[T, D]", "[6]"]),
    ("lstm-on-an-image", case_text('{layer = "lstm", hidden = 3}, {layer = "dense", units = 3}', input="[1, 4, 4]"),
     "layer 1 (lstm)", "layer 1 (lstm)", ["[T, D]", "[1, 4, 4]"]),
    ("attention-on-a-vector", case_text('{layer = "attention", heads = 1}, {layer = "dense", units = 3}', input="[6]"),
     "layer 1 (attention)", "layer 1 (attention)", ["[T, D]", "[6]"]),
    ("vocab-missing", case_text(f"{EMB}, {HEAD}", input="[3]"),
     "vocab", None, ["vocab = V", "embedding"]),
    ("vocab-without-embedding", case_text('{layer = "dense", units = 3}', input="[3]", extra=TOKENS),
     "vocab", None, ["token ids", "embedding"]),
    ("embedding-not-first", case_text(f'{{layer = "relu"}}, {EMB}, {HEAD}', input="[3]", extra=TOKENS),
     "vocab", None, ["starts with 'relu'"]),
    ("embedding-vocab-differs", case_text('{layer = "embedding", dim = 4, vocab = 6}, ' + HEAD, input="[3]",
                                          extra=TOKENS),
     "layer 1 (embedding).vocab", "layer 1 (embedding)", ["6", "vocab = 5"]),
    ("per-step-y-out-of-range", case_text('{layer = "rnn", hidden = 3}, {layer = "dense", units = 3}',
                                          values="y = [[0, 1, 2, 3], [0, 0, 0, 0]]"),
     "values.y", None, ["class id 3", "0..2"]),
    ("h0-wrong-rows", case_text('{layer = "rnn", hidden = 3}, ' + HEAD, values="h0_1 = [[0.1, 0.2, 0.3]]"),
     "values.h0_1", "layer 1 (rnn)", ["h0", "1", "batch"]),
    ("rnn-hidden-0", case_text('{layer = "rnn", hidden = 0}, ' + HEAD),
     "layer 1 (rnn).hidden", "layer 1 (rnn)", ["positive", "0"]),
]


@pytest.mark.parametrize("text, field, layer, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_sequence_input_is_one_input_error(text, field, layer, words, tmp_path):
    assert_input_error(tmp_path, text, field, layer, words)


def test_bad_sequence_input_exits_2_with_one_line(tmp_path):
    """Every rule through the CLI's main, in one interpreter: exit 2, one line, nothing written."""
    jobs = []
    for i, (_, text, *_rest) in enumerate(BAD):
        jobs.append((tmp_path / f"bad{i}.toml", tmp_path / f"out{i}"))
        jobs[-1][0].write_text(text)
    results = _run_main_on_each(jobs)
    assert len(results) == len(jobs)
    for (path, out), (id_, _, field, layer, words), (code, stderr) in zip(jobs, BAD, results):
        _check_exit_2(code, stderr, path, out, id_, field, layer, words, "net")


def _load(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    (case,) = load_file(path)
    return case


# ============================================================================ residual numbering

NESTED = ('{layer = "dense", units = 3}, '
          '{layer = "residual", body = [{layer = "layernorm"}, '
          '  {layer = "residual", body = [{layer = "dense", units = 3, activation = "tanh"}]}, {layer = "relu"}]}, '
          '{layer = "residual", body = [{layer = "dense", units = 3}]}, '
          '{layer = "last_step"}, {layer = "dense", units = 2}')


def test_residual_bodies_are_numbered_depth_first(tmp_path):
    """residual 2 holds 3..6 (residual 4 inside holds 5), residual 7 holds 8, then 9 and 10."""
    net = _load(tmp_path, case_text(NESTED)).model
    kinds = [(s.index, s.kind) for s in net.network]
    assert kinds == [(1, "dense"), (2, "residual"), (3, "layernorm"), (4, "residual"), (5, "dense"),
                     (6, "relu"), (7, "residual"), (8, "dense"), (9, "last_step"), (10, "dense")]
    assert {s.index: s["end"] for s in net.network if s.kind == "residual"} == {2: 6, 4: 5, 7: 8}
    # Inputs: the body's first layer takes the residual's input; the layer after a body the
    # residual's output; a^[4] (residual 4's output) feeds relu 6.
    keys = {s.index: net.input_key(s) for s in net.network}
    assert keys == {1: "X", 2: "a1", 3: "a1", 4: "a3", 5: "a3", 6: "a4", 7: "a2", 8: "a2", 9: "a7", 10: "a9"}
    assert set(net.param_shapes()) == {"W1", "b1", "gamma3", "beta3", "W5", "b5", "W8", "b8", "W10", "b10"}
    # The forward values in the order they are made: a residual's a{r} after its body.
    values = [q for q in net.intermediates() if not q.startswith("d")]
    assert values == ["a1", "a3", "z5", "a5", "a4", "a6", "a2", "a8", "a7", "a9", "a10"]
    assert net.describe().startswith("[4×3] dense3 residual(layernorm residual(dense3/tanh) relu) residual(dense3)")


def test_explain_shows_the_numbering(tmp_path):
    from conftest import run_cli

    path = tmp_path / "c.toml"
    path.write_text(case_text(NESTED))
    proc = run_cli("explain", path, "--case", "net", "--against", "torch")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "body = layers 3..6" in out and "body = layers 5..5" in out and "body = layers 8..8" in out
    assert "a^[2] = a^[1] + a^[6]" in out and "a^[4] = a^[3] + a^[5]" in out
    assert "residual: da^[1] = da^[2] (the skip)" in out and "i=2  residual: its body is layers 3..6, on a^[1]" in out


def test_the_report_shows_the_numbering(tmp_path, builtin):
    from harness.report import write_report
    from harness.runner import run

    case = _load(tmp_path, case_text(NESTED))
    assert case.model.numbered().startswith("1 dense3 · 2 residual(3–6) · 3 layernorm · 4 residual(5–5) · ")
    result = run([case], [builtin["manual"], builtin["torch"]])
    write_report(result, tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert f"Layers (a residual's body numbered right after it): {case.model.numbered()}." in text
    assert "layers: 1 dense3 · 2 residual(3–6)" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_residual_output_is_input_plus_body(tmp_path):
    case = _load(tmp_path, case_text(NESTED))
    out = backprop(case.model, case.arrays())
    np.testing.assert_array_equal(out["a4"], out["a3"] + out["a5"])
    np.testing.assert_array_equal(out["a2"], out["a1"] + out["a6"])
    np.testing.assert_array_equal(out["a7"], out["a2"] + out["a8"])
    # the skip path: ∂J/∂a^[1] = ∂J/∂a^[2] (skip) + layer 3's input gradient
    assert not np.allclose(out["da1"], out["da2"])


RESIDUAL_TIES = """[[case]]
name = "res-pool"
input = [1, 6, 6]
batch = 2
loss = "cross_entropy"
network = [
  {layer = "conv2d", filters = 2, kernel = 3, padding = 1},
  {layer = "residual", body = [{layer = "relu"}, {layer = "conv2d", filters = 2, kernel = 3, padding = 1}]},
  {layer = "maxpool2d", size = 2},
  {layer = "flatten"},
  {layer = "dense", units = 3},
]
[case.values]
X = [[[[1,1,2,2,0,0],[1,1,2,2,0,0],[3,3,1,1,2,2],[3,3,1,1,2,2],[0,0,0,0,1,1],[0,0,0,0,1,1]]],[[[1,2,3,4,5,6],[1,2,3,4,5,6],[6,5,4,3,2,1],[6,5,4,3,2,1],[1,1,1,1,1,1],[2,2,2,2,2,2]]]]
W1 = [[[[0,0,0],[0,1,0],[0,0,0]]],[[[0,0,0],[0,2,0],[0,0,0]]]]
W4 = [[[[0,0,0],[0,0,0],[0,0,0]],[[0,0,0],[0,0,0],[0,0,0]]],[[[0,0,0],[0,0,0],[0,0,0]],[[0,0,0],[0,0,0],[0,0,0]]]]
b4 = [0.5, -0.25]
b1 = [0, 0]
"""


def test_ties_are_traced_through_a_residual(tmp_path, builtin):
    """A max pool after a residual whose body adds a constant: the windows of the integer
    image tie, and the choice of maximum reaches the residual's output, its body and the layer
    below through both paths. Every tied element is masked, everything else agrees."""
    from harness.runner import run_case

    case = _load(tmp_path, RESIDUAL_TIES)
    result = run_case(case, [builtin["manual"], builtin["torch"]])
    assert not result.errors, [e.message for e in result.errors]
    assert result.ties["windows"] > 0 and result.passed, [c.message() for c in result.failures()]
    masked = {c.quantity for c in result.comparisons if c.n_checked < c.n_total}
    assert {"da2", "da4", "da1"} <= masked, masked  # the residual's output, its body, below it


# ============================================================================ tokens, per-step loss

TAGGER = case_text('{layer = "embedding", dim = 3}, {layer = "rnn", hidden = 4}, {layer = "dense", units = 4}',
                   input="[5]", extra="vocab = 6", batch=3,
                   values="target_mask = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]")


def _per_step_J_by_loop(s, y, mask):
    """J = (1/N) Σ_n Σ_t mask[n, t] · (−log softmax(s[n, t])[y[n, t]]), one step at a time."""
    N, T, _ = s.shape
    total = 0.0
    for n in range(N):
        for t in range(T):
            row = s[n, t] - s[n, t].max()
            total += mask[n, t] * -(row[y[n, t]] - np.log(np.exp(row).sum()))
    return total / N


def test_token_input_draws_integer_ids_and_per_step_targets(tmp_path):
    case = _load(tmp_path, TAGGER)
    arrays = case.arrays()
    assert arrays["X"].dtype == np.int64 and arrays["X"].shape == (3, 5)
    assert arrays["X"].min() >= 0 and arrays["X"].max() < 6
    assert arrays["y"].shape == (3, 5) and arrays["Y"].shape == (3, 5, 4)
    assert arrays["target_mask"].dtype == np.float64


def test_per_step_J_is_summed_over_time_and_averaged_over_sequences(tmp_path, builtin):
    """Every analytic arm computes J = (1/N) Σ_n Σ_t mask·𝓛_{n,t}; torch's default
    reduction="mean" over the unmasked tokens is that times N/Σmask (the README's statement)."""
    case = _load(tmp_path, TAGGER)
    arrays = case.arrays()
    manual = backprop(case.model, arrays)
    s, y, mask = manual["a3"], arrays["y"], arrays["target_mask"]
    J = _per_step_J_by_loop(s, y, mask)
    for name in ("manual", "torch", "jax"):
        got = float(builtin[name].gradients(case.model, arrays)["J"])
        assert abs(got - J) <= 1e-12 * abs(J), (name, got, J)
    torch = builtin["torch"].torch
    keep = mask.reshape(-1) > 0
    torch_mean = float(torch.nn.functional.cross_entropy(torch.from_numpy(s.reshape(-1, 4)[keep]),
                                                         torch.from_numpy(y.reshape(-1)[keep])))
    assert abs(torch_mean * mask.sum() / 3 - J) <= 1e-12 * J
    assert abs(torch_mean - J) > 0.1 * J  # the two conventions differ: a factor Σmask/N = 3


def test_masked_steps_get_no_gradient(tmp_path, builtin):
    """Where target_mask is 0 the loss does not look: ∂J/∂s is exactly 0 there, in every arm;
    a mask of all ones gives the unmasked J (a mask that did nothing would pass this too, so
    the masked J must also differ)."""
    case = _load(tmp_path, TAGGER)
    arrays = case.arrays()
    off = arrays["target_mask"] == 0
    for name in ("manual", "torch", "jax"):
        out = builtin[name].gradients(case.model, arrays)
        assert np.all(out["da3"][off] == 0), name
        assert np.all(np.abs(out["da3"][~off]).sum(axis=-1) > 0), name
    ones = {**arrays, "target_mask": np.ones_like(arrays["target_mask"])}
    unmasked = {k: v for k, v in arrays.items() if k != "target_mask"}
    assert float(backprop(case.model, ones)["J"]) == pytest.approx(float(backprop(case.model, unmasked)["J"]),
                                                                     rel=1e-15)
    assert float(backprop(case.model, ones)["J"]) > float(backprop(case.model, arrays)["J"])


def test_embedding_gradient_accumulates_repeated_ids(tmp_path):
    """dW[v] = Σ of da over every position holding id v: checked against a loop, and the
    repeated ids make an assignment (dW[x] = da) give another answer."""
    case = _load(tmp_path, case_text('{layer = "embedding", dim = 3}, {layer = "mean_over_time"}, '
                                     '{layer = "dense", units = 3}', input="[4]", extra="vocab = 6", batch=3,
                                     values="X = [[2, 2, 5, 0], [5, 5, 5, 1], [2, 3, 4, 2]]"))
    arrays = case.arrays()
    out = backprop(case.model, arrays)
    X, da = arrays["X"], out["da1"]
    dW = np.zeros((6, 3))
    for n in range(3):
        for t in range(4):
            dW[X[n, t]] += da[n, t]
    np.testing.assert_allclose(out["dW1"], dW, rtol=1e-14, atol=1e-16)
    assigned = np.zeros((6, 3))
    assigned[X] = da
    assert not np.allclose(assigned, dW)


# ============================================================================ shipped cases

def test_shipped_sequence_cases_cover_the_issue():
    cases = load_file(SEQUENCES)
    nets = {c.name: c.model for c in cases}
    kinds = lambda net: {s.kind for s in net.network}  # noqa: E731
    T = lambda net: net.input[0]  # noqa: E731
    for kind in ("rnn", "lstm"):
        of = [n for n in nets.values() if kind in kinds(n)]
        assert {T(n) == 1 for n in of} == {True, False}, kind
        assert {any(s.kind == kind and s["h0"] for s in n.network) for n in of} == {True, False}, kind
    att = [s for n in nets.values() for s in n.network if s.kind == "attention"]
    assert {s["heads"] for s in att} >= {1, 4} and {s["causal"] for s in att} == {True, False}
    assert any(c.values.get("X") is not None and len(np.unique(c.values["X"])) < c.values["X"].size
               for c in cases if c.model.vocab)
    assert any("target_mask" in c.values for c in cases)
    block = nets["transformer-block"]
    assert [s.kind for s in block.network] == ["embedding", "residual", "layernorm", "attention", "residual",
                                               "layernorm", "dense", "dense", "layernorm", "dense"]
    assert block.per_step and {c.model.dtype for c in cases} == {"float32", "float64"}


# ============================================================================ the sequence sweep

def sweep_text(**settings) -> str:
    base = {"name": '"ss"', "count": 40, "seed": 3,
            "layers": '["embedding", "rnn", "lstm", "attention", "residual", "layernorm", "batchnorm", "dropout"]'}
    base.update(settings)
    return "[[sweep]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


def test_sequence_sweep_is_seeded_and_draws_every_kind(tmp_path):
    """The same seed gives the same networks; 40 draws use every sequence layer, token and real
    input, heads per step and pooled, h0 on and off; every network passed the loader's checks."""
    path = tmp_path / "s.toml"
    path.write_text(sweep_text())
    a, b = load_file(path), load_file(path)
    assert [c.model.describe() for c in a] == [c.model.describe() for c in b]
    kinds = {s.kind for c in a for s in c.model.network}
    assert {"embedding", "rnn", "lstm", "attention", "residual", "last_step", "mean_over_time"} <= kinds
    assert {bool(c.model.vocab) for c in a} == {True, False}
    assert {c.model.per_step for c in a} == {True, False}
    assert {bool(s["h0"]) for c in a for s in c.model.network if s.kind in ("rnn", "lstm")} == {True, False}
    assert {s["causal"] for c in a for s in c.model.network if s.kind == "attention"} == {True, False}


# (id, sweep text, field, words)
BAD_SWEEPS = [
    ("input-3-entries", sweep_text(input="[[1, 2], [4, 8], 3]"), "input", ["[T, D]", "3 entries"]),
    ("T-0", sweep_text(input="[[0, 2], [4, 8]]"), "input[0]", ["T must be", "[0, 2]"]),
    ("vocab-without-embedding", sweep_text(layers='["rnn"]', vocab="[3, 5]"), "vocab", ["no embedding"]),
    ("vocab-on-a-dense-sweep", sweep_text(layers='["dropout"]', vocab="[3, 5]"), "vocab", ["sequence sweep"]),
    ("filters-on-a-sequence-sweep", sweep_text(filters="[1, 2]"), "filters", ["conv sweep"]),
    ("too-many-blocks", sweep_text(blocks="[1, 200]"), "blocks", ["at most", "[1, 200]"]),
]


@pytest.mark.parametrize("text, field, words", [b[1:] for b in BAD_SWEEPS], ids=[b[0] for b in BAD_SWEEPS])
def test_bad_sequence_sweep_setting_is_one_input_error(text, field, words, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_file(path)
    err = info.value
    assert err.field == field, str(err)
    _assert_one_line(str(err), path, field, None, words, case="ss")

