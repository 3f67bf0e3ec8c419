r"""McCandlish et al. 2018: the gradient noise scale predicts the critical batch size.

Claim (arXiv 1812.06162; docs/theory/mccandlish2018.md): steps to a target follow S(B) = S_min (1 +
B_noise/B), and the critical batch size B_crit = B_noise is predicted by the gradient noise scale
B_noise = tr(HΣ)/(GᵀHG), or by its Hessian-free proxy B_simple = tr(Σ)/|G|², measured during
training with two batch sizes.

What this script does, for least squares and logistic regression (``critbatch.problems``):

1. a sweep over batch sizes and learning rates (SGD, target ``f - f* <= 5 % (f(x0) - f*)``:
   ``target(loss_gap_below=...)``, with f* from ``critbatch.problems.min_loss``), and the fit of
   S(B) = S_min (1 + B_noise/B) at the best learning rate per B
   (``critbatch.fit.fit(model="mccandlish")``): the *fitted* critical batch size, with its status
   and 95 % profile-likelihood interval (a number is printed only where the fit pins it down);
2. the noise scale along the full-batch gradient-descent path from x0 to the target (ours: the
   paper measures it along training): at the points where the loss gap has fallen to 100 %,
   30 %, 10 % and 5 % of its initial value, the exact G, Σ (covariance of the n per-sample
   gradients) and H give B_simple and B_noise (``critbatch.theory.mccandlish2018.b_simple`` /
   ``b_noise``, all points at once), and B_simple is also *estimated* from 400 pairs of minibatch
   gradients of sizes 8 and 256 drawn with replacement, with the paper's unbiased two-batch
   estimators of |G|² and tr(Σ) and a ratio of means;
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
import pandas as pd

import critbatch as cb
from critbatch import fit as cbfit
from critbatch import reference as ref
from critbatch.theory import mccandlish2018 as mt
from examples._main import example_main

GAP = 0.05
PATH_LEVELS = (1.0, 0.3, 0.1, GAP)
B_SMALL, B_BIG, N_PAIRS = 8, 256, 400
FACTOR = 3.0


@dataclass(frozen=True)
class ProblemResult:
    """Fitted critical batch size and measured noise scales for one problem."""

    name: str
    f_star: float
    fit: cbfit.FitResult
    #: one row per point of the gradient-descent path: gap_fraction, loss, b_simple, b_noise,
    #: b_simple_estimate
    path: pd.DataFrame

    @property
    def b_crit(self) -> float:
        """The fitted critical batch size (NaN unless the fit identifies it)."""
        return self.fit.critical_batch_size

    @property
    def ratio_noise(self) -> float:
        """Fitted B_crit over the exact B_noise at the target (the end of the path)."""
        return self.b_crit / float(self.path["b_noise"].iloc[-1])

    @property
    def ratio_simple(self) -> float:
        """Fitted B_crit over the estimated B_simple at the target."""
        return self.b_crit / float(self.path["b_simple_estimate"].iloc[-1])

    @property
    def matching_gap(self) -> float:
        """Loss-gap fraction on the path where B_noise equals the fitted B_crit (log-interp.)."""
        noise = np.log(self.path["b_noise"].to_numpy())
        if not noise[0] <= np.log(self.b_crit) <= noise[-1]:  # also False for a NaN b_crit
            return float("nan")
        gaps = np.log(self.path["gap_fraction"].to_numpy())
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


def hessian(problem: cb.problems.FiniteSum, w: np.ndarray) -> np.ndarray:
    """The exact Hessian of the least-squares or logistic loss at ``w``."""
    X, n = problem.X, problem.n_samples
    if problem.kind == "least_squares":
        weights = np.ones(n)
    else:
        s = 1.0 / (1.0 + np.exp(-problem.y * (X @ w)))
        weights = s * (1.0 - s)
    return (X * weights[:, None]).T @ X / n + problem.l2 * np.eye(X.shape[1])


def gd_path(problem: cb.problems.FiniteSum, f_star: float) -> np.ndarray:
    """Full-batch gradient descent (lr = 1/L at x0): the iterates where the gap hits the levels."""
    step = 1.0 / float(np.linalg.eigvalsh(hessian(problem, problem.x0)).max())
    w = problem.x0.copy()
    gap0 = ref.loss(problem, w) - f_star
    points = []
    for level in PATH_LEVELS:
        while ref.loss(problem, w) - f_star > level * gap0:
            w = w - step * ref.grad(problem, w)
        points.append(w)
    return np.array(points)


def noise_scales(problem: cb.problems.FiniteSum, points: np.ndarray, seed: int) -> pd.DataFrame:
    """Exact B_simple and B_noise at each point, and B_simple from two-batch estimates."""
    n = problem.n_samples
    per_sample = np.array([ref.sample_grads(problem, w, np.arange(n)) for w in points])
    G = per_sample.mean(axis=1)
    centered = per_sample - G[:, None, :]
    Sigma = centered.transpose(0, 2, 1) @ centered / n  # with replacement: the population form
    H = np.array([hessian(problem, w) for w in points])
    rng = np.random.default_rng(seed)

    def squared_norms(grads: np.ndarray, b: int) -> np.ndarray:
        """|G_B|² of N_PAIRS minibatch gradients of size b drawn with replacement."""
        return np.sum(grads[rng.integers(0, n, (N_PAIRS, b))].mean(axis=1) ** 2, axis=1)

    estimate = []
    for grads in per_sample:
        small, big = squared_norms(grads, B_SMALL), squared_norms(grads, B_BIG)
        g2 = np.mean(mt.gradient_norm_sq_estimate(small, big, B_SMALL, B_BIG))
        estimate.append(np.mean(mt.trace_sigma_estimate(small, big, B_SMALL, B_BIG)) / g2)
    return pd.DataFrame(
        {
            "gap_fraction": PATH_LEVELS,
            "loss": [ref.loss(problem, w) for w in points],
            "b_simple": mt.b_simple(G, Sigma),
            "b_noise": mt.b_noise(G, Sigma, H),
            "b_simple_estimate": estimate,
        }
    )


def run_problem(
    name: str, problem: cb.problems.FiniteSum, lrs: np.ndarray, reduced: bool, seed: int
) -> ProblemResult:
    """Sweep, fit, and measure the noise scales for one problem."""
    f_star = cb.problems.min_loss(problem)
    gap = GAP * (ref.loss(problem, problem.x0) - f_star)
    target = cb.targets.target(loss_gap_below=gap, max_steps=4_000)
    res = cb.sweep(problem, "sgd", 2 ** np.arange(10), lrs, 3 if reduced else 8, target, seed=seed)
    law = cbfit.fit(res, "mccandlish", n_boot=0).item()
    path = noise_scales(problem, gd_path(problem, f_star), seed)
    return ProblemResult(name, f_star, law, path)


def run(reduced: bool = True, *, seed: int = 2018) -> McCandlishResult:
    """Run both problems.

    Args:
        reduced: the small version used by the test (3 seeds, 8 learning rates).
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
        f = p.fit
        lines += [
            f"### {p.name}: target f* + {GAP:.0%} of the initial gap (f* = {p.f_star:.5g})",
            f"fit S(B) = S_min(1 + B_noise/B): S_min = {f.params['s_min']:.4g}, B_crit = "
            f"{f.critical_text()} ({f.status}), R^2(log K) = {f.r2_log:.3f}",
            "",
            "| point on the GD path (gap / initial gap) | loss | B_simple exact | "
            f"B_simple two-batch ({B_SMALL}, {B_BIG}) | B_noise exact | B_crit / B_noise |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for q in p.path.itertuples():
            lines.append(
                f"| {q.gap_fraction:g} | {q.loss:.5g} | {q.b_simple:.4g} | "
                f"{q.b_simple_estimate:.4g} | {q.b_noise:.4g} | {p.b_crit / q.b_noise:.3g} |"
            )
        lines.append("")
    lines += [f"runtime {result.seconds:.1f} s", ""]
    parts = [
        f"{p.name}: B_crit = {p.fit.critical_text()}, B_noise = {p.path['b_noise'].iloc[-1]:.3g} "
        f"(ratio {p.ratio_noise:.2f}), B_simple ~ {p.path['b_simple_estimate'].iloc[-1]:.3g} "
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
        color, f = f"C{i}", p.fit
        reached = ~f.censored
        grid = np.geomspace(f.batch_range[0], f.batch_range[1], 100)
        axes[0].plot(f.batch_size[reached], f.steps[reached], ".", color=color, alpha=0.5)
        axes[0].plot(grid, f.predict(grid), "-", color=color, label=f"{p.name}: fit, best lr")
        axes[1].plot(
            p.path["gap_fraction"], p.path["b_noise"], "o-", color=color, label=f"{p.name}: B_noise"
        )
        axes[1].plot(
            p.path["gap_fraction"],
            p.path["b_simple_estimate"],
            "s:",
            color=color,
            mfc="none",
            label=f"{p.name}: B_simple (two-batch)",
        )
        if f.identified:
            axes[0].axvline(p.b_crit, color=color, ls="--", lw=1)
            axes[1].axhline(p.b_crit, color=color, ls="--", lw=1, label=f"{p.name}: fitted B_crit")
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="batch size b",
        ylabel="steps to target",
        title="S(B) = S_min (1 + B_crit/B) (dashed: B_crit)",
    )
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="loss gap / initial gap (GD path)",
        ylabel="batch size",
        title="noise scale along training",
    )
    axes[1].invert_xaxis()
    for ax in axes:
        ax.legend(fontsize=7)
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
