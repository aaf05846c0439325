"""Building the backends of a run: the one place the CLI, the parallel workers and the pytest
plugin get them from.

Built-ins are built in this process, except those named in ``isolate`` (the CLI's serial
run isolates the framework arms, ``ISOLATED``); the user's code (a ``FILE.py:Class`` plugin
or an installed entry point) runs in a process of its own (``isolated.py``) when a timeout is
given.
A backend that fails to build stands in as ``UnavailableBackend``: every case reports why,
and the rest of the run goes on.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..errors import InputError
from ..files import RESERVED  # names the harness writes files under (inputs.npz)
from . import BUILTIN, available, check_plugin_spec, get, load_plugin

# The built-in arms whose native code can end a process (XLA aborted on a CHECK failure while
# compiling a conv's gradient): a serial CLI run keeps them in processes of their own. manual,
# manual_columns and fd are numpy, whose errors are exceptions.
ISOLATED = ("torch", "jax")


class UnavailableBackend:
    """Stands in for a backend that could not be built: every case reports why."""

    kind = "analytic"

    def __init__(self, name: str, error: BaseException) -> None:
        self.name, self.error = name, error

    def gradients(self, model, arrays):
        raise RuntimeError(f"backend unavailable: {type(self.error).__name__}: {self.error}")


def known_names(names: Sequence[str], field: str = "--backends") -> list[str]:
    """The names, each a built-in or an installed entry point (else InputError with a suggestion)."""
    for name in names:
        if name not in available():
            get(name)  # raises InputError naming the near miss
    return list(names)


def check_names(names: Sequence[str], minimum: int = 2) -> None:
    """Unique, not reserved, and enough of them to compare."""
    names = list(names)
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"two backends are named {dup!r}; names must be unique", field="--backend")
    for name in names:
        if name in RESERVED:
            raise InputError(f"a backend may not be named {name!r}: the harness writes "
                             f"{name}.npz itself (--save-arrays)", field="--backend")
    if len(names) < minimum:
        raise InputError("at least two backends are needed to compare", field="--backends")


def build_backends(specs: Sequence[str], timeout: float | None = None,
                   names: Sequence[str] | None = None, isolate: Collection[str] = (),
                   pinned: bool = False) -> list:
    """Backends from specs: a registry name, or FILE.py:ClassName for a plugin. One that fails
    to build reports why on every case, as in a serial run. With ``timeout``, plugins (files
    and installed entry points alike) run in a process of their own (``backends.isolated``),
    each case bounded by it, and so do the built-ins named in ``isolate`` (``pinned``: on one
    compute thread, as this process after ``threads.pin_threads``). ``names``: the names the
    backends had where they were first built (one that now fails keeps it)."""
    from .isolated import IsolatedBackend

    built = []
    for i, spec in enumerate(specs):
        try:
            if spec in BUILTIN and timeout and spec in isolate:
                built.append(IsolatedBackend(spec, timeout, pinned, wait=False))  # they start side by side
            elif spec in BUILTIN:
                built.append(get(spec))
            elif timeout:
                built.append(IsolatedBackend(spec, timeout))
            else:
                built.append(load_plugin(spec) if ":" in spec else get(spec))
        except Exception as e:  # noqa: BLE001
            built.append(UnavailableBackend(names[i] if names else spec.rpartition(":")[2], e))
    for i, b in enumerate(built):
        if isinstance(b, IsolatedBackend) and b.builtin:
            try:
                b.wait_ready()
            except Exception as e:  # noqa: BLE001
                built[i] = UnavailableBackend(b.name, e)
    return built


def frameworks(backends: Sequence) -> dict:
    """torch's and JAX's settings as read in the processes of the isolated built-ins."""
    from .isolated import IsolatedBackend

    return {k: v for b in backends if isinstance(b, IsolatedBackend) and b.builtin for k, v in b.frameworks.items()}


def plugins(specs: Sequence[str], timeout: float | None = None) -> list:
    """``--backend FILE.py:Class`` plugins, each in a process of its own; a missing file or a bad
    spec is bad input at once (InputError)."""
    from .isolated import DEFAULT_TIMEOUT, IsolatedBackend

    for spec in specs:
        check_plugin_spec(spec)
    return [IsolatedBackend(spec, timeout or DEFAULT_TIMEOUT) for spec in specs]


def build(names: Sequence[str], plugin_specs: Sequence[str] = (), timeout: float | None = None,
          minimum: int = 2, isolate: Collection[str] = (), pinned: bool = False) -> list:
    """All the backends of a run, checked: known names, valid plugin specs, unique names.
    ``isolate``, ``pinned``: as ``build_backends``."""
    from .isolated import DEFAULT_TIMEOUT

    timeout = timeout or DEFAULT_TIMEOUT
    built = build_backends(known_names(names), timeout, isolate=isolate, pinned=pinned)
    built += plugins(plugin_specs, timeout)
    try:
        check_names([b.name for b in built], minimum)
    except InputError:
        close(built)
        raise
    return built


def close(backends: Sequence) -> None:
    """Stop the processes of isolated backends (a no-op for the others)."""
    for b in backends:
        getattr(b, "close", lambda: None)()
