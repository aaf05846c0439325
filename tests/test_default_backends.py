"""A default backend that applies to no case of a run (manual_columns on conv networks) leaves
the verdict with a note; named in --backends, it still fails a run where it compares nothing."""

from conftest import run_cli

CONV_ONLY = """
[[case]]
name = "tiny-conv"
input = [1, 4, 4]
batch = 2
loss = "cross_entropy"
network = [{layer = "conv2d", filters = 2, kernel = 3}, {layer = "flatten"}, {layer = "dense", units = 2}]
"""


def test_an_inapplicable_default_backend_leaves_the_verdict(tmp_path):
    (tmp_path / "c.toml").write_text(CONV_ONLY)
    p = run_cli("run", tmp_path / "c.toml", "--out", tmp_path / "out", "--quiet", fresh=True)  # all five, from scratch
    assert p.returncode == 0, p.stdout + p.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert "`manual_columns` is a default backend not applicable to any case" in report
    assert "manual_columns covers networks of dense layers only" in report


def test_named_it_still_fails_when_it_compares_nothing(tmp_path):
    (tmp_path / "c.toml").write_text(CONV_ONLY)
    p = run_cli("run", tmp_path / "c.toml", "--backends", "manual,manual_columns", "--out", tmp_path / "out",
                "--quiet")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "NOTHING COMPARED BY MANUAL VS MANUAL_COLUMNS" in p.stdout
