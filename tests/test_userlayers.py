"""`python -m harness layers FILE.py`: a user's own CS231n- or DLS-style layers checked against
the catalog's manual, torch, jax and fd arms.

The shipped correct examples agree on every layer; their buggy twins (one planted mistake
per backward, listed in each file's PLANTED) disagree on exactly the planted layers, which
is also the proof that every comparison here can fail. The hostile file shows that the
user's code cannot crash the harness or hide a result.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import run_cli
from harness.errors import InputError
from harness.userlayers import FAMILIES, check_file, check_layer, recognise

# The examples' runs are session fixtures: a module fixture is set up again whenever an xdist
# worker comes back to this file from another. Each worker runs them at most once (a few s).
ROOT = Path(__file__).resolve().parent.parent
EX = ROOT / "examples"


def _planted(name: str) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location(name, EX / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PLANTED


def _by_name(results):
    return {r.family.name: r for r in results}


@pytest.fixture(scope="session")
def cs231n():
    # Against manual, torch and fd on every shape; jax below on three layers (its forms of
    # every layer are checked in tests/test_catalog*.py; each shape here is a compile).
    return _by_name(check_file(EX / "cs231n_layers.py", against=("manual", "torch", "fd")))


def test_the_correct_cs231n_example_agrees_with_jax_too():
    res = _by_name(check_file(EX / "cs231n_layers.py", only=["batchnorm", "conv", "lstm"], against=("manual", "jax")))
    assert all(r.verdict == "agrees" for r in res.values()), {n: r.message for n, r in res.items()}
    assert all("yours-vs-jax" in {c.pair for c in r.comparisons} for r in res.values())


@pytest.fixture(scope="session")
def cs231n_buggy():
    # Against the manual arm only: torch, jax and fd agree with it on every shape (the fixture
    # above), and a planted mistake is caught by any of them.
    return _by_name(check_file(EX / "cs231n_layers_buggy.py", against=("manual",)))


@pytest.fixture(scope="session")
def dls():
    return (_by_name(check_file(EX / "dls_layers.py")),
            _by_name(check_file(EX / "dls_layers_buggy.py", against=("manual",))))


def test_every_cs231n_signature_of_the_issue_is_recognised(cs231n):
    assert set(cs231n) == {f.name for f in FAMILIES if f.style == "cs231n"}


def test_the_correct_cs231n_example_agrees_on_every_layer(cs231n):
    bad = {n: (r.verdict, r.message) for n, r in cs231n.items() if not r.passed}
    assert not bad
    assert cs231n["lstm_step"].verdict == "not in the catalog yet"
    for name, r in cs231n.items():
        if r.verdict == "agrees":
            pairs = {c.pair for c in r.comparisons}
            assert {"yours-vs-manual", "yours-vs-torch", "yours-vs-fd", "manual-vs-torch", "torch-vs-fd"} <= pairs, name
            assert len(r.attempts) >= 2, name  # several shapes


def _planted_layers(planted: dict[str, str], style: str) -> set[str]:
    return {f.name for f in FAMILIES if f.style == style and not f.not_yet and set(f.functions) & set(planted)}


def test_the_buggy_cs231n_example_fails_on_exactly_its_planted_layers(cs231n_buggy):
    planted = _planted("cs231n_layers_buggy")
    failing = {n for n, r in cs231n_buggy.items() if not r.passed}
    assert failing == _planted_layers(planted, "cs231n")
    for n in failing:  # a wrong gradient, not a crash: the forward outputs agree
        assert cs231n_buggy[n].verdict == "disagrees", (n, cs231n_buggy[n].message)


@pytest.mark.parametrize("layer, first, mistake", [
    ("batchnorm", "dx", "your out, dgamma, dbeta are right but dx matches 'batchnorm dx = dx̂/σ"),
    ("rnn", "dx", "match 'rnn BPTT with dh_{t−1} = dy_{t−1} only"),
    ("word_embedding", "dW", "dW matches 'embedding dW[x] = da"),
    ("dropout", "dx", "dx matches 'dropout dx = dy ∘ mask, without the 1/(1 − p)"),
    ("affine", "dw", "no known mistake matches"),  # dw / N: no mutant makes it, none is named
])
def test_the_mistake_is_named_only_when_a_known_one_matches(cs231n_buggy, layer, first, mistake):
    r = cs231n_buggy[layer]
    assert r.first == first
    assert mistake in r.mistake, r.mistake


@pytest.mark.parametrize("layer, pattern", [
    ("affine", "all of dw is off by the same factor: 0.25× the right value (1/N, N = 4)"),
    ("softmax_loss", "all of dx is off by the same factor: 5× the right value (N = 5)"),
    ("rnn", "only the last time step of dx is right (t = 3)"),
    ("layernorm", "out, dx, dbeta right; only dgamma wrong"),
])
def test_recognisable_patterns_are_said(cs231n_buggy, layer, pattern):
    assert pattern in cs231n_buggy[layer].pattern


def test_the_dls_examples(dls):
    good, buggy = dls
    assert set(good) == {f.name for f in FAMILIES if f.style == "dls"}
    assert all(r.verdict == "agrees" for r in good.values()), {n: r.message for n, r in good.items() if not r.passed}
    failing = {n for n, r in buggy.items() if not r.passed}
    assert failing == _planted_layers(_planted("dls_layers_buggy"), "dls")
    assert "db is off by the same factor: 5× the right value (m = 5)" in buggy["linear"].pattern
    assert "forgets ∘ g′(z)" in buggy["relu (DLS)"].mistake
    assert "g where g′ belongs" in buggy["sigmoid (DLS)"].mistake
    # The smallest failing input, shrunk by hypothesis, and the command that reproduces it.
    assert buggy["relu (DLS)"].smallest == {"n": 1, "m": 1}
    assert buggy["linear"].smallest["m"] == 2  # db without 1/m shows from m = 2 on
    assert "--only 'linear' --shape m=2," in buggy["linear"].command


def test_shrinking_finds_the_inputs_a_mistake_needs(cs231n_buggy):
    assert cs231n_buggy["rnn"].smallest == {"N": 1, "T": 2, "D": 1, "H": 1}  # the step path needs T = 2
    assert cs231n_buggy["batchnorm"].smallest == {"N": 3, "D": 1}
    conv = cs231n_buggy["conv"].smallest
    assert conv["S"] == 2 and conv["N"] == conv["C"] == conv["F"] == 1  # the stride is the mistake
    assert cs231n_buggy["word_embedding"].smallest["T"] * cs231n_buggy["word_embedding"].smallest["N"] == 2


def test_check_layer_raises_saying_where_and_how_much():
    check_layer(EX / "cs231n_layers.py", "layernorm")  # agrees: returns
    with pytest.raises(AssertionError) as err:
        check_layer(EX / "cs231n_layers_buggy.py", "layernorm", against=("manual",))
    text = str(err.value)
    assert "layernorm: disagrees: layernorm [" in text and "dgamma yours vs" in text and "norm-rel" in text
    assert "smallest failing input: N=1,D=3" in text  # layer norm over 2 features is left out


def test_check_layer_takes_the_functions_themselves():
    from harness import check_layer as exported
    from test_examples_cs231n import EXAMPLE

    exported(EXAMPLE.batchnorm_forward, EXAMPLE.batchnorm_backward, layer="batchnorm", against=("manual", "fd"))
    exported(EXAMPLE.softmax_loss, layer="softmax_loss", against=("manual",))

    def wrong_backward(dout, cache):
        dx, dgamma, dbeta = EXAMPLE.batchnorm_backward(dout, cache)
        return dx, dgamma * 2, dbeta
    with pytest.raises(AssertionError, match="dgamma") as err:
        exported(EXAMPLE.batchnorm_forward, wrong_backward, layer="batchnorm", against=("manual",))
    assert "all of dgamma is off by the same factor: 2×" in str(err.value)
    with pytest.raises(AssertionError, match="not in the catalog yet"):
        exported(EXAMPLE.lstm_step_forward, EXAMPLE.lstm_step_backward, layer="lstm_step")


HOSTILE = '''
import numpy as np

def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    x -= 1  # edits the cached input: the forward's x
    return dx, (x + 1).reshape(x.shape[0], -1).T @ dout, dout.sum(0)

def relu_forward(x):
    print("a print that must not reach --json")
    import os; os._exit(3)

def relu_backward(dout, cache):
    return dout

def softmax_loss(x, y):
    while True:
        pass

def svm_loss(x, y):
    return 1.0

def layernorm_forward(x, gamma, beta, ln_param):
    raise ValueError("not written yet")

def layernorm_backward(dout, cache):
    return dout

def dropout_forward(x, dropout_param):
    return x, None

def dropout_backward(dout, cache):
    return np.full(dout.shape, "a")  # the right shape, not numbers
'''


def test_the_users_code_cannot_crash_hide_or_mislead(tmp_path):
    f = tmp_path / "hostile.py"
    f.write_text(HOSTILE)
    p = run_cli("layers", f, "--timeout", "3", "--json", "--against", "manual", "--out", tmp_path / "out",
                timeout=300)
    assert p.returncode == 1, p.stderr[-2000:]
    data = json.loads(p.stdout)  # the print went to stderr
    assert "a print that must not reach --json" in p.stderr
    got = {lay["layer"]: lay for lay in data["layers"]}
    assert got["affine"]["verdict"] == "modifies its input"
    assert "affine_forward's argument x was modified in place" in got["affine"]["message"]
    assert got["relu"]["verdict"] == "died" and "exit code 3" in got["relu"]["message"]
    assert got["softmax_loss"]["verdict"] == "timed out"
    assert got["svm_loss"]["verdict"] == "wrong output" and "expected (loss, dx)" in got["svm_loss"]["message"]
    assert got["layernorm"]["verdict"] == "raised" and "ValueError: not written yet" in got["layernorm"]["message"]
    assert f"{f}:28)" in got["layernorm"]["message"]  # the line of the user's file that raised
    assert got["dropout"]["verdict"] == "wrong output" and "not real numbers" in got["dropout"]["message"]
    assert {"layers.csv", "layers.md", "layers.json", "layers.html"} <= {q.name for q in (tmp_path / "out").iterdir()}


@pytest.mark.parametrize("source, needle", [
    ("def affine_forward(x, w, b:\n", "bad.py:1: importing it raised SyntaxError"),
    ("import numpy\nraise RuntimeError('boom')\n", "bad.py:2: importing it raised RuntimeError: boom"),
    ("def nothing_known(x):\n    return x\n", "defines none of the recognised layer functions"),
])
def test_a_file_that_cannot_be_checked_is_one_line_and_exit_2(tmp_path, source, needle):
    f = tmp_path / "bad.py"
    f.write_text(source)
    p = run_cli("layers", f, "--out", tmp_path / "o", timeout=120)
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cli_exit_codes_table_and_reproducing_command(tmp_path):
    run = lambda *a: run_cli("layers", *a, "--out", tmp_path / "o", timeout=300)  # noqa: E731
    ok = run(str(EX / "dls_layers.py"), "--only", "linear,relu (DLS)", "--against", "manual,fd")
    assert ok.returncode == 0 and "ALL AGREE: 2 layers match manual, fd" in ok.stdout, ok.stdout + ok.stderr
    bad = run(str(EX / "cs231n_layers_buggy.py"), "--only", "word_embedding", "--against", "manual")
    assert bad.returncode == 1 and "DISAGREE: 1 of 1 layers (word_embedding)" in bad.stdout
    command = next(line for line in bad.stdout.splitlines() if "reproduce:" in line).split("reproduce: ")[1]
    again = subprocess.run(command.replace("python -m", f"{sys.executable} -m", 1) + f" --out {tmp_path / 'o2'}",
                           shell=True, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 1 and "N=1,T=2,V=1,D=1" in again.stdout, again.stdout + again.stderr
    md = (tmp_path / "o2" / "layers.md").read_text()
    assert "| word_embedding | disagrees | dW |" in md and "embedding-assigns" in md
    # A run into the same folder shows the layers in its report.html (the section it embeds).
    from harness.html_report import _layers_section

    section = _layers_section(tmp_path / "o2")
    assert "Your layers:" in section and "word_embedding" in section and "embedding-assigns" in section


def test_float32_and_shape_options():
    res = _by_name(check_file(EX / "cs231n_layers.py", only=["lstm", "conv"], dtype="float32",
                              against=("manual", "torch", "fd")))
    assert all(r.verdict == "agrees" for r in res.values())
    assert {c.dtype for r in res.values() for c in r.comparisons} == {"float32"}
    with pytest.raises(InputError, match="keys N, T, D, H"):
        check_file(EX / "cs231n_layers.py", only=["rnn"], shape="N=1,T=2")
    one = check_file(EX / "cs231n_layers.py", only=["rnn"], shape="N=2,T=3,D=1,H=2")[0]
    assert [a.shape for a in one.attempts] == [{"N": 2, "T": 3, "D": 1, "H": 2}]
    with pytest.raises(InputError, match="needs D >= 1"):
        check_file(EX / "cs231n_layers.py", only=["affine"], shape="N=1,C=0,D=0,M=1")
    # a file whose only layer the catalog cannot check yet: nothing checked is not a pass
    from harness.userlayers import report
    only_not_yet = check_file(EX / "cs231n_layers.py", only=["lstm_step"])
    assert report.verdict_line(only_not_yet).startswith("NOTHING CHECKED")
    assert not report.as_json(only_not_yet, "f", "float64")["passed"]


def test_recognition_is_by_name_and_parameter_count():
    fams = recognise({"affine_forward": ["x", "w", "b"], "affine_backward": ["dout"],  # one parameter short
                      "relu_forward": ["x"], "relu_backward": ["dout", "cache"]})
    assert [f.name for f in fams] == ["relu"]
    # a parameter with a default may be left out; *args takes any number; a third required one may not
    fams = recognise({"affine_forward": ["x", "w", "b", "verbose="], "affine_backward": ["*args"],
                      "relu_forward": ["x", "y"], "relu_backward": ["dout", "cache"]})
    assert [f.name for f in fams] == ["affine"]


def test_importing_harness_userlayers_imports_no_framework():
    code = "import sys, harness.userlayers; print('torch' in sys.modules or 'jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip() == "False"


def test_dropout_keep_probability_convention_is_recognised(tmp_path):
    f = tmp_path / "drop.py"
    f.write_text(textwrap.dedent('''
        import numpy as np
        def dropout_forward(x, dropout_param):
            p = dropout_param["p"]
            np.random.seed(dropout_param["seed"])
            mask = (np.random.rand(*x.shape) >= p) / (1 - p)  # p read as the drop probability
            return x * mask, mask
        def dropout_backward(dout, cache):
            return dout * cache
    '''))
    r = check_file(f, shrink=False)[0]
    assert r.verdict == "disagrees" and r.first == "out"
    assert "reads p as the drop probability" in r.pattern


def test_selfcheck_catches_and_shrinks_every_planted_layer(cs231n_buggy, dls):
    """What `python -m harness selfcheck` adds: both shipped buggy files, every planted layer
    caught and shrunk, every other layer agreeing (here from the fixtures' runs against manual;
    the command runs all four arms)."""
    from harness.selfcheck import layer_files

    runs = {"cs231n_layers_buggy.py": list(cs231n_buggy.values()), "dls_layers_buggy.py": list(dls[1].values())}
    text, ok = layer_files(ROOT, check=lambda path, against: runs[path.name])
    assert ok, text
    n = len(_planted_layers(_planted("cs231n_layers_buggy"), "cs231n")) + len(_planted_layers(_planted("dls_layers_buggy"), "dls"))
    assert text.count("| yes |") == n and "| NO |" not in text
    # and it can fail: a planted layer that agreed would be a NO
    cs231n_buggy["relu"].verdict, saved = "agrees", cs231n_buggy["relu"].verdict
    try:
        text, ok = layer_files(ROOT, check=lambda path, against: runs[path.name])
    finally:
        cs231n_buggy["relu"].verdict = saved
    assert not ok and "| relu | " in text and "| NO |" in text


MIXED = '''
import numpy as np

def relu_forward(x):
    return np.maximum(0, x), x

def relu_backward(dout, cache):
    return dout * (cache > 0)

def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)

def affine_backward(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), xf.T @ dout / x.shape[0], dout.sum(0)  # dw / N
'''


def test_pytest_xval_layers_one_item_per_layer_quantity_pair(tmp_path):
    (tmp_path / "mixed.py").write_text(MIXED)
    (tmp_path / "broken.py").write_text("def relu_forward(x:\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300, cwd=tmp_path)
    listed = run("--xval-layers", "mixed.py", "--collect-only")
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    # affine: out, dx, dw, db; relu: out, dx; each × the 10 pairs of yours, manual, torch, jax, fd
    assert len(ids) == (4 + 2) * 10 and "mixed.py::affine::dw::yours-vs-torch" in ids, listed.stdout
    # The run: against manual and fd (torch and jax: the CLI tests above), 3 pairs per quantity.
    p = run("--xval-layers", "mixed.py", "--xval-layers-against", "manual,fd")
    assert p.returncode == 1, p.stdout
    assert "2 failed, 16 passed" in p.stdout, p.stdout[-3000:]  # affine's dw: yours vs manual, vs fd
    assert "affine [" in p.stdout and "dw yours vs manual" in p.stdout and "dw yours vs fd" in p.stdout
    assert "all of dw is off by the same factor" in p.stdout and "smallest failing input: N=2,C=0,D=1,M=1" in p.stdout
    bad = run("--xval-layers", "broken.py", "--collect-only")
    assert bad.returncode != 0 and "broken.py:1: importing it raised SyntaxError" in bad.stdout
