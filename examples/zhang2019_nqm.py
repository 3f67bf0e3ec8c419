r"""Zhang et al. 2019: on the NQM, momentum and preconditioning raise the critical batch size.

Claim (arXiv 1907.04164, abstract and docs/theory/zhang2019.md): with the best learning rate per
batch size, steps to a target fall like 1/b (perfect scaling) up to a critical batch size and then
level off; heavy-ball momentum leaves the small-batch regime unchanged but extends perfect scaling
to larger batches, and preconditioning (Adam, K-FAC) extends it further.

What this script does, on the NQM ``f(x) = ½ Σ h_i x_i²`` with ``h_i = 1/i`` and gradient noise
variance ``c_i/b = h_i/b`` (``critbatch.problems.nqm_power_law``), a fixed random start, target
``loss < 1 % of f(x0)``, learning rates on half-octave grids (``lr_grid``; the momentum grid is
the SGD grid times ``1 - μ``, so that every SGD rate has a momentum rate with the same effective
step ``lr/(1 - μ)``):

* exact (the paper's method, no sampling): ``critbatch.theory.zhang2019.optimal_lr_steps`` gives
  K(b) at the best learning rate for SGD, heavy ball (μ = 0.9, torch convention) and SGD
  preconditioned by ``H^{-1/2}``; the critical batch size is where b·K(b) first exceeds perfect
  scaling from b = 1 by 20 % (``critbatch.theory.zhang2024.critical_batch_size_from_curve``);
* Monte Carlo (ours): the Rust core runs SGD, heavy ball and Adam over seeds, with common random
  numbers (the optimizers of one seed and batch size share their gradient noise). Adam stands in
  for preconditioning: its second-moment estimate is about ``c_i/b ∝ h_i``, an ``H^{-1/2}``
  preconditioner, but it also has momentum β1 = 0.9 (a proxy, not the exact rule). A run counts
  its first check with the sampled loss below the target. ``critbatch.fit.fit`` fits the inverse
  law at the best learning rate per b with the same 20 % overhead definition of b*
  (``critical="overhead"``, from b = 1) and its status (a number is printed only where the fit
  pins b* down);
  ``compare_critical`` gives b*(momentum)/b*(SGD) and b*(Adam)/b*(SGD) with a profile interval
  and a bootstrap paired over seeds; ``compare_steps`` gives K/K_SGD per batch size, paired.
* the core against the exact recurrences: its mean loss over seeds after the exact K(b) steps at
  the exact best learning rate must match the exact expected loss
  (``critbatch.theory.zhang2019.nqm_expected_loss_at``).

Run ``python examples/zhang2019_nqm.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import critbatch as cb
from critbatch import fit as cbfit
from critbatch.theory import zhang2019 as zt
from critbatch.theory.zhang2024 import critical_batch_size_from_curve
from critbatch.tuning import best_learning_rate
from examples._main import example_main

MOMENTUM = 0.9
POWER = 0.5
TARGET_FRACTION = 0.01
OVERHEAD = 0.2
SMALL_B = 2  # batch sizes <= this count as the small-batch (perfect-scaling) regime

# learning rates factor * 2^(k/2 + 1/4), k in [k0, k1]: the quarter offset keeps the grid off
# lr = 2/L = 2 (|1 - lr L| = 1: SGD's top coordinate never decays, reaching is a coin toss) and the
# top rates diverge, so the best rate at every b lies inside the grid
GRIDS = {"sgd": (-20, 3, 1.0), "momentum": (-20, 11, 1.0 - MOMENTUM), "adam": (-21, -1, 1.0)}
EXACT: dict[str, dict[str, Any]] = {
    "sgd": {},
    "momentum": {"momentum": MOMENTUM},
    "precond": {"precondition_power": POWER},
}
CORE = {
    "sgd": cb.optimizers.sgd(),
    "momentum": cb.optimizers.heavy_ball(MOMENTUM, name="momentum"),
    "adam": cb.optimizers.adam(),
}


def lr_grid(name: str) -> np.ndarray:
    """The learning rates of ``name``'s grid (``precond`` uses SGD's)."""
    k0, k1, factor = GRIDS["sgd" if name == "precond" else name]
    return factor * 2.0 ** (np.arange(k0, k1 + 1) / 2 + 0.25)


def make_problem(dim: int) -> cb.problems.Nqm:
    """The NQM with ``h = c = 1/i`` and a standard normal start (seed 0).

    Not all ones: from x0 = 1 in every coordinate, Adam's first steps (about lr times the sign
    of the gradient) land on the minimum exactly, an artifact of the start.
    """
    x0 = np.random.default_rng(0).standard_normal(dim)
    return cb.problems.nqm_power_law(dim, h1=1.0, p=1.0, s=1.0, x0=x0)


@dataclass(frozen=True)
class NqmResult:
    """Exact K(b) curves, the core's runs and fits, their comparisons and the oracle checks."""

    dim: int
    tau: float
    exact: dict[str, zt.OptimalLrSteps]
    runs: pd.DataFrame
    fits: cbfit.Fits
    ratios: dict[str, cbfit.Ratio]
    paired: dict[str, pd.DataFrame]
    oracle: pd.DataFrame
    seconds: float

    @property
    def batch_sizes(self) -> np.ndarray:
        """The batch sizes (the same for every curve)."""
        return self.exact["sgd"].batch_sizes

    @property
    def exact_b_crit(self) -> dict[str, float]:
        """The exact curves' critical batch sizes (20 % over perfect scaling from b = 1)."""
        steps = np.array([e.steps for e in self.exact.values()])
        crit = critical_batch_size_from_curve(self.batch_sizes, steps, OVERHEAD)
        return dict(zip(self.exact, np.asarray(crit).tolist(), strict=True))

    def critical_ratio(self, name: str) -> float:
        """Exact b_crit(name) / b_crit(sgd)."""
        return self.exact_b_crit[name] / self.exact_b_crit["sgd"]

    def small_batch_ratio(self, name: str) -> float:
        """Exact mean over b <= SMALL_B of K_name(b) / K_sgd(b)."""
        small = self.batch_sizes <= SMALL_B
        return float(np.mean(self.exact[name].steps[small] / self.exact["sgd"].steps[small]))

    @property
    def exact_raised(self) -> bool:
        """Momentum and preconditioning raise the exact b_crit by more than half."""
        return all(self.critical_ratio(n) > 1.5 for n in ("momentum", "precond"))

    @property
    def momentum_neutral_at_small_b(self) -> bool:
        """Exact momentum K(b) within 5 % of SGD's at small b."""
        return abs(self.small_batch_ratio("momentum") - 1.0) < 0.05


