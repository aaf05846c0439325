"""--jobs gives the same numbers as a serial run; JAX's compilation cache lands in the project."""

import os
import subprocess
import sys

from conftest import ROOT, run_cli


def test_jobs_2_gives_the_serial_results(tmp_path):
    outs = {}
    for jobs in ("1", "2"):
        proc = run_cli("run", "cases/hard.toml", "--backends", "manual,torch,fd", "--jobs", jobs, "--quiet",
                       "--out", tmp_path / jobs)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs[jobs] = (tmp_path / jobs / "agreement.csv").read_bytes()
    assert outs["1"] == outs["2"]


def test_bad_jobs_and_bad_backend_with_jobs_are_input_errors(tmp_path):
    bad = run_cli("run", "cases/hard.toml", "--jobs", "0", "--out", tmp_path)
    assert bad.returncode == 2 and "field '--jobs'" in bad.stderr
    bad = run_cli("run", "cases/hard.toml", "--jobs", "2", "--backends", "manual,torhc", "--out", tmp_path)
    assert bad.returncode == 2 and "did you mean 'torch'" in bad.stderr


def test_jax_compilation_cache_is_written_to_the_configured_folder(tmp_path):
    cache = tmp_path / "jaxcache"
    env = dict(os.environ, XVAL_JAX_CACHE=str(cache))
    code = ("from harness.backends import get; from harness.cases import load_file; "
            "b = get('jax'); c = load_file('cases/hard.toml')[0]; b.gradients(c.model, c.arrays()); "
            "print(b.cache_dir)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(str(cache))
    assert any(cache.iterdir())  # an entry was written: a second process would compile nothing


def test_a_backend_that_fails_to_build_in_a_worker_is_an_error_per_case(tmp_path):
    plugin = tmp_path / "flaky.py"
    plugin.write_text("import multiprocessing\n"
                      "class Flaky:\n    name = 'flaky'\n"
                      "    def __init__(self):\n"
                      "        if multiprocessing.parent_process() is not None:\n"
                      "            raise RuntimeError('cannot build in a worker')\n"
                      "    def gradients(self, model, arrays):\n        raise AssertionError\n")
    proc = run_cli("run", "cases/hard.toml", "--backends", "manual,fd", "--backend", f"{plugin}:Flaky",
                   "--jobs", "2", "--out", tmp_path / "out")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "backend unavailable" in proc.stdout and "cannot build in a worker" in proc.stdout
