"""Performance, measured side by side in one run: ``python -m benchmarks`` (``make bench``).

Never part of ``make test``. Every ratio comes from timings taken in the same process run,
backends interleaved round by round (the machine is shared and noisy), medians reported.
Each target is printed with a pass/miss mark; results go to benchmarks/results/*.csv.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from harness.backends import get
from harness.backends.fd import FiniteDifferenceBackend, cost_from
from harness.backends.manual import forward_pass
from harness.cases import Case, load_file
from harness.model import Model
from harness.runner import run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"mid": ((256, 512, 512, 10), 256), "large": ((1024, 2048, 2048, 1024, 10), 512)}
ROWS: list[dict] = []


def report(name: str, value: float, target: str, ok: bool | None, unit: str = "") -> None:
    mark = "—" if ok is None else ("PASS" if ok else "MISS")
    print(f"  {mark:<4}  {name:<58} {value:>10.3g} {unit:<10} target {target}")
    ROWS.append(dict(measure=name, value=value, unit=unit, target=target, result=mark))


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(fns: dict, rounds: int) -> dict[str, float]:
    for fn in fns.values():
        fn()  # warm up: JAX compiles, torch allocates
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_rate(dtype: str, n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.copy()
    a @ b
    return 2 * n**3 / median_time(lambda: a @ b, 5) / 1e9


def matmul_replay(model: Model, arrays: dict, grads: dict):
    """The matrix products the manual gradient performs, alone, at its shapes and dtype and on its
    own operands: forward z^[l] = a^[l-1] W^[l], backward dW^[l] = a^[l-1]ᵀ dz^[l] and, for l > 1,
    da^[l-1] = dz^[l] W^[l]ᵀ. Outputs are preallocated, so the replay is the products and nothing
    else: the time a gradient that did no other work would take."""
    a = [arrays["X"]] + [grads[f"a{l}"] for l in range(1, model.L + 1)]
    products = []  # (left, right, out)
    for l in range(1, model.L + 1):
        products.append((a[l - 1], arrays[f"W{l}"], np.empty_like(grads[f"z{l}"])))
    for l in range(model.L, 0, -1):
        dz, W = grads[f"dz{l}"], arrays[f"W{l}"]
        products.append((a[l - 1].T, dz, np.empty_like(grads[f"dW{l}"])))
        if l > 1:
            products.append((dz, W.T, np.empty_like(grads[f"da{l - 1}"])))

    def replay():
        for left, right, out in products:
            np.matmul(left, right, out=out)

    return replay


def page_faults(fn, calls: int = 3) -> float:
    """Minor page faults per call of fn: first touches of pages the allocator took fresh from
    the OS. The manual gradient returns its z, a, dz, da and dW as new arrays; in a process whose
    allocator hands their pages back after every call (glibc does until it has seen a large
    array freed), each call faults them in again and that time is not arithmetic."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def plain_torch(torch, model: Model, arrays: dict):
    """One forward + backward of the MLP written as a torch user would: x @ W + b, the activation,
    F.cross_entropy on the logits, loss.backward(); tensors built once, as a training loop holds
    them, and no per-layer taps (no autograd.grad for z, a, no copies back to numpy)."""
    from harness.activations import TORCH

    F = torch.nn.functional
    X, y = torch.from_numpy(arrays["X"]), torch.from_numpy(arrays["y"])
    params = [torch.from_numpy(arrays[k].copy()).requires_grad_() for k in model.param_shapes()]
    hidden = [lambda z, f=TORCH[name]: f(torch, F, z) for name in model.activations[:-1]]

    def step():
        for p in params:
            p.grad = None  # what optimizer.zero_grad() does
        a = X
        for l in range(model.L):
            z = a @ params[2 * l] + params[2 * l + 1]
            a = hidden[l](z) if l < model.L - 1 else z  # softmax is inside cross_entropy
        F.cross_entropy(a, y).backward()

    return step