def oracle_checks(
    problem: cb.problems.Nqm, exact: dict[str, zt.OptimalLrSteps], n_seeds: int, seed: int
) -> pd.DataFrame:
    """The core's mean loss after the exact K(b) steps at the exact best lr, vs the exact loss.

    One cell at every other batch size of the exact SGD and momentum curves; a cell agrees when
    the two differ by at most 4 standard errors of the Monte Carlo mean (12 to 16 cells).
    """
    rows: list[tuple[Any, ...]] = []
    for name in ("sgd", "momentum"):
        e = exact[name]
        for b, lr, k in zip(e.batch_sizes[::2], e.best_lr[::2], e.steps[::2], strict=True):
            target = cb.targets.target(max_steps=int(k))
            res = cb.sweep(
                problem, CORE[name], [int(b)], [lr], n_seeds, target, seed=seed + len(rows)
            )
            loss = res["final_loss"]
            rows.append((name, b, lr, int(k), loss.mean(), loss.std(ddof=1) / np.sqrt(loss.size)))
    cells = pd.DataFrame(rows, columns=["optimizer", "b", "lr", "steps", "core_loss", "core_se"])
    cells["exact_loss"] = zt.nqm_expected_loss_at(
        problem.h,
        problem.c,
        problem.x0,
        cells["lr"],
        cells["b"],
        cells["steps"],
        momentum=np.where(cells["optimizer"] == "momentum", MOMENTUM, 0.0),
    )
    cells["agrees"] = (cells["core_loss"] - cells["exact_loss"]).abs() <= 4 * cells["core_se"]
    return cells


def run(reduced: bool = True, *, seed: int = 2019) -> NqmResult:
    """Compute the exact curves, run the core, fit and compare; check the core against the exact.

    Args:
        reduced: the small version used by the test (d = 50, b up to 2^11, 4 seeds, 60 paired
            resamples).
        seed: the sweep seed.

    Returns:
        An :class:`NqmResult`.

    """
    clock = time.perf_counter()
    dim = 50 if reduced else 100
    problem = make_problem(dim)
    tau = TARGET_FRACTION * 0.5 * float(problem.h @ problem.x0**2)
    bs = 2.0 ** np.arange(0, 12 if reduced else 15)
    h, c, x0 = problem.h, problem.c, problem.x0
    exact = {
        name: zt.optimal_lr_steps(h, c, x0, bs, lr_grid(name), tau, max_steps=200_000, **kw)
        for name, kw in EXACT.items()
    }
    target = cb.targets.target(
        loss_below=tau, max_steps=int(2 * exact["sgd"].steps[0]), divergence_factor=100.0
    )
    # one sweep per optimizer (each on its own grid), all with one seed and common random
    # numbers: the runs of one seed and batch size share their noise whatever the optimizer
    same: dict[str, Any] = {"target": target, "seed": seed, "common_random_numbers": True}
    same["seeds"] = 4 if reduced else 8
    sweeps = [cb.sweep(problem, o, bs.astype(int), lr_grid(n), **same) for n, o in CORE.items()]
    runs = pd.concat([s.to_pandas() for s in sweeps], ignore_index=True)
    # the inverse law, b* as the same 20 % overhead over perfect scaling from b = 1
    law: dict[str, Any] = {"model": "inverse", "critical": "overhead", "overhead": OVERHEAD}
    law["reference_batch"] = 1.0
    fits = cbfit.fit(runs, n_boot=0, by=["optimizer"], **law)
    n_boot = 60 if reduced else 300
    ratios = {
        n: cbfit.compare_critical(runs, n, "sgd", n_boot=n_boot, seed=seed, by=["optimizer"], **law)
        for n in ("momentum", "adam")
    }
    paired = {n: cbfit.compare_steps(runs, n, "sgd", by=["optimizer"]) for n in ratios}
    oracle = oracle_checks(problem, exact, 16 if reduced else 64, seed + 1000)
    return NqmResult(
        dim, tau, exact, runs, fits, ratios, paired, oracle, time.perf_counter() - clock
    )


