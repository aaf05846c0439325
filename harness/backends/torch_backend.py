"""PyTorch autograd: the forward pass in torch ops, gradients from ``torch.autograd.grad``.

Imported only when the backend is built. Tensors keep the case dtype (float64
stays float64: they come from numpy via ``torch.from_numpy``, never through the
default dtype).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..model import Model
from ..network import Network

Array = np.ndarray


class TorchBackend:
    name = "torch"
    kind = "analytic"

    def __init__(self) -> None:
        try:
            import torch
        except ImportError as e:  # an extra of the package since the catalog issue
            raise ImportError(f"torch is not installed ({e}); install it with pip install -c constraints.txt "
                              "'backprop-xval[torch]'") from e
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.fw = SimpleNamespace(torch=torch, F=F)  # what the catalog's torch forms receive
        from ..activations import TORCH

        # The definitions of harness.activations, in torch ops: written there, with its constants.
        self.act = {name: (lambda z, f=f: f(torch, F, z)) for name, f in TORCH.items()}

    def gradients(self, model: Model | Network, arrays: dict[str, Array]) -> dict[str, Array]:
        if isinstance(model, Network):
            return self._network_gradients(model, arrays)
        torch = self.torch
        X = torch.from_numpy(np.ascontiguousarray(arrays["X"]))
        names = list(model.param_shapes())
        params = [torch.from_numpy(np.array(arrays[k])).requires_grad_() for k in names]

        a = X
        zs, as_ = [], []  # the real graph's intermediate tensors, differentiated below
        for l in range(1, model.L + 1):
            W, b = params[2 * l - 2], params[2 * l - 1]
            z = a @ W + b
            a = self.act[model.activations[l - 1]](z)
            zs.append(z)
            as_.append(a)
        J = self._cost(model, z, a, arrays)

        # ∂J/∂a^[L] is not asked for: for cross_entropy and BCE, J is computed from the
        # logits z^[L], so a^[L] is not on J's graph.
        inputs = params + zs + as_[:-1]
        grads = torch.autograd.grad(J, inputs)
        out = {"J": J.detach().numpy()}
        out.update({f"d{k}": g.numpy() for k, g in zip(names, grads)})
        L = model.L
        for l in range(1, L + 1):
            out[f"z{l}"], out[f"a{l}"] = zs[l - 1].detach().numpy(), as_[l - 1].detach().numpy()
            out[f"dz{l}"] = grads[len(params) + l - 1].numpy()
            if l < L:
                out[f"da{l}"] = grads[len(params) + L + l - 1].numpy()
        return out

    def _network_gradients(self, net: Network, arrays: dict[str, Array]) -> dict[str, Array]:
        """Each catalog layer's torch forward, then one ``torch.autograd.grad`` of J for the
        parameters and every recorded intermediate (z{i}, a{i}) of the real graph."""
        from ..catalog import NETWORK_LOSSES
        from ..network import walk

        torch, fw = self.torch, self.fw
        t = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        keys = list(net.param_shapes())
        params = {k: torch.from_numpy(np.array(arrays[k])).requires_grad_() for k in keys}
        m = arrays["X"].shape[0]
        # X joins the graph too: a network may start with a layer that has no parameters
        # (flatten, dropout, an activation), and ∂J/∂a1 is still asked for.
        X = t["X"] if net.vocab else t["X"].requires_grad_()  # token ids are not differentiated
        a, values = walk(net, X, params, t,
                         lambda layer, spec, x, p, inp: layer.torch(spec, fw, x, p, inp),
                         lambda name, z: self.act[name](z))
        J = NETWORK_LOSSES[net.loss].torch(fw, a, t)
        c = net.l2_coefficient(m)
        if c:
            J = J + c * sum((params[k] * params[k]).sum() for k in net.regularised())
        names = list(values)
        grads = torch.autograd.grad(J, [params[k] for k in keys] + [values[q] for q in names],
                                    allow_unused=True)
        out = {"J": J.detach().numpy()}
        out.update({f"d{k}": g.numpy() for k, g in zip(keys, grads)})
        for q, g in zip(names, grads[len(keys):]):
            out[q] = values[q].detach().numpy()
            if g is not None:
                out[f"d{q}"] = g.numpy()
        return out

    def _cost(self, model: Model, z_L, a_L, arrays: dict[str, Array]):
        """J by the catalog's torch form of the loss: from the logits z^[L] where the loss applies
        the output function itself (cross-entropy, BCE), from a^[L] otherwise."""
        from ..catalog import NETWORK_LOSSES

        loss = NETWORK_LOSSES[model.loss]
        T = {k: self.torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in ("y", "Y") if k in arrays}
        return loss.torch(self.fw, z_L if loss.applies else a_L, T)

    def jacobian(self, op: str, x: Array, **kw) -> Array:
        """The full Jacobian J[i, j] = ∂f_i/∂x_j of a map of one row x (1×n), by autograd.

        ``op``: "exp", an activation name (softmax included), "linear" (a ↦ a W + b, with
        ``W``, ``b``), or "loss" (a^[L] ↦ 𝓛 for ``loss`` and one-hot/real target ``Y``).
        """
        torch = self.torch
        f = self._op(op, **{k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray)
                            else v for k, v in kw.items()})
        jac = torch.autograd.functional.jacobian(f, torch.from_numpy(np.ascontiguousarray(x)))
        n_in = x.size
        return jac.reshape(-1, n_in).numpy()

    def _op(self, op: str, W=None, b=None, loss=None, Y=None):
        torch = self.torch
        if op == "exp":
            return torch.exp
        if op == "linear":
            return lambda a: a @ W + b
        if op == "loss":  # 𝓛 as a function of the output a^[L] (not of the logits)
            return {"cross_entropy": lambda a: -(Y * torch.log(a)).sum(),
                    "binary_cross_entropy": lambda a: -(Y * torch.log(a) + (1 - Y) * torch.log(1 - a)).sum(),
                    "half_sse": lambda a: 0.5 * ((a - Y) ** 2).sum()}[loss]
        return self.act[op]

