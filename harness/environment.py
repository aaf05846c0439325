"""Where the numbers came from: versions, BLAS, threads, framework precision settings, inputs.

Framework settings are read only from frameworks already imported by the run (never
imported here just to be described).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS",
               "OPENBLAS_CORETYPE")


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "not installed"


def _blas() -> str:
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception as e:  # noqa: BLE001 - descriptive only
        return f"unknown ({type(e).__name__})"


def _torch() -> dict:
    if sys.modules.get("torch") is None:  # not loaded (or blocked: a machine without the extra)
        return {"loaded": False}
    import torch

    return {
        "loaded": True,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "default_dtype": str(torch.get_default_dtype()),
    }


def _jax() -> dict:
    if sys.modules.get("jax") is None:
        return {"loaded": False}
    import jax

    return {
        "loaded": True,
        "x64": bool(jax.config.jax_enable_x64),
        "default_device": str(jax.devices()[0]),
        "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def framework_settings() -> dict:
    """{"torch": ..., "jax": ...} for the frameworks this process has loaded."""
    return {name: info for name, info in (("torch", _torch()), ("jax", _jax())) if info["loaded"]}


def file_hash(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def collect(command: str = "", case_files: list[str] | None = None, frameworks: dict | None = None) -> dict:
    """A JSON-ready description of this run's environment. ``frameworks``: torch's and JAX's
    settings as read where they ran (``framework_settings`` in a process of their own), in
    place of this process's."""
    frameworks = frameworks or {}
    return {
        "python": platform.python_version(),
        "platform": f"{platform.machine()} {platform.system()} {platform.release()}",
        "packages": {p: _version(p) for p in ("numpy", "pandas", "torch", "jax", "jaxlib", "matplotlib")},
        "numpy_blas": _blas(),
        "cpu_count": os.cpu_count(),
        "thread_env": {v: os.environ[v] for v in THREAD_VARS if v in os.environ},
        "torch": frameworks.get("torch") or _torch(),
        "jax": frameworks.get("jax") or _jax(),
        "command": command,
        "case_files": {f: file_hash(f) for f in (case_files or [])},
    }
