"""Deliberately wrong backprops: the mistakes learners make, each a plugin backend.

Every mutant is the manual backprop with one mistake switched on. They exist to prove the
harness catches wrong gradients (``python -m harness selfcheck``, and the tests). Each is a
plugin like a user's: built with no arguments, with ``name`` and ``gradients``.
"""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX
from .backends.manual import forward_pass, output_delta
from .losses import cost
from .model import Model

Array = np.ndarray


class Mutant:
    """Manual backprop with switches for the classic mistakes (all off: correct)."""

    name = "mutant"
    kind = "analytic"
    mistake = ""
    skip_g_prime_in: frozenset = frozenset()  # layers l whose dz^[l] misses ∘ g'(z^[l])
    g_instead_of_g_prime = False
    skip_mean = False
    dW_from_a_l = False  # a^[l]ᵀ dz^[l] instead of a^[l-1]ᵀ dz^[l]
    W_not_transposed = False  # da^[l-1] = dz^[l] W^[l] instead of dz^[l] W^[l]ᵀ
    softmax_elementwise = False  # through softmax with ŷ(1 − ŷ) instead of its Jacobian
    db_not_summed = False  # db^[l] = dz^[l], one row per example
    off_by_one_layer = False  # g'(z^[l+1]) of layer l+1 in the recurrence for layer l
    scale_layer: tuple[int, float] | None = None  # (l, factor) on dW^[l], db^[l]
    perturb: tuple[str, float] | None = None  # (quantity, relative change of element 0)
    transpose_dW = False

    def gradients(self, model: Model, arrays: dict[str, Array]) -> dict[str, Array]:
        z, a = forward_pass(model, arrays)
        L, Y, m = model.L, arrays["Y"], arrays["X"].shape[0]
        acts = model.activations
        grads: dict[str, Array] = {"J": np.asarray(cost(model.loss, z[L], a[L], Y))}
        for l in range(1, L + 1):
            grads[f"z{l}"], grads[f"a{l}"] = z[l], a[l]
        if self.softmax_elementwise and acts[-1] == SOFTMAX and model.loss == "half_sse":
            dz = (a[L] - Y) * a[L] * (1 - a[L])
        else:
            dz = output_delta(model, z[L], a[L], Y)
        dz = dz / (1 if self.skip_mean else m)
        for l in range(L, 0, -1):
            grads[f"dz{l}"] = dz
            a_used = a[l] if self.dW_from_a_l else a[l - 1]
            dW = a_used.T @ dz
            grads[f"dW{l}"] = dW.T if self.transpose_dW else dW
            grads[f"db{l}"] = dz.copy() if self.db_not_summed else dz.sum(axis=0, keepdims=True)
            if self.scale_layer and self.scale_layer[0] == l:
                grads[f"dW{l}"] = grads[f"dW{l}"] * self.scale_layer[1]
                grads[f"db{l}"] = grads[f"db{l}"] * self.scale_layer[1]
            if l > 1:
                W = arrays[f"W{l}"]
                da = dz @ (W if self.W_not_transposed else W.T)
                grads[f"da{l - 1}"] = da
                k = l if self.off_by_one_layer else l - 1  # which layer's z and g' are used
                act = ACTIVATIONS[acts[k - 1]] if acts[k - 1] in ACTIVATIONS else None
                if l - 1 in self.skip_g_prime_in or act is None:
                    dz = da
                elif self.g_instead_of_g_prime:
                    dz = da * act.g(z[k])
                else:
                    dz = da * act.g_prime(z[k])
        if self.perturb:
            q, rel = self.perturb
            grads[q] = grads[q].copy()
            grads[q].flat[0] *= 1 + rel
        return grads


def _mutant(cls_name: str, name: str, mistake: str, **switches) -> type:
    return type(cls_name, (Mutant,), {"name": name, "mistake": mistake, **switches})


ForgetsGPrime = _mutant("ForgetsGPrime", "forgets-g-prime", "dz^[l] = da^[l], without ∘ g'(z^[l])",
                        skip_g_prime_in=frozenset(range(1, 100)))
ForgetsGPrimeInLayer1 = _mutant("ForgetsGPrimeInLayer1", "forgets-g-prime-in-layer-1",
                                "no ∘ g'(z^[1]) in layer 1 only", skip_g_prime_in=frozenset({1}))
ForgetsGPrimeInLayer2 = _mutant("ForgetsGPrimeInLayer2", "forgets-g-prime-in-layer-2",
                                "no ∘ g'(z^[2]) in layer 2 only", skip_g_prime_in=frozenset({2}))
GInsteadOfGPrime = _mutant("GInsteadOfGPrime", "g-instead-of-g-prime", "∘ g(z^[l]) in place of ∘ g'(z^[l])",
                           g_instead_of_g_prime=True)
ForgetsMean = _mutant("ForgetsMean", "forgets-1-over-m", "gradient of Σᵢ 𝓛⁽ⁱ⁾, not of the mean J",
                      skip_mean=True)
DWFromWrongLayer = _mutant("DWFromWrongLayer", "dW-from-a-l", "dW^[l] = a^[l]ᵀ dz^[l] instead of a^[l-1]ᵀ dz^[l]",
                           dW_from_a_l=True)
WNotTransposed = _mutant("WNotTransposed", "W-not-transposed", "da^[l-1] = dz^[l] W^[l] instead of dz^[l] W^[l]ᵀ",
                         W_not_transposed=True)
SoftmaxElementwise = _mutant("SoftmaxElementwise", "softmax-elementwise",
                             "through softmax with ŷ(1 − ŷ) elementwise, not diag(ŷ) − ŷᵀŷ",
                             softmax_elementwise=True)
DbNotSummed = _mutant("DbNotSummed", "db-not-summed", "db^[l] = dz^[l], not summed over the batch",
                      db_not_summed=True)
OffByOneLayer = _mutant("OffByOneLayer", "off-by-one-layer", "g'(z^[l+1]) of layer l+1 used for layer l",
                        off_by_one_layer=True)
ScaledLayer = _mutant("ScaledLayer", "layer-1-times-2", "dW^[1], db^[1] scaled by 2", scale_layer=(1, 2.0))
PerturbedElement = _mutant("PerturbedElement", "one-element-1e-5", "dW^[1][0,0] off by a relative 1e-5",
                           perturb=("dW1", 1e-5))
TransposesDW = _mutant("TransposesDW", "transposes-dW", "returns dW^[l]ᵀ", transpose_dW=True)

# The self-check's mutants, each a mistake learners make.
MUTANTS = [ForgetsGPrime, GInsteadOfGPrime, ForgetsMean, DWFromWrongLayer, WNotTransposed,
           SoftmaxElementwise, DbNotSummed, OffByOneLayer, ScaledLayer, PerturbedElement]
