"""A worked example: one case's forward and backward pass, step by step, as a learner follows it.

Every line is one step of the derivation: the formula, the shapes, the first few numbers
(row 1 of the batch), and the largest |difference| from torch and JAX at that very step.
An MLP case is walked in the textbook's notation; a network case (``network = [...]``)
layer by layer with each layer's formulas as the catalog states them.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX
from .cases import Case
from .catalog import L2_FORMS, LAYERS, NETWORK_LOSSES, Spec
from .losses import LOSSES
from .network import Network, l2_term, targets

Array = np.ndarray
WIDTH = 4  # numbers shown per row


def _nums(x: Array) -> str:
    x = np.asarray(x)
    if x.ndim == 0:
        return f"{float(x):.6g}"
    row = x.reshape(-1, x.shape[-1])[0]
    shown = " ".join(f"{v: .4g}" for v in row[:WIDTH])
    return f"[{shown}{' …' if row.size > WIDTH else ''}]"


def _shape(x: Array) -> str:
    return "×".join(map(str, np.shape(x))) or "scalar"


def _max_diff(a: Array, b: Array) -> float | None:
    """max |a − b| over the elements both computed (fd masks what it did not measure)."""
    d = np.abs(np.ma.asarray(a, dtype=float) - np.ma.asarray(b, dtype=float))
    return None if np.ma.count(d) == 0 and d.size else float(np.ma.max(d)) if d.size else 0.0


def _diff(key: str, ref: dict[str, Array], others: dict[str, dict[str, Array] | str]) -> str:
    parts = []
    for name, out in others.items():
        d = None if isinstance(out, str) or key not in out else _max_diff(ref[key], out[key])
        parts.append(f"{name} n/a" if isinstance(out, str) or key not in out
                     else f"{name} n/c" if d is None else f"{name} {d:.1e}")
    return "max|Δ| " + ", ".join(parts)


def _gprime_text(name: str) -> str:
    return f"g' = {ACTIVATIONS[name].derivative}" if name in ACTIVATIONS else ""


def _output_delta_text(loss: str, out_act: str) -> str:
    if loss == "cross_entropy":
        return "(ŷ − ȳ) / m"
    if loss == "binary_cross_entropy":
        return "(a^[L] − y) / m"
    if out_act == SOFTMAX:
        return "(a − y)(diag(ŷ) − ŷᵀŷ) / m, row by row"
    return f"(a − y) ∘ g'(z^[L]) / m,  {_gprime_text(out_act)}"


def _stepper(say: Callable[[str], None], manual: dict[str, Array],
             others: dict[str, dict[str, Array] | str], width: int = 26) -> Callable[..., None]:
    """``step(label, formula, key, shapes, value)``: two lines, the formula, then the shapes (in
    ``width`` columns), the first numbers and the differences from ``others`` (none for a
    ``value`` without a key)."""
    def step(label: str, formula: str, key: str | None, shapes: str = "", value: Array | None = None) -> None:
        val = manual[key] if key else value
        say(f"  {label:<5}{formula}")
        detail = f"{shapes + ' → ' if shapes else ''}{_shape(val)}"
        tail = _diff(key, manual, others) if key else ""
        say(f"       {detail:<{width}} {_nums(val):<46} {tail}".rstrip())
    return step


def explain(case: Case, manual: dict[str, Array], others: dict[str, dict[str, Array] | str]) -> str:
    """The walkthrough text. ``manual`` is the manual backend's full output; ``others`` maps
    framework names to theirs (or to an error string)."""
    if isinstance(case.model, Network):
        return explain_network(case, manual, others)
    model, m = case.model, case.batch
    L, acts = model.L, model.activations
    lines: list[str] = []
    say = lines.append
    step = _stepper(say, manual, others)

    say(f"Case {case.name}: layers {'-'.join(map(str, model.layers))}, activations "
        f"[{', '.join(acts)}], loss {model.loss}, {model.dtype}, batch m = {m}")
    if case.description:
        say(f"  {case.description}")
    say("Row-vector convention: one example is a row; X stacks the m examples (m×n_0). "
        "Numbers show row 1.")
    say("")
    say("FORWARD PASS")
    step("", "a^[0] = X", None, value=case.arrays()["X"])
    for l in range(1, L + 1):
        W_shape = f"{model.layers[l - 1]}×{model.layers[l]}"
        step(f"l={l}", f"z^[{l}] = a^[{l - 1}] W^[{l}] + b^[{l}]", f"z{l}",
             f"{m}×{model.layers[l - 1]} · {W_shape} + 1×{model.layers[l]}")
        name = acts[l - 1]
        formula = (f"ŷ = a^[{l}] = softmax(z^[{l}]),  each row sums to 1" if name == SOFTMAX
                   else f"a^[{l}] = {name}(z^[{l}])" + (",  ŷ = a^[L]" if l == L else ""))
        step("", formula, f"a{l}")
    say("")
    step("", f"J = (1/m) Σᵢ 𝓛⁽ⁱ⁾,  {LOSSES[model.loss].formula}", "J")
    say("")
    say("BACKWARD PASS  (d· means ∂J/∂·; the 1/m of the mean enters once, at the top)")
    for l in range(L, 0, -1):
        n_prev, n = model.layers[l - 1], model.layers[l]
        if l == L:
            step(f"l={l}", f"dz^[{l}] = {_output_delta_text(model.loss, acts[-1])}", f"dz{l}")
        else:
            step(f"l={l}", f"dz^[{l}] = da^[{l}] ∘ g'(z^[{l}]),  {_gprime_text(acts[l - 1])}", f"dz{l}")
        step("", f"dW^[{l}] = a^[{l - 1}]ᵀ dz^[{l}]", f"dW{l}", f"{n_prev}×{m} · {m}×{n}")
        step("", f"db^[{l}] = Σ_rows dz^[{l}]", f"db{l}", f"Σ_rows {m}×{n}")
        if l > 1:
            step("", f"da^[{l - 1}] = dz^[{l}] W^[{l}]ᵀ", f"da{l - 1}", f"{m}×{n} · {n}×{n_prev}")
    worst = _worst(manual, others)
    say("")
    say(f"Largest difference from the frameworks over every step above: {worst}")
    return "\n".join(lines)


def _worst(manual: dict[str, Array], others: dict[str, dict[str, Array] | str]) -> str:
    parts = []
    for name, out in others.items():
        if isinstance(out, str):
            parts.append(f"{name}: {out}")
            continue
        keys = [k for k in manual if k in out]
        diffs = [d for d in (_max_diff(manual[k], out[k]) for k in keys) if d is not None]
        parts.append(f"{name} {max(diffs, default=0.0):.1e} over {len(keys)} quantities")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- networks

_SYMBOL = {"gamma": "γ", "beta": "β"}  # how the catalog's formulas write these parameters
_INPUT_GRADIENT = re.compile(r"d(x|a_prev) = ")
# The names the catalog's formulas give a layer's input and its output's gradient; a name
# counts only standing alone (not the x of dx or x̂, not the da of da_prev).
_INPUT_NAMES = ("a_prev", "x")
_GRADIENT_NAMES = ("dz", "dy", "da", "dŷ")


def _named(text: str, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if re.search(rf"(?<![\w']){re.escape(n)}(?![\w\u0302'])", text)]


def _q(name: str, i: int) -> str:
    """a3 → a^[3], W5 → W^[5]: a layer's quantity in the notation of the walkthrough."""
    return f"{name}^[{i}]"


