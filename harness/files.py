"""Output files: single files written atomically, and whole report sets switched in at once.

A reader of an output directory must never see half of one run beside half of another.
``atomic_write`` covers one file (a temporary file, then a rename). ``output_set`` covers
a set: a command writes its files into a fresh staging directory beside ``DIR``, which
also receives (as hard links) the files other commands left in ``DIR``; then the staging
directory replaces ``DIR`` in one step (``renameat2(RENAME_EXCHANGE)`` where the kernel has
it, two renames otherwise). Writers of one ``DIR`` take turns through a lock file beside it.

``file_name`` maps case and backend names to file names injectively: distinct names never
share a file.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import glob
import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)

MARKER = ".xval-output"  # in every directory the harness switched in: it may be replaced
LOCK_WAIT_SECONDS = 60.0  # another writer of the same DIR holds the lock only while it writes
MAX_NAME_BYTES = 120  # of a file or folder name we derive: well under the usual 255-byte limit
RESERVED = frozenset({"inputs"})  # file stems the harness writes itself beside backends' files


class OutputError(Exception):
    """The output directory cannot be used or written; ``str`` is one line for the user."""


def atomic_write(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or pieces of it written in turn) to ``path`` through a temporary
    file renamed into place: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:40]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                for piece in data:
                    f.write(piece)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- names


def file_name(name: str) -> str:
    """A name as a readable file name, injective: ``a/b``, ``a b`` and ``a_b`` stay apart.

    A name that is already a safe file name (letters, digits, ``.``, ``_``, ``-``; not
    hidden; short) is kept as it is. Any other gets its safe form plus 16 hex digits of the
    sha256 of the original, so two different names map to different files and the
    result fits any file system. No result can look like a safe name that is kept as is:
    those never contain the ``~`` that precedes the hash.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")
    if safe == name and len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{safe[:MAX_NAME_BYTES - 17] or 'name'}~{digest}"


# --------------------------------------------------------------------------- report sets


def check_output_dir(out: Path, field: str = "--out") -> Path:
    """Up-front check that a report set can be switched in at ``out``; returns the real path.

    Refuses a path that is a file, and an existing directory holding files the harness
    did not write (switching it out would move them aside).
    """
    out = Path(os.path.realpath(out))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: field '{field}': exists and is not a directory")
    if out.is_dir() and not (out / MARKER).exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in KNOWN_NAMES)
        if foreign:
            raise OutputError(f"{out}: field '{field}': the directory holds files the harness did not "
                              f"write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                              "use a new or empty directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.TemporaryFile(dir=out.parent)
        probe.close()
    except OSError as e:
        raise OutputError(f"{out}: field '{field}': cannot write beside it: {e.strerror or e}") from None
    return out


@contextmanager
def output_set(out: Path, owned: Iterable[str], field: str = "--out") -> Iterator[Path]:
    """Yield a staging directory for a command's files; on success it becomes ``out``.

    ``owned`` are the names (files or folders) this command writes: the previous ones are
    dropped, everything else in ``out`` is carried over. If the body raises (a write error,
    Ctrl-C, SIGTERM turned into SystemExit), ``out`` is left exactly as it was. OSErrors
    become ``OutputError`` with one line.
    """
    out = check_output_dir(out, field)
    owned = set(owned)
    with _locked(out, field):
        _remove_leftovers(out)
        stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
        try:
            os.chmod(stage, 0o777 & ~_UMASK)
            if out.is_dir():
                for entry in out.iterdir():
                    if entry.name not in owned and entry.name != MARKER:
                        _link_copy(entry, stage / entry.name)
            (stage / MARKER).write_bytes(b"")
            yield stage
            _switch_in(stage, out)
        except OSError as e:
            raise OutputError(f"{out}: field '{field}': writing the report failed: "
                              f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}; "
                              "the previous report is unchanged") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def _locked(out: Path, field: str) -> Iterator[None]:
    lock_path = out.parent / f".{out.name}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
    except OSError as e:
        raise OutputError(f"{out}: field '{field}': cannot create the lock {lock_path.name}: "
                          f"{e.strerror or e}") from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OutputError(f"{out}: field '{field}': another run has been writing to this "
                                      f"directory for over {LOCK_WAIT_SECONDS:g} s; wait for it "
                                      "or choose another --out") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_leftovers(out: Path) -> None:
    """Staging and old directories of runs that were killed (we hold the lock: none is live)."""
    for p in out.parent.glob(f".{glob.escape(out.name)}.staging-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.parent.glob(f".{glob.escape(out.name)}.old-*"):
        shutil.rmtree(p, ignore_errors=True)


def _link_copy(src: Path, dst: Path) -> None:
    """Carry a file over without copying its bytes where possible. Safe to share: every
    writer replaces files by rename, never in place."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, copy_function=link, symlinks=True)
    else:
        link(src, dst)


def _switch_in(stage: Path, out: Path) -> None:
    if not out.exists():
        os.rename(stage, out)
        return
    if _exchange(stage, out):  # out is now the new set, stage holds the old one
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.rmdir(old)
    os.rename(out, old)  # a reader now sees no DIR for a moment, never a mixed one
    try:
        os.rename(stage, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


# Names any harness command writes into DIR: a directory holding only these (and no marker,
# from before markers existed) is the harness's own.
RUN_FILES = ("report.md", "report.html", "results.json", "agreement.csv", "errors.csv", "arrays")
CLAIMS_FILES = ("claims.md", "claims.csv")
SELFCHECK_FILES = ("selfcheck.md", "selfcheck.csv")
LAYERS_FILES = ("layers.csv", "layers.md", "layers.json", "layers.html")
STUDY_FILES = {
    "epsilon": ("study-epsilon.csv", "study-epsilon-summary.csv", "study-epsilon.png",
                "study-epsilon.md", "nudge.md"),
    "cost": ("study-cost.csv", "study-cost.png", "study-cost.md", "nudge.md"),
}
KNOWN_NAMES = frozenset({MARKER, *RUN_FILES, *CLAIMS_FILES, *SELFCHECK_FILES, *LAYERS_FILES,
                         *(n for names in STUDY_FILES.values() for n in names), "test-browser"})
