"""The catalog's lstm (numpy forward + hand-written BPTT) against torch.nn.LSTM forward + autograd.

``python -m benchmarks --only lstm``. Both sides compute the same thing: every h_t of a
batch_first N×T×D input from the same weights (torch's gate blocks permuted to its i, f, g, o
order), then dx, dWx, dWh, db from one upstream gradient dy.
"""

from __future__ import annotations

import numpy as np

from . import main_module

N, T, D, H = 64, 32, 128, 128


def torch_order(H: int) -> np.ndarray:
    """Our columns in torch.nn.LSTM's block order: ours is i, f, o, g, torch's i, f, g, o."""
    return np.concatenate([np.arange(H) + k * H for k in (0, 1, 3, 2)])


def contenders(dtype: str, rng: np.random.Generator) -> dict:
    """{"manual": ..., "torch": ...}: one forward and backward each, on the same x, weights and dy."""
    import torch

    from harness.catalog import LAYERS, build_spec

    layer = LAYERS["lstm"]
    spec = build_spec({"layer": "lstm", "hidden": H}, 1, (T, D), batch=N)
    x = rng.standard_normal((N, T, D)).astype(dtype)
    p = {k: par.draw(rng, par.shape).astype(dtype) for k, par in layer.params(spec).items()}
    dy = rng.standard_normal((N, T, H)).astype(dtype)

    def manual():
        _, cache = layer.forward(spec, x, p, {})
        return layer.backward(spec, dy, cache)

    module = torch.nn.LSTM(D, H, batch_first=True).to(getattr(torch, dtype))
    cols = torch_order(H)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(p["Wx"][:, cols].T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(p["Wh"][:, cols].T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(p["b"][cols].copy()))
        module.bias_hh_l0.zero_()
    xt, dyt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)
    weights = list(module.parameters())

    def torch_lstm():
        y, _ = module(xt)
        return torch.autograd.grad(y, [xt, *weights], dyt)

    # the same numbers, or the timing compares different work
    y_ref = module(xt)[0].detach().numpy()
    y_manual = layer.forward(spec, x, p, {})[0]
    assert np.allclose(y_manual, y_ref, rtol=1e-3, atol=1e-4), np.abs(y_manual - y_ref).max()
    return {"manual": manual, "torch": torch_lstm}


def lstm(rounds: int) -> None:
    import torch

    bench = main_module()
    print(f"\nlstm on N={N}, T={T}, D={D}, H={H}: catalog numpy forward + hand-written BPTT vs "
          "torch.nn.LSTM(batch_first=True) forward + autograd (dx and every weight gradient on both "
          "sides), timed at one BLAS and one torch thread (as the CLI runs cases), then at the "
          "process default.")
    rng = np.random.default_rng(0)
    for threads in ("one thread", "default threads"):
        for dtype in ("float32", "float64"):
            fns = contenders(dtype, rng)
            tag = f"lstm N={N} T={T} D={D} H={H} {dtype}, {threads}"
            if threads == "one thread":
                with bench.one_thread(torch):
                    t = bench.interleaved(fns, rounds)
            else:
                t = bench.interleaved(fns, rounds)
            bench.report(f"{tag}: manual seconds", t["manual"], "measured", None, "s")
            bench.report(f"{tag}: torch seconds", t["torch"], "measured", None, "s")
            ratio = t["manual"] / t["torch"]
            if threads == "one thread":
                bench.report(f"{tag}: manual / torch", ratio, "≤ 2", ratio <= 2)
            else:
                bench.report(f"{tag}: manual / torch", ratio, "measured", None)
