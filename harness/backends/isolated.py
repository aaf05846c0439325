"""A plugin backend run in a process of its own, so the user's code cannot end the harness;
also a built-in framework arm (torch, jax) where the CLI runs cases serially, so that a crash
in the framework's native code (XLA has aborted the process on a CHECK failure while
compiling) is an error for that case and not the end of the run.

The user's code is under test: it may raise, hang, print, call ``os._exit(0)`` or crash
the interpreter. In-process, ``os._exit(0)`` would end the run with exit 0 and no report;
a print would corrupt ``--json`` on stdout. Here the plugin is imported and called in a
spawned child process:

- its stdout goes to stderr (``--json`` output stays clean);
- a child that dies (any exit code, a signal) or does not answer within ``timeout``
  seconds becomes an error for that case, naming what happened; a fresh child serves the
  next case;
- its exceptions come back as one line (even when their ``__str__`` raises) with the
  child's traceback;
- its output is validated in the child (``check_output``), so only numpy arrays cross back.

A child that dies while importing the plugin makes the backend unavailable: every case
reports why, and the run goes on with the other backends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from pathlib import Path

DEFAULT_TIMEOUT = 600.0  # seconds for one case; --timeout sets it
START_TIMEOUT = 120.0  # seconds to import the plugin (it may import torch)


class PluginProcessError(RuntimeError):
    """The plugin's process ended, hung, or sent something that is not a result."""


