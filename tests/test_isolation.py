"""Importing harness imports no framework; manual and fd never import torch or jax. The pytest
plugin, loaded by every pytest session, imports not even pandas or numpy."""

import subprocess
import sys

from conftest import ROOT

PROBE = """
import sys
{body}
loaded = sorted(m for m in {modules!r} if m in sys.modules)
assert not loaded, loaded
print('clean')
"""


FRAMEWORKS = ("torch", "jax", "jaxlib")


def _probe(body, modules=FRAMEWORKS):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body=body, modules=modules)], cwd=ROOT,
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
    proc = subprocess.run([sys.executable, "-c", PROBE.format(body="from harness import get_backend; get_backend('torch')",
                                                                  modules=FRAMEWORKS)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "torch" in proc.stderr


def test_the_pytest_plugin_imports_no_pandas_numpy_torch_or_jax():
    # Every pytest session where the harness is installed imports it (entry point pytest11).
    _probe("import harness.pytest_plugin", modules=("pandas", "numpy", "torch", "jax", "jaxlib"))
    _probe("import harness", modules=("pandas", "numpy", "torch", "jax", "jaxlib"))


def test_the_public_names_are_imported_on_first_use():
    _probe("""
import harness
from harness import *  # every name of __all__
import harness.backends, harness.cases, harness.compare, harness.report, harness.runner, harness.tolerances
names = dict(Backend=harness.backends.Backend, get_backend=harness.backends.get, Case=harness.cases.Case,
             load_file=harness.cases.load_file, load_files=harness.cases.load_files, write_report=harness.report.write_report,
             run=harness.runner.run, run_case=harness.runner.run_case, RunResult=harness.runner.RunResult,
             TOLERANCES=harness.tolerances.TOLERANCES)
for name, value in names.items():
    assert getattr(harness, name) is value is globals()[name], name
assert sorted(harness.__all__) == sorted(n for n in dir(harness) if n in harness.__all__)
# harness.compare stays the function, though harness.runner imported the submodule harness.compare
assert callable(harness.compare) and harness.compare.__name__ == 'compare', harness.compare
import harness.model
assert harness.model.Model is harness.Model  # a submodule is still an attribute
try:
    harness.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError('no AttributeError')
""")