def gradients(sizes: list[str], rounds: int) -> None:
    print("\nOne gradient of an MLP (relu, softmax + CE), manual vs torch vs jax")
    backends = {n: get(n) for n in ("manual", "torch", "jax")}
    torch = backends["torch"].torch
    print("  'torch' is TorchBackend.gradients as the harness runs it (one autograd.grad for the parameters "
          "and every z, a tap, copies to numpy); 'plain torch' is the same MLP written as a torch user would "
          "(x @ W + b, F.cross_entropy, loss.backward(), no taps); 'matrix products' replays exactly the "
          "manual gradient's matmuls on preallocated outputs. One BLAS and one torch thread, as the CLI runs "
          "cases; jax with the XLA threads it started with.")
    with one_thread(torch):
        for dtype in ("float32", "float64"):
            rate = matmul_rate(dtype)
            report(f"matmul rate {dtype} (2048² GEMM, one thread)", rate, "measured", None, "GFLOP/s")
            for size in sizes:
                layers, m = SIZES[size]
                model = Model(layers, ("relu",) * (len(layers) - 2) + ("softmax",), "cross_entropy", dtype)
                arrays = Case(size, model, m, 0).arrays()
                fns = {n: (lambda b=b: b.gradients(model, arrays)) for n, b in backends.items()}
                fns["plain torch"] = plain_torch(torch, model, arrays)
                fns["matrix products"] = matmul_replay(model, arrays, backends["manual"].gradients(model, arrays))
                fns["manual forward"] = lambda: forward_pass(model, arrays)
                t = interleaved(fns, rounds)
                flops = 3 * 2 * m * sum(a * b for a, b in zip(layers, layers[1:]))  # forward + 2 backward matmuls
                tag = f"{size} {'-'.join(map(str, layers))} m={m} {dtype}"
                for n in ("manual", "matrix products", "plain torch", "torch", "jax"):
                    report(f"{tag}: {n} seconds", t[n], "measured", None, "s")
                share = t["matrix products"] / t["manual"]
                report(f"{tag}: its matrix products ÷ manual gradient", share, "≥ 0.8", share >= 0.8)
                report(f"{tag}: manual / plain torch", t["manual"] / t["plain torch"], "≤ 1.0",
                       t["manual"] <= t["plain torch"])
                report(f"{tag}: torch arm / plain torch (the taps' cost)", t["torch"] / t["plain torch"],
                       "measured", None)
                report(f"{tag}: manual / torch arm", t["manual"] / t["torch"], "measured", None)
                report(f"{tag}: jax / torch arm", t["jax"] / t["torch"], "measured", None)
                frac = flops / t["manual"] / 1e9 / rate
                report(f"{tag}: manual GFLOP/s ÷ matmul rate", frac, "measured", None)
                report(f"{tag}: manual gradient ÷ its forward", t["manual"] / t["manual forward"], "≤ 3",
                       t["manual"] / t["manual forward"] <= 3)
                report(f"{tag}: manual gradient, minor page faults per call", page_faults(fns["manual"]),
                       "measured (0: its arrays reuse freed pages)", None)


CATALOG_NETWORK = """
[[case]]
name = "bn-dropout-{size}-{dtype}"
input = [{n}]
batch = {m}
dtype = "{dtype}"
loss = "cross_entropy"
l2 = 0.01
network = [
  {{layer = "dense", units = {h}}}, {{layer = "batchnorm"}}, {{layer = "relu"}}, {{layer = "dropout", rate = 0.3}},
  {{layer = "dense", units = {h}}}, {{layer = "batchnorm"}}, {{layer = "relu"}}, {{layer = "dropout", rate = 0.3}},
  {{layer = "dense", units = 10}},
]
"""
CATALOG_SIZES = {"mid": (256, 512, 256), "large": (1024, 2048, 512)}  # n_0, hidden width, batch


def catalog(sizes: list[str], rounds: int) -> None:
    print("\nOne gradient of an MLP with batch norm, dropout and L2 (catalog layers), manual vs torch vs jax")
    backends = {n: get(n) for n in ("manual", "torch", "jax")}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            for size in sizes:
                n, h, m = CATALOG_SIZES[size]
                path = Path(tmp) / f"{size}-{dtype}.toml"
                path.write_text(CATALOG_NETWORK.format(size=size, dtype=dtype, n=n, h=h, m=m))
                case = load_file(path)[0]
                arrays = case.arrays()
                fns = {k: (lambda b=b: b.gradients(case.model, arrays)) for k, b in backends.items()}
                t = interleaved(fns, rounds)
                tag = f"{size} bn-dropout {n}-{h}-{h}-10 m={m} {dtype}"
                for k in ("manual", "torch", "jax"):
                    report(f"{tag}: {k} seconds", t[k], "measured", None, "s")
                report(f"{tag}: manual / torch", t["manual"] / t["torch"], "≤ 1.0", t["manual"] <= t["torch"])
                report(f"{tag}: jax / torch", t["jax"] / t["torch"], "measured", None)


