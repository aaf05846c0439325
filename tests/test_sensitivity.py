"""The comparison must flag wrong gradients: each mutant makes the run exit 1 and names the quantity."""

import pytest

from conftest import ROOT, run_cli
from harness.cases import load_file
from harness.runner import run

from mutants import (ForgetsGPrime, ForgetsGPrimeInLayer1, ForgetsGPrimeInLayer2, ForgetsMean,
                     TransposesDW)

CASES = """
[[case]]
name = "square-tanh"
layers = [4, 4, 4, 4]
activations = ["tanh", "tanh", "softmax"]
loss = "cross_entropy"
batch = 6
dtype = "{dtype}"
seed = 5
"""

# mutant class -> quantities it must break (every W is 4×4, so dWᵀ keeps the shape).
# The mutants also return z, a, dz, da, so the per-layer comparison sees where the error enters.
BELOW_2 = {"dz2", "dW2", "db2", "da1", "dz1", "dW1", "db1"}
EXPECTED = {
    ForgetsGPrime: BELOW_2,  # g' enters below the output layer
    ForgetsGPrimeInLayer2: BELOW_2,
    ForgetsGPrimeInLayer1: {"dz1", "dW1", "db1"},
    ForgetsMean: {"dz3", "dW3", "db3", "da2"} | BELOW_2,
    TransposesDW: {"dW1", "dW2", "dW3"},
}
FIRST = {ForgetsGPrime: "dz2", ForgetsGPrimeInLayer2: "dz2", ForgetsGPrimeInLayer1: "dz1",
         ForgetsMean: "dz3", TransposesDW: "dW3"}


@pytest.fixture(params=["float64", "float32"])
def casefile(tmp_path, request):
    path = tmp_path / f"square-{request.param}.toml"
    path.write_text(CASES.format(dtype=request.param))
    return path


@pytest.mark.parametrize("mutant", list(EXPECTED), ids=lambda m: m.name)
def test_mutant_disagrees_with_every_backend(mutant, casefile, builtin):
    case = load_file(casefile)
    result = run(case, [*builtin.values(), mutant()])
    flagged = {(c.quantity, c.a if c.b == mutant.name else c.b)
               for c in result.comparisons if not c.passed}
    for other in builtin:
        assert {q for q, b in flagged if b == other} == EXPECTED[mutant], other
    # The built-ins still agree among themselves.
    assert all(c.passed for c in result.comparisons if mutant.name not in (c.a, c.b))
    # Located: the first quantity to disagree, in algorithm order, for every pair with the mutant.
    (r,) = result.cases
    firsts = {pair: c.quantity for pair, c in r.first_disagreements().items()}
    assert set(firsts.values()) == {FIRST[mutant]} and len(firsts) == len(builtin)


@pytest.mark.parametrize("mutant", list(EXPECTED), ids=lambda m: m.name)
def test_cli_exits_1_and_names_the_quantity(mutant, casefile, tmp_path):
    proc = run_cli("run", casefile, "--backends", "manual,fd", "--backend",
                   f"{ROOT / 'tests' / 'mutants.py'}:{mutant.__name__}", "--out", tmp_path / "out")
    assert proc.returncode == 1, proc.stderr
    for q in EXPECTED[mutant]:
        assert f"square-tanh {q} manual vs {mutant.name}:" in proc.stdout
    assert "DISAGREE" in proc.stdout
    layer = FIRST[mutant][-1]
    assert f"manual vs {mutant.name} first disagree at {FIRST[mutant]} (layer {layer})" in proc.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"first disagreement at `{FIRST[mutant]}` (layer {layer})" in report


def test_the_unmutated_reference_passes(casefile, tmp_path):
    """Control: the same command with the correct plugin-loaded manual backend exits 0."""
    plugin = tmp_path / "wrap.py"
    plugin.write_text("from harness.backends import get\n"
                      "class Wrapped:\n    name = 'wrapped-manual'\n"
                      "    def __init__(self): self.inner = get('manual')\n"
                      "    def gradients(self, model, arrays): return self.inner.gradients(model, arrays)\n")
    proc = run_cli("run", casefile, "--backends", "manual,fd", "--backend", f"{plugin}:Wrapped",
                   "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL AGREE" in proc.stdout


def test_transposed_dW_of_wrong_shape_is_an_error_for_that_case(builtin):
    """Where dWᵀ has the wrong shape, the contract check reports it instead of comparing."""
    from harness.cases import Case
    from harness.model import Model

    case = Case("rect", Model((3, 5, 2), ("relu", "softmax"), "cross_entropy", "float64"), 4, 1)
    result = run([case], [builtin["manual"], TransposesDW()])
    (err,) = result.errors
    assert err.backend == "transposes-dW"
    assert "dW1 has shape (5, 3), expected (3, 5)" in err.message
    assert not result.passed
