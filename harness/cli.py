"""Command line: ``python -m harness run [CASEFILE ...] [options]``.

Exit codes: 0 every pair agrees on every case, 1 a disagreement or a backend
error, 2 bad input (one line on stderr naming file, case and field).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from . import backends as registry
from .cases import load_files
from .errors import InputError
from .report import Progress, summary_table, write_report
from .runner import build_backends, run, run_parallel

DEFAULT_CASES = "cases/default.toml"
DEFAULT_OUT = "reports/latest"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(2, f"error: {message} (see `python -m harness {self.prog.split()[-1]} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness",
                     description="Cross-validate hand-written backprop against PyTorch, JAX and "
                                 "finite differences.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run cases through every backend and compare every pair")
    p.add_argument("casefiles", nargs="*", default=[DEFAULT_CASES], metavar="CASEFILE",
                   help=f"TOML case files (default: {DEFAULT_CASES})")
    p.add_argument("--backends", default=",".join(registry.DEFAULT),
                   help="comma-separated backend names (default: %(default)s)")
    p.add_argument("--backend", action="append", default=[], metavar="FILE.py:ClassName",
                   help="add a plugin backend from a file; may be repeated")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="output directory (default: %(default)s)")
    p.add_argument("--save-arrays", action="store_true",
                   help="also write DIR/arrays/<case>/{inputs,<backend>}.npz")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run cases in N processes (default: %(default)s)")
    quiet = p.add_mutually_exclusive_group()
    quiet.add_argument("--quiet", action="store_true", help="print only the verdict line")
    quiet.add_argument("--json", action="store_true",
                       help="print DIR/results.json to stdout instead of the table (for scripts)")
    c = sub.add_parser("claims", help="check each statement of the derivation against torch, JAX and fd")
    c.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="writes DIR/claims.md and DIR/claims.csv (default: %(default)s)")
    sc = sub.add_parser("selfcheck", help="prove the harness catches wrong gradients: run every mutant")
    sc.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help="writes DIR/selfcheck.md and DIR/selfcheck.csv (default: %(default)s)")
    st = sub.add_parser("study", help="the nudge studied: error against ε, cost against size")
    st.add_argument("which", choices=["epsilon", "cost"])
    st.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help="writes DIR/study-<which>.{csv,png,md} and DIR/nudge.md (default: %(default)s)")
    e = sub.add_parser("explain", help="walk through one case's forward and backward pass, step by step")
    e.add_argument("casefile", metavar="CASEFILE")
    e.add_argument("--case", required=True, metavar="NAME", help="the case to walk through")
    e.add_argument("--against", default="torch,jax", metavar="NAMES",
                   help="backends whose differences are shown beside each step (default: %(default)s)")
    return parser


def cmd_explain(args: argparse.Namespace) -> int:
    from .errors import did_you_mean
    from .explain import explain

    cases = {c.name: c for c in load_files([args.casefile])}
    if args.case not in cases:
        raise InputError(f"no case named {args.case!r}{did_you_mean(args.case, cases)}; "
                         f"cases: {', '.join(cases)}", file=args.casefile, field="--case")
    case = cases[args.case]
    arrays = case.arrays()
    manual = registry.check_output(case.model, registry.get("manual").gradients(case.model, arrays),
                                   case.batch)
    others: dict[str, object] = {}
    for name in [n.strip() for n in args.against.split(",") if n.strip()]:
        try:
            backend = registry.get(name)
            others[name] = registry.check_output(case.model, backend.gradients(case.model, arrays),
                                                 case.batch)
        except InputError as err:
            raise InputError(err.message, field="--against") from None
        except Exception as err:  # shown in place of its differences; the walkthrough goes on
            others[name] = f"unavailable ({type(err).__name__}: {err})"
    print(explain(case, manual, others))
    return 0


def cmd_selfcheck(args: argparse.Namespace) -> int:
    import pandas as pd

    from .files import atomic_write
    from .selfcheck import run_selfcheck, table

    out = Path(args.out)
    _prepare_out(out)
    outcomes = run_selfcheck([registry.get(n) for n in ("manual", "torch", "jax", "fd")])
    text, rate = table(outcomes)
    summary = f"Kill rate: {100 * rate:.0f}% of the eligible (mutant, case) runs detected."
    atomic_write(out / "selfcheck.csv", pd.DataFrame([o.__dict__ for o in outcomes]).to_csv(index=False).encode())
    atomic_write(out / "selfcheck.md", f"# Self-check: wrong gradients caught\n\n{text}\n\n{summary}\n".encode())
    print(text)
    print(summary)
    return 0 if rate == 1.0 else 1


def cmd_study(args: argparse.Namespace) -> int:
    from . import studies

    out = Path(args.out)
    _prepare_out(out)
    if args.which == "epsilon":
        slopes = studies.study_epsilon(out)
        print(slopes.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    else:
        frame = studies.study_cost(out)
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    studies.write_nudge_answer(out)
    print(f"written to {out}/study-{args.which}.csv, .png, .md and {out}/nudge.md")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from .claims import FRAMEWORKS, run_claims
    from .report import claims_terminal, write_claims

    out = Path(args.out)
    _prepare_out(out)
    outcomes = run_claims({name: registry.get(name) for name in FRAMEWORKS})
    write_claims(outcomes, out, list(FRAMEWORKS))
    print(claims_terminal(outcomes, list(FRAMEWORKS)))
    print(f"written to {out}/claims.md and {out}/claims.csv")
    return 0 if all(o.passed for o in outcomes) else 1


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"cannot write to output directory: {e.strerror or e}",
                         file=str(out), field="--out") from None


def _backend_names(spec: str) -> list[str]:
    """The --backends names, each known (an unknown one is bad input, with a suggestion)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        if name not in registry.available():
            registry.get(name)  # raises InputError with a suggestion
    return names


