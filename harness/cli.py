"""Command line: ``python -m harness run [CASEFILE ...] [options]``.

Exit codes: 0 every pair agrees on every case, 1 a disagreement or a backend
error, 2 bad input (one line on stderr naming file, case and field).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

from . import backends as registry
from .cases import load_files
from .errors import InputError
from .files import CLAIMS_FILES, SELFCHECK_FILES, STUDY_FILES, OutputError, check_output_dir, output_set
from .progress import Progress
from .records import Spill
from .report import summary_table, write_report
from .backends import build
from .parallel import check_jobs
from .runner import pin_threads, run

DEFAULT_CASES = ["cases/default.toml", "cases/networks.toml", "cases/sequences.toml"]  # MLPs; catalog networks
DEFAULT_OUT = "reports/latest"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, like every other bad input
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness",
                     description="Cross-validate hand-written backprop against PyTorch, JAX and "
                                 "finite differences.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run cases through every backend and compare every pair")
    p.add_argument("casefiles", nargs="*", default=list(DEFAULT_CASES), metavar="CASEFILE",
                   help=f"TOML case files (default: {' '.join(DEFAULT_CASES)})")
    p.add_argument("--backends", default=",".join(registry.DEFAULT),
                   help="comma-separated backend names (default: %(default)s)")
    p.add_argument("--backend", action="append", default=[], metavar="FILE.py:ClassName",
                   help="add a plugin backend from a file; may be repeated")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="output directory (default: %(default)s)")
    p.add_argument("--save-arrays", action="store_true",
                   help="also write DIR/arrays/<case>/{inputs,<backend>}.npz")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="run cases on a local Dask cluster of N worker processes, at most the "
                            "number of cores (default: %(default)s, no cluster)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run cases on the Dask cluster whose scheduler is at ADDRESS "
                            "(tcp://host:8786); its workers need this package installed")
    p.add_argument("--oversubscribe", action="store_true",
                   help="allow --jobs above the number of cores")
    p.add_argument("--in-process", action="store_true",
                   help="run torch and jax in this process, not each in a process of its own: "
                        "saves passing arrays between processes, but a crash in their native code "
                        "(an XLA abort) then ends the run without a report")
    p.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="a plugin backend, or torch or jax in a process of its own, that takes "
                        "longer on one case is stopped and reported as an error for that case "
                        "(default: %(default)g)")
    p.add_argument("--trust-kind", action="append", default=[], metavar="NAME",
                   help="honour plugin NAME's declared finite-difference `kind` (a looser "
                        "tolerance row); without it a plugin is checked with the analytic row")
    p.add_argument("--allow-uncompared", action="store_true",
                   help="exit 0 even when a pair of backends or a case compared nothing "
                        "(the verdict still says so)")
    p.add_argument("--yes", action="store_true",
                   help="let a [[sweep]] draw more than 1,000,000 cases (or layers); "
                        "the memory check still applies")
    quiet = p.add_mutually_exclusive_group()
    quiet.add_argument("--quiet", action="store_true", help="print only the verdict line")
    quiet.add_argument("--json", action="store_true",
                       help="print DIR/results.json to stdout instead of the table (for scripts)")
    c = sub.add_parser("claims", help="check each statement of the derivation against torch, JAX and fd")
    c.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="writes DIR/claims.md and DIR/claims.csv (default: %(default)s)")
    c.add_argument("--quiet", action="store_true", help="print only the final line: no table, no live progress")
    sc = sub.add_parser("selfcheck", help="prove the harness catches wrong gradients: run every mutant")
    sc.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help="writes DIR/selfcheck.md and DIR/selfcheck.csv (default: %(default)s)")
    sc.add_argument("--no-layer-files", action="store_true",
                    help="skip the shipped buggy layers files (examples/*_buggy.py)")
    sc.add_argument("--quiet", action="store_true", help="print only the final line: no table, no live progress")
    st = sub.add_parser("study", help="the nudge studied: error against ε, cost against size")
    st.add_argument("which", choices=["epsilon", "cost"])
    st.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help="writes DIR/study-<which>.{csv,png,md} and DIR/nudge.md (default: %(default)s)")
    st.add_argument("--quiet", action="store_true", help="print only the final line: no table, no live progress")
    e = sub.add_parser("explain", help="walk through one case's forward and backward pass, step by step")
    e.add_argument("casefile", metavar="CASEFILE")
    e.add_argument("--case", required=True, metavar="NAME", help="the case to walk through")
    e.add_argument("--against", default="torch,jax", metavar="NAMES",
                   help="backends whose differences are shown beside each step (default: %(default)s)")
    ly = sub.add_parser("layers", help="check your own CS231n- or DLS-style layer functions (FILE.py)")
    ly.add_argument("file", metavar="FILE.py", help="your layers file; it is imported and run, as pytest runs a test file")
    ly.add_argument("--only", default=None, metavar="NAMES",
                    help="comma-separated layers to check (names as in the table: affine, batchnorm, ...)")
    ly.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ly.add_argument("--shape", default=None, metavar="K=V,...",
                    help="check one shape only (with --only and one layer): the reproducing command")
    ly.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                    help="per layer, for all its shapes and the shrinking (default: %(default)g)")
    ly.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                    help="writes DIR/layers.{csv,md,json,html} (default: %(default)s)")
    ly.add_argument("--against", default="manual,torch,jax,fd", metavar="ARMS",
                    help="the arms your code is compared with, and each other (default: %(default)s)")
    ly_quiet = ly.add_mutually_exclusive_group()
    ly_quiet.add_argument("--quiet", action="store_true", help="print only the final line: no table, no live progress")
    ly_quiet.add_argument("--json", action="store_true", help="print DIR/layers.json to stdout instead of the table")
    return parser


def cmd_layers(args: argparse.Namespace) -> int:
    from .files import LAYERS_FILES, atomic_write
    from .userlayers import check_file
    from .userlayers import report as lr

    out = Path(args.out)
    _prepare_out(out)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    against = tuple(a.strip() for a in args.against.split(",") if a.strip())
    with Progress("layers", "layers", quiet=args.quiet or args.json) as progress:
        results = check_file(args.file, only=only, dtype=args.dtype, timeout=args.timeout, shape=args.shape,
                             against=against, progress=progress)
    data = lr.as_json(results, args.file, args.dtype)
    with output_set(out, LAYERS_FILES) as stage:
        atomic_write(stage / "layers.csv", lr.comparisons_frame(results).to_csv(index=False).encode())
        atomic_write(stage / "layers.md", lr.markdown(results, args.file, args.dtype).encode())
        atomic_write(stage / "layers.json", lr.dumps(data).encode())
        atomic_write(stage / "layers.html", lr.html_page(data).encode())
    if args.json:
        print(lr.dumps(data))
    elif args.quiet:
        print(lr.verdict_line(results))
    else:
        print(lr.table_text(results))
        for line in lr.details(results):
            print(line)
        print(lr.verdict_line(results))
    return 0 if data["passed"] else 1


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
    backends = [registry.get(n) for n in ("manual", "torch", "jax", "fd")]
    with Progress("selfcheck", "runs", quiet=args.quiet) as progress:  # failures: mutants not caught
        outcomes = run_selfcheck(backends, progress=progress)
    text, rate = table(outcomes)
    summary = f"Kill rate: {100 * rate:.0f}% of the eligible (mutant, case) runs detected."
    layers_ok = True
    if not args.no_layer_files:
        from .selfcheck import layer_files

        with Progress("buggy layer files", "layers", quiet=args.quiet) as progress:
            files_text, layers_ok = layer_files(Path(__file__).resolve().parent.parent, progress=progress)
        text += ("\n\n## Buggy layer files (python -m harness layers)\n\n" + files_text)
        summary += (" Buggy layer files: every planted layer caught, with its smallest failing input; every other layer agrees."
                    if layers_ok else " Buggy layer files: NOT every planted layer was caught (see the table).")
    with output_set(out, SELFCHECK_FILES) as stage:
        atomic_write(stage / "selfcheck.csv",
                     pd.DataFrame([o.__dict__ for o in outcomes]).to_csv(index=False).encode())
        atomic_write(stage / "selfcheck.md",
                     f"# Self-check: wrong gradients caught\n\n{text}\n\n{summary}\n".encode())
    if not args.quiet:
        print(text)
    print(summary)
    return 0 if rate == 1.0 and layers_ok else 1


def cmd_study(args: argparse.Namespace) -> int:
    from . import studies

    out = Path(args.out)
    _prepare_out(out)
    with output_set(out, STUDY_FILES[args.which]) as stage:
        # the cost study times itself: its display redraws between timings only, never from a thread
        with Progress(f"study {args.which}", "points" if args.which == "epsilon" else "timings",
                      quiet=args.quiet, ticking=args.which != "cost") as progress:
            if args.which == "epsilon":
                frame = studies.study_epsilon(stage, progress=progress)
            else:
                frame = studies.study_cost(stage, progress=progress)
        studies.write_nudge_answer(stage)
    if not args.quiet:
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print(f"written to {out}/study-{args.which}.csv, .png, .md and {out}/nudge.md")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from .claims import FRAMEWORKS, run_claims
    from .report import claims_terminal, write_claims

    out = Path(args.out)
    _prepare_out(out)
    frameworks = {name: registry.get(name) for name in FRAMEWORKS}
    with Progress("claims", "claims", quiet=args.quiet) as progress:  # a claim in one dtype: a row
        outcomes = run_claims(frameworks, progress=progress)
    with output_set(out, CLAIMS_FILES) as stage:
        write_claims(outcomes, stage, list(FRAMEWORKS))
    text = claims_terminal(outcomes, list(FRAMEWORKS))
    written = f"written to {out}/claims.md and {out}/claims.csv"
    if args.quiet:  # the verdict line, and where the tables are
        print(f"{text.splitlines()[-1]}; {written}")
    else:
        print(text)
        print(written)
    return 0 if all(o.passed for o in outcomes) else 1


def _prepare_out(out: Path) -> Path:
    """Up-front check, before any work, that the report set can be written at ``out``."""
    return check_output_dir(out)


def _backend_names(spec: str) -> list[str]:
    """The --backends names, each known (an unknown one is bad input, with a suggestion)."""
    return build.known_names([n.strip() for n in spec.split(",") if n.strip()])


def _default_cases(paths: list[str]) -> list[str]:
    """The default case files from the current directory, else from the checkout harness runs from."""
    if paths == DEFAULT_CASES and not all(Path(p).exists() for p in DEFAULT_CASES):
        beside = [Path(__file__).resolve().parent.parent / p for p in DEFAULT_CASES]
        if all(p.exists() for p in beside):
            return [str(p) for p in beside]
    return paths


def _jobs(args: argparse.Namespace) -> int:
    """--jobs, capped at the core count: more heavy workers than cores only fight over them."""
    check_jobs(args.jobs)
    cores = os.cpu_count() or 1
    if args.jobs > cores and not args.oversubscribe:
        print(f"note: --jobs {args.jobs} capped at {cores}, the number of cores "
              "(--oversubscribe to force)", file=sys.stderr)
        return cores
    return args.jobs


def cmd_run(args: argparse.Namespace) -> int:
    cases = load_files(_default_cases(args.casefiles), allow_huge=args.yes, keep_arrays=args.save_arrays,
                       spilled=True)
    jobs = _jobs(args)
    if not 0 < args.timeout < 1e9:
        raise InputError(f"must be a positive number of seconds, got {args.timeout}", field="--timeout")
    out = _prepare_out(Path(args.out))
    trust = frozenset(args.trust_kind)
    # Each case's comparisons go to disk as it is done: a sweep's memory grows by its cases.
    records = Spill()
    with Progress("run", quiet=args.quiet or args.json) as progress:
        if jobs > 1 or args.scheduler:
            from .parallel import run_distributed

            # Validate here (bad input exits 2 before any work); each worker builds its own backends.
            names = _backend_names(args.backends)
            plugins = build.plugins(args.backend, args.timeout)
            build.close(plugins)
            build.check_names(names + [p.name for p in plugins])
            result = run_distributed(cases, names + list(args.backend), jobs=None if args.scheduler else jobs,
                                     scheduler=args.scheduler, progress=progress, trust_kinds=trust,
                                     timeout=args.timeout, names=names + [p.name for p in plugins],
                                     keep_arrays=args.save_arrays, spill=records)
        else:
            pin_threads()  # the workers' settings: the same bits whichever way a case runs
            # torch and jax each in a process of its own (pinned alike): a crash in their native
            # code is an error for its case, as on a Dask worker, not the end of the run.
            backends = build.build(_backend_names(args.backends), args.backend, args.timeout,
                                   isolate=() if args.in_process else build.ISOLATED, pinned=True)
            try:
                # Arrays the report will not save are dropped case by case (CaseResult.shed_arrays).
                # One compute thread: the harness's drawing and comparing go to a second one.
                result = run(cases, backends, progress=progress, trust_kinds=trust,
                             keep_arrays=args.save_arrays, overlap=True, spill=records)
                result.frameworks = build.frameworks(backends)
            finally:
                build.close(backends)
    result.allow_uncompared = args.allow_uncompared
    if args.backends == ",".join(registry.DEFAULT):
        _drop_inapplicable_defaults(result)
    command = "python -m harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_report(result, out, save_arrays=args.save_arrays, command=command)
    if args.json:
        with open(out / "results.json", encoding="utf-8") as f:  # a sweep's file: not one string
            shutil.copyfileobj(f, sys.stdout)
    elif args.quiet:
        print(summary_table(result, out).splitlines()[-1])
    else:
        print(summary_table(result, out))
    return 0 if result.passed else 1


def _drop_inapplicable_defaults(result) -> None:
    """A default backend (not asked for by name) that applies to none of the cases, such as
    manual_columns on conv networks, leaves the verdict: a pair with it compares nothing by
    design, not by a gap. Each case keeps its note, and the run's kind notes say so. A backend
    named in --backends stays, and then fails a run where it compares nothing."""
    for name in list(result.backends):
        notes = [r.notes.get(name, "") for r in result.cases]
        if result.cases and all(name not in r.outputs and n.startswith("not applicable") for r, n in
                                zip(result.cases, notes)):
            result.backends.remove(name)
            for r in result.cases:
                r.kind_notes[name] = ("is a default backend not applicable to any case of this run "
                                      "(see the case notes); left out of the verdict")


_terminated = False  # SIGTERM was received
INTERRUPTED = (130, 143)  # exit codes after Ctrl-C and SIGTERM, as a shell reports them


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` (staging directories,
    plugin processes, worker pools) runs and the previous report stays as it was."""


def _on_sigint(signum, frame):
    from . import runner

    runner.STOP.set()  # as for SIGTERM: Ctrl-C must stop the run even if the exception is lost
    raise KeyboardInterrupt


def _on_sigterm(signum, frame):
    from . import runner

    global _terminated
    _terminated = True
    runner.STOP.set()  # in case the exception below is swallowed (raised inside a finalizer or
    raise _Terminated()  # a framework's callback); the run then stops at the next case


def _quiet_unraisable(unraisable) -> None:
    """Ctrl-C or SIGTERM raised inside a finalizer or a framework's callback (jax's GC hook,
    say) cannot propagate; Python would print it as "Exception ignored ... Traceback". STOP is
    set and the run stops at its next check, so that is noise: everything else goes through."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        sys.unraisablehook = _quiet_unraisable
        signal.signal(signal.SIGTERM, _on_sigterm)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored (nohup, &)
            signal.signal(signal.SIGINT, _on_sigint)
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
        if args.command == "layers":
            return cmd_layers(args)
    except (InputError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("interrupted; the previous report, if any, is left as it was", file=sys.stderr)
        return 143 if isinstance(e, _Terminated) or _terminated else 130
    return 2