CONV_NETWORK = """
[[case]]
name = "convnet-{dtype}"
input = [3, 32, 32]
batch = {m}
dtype = "{dtype}"
loss = "cross_entropy"
seed = 7
network = [
  {{layer = "conv2d", filters = 16, kernel = 3, padding = 1}}, {{layer = "relu"}}, {{layer = "maxpool2d", size = 2}},
  {{layer = "conv2d", filters = 32, kernel = 3, padding = 1}}, {{layer = "relu"}}, {{layer = "maxpool2d", size = 2}},
  {{layer = "flatten"}}, {{layer = "dense", units = 10}},
]
"""
CONV_BATCH = 32


def conv_case(tmp: Path, dtype: str) -> Case:
    path = tmp / f"convnet-{dtype}.toml"
    path.write_text(CONV_NETWORK.format(dtype=dtype, m=CONV_BATCH))
    return load_file(path)[0]


def conv_gemms(net, m: int) -> list[tuple[int, int, int]]:
    """(rows, inner, cols) of each conv layer's forward as one im2col GEMM: (m·Ho·Wo) × (C·kh·kw) × F."""
    out = []
    for spec in net.network:
        if spec.kind == "conv2d":
            F, Ho, Wo = spec.out_shape
            C = spec.in_shape[0]
            kh, kw = (spec["kernel"],) * 2 if isinstance(spec["kernel"], int) else spec["kernel"]
            out.append((m * Ho * Wo, C * kh * kw, F))
    return out


def conv_layers(case: Case, rounds: int) -> dict[str, float]:
    """Each layer's numpy forward and backward on the network's own values (the upstream
    gradient of the manual arm), and the conv-shaped GEMMs, interleaved round by round."""
    from harness.catalog import LAYERS
    from harness.network import backprop, forward, layer_inputs, layer_params

    net, arrays = case.model, case.arrays()
    _, values, caches = forward(net, arrays)
    grads = backprop(net, arrays)
    fns = {}
    x = arrays["X"]
    for spec in net.network:
        layer, i = LAYERS[spec.kind], spec.index
        p, inp = layer_params(spec, arrays), layer_inputs(spec, arrays)
        dy = grads[f"dz{i}" if spec.activation else f"da{i}"]  # what backprop hands the layer's backward
        tag = f"{i} {spec.describe()}"
        fns[f"{tag} forward"] = lambda f=layer.forward, s=spec, x=x, p=p, inp=inp: f(s, x, p, inp)
        fns[f"{tag} backward"] = lambda f=layer.backward, s=spec, dy=dy, c=caches[i]: f(s, dy, c)
        x = values[f"a{i}"]
    rng = np.random.default_rng(0)
    for r, k, n in conv_gemms(net, CONV_BATCH):
        a = rng.standard_normal((r, k)).astype(net.dtype)
        b = rng.standard_normal((k, n)).astype(net.dtype)
        fns[f"GEMM {r}×{k}×{n}"] = lambda a=a, b=b: a @ b
    return interleaved(fns, rounds)


