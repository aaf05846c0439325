"""The attention layer alone: the catalog's numpy forward and hand-written backward vs torch
(``python -m benchmarks --only attention``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from . import main_module

N, T, D, HEADS = 16, 128, 128, 4


def attention(rounds: int) -> None:
    from harness.backends import get
    from harness.catalog import LAYERS, build_spec

    bench = main_module()
    report, interleaved = bench.report, bench.interleaved
    print(f"\nOne forward + backward of an attention block, N={N}, T={T}, D={D}, {HEADS} heads (no mask): "
          "manual vs torch")
    tb = get("torch")
    torch = tb.torch
    fw = SimpleNamespace(torch=torch, F=tb.F)
    print("  'manual' is the catalog's numpy forward and hand-written backward (dx and the 8 parameter "
          "gradients) on a random dy; 'torch' is the catalog's torch forward (projections, matmul, softmax, "
          "masked_fill) and autograd.grad for x and the parameters; 'torch MHA' is "
          "nn.MultiheadAttention(need_weights=False) with autograd.grad for x and its parameters. Timed at one "
          "BLAS and one torch thread, as the CLI runs cases; the last lines repeat it at the process default "
          f"({torch.get_num_threads()} torch threads, BLAS unpinned).")
    layer = LAYERS["attention"]
    spec = build_spec({"layer": "attention", "heads": HEADS}, 1, (T, D))
    rng = np.random.default_rng(0)
    x64 = rng.standard_normal((N, T, D))
    p64 = {k: par.draw(rng, par.shape) for k, par in layer.params(spec).items()}
    dy64 = rng.standard_normal((N, T, D))

    def fns_for(dtype):
        x, dy = x64.astype(dtype), dy64.astype(dtype)
        p = {k: v.astype(dtype) for k, v in p64.items()}

        def manual():
            _, cache = layer.forward(spec, x, p, {})
            return layer.backward(spec, dy, cache)

        xt = torch.from_numpy(x).requires_grad_()
        pt = {k: torch.from_numpy(v.copy()).requires_grad_() for k, v in p.items()}
        dyt = torch.from_numpy(dy)

        def torch_catalog():
            y = layer.torch(spec, fw, xt, pt, {})
            return torch.autograd.grad(y, [xt, *pt.values()], dyt)

        mha = torch.nn.MultiheadAttention(D, HEADS, batch_first=True, dtype=getattr(torch, dtype))
        mha_params = list(mha.parameters())

        def torch_mha():
            y, _ = mha(xt, xt, xt, need_weights=False)
            return torch.autograd.grad(y, [xt, *mha_params], dyt)

        return {"manual": manual, "manual forward": lambda: layer.forward(spec, x, p, {}),
                "torch": torch_catalog, "torch MHA": torch_mha}

    with bench.one_thread(torch):
        for dtype in ("float32", "float64"):
            tag = f"attention N={N} T={T} D={D} h={HEADS} {dtype}"
            t = interleaved(fns_for(dtype), rounds)
            for k in ("manual", "manual forward", "torch", "torch MHA"):
                report(f"{tag}: {k} seconds", t[k], "measured", None, "s")
            report(f"{tag}: manual / torch", t["manual"] / t["torch"], "≤ 1.5", t["manual"] <= 1.5 * t["torch"])
            report(f"{tag}: manual / torch MHA", t["manual"] / t["torch MHA"], "≤ 1.5",
                   t["manual"] <= 1.5 * t["torch MHA"])
            report(f"{tag}: manual gradient ÷ its forward", t["manual"] / t["manual forward"], "measured", None)

    for dtype in ("float32", "float64"):  # the process default threads, as the other sections run
        tag = f"attention N={N} T={T} D={D} h={HEADS} {dtype}, default threads"
        t = interleaved({k: v for k, v in fns_for(dtype).items() if k != "manual forward"}, rounds)
        for k in ("manual", "torch", "torch MHA"):
            report(f"{tag}: {k} seconds", t[k], "measured", None, "s")
        report(f"{tag}: manual / torch", t["manual"] / t["torch"], "measured", None)
        report(f"{tag}: manual / torch MHA", t["manual"] / t["torch MHA"], "measured", None)
