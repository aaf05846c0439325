"""Cases run on Dask distributed: ``--jobs N`` (a local cluster) and ``--scheduler ADDRESS``.

One code path for every parallel run, from a laptop to a cluster. Cases go to workers in
chunks, each a task running ``runner.run`` on its cases; a worker builds its backends once
(from the same specs as the parent) and keeps them for every case it gets. Results come back in case order, whatever
order they finish in, and each is the same bits a serial run gives: a case's numbers depend
on the case alone (its seed, its values) and every worker computes with one thread, as the
serial CLI path does (``runner.pin_threads``).

A worker that dies mid-sweep loses nothing: the scheduler reruns its cases on another
worker. A case that takes down every worker it lands on (a crash in native code, a process
ended from inside) is given up after the scheduler's ``allowed-failures`` worker deaths and
becomes an error for that case; the sweep goes on.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Collection, Sequence

from .cases import Case
from .errors import InputError
from .records import Spill
from .runner import BackendError, CaseResult, RunResult, _check_stop, pin_threads, run

# Deaths a case may be part of on a local cluster before it is an error: a worker killed for
# another reason (the machine's OOM killer, a user's kill) is retried, and a case that crashes
# every worker costs three worker restarts, not an endless loop. An existing cluster keeps its
# own setting (``distributed.scheduler.allowed-failures``, default 3).
LOCAL_ALLOWED_FAILURES = 2
CHUNKS_PER_WORKER = 8  # tasks per worker a run is cut into: a worker that dies loses one chunk's work
MAX_CHUNK = 64
CONNECT_TIMEOUT = 3.0  # seconds to reach --scheduler before it is bad input

ProgressFn = Callable[..., None]


# ----------------------------------------------------------------------- on a worker

_BUILT: dict[tuple, list] = {}


def _backends_here(specs: tuple[str, ...], timeout: float, names: tuple[str, ...] | None) -> list:
    """This worker's backends for ``specs``, built on its first case and kept."""
    key = (specs, timeout, names)
    if key not in _BUILT:
        import multiprocessing

        from .backends.build import build_backends

        # A Dask worker runs as a daemonic process, and multiprocessing refuses a daemonic
        # process children: the plugin backends run in a process of their own (isolated.py),
        # which they close themselves, so the flag only stands in the way.
        multiprocessing.current_process()._config["daemon"] = False
        pin_threads()  # before any backend starts JAX: XLA reads its thread flags then
        _BUILT[key] = build_backends(list(specs), timeout, list(names) if names else None)
        pin_threads()  # and torch's, now that a backend imported it
        from .kernels import warm

        warm()  # the comparison's compiled loops, before the first case
    return _BUILT[key]


def run_cases_task(cases: list[Case], specs: tuple[str, ...], trust_kinds: frozenset, timeout: float,
                   names: tuple[str, ...] | None, keep_arrays: bool = True) -> list[CaseResult]:
    """A chunk of cases on a Dask worker, one after another: the task every parallel run submits.
    Without ``keep_arrays`` each result sheds its arrays here, before it is sent back."""
    backends = _backends_here(specs, timeout, names)
    # No helper thread (runner.run's overlap): a worker has one core, which the backends keep busy.
    return run(cases, backends, trust_kinds=trust_kinds, keep_arrays=keep_arrays).cases


# ----------------------------------------------------------------------- in the parent


def check_jobs(jobs: int) -> int:
    if jobs < 1:
        raise InputError(f"must be at least 1, got {jobs}", field="--jobs")
    return jobs


