"""Deliberately wrong backprops: the mistakes learners make, each a plugin backend.

Every mutant is the manual backprop with one mistake switched on: ``Mutant`` for the MLP
form (``Model``), ``NetworkMutant`` for catalog networks (``Network``, through
``harness.network.backprop`` with one layer's backward replaced). They exist to prove the
harness catches wrong gradients (``python -m harness selfcheck``, and the tests). Each is a
plugin like a user's: built with no arguments, with ``name`` and ``gradients``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX
from .backends.manual import forward_pass, output_delta
from .catalog import LAYERS
from .losses import cost
from .model import Model
from .network import Backward, Network, backprop

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


# --------------------------------------------------------------------------- catalog networks


class NetworkMutant:
    """A catalog network's manual backprop with one mistake (none here: correct).

    The mistake is a layer's backward replaced (``backward_of``), the network changed before
    the pass (``network``: a forward that is wrong too), or the gradients edited after
    (``edit``). ``why_not`` says why a network cannot show the mistake (it lacks the layer).
    """

    name = "network-mutant"
    kind = "analytic"
    mistake = ""
    needs = ""  # the layer kind the mistake is in ("" for none)

    def backward_of(self) -> dict[str, Backward]:
        return {}

    def network(self, net: Network) -> Network:
        return net

    def edit(self, net: Network, arrays: dict[str, Array], out: dict[str, Array]) -> dict[str, Array]:
        return out

    def gradients(self, model: Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if not isinstance(model, Network):
            raise TypeError(f"{self.name} is a mistake in a catalog layer; this case is an MLP")
        return self.edit(model, arrays, backprop(self.network(model), arrays, self.backward_of()))

    @classmethod
    def why_not(cls, net: Network, arrays: dict[str, Array]) -> str | None:
        """Why the mistake cannot change anything on this network, or None."""
        if cls.needs and not any(spec.kind == cls.needs for spec in net.network):
            return f"no {cls.needs} layer"
        return None


def _dropouts(net: Network) -> list:
    return [spec for spec in net.network if spec.kind == "dropout"]


class BatchnormStatsConstant(NetworkMutant):
    name = "batchnorm-stats-constant"
    mistake = "batchnorm dx = dx̂/σ: μ and σ taken as constants (no −Σ dx̂, −x̂ Σ dx̂∘x̂)"
    needs = "batchnorm"

    def backward_of(self):
        def backward(spec, dy, cache):
            _, inv_sigma, gamma = cache
            _, grads = LAYERS["batchnorm"].backward(spec, dy, cache)  # dγ, dβ stay right
            return dy * gamma * inv_sigma, grads
        return {"batchnorm": backward}


class DropoutUnscaled(NetworkMutant):
    name = "dropout-unscaled"
    mistake = "dropout dx = dy ∘ mask, without the 1/(1 − p) of the forward"
    needs = "dropout"

    def backward_of(self):
        return {"dropout": lambda spec, dy, mask: (dy * mask, {})}

    @classmethod
    def why_not(cls, net, arrays):
        if any(spec["rate"] > 0 for spec in _dropouts(net)):
            return None
        return super().why_not(net, arrays) or "dropout rate 0: the scale 1/(1 − p) is 1"


class DropoutOtherMask(NetworkMutant):
    name = "dropout-other-mask"
    mistake = "dropout backward with another mask (the forward's, rolled by one row)"
    needs = "dropout"

    def backward_of(self):
        return {"dropout": lambda spec, dy, mask: (dy * np.roll(mask, 1, axis=0) / (1 - spec["rate"]), {})}

    @classmethod
    def why_not(cls, net, arrays):
        for spec in _dropouts(net):
            mask = arrays[spec.key("mask")]
            if not np.array_equal(np.roll(mask, 1, axis=0), mask):
                return None
        return super().why_not(net, arrays) or "every row of the mask is the same: rolled, it is unchanged"


class LayernormOverBatch(NetworkMutant):
    """Layer norm's statistics taken per feature over the batch, in the forward and the
    backward alike: on an N×n input that is batch norm, so the mutant runs batch norm in its
    place, with the same γ, β. Its backward is the right one for its own forward: the
    disagreement starts in the forward (J, a^[i])."""

    name = "layernorm-over-batch"
    mistake = "layernorm's μ, σ over the batch (axis 0) instead of the features, forward and backward"
    needs = "layernorm"

    def network(self, net):
        specs = tuple(dataclasses.replace(s, kind="batchnorm") if s.kind == "layernorm" else s
                      for s in net.network)
        return dataclasses.replace(net, network=specs)


class _L2Factor(NetworkMutant):
    """dW of the L2 term as k·W with the wrong k: backprop's right 2c·W is taken off again."""

    @staticmethod
    def coefficient(lam: float, m: int) -> float:
        """k of the mutant's k·W."""
        raise NotImplementedError

    def edit(self, net, arrays, out):
        m = arrays["X"].shape[0]
        right, wrong = 2 * net.l2_coefficient(m), self.coefficient(net.l2, m)
        for key in net.regularised():
            W = arrays[key]
            out[f"d{key}"] = out[f"d{key}"] - right * W + wrong * W
        return out

    @classmethod
    def why_not(cls, net, arrays):
        if not (net.l2 and net.regularised()):
            return "no L2 term (l2 = 0 or no weight matrix)"
        m = arrays["X"].shape[0]
        if math.isclose(cls.coefficient(net.l2, m), 2 * net.l2_coefficient(m)):
            return f"for l2_form {net.l2_form} with m = {m} this is the right gradient"
        return None


class L2TwiceLambda(_L2Factor):
    name = "l2-2λW"
    mistake = "L2 gradient 2λW whatever the form (d/dW of λ Σ W², right only for form sum)"

    @staticmethod
    def coefficient(lam, m):
        return 2 * lam


class L2HalfLambda(_L2Factor):
    name = "l2-λW/2"
    mistake = "L2 gradient (λ/2) W: the ½ of λ/2 Σ W² kept, the 2 of d(W²)/dW dropped"

    @staticmethod
    def coefficient(lam, m):
        return lam / 2


class L2WithoutMean(_L2Factor):
    name = "l2-without-1/m"
    mistake = "L2 gradient λW whatever the form (for half_mean, the 1/m forgotten)"

    @staticmethod
    def coefficient(lam, m):
        return lam


NETWORK_MUTANTS = [BatchnormStatsConstant, DropoutUnscaled, DropoutOtherMask, LayernormOverBatch,
                   L2TwiceLambda, L2HalfLambda, L2WithoutMean]

# The self-check's mutants, each a mistake learners make: MLP ones, then catalog network ones.
MUTANTS = [ForgetsGPrime, GInsteadOfGPrime, ForgetsMean, DWFromWrongLayer, WNotTransposed,
           SoftmaxElementwise, DbNotSummed, OffByOneLayer, ScaledLayer, PerturbedElement,
           *NETWORK_MUTANTS]
