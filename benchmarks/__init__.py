"""Performance, measured side by side: ``python -m benchmarks`` (see ``__main__.py``)."""

import sys


def main_module():
    """benchmarks/__main__.py, for its report, interleaved and one_thread: the running module
    when started as ``python -m benchmarks`` (its ROWS are the ones written to the csv; importing
    it again by name would give a second copy with its own ROWS), else imported (a test, a REPL)."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "benchmarks.__main__":
        return main
    import benchmarks.__main__ as main

    return main
