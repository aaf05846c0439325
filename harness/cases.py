"""Case files: TOML in, validated ``Case`` records out, and the one seeded draw of arrays.

A file holds ``[[case]]`` tables (one network each) and ``[[sweep]]`` tables
(``count`` random networks drawn from ranges). Files are parsed as data only
(tomllib); every problem raises ``InputError`` naming file, case and field.
"""

from __future__ import annotations

import heapq
import math
import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .activations import ACTIVATIONS, ALL_NAMES, OUTPUT_ONLY, SOFTMAX
from .errors import InputError, did_you_mean
from .fields import _Fields, _limit, _parse_labels, _show
from .losses import LOSSES
from .model import DTYPES, Model
from .network import Network

CASE_KEYS = {"name", "description", "layers", "activations", "output", "loss", "batch",
             "dtype", "seed", "input_scale", "values", "network", "input", "l2", "l2_form", "vocab"}
# Keys of the network form only (harness.network_cases); the MLP form refuses them.
NETWORK_ONLY_KEYS = ("input", "l2", "l2_form", "vocab")
SWEEP_KEYS = {"name", "count", "seed", "depth", "width", "activations", "losses", "dtypes",
              "batch", "input_scale", "layers", "l2", "l2_forms", "input", "blocks", "filters", "vocab",
              "kernel", "heads"}
NETWORK_SWEEP_KEYS = ("layers", "l2", "l2_forms", "input", "blocks", "filters", "vocab", "kernel", "heads")
TOP_KEYS = {"case", "sweep"}

# --------------------------------------------------------------------------- limits
# Each limit turns input that would crash, hang or exhaust memory into one line of error.

# tomllib is pure Python: measured on this (busy) 2-core machine, 4 MiB of one-digit numbers
# took 35 s to parse and 230,000 floats in full precision 4 s. A hand-written case is a few
# kB; 16 MiB of numbers would take over two minutes.
MAX_CASE_FILE_BYTES = 4 * 2**20
# Layer sizes and batch: one anywhere near 2**31 cannot fit in memory anyway (the memory
# check below refuses it); bounding them first keeps what follows (numpy shapes, the random
# generator's int64 ranges, the messages) in the int64 range.
MAX_DIM = 2**31 - 1
MAX_SEED = 2**63 - 1  # recorded in results.json: an int64 for numpy, pandas and JSON readers
# Layers of one network (L): far deeper than any MLP worth checking by hand; JAX unrolls the
# layers into one graph, whose compile time grows with depth.
MAX_DEPTH = 1_000
# Cases of one sweep without --yes (``allow_huge``): 1,000,000 of the smallest networks take
# over an hour to run when they share one shape (158 cases/s, README) and days when JAX
# compiles each. Beyond it a sweep is refused unless the user says yes; the memory check below
# still applies either way, and on most machines stops a sweep of networks long before (each
# case keeps its results and JAX's compiled function for the report).
MAX_SWEEP_COUNT = 1_000_000
# Layer sizes one sweep draws, count × (depth hi + 1), likewise lifted by --yes: drawing is
# about 10 µs per number in numpy's scalar path (the draw order is part of a sweep's meaning,
# so it cannot be batched), which keeps a sweep's expansion to seconds.
MAX_SWEEP_WIDTHS = 1_000_000
# Head counts a sweep's `heads` range may reach: far more than the widths a sweep draws, and
# the divisor search per drawn attention stays a few hundred steps (network_cases._draw_width).
MAX_HEADS = 256
MAX_INPUT_SCALE = 1e10  # beyond this, z = x W overflows float32 for any width
# A case may use this fraction of the machine's physical memory: the rest is for the OS,
# other processes and the error of the estimate (see memory_estimate).
MEMORY_FRACTION = 0.5
FALLBACK_MEMORY_BYTES = 8 * 2**30  # when the OS does not say how much memory there is


