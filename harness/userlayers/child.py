"""The user's layer file, imported and called in a process of its own.

The user's code is under test: it may raise, hang, print, edit its inputs, return
anything, or end its own process. In a spawned child (like ``backends/isolated.py``):
- its prints go to stderr, never into ``--json`` on stdout;
- each request (one forward and the backwards that use its cache) has a timeout; a child
  that hangs is killed, one that dies is reported, and a fresh child serves the next request;
- every array argument is compared with a copy taken before the call: an in-place edit is
  reported by argument name (a dict argument such as ``bn_param`` is the documented way to
  hand back running averages, and is not checked);
- results cross back as plain data: arrays, numbers, tuples, lists and dicts of them; a
  cache (any Python object) stays in the child, where the backward reads it.
"""

from __future__ import annotations

import importlib.util
import inspect
import multiprocessing as mp
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.isolated import Child

IMPORT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Ref:
    """An argument taken from an earlier call's result in the same request: ``call`` is its
    position, ``item`` the element of a tuple result (None: the whole result)."""

    call: int
    item: int | None = None


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple
    keep_only: int | None = None  # send back only this element of a tuple result (0: out, not cache)


class Opaque:
    """A returned value that is not plain data: its type name, for messages."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


def _plain(v, depth: int = 0):
    if isinstance(v, np.ndarray):
        return np.array(v)
    if isinstance(v, (bool, int, float, complex, np.generic)):
        return np.asarray(v)
    if depth < 3 and isinstance(v, (tuple, list)):
        return tuple(_plain(u, depth + 1) for u in v) if isinstance(v, tuple) else [_plain(u, depth + 1) for u in v]
    if depth < 3 and isinstance(v, dict):
        return {str(k): _plain(u, depth + 1) for k, u in v.items()}
    if v is None:
        return None
    return Opaque(type(v).__name__)


def _one_line(e: BaseException) -> str:
    try:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    except BaseException:  # noqa: BLE001 - a __str__ that raises
        return type(e).__name__


def _where(path: str, e: BaseException) -> str:
    """FILE:LINE of the user's file in an import error's traceback (or the syntax error's)."""
    if isinstance(e, SyntaxError) and e.filename:
        return f"{e.filename}:{e.lineno}"
    line = None
    for frame in traceback.extract_tb(e.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            line = frame.lineno
    return f"{path}:{line}" if line else path


def _shown(p: inspect.Parameter) -> str:
    """x, x= (has a default), *args, **kw: what recognise() needs of a parameter."""
    if p.kind is inspect.Parameter.VAR_POSITIONAL:
        return f"*{p.name}"
    if p.kind is inspect.Parameter.VAR_KEYWORD:
        return f"**{p.name}"
    return f"{p.name}=" if p.default is not inspect.Parameter.empty else p.name


def _functions(module) -> dict[str, list[str]]:
    out = {}
    for name, f in vars(module).items():
        if callable(f) and not name.startswith("_") and not isinstance(f, type):
            try:
                out[name] = [_shown(p) for p in inspect.signature(f).parameters.values()
                             if p.kind is not inspect.Parameter.KEYWORD_ONLY]
            except (TypeError, ValueError):
                out[name] = []
    return out


def _serve(conn, path: str) -> None:
    os.dup2(2, 1)  # the user's prints go to stderr
    sys.stdout = sys.stderr
    try:
        spec = importlib.util.spec_from_file_location(f"xval_user_layers_{Path(path).stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        conn.send(("ready", _functions(module)))
    except BaseException as e:  # noqa: BLE001 - SystemExit at import too
        conn.send(("import_error", f"{_where(path, e)}: importing it raised {_one_line(e)}"))
        return
    while True:
        try:
            calls = conn.recv()
        except (EOFError, OSError):
            return
        reply = _run(module, calls)
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - a result that cannot be pickled (an object array of lambdas)
            conn.send(("raised", calls[-1].name, f"returned something that cannot be sent back: {_one_line(e)}", ""))


def _run(module, calls: list[Call]) -> tuple:
    results: list = []
    sent: list = []
    edits: list[str] = []
    checks: list = []
    for call in calls:
        f = getattr(module, call.name, None)
        try:
            args = [_resolve(a, results) for a in call.args]
        except (TypeError, IndexError, KeyError):
            prev = calls[next(a.call for a in call.args if isinstance(a, Ref))].name
            return ("raised", prev, "returned something that is not an (out, cache) tuple, "
                    f"so {call.name} cannot be given its cache", "")
        before = [_snapshot(a) for a in args]
        try:
            names = list(inspect.signature(f).parameters)
        except (TypeError, ValueError):
            names = []
        try:
            r = f(*args)
        except BaseException as e:  # noqa: BLE001 - sys.exit() too: a record, not the end
            return ("raised", call.name, _one_line(e), traceback.format_exc())
        checks.append((call.name, names, args, before))
        results.append(r)
        if call.keep_only is not None and isinstance(r, tuple) and len(r) > call.keep_only:
            sent.append((_plain(r[call.keep_only]), len(r)))
        else:
            sent.append((_plain(r), len(r) if isinstance(r, tuple) else None))
    # Checked after every call of the request: a backward that edits the input its forward
    # cached (x -= mu) changes the forward's argument too.
    for name, names, args, before in checks:
        for k, (a, b) in enumerate(zip(args, before)):
            arg = names[k] if k < len(names) else str(k)
            if arg.endswith("_param"):  # bn_param["running_mean"] = ...: the documented way back
                continue
            for where in _changed(a, b):
                edits.append(f"{name}'s argument {arg}{where} was modified in place")
    return ("ok", sent, edits)


def _snapshot(a):
    """Copies of an array argument, or of the arrays in a dict argument (DLS's parameters)."""
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, dict):
        return {k: v.copy() for k, v in a.items() if isinstance(v, np.ndarray)}
    return None


def _same(a, b) -> bool:
    return isinstance(a, np.ndarray) and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _changed(a, before) -> list[str]:
    """"" for an edited array argument, "['W1']" for each edited array of a dict argument."""
    if isinstance(before, np.ndarray):
        return [] if _same(a, before) else [""]
    if isinstance(before, dict):
        return [f"[{k!r}]" for k, v in before.items() if not _same(a.get(k) if isinstance(a, dict) else None, v)]
    return []


def _resolve(a, results):
    if isinstance(a, Ref):
        r = results[a.call]
        return r if a.item is None else r[a.item]
    return a


class UserError(Exception):
    """The user's code raised, hung or died: ``message`` is one line for the layer's row,
    ``kind`` one of "raised", "timed out", "died"; ``detail`` the traceback in the child."""

    def __init__(self, message: str, detail: str = "", kind: str = "raised") -> None:
        super().__init__(message)
        self.message, self.detail, self.kind = message, detail, kind


class UserImportError(Exception):
    """The user's file cannot be imported: one line naming the file and line."""


class UserModule(Child):
    """The user's file in a child process; ``functions`` maps name -> parameter names."""

    who = "its process"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._ctx = mp.get_context("spawn")
        self._proc = self._conn = None
        self.functions: dict[str, list[str]] = {}
        self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_serve, args=(child, self.path), daemon=True, name="xval-user-layers")
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        reply = self._receive(IMPORT_TIMEOUT, "importing it")
        if reply[0] == "import_error":
            self.close()
            raise UserImportError(reply[1])
        if reply[0] != "ready":
            self.close()
            raise UserImportError(f"{self.path}: {reply[1]}")
        self.functions = reply[1]

    def run(self, calls: list[Call], timeout: float) -> tuple[list, list[str]]:
        """[(result, arity)] per call and the in-place edits seen; raises ``UserError``."""
        if self._proc is None or not self._proc.is_alive():
            try:
                self._start()  # a fresh child after one died or hung
            except UserImportError as e:  # the file changed, or its import now fails
                raise UserError(f"restarting its process failed: {e}", kind="died") from None
        try:
            self._conn.send(calls)
        except (OSError, EOFError):
            pass
        doing = "running " + ", ".join(dict.fromkeys(c.name for c in calls))
        reply = self._receive(timeout, doing)
        if reply[0] == "ok":
            return reply[1], reply[2]
        if reply[0] == "raised":
            raise UserError(f"{reply[1]} {reply[2]}" if reply[2].startswith("returned") or "result" in reply[2]
                            else f"{reply[1]} raised {reply[2]}", reply[3])
        # died or hung: which, from the child's state (_receive stops a hung one)
        raise UserError(f"{calls[0].name}: {reply[1]}", kind="timed out" if " did not answer " in reply[1] else "died")

    def __enter__(self) -> "UserModule":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessModule:
    """The user's functions called in this process (``check_layer`` given the functions
    themselves): the same requests, copies and edit checks as the child, without its
    protection against a hang or an exit (the caller's own test process runs them)."""

    def __init__(self, functions: dict) -> None:
        from types import SimpleNamespace

        self._module = SimpleNamespace(**functions)
        self.functions = {n: [] for n in functions}

    def run(self, calls: list[Call], timeout: float) -> tuple[list, list[str]]:
        reply = _run(self._module, calls)
        if reply[0] == "ok":
            return reply[1], reply[2]
        raise UserError(f"{reply[1]} {reply[2]}" if reply[2].startswith("returned")
                        else f"{reply[1]} raised {reply[2]}", reply[3])

    def close(self) -> None:
        pass
