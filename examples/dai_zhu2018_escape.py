r"""Dai & Zhu 2018: SGD escapes a sharp minimum in a time set by η/b, and prefers the flat one.

Claim (arXiv 1812.00542, abstract; docs/theory/dai_zhu2018.md): SGD leaves a local minimum in
finite time; its escape time follows the diffusion approximation, so in time units (steps x η) it
depends on η and b only through η/b; and a larger η/b reaches the flatter minimum sooner.

What this script does, on ``critbatch.problems.double_well`` (a sharp minimum at x > 0 with
V'' = 8(1+κ)², a flat one at x < 0 with V'' = 8(1-κ)², a barrier of height 1 at x = 0, Gaussian
gradient noise of standard deviation sigma/√b):

1. Escape times. Start at the sharp minimum, stop at the first step with x < 0 (the barrier
   top: ``target(position_below=(0, 0.0))``), over many seeds, for the (η, b) cells of a grid
   whose barrier over D lies in [1, 5.5]. The discrete update
   x' = x - η(V'(x) + sigma z/√b) is the Euler-Maruyama step of
   dX = -V'(X) dt + √(η sigma²/b) dW with t = kη, i.e. diffusion D = η sigma²/(2b)
   (``critbatch.theory.dai_zhu2018.diffusion``). The mean
   escape time in time units is compared with the exact 1-D mean first-passage time
   (``mean_first_passage_time``, reflecting far side, every cell's D in one call) and with
   Kramers' asymptotic; both are the paper's method applied here (docs/theory/dai_zhu2018.md,
   [derived]), and the discrete-monitoring correction below is ours.
2. Flat minimum within a budget. Start at the sharp minimum, run a fixed number of steps (no
   stopping criterion), and count the runs that end at x < 0, for a grid of (η, b); compare with
   the Gibbs mass of the flat side, ∫_{x<0} e^{-f/D} / ∫ e^{-f/D} (numerical quadrature, ours).

Run ``python examples/dai_zhu2018_escape.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.integrate import quad
from scipy.stats import spearmanr

import critbatch as cb
from critbatch.theory import dai_zhu2018 as dz
from examples._main import example_main

KAPPA = 0.5
NOISE_STD = 20.0
WALL_OFFSET = 1.0
WALL_STIFFNESS = 8.0
BARRIER = 1.0  # V(0) - V(sharp minimum)
FAR = 3.0  # reflecting boundary on the far side of the sharp minimum (V(3) is about 1e5)
# SGD checks x < 0 only after whole steps, so it misses excursions past 0 between them; the
# continuity correction of Broadie, Glasserman & Kou (1997, "A continuity correction for discrete
# barrier options", Math. Finance 7(4)) moves the barrier by BETA times the standard deviation of
# one step's noise, η sigma/√b, with BETA = -ζ(1/2)/√(2π).
BETA = 0.5826
# tolerance of the escape-time check: 3 standard errors of the Monte Carlo mean plus this much
# for the remaining Euler-Maruyama error of the drift (η V'' <= 0.15 in the cells used)
DISCRETIZATION_ALLOWANCE = 0.05
BATCH_SIZES = (1, 2, 4, 8)
FLAT_LRS = (0.001, 0.002, 0.004, 0.008)


@dataclass(frozen=True)
class DaiZhuResult:
    """The numbers of both experiments."""

    #: one row per (lr, batch_size) cell: D, barrier_over_d, n_runs, n_reached, mean_time,
    #: stderr_time, mfpt (to 0), mfpt_corrected (discretely monitored), kramers, ratio (measured
    #: over mfpt_corrected), ratio_stderr, agrees
    escape: pd.DataFrame
    #: one row per (lr, batch_size) cell: n_runs, flat_fraction, stderr, lr_over_b, gibbs
    flat: pd.DataFrame
    budget_steps: int
    asymptotic_flat_fraction: float
    spearman_flat_vs_lr_over_b: float
    seconds: float

    @property
    def escape_reproduced(self) -> bool:
        """Every cell's mean escape time agrees with the first-passage formula."""
        e = self.escape
        return bool(e["agrees"].all() and (e["n_reached"] == e["n_runs"]).all())

    @property
    def flat_reproduced(self) -> bool:
        """Flat-minimum fraction rises with η/b (rank correlation >= 0.7), low to near-Gibbs."""
        order = self.flat.sort_values("lr_over_b")
        lo, hi = order.iloc[0], order.iloc[-1]
        return bool(
            self.spearman_flat_vs_lr_over_b >= 0.7
            and lo["flat_fraction"] <= 0.1
            and hi["flat_fraction"] >= 0.5
            and abs(hi["flat_fraction"] - hi["gibbs"]) <= 3 * hi["stderr"] + 0.05
        )