@dataclass(frozen=True, eq=False)
class Case:
    """One network with its inputs: a ``Model`` plus batch, seed and explicit values."""

    name: str
    model: Model | Network
    batch: int
    seed: int
    source: str = "<memory>"
    input_scale: float = 1.0
    description: str = ""
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The inputs every backend gets: X, Y (y too for cross_entropy), W1, b1, ...

        One ``numpy.random.Generator`` seeded with ``seed`` draws everything in a
        fixed order (X, targets, then W^[l], b^[l] by layer) in float64, then casts
        to the case dtype. Explicit ``values`` replace their draw afterwards, so
        overriding one array leaves the others' bits unchanged.
        """
        if isinstance(self.model, Network):
            from .network_cases import draw_arrays
            return draw_arrays(self)
        model, m = self.model, self.batch
        rng = np.random.default_rng(self.seed)
        n_out = model.layers[-1]
        out: dict[str, np.ndarray] = {"X": rng.standard_normal((m, model.layers[0])) * self.input_scale}
        if model.loss == "cross_entropy":
            out["y"] = rng.integers(0, n_out, size=m)
        elif model.loss == "binary_cross_entropy":
            out["Y"] = rng.uniform(0.0, 1.0, size=(m, n_out))
        else:
            out["Y"] = rng.standard_normal((m, n_out))
        for name, shape in model.param_shapes().items():
            scale = 1 / math.sqrt(shape[0]) if name.startswith("W") else 0.1
            out[name] = rng.standard_normal(shape) * scale
        out.update({k: v.copy() for k, v in self.values.items()})  # never hand out our own
        if model.loss == "cross_entropy":
            out["y"] = np.asarray(out["y"], dtype=np.int64)
            out["Y"] = np.eye(n_out)[out["y"]]  # ȳ, the one-hot of y
        dt = model.np_dtype
        return {k: (v if k == "y" else np.asarray(v, dtype=dt)) for k, v in out.items()}

    def memory_estimate(self) -> int:
        """Estimated peak memory, in bytes, of running this case alone through the default
        backends: ``memory_estimate(model, batch)`` plus the explicit values it carries."""
        values = sum(v.nbytes for v in self.values.values())
        return memory_estimate(self.model, self.batch) + values


# --------------------------------------------------------------------------- memory
# The constants below were measured as peak RSS (/usr/bin/time -v) of `python -m harness run`
# with the five default backends on this 2-core, 23 GiB x86-64 machine.

BASE_BYTES = 768 * 2**20  # a case of a few elements: numpy, torch and JAX loaded: 606 MiB
N_BACKENDS = 5  # harness.backends.DEFAULT: manual, manual_columns, torch, jax, fd
# Per quantity and pair of backends: the Comparison record (~600 B) and what the report makes
# of it while writing (agreement.csv's table; results.json is written a few thousand rows at a
# time, results.json_chunks). Peak RSS of `python -m harness run` on 250 and on 1,000 MLP cases
# of one shape (the five default backends, 120 comparisons a case): 661 and 947 MiB, 0.38 MiB a
# case, 3.0 kB a comparison besides CASE_BYTES; 4,000 leaves a third on top. (Before results.json
# was written in pieces: 907 and 1,815 MiB, 10.1 kB a comparison, above the 8,000 then used.)
COMPARISON_BYTES = 4_000
CASE_BYTES = 20_000  # per case besides: CaseResult, notes, array headers
# The CLI keeps the comparisons on disk as each case is done (harness.records), and writes its
# reports a few thousand rows at a time: a case then keeps CASE_BYTES in memory, comparisons
# and all. Measured (the objects reachable from the run's cases, sys.getsizeof): 11.4 kB a
# case on 20 catalog cases (136 comparisons each), 5.6 kB on 250 MLP cases (120 each), with the
# five default backends; peak RSS of 250 and of 1,000 MLP cases: 662 and 757 MiB, where the
# difference is JAX's 33 more compiled functions, and 271 and 274 MiB without JAX (5.2 kB a case).
# JAX keeps the function it compiled for each of the last 128 shapes it met (one per network
# shape and batch; jax_backend.KEPT_SIGNATURES), so only the 128 largest add up. The
# first 80 cases of cases/sweeps/specificity.toml (widths to 64, batch to 128) cost
# 2.1 + 2.1·L MiB each, least squares; tiny networks less (1,000 random ones of depth 1-2,
# widths to 4, cost 2.6 MiB each with their results).
COMPILED_BYTES = 5 * 2**19
COMPILED_BYTES_PER_LAYER = 5 * 2**19
# A catalog network's L counts every layer (its activations, norms, flatten, pools), an MLP's
# only its dense layers, so a network's per-layer cost is smaller. Peak RSS (/usr/bin/time -v)
# of the first 100 cases of cases/sweeps/catalog.toml (manual, torch, jax, fd): 1,232 MiB, and of
# cases/sweeps/conv.toml (50 cases, the default backends): 1,068 MiB. The estimate with 1 MiB per
# layer: 1,770 and 1,572 MiB (ratios 0.70 and 0.68); with the MLP's 2.5 MiB it was 2,622 and
# 2,373 MiB (0.47 and 0.45), which left room for no catalog sweep in one run of every file.
COMPILED_BYTES_PER_NETWORK_LAYER = 2**20


def physical_memory() -> int:
    """Total physical memory in bytes (FALLBACK_MEMORY_BYTES where the OS does not say)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        return FALLBACK_MEMORY_BYTES
    return total if total > 0 else FALLBACK_MEMORY_BYTES


def memory_limit() -> int:
    """Bytes a run may use: MEMORY_FRACTION of physical memory."""
    return int(MEMORY_FRACTION * physical_memory())


def _memory_parts(model: Model | Network, batch: int, spilled: bool = False) -> tuple[int, int, int, int]:
    """(records, arrays, compiled, working) bytes of one case; see ``memory_estimate``. A run
    keeps a case's records, and its arrays only if it saves them (without --save-arrays a case
    sheds them once compared: ``CaseResult.shed_arrays``). ``spilled``: the run keeps the
    comparisons on disk (``records.Spill``, the CLI's runs), so a case's records in memory are
    CASE_BYTES."""
    if spilled:
        _, arrays, compiled, working = _memory_parts(model, batch)
        return CASE_BYTES, arrays, compiled, working
    if isinstance(model, Network):
        from .network_cases import memory_parts
        return memory_parts(model, batch, N_BACKENDS, CASE_BYTES, COMPARISON_BYTES,
                            COMPILED_BYTES, COMPILED_BYTES_PER_NETWORK_LAYER)
    s = model.np_dtype.itemsize
    P = model.n_params
    m, n = batch, model.layers
    A = m * sum(n[1:])  # every z^[l] (or a^[l], dz^[l], da^[l]) of the case together
    X, T = m * n[0], m * n[-1]
    Q = max(max(m * b, a * b) for a, b in zip(n, n[1:]))  # the largest single array
    NQ = 6 * model.L + 1  # quantities compared per pair: J, z, a, dz, da, dW, db per layer, Jv
    pairs = N_BACKENDS * (N_BACKENDS - 1) // 2
    records = CASE_BYTES + pairs * NQ * COMPARISON_BYTES
    arrays = s * (X + 2 * T + P) + N_BACKENDS * s * (P + 4 * A) + 2 * A
    compiled = COMPILED_BYTES + COMPILED_BYTES_PER_LAYER * model.L
    working = 8 * (12 * P + 14 * A + 2 * X + 2 * T + 16 * Q)
    return records, arrays, compiled, working


def memory_estimate(model: Model, batch: int) -> int:
    """Estimated peak memory, in bytes, of running one case through the default backends.

    With s the dtype size (4 or 8), P the parameters, A = m·(n_1 + … + n_L) the elements of
    one set of per-layer values (all z^[l], say), X = m·n_0, T = m·n_L, Q the largest single
    array (m·n_l or n_{l−1}·n_l) and NQ = 6L + 1 the quantities compared per pair:

        BASE_BYTES                       the interpreter with numpy, torch and JAX
      + s·(X + 2T + P)                   the inputs (X, Y, W, b), kept with the result
      + 5·s·(P + 4A)                     each of the 5 backends' dW, db and z, a, dz, da, kept:
                                         the run result keeps every output for the report
      + 2A + 10·NQ·COMPARISON_BYTES      fd's masks; 10 pairs' comparison records
        + CASE_BYTES
      + COMPILED_BYTES                   JAX's compiled function for this shape
        + L·COMPILED_BYTES_PER_LAYER
      + 8·(12P + 14A + 2X + 2T + 16Q)    the largest working set, in float64 whatever the
                                         case dtype (fd and the rounding floor compute in
                                         float64): 12P for fd's 8 seeded directions and its
                                         θ ± hv copies; 14A for the rounding floor after a
                                         disagreement (a float64 backprop, its |terms| and
                                         the allowances: 3 × (P + 4A) and |a|, g'); 16Q for
                                         fd's batched nudges (4 copies of the nudged array
                                         and their forward pass) and a comparison's ~10
                                         float64 temporaries.

    Everything but the working set adds up over the cases of a run (``load_file`` and
    ``load_files`` check the sum; a shape already compiled costs nothing more, and only the
    KEPT_SIGNATURES largest compiled functions count: JAX keeps no more); the working
    set is freed after each case. The peak RSS measured was 0.47 to 0.86 of the estimate, on
    single cases with 15 to 100 MB arrays and on sweeps of 100 to 2,000 cases (the specificity
    sweep: 0.81); tests/test_case_limits.py measures one case. A catalog network
    (``network_cases.memory_parts``) has the same terms, its L counting every layer at
    COMPILED_BYTES_PER_NETWORK_LAYER each (0.68 to 0.70 of the estimate, measured).
    """
    return BASE_BYTES + sum(_memory_parts(model, batch))


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


