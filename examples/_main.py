"""The command line every example shares: ``--reduced`` and ``--out``, then report and figure."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).parent / "figures"


def example_main(
    argv: list[str] | None,
    description: str,
    run: Callable[..., Any],
    report: Callable[[Any], str],
    figure: Callable[[Any, Path], Path],
) -> Any:
    """Parse the options, run the example, print its report and write its figure."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--reduced", action="store_true", help="the small version the tests run (under a minute)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=FIGURES,
        help="directory for the figure (default: examples/figures)",
    )
    args = parser.parse_args(argv)
    result = run(reduced=args.reduced)
    args.out.mkdir(parents=True, exist_ok=True)
    print(report(result))
    print(f"figure: {figure(result, args.out)}")
    return result
