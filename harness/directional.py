"""Directional derivatives vᵀ∇J: the check torch.autograd.gradcheck (fast mode) and
jax.test_util.check_grads make, at two forward passes per direction whatever the size.

``directions`` draws K seeded unit vectors over all parameters at once; ``project`` turns a
backend's full gradient into the K numbers vᵀ∇J it implies. The finite-difference backend
measures the same K numbers as (J(θ + hv) − J(θ − hv)) / 2h.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # model.py imports this module (N_DIRECTIONS); not the other way round
    from .model import Model

Array = np.ndarray
N_DIRECTIONS = 8
SEED = 20240611


def directions(model: Model, k: int = N_DIRECTIONS, seed: int = SEED) -> list[dict[str, Array]]:
    """K random unit directions in parameter space, as {"W1": ..., "b1": ...} in float64."""
    shape_key = model.shape_seed() if hasattr(model, "shape_seed") else model.layers
    rng = np.random.default_rng([seed, *shape_key])
    shapes = model.param_shapes()
    out = []
    for _ in range(k):
        v = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
        norm = np.sqrt(sum(float((x * x).sum()) for x in v.values()))
        out.append({name: x / norm for name, x in v.items()})
    return out


def project(model: Model, grads: dict[str, Array], dirs: list[dict[str, Array]] | None = None) -> Array | None:
    """vᵀ∇J for each direction, from full dW/db (None if any of them is masked or missing)."""
    dirs = dirs if dirs is not None else directions(model)
    parts = []
    for name in model.param_shapes():
        d = grads.get(f"d{name}")
        if d is None or np.ma.is_masked(d):
            return None
        parts.append((name, np.ma.getdata(d)))
    dtype = grads["J"].dtype
    return np.array([sum(float((v[name] * d.astype(np.float64)).sum()) for name, d in parts)
                     for v in dirs], dtype=dtype)
