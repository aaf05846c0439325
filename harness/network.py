"""A network as a stack of catalog layers, and its reference forward and backward in numpy.

``Network`` is the model of a case written with ``network = [...]``: the per-example input
shape, the layer specs (from ``harness.catalog``), the loss, the dtype and the L2 penalty.
It answers the same questions as ``Model`` (the quantities a backend returns, their shapes
and order), so the runner, the comparison and the reports treat both alike.

Names (layer i counted from 1): the output of layer i is ``a{i}``; a layer with a fused
activation also has its pre-activation ``z{i}``; the backward gives ``da{i}`` = ∂J/∂a^[i] and
``dz{i}`` = ∂J/∂z^[i]; parameters are ``{name}{i}`` (``W1``, ``gamma2``) and their gradients
``d{name}{i}``; extra inputs (dropout's mask) ``{name}{i}`` too.

A ``residual`` layer r is followed in ``network`` by its body (layers r+1 … its ``end``,
depth-first); its output a{r} = input + the body's output is made right after the body's last
layer. Every walk here (``walk``, ``forward``, ``backprop``) keeps a stack of the open
residuals' inputs for that; ``input_key`` names the value a layer really takes.

``backprop`` walks the layers calling each one's hand-written backward: it is the manual
arm. It never imports torch or jax.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Callable, Mapping

import numpy as np

from .activations import forward as act_forward
from .catalog import LAYERS, NETWORK_LOSSES, Spec, act_backward, act_kinks, l2_coefficient

Array = np.ndarray
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Network:
    """A stack of catalog layers in the row-vector convention (batch first)."""

    input: tuple[int, ...]
    network: tuple[Spec, ...]
    loss: str
    dtype: str
    l2: float = 0.0
    l2_form: str = "half"
    vocab: int = 0  # > 0: X holds token ids in [0, vocab), input = [T]

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def L(self) -> int:
        """The number of layers."""
        return len(self.network)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.network[-1].out_shape

    def param_specs(self) -> dict[str, tuple[Spec, str, Any]]:
        """{key: (layer spec, local name, Param)} in layer order."""
        return dict(self._param_specs)

    @cached_property
    def _param_specs(self) -> dict[str, tuple[Spec, str, Any]]:
        # Cached: finite differences ask for the keys on every one of thousands of forward passes.
        out = {}
        for spec in self.network:
            for local, param in LAYERS[spec.kind].params(spec).items():
                out[spec.key(local)] = (spec, local, param)
        return out

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: p.shape for k, (_, _, p) in self.param_specs().items()}

    def regularised(self) -> list[str]:
        """The parameters the L2 term covers: weight matrices, not biases, gamma or beta."""
        return [k for k, (_, _, p) in self._param_specs.items() if p.regularised]

    def input_specs(self, m: int) -> dict[str, tuple[Spec, str, tuple[int, ...], Callable]]:
        """Extra inputs (not differentiated): {key: (spec, local name, shape, draw)}."""
        out = {}
        for spec in self.network:
            for local, (shape, draw) in LAYERS[spec.kind].inputs(spec, m).items():
                out[spec.key(local)] = (spec, local, shape, draw)
        return out

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes().values())

    def quantities(self) -> list[str]:
        """Required of every backend: J and d{key} for every parameter."""
        return ["J"] + [f"d{k}" for k in self.param_shapes()]

    @cached_property
    def _flow(self) -> tuple[dict[int, tuple[int, ...]], dict[int, str]]:
        """How values flow past residuals: ({layer i: the residuals whose body ends with layer i,
        innermost first}, {layer i: the key of its input, "X" or a{k}})."""
        closers: dict[int, list[int]] = {}
        for spec in self.network:
            if spec.kind == "residual":
                closers.setdefault(spec["end"], []).insert(0, spec.index)  # later opened = inner
        source: dict[int, str] = {}
        prev = "X"
        for spec in self.network:
            source[spec.index] = prev  # a residual's body starts on the residual's own input
            if spec.kind != "residual":
                prev = f"a{spec.index}"
                for r in closers.get(spec.index, ()):
                    prev = f"a{r}"
        return {i: tuple(r) for i, r in closers.items()}, source

    @property
    def output_key(self) -> str:
        """The key of the network's output s: a{L}, or the outermost residual that ends there."""
        return self._values()[-1][0]

    def closers(self, i: int) -> tuple[int, ...]:
        """The residuals whose body ends with layer i, innermost first (their a{r} follow a{i})."""
        return self._flow[0].get(i, ())

    def input_key(self, spec: Spec) -> str:
        """The key of the value layer ``spec`` takes: "X" for the first, else a{k} (past a
        residual, the residual's output; inside a body's first layer, the residual's input)."""
        return self._flow[1][spec.index]

    def _values(self) -> list[tuple[str, Spec]]:
        """z{i}, a{i} in the order the forward pass makes them (a residual's a{r} after its body)."""
        out = []
        for spec in self.network:
            if spec.kind == "residual":
                continue
            if spec.activation:
                out.append((f"z{spec.index}", spec))
            out.append((f"a{spec.index}", spec))
            out += [(f"a{r}", self.network[r - 1]) for r in self.closers(spec.index)]
        return out

    def intermediates(self) -> list[str]:
        """Optional: forward z{i}, a{i}; backward da{n}, dz{n}, da{n-1}, ... in the order of the pass."""
        forward = [q for q, _ in self._values()]
        return forward + ["d" + q for q in reversed(forward)]

    def optional(self) -> list[str]:
        return self.intermediates() + ["Jv"]

    def algorithm_order(self) -> list[str]:
        """J and the forward values, then per layer from the top: da, dz, its parameters' d."""
        order = ["J"] + [q for q, _ in self._values()]
        params = self.param_specs()
        for spec in reversed(self.network):
            if spec.kind == "residual":
                continue
            order += [f"da{r}" for r in reversed(self.closers(spec.index))]
            order.append(f"da{spec.index}")
            if spec.activation:
                order.append(f"dz{spec.index}")
            order += [f"d{k}" for k, (s, _, _) in params.items() if s is spec]
        return order

    def shape_of(self, quantity: str, m: int) -> tuple[int, ...]:
        if quantity == "J":
            return ()
        if quantity == "Jv":
            from .directional import N_DIRECTIONS
            return (N_DIRECTIONS,)
        shapes = self.param_shapes()
        if quantity.startswith("d") and quantity[1:] in shapes:
            return shapes[quantity[1:]]
        match = re.fullmatch(r"d?[za](\d+)", quantity)
        if match:
            return (m, *self.network[int(match.group(1)) - 1].out_shape)
        raise KeyError(quantity)

    @staticmethod
    def layer_of(quantity: str) -> int | None:
        match = re.search(r"(\d+)$", quantity)
        return int(match.group(1)) if match else None

    def shape_seed(self) -> tuple[int, ...]:
        """Integers that identify the parameter shapes (seeds the directional check's v)."""
        return tuple(n for s in self.param_shapes().values() for n in (len(s), *s))

    def describe(self) -> str:
        parts = []
        for spec in self.network:
            parts.append("residual(" if spec.kind == "residual" else spec.describe())
            parts += [")"] * len(self.closers(spec.index))
        arch = " ".join(parts).replace("( ", "(").replace(" )", ")")
        l2 = f" l2={self.l2:g}({self.l2_form})" if self.l2 else ""
        shape = f"{self.input[0]} ids<{self.vocab}" if self.vocab else "×".join(map(str, self.input))
        return f"[{shape}] {arch} {self.loss}{l2} {self.dtype}"

    def structurally_zero(self, quantity: str) -> bool:
        """Whether ``quantity`` is 0 in exact arithmetic whatever the inputs, so that every arm
        returns rounding noise for it (noise against noise: it passes by the rounding floor, and
        says nothing about the tolerance table or about which pair is the worst):
        - db of a dense or conv2d layer without activation (or with identity), and dβ of a
          batch or layer norm, whose output reaches a batch norm through nothing but layers
          that keep a shift the same for every example (``_shift_reaches_a_norm``): the norm
          subtracts the mean over the batch, and the shift b or β brings with it;
        - attention's dbk: bk adds q_t·bk to every score of query t's row, and a softmax does
          not move when its row is shifted."""
        match = re.fullmatch(r"d(bk|b|beta)(\d+)", quantity)
        if not match or not 1 <= int(match.group(2)) <= self.L:
            return False
        spec = self.network[int(match.group(2)) - 1]
        if match.group(1) == "bk":
            return spec.kind == "attention"
        if match.group(1) == "beta":
            return spec.kind in ("batchnorm", "layernorm") and self._shift_reaches_a_norm(spec)
        if spec.kind not in ("dense", "conv2d") or spec.activation not in (None, "identity"):
            return False
        return self._shift_reaches_a_norm(spec)

    def _shift_reaches_a_norm(self, spec: Spec) -> bool:
        """Follow the shift that layer ``spec``'s bias adds (the same for every example) up the
        network to a batch norm that removes it. A batch norm over one value per feature
        averages over the batch alone and removes any such shift; over [T, D] or [C, H, W] it
        also averages over steps or positions, and removes only a shift that is one number per
        feature D or channel C ("per channel"). A conv's b is per channel, and so are a norm's β
        and a dense's b on [T, D] (it acts on the last axis; the catalog has no dense on
        [C, H, W]). Through identity, a dense or conv without activation, flatten and average
        pooling a shift stays the same for every example; it stays per channel through
        identity, pools and a dense, and not through a conv (zero padding weighs border
        positions differently: not followed) or a flatten. Max pooling keeps only a per-channel
        shift (max(x + c) = max(x) + c needs one c over the window). Anything else (an
        activation, dropout's per-example mask, a residual's sum, a layer norm) ends the search:
        not known to be 0, never claimed."""
        per_channel = True  # every shift starts as one number per feature or channel (above)
        value = f"a{spec.index}"
        for above in self.network[spec.index:]:
            if above.kind == "residual" or self.input_key(above) != value:
                return False
            if above.kind == "batchnorm":
                return per_channel or len(above.in_shape) == 1
            if above.kind in ("dense", "conv2d") and above.activation not in (None, "identity"):
                return False
            if above.kind == "maxpool2d" and not per_channel:
                return False
            if above.kind not in ("identity", "dense", "conv2d", "flatten", "avgpool2d", "maxpool2d"):
                return False
            if above.kind in ("conv2d", "flatten"):
                per_channel = False
            value = f"a{above.index}"
        return False

    def numbered(self) -> str:
        """Every layer with its index, a residual with the layers of its body:
        "1 embedding9x8 · 2 residual(3–4) · 3 layernorm · 4 attention2,causal · …"."""
        return " · ".join(f"{s.index} residual({s.index + 1}–{s['end']})" if s.kind == "residual"
                          else f"{s.index} {s.describe()}" for s in self.network)

    @property
    def per_step(self) -> bool:
        """Class ids per step: cross-entropy on an N×T×V output, y of N×T."""
        return NETWORK_LOSSES[self.loss].target == "y" and len(self.output_shape) == 2

    @property
    def label_shape(self) -> tuple[int, ...]:
        """The per-example shape of y (and of target_mask): () or (T,)."""
        return self.output_shape[:-1]

    def l2_coefficient(self, m: int) -> float:
        return l2_coefficient(self.l2, self.l2_form, m) if self.l2 else 0.0