def _pieces(spec: Spec) -> tuple[dict[str, str], str]:
    """The layer's backward formula from the catalog, cut at each ``d… = ``: the piece of every
    parameter by its local name, and the input gradient's (with the helpers it uses, as dx̂ for
    batchnorm). Whatever is not written that way (layernorm: "batchnorm's, …") is left out."""
    layer = LAYERS[spec.kind]
    parts = re.split(r"[,;]\s+(?=d\S* = )", layer.derivative)
    by_lhs = {p.split(" = ", 1)[0]: p for p in parts if " = " in p}
    params = {}
    for local in layer.params(spec):
        piece = by_lhs.pop(f"d{_SYMBOL.get(local, local)}", None)
        if piece:
            params[local] = piece
    dx = next((p for p in by_lhs.values() if _INPUT_GRADIENT.match(p)), "")
    helpers = [p for lhs, p in by_lhs.items() if dx and p != dx and lhs in dx.split(" = ", 1)[1]]
    return params, ", ".join([dx, *helpers]) if dx else ""


def _attr_value(v: Any) -> str:
    """One attribute value in TOML: true, 3, [3, 2] (a Spec keeps a pair as a tuple)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_attr_value(e) for e in v) + "]"
    return str(v)


def _attrs_text(spec: Spec) -> str:
    """The attributes as a case file spells them, defaults included: "units=16 bias=true",
    "kernel=[3, 2]"."""
    if spec.kind == "residual":
        return f"body = layers {spec.index + 1}..{spec['end']}"
    return " ".join(f"{k}={_attr_value(v)}" for k, v in spec.attrs if v is not None)


def _dims(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def _layer_table(net: Network, m: int) -> list[str]:
    """One line per layer: index, kind, attributes, per-example shapes, parameter and input keys."""
    params, inputs = net.param_specs(), net.input_specs(m)
    regularised = set(net.regularised()) if net.l2 else set()
    cells = []
    for spec in net.network:
        keys = [f"{k} {_dims(p.shape)}{' (L2)' if k in regularised else ''}"
                for k, (s, _, p) in params.items() if s is spec]
        keys += [f"{k} {_dims(shape)} (input)" for k, (s, _, shape, _) in inputs.items() if s is spec]
        cells.append((spec.index, spec.kind, _attrs_text(spec),
                      f"[{_dims(spec.in_shape)}] → [{_dims(spec.out_shape)}]", ", ".join(keys)))
    w = [max(len(str(c[j])) for c in cells) for j in range(4)]
    return [f"  {i:>{w[0]}}  {kind:<{w[1]}}  {attrs:<{w[2]}}  {shapes:<{w[3]}}  {keys}".rstrip()
            for i, kind, attrs, shapes, keys in cells]


def _in(net: Network, spec: Spec) -> str:
    """The name of the layer's input: X or a^[k] (past residuals, not always a^[i−1])."""
    key = net.input_key(spec)
    return _q("a", 0 if key == "X" else int(key[1:]))


