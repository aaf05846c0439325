"""The network form of a case file (issue 11): its bad-input rules, the seeded draw, the keys,
and the MLP form next to it.

Every bad-input rule gives one line naming file, case, layer and field: through the CLI (exit
2, no traceback, nothing written) for a few, through ``load_file`` raising ``InputError`` for
the rest. Then the draw: explicit values replace only their own array, the dropout mask is 0/1
at about the keep rate, gamma near 1, keys W{i}, b{i}, gamma{i}, beta{i}, mask{i} by layer
index. Last, an MLP written as a network gives the MLP form's J and gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from harness.cases import load_file
from harness.errors import InputError
from harness.model import Model
from harness.network import Network


def case_text(network: str, *, loss: str = "cross_entropy", batch: int | None = 4, input: str = "[4]",
              extra: str = "", values: str = "", name: str = "net") -> str:
    lines = ["[[case]]", f'name = "{name}"', f"input = {input}", f'loss = "{loss}"']
    if batch is not None:
        lines.append(f"batch = {batch}")
    lines += [extra, f"network = [{network}]"]
    if values:
        lines += ["[case.values]", values]
    return "\n".join(lines) + "\n"


D3 = '{layer = "dense", units = 3}'

# (id, case text, field, layer named in the line or None, words the message holds)
BAD = [
    ("unknown-layer", case_text(f'{{layer = "batchnrom"}}, {D3}'),
     "layer 1.layer", "layer 1", ["unknown layer 'batchnrom'", "did you mean 'batchnorm'"]),
    ("unknown-attribute", case_text('{layer = "dense", unit = 3}'),
     "layer 1 (dense).unit", "layer 1 (dense)", ["unknown attribute", "did you mean 'units'"]),
    ("unknown-attribute-of-dropout", case_text(f'{{layer = "dropout", rtae = 0.2}}, {D3}'),
     "layer 1 (dropout).rtae", "layer 1 (dropout)", ["unknown attribute", "did you mean 'rate'"]),
    ("missing-units", case_text(f'{D3}, {{layer = "relu"}}, {{layer = "dense"}}'),
     "layer 3 (dense).units", "layer 3 (dense)", ["needs 'units'"]),
    ("missing-rate", case_text(f'{{layer = "dropout"}}, {D3}'),
     "layer 1 (dropout).rate", "layer 1 (dropout)", ["needs 'rate'"]),
    ("unknown-activation", case_text('{layer = "dense", units = 3, activation = "rellu"}'),
     "layer 1 (dense).activation", "layer 1 (dense)", ["unknown activation 'rellu'", "did you mean 'relu'"]),
    ("attribute-of-a-layer-without-any", case_text(f'{D3}, {{layer = "relu", units = 3}}, {D3}'),
     "layer 2 (relu).units", "layer 2 (relu)", ["unknown attribute of relu", "none"]),
    ("rate-1", case_text(f'{{layer = "dropout", rate = 1.0}}, {D3}'),
     "layer 1 (dropout).rate", "layer 1 (dropout)", ["[0, 1)", "1.0"]),
    ("rate-negative", case_text(f'{{layer = "dropout", rate = -0.1}}, {D3}'),
     "layer 1 (dropout).rate", "layer 1 (dropout)", ["[0, 1)", "-0.1"]),
    ("rate-nan", case_text(f'{{layer = "dropout", rate = nan}}, {D3}'),
     "layer 1 (dropout).rate", "layer 1 (dropout)", ["[0, 1)"]),
    ("batchnorm-batch-1", case_text(f'{D3}, {{layer = "batchnorm"}}, {{layer = "dense", units = 2}}', batch=1),
     "layer 2 (batchnorm)", "layer 2 (batchnorm)", ["batch of 1", "variance is 0"]),
    ("batchnorm-batch-1-from-X", case_text(f'{{layer = "batchnorm"}}, {D3}', batch=None,
                                           values="X = [[1.0, 2.0, 3.0, 4.0]]"),
     "layer 1 (batchnorm)", "layer 1 (batchnorm)", ["batch of 1"]),
    ("l2-negative", case_text(D3, extra="l2 = -0.1"), "l2", None, [">= 0", "-0.1"]),
    ("l2-infinite", case_text(D3, extra="l2 = inf"), "l2", None, ["finite"]),
    ("l2-form-unknown", case_text(D3, extra='l2 = 0.1\nl2_form = "halve"'),
     "l2_form", None, ["unknown form 'halve'", "did you mean 'half'"]),
    ("mask-not-0-1", case_text(f'{{layer = "dense", units = 4}}, {{layer = "dropout", rate = 0.5}}, {D3}', batch=2,
                               values="mask2 = [[1, 0, 1, 2], [0, 1, 1, 1]]"),
     "values.mask2", "layer 2 (dropout)", ["0 and 1 only", "2.0"]),
    ("mask-a-half", case_text(f'{{layer = "dropout", rate = 0.5}}, {D3}', batch=2,
                              values="mask1 = [[1, 0, 1, 0.5], [0, 1, 1, 1]]"),
     "values.mask1", "layer 1 (dropout)", ["0 and 1 only", "0.5"]),
    ("mask-wrong-shape", case_text(f'{{layer = "dropout", rate = 0.5}}, {D3}', batch=2,
                                   values="mask1 = [[1, 0, 1], [0, 1, 1]]"),
     "values.mask1", "layer 1 (dropout)", ["2×3", "m×4"]),
    ("mask-wrong-rows", case_text(f'{{layer = "dropout", rate = 0.5}}, {D3}', batch=3,
                                  values="mask1 = [[1, 0, 1, 1], [0, 1, 1, 1]]"),
     "values.mask1", "layer 1 (dropout)", ["2 rows", "batch is 3"]),
    ("W1-wrong-shape", case_text(D3, values="W1 = [[1.0, 2.0], [3.0, 4.0]]"),
     "values.W1", "layer 1 (dense)", ["2×2", "4×3"]),
    ("W1-transposed", case_text(D3, values="W1 = [[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]"),
     "values.W1", "layer 1 (dense)", ["3×4", "4×3"]),
    ("gamma2-wrong-length", case_text(f'{D3}, {{layer = "batchnorm"}}', values="gamma2 = [1.0, 2.0]"),
     "values.gamma2", "layer 2 (batchnorm)", ["shape 2 ", ": 3"]),
    ("b3-wrong-length", case_text(f'{D3}, {{layer = "relu"}}, {{layer = "dense", units = 2}}', values="b3 = [1.0, 2.0, 3.0]"),
     "values.b3", "layer 3 (dense)", ["1×3", "1×2"]),
    ("network-and-layers", case_text(D3, extra="layers = [4, 3]"),
     "layers", None, ["not both"]),
    ("network-and-activations", case_text(D3, extra='activations = ["relu"]'),
     "activations", None, ["not both"]),
    ("softmax-before-cross-entropy", case_text(f'{D3}, {{layer = "softmax"}}'),
     "layer 2 (softmax)", "layer 2 (softmax)", ["softmax twice", "cross_entropy applies softmax itself"]),
    ("sigmoid-before-bce", case_text(f'{D3}, {{layer = "sigmoid"}}', loss="binary_cross_entropy"),
     "layer 2 (sigmoid)", "layer 2 (sigmoid)", ["sigmoid twice"]),
    ("dense-softmax-last", case_text('{layer = "dense", units = 5}, {layer = "dense", units = 3, activation = "softmax"}'),
     "layer 2 (dense).activation", "layer 2 (dense)", ["softmax twice"]),
    ("dense-sigmoid-last-bce", case_text('{layer = "dense", units = 3, activation = "sigmoid"}', loss="binary_cross_entropy"),
     "layer 1 (dense).activation", "layer 1 (dense)", ["sigmoid twice"]),
    # a softmax is not hidden by layers that pass the scores on (identity, flatten, dropout)
    ("softmax-identity-before-cross-entropy", case_text(f'{D3}, {{layer = "softmax"}}, {{layer = "identity"}}'),
     "layer 2 (softmax)", "layer 2 (softmax)", ["softmax twice"]),
    ("dense-softmax-dropout-before-cross-entropy",
     case_text('{layer = "dense", units = 3, activation = "softmax"}, {layer = "dropout", rate = 0.2}'),
     "layer 1 (dense).activation", "layer 1 (dense)", ["softmax twice"]),
    ("sigmoid-flatten-before-bce", case_text(f'{D3}, {{layer = "sigmoid"}}, {{layer = "flatten"}}',
                                             loss="binary_cross_entropy"),
     "layer 2 (sigmoid)", "layer 2 (sigmoid)", ["sigmoid twice"]),
    ("cross-entropy-1-unit", case_text('{layer = "dense", units = 1}'),
     "layer 1 (dense)", "layer 1 (dense)", ["N >= 2", "[1]"]),
    ("hinge-1-unit", case_text('{layer = "dense", units = 1}', loss="multiclass_hinge"),
     "layer 1 (dense)", "layer 1 (dense)", ["N >= 2"]),
]

# Run through the CLI as well: exit 2, one line on stderr, no traceback, no output written.
CLI = {"unknown-layer", "batchnorm-batch-1", "gamma2-wrong-length", "softmax-before-cross-entropy", "l2-negative"}


def _assert_one_line(line: str, path, field: str, layer: str | None, words: list[str],
                     case: str = "net") -> None:
    assert "\n" not in line.strip() and "Traceback" not in line, line
    assert str(path) in line and f"case '{case}'" in line and f"field '{field}'" in line, line
    if layer is not None:
        assert layer in line, line
    for w in words:
        assert w in line, (w, line)


@pytest.mark.parametrize("text, field, layer, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_input_error(text, field, layer, words, tmp_path):
    assert_input_error(tmp_path, text, field, layer, words)


def assert_input_error(tmp_path, text: str, field: str, layer: str | None, words: list[str]) -> None:
    """Loading the case file ``text`` (case "net") is one InputError naming file, case and
    ``field``, its one line holding the layer and ``words`` (shared by the conv and sequence tests)."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_file(path)
    err = info.value
    assert (err.file, err.case, err.field) == (str(path), "net", field), str(err)
    _assert_one_line(str(err), path, field, layer, words)


