"""The activations g and their hand-written derivatives g', in numpy.

This module is the one place where each activation is *defined*. The torch and
JAX backends implement the same definitions with their own ops (see
``DEFINITIONS``); a test checks that all three backends know the same names and
that each framework's autograd reproduces ``g_prime`` below.

Every function takes and returns arrays of the input's dtype: a float32 case
stays float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

Array = np.ndarray

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_C = 0.044715
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0


@dataclass(frozen=True)
class Activation:
    name: str
    formula: str  # g(z), as a learner would write it
    derivative: str  # g'(z), including the convention at kinks
    g: Callable[[Array], Array]
    g_prime: Callable[[Array], Array]
    kinks: tuple[float, ...] = ()  # points where g is not differentiable


def _sigmoid(z: Array) -> Array:
    # Two branches so that exp never overflows: for z < 0 use e^z / (1 + e^z).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _Phi(z: Array) -> Array:
    """The standard normal CDF Φ(z) = ½ erfc(−z/√2).

    numpy has no erf; math.erfc is accurate to double precision. erfc rather than
    1 + erf(z/√2), which cancels for z ≲ −8 and loses every digit of Φ there.
    Evaluated in float64 and cast back, so float32 inputs get a float32 result.
    """
    z64 = np.asarray(z, dtype=np.float64)
    out = 0.5 * np.frompyfunc(math.erfc, 1, 1)(-z64 / math.sqrt(2.0)).astype(np.float64)
    return out.astype(z.dtype, copy=False)


def _gelu(z: Array) -> Array:
    return z * _Phi(z)


def _gelu_prime(z: Array) -> Array:
    # d/dz [z Φ(z)] = Φ(z) + z φ(z)
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return _Phi(z) + z * phi


def _gelu_tanh(z: Array) -> Array:
    t = np.tanh(_SQRT_2_OVER_PI * (z + GELU_TANH_C * z**3))
    return 0.5 * z * (1 + t)


def _gelu_tanh_prime(z: Array) -> Array:
    u = _SQRT_2_OVER_PI * (z + GELU_TANH_C * z**3)
    t = np.tanh(u)
    du = _SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_C * z * z)
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du


def _elu(z: Array) -> Array:
    # expm1 on min(z, 0) only, so the discarded branch never overflows.
    return np.where(z > 0, z, ELU_ALPHA * np.expm1(np.minimum(z, 0)))


def _elu_prime(z: Array) -> Array:
    return np.where(z > 0, np.ones_like(z), ELU_ALPHA * np.exp(np.minimum(z, 0)))


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("identity", "z", "1", lambda z: z, np.ones_like),
        Activation(
            "sigmoid",
            "σ(z) = 1 / (1 + e^(−z))",
            "σ(z)(1 − σ(z))",
            _sigmoid,
            lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
        ),
        Activation("tanh", "tanh(z)", "1 − tanh²(z)", np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        Activation(
            "relu",
            "max(0, z)",
            "1 if z > 0 else 0 (g'(0) = 0)",
            lambda z: np.maximum(z, 0),
            lambda z: (z > 0).astype(z.dtype),
            kinks=(0.0,),
        ),
        Activation(
            "leaky_relu",
            f"z if z > 0 else {LEAKY_SLOPE}·z",
            f"1 if z > 0 else {LEAKY_SLOPE} (g'(0) = {LEAKY_SLOPE})",
            lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
            lambda z: np.where(z > 0, np.ones_like(z), np.full_like(z, LEAKY_SLOPE)),
            kinks=(0.0,),
        ),
        Activation(
            "elu",
            "z if z > 0 else e^z − 1 (α = 1)",
            "1 if z > 0 else e^z (continuous at 0 for α = 1)",
            _elu,
            _elu_prime,
        ),
        Activation(
            "softplus",
            "log(1 + e^z), exactly (no linear cut-off for large z)",
            "σ(z)",
            lambda z: np.logaddexp(np.zeros_like(z), z),
            _sigmoid,
        ),
        Activation(
            "gelu",
            "z Φ(z) = ½ z (1 + erf(z/√2)), the exact (erf) form",
            "Φ(z) + z φ(z)",
            _gelu,
            _gelu_prime,
        ),
        Activation(
            "gelu_tanh",
            "½ z (1 + tanh(√(2/π) (z + 0.044715 z³))), the tanh approximation",
            "½(1 + t) + ½ z (1 − t²) √(2/π)(1 + 3·0.044715 z²)",
            _gelu_tanh,
            _gelu_tanh_prime,
        ),
    ]
}

# softmax is not elementwise: its Jacobian is diag(ŷ) − ŷᵀŷ, not diag(g'(z)).
# It is allowed only as the output activation (see losses.py).
SOFTMAX = "softmax"
OUTPUT_ONLY = {SOFTMAX}
ALL_NAMES = tuple(ACTIVATIONS) + (SOFTMAX,)

# How each framework realises the definitions above, as functions of the framework's
# namespace: ``torch_forward(torch, F, z)`` and ``jax_forward(jax, jnp, z)``. Written here,
# next to the numpy definitions and with the same constants, so that a mismatch of defaults
# is visible in one place and no backend retypes a constant. ``DEFINITIONS`` says the same
# in words, for the README and the report.
TORCH: dict[str, Callable] = {
    "identity": lambda torch, F, z: z,
    "sigmoid": lambda torch, F, z: torch.sigmoid(z),
    "tanh": lambda torch, F, z: torch.tanh(z),
    "relu": lambda torch, F, z: torch.relu(z),
    "leaky_relu": lambda torch, F, z: F.leaky_relu(z, LEAKY_SLOPE),
    "elu": lambda torch, F, z: F.elu(z, alpha=ELU_ALPHA),
    # not F.softplus: it returns z itself above its threshold of 20.
    "softplus": lambda torch, F, z: torch.logaddexp(z, torch.zeros_like(z)),
    "gelu": lambda torch, F, z: F.gelu(z, approximate="none"),
    "gelu_tanh": lambda torch, F, z: F.gelu(z, approximate="tanh"),
    "softmax": lambda torch, F, z: torch.softmax(z, dim=-1),
}
JAX: dict[str, Callable] = {
    "identity": lambda jax, jnp, z: z,
    "sigmoid": lambda jax, jnp, z: jax.nn.sigmoid(z),
    "tanh": lambda jax, jnp, z: jnp.tanh(z),
    "relu": lambda jax, jnp, z: jax.nn.relu(z),
    # not jax.nn.leaky_relu: its `z >= 0` gives gradient 1 at z = 0, we define the slope.
    "leaky_relu": lambda jax, jnp, z: jnp.where(z > 0, z, LEAKY_SLOPE * z),
    "elu": lambda jax, jnp, z: jax.nn.elu(z, alpha=ELU_ALPHA),
    "softplus": lambda jax, jnp, z: jnp.logaddexp(z, 0.0),
    # jax.nn.gelu defaults to the tanh approximation; "gelu" here is the exact form.
    "gelu": lambda jax, jnp, z: jax.nn.gelu(z, approximate=False),
    "gelu_tanh": lambda jax, jnp, z: jax.nn.gelu(z, approximate=True),
    "softmax": lambda jax, jnp, z: jax.nn.softmax(z, axis=-1),
}

DEFINITIONS: dict[str, dict[str, str]] = {
    "identity": {"torch": "z", "jax": "z"},
    "sigmoid": {"torch": "torch.sigmoid", "jax": "jax.nn.sigmoid"},
    "tanh": {"torch": "torch.tanh", "jax": "jnp.tanh"},
    "relu": {"torch": "torch.relu (grad 0 at 0)", "jax": "jax.nn.relu (grad 0 at 0)"},
    "leaky_relu": {
        "torch": f"F.leaky_relu(z, {LEAKY_SLOPE}) (grad {LEAKY_SLOPE} at 0)",
        # jax.nn.leaky_relu uses `z >= 0`, whose grad at 0 is 1, not the slope.
        "jax": f"jnp.where(z > 0, z, {LEAKY_SLOPE} * z)",
    },
    "elu": {"torch": f"F.elu(z, alpha={ELU_ALPHA})", "jax": f"jax.nn.elu(z, alpha={ELU_ALPHA})"},
    "softplus": {
        # F.softplus returns z itself above threshold=20 (an error of ~2e-9).
        "torch": "torch.logaddexp(z, 0)",
        "jax": "jnp.logaddexp(z, 0)",
    },
    "gelu": {
        "torch": "F.gelu(z, approximate='none')",
        # jax.nn.gelu defaults to approximate=True, the tanh form.
        "jax": "jax.nn.gelu(z, approximate=False)",
    },
    "gelu_tanh": {
        "torch": "F.gelu(z, approximate='tanh')",
        "jax": "jax.nn.gelu(z, approximate=True)",
    },
    "softmax": {"torch": "torch.softmax / F.cross_entropy", "jax": "jax.nn.softmax / log_softmax"},
}


def softmax(z: Array) -> Array:
    """Row-wise softmax, shifted by the row max so e^z never overflows."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: Array) -> Array:
    """Row-wise log-softmax via log-sum-exp: z − max − log(1 + Σ_{k≠argmax} e^(z_k − max)).

    log1p of the sum without the largest term keeps full relative precision when one
    class dominates (a well-fitted example, 𝓛 ≈ 1e-12), where log(Σ e^…) would round to 0.
    """
    top = z.argmax(axis=-1)[..., None]
    shifted = z - np.take_along_axis(z, top, axis=-1)
    e = np.exp(shifted)
    np.put_along_axis(e, top, 0.0, axis=-1)
    return shifted - np.log1p(e.sum(axis=-1, keepdims=True))


def forward(name: str, z: Array) -> Array:
    """a = g(z) for any activation name, softmax included."""
    return softmax(z) if name == SOFTMAX else ACTIVATIONS[name].g(z)


def times_g_prime(name: str, da: Array, z: Array) -> Array:
    """dz = da ∘ g'(z) for an elementwise g, as ``da * g_prime(z)`` computes it.

    g'(z) is a fresh array of z's shape and dtype; when da has them too, the product is written
    into it, so the step costs one m×n array instead of two (the same bits: ∘ is commutative).
    """
    g_prime = ACTIVATIONS[name].g_prime(z)
    if g_prime.shape == da.shape and g_prime.dtype == da.dtype:
        return np.multiply(da, g_prime, out=g_prime)
    return da * g_prime
