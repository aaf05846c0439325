"""Trust: precision traps are caught, NaN is named as NaN, and runs are reproducible."""

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from harness.backends import BackendOutputError, check_output
from harness.cases import Case
from harness.model import Model
from harness.runner import run_case

CASE64 = Case("c64", Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64"), 5, 1)


def test_torch_float32_default_dtype_does_not_leak_into_a_float64_case(builtin):
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        out = check_output(CASE64.model, builtin["torch"].gradients(CASE64.model, CASE64.arrays()), 5)
    finally:
        torch.set_default_dtype(old)
    assert all(v.dtype == np.float64 for v in out.values())


def test_a_backend_that_builds_tensors_from_python_floats_is_caught():
    """The trap the torch backend avoids: torch.tensor(list) takes the float32 default dtype."""
    import torch

    class Naive:
        name = "naive-torch"

        def gradients(self, model, arrays):
            from harness.backends import get
            g = get("manual").gradients(model, arrays)
            g["dW1"] = torch.tensor(g["dW1"].tolist(), dtype=torch.float32).numpy()  # silently float32
            return g

    with pytest.raises(BackendOutputError, match="dW1 has dtype float32, the case is float64 \\(a silent downcast\\)"):
        check_output(CASE64.model, Naive().gradients(CASE64.model, CASE64.arrays()), 5)
    result = run_case(CASE64, [Naive()])
    assert "silent downcast" in result.errors[0].message


def test_nan_is_reported_with_backend_and_quantity(builtin):
    class NaNs:
        name = "nans"

        def gradients(self, model, arrays):
            g = builtin["manual"].gradients(model, arrays)
            g["db2"] = np.full_like(g["db2"], np.nan)
            return g

    result = run_case(CASE64, [builtin["manual"], NaNs()])
    (bad,) = result.failures()
    assert bad.quantity == "db2" and "2 non-finite in nans" in bad.message()
    assert "NaN/Inf, not a disagreement of values" in bad.message()


def test_two_runs_give_identical_tables_and_arrays(tmp_path):
    outs = [tmp_path / "one", tmp_path / "two"]
    for out in outs:
        proc = run_cli("run", "cases/hard.toml", "--save-arrays", "--quiet", "--out", out)
        assert proc.returncode == 0, proc.stdout
    one, two = (pd.read_csv(o / "agreement.csv") for o in outs)
    pd.testing.assert_frame_equal(one, two)
    assert (outs[0] / "agreement.csv").read_bytes() == (outs[1] / "agreement.csv").read_bytes()
    files = sorted(p.relative_to(outs[0]) for p in (outs[0] / "arrays").rglob("*.npz"))
    assert len(files) == 8 * 6  # inputs + five backends, per case
    for rel in files:
        a, b = np.load(outs[0] / rel, allow_pickle=False), np.load(outs[1] / rel, allow_pickle=False)
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{rel}:{k}")
