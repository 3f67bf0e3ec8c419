r"""Perko 2023: the continuous-time optimal batch-size schedule beats a constant batch.

Claim (arXiv 2312.01898, abstract; docs/theory/perko2023.md): from a small-learning-rate SDE
expansion of SGD one derives an optimal batch-size schedule (applied to linear regression); at the
same total number of samples N it gives a lower expected loss than a constant batch.

What this script does, on linear regression with a Gaussian design matching docs/theory/perko2023.md
(:math:`x \sim N(0, \operatorname{diag}(\lambda))`, :math:`\lambda = (1, 0.3)`,
:math:`y = x^\top w^\star + s\,\xi`, :math:`s = 1`, start :math:`w_0 = 0`,
:math:`e_0 = -w^\star = -(3, 3)`), SGD with learning rate h = 0.1 for K = 100 steps and a
budget of N = 400 samples:

1. The derived schedule: :func:`critbatch.theory.perko2023.linear_regression_schedule`, the
   continuous-time optimum :math:`b^\star(t) \propto \sqrt{g(t)}` taken at step midpoints, with a
   floor of one sample per step, summing to N (real-valued batch sizes).
2. The exact discrete oracle (:func:`critbatch.theory.perko2023.oracle_losses`) gives the
   expected final loss of the constant batch N/K and of b*(t).
3. The core runs only parametric schedules, and b*(t) (a shallow dip, then roughly
   exponential growth) is not one of them. Approximation used (ours): the closest geometric
   growth. :math:`\log b^\star_k` is fitted linearly in k (least squares); the core's rule
   :math:`b_k = \lceil b_0\rho^k\rceil` (``critbatch.schedules.geometric(every=1)``) gets the
   integer :math:`b_0` nearest the fitted intercept (at least 1) and the fitted growth
   :math:`\rho`, lowered (bisection) just enough that its integer batches, as
   :meth:`critbatch.schedules.Schedule.batch_size` computes them, use at most N samples. The
   oracle evaluates that integer sequence exactly, so the share of the oracle's predicted gain
   that the approximation keeps is reported.
4. Monte Carlo in the Rust core: least squares on a large finite sample from the design
   (``critbatch.problems.least_squares``, sampling with replacement, n = 2^14), the constant batch
   and the geometric approximation under one equal budget, ``target(max_sfo=N, max_steps=K)``;
   the mean excess loss (final loss minus the finite sample's minimum,
   ``critbatch.problems.min_loss``) with its standard error is compared with the oracle and
   between the two schedules (independent runs: their base batch sizes differ, so they cannot
   share random numbers).

Run ``python examples/perko2023_schedule.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import bisect

import critbatch as cb
from critbatch.theory import perko2023 as pk
from examples._main import example_main

EIGVALS = (1.0, 0.3)
W_STAR = (3.0, 3.0)
NOISE_STD = 1.0
LR = 0.1
N_STEPS = 100
BUDGET = 400
N_DATA = 2**14
FLOOR = 0.5 * NOISE_STD**2  # the population's minimum loss


def geometric(rho: float) -> cb.schedules.Schedule:
    """The core's geometric batch growth ``b_k = ceil(b0 rho^k)``."""
    return cb.schedules.schedule(batch=cb.schedules.geometric(1, rho), name="geometric")


def batches(b0: int, rho: float) -> np.ndarray:
    """The K integer batch sizes of :func:`geometric` from ``b0``."""
    return np.asarray(geometric(rho).batch_size(b0, np.arange(N_STEPS)))


def closest_geometric(optimal: np.ndarray, budget: int) -> tuple[int, float, float, float]:
    r"""Fit :math:`\log b^\star_k \approx \log c + k\log r`; realize it with integer batches.

    Returns:
        ``(b0, rho, c, r)``: :math:`b_0` the integer nearest :math:`c` (at least 1), and
        :math:`\rho \le r` the largest growth whose batches use at most ``budget`` samples, less
        1e-9 so that no batch sits at a rounding edge of the ceiling.

    """
    slope, intercept = np.polyfit(np.arange(optimal.size), np.log(optimal), 1)
    c, r = math.exp(intercept), math.exp(slope)
    b0 = max(1, round(c))
    if batches(b0, 1.0).sum() > budget:
        raise ValueError(f"budget={budget} is below {b0} samples per step")

    def over(rho: float) -> float:
        return float(batches(b0, rho).sum() - budget - 0.5)

    rho = r if over(r) < 0 else bisect(over, 1.0, r, xtol=1e-13) - 1e-9
    return b0, rho, c, r


