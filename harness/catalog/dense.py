"""dense: z = a_prev W + b, acting on the last axis (per example, per step, per position)."""

from __future__ import annotations

from .base import Attr, Layer, LayerError, Param, Spec, fan_in, positive, small


class Dense(Layer):
    """z = a_prev W + b with W n_prev×units and b 1×units, on the last axis of a_prev.

    Backward, with dz = ∂J/∂z (same shape as z) and the leading axes flattened into rows
    (each row an example, or an example's step):
        dW = a_prevᵀ dz        the sum over rows of outer products a_prev⁽ʳ⁾ᵀ dz⁽ʳ⁾
        db = Σ_rows dz         b is added to every row
        da_prev = dz Wᵀ
    The 1/m of J is already in dz; it is not applied again here.
    """

    name = "dense"
    attrs = {
        "units": Attr((int,), check=positive, doc="output width n_i"),
        "activation": Attr((str,), None, doc="fused g: a = g(z), z kept as z{i}"),
        "bias": Attr((bool,), True, doc="add b"),
    }
    formula = "z = a_prev W + b (on the last axis)"
    derivative = "dW = a_prevᵀ dz, db = Σ_rows dz, da_prev = dz Wᵀ"
    torch_name = "x @ W + b (nn.Linear stores Wᵀ: weight is units×n_prev)"
    jax_name = "x @ W + b (flax.linen.Dense stores W as n_prev×units, like here)"
    differences = "torch's nn.Linear weight is the transpose of W; the harness passes W itself."
    fused_activation = True

    def out_shape(self, attrs, in_shape):
        if len(in_shape) == 3:  # [C, H, W]: acting on W alone is never what a classifier head means
            raise LayerError("", f"dense on a [C, H, W] input {list(in_shape)} would act on each row "
                                 "of each channel: add {layer = \"flatten\"} before it")
        return in_shape[:-1] + (attrs["units"],)

    def params(self, spec: Spec) -> dict[str, Param]:
        n_prev, n = spec.in_shape[-1], spec["units"]
        out = {"W": Param((n_prev, n), fan_in, regularised=True)}
        if spec["bias"]:
            out["b"] = Param((1, n), small)
        return out

    def forward(self, spec, x, p, inp):
        z = x @ p["W"]
        if "b" in p:
            z += p["b"]  # into the product's own fresh array: one array per z, not two
        return z, (x, p["W"])

    def backward(self, spec, dz, cache):
        _, W = cache
        return dz @ W.T, self.param_backward(spec, dz, cache)

    def param_backward(self, spec, dz, cache):
        # The first layer's da_prev would be ∂J/∂X, which nothing uses: its matmul is skipped.
        a_prev, _ = cache
        rows_a, rows_dz = a_prev.reshape(-1, a_prev.shape[-1]), dz.reshape(-1, dz.shape[-1])
        grads = {"W": rows_a.T @ rows_dz}
        if spec["bias"]:
            grads["b"] = rows_dz.sum(axis=0, keepdims=True)
        return grads

    def torch(self, spec, fw, x, p, inp):
        z = x @ p["W"]
        return z + p["b"] if "b" in p else z

    def jax(self, spec, fw, x, p, inp):
        z = x @ p["W"]
        return z + p["b"] if "b" in p else z

    def describe(self, spec):
        act = f"/{spec.activation}" if spec.activation else ""
        return f"dense{spec['units']}{act}" + ("" if spec["bias"] else "(no bias)")
