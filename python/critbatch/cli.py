"""The ``critbatch`` command: validate, sweep, fit, tune, plot, report, demo, schema.

Every error a user can cause (a bad spec, a missing file, an output that holds another sweep)
prints one line, ``critbatch: error: ...``, on stderr and exits with status 1 (2 for bad
command-line usage); a traceback means a bug.

``critbatch validate SPEC`` checks a spec and prints the size of its grid;
``critbatch sweep --dry-run SPEC -o OUT`` also times a sample of its runs and prints an estimate
of the sweep's time without writing anything. Both take ``--set KEY=VALUE`` overrides
(:func:`critbatch.spec.apply_overrides`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

__all__ = ["main"]

MODELS = ("mccandlish", "inverse", "rational")


class _Formatter(argparse.HelpFormatter):
    """Help that states each option's default (unless it has none: None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text
            and "%(default)" not in text
            and action.option_strings
            and default not in (None, False, [], argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"critbatch: error: {message} (see critbatch --help)\n")


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the spec before it is validated, e.g. "
        "target.max_steps=500, batch_sizes=[1,4] or problems[0].n=256 (the value "
        "is read as TOML; repeat for several keys)",
    )


def _parser() -> argparse.ArgumentParser:
    from critbatch import __version__

    parser = _Parser(
        prog="critbatch",
        description="Steps to target against batch size: run "
        "sweeps, fit critical batch sizes, plot and report.",
    )
    parser.add_argument("--version", action="version", version=f"critbatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check a TOML spec and print the size of its grid")
    p.add_argument("spec", help="the sweep spec (TOML)")
    _add_overrides(p)
    p.add_argument(
        "--print-spec",
        action="store_true",
        help="print the validated spec (overrides applied, defaults filled in)",
    )

    p = sub.add_parser("sweep", help="run a TOML spec into a Parquet directory (resumable)")
    p.add_argument("spec", help="the sweep spec (TOML)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    _add_overrides(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of runs and chunks and an estimate of the time (from a "
        "short timed sample of the runs), and run nothing",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where chunks run: this process, or a Ray cluster",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument(
        "--extend",
        action="store_true",
        help="add the runs of a superset spec to an existing output",
    )
    p.add_argument("--threads", type=int, default=None, help="core threads (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")

    for name, text in (
        ("fit", "fit a law K(b) per optimizer and print b* with its interval"),
        ("plot", "draw K(b) and b·K(b) to an image"),
        ("report", "write a Markdown or self-contained HTML report"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "out",
            help="a sweep directory" + (" or a CSV/Parquet table of runs" if name == "fit" else ""),
        )
        p.add_argument(
            "--model",
            choices=MODELS,
            default="mccandlish",
            help="the law K(b) (default: %(default)s)",
        )
        p.add_argument(
            "--allow-partial",
            action="store_true",
            help="read an unfinished sweep (with a warning) instead of refusing it",
        )
        p.add_argument(
            "--n-boot", type=int, default=200, help="bootstrap resamples (default: %(default)s)"
        )
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
        if name == "fit":
            form = p.add_mutually_exclusive_group()
            form.add_argument("--json", action="store_true", help="print the fits as JSON")
            form.add_argument("--csv", action="store_true", help="print the fits' table as CSV")
        if name == "plot":
            p.add_argument("-o", "--output", required=True, help="image file (.png, .pdf, .svg)")
        if name == "report":
            p.add_argument(
                "-o",
                "--output",
                default=None,
                help="report.md or report.html (default: OUT/report.html)",
            )

    p = sub.add_parser(
        "tune",
        help="print K(b) at the best learning rate per batch size (a search: the best trial)",
    )
    p.add_argument("out", help="a sweep directory")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="read an unfinished sweep (with a warning) instead of refusing it",
    )

    sub.add_parser(
        "crosscheck",
        add_help=False,
        help="run a spec on the Rust core and on torch (--device cuda), side by side; "
        "see `critbatch crosscheck --help`",
    )
    p = sub.add_parser("demo", help="run the built-in demo sweep and write its report")
    p.add_argument("-o", "--out", default="critbatch-demo", help="demo directory")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where chunks run: this process, or a Ray cluster",
    )
    p.add_argument("--threads", type=int, default=None, help="core threads (default: all)")
    p.add_argument("--print-spec", action="store_true", help="print the demo spec and exit")

    sub.add_parser(
        "schema",
        help="print the JSON Schema of spec files (for editors: docs/spec.schema.json is a copy)",
    )
    return parser


