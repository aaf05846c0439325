"""Tests for the TOML case loader (harness/cases.py) and the CLI's handling of bad input.

Every bad input must raise ``InputError`` naming the file, the case (its name, or
"case #N" / "sweep #N" when the name is missing) and the field; through the CLI it
must become exit code 2 with a single ``error: ...`` line on stderr.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cases import Case, load_file, load_files
from harness.errors import InputError

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- helpers

# A valid case, each value written as raw TOML so tests can put anything in its place.
GOOD = {
    "name": '"net"',
    "layers": "[3, 4, 2]",
    "activations": '["tanh", "softmax"]',
    "loss": '"cross_entropy"',
    "batch": "2",
    "seed": "7",
}


def case_toml(drop: tuple[str, ...] = (), values: dict[str, str] | None = None,
              table: str = "case", **over: str) -> str:
    """One ``[[case]]`` table: GOOD with ``over`` replacing/adding keys and ``drop`` removed."""
    fields = {**GOOD, **over}
    lines = [f"[[{table}]]"] + [f"{k} = {v}" for k, v in fields.items() if k not in drop]
    if values is not None:
        lines.append(f"[{table}.values]")
        lines += [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def sweep_toml(drop: tuple[str, ...] = (), **over: str) -> str:
    fields = {"name": '"sw"', "count": "3", "seed": "11", **over}
    return "\n".join(["[[sweep]]"] + [f"{k} = {v}" for k, v in fields.items()
                                       if k not in drop]) + "\n"


def write(tmp_path: Path, text: str, name: str = "cases.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load_error(path: Path) -> InputError:
    with pytest.raises(InputError) as info:
        load_file(path)
    return info.value


def check_error(err: InputError, path: Path, case: str | None, field: str | None,
                fragments: tuple[str, ...]) -> None:
    assert err.file == str(path)
    assert err.case == case
    assert err.field == field
    for frag in fragments:
        assert frag in err.message, f"{frag!r} not in {err.message!r}"
    # str(err) is exactly one line: "FILE: case 'NAME': field 'FIELD': message"
    text = str(err)
    assert "\n" not in text
    expected = [str(path)]
    if case is not None:
        expected.append(f"case {case!r}")
    if field is not None:
        expected.append(f"field {field!r}")
    assert text == ": ".join(expected + [err.message])


# --------------------------------------------------------------------------- bad input table

# (id, file text, expected case label, expected field, fragments of the message)
BAD = [
    # --- file level
    ("malformed-toml", "[[case]]\nname = \"x\"\nlayers = 3 4\nloss = 1\n", None, None,
     ("malformed TOML", "line 3")),
    ("malformed-toml-unclosed-array", "[[case]]\nname = \"x\"\nlayers = [3, 4\n", None, None,
     ("malformed TOML", "Unclosed array")),
    ("unknown-top-level-key", '[[cases]]\nname = "x"\n', None, None,
     ("unknown top-level key 'cases'", "did you mean 'case'?")),
    ("top-level-scalar", 'seed = 3\n' + case_toml(), None, None,
     ("unknown top-level key 'seed'",)),
    ("case-not-array-of-tables", case_toml().replace("[[case]]", "[case]"), None, None,
     ("'case' must be an array of tables", "[[case]]")),
    ("empty-file", "", None, None, ("no [[case]] or [[sweep]] tables",)),
    ("comments-only", "# nothing here\n\n", None, None, ("no [[case]] or [[sweep]] tables",)),
    ("duplicate-name", case_toml() + case_toml(seed="8"), "net", "name",
     ("duplicate case name",)),
    ("duplicate-name-case-vs-sweep", case_toml(name='"sw-001"') + sweep_toml(), "sw-001", "name",
     ("duplicate case name",)),
    # --- keys
    ("unknown-key-near-miss", case_toml(drop=("activations",), activation='["tanh", "softmax"]'),
     "net", "activation", ("unknown key", "did you mean 'activations'?")),
    ("unknown-key-no-suggestion", case_toml(zzz="1"), "net", "zzz", ("unknown key",)),
    ("missing-layers", case_toml(drop=("layers",)), "net", "layers", ("missing required field",)),
    ("missing-loss", case_toml(drop=("loss",)), "net", "loss", ("missing required field",)),
    ("missing-activations", case_toml(drop=("activations",)), "net", "activations",
     ("missing required field",)),
    ("missing-batch", case_toml(drop=("batch",)), "net", "batch", ("missing required field",)),
    ("missing-name", case_toml(drop=("name",)), "case #1", "name", ("missing required field",)),
    ("missing-name-second-case", case_toml() + case_toml(drop=("name",)), "case #2", "name",
     ("missing required field",)),
    ("missing-name-label-in-later-error", case_toml(drop=("name",), batch="0"), "case #1", "name",
     ("missing required field",)),
    ("empty-name", case_toml(name='"  "'), "case #1", "name", ("must not be empty",)),
    ("name-not-string", case_toml(name="5"), "case #1", "name", ("expected a string", "got 5")),
    # --- activations
    ("unknown-activation", case_toml(activations='["tanhh", "softmax"]'), "net", "activations[0]",
     ("unknown activation 'tanhh'", "did you mean 'tanh'?")),
    ("unknown-activation-single-name", case_toml(layers="[3, 4, 4, 2]", activations='"tanhh"'),
     "net", "activations", ("unknown activation 'tanhh'", "did you mean 'tanh'?")),
    ("unknown-output-key", case_toml(activations='"tanh"', output='"sigmod"',
                                     loss='"binary_cross_entropy"'),
     "net", "output", ("unknown activation 'sigmod'", "did you mean 'sigmoid'?")),
    ("activation-not-string", case_toml(activations='[1, "softmax"]'), "net", "activations[0]",
     ("unknown activation 1",)),
    ("activations-not-list-or-string", case_toml(activations="3"), "net", "activations",
     ("expected a list of L names",)),
    ("softmax-hidden", case_toml(activations='["softmax", "softmax"]'), "net", "activations[0]",
     ("softmax", "only as the output activation")),
    ("softmax-hidden-single-name", case_toml(activations='"softmax"', output='"softmax"'),
     "net", "activations", ("only as the output activation",)),
    ("too-many-activations", case_toml(activations='["tanh", "tanh", "softmax"]'), "net",
     "activations", ("needs L = 2 names", "got 3")),
    ("too-few-activations", case_toml(activations='["softmax"]'), "net", "activations",
     ("needs L = 2 names", "got 1")),
    ("output-and-list", case_toml(output='"softmax"'), "net", "output", ("not both",)),
    # --- loss / output activation
    ("unknown-loss", case_toml(loss='"cross_entropi"'), "net", "loss",
     ("unknown loss 'cross_entropi'", "did you mean 'cross_entropy'?")),
    ("loss-not-string", case_toml(loss="1"), "net", "loss", ("expected a string",)),
    ("ce-without-softmax", case_toml(activations='["tanh", "sigmoid"]'), "net", "activations",
     ("loss cross_entropy needs output activation softmax, got sigmoid",)),
    ("bce-without-sigmoid", case_toml(activations='["tanh", "identity"]',
                                      loss='"binary_cross_entropy"'),
     "net", "activations", ("loss binary_cross_entropy needs output activation sigmoid, "
                            "got identity",)),
    ("ce-output-key-mismatch", case_toml(activations='"tanh"', output='"identity"'),
     "net", "output", ("needs output activation softmax, got identity",)),
    ("softmax-one-class", case_toml(layers="[3, 1]", activations='["softmax"]'), "net", "layers",
     ("n_L must be >= 2",)),
    ("softmax-one-class-half-sse", case_toml(layers="[3, 4, 1]", loss='"half_sse"'), "net",
     "layers", ("n_L must be >= 2",)),
    # --- layers
    ("layers-zero", case_toml(layers="[3, 0, 2]"), "net", "layers[1]",
     ("positive integers", "got 0")),
    ("layers-negative", case_toml(layers="[3, 4, -2]"), "net", "layers[2]",
     ("positive integers", "got -2")),
    ("layers-float", case_toml(layers="[3, 4.5, 2]"), "net", "layers[1]",
     ("positive integers", "got 4.5")),
    ("layers-bool", case_toml(layers="[3, true, 2]"), "net", "layers[1]",
     ("positive integers", "got True")),
    ("layers-string", case_toml(layers='[3, "4", 2]'), "net", "layers[1]",
     ("positive integers", "got '4'")),
    ("layers-one-entry", case_toml(layers="[3]"), "net", "layers", ("needs at least [n_0, n_1]",)),
    ("layers-empty", case_toml(layers="[]"), "net", "layers", ("needs at least [n_0, n_1]",)),
    ("layers-not-array", case_toml(layers="3"), "net", "layers", ("expected an array",)),
    # --- scalars
    ("unknown-dtype", case_toml(dtype='"float16"'), "net", "dtype", ("unknown dtype 'float16'",)),
    ("dtype-near-miss", case_toml(dtype='"flaot32"'), "net", "dtype",
     ("unknown dtype 'flaot32'", "did you mean 'float32'?")),
    ("seed-negative", case_toml(seed="-1"), "net", "seed", ("must be >= 0, got -1",)),
    ("seed-float", case_toml(seed="1.5"), "net", "seed", ("expected an integer, got 1.5",)),
    ("seed-bool", case_toml(seed="true"), "net", "seed", ("expected an integer, got True",)),
    ("batch-zero", case_toml(batch="0"), "net", "batch", ("must be >= 1, got 0",)),
    ("batch-negative", case_toml(batch="-3"), "net", "batch", ("must be >= 1, got -3",)),
    ("batch-bool", case_toml(batch="true"), "net", "batch", ("expected an integer, got True",)),
    ("batch-string", case_toml(batch='"4"'), "net", "batch", ("expected an integer, got '4'",)),
    ("input-scale-bool", case_toml(input_scale="false"), "net", "input_scale",
     ("got False",)),
    ("input-scale-zero", case_toml(input_scale="0.0"), "net", "input_scale",
     ("must be a number in (0, 1e+10]",)),
    ("input-scale-inf", case_toml(input_scale="inf"), "net", "input_scale",
     ("must be a number in (0, 1e+10]",)),
    ("input-scale-nan", case_toml(input_scale="nan"), "net", "input_scale",
     ("must be a number in (0, 1e+10]",)),
    ("description-not-string", case_toml(description="1"), "net", "description",
     ("expected a string",)),
    # --- explicit values
    ("values-not-table", case_toml() + "values = 1\n", "net", "values",
     ("expected a table",)),
    ("values-X-wrong-columns", case_toml(values={"X": "[[1.0, 2.0], [3.0, 4.0]]"}), "net",
     "values.X", ("shape 2×2 does not match m×3",)),
    ("values-X-flat", case_toml(values={"X": "[1.0, 2.0, 3.0]"}), "net", "values.X",
     ("does not match m×3",)),
    ("values-W1-wrong-shape", case_toml(values={"W1": "[[1.0, 2.0, 3.0, 4.0]]"}), "net",
     "values.W1", ("shape 1×4 does not match 3×4",)),
    ("values-W1-transposed", case_toml(values={"W1": "[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], "
                                              "[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]"}),
     "net", "values.W1", ("shape 4×3 does not match 3×4",)),
    ("values-b1-wrong-length", case_toml(values={"b1": "[0.1, 0.2, 0.3]"}), "net", "values.b1",
     ("shape 1×3 does not match 1×4",)),
    ("values-b1-two-rows", case_toml(values={"b1": "[[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]]"}),
     "net", "values.b1", ("shape 2×4 does not match 1×4",)),
    ("values-ragged", case_toml(values={"X": "[[1.0, 2.0, 3.0], [4.0, 5.0]]"}), "net", "values.X",
     ("rectangular array of numbers",)),
    ("values-ragged-W2", case_toml(values={"W2": "[[1.0, 2.0], [3.0], [4.0, 5.0], [6.0, 7.0]]"}),
     "net", "values.W2", ("rectangular array of numbers",)),
    ("values-nan", case_toml(values={"X": "[[1.0, nan, 3.0], [4.0, 5.0, 6.0]]"}), "net",
     "values.X", ("non-finite value nan at index (0, 1)",)),
    ("values-inf", case_toml(values={"W2": "[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, inf]]"}),
     "net", "values.W2", ("non-finite value inf at index (3, 1)",)),
    ("values-minus-inf-flat-bias", case_toml(values={"b2": "[-inf, 0.0]"}), "net", "values.b2",
     ("non-finite value -inf at index (0, 0)",)),
    ("values-overflow-literal", case_toml(values={"b2": "[1e400, 0.0]"}), "net", "values.b2",
     ("non-finite value inf",)),
    ("values-y-out-of-range", case_toml(values={"y": "[0, 2]"}), "net", "values.y[1]",
     ("label 2 out of range 0..1",)),
    ("values-y-negative", case_toml(values={"y": "[-1, 0]"}), "net", "values.y[0]",
     ("label -1 out of range 0..1",)),
    ("values-y-float", case_toml(values={"y": "[0, 1.0]"}), "net", "values.y[1]",
     ("class index must be an integer, got 1.0",)),
    ("values-y-bool", case_toml(values={"y": "[true, 0]"}), "net", "values.y[0]",
     ("class index must be an integer, got True",)),
    ("values-y-empty", case_toml(values={"y": "[]"}), "net", "values.y",
     ("non-empty list of class indices",)),
    ("values-y-wrong-count", case_toml(values={"y": "[0, 1, 1]"}), "net", "values.y",
     ("has 3 labels, batch is 2",)),
    ("values-Y-for-cross-entropy", case_toml(values={"Y": "[[1.0, 0.0], [0.0, 1.0]]"}), "net",
     "values.Y", ("unknown array", "cross_entropy takes y")),
    ("values-y-for-half-sse", case_toml(activations='["tanh", "identity"]', loss='"half_sse"',
                                        values={"y": "[0, 1]"}),
     "net", "values.y", ("unknown array", "allowed: W1, W2, X, Y, b1, b2")),
    ("values-unknown-array", case_toml(values={"W3": "[[1.0]]"}), "net", "values.W3",
     ("unknown array",)),
    ("values-X-rows-vs-batch", case_toml(batch="3", values={"X": "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]"}),
     "net", "batch", ("batch = 3 but values.X has 2 rows",)),
    ("values-y-rows-vs-X", case_toml(drop=("batch",), values={
        "X": "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]", "y": "[0, 1, 1]"}),
     "net", "values.y", ("has 3 labels, batch is 2",)),
    ("values-Y-rows-vs-batch", case_toml(activations='["tanh", "identity"]', loss='"half_sse"',
                                         batch="3", values={"Y": "[[1.0, 0.0], [0.0, 1.0]]"}),
     "net", "values.Y", ("has 2 rows, batch is 3",)),
    ("values-Y-wrong-columns", case_toml(activations='["tanh", "identity"]', loss='"half_sse"',
                                         values={"Y": "[[1.0], [0.0]]"}),
     "net", "values.Y", ("shape 2×1 does not match m×2",)),
    ("bce-target-above-1", case_toml(activations='["tanh", "sigmoid"]',
                                     loss='"binary_cross_entropy"',
                                     values={"Y": "[[0.5, 1.5], [0.0, 1.0]]"}),
     "net", "values.Y", ("binary_cross_entropy targets must lie in [0, 1]",)),
    ("bce-target-below-0", case_toml(activations='["tanh", "sigmoid"]',
                                     loss='"binary_cross_entropy"',
                                     values={"Y": "[[0.5, 0.5], [-0.1, 1.0]]"}),
     "net", "values.Y", ("must lie in [0, 1]",)),
    # --- sweeps
    ("sweep-count-zero", sweep_toml(count="0"), "sw", "count", ("must be >= 1, got 0",)),
    ("sweep-count-missing", sweep_toml(drop=("count",)), "sw", "count",
     ("missing required field",)),
    ("sweep-count-bool", sweep_toml(count="true"), "sw", "count", ("expected an integer",)),
    ("sweep-name-missing", sweep_toml(drop=("name",)), "sweep #1", "name",
     ("missing required field",)),
    ("sweep-name-missing-second", sweep_toml() + sweep_toml(drop=("name",)), "sweep #2", "name",
     ("missing required field",)),
    ("sweep-seed-negative", sweep_toml(seed="-5"), "sw", "seed", ("must be >= 0, got -5",)),
    ("sweep-depth-reversed", sweep_toml(depth="[3, 1]"), "sw", "depth",
     ("must be [lo, hi] with 1 <= lo <= hi, got [3, 1]",)),
    ("sweep-depth-zero", sweep_toml(depth="[0, 2]"), "sw", "depth", ("1 <= lo <= hi",)),
    ("sweep-depth-one-entry", sweep_toml(depth="[2]"), "sw", "depth", ("must be [lo, hi]",)),
    ("sweep-width-float", sweep_toml(width="[1, 2.5]"), "sw", "width", ("must be [lo, hi]",)),
    ("sweep-batch-bool", sweep_toml(batch="[true, 3]"), "sw", "batch", ("must be [lo, hi]",)),
    ("sweep-unknown-activation", sweep_toml(activations='["tanh", "tahn"]'), "sw",
     "activations[1]", ("unknown name 'tahn'", "did you mean 'tanh'?")),
    ("sweep-softmax-hidden", sweep_toml(activations='["softmax"]'), "sw", "activations[0]",
     ("unknown name 'softmax'",)),
    ("sweep-activations-empty", sweep_toml(activations="[]"), "sw", "activations",
     ("must not be empty",)),
    ("sweep-unknown-loss", sweep_toml(losses='["half_sse", "hinge"]'), "sw", "losses[1]",
     ("unknown name 'hinge'",)),
    ("sweep-unknown-loss-near-miss", sweep_toml(losses='["half_ssE"]'), "sw", "losses[0]",
     ("unknown name 'half_ssE'", "did you mean 'half_sse'?")),
    ("sweep-unknown-dtype", sweep_toml(dtypes='["float16"]'), "sw", "dtypes[0]",
     ("unknown name 'float16'",)),
    ("sweep-input-scale-reversed", sweep_toml(input_scale="[2.0, 1.0]"), "sw", "input_scale",
     ("0 < lo <= hi",)),
    ("sweep-input-scale-zero", sweep_toml(input_scale="[0.0, 1.0]"), "sw", "input_scale",
     ("0 < lo <= hi",)),
    ("sweep-unknown-key", sweep_toml(activation='["tanh"]'), "sw", "activation",
     ("unknown key", "did you mean 'activations'?")),
]


@pytest.mark.parametrize("text, case, field, fragments",
                         [pytest.param(*row[1:], id=row[0]) for row in BAD])
def test_bad_input_raises_input_error(tmp_path, text, case, field, fragments):
    path = write(tmp_path, text)
    err = load_error(path)
    check_error(err, path, case, field, fragments)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    err = load_error(path)
    check_error(err, path, None, None, ("case file not found",))


def test_directory_instead_of_file(tmp_path):
    err = load_error(tmp_path)
    check_error(err, tmp_path, None, None, ("cannot read case file",))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(case_toml(description='"caf\xe9"').encode("latin-1"))
    err = load_error(path)
    check_error(err, path, None, None, ("cannot read case file",))


def test_same_name_in_two_files(tmp_path):
    a = write(tmp_path, case_toml(), "a.toml")
    b = write(tmp_path, case_toml(name='"other"') + case_toml(seed="9"), "b.toml")
    with pytest.raises(InputError) as info:
        load_files([a, b])
    check_error(info.value, b, "net", "name", ("already used in", str(a)))


def test_load_files_reports_error_of_the_bad_file(tmp_path):
    a = write(tmp_path, case_toml(), "a.toml")
    b = write(tmp_path, case_toml(name='"other"', batch="0"), "b.toml")
    with pytest.raises(InputError) as info:
        load_files([a, b])
    check_error(info.value, b, "other", "batch", ("must be >= 1",))


# --------------------------------------------------------------------------- review findings
# Inputs a review found mishandled, each now refused with one line naming file, case and field
# (a typo in the one hidden-layer name of a depth-1 network, non-numbers in values, non-string
# sweep names, a blank sweep name), or handled correctly (arrays not aliased to case values).


def test_depth1_single_name_typo_is_rejected(tmp_path):
    # layers [4, 3] has no hidden layer, so the one hidden name is used nowhere: still checked.
    path = write(tmp_path, case_toml(layers="[4, 3]", activations='"tanhh"'))
    err = load_error(path)
    check_error(err, path, "net", "activations", ("unknown activation 'tanhh'",))


@pytest.mark.parametrize("x", ["[[true, false, true], [1.0, 2.0, 3.0]]",
                               '[["1.5", 2.0, 3.0], [1.0, 2.0, 3.0]]'],
                         ids=["bool-in-values", "string-in-values"])
def test_values_must_be_numbers(tmp_path, x):
    path = write(tmp_path, case_toml(values={"X": x}))
    err = load_error(path)
    check_error(err, path, "net", "values.X", ())


@pytest.mark.parametrize("key, val", [("activations", '[["tanh"]]'),
                                      ("losses", '[{ a = 1 }]'),
                                      ("dtypes", '[["float32"]]')],
                         ids=["activations-nested-list", "losses-inline-table",
                              "dtypes-nested-list"])
def test_sweep_name_list_with_non_string_entry(tmp_path, key, val):
    path = write(tmp_path, sweep_toml(**{key: val}))
    err = load_error(path)  # not a TypeError (unhashable type) from the name lookup
    check_error(err, path, "sw", f"{key}[0]", ("unknown name",))


def test_sweep_blank_name_rejected_like_case_name(tmp_path):
    path = write(tmp_path, sweep_toml(name='"  "'))
    err = load_error(path)
    check_error(err, path, "sweep #1", "name", ("must not be empty",))


def test_arrays_not_aliased_to_case_values(tmp_path):
    path = write(tmp_path, case_toml(values={"X": "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]",
                                             "y": "[0, 1]"}))
    (case,) = load_file(path)
    first = case.arrays()
    first["X"][0, 0] = 99.0
    first["y"][0] = 1
    again = case.arrays()
    assert again["X"][0, 0] == 1.0
    assert again["y"].tolist() == [0, 1]


# --------------------------------------------------------------------------- CLI


def run_cli(casefile: Path, out: Path, *extra: str, fresh: bool = False) -> subprocess.CompletedProcess:
    from conftest import run_cli

    return run_cli("run", casefile, "--out", out, "--backends", "manual,fd", *extra, cwd=REPO, timeout=60,
                   fresh=fresh)


def assert_one_line_error(proc: subprocess.CompletedProcess, *must_contain: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for frag in must_contain:
        assert frag in line, f"{frag!r} not in {line!r}"
    return line


CLI_BAD_CASES = [
    ("malformed-toml", "[[case]]\nname = \n", ("malformed TOML",)),
    ("unknown-activation", case_toml(activations='["tanhh", "softmax"]'),
     ("case 'net'", "field 'activations[0]'", "did you mean 'tanh'?")),
    ("shape-mismatch", case_toml(values={"W1": "[[1.0, 2.0, 3.0, 4.0]]"}),
     ("case 'net'", "field 'values.W1'", "does not match 3×4")),
    ("nan-value", case_toml(values={"X": "[[1.0, nan, 3.0], [4.0, 5.0, 6.0]]"}),
     ("case 'net'", "field 'values.X'", "non-finite")),
    ("sweep-non-string-activation", sweep_toml(activations='[["tanh"]]'),
     ("case 'sw'", "field 'activations[0]'")),
]


@pytest.mark.parametrize("text, fragments", [pytest.param(*r[1:], id=r[0]) for r in CLI_BAD_CASES])
def test_cli_bad_case_file(tmp_path, text, fragments):
    path = write(tmp_path, text)
    proc = run_cli(path, tmp_path / "out")
    assert_one_line_error(proc, str(path), *fragments)
    assert not (tmp_path / "out").exists()  # bad input is caught before anything is written


def test_cli_missing_case_file(tmp_path):
    path = tmp_path / "missing.toml"
    proc = run_cli(path, tmp_path / "out", fresh=True)  # a new interpreter: nothing imported ahead
    assert_one_line_error(proc, str(path), "not found")


def test_cli_unwritable_out(tmp_path):
    path = write(tmp_path, case_toml())
    blocker = tmp_path / "regular-file"
    blocker.write_text("x")
    out = blocker / "out"
    proc = run_cli(path, out)
    assert_one_line_error(proc, str(out), "field '--out'", "cannot write")


def test_cli_unknown_backend_name(tmp_path):
    path = write(tmp_path, case_toml())
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp_path / "out"),
         "--backends", "manul,fd"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "field '--backends'", "'manul'", "did you mean 'manual'?")


def test_cli_plugin_file_missing(tmp_path):
    path = write(tmp_path, case_toml())
    plugin = tmp_path / "no_such_plugin.py"
    proc = run_cli(path, tmp_path / "out", "--backend", f"{plugin}:Mine")
    assert_one_line_error(proc, "field '--backend'", str(plugin), "does not exist")


def test_cli_plugin_without_gradients(tmp_path):
    path = write(tmp_path, case_toml())
    plugin = tmp_path / "plugin_nograd.py"
    plugin.write_text("class Mine:\n    name = 'mine'\n    kind = 'analytic'\n")
    proc = run_cli(path, tmp_path / "out", "--backend", f"{plugin}:Mine")
    assert_one_line_error(proc, "field '--backend'", str(plugin), "no gradients")


# --------------------------------------------------------------------------- good input


def test_valid_case_loads(tmp_path):
    path = write(tmp_path, case_toml(description='"hello"', input_scale="2"))
    (case,) = load_file(path)
    assert isinstance(case, Case)
    assert case.name == "net"
    assert case.model.layers == (3, 4, 2)
    assert case.model.activations == ("tanh", "softmax")
    assert case.model.loss == "cross_entropy"
    assert case.model.dtype == "float64"
    assert (case.batch, case.seed) == (2, 7)
    assert case.input_scale == 2.0 and isinstance(case.input_scale, float)
    assert case.description == "hello"
    assert case.source == str(path)
    assert case.values == {}


def test_defaults(tmp_path):
    path = write(tmp_path, case_toml(drop=("seed",)))
    (case,) = load_file(path)
    assert case.seed == 0 and case.input_scale == 1.0 and case.model.dtype == "float64"


def test_default_case_file_loads():
    cases = load_file(REPO / "cases" / "default.toml")
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    assert "explicit-values" in names and "sweep-000" in names


@pytest.mark.parametrize("loss, layers, expected", [
    ("cross_entropy", "[3, 5, 4, 2]", ("tanh", "tanh", "softmax")),
    ("binary_cross_entropy", "[3, 5, 2]", ("tanh", "sigmoid")),
    ("half_sse", "[3, 5, 2]", ("tanh", "identity")),
], ids=["cross_entropy->softmax", "bce->sigmoid", "half_sse->identity"])
def test_single_activation_name_expands(tmp_path, loss, layers, expected):
    path = write(tmp_path, case_toml(layers=layers, activations='"tanh"', loss=f'"{loss}"'))
    (case,) = load_file(path)
    assert case.model.activations == expected


def test_single_activation_name_with_output(tmp_path):
    path = write(tmp_path, case_toml(layers="[3, 5, 5, 2]", activations='"relu"',
                                     output='"tanh"', loss='"half_sse"'))
    (case,) = load_file(path)
    assert case.model.activations == ("relu", "relu", "tanh")


def _bits(arrays: dict[str, np.ndarray]) -> dict[str, tuple]:
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in arrays.items()}


def test_arrays_deterministic_and_shaped(tmp_path):
    path = write(tmp_path, case_toml(layers="[3, 5, 4, 2]", activations='"tanh"', batch="6"))
    (case,) = load_file(path)
    a, b = case.arrays(), case.arrays()
    assert _bits(a) == _bits(b)
    (reloaded,) = load_file(path)
    assert _bits(reloaded.arrays()) == _bits(a)
    assert set(a) == {"X", "y", "Y", "W1", "b1", "W2", "b2", "W3", "b3"}
    assert a["X"].shape == (6, 3)
    assert a["W1"].shape == (3, 5) and a["b1"].shape == (1, 5)
    assert a["W3"].shape == (4, 2) and a["b3"].shape == (1, 2)
    # A different seed gives different draws (so the equality above means something).
    other = write(tmp_path, case_toml(layers="[3, 5, 4, 2]", activations='"tanh"', batch="6",
                                      seed="8"), "other.toml")
    assert not np.array_equal(load_file(other)[0].arrays()["X"], a["X"])


def test_arrays_float32(tmp_path):
    path = write(tmp_path, case_toml(dtype='"float32"'))
    (case,) = load_file(path)
    arrays = case.arrays()
    for k, v in arrays.items():
        if k == "y":
            assert v.dtype == np.int64
        else:
            assert v.dtype == np.float32, k
    # float32 values are the float64 draw rounded: the same seed in float64 agrees to ~1e-7.
    (f64,) = load_file(write(tmp_path, case_toml(), "f64.toml"))
    np.testing.assert_allclose(arrays["W1"], f64.arrays()["W1"], rtol=1e-6)


def test_cross_entropy_targets(tmp_path):
    path = write(tmp_path, case_toml(layers="[3, 4, 5]", batch="40"))
    (case,) = load_file(path)
    arrays = case.arrays()
    y, Y = arrays["y"], arrays["Y"]
    assert y.dtype == np.int64 and y.shape == (40,)
    assert ((0 <= y) & (y < 5)).all()
    assert Y.shape == (40, 5) and Y.dtype == np.float64
    np.testing.assert_array_equal(Y, np.eye(5)[y])


def test_bce_and_half_sse_targets(tmp_path):
    bce = write(tmp_path, case_toml(activations='["tanh", "sigmoid"]',
                                    loss='"binary_cross_entropy"', batch="50"), "bce.toml")
    arr = load_file(bce)[0].arrays()
    assert "y" not in arr and arr["Y"].shape == (50, 2)
    assert ((arr["Y"] >= 0) & (arr["Y"] <= 1)).all()
    sse = write(tmp_path, case_toml(activations='["tanh", "identity"]', loss='"half_sse"'),
                "sse.toml")
    assert "y" not in load_file(sse)[0].arrays()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("key, toml_value, expected", [
    ("W1", "[[0.5, 0.25, -0.5, 1.0], [0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]",
     [[0.5, 0.25, -0.5, 1.0], [0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]),
    ("b2", "[0.125, -0.125]", [[0.125, -0.125]]),
    ("X", "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]", [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
    ("y", "[1, 0]", [1, 0]),
], ids=["W1", "b2-flat", "X", "y"])
def test_values_override_leaves_other_arrays_unchanged(tmp_path, dtype, key, toml_value,
                                                       expected):
    plain = write(tmp_path, case_toml(dtype=f'"{dtype}"'), "plain.toml")
    over = write(tmp_path, case_toml(dtype=f'"{dtype}"', values={key: toml_value}), "over.toml")
    a = load_file(plain)[0].arrays()
    b = load_file(over)[0].arrays()
    assert set(a) == set(b)
    np.testing.assert_array_equal(b[key], np.asarray(expected))
    assert b[key].dtype == (np.int64 if key == "y" else np.dtype(dtype))
    derived = {key, "Y"} if key == "y" else {key}
    for k in set(a) - derived:
        assert _bits({k: a[k]}) == _bits({k: b[k]}), f"{k} changed when {key} was given"
    if key == "y":
        np.testing.assert_array_equal(b["Y"], np.eye(2)[[1, 0]])


def test_values_x_sets_batch(tmp_path):
    path = write(tmp_path, case_toml(drop=("batch",), values={
        "X": "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]", "y": "[0, 1, 1]"}))
    (case,) = load_file(path)
    assert case.batch == 3
    assert case.arrays()["y"].tolist() == [0, 1, 1]


def test_bce_targets_at_bounds_accepted(tmp_path):
    path = write(tmp_path, case_toml(activations='["tanh", "sigmoid"]',
                                     loss='"binary_cross_entropy"',
                                     values={"Y": "[[0.0, 1.0], [1, 0]]"}))
    (case,) = load_file(path)
    np.testing.assert_array_equal(case.arrays()["Y"], [[0.0, 1.0], [1.0, 0.0]])


def test_sweep_expands_deterministically(tmp_path):
    path = write(tmp_path, sweep_toml(count="5", depth="[1, 3]", width="[2, 6]",
                                      batch="[1, 4]"))
    first, second = load_file(path), load_file(path)
    assert [c.name for c in first] == [f"sw-{i:03d}" for i in range(5)]
    assert [c.name for c in second] == [c.name for c in first]
    for a, b in zip(first, second):
        assert a.model == b.model
        assert (a.batch, a.seed, a.input_scale, a.source) == (b.batch, b.seed, b.input_scale,
                                                              b.source)
        assert _bits(a.arrays()) == _bits(b.arrays())
        assert 1 <= a.model.L <= 3 and 1 <= a.batch <= 4
        assert len(a.model.activations) == a.model.L
        if a.model.activations[-1] == "softmax":
            assert a.model.layers[-1] >= 2


def test_sweep_and_cases_in_one_file(tmp_path):
    path = write(tmp_path, case_toml() + sweep_toml(count="2"))
    assert [c.name for c in load_file(path)] == ["net", "sw-000", "sw-001"]


def test_load_files_keeps_order(tmp_path):
    a = write(tmp_path, case_toml(), "a.toml")
    b = write(tmp_path, case_toml(name='"other"'), "b.toml")
    cases = load_files([a, b])
    assert [(c.name, c.source) for c in cases] == [("net", str(a)), ("other", str(b))]


# --------------------------------------------------------------------------- limits (review fixes)


@pytest.mark.parametrize("over, values, field, msg", [
    ({"batch": "1000000000"}, None, "batch", "case too large"),
    ({"layers": "[1000000, 1000000, 2]", "activations": '"tanh"'}, None, "layers", "case too large"),
    ({"dtype": '"float32"', "layers": "[2, 2]", "activations": '["softmax"]', "batch": "1"},
     {"X": "[[1e39, 0.0]]"}, "values.X", "overflows float32"),
    ({"input_scale": "1e300"}, None, "input_scale", "must be a number in (0, 1e+10]"),
], ids=["huge-batch", "huge-layers", "float32-overflow", "huge-input-scale"])
def test_limits_are_input_errors(tmp_path, over, values, field, msg):
    path = write(tmp_path, case_toml(values=values, **over))
    err = load_error(path)
    assert err.field == field and msg in err.message, str(err)


def test_sweep_case_too_large_is_an_input_error(tmp_path):
    path = write(tmp_path, sweep_toml(width="[1000000, 1000000]", count="1"))
    err = load_error(path)
    assert err.case == "sw" and "case too large" in err.message
