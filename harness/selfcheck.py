"""Sensitivity self-check: every mutant (a learner's mistake) must be caught on every case
where it is detectable. ``python -m harness selfcheck [--out DIR]``; exit 1 below 100%."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .backends import Gradients, notes_of
from .cases import Case
from .model import Model
from .mutants import MUTANTS, NetworkMutant, PerturbedElement, SoftmaxElementwise
from .network import Network
from .runner import effective_kind, run_case


def build_network(input: tuple[int, ...], layers: list[dict[str, Any]], loss: str, dtype: str,
                  l2: float = 0.0, l2_form: str = "half", vocab: int = 0, batch: int = 0) -> Network:
    """A ``Network`` from layers written as in a case file ({"layer": "dense", "units": 5}),
    through the case loader's checks (residual bodies numbered, embedding given ``vocab``,
    rnn's h0 shaped by ``batch``). For the harness's own fixed networks."""
    from .cases import MAX_DEPTH, MAX_DIM
    from .network_cases import network_of

    raw: dict[str, Any] = {"input": list(input), "network": layers, "loss": loss, "dtype": dtype,
                           "l2": l2, "l2_form": l2_form}
    if vocab:
        raw["vocab"] = vocab
    return network_of(raw, MAX_DIM, MAX_DEPTH, batch)


# Square hidden layers, so that the shape-preserving mistakes (Wᵀ vs W, a^[l] vs a^[l-1],
# the layer off by one) give arrays of the right shape and must be caught by their values.
CASES = [
    Case(f"square-ce-{dt}", Model((5, 5, 5, 5), ("tanh", "sigmoid", "softmax"), "cross_entropy", dt), 6, 11)
    for dt in ("float64", "float32")
] + [
    Case(f"sse-softmax-{dt}", Model((4, 4, 4), ("elu", "softmax"), "half_sse", dt), 5, 12)
    for dt in ("float64", "float32")
] + [
    Case(f"bce-{dt}", Model((4, 4, 4, 3), ("tanh", "gelu", "sigmoid"), "binary_cross_entropy", dt), 4, 13)
    for dt in ("float64", "float32")
]

# Catalog networks with every layer a network mutant is about (batchnorm, dropout, layernorm,
# conv2d, maxpool2d, avgpool2d) and an L2 term, in three L2 forms. No relu: fd has no kink to
# step around (a max pool's are its own, where a nudge changes a window's arg-max).
NETWORK_CASES = [
    Case(f"bn-drop-ln-ce-{dt}", build_network((6,), [
        {"layer": "dense", "units": 5, "activation": "tanh"},
        {"layer": "dropout", "rate": 0.25},
        {"layer": "dense", "units": 6},
        {"layer": "batchnorm"},
        {"layer": "sigmoid"},
        {"layer": "dense", "units": 5, "activation": "tanh"},
        {"layer": "layernorm"},
        {"layer": "dense", "units": 4},
    ], "cross_entropy", dt, l2=0.1, l2_form="half"), 8, 21)
    for dt in ("float64", "float32")
] + [
    Case(f"ln-drop-bn-sse-{dt}", build_network((5,), [
        {"layer": "dense", "units": 6},
        {"layer": "layernorm"},
        {"layer": "tanh"},
        {"layer": "dropout", "rate": 0.5},
        {"layer": "dense", "units": 6, "activation": "elu"},
        {"layer": "batchnorm"},
        {"layer": "dense", "units": 3},
    ], "half_sse", dt, l2=0.2, l2_form="half_mean"), 6, 22)
    for dt in ("float64", "float32")
] + [
    # A small convolutional network with every conv mutant's layer where its mistake shows:
    # the pools and the second conv above layer 1 (their dx is compared), the first conv's
    # bias not cancelled by a batch norm (the second's is), strides > 1 along two windows
    # (the max pool's default, the second conv's), a spatial batch norm over 2×2 positions,
    # an L2 term in the form the cases above leave out. Tiny: fd runs on it once per dtype.
    Case(f"conv-pool-bn-{dt}", build_network((1, 5, 5), [
        {"layer": "conv2d", "filters": 2, "kernel": 2, "activation": "tanh"},
        {"layer": "maxpool2d", "size": 2},
        {"layer": "conv2d", "filters": 3, "kernel": 2, "stride": 2, "padding": 1},
        {"layer": "batchnorm"},
        {"layer": "sigmoid"},
        {"layer": "avgpool2d", "size": 2, "stride": 1},
        {"layer": "flatten"},
        {"layer": "dense", "units": 3},
    ], "cross_entropy", dt, l2=0.05, l2_form="sum"), 2, 23)
    for dt in ("float64", "float32")
]
# A sequence network with every sequence mutant's layer where its mistake shows: token ids
# that repeat (3×5 positions, vocab 4), a residual above layer 1 (its skip reaches a
# gradient that is compared), a causal attention, an rnn and an lstm over 5 steps. No relu.
NETWORK_CASES += [
    Case(f"tokens-res-attn-rnn-lstm-{dt}", build_network((5,), [
        {"layer": "embedding", "dim": 4},
        {"layer": "residual", "body": [{"layer": "layernorm"}, {"layer": "attention", "heads": 2, "causal": True}]},
        {"layer": "rnn", "hidden": 4},
        {"layer": "lstm", "hidden": 3},
        {"layer": "mean_over_time"},
        {"layer": "dense", "units": 3},
    ], "cross_entropy", dt, vocab=4, batch=3), 3, 24)
    for dt in ("float64", "float32")
]
CASES += NETWORK_CASES


def excluded(mutant: type, case: Case) -> str | None:
    """Why a mutant cannot show on a case, or None when it must be caught there."""
    network_case = isinstance(case.model, Network)
    if issubclass(mutant, NetworkMutant):
        if not network_case:
            return "a catalog layer's mistake; an MLP case has no catalog layers"
        return mutant.why_not(case.model, case.arrays())
    if network_case:
        return "an MLP mistake (Model's W, b, g walked by hand); not a catalog network's"
    if mutant is SoftmaxElementwise and not (case.model.loss == "half_sse" and case.model.activations[-1] == "softmax"):
        return "the softmax Jacobian is used only by half_sse through softmax (CE and BCE use ŷ − ȳ)"
    if mutant is PerturbedElement and case.model.dtype == "float32":
        return "a relative 1e-5 is below the float32 tolerance (rtol 1e-4)"
    return None


@dataclass(frozen=True)
class Outcome:
    mutant: str
    mistake: str
    case: str
    detected: bool | None  # None: excluded
    by: str  # "quantity pair" of the first disagreement, the contract error, or the exclusion reason


class _Replay:
    """A reference backend's result on one case, computed once and handed back to every
    mutant's run of that case: the references do not depend on the mutant, and running fd
    again for each of them was most of the self-check's time. Each replay is a fresh dict
    (the runner edits its outputs in place: tie masks, vᵀ∇J); an error is raised again."""

    def __init__(self, backend, case: Case) -> None:
        self.name = backend.name
        # The tolerance row the runner would give the backend itself; a finite-difference
        # row is honoured for the replay through run_case's trust_kinds (see ``trusted``).
        self.kind, _ = effective_kind(backend)
        try:
            self._result, self._error = backend.gradients(case.model, case.arrays()), None
        except Exception as e:  # noqa: BLE001 - raised again in every run, which records it
            self._result, self._error = None, e

    def gradients(self, model, arrays):
        if self._error is not None:
            raise self._error
        if not isinstance(self._result, dict):
            return self._result  # not a dict: the runner's contract check says so
        notes, inconclusive = notes_of(self._result)
        return Gradients(self._result, notes=notes, inconclusive=inconclusive)


def trusted(replays: list[_Replay]) -> set[str]:
    """The replays whose backend's own finite-difference row the runner honours."""
    return {r.name for r in replays if r.kind != "analytic"}


