"""The catalog table in Markdown, generated from the catalog itself.

    python -m harness.catalog.doc > docs/catalog.md

``tests/test_catalog_doc.py`` fails when docs/catalog.md is not what this prints, so the table
cannot drift from the layers it describes. Nothing here imports torch or jax.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ..activations import ACTIVATIONS
from . import L2_FORMS, LAYERS, NETWORK_LOSSES, REQUIRED, Layer, LayerError, build_spec
from .elementwise import Activation

# The per-example input shapes a layer is shown on, the last axis always called n: a shape that
# differs between them (batch norm's γ is C long on [C, H, W]) is given for each.
INPUTS = {"[n]": ("n",), "[T, n]": ("T", "n"), "[C, H, n]": ("C", "H", "n")}
# Distinct primes stand for the symbols while a layer computes its shapes, then are read back;
# no product of them is another.
_PRIMES = [101, 103, 107, 109, 113, 127, 131, 137, 139, 149]
_M = 151  # the batch

# What the frameworks' built-in losses do differently. NetworkLoss has no torch_name, jax_name or
# differences yet (Layer has), so they are written here; a loss that gains ``differences`` uses it.
LOSS_BUILTINS = {
    "cross_entropy": (
        "`F.cross_entropy(s, y)`: reduction='mean' divides by the number of targets, m here, so it "
        "is J; with `weight=` it divides by the sum of the targets' weights instead, and "
        "`label_smoothing` changes 𝓛. jax.nn has no loss: the harness writes −mean(log_softmax(s)[y])."),
    "binary_cross_entropy": (
        "`F.binary_cross_entropy_with_logits` with reduction='mean' divides by m·N, every output of "
        "every example; J sums over the N outputs and divides by m: the harness takes "
        "reduction='sum' / m. `F.binary_cross_entropy` on σ(s) clamps log at −100."),
    "half_sse": (
        "`F.mse_loss` has no ½ and with reduction='mean' divides by m·N: J = ½ mse_loss(s, Y, "
        "reduction='sum') / m."),
    "multiclass_hinge": (
        "`F.multi_margin_loss(s, y)` divides each example's sum by N, the number of classes (then "
        "by m): J = N · multi_margin_loss(s, y). The harness writes Σ_{j≠y} relu(s_j − s_y + 1) / m "
        "in both frameworks."),
}
L2_BUILTINS = (
    "torch's `weight_decay=λ` (SGD, Adam) adds λW to the gradient, the `half` form, but of every "
    "parameter in the group (b, γ and β too, unless a parameter group leaves them out); AdamW's "
    "decoupled decay shrinks W outside the gradient and is no term of J.")


def _cell(text: str) -> str:
    """One table cell: a | would end it."""
    return (text or "—").replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else "—"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)


def attributes(layer: Layer) -> str:
    """``units`` (required): output width n_i<br>``bias`` = true: add b"""
    return "<br>".join(
        f"`{k}` " + ("(required)" if a.default is REQUIRED else f"= {_value(a.default)}") + f": {a.doc}"
        for k, a in layer.attrs.items()) or "none"


def _probe(layer: Layer, in_dims: tuple[str, ...]) -> tuple[Any, dict[int, str]] | None:
    """The layer built on an input named ``in_dims``, its required integer attributes set to
    primes (shown by name: units) and a required number to 0.5; with the prime → symbol map.
    None if the layer refuses it."""
    primes = iter(_PRIMES)
    symbol = {next(primes): d for d in dict.fromkeys(in_dims)}
    raw: dict[str, Any] = {"layer": layer.name}
    for key, attr in layer.attrs.items():
        if attr.default is not REQUIRED:
            continue
        if float in attr.types:  # a rate, a scale: shown as the attribute's value, not a size
            raw[key] = 0.5
        elif list in attr.types:  # a window [kh, kw]: small primes, so that it fits the input
            raw[key] = [5, 7]
            symbol.update({5: "kh", 7: "kw"})
        elif int in attr.types:
            raw[key] = next(primes)
            symbol[raw[key]] = key
    if "vocab" in layer.attrs:  # set from the case's vocab: shown as V
        raw["vocab"] = next(primes)
        symbol[raw["vocab"]] = "V"
    shape = tuple(next(p for p, s in symbol.items() if s == d) for d in in_dims)
    try:
        return build_spec(raw, 1, shape), symbol
    except LayerError:
        return None


def _dims(shape: tuple[int, ...], symbol: dict[int, str]) -> str:
    def one(n: int) -> str:
        if n in symbol:
            return symbol[n]
        # a multiple of a symbol (lstm's 4 gates: 4·hidden)
        k = next((n // p for p in symbol if p > 1 and n % p == 0 and n // p < 10), None)
        return f"{k}·{symbol[n // k]}" if k else str(n)
    return "×".join(one(n) for n in shape)


def parameters(layer: Layer) -> str:
    """Each parameter and extra input with its key and shape in terms of the input, as built
    on each of ``INPUTS``; "(L2)" marks the ones the case's l2 covers."""
    per_input: dict[str, dict[str, str]] = {}
    for name, dims in INPUTS.items():
        probe = _probe(layer, dims)
        if probe is None:
            continue
        spec, symbol = probe
        symbol[_M] = "m"
        keyed = dataclasses.replace(spec, index="{i}")  # keys as the case file writes them: W{i}
        shown = {}
        for local, p in layer.params(spec).items():
            shown[f"`{keyed.key(local)}`"] = _dims(p.shape, symbol) + (" (L2)" if p.regularised else "")
        for local, (shape, _) in layer.inputs(spec, _M).items():
            whole = shape == (_M, *spec.in_shape)
            shown[f"`{keyed.key(local)}`"] = ("m × the input's shape" if whole else _dims(shape, symbol)) + \
                " (an input, not differentiated)"
        per_input[name] = shown
    if not per_input:
        return "—"
    first = next(iter(per_input.values()))
    parts = []
    for key, shape in first.items():
        differ = [f"{n}: {s[key]}" for n, s in list(per_input.items())[1:] if s.get(key) != shape]
        parts.append(f"{key} {shape}" + (f" ({'; '.join(differ)})" if differ else ""))
    return "<br>".join(parts) or "none"