class _MemoryBudget:
    """The memory a run of the cases loaded so far needs: every case's kept bytes and each
    shape's compiled function add up (the run result keeps every case until the report is
    written), the working set of one case at a time comes on top, and, where arrays are shed,
    the arrays of the two cases drawn or compared beside it (``runner.run``'s overlap). A case
    too large alone, or one that makes the sum too large, is refused."""

    def __init__(self, keep_arrays: bool = True, spilled: bool = False) -> None:
        self.keep_arrays = keep_arrays  # False: the run sheds each case's arrays (records kept)
        self.spilled = spilled  # True: the run keeps the comparisons on disk (harness.records)
        self.total, self.limit = physical_memory(), memory_limit()
        self.kept = self.working = self.cases = 0
        # runner.run draws the next case and compares the last while one runs: when the run
        # sheds arrays, two cases' arrays besides the running one's (the two largest, at worst)
        self.in_flight: list[int] = []
        self.shapes: set[tuple[Model, int]] = set()
        from .backends.jax_backend import KEPT_SIGNATURES

        self.compiled: list[int] = []  # a min-heap of the compiled functions' bytes counted
        self.kept_signatures = KEPT_SIGNATURES

    def _machine(self) -> str:
        return (f"this machine has {_gib(self.total)} and a run may use "
                f"{MEMORY_FRACTION:.0%} of it ({_gib(self.limit)})")

    def add(self, f: _Fields, model: Model, batch: int, extra: int, batch_field: str,
            size_field: str, sum_field: str, name: str | None = None) -> None:
        """Count one case (``extra``: bytes of explicit values it carries). ``name``: the case
        a sweep generated, named in the message (the error names the sweep)."""
        records, arrays, compiled, working = _memory_parts(model, batch, self.spilled)
        # While it runs a case holds its arrays; then the run keeps them only if it saves them.
        alone = BASE_BYTES + records + arrays + extra + compiled + working
        kept = records + extra + (arrays if self.keep_arrays else 0)
        if alone > self.limit:
            # Name what makes it large: the batch (activations) or the layer sizes (parameters).
            if isinstance(model, Network):
                fld, what = batch_field, (f"{name} ({model.describe()}, batch {batch}) " if name else "")
            else:
                fld = batch_field if batch * sum(model.layers) > model.n_params else size_field
                what = f"{name} ({'-'.join(map(str, model.layers))}, batch {batch}) " if name else ""
            f.fail(fld, f"case too large: {what}needs about {_gib(alone)} of memory to run "
                        f"(estimated, see harness.cases.memory_estimate); {self._machine()}")
        if (model, batch) not in self.shapes:
            self.shapes.add((model, batch))
            # JAX keeps the functions of the last KEPT_SIGNATURES shapes only: count the
            # largest that many, whichever they are.
            heapq.heappush(self.compiled, compiled)
            self.kept += compiled
            if len(self.compiled) > self.kept_signatures:
                self.kept -= heapq.heappop(self.compiled)
        self.kept += kept
        self.working = max(self.working, working)
        if not self.keep_arrays:
            self.in_flight = sorted([*self.in_flight, arrays + extra])[-2:]
        self.cases += 1
        need = BASE_BYTES + self.kept + self.working + sum(self.in_flight)
        if need > self.limit:
            f.fail(sum_field, f"too much for one run: the {self.cases} cases up to "
                              f"{name or 'this one'} need about {_gib(need)} of memory together "
                              f"(a run keeps every case's results for the report, and its arrays "
                              f"with --save-arrays); "
                              f"{self._machine()}")


# --------------------------------------------------------------------------- loading


def load_file(path: str | Path, allow_huge: bool = False) -> list[Case]:
    """Parse and validate one case file. ``allow_huge`` (the CLI's --yes) lets a sweep draw
    more than MAX_SWEEP_COUNT cases or MAX_SWEEP_WIDTHS layers; the memory check still holds."""
    return _load_file(path, _MemoryBudget(), allow_huge)


def load_files(paths: list[str | Path], allow_huge: bool = False, keep_arrays: bool = True,
               spilled: bool = False) -> list[Case]:
    """Load several files; a case name may appear only once in a run, and the cases of all
    files together must fit in memory (a run keeps every case's results, and its arrays unless
    ``keep_arrays`` is False: the CLI's run without --save-arrays; its comparisons stay on disk
    when ``spilled``: the CLI's runs, ``records.Spill``). ``allow_huge``: as for ``load_file``."""
    cases: list[Case] = []
    where: dict[str, str] = {}
    budget = _MemoryBudget(keep_arrays, spilled)
    for p in paths:
        for c in _load_file(p, budget, allow_huge):
            if c.name in where:
                raise InputError(f"case name already used in {where[c.name]}; names must be "
                                 "unique across the files of one run", file=c.source,
                                 case=c.name, field="name")
            where[c.name] = c.source
            cases.append(c)
    return cases


