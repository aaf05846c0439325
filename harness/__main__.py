import os
import sys

from .cli import INTERRUPTED, main

if __name__ == "__main__":  # not when a spawned --jobs worker imports this module
    code = main()
    if code in INTERRUPTED:
        # Interrupted mid-case: the reports are already settled (every ``finally`` ran), but a
        # framework's own threads may still be inside the case we abandoned, and tearing the
        # interpreter down under them has been seen to segfault (exit -11 instead of 143 in CI).
        # Nothing is left to clean up but --jobs workers, which the teardown would have
        # stopped (and which hold our stdout open): stop them here, then leave without it.
        import multiprocessing

        for child in multiprocessing.active_children():
            child.terminate()
        for child in multiprocessing.active_children():
            child.join(timeout=10)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