def _iv(lo: float, hi: float) -> str:
    return f"[{lo:.3g}, {hi:.3g}]"


def report(result: NqmResult) -> str:
    """Return the verdict tables (Markdown) and the verdicts."""
    core = best_learning_rate(result.runs).pivot(
        index="batch_size", columns="optimizer", values="steps"
    )
    lines = [
        "## Zhang et al. 2019 (arXiv 1907.04164): the noisy quadratic model",
        f"d = {result.dim}, h_i = 1/i, c = h, x0 ~ N(0, I) (fixed), target: loss < "
        f"{result.tau:.4g} ({TARGET_FRACTION:.0%} of f(x0)); K(b) at the best learning rate per b",
        "",
        "| b | exact " + " | exact ".join(result.exact) + " | core " + " | core ".join(CORE) + " |",
        "|---:|" + "---:|" * (len(result.exact) + len(CORE)),
    ]
    for j, b in enumerate(result.batch_sizes):
        cells = [f"{e.steps[j]:g}" for e in result.exact.values()]
        cells += [f"{core.loc[b, n]:g}" for n in CORE]
        lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Core K(b): median over seeds of the first step whose sampled loss is below the target "
        "(earlier than the expected loss's crossing, by the fluctuations), so core and exact K "
        "differ at small b; each is compared with its own SGD.",
        "",
        f"b_crit: b K(b) {OVERHEAD:.0%} above perfect scaling from b = 1 (exact: on the curve)",
        "",
        f"| optimizer | exact b_crit | / SGD's | K/K_SGD at b <= {SMALL_B} |",
        "|---|---:|---:|---:|",
        *(
            f"| {n} | {result.exact_b_crit[n]:.4g} | {result.critical_ratio(n):.3g} | "
            f"{result.small_batch_ratio(n):.3f} |"
            for n in result.exact
        ),
        "",
        "Core: b_crit of the inverse law fitted at the best learning rate per b (same definition, "
        "95% profile interval; critbatch.fit.fit); over SGD's, paired over seeds with common "
        "random numbers: the b* ratio (critbatch.fit.compare_critical) and K/K_SGD at the best "
        "learning rates (compare_steps: ratio of geometric means, 95% interval)",
        "",
        "| optimizer | b_crit | status | b* / SGD's | profile | paired bootstrap | verdict on "
        f"'larger' | K/K_SGD at b = 1 | b = {SMALL_B} | b = {result.batch_sizes[-1]:g} |",
        "|---|---|---|---:|---|---|---|---|---|---|",
        f"| sgd | {result.fits['sgd'].critical_text()} | {result.fits['sgd'].status} |" + " |" * 7,
    ]
    for name, r in result.ratios.items():
        f, paired = result.fits[name], result.paired[name].set_index("batch_size")
        ks = [paired.loc[b] for b in (1.0, float(SMALL_B), result.batch_sizes[-1])]
        boot = _iv(*r.bootstrap_interval) if r.bootstrap_interval else r.bootstrap_note
        lines.append(
            f"| {name} | {f.critical_text()} | {f.status} | {r.estimate:.3g} | "
            f"{_iv(*r.interval)} | {boot} | {r.verdict('larger')} | "
            + " | ".join(f"{k['estimate']:.3g} {_iv(k['low'], k['high'])}" for k in ks)
            + " |"
        )
    lines += [
        "",
        "Oracle: core mean loss over seeds vs the exact expected loss, at the exact best lr and "
        "after the exact K(b) steps",
        "",
        "| optimizer | b | lr | steps | exact E loss | core mean loss | agrees (4 s.e.) |",
        "|---|---:|---:|---:|---:|---:|:---:|",
        *(
            f"| {c.optimizer} | {c.b:g} | {c.lr:.4g} | {c.steps} | {c.exact_loss:.5g} | "
            f"{c.core_loss:.5g} ± {c.core_se:.2g} | {'yes' if c.agrees else 'NO'} |"
            for c in result.oracle.itertuples()
        ),
        "",
        f"runtime {result.seconds:.1f} s",
        "",
        verdict(result),
    ]
    return "\n".join(lines)


