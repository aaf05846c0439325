"""report.html is self-contained and complete; results.json validates against its schema."""

import json
import re

import jsonschema
import pytest

from conftest import run_cli
from harness.results import SCHEMA_VERSION, schema

CASES = """
[[case]]
name = "ce"
layers = [3, 5, 4]
activations = ["tanh", "softmax"]
loss = "cross_entropy"
batch = 6

[[case]]
name = "sse-f32"
layers = [2, 3, 2]
activations = ["relu", "identity"]
loss = "half_sse"
batch = 3
dtype = "float32"
"""

WRONG = ("from harness.backends import get\n"
         "class Wrong:\n    name = 'wrong'\n"
         "    def gradients(self, model, arrays):\n"
         "        g = get('manual').gradients(model, arrays)\n"
         "        g['dz1'] = 2 * g['dz1']\n        g['dW1'] = 2 * g['dW1']\n        return g\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    casefile = tmp / "cases.toml"
    casefile.write_text(CASES)
    (tmp / "wrong.py").write_text(WRONG)
    good = run_cli("run", casefile, "--out", tmp / "good")
    bad = run_cli("run", casefile, "--backends", "manual,torch", "--backend", f"{tmp / 'wrong.py'}:Wrong",
                  "--out", tmp / "bad")
    return tmp, good, bad


def test_exit_codes(runs):
    _, good, bad = runs
    assert good.returncode == 0 and bad.returncode == 1


def test_report_html_is_self_contained_and_complete(runs):
    tmp, _, _ = runs
    page = (tmp / "good" / "report.html").read_text()
    assert 'id="verdict">Verdict: all agree<' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) >= 1  # the heatmap, embedded
    assert not re.search(r'(src|href)=["\']?(https?:)?//', page)  # no network fetches
    for text in ("Agreement heatmap", "<h2>Summary</h2>", "<h2>Cases</h2>", "<h2>Environment</h2>",
                 "numpy_blas", "jax.x64", "torch.float32_matmul_precision", "case_files"):
        assert text in page, text
    assert page.count("<details") == 2 and "dz1" in page


def test_failing_cells_are_highlighted_and_the_layer_named(runs):
    tmp, _, _ = runs
    page = (tmp / "bad" / "report.html").read_text()
    assert "Verdict: " in page and "disagreement" in page and 'class="verdict bad"' in page
    assert "first disagreement at <code>dz1</code> (layer 1)" in page
    assert re.search(r'class="[^"]*fail[^"]*"', page)


def test_results_json_validates_against_its_schema(runs):
    tmp, _, _ = runs
    for run in ("good", "bad"):
        doc = json.loads((tmp / run / "results.json").read_text())
        jsonschema.validate(doc, schema())
        assert doc["schema_version"] == SCHEMA_VERSION
    bad = json.loads((tmp / "bad" / "results.json").read_text())
    assert bad["passed"] is False
    assert {c["quantity"] for c in bad["comparisons"] if not c["passed"]} == {"dz1", "dW1"}
    assert bad["cases"][0]["first_disagreements"] == {"manual-vs-wrong": "dz1", "torch-vs-wrong": "dz1"}


def test_the_schema_can_fail():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema": "backprop-xval/results", "schema_version": SCHEMA_VERSION + 1}, schema())


def test_quiet_and_json_output(tmp_path):
    casefile = tmp_path / "c.toml"
    casefile.write_text(CASES)
    quiet = run_cli("run", casefile, "--backends", "manual,fd", "--quiet", "--out", tmp_path / "q")
    assert quiet.returncode == 0 and len(quiet.stdout.strip().splitlines()) == 1
    assert quiet.stdout.startswith("ALL AGREE: 2 cases")
    js = run_cli("run", casefile, "--backends", "manual,fd", "--json", "--out", tmp_path / "j")
    doc = json.loads(js.stdout)
    jsonschema.validate(doc, schema())
    assert doc["verdict"] == "all agree"


class _NaNAndRaises:
    """NaN in dW1 on one case (a non-finite comparison, written as null) and an error on
    another: what results.json must carry through its streamed writer."""

    name, kind = "odd \"arm\" ✓", "analytic"

    def gradients(self, model, arrays):
        from harness.backends import get

        if arrays["X"].shape[0] == 3:
            raise RuntimeError("raised on purpose: ünïcode and \"quotes\"")
        out = get("manual").gradients(model, arrays)
        out["dW1"] = out["dW1"].copy()
        out["dW1"].flat[0] = float("nan")
        return out


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 4096])
def test_results_json_written_in_pieces_is_to_json_text(tmp_path, rows_per_chunk, builtin):
    """The report writes results.json piece by piece (``json_chunks``): the pieces join to
    ``to_json``'s text, byte for byte, at any chunk size, also with no comparisons at all."""
    from harness.cases import Case
    from harness.model import Model
    from harness.results import json_chunks, to_json
    from harness.runner import run

    cases = [Case(name, Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64"), m, i)
             for i, (name, m) in enumerate([("plain", 4), ("näme \"quoted\"", 3), ("third", 5)])]
    result = run(cases, [builtin["manual"], builtin["torch"], _NaNAndRaises()])
    assert result.errors and any(c.max_abs != c.max_abs or c.max_abs == float("inf") for c in result.comparisons)
    from harness import environment

    env = environment.collect("python -m harness run ü.toml", ["ü.toml"])
    text = to_json(result, env)
    assert "".join(json_chunks(result, env, rows_per_chunk)) == text
    doc = json.loads(text)
    jsonschema.validate(doc, schema())
    assert len(doc["comparisons"]) == len(result.comparisons) and doc["errors"][0]["backend"] == _NaNAndRaises.name
    empty = run(cases[1:2], [_NaNAndRaises()])  # the only backend raises: nothing compared
    assert not empty.comparisons
    assert "".join(json_chunks(empty, env, rows_per_chunk)) == to_json(empty, env)
