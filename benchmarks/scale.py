"""Sweeps at scale: the catalog sweep serially, on a local Dask cluster (--jobs 2) and on an
existing cluster (--scheduler, a `dask scheduler` and two `dask worker` processes started
here), side by side in one run; Dask's start-up and per-task overhead; a projection to a
100,000-case sweep on 64 workers.

``python -m benchmarks --only sweep`` (``--sweep-count N`` for a sample of the 1,000 cases of
cases/sweeps/catalog.toml: the full set takes tens of minutes on 2 cores, most of it JAX
compiling one function per random network).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import main_module

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["manual", "torch", "jax", "fd"]
TRIVIAL = 400  # no-op-sized cases for the per-task overhead
PROJECTED_CASES, PROJECTED_WORKERS = 100_000, 64


def _rows(result) -> list[tuple]:
    """The agreement table, case by case: what must be identical whichever way it ran."""
    return [(r.case.name, c.quantity, c.a, c.b, c.passed, c.max_abs, c.norm_rel)
            for r in result.cases for c in r.comparisons]


def _timed_on(client, cases, specs) -> tuple[float, float, object]:
    """(warm-up seconds, run seconds, RunResult) on ``client``'s workers: the warm-up builds each
    worker's backends (imports torch and JAX) before the clock for the cases starts."""
    from harness.parallel import _backends_here, _gather_in_order
    from harness.runner import RunResult

    t0 = time.perf_counter()
    client.run(_backends_here, tuple(specs), 600.0, None)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = _gather_in_order(client, cases, tuple(specs), frozenset(), 600.0, None, None)
    return warm, time.perf_counter() - t0, RunResult(list(specs), results)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(workers: int) -> tuple[str, list[subprocess.Popen]]:
    address = f"tcp://127.0.0.1:{_free_port()}"
    bin_dir = Path(sys.executable).parent
    spawn = dict(cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                               address.rpartition(":")[2], "--no-dashboard"], **spawn)]
    procs += [subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"],
                               **spawn) for _ in range(workers)]
    return address, procs


def _stop(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def _serial(path: Path, n: int) -> tuple[float, float, list[tuple], int, float]:
    """(warm-up seconds, run seconds, agreement rows, cases agreeing, cores busy) of the first
    ``n`` cases run serially in this (fresh) process as `python -m harness run` runs them: one
    compute thread pinned, torch and jax each in a process of its own (computing while this one
    runs manual and fd), the helper thread drawing and comparing. Cores busy: the CPU seconds of
    this process and its children ÷ wall seconds over the run; JAX also compiles on native
    threads of its own."""
    import psutil

    from harness.backends import build
    from harness.cases import load_file
    from harness.runner import pin_threads, run

    def cpu() -> float:
        me = psutil.Process()
        return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])

    pin_threads()
    cases = load_file(path)[:n]
    backends = build.build(SPECS, [], 600.0, isolate=build.ISOLATED, pinned=True)
    try:
        t0 = time.perf_counter()
        run(cases[:1], backends, overlap=True)  # imports torch and JAX, as a worker's warm-up does
        warm = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), cpu()
        result = run(cases, backends, overlap=True)
        seconds, used = time.perf_counter() - t0, cpu() - c0
    finally:
        build.close(backends)
    return warm, seconds, _rows(result), sum(r.passed for r in result.cases), used / seconds


