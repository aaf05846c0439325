"""The walkthrough: every step in algorithm order, with shapes, numbers and differences."""

import re


from conftest import run_cli
from harness.backends import check_output
from harness.cases import Case
from harness.explain import explain
from harness.model import Model

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
