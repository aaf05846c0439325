"""rnn and lstm through time on N×T×D batches, backward (BPTT) by hand.

Row-vector convention, as everywhere here: one example's step is a row x_t (1×D), the batch
stacks N of them (x_t is N×D), a sequence is N×T×D. Both layers output every hidden state,
N×T×H, and start from h_0 (zeros, or a parameter ``h0`` of one row per example).

rnn, forward:
    a_t = x_t Wx + h_{t−1} Wh + b          Wx D×H, Wh H×H, b 1×H
    h_t = tanh(a_t)
lstm, forward (one GEMM gives the four gates, in the column order i, f, o, g):
    a_t = x_t Wx + h_{t−1} Wh + b          Wx D×4H, Wh H×4H, b 1×4H
    [a_i | a_f | a_o | a_g] = a_t          four blocks of H columns
    i = σ(a_i), f = σ(a_f), o = σ(a_o), g = tanh(a_g)
    c_t = f ∘ c_{t−1} + i ∘ g              c_0 = 0
    h_t = o ∘ tanh(c_t)

Backward through time (BPTT). J depends on h_t along two paths: h_t is an output (the layer
above gives dy_t = ∂J/∂h_t along that path) and h_t is the input of step t+1. The chain rule
adds the paths:
    dh_t = dy_t + da_{t+1} Whᵀ             (the second term is 0 at t = T)
Going from t = T down to 1, each step turns dh_t into da_t = ∂J/∂a_t:
    rnn:   da_t = dh_t ∘ (1 − h_t²)        tanh' = 1 − tanh²
    lstm:  dc_t = dc from step t+1 + dh_t ∘ o ∘ (1 − tanh²(c_t))
                                           c_t feeds h_t and c_{t+1}; the latter's share is
                                           dc_{t+1} ∘ f_{t+1} (c_{t+1} = f_{t+1} ∘ c_t + ...)
           da_i = dc_t ∘ g ∘ i(1 − i)      di = dc_t ∘ g, σ' = σ(1 − σ)
           da_f = dc_t ∘ c_{t−1} ∘ f(1 − f)
           da_o = dh_t ∘ tanh(c_t) ∘ o(1 − o)
           da_g = dc_t ∘ i ∘ (1 − g²)      dg = dc_t ∘ i, tanh' = 1 − tanh²
The weights are shared by every step, so their gradients are sums over steps (and examples):
    dWx = Σ_t x_tᵀ da_t,   dWh = Σ_t h_{t−1}ᵀ da_t,   db = Σ_t Σ_rows da_t
    dx_t = da_t Wxᵀ,       dh_0 = da_1 Whᵀ (the parameter's gradient when h0 is one)
Only dh_t needs the loop (it waits for da_{t+1}); x Wx for every step, dWx, dWh, db and dx
are each one GEMM or sum over the N·T rows, outside it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..activations import forward as act_forward
from .base import Array, Attr, Layer, LayerError, Param, Shape, Spec, fan_in, positive, small


def _half(rng: np.random.Generator, shape: Shape) -> Array:
    return rng.standard_normal(shape) * 0.5


def sigmoid(a: Array, out: Array | None = None) -> Array:
    """σ(a) in the dtype of a, written into ``out``: harness.activations' stable form (e^(−|a|),
    which never overflows, over 1 + e^(−|a|)). Not ½(1 + tanh(a/2)): for a ≪ 0 that adds 1 to
    nearly −1 and keeps few of σ's bits (float32 gates lost 1e-3 of their value at a = −10)."""
    s = act_forward("sigmoid", a)
    if out is None:
        return s
    out[...] = s
    return out


def _rows(a: Array) -> Array:
    """N×T×k as (N·T)×k: every step of every example a row, for the GEMMs over all steps."""
    return a.reshape(-1, a.shape[-1])


class RnnCache(NamedTuple):
    x: Array  # N×T×D
    hs: Array  # N×(T+1)×H: hs[:, t] is h_t, hs[:, 0] is h_0
    Wx: Array
    Wh: Array


