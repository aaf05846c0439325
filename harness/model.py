"""The network every backend computes: layer sizes, activations, loss, dtype."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Model:
    """An MLP in the row-vector convention: z^[l] = a^[l-1] W^[l] + b^[l], a^[l] = g^[l](z^[l]).

    ``layers`` is n_0..n_L, ``activations`` is g^[1]..g^[L] (the last one is the
    output activation), ``loss`` a name from ``harness.losses.LOSSES``, ``dtype``
    "float32" or "float64".
    """

    layers: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    dtype: str

    @property
    def L(self) -> int:
        return len(self.layers) - 1

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def n_params(self) -> int:
        return sum((n_prev + 1) * n for n_prev, n in zip(self.layers, self.layers[1:]))

    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """{"W1": (n_0, n_1), "b1": (1, n_1), ...} in row-vector shapes."""
        shapes: dict[str, tuple[int, int]] = {}
        for l in range(1, self.L + 1):
            shapes[f"W{l}"] = (self.layers[l - 1], self.layers[l])
            shapes[f"b{l}"] = (1, self.layers[l])
        return shapes

    def quantities(self) -> list[str]:
        """The compared quantities: J, then dW1, db1, ..., dWL, dbL."""
        return ["J"] + [f"d{p}" for p in self.param_shapes()]

    def describe(self) -> str:
        arch = "-".join(map(str, self.layers))
        return f"{arch} [{', '.join(self.activations)}] {self.loss} {self.dtype}"
