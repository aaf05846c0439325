"""Backends: built-in ones by name, plugins by file path or entry point.

Frameworks are imported only when their backend is built, so importing
``harness`` or ``harness.backends`` imports neither torch nor jax.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import InputError, did_you_mean
from .base import Backend, BackendOutputError, Gradients, JacobianBackend, NotApplicable, check_output, kind_of, notes_of

__all__ = ["Backend", "BackendOutputError", "Gradients", "JacobianBackend", "NotApplicable", "notes_of", "BUILTIN", "DEFAULT", "check_output", "get",
           "kind_of", "load_plugin", "check_plugin_spec", "available"]

# name -> (module, factory, arguments): imported only when that backend is asked for.
BUILTIN: dict[str, tuple[str, str, tuple]] = {
    "manual": ("harness.backends.manual", "ManualBackend", ()),
    "manual_columns": ("harness.backends.manual_columns", "ManualColumnsBackend", ()),
    "torch": ("harness.backends.torch_backend", "TorchBackend", ()),
    "jax": ("harness.backends.jax_backend", "JaxBackend", ()),
    # finite differences: central (the default), and the variants of fd.VARIANTS
    **{name: ("harness.backends.fd", "variant", (name,))
       for name in ("fd", "fd-forward", "nudge", "fd-richardson", "fd-complex", "fd-directional")},
}
DEFAULT = ("manual", "manual_columns", "torch", "jax", "fd")
ENTRY_POINT_GROUP = "harness.backends"


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names usable with ``get``: the built-ins, then installed entry points."""
    return list(BUILTIN) + [n for n in _plugins() if n not in BUILTIN]


def get(name: str) -> Backend:
    """Build a backend by name: a built-in, or one from the ``harness.backends`` entry points."""
    if name in BUILTIN:
        module, factory, args = BUILTIN[name]
        return getattr(importlib.import_module(module), factory)(*args)
    plugins = _plugins()
    if name in plugins:
        return _instantiate(plugins[name].load(), f"entry point {name!r}")
    raise InputError(f"unknown backend {name!r}{did_you_mean(name, available())}; "
                     f"available: {', '.join(available())}", field="--backends")


def check_plugin_spec(spec: str) -> None:
    """``FILE.py:ClassName`` with an existing file, ``layers:FILE.py`` (a backend from a
    user's layer functions, backends/layers.py), or an installed entry-point name."""
    if spec.startswith("layers:"):
        path = spec[len("layers:"):]
        if not Path(path).is_file():
            raise InputError(f"layers file {path!r} does not exist", field="--backend")
        return
    if ":" not in spec:
        if spec not in _plugins():
            raise InputError(f"expected FILE.py:ClassName or an installed backend name, got {spec!r}",
                             field="--backend")
        return
    path, _, cls_name = spec.rpartition(":")
    if not path or not cls_name:
        raise InputError(f"expected FILE.py:ClassName, got {spec!r}", field="--backend")
    if not Path(path).is_file():
        raise InputError(f"backend file {path!r} does not exist", field="--backend")


def load_plugin(spec: str) -> Backend:
    """Build the backend class named by ``path/to/file.py:ClassName``, in this process.

    The CLI and the pytest plugin run plugins in a process of their own instead
    (``backends.isolated.IsolatedBackend``), so that the user's code cannot end the run.
    """
    if ":" not in spec:
        raise InputError(f"expected FILE.py:ClassName, got {spec!r}", field="--backend")
    check_plugin_spec(spec)
    if spec.startswith("layers:"):
        from .layers import LayersBackend

        return LayersBackend(spec[len("layers:"):])
    path, _, cls_name = spec.rpartition(":")
    from .user_file import import_file

    module = import_file(path)
    if not hasattr(module, cls_name):
        classes = [n for n, v in vars(module).items() if isinstance(v, type)]
        raise InputError(f"{path!r} has no class {cls_name!r}{did_you_mean(cls_name, classes)}",
                         field="--backend")
    return _instantiate(getattr(module, cls_name), spec)


def _instantiate(cls: object, where: str) -> Backend:
    if not callable(cls):
        raise InputError(f"{where} is not a class", field="--backend")
    try:
        backend = cls()
        gradients, name = getattr(backend, "gradients", None), getattr(backend, "name", None)
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise InputError(f"{where}: building the backend failed: {type(e).__name__}: {e}",
                         field="--backend") from None
    if not callable(gradients):
        raise InputError(f"{where} has no gradients(model, arrays) method", field="--backend")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where} has no `name` string attribute", field="--backend")
    return backend
