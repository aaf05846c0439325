"""The layer catalog: every layer type a network may use, each defined once.

Adding a layer is one module with a ``Layer`` subclass and one line in ``_TYPES`` below.
Nothing here imports torch or jax: the framework forwards receive the namespace.
"""

from __future__ import annotations

from typing import Any

from ..activations import ACTIVATIONS, ALL_NAMES
from ..errors import did_you_mean
from .base import LAYERS, REQUIRED, Attr, Layer, LayerError, Param, Shape, Spec
from .attention import Attention
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .dense import Dense
from .dropout import Dropout
from .elementwise import ACTIVATION_LAYERS, act_backward, act_kinks
from .losses import L2_FORMS, NETWORK_LOSSES, NetworkLoss, l2_coefficient
from .norm import BatchNorm, LayerNorm
from .recurrent import Lstm, Rnn
from .sequence import Embedding, LastStep, MeanOverTime, Residual
from .reshape import Flatten

__all__ = ["LAYERS", "Layer", "LayerError", "Param", "Spec", "Attr", "NETWORK_LOSSES", "NetworkLoss",
           "L2_FORMS", "l2_coefficient", "build_spec", "act_backward", "act_kinks"]

_TYPES: list[Layer] = [Dense(), *ACTIVATION_LAYERS, Flatten(), Dropout(), BatchNorm(), LayerNorm(),
                     Conv2d(), MaxPool2d(), AvgPool2d(),
                     Embedding(), Rnn(), Lstm(), LastStep(), MeanOverTime(), Attention(), Residual()]
LAYERS.update({t.name: t for t in _TYPES})


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def build_spec(raw: Any, index: int, in_shape: Shape, batch: int = 0) -> Spec:
    """Check one ``{layer = "...", ...}`` entry against the catalog and infer its output shape.

    Raises ``LayerError`` whose ``field`` is the attribute at fault ("layer" for the type).
    """
    if not isinstance(raw, dict):
        raise LayerError("", f"each layer is an inline table like {{layer = \"dense\", units = 8}}, "
                             f"got {raw!r:.60}")
    kind = raw.get("layer")
    if not isinstance(kind, str):
        raise LayerError("layer", "missing the layer type (layer = \"dense\", \"relu\", ...)"
                         if kind is None else f"layer type must be a string, got {kind!r:.40}")
    if kind not in LAYERS:
        raise LayerError("layer", f"unknown layer {kind!r}{did_you_mean(kind, LAYERS)}; "
                                  f"known: {', '.join(LAYERS)}")
    layer = LAYERS[kind]
    attrs: dict[str, Any] = {}
    for key, val in raw.items():
        if key == "layer":
            continue
        if key not in layer.attrs:
            known = ", ".join(layer.attrs) or "none"
            raise LayerError(key, f"unknown attribute of {kind}{did_you_mean(key, layer.attrs)}; "
                                  f"its attributes: {known}")
    for key, attr in layer.attrs.items():
        if key not in raw:
            if attr.default is REQUIRED:
                raise LayerError(key, f"{kind} needs {key!r} ({attr.doc})")
            attrs[key] = attr.default
            continue
        val = raw[key]
        if (isinstance(val, bool) and bool not in attr.types) or not isinstance(val, attr.types):
            raise LayerError(key, f"expected {_type_name(attr.types)}, got {val!r:.40}")
        if attr.check is not None and (msg := attr.check(val)):
            raise LayerError(key, msg)
        attrs[key] = tuple(val) if isinstance(val, list) else val  # a Spec is hashed
    if layer.fused_activation and attrs.get("activation") is not None:
        a = attrs["activation"]
        if a not in ALL_NAMES:
            raise LayerError("activation", f"unknown activation {a!r}{did_you_mean(a, ALL_NAMES)}; "
                                           f"known: {', '.join(ALL_NAMES)}")
    out_shape = tuple(layer.out_shape(attrs, tuple(in_shape)))
    return Spec(kind, tuple(attrs.items()), index, tuple(in_shape), out_shape, batch)


def is_elementwise_activation(kind: str) -> bool:
    return kind in ACTIVATIONS
