"""Run every backend on every case, compare every pair, collect records.

A backend that raises, or returns something that breaks the contract, becomes a
``BackendError`` for that case; the run goes on.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .backends import Backend, NotApplicable, check_output, kind_of, notes_of
from .backends.build import UnavailableBackend  # noqa: F401 - re-exported
from .backends.isolated import IsolatedBackend
from .cases import Case
from .compare import Comparison, compare_pairs
from .errors import describe  # noqa: F401 - re-exported: runner.describe is public
from .directional import directions, project
from .network import Network
from . import records
from .records import Spill, SpilledComparisons
from .rounding import rounding_floor
from .ties import chooses, tie_masks
from .threads import ONE_THREAD, pin_threads  # noqa: F401 - re-exported: runner.pin_threads
from .tolerances import lookup, pair_kind

Array = np.ndarray


@dataclass(frozen=True)
class BackendError:
    case: str
    backend: str
    message: str  # one line: exception type and message
    detail: str = ""  # the traceback, for the report


@dataclass
class CaseResult:
    case: Case
    inputs: dict[str, Array]
    outputs: dict[str, dict[str, Array]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # A list, or after ``spill`` a records.SpilledComparisons: the same sequence, on disk.
    comparisons: list[Comparison] | SpilledComparisons = field(default_factory=list)
    errors: list[BackendError] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # per backend, from its result's notes
    inconclusive: dict[str, int] = field(default_factory=dict)  # per backend: not compared
    kind_notes: dict[str, str] = field(default_factory=dict)  # per backend: declared kind not honoured
    ties: dict[str, int] = field(default_factory=dict)  # max-pool ties: windows, elements not compared
    # After ``shed_arrays``: True, and what the report says of the arrays (``masked_counts``).
    shed: bool = False
    masked: dict[str, tuple[list[str], int, int]] = field(default_factory=dict)

    def masked_counts(self) -> dict[str, tuple[list[str], int, int]]:
        """Per backend whose output has masked (not compared) elements: (the quantities, the
        elements compared, all their elements)."""
        if self.shed:
            return self.masked
        counts = {}
        for backend, out in self.outputs.items():
            masked = [q for q, v in out.items() if np.ma.isMaskedArray(v)]
            if masked:
                counts[backend] = (masked, sum(int(np.ma.count(out[q])) for q in masked),
                                   sum(int(out[q].size) for q in masked))
        return counts

    def shed_arrays(self) -> None:
        """Drop the inputs and every backend's arrays once they are compared: a run that saves no
        arrays keeps only the records, so a sweep's memory (and what a Dask worker sends back)
        grows by its comparisons, not by its arrays. Which backends gave an output stays
        (``outputs`` keeps its keys, each with an empty dict)."""
        if not self.shed:
            self.masked = self.masked_counts()
            self.outputs = {b: {} for b in self.outputs}
            self.inputs = {}
            self.shed = True

    def spill(self, store: Spill) -> None:
        """Move the comparisons to ``store`` (``records.Spill``): what a case keeps in memory
        is then its failures, whether it compared anything and its per-pair tallies."""
        if not isinstance(self.comparisons, SpilledComparisons):
            self.comparisons = store.put(self.comparisons)

    @property
    def compared_any(self) -> bool:
        """Some element of some quantity was compared."""
        if isinstance(self.comparisons, SpilledComparisons):
            return self.comparisons.compared_any
        return records.compared_any(self.comparisons)

    def pair_tallies(self) -> dict[tuple[str, str], tuple[tuple[str, ...], int, int, int]]:
        """``records.pair_tallies`` of this case's comparisons."""
        if isinstance(self.comparisons, SpilledComparisons):
            return self.comparisons.tallies
        return records.pair_tallies(self.comparisons)

    @property
    def state(self) -> str:
        """agree, disagree, error or nothing compared (``verdict.case_state``)."""
        from .verdict import case_state

        return case_state(self)

    @property
    def passed(self) -> bool:
        from .verdict import AGREE

        return self.state == AGREE

    def failures(self) -> list[Comparison]:
        if isinstance(self.comparisons, SpilledComparisons):
            return list(self.comparisons.failures)
        return records.failures(self.comparisons)

    def first_disagreements(self) -> dict[str, Comparison]:
        """Per failing pair, the first quantity in algorithm order that disagrees.

        Comparisons are made in algorithm order (forward values, then the backward pass
        from layer L down), so this is where the error enters: everything computed from
        it afterwards disagrees too.
        """
        first: dict[str, Comparison] = {}
        for c in self.failures():
            if c.pair not in first:
                first[c.pair] = c
        return first


