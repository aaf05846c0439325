"""The catalog sweep (harness/cases.py, harness/network_cases.py): a `[[sweep]]` whose `layers`
name more than one family draws each case's family by weight, then a shape-valid network of it.

Expansion only, except the last test, which runs a few cases of cases/sweeps/catalog.toml
through manual, torch, jax and fd.
"""

from __future__ import annotations

import collections
import hashlib
import math
import re
from pathlib import Path

import pytest

from harness import cases as cases_mod
from harness.cases import MAX_SWEEP_COUNT, load_file
from harness.cli import main
from harness.errors import InputError
from harness.network import Network
from harness.network_cases import FAMILIES, SWEEP_LOSSES

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "cases" / "sweeps" / "catalog.toml"
ALL_LAYERS = ["dense", "conv2d", "maxpool2d", "avgpool2d", "batchnorm", "layernorm", "dropout",
              "embedding", "rnn", "lstm", "attention", "residual"]
SEQUENCE_KINDS = ("rnn", "lstm", "attention")


@pytest.fixture
def big_machine(monkeypatch):
    """A machine of 1 TiB: these tests count drawn layers, not memory."""
    monkeypatch.setattr(cases_mod, "physical_memory", lambda: 2**40)


def sweep(tmp_path: Path, name: str = "cat.toml", **settings: str) -> Path:
    fields = {"name": '"cat"', "count": "300", "seed": "15",
              "layers": "[" + ", ".join(f'"{k}"' for k in ALL_LAYERS) + "]",
              "depth": "[1, 2]", "width": "[2, 6]", "batch": "[2, 4]", **settings}
    path = tmp_path / name
    path.write_text("[[sweep]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None))
    return path


def family(net: Network) -> str:
    """conv when the network flattens an image, sequence when its input is [T, D] or token ids."""
    if any(s.kind == "flatten" for s in net.network):
        return "conv"
    return "sequence" if len(net.input) == 2 or net.vocab else "dense"


def fingerprint(cases) -> str:
    """Name, batch, seed and the whole network (or MLP) of each case, hashed."""
    h = hashlib.sha256()
    for c in cases:
        m = c.model
        if isinstance(m, Network):
            net = (m.input, tuple((s.kind, s.attrs, s.index, s.in_shape, s.out_shape) for s in m.network),
                   m.loss, m.dtype, repr(m.l2), m.l2_form, m.vocab)
        else:
            net = (m.layers, m.activations, m.loss, m.dtype)
        h.update(repr((c.name, c.batch, c.seed, repr(c.input_scale), net)).encode())
    return h.hexdigest()[:16]


def within(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """k successes of n draws of probability p, within ``sigmas`` binomial standard deviations
    (4σ: a correct generator lands outside about once in 16,000 seeds)."""
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# --------------------------------------------------------------------------- what it draws


def test_catalog_sweep_draws_every_family_and_layer_shape_valid(tmp_path, big_machine):
    cases = load_file(sweep(tmp_path, input="{conv = [[1, 2], [4, 8], [4, 8]], sequence = [[1, 5], [4, 8]]}"))
    assert len(cases) == 300
    assert {family(c.model) for c in cases} == set(FAMILIES)
    kinds = {s.kind for c in cases for s in c.model.network}
    assert set(ALL_LAYERS) <= kinds, set(ALL_LAYERS) - kinds
    assert {c.model.dtype for c in cases} == {"float32", "float64"}
    for c in cases:
        specs = c.model.network
        dense_at = [s.index for s in specs if s.kind == "dense"]
        if family(c.model) == "conv":  # a conv stack ends in flatten before any dense
            flat = next(s.index for s in specs if s.kind == "flatten")
            assert len(c.model.input) == 3 and flat < min(dense_at), c.name
            assert all(len(s.in_shape) == 3 for s in specs if s.index < flat), c.name
        for s in specs:
            if s.kind in SEQUENCE_KINDS:  # sequence layers get sequence inputs
                assert len(s.in_shape) == 2, (c.name, s.label())
            if s.kind == "attention":
                assert s.in_shape[1] % s["heads"] == 0, (c.name, s.label())


def test_same_seed_same_cases_and_a_list_is_a_table_of_equal_weights(tmp_path, big_machine):
    first = fingerprint(load_file(sweep(tmp_path, count="60")))
    assert fingerprint(load_file(sweep(tmp_path, "again.toml", count="60"))) == first
    assert fingerprint(load_file(sweep(tmp_path, "other.toml", count="60", seed="16"))) != first
    table = "{" + ", ".join(f"{k} = 1" for k in ALL_LAYERS) + "}"
    assert fingerprint(load_file(sweep(tmp_path, "table.toml", count="60", layers=table))) == first


def test_weights_choose_families_and_layers_in_proportion(tmp_path, big_machine):
    # Family weights: dense 4, conv 1 (conv2d; maxpool2d 0), sequence 3 (rnn 1 + attention 2;
    # lstm 0); norms: batchnorm only.
    n = 400
    layers = ("{dense = 4, conv2d = 1, maxpool2d = 0, avgpool2d = 0, rnn = 1, attention = 2, lstm = 0, "
              "batchnorm = 1, layernorm = 0, dropout = 1}")
    cases = load_file(sweep(tmp_path, count=str(n), layers=layers, blocks="[1, 3]"))
    kinds = collections.Counter(s.kind for c in cases for s in c.model.network)
    assert not {"maxpool2d", "avgpool2d", "lstm", "layernorm"} & set(kinds)  # weight 0: never
    families = collections.Counter(family(c.model) for c in cases)
    for fam, p in {"dense": 4 / 8, "conv": 1 / 8, "sequence": 3 / 8}.items():
        assert within(families[fam], n, p), (fam, families[fam], n * p)
    # and the bound is tight enough to tell these weights from equal ones (the check can fail)
    assert not within(families["dense"], n, 1 / 3) and not within(families["conv"], n, 1 / 3), families
    blocks = kinds["rnn"] + kinds["attention"]
    assert within(kinds["attention"], blocks, 2 / 3), (kinds["attention"], blocks)
    assert not within(kinds["attention"], blocks, 1 / 2), (kinds["attention"], blocks)


def test_kernel_and_heads_ranges_are_respected(tmp_path, big_machine):
    cases = load_file(sweep(tmp_path, count="150", layers='["conv2d", "attention", "dense"]',
                            input="{conv = [1, [5, 8], [5, 8]], sequence = [[2, 3], [5, 9]]}",
                            kernel="[3, 5]", heads="[2, 3]"))
    convs = [s for c in cases for s in c.model.network if s.kind == "conv2d"]
    atts = [s for c in cases for s in c.model.network if s.kind == "attention"]
    assert convs and atts
    sizes = {k for s in convs for k in (s["kernel"] if isinstance(s["kernel"], (list, tuple)) else [s["kernel"]])}
    assert sizes <= {3, 4, 5} and 3 in sizes, sizes
    assert {s["heads"] for s in atts} == {2, 3}
    # widths 5 and 7 take neither 2 nor 3 heads: the drawn widths are 6, 8 or 9
    assert {s.in_shape[1] for s in atts} <= {6, 8, 9}


# --------------------------------------------------------------------------- the shipped files


# Taken with the code of commit d7246d5 (before the catalog sweep existed): the catalog sweep's
# changes to the generators must leave every existing sweep drawing exactly the same cases.
BEFORE = {"conv.toml": "7a648f1b05e912f6", "sequences.toml": "e5a972794559f328",
          "specificity.toml": "d373960e5a3d5e71", "extreme_scales.toml": "cbe38f4349ae53f5"}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_existing_sweep_files_draw_the_same_cases(name):
    assert fingerprint(load_file(REPO / "cases" / "sweeps" / name)) == BEFORE[name]


def test_the_fingerprint_sees_a_changed_case(tmp_path):
    cases = load_file(REPO / "cases" / "sweeps" / "sequences.toml")
    moved = [cases[0].__class__(c.name, c.model, c.batch, c.seed + (i == 3), c.source) for i, c in enumerate(cases)]
    assert fingerprint(moved) != BEFORE["sequences.toml"]


def catalog_sample(tmp_path: Path, count: int) -> Path:
    """cases/sweeps/catalog.toml with a smaller count: the same seed draws its first cases."""
    text = CATALOG.read_text()
    assert re.search(r"^count = 1000$", text, re.M)
    path = tmp_path / "catalog.toml"
    path.write_text(re.sub(r"^count = 1000$", f"count = {count}", text, flags=re.M))
    return path


def test_shipped_catalog_sweep_covers_the_catalog(tmp_path):
    cases = load_file(CATALOG)
    assert len(cases) == 1000
    assert {family(c.model) for c in cases} == set(FAMILIES)
    kinds = {s.kind for c in cases for s in c.model.network}
    assert set(ALL_LAYERS) <= kinds, set(ALL_LAYERS) - kinds
    assert {c.model.dtype for c in cases} == {"float32", "float64"}
    assert {c.model.l2_form for c in cases} == {"half", "sum", "half_mean"}
    assert {c.model.loss for c in cases} == set(SWEEP_LOSSES)
    # a smaller count draws the first cases of a larger one (what its header's numbers rely on)
    assert fingerprint(load_file(catalog_sample(tmp_path, 30))) == fingerprint(cases[:30])


# --------------------------------------------------------------------------- bad input

BAD = [  # (id, settings, field, words)
    ("kernel-fits-no-input", dict(layers='["conv2d", "rnn"]', input="{conv = [1, [3, 5], 4]}", kernel="[7, 8]"),
     "kernel", ["fits no input", "5 × 4", "7 × 6"]),
    ("heads-divide-no-width", dict(layers='["attention", "dense"]', input="{sequence = [2, [5, 5]]}", heads="[2, 4]"),
     "heads", ["no head count in [2, 4]", "5..5"]),
    ("every-weight-0", dict(layers="{dense = 0, conv2d = 0}"), "layers", ["every weight is 0"]),
    ("negative-weight", dict(layers="{dense = 1, lstm = -1}"), "layers.lstm", ["a weight is a number", "-1"]),
    ("unknown-layer-in-table", dict(layers="{dense = 1, lstn = 1}"), "layers.lstn", ["did you mean 'lstm'"]),
    ("input-list-in-a-catalog-sweep", dict(input="[1, 8, 8]"), "input", ["{conv = [C, H, W], sequence = [T, D]}"]),
    ("input-of-a-family-not-drawn", dict(layers='["dense", "rnn"]', input="{conv = [1, 8, 8]}"), "input.conv",
     ["draws sequence inputs"]),
    ("heads-without-attention", dict(layers='["dense", "rnn"]', heads="[1, 2]"), "heads", ["no attention"]),
    ("kernel-without-conv2d", dict(layers='["dense", "maxpool2d"]', kernel="[1, 2]"), "kernel", ["no conv2d"]),
    ("heads-over-the-limit", dict(heads="[1, 100000]"), "heads", [f"at most {cases_mod.MAX_HEADS}"]),
    ("count-over-a-million", dict(count=str(MAX_SWEEP_COUNT + 1)), "count",
     [f"at most {MAX_SWEEP_COUNT}, got {MAX_SWEEP_COUNT + 1}", "--yes"]),
]


@pytest.mark.parametrize("settings, field, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_catalog_sweep_is_one_line_exit_2(settings, field, words, tmp_path, capsys):
    path = sweep(tmp_path, **settings)
    with pytest.raises(InputError) as info:
        load_file(path)
    assert (info.value.file, info.value.case, info.value.field) == (str(path), "cat", field), str(info.value)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--backends", "manual"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for word in (str(path), f"field '{field}'", *words):
        assert word in err, f"{word!r} not in {err!r}"
    assert not out.exists()


def test_yes_lifts_the_count_limit_not_the_memory_check(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cases_mod, "physical_memory", lambda: 4 * 2**30)
    path = tmp_path / "huge.toml"
    path.write_text(f'[[sweep]]\nname = "huge"\ncount = {MAX_SWEEP_COUNT + 1}\ndepth = [1, 1]\nwidth = [1, 2]\n')
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--backends", "manual"]) == 2
    assert "--yes" in capsys.readouterr().err
    # With --yes it draws, until the run would not fit in memory: a few hundred cases.
    assert main(["run", str(path), "--out", str(out), "--backends", "manual", "--yes"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "too much for one run" in err and "field 'count'" in err, err
    assert not out.exists()


# --------------------------------------------------------------------------- it agrees


# One network of each family, the sequence one twice (attention on token ids, an rnn), among
# the cheapest of the first 100 to compile: JAX's compile is most of a case's time.
SAMPLE = {"catalog-001": "dense", "catalog-017": "sequence", "catalog-035": "conv", "catalog-043": "sequence"}


def test_a_sample_of_the_shipped_catalog_sweep_agrees(tmp_path, builtin):
    from harness.runner import run

    cases = [c for c in load_file(CATALOG) if c.name in SAMPLE]
    assert {c.name: family(c.model) for c in cases} == SAMPLE
    result = run(cases, [builtin[k] for k in ("manual", "torch", "jax", "fd")])
    for r in result.cases:
        assert r.passed, (r.case.name, r.case.model.describe(), [e.message for e in r.errors],
                          [c.message() for c in r.comparisons if not c.passed][:3])
