"""The network every backend computes: layer sizes, activations, loss, dtype."""

from __future__ import annotations

import re
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
        """The quantities every backend must return: J, then dW1, db1, ..., dWL, dbL."""
        return ["J"] + [f"d{p}" for p in self.param_shapes()]

    def intermediates(self) -> list[str]:
        """Optional per-layer quantities, in the order the algorithm produces them.

        Forward: z1, a1, ..., zL, aL (aL is ŷ). Backward: dzL, daL-1, dzL-1, ..., dz1,
        where dz{l} = ∂J/∂z^[l] and da{l} = ∂J/∂a^[l] (l = 1..L-1); all m×n_l.
        """
        forward = [f"{k}{l}" for l in range(1, self.L + 1) for k in ("z", "a")]
        backward = ["dz" + str(self.L)]
        for l in range(self.L - 1, 0, -1):
            backward += [f"da{l}", f"dz{l}"]
        return forward + backward

    def optional(self) -> list[str]:
        """Quantities a backend may return besides the required ones: the per-layer
        intermediates and ``Jv``, the directional derivatives vᵀ∇J (see directional.py)."""
        return self.intermediates() + ["Jv"]

    def algorithm_order(self) -> list[str]:
        """Every quantity in the order a learner computes it: J and the forward values, then
        the backward pass layer by layer (dz^[l], dW^[l], db^[l], da^[l-1])."""
        order = ["J"] + [f"{k}{l}" for l in range(1, self.L + 1) for k in ("z", "a")]
        for l in range(self.L, 0, -1):
            order += [f"dz{l}", f"dW{l}", f"db{l}"] + ([f"da{l - 1}"] if l > 1 else [])
        return order

    def shape_of(self, quantity: str, m: int) -> tuple[int, ...]:
        """The row-vector shape of any quantity name, for a batch of m."""
        if quantity == "J":
            return ()
        if quantity == "Jv":
            from .directional import N_DIRECTIONS
            return (N_DIRECTIONS,)
        name = quantity[1:] if quantity[0] == "d" and quantity[1] in "Wbza" else quantity
        l = int(name[1:])
        if name[0] == "W":
            return (self.layers[l - 1], self.layers[l])
        if name[0] == "b":
            return (1, self.layers[l])
        return (m, self.layers[l])

    @staticmethod
    def layer_of(quantity: str) -> int | None:
        """The l of a per-layer quantity (dW2 → 2, dh0_3 → 3), None for J."""
        match = re.search(r"(\d+)$", quantity)
        return int(match.group(1)) if match else None

    def describe(self) -> str:
        arch = "-".join(map(str, self.layers))
        return f"{arch} [{', '.join(self.activations)}] {self.loss} {self.dtype}"