class LstmCache(NamedTuple):
    x: Array  # N×T×D
    hs: Array  # N×(T+1)×H: hs[:, t] is h_t, hs[:, 0] is h_0
    cs: Array  # N×(T+1)×H: cs[:, t] is c_t, cs[:, 0] = c_0 = 0
    gates: Array  # N×T×4H: [i | f | o | g] of step t at gates[:, t − 1], after σ and tanh
    tanh_c: Array  # N×T×H: tanh(c_t) at tanh_c[:, t − 1]
    Wx: Array
    Wh: Array


class _Recurrent(Layer):
    """What rnn and lstm share: attributes, the [T, D] input, h0, the gate count."""

    n_gates = 1  # columns of Wx, Wh and b: n_gates·H
    attrs = {
        "hidden": Attr((int,), check=positive, doc="hidden size H"),
        "h0": Attr((bool,), False, doc="learn the initial state h_0 (one row per example); else zeros"),
    }

    def out_shape(self, attrs, in_shape):
        if len(in_shape) != 2:
            raise LayerError("", f"{self.name} needs a [T, D] input per example (a sequence), its input is "
                                 f"{list(in_shape)} (give input = [T, D], and keep the layer before any "
                                 "flatten)")
        return (in_shape[0], attrs["hidden"])

    def params(self, spec: Spec) -> dict[str, Param]:
        D, H, k = spec.in_shape[-1], spec["hidden"], self.n_gates
        out = {"Wx": Param((D, k * H), fan_in, regularised=True),
               "Wh": Param((H, k * H), fan_in, regularised=True),
               "b": Param((k * H,), small)}
        if spec["h0"]:
            out["h0"] = Param((spec.batch, H), _half, per_example=True)
        return out

    def check_batch(self, spec, batch):
        if spec["h0"] and spec.batch != batch:
            return (f"{self.name}'s h0 has one row per example: the layer was built for a batch of "
                    f"{spec.batch}, the case has {batch}")
        return None

    def param_mismatch(self, spec, local, shape):
        if local == "h0" and len(shape) == 2 and shape[1] == spec["hidden"]:
            return (f"h0 has {shape[0]} rows but the batch has {spec.batch}: h0 is batch×hidden, "
                    "the initial state of each example")
        return None

    @staticmethod
    def h0(spec, x, p, zeros=np.zeros):
        """h_0: the parameter, or N×H zeros (``zeros`` is the framework's own)."""
        return p["h0"] if spec["h0"] else zeros((x.shape[0], spec["hidden"]), dtype=x.dtype)

    @staticmethod
    def weight_gradients(spec: Spec, x: Array, h_prev: Array, da: Array, Wx: Array, dh0: Array
                         ) -> tuple[Array, dict[str, Array]]:
        """dx and the parameter gradients once da_t is known for every step: the weights are
        shared by all steps, so each gradient is one GEMM (or sum) over the N·T rows."""
        N, T, D = x.shape
        grads = {"Wx": _rows(x).T @ _rows(da),  # Σ_t x_tᵀ da_t
                 "Wh": _rows(h_prev).T @ _rows(da),  # Σ_t h_{t−1}ᵀ da_t
                 "b": _rows(da).sum(axis=0)}  # Σ_t Σ_rows da_t
        if spec["h0"]:
            grads["h0"] = dh0
        return (_rows(da) @ Wx.T).reshape(N, T, D), grads  # dx_t = da_t Wxᵀ

    def describe(self, spec):
        return f"{self.name}{spec['hidden']}" + ("+h0" if spec["h0"] else "")


