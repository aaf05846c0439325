"""Importing harness imports no framework; manual and fd never import torch or jax."""

import subprocess
import sys

from conftest import ROOT

PROBE = """
import sys
{body}
loaded = sorted(m for m in ('torch', 'jax', 'jaxlib') if m in sys.modules)
assert not loaded, loaded
print('clean')
"""


def _probe(body):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr


def test_import_harness_imports_no_framework():
    _probe("import harness, harness.backends, harness.cli, harness.report, harness.runner, harness.claims, "
           "harness.studies, harness.directional, harness.explain, harness.html_report, harness.results, "
           "harness.environment, harness.pytest_plugin")


def test_numpy_backends_run_without_torch_or_jax():
    _probe("""
from harness import get_backend, load_file, run
cases = load_file('cases/default.toml')[:5]
result = run(cases, [get_backend(n) for n in ('manual', 'manual_columns', 'fd', 'fd-forward', 'nudge',
                                                 'fd-richardson', 'fd-complex', 'fd-directional')])
assert result.passed
""")


def test_the_probe_can_fail():
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body="from harness import get_backend; get_backend('torch')")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "torch" in proc.stderr
