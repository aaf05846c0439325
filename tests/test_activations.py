"""Each hand-written g and g' against torch and JAX autograd of the backends' own definitions."""

import numpy as np
import pytest

from harness.activations import ACTIVATIONS, DEFINITIONS, log_softmax, softmax

# A grid with the kinks, tiny and large values: g'(0) conventions and overflow both show here.
Z = np.concatenate([np.linspace(-6, 6, 241), [0.0, -0.0, 1e-8, -1e-8, 20.5, 25.0, -30.0, 40.0]])


def torch_grad(builtin, name, z):
    import torch

    t = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = builtin["torch"].act[name](t)
    (g,) = torch.autograd.grad(out.sum(), t)
    return out.detach().numpy(), g.numpy()


def jax_grad(builtin, name, z):
    import jax

    f = builtin["jax"].act[name]
    return np.asarray(f(z)), np.asarray(jax.vmap(jax.grad(f))(z))


def test_every_backend_knows_every_activation(builtin):
    assert set(builtin["torch"].act) == set(builtin["jax"].act) == set(ACTIVATIONS) | {"softmax"}
    assert set(DEFINITIONS) == set(ACTIVATIONS) | {"softmax"}


@pytest.mark.parametrize("framework", [torch_grad, jax_grad], ids=["torch", "jax"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_g_and_g_prime_match_autograd(name, framework, builtin):
    act = ACTIVATIONS[name]
    value, grad = framework(builtin, name, Z)
    # atol: forms like ½z(1 + tanh(u)) cancel where tanh(u) ≈ −1, leaving an absolute error
    # of a few ε times the cancelled terms (|z|·u' ≤ 30 on this grid: ~1e-14) that no
    # implementation avoids. The wrong-definition checks below are off by 1e-3 or more.
    np.testing.assert_allclose(act.g(Z), value, rtol=1e-13, atol=1e-13, err_msg=f"{name} g")
    np.testing.assert_allclose(act.g_prime(Z), grad, rtol=1e-13, atol=1e-13, err_msg=f"{name} g'")


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_float32_in_float32_out(name):
    z = Z.astype(np.float32)
    assert ACTIVATIONS[name].g(z).dtype == np.float32
    assert ACTIVATIONS[name].g_prime(z).dtype == np.float32


def test_the_check_catches_the_framework_defaults_we_do_not_use():
    """The same check fails on the defaults DEFINITIONS warns about, so it can fail."""
    import jax
    import torch
    import torch.nn.functional as F

    # jax.nn.gelu defaults to the tanh approximation.
    jax_default = np.asarray(jax.vmap(jax.grad(jax.nn.gelu))(Z))
    assert not np.allclose(ACTIVATIONS["gelu"].g_prime(Z), jax_default, rtol=1e-13, atol=1e-13)
    # jax.nn.leaky_relu has gradient 1 at z = 0; we define 0.01.
    assert float(jax.grad(jax.nn.leaky_relu)(0.0)) == 1.0
    assert ACTIVATIONS["leaky_relu"].g_prime(np.zeros(1))[0] == 0.01
    # F.softplus switches to the identity above 20: its gradient there is exactly 1, not σ(z).
    t = torch.tensor([25.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(F.softplus(t).sum(), t)
    assert g.item() == 1.0
    assert not np.allclose(ACTIVATIONS["softplus"].g_prime(np.array([25.0])), g.numpy(), rtol=1e-13, atol=0)


def test_softmax_is_stable_and_matches_its_log():
    z = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    y = softmax(z)
    assert np.isfinite(y).all() and np.allclose(y.sum(axis=1), 1)
    np.testing.assert_allclose(np.exp(log_softmax(z)), y, rtol=1e-15)
    assert log_softmax(z)[0, 2] == pytest.approx(-2000.0)
