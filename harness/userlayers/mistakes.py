"""Name the mistake: when the user's result disagrees, run the known wrong backwards of the
same layer on the same inputs, and say which one the user's result equals.

The candidates are the self-check's network mutants whose layer is in the family's chain
(``harness.mutants.NETWORK_MUTANTS``: batch norm with constant statistics, BPTT dropping the
step path, embedding assigning, ...) and a few mistakes of the elementwise layers below.
A match is reported only when every quantity of the user's equals the mutant's to the
analytic tolerance of the dtype and the mutant differs from the right answer: never a guess.
"""

from __future__ import annotations

import numpy as np

from ..activations import ACTIVATIONS
from ..compare import compare
from ..mutants import NETWORK_MUTANTS, NetworkMutant, _standing_in
from ..tolerances import ANALYTIC, lookup
from .arms import manual
from .families import Family


class _Activation(NetworkMutant):
    kinds = ("relu", "sigmoid", "tanh")


class ActivationForgetsGPrime(_Activation):
    name = "activation-forgets-g-prime"
    mistake = "dz = da: the backward of g forgets ∘ g′(z)"

    def backward_of(self):
        return {k: (lambda spec, dy, cache: (dy, {})) for k in self.kinds}


class ActivationGForGPrime(_Activation):
    name = "activation-g-for-g-prime"
    mistake = "dz = da ∘ g(z): g where g′ belongs"

    def backward_of(self):
        def make(k):
            return lambda spec, dy, cache: (dy * ACTIVATIONS[k].g(cache[0]), {})  # cache: (z, a)
        return {k: make(k) for k in self.kinds}


LAYER_MISTAKES = [ActivationForgetsGPrime, ActivationGForGPrime]


def _candidates(kinds: set[str]) -> list[NetworkMutant]:
    out = []
    for cls in NETWORK_MUTANTS + LAYER_MISTAKES:
        m = cls()
        touched = set(m.backward_of()) | set(m.layer_of())
        if touched & kinds:
            out.append(m)
    return out


def name_mistake(family: Family, attempt, dtype: str) -> str:
    setup = attempt.setup
    chain = setup.chain
    kinds = {s.kind for s in chain.specs}
    tol = lookup(dtype, ANALYTIC)
    user = attempt.user
    right = attempt.right  # the manual arm's answer, computed when the shape ran
    for m in _candidates(kinds):
        try:
            with _standing_in(m.layer_of()):
                wrong = setup.to_user(manual(chain, setup.x, setup.G, backward_of=m.backward_of()))
        except Exception:  # noqa: BLE001 - a mutant that does not apply to this chain's layout
            continue
        if not any(np.shape(wrong[q]) == np.shape(right[q]) and not np.allclose(wrong[q], right[q], rtol=1e-6, atol=0)
                   for q in right):
            continue  # shows nothing on these inputs
        same = all(q in user and np.shape(user[q]) == np.shape(wrong[q]) and
                   compare("", q, "yours", np.asarray(user[q], np.float64), m.name,
                           np.asarray(wrong[q], np.float64), ANALYTIC, dtype, tol).passed
                   for q in right)
        if same:
            changed = [q for q in right if not np.allclose(wrong[q], right[q], rtol=1e-6, atol=0)]
            kept = [q for q in right if q not in changed]
            head = f"your {', '.join(kept)} {'is' if len(kept) == 1 else 'are'} right but " if kept else ""
            return (f"{head}{', '.join(changed)} {'matches' if len(changed) == 1 else 'match'} "
                    f"'{m.mistake}' ({m.name})")
    return "no known mistake matches"
