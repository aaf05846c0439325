import multiprocessing
import os
import sys

from .cli import INTERRUPTED, main

if __name__ == "__main__":  # not when a spawned --jobs worker imports this module
    code = main()
    if code in INTERRUPTED and not multiprocessing.active_children():
        # Interrupted mid-case: the reports are already settled (every ``finally`` ran), but a
        # framework's own threads may still be inside the case we abandoned, and tearing the
        # interpreter down under them has been seen to segfault (exit -11 instead of 143 in CI).
        # Nothing is left to clean up, so leave without the teardown. With --jobs workers still
        # alive, the ordinary exit stops them (and they hold our stdout open until then).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
