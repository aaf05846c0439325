"""The user's code is under test: whatever a plugin does, the run reports it and goes on.

Each plugin below did, before plugins ran in a process of their own, one of: end the run
with exit 0 and no report (os._exit), print a traceback (an exception whose __str__ raises,
a `kind` that raises), hang, corrupt --json with a print, or pick the nudge's tolerance row.
"""

import json

import pytest

from conftest import run_cli

CASES = ('[[case]]\nname = "first"\nlayers = [3, 4, 2]\nactivations = "tanh"\nloss = "cross_entropy"\nbatch = 3\n'
         '\n[[case]]\nname = "second"\nlayers = [3, 4, 2]\nactivations = "tanh"\nloss = "cross_entropy"\n'
         'batch = 3\nseed = 5\n')

HEAD = "import os, sys, time\nfrom harness.backends import get\n\n"
PLUGINS = {
    "exits": "class P:\n    name = 'exits'\n    def gradients(self, model, arrays):\n        os._exit(0)\n",
    "exits-at-import": "os._exit(0)\nclass P:\n    name = 'never'\n",
    "unprintable": ("class Bad(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
                    "class P:\n    name = 'unprintable'\n    def gradients(self, model, arrays):\n"
                    "        raise Bad()\n"),
    "kind-raises": ("class P:\n    name = 'kind-raises'\n    @property\n    def kind(self):\n"
                    "        raise RuntimeError('no kind')\n    def gradients(self, model, arrays):\n"
                    "        return get('manual').gradients(model, arrays)\n"),
    "hangs": "class P:\n    name = 'hangs'\n    def gradients(self, model, arrays):\n        time.sleep(600)\n",
    "prints": ("class P:\n    name = 'prints'\n    def gradients(self, model, arrays):\n"
               "        print('hello from the plugin'); sys.stdout.flush()\n"
               "        return get('manual').gradients(model, arrays)\n"),
    "loose": ("class P:\n    name = 'loose'\n    kind = 'nudge'\n    def gradients(self, model, arrays):\n"
              "        g = get('manual').gradients(model, arrays)\n        g['dW1'] = g['dW1'] * 1.01\n"
              "        return g\n"),
}


def _run(tmp_path, which, *extra):
    (tmp_path / "c.toml").write_text(CASES)
    (tmp_path / f"{which}.py").write_text(HEAD + PLUGINS[which])
    return run_cli("run", tmp_path / "c.toml", "--backends", "manual,fd", "--backend",
                   f"{tmp_path / which}.py:P", "--out", tmp_path / "out", *extra)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_plugin_calling_os_exit_is_an_error_not_the_end_of_the_run(tmp_path, jobs):
    proc = _run(tmp_path, "exits", "--jobs", jobs)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [c["state"] for c in doc["cases"]] == ["error", "error"]
    assert all("ended with exit code 0" in e["message"] for e in doc["errors"])
    assert {p["a"] + " " + p["b"]: p["elements"] for p in doc["pairs"]}["manual fd"] > 0


def test_a_plugin_calling_os_exit_at_import_is_an_error_for_every_case(tmp_path):
    proc = _run(tmp_path, "exits-at-import")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(doc["errors"]) == 2
    assert all("backend unavailable" in e["message"] and "while importing" in e["message"]
               for e in doc["errors"])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_exception_that_cannot_be_printed_is_reported(tmp_path, jobs):
    proc = _run(tmp_path, "unprintable", "--jobs", jobs)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [e["message"] for e in doc["errors"]] == ["Bad: <str() of the exception raised RuntimeError>"] * 2


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_kind_attribute_that_raises_means_the_analytic_row(tmp_path, jobs):
    proc = _run(tmp_path, "kind-raises", "--jobs", jobs)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert "raised" in doc["kind_notes"]["kind-raises"]
    rows = {(p["a"], p["b"]): p["rows"] for p in doc["pairs"]}
    assert rows[("manual", "kind-raises")] == ["float64 analytic"]


def test_a_hanging_plugin_is_stopped_after_the_timeout(tmp_path):
    proc = _run(tmp_path, "hangs", "--timeout", "3")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [e["backend"] for e in doc["errors"]] == ["hangs", "hangs"]
    assert all("did not answer within 3 s" in e["message"] for e in doc["errors"])


def test_a_printing_plugin_does_not_corrupt_json_output(tmp_path):
    proc = _run(tmp_path, "prints", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is the JSON document and nothing else
    assert doc["passed"] and "hello from the plugin" in proc.stderr


def test_a_plugin_cannot_pick_the_nudge_row_for_itself(tmp_path):
    """dW1 off by 1%: inside the nudge row (rtol 3e-2), far outside the analytic one."""
    proc = _run(tmp_path, "loose")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(p["a"], p["b"]): p["rows"] for p in doc["pairs"]}
    assert rows[("manual", "loose")] == ["float64 analytic"]
    assert "--trust-kind loose" in doc["kind_notes"]["loose"]
    assert "declares kind 'nudge'" in (tmp_path / "out" / "report.md").read_text()
    # The user can vouch for it: then the nudge row is used, and the 1% passes against manual.
    vouched = _run(tmp_path, "loose", "--trust-kind", "loose", "--backends", "manual,torch")
    # Checked first: a run that failed leaves the previous results.json in place.
    assert vouched.returncode == 0, (vouched.stdout, vouched.stderr)
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(p["a"], p["b"]): p["rows"] for p in doc["pairs"]}
    assert rows[("manual", "loose")] == ["float64 nudge"] and not doc["kind_notes"], doc["kind_notes"]


def test_a_plugin_named_with_markup_is_escaped_in_the_html(tmp_path):
    (tmp_path / "c.toml").write_text(CASES)
    (tmp_path / "x.py").write_text(HEAD + "class P:\n    name = '<b>x</b>&<script>alert(1)</script>'\n"
                                   "    def gradients(self, model, arrays):\n"
                                   "        g = get('manual').gradients(model, arrays)\n"
                                   "        g['db1'] = 2 * g['db1']\n        return g\n")
    proc = run_cli("run", tmp_path / "c.toml", "--backends", "manual,fd", "--backend",
                   f"{tmp_path / 'x.py'}:P", "--out", tmp_path / "out")
    assert proc.returncode == 1
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>alert" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
