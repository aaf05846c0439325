"""The losses a network ends in, as objects: numpy cost and its gradient (the manual arm),
the framework forms, and where each loss has kinks.

The network's last layer gives the scores s (m×N): logits for ``cross_entropy`` (softmax
inside the loss) and ``binary_cross_entropy`` (sigmoid inside), the prediction for
``half_sse``, class scores for ``multiclass_hinge``. J = (1/m) Σᵢ 𝓛⁽ⁱ⁾.
"""

from __future__ import annotations

import numpy as np

from ..activations import log_softmax, softmax
from ..losses import LOSSES as _MLP_LOSSES

Array = np.ndarray


class NetworkLoss:
    name = ""
    formula = ""
    delta = ""  # ∂𝓛/∂s, as a learner writes it
    target = "Y"  # "y": class indices (Y is then their one-hot), "Y": an array like s
    applies = ""  # the output function the loss applies itself ("softmax", "sigmoid") or ""

    def cost(self, s: Array, T: dict[str, Array]) -> Array:
        raise NotImplementedError

    def grad(self, s: Array, T: dict[str, Array]) -> Array:
        """∂J/∂s, the 1/m of the mean included."""
        raise NotImplementedError

    def output(self, s: Array) -> Array:
        return s

    def torch(self, fw, s, T):
        raise NotImplementedError

    def jax(self, fw, s, T):
        raise NotImplementedError

    def kink_sides(self, s: Array, T: dict[str, Array]) -> Array | None:
        return None


class CrossEntropy(NetworkLoss):
    """Per example (s of N×V) or per step (s of N×T×V, y of N×T, CS231n's captioning loss): the
    per-step losses are summed over time, optionally weighted by ``target_mask`` (N×T of 0/1),
    and averaged over the N sequences: J = (1/N) Σ_n Σ_t mask·𝓛_{n,t}. torch's default
    reduction="mean" divides by the number of tokens N·T instead (or by the unmasked count
    with ignore_index), a factor T (or Σ mask) smaller; the framework forms here compute this J."""

    name = "cross_entropy"
    formula = _MLP_LOSSES["cross_entropy"].formula.replace("z^[L]", "s")
    delta = "ŷ − ȳ (per step: mask·(ŷ − ȳ))"
    target = "y"
    applies = "softmax"

    def cost(self, s, T):
        per = -(T["Y"] * log_softmax(s)).sum(axis=-1)  # 𝓛 per example, or per step
        if "target_mask" in T:
            per = per * T["target_mask"]
        return np.asarray(per.reshape(s.shape[0], -1).sum(axis=-1).mean())

    def grad(self, s, T):
        d = softmax(s) - T["Y"]
        if "target_mask" in T:
            d = d * T["target_mask"][..., None]
        return d / s.shape[0]

    def output(self, s):
        return softmax(s)

    def torch(self, fw, s, T):
        if s.ndim == 2 and "target_mask" not in T:
            return fw.F.cross_entropy(s, T["y"])  # reduction="mean": over the m examples
        per = fw.F.cross_entropy(s.reshape(-1, s.shape[-1]), T["y"].reshape(-1), reduction="none")
        if "target_mask" in T:
            per = per * T["target_mask"].reshape(-1)
        return per.sum() / s.shape[0]  # summed over steps, averaged over sequences

    def jax(self, fw, s, T):
        logp = fw.jax.nn.log_softmax(s, axis=-1)
        per = -fw.jnp.take_along_axis(logp, T["y"][..., None], axis=-1)[..., 0]
        if "target_mask" in T:
            per = per * T["target_mask"]
        return fw.jnp.sum(per) / s.shape[0]


def _sigmoid(s):
    e = np.exp(-np.abs(s))
    return np.where(s >= 0, 1 / (1 + e), e / (1 + e))


