"""Figures of a sweep: steps K(b) and gradient cost N(b) = b K(b) against batch size.

One row of panels per (problem, schedule); one colour per optimizer, the same in every panel.

* Left, K(b) on log-log axes at the best learning rate per batch size
  (:func:`critbatch.tuning.best_learning_rate`): the measured medians (hollow markers: not every
  run reached the target), the perfect-scaling line :math:`K(b_0) b_0 / b` through the smallest
  batch size (dotted), the fitted law (solid) with its bootstrap band, and theory curves when a
  ``theory`` callable supplies them (dashed).
* Right, N(b) = b K(b) with the fitted critical batch size b* (vertical line) and its bootstrap
  interval (shaded).

The fits come from :func:`critbatch.fit.fit` (the one fitting path), which chooses the learning
rate per batch size by the same rule as the points, so points and curves refer to the same runs.
A critical batch size is drawn only where its status is ``"identified"`` (or ``"poor_fit"``,
marked so); otherwise the legend states the bound or "not identified".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from critbatch.tuning import best_learning_rate

__all__ = ["Theory", "kb_figure", "save"]

#: theory(problem, optimizer, schedule, batch_sizes) -> (K array, label) or None
Theory = Callable[[str, str, str, np.ndarray], "tuple[np.ndarray, str] | None"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` (on the Agg backend unless one is chosen), from the ``plot`` extra.

    Raises:
        ImportError: matplotlib is not installed; the message names the extra to install.

    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "critbatch's figures need matplotlib, which is not installed: "
            "pip install 'critbatch[plot]'"
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _band(fit: Any, b: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise percentile band of the fitted curve over the bootstrap's resampled fits.

    One curve per resample, from :attr:`critbatch.fit.FitResult.bootstrap_samples` (the
    location and shape of each refit); None without a bootstrap.
    """
    samples = fit.bootstrap_samples
    if not samples or "location" not in samples:
        return None
    from critbatch.fit import LAWS

    law = LAWS[fit.model]
    curves = [
        np.exp(law.log_steps(c, beta, b))
        for c, beta in zip(samples["location"], samples["beta"], strict=True)
    ]
    if len(curves) < 2:
        return None
    stack = np.vstack(curves)
    tail = 100 * (1 - level) / 2
    return np.nanpercentile(stack, tail, axis=0), np.nanpercentile(stack, 100 - tail, axis=0)


def _critical_label(fit: Any) -> str:
    """The legend's words for a fit's b*: a value with interval, a bound, or 'not identified'."""
    if fit.status in ("identified", "poor_fit"):
        lo, hi = fit.interval
        text = f"b*={fit.critical_batch_size:.3g} [{lo:.3g}, {hi:.3g}]"
        return text + (" (poor fit)" if fit.status == "poor_fit" else "")
    if fit.status == "above_grid":
        return f"b* > b_max (≥ {fit.interval[0]:.3g})"
    if fit.status == "below_grid":
        return f"b* < b_min (≤ {fit.interval[1]:.3g})"
    return "b* not identified"


