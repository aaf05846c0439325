"""A run's comparison records, kept on disk as they arrive.

A catalog case makes about 135 comparisons, and a ``Comparison`` takes about 680 bytes as
Python objects: a 100,000-case sweep's records alone would be 9 GiB of memory, and the run
keeps every case until the report is written. ``Spill`` writes each case's comparisons to an
anonymous temporary file instead (pickled tuples, zlib level 1: about 47 bytes a comparison),
and the case keeps a ``SpilledComparisons`` in their place: a sequence that reads them back
when iterated, with what the verdict and the reports ask of every case kept beside it in
memory (the failing comparisons, whether anything was compared, the per-pair tallies), so
deciding a verdict reads nothing back. The reports read each case once per file they write.

The file lives in the system's temporary directory (``TMPDIR``), or in ``XVAL_RECORDS_DIR``,
and disappears with the run. Writing or reading it failing (a full disk) is a
``files.OutputError``: one line, and the run stops with exit 2 rather than lose records.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import fields

from .compare import Comparison
from .files import OutputError

FIELDS = tuple(f.name for f in fields(Comparison))


def failures(comparisons) -> list[Comparison]:
    """The comparisons out of tolerance, in order."""
    return [c for c in comparisons if not c.passed]


def compared_any(comparisons) -> bool:
    """Some element of some quantity was compared."""
    return any(c.n_checked for c in comparisons)


def pair_tallies(comparisons) -> dict[tuple[str, str], tuple[tuple[str, ...], int, int, int]]:
    """Per pair (a, b) in order of first appearance: (the tolerance rows used, "dtype kind",
    in order of first use; comparisons; elements compared; failing comparisons).
    ``verdict.pair_summaries`` adds these up over a run's cases."""
    found: dict[tuple[str, str], list] = {}
    for c in comparisons:
        found.setdefault((c.a, c.b), []).append(c)
    return {pair: (tuple(dict.fromkeys(f"{c.dtype} {c.kind}" for c in comps)), len(comps),
                   sum(c.n_checked for c in comps), sum(not c.passed for c in comps))
            for pair, comps in found.items()}


class Spill:
    """An append-only file of comparison records, one block per case, freed with the object.
    ``put`` and reading may run on different threads (``runner.run``'s helper): a lock keeps
    each seek with its read or write."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or os.environ.get("XVAL_RECORDS_DIR") or None
        try:
            self._file = tempfile.TemporaryFile(prefix="xval-records-", dir=self.directory)
        except OSError as e:
            raise OutputError(f"cannot keep the run's records in {self._where()}: {e.strerror or e}") from None
        self._lock = threading.Lock()
        self._end = 0

    def _where(self) -> str:
        return self.directory or tempfile.gettempdir()

    @property
    def nbytes(self) -> int:
        """Bytes written so far."""
        return self._end

    def put(self, comparisons: Sequence[Comparison]) -> SpilledComparisons:
        """Write one case's comparisons; what stands in for them in the case."""
        comparisons = list(comparisons)
        blob = zlib.compress(pickle.dumps([tuple(getattr(c, f) for f in FIELDS) for c in comparisons],
                                          protocol=pickle.HIGHEST_PROTOCOL), 1)
        with self._lock:
            offset = self._end
            try:
                self._file.seek(offset)
                self._file.write(blob)
                self._file.flush()
            except OSError as e:
                raise OutputError(f"cannot keep the run's records in {self._where()} "
                                  f"({offset + len(blob):,} bytes): {e.strerror or e}") from None
            self._end += len(blob)
        return SpilledComparisons(self, offset, len(blob), comparisons)

    def read(self, offset: int, nbytes: int) -> list[Comparison]:
        with self._lock:
            try:
                self._file.seek(offset)
                blob = self._file.read(nbytes)
            except OSError as e:
                raise OutputError(f"cannot read the run's records back from {self._where()}: "
                                  f"{e.strerror or e}") from None
        if len(blob) != nbytes:
            raise OutputError(f"the run's records in {self._where()} were cut short "
                              f"({len(blob)} of {nbytes} bytes at {offset})")
        return [Comparison(*row) for row in pickle.loads(zlib.decompress(blob))]


class SpilledComparisons(Sequence):
    """One case's comparisons on disk, in their order: iterating reads them back (a list each
    time, never kept). ``failures``, ``compared_any`` and ``tallies`` stay in memory. Pickled
    (a Dask result, a copy), it becomes the plain list it stands for."""

    __slots__ = ("_spill", "_offset", "_nbytes", "_n", "failures", "compared_any", "tallies")

    def __init__(self, spill: Spill, offset: int, nbytes: int, comparisons: list[Comparison]) -> None:
        self._spill, self._offset, self._nbytes, self._n = spill, offset, nbytes, len(comparisons)
        self.failures = failures(comparisons)
        self.compared_any = compared_any(comparisons)
        self.tallies = pair_tallies(comparisons)

    def _load(self) -> list[Comparison]:
        return self._spill.read(self._offset, self._nbytes)

    def __len__(self) -> int:
        return self._n

    def __bool__(self) -> bool:
        return self._n > 0

    def __iter__(self) -> Iterator[Comparison]:
        return iter(self._load())

    def __getitem__(self, i):
        return self._load()[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, (list, tuple, SpilledComparisons)):
            return self._load() == list(other)
        return NotImplemented

    __hash__ = None  # a sequence compared by value, as a list

    def __reduce__(self):
        return list, (self._load(),)

    def __repr__(self) -> str:
        return f"SpilledComparisons({self._n} comparisons, {self._nbytes} bytes at {self._offset})"