@dataclass(frozen=True)
class PerkoResult:
    """All numbers of the example."""

    optimal: np.ndarray
    b0: int
    rho: float
    fitted: tuple[float, float]
    #: the exact expected excess loss of the constant, optimal and geometric schedules
    oracle: dict[str, float]
    #: the core's runs of both schedules, with their excess loss
    runs: pd.DataFrame
    seconds: float

    @property
    def geometric(self) -> np.ndarray:
        """The integer batch sizes the core runs."""
        return batches(self.b0, self.rho)

    def mc(self, schedule: str) -> tuple[float, float, float]:
        """Mean excess final loss, its standard error and the median SFO of a schedule's runs."""
        part = self.runs[self.runs["schedule"] == schedule]
        excess = part["excess"]
        return excess.mean(), excess.std(ddof=1) / math.sqrt(len(excess)), part["sfo"].median()

    @property
    def oracle_gain(self) -> float:
        """Relative reduction of the excess loss by b*(t) (oracle)."""
        return 1.0 - self.oracle["optimal"] / self.oracle["constant"]

    @property
    def retained(self) -> float:
        """Share of the oracle's gain that the geometric approximation keeps (oracle)."""
        o = self.oracle
        return (o["constant"] - o["geometric"]) / (o["constant"] - o["optimal"])

    @property
    def mc_gain(self) -> float:
        """Relative reduction of the excess loss by the geometric schedule (Monte Carlo)."""
        return 1.0 - self.mc("geometric")[0] / self.mc("constant")[0]

    @property
    def mc_z(self) -> float:
        """The Monte Carlo difference constant - geometric in standard errors (Welch)."""
        (mc, sc, _), (mg, sg, _) = self.mc("constant"), self.mc("geometric")
        return (mc - mg) / math.hypot(sc, sg)

    def verdict(self) -> str:
        """Return the one-line verdict."""
        ok = self.oracle["optimal"] < self.oracle["constant"] and self.mc_z > 3
        return (
            f"VERDICT: {'REPRODUCED' if ok else 'NOT REPRODUCED'} on Gaussian linear regression "
            f"(lambda={EIGVALS}, s={NOISE_STD}, h={LR}, K={N_STEPS}, N={BUDGET}): the oracle says "
            f"b*(t) lowers the excess loss by {100 * self.oracle_gain:.1f}% against the constant "
            f"batch N/K; the closest geometric schedule (log-linear fit of b*(t), growth lowered "
            f"to fit N with integer batches: the approximation the core can run) keeps "
            f"{100 * self.retained:.0f}% of that gain in the oracle, and the core's Monte Carlo "
            f"measures a {100 * self.mc_gain:.1f}% reduction ({self.mc_z:.1f} standard errors) "
            f"at {self.mc('geometric')[2]:.0f} vs {self.mc('constant')[2]:.0f} samples."
        )