@dataclass
class RunResult:
    backends: list[str]
    cases: list[CaseResult]
    allow_uncompared: bool = False  # a pair or case that compared nothing does not fail the run
    frameworks: dict = field(default_factory=dict)  # torch's, JAX's settings where they ran apart (environment)

    @property
    def kind_notes(self) -> dict[str, str]:
        """Per backend whose declared tolerance kind was not honoured, why."""
        return {name: note for r in self.cases for name, note in r.kind_notes.items()}

    @property
    def comparisons(self) -> list[Comparison]:
        """Every case's comparisons in one list (the writers of a large run's reports go case by
        case instead: ``iter_comparisons``)."""
        return [c for r in self.cases for c in r.comparisons]

    def iter_comparisons(self) -> Iterator[Comparison]:
        """Every comparison in case order, one case's in memory at a time."""
        for r in self.cases:
            yield from r.comparisons

    @property
    def n_comparisons(self) -> int:
        return sum(len(r.comparisons) for r in self.cases)

    def failures(self) -> list[Comparison]:
        """The comparisons out of tolerance, in case order."""
        return [c for r in self.cases for c in r.failures()]

    @property
    def errors(self) -> list[BackendError]:
        return [e for r in self.cases for e in r.errors]

    @property
    def verdict(self):
        """``verdict.Verdict``: passed, the words, the pairs and the rows they used."""
        from .verdict import run_verdict

        return run_verdict(self, self.allow_uncompared)

    @property
    def passed(self) -> bool:
        return self.verdict.passed


def _traceback() -> str:
    try:
        return traceback.format_exc()
    except BaseException:  # noqa: BLE001 - formatting calls the exception's __str__ too
        return ""


def effective_kind(backend: object, trust_kinds: Collection[str] = ()) -> tuple[str, str]:
    """The tolerance row a backend is checked with, and a note when its declared kind is
    not honoured.

    Only the harness's own finite-difference backends, and backends the user vouches for
    (``--trust-kind NAME``), may take a looser row than "analytic": otherwise any plugin
    could pick the nudge row (rtol 3e-2) for itself. A ``kind`` attribute that raises, or
    names no row, counts as analytic.
    """
    try:
        declared = kind_of(backend)
    except BaseException:  # noqa: BLE001 - a property on a user's class may raise
        return "analytic", "its `kind` attribute raised: checked with the analytic row"
    if declared == "analytic":
        return declared, ""
    builtin = type(backend).__module__ == "harness.backends.fd"
    name = getattr(backend, "name", "")
    if builtin or name in trust_kinds:
        return declared, ""
    return "analytic", (f"declares kind {declared!r}, a finite-difference row; checked with the "
                        f"analytic row unless you vouch for it with --trust-kind {name}")


def run_case(case: Case, backends: Sequence[Backend], trust_kinds: Collection[str] = ()) -> CaseResult:
    """Run each backend on one case and compare every pair of those that succeeded.

    ``trust_kinds``: names of non-built-in backends whose declared finite-difference
    ``kind`` is honoured (see ``effective_kind``).
    """
    drawn = _draw(case)
    if isinstance(drawn, CaseResult):
        return drawn
    result = _run_backends(case, backends, drawn)
    _compare_case(result, backends, drawn, trust_kinds)
    return result