def _load_file(path: str | Path, budget: _MemoryBudget, allow_huge: bool = False) -> list[Case]:
    src = str(path)
    try:
        text = _read_case_file(path, src).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read case file: {e}", file=src) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"malformed TOML: {e}", file=src) from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise InputError("malformed TOML: arrays or inline tables nested too deeply to parse",
                         file=src) from None
    except ValueError as e:  # an integer literal longer than Python converts (4300 digits)
        raise InputError(f"malformed TOML: {str(e).split(';')[0]}", file=src) from None
    for key in doc:
        if key not in TOP_KEYS:
            raise InputError(f"unknown top-level key {key!r}{did_you_mean(key, TOP_KEYS)}; "
                             "expected [[case]] or [[sweep]] tables", file=src)
    cases: list[Case] = []
    for i, raw in enumerate(_table_list(doc, "case", src)):
        cases.append(_parse_case(raw, src, f"case #{i + 1}", budget))
    for i, raw in enumerate(_table_list(doc, "sweep", src)):
        cases.extend(_expand_sweep(raw, src, f"sweep #{i + 1}", budget, allow_huge))
    seen: set[str] = set()
    for c in cases:
        if c.name in seen:
            raise InputError("duplicate case name (names must be unique in a file)",
                             file=src, case=c.name, field="name")
        seen.add(c.name)
    if not cases:
        raise InputError("no [[case]] or [[sweep]] tables", file=src)
    return cases


