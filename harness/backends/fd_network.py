"""Finite differences on a catalog network: nudge one coordinate, run the numpy forward of
every layer from the nudged one up, difference J.

The MLP rule of ``fd.py`` differences each example's loss on its own; that needs the examples
to be independent, and batch norm couples them (every example's output moves with the batch
mean). Here J itself is differenced, with the textbook step of the method,
h = (ε·max(1, |J|))^exponent (central: ε^(1/3), forward: ε^(1/2), Richardson: ε^(1/5)), or the
fixed step of a variant (the nudge's 1e-3). Parameters are nudged by coordinates (a seeded
sample on a large case) or, above ``max_coords`` with the central method, along seeded
directions (vᵀ∇J); the intermediates z{i}, a{i} are nudged element by element, running only
the layers above them.

Every central or forward quotient is checked by a second one at 2h, which measures its
truncation error; where that uses more than TRUNCATION_SHARE of the tolerance (batch norm
over a few examples bends J fast), the central rule retries at the step the measured curvature
calls for. A nudge that moves any kinked value across its kink (relu, leaky_relu at 0; a hinge
margin at 0; which element of a max-pool window is the largest) is retried with shorter steps
(KINK_RETRY, as short as round-off allows): on a conv net of a million relu inputs a random
direction nearly always passes some kink within h. A coordinate no step resolves, or that
crosses a kink at every step tried, is inconclusive: masked, counted, not compared.

Where no layer couples the examples (no batch norm), a nudge of example n's intermediate moves
only its own loss: the layers above run on that example alone, J = J0 + (𝓛⁽ⁿ⁾ − 𝓛⁽ⁿ⁾₀)/m,
m times less work than the whole batch. Numpy only.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..catalog import LAYERS, NETWORK_LOSSES
from ..directional import directions
from ..network import Network, cost, forward, targets
from ..tolerances import TOLERANCES
from .base import Gradients, NotApplicable

Array = np.ndarray
# Of its tolerance row, the most a difference quotient's own truncation error may use: where
# more, the central rule tries the step the measured curvature calls for, and a coordinate no
# step resolves (or a fixed step, like the nudge's 1e-3, does not) is inconclusive, not compared.
TRUNCATION_SHARE = 0.1
# Coordinates nudged per case, at most (a seeded sample beyond, at least 32 of every array):
# every nudge of a network runs its layers in Python, twice over for the 2h check.
PARAM_COORDS = 1024
INTERMEDIATE_COORDS = 512  # the intermediates z{i}, a{i}
# Where a nudge crosses a kink, the central rule retries at h0/16 and h0/256 (no shorter than
# its round-off allows) before calling the coordinate inconclusive.
KINK_RETRY = (16, 256)


def _crossed(base: list, other: list) -> bool:
    return any(b is not None and not np.array_equal(b, o) for b, o in zip(base, other))


class _Evaluator:
    """J of the network with one array replaced, and whether a kink was crossed."""

    def __init__(self, net: Network, f: dict[str, Array]) -> None:
        self.net, self.f = net, f
        self.base_sides: list = []
        s, self.values, _ = forward(net, f, sides=self.base_sides)
        self.J0 = float(cost(net, f, s))
        self.values["a0"] = f["X"]
        self._sides_from: dict[tuple[int, bool], list] = {}
        self._L0: dict[tuple[int, int, bool], float] = {}

    def _base_sides_from(self, start: int, at_z: bool) -> list:
        """The kink sides of the unperturbed pass, from the same starting point."""
        key = (start, at_z)
        if key not in self._sides_from:
            x = self.values[f"z{start}" if at_z else f"a{start}"]
            sides: list = []
            forward(self.net, self.f, start=start, x=x, at_z=at_z, sides=sides, base=self.values)
            self._sides_from[key] = sides
        return self._sides_from[key]

    @cached_property
    def separable(self) -> bool:
        """Whether each example's loss depends on that example alone (no batch norm): then a
        nudge of one example's intermediate moves only its own loss."""
        return not any(LAYERS[s.kind].couples_examples for s in self.net.network)

    @cached_property
    def _residuals(self) -> bool:
        return any(s.kind == "residual" for s in self.net.network)

    @cached_property
    def _batch_keys(self) -> set[str]:
        rows = {k for k, (_, _, p) in self.net.param_specs().items() if p.per_example}  # h0
        return {"X", "y", "Y", "target_mask", *self.net.input_specs(1), *rows}

    def _example(self, n: int) -> dict[str, Array]:
        return {k: (v[n:n + 1] if k in self._batch_keys else v) for k, v in self.f.items()}

    def _loss(self, n: int, start: int, at_z: bool, x: Array, sides: list | None = None) -> float:
        one = self._example(n)
        # the skips of open residuals, sliced only where there are residuals (a hot path)
        base = {k: v[n:n + 1] for k, v in self.values.items()} if self._residuals else None
        s, _, _ = forward(self.net, one, start=start, x=x, at_z=at_z, sides=sides, base=base)
        return float(NETWORK_LOSSES[self.net.loss].cost(s, targets(self.net, one)))

    def J_example(self, n: int, start: int, at_z: bool, x: Array) -> tuple[float, bool]:
        """J with example n's intermediate replaced by ``x`` (1×…), running the layers above
        on that example alone: J0 + (𝓛⁽ⁿ⁾ − 𝓛⁽ⁿ⁾₀)/m. The L2 term does not move."""
        key = (n, start, at_z)
        if key not in self._L0:
            x0 = self.values[f"z{start}" if at_z else f"a{start}"][n:n + 1]
            self._L0[key] = self._loss(n, start, at_z, x0)
        sides: list = []
        L = self._loss(n, start, at_z, x, sides)
        base = [None if b is None else b[n:n + 1] for b in self._base_sides_from(start, at_z)]
        m = self.f["X"].shape[0]
        return self.J0 + (L - self._L0[key]) / m, _crossed(base, sides)

    def J(self, start: int, at_z: bool, x: Array | None, arrays: dict[str, Array]) -> tuple[float, bool]:
        """J running the layers after ``start`` on ``x`` (z^[start] if ``at_z``), with ``arrays``."""
        sides: list = []
        s, _, _ = forward(self.net, arrays, start=start, x=x, at_z=at_z, sides=sides, base=self.values)
        base = self._base_sides_from(start, at_z) if start else self.base_sides
        return float(cost(self.net, arrays, s)), _crossed(base, sides)


