"""The repository holds source, not binaries: every tracked file stays under 1 MB."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1_000_000


def test_no_tracked_file_exceeds_1_mb():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        import pytest
        pytest.skip("not a git checkout")
    big = [(p, (ROOT / p).stat().st_size) for p in listed.decode().split("\0")
           if p and (ROOT / p).is_file() and (ROOT / p).stat().st_size > LIMIT]
    assert not big, f"tracked files over 1 MB (build or download them instead): {big}"


def test_wheels_are_ignored():
    assert "*.whl" in (ROOT / ".gitignore").read_text().split()
