"""Studies of "the nudge": its error against ε, and its cost against network size.

``python -m harness study epsilon`` and ``python -m harness study cost`` write CSVs, PNG
plots and a markdown summary into DIR, then rewrite ``DIR/nudge.md``, the section
"Is the nudge used in practice?" built from whichever study results DIR holds (the run
report includes it).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .backends.fd import FiniteDifferenceBackend, cost_from
from .backends.manual import ManualBackend
from .cases import Case
from .files import atomic_write
from .model import Model

EPSILONS = np.logspace(0, -12, 49)  # four per decade
METHODS = ("forward", "central", "richardson", "complex")
EXPECTED_SLOPE = {"forward": 1, "central": 2, "richardson": 4, "complex": 2}
EPS_CASE = Case("tanh-3-layer", Model((5, 7, 6, 4), ("tanh", "tanh", "softmax"), "cross_entropy", "float64"),
                16, 1234, description="the smooth default case; tanh has no kinks")
NUDGE = 1e-3

ROUND_OFF = (
    "Why the error rises again for tiny ε: J(θ ± ε) is computed with a relative rounding error "
    "of about machine ε (1.1e-16 in float64, 6e-8 in float32), so the difference J(θ+ε) − J(θ) "
    "carries an absolute error of about ε_mach·|J| that does not shrink with ε, and dividing "
    "by ε magnifies it as ε_mach·|J|/ε. Truncation error falls as ε (forward) or ε² (central) "
    "while round-off grows as 1/ε: the best ε balances the two, and below it the estimate is "
    "mostly noise. The complex step subtracts nothing, so it has no such floor. In float32 the "
    "smallest steps vanish altogether: θ + ε rounds back to θ and the quotient is 0/0 (not "
    "plotted).")


def _param_gradient(out: dict, model: Model) -> np.ndarray:
    return np.concatenate([np.asarray(np.ma.getdata(out[f"d{p}"]), dtype=np.float64).ravel()
                           for p in model.param_shapes()])


def epsilon_sweep(case: Case = EPS_CASE, epsilons=EPSILONS, methods=METHODS, progress=None) -> pd.DataFrame:
    """Error ‖estimate − exact‖/‖exact‖ of the full parameter gradient, per method, dtype, ε.

    The estimate runs in the dtype itself (float32 differences of float32 J); the exact
    gradient is float64 backprop at the same (float32-rounded) parameters.
    ``progress(done, total, name)`` (``progress.Progress``) counts the (dtype, method, ε) points.
    """
    rows = []
    dtypes = ("float64", "float32")
    total = len(dtypes) * len(methods) * len(epsilons)
    if progress is not None:
        progress(0, total, "")
    for dtype in dtypes:
        model = Model(case.model.layers, case.model.activations, case.model.loss, dtype)
        c = Case(case.name, model, case.batch, case.seed)
        arrays = c.arrays()
        model64 = Model(case.model.layers, case.model.activations, case.model.loss, "float64")
        exact = _param_gradient(ManualBackend().gradients(
            model64, {k: (v if k == "y" else v.astype(np.float64)) for k, v in arrays.items()}), model64)
        for method in methods:
            for eps in epsilons:
                fd = FiniteDifferenceBackend(method=method, step=float(eps), strategy="coordinates",
                                             precision="case", intermediates=False)
                with np.errstate(all="ignore"):
                    est = _param_gradient(fd.gradients(model, arrays), model)
                    err = np.linalg.norm(est - exact) / np.linalg.norm(exact)
                rows.append(dict(method=method, dtype=dtype, eps=float(eps),
                                 error=float(err) if np.isfinite(err) else np.nan))
                if progress is not None:  # no failures: a non-finite error is a finding (0/0 in float32)
                    progress(len(rows), total, f"{method} {dtype} ε={eps:.1e}")
    return pd.DataFrame(rows)


def fit_slopes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method and dtype: the best ε, its error, and the log-log slope in the truncation
    region: ε from 3× the best ε up to 1e-1 (beyond, higher-order terms bend the curve),
    keeping only errors at least 3× the best (off the round-off floor)."""
    out = []
    for (method, dtype), g in frame.groupby(["method", "dtype"], sort=False):
        g = g.dropna(subset=["error"])
        g = g[g["error"] > 0]
        best = g.loc[g["error"].idxmin()]
        region = g[(g["eps"] >= 3 * best["eps"]) & (g["eps"] <= 0.1 * 1.0001)
                   & (g["error"] >= 3 * best["error"])]
        slope = (float(np.polyfit(np.log10(region["eps"]), np.log10(region["error"]), 1)[0])
                 if len(region) >= 3 else np.nan)
        at_nudge = g.iloc[(g["eps"] - NUDGE).abs().argmin()]
        out.append(dict(method=method, dtype=dtype, best_eps=float(best["eps"]), best_error=float(best["error"]),
                        slope=slope, expected_slope=EXPECTED_SLOPE[method], fit_points=len(region),
                        error_at_1e_3=float(at_nudge["error"])))
    return pd.DataFrame(out)


