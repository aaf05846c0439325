"""The backend contract, and the check every backend's output goes through."""

from __future__ import annotations

from typing import Mapping, Protocol, runtime_checkable

import numpy as np

from ..model import Model
from ..network import Network

Array = np.ndarray


@runtime_checkable
class Backend(Protocol):
    """A backend is built with no arguments and has a ``name`` and ``gradients``.

    ``gradients(model, arrays)`` takes the ``Model`` and the dict of numpy inputs
    (``X``, ``Y``, ``y`` for cross_entropy, ``W1``, ``b1``, ...) and returns numpy
    arrays ``J`` (shape ()), ``dW{l}`` and ``db{l}`` (the shapes of W^[l], b^[l]),
    all derivatives of J, in the case dtype; optionally also the per-layer ``z{l}``,
    ``a{l}``, ``dz{l}`` = ∂J/∂z^[l] and ``da{l}`` = ∂J/∂a^[l] (m×n_l). An optional ``kind`` attribute,
    "analytic" (the default) or "finite_difference", picks the tolerance row.
    A ``numpy.ma.MaskedArray`` marks elements that were not computed.
    """

    name: str

    def gradients(self, model: Model, arrays: dict[str, Array]) -> Mapping[str, Array]: ...


@runtime_checkable
class JacobianBackend(Backend, Protocol):
    """A backend that also gives the full Jacobian J[i, j] = ∂f_i/∂x_j of one step of the
    network at one row x (1×n): what ``harness.claims`` checks the derivation's per-step
    statements against. ``op``: "exp", an activation name (softmax included), "linear" (a ↦
    a W + b, with ``W``, ``b``), or "loss" (a^[L] ↦ 𝓛, with ``loss`` and the target row ``Y``).
    The torch, jax and fd backends have it, each by its own means (autograd, ``jax.jacfwd``,
    central differences)."""

    def jacobian(self, op: str, x: Array, **kw) -> Array: ...


class Gradients(dict):
    """A backend's arrays (a dict, as ``gradients`` returns), with what the backend says about
    them travelling beside, not among them: ``notes`` (one line for the report: which method
    and step ran) and ``inconclusive`` (elements it measured but could not resolve, a nudge
    across a kink say: masked, counted, not compared). A plain dict means no notes."""

    def __init__(self, arrays: Mapping[str, Array] = (), *, notes: str = "", inconclusive: int = 0) -> None:
        super().__init__(arrays)
        self.notes, self.inconclusive = notes, inconclusive

    def __reduce__(self):  # pickled with its notes (an isolated plugin's result crosses processes)
        return (_rebuild, (dict(self), self.notes, self.inconclusive))


def _rebuild(arrays: dict, notes: str, inconclusive: int) -> Gradients:
    return Gradients(arrays, notes=notes, inconclusive=inconclusive)


def notes_of(result: object) -> tuple[str, int]:
    """(notes, inconclusive) a backend's result carries beside its arrays, checked: anything
    but a string and a non-negative int counts as none (a plugin's result is untrusted)."""
    notes = getattr(result, "notes", "")
    count = getattr(result, "inconclusive", 0)
    notes = notes if isinstance(notes, str) else ""
    count = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
    return notes, count


class BackendOutputError(Exception):
    """A backend returned something that breaks the contract."""


class NotApplicable(Exception):
    """A backend's method does not apply to this case (complex step through erf, say).
    Reported as a note for the case, not as an error."""


def kind_of(backend: object) -> str:
    """The backend's tolerance kind (tolerances.KINDS); anything unknown counts as analytic."""
    from ..tolerances import KINDS

    kind = getattr(backend, "kind", "analytic")
    return kind if isinstance(kind, str) and kind in KINDS else "analytic"


def check_output(model: Model | Network, result: object, m: int) -> dict[str, Array]:
    """Validate keys, shapes and dtype of a backend's result; return the quantities to compare.

    ``J``, ``dW{l}``, ``db{l}`` are required; the per-layer ``z{l}``, ``a{l}``, ``dz{l}``,
    ``da{l}`` are checked when present; other keys are ignored. A float64 case must come
    back float64: a float32 result means the backend ran, somewhere, in float32 (JAX
    without x64, a float32 default dtype, ...).
    """
    if not isinstance(result, Mapping):
        raise BackendOutputError(f"gradients() returned {type(result).__name__}, expected a dict")
    required = model.quantities()
    missing = [q for q in required if q not in result]
    if missing:
        raise BackendOutputError(f"missing keys {missing}; returned keys {sorted(map(str, result))}")
    out: dict[str, Array] = {}
    for q in required + [q for q in model.optional() if q in result]:
        val = result[q]
        if not isinstance(val, np.ndarray):
            if q == "J" and isinstance(val, (float, np.floating)):
                val = np.asarray(val)
            else:
                raise BackendOutputError(f"{q} is a {type(val).__module__}.{type(val).__name__}, "
                                         "expected a numpy array")
        if q == "J" and val.shape != () and val.size == 1:
            val = val.reshape(())
        want = model.shape_of(q, m)
        if val.shape != want:
            raise BackendOutputError(f"{q} has shape {val.shape}, expected {want}")
        if val.dtype != model.np_dtype:
            what = "a silent downcast" if val.dtype == np.float32 and model.dtype == "float64" else "wrong dtype"
            raise BackendOutputError(f"{q} has dtype {val.dtype}, the case is {model.dtype} ({what})")
        out[q] = val
    return out
