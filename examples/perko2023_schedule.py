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
   exponential growth) is not one of them. Approximation used: the closest geometric growth.
   :math:`\log b^\star_k` is fitted linearly in k (least squares); the core's rule
   :math:`b_k = \lceil b_0\rho^k\rceil` (``critbatch.schedules.geometric(every=1)``) is then
   given an integer :math:`b_0` next to the fitted intercept and a :math:`\rho` lowered from
   the fitted slope just enough that its integer batches use at most N samples. The oracle
   evaluates that integer sequence exactly, so the share of the oracle's predicted gain that the
   approximation keeps is reported.
4. Monte Carlo in the Rust core: least squares on a large finite sample from the design
   (``critbatch.problems.least_squares``, sampling with replacement, n = 2^14), runs of exactly K
   steps (a budget-only target), for the constant batch and the geometric approximation; the mean
   excess loss (final loss minus the finite sample's minimum) with its standard error is compared
   with the oracle and between the two schedules.

Run ``python examples/perko2023_schedule.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


@dataclass(frozen=True)
class Geometric:
    """The integer geometric schedule ``b_k = ceil(b0 * rho**k)`` that the core runs."""

    b0: int
    rho: float
    fitted_b0: float
    fitted_rho: float
    batch_sizes: np.ndarray

    @property
    def sfo(self) -> int:
        """Return the samples the schedule uses in K steps."""
        return int(self.batch_sizes.sum())


@dataclass(frozen=True)
class MonteCarlo:
    """Mean excess final loss over seeds in the core, with its standard error."""

    mean: float
    sem: float
    n_runs: int
    sfo: float


@dataclass(frozen=True)
class PerkoResult:
    """All numbers of the example."""

    optimal: np.ndarray
    geometric: Geometric
    oracle_constant: float
    oracle_optimal: float
    oracle_geometric: float
    mc_constant: MonteCarlo
    mc_geometric: MonteCarlo
    seconds: float

    @property
    def oracle_gain(self) -> float:
        """Relative reduction of the excess loss by b*(t) (oracle)."""
        return 1.0 - self.oracle_optimal / self.oracle_constant

    @property
    def retained(self) -> float:
        """Share of the oracle's gain that the geometric approximation keeps (oracle)."""
        return (self.oracle_constant - self.oracle_geometric) / (
            self.oracle_constant - self.oracle_optimal
        )

    @property
    def oracle_geometric_gain(self) -> float:
        """Relative reduction of the excess loss by the geometric schedule (oracle)."""
        return 1.0 - self.oracle_geometric / self.oracle_constant

    @property
    def mc_gain(self) -> float:
        """Relative reduction of the excess loss by the geometric schedule (Monte Carlo)."""
        return 1.0 - self.mc_geometric.mean / self.mc_constant.mean

    @property
    def mc_z(self) -> float:
        """The Monte Carlo difference constant - geometric in standard errors."""
        diff = self.mc_constant.mean - self.mc_geometric.mean
        return diff / math.hypot(self.mc_constant.sem, self.mc_geometric.sem)

    def verdict(self) -> str:
        """Return the one-line verdict."""
        ok = self.oracle_optimal < self.oracle_constant and self.mc_z > 3
        head = "REPRODUCED" if ok else "NOT REPRODUCED"
        return (
            f"VERDICT: {head} on Gaussian linear regression (lambda={EIGVALS}, s={NOISE_STD}, "
            f"h={LR}, K={N_STEPS}, N={BUDGET}): the oracle says b*(t) lowers the excess loss "
            f"by {100 * self.oracle_gain:.1f}% against the constant batch N/K; the closest "
            f"geometric schedule (log-linear fit of b*(t), growth lowered to fit N with "
            f"integer batches: the approximation the core can run) keeps "
            f"{100 * self.retained:.0f}% of that gain in the oracle, and the core's Monte "
            f"Carlo measures a {100 * self.mc_gain:.1f}% reduction "
            f"({self.mc_z:.1f} standard errors) at "
            f"{self.mc_geometric.sfo:.0f} vs {self.mc_constant.sfo:.0f} samples."
        )


def make_problem(seed: int = 0) -> cb.problems.FiniteSum:
    """Draw the Gaussian design's finite sample (``n = 2^14`` rows) as a least-squares problem."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_DATA, len(EIGVALS))) * np.sqrt(EIGVALS)
    y = X @ np.asarray(W_STAR) + NOISE_STD * rng.standard_normal(N_DATA)
    return cb.problems.least_squares(X, y, x0=0.0, name="gaussian_regression")


def minimum_loss(problem: cb.problems.FiniteSum) -> float:
    """Return the least-squares minimum of the finite sample (``numpy.linalg.lstsq``)."""
    w, *_ = np.linalg.lstsq(problem.X, problem.y, rcond=None)
    return float(0.5 * np.mean((problem.X @ w - problem.y) ** 2))


def geometric_batches(b0: int, rho: float, n_steps: int) -> np.ndarray:
    """Return the core's geometric batch sizes ``ceil(b0 rho^k)``, k < n_steps (9-decimal guard)."""
    return np.ceil(np.round(b0 * rho ** np.arange(n_steps, dtype=float), 9)).astype(np.int64)


def closest_geometric(optimal: np.ndarray, budget: int) -> Geometric:
    r"""Fit :math:`\log b^\star_k \approx \log c + k\log r` and realize it with integer batches.

    Among the integers :math:`b_0` next to :math:`c` (and 1), take the largest
    :math:`\rho \le r` with :math:`\sum_k \lceil b_0\rho^k\rceil \le` ``budget`` (bisection), and
    keep the :math:`(b_0, \rho)` whose :math:`\rho` is closest to the fitted :math:`r`.
    """
    k = np.arange(optimal.size, dtype=float)
    slope, intercept = np.polyfit(k, np.log(optimal), 1)
    fitted_b0, fitted_rho = math.exp(intercept), math.exp(slope)
    best: Geometric | None = None
    for b0 in sorted({1, max(1, math.floor(fitted_b0)), max(1, math.ceil(fitted_b0))}):
        if geometric_batches(b0, 1.0, optimal.size).sum() > budget:
            continue
        lo, hi = 1.0, max(fitted_rho, 1.0)
        if geometric_batches(b0, hi, optimal.size).sum() <= budget:
            lo = hi
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if geometric_batches(b0, mid, optimal.size).sum() <= budget:
                lo = mid
            else:
                hi = mid
        # lo sits on the edge where one more ceil would step up; move to the middle of the rho
        # interval that gives the same integer batches (an interval: each ceil is monotone in
        # rho), so that the core's rounding cannot change them
        batches = geometric_batches(b0, lo, optimal.size)
        edge_low, edge_high = 1.0, lo
        for _ in range(100):
            mid = 0.5 * (edge_low + edge_high)
            if np.array_equal(geometric_batches(b0, mid, optimal.size), batches):
                edge_high = mid
            else:
                edge_low = mid
        rho = math.sqrt(edge_high * lo)
        cand = Geometric(b0, rho, fitted_b0, fitted_rho, geometric_batches(b0, rho, optimal.size))
        if best is None or abs(math.log(cand.rho / fitted_rho)) < abs(
            math.log(best.rho / fitted_rho)
        ):
            best = cand
    if best is None:
        raise ValueError(f"budget={budget} is below one sample per step")
    return best


def _monte_carlo(results: cb.Results, schedule: str, floor: float) -> MonteCarlo:
    df = results.to_pandas()
    part = df[df["schedule"] == schedule]
    excess = part["final_loss"].to_numpy(float) - floor
    return MonteCarlo(
        mean=float(excess.mean()),
        sem=float(excess.std(ddof=1) / math.sqrt(excess.size)),
        n_runs=int(excess.size),
        sfo=float(part["sfo"].median()),
    )


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
    geo = closest_geometric(optimal, BUDGET)
    constant = np.full(N_STEPS, BUDGET / N_STEPS)
    floor = 0.5 * NOISE_STD**2

    def oracle(batches: np.ndarray) -> float:
        return float(pk.oracle_losses(lam, e0, NOISE_STD, LR, batches)[-1]) - floor

    problem = make_problem()
    s = cb.schedules
    scheds = [
        s.schedule(name="constant"),
        s.schedule(batch=s.geometric(1, geo.rho), name="geometric"),
    ]
    n_seeds = 2000 if reduced else 8000
    # a budget only: every run takes exactly K steps; check (loss over all n rows) at 0 and K
    target = cb.targets.target(max_steps=N_STEPS, check_every=N_STEPS)
    # one sweep per schedule: the base batch size differs (N/K for the constant, b0 for growth)
    res_c = cb.sweep(
        problem,
        "sgd",
        [BUDGET // N_STEPS],
        [LR],
        n_seeds,
        target,
        schedules=scheds[0],
        seed=seed,
        threads=threads,
    )
    res_g = cb.sweep(
        problem,
        "sgd",
        [geo.b0],
        [LR],
        n_seeds,
        target,
        schedules=scheds[1],
        seed=seed + 1,
        threads=threads,
    )
    data_floor = minimum_loss(problem)
    return PerkoResult(
        optimal=optimal,
        geometric=geo,
        oracle_constant=oracle(constant),
        oracle_optimal=oracle(optimal),
        oracle_geometric=oracle(geo.batch_sizes.astype(float)),
        mc_constant=_monte_carlo(res_c, "constant", data_floor),
        mc_geometric=_monte_carlo(res_g, "geometric", data_floor),
        seconds=time.perf_counter() - start,
    )


def table(result: PerkoResult) -> str:
    """Return the verdict table as Markdown."""
    g = result.geometric
    lines = [
        f"Gaussian linear regression, lambda = {EIGVALS}, w* = {W_STAR}, s = {NOISE_STD}, "
        f"h = {LR}, K = {N_STEPS}, N = {BUDGET}; Monte Carlo on n = {N_DATA} rows",
        f"b*(t): {result.optimal[0]:.3g} -> {result.optimal[-1]:.3g} (floor 1); log-linear fit "
        f"b = {g.fitted_b0:.3g} * {g.fitted_rho:.5g}^k; run as ceil({g.b0} * {g.rho:.5g}^k), "
        f"{g.batch_sizes[0]} -> {g.batch_sizes[-1]}, {g.sfo} samples",
        "",
        "| schedule | samples | oracle excess loss | Monte Carlo excess loss (± s.e.) |",
        "|---|---|---|---|",
        f"| constant N/K = {BUDGET / N_STEPS:g} | {BUDGET} | {result.oracle_constant:.5g} | "
        f"{result.mc_constant.mean:.5g} ± {result.mc_constant.sem:.2g} |",
        f"| b*(t) (real-valued, oracle only) | {result.optimal.sum():.0f} | "
        f"{result.oracle_optimal:.5g} | |",
        f"| closest geometric (core) | {g.sfo} | {result.oracle_geometric:.5g} | "
        f"{result.mc_geometric.mean:.5g} ± {result.mc_geometric.sem:.2g} |",
        "",
        f"oracle gain of b*(t): {100 * result.oracle_gain:.1f}%; of the geometric "
        f"approximation: {100 * result.oracle_geometric_gain:.1f}% (it keeps "
        f"{100 * result.retained:.0f}%); Monte Carlo gain of the geometric approximation "
        f"{100 * result.mc_gain:.1f}% ({result.mc_z:.1f} s.e.)",
    ]
    return "\n".join(lines)


def figure(result: PerkoResult, path: Path) -> None:
    """Write the schedules and the oracle's loss curves to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam, e0 = np.asarray(EIGVALS), -np.asarray(W_STAR)
    k = np.arange(N_STEPS)
    fig, (ax_b, ax_l) = plt.subplots(1, 2, figsize=(12, 4.4))
    ax_b.plot(k, result.optimal, label="b*(t) (derived, real-valued)")
    ax_b.step(
        k,
        result.geometric.batch_sizes,
        where="post",
        label=f"closest geometric, run by the core (ceil({result.geometric.b0}·"
        f"{result.geometric.rho:.4f}^k))",
    )
    ax_b.axhline(BUDGET / N_STEPS, color="k", ls=":", label=f"constant N/K = {BUDGET / N_STEPS:g}")
    ax_b.set(yscale="log", xlabel="step k", ylabel="batch size", title=f"schedules, N = {BUDGET}")
    floor = 0.5 * NOISE_STD**2
    for batches, label in (
        (np.full(N_STEPS, BUDGET / N_STEPS), "constant"),
        (result.optimal, "b*(t)"),
        (result.geometric.batch_sizes.astype(float), "geometric"),
    ):
        ax_l.plot(
            np.arange(N_STEPS + 1),
            pk.oracle_losses(lam, e0, NOISE_STD, LR, batches) - floor,
            label=f"{label} (oracle)",
        )
    for mc, label, colour in (
        (result.mc_constant, "constant", "tab:blue"),
        (result.mc_geometric, "geometric", "tab:green"),
    ):
        ax_l.errorbar(
            [N_STEPS],
            [mc.mean],
            yerr=[2 * mc.sem],
            fmt="o",
            color=colour,
            capsize=3,
            label=f"{label}: core Monte Carlo (±2 s.e.)",
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
