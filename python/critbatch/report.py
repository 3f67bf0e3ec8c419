"""A report of a sweep: what ran, K(b) at the best learning rate, fitted critical batch sizes.

One structured report renders to Markdown (the figure written beside it as a PNG) or to a single
self-contained HTML file (the figure embedded as base64). The fits come from
:func:`critbatch.fit.fit` (the one fitting path; for a sweep directory they are computed once and
kept in ``OUT/_fits/``). Every critical batch size is printed with its status. The ordering check
reads Iiduka (2022)'s claim that momentum and Adam have larger critical batch sizes than SGD
(arXiv 2108.11713) through the ratio of the two critical batch sizes, with its profile-likelihood
interval and a bootstrap interval paired over shared seeds (:func:`critbatch.fit.compare_critical`):
it supports or contradicts the claim only when both sides are identified, fit well and were tuned
inside the learning-rate grid, and both intervals agree; it says "inconclusive" and why
otherwise.
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critbatch.fit.result import format_value
from critbatch.tuning import as_frame, best_learning_rate

__all__ = ["Report", "build_report", "write_report"]

Block = tuple[Any, ...]  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", alt)


@dataclass
class Report:
    """Blocks of text and tables, and the figure as PNG bytes."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    figure_png: bytes = b""

    def to_markdown(self, image: str = "figure.png") -> str:
        """Render as Markdown, referring to the figure by the relative path ``image``."""
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block[0] == "h":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "table":
                header, rows = block[1], block[2]
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
                lines.append("")
            elif block[0] == "img" and self.figure_png:
                lines += [f"![{block[1]}]({image})", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        """Render as one self-contained HTML page (the figure inlined as a base64 PNG)."""
        esc = html.escape
        body = [f"<h1>{esc(self.title)}</h1>"]
        for block in self.blocks:
            if block[0] == "h":
                body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                body.append(f"<p>{esc(block[1])}</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{esc(str(h))}</th>" for h in block[1])
                rows = "".join(
                    "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                    for row in block[2]
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif block[0] == "img" and self.figure_png:
                data = base64.b64encode(self.figure_png).decode("ascii")
                body.append(f'<img alt="{esc(block[1])}" src="data:image/png;base64,{data}">')
        style = (
            "body{font-family:sans-serif;max-width:1150px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "img{max-width:100%}"
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>{esc(self.title)}</title><style>{style}</style></head>\n<body>\n"
            + "\n".join(body)
            + "\n</body></html>\n"
        )


def _ordering(
    fits: Any, source: Any, problem: str, schedule: str, n_boot: int, seed: int
) -> str | None:
    from critbatch.fit import compare_critical

    base = fits.get((problem, "sgd", schedule))
    if base is None:
        return None
    parts = []
    for (p, optimizer, s), fit in sorted(fits.items()):
        if (p, s) != (problem, schedule) or optimizer == "sgd":
            continue
        ratio = compare_critical(
            source,
            (p, optimizer, s),
            (p, "sgd", s),
            model=fit.model,
            n_boot=n_boot,
            level=fit.level,
            seed=seed,
        )
        verdict = ratio.verdict("larger")
        lo, hi = ratio.interval
        paired = (
            ""
            if ratio.bootstrap_interval is None
            else ", paired bootstrap [{}, {}]".format(*map(format_value, ratio.bootstrap_interval))
        )
        text = (
            f"{optimizer}: b* {fit.critical_text()} ({fit.status}) vs SGD "
            f"{base.critical_text()} ({base.status}); ratio {format_value(ratio.estimate)} "
            f"[{format_value(lo)}, {format_value(hi)}]{paired}: {verdict}"
        )
        if verdict == "inconclusive":
            text += " (" + "; ".join(ratio.reasons) + ")"
        elif verdict == "cannot tell":
            text += " (the ratio's interval contains 1)"
        else:
            text += " the claim"
        parts.append(text)
    if not parts:
        return None
    return (
        f"{problem} / {schedule}: Iiduka (2022) states that momentum and Adam have larger "
        "critical batch sizes than SGD. " + "; ".join(parts) + "."
    )


def build_report(
    source: Any,
    *,
    model: str = "mccandlish",
    n_boot: int = 200,
    seed: int = 0,
    allow_partial: bool = False,
    theory: Any = None,
    title: str | None = None,
) -> Report:
    """Fit, tabulate and plot a sweep into a :class:`Report`.

    Args:
        source: a sweep directory, a :class:`critbatch.results.Results` or a DataFrame.
        model: the law fitted per optimizer (``"mccandlish"``, ``"inverse"``, ``"rational"``).
        n_boot: bootstrap resamples of the fits' intervals.
        seed: the bootstrap seed.
        allow_partial: report an unfinished sweep directory (with a warning) instead of raising.
        theory: an optional theory callable for the figure (:data:`critbatch.plots.Theory`).
        title: the report title (default from the spec name).

    Returns:
        The report; :func:`write_report` writes it.

    """
    from critbatch import __version__
    from critbatch.fit import fit
    from critbatch.plots import kb_figure, save

    df = as_frame(source, allow_partial=allow_partial)
    spec = None
    if isinstance(source, (str, os.PathLike)):
        from critbatch.store import read_manifest, spec_of

        spec = spec_of(source)
        manifest = read_manifest(source)
    report = Report(title or f"critbatch report: {spec.name if spec else 'sweep'}")
    n = len(df)
    reached = float(df["reached"].mean()) if n else 0.0
    diverged = float(df["diverged"].mean()) if "diverged" in df.columns and n else 0.0
    intro = (
        f"{n} runs; {100 * reached:.1f}% reached the target, {100 * diverged:.1f}% "
        f"diverged. critbatch {__version__}."
    )
    if spec is not None:
        intro = (
            f"Sweep {os.fspath(source)!r} (spec hash {manifest['spec_hash'][:12]}, "
            f"{len(manifest['generations'])} generation(s)). " + intro
        )
    report.blocks.append(("p", intro))
    if spec is not None:
        report.blocks.append(("h", 2, "Sweep"))
        report.blocks.append(
            (
                "table",
                ["setting", "value"],
                [
                    ["problems", ", ".join(f"{p.name} ({p.kind})" for p in spec.problems)],
                    ["optimizers", ", ".join(o.name for o in spec.optimizers)],
                    ["schedules", ", ".join(s.name for s in spec.schedules)],
                    ["batch sizes", ", ".join(map(str, spec.batch_sizes))],
                    ["learning rates", ", ".join(f"{x:g}" for x in spec.learning_rates)],
                    ["seeds", str(len(spec.seeds))],
                    ["target", spec.target.name + f" (budget {spec.target.max_steps} steps)"],
                    ["backend", spec.backend],
                ],
            )
        )
    table = best_learning_rate(df)
    report.blocks.append(("h", 2, "Steps to target at the best learning rate"))
    report.blocks.append(
        (
            "p",
            "Median steps K(b) at the best learning rate per batch size "
            "(Shallue et al. 2019), learning rate in parentheses. * : not every "
            "run reached the target at any learning rate; † : the best learning "
            "rate is at the edge of the grid (for a search: the best trial is at the "
            "edge of the search space).",
        )
    )
    for (problem, schedule), part in table.groupby(["problem", "schedule"], sort=False):
        optimizers = sorted(part["optimizer"].unique())
        rows = []
        for b, at_b in part.groupby("batch_size", sort=True):
            row = [str(b)]
            for o in optimizers:
                hit = at_b[at_b["optimizer"] == o]
                if hit.empty:
                    row.append("")
                    continue
                r = hit.iloc[0]
                mark = ("" if r["all_reached"] else "*") + ("†" if r["lr_at_edge"] else "")
                row.append(f"{format_value(r['steps'])}{mark} ({r['learning_rate']:g})")
            rows.append(row)
        report.blocks.append(("h", 3, f"{problem} — {schedule}"))
        report.blocks.append(("table", ["b", *optimizers], rows))
    # a finished sweep directory is fitted by path, so its fits are cached beside it
    runs = source if spec is not None and not allow_partial else df
    fits = fit(runs, model, n_boot=n_boot, seed=seed)
    report.blocks.append(("h", 2, f"Critical batch size ({model} law)"))
    any_fit = next(iter(fits.values()))
    report.blocks.append(
        (
            "p",
            f"b*: {any_fit.critical_definition}. Status: identified (the "
            f"{100 * any_fit.level:g}% profile-likelihood interval closes inside "
            "the data), above_grid / below_grid (only a bound: the data are "
            "consistent with b* beyond the batch sizes swept), not_identified, "
            "or poor_fit (the law fails a lack-of-fit test against the replicate "
            f"spread). Bootstrap: {n_boot} resamples of seeds, learning rate "
            "re-chosen on each.",
        )
    )
    rows = []
    for (p, o, s), f in fits.items():
        boot = f.bootstrap_interval
        rows.append(
            [
                p,
                s,
                o,
                f.status,
                f.critical_text(),
                "—" if boot is None else f"[{format_value(boot[0])}, {format_value(boot[1])}]",
                ", ".join(f"{k}={format_value(v)}" for k, v in f.params.items()),
                format_value(f.lack_of_fit_p),
                f.lr_status,
                str(f.n_censored),
            ]
        )
    report.blocks.append(
        (
            "table",
            [
                "problem",
                "schedule",
                "optimizer",
                "status",
                "b*",
                "bootstrap",
                "parameters",
                "lack of fit p",
                "learning rate",
                "censored runs",
            ],
            rows,
        )
    )
    notes = [f"{'/'.join(key)}: {'; '.join(f.reasons)}" for key, f in fits.items() if f.reasons]
    if notes:
        report.blocks.append(("p", "Why: " + " | ".join(notes)))
    for problem, schedule in sorted({(p, s) for p, _, s in fits}):
        sentence = _ordering(fits, runs, problem, schedule, n_boot, seed)
        if sentence:
            report.blocks.append(("p", sentence))
    flagged = int((~table["all_reached"]).sum())
    edge = int(table["lr_at_edge"].sum())
    if flagged or edge:
        report.blocks.append(("h", 2, "Warnings"))
        if flagged:
            report.blocks.append(
                (
                    "p",
                    f"{flagged} (problem, optimizer, schedule, b) cells had no "
                    "learning rate at which every run reached the target; their K "
                    "uses the learning rate with the most reached runs.",
                )
            )
        if edge:
            report.blocks.append(
                (
                    "p",
                    f"{edge} cells chose the smallest or largest learning rate "
                    "of the grid: widen learning_rates to be sure of the optimum.",
                )
            )
    figure = kb_figure(df, fits=fits, theory=theory, title=report.title)
    buffer = io.BytesIO()
    save(figure, buffer)
    report.figure_png = buffer.getvalue()
    report.blocks.append(("h", 2, "Figure"))
    report.blocks.append(("img", "K(b) and b·K(b) per optimizer"))
    return report


def write_report(source: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Build the report of ``source`` and write it to ``path`` (``.md`` or ``.html``).

    A Markdown report writes its figure beside it as ``<stem>.png``.

    Raises:
        ValueError: ``path`` has another suffix.

    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".md", ".html", ".htm"):
        raise ValueError(f"report path must end in .md or .html, got {os.fspath(path)!r}")
    report = build_report(source, **kwargs)
    if suffix == ".md":
        image = out.with_suffix(".png")
        image.write_bytes(report.figure_png)
        out.write_text(report.to_markdown(image.name), encoding="utf-8")
    else:
        out.write_text(report.to_html(), encoding="utf-8")
    return out
