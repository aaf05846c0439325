"""The walkthrough: every step in algorithm order, with shapes, numbers and differences."""

import re

import pytest

from conftest import run_cli
from harness.backends import check_output
from harness.cases import Case, load_file
from harness.catalog import LAYERS
from harness.explain import explain
from harness.model import Model
from harness.network import backprop

from mutants import ForgetsGPrimeInLayer2

CASE = Case("walk", Model((4, 5, 5, 3), ("tanh", "sigmoid", "softmax"), "cross_entropy", "float64"), 6, 3)


def _out(backend):
    return check_output(CASE.model, backend.gradients(CASE.model, CASE.arrays()), CASE.batch)


def test_steps_in_order_with_differences(builtin):
    text = explain(CASE, _out(builtin["manual"]), {"torch": _out(builtin["torch"]), "jax": _out(builtin["jax"])})
    steps = ["z^[1] = a^[0] W^[1] + b^[1]", "a^[1] = tanh(z^[1])", "ŷ = a^[3] = softmax(z^[3])", "J = (1/m)",
             "dz^[3] = (ŷ − ȳ) / m", "dW^[3] = a^[2]ᵀ dz^[3]", "da^[2] = dz^[3] W^[3]ᵀ",
             "dz^[2] = da^[2] ∘ g'(z^[2]),  g' = σ(z)(1 − σ(z))", "db^[1] = Σ_rows dz^[1]"]
    positions = [text.index(s) for s in steps]
    assert positions == sorted(positions)
    assert "5×6 · 6×5 → 5×5" in text  # dW^[2] = a^[1]ᵀ dz^[2]: n_1×m · m×n_2
    diffs = [float(x) for x in re.findall(r"(?:torch|jax) (\d\.\de[+-]\d\d)", text)]
    assert len(diffs) == 2 * (18 + 1) and max(diffs) < 1e-14  # 18 steps and the closing line
    assert max(len(line) for line in text.splitlines()) <= 140


def test_a_wrong_step_shows_where_it_goes_wrong(builtin):
    text = explain(CASE, _out(builtin["manual"]), {"mutant": _out(ForgetsGPrimeInLayer2())})
    def diff_after(step):
        tail = text[text.index(step):]
        return float(re.search(r"mutant (\S+)", tail).group(1))
    assert diff_after("dz^[3] = ") == 0 and diff_after("da^[2] = ") == 0
    assert diff_after("dz^[2] = ") > 1e-3 and diff_after("dW^[1] = ") > 1e-3


def test_cli_explain_and_unknown_case(tmp_path):
    ok = run_cli("explain", "cases/default.toml", "--case", "single-example", "--against", "jax")
    assert ok.returncode == 0 and "BACKWARD PASS" in ok.stdout and "max|Δ| jax" in ok.stdout
    bad = run_cli("explain", "cases/default.toml", "--case", "single-exampel")
    assert bad.returncode == 2 and "did you mean 'single-example'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- networks

NETWORK = """
[[case]]
name = "bn-dropout-mlp"
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
]
"""


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain") / "net.toml"
    path.write_text(NETWORK)
    return path


@pytest.fixture(scope="module")
def net_case(net_file):
    return load_file(net_file)[0]


def _net_out(case, gradients):
    return check_output(case.model, gradients, case.batch)


def _shown(key: str) -> str:
    """How the walkthrough writes a quantity: dgamma2 → dgamma^[2], a5 → a^[5]."""
    name, i = re.fullmatch(r"(.*?)_?(\d+)", key).groups()
    return f"{name}^[{i}]"