def _read_case_file(path: str | Path, src: str) -> bytes:
    """The file's bytes, refusing before reading anything that is not a regular file of at
    most MAX_CASE_FILE_BYTES (a directory, /dev/zero, a FIFO, a huge file).

    Opened non-blocking, because opening a FIFO for reading would wait for a writer, and
    checked with fstat on the open descriptor, so what is checked is what is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError("case file not found", file=src) from None
    except OSError as e:
        raise InputError(f"cannot read case file: {e.strerror or e}", file=src) from None
    limit = f"{MAX_CASE_FILE_BYTES:,} bytes ({MAX_CASE_FILE_BYTES / 2**20:g} MiB)"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"cannot read case file: not a regular file "
                             f"({_file_type(info.st_mode)})", file=src)
        if info.st_size > MAX_CASE_FILE_BYTES:
            raise InputError(f"case file too large: {info.st_size:,} bytes, the limit is {limit}",
                             file=src)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_CASE_FILE_BYTES + 1)  # bounded even if the file grew since fstat
    except OSError as e:
        raise InputError(f"cannot read case file: {e.strerror or e}", file=src) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CASE_FILE_BYTES:
        raise InputError(f"case file too large: more than the limit of {limit}", file=src)
    return data


def _file_type(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a file")


def _table_list(doc: dict, key: str, src: str) -> list[dict]:
    val = doc.get(key, [])
    if not isinstance(val, list) or not all(isinstance(t, dict) for t in val):
        raise InputError(f"{key!r} must be an array of tables, written [[{key}]]", file=src)
    return val


def _parse_case(raw: dict, src: str, label: str, budget: _MemoryBudget) -> Case:
    f = _Fields(raw, CASE_KEYS, src, label)
    name = f.get("name", str)
    if not name.strip():
        f.fail("name", "must not be empty")
    if "network" in raw:
        return _parse_network_case(f, name, src, budget)
    for key in NETWORK_ONLY_KEYS:
        if key in raw:
            f.fail(key, f"`{key}` belongs to the network form: write the MLP as "
                        "network = [{layer = \"dense\", units = ..., activation = ...}, ...]")
    layers = f.get("layers", list, what="an array of layer sizes [n_0, ..., n_L]")
    if len(layers) < 2:
        f.fail("layers", f"needs at least [n_0, n_1], got {_show(layers)}")
    if len(layers) - 1 > MAX_DEPTH:
        f.fail("layers", f"{len(layers) - 1} layers; at most {MAX_DEPTH} (n_0 .. n_L with "
                         f"L <= {MAX_DEPTH})")
    for i, n in enumerate(layers):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            f.fail(f"layers[{i}]", f"layer sizes must be positive integers, got {_show(n)}")
        if n > MAX_DIM:
            f.fail(f"layers[{i}]", f"layer sizes must be at most {_limit(MAX_DIM)}, got {_show(n)}")
    L = len(layers) - 1
    loss = f.get("loss", str)
    if loss not in LOSSES:
        from .catalog import NETWORK_LOSSES
        if loss in NETWORK_LOSSES:
            f.fail("loss", f"{loss} is available in the network form: network = [{{layer = "
                           "\"dense\", units = ...}, ...] with its scores as the last layer")
        f.fail("loss", f"unknown loss {_show(loss)}{did_you_mean(loss, LOSSES)}; "
                       f"known: {', '.join(LOSSES)}")
    acts = _parse_activations(f, L, loss)
    _check_output(f, acts[-1], loss, layers[-1])
    dtype, seed, scale, description = _common(f)
    model = Model(tuple(layers), tuple(acts), loss, dtype)
    values = _parse_values(f, model)
    batch = f.int_range("batch", None, 1, MAX_DIM)
    if "X" in values:
        m_x = values["X"].shape[0]
        if batch is not None and batch != m_x:
            f.fail("batch", f"batch = {batch} but values.X has {m_x} rows")
        batch = m_x
    if batch is None:
        f.fail("batch", "missing required field (or give values.X)")
    # Before anything is drawn: refuse a case (or one case too many) that would not fit.
    budget.add(f, model, batch, extra=sum(v.nbytes for v in values.values()),
               batch_field="batch", size_field="layers", sum_field="batch")
    for key in ("X", "Y"):
        if key in values and values[key].shape[0] != batch:
            f.fail(f"values.{key}", f"has {values[key].shape[0]} rows, batch is {batch}")
    if "y" in values and values["y"].shape[0] != batch:
        f.fail("values.y", f"has {values['y'].shape[0]} labels, batch is {batch}")
    return Case(name, model, batch, seed, src, scale, description, values)


def _common(f: _Fields) -> tuple[str, int, float, str]:
    """dtype, seed, input_scale, description: the same in both forms."""
    dtype = f.get("dtype", str, "float64")
    if dtype not in DTYPES:
        f.fail("dtype", f"unknown dtype {_show(dtype)}{did_you_mean(dtype, DTYPES)}; "
                        "known: float32, float64")
    seed = f.int_range("seed", 0, 0, MAX_SEED)
    scale = f.get("input_scale", (int, float), 1.0)
    # Compared, not converted: float() of an integer beyond 1e308 raises, and NaN fails both.
    if not 0 < scale <= MAX_INPUT_SCALE:
        f.fail("input_scale", f"must be a number in (0, {MAX_INPUT_SCALE:g}], got {_show(scale)}")
    return dtype, seed, float(scale), f.get("description", str, "")


def _parse_network_case(f: _Fields, name: str, src: str, budget: _MemoryBudget) -> Case:
    from . import network_cases as nc

    loss = f.get("loss", str)
    dtype, seed, scale, description = _common(f)
    batch = f.int_range("batch", None, 1, MAX_DIM)
    # rnn's h0 is one row per example: its shape needs the batch (or values.X's rows) first.
    values_raw = f.raw.get("values")
    x_raw = values_raw.get("X") if isinstance(values_raw, dict) else None
    rows = batch if batch is not None else (len(x_raw) if isinstance(x_raw, list) else 0)
    net = nc.parse_network(f, loss, dtype, MAX_DIM, MAX_DEPTH, rows)
    values = nc.parse_values(f, net, batch)
    if batch is None:
        if "X" not in values:
            f.fail("batch", "missing required field (or give values.X)")
        batch = values["X"].shape[0]
    nc.check_batch(f, net, batch)
    budget.add(f, net, batch, extra=sum(v.nbytes for v in values.values()),
               batch_field="batch", size_field="network", sum_field="batch")
    return Case(name, net, batch, seed, src, scale, description, values)


def _parse_activations(f: _Fields, L: int, loss: str) -> list[str]:
    acts = f.get("activations", (list, str), what="a list of L names or one hidden-layer name")
    if isinstance(acts, str):
        # One name: every hidden layer; the output activation from `output` or the loss.
        output = f.get("output", str, LOSSES[loss].default_output)
        fields = [("activations", acts)] + [("output", output)]  # checked even when L = 1
        acts = [acts] * (L - 1) + [output]
    else:
        if "output" in f.raw:
            f.fail("output", "give the output activation either as the last entry of "
                             "`activations` or in `output`, not both")
        if len(acts) != L:
            f.fail("activations", f"needs L = {L} names (g^[1]..g^[L]) for layers "
                                  f"{_show(f.raw['layers'])}, got {len(acts)}")
        fields = [(f"activations[{i}]", a) for i, a in enumerate(acts)]
    for fld, a in fields:
        if not isinstance(a, str) or a not in ALL_NAMES:
            hint = did_you_mean(a, ALL_NAMES) if isinstance(a, str) else ""
            f.fail(fld, f"unknown activation {_show(a)}{hint}; known: {', '.join(ALL_NAMES)}")
    for fld, a in fields[:-1]:
        if a in OUTPUT_ONLY:
            f.fail(fld, f"{a} is not elementwise and is allowed only as the output activation")
    return list(acts)


def _check_output(f: _Fields, out: str, loss: str, n_out: int) -> None:
    need = LOSSES[loss].output_activation
    fld = "output" if "output" in f.raw else "activations"
    if need is not None and out != need:
        f.fail(fld, f"loss {loss} needs output activation {need}, got {out}")
    if out == SOFTMAX and n_out < 2:
        f.fail("layers", f"softmax over {n_out} class is constant 1 (zero gradient); "
                         "n_L must be >= 2")


def _parse_values(f: _Fields, model: Model) -> dict[str, np.ndarray]:
    raw = f.get("values", dict, {})
    shapes = model.param_shapes()
    n0, nL = model.layers[0], model.layers[-1]
    target = "y" if model.loss == "cross_entropy" else "Y"
    allowed = {"X", target, *shapes}
    out: dict[str, np.ndarray] = {}
    for key, val in raw.items():
        fld = f"values.{key}"
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            if key == "Y" and target == "y":
                hint = " (cross_entropy takes y = [class indices], not one-hot Y)"
            elif key == "y" and target == "Y":
                hint = f" ({model.loss} takes targets as a 2-D array Y)"
            f.fail(fld, f"unknown array{hint}; allowed: {', '.join(sorted(allowed))}")
        if key == "y":
            out[key] = _parse_labels(f, fld, val, nL)
            continue
        _check_numbers(f, fld, val)
        try:
            arr = np.array(val, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            f.fail(fld, "must be a rectangular array of numbers")
        if arr.ndim == 1 and key.startswith("b"):
            arr = arr[None, :]  # b may be written as a flat row
        want = shapes.get(key) or (None, n0 if key == "X" else nL)
        if arr.ndim != 2 or any(w is not None and w != s for w, s in zip(want, arr.shape)):
            shown = "×".join("m" if w is None else str(w) for w in want)
            f.fail(fld, f"shape {'×'.join(map(str, arr.shape))} does not match {shown} "
                        f"(row-vector convention)")
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            f.fail(fld, f"non-finite value {arr[idx]} at index {idx}")
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(arr.astype(model.np_dtype))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            f.fail(fld, f"value {arr[idx]} at index {idx} overflows {model.dtype}")
        if key == "Y" and model.loss == "binary_cross_entropy" and ((arr < 0) | (arr > 1)).any():
            f.fail(fld, "binary_cross_entropy targets must lie in [0, 1]")
        out[key] = arr
    return out


def _check_numbers(f: _Fields, fld: str, val: Any) -> None:
    """``val`` is one row or a list of rows of numbers that a float64 can hold.

    Not recursive: TOML nests as deep as the file says, and values are at most 2-D, so
    anything deeper is refused where it is first seen. An integer beyond the float range
    would make float() raise and numpy build an object array.
    """
    if not isinstance(val, list):
        f.fail(fld, f"must be an array of numbers, got {_show(val)}")
    for i, row in enumerate(val):
        for j, x in enumerate(row if isinstance(row, list) else (row,)):
            if isinstance(x, (int, float)) and not isinstance(x, bool) and not (
                    isinstance(x, int) and abs(x) > sys.float_info.max):
                continue
            at = (i, j) if isinstance(row, list) else (i,)
            if isinstance(x, list):
                f.fail(fld, f"arrays nested deeper than 2 at index {at}; values are 1-D or 2-D "
                            "arrays of numbers")
            if isinstance(x, int) and not isinstance(x, bool):
                f.fail(fld, f"value at index {at} is {_show(x)}, too large for a float "
                            f"(at most {sys.float_info.max:.4g})")
            f.fail(fld, f"must be an array of numbers, found {_show(x)} at index {at}")


# --------------------------------------------------------------------------- sweeps


def _count(f: _Fields, allow_huge: bool) -> int:
    """A sweep's ``count``: at most MAX_SWEEP_COUNT, or MAX_SEED with --yes."""
    count = f.get("count", int)
    if count < 1:
        f.fail("count", f"must be >= 1, got {_show(count)}")
    if count > MAX_SWEEP_COUNT and not allow_huge:
        f.fail("count", f"must be at most {MAX_SWEEP_COUNT}, got {_show(count)} (a sweep that long "
                        "takes hours to days to run; pass --yes to draw it anyway)")
    if count > MAX_SEED:
        f.fail("count", f"must be at most {_limit(MAX_SEED)}, got {_show(count)}")
    return count