@pytest.mark.parametrize("text, field, layer, words", [b[1:] for b in BAD if b[0] in CLI],
                         ids=[b[0] for b in BAD if b[0] in CLI])
def test_bad_input_exits_2_with_one_line(text, field, layer, words, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "out"
    proc = run_cli("run", path, "--out", out)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    _assert_one_line(lines[0], path, field, layer, words)
    assert not out.exists()


def test_every_rule_of_the_issue_is_covered():
    ids = {b[0] for b in BAD}
    assert len(ids) == len(BAD) and CLI <= ids


# ============================================================================ the draw

NET = ('{layer = "dense", units = 6}, {layer = "batchnorm"}, {layer = "relu"}, {layer = "dropout", rate = 0.3}, '
       '{layer = "dense", units = 5, activation = "tanh"}, {layer = "layernorm"}, {layer = "dense", units = 3}')


def _load(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    (case,) = load_file(path)
    return case


def test_keys_are_named_by_layer_index(tmp_path):
    case = _load(tmp_path, case_text(NET, extra="l2 = 0.1"))
    net = case.model
    assert isinstance(net, Network)
    arrays = case.arrays()
    params = ["W1", "b1", "gamma2", "beta2", "W5", "b5", "gamma6", "beta6", "W7", "b7"]
    assert list(net.param_shapes()) == params
    assert set(arrays) == {"X", "y", "Y", *params, "mask4"}
    assert net.quantities() == ["J"] + [f"d{k}" for k in params]
    assert net.regularised() == ["W1", "W5", "W7"]
    assert [q for q in net.intermediates() if not q.startswith("d")] == \
        ["a1", "a2", "a3", "a4", "z5", "a5", "a6", "a7"]
    shapes = {"W1": (4, 6), "b1": (1, 6), "gamma2": (6,), "beta2": (6,), "W5": (6, 5), "b5": (1, 5),
              "gamma6": (5,), "beta6": (5,), "W7": (5, 3), "b7": (1, 3), "mask4": (4, 6), "X": (4, 4)}
    assert {k: arrays[k].shape for k in shapes} == shapes


def test_explicit_values_replace_only_their_own_array(tmp_path):
    drawn = _load(tmp_path, case_text(NET, batch=4)).arrays()
    W1 = "[" + ", ".join("[" + ", ".join(str(0.5 * i + j) for j in range(6)) + "]" for i in range(4)) + "]"
    mask = "[" + ", ".join(["[1, 0, 1, 1, 0, 1]"] * 4) + "]"
    values = f"W1 = {W1}\ngamma6 = [2.0, 2.0, 2.0, 2.0, 2.0]\nmask4 = {mask}\ny = [0, 2, 1, 2]"
    given = _load(tmp_path, case_text(NET, batch=4, values=values), "given.toml").arrays()
    assert set(given) == set(drawn)
    replaced = {"W1", "gamma6", "mask4", "y", "Y"}
    for k in set(drawn) - replaced:
        assert given[k].dtype == drawn[k].dtype and np.array_equal(given[k], drawn[k]), k  # bit-identical
    assert given["W1"][2, 3] == 4.0 and (given["gamma6"] == 2.0).all()
    assert given["mask4"][0].tolist() == [1, 0, 1, 1, 0, 1]
    assert given["y"].tolist() == [0, 2, 1, 2] and np.array_equal(given["Y"], np.eye(3)[[0, 2, 1, 2]])
    for k in replaced:
        assert not np.array_equal(given[k], drawn[k]), k


def test_mask_is_0_1_at_the_keep_rate_and_gamma_near_1(tmp_path):
    text = case_text('{layer = "dense", units = 50}, {layer = "batchnorm"}, {layer = "dropout", rate = 0.3}, '
                     '{layer = "dense", units = 2}', batch=200, extra="seed = 3")
    arrays = _load(tmp_path, text).arrays()
    mask = arrays["mask3"]
    assert mask.shape == (200, 50) and set(np.unique(mask)) == {0.0, 1.0}
    keep = mask.mean()
    assert abs(keep - 0.7) < 0.03, keep  # 10,000 draws: σ of the rate is 0.005
    gamma, beta = arrays["gamma2"], arrays["beta2"]
    assert abs(gamma.mean() - 1) < 0.05 and (np.abs(gamma - 1) < 0.5).all(), gamma
    assert abs(beta.mean()) < 0.05 and (np.abs(beta) < 0.5).all(), beta
    # rate 0 keeps everything
    text0 = case_text('{layer = "dropout", rate = 0}, {layer = "dense", units = 2}', batch=50)
    assert (_load(tmp_path, text0, "r0.toml").arrays()["mask1"] == 1).all()


def test_the_draw_follows_the_seed_and_the_dtype(tmp_path):
    a = _load(tmp_path, case_text(NET, extra="seed = 5")).arrays()
    b = _load(tmp_path, case_text(NET, extra="seed = 5"), "b.toml").arrays()
    c = _load(tmp_path, case_text(NET, extra="seed = 6"), "c2.toml").arrays()
    f32 = _load(tmp_path, case_text(NET, extra='seed = 5\ndtype = "float32"'), "f.toml").arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"])
    assert all(f32[k].dtype == (np.int64 if k == "y" else np.float32) for k in f32)
    assert np.array_equal(f32["W5"], a["W5"].astype(np.float32))


# ============================================================================ the MLP form

MLP_VALUES = """X = [[0.5, -1.0, 2.0, 0.1], [1.5, 0.3, -0.7, -2.0], [-0.2, 0.8, 0.9, 1.1]]
Y = [[0.1, 0.2, 0.3], [-1.0, 0.5, 0.0], [2.0, -0.3, 0.7]]
W1 = [[0.2, -0.5, 0.1, 0.9, -0.3], [0.4, 0.3, -0.8, 0.2, 0.6], [-0.7, 0.1, 0.5, -0.2, 0.3], [0.3, 0.9, -0.1, 0.4, -0.6]]
b1 = [[0.05, -0.1, 0.2, 0.0, 0.1]]
W2 = [[0.6, -0.2, 0.3], [-0.4, 0.5, 0.1], [0.2, 0.7, -0.9], [0.8, -0.3, 0.4], [-0.1, 0.2, 0.6]]
b2 = [[0.1, -0.2, 0.3]]"""


def test_mlp_form_still_loads_as_a_model(tmp_path):
    text = ('[[case]]\nname = "mlp"\nlayers = [4, 5, 3]\nactivations = ["tanh", "identity"]\n'
            f'loss = "half_sse"\nbatch = 3\n[case.values]\n{MLP_VALUES}\n')
    case = _load(tmp_path, text)
    assert isinstance(case.model, Model) and not isinstance(case.model, Network)
    assert case.model.layers == (4, 5, 3) and case.model.activations == ("tanh", "identity")
    assert set(case.arrays()) == {"X", "Y", "W1", "b1", "W2", "b2"}


@pytest.mark.parametrize("output", ['activation = "identity"', ""], ids=["identity", "no-activation"])
def test_mlp_as_network_matches_the_mlp_form(output, tmp_path, builtin):
    """The catalog path (network.backprop) against the original MLP path (ManualBackend's own
    loop), same explicit values: J, every dW, db, z, a, dz agree to the float64 analytic row."""
    from harness.compare import compare
    from harness.tolerances import ANALYTIC, lookup

    sep = ", " if output else ""
    mlp = ('[[case]]\nname = "mlp"\nlayers = [4, 5, 3]\nactivations = ["tanh", "identity"]\n'
           f'loss = "half_sse"\nbatch = 3\n[case.values]\n{MLP_VALUES}\n')
    net = ('[[case]]\nname = "net"\ninput = [4]\nloss = "half_sse"\nbatch = 3\nnetwork = [\n'
           '  {layer = "dense", units = 5, activation = "tanh"},\n'
           f'  {{layer = "dense", units = 3{sep}{output}}},\n]\n[case.values]\n{MLP_VALUES}\n')
    a_case, b_case = _load(tmp_path, mlp, "mlp.toml"), _load(tmp_path, net, "net.toml")
    a_in, b_in = a_case.arrays(), b_case.arrays()
    assert set(a_in) == set(b_in) and all(np.array_equal(a_in[k], b_in[k]) for k in a_in)
    tol = lookup("float64", ANALYTIC)
    for name in ("manual", "torch"):
        a = builtin[name].gradients(a_case.model, {k: v.copy() for k, v in a_in.items()})
        b = builtin[name].gradients(b_case.model, {k: v.copy() for k, v in b_in.items()})
        shared = ["J", "dW1", "db1", "dW2", "db2", "z1", "a1", "dz1", "da1", "a2"] + (["z2", "dz2"] if output else [])
        for q in shared:
            c = compare("mlp", q, f"{name}-mlp", a[q], f"{name}-network", b[q], ANALYTIC, "float64", tol)
            assert c.passed, c.message()
    # and the network's manual arm against the MLP's, the cross-check the brief asks for
    a = builtin["manual"].gradients(a_case.model, dict(a_in))
    b = builtin["manual"].gradients(b_case.model, dict(b_in))
    assert float(a["J"]) > 0 and np.abs(a["dW1"]).max() > 0
    for q in ("J", "dW1", "db1", "dW2", "db2"):
        assert compare("mlp", q, "mlp", a[q], "network", b[q], ANALYTIC, "float64", tol).passed, q


def test_the_mlp_cross_check_can_fail(tmp_path, builtin):
    """The same comparison flags a network that differs from the MLP (tanh → sigmoid in layer 1)."""
    from harness.compare import compare
    from harness.tolerances import ANALYTIC, lookup

    mlp = ('[[case]]\nname = "mlp"\nlayers = [4, 5, 3]\nactivations = ["tanh", "identity"]\n'
           f'loss = "half_sse"\nbatch = 3\n[case.values]\n{MLP_VALUES}\n')
    net = ('[[case]]\nname = "net"\ninput = [4]\nloss = "half_sse"\nbatch = 3\nnetwork = [\n'
           '  {layer = "dense", units = 5, activation = "sigmoid"},\n  {layer = "dense", units = 3},\n]\n'
           f'[case.values]\n{MLP_VALUES}\n')
    a_case, b_case = _load(tmp_path, mlp, "mlp.toml"), _load(tmp_path, net, "net.toml")
    a = builtin["manual"].gradients(a_case.model, a_case.arrays())
    b = builtin["manual"].gradients(b_case.model, b_case.arrays())
    tol = lookup("float64", ANALYTIC)
    for q in ("J", "dW1", "db1", "dW2", "db2"):
        assert not compare("mlp", q, "mlp", a[q], "network", b[q], ANALYTIC, "float64", tol).passed, q


@pytest.mark.parametrize("network, loss", [
    (f'{D3}, {{layer = "softmax"}}', "half_sse"),  # the prediction itself may be a softmax
    (f'{D3}, {{layer = "softmax"}}', "multiclass_hinge"),
    (f'{{layer = "dense", units = 5, activation = "softmax"}}, {D3}', "cross_entropy"),  # hidden softmax
    (f'{D3}, {{layer = "sigmoid"}}', "cross_entropy"),  # not the function the loss applies
    (f'{D3}, {{layer = "softmax"}}, {{layer = "dense", units = 3}}', "binary_cross_entropy"),
], ids=["softmax-sse", "softmax-hinge", "hidden-softmax", "sigmoid-ce", "softmax-dense-bce"])
def test_output_functions_the_loss_does_not_apply_are_accepted(network, loss, tmp_path):
    case = _load(tmp_path, case_text(network, loss=loss))
    assert isinstance(case.model, Network)