def scale(count: int | None = None, path: Path = ROOT / "cases" / "sweeps" / "catalog.toml") -> None:
    from distributed import Client

    from harness.backends import get
    from harness.cases import Case, load_file
    from harness.model import Model
    from harness.parallel import local_cluster
    from harness.runner import run

    # Every mode compiles cold: with JAX's persistent cache on, the first mode measured would fill
    # it and the next ones would only read it. (Set before any backend starts JAX; the workers
    # started below inherit it.)
    os.environ["XVAL_JAX_CACHE"] = "off"
    h = main_module()
    report = h.report
    cases = load_file(path)
    total = len(cases)
    cases = cases[:count] if count else cases
    n = len(cases)
    print(f"\nSweeps at scale: {n} of the {total} cases of {path.name} ({', '.join(SPECS)}); Dask overhead")
    # Serial in a fresh process, as `python -m harness run` runs it: one compute thread set
    # before JAX starts (in this process earlier benchmarks may have started it with all its
    # threads, which would give other bits and a faster serial compile).
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        serial_warm, serial_s, serial_rows, agree, serial_cores = pool.submit(_serial, path, n).result()

    t0 = time.perf_counter()
    cluster = local_cluster(2)
    client = Client(cluster, set_as_default=False)
    start = time.perf_counter() - t0
    try:
        warm, local_s, local = _timed_on(client, cases, SPECS)
        # Per-task overhead: tiny cases through one backend, on the cluster and in this process.
        tiny = [Case(f"t{i}", Model((2, 2, 2), ("tanh", "softmax"), "cross_entropy", "float64"), 2, i)
                for i in range(TRIVIAL)]
        t0 = time.perf_counter()
        run(tiny, [get("manual")])
        tiny_serial = time.perf_counter() - t0
        _, tiny_dask, _ = _timed_on(client, tiny, ["manual"])
    finally:
        client.close()
        cluster.close()

    address, procs = _start_cluster(2)
    try:
        t0 = time.perf_counter()
        remote = Client(address, timeout=60, set_as_default=False)
        remote.wait_for_workers(2, timeout=120)
        remote_start = time.perf_counter() - t0
        remote_warm, remote_s, remote_result = _timed_on(remote, cases, SPECS)
        remote.close()
    finally:
        _stop(procs)

    same = serial_rows == _rows(local) == _rows(remote_result)
    report(f"catalog sweep ({n} cases): cases agreeing, every pair", agree, f"{n} of {n}", agree == n, "cases")
    report("agreement tables identical: serial, --jobs 2, --scheduler", float(same), "1 (identical)", same)
    report("serial, as the CLI runs it (torch, jax in processes of their own): cases per second", n / serial_s,
           "measured", None, "cases/s")
    report("serial: warm-up (first case: imports, first compiles)", serial_warm, "measured", None, "s")
    report("serial: cores busy (CPU seconds with the children ÷ wall seconds)", serial_cores,
           "measured", None, "cores")
    cores = os.cpu_count() or 1
    report(f"ceiling for --jobs 2 ÷ serial on {cores} cores (min(2, cores) ÷ cores busy)",
           min(2, cores) / serial_cores, "measured", None)
    report("--jobs 2: Dask LocalCluster start-up", start, "measured", None, "s")
    report("--jobs 2: workers' warm-up (building backends: torch, JAX)", warm, "measured", None, "s")
    report("--jobs 2: cases per second (after start-up)", n / local_s, "measured", None, "cases/s")
    steady = serial_s / local_s
    report("--jobs 2 ÷ serial, after start-up", steady, "≥ 1.7", steady >= 1.7)
    with_start = (serial_s + serial_warm) / (local_s + start + warm)
    report("--jobs 2 ÷ serial, start-up included", with_start, "measured", None)
    report("--scheduler (dask scheduler + 2 dask workers): connect and wait for workers", remote_start,
           "measured", None, "s")
    report("--scheduler: cases per second (after start-up)", n / remote_s, "measured", None, "cases/s")
    report("--scheduler ÷ serial, after start-up", serial_s / remote_s, "measured", None)
    per_task = (2 * tiny_dask - tiny_serial) / TRIVIAL  # worker-seconds per task beyond the case itself
    report(f"Dask per-task overhead (on {TRIVIAL} trivial cases, 2 workers)", per_task * 1e3, "measured", None,
           "ms")
    mean_case = serial_s / n
    projected = PROJECTED_CASES * (mean_case + max(per_task, 0.0)) / PROJECTED_WORKERS
    report(f"projection: {PROJECTED_CASES:,} catalog cases on {PROJECTED_WORKERS} single-core workers",
           projected / 60, "measured (mean case × count ÷ workers, + per-task overhead)", None, "min")


MID_CASES = 40  # mid-size MLP cases (256-512-512-10, m = 256) for the worker-vs-parent timing


def _mid_run(n: int) -> float:
    """Seconds of one run of ``n`` mid-size cases (manual, torch) after a warm-up, in this process:
    the same function in the parent and on a worker."""
    from harness.backends import get
    from harness.cases import Case
    from harness.model import Model
    from harness.runner import pin_threads, run

    pin_threads()
    cases = [Case(f"mid-{i}", Model((256, 512, 512, 10), ("tanh", "tanh", "softmax"), "cross_entropy", dt), 256, i)
             for i, dt in enumerate(["float32", "float64"] * (n // 2))]
    backends = [get("manual"), get("torch")]
    run(cases[:2], backends)
    t0 = time.perf_counter()
    run(cases, backends)
    return time.perf_counter() - t0


def worker_speed(rounds: int = 4) -> None:
    """The same cases in this process, on a one-worker cluster as --jobs starts it, and on a
    one-worker LocalCluster with Dask's defaults (whose nanny sets MALLOC_TRIM_THRESHOLD_=65536),
    interleaved round by round."""
    import logging

    from distributed import Client, LocalCluster

    from harness.parallel import local_cluster

    report = main_module().report
    print(f"\nA case on a Dask worker against the parent ({MID_CASES} mid-size MLP cases, manual and torch)")
    clusters = {"--jobs worker": lambda: local_cluster(1),
                "Dask's default worker": lambda: LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                                              dashboard_address=None, silence_logs=logging.CRITICAL)}
    times: dict[str, list[float]] = {"parent": [], **{k: [] for k in clusters}}
    started = {k: start() for k, start in clusters.items()}  # steady state: each worker runs every round
    try:
        clients = {k: Client(c, set_as_default=False) for k, c in started.items()}
        for _ in range(rounds):
            times["parent"].append(_mid_run(MID_CASES))
            for label, client in clients.items():
                times[label].append(client.submit(_mid_run, MID_CASES, pure=False).result())
        for client in clients.values():
            client.close()
    finally:
        for cluster in started.values():
            cluster.close()
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    print("  seconds per round:", {k: [round(x, 2) for x in v] for k, v in times.items()})
    jobs = med["--jobs worker"] / med["parent"]
    report("mid-size cases: a --jobs worker ÷ the parent (median of rounds)", jobs, "≤ 1.1", jobs <= 1.1)
    report("mid-size cases: a worker with Dask's defaults (MALLOC_TRIM_THRESHOLD_ set) ÷ the parent",
           med["Dask's default worker"] / med["parent"], "measured", None)
