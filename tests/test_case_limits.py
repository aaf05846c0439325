"""Limits of the case loader (harness/cases.py): input that once gave a traceback, a hang or
an out-of-memory kill is refused with one line naming file, case and field.

Integers too large for a float or for numpy, arrays nested thousands deep, case files that
are not small regular files, cases (or runs) too large for memory, and sweeps too long to
expand. Through the CLI each is exit code 2 and exactly one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cases as cases_mod
from harness.cases import (MAX_CASE_FILE_BYTES, MAX_DEPTH, MAX_SWEEP_COUNT, MAX_SWEEP_WIDTHS,
                           Case, load_file, load_files, memory_estimate, memory_limit,
                           physical_memory)
from harness.cli import main
from harness.errors import InputError
from harness.model import Model

REPO = Path(__file__).resolve().parents[1]
HUGE = "1" + "0" * 400  # 10**400: beyond float64 (1.8e308), so float() of it raises


def case_toml(values: dict[str, str] | None = None, **over: str) -> str:
    fields = {"name": '"net"', "layers": "[3, 4, 2]", "activations": '["tanh", "softmax"]',
              "loss": '"cross_entropy"', "batch": "2", **over}
    lines = ["[[case]]"] + [f"{k} = {v}" for k, v in fields.items()]
    if values is not None:
        lines += ["[case.values]"] + [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def sweep_toml(**over: str) -> str:
    fields = {"name": '"sw"', "count": "3", "seed": "11", **over}
    return "\n".join(["[[sweep]]"] + [f"{k} = {v}" for k, v in fields.items()]) + "\n"


def write(tmp_path: Path, text: str, name: str = "cases.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, case: str | None, field: str | None, *fragments: str) -> InputError:
    """load_file raises InputError naming this file, case and field, in one short line."""
    with pytest.raises(InputError) as info:
        load_file(path)
    err = info.value
    assert (err.file, err.case, err.field) == (str(path), case, field), str(err)
    for frag in fragments:
        assert frag in err.message, f"{frag!r} not in {err.message!r}"
    assert "\n" not in str(err) and len(str(err)) < 400, str(err)
    return err


def cli_error(capsys, path: Path, tmp_path: Path, *fragments: str) -> str:
    """`python -m harness run PATH` in-process: exit 2, one `error:` line naming the file."""
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--backends", "manual,fd"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for frag in (str(path), *fragments):
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    assert not out.exists()  # refused before anything is written
    return lines[0]


# --------------------------------------------------------------------------- 1. huge integers

HUGE_INTEGERS = [
    # (id, file text, case, field, fragments)
    ("case-input-scale", case_toml(input_scale=HUGE), "net", "input_scale",
     ("must be a number in (0, 1e+10]", "an integer of 401 digits")),
    ("case-batch", case_toml(batch=HUGE), "net", "batch",
     ("must be at most 2**31-1", "an integer of 401 digits")),
    ("case-layer-size", case_toml(layers=f"[3, {HUGE}, 2]"), "net", "layers[1]",
     ("must be at most 2**31-1",)),
    ("case-layer-size-int64", case_toml(layers="[3, 9223372036854775807, 2]"), "net", "layers[1]",
     ("must be at most 2**31-1", "got 9223372036854775807")),
    ("case-seed", case_toml(seed=HUGE), "net", "seed", ("must be at most 2**63-1",)),
    ("values-X", case_toml(values={"X": f"[[{HUGE}, 0, 0], [0, 0, 0]]"}), "net", "values.X",
     ("value at index (0, 0)", "too large for a float")),
    ("values-X-negative", case_toml(values={"X": f"[[0, 0, 0], [0, -{HUGE}, 0]]"}), "net",
     "values.X", ("value at index (1, 1)", "a negative integer of 401 digits")),
    ("values-b1-flat", case_toml(values={"b1": f"[0, 0, {HUGE}, 0]"}), "net", "values.b1",
     ("value at index (2,)", "too large for a float")),
    ("sweep-width", sweep_toml(width="[1, 1000000000000000000000000000000]"), "sw", "width",
     ("must be at most 2**31-1",)),
    ("sweep-depth", sweep_toml(depth="[1, 9223372036854775807]"), "sw", "depth",
     (f"must be at most {MAX_DEPTH}",)),
    ("sweep-batch", sweep_toml(batch=f"[1, {HUGE}]"), "sw", "batch",
     ("must be at most 2**31-1", "an integer of 401 digits")),
    ("sweep-count", sweep_toml(count=HUGE), "sw", "count", (f"must be at most {MAX_SWEEP_COUNT}",)),
    ("sweep-seed", sweep_toml(seed="1000000000000000000000000000000"), "sw", "seed",
     ("must be at most 2**63-1",)),
    ("integer-literal-too-long", case_toml(batch="1" + "0" * 5000), None, None,
     ("malformed TOML", "4300 digits")),
]


@pytest.mark.parametrize("text, case, field, fragments",
                         [pytest.param(*row[1:], id=row[0]) for row in HUGE_INTEGERS])
def test_huge_integers_are_input_errors(tmp_path, text, case, field, fragments):
    load_error(write(tmp_path, text), case, field, *fragments)


@pytest.mark.parametrize("text, fragments", [
    pytest.param(case_toml(input_scale=HUGE), ("case 'net'", "field 'input_scale'"), id="input-scale"),
    pytest.param(case_toml(values={"X": f"[[{HUGE}, 0, 0], [0, 0, 0]]"}),
                 ("case 'net'", "field 'values.X'", "too large for a float"), id="values-X"),
    pytest.param(sweep_toml(width="[1, 1000000000000000000000000000000]"),
                 ("case 'sw'", "field 'width'"), id="sweep-width"),
])
def test_cli_huge_integers(capsys, tmp_path, text, fragments):
    cli_error(capsys, write(tmp_path, text), tmp_path, *fragments)


# --------------------------------------------------------------------------- 2. deep nesting


def nested(depth: int) -> str:
    return "[" * depth + "1.0" + "]" * depth


def dotted(depth: int) -> str:
    """A key path ``depth`` tables deep: tomllib builds it without recursion, repr() cannot
    print it (its recursion limit is 1,000)."""
    return ".".join(["a"] * depth)


NESTING = [
    ("values-10000-deep", case_toml(values={"X": nested(10_000)}), None, None,
     ("malformed TOML", "nested too deeply")),
    ("values-3-deep", case_toml(values={"X": "[[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]]"}), "net",
     "values.X", ("nested deeper than 2 at index (0, 0)",)),
    ("values-100-deep", case_toml(values={"X": nested(100)}), "net", "values.X",
     ("nested deeper than 2",)),
    ("values-deep-table", case_toml() + f"[case.values]\nX.{dotted(2_000)} = 1\n", "net",
     "values.X", ("must be an array of numbers, got {'a': {'a': {'a': {...}}}}",)),
    ("layers-deep-table", case_toml().replace("layers = [3, 4, 2]\n", f"layers.{dotted(2_000)} = 3\n"),
     "net", "layers", ("expected an array of layer sizes",)),
    ("activation-deep-table", case_toml(activations=f'[{{ {dotted(2_000)} = 1 }}, "softmax"]'),
     "net", "activations[0]", ("unknown activation {'a': {'a': {'a': {...}}}}",)),
    ("sweep-name-deep-table", sweep_toml(losses=f"[{{ {dotted(2_000)} = 1 }}]"), "sw",
     "losses[0]", ("unknown name {'a'",)),
]


@pytest.mark.parametrize("text, case, field, fragments",
                         [pytest.param(*row[1:], id=row[0]) for row in NESTING])
def test_deep_nesting_is_an_input_error(tmp_path, text, case, field, fragments):
    load_error(write(tmp_path, text), case, field, *fragments)


def test_cli_deep_nesting(capsys, tmp_path):
    path = write(tmp_path, case_toml(values={"X": nested(10_000)}))
    cli_error(capsys, path, tmp_path, "malformed TOML", "nested too deeply")


# --------------------------------------------------------------------------- 3. not a small regular file


def test_directory_is_refused(tmp_path, capsys):
    load_error(tmp_path, None, None, "not a regular file (a directory)")
    cli_error(capsys, tmp_path, tmp_path / "sub", "not a regular file")


def test_file_over_the_size_limit_is_refused_before_reading(tmp_path, capsys):
    path = tmp_path / "huge.toml"
    with open(path, "wb") as fh:  # sparse: no disk used, and nothing worth reading
        fh.truncate(MAX_CASE_FILE_BYTES + 1)
    t0 = time.perf_counter()
    load_error(path, None, None, "case file too large", f"{MAX_CASE_FILE_BYTES:,} bytes", "MiB")
    assert time.perf_counter() - t0 < 1.0
    cli_error(capsys, path, tmp_path, "case file too large")


def test_file_at_the_size_limit_is_read(tmp_path):
    text = case_toml()
    pad = MAX_CASE_FILE_BYTES - len(text) - 2
    path = write(tmp_path, text + "#" + "x" * pad + "\n")
    assert path.stat().st_size == MAX_CASE_FILE_BYTES
    assert [c.name for c in load_file(path)] == ["net"]


def run_limited(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that may not hang (timeout) nor take more than 4 GiB.

    The limit is set by a small Python that then execs the CLI, not by ``preexec_fn``: a
    fork of this (JAX-threaded) test process could deadlock before the exec."""
    limited = ("import os, resource, sys; "
               "resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30)); "
               "os.execv(sys.executable, [sys.executable, '-m', 'harness'] + sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", limited, "run", str(path), "--out",
                           str(tmp_path / "out"), "--backends", "manual,fd"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def assert_one_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "cases.toml"
    os.mkfifo(fifo)
    load_error(fifo, None, None, "not a regular file (a FIFO)")  # would block in open()
    assert_one_line(run_limited(fifo, tmp_path), str(fifo), "not a regular file (a FIFO)")


@pytest.mark.skipif(not Path("/dev/zero").exists() or not stat.S_ISCHR(os.stat("/dev/zero").st_mode),
                    reason="needs /dev/zero")
def test_dev_zero_is_refused_without_reading():
    # Reading /dev/zero to the end never ends and takes all memory; it is refused at fstat.
    load_error(Path("/dev/zero"), None, None, "not a regular file (a character device)")


def test_cli_dev_zero(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("needs /dev/zero")
    assert_one_line(run_limited(Path("/dev/zero"), tmp_path), "/dev/zero", "not a regular file")


# --------------------------------------------------------------------------- 4. memory


def test_every_shipped_case_file_loads():
    files = sorted((REPO / "cases").glob("*.toml")) + sorted((REPO / "cases" / "sweeps").glob("*.toml"))
    assert len(files) >= 3
    for path in files:
        assert load_file(path), path
    # and together, as one run of all of them would load them
    assert len(load_files(files)) == sum(len(load_file(p)) for p in files)


def test_memory_estimate_formula():
    # The docstring's formula written out for one case: 3-4-2, batch 5, float64.
    model = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")
    s, P, m = 8, 4 * 3 + 4 + 2 * 4 + 2, 5
    A, X, T, Q, NQ = m * (4 + 2), m * 3, m * 2, max(m * 4, 3 * 4), 6 * 2 + 1
    kept = (s * (X + 2 * T + P) + 5 * s * (P + 4 * A) + 2 * A + cases_mod.CASE_BYTES
            + 10 * NQ * cases_mod.COMPARISON_BYTES)
    compiled = cases_mod.COMPILED_BYTES + 2 * cases_mod.COMPILED_BYTES_PER_LAYER
    working = 8 * (12 * P + 14 * A + 2 * X + 2 * T + 16 * Q)
    assert memory_estimate(model, m) == cases_mod.BASE_BYTES + kept + compiled + working
    # float32 keeps its arrays at half the size, but works in float64.
    m32 = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float32")
    assert memory_estimate(m32, m) == memory_estimate(model, m) - 4 * (X + 2 * T + P + 5 * (P + 4 * A))
    case = Case("c", model, m, 0)
    assert case.memory_estimate() == memory_estimate(model, m)


def test_physical_memory(monkeypatch):
    assert physical_memory() >= 2**28
    assert memory_limit() == int(cases_mod.MEMORY_FRACTION * physical_memory())

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf)
    assert physical_memory() == cases_mod.FALLBACK_MEMORY_BYTES


def _largest_batch(layers: tuple[int, ...], limit: int, spilled: bool = False) -> int:
    """The largest batch whose case fits in ``limit`` (bisection on memory_estimate; with
    ``spilled``, on the parts the CLI counts: its comparisons stay on disk)."""
    model = Model(layers, ("tanh",) * (len(layers) - 2) + ("softmax",), "cross_entropy", "float64")
    need = ((lambda m: cases_mod.BASE_BYTES + sum(cases_mod._memory_parts(model, m, spilled=True)))
            if spilled else (lambda m: memory_estimate(model, m)))
    lo, hi = 1, 2**31 - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if need(mid) <= limit else (lo, mid - 1)
    return lo


@pytest.fixture
def machine_of_4_gib(monkeypatch):
    monkeypatch.setattr(cases_mod, "physical_memory", lambda: 4 * 2**30)
    return memory_limit()


def test_case_just_under_the_memory_limit_loads_and_just_over_is_refused(tmp_path, capsys,
                                                                          machine_of_4_gib):
    m = _largest_batch((3, 4, 2), machine_of_4_gib)
    under = write(tmp_path, case_toml(batch=str(m)), "under.toml")
    (case,) = load_file(under)
    assert case.memory_estimate() <= machine_of_4_gib < memory_estimate(case.model, m + 1)
    over = write(tmp_path, case_toml(batch=str(m + 1)), "over.toml")
    err = load_error(over, "net", "batch", "case too large", "needs about", "GiB of memory",
                     "this machine has 4.0 GiB", "50% of it (2.0 GiB)")
    assert err.message.count("GiB") == 3
    # The CLI keeps the comparisons on disk (harness.records): its records are smaller, so its
    # limit is a larger batch, and one case past it is refused as well.
    m_cli = _largest_batch((3, 4, 2), machine_of_4_gib, spilled=True)
    assert m_cli > m
    over_cli = write(tmp_path, case_toml(batch=str(m_cli + 1)), "over_cli.toml")
    cli_error(capsys, over_cli, tmp_path, "case 'net'", "field 'batch'", "case too large")


def test_parameters_too_large_name_the_layers(tmp_path, machine_of_4_gib):
    path = write(tmp_path, case_toml(layers="[3, 20000, 2000, 2]", activations='"tanh"', batch="1"))
    load_error(path, "net", "layers", "case too large")


def test_sweep_case_over_the_limit_names_the_generated_case(tmp_path, machine_of_4_gib):
    path = write(tmp_path, sweep_toml(width="[5000, 5000]", batch="[1, 1]", depth="[3, 3]"))
    load_error(path, "sw", "width", "case too large: sw-000 (5000-5000-5000-5000, batch 1)")
    path = write(tmp_path, sweep_toml(width="[2, 2]", batch="[20000000, 20000000]"))
    load_error(path, "sw", "batch", "case too large: sw-000")


def test_cases_that_fit_alone_but_not_together_are_refused(tmp_path, capsys, machine_of_4_gib):
    # A run keeps every case's inputs and outputs for the report: the kept bytes add up.
    m = _largest_batch((3, 4, 2), machine_of_4_gib) // 4
    path = write(tmp_path, sweep_toml(count="40", width="[4, 4]", batch=f"[{m}, {m}]",
                                      depth="[1, 1]", losses='["cross_entropy"]'))
    err = load_error(path, "sw", "count", "too much for one run", "GiB of memory together")
    assert "sw-0" in err.message
    # Across files, as `python -m harness run a.toml b.toml` loads them.
    one = write(tmp_path, case_toml(batch=str(2 * m)), "one.toml")
    two = write(tmp_path, case_toml(name='"two"', batch=str(2 * m)), "two.toml")
    three = write(tmp_path, case_toml(name='"three"', batch=str(2 * m)), "three.toml")
    four = write(tmp_path, case_toml(name='"four"', batch=str(2 * m)), "four.toml")
    assert all(load_file(p) for p in (one, two, three, four))  # each alone fits
    with pytest.raises(InputError) as info:
        load_files([one, two, three, four])
    assert "too much for one run" in info.value.message, str(info.value)
    assert info.value.file in (str(three), str(four)) and info.value.field == "batch"


def test_values_count_toward_the_memory(tmp_path):
    path = write(tmp_path, case_toml(values={"X": "[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]"}))
    (case,) = load_file(path)
    assert case.memory_estimate() == memory_estimate(case.model, 2) + 6 * 8


def _peak_rss_of_run(path: Path, out: Path) -> int:
    """Peak RSS in bytes of `python -m harness run PATH` (all default backends)."""
    script = ("import resource, subprocess, sys; "
              "subprocess.run([sys.executable, '-m', 'harness', 'run', sys.argv[1], '--out', "
              "sys.argv[2], '--quiet'], check=False); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    return int(proc.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units differ")
def test_estimate_covers_the_measured_peak(tmp_path):
    # A case of ~20 MB of parameters through all five default backends (fd takes its
    # directional strategy): the estimate must be at least the real peak.
    path = write(tmp_path, case_toml(layers="[1500, 1500, 10]", activations='"tanh"', batch="64"))
    (case,) = load_file(path)
    peak = _peak_rss_of_run(path, tmp_path / "out")
    assert (tmp_path / "out" / "results.json").exists()
    estimate = case.memory_estimate()
    print(f"estimate {estimate / 2**20:.0f} MiB, measured peak {peak / 2**20:.0f} MiB, "
          f"ratio {estimate / peak:.2f}")
    assert estimate >= peak


# --------------------------------------------------------------------------- 5. long sweeps and deep networks


def test_sweep_count_over_the_limit_is_refused_at_once(tmp_path, capsys):
    path = write(tmp_path, sweep_toml(count="1000000000"))
    t0 = time.perf_counter()
    load_error(path, "sw", "count", f"must be at most {MAX_SWEEP_COUNT}, got 1000000000")
    assert time.perf_counter() - t0 < 1.0
    cli_error(capsys, path, tmp_path, "case 'sw'", "field 'count'")


def test_sweep_depth_over_the_limit(tmp_path):
    load_error(write(tmp_path, sweep_toml(depth=f"[1, {MAX_DEPTH + 1}]")), "sw", "depth",
               f"must be at most {MAX_DEPTH}")


def test_sweep_drawing_too_many_layer_sizes(tmp_path):
    count = MAX_SWEEP_WIDTHS // (MAX_DEPTH + 1) + 1
    path = write(tmp_path, sweep_toml(count=str(count), depth=f"[1, {MAX_DEPTH}]"))
    load_error(path, "sw", "count", f"at most {MAX_SWEEP_WIDTHS:,} layer sizes")


def test_case_depth_limit(tmp_path):
    deep = "[" + ", ".join(["2"] * (MAX_DEPTH + 2)) + "]"
    load_error(write(tmp_path, case_toml(layers=deep, activations='"tanh"')), "net", "layers",
               f"{MAX_DEPTH + 1} layers; at most {MAX_DEPTH}")
    ok = "[" + ", ".join(["2"] * (MAX_DEPTH + 1)) + "]"
    (case,) = load_file(write(tmp_path, case_toml(layers=ok, activations='"tanh"'), "ok.toml"))
    assert case.model.L == MAX_DEPTH


def test_sweep_expansion_stays_fast(tmp_path, monkeypatch):
    # 20,000 small cases, each checked against the memory budget, in a few seconds. (A run of
    # them needs some 90 GiB, mostly for JAX's compiled functions and the report: hence the
    # large machine.)
    monkeypatch.setattr(cases_mod, "physical_memory", lambda: 2**40)
    path = write(tmp_path, sweep_toml(count="20000", depth="[1, 4]", width="[1, 12]",
                                      batch="[1, 24]"))
    t0 = time.perf_counter()
    assert len(load_file(path)) == 20_000
    assert time.perf_counter() - t0 < 20.0