def layers_table() -> str:
    rows = [[f"`{t.name}`", attributes(t), parameters(t), _code(t.formula), _code(t.derivative),
             t.torch_name, t.jax_name, t.differences]
            for t in LAYERS.values() if not isinstance(t, Activation)]
    return _table(["layer", "attributes", "parameters", "forward", "backward", "torch", "jax",
                   "where the frameworks' defaults differ"], rows)


def activations_table() -> str:
    acts = [t for t in LAYERS.values() if isinstance(t, Activation)]
    rows = [[f"`{t.name}`", _code(t.formula), _code(t.derivative), t.torch_name, t.jax_name,
             ", ".join(f"{k:g}" for k in ACTIVATIONS[t.name].kinks) if t.name in ACTIVATIONS else ""]
            for t in acts]
    table = _table(["layer", "forward", "backward", "torch", "jax", "kinks"], rows)
    notes = [f"- `{t.name}`: {t.differences}" for t in acts if t.differences]
    return "\n\n".join([table, *(["\n".join(notes)] if notes else [])])


def losses_table() -> str:
    rows = []
    for loss in NETWORK_LOSSES.values():
        target = "y, class indices (Y their one-hot ȳ)" if loss.target == "y" else "Y, like s"
        builtin = getattr(loss, "differences", "") or LOSS_BUILTINS.get(loss.name, "")
        rows.append([f"`{loss.name}`", _code(loss.formula), _code(loss.delta), target,
                     loss.applies or "none", builtin])
    return _table(["loss", "𝓛 (per example)", "∂𝓛/∂s", "targets", "applies to s itself",
                   "what the frameworks' built-ins do differently"], rows)


def l2_table() -> str:
    rows = [[f"`{form}`", _code(term), _code(grad)] for form, (term, grad) in L2_FORMS.items()]
    return _table(["l2_form", "term added to J", "added to each regularised W's gradient"], rows)


def regularised() -> str:
    """Which parameters the L2 term covers, read from the catalog: "dense's W"."""
    names = []
    for t in LAYERS.values():
        probe = _probe(t, INPUTS["[n]"])
        if probe is not None:
            names += [f"{t.name}'s `{local}`" for local, p in t.params(probe[0]).items() if p.regularised]
    return ", ".join(names)


def markdown() -> str:
    return f"""# The layer catalog

Generated from `harness/catalog` by `python -m harness.catalog.doc > docs/catalog.md`; do not
edit by hand (`tests/test_catalog_doc.py` checks that this file is what the catalog says now).

A case's `network = [...]` is a list of these layers. Layer i (counted from 1) turns a^[i−1] into
a^[i] (a^[0] = X); a layer with a fused `activation` also keeps z^[i]. Its parameters are keyed
with its index: `W{{i}}`, `gamma{{i}}`. Shapes are per example, batch axis first in the arrays;
n is the size of the input's last axis, m the batch; where a shape depends on the input's rank it
is also given for a sequence [T, n] or an image [C, H, n] input. Forward and backward are the formulas of
the manual arm, whose hand-written backward is checked against torch autograd, `jax.grad` and
finite differences; the torch and jax columns are the forms those backends run.

## Layers

{layers_table()}

## Activations

Each is a layer of its own (`{{layer = "relu"}}`) and dense's fused `activation`. In these rows
the layer's input x is the z of g(z); `softmax` is over the last axis.

{activations_table()}

## Losses

The last layer gives the scores s (m×N); J = (1/m) Σᵢ 𝓛⁽ⁱ⁾, so the gradient that enters the
backward pass is ∂𝓛/∂s / m. A loss that applies softmax or sigmoid itself takes logits: a
network ending in that function before it is refused.

{losses_table()}

## L2

A case's `l2 = λ` adds a term over {regularised()} (not biases, γ or β), in the case's
`l2_form` (default `half`).

{l2_table()}

{L2_BUILTINS}
"""


if __name__ == "__main__":
    sys.stdout.write(markdown())