def _draw(case: Case) -> dict[str, Array] | CaseResult:
    """The case's inputs, or a CaseResult with the error that drawing them raised."""
    try:
        return case.arrays()
    except (MemoryError, ValueError) as e:
        result = CaseResult(case, {})
        result.errors.append(BackendError(case.name, "inputs", f"drawing the inputs failed: "
                                          f"{type(e).__name__}: {e}", traceback.format_exc()))
        return result


def _copies(inputs: dict[str, Array], n: int) -> list[dict[str, Array]]:
    """A copy of the inputs for each of n backends: one that writes into its inputs cannot
    change another's."""
    return [{k: v.copy() for k, v in inputs.items()} for _ in range(n)]


def _run_backends(case: Case, backends: Sequence[Backend], inputs: dict[str, Array],
                  copies: list[dict[str, Array]] | None = None) -> CaseResult:
    """Each backend on its own copy of the inputs (``copies``, or made here, one at a time):
    the outputs, or an error for that backend.

    A backend in a process of its own (``backends.isolated``: a plugin, or torch and jax in a
    serial CLI run) is sent the case first and computes while this process runs the others;
    the answers are then taken in backend order. Each backend makes the same call on the same
    arrays either way: the same bits. Its ``seconds`` are its own time in its process."""
    model = case.model
    result = CaseResult(case, inputs)

    def arrays_for(j: int) -> dict[str, Array]:
        arrays = copies[j] if copies is not None else _copies(inputs, 1)[0]
        if copies is not None:
            copies[j] = None  # the backend's own from here on: not kept beyond its call
        return arrays

    sent: set[int] = set()  # submitted, and not yet answered
    try:
        for j, backend in enumerate(backends):
            if isinstance(backend, IsolatedBackend):
                backend.submit(model, arrays_for(j))  # raises nothing: collect raises what stopped it
                sent.add(j)
        for j, backend in enumerate(backends):
            _check_stop()
            t0 = time.perf_counter()
            isolated = j in sent
            try:
                if isolated:
                    sent.discard(j)
                    raw = backend.collect()
                else:
                    raw = backend.gradients(model, arrays_for(j))
                result.outputs[backend.name] = check_output(model, raw, case.batch)
                notes, inconclusive = notes_of(raw)  # e.g. fd: its method; nudges across a kink
                if notes:
                    result.notes[backend.name] = notes
                if inconclusive:
                    result.inconclusive[backend.name] = inconclusive
            except KeyboardInterrupt:
                raise
            except NotApplicable as e:
                result.notes[backend.name] = f"not applicable to this case: {e}"
            except BaseException as e:  # noqa: BLE001 - even sys.exit() in a plugin is a record, not the end of the run
                try:
                    detail = getattr(e, "xval_detail", None)
                except BaseException:  # noqa: BLE001
                    detail = None
                result.errors.append(BackendError(case.name, backend.name, describe(e),
                                                  detail if isinstance(detail, str) else _traceback()))
            own = backend.seconds if isolated else None
            result.seconds[backend.name] = own if own is not None else time.perf_counter() - t0
    finally:
        for j in sent:  # interrupted with answers outstanding: a late one must not answer the next case
            backends[j].close()
    return result