def local_cluster(jobs: int):
    """A Dask ``LocalCluster`` of ``jobs`` worker processes, one thread each, no dashboard."""
    import dask
    from distributed import LocalCluster

    pin_threads()  # the environment the spawned workers inherit: one BLAS, torch and XLA thread
    with dask.config.set({"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES,
                          # nothing is shared between cases: spilling to disk would only cost
                          "distributed.worker.memory.spill": False,
                          "distributed.worker.memory.target": False,
                          # nothing reads the statistical profiles: no stack sampling every 10 ms
                          "distributed.worker.profile.enabled": False,
                          # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, to hand
                          # freed memory back to the OS. Setting it turns off glibc's adaptive mmap
                          # threshold: every temporary over 128 KiB is then a fresh mmap, paid in
                          # page faults, and a mid-size case ran 20-30% slower in a worker than in
                          # the parent (measured). Unset (None), workers allocate as the parent does.
                          "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        # Ctrl-C reaches the whole foreground process group, workers included: each would print
        # a traceback, and a nanny would restart its worker while we close the cluster. An
        # ignored signal stays ignored across the workers' spawn, so SIGINT is ignored while
        # they start and is the parent's alone afterwards. A Ctrl-C pressed in the second or two
        # the workers take to start is lost (blocking it instead would not keep it: numpy's BLAS
        # threads do not block it, and one of them takes and drops it): press it again.
        main = threading.current_thread() is threading.main_thread()
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            # No dashboard; the scheduler's HTTP server (health, metrics) still starts, on any
            # free port rather than 8787, which another cluster may hold.
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.CRITICAL, memory_limit=0)
        finally:
            if main:
                signal.signal(signal.SIGINT, handler)
        return cluster


def connect(scheduler: str):
    """A client of the cluster at ``scheduler`` (tcp://host:port), or one line of bad input."""
    from distributed import Client
    from distributed.comm import parse_address, parse_host_port

    try:
        # The address's form first: a Client given a malformed one fails only after leaving
        # a half-built client behind, whose finalizer then stalls the exit for 10 s.
        parse_host_port(parse_address(scheduler)[1])
    except ValueError as e:
        raise InputError(f"{scheduler!r} is not a scheduler address ({e}); expected tcp://host:port",
                         field="--scheduler") from None
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        raise InputError(f"cannot reach a Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT:g} s "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no answer'}); "
                         "start one with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`",
                         field="--scheduler") from None


def run_distributed(cases: Sequence[Case], specs: Sequence[str], *, jobs: int | None = None,
                    scheduler: str | None = None, progress: ProgressFn | None = None,
                    trust_kinds: Collection[str] = (), timeout: float = 600.0,
                    allow_uncompared: bool = False, names: Sequence[str] | None = None,
                    keep_arrays: bool = True, spill: Spill | None = None) -> RunResult:
    """``runner.run`` on Dask workers, cases in chunks (``chunk_size``): on a local cluster of
    ``jobs`` processes, or on the cluster whose scheduler is at ``scheduler``.

    ``specs`` are the backend names and ``FILE.py:Class`` plugin specs the workers build
    from; ``names`` the names they were given where first built (the parent's up-front check).
    ``keep_arrays=False``: as for ``runner.run``, but the workers shed each case's arrays
    before sending its result back. ``spill``: as for ``runner.run``, in this process as each
    result arrives.
    """
    if (jobs is None) == (scheduler is None):
        raise ValueError("give exactly one of jobs and scheduler")
    cluster = None
    if scheduler is None:
        from distributed import Client

        cluster = local_cluster(check_jobs(jobs))
        client = Client(cluster, set_as_default=False)
    else:
        client = connect(scheduler)
    try:
        results = _gather_in_order(client, cases, tuple(specs), frozenset(trust_kinds), timeout,
                                   tuple(names) if names else None, progress, jobs, keep_arrays=keep_arrays,
                                   spill=spill)
    finally:
        _close(client, cluster)
    if not names:
        names = list(results[0].seconds) if results else [s.rpartition(":")[2] for s in specs]
    return RunResult(list(names), results, allow_uncompared)


def chunk_size(n_cases: int, n_workers: int) -> int:
    """Cases per task: about CHUNKS_PER_WORKER tasks per worker, at most MAX_CHUNK cases each.
    A task costs the scheduler and the client ~10 ms whatever it holds: one case per task made
    a sweep of small cases no faster on two workers than on one."""
    return max(1, min(MAX_CHUNK, n_cases // (CHUNKS_PER_WORKER * max(n_workers, 1))))


def _gather_in_order(client, cases: Sequence[Case], specs: tuple[str, ...], trust: frozenset, timeout: float,
                     names: tuple[str, ...] | None, progress: ProgressFn | None,
                     n_workers: int | None = None, *, keep_arrays: bool = True,
                     spill: Spill | None = None) -> list[CaseResult]:
    """Every case's result, in case order, from chunks submitted to ``client``'s workers.

    A chunk whose workers all died (the scheduler gives up on a task after its allowed-failures)
    is split: each of its cases is tried again alone, so only a case that itself ends every
    worker it lands on becomes an error; the others run on. A case that fails alone may still be
    a bystander: a task queued on a worker that another case killed is counted as suspect too.
    So such cases are tried once more at the end, one at a time, with nothing else on the
    cluster; only a case that fails there is an error."""
    from distributed import as_completed

    n_workers = n_workers or len(client.scheduler_info().get("workers", {}))
    size = chunk_size(len(cases), n_workers)
    chunks = {}  # future key -> the indices of its cases

    def submit(indices: list[int]):
        future = client.submit(run_cases_task, [cases[i] for i in indices], specs=specs, trust_kinds=trust,
                               timeout=timeout, names=names, keep_arrays=keep_arrays, pure=False)
        chunks[future.key] = indices
        return future

    futures = [submit(list(range(k, min(k + size, len(cases))))) for k in range(0, len(cases), size)]
    results: list[CaseResult | None] = [None] * len(cases)
    done = failed = 0
    if progress:
        progress(0, len(cases), "", 0)
    pending = as_completed(futures, with_results=True, raise_errors=False, loop=client.loop)
    del futures  # as_completed holds them until each is done: then the cluster may forget its result
    suspects: list[int] = []  # cases that failed alone, tried again one at a time at the end
    last_try = False

    def finish(indices: list[int], value) -> None:
        nonlocal done, failed
        for i, r in zip(indices, value):
            if spill is not None:
                r.spill(spill)
            results[i] = r
            failed += not r.passed
        done += len(indices)
        if progress:
            progress(done, len(cases), cases[indices[-1]].name, failed)

    try:
        while True:
            for future, value in pending:
                _check_stop()
                indices = chunks.pop(future.key)
                if future.status != "finished" and len(indices) > 1:
                    for i in indices:  # its workers died: find the case that did it, one by one
                        pending.add(submit([i]))
                    continue
                if future.status != "finished" and not last_try:
                    suspects.append(indices[0])
                    continue
                if future.status != "finished":  # (type, exception, traceback), or a CancelledError
                    value = [_error(cases[indices[0]], value[1] if isinstance(value, tuple) else value)]
                finish(indices, value)
            if not suspects:
                break
            last_try = True
            pending.add(submit([suspects.pop(0)]))  # alone on the cluster: no bystander to blame
    except BaseException:
        client.cancel(list(pending.futures), force=True)
        raise
    return results  # type: ignore[return-value] - every slot is filled once as_completed ends


def _error(case: Case, exc: BaseException) -> CaseResult:
    """The result of a case whose task failed: its workers died, or Dask itself failed."""
    result = CaseResult(case, {})
    name = type(exc).__name__
    if name == "KilledWorker":
        message = ("the case ended every Dask worker it ran on (tried until the scheduler's "
                   "allowed-failures were spent); the other cases ran on")
    else:
        message = f"the Dask task failed: {name}: {exc}"
    result.errors.append(BackendError(case.name, "worker", message, str(exc)))
    return result


def _close(client, cluster) -> None:
    """Close the client and a local cluster, quietly: at Ctrl-C as after a finished run."""
    for thing in (client, cluster):
        if thing is None:
            continue
        try:
            thing.close(timeout=10) if thing is client else thing.close()
        except BaseException:  # noqa: BLE001 - closing is best effort; the workers die with us anyway
            pass


__all__ = ["run_distributed", "run_cases_task", "chunk_size", "local_cluster", "connect", "check_jobs"]
