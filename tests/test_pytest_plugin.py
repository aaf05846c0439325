"""pytest --xval: one test item per case × quantity × backend pair, readable ids and failures."""

import json
import subprocess
import sys

import pytest

CASE = """
[[case]]
name = "tanh-3-layer"
layers = [4, 4, 4, 4]
activations = ["tanh", "tanh", "softmax"]
loss = "cross_entropy"
batch = 5
"""


def _pytest(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *map(str, args)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_items_and_ids(tmp_path):
    (tmp_path / "cases.toml").write_text(CASE)
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual,torch,jax", "--collect-only")
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    # 18 quantities (J, z/a per layer, dz/dW/db per layer, da below the top) × 3 pairs
    assert len(ids) == 18 * 3
    assert "cases.toml::tanh-3-layer::dW2::manual-vs-jax" in ids


def test_a_wrong_gradient_fails_with_where_and_how_much(tmp_path):
    (tmp_path / "cases.toml").write_text(CASE)
    from conftest import ROOT
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual",
                   "--xval-backend", f"{ROOT / 'tests' / 'mutants.py'}:ForgetsGPrimeInLayer2")
    assert proc.returncode == 1
    assert "FAILED cases.toml::tanh-3-layer::dz2::manual-vs-forgets-g-prime-in-layer-2" in proc.stdout
    assert "tanh-3-layer dz2 manual vs forgets-g-prime-in-layer-2: 20 / 20 elements off" in proc.stdout
    assert "7 failed, 11 passed" in proc.stdout  # dz2 dW2 db2 da1 dz1 dW1 db1


def test_xdist_and_the_report(tmp_path):
    """Two xdist workers compute the items and one report is written. The workers run manual,
    manual_columns and jax (the plugin's only runs of the last two; torch and fd run in the
    tests below): three of the five built-ins, about 10 s less. Without --xval-backends the
    items are the pairs of the five built-ins: checked at collection, which builds no backend."""
    (tmp_path / "cases.toml").write_text(CASE)
    default = _pytest(tmp_path, "--xval", "cases.toml", "--collect-only")
    assert default.returncode == 0, default.stdout[-2000:]
    assert "180 tests collected" in default.stdout  # 18 quantities × 10 pairs of the five built-ins
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual,manual_columns,jax",
                   "-n", "2", "--xval-report", "out")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "bringing up nodes" in proc.stdout and "54 passed" in proc.stdout  # 18 quantities × 3 pairs
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "results.json").exists()


