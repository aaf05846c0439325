"""Deliberately wrong backprops: the mistakes learners make, each a plugin backend.

Every mutant is the manual backprop with one mistake switched on: ``Mutant`` for the MLP
form (``Model``), ``NetworkMutant`` for catalog networks (``Network``, through
``harness.network.backprop`` with one layer's backward replaced). They exist to prove the
harness catches wrong gradients (``python -m harness selfcheck``, and the tests). Each is a
plugin like a user's: built with no arguments, with ``name`` and ``gradients``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .activations import ACTIVATIONS, SOFTMAX
from .backends.manual import forward_pass, output_delta
from .catalog import LAYERS, Layer
from .catalog.norm import BatchNorm
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
    the pass (``network``: a forward that is wrong too), a layer type run in place of the
    catalog's, forward and backward (``layer_of``: a forward with the wrong axes, say), or the
    gradients edited after (``edit``). ``why_not`` says why a network cannot show the mistake
    (it lacks the layer).
    """

    name = "network-mutant"
    kind = "analytic"
    mistake = ""
    needs = ""  # the layer kind the mistake is in ("" for none)

    def backward_of(self) -> dict[str, Backward]:
        return {}

    def layer_of(self) -> dict[str, Layer]:
        """{kind: Layer} that stands in for the catalog's type of that name during the pass."""
        return {}

    def network(self, net: Network) -> Network:
        return net

    def edit(self, net: Network, arrays: dict[str, Array], out: dict[str, Array]) -> dict[str, Array]:
        return out

    def gradients(self, model: Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if not isinstance(model, Network):
            raise TypeError(f"{self.name} is a mistake in a catalog layer; this case is an MLP")
        with _standing_in(self.layer_of()):
            out = backprop(self.network(model), arrays, self.backward_of())
        return self.edit(model, arrays, out)

    @classmethod
    def why_not(cls, net: Network, arrays: dict[str, Array]) -> str | None:
        """Why the mistake cannot change anything on this network, or None."""
        if cls.needs and not any(spec.kind == cls.needs for spec in net.network):
            return f"no {cls.needs} layer"
        return None


@contextlib.contextmanager
def _standing_in(layers: dict[str, Layer]):
    """The catalog's LAYERS with ``layers`` in place of their namesakes, for the duration of
    one manual pass (the runner calls the backends of a case one after another, in one
    thread: no other arm runs while the mutant's layer stands in)."""
    saved = {kind: LAYERS[kind] for kind in layers}
    LAYERS.update(layers)
    try:
        yield
    finally:
        LAYERS.update(saved)


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


# ------------------------------------------------------------ convolution and pooling
# A layer's input gradient da^[i-1] is compared only above layer 1 (∂J/∂X is no quantity): a
# mistake in a dx alone needs the layer at index 2 or more.


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _of(net: Network, *kinds: str, above_first: bool = False) -> list:
    return [s for s in net.network if s.kind in kinds and (s.index > 1 or not above_first)]


def _window(spec) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kh, kw), (sh, sw) of a conv2d, maxpool2d or avgpool2d spec."""
    if spec.kind == "conv2d":
        return _pair(spec["kernel"]), _pair(spec["stride"])
    return LAYERS[spec.kind].geometry(spec)


def _strided(spec) -> bool:
    """A stride > 1 in a direction with more than one window (with one, i·s = i = 0)."""
    (sh, sw), (_, Ho, Wo) = _window(spec)[1], spec.out_shape
    return (sh > 1 and Ho > 1) or (sw > 1 and Wo > 1)


def _spread(dy: Array, shape: tuple[int, ...], k: tuple[int, int], s: tuple[int, int],
            weight: Callable[[int, int], Array] | None = None) -> Array:
    """dx of x's ``shape``: each window (i, j) at rows i·s_h …, columns j·s_w … gets
    ``weight(u, v)`` (dy when None) at its offset (u, v); overlapping windows add."""
    (kh, kw), (sh, sw) = k, s
    Ho, Wo = dy.shape[2:]
    dx = np.zeros(shape, dtype=dy.dtype)
    for u in range(kh):
        for v in range(kw):
            dx[:, :, u:u + sh * Ho:sh, v:v + sw * Wo:sw] += dy if weight is None else weight(u, v)
    return dx


# The conv mutants compute what they change themselves (numpy, as the catalog's docstring
# writes it), not with conv.py's helpers; of the layer's forward cache they take only its
# first two entries, x_pad and W.


def _conv_cache(cache) -> tuple[Array, Array]:
    """x_pad and W: the first two entries of conv2d's forward cache."""
    return cache[0], cache[1]