def _compare_case(result: CaseResult, backends: Sequence[Backend], inputs: dict[str, Array],
                  trust_kinds: Collection[str]) -> None:
    """Every pair of the backends that succeeded, on every quantity (numpy only: ``run`` does
    this on a thread of its own while the next case's backends run)."""
    case, model = result.case, result.case.model
    # A backend that measured only directional derivatives vᵀ∇J (fd on a large case) is
    # compared with the vᵀ∇J every other backend's full gradient implies.
    if any("Jv" in out for out in result.outputs.values()):
        dirs = directions(model)
        for out in result.outputs.values():
            if "Jv" not in out:
                implied = project(model, out, dirs)
                if implied is not None:
                    out["Jv"] = implied

    if isinstance(model, Network) and chooses(model):
        _mask_ties(result, model, inputs)

    kinds = {}
    for b in backends:
        kinds[b.name], note = effective_kind(b, trust_kinds)
        if note:
            result.kind_notes[b.name] = note
    pairs = []
    for a, b in itertools.combinations([b.name for b in backends if b.name in result.outputs], 2):
        kind = pair_kind(kinds[a], kinds[b])
        out_a, out_b = result.outputs[a], result.outputs[b]
        J_scale = max(abs(float(out_a["J"])), abs(float(out_b["J"])))
        pairs.append((a, b, kind, lookup(model.dtype, kind), J_scale))

    def compare_all(floors: dict[str, Array]) -> list[Comparison]:
        """Every pair on every quantity, pair by pair in algorithm order; each quantity's pairs
        are compared together (``compare_pairs``: a backend's array is prepared once, not once
        for each pair it is in)."""
        done: dict[tuple[int, str], Comparison] = {}
        for q in model.algorithm_order() + ["Jv"]:
            # an optional intermediate may be missing from a backend: only pairs that both have it
            having = [p for p, (a, b, *_) in enumerate(pairs) if q in result.outputs[a] and q in result.outputs[b]]
            if not having:
                continue
            names = dict.fromkeys(n for p in having for n in pairs[p][:2])
            comps = compare_pairs(case.name, q, {n: result.outputs[n][q] for n in names},
                                  [pairs[p] for p in having], model.dtype, floors.get(q, 0.0))
            done.update(((p, q), c) for p, c in zip(having, comps))
        return [done[p, q] for p in range(len(pairs)) for q in model.algorithm_order() + ["Jv"] if (p, q) in done]

    result.comparisons = compare_all({})
    if any(not c.passed and np.isfinite(c.max_abs) for c in result.comparisons):
        # What rounding alone does to a correct implementation on this case (rounding.py) is
        # allowed on top of the table. It only ever adds allowance, so it is computed only when
        # the table alone flags something: a well-conditioned run never pays for it.
        result.comparisons = compare_all(rounding_floor(case, inputs))
    _name_plugin_mistakes(result, backends, inputs)


def _name_plugin_mistakes(result: CaseResult, backends: Sequence[Backend], inputs: dict[str, Array]) -> None:
    """For a user's plugin (run in its own process) that disagrees: the known mistake its
    gradients equal, if one does exactly, as a note ("dW1 matches 'forgot g′(z^[1])'")."""
    plugins = {b.name for b in backends if isinstance(b, IsolatedBackend) and not b.builtin}
    # a plugin that disagrees with one of the harness's own backends (not only with another plugin)
    failing = {n for c in result.comparisons if not c.passed for n in (c.a, c.b)
               if ({c.a, c.b} - {n}) - plugins}
    for b in backends:
        if b.name not in plugins or b.name not in failing or b.name not in result.outputs:
            continue
        from .mutants import matching_mistake

        model = result.case.model
        try:
            text = matching_mistake(model, inputs, result.outputs[b.name], lookup(model.dtype, "analytic"))
        except Exception:  # noqa: BLE001 - naming is a courtesy: never the reason a run fails
            text = None
        said = text or "no known mistake matches"
        note = result.notes.get(b.name)
        result.notes[b.name] = f"{note}; {said}" if note else said


def _mask_ties(result: CaseResult, net: Network, inputs: dict[str, Array]) -> None:
    """Mask, in every backend's output, the elements that depend on how a tied max-pool
    window routes its gradient (``harness.ties``): a choice, not a disagreement."""
    try:
        masks, windows = tie_masks(net, inputs, seed=result.case.seed)
    except Exception as e:  # noqa: BLE001 - the reference forward failing is the manual arm's error to report
        result.notes["ties"] = f"max-pool ties could not be located ({type(e).__name__}: {e}); nothing masked"
        return
    if not windows:
        return
    params = {f"d{k}" for k in net.param_shapes()}
    for out in result.outputs.values():
        for q, m in masks.items():
            if q in out:
                out[q] = np.ma.masked_array(out[q], mask=np.ma.getmaskarray(out[q]) | m)
        if "Jv" in out and params & masks.keys():  # vᵀ∇J mixes every parameter's gradient
            out["Jv"] = np.ma.masked_all(np.shape(out["Jv"]), dtype=np.asarray(out["Jv"]).dtype)
    result.ties = {"windows": windows, "elements": sum(int(m.sum()) for m in masks.values())}