def plot_epsilon(frame: pd.DataFrame, slopes: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    colors = {"forward": "tab:red", "central": "tab:blue", "richardson": "tab:green", "complex": "tab:purple"}
    for (method, dtype), g in frame.groupby(["method", "dtype"], sort=False):
        s = slopes[(slopes.method == method) & (slopes.dtype == dtype)].iloc[0]
        label = f"{method} {dtype}" + (f" (slope {s.slope:.2f})" if np.isfinite(s.slope) else "")
        ax.loglog(g["eps"], g["error"].clip(lower=1e-17), ls="-" if dtype == "float64" else "--",
                  color=colors[method], label=label, lw=1.4)
        ax.plot(s.best_eps, max(s.best_error, 1e-17), "o", color=colors[method], ms=4)
    ax.axvline(NUDGE, color="black", lw=0.8, ls=":")
    ax.text(NUDGE * 0.85, 1e2, "the nudge, ε = 1e-3", fontsize=8)
    ax.set_xlabel("step ε")
    ax.set_ylabel("‖estimate − backprop‖ / ‖backprop‖")
    ax.set_title("Finite-difference error against ε (tanh 5-7-6-4, softmax + CE); dots: best ε")
    ax.invert_xaxis()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def study_epsilon(out: Path, progress=None) -> pd.DataFrame:
    frame = epsilon_sweep(progress=progress)
    slopes = fit_slopes(frame)
    _write(out / "study-epsilon.csv", frame.to_csv(index=False))
    _write(out / "study-epsilon-summary.csv", slopes.to_csv(index=False))
    plot_epsilon(frame, slopes, out / "study-epsilon.png")
    lines = ["# Study: finite-difference error against ε", "",
             f"Case: {EPS_CASE.model.describe()}, batch {EPS_CASE.batch}, seed {EPS_CASE.seed} "
             f"({EPS_CASE.model.n_params} parameters); every parameter nudged; error of the whole "
             "gradient against float64 backprop.", "", "![error against ε](study-epsilon.png)", "",
             "| method | dtype | best ε | error there | error at ε = 1e-3 | slope (truncation region) | expected |",
             "|---|---|---|---|---|---|---|"]
    for s in slopes.itertuples():
        slope = f"{s.slope:.2f} ({s.fit_points} points)" if np.isfinite(s.slope) else "—"
        lines.append(f"| {s.method} | {s.dtype} | {s.best_eps:.1e} | {s.best_error:.1e} | "
                     f"{s.error_at_1e_3:.1e} | {slope} | {s.expected_slope} |")
    lines += ["", ROUND_OFF, ""]
    _write(out / "study-epsilon.md", "\n".join(lines))
    return slopes


# --------------------------------------------------------------------------- cost


WIDTHS = (6, 20, 64, 200, 700)  # layers (n, n, n, 10): P from ~1.5e2 to ~1e6
COST_BATCH = 64
FD_MEASURED_UP_TO = 10_000  # full finite differences are run while P stays below this


def _median_time(fn, repeats: int) -> float:
    fn()  # warm up (JAX compiles here)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cost_sweep(widths=WIDTHS, repeats: int = 5, backends: dict | None = None, progress=None) -> pd.DataFrame:
    """Seconds for one gradient per method, and for one forward pass, per network size.
    ``progress(done, total, name)`` (``progress.Progress``) counts the timings (rows)."""
    from .backends import get

    backends = backends or {name: get(name) for name in ("manual", "torch", "jax")}
    rows = []
    total = len(widths) * (len(backends) + 2)  # the forward pass, each backend, finite differences

    def timed(row: dict) -> None:
        rows.append(row)
        if progress is not None:
            progress(len(rows), total, f"P={row['P']:,} {row['method']}")

    if progress is not None:
        progress(0, total, "")
    for n in widths:
        model = Model((n, n, n, 10), ("tanh", "tanh", "softmax"), "cross_entropy", "float64")
        case = Case(f"w{n}", model, COST_BATCH, n)
        arrays = case.arrays()
        params = {k: arrays[k] for k in model.param_shapes()}
        t_fwd = _median_time(lambda: cost_from(model, params, arrays["Y"], 0, a=arrays["X"]), repeats)
        timed(dict(P=model.n_params, width=n, method="forward pass", seconds=t_fwd, extrapolated=False))
        for name, b in backends.items():
            t = _median_time(lambda: b.gradients(model, arrays), repeats)
            timed(dict(P=model.n_params, width=n, method=name, seconds=t, extrapolated=False))
        if model.n_params <= FD_MEASURED_UP_TO:
            fd = FiniteDifferenceBackend(strategy="coordinates", max_coords=10**9, intermediates=False)
            t = _median_time(lambda: fd.gradients(model, arrays), 1)
            timed(dict(P=model.n_params, width=n, method="finite differences", seconds=t,
                       extrapolated=False))
        else:  # 2P forward passes at this network's measured forward time
            timed(dict(P=model.n_params, width=n, method="finite differences",
                       seconds=2 * model.n_params * t_fwd, extrapolated=True))
    frame = pd.DataFrame(rows)
    fwd = frame[frame.method == "forward pass"].set_index("P")["seconds"]
    frame["forward_passes"] = frame["seconds"] / frame["P"].map(fwd)
    return frame


def plot_cost(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    for method, g in frame.groupby("method", sort=False):
        measured, extra = g[~g.extrapolated], g[g.extrapolated]
        line, = ax.loglog(measured["P"], measured["seconds"], "o-", label=method, lw=1.4, ms=4)
        if len(extra):
            joined = pd.concat([measured.tail(1), extra])
            ax.loglog(joined["P"], joined["seconds"], "o--", color=line.get_color(), mfc="white", lw=1.2, ms=4,
                      label=f"{method} (extrapolated: 2P forward passes)")
    ax.set_xlabel("parameters P")
    ax.set_ylabel("seconds for one gradient")
    ax.set_title(f"Cost of one gradient (tanh n-n-n-10, batch {COST_BATCH}, float64)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def study_cost(out: Path, progress=None) -> pd.DataFrame:
    frame = cost_sweep(progress=progress)
    _write(out / "study-cost.csv", frame.to_csv(index=False))
    plot_cost(frame, out / "study-cost.png")
    wide = frame.pivot_table(index="P", columns="method", values="forward_passes", aggfunc="first")
    cols = ["manual", "torch", "jax", "finite differences"]
    lines = ["# Study: the cost of one gradient against network size", "",
             f"Networks n-n-n-10 with tanh, softmax + cross-entropy, batch {COST_BATCH}, float64; "
             "median of 5 timings after a warm-up (JAX compiles there). Cost in units of one "
             "forward pass of the same network:", "", "![time against P](study-cost.png)", "",
             "| P | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    extrapolated = set(frame[frame.extrapolated]["P"])
    for P, row in wide.iterrows():
        cells = [f"{row[c]:.3g}" + (" (extrapolated)" if c == "finite differences" and P in extrapolated else "")
                 for c in cols]
        lines.append(f"| {P:,} | " + " | ".join(cells) + " |")
    lines += ["", "Finite differences are run while P ≤ "
              f"{FD_MEASURED_UP_TO:,}; beyond that their time is 2P forward passes at the measured "
              "forward time (labelled extrapolated).", ""]
    _write(out / "study-cost.md", "\n".join(lines))
    return frame


# --------------------------------------------------------------------------- the answer


def nudge_answer(out: Path) -> str | None:
    """The section "Is the nudge used in practice?" from the study results in ``out``."""
    eps_path, cost_path = out / "study-epsilon-summary.csv", out / "study-cost.csv"
    if not eps_path.exists() and not cost_path.exists():
        return None
    lines = ["## Is the nudge used in practice?", ""]
    if eps_path.exists():
        s = pd.read_csv(eps_path).set_index(["method", "dtype"])
        fwd, cen = s.loc[("forward", "float64")], s.loc[("central", "float64")]
        fwd32 = s.loc[("forward", "float32")]
        cx = s.loc[("complex", "float64")] if ("complex", "float64") in s.index else None
        lines.append(
            f"**It estimates the same gradient, approximately.** Nudging each parameter by ε = 1e-3 "
            f"(a forward difference) gives the backprop gradient to a relative error of "
            f"{fwd.error_at_1e_3:.1e} in float64 ({fwd32.error_at_1e_3:.1e} in float32). The error "
            f"falls with ε (slope {fwd.slope:.2f}, theory 1) down to {fwd.best_error:.1e} at ε = "
            f"{fwd.best_eps:.0e}, then rises again from round-off. The central difference does better: "
            f"slope {cen.slope:.2f} (theory 2), best {cen.best_error:.1e} at ε = {cen.best_eps:.0e}"
            + (f"; the complex step reaches {cx.best_error:.1e}." if cx is not None else ".")
            + " See [study-epsilon.md](study-epsilon.md).")
        lines.append("")
    if cost_path.exists():
        c = pd.read_csv(cost_path)
        big = c[c.P == c.P.max()].set_index("method")
        fd_row = big.loc["finite differences"]
        backprop = [f"{m} {big.loc[m, 'forward_passes']:.2g}" for m in ("manual", "torch", "jax") if m in big.index]
        lines.append(
            f"**It costs O(P) forward passes; backprop costs a small constant.** At P = {int(c.P.max()):,} "
            f"parameters one gradient by finite differences takes {fd_row.seconds:.3g} s "
            f"({fd_row.forward_passes:.3g} forward passes"
            + (", extrapolated" if bool(fd_row.extrapolated) else "")
            + f"), by backprop the equivalent of {', '.join(backprop)} forward passes "
            f"({big.loc['manual', 'seconds']:.3g} s for manual). See [study-cost.md](study-cost.md).")
        lines.append("")
    lines.append(
        "**So it is not how training computes gradients; it is how gradients are checked.** "
        "Frameworks train with reverse-mode automatic differentiation (backprop). Finite "
        "differences are used in practice as a gradient check on small cases — "
        "`torch.autograd.gradcheck`, `jax.test_util.check_grads` — usually central differences "
        "in float64, or cheap directional checks vᵀ∇J on large ones. That is what this harness "
        "does with its `fd` backend.")
    return "\n".join(lines) + "\n"


def write_nudge_answer(out: Path) -> None:
    text = nudge_answer(out)
    if text:
        _write(out / "nudge.md", text)


def _save(fig, path: Path) -> None:
    """A PNG written atomically, like every report file."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())


def _write(path: Path, text: str) -> None:
    atomic_write(path, text.encode())
