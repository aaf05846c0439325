"""``python -m harness`` for the tests, forked from a server that has done its imports.

A CLI run spends 3-7 s importing the harness, torch, JAX, pandas and matplotlib before it does
anything, and the suite runs the CLI about a hundred times. A server process (one per pytest
worker, started on first use, ended when the worker's end closes its stdin) imports them once
and forks each run from there. A run is still a process of its own: its exit code, stdout and
stderr are its own, and an ``os._exit``, a hang or a crash in a plugin ends only it. It runs in
the working directory and environment the test gives, as ``python -m harness`` with a fresh
``__main__``. Forking it is safe: importing torch and JAX starts no thread or runtime, and under
xdist (one compute thread pinned, as ``make test`` runs) the server has no thread but its own;
without it, OpenBLAS's pool is there, and OpenBLAS makes itself fork-safe.

Not multiprocessing's forkserver: it re-runs the parent's ``__main__`` (pytest's) in every
child, and its children are multiprocessing children (``current_process``, stdin), not what a
``python -m harness`` process is.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRELOAD = ["harness.cli", "harness.claims", "harness.explain", "harness.selfcheck", "harness.studies",
           "harness.html_report", "harness.backends.torch_backend", "harness.backends.jax_backend",
           "torch", "jax", "jax.numpy", "matplotlib.figure", "matplotlib.backends.backend_agg"]

# ---------------------------------------------------------------------------------- the server


def _child(request: dict) -> None:
    """In the forked process: become ``python -m harness ARGS`` run from ``cwd``; never returns."""
    import atexit
    import io
    import runpy

    code: object = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((0, os.devnull), (1, request["out"]), (2, request["err"])):
            f = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = open(0, closefd=False)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", write_through=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.path[0] = request["cwd"]  # `python -m` puts the working directory first: plugins are found there
        sys.argv = [str(ROOT / "harness" / "__main__.py"), *request["args"]]
        try:
            runpy.run_module("harness", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 - as the interpreter does: the traceback, exit 1
            import traceback

            traceback.print_exc()
            code = 1
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        threading._shutdown()  # what the interpreter does at exit: wait for non-daemon threads,
        atexit._run_exitfuncs()  # then run the atexit handlers
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code if isinstance(code, int) else 1)


def serve() -> None:
    """Read one JSON request per line; answer with the child's pid, then its exit status."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    from harness.kernels import warm

    warm()  # the comparison's compiled loops, loaded (or compiled) once for every forked run
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


# ---------------------------------------------------------------------------------- the client

_server: subprocess.Popen | None = None
_pending = b""  # what the server wrote past the last line read
_lock = threading.Lock()


def _message(timeout: float | None = None) -> dict | None:
    """The server's next line, as JSON; None if none came within ``timeout`` seconds. Read with
    os.read, not a buffered reader: a line already in a reader's buffer is one that select()
    on the pipe would wait for in vain (a run that ends at once sends both of its lines)."""
    global _pending
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = _server.stdout.fileno()
    while b"\n" not in _pending:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not select.select([fd], [], [], wait)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"the CLI server ended (exit code {_server.wait()})")
        _pending += chunk
    line, _, _pending = _pending.partition(b"\n")
    return json.loads(line)


def _start() -> None:
    global _server, _pending
    if _server is None or _server.poll() is not None:
        # Started with this worker's environment (its pinned threads), as a subprocess would be.
        _server, _pending = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, bufsize=0, cwd=ROOT), b""
        if (_message() or {}).get("ready") is not True:
            raise RuntimeError("the CLI server did not start")


def run_forked(argv: list[str], args: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)``, for
    ``argv`` = ``python -m harness ARGS``, run by the server."""
    with _lock, tempfile.TemporaryDirectory() as tmp:
        _start()
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        request = memoryview((json.dumps(dict(args=args, cwd=str(cwd), env=dict(os.environ), out=out, err=err))
                              + "\n").encode())
        while request:
            request = request[os.write(_server.stdin.fileno(), request):]
        pid = _message()["pid"]
        done = _message(timeout)
        timed_out = done is None
        if timed_out:  # still running: the server has not reaped it, so the pid is still the run's
            os.kill(pid, signal.SIGKILL)
            done = _message()
        stdout, stderr = (Path(p).read_text(encoding="utf-8", errors="replace") for p in (out, err))
        if timed_out:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, done["code"], stdout, stderr)


if __name__ == "__main__":
    serve()
