"""The ``critbatch`` command: sweep, fit, tune, plot, report, demo.

Every error a user can cause (a bad spec, a missing file, an output that holds another sweep)
prints one line, ``critbatch: error: ...``, on stderr and exits with status 1 (2 for bad
command-line usage); a traceback means a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]

MODELS = ("mccandlish", "inverse", "rational")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"critbatch: error: {message} (see critbatch --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="critbatch", description="Steps to target against batch size: run "
                     "sweeps, fit critical batch sizes, plot and report.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("sweep", help="run a TOML spec into a Parquet directory (resumable)")
    p.add_argument("spec", help="the sweep spec (TOML)")
    p.add_argument("-o", "--out", required=True, help="output directory")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p.add_argument("--extend", action="store_true",
                   help="add the runs of a superset spec to an existing output")
    p.add_argument("--threads", type=int, default=None, help="core threads (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")

    for name, text in (("fit", "fit a law K(b) per optimizer and print b* with its interval"),
                       ("plot", "draw K(b) and b·K(b) to an image"),
                       ("report", "write a Markdown or self-contained HTML report")):
        p = sub.add_parser(name, help=text)
        p.add_argument("out", help="a sweep directory" + (" or a CSV/Parquet table of runs"
                                                          if name == "fit" else ""))
        p.add_argument("--model", choices=MODELS, default="mccandlish",
                       help="the law K(b) (default: %(default)s)")
        p.add_argument("--n-boot", type=int, default=200,
                       help="bootstrap resamples (default: %(default)s)")
        p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
        if name == "fit":
            form = p.add_mutually_exclusive_group()
            form.add_argument("--json", action="store_true", help="print the fits as JSON")
            form.add_argument("--csv", action="store_true", help="print the fits' table as CSV")
        if name == "plot":
            p.add_argument("-o", "--output", required=True, help="image file (.png, .pdf, .svg)")
        if name == "report":
            p.add_argument("-o", "--output", default=None, help="report.md or report.html "
                           "(default: OUT/report.html)")

    p = sub.add_parser("tune", help="print K(b) at the best learning rate per batch size")
    p.add_argument("out", help="a sweep directory")

    sub.add_parser("crosscheck", add_help=False,
                   help="run a spec on the Rust core and on torch (--device cuda), side by side; "
                        "see `critbatch crosscheck --help`")
    p = sub.add_parser("demo", help="run the built-in demo sweep and write its report")
    p.add_argument("-o", "--out", default="critbatch-demo", help="demo directory")
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--print-spec", action="store_true", help="print the demo spec and exit")
    return parser


def _sweep(args: argparse.Namespace) -> None:
    from critbatch.spec import load_spec
    from critbatch.store import run_sweep

    spec = load_spec(args.spec)
    summary = run_sweep(spec, args.out, engine=args.engine, address=args.address,
                        threads=args.threads, extend=args.extend, progress=not args.quiet)
    print(f"{summary.n_runs} runs in {summary.n_chunks} chunks at {args.out} "
          f"({summary.ran_chunks} run now, {summary.skipped_chunks} already done)")


def _fits(args: argparse.Namespace) -> Any:
    from critbatch.fit import fit

    return fit(args.out, args.model, n_boot=args.n_boot, seed=args.seed)


def _fit(args: argparse.Namespace) -> None:
    fits = _fits(args)
    if args.json:
        import json

        print(json.dumps({**fits.to_dict(), "fits": [f.to_dict(arrays=False)
                                                     for f in fits.values()]}, indent=1))
    elif args.csv:
        print(fits.table.to_csv(index=False), end="")
    else:
        print(fits.summary())


def _plot(args: argparse.Namespace) -> None:
    from critbatch.plots import kb_figure, save

    save(kb_figure(args.out, fits=_fits(args)), args.output)
    print(f"figure written to {args.output}")


def _report(args: argparse.Namespace) -> None:
    from critbatch.report import write_report

    output = args.output or os.path.join(args.out, "report.html")
    path = write_report(args.out, output, model=args.model, n_boot=args.n_boot, seed=args.seed)
    print(f"report written to {path}")


def _tune(args: argparse.Namespace) -> None:
    from critbatch.tuning import best_learning_rate

    print(best_learning_rate(args.out).to_string(index=False))


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
    handlers = {"sweep": _sweep, "fit": _fit, "plot": _plot, "report": _report, "tune": _tune,
                "demo": _demo, "crosscheck": _crosscheck}
    try:
        if argv[:1] == ["crosscheck"]:  # it parses its own options
            return _crosscheck(argv[1:])
        args = _parser().parse_args(argv)
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
