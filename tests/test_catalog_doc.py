"""docs/catalog.md is what the catalog says now: regenerate it with
``python -m harness.catalog.doc > docs/catalog.md`` whenever a layer, loss or L2 form changes."""

import subprocess
import sys
from pathlib import Path

from harness.catalog import L2_FORMS, LAYERS, NETWORK_LOSSES
from harness.catalog.doc import LOSS_BUILTINS, markdown

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "catalog.md"
REGENERATE = "python -m harness.catalog.doc > docs/catalog.md"


def test_the_committed_doc_is_what_the_catalog_generates():
    assert DOC.read_text(encoding="utf-8") == markdown(), f"docs/catalog.md is stale: run `{REGENERATE}`"


def test_every_layer_loss_and_l2_form_has_its_row():
    rows = [line for line in markdown().splitlines() if line.startswith("| `")]
    named = [row.split("`")[1] for row in rows]
    assert sorted(named) == sorted([*LAYERS, *NETWORK_LOSSES, *L2_FORMS])
    for name, layer in LAYERS.items():
        row = rows[named.index(name)]
        assert layer.formula in row.replace("\\|", "|") and layer.derivative in row.replace("\\|", "|")
    # the built-ins' differences are written per loss: a new loss without one fails here
    assert set(LOSS_BUILTINS) == set(NETWORK_LOSSES)


def test_rows_show_shapes_defaults_and_the_frameworks_defaults():
    text = markdown()
    assert "`W{i}` n×units (L2)<br>`b{i}` 1×units" in text
    assert "`gamma{i}` n ([C, H, n]: C)" in text  # batch norm's γ is per channel on an image
    assert "`mask{i}` m × the input's shape (an input, not differentiated)" in text
    assert "`eps` = 1e-05" in text and "`units` (required)" in text
    assert "unbiased" in text and "algorithm='fast'" in text
    assert "divides each example's sum by N" in text and "reduction='mean'" in text
    tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("| ")]
    assert len(tables) == 4
    for table in tables:  # no | inside a cell ends it early: every row has the header's columns
        assert len({row.replace("\\|", "").count("|") for row in table}) == 1, table[0]


def test_the_regeneration_command_prints_the_doc_without_torch_or_jax():
    code = ("import runpy, sys; runpy.run_module('harness.catalog.doc', run_name='__main__'); "
            "assert not {'torch', 'jax'} & set(sys.modules), 'a framework was imported'")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == DOC.read_text(encoding="utf-8")
