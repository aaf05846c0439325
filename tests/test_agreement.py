"""Every shipped MLP case: all pairs of built-in backends agree on J, dW{l}, db{l} (the catalog
networks: tests/test_tolerances.py)."""

from pathlib import Path

import numpy as np

import pytest

from harness.cases import load_file
from harness.runner import run_case

ROOT = Path(__file__).resolve().parent.parent
# The MLP files. The catalog networks (networks.toml, sequences.toml) run through every built-in
# backend, fd included, in tests/test_tolerances.py::test_margin_on_shipped_cases, which also
# asserts this file's rule for them (every analytic pair compares every quantity): running their
# JAX compiles twice was a tenth of the suite's time.
NETWORK_FILES = ("networks.toml", "sequences.toml")
SHIPPED = [c for f in sorted((ROOT / "cases").glob("*.toml")) if f.name not in NETWORK_FILES
           for c in load_file(f)]


# fd is left out here: tests/test_tolerances.py::test_margin_on_shipped_cases runs every shipped
# case through every built-in backend, fd included (and fd's variants), and asserts that the
# run passes; running fd twice over the shipped cases was a tenth of the suite's time.
ANALYTIC = ("manual", "manual_columns", "torch", "jax")


@pytest.mark.parametrize("case", SHIPPED, ids=lambda c: c.name)
def test_all_pairs_agree(case, builtin):
    backends = [builtin[n] for n in ANALYTIC]
    result = run_case(case, backends)
    assert not result.errors, [e.message for e in result.errors]
    # Every one runs, but manual_columns only on MLPs and networks of dense layers (on
    # others it says why, as a note).
    ran = set(result.outputs)
    assert ran == set(ANALYTIC) or (ran == set(ANALYTIC) - {"manual_columns"}
                                    and "dense layers only" in result.notes["manual_columns"])
    # every pair that ran compares every quantity, per-layer intermediates included
    n_pairs = len(ran) * (len(ran) - 1) // 2
    assert len(result.comparisons) == n_pairs * len(case.model.algorithm_order())
    problems = [c.message() for c in result.failures()]
    assert not problems, "\n".join(problems)


def test_default_cases_cover_what_they_promise():
    """cases/default.toml: every activation, every loss, both dtypes, batch 1 and > 1, depth 1..4."""
    from harness.activations import ALL_NAMES
    from harness.losses import LOSSES

    cases = load_file(ROOT / "cases" / "default.toml")
    assert {a for c in cases for a in c.model.activations} == set(ALL_NAMES)
    assert {c.model.loss for c in cases} == set(LOSSES)
    assert {c.model.dtype for c in cases} == {"float32", "float64"}
    assert {1} < {c.batch for c in cases}
    assert {1, 2, 3, 4} <= {c.model.L for c in cases}
    assert any(c.name.startswith("sweep-") for c in cases)
    assert any(c.values for c in cases)


def test_column_convention_is_the_transpose_of_the_row_convention(builtin):
    """manual_columns works on transposed arrays; after to_rows its numbers are manual's."""
    from harness.backends.manual_columns import to_columns

    case = SHIPPED[0]
    arrays = case.arrays()
    cols = to_columns(case.model, arrays)
    assert cols["A0"].shape == (case.model.layers[0], case.batch)  # examples are columns
    assert cols["W1"].shape == (case.model.layers[1], case.model.layers[0])  # n_1 × n_0
    assert cols["b1"].shape == (case.model.layers[1], 1)
    rows = builtin["manual_columns"].gradients(case.model, arrays)
    ref = builtin["manual"].gradients(case.model, arrays)
    for q in case.model.algorithm_order():
        np.testing.assert_allclose(rows[q], ref[q], rtol=1e-12, atol=1e-14, err_msg=q)