@lru_cache(maxsize=4096)
def _keys(spec: Spec) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """((local, key) of each parameter, (local, key) of each extra input) of one layer."""
    layer = LAYERS[spec.kind]
    return (tuple((local, spec.key(local)) for local in layer.params(spec)),
            tuple((local, spec.key(local)) for local in layer.inputs(spec, 1)))


def layer_params(spec: Spec, arrays: Mapping[str, Array]) -> dict[str, Array]:
    return {local: arrays[key] for local, key in _keys(spec)[0]}


def layer_inputs(spec: Spec, arrays: Mapping[str, Array]) -> dict[str, Array]:
    return {local: arrays[key] for local, key in _keys(spec)[1]}


def walk(net: Network, x: Any, params: Mapping[str, Any], inputs: Mapping[str, Any],
         layer_forward: Callable, activation: Callable, tap: Callable = lambda q, v: v) -> tuple[Any, dict]:
    """The forward pass in any framework's arrays: ``layer_forward(layer, spec, x, p, inp)`` runs
    one catalog layer (its ``torch`` or ``jax`` form), ``activation(name, z)`` a fused one, and
    ``tap(key, value)`` may stand in for each recorded value (jax adds a zero to take ∂J/∂ of
    it). Returns the output s and {z{i}, a{i}}."""
    values: dict[str, Any] = {}
    a = x
    skips: list[Any] = []  # the inputs of the residuals whose body is running, innermost last
    for spec in net.network:
        i = spec.index
        if spec.kind == "residual":
            skips.append(a)
            continue
        param_keys, input_keys = _keys(spec)
        y = layer_forward(LAYERS[spec.kind], spec, a, {local: params[key] for local, key in param_keys},
                          {local: inputs[key] for local, key in input_keys})
        if spec.activation:
            y = values[f"z{i}"] = tap(f"z{i}", y)
            y = activation(spec.activation, y)
        a = values[f"a{i}"] = tap(f"a{i}", y)
        for r in net.closers(i):
            a = values[f"a{r}"] = tap(f"a{r}", LAYERS["residual"].merge(skips.pop(), a))
    return a, values