def _check_drawn(f: _Fields, count: int, per_case: int, what: str, allow_huge: bool) -> None:
    """count × ``per_case`` drawn layers (or layer sizes) within MAX_SWEEP_WIDTHS, unless --yes."""
    if count * per_case > MAX_SWEEP_WIDTHS and not allow_huge:
        f.fail("count", f"a sweep draws at most {MAX_SWEEP_WIDTHS:,} {what}; {count} × "
                        f"{per_case} = {count * per_case:,} (pass --yes to draw them anyway)")


def _expand_sweep(raw: dict, src: str, label: str, budget: _MemoryBudget,
                  allow_huge: bool = False) -> list[Case]:
    f = _Fields(raw, SWEEP_KEYS, src, label)
    prefix = f.get("name", str)
    if not prefix.strip():
        f.fail("name", "must not be empty")
    if any(k in raw for k in NETWORK_SWEEP_KEYS):
        return _expand_network_sweep(f, prefix, src, budget, allow_huge)
    count = _count(f, allow_huge)
    seed = f.int_range("seed", 0, 0, MAX_SEED)
    depth = _range(f, "depth", [1, 4], 1, MAX_DEPTH)
    width = _range(f, "width", [1, 16], 1, MAX_DIM)
    batch = _range(f, "batch", [1, 32], 1, MAX_DIM)
    _check_drawn(f, count, depth[1] + 1, "layer sizes, count × (depth hi + 1)", allow_huge)
    hidden = _names(f, "activations", list(ACTIVATIONS), set(ACTIVATIONS))
    losses = _names(f, "losses", list(LOSSES), set(LOSSES))
    dtypes = _names(f, "dtypes", list(DTYPES), set(DTYPES))
    scales = f.get("input_scale", list, [1.0, 1.0], what="[lo, hi]")
    if (len(scales) != 2
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool)
                       and 0 < s <= MAX_INPUT_SCALE for s in scales)
            or scales[0] > scales[1]):
        f.fail("input_scale", f"must be [lo, hi] with 0 < lo <= hi <= {MAX_INPUT_SCALE:g}, "
                              f"got {_show(scales)}")
    lo_s, hi_s = scales
    rng = np.random.default_rng(seed)

    def pick(seq: list[str]) -> str:
        # The same draw as rng.choice(seq) (one integers(0, len) call), at a fifth of its cost.
        return seq[int(rng.integers(0, len(seq)))]

    outputs = hidden + [SOFTMAX]
    cases = []
    for i in range(count):
        L = int(rng.integers(depth[0], depth[1] + 1))
        loss = pick(losses)
        sizes = [int(rng.integers(width[0], width[1] + 1)) for _ in range(L + 1)]
        acts = [pick(hidden) for _ in range(L - 1)]
        if loss == "half_sse":
            out = pick(outputs)
        else:
            out = LOSSES[loss].output_activation or "identity"
        if out == SOFTMAX:
            sizes[-1] = max(sizes[-1], 2)
        scale = float(math.exp(rng.uniform(math.log(lo_s), math.log(hi_s))))
        model = Model(tuple(sizes), tuple(acts + [out]), loss, pick(dtypes))
        m = int(rng.integers(batch[0], batch[1] + 1))
        name = f"{prefix}-{i:03d}"
        budget.add(f, model, m, extra=0, batch_field="batch", size_field="width",
                   sum_field="count", name=name)
        cases.append(Case(name, model, m, int(rng.integers(0, 2**31)), src, scale,
                          f"from sweep {prefix!r}"))
    return cases