def run_selfcheck(backends: list, progress=None) -> list[Outcome]:
    """Every mutant on every case where it must show. ``progress(done, total, name, failed)``
    (``progress.Progress``) counts the runs, excluded pairs left out (they take no time), and
    as failures the mutants not caught so far."""
    out = []
    references: dict[str, list[_Replay]] = {}
    pairs = [(mutant, case, excluded(mutant, case)) for mutant in MUTANTS for case in CASES]
    total, done, missed = sum(reason is None for *_, reason in pairs), 0, 0
    if progress is not None:
        progress(0, total, "")
    for mutant, case, reason in pairs:
        if reason:
            out.append(Outcome(mutant.name, mutant.mistake, case.name, None, reason))
            continue
        if case.name not in references:
            references[case.name] = [_Replay(b, case) for b in backends]
        replays = references[case.name]
        r = run_case(case, [*replays, mutant()], trust_kinds=trusted(replays))
        errors = [e for e in r.errors if e.backend == mutant.name]
        firsts = [c for pair, c in r.first_disagreements().items() if mutant.name in pair]
        if errors:
            out.append(Outcome(mutant.name, mutant.mistake, case.name, True, f"contract: {errors[0].message}"))
        elif firsts:
            c = firsts[0]
            out.append(Outcome(mutant.name, mutant.mistake, case.name, True,
                               f"{c.quantity} {c.a} vs {c.b} (+{len(firsts) - 1} more pairs)"))
        else:
            out.append(Outcome(mutant.name, mutant.mistake, case.name, False, "not detected"))
            missed += 1
        done += 1
        if progress is not None:
            progress(done, total, f"{mutant.name} on {case.name}", missed)
    return out