def _grid_text(spec: Any) -> tuple[int, str]:
    """The number of runs and ``720 runs = 1 problem (nqm) x 3 optimizers (...) x ...``.

    A search (``[search]``) has trials where a grid has learning rates: the same trials at every
    batch size.
    """
    axes = [
        (len(spec.problems), "problem", ", ".join(spec.problem_names)),
        (len(spec.optimizers), "optimizer", ", ".join(o.name for o in spec.optimizers)),
        (len(spec.schedules), "schedule", ", ".join(s.name for s in spec.schedules)),
        (len(spec.batch_sizes), "batch size", ""),
        (len(spec.learning_rates), "learning rate", "")
        if spec.search is None
        else (
            spec.search.trials,
            "trial",
            f"{spec.search.method} over {', '.join(spec.search.space.names)}",
        ),
        (len(spec.seeds), "seed", ""),
    ]
    n_runs = 1
    for n, _, _ in axes:
        n_runs *= n
    parts = [
        f"{n} {noun}{'s' if n != 1 else ''}" + (f" ({names})" if names else "")
        for n, noun, names in axes
    ]
    return n_runs, f"{n_runs} runs = " + " x ".join(parts)


def _validate(args: argparse.Namespace) -> None:
    from critbatch.spec import load_spec

    spec = load_spec(args.spec, overrides=args.overrides)
    if args.print_spec:
        print(spec.to_toml(), end="")
        return
    n_runs, grid = _grid_text(spec)
    n_chunks = -(-n_runs // spec.chunk_size)
    print(
        f"{args.spec}: valid spec {spec.name!r}: {grid}; {n_chunks} chunk"
        f"{'s' if n_chunks != 1 else ''} of up to {spec.chunk_size} runs; budget "
        f"{spec.target.max_steps} steps per run; backend {spec.backend}"
    )


def _schema(args: argparse.Namespace) -> None:
    from critbatch.schema import schema_json

    print(schema_json(), end="")


#: Runs and steps per run of the timed sample behind ``sweep --dry-run``'s estimate.
PROBE_RUNS, PROBE_STEPS = 32, 200


def _dry_run(args: argparse.Namespace) -> bool:
    """For ``sweep --dry-run``: print the plan and an estimated time, and return True.

    The estimate times a sample of :data:`PROBE_RUNS` runs of the plan, each capped at
    :data:`PROBE_STEPS` steps, on one core thread, and scales the time per step to every run
    spending its whole budget on ``--threads`` threads (all cores by default): an upper bound,
    since runs that reach the target stop early. Nothing is written.
    """
    if not getattr(args, "dry_run", False):
        return False
    import dataclasses
    import time
    from pathlib import Path

    import numpy as np

    from critbatch.spec import load_spec
    from critbatch.store import MANIFEST, progress_counts, read_manifest
    from critbatch.sweep import execute

    spec = load_spec(args.spec, overrides=args.overrides)
    plan = spec.to_plan()
    n_chunks = -(-len(plan) // spec.chunk_size)
    print(f"{args.spec}: {_grid_text(spec)[1]}")
    print(
        f"{len(plan)} runs in {n_chunks} chunk{'s' if n_chunks != 1 else ''} of up to "
        f"{spec.chunk_size} runs; budget {spec.target.max_steps} steps per run, "
        f"{len(plan) * spec.target.max_steps:.3g} steps at most"
    )
    if (Path(args.out) / MANIFEST).is_file():
        done, total = progress_counts(args.out)
        hashes = [g["spec_hash"] for g in read_manifest(args.out)["generations"]]
        state = (
            "the sweep resumes there"
            if spec.hash() in hashes
            else "--extend adds this spec's new runs"
            if args.extend
            else "it holds a different spec: use a new directory, or --extend for a superset"
        )
        print(f"{args.out}: {done} of {total} chunks already stored; {state}")
    else:
        print(f"{args.out}: nothing stored yet")
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(plan), size=min(len(plan), PROBE_RUNS), replace=False))
    probe = dataclasses.replace(
        plan.subset(rows),
        trajectory_every=0,
        target=dataclasses.replace(plan.target, max_steps=min(plan.target.max_steps, PROBE_STEPS)),
    )
    threads = 1 if spec.backend == "rust" else args.threads
    t0 = time.perf_counter()
    steps = int(
        np.sum(execute(probe, backend=spec.backend, device=spec.device, threads=threads)["steps"])
    )
    seconds = time.perf_counter() - t0
    per_step = seconds / max(steps, rows.size)
    bound = per_step * len(plan) * spec.target.max_steps
    where = f"the {spec.backend} backend on {spec.device}"
    if spec.backend == "rust":  # the sample ran on one thread; a sweep uses them all
        threads = args.threads or os.cpu_count() or 1
        bound /= threads
        where = f"{threads} core thread{'s' if threads != 1 else ''}"
    print(
        f"estimated time: at most {_duration(bound)} on {where} if every run spends its "
        f"budget; runs that reach the target stop earlier (timed {rows.size} sampled runs, "
        f"{steps} steps, {per_step * 1e6:.3g} µs per step)"
    )
    return True


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2g} s"
    if seconds < 3600:
        return f"{seconds / 60:.2g} min"
    return f"{seconds / 3600:.3g} h"