def _expand_network_sweep(f: _Fields, prefix: str, src: str, budget: _MemoryBudget,
                          allow_huge: bool = False) -> list[Case]:
    """A sweep of catalog networks (``layers`` names the layer types it composes).

    ``layers`` names one family (dense, conv or sequence, see network_cases.FAMILIES) or
    several: then it is a catalog sweep, and each case first draws its family, in proportion to
    the summed weights of the layers of that family it names, then a network of that family.
    """
    from . import network_cases as nc

    if "input_scale" in f.raw:  # read by the MLP form only: a network sweep would ignore it
        f.fail("input_scale", "a network sweep (one with any of "
                              f"{', '.join(f'`{k}`' for k in NETWORK_SWEEP_KEYS)}) draws its inputs "
                              "at scale 1; input_scale is for an MLP sweep")
    count = _count(f, allow_huge)
    seed = f.int_range("seed", 0, 0, MAX_SEED)
    depth = _range(f, "depth", [1, 4], 1, MAX_DEPTH)
    width = _range(f, "width", [1, 16], 1, MAX_DIM)
    batch = _range(f, "batch", [2, 16], 1, MAX_DIM)
    hidden = _names(f, "activations", list(ACTIVATIONS), set(ACTIVATIONS))
    losses = _names(f, "losses", list(nc.SWEEP_LOSSES), set(nc.SWEEP_LOSSES))
    dtypes = _names(f, "dtypes", list(DTYPES), set(DTYPES))
    names, weights = _layer_weights(f)
    families = {fam: sum(1 if weights is None else weights[n] for n in names if n in members)
                for fam, members in nc.FAMILIES.items()}
    families = {fam: w for fam, w in families.items() if w > 0}
    for key, layer, kind in (("kernel", "conv2d", "conv"), ("filters", "conv2d", "conv"),
                             ("vocab", "embedding", "sequence")):
        if key in f.raw and layer not in names:
            f.fail(key, f"only for a {kind} sweep with {layer} in `layers`: the sweep draws no "
                        f"{layer} (add it to `layers`)")
    if "heads" in f.raw and not ("attention" in names or ("sequence" in families and not
                                                            {"rnn", "lstm"} & set(names))):
        f.fail("heads", "only for a sequence sweep with attention in `layers`: the sweep draws no "
                        "attention (add it to `layers`)")
    catalog = len(families) > 1
    if catalog:
        spatial, sequence = _catalog_settings(f, names, families)
        extras = {fam: [n for n in names if n in nc.SHARED_LAYERS + nc.FAMILIES[fam]]
                  for fam in families}
        fams = list(families)
    else:
        # Without `layers`, the dense extras: a conv sweep names its conv2d or pools, a sequence
        # sweep its rnn, lstm, attention, embedding or residual.
        one = [n for n in names if n != "dense"]
        sequence = _sequence_settings(f, one, "input", f.raw.get("input"))
        spatial = None if sequence else _spatial_settings(f, one, "input", f.raw.get("input"))
        if not sequence and not spatial:
            _dense_only(f)
    block_layers = [nc.LAYERS_PER_BLOCK * spatial["blocks"][1] + 1] if spatial else []
    if sequence:
        block_layers.append(nc.LAYERS_PER_SEQUENCE_BLOCK * sequence["blocks"][1] + 2)
    per_case = 4 * depth[1] + 1 + max(block_layers, default=0)
    _check_drawn(f, count, per_case, "layers, count × (4·depth hi + 1 + the blocks' layers at most)",
                 allow_huge)
    forms = _names(f, "l2_forms", list(nc.L2_FORMS), set(nc.L2_FORMS))
    l2 = f.get("l2", list, [0.0, 0.0], what="[lo, hi]")
    if (len(l2) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                and math.isfinite(v) and v >= 0 for v in l2) or l2[0] > l2[1]):
        f.fail("l2", f"must be [lo, hi] with 0 <= lo <= hi, got {_show(l2)}")
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        name = f"{prefix}-{i:03d}"
        if catalog:
            fam = nc.pick(rng, fams, families)
            raw = nc.draw_network(rng, depth, width, hidden, losses, extras[fam], dtypes, l2, forms,
                                  spatial if fam == "conv" else None,
                                  sequence if fam == "sequence" else None, weights)
        else:
            raw = nc.draw_network(rng, depth, width, hidden, losses, one, dtypes, l2, forms, spatial,
                                  sequence, weights)
        m = int(rng.integers(batch[0], batch[1] + 1))
        case_seed = int(rng.integers(0, 2**31))
        try:
            net = nc.network_of(raw, MAX_DIM, MAX_DEPTH, m)
            if any(s.kind == "batchnorm" for s in net.network) and m < 2:
                m = 2  # batch norm over one example has zero variance
                net = nc.network_of(raw, MAX_DIM, MAX_DEPTH, m)  # rnn's h0 has a row per example
        except InputError as e:  # a bug in draw_network, not in the file: say where it came from
            f.fail("layers", f"drew an invalid network for {name}: {e.message}")
        budget.add(f, net, m, extra=0, batch_field="batch", size_field="width",
                   sum_field="count", name=name)
        cases.append(Case(name, net, m, case_seed, src, 1.0, f"from sweep {prefix!r}"))
    return cases


def _layer_weights(f: _Fields) -> tuple[list[str], dict[str, float] | None]:
    """A network sweep's ``layers``: a list of names (equal weights; returns None for the
    weights) or a table of name = weight >= 0. Returns the names of positive weight, in the
    file's order: a layer of weight 0 is as if not named."""
    from . import network_cases as nc

    known = set(nc.CATALOG_LAYERS)
    default = [k for k in nc.SWEEP_LAYERS if k not in nc.SPATIAL_LAYERS + nc.SEQUENCE_LAYERS]
    if not isinstance(f.raw.get("layers"), dict):
        return _names(f, "layers", default, known), None
    weights: dict[str, float] = {}
    for key, w in f.raw["layers"].items():
        if key not in known:
            f.fail(f"layers.{key}", f"unknown layer {_show(key)}{did_you_mean(key, known)}; "
                                    f"known: {', '.join(nc.CATALOG_LAYERS)}")
        if (isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)
                or not 0 <= w <= MAX_DIM):
            f.fail(f"layers.{key}", f"a weight is a number in 0..{MAX_DIM}, got {_show(w)}")
        if w > 0:
            weights[key] = float(w)
    if not weights:
        f.fail("layers", "every weight is 0: give at least one layer a positive weight")
    return list(weights), weights


def _dense_only(f: _Fields) -> None:
    """A dense sweep refuses the conv and sequence settings, naming what would make them count."""
    for key in ("input", "blocks"):
        if key in f.raw:
            f.fail(key, "only for a conv sweep: add conv2d, maxpool2d or avgpool2d to `layers` (or "
                        "a sequence sweep: rnn, lstm, attention...; a dense sweep draws its input "
                        "width from `width`)")


def _catalog_settings(f: _Fields, names: list[str], families: dict) -> tuple[dict | None, dict | None]:
    """The conv and sequence settings of a catalog sweep. Its ``input`` is a table, one entry per
    kind of input it draws: ``{conv = [C, H, W], sequence = [T, D]}``, either left to its default;
    ``blocks`` and the other ranges are shared."""
    inputs = f.get("input", dict, {}, what="a table {conv = [C, H, W], sequence = [T, D]} (a catalog "
                                          "sweep draws more than one kind of input)")
    for key in inputs:
        if key not in ("conv", "sequence") or key not in families:
            f.fail(f"input.{key}", f"the sweep draws {' and '.join(k for k in ('conv', 'sequence') if k in families) or 'no'} "
                                   "inputs of shape: input = {conv = [C, H, W], sequence = [T, D]}, "
                                   "each only when `layers` names that family")
    spatial = sequence = None
    if "conv" in families:
        spatial = _spatial_settings(f, [n for n in names if n != "dense"], "input.conv", inputs.get("conv"))
    if "sequence" in families:
        sequence = _sequence_settings(f, [n for n in names if n != "dense"], "input.sequence",
                                      inputs.get("sequence"))
    return spatial, sequence