# Set by a signal handler (the CLI's SIGTERM) besides raising: an exception raised from a
# handler can be swallowed when the signal lands inside a framework's callback (XLA compiling,
# say); the run then still stops at the next case or backend.
STOP = threading.Event()


def _check_stop() -> None:
    if STOP.is_set():
        raise KeyboardInterrupt("stop requested")


def run(cases: Sequence[Case], backends: Sequence[Backend],
        progress: Callable[..., None] | None = None, *,
        trust_kinds: Collection[str] = (), allow_uncompared: bool = False,
        keep_arrays: bool = True, overlap: bool = False, spill: Spill | None = None) -> RunResult:
    """Run all cases, one after another: each case's results are ``run_case``'s.

    ``progress(done, total, case_name, failed)`` is called with done = 0 first, then after each
    case (``failed``: cases so far that did not agree); ``harness.progress.Progress`` draws it.
    ``harness.parallel.run_distributed`` is the same on Dask workers. ``keep_arrays=False``
    sheds each case's arrays once compared (``CaseResult.shed_arrays``): the CLI's run without
    --save-arrays.

    ``overlap``: draw the next case's inputs (and each backend's copy of them) and compare the
    last case's outputs on a second thread while this one runs a case's backends. Both are
    numpy work that releases the GIL: with the backends on one compute thread (``pin_threads``,
    as the serial CLI runs them, with overlap), on two cores most of the harness's own work is
    hidden. With several BLAS threads the helper competes with them and the run can take longer
    (benchmarks: 0.7 to 1.2 × the time), hence off by default; a Dask worker (one core) runs
    without it. Each case gets the same draws, the same backends' calls on the same arrays and
    the same comparisons either way, so every record and array has the same bits.

    ``spill`` (a ``records.Spill``): each case's comparisons go to disk once it is done
    (``CaseResult.spill``), so the run's memory grows by its cases, not their comparisons: the
    CLI's runs.
    """
    results: list[CaseResult] = []
    failed = 0
    if progress:
        progress(0, len(cases), "", 0)

    def done(result: CaseResult) -> None:
        nonlocal failed
        if not keep_arrays:
            result.shed_arrays()
        if spill is not None:
            result.spill(spill)
        results.append(result)
        failed += not result.passed
        if progress:
            progress(len(results), len(cases), result.case.name, failed)

    if not overlap or len(cases) < 2:
        for case in cases:
            _check_stop()
            done(run_case(case, backends, trust_kinds))
        return RunResult([b.name for b in backends], results, allow_uncompared)

    def compared(result: CaseResult, inputs: dict[str, Array]) -> CaseResult:
        _compare_case(result, backends, inputs, trust_kinds)
        return result

    def draw(case: Case):
        """The inputs and each backend's copy of them (or the CaseResult of a failed draw)."""
        inputs = _draw(case)
        return inputs, (None if isinstance(inputs, CaseResult) else _copies(inputs, len(backends)))

    # One helper thread, first in first out: draw case i + 1 (queued before case i's backends
    # start), compare case i (queued after they end), draw case i + 2, ...
    pool = ThreadPoolExecutor(1, thread_name_prefix="xval-harness")
    try:
        drawn = pool.submit(draw, cases[0])
        pending = None
        for i, case in enumerate(cases):
            _check_stop()
            inputs, copies = drawn.result()
            if i + 1 < len(cases):
                drawn = pool.submit(draw, cases[i + 1])
            if isinstance(inputs, CaseResult):  # drawing failed: the error is the case's result
                result = pool.submit(lambda r=inputs: r)
            else:
                started = _run_backends(case, backends, inputs, copies)
                del copies
                result = pool.submit(compared, started, inputs)
            if pending is not None:
                done(pending.result())
            pending = result
        done(pending.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return RunResult([b.name for b in backends], results, allow_uncompared)