class PluginRaised(Exception):
    """The plugin raised in its process: ``xval_message`` is its one line, ``xval_detail``
    its traceback there (``runner.describe`` reports them as they are)."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.xval_message, self.xval_detail = message, detail


def _serve(conn, spec: str, pinned: bool = False) -> None:
    """The child: build the backend, then answer one request per case until the pipe closes.
    ``pinned``: one compute thread, as the parent computes (``threads.pin_threads``), so a
    built-in arm gives the bits it gives in-process."""
    os.dup2(2, 1)  # the plugin's prints go to stderr, never into --json on stdout
    sys.stdout = sys.stderr
    # Ctrl-C reaches the terminal's whole process group: the parent stops the run and closes
    # this child, which should not print a KeyboardInterrupt of its own on the way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from ..environment import framework_settings
    from ..errors import InputError
    from ..errors import describe
    from . import BUILTIN, Gradients, NotApplicable, check_output, get, kind_of, load_plugin, notes_of

    if pinned:
        from ..threads import pin_threads

        pin_threads()
    try:
        backend = load_plugin(spec) if ":" in spec else get(spec)
        try:
            kind = kind_of(backend)
        except BaseException as e:  # noqa: BLE001 - a `kind` property that raises
            kind = None, describe(e)
        # a built-in's torch or JAX settings as loaded here: what the report says of that arm
        conn.send(("ready", str(backend.name), kind, framework_settings() if spec in BUILTIN else {}))
    except InputError as e:
        conn.send(("input_error", e.message))
        return
    except BaseException as e:  # noqa: BLE001
        conn.send(("input_error", f"{spec}: building the backend failed: {describe(e)}"))
        return
    while True:
        try:
            model, arrays, m = conn.recv()
        except (EOFError, OSError):
            return
        try:
            t0 = time.perf_counter()
            raw = backend.gradients(model, arrays)
            seconds = time.perf_counter() - t0  # the backend's own time, not the pipe's
            notes, inconclusive = notes_of(raw)
            out = Gradients(check_output(model, raw, m), notes=notes, inconclusive=inconclusive)
            reply: tuple = ("ok", out, seconds)
        except NotApplicable as e:  # a note for the case, not an error: sent back as what it is
            reply = ("not_applicable", describe(e).partition(": ")[2] or type(e).__name__)
        except BaseException as e:  # noqa: BLE001 - sys.exit() too: a record, not the end
            try:
                detail = traceback.format_exc()
            except BaseException:  # noqa: BLE001
                detail = ""
            reply = ("raised", describe(e), detail)
        try:
            conn.send(reply)
        except BaseException as e:  # noqa: BLE001 - an unpicklable note, say
            conn.send(("raised", f"the result could not be sent back: {describe(e)}", ""))


class Child:
    """A spawned child process and its pipe: the reply to a request, or how the child died or
    hung (then it is stopped). ``who`` names it in those messages."""

    who = "the child process"
    hint = "os._exit, sys.exit in a thread, or a crash"  # what ends a child by itself
    _proc = None
    _conn = None

    def _receive(self, timeout: float, doing: str) -> tuple:
        """The child's reply, or ("died", message) when it ended or hung."""
        answered = False  # the pipe became readable: a reply, or the child's end closing
        try:
            if self._conn.poll(timeout):
                answered = True
                return self._conn.recv()
        except (EOFError, OSError):
            pass
        except Exception as e:  # noqa: BLE001 - a reply that cannot be unpickled
            self.close()
            return ("died", f"{self.who} sent an unreadable reply while {doing}: {type(e).__name__}")
        proc = self._proc
        proc.join(5 if answered else 0)  # a closed pipe: the child is ending, give it a moment
        if proc.is_alive():
            proc.kill()
            proc.join(5)
            what = (f"did not answer within {timeout:g} s while {doing}; it was stopped" if not answered
                    else f"closed its pipe while {doing}; it was stopped")
        else:
            code = proc.exitcode
            how = (f"was killed by signal {-code}" if code is not None and code < 0
                   else f"ended with exit code {code}")
            what = f"{how} while {doing} ({self.hint})"
        self.close()
        return ("died", f"{self.who} {what}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join(5)
            self._proc = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class IsolatedBackend(Child):
    """A backend from ``spec`` (``FILE.py:ClassName``, an entry-point name, or a built-in's
    name), run in a child.

    ``name`` and ``kind`` are the plugin's own, read in the child. Raises ``InputError``
    when the plugin cannot be imported or built (as an in-process plugin would), from the
    constructor or, with ``wait=False``, from ``wait_ready``. ``pinned``: the child computes
    on one thread, as the parent does after ``threads.pin_threads``.
    """

    who = "the plugin process"

    def __init__(self, spec: str, timeout: float = DEFAULT_TIMEOUT, pinned: bool = False,
                 wait: bool = True) -> None:
        from . import BUILTIN

        self.spec, self.timeout, self.pinned = spec, timeout, pinned
        self.name = Path(spec[len("layers:"):]).stem if spec.startswith("layers:") else spec.rpartition(":")[2]
        self.builtin = spec in BUILTIN  # the harness's own arm: not the user's code under test
        if self.builtin:
            self.who, self.hint = f"the {spec} process", "a crash in the framework's native code, or a kill"
        self._kind: str | tuple = "analytic"
        self._ctx = mp.get_context("spawn")  # fork would copy torch's and JAX's threads half-way
        self._proc = None
        self._conn = None
        self.unavailable: str | None = None  # why every case errors, when the child died at import
        self.frameworks: dict = {}  # a built-in's torch or JAX settings, read in the child
        self.seconds: float | None = None  # the last case's time in the child (collect)
        self._unsent: Exception | None = None  # why submit sent nothing: collect raises it
        self._launch()
        if wait:
            self.wait_ready()

    def _launch(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.spec, self.pinned), daemon=True,
                                 name=f"xval-plugin-{self.name}")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._ready = False

    def _start(self) -> None:
        self._launch()
        self.wait_ready()

    def wait_ready(self) -> None:
        """Wait for the child to import and build the backend (``wait=False`` launched it, so
        that several children start side by side)."""
        if self._ready:
            return
        self._ready = True
        reply = self._receive(START_TIMEOUT, f"importing and building the {'backend' if self.builtin else 'plugin'}")
        if reply[0] == "input_error":
            self.close()
            from ..errors import InputError

            raise InputError(reply[1], field="--backend")
        if reply[0] == "ready":
            self.name, self._kind, self.frameworks = reply[1], reply[2], reply[3]
            self.unavailable = None
        else:  # died or hung while importing: every case will say so
            self.unavailable = reply[1]

    @property
    def kind(self) -> str:
        """The plugin's declared kind; raises as the plugin's own attribute did."""
        if isinstance(self._kind, tuple):
            raise PluginProcessError(f"reading `kind` raised {self._kind[1]}")
        return self._kind

    def gradients(self, model, arrays):
        self.submit(model, arrays)
        return self.collect()

    def submit(self, model, arrays) -> None:
        """Send one case to the child, which starts on it at once; ``collect`` takes the answer.
        In between this process is free: ``runner`` runs the in-process backends meanwhile.
        Raises nothing: what stops the case from being sent, ``collect`` raises."""
        self._unsent = None
        self.seconds = None
        try:
            if not self.unavailable and (self._proc is None or not self._proc.is_alive()):
                self._start()  # InputError: the plugin no longer imports
        except Exception as e:  # noqa: BLE001 - the case's error, at its turn
            self._unsent = e
            return
        if self.unavailable:
            self._unsent = PluginProcessError(f"backend unavailable: {self.unavailable}")
            return
        m = int(arrays["X"].shape[0])
        try:
            self._conn.send((model, arrays, m))
        except (OSError, EOFError):
            pass  # the child is gone: _receive says how

    def collect(self):
        """The answer to the case ``submit`` sent: the outputs, or what the backend raised, or a
        PluginProcessError saying how its process ended or hung (then stopped: the next
        ``submit`` starts a fresh one). ``seconds``: the backend's own time in the child."""
        if self._unsent is not None:
            raise self._unsent
        reply = self._receive(self.timeout, "computing gradients")
        if reply[0] == "ok":
            self.seconds = reply[2]
            return reply[1]
        if reply[0] == "raised":
            raise PluginRaised(reply[1], reply[2])
        if reply[0] == "not_applicable":
            from .base import NotApplicable

            raise NotApplicable(reply[1])
        raise PluginProcessError(reply[1])

