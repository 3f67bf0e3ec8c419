"""The demo: a small sweep over NQM and least squares with SGD, momentum and Adam, then a report.

``critbatch demo -o DIR`` writes ``DIR/spec.toml`` (the spec below), the sweep into
``DIR/results/``, and ``DIR/report.html``, ``DIR/report.md`` and ``DIR/report.png``. It takes
about half a minute on two cores (sweep ~15 s, fits ~10 s); running it again resumes the sweep
instead of redoing it.

The grid puts the critical batch size of both problems inside the batch sizes swept: the NQM
follows Zhang et al. (2019)'s power-law spectrum with noise proportional to curvature, and the
least-squares target sits a little above the noise floor (about ``noise_std**2 / 2``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["DEMO_SPEC", "run_demo"]

DEMO_SPEC = """\
# critbatch demo: steps to target K(b) against batch size b, for three optimizers.
name = "demo"
optimizers = ["sgd", {kind = "heavy_ball", momentum = 0.9, name = "momentum"}, "adam"]
batch_sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
learning_rates = [0.001, 0.0025, 0.007, 0.018, 0.045, 0.12, 0.35, 0.7, 1.4, 2.8]
seeds = 4
seed = 2024
chunk_size = 120

[[problems]]
kind = "nqm_power_law"
dim = 32
name = "nqm"

[[problems]]
kind = "least_squares"
n = 1024
d = 16
noise_std = 0.1
seed = 7
name = "least_squares"

[target]
loss_below = 0.01
max_steps = 20000
"""


def run_demo(
    out: str | os.PathLike[str] = "critbatch-demo",
    *,
    engine: str = "local",
    threads: int | None = None,
    model: str = "mccandlish",
    n_boot: int = 200,
    progress: Any = True,
) -> dict[str, Path]:
    """Run the demo sweep into ``out`` and write its reports; return the paths written.

    Args:
        out: the demo directory.
        engine: ``"local"`` or ``"ray"``.
        threads: core threads (default: all).
        model: the law fitted in the report.
        n_boot: bootstrap resamples of the report's intervals.
        progress: show a progress line on stderr (or pass a stream).

    Returns:
        ``{"spec": ..., "results": ..., "html": ..., "markdown": ...}``.

    """
    from critbatch.report import build_report
    from critbatch.spec import loads
    from critbatch.store import run_sweep

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    spec_path = root / "spec.toml"
    spec_path.write_text(DEMO_SPEC, encoding="utf-8")
    spec = loads(DEMO_SPEC, file=os.fspath(spec_path))
    results = root / "results"
    run_sweep(spec, results, engine=engine, threads=threads, progress=progress)
    report = build_report(results, model=model, n_boot=n_boot, title="critbatch demo")
    html_path, md_path = root / "report.html", root / "report.md"
    html_path.write_text(report.to_html(), encoding="utf-8")
    (root / "report.png").write_bytes(report.figure_png)
    md_path.write_text(report.to_markdown("report.png"), encoding="utf-8")
    return {"spec": spec_path, "results": results, "html": html_path, "markdown": md_path}