class Rnn(_Recurrent):
    """h_t = tanh(x_t Wx + h_{t−1} Wh + b): the plain (Elman) recurrent layer, all h_t out.

    Backward (BPTT), from t = T down to 1, dh_{T+1 → T} = 0:
        dh_t = dy_t + da_{t+1} Whᵀ         the two paths into h_t add
        da_t = dh_t ∘ (1 − h_t²)
    then dWx = Σ x_tᵀ da_t, dWh = Σ h_{t−1}ᵀ da_t, db = Σ da_t, dx_t = da_t Wxᵀ, dh_0 = da_1 Whᵀ.
    """

    name = "rnn"
    formula = "h_t = tanh(x_t Wx + h_{t−1} Wh + b), h_0 = 0 or the parameter h0; y = [h_1 … h_T]"
    derivative = ("dh_t = dy_t + da_{t+1} Whᵀ, da_t = dh_t∘(1 − h_t²); dWx = Σ_t x_tᵀ da_t, "
                  "dWh = Σ_t h_{t−1}ᵀ da_t, db = Σ_t da_t, dx_t = da_t Wxᵀ, dh_0 = da_1 Whᵀ")
    torch_name = ("torch.nn.RNN(D, H, nonlinearity='tanh', batch_first=True): weight_ih_l0 = Wxᵀ, "
                  "weight_hh_l0 = Whᵀ, bias_ih_l0 + bias_hh_l0 = b, h_0 given as 1×N×H")
    jax_name = "jax.lax.scan of h ↦ tanh(x_t Wx + h Wh + b) over time (flax.linen.SimpleCell per step)"
    differences = ("torch stores the weights transposed (H×D, H×H) and has two biases whose sum is b "
                   "(each gets the gradient of b); its h_0 has a leading layer axis. The harness runs "
                   "the catalog's own loop in both frameworks.")

    def forward(self, spec, x, p, inp):
        Wx, Wh = p["Wx"], p["Wh"]
        N, T, _ = x.shape
        xWb = (_rows(x) @ Wx + p["b"]).reshape(N, T, -1)  # x_t Wx + b of every step: one GEMM
        hs = np.empty((N, T + 1, spec["hidden"]), dtype=x.dtype)
        hs[:, 0] = self.h0(spec, x, p)
        for t in range(1, T + 1):
            hs[:, t] = np.tanh(xWb[:, t - 1] + hs[:, t - 1] @ Wh)
        return np.ascontiguousarray(hs[:, 1:]), RnnCache(x, hs, Wx, Wh)

    def backward(self, spec, dy, cache):
        x, hs, Wx, Wh = cache
        N, T, H = dy.shape
        da = np.empty(dy.shape, dtype=dy.dtype)  # da[:, t − 1] is da_t
        dh_next = np.zeros((N, H), dtype=dy.dtype)  # ∂J/∂h_t through step t+1: none after step T
        for t in range(T, 0, -1):
            # BPTT: h_t went to the layer above (dy_t) and into step t+1 (dh_next); the paths add.
            dh = dy[:, t - 1] + dh_next
            da[:, t - 1] = dh * (1 - hs[:, t] ** 2)  # tanh' = 1 − h_t²
            dh_next = da[:, t - 1] @ Wh.T  # ∂J/∂h_{t−1} through step t, for the next iteration
        return self.weight_gradients(spec, x, hs[:, :-1], da, Wx, dh0=dh_next)  # dh_0 = da_1 Whᵀ

    def torch(self, spec, fw, x, p, inp):
        torch = fw.torch
        Wh = p["Wh"]
        xWb = x @ p["Wx"] + p["b"]
        h = self.h0(spec, x, p, torch.zeros)
        hs = []
        for t in range(x.shape[1]):
            h = torch.tanh(xWb[:, t] + h @ Wh)
            hs.append(h)
        return torch.stack(hs, dim=1)

    def jax(self, spec, fw, x, p, inp):
        jnp = fw.jnp
        Wh = p["Wh"]
        xWb = jnp.swapaxes(x @ p["Wx"] + p["b"], 0, 1)  # T×N×H: scan walks the first axis

        def step(h_prev, xWb_t):
            h = jnp.tanh(xWb_t + h_prev @ Wh)
            return h, h

        _, hs = fw.jax.lax.scan(step, self.h0(spec, x, p, jnp.zeros), xWb)
        return jnp.swapaxes(hs, 0, 1)