def _check_names(names: list[str]) -> None:
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"two backends are named {dup!r}; names must be unique", field="--backend")
    if len(names) < 2:
        raise InputError("at least two backends are needed to compare", field="--backends")


def _build_backends(names: str, plugins: list[str]) -> list:
    # A built-in that fails to build (a framework that will not import) is reported per case.
    built = build_backends(_backend_names(names)) + [registry.load_plugin(spec) for spec in plugins]
    _check_names([b.name for b in built])
    return built


def _default_cases(paths: list[str]) -> list[str]:
    """`cases/default.toml` from the current directory, else from the checkout harness runs from."""
    if paths == [DEFAULT_CASES] and not Path(DEFAULT_CASES).exists():
        beside = Path(__file__).resolve().parent.parent / DEFAULT_CASES
        if beside.exists():
            return [str(beside)]
    return paths


def cmd_run(args: argparse.Namespace) -> int:
    cases = load_files(_default_cases(args.casefiles))
    if args.jobs < 1:
        raise InputError(f"must be at least 1, got {args.jobs}", field="--jobs")
    quiet = args.quiet or args.json
    progress = None if quiet else Progress()
    if args.jobs > 1:
        # Validate here (bad input exits 2 before any work); each worker builds its own backends.
        names = _backend_names(args.backends)
        _check_names(names + [registry.load_plugin(spec).name for spec in args.backend])
        out = Path(args.out)
        _prepare_out(out)
        result = run_parallel(cases, names + list(args.backend), args.jobs, progress)
    else:
        backends = _build_backends(args.backends, args.backend)
        out = Path(args.out)
        _prepare_out(out)
        result = run(cases, backends, progress=progress)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_report(result, out, save_arrays=args.save_arrays, command=command)
    if args.json:
        sys.stdout.write((out / "results.json").read_text())
    elif args.quiet:
        print(summary_table(result, out).splitlines()[-1])
    else:
        print(summary_table(result, out))
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "claims":
            return cmd_claims(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command == "study":
            return cmd_study(args)
        if args.command == "selfcheck":
            return cmd_selfcheck(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the previous report, if any, is left as it was", file=sys.stderr)
        return 130
    return 2