def _forward_shapes(spec: Spec, m: int, params: dict[str, Any]) -> str:
    """The layer's input, and its parameters: "16×20, W 20×32, b 1×32"."""
    own = [f"{local} {_dims(p.shape)}" for _, (s, local, p) in params.items() if s is spec]
    return ", ".join([f"{m}×{_dims(spec.in_shape)}", *own])


def explain_network(case: Case, manual: dict[str, Array], others: dict[str, dict[str, Array] | str]) -> str:
    """The walkthrough of a network case: the layers, the forward pass layer by layer, J (with
    the L2 term), and the backward pass from the top, every step with its differences."""
    net, m = case.model, case.batch
    arrays, params = case.arrays(), net.param_specs()
    lines: list[str] = []
    say = lines.append
    width = max(len(f"{_forward_shapes(s, m, params)} → {m}×{_dims(s.out_shape)}") for s in net.network)
    step = _stepper(say, manual, others, max(26, width))

    say(f"Case {case.name}: {net.describe()}, batch m = {m}")
    if case.description:
        say(f"  {case.description}")
    spatial = any(len(shape) > 1 for s in net.network for shape in (s.in_shape, s.out_shape))
    say("Row-vector convention: one example is a row; X stacks the m examples (batch axis first). "
        "Numbers show row 1" + (" (of an array with more axes, its first line along the last axis: "
                                "x[0, 0, 0, :] of N×C×H×W, W[0, 0, 0, :] of a kernel)." if spatial else "."))
    say("")
    say("LAYERS  (layer i turns a^[i−1] into a^[i], a^[0] = X; a fused activation keeps z^[i] "
        "before it)")
    lines += _layer_table(net, m)
    say("")
    say("FORWARD PASS  (each layer's formula as the catalog writes it)")
    step("", "a^[0] = X", None, value=arrays["X"])
    for spec in net.network:
        i, layer = spec.index, LAYERS[spec.kind]
        if spec.kind == "residual":
            say(f"  i={i}  residual: its body is layers {i + 1}..{spec['end']}, on {_in(net, spec)}; "
                f"a^[{i}] = {_in(net, spec)} + a^[{spec['end']}] after it")
            continue
        out = _q("z", i) if spec.activation else _q("a", i)
        step(f"i={i}", f"{out} = {spec.kind}({_in(net, spec)}),  {layer.formula}", f"z{i}" if spec.activation
             else f"a{i}", _forward_shapes(spec, m, params))
        if spec.activation:
            step("", f"{_q('a', i)} = {spec.activation}({_q('z', i)}),  {LAYERS[spec.activation].formula}", f"a{i}")
        for r in net.closers(i):
            inner = net.network[r - 1]
            step(f"i={r}", f"{_q('a', r)} = {_in(net, inner)} + {_q('a', inner['end'])},  residual: the skip "
                           "adds the body's input back", f"a{r}")
    say("")
    _cost_steps(net, arrays, manual, step)
    say("")
    say("BACKWARD PASS  (d· means ∂J/∂·; the 1/m of the mean enters once, at the top)")
    say("  Layer by layer from the top: what the catalog's names stand for here, then each step.")
    for spec in reversed(net.network):
        if spec.kind == "residual":
            say(f"  i={spec.index:<3}residual: d{_in(net, spec)} = {_q('da', spec.index)} (the skip) + "
                f"layer {spec.index + 1}'s input gradient (the body): both paths add up")
            continue
        for r in reversed(net.closers(spec.index)):
            step(f"i={r}", f"{_q('da', r)}: residual {r}'s output gradient, passed unchanged to the skip "
                           f"and to a^[{spec.index}]", f"da{r}")
        _backward_steps(net, spec, say, step)
    say("")
    say(f"Largest difference from the frameworks over every step above: {_worst(manual, others)}")
    return "\n".join(lines)