def test_network_names_every_layer_and_quantity_in_order(builtin, net_case):
    net, arrays = net_case.model, net_case.arrays()
    others = {n: _net_out(net_case, builtin[n].gradients(net, arrays)) for n in ("torch", "jax", "fd")}
    text = explain(net_case, _net_out(net_case, builtin["manual"].gradients(net, arrays)), others)
    for spec in net.network:  # the layer table: index, kind, shapes, parameter and input keys
        row = next(line for line in text.splitlines() if re.match(rf"\s+{spec.index}\s+{spec.kind}\s", line))
        assert f"[{spec.in_shape[0]}] → [{spec.out_shape[0]}]" in row
        keys = [k for k, (s, _, _) in net.param_specs().items() if s is spec] + [
            k for k, (s, *_) in net.input_specs(net_case.batch).items() if s is spec]
        assert all(k in row for k in keys)
    assert "W1 20×32 (L2)" in text and "mask4 16×32 (input)" in text and "b1 1×32 (L2)" not in text
    # every quantity of the algorithm, each step once, in the algorithm's order, with its formula
    order = [q for q in net.algorithm_order() if q != "J"]
    steps = [re.search(rf"^  (i=\d+ *| {{5}}){re.escape(_shown(q))}( = |:|$)", text, re.MULTILINE) for q in order]
    assert all(steps), [q for q, s in zip(order, steps) if not s]
    positions = [s.start() for s in steps]
    assert positions == sorted(positions)
    B = text.index("BACKWARD PASS")
    assert all((p > B) == order[n].startswith("d") for n, p in enumerate(positions))
    for spec in net.network:
        assert f"a^[{spec.index}] = {spec.kind}(a^[{spec.index - 1}]),  {LAYERS[spec.kind].formula}" in text \
            or f"z^[{spec.index}] = {spec.kind}(a^[{spec.index - 1}])" in text
    for step in ["J_L2 = λ/2 Σ W² over W1, W5, W7,  λ = 0.05", "J = J_data + J_L2",
                 "da^[7] = ∂J/∂s = (1/m) ∂𝓛/∂s,  ∂𝓛/∂s = ŷ − ȳ", "dW^[7]:  dW = a_prevᵀ dz, plus λ W^[7] from J_L2",
                 "dz^[5] = da^[5] ∘ g'(z^[5]),  g' = 1 − tanh²(z)", "dgamma^[2]:  dγ = Σ dy∘x̂",
                 "da^[3] = layer 4's dx = da ∘ mask / (1 − p)", "da^[1] = layer 2's dx = (1/(mσ))",
                 "i=5  dense: a_prev = a^[4], dz = dz^[5]"]:
        assert step in text, step
    # J's two terms add up to J
    values = [float(re.search(r"scalar\s+(\S+)", text[text.index(s):]).group(1)) for s in ("J_data", "J_L2", "J = ")]
    assert values[0] + values[1] == pytest.approx(values[2], rel=1e-5)
    # one difference per framework and step (fd also returns the forward values of the pass
    # its nudges start from), all at rounding level
    diffs = {n: [float(x) for x in re.findall(rf"{n} (\d\.\de[+-]\d\d)", text)] for n in others}
    assert len(diffs["torch"]) == len(diffs["jax"]) == len(diffs["fd"]) == len(order) + 2
    assert max(diffs["torch"] + diffs["jax"]) < 1e-13 and max(diffs["fd"]) < 1e-8
    assert "fd n/a" not in text


def _bn_without_mean_terms(spec, dy, cache):
    """Batch norm's backward as if μ and σ were constants: dx = dx̂/σ."""
    _, inv_sigma, gamma = cache
    _, grads = LAYERS["batchnorm"].backward(spec, dy, cache)
    return dy * gamma * inv_sigma, grads


def test_network_wrong_step_shows_where_it_goes_wrong(net_case):
    net, arrays = net_case.model, net_case.arrays()
    right = _net_out(net_case, backprop(net, arrays))
    wrong = _net_out(net_case, backprop(net, arrays, backward_of={"batchnorm": _bn_without_mean_terms}))
    text = explain(net_case, right, {"mutant": wrong})

    def diff_after(step):
        return float(re.search(r"mutant (\S+)", text[text.index(step):]).group(1))
    for fine in ("J = ", "da^[7] = ", "dW^[5]", "da^[2] = ", "dgamma^[2]", "dbeta^[2]"):
        assert diff_after(fine) == 0, fine
    for broken in ("da^[1] = ", "dW^[1]", "db^[1]"):
        assert diff_after(broken) > 1e-4, broken


def test_cli_explain_network(net_file):
    out = run_cli("explain", net_file, "--case", "bn-dropout-mlp", "--against", "fd")
    assert out.returncode == 0, out.stderr
    assert "LAYERS" in out.stdout and "dgamma^[6]" in out.stdout and "max|Δ| fd" in out.stdout