TARGET_KEYS = ("y", "Y", "target_mask")


def targets(net: Network, arrays: Mapping[str, Array]) -> dict[str, Array]:
    """What the loss reads: y (class ids) and Y (their one-hot, or real targets), target_mask."""
    return {k: arrays[k] for k in TARGET_KEYS if k in arrays}


def l2_term(net: Network, arrays: Mapping[str, Array], m: int) -> float:
    """c·Σ W² over the regularised parameters (0 without l2)."""
    c = net.l2_coefficient(m)
    return c * sum(float((arrays[k] * arrays[k]).sum()) for k in net.regularised()) if c else 0.0


def _open_skips(net: Network, start: int, base: Mapping[str, Array] | None, X: Array) -> list[Array]:
    """The inputs of the residuals whose body layer ``start`` is in (outermost first), from the
    values of a pass: a forward that starts inside a body still adds its skip at the end."""
    out = []
    for spec in net.network[:start]:
        if spec.kind == "residual" and spec.index < start <= spec["end"]:
            key = net.input_key(spec)
            out.append(X if key == "X" else base[key])
    return out


def forward(net: Network, arrays: Mapping[str, Array], start: int = 0, x: Array | None = None,
            at_z: bool = False, sides: list | None = None, base: Mapping[str, Array] | None = None
            ) -> tuple[Array, dict[str, Array], dict]:
    """Run the layers after layer ``start`` (from X when 0) on ``x``.

    ``at_z``: ``x`` is z^[start], so layer ``start``'s fused activation runs first.
    ``sides``: a list that collects each kinked step's ``kink_sides`` (finite differences).
    ``base``: the values of a whole pass ({a{i}, ..., "X"}), needed when ``start`` is inside a
    residual's body (its skip is the residual's input).
    Returns the output s, the values {z{i}, a{i}} and the caches for ``backward``.
    """
    a = arrays["X"] if start == 0 else x
    values: dict[str, Array] = {}
    caches: dict[int, Any] = {}
    skips = _open_skips(net, start, base, arrays["X"]) if start else []
    if at_z:
        spec = net.network[start - 1]
        if sides is not None:
            sides.append(act_kinks(spec.activation, a))
        a = act_forward(spec.activation, a)
    resume = start
    if start:
        if net.network[start - 1].kind == "residual":  # x is a residual's output: go on after its body
            resume = net.network[start - 1]["end"]
        for r in net.closers(resume):
            if r < start:  # the residuals around layer ``start`` that end with it close now
                a = values[f"a{r}"] = LAYERS["residual"].merge(skips.pop(), a)
    for spec in net.network[resume:]:
        layer = LAYERS[spec.kind]
        if spec.kind == "residual":
            skips.append(a)
            continue
        if sides is not None:
            sides.append(layer.kink_sides(spec, a))
        y, caches[spec.index] = layer.forward(spec, a, layer_params(spec, arrays), layer_inputs(spec, arrays))
        if spec.activation:
            values[f"z{spec.index}"] = y
            if sides is not None:
                sides.append(act_kinks(spec.activation, y))
            y = act_forward(spec.activation, y)
        values[f"a{spec.index}"] = y
        a = y
        for r in net.closers(spec.index):
            a = values[f"a{r}"] = LAYERS["residual"].merge(skips.pop(), a)
    if sides is not None:
        sides.append(NETWORK_LOSSES[net.loss].kink_sides(a, targets(net, arrays)))
    return a, values, caches