@contextmanager
def one_thread(torch):
    """The serial CLI's setting (harness.runner.pin_threads): one BLAS thread, one torch thread;
    both restored afterwards. XLA's threads are fixed when JAX starts and stay as they are."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(before)


def conv(rounds: int, fd_dtypes: tuple[str, ...] = ("float64",)) -> None:
    print(f"\nOne gradient of a conv net on {CONV_BATCH} images of 3×32×32 (conv16 3×3 p1, relu, maxpool 2, "
          "conv32 3×3 p1, relu, maxpool 2, flatten, dense 10, cross-entropy), manual vs torch vs jax")
    from harness.network import backprop, cost, forward

    backends = {n: get(n) for n in ("manual", "torch", "jax")}
    torch = backends["torch"].torch
    print("  'torch' is TorchBackend.gradients as the harness runs it: one autograd.grad of J for the parameters "
          "and for every tap it returns (X, and z, a of each layer); 'manual' is ManualBackend.gradients (= "
          "backprop: forward values and every da included); 'manual backprop' calls harness.network.backprop "
          "bare; 'manual forward' is the numpy forward and J. Timed at one BLAS and one torch thread, as the "
          "CLI runs cases (pin_threads); jax with the XLA threads it started with. The last lines repeat "
          f"manual vs torch at the process default ({torch.get_num_threads()} torch threads, BLAS unpinned).")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {dtype: conv_case(Path(tmp), dtype) for dtype in ("float32", "float64")}
        with one_thread(torch):
            for dtype, case in cases.items():
                net, arrays = case.model, case.arrays()
                tag = f"convnet m={CONV_BATCH} {dtype}"
                fns = {k: (lambda b=b: b.gradients(net, arrays)) for k, b in backends.items()}
                fns["manual backprop"] = lambda: backprop(net, arrays)
                fns["manual forward"] = lambda: cost(net, arrays, forward(net, arrays)[0])
                t = interleaved(fns, rounds)
                for k in ("manual", "manual backprop", "manual forward", "torch", "jax"):
                    report(f"{tag}: {k} seconds", t[k], "measured", None, "s")
                report(f"{tag}: manual / torch", t["manual"] / t["torch"], "≤ 1.5", t["manual"] <= 1.5 * t["torch"])
                report(f"{tag}: manual backprop (bare) / torch", t["manual backprop"] / t["torch"], "≤ 1.5",
                       t["manual backprop"] <= 1.5 * t["torch"])
                report(f"{tag}: jax / torch", t["jax"] / t["torch"], "measured", None)
                report(f"{tag}: manual gradient ÷ its forward", t["manual"] / t["manual forward"], "≤ 3",
                       t["manual"] / t["manual forward"] <= 3)

                layers = conv_layers(case, rounds)
                total = sum(v for k, v in layers.items() if not k.startswith("GEMM"))
                for k, v in layers.items():
                    if not k.startswith("GEMM"):
                        report(f"{tag}: layer {k} ms", v * 1e3, f"measured, {v / total:.0%} of the layers' sum",
                               None, "ms")
                gemms = conv_gemms(net, CONV_BATCH)
                gemm_flops = sum(2 * r * k * n for r, k, n in gemms)
                gemm_rate = gemm_flops / sum(v for k, v in layers.items() if k.startswith("GEMM")) / 1e9
                conv_time = sum(v for k, v in layers.items() if "conv" in k)
                conv_rate = 3 * gemm_flops / conv_time / 1e9  # forward, dW and dx: one GEMM's FLOPs each
                shapes = " + ".join(f"{r}×{k}×{n}" for r, k, n in gemms)
                report(f"{tag}: GEMM rate, numpy matmul {shapes}", gemm_rate, "measured", None, "GFLOP/s")
                report(f"{tag}: manual conv rate (3 GEMMs' FLOPs ÷ conv fwd+bwd)", conv_rate, "measured", None,
                       "GFLOP/s")
                report(f"{tag}: manual conv rate ÷ GEMM rate", conv_rate / gemm_rate, "reported", None)

            fd = get("fd")
            for dtype in fd_dtypes:
                arrays = cases[dtype].arrays()
                t0 = time.perf_counter()
                result = fd.gradients(cases[dtype].model, arrays)
                seconds = time.perf_counter() - t0
                print(f"  fd notes: {getattr(result, 'notes', '')}")
                report(f"convnet m={CONV_BATCH} {dtype}: fd gradients() as the harness runs it", seconds, "≤ 10",
                       seconds <= 10, "s")
                t0 = time.perf_counter()
                FiniteDifferenceBackend(intermediates=False).gradients(cases[dtype].model, arrays)
                seconds = time.perf_counter() - t0
                report(f"convnet m={CONV_BATCH} {dtype}: fd, its vᵀ∇J part alone (no z, a nudges)", seconds,
                       "measured (≤ 10 if meant)", None, "s")

        for dtype, case in cases.items():  # the process default threads, as the other sections run
            net, arrays = case.model, case.arrays()
            t = interleaved({k: (lambda b=backends[k]: b.gradients(net, arrays)) for k in ("manual", "torch")},
                            rounds)
            report(f"convnet m={CONV_BATCH} {dtype}, default threads: manual / torch", t["manual"] / t["torch"],
                   "measured", None)
            report(f"convnet m={CONV_BATCH} {dtype}, default threads: manual seconds", t["manual"], "measured",
                   None, "s")
            report(f"convnet m={CONV_BATCH} {dtype}, default threads: torch seconds", t["torch"], "measured",
                   None, "s")

def _mid_cases(count: int) -> list[Case]:
    return [Case(f"mid-{i}", Model((256, 512, 512, 10), ("tanh", "tanh", "softmax"), "cross_entropy", dt), 256, i)
            for i, dt in enumerate(["float32", "float64"] * (count // 2))]


def _overhead_rounds(cases: list[Case], backends: list) -> dict[bool, tuple[float, float]]:
    """{overlap: (run seconds, backend seconds)} of runner.run on the cases with its helper
    thread (drawing and comparing beside the backends) and without, side by side: three rounds,
    alternating; of each, the median round by overhead."""
    def measure(overlap: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        result = run(cases, backends, overlap=overlap)
        total = time.perf_counter() - t0
        return total, sum(sum(r.seconds.values()) for r in result.cases)

    rounds = {True: [], False: []}
    for _ in range(3):
        for overlap in (False, True):
            rounds[overlap].append(measure(overlap))
    return {o: sorted(r, key=lambda tc: (tc[0] - tc[1]) / tc[0])[1] for o, r in rounds.items()}


def overhead_cli_setting() -> None:
    """In a process of its own (``overhead``'s child): one compute thread for BLAS, torch and XLA
    from the start (runner.pin_threads, before JAX starts, as the CLI does), 20 cases as a sweep
    (the first draw and the last comparison of a run are not hidden); prints JSON."""
    import json

    from harness.runner import pin_threads

    pin_threads()
    backends = [get(n) for n in ("manual", "torch", "jax")]
    run(_mid_cases(2), backends)  # compile, allocate
    rounds = _overhead_rounds(_mid_cases(20), backends)
    print(json.dumps({str(o): r for o, r in rounds.items()}))


def isolation_cli_setting() -> None:
    """In a process of its own, pinned as the CLI (``overhead``'s child, JAX's persistent cache
    off): seconds of the serial CLI's ``runner.run`` (helper thread on) with torch and jax in
    this process (``--in-process``) and each in a process of its own (the default). Mid-size
    MLPs (manual, torch, jax): warmed, then 3 rounds of 20 cases alternating, medians. Catalog
    cases (manual, torch, jax, fd), each compiled cold once by each way: cases 1-16 in-process
    then isolated, 17-32 isolated then in-process, summed. Prints JSON."""
    import json

    from harness.backends import build
    from harness.runner import pin_threads

    pin_threads()
    out: dict[str, dict[str, float]] = {"mid": {}, "catalog": {}}
    ways = {"in-process": {}, "isolated": {"isolate": build.ISOLATED, "pinned": True}}

    def seconds(cases, backends) -> float:
        t0 = time.perf_counter()
        run(cases, backends, overlap=True)
        return time.perf_counter() - t0

    names = ["manual", "torch", "jax"]
    built = {w: build.build(names, [], 600, **kw) for w, kw in ways.items()}
    try:
        for b in built.values():
            run(_mid_cases(2), b)  # compile, allocate, start the processes
        rounds = {w: [] for w in ways}
        for _ in range(3):
            for w, b in built.items():
                rounds[w].append(seconds(_mid_cases(20), b))
        out["mid"] = {w: statistics.median(r) for w, r in rounds.items()}
    finally:
        for b in built.values():
            build.close(b)
    catalog = load_file(ROOT / "cases" / "sweeps" / "catalog.toml")[:32]
    built = {w: build.build(names + ["fd"], [], 600, **kw) for w, kw in ways.items()}
    try:
        out["catalog"] = {w: 0.0 for w in ways}
        for part, order in ((catalog[:16], ["in-process", "isolated"]), (catalog[16:], ["isolated", "in-process"])):
            for w in order:
                out["catalog"][w] += seconds(part, built[w])
    finally:
        for b in built.values():
            build.close(b)
    print(json.dumps(out))


def overhead() -> None:
    print("\nHarness overhead on a run of mid-size cases (manual, torch, jax)")
    import json

    # torch and jax each in a process of its own (the serial CLI's default) against in-process
    child = "from benchmarks.__main__ import isolation_cli_setting; isolation_cli_setting()"
    ways = json.loads(subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True,
                                     check=True, env=dict(os.environ, XVAL_JAX_CACHE="off")).stdout.splitlines()[-1])
    for what, label in (("mid", "20 mid-size MLP cases (manual, torch, jax)"),
                        ("catalog", "32 catalog cases, JAX compiling cold (manual, torch, jax, fd)")):
        t = ways[what]
        report(f"torch, jax in processes of their own ÷ in-process: {label}", t["isolated"] / t["in-process"],
               "measured", None)
        report("  seconds in-process", t["in-process"], "measured", None, "s")
        report("  seconds isolated", t["isolated"], "measured", None, "s")

    # The serial CLI's setting: one thread each for BLAS, torch and XLA (pin_threads), with the
    # helper thread (and without). XLA's threads are fixed when JAX starts: hence a new process.
    child = "from benchmarks.__main__ import overhead_cli_setting; overhead_cli_setting()"
    rounds = json.loads(subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.splitlines()[-1])
    (total, compute), (total_alone, compute_alone) = rounds["True"], rounds["False"]
    report("overhead, 20 cases, one BLAS, torch and XLA thread (the serial CLI's setting)", (total - compute) / total,
           "≤ 0.10", (total - compute) / total <= 0.10)
    report("  same, without the helper thread", (total_alone - compute_alone) / total_alone, "measured", None)
    report("  harness ms a case, with the helper thread", (total - compute) / 20 * 1e3, "measured", None, "ms")
    report("  harness ms a case, without", (total_alone - compute_alone) / 20 * 1e3, "measured", None, "ms")
    report("  run seconds with the helper thread ÷ without", total / total_alone, "measured", None)
    report("  backend seconds with the helper thread ÷ without", compute / compute_alone, "measured", None)

    # runner.run as a library call makes it: the libraries' default threads, no helper thread;
    # against the same with the helper, which competes with BLAS's own threads (the backends
    # slow down, and the run may too: why overlap is off by default).
    cases = _mid_cases(6)
    backends = [get(n) for n in ("manual", "torch", "jax")]
    run(cases[:2], backends)  # compile
    rounds = _overhead_rounds(cases, backends)
    (total, compute), (total_alone, compute_alone) = rounds[True], rounds[False]
    report("overhead: (run − backend compute) ÷ run, the libraries' default threads", (total_alone - compute_alone)
           / total_alone, "measured", None)
    report("  with the helper thread: (run − backend compute) ÷ run", (total - compute) / total, "measured", None)
    report("  with the helper thread: run seconds ÷ without", total / total_alone, "measured", None)
    report("  with the helper thread: backend seconds ÷ without", compute / compute_alone, "measured", None)
    # Where the rest goes: drawing each case's inputs (cases.py), and the harness's own work
    # (copying the inputs, checking and comparing the outputs: runner.py, compare.py).
    t0 = time.perf_counter()
    for case in cases:
        case.arrays()
    draw = time.perf_counter() - t0
    report("  drawing the inputs ÷ run, without the helper thread", draw / total_alone, "measured", None)
    report("  copying, checking, comparing ÷ run, without the helper thread",
           (total_alone - compute_alone - draw) / total_alone, "measured", None)
    report("  copying, checking, comparing per case", (total_alone - compute_alone - draw) / len(cases) * 1e3,
           "measured", None, "ms")
    comparison_parts(cases[:2], backends)
    with tempfile.TemporaryDirectory() as tmp:  # a catalog network: conv, max-pool, dense
        conv = [conv_case(Path(tmp), "float32")]
        run(conv, backends)  # compile
        t0 = time.perf_counter()
        result = run(conv, backends)  # one case: nothing to overlap with
        total = time.perf_counter() - t0
        compute = sum(result.cases[0].seconds.values())
    report(f"overhead on the convnet case (m={CONV_BATCH}, float32), one run of one case", (total - compute) / total,
           "measured", None)


def comparison_parts(cases: list[Case], backends: list) -> None:
    """The two parts of the overhead that grow with the case: drawing its inputs, and comparing
    its quantities for every pair: the compiled loop (harness.kernels) against the same rows
    from numpy whole-array expressions (compare._compare_whole, the general way), side by side."""
    import importlib
    import itertools

    from harness.tolerances import lookup

    compare = importlib.import_module("harness.compare")  # the module (harness.compare is the function)
    for case in cases:
        dt = case.model.dtype
        report(f"  drawing a mid-size case's inputs, {dt}", median_time(case.arrays, 15) * 1e3, "measured", None,
               "ms")
        arrays = case.arrays()
        outs = {b.name: b.gradients(case.model, {k: v.copy() for k, v in arrays.items()}) for b in backends}
        pairs = [(a, b, "analytic", lookup(dt, "analytic"), 1.0) for a, b in itertools.combinations(outs, 2)]
        qs = [q for q in case.model.algorithm_order() if all(q in o for o in outs.values())]
        elements = len(pairs) * sum(np.size(outs["manual"][q]) for q in qs)

        def compiled():
            for q in qs:
                compare.compare_pairs(case.name, q, {n: outs[n][q] for n in outs}, pairs, dt)

        def whole():
            for q in qs:
                for a, b, kind, tol, J in pairs:
                    base = dict(case=case.name, quantity=q, a=a, b=b, kind=kind, dtype=dt, rtol=tol.rtol,
                                atol=tol.atol, n_total=int(np.size(outs[a][q])))
                    compare._compare_whole(base, a, outs[a][q], b, outs[b][q], kind, tol, J, 0.0)

        compiled()  # compiled (or loaded from the cache) before it is timed
        times = interleaved({"compiled": compiled, "whole": whole}, 7)
        report(f"  comparing its {len(qs)} quantities × {len(pairs)} pairs, {dt}", times["compiled"] * 1e3,
               "measured", None, "ms")
        report(f"  per pair-element, {dt}", times["compiled"] / elements * 1e9, "measured", None, "ns")
        report(f"  numpy whole-array expressions ÷ the compiled loop, {dt}", times["whole"] / times["compiled"],
               "measured", None)


def jax_compile() -> None:
    print("\nJAX compile time (the default run's cases, the jax backend alone, each in a fresh process)")
    import json

    from harness.cli import DEFAULT_CASES

    # Each case twice: the first call traces and compiles (or reads the persistent cache), the
    # second runs the executable the first left; their difference is what compiling cost.
    child = (
        "import json, sys, time\n"
        "from harness.runner import pin_threads\n"
        "pin_threads()\n"
        "from harness.backends.jax_backend import JaxBackend\n"
        "from harness.cases import load_files\n"
        "cases, jb = load_files(sys.argv[1:]), JaxBackend()\n"
        "first = again = 0.0\n"
        "for c in cases:\n"
        "    arrays = c.arrays()\n"
        "    t0 = time.perf_counter(); jb.gradients(c.model, {k: v.copy() for k, v in arrays.items()})\n"
        "    t1 = time.perf_counter(); jb.gradients(c.model, {k: v.copy() for k, v in arrays.items()})\n"
        "    first, again = first + t1 - t0, again + time.perf_counter() - t1\n"
        "s = jb.stats\n"
        "print(json.dumps(dict(cases=len(cases), compiles=s.compiles, first=first, again=again,\n"
        "                      lower=s.lower_seconds, compile=s.compile_seconds)))\n")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XVAL_JAX_CACHE=cache)
        cold, warm = (json.loads(subprocess.run([sys.executable, "-c", child, *DEFAULT_CASES], env=env, cwd=ROOT,
                                                capture_output=True, text=True, check=True).stdout)
                      for _ in range(2))
    report("jax: cases in the default run", cold["cases"], "measured", None)
    report("jax: signatures compiled (structure, shapes, dtypes)", cold["compiles"], "measured", None)
    for name, r in (("cold cache", cold), ("warm cache", warm)):
        share = (r["first"] - r["again"]) / r["first"]
        report(f"jax, {name}: seconds on the default run's cases", r["first"], "measured", None, "s")
        report(f"jax, {name}: compile share", share, "measured", None)
        report(f"jax, {name}: tracing + lowering (jax.stages lower())", r["lower"], "measured", None, "s")
        report(f"jax, {name}: XLA or cache read (compile())", r["compile"], "measured", None, "s")
    report("jax: warm ÷ cold seconds", warm["first"] / cold["first"], "< 1 (compiles nothing)",
           warm["first"] < cold["first"])

    # The same through the CLI, manual beside jax, default.toml only: what a second `make report` saves.
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, XVAL_JAX_CACHE=cache)
        cmd = [sys.executable, "-m", "harness", "run", str(ROOT / "cases" / "default.toml"), "--backends",
               "manual,jax", "--quiet", "--out", str(Path(cache) / "out")]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        report("default run (manual,jax), cold compilation cache", times[0], "measured", None, "s")
        report("default run (manual,jax), warm cache: second ÷ first", times[1] / times[0], "< 1 (compiles nothing)",
               times[1] < times[0])


def fd_vectorised() -> None:
    print("\nFull central finite differences: batched vs a Python loop over coordinates")
    model = Model((100, 90, 10), ("tanh", "softmax"), "cross_entropy", "float64")
    case = Case("fd", model, 32, 0)
    arrays = case.arrays()
    fd = FiniteDifferenceBackend(strategy="coordinates", max_coords=10**9, intermediates=False)
    batched = median_time(lambda: fd.gradients(model, arrays), 3)
    params = {k: arrays[k].copy() for k in model.param_shapes()}
    X, Y = arrays["X"], arrays["Y"]
    h, n_loop = 6e-6, 2000

    def loop():
        done = 0
        for name, theta in params.items():
            flat = theta.ravel()
            for i in range(flat.size):
                if done == n_loop:
                    return
                old = flat[i]
                flat[i] = old + h
                jp = cost_from(model, params, Y, 0, a=X)
                flat[i] = old - h
                jm = cost_from(model, params, Y, 0, a=X)
                flat[i] = old
                _ = (jp - jm) / (2 * h)
                done += 1

    looped = median_time(loop, 1) * model.n_params / n_loop
    report(f"fd on {model.n_params} parameters, batched", batched, "measured", None, "s")
    report(f"fd on {model.n_params} parameters, loop (from {n_loop} coordinates)", looped, "measured", None, "s")
    report("fd speed-up, batched ÷ loop", looped / batched, "≥ 10", looped / batched >= 10)


def sweep(count: int | None) -> None:
    from .scale import scale, worker_speed

    worker_speed()
    scale(count)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--sizes", default="mid,large", help=f"of {','.join(SIZES)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sweep-count", type=int, default=None, metavar="N",
                        help="the first N cases of cases/sweeps/catalog.toml (default: all 1,000)")
    parser.add_argument("--only", default="gradients,catalog,conv,lstm,attention,overhead,compile,fd,sweep,memory")
    args = parser.parse_args()
    only = args.only.split(",")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"benchmarks {stamp} on {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")
    if "gradients" in only:
        gradients(args.sizes.split(","), args.rounds)
    if "catalog" in only:
        catalog(args.sizes.split(","), args.rounds)
    if "conv" in only:
        conv(args.rounds)
    if "lstm" in only:
        from .lstm import lstm
        lstm(args.rounds)
    if "attention" in only:
        from .attention import attention
        attention(args.rounds)
    if "overhead" in only:
        overhead()
    if "compile" in only:
        jax_compile()
    if "fd" in only:
        fd_vectorised()
    if "sweep" in only:
        sweep(args.sweep_count)
    if "memory" in only:
        from .memory import records_memory
        records_memory()
    RESULTS.mkdir(exist_ok=True)
    frame = pd.DataFrame(ROWS)
    frame.insert(0, "when", stamp)
    out = RESULTS / "benchmarks.csv"
    frame.to_csv(out, index=False)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
