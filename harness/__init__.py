"""Cross-validation harness for backpropagation.

Hand-written row-vector backprop (``backends.manual``) checked against PyTorch
autograd, JAX grad and finite differences, case by case. Importing ``harness``
imports neither torch nor jax: each framework is imported when its backend is built.

The public names below are imported on first use (PEP 562): ``import harness`` alone
imports nothing else — not numpy, not pandas. That matters because the pytest plugin
(``harness.pytest_plugin``) is loaded by every pytest session where the harness is
installed, and importing it runs this file.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

# public name -> (submodule, attribute in it)
_LAZY: dict[str, tuple[str, str]] = {
    "Backend": ("backends", "Backend"),
    "get_backend": ("backends", "get"),
    "Case": ("cases", "Case"),
    "load_file": ("cases", "load_file"),
    "load_files": ("cases", "load_files"),
    "Comparison": ("compare", "Comparison"),
    "compare": ("compare", "compare"),
    "InputError": ("errors", "InputError"),
    "Model": ("model", "Model"),
    "Network": ("network", "Network"),
    "Gradients": ("backends", "Gradients"),
    "NotApplicable": ("backends", "NotApplicable"),
    "write_report": ("report", "write_report"),
    "BackendError": ("runner", "BackendError"),
    "CaseResult": ("runner", "CaseResult"),
    "RunResult": ("runner", "RunResult"),
    "run": ("runner", "run"),
    "run_case": ("runner", "run_case"),
    "TOLERANCES": ("tolerances", "TOLERANCES"),
    "Tolerance": ("tolerances", "Tolerance"),
    "check_layer": ("userlayers", "check_layer"),
}

__all__ = [
    "Backend", "BackendError", "Case", "CaseResult", "Comparison", "Gradients", "InputError",
    "Model", "Network", "NotApplicable", "RunResult", "TOLERANCES", "Tolerance", "compare", "get_backend", "load_file", "load_files",
    "run", "run_case", "write_report", "check_layer",
]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    else:
        # A submodule (``harness.report`` after a bare ``import harness``), as the eager
        # imports used to make available; anything else is a plain AttributeError.
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # the submodule exists but one of its imports is missing
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value  # once: later look-ups (and mock.patch) see a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``harness.compare`` is the function, as it was with eager imports; but importing the
    submodule ``harness.compare`` (which ``harness.runner`` does) makes the import system
    bind the module to that attribute. A public name is never rebound to a submodule."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs: the names, without importing them at run time
    from .backends import Backend, Gradients, NotApplicable, get as get_backend
    from .cases import Case, load_file, load_files
    from .compare import Comparison, compare
    from .errors import InputError
    from .model import Model
    from .network import Network
    from .report import write_report
    from .runner import BackendError, CaseResult, RunResult, run, run_case
    from .tolerances import TOLERANCES, Tolerance