def _sequence_settings(f: _Fields, extras: list[str], fld: str, given: Any) -> dict | None:
    """``input`` ([T, D] ranges, at ``fld``), ``blocks``, ``vocab`` and ``heads`` of a sequence
    sweep (one whose ``layers`` name a sequence layer), None otherwise."""
    from . import network_cases as nc

    if not any(e in nc.SEQUENCE_LAYERS for e in extras):
        if "vocab" in f.raw:
            f.fail("vocab", "only for a sequence sweep with embedding in `layers`")
        return None
    if "filters" in f.raw and "conv2d" not in extras:
        f.fail("filters", "only for a conv sweep (a sequence sweep has no conv2d)")
    ranges, blocks = _input_and_blocks(f, "sequence", "TD", nc.DEFAULT_SEQUENCE_INPUT,
                                       nc.LAYERS_PER_SEQUENCE_BLOCK, 2, fld, given)
    vocab = _range(f, "vocab", nc.DEFAULT_VOCAB, 1, MAX_DIM)
    out = {"input": ranges, "blocks": blocks, "vocab": vocab}
    if "heads" in f.raw:
        heads = _range(f, "heads", [1, 4], 1, MAX_HEADS)
        D_lo, D_hi = ranges[1]
        # Some width in D's range that some head count in range divides: h divides a width of
        # the range when its multiple at or above D lo is at most D hi.
        if not any(-(-D_lo // h) * h <= D_hi for h in range(heads[0], min(heads[1], D_hi) + 1)):
            f.fail("heads", f"no head count in {_show(heads)} divides a width D in {D_lo}..{D_hi} "
                            f"({fld}[1]): attention splits its D features evenly among its heads")
        out["heads"] = heads
    return out


def _spatial_settings(f: _Fields, extras: list[str], fld: str, given: Any) -> dict | None:
    """``input`` (at ``fld``), ``blocks``, ``filters`` and ``kernel`` of a conv sweep (one whose
    ``layers`` name conv2d or a pool), None otherwise."""
    from . import network_cases as nc

    if not any(e in nc.SPATIAL_LAYERS for e in extras):
        if "filters" in f.raw:
            f.fail("filters", "only for a conv sweep: add conv2d to `layers`")
        return None
    ranges, blocks = _input_and_blocks(f, "conv", "CHW", nc.DEFAULT_SPATIAL_INPUT, nc.LAYERS_PER_BLOCK, 1,
                                       fld, given)
    out = {"input": ranges, "blocks": blocks, "filters": _range(f, "filters", nc.DEFAULT_FILTERS, 1, MAX_DIM)}
    if "kernel" in f.raw:
        kernel = _range(f, "kernel", [1, nc.MAX_KERNEL], 1, MAX_DIM)
        H, W = ranges[1][1], ranges[2][1]
        if kernel[0] > min(H, W) + 2 * nc.MAX_PADDING:
            f.fail("kernel", f"lo {kernel[0]} fits no input: the largest is H × W = {H} × {W} ({fld}), "
                             f"padded by at most {nc.MAX_PADDING} on each side to "
                             f"{H + 2 * nc.MAX_PADDING} × {W + 2 * nc.MAX_PADDING}, and a conv2d's "
                             "kernel must fit its padded input")
        out["kernel"] = kernel
    return out


def _input_and_blocks(f: _Fields, kind: str, axes: str, default: list, per_block: int,
                      head: int, fld: str = "input", given: Any = None) -> tuple[list[list[int]], list[int]]:
    """A conv or sequence sweep's input (``given``, read from ``fld``: a size or range per axis
    of ``axes``) and its ``blocks`` range, checked so that a network of ``per_block`` layers per
    block, the dense layers of ``depth`` (4 each at most) and ``head`` more stays within
    MAX_DEPTH."""
    from . import network_cases as nc

    shape = "[" + ", ".join(axes) + "]"
    raw = default if given is None else given
    if not isinstance(raw, list):
        f.fail(fld, f"expected {shape}, each a size or a range [lo, hi], got {_show(raw)}")
    if len(raw) != len(axes):
        f.fail(fld, f"a {kind} sweep's input is {shape}, each a size or a range [lo, hi]; "
                    f"got {len(raw)} entries: {_show(raw)}")
    ranges = _size_ranges(f, raw, axes, fld)
    depth_hi = _range(f, "depth", [1, 4], 1, MAX_DEPTH)[1]
    room = (MAX_DEPTH - 4 * depth_hi - head) // per_block
    blocks = _range(f, "blocks", nc.DEFAULT_BLOCKS, 1, MAX_DEPTH)
    if blocks[1] > room:
        f.fail("blocks", f"a network has at most {MAX_DEPTH} layers: with depth up to {depth_hi}, "
                         f"blocks (up to {per_block} layers each) must be at most "
                         f"{max(room, 0)}, got {_show(blocks)}")
    return ranges, blocks


def _size_ranges(f: _Fields, raw: list, axes: str, fld: str = "input") -> list[list[int]]:
    """A sweep's ``input``: for each axis a size or a range [lo, hi], as [lo, hi]."""
    ranges = []
    for i, (axis, r) in enumerate(zip(axes, raw)):
        lo_hi = [r, r] if isinstance(r, int) and not isinstance(r, bool) else r
        if (not isinstance(lo_hi, list) or len(lo_hi) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in lo_hi)
                or not 1 <= lo_hi[0] <= lo_hi[1]):
            f.fail(f"{fld}[{i}]", f"{axis} must be a size >= 1 or a range [lo, hi] with "
                                  f"1 <= lo <= hi, got {_show(r)}")
        if lo_hi[1] > MAX_DIM:
            f.fail(f"{fld}[{i}]", f"{axis} must be at most {_limit(MAX_DIM)}, got {_show(r)}")
        ranges.append(lo_hi)
    return ranges


def _range(f: _Fields, key: str, default: list[int], lo: int, hi: int) -> list[int]:
    val = f.get(key, list, default, what="[lo, hi]")
    if (len(val) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in val)
            or not lo <= val[0] <= val[1]):
        f.fail(key, f"must be [lo, hi] with {lo} <= lo <= hi, got {_show(val)}")
    if val[1] > hi:
        f.fail(key, f"must be at most {_limit(hi)}, got {_show(val)}")
    return val


def _names(f: _Fields, key: str, default: list[str], known: set[str]) -> list[str]:
    val = f.get(key, list, default)
    if not val:
        f.fail(key, "must not be empty")
    for i, v in enumerate(val):
        if not isinstance(v, str) or v not in known:
            hint = did_you_mean(v, known) if isinstance(v, str) else ""
            f.fail(f"{key}[{i}]", f"unknown name {_show(v)}{hint}; "
                                  f"known: {', '.join(sorted(known))}")
    return list(val)
