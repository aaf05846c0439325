"""A worked example: one case's forward and backward pass, step by step, as a learner follows it.

Every line is one step of the derivation: the formula, the shapes, the first few numbers
(row 1 of the batch), and the largest |difference| from torch and JAX at that very step.
"""

from __future__ import annotations

import numpy as np

from .activations import ACTIVATIONS, SOFTMAX
from .cases import Case
from .losses import LOSSES

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


def explain(case: Case, manual: dict[str, Array], others: dict[str, dict[str, Array] | str]) -> str:
    """The walkthrough text. ``manual`` is the manual backend's full output; ``others`` maps
    framework names to theirs (or to an error string)."""
    model, m = case.model, case.batch
    L, acts = model.L, model.activations
    lines: list[str] = []
    say = lines.append

    def step(label: str, formula: str, key: str | None, shapes: str = "", value: Array | None = None) -> None:
        val = manual[key] if key else value
        say(f"  {label:<5}{formula}")
        detail = f"{shapes + ' → ' if shapes else ''}{_shape(val)}"
        tail = _diff(key, manual, others) if key else ""
        say(f"       {detail:<26} {_nums(val):<46} {tail}".rstrip())

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