class Lstm(_Recurrent):
    """The LSTM (no peepholes), gates in the column order i, f, o, g; all h_t out, c_0 = 0.

        a_t = x_t Wx + h_{t−1} Wh + b,  i, f, o = σ(a_i), σ(a_f), σ(a_o),  g = tanh(a_g)
        c_t = f ∘ c_{t−1} + i ∘ g,      h_t = o ∘ tanh(c_t)

    Backward (BPTT), from t = T down to 1, with dh and dc from step T+1 zero:
        dh_t = dy_t + da_{t+1} Whᵀ                       the two paths into h_t add
        dc_t = dc_{t+1} ∘ f_{t+1} + dh_t ∘ o ∘ (1 − tanh²(c_t))
        da_t = [dc_t∘g∘i(1−i) | dc_t∘c_{t−1}∘f(1−f) | dh_t∘tanh(c_t)∘o(1−o) | dc_t∘i∘(1−g²)]
    then the sums over steps as for rnn (module docstring).
    """

    name = "lstm"
    n_gates = 4
    formula = ("a_t = x_t Wx + h_{t−1} Wh + b = [a_i|a_f|a_o|a_g]; i,f,o = σ(a_i,a_f,a_o), g = tanh(a_g); "
               "c_t = f∘c_{t−1} + i∘g, h_t = o∘tanh(c_t); c_0 = 0, h_0 = 0 or h0; y = [h_1 … h_T]")
    derivative = ("dh_t = dy_t + da_{t+1} Whᵀ; dc_t = dc_{t+1}∘f_{t+1} + dh_t∘o∘(1 − tanh² c_t); "
                  "da = [dc∘g∘i(1−i) | dc∘c_{t−1}∘f(1−f) | dh∘tanh(c_t)∘o(1−o) | dc∘i∘(1−g²)]; "
                  "dWx = Σ x_tᵀ da_t, dWh = Σ h_{t−1}ᵀ da_t, db = Σ da_t, dx_t = da_t Wxᵀ, dh_0 = da_1 Whᵀ")
    torch_name = ("torch.nn.LSTM(D, H, batch_first=True): gate order i, f, g, o (ours i, f, o, g: swap "
                  "the last two blocks); weight_ih_l0 = Wxᵀ, weight_hh_l0 = Whᵀ (blocks permuted), "
                  "bias_ih_l0 + bias_hh_l0 = b; (h_0, c_0) given as 1×N×H each")
    jax_name = ("jax.lax.scan of (h, c) ↦ one LSTM step over time (flax.linen.LSTMCell per step; "
                "OptimizedLSTMCell fuses the four gates)")
    differences = ("torch orders the gate blocks i, f, g, o and stores the weights transposed, with two "
                   "biases (each gets the gradient of b); flax's LSTMCell keeps separate i, f, g, o "
                   "kernels and a bias only on the hidden-to-hidden ones. Our i, f, o, g puts the three "
                   "sigmoid gates side by side (one σ over 3H columns). The harness runs the catalog's "
                   "own loop in both frameworks.")

    # The two derivatives the gates need, from the gate's own output (named so that a mutant
    # can swap one for the other: harness.mutants.LstmTanhPrimeForSigma).
    @staticmethod
    def sigma_prime(s: Array) -> Array:
        """σ'(a) = σ(a)(1 − σ(a)), from s = σ(a)."""
        return s * (1 - s)

    @staticmethod
    def tanh_prime(t: Array) -> Array:
        """tanh'(a) = 1 − tanh²(a), from t = tanh(a)."""
        return 1 - t * t

    def forward(self, spec, x, p, inp):
        Wx, Wh = p["Wx"], p["Wh"]
        N, T, _ = x.shape
        H = spec["hidden"]
        xWb = (_rows(x) @ Wx + p["b"]).reshape(N, T, 4 * H)  # x_t Wx + b of every step: one GEMM
        hs = np.empty((N, T + 1, H), dtype=x.dtype)
        cs = np.empty((N, T + 1, H), dtype=x.dtype)
        gates = np.empty((N, T, 4 * H), dtype=x.dtype)
        tanh_c = np.empty((N, T, H), dtype=x.dtype)
        hs[:, 0], cs[:, 0] = self.h0(spec, x, p), 0
        for t in range(1, T + 1):
            a = gates[:, t - 1]  # a_t is computed in the step's gate buffer, then σ and tanh in place
            np.matmul(hs[:, t - 1], Wh, out=a)
            a += xWb[:, t - 1]
            sigmoid(a[:, :3 * H], out=a[:, :3 * H])  # i, f, o: the three σ gates side by side
            np.tanh(a[:, 3 * H:], out=a[:, 3 * H:])  # g
            i, f, o, g = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            cs[:, t] = f * cs[:, t - 1] + i * g
            np.tanh(cs[:, t], out=tanh_c[:, t - 1])
            np.multiply(o, tanh_c[:, t - 1], out=hs[:, t])
        return np.ascontiguousarray(hs[:, 1:]), LstmCache(x, hs, cs, gates, tanh_c, Wx, Wh)

    def backward(self, spec, dy, cache):
        x, hs, cs, gates, tanh_c, Wx, Wh = cache
        N, T, H = dy.shape
        da = np.empty(gates.shape, dtype=gates.dtype)  # da[:, t − 1] is da_t, blocks [i | f | o | g]
        dh_next = np.zeros((N, H), dtype=dy.dtype)  # ∂J/∂h_t through step t+1: none after step T
        dc_next = np.zeros((N, H), dtype=dy.dtype)  # ∂J/∂c_t through c_{t+1}: none after step T
        for t in range(T, 0, -1):
            gate = gates[:, t - 1]
            i, f, o, g = gate[:, :H], gate[:, H:2 * H], gate[:, 2 * H:3 * H], gate[:, 3 * H:]
            tc = tanh_c[:, t - 1]
            # BPTT: h_t went to the layer above (dy_t) and into step t+1 (dh_next); the paths add.
            dh = dy[:, t - 1] + dh_next
            dc = dc_next + dh * o * self.tanh_prime(tc)  # c_t feeds h_t through tanh and c_{t+1} through f
            da_t = da[:, t - 1]
            da_t[:, :H] = dc * g * self.sigma_prime(i)  # di = dc∘g, σ' = i(1 − i)
            da_t[:, H:2 * H] = dc * cs[:, t - 1] * self.sigma_prime(f)  # df = dc∘c_{t−1}
            da_t[:, 2 * H:3 * H] = dh * tc * self.sigma_prime(o)  # do = dh∘tanh(c_t)
            da_t[:, 3 * H:] = dc * i * self.tanh_prime(g)  # dg = dc∘i, tanh' = 1 − g²
            dc_next = dc * f  # ∂J/∂c_{t−1} through c_t = f∘c_{t−1} + ...
            dh_next = da_t @ Wh.T  # ∂J/∂h_{t−1} through step t, for the next iteration
        return self.weight_gradients(spec, x, hs[:, :-1], da, Wx, dh0=dh_next)  # dh_0 = da_1 Whᵀ

    def torch(self, spec, fw, x, p, inp):
        torch = fw.torch
        Wh, H = p["Wh"], spec["hidden"]
        xWb = x @ p["Wx"] + p["b"]
        h = self.h0(spec, x, p, torch.zeros)
        c = torch.zeros_like(h)
        hs = []
        for t in range(x.shape[1]):
            a = xWb[:, t] + h @ Wh
            i, f, o = torch.sigmoid(a[:, :3 * H]).split(H, dim=1)
            g = torch.tanh(a[:, 3 * H:])
            c = f * c + i * g
            h = o * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs, dim=1)

    def jax(self, spec, fw, x, p, inp):
        jax, jnp = fw.jax, fw.jnp
        Wh, H = p["Wh"], spec["hidden"]
        xWb = jnp.swapaxes(x @ p["Wx"] + p["b"], 0, 1)  # T×N×4H: scan walks the first axis

        def step(carry, xWb_t):
            h_prev, c_prev = carry
            a = xWb_t + h_prev @ Wh
            i, f, o = jnp.split(jax.nn.sigmoid(a[:, :3 * H]), 3, axis=1)
            g = jnp.tanh(a[:, 3 * H:])
            c = f * c_prev + i * g
            h = o * jnp.tanh(c)
            return (h, c), h

        h0 = self.h0(spec, x, p, jnp.zeros)
        _, hs = jax.lax.scan(step, (h0, jnp.zeros_like(h0)), xWb)
        return jnp.swapaxes(hs, 0, 1)