def test_without_xval_the_plugin_collects_nothing(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    proc = _pytest(tmp_path)
    assert "1 passed" in proc.stdout


# --------------------------------------------------------------------------- bad input


BAD_FILES = {
    "malformed": ("[[case]\nname = 'x'\n", "bad.toml: malformed TOML"),
    "unknown key": (CASE + "colour = 'red'\n", "bad.toml: case 'tanh-3-layer': field 'colour': unknown key"),
    "unknown top-level key": ("[[cases]]\nname = 'x'\n", "bad.toml: unknown top-level key 'cases'"),
}


def _no_internal_error(proc):
    out = proc.stdout + proc.stderr
    assert "INTERNALERROR" not in out and "Traceback" not in out, out[-3000:]
    assert "harness/" not in out and "harness\\" not in out, out[-3000:]  # no frames of ours


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_case_file_is_a_collection_error_with_one_line(tmp_path, kind):
    text, message = BAD_FILES[kind]
    (tmp_path / "bad.toml").write_text(text)
    (tmp_path / "good.toml").write_text(CASE)
    proc = _pytest(tmp_path, "--xval", "good.toml", "--xval", "bad.toml", "--xval-backends", "manual,fd")
    _no_internal_error(proc)
    assert proc.returncode == 2, proc.stdout[-2000:]  # interrupted: errors during collection
    assert "ERROR collecting bad.toml" in proc.stdout and "ERROR bad.toml" in proc.stdout
    # The section of bad.toml is the InputError's one line, nothing else.
    section = proc.stdout.split("ERROR collecting bad.toml")[1].split("=====")[0].strip("_ \n").splitlines()
    assert len(section) == 1 and message in section[0], section


def _usage_error(tmp_path, *args):
    (tmp_path / "cases.toml").write_text(CASE)
    proc = _pytest(tmp_path, "--xval", "cases.toml", *args)
    _no_internal_error(proc)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # pytest's usage error
    assert "passed" not in proc.stdout and "failed" not in proc.stdout  # nothing ran
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return line


def test_a_missing_backend_file_is_a_usage_error(tmp_path):
    line = _usage_error(tmp_path, "--xval-backends", "manual", "--xval-backend", "nope.py:Mine")
    assert line == "ERROR: --xval-backend: backend file 'nope.py' does not exist"


def test_a_backend_file_without_the_class_is_a_usage_error(tmp_path):
    (tmp_path / "mine.py").write_text("class Other:\n    pass\n")
    line = _usage_error(tmp_path, "--xval-backends", "manual", "--xval-backend", "mine.py:Mine")
    assert line.startswith("ERROR: --xval-backend: 'mine.py' has no class 'Mine'")


def test_an_unknown_backend_name_is_a_usage_error(tmp_path):
    line = _usage_error(tmp_path, "--xval-backends", "manual,trch")
    assert line.startswith("ERROR: --xval-backends: unknown backend 'trch' (did you mean 'torch'?)")


def test_two_backends_of_one_name_are_a_usage_error(tmp_path):
    line = _usage_error(tmp_path, "--xval-backends", "manual,fd,manual")
    assert "two backends are named 'manual'" in line


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_an_unwritable_report_dir_is_a_usage_error_before_anything_runs(tmp_path, where):
    (tmp_path / "afile").write_text("")  # a path under a regular file cannot be a directory, even for root
    out = "afile/out" if where == "under-a-file" else "afile"
    line = _usage_error(tmp_path, "--xval-backends", "manual,fd", "--xval-report", out)
    assert line.startswith(f"ERROR: --xval-report: cannot write to {out!r}")


def test_a_report_without_xval_is_a_usage_error(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    proc = _pytest(tmp_path, "--xval-report", "out")
    _no_internal_error(proc)
    assert proc.returncode == 4 and "--xval-report needs --xval" in proc.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- items


def test_a_backend_name_containing_vs_keeps_its_items_whole(tmp_path):
    (tmp_path / "cases.toml").write_text(CASE)
    (tmp_path / "mine.py").write_text("from harness.backends.manual import ManualBackend\n\n"
                                      "class Mine(ManualBackend):\n    name = 'a-vs-b'\n")
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual,fd",
                   "--xval-backend", "mine.py:Mine", "-rA")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "54 passed" in proc.stdout  # 18 quantities × 3 pairs
    assert "PASSED cases.toml::tanh-3-layer::dW2::manual-vs-a-vs-b" in proc.stdout
    assert "PASSED cases.toml::tanh-3-layer::dW2::fd-vs-a-vs-b" in proc.stdout


def test_same_case_name_in_two_files_is_computed_per_file_and_reported(tmp_path):
    # The same name, two networks: forgetting g' in layer 2 is harmless where g is the identity.
    (tmp_path / "identity.toml").write_text(CASE.replace('"tanh", "tanh", "softmax"', '"tanh", "identity", "softmax"'))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tanh.toml").write_text(CASE)
    from conftest import ROOT
    proc = _pytest(tmp_path, "--xval", "identity.toml", "--xval", "sub/tanh.toml", "--xval-backends", "manual",
                   "--xval-backend", f"{ROOT / 'tests' / 'mutants.py'}:ForgetsGPrimeInLayer2",
                   "--xval-report", "out")
    _no_internal_error(proc)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "7 failed, 29 passed" in proc.stdout
    assert "FAILED sub/tanh.toml::tanh-3-layer::dz2::manual-vs-forgets-g-prime-in-layer-2" in proc.stdout
    assert "FAILED identity.toml::" not in proc.stdout
    names = [c["name"] for c in json.loads((tmp_path / "out" / "results.json").read_text())["cases"]]
    assert names == ["identity.toml::tanh-3-layer", "sub/tanh.toml::tanh-3-layer"]


def test_a_backend_error_fails_the_items_of_its_pairs_only(tmp_path):
    (tmp_path / "cases.toml").write_text(CASE)
    (tmp_path / "broken.py").write_text("class Broken:\n    name = 'broken'\n\n"
                                        "    def gradients(self, model, arrays):\n"
                                        "        raise RuntimeError('no gradients today')\n")
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual,fd", "--xval-backend", "broken.py:Broken")
    assert proc.returncode == 1
    assert "36 failed, 18 passed" in proc.stdout  # manual-vs-broken and fd-vs-broken fail, manual-vs-fd passes
    assert "backend broken raised RuntimeError: no gradients today" in proc.stdout
    assert "FAILED cases.toml::tanh-3-layer::J::manual-vs-fd" not in proc.stdout


def test_a_plugin_calling_os_exit_fails_its_items_and_the_session_goes_on(tmp_path):
    """In-process, os._exit(0) ended the pytest session with exit 0 and no summary."""
    (tmp_path / "cases.toml").write_text(CASE)
    (tmp_path / "quits.py").write_text("import os\nclass Quits:\n    name = 'quits'\n\n"
                                       "    def gradients(self, model, arrays):\n        os._exit(0)\n")
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual,fd", "--xval-backend", "quits.py:Quits")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "36 failed, 18 passed" in proc.stdout
    assert "ended with exit code 0" in proc.stdout


def test_an_item_with_nothing_compared_is_skipped_not_passed(tmp_path):
    (tmp_path / "cases.toml").write_text(CASE)
    (tmp_path / "masks.py").write_text(
        "import numpy as np\nfrom harness.backends.manual import ManualBackend\n\n"
        "class Masks(ManualBackend):\n    name = 'masks'\n\n"
        "    def gradients(self, model, arrays):\n"
        "        out = super().gradients(model, arrays)\n"
        "        out['dW1'] = np.ma.MaskedArray(out['dW1'], mask=True)  # computed nothing\n"
        "        return out\n")
    proc = _pytest(tmp_path, "--xval", "cases.toml", "--xval-backends", "manual",
                   "--xval-backend", "masks.py:Masks", "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "17 passed, 1 skipped" in proc.stdout
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert "nothing compared" in line


def test_the_verdict_of_a_comparison_of_no_elements_is_a_skip():
    # An empty quantity: compare() gives no note, but nothing was compared all the same.
    from harness.compare import Comparison
    from harness.pytest_plugin import verdict
    c = Comparison(case="c", quantity="dW1", a="x", b="y", kind="analytic", dtype="float64", max_abs=0.0,
                   max_rel=0.0, norm_rel=0.0, index=(), a_at=float("nan"), b_at=float("nan"), allowed_at=float("nan"),
                   n_off=0, n_checked=0, n_total=0, rtol=1e-7, atol=1e-9, scale=0.0, floor=0.0, tol_used=0.0,
                   passed=True)

    class Result:
        errors, comparisons, notes = [], [c], {}

    with pytest.raises(pytest.skip.Exception, match="nothing compared"):
        verdict(Result, "dW1", "x", "y")


# --------------------------------------------------------------------------- imports


def test_a_session_without_xval_imports_no_pandas_torch_or_jax(tmp_path):
    # The plugin is loaded by every session (entry point): collecting this file must not pull
    # in the harness's heavy dependencies.
    (tmp_path / "test_x.py").write_text(
        "import sys\n"
        "assert 'harness.pytest_plugin' in sys.modules  # the plugin was loaded\n"
        "LOADED = [m for m in ('pandas', 'torch', 'jax') if m in sys.modules]\n"
        "assert not LOADED, LOADED\n\n"
        "def test_x():\n    pass\n")
    proc = _pytest(tmp_path, "--co")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "test_x.py::test_x" in proc.stdout


def test_case_files_outside_the_rootdir_keep_their_paths_in_the_ids(tmp_path):
    (tmp_path / "root").mkdir()  # --rootdir: else pytest widens the rootdir to hold the --xval paths
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "cases.toml").write_text(CASE)
    proc = _pytest(tmp_path / "root", "--rootdir", ".", "--xval", "../one/cases.toml", "--xval", "../two/cases.toml",
                   "--xval-backends", "manual,fd", "--collect-only")
    assert proc.returncode == 0, proc.stdout[-2000:]
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) == len(set(ids)) == 2 * 18
    assert "../one/cases.toml::tanh-3-layer::dW2::manual-vs-fd" in ids
    assert "../two/cases.toml::tanh-3-layer::dW2::manual-vs-fd" in ids