class BinaryCrossEntropy(NetworkLoss):
    name = "binary_cross_entropy"
    formula = _MLP_LOSSES["binary_cross_entropy"].formula.replace("z^[L]", "s")
    delta = "σ(s) − y"
    applies = "sigmoid"

    def cost(self, s, T):
        Y = T["Y"]
        return np.asarray((np.maximum(s, 0) - s * Y + np.log1p(np.exp(-np.abs(s)))).sum(axis=-1).mean())

    def grad(self, s, T):
        return (_sigmoid(s) - T["Y"]) / s.shape[0]

    def output(self, s):
        return _sigmoid(s)

    def torch(self, fw, s, T):
        # Sum over outputs, mean over examples: reduction="mean" would divide by m·N.
        return fw.F.binary_cross_entropy_with_logits(s, T["Y"], reduction="sum") / s.shape[0]

    def jax(self, fw, s, T):
        ll = T["Y"] * fw.jax.nn.log_sigmoid(s) + (1 - T["Y"]) * fw.jax.nn.log_sigmoid(-s)
        return -fw.jnp.sum(ll) / s.shape[0]


class HalfSSE(NetworkLoss):
    name = "half_sse"
    formula = "𝓛 = ½ Σ_k (s_k − y_k)², s the network's output"
    delta = "s − y"

    def cost(self, s, T):
        d = s - T["Y"]
        return np.asarray(0.5 * (d * d).reshape(s.shape[0], -1).sum(axis=-1).mean())

    def grad(self, s, T):
        return (s - T["Y"]) / s.shape[0]

    def torch(self, fw, s, T):
        return 0.5 * fw.F.mse_loss(s, T["Y"], reduction="sum") / s.shape[0]

    def jax(self, fw, s, T):
        return 0.5 * fw.jnp.sum((s - T["Y"]) ** 2) / s.shape[0]


class MulticlassHinge(NetworkLoss):
    """The multiclass SVM loss (CS231n's svm_loss): 𝓛 = Σ_{j≠y} max(0, s_j − s_y + 1).

    ∂𝓛/∂s_j = 1[s_j − s_y + 1 > 0] for j ≠ y and ∂𝓛/∂s_y = −(the number of such j): the
    relu convention, 0 at a margin of exactly 0, where 𝓛 has a kink (finite differences
    that straddle it are inconclusive, like relu's). torch's F.multi_margin_loss divides
    by the number of classes N, so the framework forms are written out instead."""

    name = "multiclass_hinge"
    formula = "𝓛 = Σ_{j≠y} max(0, s_j − s_y + 1)"
    delta = "1[s_j − s_y + 1 > 0] for j ≠ y; −Σ_{j≠y} 1[…] at y"
    target = "y"

    @staticmethod
    def _margins(s, Y):
        sy = (s * Y).sum(axis=-1, keepdims=True)
        return s - sy + 1.0

    def cost(self, s, T):
        Y = T["Y"]
        return np.asarray((np.maximum(self._margins(s, Y), 0) * (1 - Y)).sum(axis=-1).mean())

    def grad(self, s, T):
        Y = T["Y"]
        active = (self._margins(s, Y) > 0) * (1 - Y)
        return (active - Y * active.sum(axis=-1, keepdims=True)) / s.shape[0]

    def torch(self, fw, s, T):
        sy = s.gather(1, T["y"][:, None])
        return (fw.torch.relu(s - sy + 1.0) * (1 - T["Y"])).sum() / s.shape[0]

    def jax(self, fw, s, T):
        sy = fw.jnp.take_along_axis(s, T["y"][:, None], axis=-1)
        return fw.jnp.sum(fw.jax.nn.relu(s - sy + 1.0) * (1 - T["Y"])) / s.shape[0]

    def kink_sides(self, s, T):
        Y = T["Y"]
        return np.where(Y > 0, 0, np.sign(self._margins(s, Y))).astype(np.int8)


NETWORK_LOSSES: dict[str, NetworkLoss] = {
    cls.name: cls() for cls in (CrossEntropy, BinaryCrossEntropy, HalfSSE, MulticlassHinge)
}


# ----------------------------------------------------------------------------- L2

L2_FORMS: dict[str, tuple[str, str]] = {
    # form: (the term added to J, its gradient for each regularised W)
    "half": ("λ/2 Σ W²", "λ W"),
    "sum": ("λ Σ W²", "2λ W"),
    "half_mean": ("λ/(2m) Σ W²", "(λ/m) W"),
}


def l2_coefficient(lam: float, form: str, m: int) -> float:
    """c in the term c·Σ W² (whose gradient is 2c·W): λ/2, λ, or λ/(2m)."""
    return {"half": lam / 2, "sum": lam, "half_mean": lam / (2 * m)}[form]