def _potential(x: np.ndarray) -> np.ndarray:
    return np.asarray(dz.double_well_potential(x, KAPPA, WALL_OFFSET, WALL_STIFFNESS))


def gibbs_flat_fraction(D: float) -> float:
    """Mass of x < 0 under the stationary law ∝ exp(-f/D) of the SDE (numerical quadrature)."""
    x_wall = dz.wall_position(KAPPA, WALL_OFFSET)
    lo = x_wall - 10.0 * math.sqrt(D / WALL_STIFFNESS) - 1.0

    def density(x: float) -> float:
        return math.exp(-float(_potential(np.asarray(x))) / D)

    left = quad(density, lo, 0.0, limit=200, points=[x_wall])[0]
    right = quad(density, 0.0, FAR, limit=200)[0]
    return left / (left + right)


def escape_cells(reduced: bool) -> pd.DataFrame:
    """The (η, b) cells of the escape runs: the grid's cells where Δf/D is in [1, 5.5]."""
    lrs = (0.002, 0.004, 0.008) if reduced else (0.001, 0.002, 0.004, 0.008, 0.016)
    lr, b = (x.ravel() for x in np.meshgrid(lrs, BATCH_SIZES, indexing="ij"))
    D = np.asarray(dz.diffusion(lr, NOISE_STD**2, b))
    keep = (BARRIER / D >= 1.0) & (BARRIER / D <= 5.5)
    return pd.DataFrame({"lr": lr[keep], "batch_size": b[keep], "D": D[keep]})


def escape_times(
    problem: cb.problems.DoubleWell, cells: pd.DataFrame, n_runs: int, seed: int
) -> pd.DataFrame:
    """Run every cell to its first step with x < 0; add the formulas and the measured times."""
    e = cells.copy()
    sharp, D = problem.sharp_minimum, e["D"].to_numpy()
    e["barrier_over_d"] = BARRIER / D
    e["mfpt"] = dz.mean_first_passage_time(_potential, sharp, 0.0, D, far=FAR)
    shifted = -BETA * e["lr"].to_numpy() * NOISE_STD / np.sqrt(e["batch_size"].to_numpy())
    e["mfpt_corrected"] = dz.mean_first_passage_time(_potential, sharp, shifted, D, far=FAR)
    e["kramers"] = dz.kramers_time(BARRIER, *curvatures(), D)
    # a budget of 40 mean escape times: P(an exponential escape time > 40 means) ~ 4e-18
    e["budget"] = (40 * e["mfpt"] / e["lr"]).astype(int) + 1000
    runs = [
        cb.sweep(
            problem,
            "sgd",
            [c.batch_size],
            [c.lr],
            n_runs,
            cb.targets.target(position_below=(0, 0.0), max_steps=c.budget),
            seed=seed + i,
        )
        for i, c in enumerate(e.itertuples())
    ]
    times = [r["steps"].astype(float) * lr for r, lr in zip(runs, e["lr"], strict=True)]
    e["n_runs"] = [len(r) for r in runs]
    e["n_reached"] = [int(r["reached"].sum()) for r in runs]
    e["mean_time"] = [t.mean() for t in times]
    e["stderr_time"] = [t.std(ddof=1) / math.sqrt(t.size) for t in times]
    e["ratio"] = e["mean_time"] / e["mfpt_corrected"]
    e["ratio_stderr"] = e["stderr_time"] / e["mfpt_corrected"]
    e["agrees"] = (e["ratio"] - 1).abs() <= 3 * e["ratio_stderr"] + DISCRETIZATION_ALLOWANCE
    return e


def curvatures() -> tuple[float, float]:
    """V'' at the sharp minimum and at the barrier top."""
    _, sharp = dz.warped_minimum_curvatures(KAPPA)
    return float(sharp), float(dz.warped_potential_hess(0.0, KAPPA))