@contextlib.contextmanager
def _store_warnings_in_one_line() -> Iterator[None]:
    """A repaired or partial store says so in one line on stderr, without a source line."""
    from critbatch.store import StoreWarning

    def one_line(message: Any, *_: Any, **__: Any) -> None:
        print(f"critbatch: warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", StoreWarning)
        warnings.showwarning = one_line
        yield


def _sweep(args: argparse.Namespace) -> None:
    if _dry_run(args):
        return
    from critbatch.spec import load_spec
    from critbatch.store import run_sweep

    spec = load_spec(args.spec, overrides=args.overrides)
    summary = run_sweep(
        spec,
        args.out,
        engine=args.engine,
        address=args.address,
        threads=args.threads,
        extend=args.extend,
        progress=not args.quiet,
    )
    print(
        f"{summary.n_runs} runs in {summary.n_chunks} chunks at {args.out} "
        f"({summary.ran_chunks} run now, {summary.skipped_chunks} already done)"
    )


def _fits(args: argparse.Namespace) -> Any:
    from critbatch.fit import fit

    return fit(
        args.out, args.model, n_boot=args.n_boot, seed=args.seed, allow_partial=args.allow_partial
    )


def _fit(args: argparse.Namespace) -> None:
    fits = _fits(args)
    if args.json:
        import json

        print(
            json.dumps(
                {**fits.to_dict(), "fits": [f.to_dict(arrays=False) for f in fits.values()]},
                indent=1,
            )
        )
    elif args.csv:
        print(fits.table.to_csv(index=False), end="")
    else:
        print(fits.summary())


def _plot(args: argparse.Namespace) -> None:
    from critbatch.plots import kb_figure, save
    from critbatch.tuning import as_frame

    save(
        kb_figure(as_frame(args.out, allow_partial=args.allow_partial), fits=_fits(args)),
        args.output,
    )
    print(f"figure written to {args.output}")


def _report(args: argparse.Namespace) -> None:
    from critbatch.report import write_report

    output = args.output or os.path.join(args.out, "report.html")
    path = write_report(
        args.out,
        output,
        model=args.model,
        n_boot=args.n_boot,
        seed=args.seed,
        allow_partial=args.allow_partial,
    )
    print(f"report written to {path}")


def _tune(args: argparse.Namespace) -> None:
    from critbatch.tuning import best_learning_rate

    print(best_learning_rate(args.out, allow_partial=args.allow_partial).to_string(index=False))


def _demo(args: argparse.Namespace) -> None:
    from critbatch.demo import DEMO_SPEC, run_demo

    if args.print_spec:
        print(DEMO_SPEC, end="")
        return
    paths = run_demo(args.out, engine=args.engine, threads=args.threads)
    print(f"demo sweep in {paths['results']}; report: {paths['html']} (and {paths['markdown']})")


def _crosscheck(argv: Any) -> int:
    from critbatch.crosscheck import crosscheck_main

    return crosscheck_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 on success).

    Example:
        >>> main(["sweep", "missing.toml", "-o", "out"])
        1

    """
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {
        "validate": _validate,
        "sweep": _sweep,
        "fit": _fit,
        "plot": _plot,
        "report": _report,
        "tune": _tune,
        "demo": _demo,
        "crosscheck": _crosscheck,
        "schema": _schema,
    }
    try:
        if argv[:1] == ["crosscheck"]:  # it parses its own options
            return _crosscheck(argv[1:])
        args = _parser().parse_args(argv)
        with _store_warnings_in_one_line():
            handlers[args.command](args)
    except (ValueError, TypeError, OSError, ImportError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"critbatch: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("critbatch: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
