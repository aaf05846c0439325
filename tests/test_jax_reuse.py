"""The jax backend compiles once per signature (static structure, shapes, dtypes), not per case.

Cases that differ only in name, seed or values share one executable and still get their own
gradients, equal to what a fresh backend computes; a different dtype, batch or structure
compiles anew. Compiles are counted by the backend itself (``JaxBackend.stats``).
"""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("jax")

from harness.backends.jax_backend import JaxBackend  # noqa: E402
from harness.cases import Case, load_file  # noqa: E402
from harness.model import Model  # noqa: E402

MLP = Model((3, 4, 2), ("tanh", "softmax"), "cross_entropy", "float64")

NETWORK = """
[[case]]
name = "{name}"
input = [3]
batch = {batch}
dtype = "{dtype}"
loss = "cross_entropy"
l2 = {l2}
seed = {seed}
network = [{{layer = "dense", units = 4, activation = "tanh"}}, {{layer = "dropout", rate = 0.25}},
           {{layer = "dense", units = 2}}]
"""


def network_case(tmp_path, name="a", batch=3, dtype="float64", l2=0.0, seed=1):
    path = tmp_path / f"{name}.toml"
    path.write_text(NETWORK.format(name=name, batch=batch, dtype=dtype, l2=l2, seed=seed))
    (case,) = load_file(path)
    return case


def assert_same(got, want, where):
    assert got.keys() == want.keys(), where
    for k in want:
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k]), f"{where}: {k} differs"


def test_mlp_cases_of_one_signature_compile_once_and_keep_their_own_values():
    first, second = Case("first", MLP, 5, seed=1), Case("second", MLP, 5, seed=2)
    jb = JaxBackend()
    a, b = jb.gradients(MLP, first.arrays()), jb.gradients(MLP, second.arrays())
    assert jb.stats.compiles == 1, f"{jb.stats.compiles} compiles for two cases of one signature"
    assert not np.array_equal(a["dW1"], b["dW1"])  # the second case ran on its own values
    assert_same(b, JaxBackend().gradients(MLP, second.arrays()), "second case, shared vs fresh backend")


def test_network_cases_of_one_signature_compile_once_and_keep_their_own_values(tmp_path):
    first, second = network_case(tmp_path, "a", seed=1), network_case(tmp_path, "b", seed=2)
    assert first.model == second.model and first.name != second.name
    jb = JaxBackend()
    a, b = jb.gradients(first.model, first.arrays()), jb.gradients(second.model, second.arrays())
    assert jb.stats.compiles == 1, f"{jb.stats.compiles} compiles for two cases of one signature"
    assert not np.array_equal(a["dW1"], b["dW1"])
    assert_same(b, JaxBackend().gradients(second.model, second.arrays()), "second case, shared vs fresh backend")


def test_a_new_dtype_batch_or_structure_compiles_anew(tmp_path):
    jb = JaxBackend()
    base = network_case(tmp_path, "base")
    jb.gradients(base.model, base.arrays())
    for n, (what, case) in enumerate([("float32", network_case(tmp_path, "f32", dtype="float32")),
                                      ("batch 4", network_case(tmp_path, "m4", batch=4)),
                                      ("l2", network_case(tmp_path, "l2", l2=0.1))], start=2):
        out = jb.gradients(case.model, case.arrays())
        assert jb.stats.compiles == n, f"{what}: {jb.stats.compiles} compiles, expected {n}"
        assert out["dW1"].dtype == case.model.np_dtype, what
    mlp32 = dataclasses.replace(MLP, dtype="float32")
    jb.gradients(MLP, Case("m", MLP, 5, seed=1).arrays())
    out = jb.gradients(mlp32, Case("m32", mlp32, 5, seed=1).arrays())
    assert jb.stats.compiles == 6 and out["dW1"].dtype == np.float32


def test_only_the_most_recently_used_signatures_stay_compiled(monkeypatch):
    """A sweep of random networks compiles one function per case: the backend keeps the
    KEPT_SIGNATURES used last (each kept executable holds about 2.6 MiB), and a dropped one met
    again is compiled anew, to the same bits."""
    from harness.backends import jax_backend

    monkeypatch.setattr(jax_backend, "KEPT_SIGNATURES", 2)
    jb = JaxBackend()
    cases = [Case(f"m{n}", MLP, n, seed=n) for n in (2, 3, 4)]  # three batch sizes: three signatures
    first = jb.gradients(MLP, cases[0].arrays())
    for c in cases[1:]:
        jb.gradients(MLP, c.arrays())
    assert len(jb._executables) == 2 and jb.stats.compiles == 3
    jb.gradients(MLP, cases[2].arrays())  # still kept: no compile
    assert jb.stats.compiles == 3
    again = jb.gradients(MLP, cases[0].arrays())  # dropped: compiled again
    assert jb.stats.compiles == 4 and len(jb._executables) == 2
    assert_same(again, first, "a signature compiled again after it was dropped")
