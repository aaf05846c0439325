"""What the shipped default cases cover, and the column convention as the row one transposed.
That every shipped case agrees across the built-in backends is tests/test_tolerances.py's."""

from pathlib import Path

import numpy as np

from harness.cases import load_file

ROOT = Path(__file__).resolve().parent.parent
# Every shipped case through every built-in backend and variant, with every pair of analytic
# arms comparing every quantity: tests/test_tolerances.py (its margins come from that run).
SHIPPED = load_file(ROOT / "cases" / "default.toml")


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
