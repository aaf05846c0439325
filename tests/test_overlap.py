"""``runner.run`` draws the next case and compares the last on a helper thread while a case's
backends run (``overlap``): every record, note, error and array is the one a run without it
gives, in the same order (each backend still on its own copy of the inputs), and a stop
leaves no helper thread behind."""

import threading
from pathlib import Path

import numpy as np
import pytest

from harness import runner
from harness.cases import Case, load_file
from harness.model import Model

ROOT = Path(__file__).resolve().parent.parent


class FailsToDraw(Case):
    def arrays(self):
        raise MemoryError("no room for the inputs")


class RaisesOnOneCase:
    """A backend that raises on one case and returns the manual arm's gradients, one element
    off, on the others: an error record, then disagreements."""

    name, kind = "flaky", "analytic"

    def __init__(self, manual):
        self.manual = manual

    def gradients(self, model, arrays):
        if arrays["X"].shape[0] == 3:
            raise RuntimeError("flaky on batch 3")
        out = self.manual.gradients(model, arrays)
        out["dW1"] = out["dW1"].copy()
        out["dW1"].flat[0] += 1e-3
        return out


class WritesIntoItsInputs:
    """The manual arm's gradients, then every input array overwritten: the backends after it
    must not see that (each gets its own copy, made ahead on the helper thread)."""

    name, kind = "scribbler", "analytic"

    def __init__(self, manual):
        self.manual = manual

    def gradients(self, model, arrays):
        out = self.manual.gradients(model, arrays)
        for v in arrays.values():
            v[...] = 7
        return out


def _cases():
    mlp = [Case(f"mlp-{i}", Model((4, 5, 3), ("tanh", "softmax"), "cross_entropy", dt), m, i)
           for i, (dt, m) in enumerate([("float64", 6), ("float32", 3), ("float64", 8)])]
    # lenet: conv, relu, max pool (ties masked in every output), flatten, dense
    nets = {c.name: c for c in load_file(ROOT / "cases" / "networks.toml") if c.name in ("lenet", "bn-dropout-mlp")}
    bad = FailsToDraw("no-inputs", mlp[0].model, 4, 0)
    return [mlp[0], nets["lenet"], bad, mlp[1], nets["bn-dropout-mlp"], mlp[2]]


def _fingerprint(result):
    """Everything a run's records and arrays say, in a form == compares (NaN as its repr)."""
    out = []
    for r in result.cases:
        out.append((r.case.name, [repr(c.as_row()) for c in r.comparisons],
                    [(e.backend, e.message) for e in r.errors], dict(r.notes), dict(r.inconclusive),
                    dict(r.ties), r.passed,
                    {b: {q: (np.ma.getdata(v).tobytes(), np.ma.getmaskarray(v).tobytes())
                         for q, v in o.items()} for b, o in r.outputs.items()},
                    {k: v.tobytes() for k, v in r.inputs.items()}))
    return out


def test_an_overlapped_run_gives_the_serial_records_and_arrays(builtin):
    backends = [WritesIntoItsInputs(builtin["manual"]), builtin["manual"], builtin["torch"],
                RaisesOnOneCase(builtin["manual"])]
    seen = {True: [], False: []}
    results = {}
    for overlap in (False, True):
        results[overlap] = runner.run(_cases(), backends, overlap=overlap,
                                      progress=lambda *a, o=overlap: seen[o].append(a))
    serial, overlapped = _fingerprint(results[False]), _fingerprint(results[True])
    assert [r[0] for r in overlapped] == ["mlp-0", "lenet", "no-inputs", "mlp-1", "bn-dropout-mlp", "mlp-2"]
    assert overlapped == serial
    assert seen[True] == seen[False] and len(seen[True]) == 7
    # what the cases were chosen to show is there: an error per kind, ties, disagreements
    by_name = {r.case.name: r for r in results[True].cases}
    assert "drawing the inputs failed: MemoryError" in by_name["no-inputs"].errors[0].message
    assert [e.backend for e in by_name["mlp-1"].errors] == ["flaky"]
    assert by_name["lenet"].ties and not by_name["mlp-0"].passed
    assert {c.quantity for c in by_name["mlp-0"].failures()} == {"dW1"}
    assert all(c.passed for c in by_name["mlp-0"].comparisons if "flaky" not in (c.a, c.b))


def test_a_stop_during_an_overlapped_run_leaves_no_helper_thread(builtin):
    def stop_after_two(done, total, name, failed):
        if done == 2:
            runner.STOP.set()

    try:
        with pytest.raises(KeyboardInterrupt):
            runner.run(_cases(), [builtin["manual"]], progress=stop_after_two, overlap=True)
    finally:
        runner.STOP.clear()
    assert not [t for t in threading.enumerate() if t.name.startswith("xval-harness")]