def make_problem(seed: int = 0) -> cb.problems.FiniteSum:
    """Draw the Gaussian design's finite sample (``n = 2^14`` rows) as a least-squares problem."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_DATA, len(EIGVALS))) * np.sqrt(EIGVALS)
    y = X @ np.asarray(W_STAR) + NOISE_STD * rng.standard_normal(N_DATA)
    return cb.problems.least_squares(X, y, x0=0.0, name="gaussian_regression")


def oracle_excess(batch_sizes: np.ndarray) -> float:
    """The exact expected excess loss after K steps with these batch sizes."""
    lam, e0 = np.asarray(EIGVALS), -np.asarray(W_STAR)
    return float(pk.oracle_losses(lam, e0, NOISE_STD, LR, batch_sizes)[-1]) - FLOOR


def run(*, reduced: bool = False, seed: int = 0, threads: int | None = None) -> PerkoResult:
    """Compute the schedules, the oracle and the core's Monte Carlo; return the numbers.

    Args:
        reduced: the small version (2000 seeds per schedule instead of 8000).
        seed: the sweep seed (the data set is fixed).
        threads: core threads (default all).

    Returns:
        A :class:`PerkoResult`.

    """
    start = time.perf_counter()
    lam, e0 = np.asarray(EIGVALS), -np.asarray(W_STAR)
    optimal = pk.linear_regression_schedule(
        lam, e0, NOISE_STD, LR, N_STEPS, BUDGET, batch_size_min=1.0
    )
    b0, rho, c, r = closest_geometric(optimal, BUDGET)
    constant = np.full(N_STEPS, BUDGET / N_STEPS)
    oracle = {
        "constant": oracle_excess(constant),
        "optimal": oracle_excess(optimal),
        "geometric": oracle_excess(batches(b0, rho).astype(float)),
    }
    problem = make_problem()
    # an equal budget: every run stops after K steps or before its SFO would pass N
    budget = cb.targets.target(max_sfo=BUDGET, max_steps=N_STEPS, check_every=N_STEPS)
    n_seeds = 2000 if reduced else 8000
    plans = [(BUDGET // N_STEPS, cb.schedules.schedule(name="constant")), (b0, geometric(rho))]
    sweeps = [
        cb.sweep(
            problem, "sgd", [b], [LR], n_seeds, budget, schedules=s, seed=seed + i, threads=threads
        )
        for i, (b, s) in enumerate(plans)
    ]
    runs = pd.concat([s.to_pandas() for s in sweeps], ignore_index=True)
    runs["excess"] = runs["final_loss"] - cb.problems.min_loss(problem)
    return PerkoResult(optimal, b0, rho, (c, r), oracle, runs, time.perf_counter() - start)


def table(result: PerkoResult) -> str:
    """Return the verdict table as Markdown."""
    geo, (c, r), o = result.geometric, result.fitted, result.oracle

    def mc(name: str) -> str:
        mean, sem, _ = result.mc(name)
        return f"{mean:.5g} ± {sem:.2g}"

    return "\n".join(
        [
            f"Gaussian linear regression, lambda = {EIGVALS}, w* = {W_STAR}, s = {NOISE_STD}, "
            f"h = {LR}, K = {N_STEPS}, N = {BUDGET}; Monte Carlo on n = {N_DATA} rows",
            f"b*(t): {result.optimal[0]:.3g} -> {result.optimal[-1]:.3g} (floor 1); log-linear "
            f"fit b = {c:.3g} * {r:.5g}^k; run as ceil({result.b0} * {result.rho:.5g}^k), "
            f"{geo[0]} -> {geo[-1]}, {geo.sum()} samples",
            "",
            "| schedule | samples | oracle excess loss | Monte Carlo excess loss (± s.e.) |",
            "|---|---|---|---|",
            f"| constant N/K = {BUDGET / N_STEPS:g} | {BUDGET} | {o['constant']:.5g} | "
            f"{mc('constant')} |",
            f"| b*(t) (real-valued, oracle only) | {result.optimal.sum():.0f} | "
            f"{o['optimal']:.5g} | |",
            f"| closest geometric (core) | {geo.sum()} | {o['geometric']:.5g} | "
            f"{mc('geometric')} |",
            "",
            f"oracle gain of b*(t): {100 * result.oracle_gain:.1f}%; of the geometric "
            f"approximation: {100 * (1 - o['geometric'] / o['constant']):.1f}% (it keeps "
            f"{100 * result.retained:.0f}%); Monte Carlo gain of the geometric approximation "
            f"{100 * result.mc_gain:.1f}% ({result.mc_z:.1f} s.e.)",
        ]
    )


def figure(result: PerkoResult, path: Path) -> None:
    """Write the schedules and the oracle's loss curves to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam, e0 = np.asarray(EIGVALS), -np.asarray(W_STAR)
    k = np.arange(N_STEPS)
    constant = np.full(N_STEPS, BUDGET / N_STEPS)
    fig, (ax_b, ax_l) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax_b.plot(k, result.optimal, label="b*(t) (derived, real-valued)")
    ax_b.step(
        k,
        result.geometric,
        where="post",
        label=f"closest geometric, run by the core (ceil({result.b0}·{result.rho:.4f}^k))",
    )
    ax_b.axhline(BUDGET / N_STEPS, color="k", ls=":", label=f"constant N/K = {BUDGET / N_STEPS:g}")
    ax_b.set(yscale="log", xlabel="step k", ylabel="batch size", title=f"schedules, N = {BUDGET}")
    for batch_sizes, label in (
        (constant, "constant"),
        (result.optimal, "b*(t)"),
        (result.geometric.astype(float), "geometric"),
    ):
        losses = pk.oracle_losses(lam, e0, NOISE_STD, LR, batch_sizes) - FLOOR
        ax_l.plot(np.arange(N_STEPS + 1), losses, label=f"{label} (oracle)")
    for name, colour in (("constant", "tab:blue"), ("geometric", "tab:green")):
        mean, sem, _ = result.mc(name)
        ax_l.errorbar(
            [N_STEPS],
            [mean],
            yerr=[2 * sem],
            fmt="o",
            color=colour,
            capsize=3,
            label=f"{name}: core Monte Carlo (±2 s.e.)",
        )
    ax_l.set(
        yscale="log",
        xlabel="step k",
        ylabel="excess loss E f - s²/2",
        title="expected excess loss (exact oracle) and Monte Carlo at K",
    )
    for ax in (ax_b, ax_l):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Perko 2023: optimal batch-size schedule on linear regression", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(result: PerkoResult) -> str:
    return f"{table(result)}\n\n({result.seconds:.1f} s)\n{result.verdict()}"


def _figure(result: PerkoResult, out: Path) -> Path:
    path = out / "perko2023_schedule.png"
    figure(result, path)
    return path


def main(argv: list[str] | None = None) -> PerkoResult:
    return example_main(argv, __doc__.splitlines()[0], run, _report, _figure)


if __name__ == "__main__":
    main(sys.argv[1:])