def _cost_steps(net: Network, arrays: dict[str, Array], manual: dict[str, Array],
                step: Callable[..., None]) -> None:
    """J, and when the case has l2 its two terms first: the data term and c·Σ W² (shown, not
    compared: the backends return J only)."""
    loss = NETWORK_LOSSES[net.loss]
    data = f"(1/m) Σᵢ 𝓛⁽ⁱ⁾,  {loss.formula}, s = a^[{net.output_key[1:]}]"
    if not net.l2:
        step("", f"J = {data}", "J")
        return
    term, _ = L2_FORMS[net.l2_form]
    step("", f"J_data = {data}", None, value=loss.cost(manual[net.output_key], targets(net, arrays)))
    step("", f"J_L2 = {term} over {', '.join(net.regularised())},  λ = {net.l2:g}, "
             f"l2_form = {net.l2_form}", None, value=np.asarray(l2_term(net, arrays, arrays["X"].shape[0])))
    step("", "J = J_data + J_L2", "J")


def _backward_steps(net: Network, spec: Spec, say: Callable[[str], None], step: Callable[..., None]) -> None:
    """Layer i from the top: da^[i], dz^[i] for a fused activation, then its parameters' d."""
    i, L = spec.index, net.L
    layer = LAYERS[spec.kind]
    pieces, _ = _pieces(spec)
    dy = _q("dz", i) if spec.activation else _q("da", i)
    missing = any(local not in pieces for local in layer.params(spec))
    names = _named(f"{layer.formula} {layer.derivative}", _INPUT_NAMES)[:1] or ["x"]
    names = [f"{names[0]} = {_in(net, spec)}"] + [
        f"{n} = {dy}" for n in _named(layer.derivative, _GRADIENT_NAMES)[:1] or ["dy"]]
    say(f"  i={i:<3}{spec.kind}: {', '.join(names)}" + (f";  {layer.derivative}" if missing else ""))
    takers = [s for s in net.network if s.kind != "residual" and net.input_key(s) == f"a{i}"]
    if i == L:
        delta = NETWORK_LOSSES[net.loss].delta
        step("", f"{_q('da', i)} = ∂J/∂s = (1/m) ∂𝓛/∂s,  ∂𝓛/∂s = {delta}", f"da{i}")
    elif net.closers(i):
        step("", f"{_q('da', i)} = {_q('da', net.closers(i)[0])} (the residual adds a^[{i}] unchanged)", f"da{i}")
    else:
        above = takers[0] if takers else net.network[i]  # the layer whose backward gives da^[i]
        _, dx = _pieces(above)
        step("", f"{_q('da', i)} = layer {above.index}'s " + (dx or "input gradient (its backward above)")
             + (" + the skip of the residuals it feeds" if len(takers) > 1 or any(
                 s.kind == "residual" and net.input_key(s) == f"a{i}" for s in net.network) else ""), f"da{i}")
    if spec.activation:
        if spec.activation == SOFTMAX:
            formula = f"ŷ ∘ (da − Σ_k da_k ŷ_k), ŷ = {_q('a', i)}"
        else:
            formula = f"{_q('da', i)} ∘ g'({_q('z', i)}),  {_gprime_text(spec.activation)}"
        step("", f"{_q('dz', i)} = {formula}", f"dz{i}")
    regularised = set(net.regularised()) if net.l2 else set()
    _, grad = L2_FORMS[net.l2_form]
    for key, (s, local, _) in net.param_specs().items():
        if s is not spec:
            continue
        formula = _q("d" + local, i) + (f":  {pieces[local]}" if local in pieces else "")
        if key in regularised:
            formula += f", plus {re.sub(r'W$', _q(local, i), grad)} from J_L2"
        step("", formula, f"d{key}")