def _windows(x: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """The N×C×Ho×Wo×kh×kw view of x's windows at stride s."""
    return sliding_window_view(x, k, axis=(2, 3))[:, :, ::s[0], ::s[1]]


def _conv_dW(dz: Array, x_pad: Array, k: tuple[int, int], s: tuple[int, int]) -> Array:
    """Σ_{n,i,j} dz[n, f, i, j] · (window (i, j) of x_pad at stride s): F×C×kh×kw."""
    Ho, Wo = dz.shape[2:]
    return np.tensordot(dz, _windows(x_pad, k, s)[:, :, :Ho, :Wo], axes=([0, 2, 3], [0, 2, 3]))


def _conv_dx(dz: Array, x_pad_shape: tuple[int, ...], W: Array, spec, s: tuple[int, int],
             flip: bool = True) -> Array:
    """conv2d's dx as the full correlation of dz, dilated by ``s`` and padded by k − 1, with
    W rotated by 180° (not, if ``flip`` is off) and its F, C axes swapped; padding cropped."""
    (ph, pw), (kh, kw), (Hp, Wp) = _pair(spec["padding"]), W.shape[2:], x_pad_shape[2:]
    N, F, Ho, Wo = dz.shape
    full = np.zeros((N, F, Hp + kh - 1, Wp + kw - 1), dtype=dz.dtype)
    full[:, :, kh - 1:kh - 1 + s[0] * Ho:s[0], kw - 1:kw - 1 + s[1] * Wo:s[1]] = dz
    kernel = (W[:, :, ::-1, ::-1] if flip else W).transpose(1, 0, 2, 3)  # C×F×kh×kw
    dx_pad = np.tensordot(_windows(full, (kh, kw), (1, 1)), kernel, axes=([1, 4, 5], [1, 2, 3]))
    return dx_pad.transpose(0, 3, 1, 2)[:, :, ph:Hp - ph, pw:Wp - pw]


class ConvUnflippedKernel(NetworkMutant):
    name = "conv-dx-unflipped-kernel"
    mistake = ("conv dx = full correlation of dz with W itself (F↔C swapped), not with W rotated "
               "by 180°: the transposed convolution's flip forgotten")
    needs = "conv2d"

    def backward_of(self):
        def backward(spec, dz, cache):
            x_pad, W = _conv_cache(cache)
            _, grads = LAYERS["conv2d"].backward(spec, dz, cache)  # dW, db stay right
            return _conv_dx(dz, x_pad.shape, W, spec, _pair(spec["stride"]), flip=False), grads
        return {"conv2d": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if any(_window(s)[0] != (1, 1) for s in _of(net, "conv2d", above_first=True)):
            return None
        return super().why_not(net, arrays) or ("no conv2d above layer 1 with a kernel larger than 1×1 "
                                                "(a 1×1 kernel is its own flip; layer 1's dx is no quantity)")


class ConvDWLastExample(NetworkMutant):
    """The learner loops over the examples and writes ``dW = …`` where ``dW += …`` belongs:
    the last example's contribution is all that is left (the mean over the batch, the other
    way to lose the sum, is dW/m: a scale, caught like ``layer-1-times-2``)."""

    name = "conv-dW-last-example"
    mistake = ("conv dW from the last example only: dW = (example n's dW) in the loop over the "
               "batch, where dW += belongs")
    needs = "conv2d"

    def backward_of(self):
        def backward(spec, dz, cache):
            x_pad, W = _conv_cache(cache)
            dx, grads = LAYERS["conv2d"].backward(spec, dz, cache)
            return dx, {**grads, "W": _conv_dW(dz[-1:], x_pad[-1:], W.shape[2:], _pair(spec["stride"]))}
        return {"conv2d": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if arrays["X"].shape[0] < 2 and _of(net, "conv2d"):
            return "a batch of 1: the last example's dW is the sum"
        return super().why_not(net, arrays)


class ConvDbPositionMean(NetworkMutant):
    """db as the dense layer's Σ_rows dz, over the batch only: an F×Ho×Wo array, made to fit
    b (F) by the mean over the positions ("the bias is shared, so average it"). Each position
    adds its own share to ∂J/∂b, so the right db is the sum: the mutant's is 1/(Ho·Wo) of it."""

    name = "conv-db-batch-sum-position-mean"
    mistake = ("conv db = Σ_n dz (the dense layer's Σ_rows), then the mean over the Ho×Wo "
               "positions to fit b's shape: 1/(Ho·Wo) of Σ_{n,i,j} dz")
    needs = "conv2d"

    def backward_of(self):
        def backward(spec, dz, cache):
            dx, grads = LAYERS["conv2d"].backward(spec, dz, cache)
            if "b" in grads:
                grads["b"] = dz.sum(axis=0).mean(axis=(1, 2))
            return dx, grads
        return {"conv2d": backward}

    @classmethod
    def why_not(cls, net, arrays):
        for spec in _of(net, "conv2d"):
            cancelled = net.structurally_zero(f"db{spec.index}")  # by a batch norm above
            if spec["bias"] and spec.out_shape[1] * spec.out_shape[2] > 1 and not cancelled:
                return None
        return super().why_not(net, arrays) or ("no conv2d with a bias, more than one output position, "
                                                "and no batch norm above that cancels the bias (∂J/∂b = 0)")


class MaxPoolSpread(NetworkMutant):
    name = "maxpool-gradient-spread"
    mistake = ("max-pool dx = dy copied to every element of its window (upsampled, the arg-max "
               "mask forgotten), not to the arg-max alone")
    needs = "maxpool2d"

    def backward_of(self):
        def backward(spec, dy, cache):
            x, _ = cache  # the input; its maxima ignored
            return _spread(dy, x.shape, *_window(spec)), {}
        return {"maxpool2d": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if any(_window(s)[0] != (1, 1) for s in _of(net, "maxpool2d", above_first=True)):
            return None
        return super().why_not(net, arrays) or "no maxpool2d above layer 1 with a window of more than one element"


class AvgPoolUnscaled(NetworkMutant):
    name = "avgpool-without-1/k²"
    mistake = "average-pool dx = dy copied to every element of its window, without the 1/(kh·kw)"
    needs = "avgpool2d"

    def backward_of(self):
        return {"avgpool2d": lambda spec, dy, shape: (_spread(dy, shape, *_window(spec)), {})}

    @classmethod
    def why_not(cls, net, arrays):
        if any(_window(s)[0] != (1, 1) for s in _of(net, "avgpool2d", above_first=True)):
            return None
        return super().why_not(net, arrays) or "no avgpool2d above layer 1 with a window of more than one element"


class _BatchNormPerPosition(BatchNorm):
    """Batch norm with its statistics over the batch axis alone: on N×C×H×W, per (c, h, w)
    (x.mean(axis=0), the dense layer's batch norm, where axis=(0, 2, 3) belongs). γ and β stay
    per channel; the backward is the right one for this forward."""

    def axes(self, ndim):
        return (0,)


class BatchnormPerPosition(NetworkMutant):
    """Spatial batch norm normalised per position, not per channel: μ, σ of each (c, h, w)
    over the m examples only, in the forward and the backward alike. The disagreement starts
    in the forward (the layer's a^[i], J)."""

    name = "spatial-batchnorm-per-position"
    mistake = ("spatial batchnorm's μ, σ per (c, h, w) over the batch only (axis 0), not per "
               "channel over the batch and positions (axes 0, 2, 3), forward and backward")
    needs = "batchnorm"

    def layer_of(self):
        return {"batchnorm": _BatchNormPerPosition()}

    @classmethod
    def why_not(cls, net, arrays):
        for spec in _of(net, "batchnorm"):
            if len(spec.in_shape) > 1 and math.prod(spec.in_shape) > spec.in_shape[0]:
                return None
        return super().why_not(net, arrays) or ("no batchnorm with positions: on a vector input the "
                                                "statistics are per feature over the batch anyway")


class ConvBackwardIgnoresStride(NetworkMutant):
    """The backward's windows at the stride-1 places: the loop's ``x_pad[n, :, i:i+kh, j:j+kw]``
    with the forward's ``i*s`` forgotten, in dW and in dx alike (dz is scattered back to the
    first Ho×Wo stride-1 windows)."""

    name = "conv-backward-stride-1"
    mistake = ("conv backward as if stride 1: output (i, j) sent back to window x_pad[i:i+kh, j:j+kw], "
               "not x_pad[i·s:i·s+kh, j·s:j·s+kw], in dW and dx")
    needs = "conv2d"

    def backward_of(self):
        def backward(spec, dz, cache):
            x_pad, W = _conv_cache(cache)
            grads = {"W": _conv_dW(dz, x_pad, W.shape[2:], (1, 1))}
            if spec["bias"]:
                grads["b"] = dz.sum(axis=(0, 2, 3))  # no window: right
            return _conv_dx(dz, x_pad.shape, W, spec, (1, 1)), grads
        return {"conv2d": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if any(_strided(s) for s in _of(net, "conv2d")):
            return None
        return super().why_not(net, arrays) or "no conv2d with a stride > 1 along more than one window"


class PoolBackwardIgnoresStride(NetworkMutant):
    name = "pool-backward-stride-1"
    mistake = ("max- and average-pool backward as if stride 1: window (i, j)'s gradient lands at "
               "rows i…, columns j… of dx, not i·s…, j·s…")

    def backward_of(self):
        def maxpool(spec, dy, cache):
            x, _ = cache
            (kh, kw), _ = _window(spec)
            arg = LAYERS["maxpool2d"].pick(spec, x)[1]
            return _spread(dy, x.shape, (kh, kw), (1, 1), lambda u, v: np.where(arg == u * kw + v, dy, 0)), {}

        def avgpool(spec, dy, shape):
            k, _ = _window(spec)
            return _spread(dy / (k[0] * k[1]), shape, k, (1, 1)), {}
        return {"maxpool2d": maxpool, "avgpool2d": avgpool}

    @classmethod
    def why_not(cls, net, arrays):
        if any(_strided(s) for s in _of(net, "maxpool2d", "avgpool2d", above_first=True)):
            return None
        return "no maxpool2d or avgpool2d above layer 1 with a stride > 1 along more than one window"


# ----------------------------------------------------------------- sequences


class EmbeddingAssigns(NetworkMutant):
    """dW[x] = da: numpy's fancy assignment writes each row once, so of an id that occurs
    several times only one occurrence's gradient survives (np.add.at adds them all)."""

    name = "embedding-assigns"
    mistake = "embedding dW[x] = da (an assignment: repeated ids keep one row, not the sum)"
    needs = "embedding"

    def backward_of(self):
        def backward(spec, dy, cache):
            x, shape = cache
            dW = np.zeros(shape, dtype=dy.dtype)
            dW[x] = dy
            return None, {"W": dW}
        return {"embedding": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if (why := super().why_not(net, arrays)) is not None:
            return why
        x = arrays["X"]
        return None if np.unique(x).size < x.size else "no id occurs twice: assigning is adding"


class ResidualForgetsSkip(NetworkMutant):
    name = "residual-forgets-skip"
    mistake = "residual backward dx = the body's input gradient alone (the skip path's da dropped)"
    needs = "residual"

    def backward_of(self):
        return {"residual": lambda spec, dy, d_body: (d_body, {})}

    @classmethod
    def why_not(cls, net, arrays):
        if (why := super().why_not(net, arrays)) is not None:
            return why
        if all(net.input_key(s) == "X" for s in _of(net, "residual")):
            return "every residual is on X: its input gradient is not a quantity"
        return None


class RnnBpttDropsStepPath(NetworkMutant):
    """BPTT without the path through time: dh_t = dy_t, as if h_t fed only the layer above.
    Then every step's da_t = dy_t ∘ (1 − h_t²) stands alone (no loop needed)."""

    name = "rnn-bptt-drops-step-path"
    mistake = "rnn BPTT with dh_{t−1} = dy_{t−1} only: the path from step t (da_t Whᵀ) dropped"
    needs = "rnn"

    def backward_of(self):
        def backward(spec, dy, cache):
            da = dy * (1 - cache.hs[:, 1:] ** 2)
            return LAYERS["rnn"].weight_gradients(spec, cache.x, cache.hs[:, :-1], da, cache.Wx,
                                                   dh0=da[:, 0] @ cache.Wh.T)
        return {"rnn": backward}

    @classmethod
    def why_not(cls, net, arrays):
        if (why := super().why_not(net, arrays)) is not None:
            return why
        return None if any(s.in_shape[0] > 1 for s in _of(net, "rnn")) else "T = 1: there is no step t+1"


class LstmTanhPrimeForSigma(NetworkMutant):
    """The three sigmoid gates' derivative taken as tanh's, 1 − s² for s = σ(a), in place of
    σ(a)(1 − σ(a)): the lstm's backward with its σ' swapped, forward unchanged."""

    name = "lstm-tanh-prime-for-sigma"
    mistake = "lstm gate derivatives i, f, o with tanh′ = 1 − s² where σ′ = s(1 − s) belongs"
    needs = "lstm"

    def layer_of(self):
        from .catalog.recurrent import Lstm

        class _Mutant(Lstm):
            sigma_prime = staticmethod(Lstm.tanh_prime)

        return {"lstm": _Mutant()}


class AttentionBackwardUnscaled(NetworkMutant):
    """The 1/√d_k of the scores forgotten on the way back: dQ = dS K, dK = dSᵀ Q. The catalog's
    backward on Q and K divided by the scale computes exactly that (dQ and dK are linear in
    K and Q; nothing else in the backward reads them)."""

    name = "attention-backward-unscaled"
    mistake = "attention backward without the 1/√d_k: dQ = dS K, dK = dSᵀ Q"
    needs = "attention"

    def backward_of(self):
        def backward(spec, dy, cache):
            root = math.sqrt(cache.x.shape[-1] // spec["heads"])
            return LAYERS["attention"].backward(spec, dy, cache._replace(Q=cache.Q * root, K=cache.K * root))
        return {"attention": backward}


class AttentionMaskAfterSoftmax(NetworkMutant):
    """Causal attention with the mask applied after the softmax: P = softmax(S) over every key,
    then the future entries zeroed, the rows no longer summing to 1. Forward and backward run
    on that P (the disagreement starts at the layer's output)."""

    name = "attention-mask-after-softmax"
    mistake = "causal attention masked after the softmax (future weights zeroed, rows not renormalised)"
    needs = "attention"

    def layer_of(self):
        from .catalog.attention import Attention, future, merge_heads

        class _Mutant(Attention):
            def forward(self, spec, x, p, inp):
                if not spec["causal"]:
                    return super().forward(spec, x, p, inp)
                open_spec = dataclasses.replace(spec, attrs=tuple((k, False if k == "causal" else v)
                                                                  for k, v in spec.attrs))
                _, cache = super().forward(open_spec, x, p, inp)
                P = cache.P.copy()
                P[..., future(x.shape[1])] = 0  # after the softmax
                O = merge_heads(P @ cache.V)
                return O @ p["Wo"] + p["bo"], cache._replace(P=P, O=O)

        return {"attention": _Mutant()}

    @classmethod
    def why_not(cls, net, arrays):
        if (why := super().why_not(net, arrays)) is not None:
            return why
        return None if any(s["causal"] and s.in_shape[0] > 1 for s in _of(net, "attention")) \
            else "no causal attention over more than one step"


NETWORK_MUTANTS = [BatchnormStatsConstant, DropoutUnscaled, DropoutOtherMask, LayernormOverBatch,
                   L2TwiceLambda, L2HalfLambda, L2WithoutMean,
                   ConvUnflippedKernel, ConvDWLastExample, ConvDbPositionMean, MaxPoolSpread,
                   AvgPoolUnscaled, BatchnormPerPosition, ConvBackwardIgnoresStride, PoolBackwardIgnoresStride,
                   RnnBpttDropsStepPath, LstmTanhPrimeForSigma, AttentionBackwardUnscaled,
                   AttentionMaskAfterSoftmax, EmbeddingAssigns, ResidualForgetsSkip]

# The self-check's mutants, each a mistake learners make: MLP ones, then catalog network ones.
MUTANTS = [ForgetsGPrime, GInsteadOfGPrime, ForgetsMean, DWFromWrongLayer, WNotTransposed,
           SoftmaxElementwise, DbNotSummed, OffByOneLayer, ScaledLayer, PerturbedElement,
           *NETWORK_MUTANTS]


def matching_mistake(model: Model | Network, arrays: dict[str, Array], out: dict[str, Array],
                     tolerance) -> str | None:
    """Which known mistake a backend's wrong result is: the self-check's mutant whose gradients
    equal ``out`` on every quantity both give, each within ``tolerance`` (the analytic row of
    the case dtype), and which differs from the right answer somewhere. None when none does:
    a match is stated only when it is exact to the tolerance, never guessed."""
    from .backends.manual import ManualBackend
    from .compare import compare

    right = backprop(model, arrays) if isinstance(model, Network) else ManualBackend().gradients(model, arrays)
    candidates = NETWORK_MUTANTS if isinstance(model, Network) else [
        m for m in MUTANTS if not issubclass(m, NetworkMutant) and m not in (PerturbedElement, ScaledLayer)]
    for cls in candidates:
        if isinstance(model, Network) and cls.why_not(model, arrays) is not None:
            continue
        try:
            wrong = cls().gradients(model, {k: v.copy() for k, v in arrays.items()})
        except Exception:  # noqa: BLE001 - a mutant that does not apply to this network's layout
            continue
        shared = [q for q in wrong if q in out and q in right]
        if any(np.shape(wrong[q]) != np.shape(out[q]) for q in shared):
            continue  # a quantity of another shape is not equal to the mutant's
        changed = [q for q in shared if np.shape(wrong[q]) == np.shape(right[q])
                   and not np.allclose(wrong[q], right[q], rtol=1e-6, atol=0)]
        if not changed:
            continue
        if all(compare("", q, "plugin", np.asarray(out[q], np.float64), cls.name, np.asarray(wrong[q], np.float64),
                       "analytic", str(model.dtype), tolerance).passed for q in shared):
            params = [q for q in changed if q.startswith("d") and q[1:] in arrays]
            shown = params or changed
            return f"{', '.join(shown)} {'matches' if len(shown) == 1 else 'match'} '{cls.mistake}' ({cls.name})"
    return None
