"""One compute thread per process for the compute libraries (BLAS, torch, XLA): N Dask workers
(``parallel.py``) on N cores, not N × (BLAS + torch + XLA threads). The serial CLI path and the
processes it keeps torch and jax in (``backends.isolated``) apply the same settings, so a case
gives the same bits whichever way it ran."""

from __future__ import annotations

import os
import sys

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def pin_threads() -> None:
    """One compute thread in this process: BLAS (threadpoolctl), torch and XLA.

    XLA reads its flags when JAX first starts a backend, torch its thread count at any
    time, and OpenBLAS is limited at run time through threadpoolctl; so this works after
    numpy is imported, as long as JAX has not computed anything yet.
    """
    from threadpoolctl import threadpool_limits

    for key, value in ONE_THREAD.items():
        if key == "XLA_FLAGS":
            current = os.environ.get(key, "")
            if value not in current:
                os.environ[key] = f"{current} {value}".strip()
        else:
            os.environ[key] = value
    threadpool_limits(1)
    if sys.modules.get("torch") is not None:  # None: blocked, as a test does to hide the extra
        sys.modules["torch"].set_num_threads(1)
