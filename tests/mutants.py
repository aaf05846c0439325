"""Deliberately wrong backprops: mistakes learners make. Each must be flagged.

They are plugin backends (built with no arguments, ``name``, ``gradients``), so the
tests can load them through ``--backend tests/mutants.py:ClassName`` as a user would.
"""

import numpy as np

from harness.activations import ACTIVATIONS
from harness.backends.manual import ManualBackend, forward_pass, output_delta
from harness.losses import cost


class _Mutant(ManualBackend):
    skip_g_prime_in: frozenset = frozenset()  # layers l whose dz^[l] misses ∘ g'(z^[l])
    skip_mean = transpose_dW = False

    def gradients(self, model, arrays):
        z, a = forward_pass(model, arrays)
        L, Y, m = model.L, arrays["Y"], arrays["X"].shape[0]
        grads = {"J": np.asarray(cost(model.loss, z[L], a[L], Y))}
        for l in range(1, L + 1):
            grads[f"z{l}"], grads[f"a{l}"] = z[l], a[l]
        dz = output_delta(model, z[L], a[L], Y) / (1 if self.skip_mean else m)
        for l in range(L, 0, -1):
            grads[f"dz{l}"] = dz
            dW = a[l - 1].T @ dz
            grads[f"dW{l}"] = dW.T if self.transpose_dW else dW
            grads[f"db{l}"] = dz.sum(axis=0, keepdims=True)
            if l > 1:
                dz = grads[f"da{l - 1}"] = dz @ arrays[f"W{l}"].T
                if l - 1 not in self.skip_g_prime_in:
                    dz = dz * ACTIVATIONS[model.activations[l - 2]].g_prime(z[l - 1])
        return grads


class ForgetsGPrime(_Mutant):
    """dz^[l] = dz^[l+1] W^[l+1]ᵀ, without ∘ g'(z^[l]), in every hidden layer."""
    name, skip_g_prime_in = "forgets-g-prime", frozenset(range(1, 100))


class ForgetsGPrimeInLayer2(_Mutant):
    """The same mistake in layer 2 only."""
    name, skip_g_prime_in = "forgets-g-prime-in-layer-2", frozenset({2})


class ForgetsMean(_Mutant):
    """Gradient of the sum Σᵢ 𝓛⁽ⁱ⁾, not of the mean J."""
    name, skip_mean = "forgets-1-over-m", True


class TransposesDW(_Mutant):
    """dW^[l] = dzᵀ a^[l-1] (shapes only agree when W^[l] is square)."""
    name, transpose_dW = "transposes-dW", True


class ForgetsGPrimeInLayer1(_Mutant):
    name, skip_g_prime_in = "forgets-g-prime-in-layer-1", frozenset({1})
