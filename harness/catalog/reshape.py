"""flatten: each example's values in one row, row-major (torch's ``x.flatten(1)`` order)."""

from __future__ import annotations

import math

from .base import Layer


class Flatten(Layer):
    """a = x.reshape(m, −1); backward reshapes da back to x's shape (nothing is computed)."""

    name = "flatten"
    formula = "a = x.reshape(m, −1), row-major"
    derivative = "dx = da.reshape(x.shape)"
    torch_name = "x.flatten(1)"
    jax_name = "x.reshape(m, -1)"

    def out_shape(self, attrs, in_shape):
        return (math.prod(in_shape),)

    def forward(self, spec, x, p, inp):
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, spec, dy, shape):
        return dy.reshape(shape), {}

    def torch(self, spec, fw, x, p, inp):
        return x.flatten(1)

    def jax(self, spec, fw, x, p, inp):
        return x.reshape(x.shape[0], -1)