def network_gradients(fd, net: Network, arrays: dict[str, Array]) -> dict[str, Array]:
    """The finite-difference backend's result for a catalog network (see the module doc)."""
    if fd.method.name == "complex":
        raise NotApplicable("complex step is written for the MLP form only, not for catalog networks")
    work = np.float64 if fd.precision == "float64" else net.np_dtype
    # Ids (y, token X) stay integers.
    f = {k: (v if np.issubdtype(v.dtype, np.integer) else np.asarray(v, dtype=work)) for k, v in arrays.items()}
    dt = net.np_dtype
    eps = float(np.finfo(work).eps)
    ev = _Evaluator(net, f)
    J_size = max(1.0, abs(ev.J0))
    h0 = fd.step if fd.step is not None else (eps * J_size) ** fd.method.exponent
    offsets = [float(o.real) for o in fd.method.offsets]
    out: dict[str, Array] = {"J": np.asarray(ev.J0, dtype=dt)}
    # The forward values of the pass the nudges start from (in the working precision, cast).
    out.update({q: v.astype(dt) for q, v in ev.values.items() if q != "a0"})
    rule = (f"h = {fd.step:g} fixed" if fd.step is not None
            else f"h = (ε·max(1,|J|))^{fd.method.exponent:.3g}, J of the whole batch")
    notes = [f"{fd.method.name} differences, {rule}, J in {fd.precision}"]
    crossed_counts: dict[str, int] = {}

    tol = TOLERANCES.get((net.dtype, fd.kind))
    unresolved: dict[str, int] = {}

    def quotient(theta: float, J_at, h: float) -> tuple[float, bool]:
        """The method's difference quotient at one coordinate with step h; J_at(value) -> (J, crossed)."""
        pts, Js, crossed = [], [], False
        for o in offsets:
            p = float(np.asarray(theta + o * h, dtype=work))
            J, c = J_at(p)
            pts.append(p)
            Js.append(J)
            crossed |= c
        if fd.method.name == "forward":
            return (Js[0] - ev.J0) / (pts[0] - theta), crossed
        central = (Js[0] - Js[1]) / (pts[0] - pts[1])
        if fd.method.name == "central":
            return central, crossed
        half = (Js[2] - Js[3]) / (pts[2] - pts[3])
        return (4 * half - central) / 3, crossed

    # A quotient's error grows like h^k (central k = 2, forward 1, Richardson 4): a second
    # quotient at 2h measures it, |D(2h) − D(h)| / (2^k − 1).
    order = {"central": 2, "forward": 1, "richardson": 4}.get(fd.method.name)

    def shorter(theta: float, J_at) -> tuple[float | None, bool]:
        """After a kink within 2·h0: on a large net some relu or pool window almost always lies
        that close along a random direction. Shorter steps (KINK_RETRY) see fewer, down to the
        step whose round-off ε·max(1,|J|)/h is still a TRUNCATION_SHARE of the atol."""
        h_min = eps / (TRUNCATION_SHARE * tol.atol)
        d = None
        for h in dict.fromkeys(max(h0 / f, h_min) for f in KINK_RETRY):
            if h >= h0:
                break
            d, crossed = quotient(theta, J_at, h)
            if not crossed:
                d2, crossed = quotient(theta, J_at, 2 * h)
                if not crossed:
                    allowed = TRUNCATION_SHARE * (tol.atol * J_size + tol.rtol * abs(d))
                    return (d if abs(d2 - d) / (2**order - 1) <= allowed else None), False
        return d, True

    def resolved(theta: float, J_at) -> tuple[float | None, bool]:
        """The derivative at one coordinate, None if no step resolves it (see TRUNCATION_SHARE)."""
        d, crossed = quotient(theta, J_at, h0)
        if crossed and fd.step is None and order is not None and tol is not None:
            return shorter(theta, J_at)
        if crossed or order is None or tol is None:
            return d, crossed
        allowed = TRUNCATION_SHARE * (tol.atol * J_size + tol.rtol * abs(d))
        d2, crossed = quotient(theta, J_at, 2 * h0)
        error = abs(d2 - d) / (2**order - 1)
        if crossed and fd.step is None:
            return shorter(theta, J_at)
        if crossed or error <= allowed:
            return d, crossed
        if fd.step is not None:
            return None, False  # a fixed step (the nudge's 1e-3) is what it is: it cannot tell
        # J bends faster than the rule assumed (error = c·h^k): the step at which the measured
        # c·h^k meets the round-off ε·max(1,|J|)/h, and its own check there.
        c = error / h0**order
        h1 = min(h0 / 2, (eps * J_size / c) ** (1 / (order + 1)))
        d, c1 = quotient(theta, J_at, h1)
        d2, c2 = quotient(theta, J_at, 2 * h1)
        if c1 or c2:
            return d, True
        return (d if abs(d2 - d) / (2**order - 1) <= allowed else None), False

    def measure(quantity: str, base: Array, idx: Array, J_at) -> Array:
        flat = base.reshape(-1)
        grad = np.zeros(flat.size)
        mask = np.ones(flat.size, dtype=bool)
        n_crossed = n_unresolved = 0
        for c in idx:
            d, crossed = resolved(float(flat[c]), lambda v, c=c: J_at(c, v))
            if crossed:
                n_crossed += 1
            elif d is None:
                n_unresolved += 1
            else:
                grad[c], mask[c] = d, False
        if n_crossed:
            crossed_counts[quantity] = n_crossed
        if n_unresolved:
            unresolved[quantity] = n_unresolved
        result = grad.reshape(base.shape).astype(dt)
        return np.ma.MaskedArray(result, mask=mask.reshape(base.shape)) if mask.any() else result

    params = {k: f[k] for k in net.param_shapes()}
    owner = {k: spec for k, (spec, _, _) in net.param_specs().items()}
    strategy = fd.strategy
    if strategy == "auto":
        central = fd.method.name == "central" and fd.step is None
        strategy = "directional" if central and net.n_params > fd.max_coords else "coordinates"
    if strategy == "directional":
        # vᵀ∇J for the seeded unit directions of directional.py: the same quotient and check,
        # along t ↦ J(θ + t·v).
        def J_along(t, v):
            return ev.J(0, False, None, {**f, **{k: f[k] + t * d for k, d in v.items()}})

        out["Jv"] = measure("Jv", np.zeros(len(dirs := directions(net))), np.arange(len(dirs)),
                            lambda c, t: J_along(t, dirs[c]))
        for k, theta in params.items():
            out[f"d{k}"] = np.ma.MaskedArray(np.zeros(theta.shape, dtype=dt), mask=True)
        why = (f"{net.n_params} parameters > {fd.max_coords}" if fd.strategy == "auto"
               else "asked for")
        notes.append(f"directional strategy: vᵀ∇J for {len(out['Jv'])} seeded directions ({why})")
    else:
        sample = fd._coordinates({k: v.size for k, v in params.items()}, min(fd.max_coords, PARAM_COORDS))
        for k, idx in sample.items():
            # The layers below the parameter's own do not move: start from its layer's input.
            key = net.input_key(owner[k])
            start = 0 if key == "X" else int(key[1:])

            def J_at(c, v, k=k, start=start, key=key):
                nudged = dict(f)
                nudged[k] = f[k].copy()
                nudged[k].flat[c] = v
                return ev.J(start, False, ev.values["a0" if key == "X" else key], nudged)

            out[f"d{k}"] = measure(f"d{k}", params[k], idx, J_at)

    if fd.intermediates:
        if ev.separable:
            notes.append("intermediates: each nudge runs the layers above on its own example "
                         "(no layer couples the examples), J0 + Δ𝓛⁽ⁿ⁾/m")
        points = {q: ev.values[q] for q in net.intermediates() if not q.startswith("d")}
        # A seeded sample of at most INTERMEDIATE_COORDS (at least 32 of every array): each
        # nudge of an intermediate runs the layers above it, and the parameters are the check
        # that matters most; the report counts what was compared.
        sample = fd._coordinates({q: v.size for q, v in points.items()}, INTERMEDIATE_COORDS)
        for q, idx in sample.items():
            i, at_z = int(q[1:]), q[0] == "z"  # z{i}: layer i's activation first, then above

            def J_at(c, v, q=q, i=i, at_z=at_z):
                if ev.separable:  # only example n's loss moves: run the layers above on it alone
                    per = points[q][0].size
                    n = c // per
                    x = points[q][n:n + 1].copy()
                    x.flat[c - n * per] = v
                    return ev.J_example(n, i, at_z, x)
                x = points[q].copy()
                x.flat[c] = v
                return ev.J(i, at_z, x, f)

            out[f"d{q}"] = measure(f"d{q}", points[q], idx, J_at)

    if crossed_counts:
        notes.append("inconclusive where a nudge crossed a kink (relu/leaky_relu at 0, a hinge "
                     "margin at 0, a max-pool window's arg-max) at every step tried, not compared: " + ", ".join(f"{q} {n}" for q, n in crossed_counts.items()))
    if unresolved:
        notes.append("inconclusive where the quotient's own truncation error, measured at 2h, "
                     "exceeds a tenth of its tolerance and no step resolves it, not compared: " + ", ".join(f"{q} {n}" for q, n in unresolved.items()))
    inconclusive = sum(crossed_counts.values()) + sum(unresolved.values())
    return Gradients(out, notes="; ".join(notes), inconclusive=inconclusive)