NETWORK_CASE = """
[[case]]
name = "bn-net"
input = [4]
batch = 6
loss = "multiclass_hinge"
l2 = 0.1
network = [{layer = "dense", units = 5}, {layer = "batchnorm"}, {layer = "tanh"},
           {layer = "dropout", rate = 0.5}, {layer = "dense", units = 3}]
"""


def test_network_cases_are_items_too_and_a_wrong_layer_backward_fails(tmp_path):
    """A catalog network: one item per quantity of its algorithm order and pair; a plugin whose
    batch-norm backward treats μ and σ as constants fails first at the layer below the norm."""
    (tmp_path / "net.toml").write_text(NETWORK_CASE)
    ok = _pytest(tmp_path, "--xval", "net.toml", "--xval-backends", "manual,torch")
    assert ok.returncode == 0, ok.stdout[-2000:]
    assert "17 passed" in ok.stdout  # J, a1..a5, da5..da1, dW1 db1 dgamma2 dbeta2 dW5 db5
    (tmp_path / "wrong.py").write_text(
        "from harness.mutants import BatchnormStatsConstant as Wrong\n")
    bad = _pytest(tmp_path, "--xval", "net.toml", "--xval-backends", "manual",
                  "--xval-backend", "wrong.py:Wrong")
    assert bad.returncode == 1
    assert "FAILED net.toml::bn-net::da1::manual-vs-batchnorm-stats-constant" in bad.stdout
