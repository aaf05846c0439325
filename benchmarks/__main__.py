"""Gradient cost of each backend, measured side by side in one run: ``python -m benchmarks``.

Never part of ``make test``. Timings interleave the backends round by round (the machine is
shared and noisy) and report the median, plus each backend's ratio to torch in the same run.
Writes benchmarks/results/gradient.csv.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from harness.backends import get
from harness.cases import Case
from harness.model import Model

SIZES = {
    "small": ((20, 32, 32, 10), 32),
    "mid": ((256, 512, 512, 10), 256),
    "large": ((1024, 2048, 2048, 1024, 10), 512),
}


def measure(case: Case, backends: list, rounds: int) -> dict[str, float]:
    arrays = case.arrays()
    for b in backends:  # warm up: JAX compiles here, torch allocates
        b.gradients(case.model, arrays)
    times: dict[str, list[float]] = {b.name: [] for b in backends}
    for _ in range(rounds):
        for b in backends:
            t0 = time.perf_counter()
            b.gradients(case.model, arrays)
            times[b.name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--sizes", default="small,mid", help=f"any of {','.join(SIZES)}")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    backends = [get(n) for n in ("manual", "torch", "jax")]
    rows = []
    for size in args.sizes.split(","):
        layers, m = SIZES[size]
        for dtype in ("float32", "float64"):
            model = Model(layers, ("relu",) * (len(layers) - 2) + ("softmax",), "cross_entropy", dtype)
            med = measure(Case(f"{size}-{dtype}", model, m, 0), backends, args.rounds)
            for name, t in med.items():
                rows.append(dict(size=size, layers="-".join(map(str, layers)), batch=m, dtype=dtype,
                                 params=model.n_params, backend=name, seconds=t,
                                 ratio_to_torch=t / med["torch"]))
    frame = pd.DataFrame(rows)
    out = Path(__file__).parent / "results" / "gradient.csv"
    out.parent.mkdir(exist_ok=True)
    frame.to_csv(out, index=False)
    print(frame.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    print(f"\nmedian of {args.rounds} interleaved rounds; written to {out}")


if __name__ == "__main__":
    main()