def cost(net: Network, arrays: Mapping[str, Array], s: Array) -> Array:
    """J = (1/m) Σᵢ 𝓛⁽ⁱ⁾ + the L2 term, from the network's output s."""
    m = arrays["X"].shape[0]
    J = NETWORK_LOSSES[net.loss].cost(s, targets(net, arrays))
    return np.asarray(J + l2_term(net, arrays, m), dtype=J.dtype) if net.l2 else J


Backward = Callable[[Spec, Array, Any], tuple[Array, dict[str, Array]]]


def backprop(net: Network, arrays: Mapping[str, Array],
             backward_of: Mapping[str, Backward] | None = None,
             forwarded: tuple[Array, dict[str, Array], dict] | None = None) -> dict[str, Array]:
    """The manual arm: J, the forward values, and every gradient by the layers' hand-written
    backwards, from the top down:
        da^[n] = ∂J/∂s (the loss's delta, 1/m included)
        dz^[i] = da^[i] ∘ g'(z^[i])          where layer i has a fused activation
        da^[i-1], d(params of i) = layer i's backward of dz^[i] (or da^[i])
        dW += 2c·W                           for the L2 term c·Σ W²
    ``backward_of``: {layer kind: backward} replaces a layer's backward (the mutants of
    selfcheck, a user's layer function). ``forwarded``: ``forward(net, arrays)``'s result, where
    the caller has it already (``ties.tie_masks`` needs the caches too).
    """
    m = arrays["X"].shape[0]
    s, values, caches = forwarded if forwarded is not None else forward(net, arrays)
    out: dict[str, Array] = {"J": cost(net, arrays, s), **values}
    da = NETWORK_LOSSES[net.loss].grad(s, targets(net, arrays))
    c = net.l2_coefficient(m)
    regularised = set(net.regularised())
    skip_da: dict[int, Array] = {}  # ∂J/∂a{r} of each residual, kept for its skip path
    for spec in reversed(net.network):
        i = spec.index
        backward = (backward_of or {}).get(spec.kind)
        if spec.kind == "residual":
            # da is now ∂J/∂x along the body; the skip path adds ∂J/∂a{i} itself.
            da, _ = (backward or LAYERS["residual"].backward)(spec, skip_da.pop(i), da)
            continue
        for r in reversed(net.closers(i)):  # outermost first: a{r} = x + (... + a{i})
            out[f"da{r}"] = skip_da[r] = da
        out[f"da{i}"] = da
        dy = da
        if spec.activation:
            z, a = values[f"z{i}"], values[f"a{i}"]
            dy = out[f"dz{i}"] = act_backward(spec.activation, da, z, a)
        if backward is not None:
            da, dparams = backward(spec, dy, caches[i])
        elif i == 1:  # ∂J/∂X is not a quantity: the parameter gradients alone
            dparams = LAYERS[spec.kind].param_backward(spec, dy, caches[i])
        else:
            da, dparams = LAYERS[spec.kind].backward(spec, dy, caches[i])
        for local, d in dparams.items():
            key = spec.key(local)
            out[f"d{key}"] = d + 2 * c * arrays[key] if key in regularised and c else d
    return out