def verdict(result: NqmResult) -> str:
    """The verdicts: the exact NQM, then the core's Monte Carlo."""
    mom_small, pre_small = result.small_batch_ratio("momentum"), result.small_batch_ratio("precond")
    exact = (
        "VERDICT (exact NQM): "
        + ("REPRODUCED" if result.exact_raised else "NOT REPRODUCED")
        + " that momentum and H^-1/2 preconditioning raise the critical batch size (b_crit "
        f"x{result.critical_ratio('momentum'):.2f} and x{result.critical_ratio('precond'):.2f} "
        f"over SGD's {result.exact_b_crit['sgd']:.3g}); momentum changes nothing at small b "
        f"(K/K_SGD = {mom_small:.3f}): "
        + ("REPRODUCED" if result.momentum_neutral_at_small_b else "NOT REPRODUCED")
        + f"; preconditioning at small b: K/K_SGD = {pre_small:.3f}, "
        + (
            "no change (reproduced)"
            if abs(pre_small - 1) < 0.05
            else "NOT 'nothing' in this NQM: a constant speed-up that keeps perfect scaling (the "
            "H^-1/2 rule shrinks the effective condition number at every b)"
        )
        + "."
    )
    ratios = [
        f"{n} {r.verdict('larger')} (ratio {r.estimate:.3g}, profile {_iv(*r.interval)}"
        + (f", paired bootstrap {_iv(*r.bootstrap_interval)}" if r.bootstrap_interval else "")
        + (f"; {'; '.join(r.reasons)}" if r.reasons else "")
        + ")"
        for n, r in result.ratios.items()
    ]
    core = (
        f"VERDICT (core Monte Carlo): the core matches the exact recurrences "
        f"({int(result.oracle['agrees'].sum())}/{len(result.oracle)} cells); b* larger than "
        "SGD's (compare_critical: 'supports' needs both fits sound and both intervals above 1, "
        "'inconclusive' when a b* is not identified or its law fits poorly): "
        + "; ".join(ratios)
        + "."
    )
    return exact + "\n" + core


def figure(result: NqmResult, out_dir: Path) -> Path:
    """Draw K(b) (exact lines, core markers) and K/K_SGD against b; return the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"sgd": "C0", "momentum": "C1", "precond": "C2", "adam": "C3"}
    labels = {"precond": "H^-1/2 precond.", "adam": "Adam (proxy)"}
    bs = result.batch_sizes
    core = best_learning_rate(result.runs).pivot(
        index="batch_size", columns="optimizer", values="steps"
    )
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    for name, curve in result.exact.items():
        label = f"exact {labels.get(name, name)}"
        ax1.plot(bs, curve.steps, "-", color=colors[name], label=label)
        ax1.axvline(result.exact_b_crit[name], color=colors[name], ls=":", lw=1)
        if name != "sgd":
            ax2.plot(
                bs, curve.steps / result.exact["sgd"].steps, "-", color=colors[name], label=label
            )
    for name in CORE:
        label = f"core {labels.get(name, name)}"
        ax1.plot(core.index, core[name], "o", mfc="none", color=colors[name], label=label)
        if name != "sgd":
            rows = result.paired[name]
            err = [rows["estimate"] - rows["low"], rows["high"] - rows["estimate"]]
            ax2.errorbar(
                rows["batch_size"],
                rows["estimate"],
                yerr=err,
                fmt="o--",
                mfc="none",
                color=colors[name],
                capsize=2,
                label=f"{label}, paired 95%",
            )
    sgd = result.exact["sgd"].steps
    ax1.plot(bs, sgd[0] * bs[0] / bs, "k--", lw=0.8, label="perfect scaling (SGD)")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="batch size b",
        ylabel="steps to target K(b)",
        title="K(b) at the best learning rate (dotted: exact b_crit)",
        ylim=(0.5 * np.nanmin(result.exact["precond"].steps), None),
    )
    ax2.axhline(1.0, color="k", lw=0.8)
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="batch size b",
        ylabel="K(b) / K_SGD(b)",
        title="relative to SGD",
    )
    for ax in (ax1, ax2):
        ax.legend(fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "zhang2019_nqm.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> NqmResult:
    return example_main(argv, __doc__.splitlines()[0], run, report, figure)


if __name__ == "__main__":
    main(sys.argv[1:])