def table(outcomes: list[Outcome]) -> tuple[str, float]:
    """Markdown table per mutant, and the kill rate over the eligible (mutant, case) runs."""
    lines = ["| mutant | mistake | cases run | detected | detected by (first) | excluded |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(o.mutant for o in outcomes):
        rows = [o for o in outcomes if o.mutant == name]
        run = [o for o in rows if o.detected is not None]
        hit = [o for o in run if o.detected]
        # one entry per reason: the form exclusions name every case of the other form
        reasons: dict[str, list[str]] = {}
        for o in rows:
            if o.detected is None:
                reasons.setdefault(o.by, []).append(o.case)
        excl = [f"{', '.join(cases)}: {reason}" for reason, cases in reasons.items()]
        lines.append(f"| `{name}` | {rows[0].mistake} | {len(run)} | {len(hit)}/{len(run)} | "
                     f"{hit[0].by if hit else '—'} | {'; '.join(excl) or '—'} |")
    eligible = [o for o in outcomes if o.detected is not None]
    rate = sum(o.detected for o in eligible) / max(len(eligible), 1)
    return "\n".join(lines), rate


# ----------------------------------------------------------------- buggy layer files

BUGGY_LAYER_FILES = ("examples/cs231n_layers_buggy.py", "examples/dls_layers_buggy.py")


def planted(path) -> dict[str, str]:
    """The file's PLANTED dict (function -> mistake), read without running the file."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(path).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PLANTED" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def layer_files(root, against: tuple[str, ...] | None = None, check=None, progress=None) -> tuple[str, bool]:
    """Run ``python -m harness layers`` on each shipped buggy layers file: every layer with a
    planted mistake must disagree and be shrunk, every other layer must agree. Returns a
    markdown table and whether all of that held. ``check`` stands in for ``check_file``;
    ``progress`` follows the layers of each file in turn, with no failures counted: a planted
    layer is meant to disagree, and whether each was caught is the table's to say."""
    from pathlib import Path

    from .userlayers import check_file
    from .userlayers.arms import ARMS
    from .userlayers.families import show

    lines = ["| file | layer | planted | verdict | as expected | smallest failing input | mistake named |",
             "|---|---|---|---|---|---|---|"]
    ok = True
    for rel in BUGGY_LAYER_FILES:
        path = Path(root) / rel
        if not path.is_file():  # an install without the source checkout's examples/: not a pass
            lines.append(f"| {Path(rel).name} | — | — | not found at {path} | NO | — | — |")
            ok = False
            continue
        plants = planted(path)
        kw = {} if progress is None else {  # not passed when None: a stand-in ``check`` may not take it
            "progress": lambda done, total, name, failed=0, file=path.name: progress(done, total, f"{file}: {name}")}
        for r in (check or check_file)(path, against=against or ARMS, **kw):
            if r.verdict == "not in the catalog yet":
                continue
            mine = [f for f in r.family.functions if f in plants]
            # a planted layer must disagree (not crash) and come with its smallest failing input
            caught = (r.verdict == "disagrees" and r.smallest is not None) if mine else r.verdict == "agrees"
            ok &= caught
            named = r.mistake if r.mistake and r.mistake != "no known mistake matches" else "—"
            lines.append(f"| {Path(rel).name} | {r.family.name} | {'; '.join(plants[f] for f in mine) or '—'} | "
                         f"{r.verdict} | {'yes' if caught else 'NO'} | "
                         f"{show(r.smallest) if r.smallest else '—'} | {named} |")
    return "\n".join(lines), ok
