"""A user's Python file imported as a module in this process (a plugin, a layers file)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from ..errors import InputError


def import_file(path: str):
    """The user's Python file as a module, in this process; InputError (field --backend) when
    importing it fails in any way, even a sys.exit() in it."""
    file = Path(path)
    mod_name = f"harness_plugin_{file.stem}_{abs(hash(str(file.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, file)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"cannot import {path!r} as a Python module", field="--backend")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    try:
        module_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's file, even a sys.exit() in it: report it, do not crash
        raise InputError(f"importing {path!r} failed: {type(e).__name__}: {e}", field="--backend") from None
    return module