def run(reduced: bool = True, *, seed: int = 2018) -> DaiZhuResult:
    """Run both experiments and return their numbers.

    Args:
        reduced: the small version (a few seconds of core time) used by the test.
        seed: the sweep seed.

    Returns:
        A :class:`DaiZhuResult`.

    """
    start_clock = time.perf_counter()
    problem = cb.problems.double_well(
        kappa=KAPPA, noise_std=NOISE_STD, wall_offset=WALL_OFFSET, wall_stiffness=WALL_STIFFNESS
    )
    escape = escape_times(problem, escape_cells(reduced), 800 if reduced else 3000, seed)
    # flat minimum: a fixed number of steps from the sharp minimum, no stopping criterion
    budget_steps = 3000 if reduced else 5000
    res = cb.sweep(
        problem,
        "sgd",
        BATCH_SIZES,
        FLAT_LRS,
        100 if reduced else 400,
        cb.targets.target(max_steps=budget_steps),
        seed=seed + 100,
    ).to_pandas()
    flat = (
        res.assign(flat=res["final_x0"] < 0.0, lr=res["learning_rate"])
        .groupby(["lr", "batch_size"], as_index=False)
        .agg(n_runs=("flat", "size"), flat_fraction=("flat", "mean"))
    )
    n, p = flat["n_runs"], flat["flat_fraction"].clip(1 / flat["n_runs"], 1 - 1 / flat["n_runs"])
    flat["stderr"] = np.sqrt(p * (1 - p) / n)  # binomial, floored at one run's worth
    flat["lr_over_b"] = flat["lr"] / flat["batch_size"]
    D = np.asarray(dz.diffusion(flat["lr"].to_numpy(), NOISE_STD**2, flat["batch_size"].to_numpy()))
    flat["gibbs"] = [gibbs_flat_fraction(d) for d in D]
    rho = spearmanr(flat["lr_over_b"], flat["flat_fraction"]).statistic
    curv_flat, curv_sharp = dz.warped_minimum_curvatures(KAPPA)
    ratio = dz.stationary_mass_ratio(curv_flat, curv_sharp)  # P_flat / P_sharp as D -> 0
    return DaiZhuResult(
        escape=escape,
        flat=flat,
        budget_steps=budget_steps,
        asymptotic_flat_fraction=ratio / (1.0 + ratio),
        spearman_flat_vs_lr_over_b=float(rho),
        seconds=time.perf_counter() - start_clock,
    )


