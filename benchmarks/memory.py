"""How a run's memory grows with its cases: ``python -m benchmarks --only memory``.

The CLI keeps each case's comparisons on disk once it is done (``harness.records``) and writes
its reports a few thousand rows at a time, so a case should cost the run about
``cases.CASE_BYTES`` of memory (the memory check's figure), not its comparisons. Measured two
ways:
- peak RSS of ``python -m harness run`` (a process of its own, ``os.wait4``) on N and 8N small
  MLP cases of one shape, manual and torch (no JAX: its compiled functions grow with the
  shapes met, which the memory check counts apart): the difference ÷ 7N is a case's share;
- in this process, the bytes reachable from a run's cases (``sys.getsizeof`` over the objects,
  each counted once), with the records in memory and on disk, on catalog cases with the five
  default backends.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from harness import cases as case_limits
from harness.backends import build
from harness.cases import load_file
from harness.records import Spill
from harness.runner import pin_threads, run

from . import main_module

ROOT = Path(__file__).resolve().parent.parent

SWEEP = """[[sweep]]
name = "mem"
count = {count}
seed = 5
depth = [2, 2]
width = [8, 8]
batch = [4, 4]
dtypes = ["float64"]
"""


def _peak_rss(path: Path, out: Path) -> tuple[int, float]:
    """Peak RSS (bytes) and seconds of ``python -m harness run`` on one file."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--backends", "manual,torch",
                             "--out", str(out), "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"harness run {path.name} exited {proc.returncode}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t0  # ru_maxrss: KiB on Linux


def _reachable_bytes(root) -> int:
    """sys.getsizeof over every object reachable from ``root``, each once, not going into
    classes, modules or functions (through which everything is reachable)."""
    seen, todo, total = set(), [root], 0
    while todo:
        o = todo.pop()
        if id(o) in seen or isinstance(o, (type, types.ModuleType, types.FunctionType, types.MethodType,
                                           types.BuiltinFunctionType)):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        todo.extend(gc.get_referents(o))
    return total


def records_memory(small: int = 1000, catalog_cases: int = 20) -> None:
    print("\n== memory: what a case costs a run (records on disk) ==")
    with tempfile.TemporaryDirectory() as tmp:
        rss = {}
        for n in (small, 8 * small):
            path = Path(tmp) / f"mlp{n}.toml"
            path.write_text(SWEEP.format(count=n))
            rss[n], seconds = _peak_rss(path, Path(tmp) / f"out{n}")
            print(f"  peak RSS, {n:,} MLP cases (manual, torch): {rss[n] / 2**20:,.0f} MiB in {seconds:.0f} s")
    per_case = (rss[8 * small] - rss[small]) / (7 * small)
    main_module().report("peak RSS of a run, per case beyond the first (MLP cases)", per_case, f"≤ CASE_BYTES "
           f"({case_limits.CASE_BYTES:,})", per_case <= case_limits.CASE_BYTES, "bytes")

    pin_threads()
    cases = load_file(ROOT / "cases" / "sweeps" / "catalog.toml")[:catalog_cases]
    backends = build.build(["manual", "manual_columns", "torch", "jax", "fd"], [], 600)
    try:
        kept = run(cases, backends, keep_arrays=False)
    finally:
        build.close(backends)
    n = kept.n_comparisons
    in_memory = _reachable_bytes(kept.cases) / len(cases)
    spill = Spill()
    for r in kept.cases:
        r.spill(spill)
    gc.collect()
    spilled = _reachable_bytes(kept.cases) / len(cases)
    print(f"  {len(cases)} catalog cases, five backends: {n / len(cases):.0f} comparisons a case")
    main_module().report("a catalog case's results in memory, records kept", in_memory, "—", None, "bytes")
    main_module().report("same, records on disk (the CLI)", spilled, f"≤ CASE_BYTES ({case_limits.CASE_BYTES:,})",
           spilled <= case_limits.CASE_BYTES, "bytes")
    main_module().report("records on disk, per comparison", spill.nbytes / n, "—", None, "bytes")
    admitted(ROOT / "cases" / "sweeps" / "catalog.toml", 100_000)


def admitted(path: Path, count: int) -> None:
    """What the memory check says of one CLI run of ``count`` cases of the catalog sweep: drawn
    and checked as `harness run --yes` would (about a minute for 100,000)."""
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "catalog.toml"
        big.write_text(path.read_text().replace("count = 1000", f"count = {count}", 1))
        budget = case_limits._MemoryBudget(keep_arrays=False, spilled=True)
        try:
            drawn = len(case_limits._load_file(big, budget, allow_huge=True))
        except case_limits.InputError as e:
            print(f"  refused: {e}")
            drawn = 0
    need = case_limits.BASE_BYTES + budget.kept + budget.working + sum(budget.in_flight)
    main_module().report(f"{count:,} catalog cases in one CLI run: the memory check's estimate", need / 2**30,
                         f"≤ {case_limits.memory_limit() / 2**30:.1f} (the run's limit)", drawn == count, "GiB")
