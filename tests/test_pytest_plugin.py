"""pytest --xval: one test item per case × quantity × backend pair, readable ids and failures."""

import subprocess
import sys

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
    (tmp_path / "cases.toml").write_text(CASE)
    proc = _pytest(tmp_path, "--xval", "cases.toml", "-n", "2", "--xval-report", "out")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "180 passed" in proc.stdout  # 18 quantities × 10 pairs of the five built-ins
    assert (tmp_path / "out" / "report.html").exists() and (tmp_path / "out" / "results.json").exists()


def test_without_xval_the_plugin_collects_nothing(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    assert True\n")
    proc = _pytest(tmp_path)
    assert "1 passed" in proc.stdout
