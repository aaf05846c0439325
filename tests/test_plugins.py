"""Plugin backends: from a file, from an entry point; broken ones become per-case errors."""

import numpy as np
import pytest

from conftest import run_cli
from harness.backends import BackendOutputError, check_output, get
from harness.cases import Case
from harness.model import Model
from harness.runner import run

MODEL = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
CASES = [Case("first", MODEL, 5, 1), Case("second", MODEL, 5, 2)]

PLUGINS = '''
import numpy as np
from harness.backends import get


class Wrapped:
    name = "wrapped"
    def __init__(self):
        self.manual = get("manual")
    def gradients(self, model, arrays):
        return self.manual.gradients(model, arrays)


class FailsOnSecond(Wrapped):
    name = "fails-on-second"
    def gradients(self, model, arrays):
        if arrays["X"][0, 0] == SECOND_X00:
            raise ValueError("boom on purpose")
        return super().gradients(model, arrays)


class NoGradients:
    name = "no-gradients"
'''


def _second_x00():
    return float(CASES[1].arrays()["X"][0, 0])


def test_a_plugin_that_raises_is_an_error_for_that_case_only(tmp_path):
    ns = {}
    exec(PLUGINS.replace("SECOND_X00", repr(_second_x00())), ns)
    result = run(CASES, [get("manual"), ns["FailsOnSecond"](), get("fd")])
    first, second = result.cases
    assert first.passed and len(first.comparisons) == 3 * len(MODEL.algorithm_order())
    (err,) = second.errors
    assert err.backend == "fails-on-second" and err.message == "ValueError: boom on purpose"
    assert "Traceback" in err.detail
    assert len(second.comparisons) == len(MODEL.algorithm_order())  # manual vs fd only
    assert all(c.passed for c in second.comparisons)
    assert not result.passed


def test_cli_plugin_from_file_agrees_and_a_raising_one_exits_1(tmp_path):
    plugin = tmp_path / "plugins.py"
    plugin.write_text(PLUGINS.replace("SECOND_X00", "None"))
    case = tmp_path / "c.toml"
    case.write_text('[[case]]\nname = "c"\nlayers = [3, 4, 2]\nactivations = "tanh"\n'
                    'loss = "cross_entropy"\nbatch = 5\n')
    ok = run_cli("run", case, "--backends", "manual,fd", "--backend", f"{plugin}:Wrapped",
                 "--out", tmp_path / "o1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "backends manual, fd, wrapped" in ok.stdout
    bad = run_cli("run", case, "--backends", "manual,fd", "--backend", f"{plugin}:NoGradients",
                  "--out", tmp_path / "o2")
    assert bad.returncode == 2 and "has no gradients(model, arrays) method" in bad.stderr


def test_entry_point_backend_is_found_by_name(tmp_path):
    (tmp_path / "myplug.py").write_text(PLUGINS.replace("SECOND_X00", "None"))
    dist = tmp_path / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.backends]\nmine = myplug:Wrapped\n")
    case = tmp_path / "c.toml"
    case.write_text('[[case]]\nname = "c"\nlayers = [3, 2]\nactivations = ["softmax"]\n'
                    'loss = "cross_entropy"\nbatch = 4\n')
    import os
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = run_cli("run", case, "--backends", "manual,mine", "--out", tmp_path / "o", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backends manual, wrapped" in proc.stdout


def _good():
    return get("manual").gradients(MODEL, CASES[0].arrays())


@pytest.mark.parametrize("mutate, expect", [
    (lambda g: {k: v for k, v in g.items() if k != "db2"}, "missing keys ['db2']"),
    (lambda g: {**g, "dW1": g["dW1"].T}, "dW1 has shape (4, 3), expected (3, 4)"),
    (lambda g: {**g, "dW2": g["dW2"].astype(np.float32)}, "dW2 has dtype float32, the case is float64 (a silent downcast)"),
    (lambda g: {**g, "db1": g["db1"].tolist()}, "db1 is a builtins.list, expected a numpy array"),
    (lambda g: [1, 2], "returned list, expected a dict"),
], ids=["missing-key", "wrong-shape", "downcast", "not-an-array", "not-a-dict"])
def test_contract_violations_say_what_was_returned(mutate, expect):
    with pytest.raises(BackendOutputError) as err:
        check_output(MODEL, mutate(_good()), 5)
    assert expect in str(err.value)


def test_the_contract_check_accepts_a_correct_result():
    out = check_output(MODEL, _good(), 5)
    assert set(out) == {"J", "dW1", "db1", "dW2", "db2", "z1", "a1", "z2", "a2", "dz2", "da1", "dz1"}
    assert out["J"].shape == () and out["dz1"].shape == (5, 4)


def test_intermediates_are_optional_but_checked_when_present():
    required = {k: v for k, v in _good().items() if k in MODEL.quantities()}
    assert set(check_output(MODEL, required, 5)) == set(MODEL.quantities())
    with pytest.raises(BackendOutputError, match=r"dz1 has shape \(4, 5\), expected \(5, 4\)"):
        check_output(MODEL, {**_good(), "dz1": _good()["dz1"].T}, 5)


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")
def test_jax_with_x64_switched_off_is_caught_as_a_downcast(builtin):
    """The precision trap: JAX silently computing a float64 case in float32."""
    import jax

    arrays = CASES[0].arrays()
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(BackendOutputError, match="silent downcast"):
            check_output(MODEL, builtin["jax"].gradients(MODEL, arrays), 5)
    finally:
        jax.config.update("jax_enable_x64", True)
    check_output(MODEL, builtin["jax"].gradients(MODEL, arrays), 5)


def test_a_plugin_calling_sys_exit_is_an_error_record_not_the_end_of_the_run():
    class Exiter:
        name = "exiter"

        def gradients(self, model, arrays):
            import sys
            sys.exit(0)

    result = run(CASES, [get("manual"), Exiter(), get("fd")])
    assert [e.message for e in result.errors] == ["SystemExit: 0", "SystemExit: 0"]
    assert all(len(r.comparisons) == len(MODEL.algorithm_order()) for r in result.cases)
    assert not result.passed


def test_a_plugin_whose_name_raises_is_bad_input(tmp_path):
    from harness.backends import load_plugin
    from harness.errors import InputError

    plugin = tmp_path / "p.py"
    plugin.write_text("class P:\n    @property\n    def name(self):\n        raise RuntimeError('no')\n"
                      "    def gradients(self, model, arrays):\n        return {}\n")
    with pytest.raises(InputError, match="building the backend failed: RuntimeError: no"):
        load_plugin(f"{plugin}:P")
