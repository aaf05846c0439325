"""Parallel runs on Dask distributed: a local cluster (--jobs), an existing cluster
(--scheduler), a worker killed mid-sweep, a case that kills every worker, bad addresses.

The backends are manual and fd: numpy only, so a worker (re)starts in a second or two
instead of importing torch and JAX. The bit-for-bit check over every built-in backend is
tests/test_performance_features.py's --jobs 2 test, which now runs on a local cluster too.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli

pytest.importorskip("distributed")

SWEEP = ('[[sweep]]\nname = "s"\ncount = {count}\nseed = 7\nwidth = [8, 24]\nbatch = [8, 24]\n'
         'depth = [1, 3]\ndtypes = ["float64", "float32"]\n')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cases(tmp_path, count):
    from harness.cases import load_file

    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP.format(count=count))
    return path, load_file(path)


def _rows(result):
    """Every comparison row of a run, in order, with its numbers: what the report shows."""
    return [(r.case.name, c.quantity, c.a, c.b, c.passed, c.max_abs, c.norm_rel) for r in result.cases
            for c in r.comparisons]


def test_a_local_cluster_gives_the_serial_results_case_by_case(tmp_path):
    from harness.backends import get
    from harness.parallel import run_distributed
    from harness.records import Spill, SpilledComparisons
    from harness.runner import run

    _, cases = _cases(tmp_path, 12)
    serial = run(cases, [get("manual"), get("fd")])
    seen = []
    # As the CLI runs without --save-arrays: the workers drop the arrays before sending results.
    # And as it keeps the records: on disk, each result as it arrives (harness.records).
    parallel = run_distributed(cases, ["manual", "fd"], jobs=2, progress=lambda *a: seen.append(a),
                               keep_arrays=False, spill=Spill())
    assert all(isinstance(r.comparisons, SpilledComparisons) for r in parallel.cases)
    assert [r.case.name for r in parallel.cases] == [c.name for c in cases]  # file order
    assert all(r.shed and r.outputs == {"manual": {}, "fd": {}} for r in parallel.cases)
    assert _rows(parallel) == _rows(serial) and len(_rows(serial)) > 100
    assert parallel.passed and parallel.backends == ["manual", "fd"]
    assert seen[0] == (0, 12, "", 0) and seen[-1][:2] == (12, 12) and len(seen) == 13


def test_local_workers_allocate_as_the_parent_does():
    """Dask's nannies set MALLOC_TRIM_THRESHOLD_, which turns off glibc's adaptive mmap threshold
    (a mid-size case ran 20-30% slower in a worker); the local cluster leaves it unset, and keeps
    the one-thread settings."""
    from distributed import Client

    from harness.parallel import local_cluster

    cluster = local_cluster(1)
    try:
        with Client(cluster, set_as_default=False) as client:
            (env,) = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_",
                                                                        "OMP_NUM_THREADS")}).values()
    finally:
        cluster.close()
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}


class _Workers:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, as a user starts them."""

    def __init__(self, tmp_path):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        bin_dir = os.path.dirname(sys.executable)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.logs = open(tmp_path / "cluster.log", "w")
        spawn = dict(cwd=ROOT, env=env, stdout=self.logs, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs = [subprocess.Popen([f"{bin_dir}/dask", "scheduler", "--host", "127.0.0.1", "--port",
                                        self.address.rpartition(":")[2], "--no-dashboard"], **spawn)]
        # --no-nanny: a killed worker stays dead (a nanny would start a new one), so the sweep
        # must finish on the one left.
        self.procs += [subprocess.Popen([f"{bin_dir}/dask", "worker", self.address, "--nthreads", "1",
                                         "--no-nanny", "--no-dashboard", "--name", f"w{i}"], **spawn)
                       for i in range(2)]

    def client(self):
        from distributed import Client

        client = Client(self.address, timeout=60, set_as_default=False)
        client.wait_for_workers(2, timeout=60)
        return client

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        self.logs.close()


def test_a_worker_killed_mid_sweep_loses_no_case(tmp_path):
    """A sweep on an existing cluster; one of its two workers is killed while it computes a
    case. Its cases are rerun on the other, and the report equals the serial run's."""
    path, cases = _cases(tmp_path, 24)
    serial = run_cli("run", path, "--backends", "manual,fd", "--quiet", "--out", tmp_path / "serial")
    assert serial.returncode == 0, serial.stderr
    cluster = _Workers(tmp_path)
    try:
        watcher = cluster.client()
        victim = cluster.procs[1]
        victim_address = next(a for a, w in watcher.scheduler_info()["workers"].items() if w["name"] == "w0")
        sweep = subprocess.Popen([sys.executable, "-m", "harness", "run", str(path), "--backends", "manual,fd",
                                  "--scheduler", cluster.address, "--quiet", "--out", str(tmp_path / "dask")],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline:  # until w0 computes a case, after some have finished
            processing = watcher.processing().get(victim_address, [])
            done = watcher.run_on_scheduler(
                lambda dask_scheduler: sum(p.states.get("memory", 0) + p.states.get("released", 0)
                                           + p.states.get("forgotten", 0)
                                           for k, p in dask_scheduler.task_prefixes.items()
                                           if k.startswith("run_cases_task")))
            if processing and done >= 4:
                break
            time.sleep(0.05)
        assert sweep.poll() is None, "the sweep ended before the kill: make it longer"
        os.kill(victim.pid, signal.SIGKILL)
        out, err = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, err
        assert len(watcher.scheduler_info()["workers"]) == 1  # the kill took effect
        watcher.close()
    finally:
        cluster.close()
    assert 4 <= done < len(cases)
    assert (tmp_path / "dask" / "agreement.csv").read_bytes() == (tmp_path / "serial" / "agreement.csv").read_bytes()
    assert "Traceback" not in err


KILLER = '''
import multiprocessing, os
from harness.cases import Case

class KillerCase(Case):
    """Ends the process that draws its inputs: any Dask worker, never the parent."""
    def arrays(self):
        if multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().arrays()
'''


def test_a_case_that_kills_every_worker_is_an_error_and_the_sweep_completes(tmp_path, monkeypatch):
    """In a chunk of three cases first: the chunk is given up, split, and its cases tried alone;
    only the killer is an error."""
    from harness import parallel
    from harness.parallel import LOCAL_ALLOWED_FAILURES, run_distributed

    monkeypatch.setattr(parallel, "CHUNKS_PER_WORKER", 1)  # 6 cases on 2 workers: chunks of 3
    assert parallel.chunk_size(6, 2) == 3

    (tmp_path / "killer_case.py").write_text(KILLER)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers start with this sys.path
    from killer_case import KillerCase

    _, cases = _cases(tmp_path, 6)
    bad = cases[2]
    cases[2] = KillerCase(bad.name, bad.model, bad.batch, bad.seed, bad.source)
    t0 = time.perf_counter()
    result = run_distributed(cases, ["manual", "fd"], jobs=2)
    seconds = time.perf_counter() - t0
    states = [r.state for r in result.cases]
    assert states[2] == "error" and states.count("agree") == 5, states
    (error,) = result.cases[2].errors
    assert error.backend == "worker" and "ended every Dask worker" in error.message
    assert LOCAL_ALLOWED_FAILURES <= 3 and seconds < 120


def test_an_unreachable_or_malformed_scheduler_is_one_line_and_exit_2_within_10_s(tmp_path):
    port = _free_port()  # nothing listens there
    run_cli("run", "--help")  # the CLI server started (its imports) before the clock does
    t0 = time.monotonic()
    proc = run_cli("run", "cases/hard.toml", "--scheduler", f"tcp://127.0.0.1:{port}", "--out", tmp_path / "o")
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "field '--scheduler'" in proc.stderr and "cannot reach a Dask scheduler" in proc.stderr
    proc = run_cli("run", "cases/hard.toml", "--scheduler", "localhost", "--out", tmp_path / "o")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a scheduler address" in proc.stderr
    proc = run_cli("run", "cases/hard.toml", "--scheduler", f"tcp://127.0.0.1:{port}", "--jobs", "2")
    assert proc.returncode == 2 and "not allowed with argument --scheduler" in proc.stderr
    assert not (tmp_path / "o").exists()
