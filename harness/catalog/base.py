"""What every catalog layer declares: attributes, shapes, parameters, and four forwards.

A layer type is one object (``Layer``) holding, in one place:
- its attributes and how they are checked (``Attr``), and the shape it makes of its input;
- its parameters (name, shape, how they are drawn, whether L2 applies to them) and any
  extra input it needs (dropout's mask), keyed ``{name}{i}`` in the case's arrays;
- ``forward`` / ``backward`` in numpy: the manual arm, backward written by hand beneath its
  forward (micrograd's layout), the derivation in the docstring;
- ``torch`` / ``jax``: the same forward in the framework's ops, given the framework's
  namespace (``fw.torch``, ``fw.F`` or ``fw.jax``, ``fw.jnp``) so that nothing here imports
  a framework. Autograd and ``jax.grad`` do those backwards.

Shapes are per example (no batch axis): ``(n,)``, later ``(C, H, W)`` or ``(T, D)``.
Arrays carry the batch axis first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np

Array = np.ndarray
Shape = tuple[int, ...]
REQUIRED = object()


class LayerError(ValueError):
    """A layer's attribute or input shape is wrong: ``field`` names the attribute (or "")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


@dataclass(frozen=True)
class Attr:
    """One attribute: accepted Python types, default (REQUIRED if none), a check that returns
    an error message or None, and a line for the catalog table."""

    types: tuple[type, ...]
    default: Any = REQUIRED
    check: Callable[[Any], str | None] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Param:
    """A parameter: its shape, how it is drawn (``draw(rng, shape)``, float64), whether the
    case's L2 penalty applies to it (weight matrices yes; biases, gamma, beta no), and whether
    its rows belong to the examples (an initial state h0: N×H)."""

    shape: Shape
    draw: Callable[[np.random.Generator, Shape], Array]
    regularised: bool = False
    per_example: bool = False  # one row per example (rnn's h0): a batch of one takes its row


@dataclass(frozen=True)
class Spec:
    """One layer of one network: its type, checked attributes, index (from 1) and shapes."""

    kind: str
    attrs: tuple[tuple[str, Any], ...]
    index: int
    in_shape: Shape
    out_shape: Shape
    batch: int = 0  # the case's batch, for the few parameters of one row per example (rnn's h0)

    def __getitem__(self, name: str) -> Any:
        return self._attrs[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._attrs.get(name, default)

    @cached_property
    def _attrs(self) -> dict[str, Any]:
        return dict(self.attrs)

    @property
    def activation(self) -> str | None:
        """The fused activation (dense now, conv later), or None."""
        return self.get("activation")

    def key(self, name: str) -> str:
        """The array key of this layer's parameter or input ``name``: W3, gamma2, h0_3."""
        return f"{name}_{self.index}" if name[-1].isdigit() else f"{name}{self.index}"

    def label(self) -> str:
        """How messages and reports name the layer: "layer 3 (batchnorm)"."""
        return f"layer {self.index} ({self.kind})"

    def describe(self) -> str:
        """Short form for one-line summaries: dense32/tanh, dropout(0.3), batchnorm."""
        return LAYERS[self.kind].describe(self)


class Layer:
    """Base class of a catalog layer type. Subclasses set the class attributes and override
    what applies; defaults describe a layer without parameters that keeps its input's shape."""

    name: str = ""
    attrs: dict[str, Attr] = {}
    formula: str = ""  # forward, as a learner writes it
    derivative: str = ""  # backward, the hand-written formula
    torch_name: str = ""  # the framework counterparts, for the catalog table
    jax_name: str = ""
    differences: str = ""  # where the frameworks' defaults differ from ours
    fused_activation: bool = False  # accepts `activation`: a^[i] = g(z^[i]), z^[i] the layer's output
    couples_examples: bool = False  # an example's output depends on the others (batch norm)

    def out_shape(self, spec_attrs: dict[str, Any], in_shape: Shape) -> Shape:
        return in_shape

    def params(self, spec: Spec) -> dict[str, Param]:
        return {}

    def inputs(self, spec: Spec, batch: int) -> dict[str, tuple[Shape, Callable]]:
        """Extra input arrays (not differentiated): local name -> (full shape, draw(rng, shape))."""
        return {}

    def check_input(self, spec: Spec, name: str, value: Array) -> str | None:
        """An error message for an explicit extra input that does not fit, else None."""
        return None

    def param_mismatch(self, spec: Spec, local: str, shape: Shape) -> str | None:
        """Why an explicit parameter of ``shape`` does not fit, when the layer can say more
        than "the shape differs" (a conv kernel's channel count, say), else None."""
        return None

    def check_batch(self, spec: Spec, batch: int) -> str | None:
        """An error message when the layer cannot work on this batch size, else None."""
        return None

    def forward(self, spec: Spec, x: Array, p: dict[str, Array], inp: dict[str, Array]) -> tuple[Array, Any]:
        raise NotImplementedError

    def backward(self, spec: Spec, dy: Array, cache: Any) -> tuple[Array, dict[str, Array]]:
        raise NotImplementedError

    def param_backward(self, spec: Spec, dy: Array, cache: Any) -> dict[str, Array]:
        """The parameter gradients alone, for the first layer, whose dx would be ∂J/∂X (which
        nothing uses). A layer whose dx is costly (conv2d) computes only these."""
        return self.backward(spec, dy, cache)[1]

    def torch(self, spec: Spec, fw: Any, x: Any, p: dict[str, Any], inp: dict[str, Any]) -> Any:
        raise NotImplementedError

    def jax(self, spec: Spec, fw: Any, x: Any, p: dict[str, Any], inp: dict[str, Any]) -> Any:
        raise NotImplementedError

    def kink_sides(self, spec: Spec, x: Array) -> Array | None:
        """For finite differences: which side of a kink each element of the input is on, or
        None for a smooth layer. A nudge that changes any side is inconclusive."""
        return None

    def ties(self, spec: Spec, x: Array, dy: Array, tol: Array, rng: np.random.Generator
             ) -> tuple[Array, int] | None:
        """For a layer whose gradient is a choice at some inputs (max pooling at a tied
        maximum): the change in dx that another valid choice makes (nonzero wherever the
        choice matters) and the number of such places; None when the layer never chooses, or
        has nothing to choose at these inputs."""
        return None

    def describe(self, spec: Spec) -> str:
        return self.name


def positive(v: int) -> str | None:
    """An ``Attr`` check for sizes (units, hidden, heads, dim): a positive integer."""
    return None if v >= 1 else f"must be a positive integer, got {v}"


def fan_in(rng: np.random.Generator, shape: Shape) -> Array:
    """A weight W of ``x W`` drawn N(0, 1/n), n = its first axis (the fan-in): z keeps x's scale."""
    return rng.standard_normal(shape) / math.sqrt(shape[0])


def small(rng: np.random.Generator, shape: Shape) -> Array:
    """A bias or shift drawn N(0, 0.1²)."""
    return rng.standard_normal(shape) * 0.1


# Filled by harness.catalog: name -> Layer.
LAYERS: dict[str, Layer] = {}