def report(result: DaiZhuResult) -> str:
    """Return the verdict tables (Markdown) and the one-line verdict."""
    lines = [
        "## Dai & Zhu 2018 (arXiv 1812.00542): escape from the sharp minimum",
        f"double well kappa={KAPPA}, sigma={NOISE_STD}, barrier {BARRIER}; time = steps x lr; "
        "D = lr sigma^2 / (2 b)",
        "",
        "| lr | b | b/lr | barrier/D | runs | mean escape time | MFPT to 0 | ratio | "
        "MFPT, discrete corr. | ratio | Kramers* | agrees |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    escape = result.escape.assign(u=result.escape["batch_size"] / result.escape["lr"])
    for c in escape.sort_values(["u", "lr"]).itertuples():
        lines.append(
            f"| {c.lr:g} | {c.batch_size} | {c.u:g} | {c.barrier_over_d:.3g} | "
            f"{c.n_reached}/{c.n_runs} | {c.mean_time:.4g} ± {c.stderr_time:.2g} | "
            f"{c.mfpt:.4g} | {c.mean_time / c.mfpt:.3f} | {c.mfpt_corrected:.4g} | "
            f"{c.ratio:.3f} ± {c.ratio_stderr:.3f} | {c.kramers:.4g} | "
            f"{'yes' if c.agrees else 'NO'} |"
        )
    lines += [
        "",
        f"## Flat minimum after {result.budget_steps} steps (start: sharp minimum)",
        "",
        "| lr | b | lr/b | fraction at x<0 | Gibbs mass of x<0 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for c in result.flat.sort_values(["lr_over_b", "lr"]).itertuples():
        lines.append(
            f"| {c.lr:g} | {c.batch_size} | {c.lr_over_b:g} | "
            f"{c.flat_fraction:.3f} ± {c.stderr:.3f} | {c.gibbs:.3f} |"
        )
    worst = escape.loc[(escape["ratio"] - 1).abs().idxmax()]
    gibbs = result.flat["gibbs"]
    esc = "REPRODUCED" if result.escape_reproduced else "NOT REPRODUCED"
    flat = "REPRODUCED" if result.flat_reproduced else "NOT REPRODUCED"
    lines += [
        "",
        f"Spearman rank correlation (lr/b, flat fraction): "
        f"{result.spearman_flat_vs_lr_over_b:.3f}; small-noise limit of the flat mass "
        f"sqrt(V''_sharp/V''_flat) / (1 + ...) = {result.asymptotic_flat_fraction:.3f}",
        "MFPT: the exact mean first-passage time of the SDE (time units); 'discrete corr.' "
        f"moves the target to -{BETA} lr sigma/sqrt(b), because SGD looks at x only after "
        "whole steps (Broadie, Glasserman & Kou 1997).",
        "*Kramers' asymptotic is the time to cross the barrier, about twice the time to reach "
        "its top (what is measured here), and is meant for barrier/D >> 1.",
        f"runtime {result.seconds:.1f} s",
        "",
        f"VERDICT: escape time {esc}: measured mean escape times match the exact first-passage "
        f"time at D = lr sigma^2/(2b) (discretely monitored) in {int(escape['agrees'].sum())}/"
        f"{len(escape)} cells (worst ratio {worst['ratio']:.3f} at lr={worst['lr']:g}, "
        f"b={worst['batch_size']:g}; tolerance 3 s.e. + {DISCRETIZATION_ALLOWANCE:.0%}), so in "
        f"time units it depends on lr/b only; flat-minimum preference {flat}: the fraction in "
        f"the flat minimum after {result.budget_steps} steps rises with lr/b (rank corr. "
        f"{result.spearman_flat_vs_lr_over_b:.2f}) towards the Gibbs mass of the flat side "
        f"({gibbs.min():.2f}-{gibbs.max():.2f}), whatever lr/b.",
    ]
    return "\n".join(lines)


def figure(result: DaiZhuResult, out_dir: Path) -> Path:
    """Draw escape time against b/η and flat fraction against η/b; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    escape, flat = result.escape, result.flat
    u = escape["batch_size"] / escape["lr"]
    grid = np.geomspace(u.min() / 1.15, u.max() * 1.15, 60)
    D = np.asarray(dz.diffusion(1.0, NOISE_STD**2, grid))
    sharp = dz.warped_minima(KAPPA)[1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    ax1.plot(
        grid,
        dz.mean_first_passage_time(_potential, sharp, 0.0, D, far=FAR),
        "k-",
        label="exact first-passage time (SDE)",
    )
    ax1.plot(
        grid,
        dz.kramers_time(BARRIER, *curvatures(), D),
        "k:",
        label="Kramers (barrier crossing, ~2x time to the top)",
    )
    ax1.plot(
        u,
        escape["mfpt_corrected"],
        "k_",
        ms=14,
        mew=1.5,
        label="exact, discretely monitored (per cell)",
    )
    for (lr, cells), marker in zip(escape.groupby("lr"), "osD^v", strict=False):
        ax1.errorbar(
            cells["batch_size"] / lr,
            cells["mean_time"],
            yerr=2 * cells["stderr_time"],
            fmt=marker,
            ms=6,
            capsize=3,
            label=f"SGD, lr={lr:g}",
        )
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="b / lr",
        ylabel="mean escape time (steps x lr)",
        title="escape from the sharp minimum (±2 s.e.)",
    )
    for lr, cells in flat.sort_values("lr_over_b").groupby("lr"):
        ax2.errorbar(
            cells["lr_over_b"],
            cells["flat_fraction"],
            yerr=2 * cells["stderr"],
            marker="o",
            capsize=3,
            label=f"lr={lr:g}",
        )
    ax2.axhline(
        result.asymptotic_flat_fraction, color="k", ls="--", label="stationary flat mass (D -> 0)"
    )
    ax2.set(
        xscale="log",
        xlabel="lr / b",
        ylabel="fraction ending at x < 0",
        title=f"in the flat minimum after {result.budget_steps} steps",
        ylim=(-0.02, 1.0),
    )
    for ax, ticks in ((ax1, sorted(set(u))), (ax2, sorted(set(flat["lr_over_b"]))[::2])):
        ax.legend(fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "dai_zhu2018_escape.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> DaiZhuResult:
    return example_main(argv, __doc__.splitlines()[0], run, report, figure)


if __name__ == "__main__":
    main(sys.argv[1:])
