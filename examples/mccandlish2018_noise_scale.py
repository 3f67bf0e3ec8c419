r"""McCandlish et al. 2018: the gradient noise scale predicts the critical batch size.

Claim (arXiv 1812.06162; docs/theory/mccandlish2018.md): steps to a target follow S(B) = S_min (1 +
B_noise/B), and the critical batch size B_crit = B_noise is predicted by the gradient noise scale
B_noise = tr(HΣ)/(GᵀHG), or by its Hessian-free proxy B_simple = tr(Σ)/|G|², measured during
training with two batch sizes.

What this script does, for least squares and logistic regression (``critbatch.problems``):

1. a sweep over batch sizes and learning rates (SGD, target ``f <= f* + 5 % (f(x0) - f*)``), and
   the fit of S(B) = S_min (1 + B_noise/B) to K(b) at the best learning rate
   (``critbatch.fit.fit(model="mccandlish")``): the *fitted* critical batch size;
2. the noise scale along the full-batch gradient-descent path from x0 to the target: at points
   where the loss gap has fallen to 100 %, 30 %, 10 % and 5 % of its initial value, the exact
   G, Σ (covariance of the n per-sample gradients) and H give B_simple and B_noise
   (``critbatch.theory.mccandlish2018.b_simple``/``b_noise``), and B_simple is also *estimated*
   from 400 pairs of minibatch gradients of sizes 8 and 256 drawn with replacement, with the
   unbiased two-batch estimators of |G|² and tr(Σ) and a ratio of means;
3. the ratio of the fitted B_crit to the noise scales at the target (the end of the path), where
   McCandlish et al. measure it; "predicts" means within a factor 3 (their agreement is an
   order-of-magnitude one).

Run ``python examples/mccandlish2018_noise_scale.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

import critbatch as cb
from critbatch import fit as cbfit
from critbatch.reference import problems as ref
from critbatch.theory import mccandlish2018 as mt
from critbatch.tuning import best_learning_rate
from examples._main import example_main

GAP = 0.05
PATH_LEVELS = (1.0, 0.3, 0.1, GAP)
B_SMALL, B_BIG, N_PAIRS = 8, 256, 400
FACTOR = 3.0


@dataclass(frozen=True)
class NoisePoint:
    """The noise scales at one point of the gradient-descent path."""

    gap_fraction: float
    loss: float
    b_simple: float
    b_noise: float
    b_simple_estimate: float


@dataclass(frozen=True)
class ProblemResult:
    """Fitted critical batch size and measured noise scales for one problem."""

    name: str
    f_star: float
    tau: float
    batch_sizes: np.ndarray
    steps: np.ndarray
    s_min: float
    b_crit: float
    b_crit_interval: tuple[float, float] | None
    r2_log: float
    path: list[NoisePoint]

    @property
    def at_target(self) -> NoisePoint:
        """The noise scales where the path reaches the target."""
        return self.path[-1]

    @property
    def ratio_noise(self) -> float:
        """Fitted B_crit over the exact B_noise at the target."""
        return self.b_crit / self.at_target.b_noise

    @property
    def ratio_simple(self) -> float:
        """Fitted B_crit over the estimated B_simple at the target."""
        return self.b_crit / self.at_target.b_simple_estimate

    @property
    def matching_gap(self) -> float:
        """Loss-gap fraction on the path where B_noise equals the fitted B_crit (log-interp.)."""
        gaps = np.log([q.gap_fraction for q in self.path])
        noise = np.log([q.b_noise for q in self.path])
        if not noise[0] <= np.log(self.b_crit) <= noise[-1]:
            return float("nan")
        return float(np.exp(np.interp(np.log(self.b_crit), noise, gaps)))

    @property
    def predicts(self) -> bool:
        """B_noise at the target within a factor FACTOR of the fitted B_crit."""
        return 1.0 / FACTOR <= self.ratio_noise <= FACTOR


@dataclass(frozen=True)
class McCandlishResult:
    """Both problems."""

    problems: list[ProblemResult]
    seconds: float


def _hessian(problem: cb.problems.FiniteSum, w: np.ndarray) -> np.ndarray:
    X, n = problem.X, problem.n_samples
    if problem.kind == "least_squares":
        weights = np.ones(n)
    else:
        s = 1.0 / (1.0 + np.exp(-problem.y * (X @ w)))
        weights = s * (1.0 - s)
    return (X * weights[:, None]).T @ X / n + problem.l2 * np.eye(X.shape[1])


def _f_star(problem: cb.problems.FiniteSum) -> tuple[float, float]:
    """Return (f*, L): the minimum (BFGS from the exact gradient) and the largest curvature."""
    opt = minimize(
        lambda w: ref.loss(problem, w),
        problem.x0,
        jac=lambda w: ref.grad(problem, w),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    lipschitz = float(np.linalg.eigvalsh(_hessian(problem, problem.x0)).max())
    return float(opt.fun), lipschitz


def noise_point(
    problem: cb.problems.FiniteSum, w: np.ndarray, gap_fraction: float, rng: np.random.Generator
) -> NoisePoint:
    """Exact and two-batch-estimated noise scales at ``w``."""
    per_sample = ref.sample_grads(problem, w, np.arange(problem.n_samples))
    G = per_sample.mean(axis=0)
    Sigma = np.cov(per_sample, rowvar=False, bias=True)  # sampling with replacement: population
    H = _hessian(problem, w)
    small_sq, big_sq = np.empty(N_PAIRS), np.empty(N_PAIRS)
    for k in range(N_PAIRS):
        small_sq[k] = np.sum(
            per_sample[rng.integers(0, problem.n_samples, B_SMALL)].mean(axis=0) ** 2
        )
        big_sq[k] = np.sum(per_sample[rng.integers(0, problem.n_samples, B_BIG)].mean(axis=0) ** 2)
    g2 = np.mean(mt.gradient_norm_sq_estimate(small_sq, big_sq, B_SMALL, B_BIG))
    tr = np.mean(mt.trace_sigma_estimate(small_sq, big_sq, B_SMALL, B_BIG))
    return NoisePoint(
        gap_fraction=gap_fraction,
        loss=ref.loss(problem, w),
        b_simple=mt.b_simple(G, Sigma),
        b_noise=mt.b_noise(G, Sigma, H),
        b_simple_estimate=float(tr / g2),
    )


def gd_path(
    problem: cb.problems.FiniteSum, f_star: float, lipschitz: float, seed: int
) -> list[NoisePoint]:
    """Noise scales along full-batch gradient descent (lr = 1/L) at the PATH_LEVELS."""
    rng = np.random.default_rng(seed)
    w = problem.x0.copy()
    gap0 = ref.loss(problem, w) - f_star
    points = []
    for level in PATH_LEVELS:
        for _ in range(1_000_000):
            if ref.loss(problem, w) - f_star <= level * gap0:
                break
            w = w - ref.grad(problem, w) / lipschitz
        points.append(noise_point(problem, w, level, rng))
    return points


def run_problem(
    name: str, problem: cb.problems.FiniteSum, lrs: np.ndarray, reduced: bool, seed: int
) -> ProblemResult:
    """Sweep, fit, and measure the noise scales for one problem."""
    f_star, lipschitz = _f_star(problem)
    f0 = ref.loss(problem, problem.x0)
    tau = f_star + GAP * (f0 - f_star)
    bs = 2 ** np.arange(0, 10)
    target = cb.targets.target(loss_below=tau, max_steps=4_000)
    res = cb.sweep(problem, "sgd", bs, lrs, 3 if reduced else 8, target, seed=seed)
    law = cbfit.fit(res, "mccandlish", n_boot=0 if reduced else 300, seed=seed).item()
    best = best_learning_rate(res)
    steps = best.groupby("batch_size")["steps"].median().reindex(bs).to_numpy(dtype=float)
    return ProblemResult(
        name=name,
        f_star=f_star,
        tau=tau,
        batch_sizes=bs.astype(float),
        steps=steps,
        s_min=law.params["s_min"],
        b_crit=law.critical_batch_size,
        b_crit_interval=law.interval,
        r2_log=law.r2_log,
        path=gd_path(problem, f_star, lipschitz, seed),
    )


def run(reduced: bool = True, *, seed: int = 2018) -> McCandlishResult:
    """Run both problems.

    Args:
        reduced: the small version used by the test (3 seeds, no bootstrap).
        seed: the sweep seed.

    Returns:
        A :class:`McCandlishResult`.

    """
    clock = time.perf_counter()
    n_lr = 8 if reduced else 16
    problems = [
        run_problem(
            "least_squares",
            cb.problems.make_least_squares(n=1024, d=32, noise_std=0.5, seed=0),
            np.geomspace(0.005, 1.5, n_lr),
            reduced,
            seed,
        ),
        run_problem(
            "logistic",
            cb.problems.make_logistic(n=1024, d=16, seed=0),
            np.geomspace(0.02, 8.0, n_lr),
            reduced,
            seed + 1,
        ),
    ]
    return McCandlishResult(problems=problems, seconds=time.perf_counter() - clock)


def report(result: McCandlishResult) -> str:
    """Return the verdict tables (Markdown) and the one-line verdict."""
    lines = [
        "## McCandlish et al. 2018 (arXiv 1812.06162): gradient noise scale vs critical batch size",
        "",
    ]
    for p in result.problems:
        iv = p.b_crit_interval
        lines += [
            f"### {p.name}: target f* + {GAP:.0%} of the initial gap (f* = {p.f_star:.5g})",
            f"fit S(B) = S_min(1 + B_noise/B): S_min = {p.s_min:.4g}, B_crit = {p.b_crit:.4g}"
            + (f" [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "")
            + f", R^2(log K) = {p.r2_log:.3f}",
            "",
            "| point on the GD path (gap / initial gap) | loss | B_simple exact | "
            f"B_simple two-batch ({B_SMALL}, {B_BIG}) | B_noise exact | B_crit / B_noise |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for q in p.path:
            lines.append(
                f"| {q.gap_fraction:g} | {q.loss:.5g} | {q.b_simple:.4g} | "
                f"{q.b_simple_estimate:.4g} | {q.b_noise:.4g} | "
                f"{p.b_crit / q.b_noise:.3g} |"
            )
        lines.append("")
    lines.append(f"runtime {result.seconds:.1f} s")
    lines.append("")
    parts = [
        f"{p.name}: B_crit = {p.b_crit:.3g}, B_noise = {p.at_target.b_noise:.3g} "
        f"(ratio {p.ratio_noise:.2f}), B_simple ~ {p.at_target.b_simple_estimate:.3g} "
        f"(ratio {p.ratio_simple:.2f})"
        for p in result.problems
    ]
    ok = all(p.predicts for p in result.problems)
    where = "; ".join(
        f"{p.name} at a loss gap of {p.matching_gap:.2g} of the initial one"
        for p in result.problems
    )
    lines.append(
        "VERDICT: "
        + ("REPRODUCED" if ok else "NOT REPRODUCED")
        + f" (noise scale at the target within a factor {FACTOR:g} of the fitted critical batch "
        "size): " + "; ".join(parts) + ". The noise scale grows as training nears the minimum "
        "of these finite sums; the fitted B_crit equals B_noise earlier on the path ("
        + where
        + ")."
    )
    return "\n".join(lines)


def figure(result: McCandlishResult, out_dir: Path) -> Path:
    """Draw K(b) with the fit and the noise scales along the path; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for i, p in enumerate(result.problems):
        color = f"C{i}"
        grid = np.geomspace(p.batch_sizes.min(), p.batch_sizes.max(), 100)
        axes[0].plot(p.batch_sizes, p.steps, "o", color=color, label=f"{p.name}: K(b)")
        axes[0].plot(grid, p.s_min * (1 + p.b_crit / grid), "-", color=color)
        axes[0].axvline(p.b_crit, color=color, ls="--", lw=1)
        gaps = [q.gap_fraction for q in p.path]
        axes[1].plot(
            gaps, [q.b_noise for q in p.path], "o-", color=color, label=f"{p.name}: B_noise"
        )
        axes[1].plot(
            gaps,
            [q.b_simple_estimate for q in p.path],
            "s:",
            color=color,
            mfc="none",
            label=f"{p.name}: B_simple (two-batch)",
        )
        axes[1].axhline(p.b_crit, color=color, ls="--", lw=1, label=f"{p.name}: fitted B_crit")
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="batch size b",
        ylabel="steps to target",
        title="S(B) = S_min (1 + B_crit/B) (dashed: B_crit)",
    )
    axes[0].legend(fontsize=8)
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="loss gap / initial gap (GD path)",
        ylabel="batch size",
        title="noise scale along training",
    )
    axes[1].invert_xaxis()
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mccandlish2018_noise_scale.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> McCandlishResult:
    return example_main(argv, __doc__.splitlines()[0], run, report, figure)


if __name__ == "__main__":
    main(sys.argv[1:])