def kb_figure(
    data: Any,
    *,
    fits: Mapping[tuple[str, ...], Any] | None = None,
    theory: Theory | None = None,
    title: str | None = None,
) -> Any:
    """Draw K(b) and N(b) = b K(b) per (problem, schedule), one colour per optimizer.

    Args:
        data: sweep results (Results, DataFrame or sweep directory).
        fits: :class:`critbatch.fit.Fits` of the same runs, grouped by problem, optimizer and
            schedule (None: no fitted curves).
        theory: optional callable giving a theory K(b) curve and its label for a group.
        title: the figure title.

    Returns:
        A matplotlib Figure.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"problem": "p", "optimizer": "sgd", "schedule": "c",
        ...     "batch_size": [1, 2, 4, 8], "learning_rate": 0.1, "steps": [80, 41, 22, 15],
        ...     "reached": True})
        >>> fig = kb_figure(df)
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['steps to target K(b)', 'gradient evaluations b·K(b)']

    """
    plt = pyplot()
    table = best_learning_rate(data)
    fits = fits or {}
    panels = list(table.groupby(["problem", "schedule"], sort=False))
    optimizers = sorted(table["optimizer"].unique())
    colours = {o: plt.get_cmap("tab10")(i % 10) for i, o in enumerate(optimizers)}
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), squeeze=False)
    for row, ((problem, schedule), part) in enumerate(panels):
        ax_k, ax_n = axes[row]
        b_all = part["batch_size"].to_numpy(float)
        grid = np.geomspace(b_all.min(), b_all.max(), 200)
        for optimizer, sub in part.groupby("optimizer", sort=True):
            colour = colours[optimizer]
            sub = sub.sort_values("batch_size")
            b = sub["batch_size"].to_numpy(float)
            k = sub["steps"].to_numpy(float)
            full = sub["all_reached"].to_numpy(bool)
            finite = np.isfinite(k)
            for mask, face in ((full & finite, colour), (~full & finite, "none")):
                ax_k.scatter(b[mask], k[mask], color=colour, facecolors=face, zorder=3, s=28)
                ax_n.scatter(
                    b[mask], b[mask] * k[mask], color=colour, facecolors=face, zorder=3, s=28
                )
            if finite.any():
                i0 = int(np.argmax(finite))
                ax_k.plot(grid, k[i0] * b[i0] / grid, ":", color=colour, lw=1)
            fit = fits.get((str(problem), str(optimizer), str(schedule)))
            label = str(optimizer)
            if fit is not None and fit.profile_beta.size:
                curve = np.asarray(fit.predict(grid), float)
                ax_k.plot(grid, curve, "-", color=colour, lw=1.6)
                ax_n.plot(grid, grid * curve, "-", color=colour, lw=1.6)
                band = _band(fit, grid, fit.level)
                if band is not None:
                    ax_k.fill_between(grid, band[0], band[1], color=colour, alpha=0.15, lw=0)
                    ax_n.fill_between(
                        grid, grid * band[0], grid * band[1], color=colour, alpha=0.15, lw=0
                    )
                label += ", " + _critical_label(fit)
                if fit.status in ("identified", "poor_fit"):
                    ax_n.axvline(fit.critical_batch_size, color=colour, lw=1.2, ls="--")
                    lo, hi = fit.interval
                    ax_n.axvspan(max(lo, 1e-300), hi, color=colour, alpha=0.12, lw=0)
            if theory is not None:
                curve_label = theory(str(problem), str(optimizer), str(schedule), grid)
                if curve_label is not None:
                    ax_k.plot(grid, curve_label[0], "--", color=colour, lw=1.2, alpha=0.8)
                    label += f"; dashed: {curve_label[1]}"
            ax_k.plot([], [], "o-", color=colour, label=label)
        ax_k.plot([], [], ":", color="grey", label="perfect scaling K(b0)·b0/b")
        reached_any = bool(np.isfinite(part["steps"].to_numpy(float)).any())
        for ax in (ax_k, ax_n):
            ax.set_xscale("log", base=2)
            if reached_any:
                ax.set_yscale("log")
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no batch size reached the target\nwith most of its runs",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                )
            ax.set_xlabel("batch size b")
            ax.grid(True, which="major", alpha=0.3)
        for ax in (ax_k, ax_n):
            ax.set_xlim(b_all.min() / 1.3, b_all.max() * 1.3)
        ax_k.set_ylabel("steps to target K(b)")
        ax_n.set_ylabel("gradient evaluations b·K(b)")
        ax_k.set_title(f"{problem} — {schedule}: K(b) at the best learning rate", fontsize=10)
        ax_n.set_title(f"{problem} — {schedule}: N(b) = b·K(b), b* dashed", fontsize=10)
        ax_k.legend(fontsize=8, loc="best")
    fig.suptitle(
        title or "steps to target against batch size (hollow: not every run reached)", fontsize=11
    )
    fig.tight_layout()
    return fig


def save(fig: Any, path: str | os.PathLike[str] | IO[bytes], *, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (format from the suffix; PNG for a binary stream) and close it."""
    plt = pyplot()
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
