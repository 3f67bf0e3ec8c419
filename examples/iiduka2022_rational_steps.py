r"""Iiduka 2022: steps to an ε-stationary point are a rational function of the batch size.

Claim (arXiv 2108.11713, abstract; docs/theory/iiduka2022.md): for SGD, momentum and Adam at a
constant learning rate on a nonconvex L-smooth objective, the steps K(b) to an ε-approximation are
a rational function of b, a critical batch size b* minimizes the SFO complexity b·K(b), and
momentum and Adam have larger critical batch sizes than SGD.

What this script does, on a noisy quadratic model (``critbatch.problems.nqm``: curvatures
:math:`h_i = i^{-1/2}`, :math:`i = 1..64`, per-sample noise variances :math:`c_i = h_i`, a fixed
random start) with the gradient-norm target :math:`\|\nabla f(\theta_k)\| \le \varepsilon` checked
every step:

1. One sweep over batch sizes :math:`2^0..2^{12}`, a learning-rate grid and seeds, for SGD,
   heavy-ball momentum (μ = 0.9, torch's convention) and Adam (β = (0.9, 0.999)), with common
   random numbers: the three optimizers see the same gradient noise at each (b, η, seed).
2. At each constant learning rate (Iiduka's setting), the rational law
   :math:`K(b) = k_\infty b/(b - b_{\min})` is fitted with ``critbatch.fit.fit`` (runs that never
   reach the target are right-censored), giving :math:`b^\star = 2b_{\min}` with its
   profile-likelihood interval, per optimizer. The ordering claim is then tested directly on the
   ratio :math:`b^\star_{\text{momentum}}/b^\star_{\text{SGD}}` (and Adam's) with
   :func:`critbatch.fit.compare_critical`: its profile-likelihood interval and its bootstrap
   interval paired over the shared seeds must both exclude 1.
3. The same fit at the best learning rate per batch size (``tune_lr=True``), as the brief asks.
   There the smallest batches can lower η until they reach the target, so K(b) has no pole of
   its own: the fitted :math:`b_{\min}` is either pinned at the edge the fit allows (the smallest
   reached batch, when every batch reached; flagged ``pinned``) or sits where the grid's
   smallest learning rate stops reaching the target, a property of the grid.
4. Theory: the SGD critical batch size of
   :func:`critbatch.theory.iiduka2022.sgd_critical_batch_size`,
   :math:`b^\star = 2L\eta\sigma^2/((2 - L\eta)\varepsilon^2)`, with the NQM's exact constants
   :math:`L = \max_i h_i`, :math:`\sigma^2 = \sum_i c_i` (the variance of one sample's gradient)
   and :math:`\Delta = f(\theta_0)`. Between the bound and the measurement sits an exact oracle:
   :math:`\mathbb{E}\|\nabla f(\theta_k)\|^2` of constant-rate SGD on the NQM in closed form
   (Zhang et al. 2019's recurrence), whose first crossing of :math:`\varepsilon^2` gives
   :math:`K_{\mathbb{E}}(b)` and :math:`b^\star_{\mathbb{E}} = \arg\min_b b K_{\mathbb{E}}(b)`.
   The bound replaces :math:`\sum_i h_i c_i/(2 - \eta h_i)` by :math:`L\sigma^2/(2 - L\eta)`, and
   the measurement stops at the first step the *fluctuating* norm dips below ε (not its mean), so
   the bound's b* is expected to be an overestimate; the script reports by how much.

Run ``python examples/iiduka2022_rational_steps.py [--reduced] [--out DIR]``.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import critbatch as cb
from critbatch import fit as cbfit
from critbatch.theory import iiduka2022 as iid
from examples._main import example_main

DIM = 64
POWER = 0.5
EPS = 0.1
MOMENTUM = 0.9
OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class Constants:
    """The NQM's exact constants of the SGD bound (docs/theory/iiduka2022.md)."""

    L: float
    sigma2: float
    Delta: float
    eps: float


@dataclass(frozen=True)
class CriticalFit:
    """The rational law fitted to one optimizer's runs (at one learning rate, or the best per b).

    ``learning_rate`` is NaN for the best-learning-rate-per-b fit. ``pinned`` marks a fit whose
    status (:func:`critbatch.fit.fit`) is not ``"identified"``: its pole sits at a bound or b*
    lies off the grid, and ``b_star`` is then NaN (never a number the data do not pin down);
    ``status`` says which.
    """

    optimizer: str
    learning_rate: float
    b_star: float
    status: str
    interval: tuple[float, float]
    k_inf: float
    n_runs: int
    n_censored: int
    r2_log: float
    min_reached_batch: float
    pinned: bool


@dataclass(frozen=True)
class Comparison:
    """``optimizer``'s b* over SGD's at one learning rate (``nan``: best per b).

    From :func:`critbatch.fit.compare_critical`: the ratio, its profile-likelihood interval, its
    bootstrap interval paired over seeds, and :meth:`critbatch.fit.Ratio.verdict` on the claim
    "larger" (``"supports"`` needs both intervals above 1 and both fits identified).
    """

    optimizer: str
    learning_rate: float
    ratio: float
    interval: tuple[float, float]
    bootstrap_interval: tuple[float, float] | None
    verdict: str

    @property
    def supported(self) -> bool:
        """The ratio supports "larger than SGD's"."""
        return self.verdict == "supports"


@dataclass(frozen=True)
class IidukaResult:
    """All numbers of the example."""

    constants: Constants
    batch_sizes: tuple[int, ...]
    learning_rates: tuple[float, ...]
    n_seeds: int
    fixed_lr: tuple[CriticalFit, ...]
    best_lr: tuple[CriticalFit, ...]
    theory_b_star: dict[float, float]
    expected_b_star: dict[float, float]
    comparisons: tuple[Comparison, ...]
    results: cb.Results
    seconds: float

    def fixed(self, optimizer: str, lr: float) -> CriticalFit | None:
        """Return the constant-learning-rate fit of ``optimizer`` at ``lr`` (None if not fitted)."""
        for f in self.fixed_lr:
            if f.optimizer == optimizer and math.isclose(f.learning_rate, lr):
                return f
        return None

    @property
    def sgd_theory_ratios(self) -> dict[float, float]:
        """Theory b* over measured SGD b*, per learning rate with an unpinned SGD fit."""
        out = {}
        for lr, theory in self.theory_b_star.items():
            f = self.fixed("sgd", lr)
            if f is not None and not f.pinned and f.b_star > 0:
                out[lr] = theory / f.b_star
        return out

    @property
    def momentum_effective_ratios(self) -> dict[float, float]:
        """Momentum b* at lr over SGD b* at lr/(1 - mu) (equal effective steps), where both ran."""
        out = {}
        for f in self.fixed_lr:
            if f.optimizer != "momentum" or f.pinned:
                continue
            sgd = self.fixed("sgd", f.learning_rate / (1.0 - MOMENTUM))
            if sgd is not None and not sgd.pinned:
                out[f.learning_rate] = f.b_star / sgd.b_star
        return out

    def verdict(self) -> str:
        """Return the one-line verdict."""
        usable = [c for c in self.comparisons if not math.isnan(c.learning_rate)]
        larger = {o: sum(c.supported for c in usable if c.optimizer == o) for o in OPTIMIZERS[1:]}
        n = {o: sum(1 for c in usable if c.optimizer == o) for o in OPTIMIZERS[1:]}
        # "inconclusive": a b* is not identified (pinned), so that learning rate says nothing;
        # "cannot tell" and "contradicts" count against the claim
        against = sum(c.verdict in ("cannot tell", "contradicts") for c in usable)
        counts = {o: f"{larger[o]}/{n[o]}" for o in larger}
        ratios = list(self.sgd_theory_ratios.values())
        theory = (
            f"the bound's SGD b* exceeds the measured one by {min(ratios):.1f}-{max(ratios):.1f}x"
            if ratios
            else "no unpinned SGD fit to compare with"
        )
        ok = against == 0 and all(larger[o] > 0 for o in larger)
        inconclusive = sum(c.verdict == "inconclusive" for c in usable)
        eff = list(self.momentum_effective_ratios.values())
        effective = (
            f" (but momentum's b* at lr equals SGD's at lr/(1-mu) within a factor "
            f"{max(max(eff), 1 / min(eff)):.2f}: its larger b* is its larger effective "
            f"step)"
            if eff
            else ""
        )
        head = "REPRODUCED" if ok else "PARTLY REPRODUCED"
        return (
            f"VERDICT: {head} at constant learning rate on the NQM (d={DIM}, eps={EPS}): "
            f"compare_critical supports a larger b* than SGD's (profile and paired bootstrap "
            f"intervals of the ratio above 1) for momentum at {counts['momentum']} learning "
            f"rates, for Adam at {counts['adam']}, the other {inconclusive} comparisons "
            f"inconclusive (a b* not identified), {against} against{effective}; "
            f"{theory}; at the best learning rate "
            f"per b {sum(f.pinned for f in self.best_lr)}/{len(self.best_lr)} rational "
            f"poles are pinned to the grid edge and the others sit where the grid's smallest "
            f"learning rate stops reaching the target, so b* is not identified there."
        )


def make_problem(seed: int = 0) -> cb.problems.Nqm:
    """Build the NQM of the example: ``h_i = i^(-1/2)``, ``c = h``, a fixed random start."""
    h = np.arange(1, DIM + 1, dtype=float) ** (-POWER)
    x0 = np.random.default_rng(seed).standard_normal(DIM)
    return cb.problems.nqm(h, h, x0, name=f"nqm{DIM}")


def nqm_constants(problem: cb.problems.Nqm, eps: float = EPS) -> Constants:
    r"""Exact constants of the SGD bound for an NQM.

    :math:`L = \max_i h_i` (the Hessian is diag(h)), :math:`\sigma^2 = \sum_i c_i` (one sample's
    gradient noise is :math:`N(0, \mathrm{diag}(c))`), :math:`\Delta = f(x_0) - 0`.
    """
    return Constants(
        L=float(problem.h.max()),
        sigma2=float(problem.c.sum()),
        Delta=float(0.5 * np.sum(problem.h * problem.x0**2)),
        eps=eps,
    )


def expected_gradient_norm2(
    problem: cb.problems.Nqm, lr: float, batch_sizes: np.ndarray, max_steps: int
) -> np.ndarray:
    r"""Compute the exact :math:`\mathbb{E}\|\nabla f(x_k)\|^2` of constant-rate SGD on the NQM.

    Per coordinate :math:`\mathbb{E}x_k^2 = a^{2k}x_0^2 + (1 - a^{2k})\,u/b` with
    :math:`a = 1 - \eta h`, :math:`u = \eta c/(h(2 - \eta h))` (Zhang et al. 2019's recurrence
    :math:`\mathbb{E}x_{k+1}^2 = a^2\mathbb{E}x_k^2 + \eta^2 c/b` summed), and
    :math:`\mathbb{E}\|\nabla f\|^2 = \sum_i h_i^2 \mathbb{E}x_{k,i}^2`.

    Returns:
        Array of shape ``(max_steps + 1, len(batch_sizes))``.

    """
    h, c, x0 = problem.h, problem.c, problem.x0
    decay = (1.0 - lr * h) ** (2.0 * np.arange(max_steps + 1, dtype=float)[:, None])
    u = lr * c / (h * (2.0 - lr * h))
    transient = (decay * h**2) @ (x0**2)
    noise = (1.0 - decay) @ (h**2 * u)
    return transient[:, None] + noise[:, None] / np.asarray(batch_sizes, float)[None, :]


def expected_critical_batch(
    problem: cb.problems.Nqm, lr: float, eps: float, max_steps: int
) -> float:
    r"""Return the b minimizing :math:`b K_{\mathbb{E}}(b)` over a fine geometric grid of real b.

    :math:`K_{\mathbb{E}}(b)` is the first k with :math:`\mathbb{E}\|\nabla f(x_k)\|^2 \le
    \varepsilon^2` (:func:`expected_gradient_norm2`); ``inf`` when no b reaches it.
    """
    grid = np.geomspace(0.25, 2.0**16, 240)
    below = expected_gradient_norm2(problem, lr, grid, max_steps) <= eps * eps
    steps = np.where(below.any(axis=0), below.argmax(axis=0), np.inf)
    cost = grid * steps
    return float(grid[int(np.argmin(cost))]) if np.isfinite(cost).any() else math.inf


def _critical_fit(optimizer: str, lr: float, fit: cbfit.FitResult) -> CriticalFit:
    reached_b = fit.batch_size[~fit.censored]
    min_b = float(reached_b.min()) if reached_b.size else math.nan
    # "pinned": the fit's status is not "identified" (the pole sits at a bound, or b* lies off
    # the grid): the fit's own identifiability check, critbatch.fit.fit
    pinned = fit.status != "identified"
    iv = fit.interval
    return CriticalFit(
        optimizer=optimizer,
        learning_rate=lr,
        b_star=fit.critical_batch_size,
        status=fit.status,
        interval=(float(iv[0]), float(iv[1])),
        k_inf=fit.params["k_inf"],
        n_runs=fit.n_runs,
        n_censored=fit.n_censored,
        r2_log=fit.r2_log,
        min_reached_batch=min_b,
        pinned=pinned,
    )


def _compare(
    runs: Any, learning_rate: float, n_boot: int, seed: int, **options: Any
) -> list[Comparison]:
    """Momentum's and Adam's b* over SGD's, with :func:`critbatch.fit.compare_critical`."""
    out = []
    for opt in OPTIMIZERS[1:]:
        ratio = cbfit.compare_critical(
            runs,
            opt,
            "sgd",
            model="rational",
            n_boot=n_boot,
            seed=seed,
            by=["optimizer"],
            **options,
        )
        out.append(
            Comparison(
                optimizer=opt,
                learning_rate=learning_rate,
                ratio=ratio.estimate,
                interval=ratio.interval,
                bootstrap_interval=ratio.bootstrap_interval,
                verdict=ratio.verdict("larger"),
            )
        )
    return out


def run(
    *, reduced: bool = False, seed: int = 0, n_boot: int | None = None, threads: int | None = None
) -> IidukaResult:
    """Run the sweep, the fits and the theory; return the numbers.

    Args:
        reduced: the small version (4 learning rates, 4 seeds, 60 bootstrap resamples).
        seed: the sweep seed.
        n_boot: paired bootstrap resamples per ratio of b* (default 60 reduced, 300 full).
        threads: core threads (default all).

    Returns:
        An :class:`IidukaResult`.

    """
    start = time.perf_counter()
    problem = make_problem()
    const = nqm_constants(problem)
    batch_sizes = tuple(2**k for k in range(13))
    lrs = (
        (0.01, 0.03, 0.1, 0.3)
        if reduced
        else (0.003, 0.01, 0.02, 0.03, 0.06, 0.1, 0.2, 0.3, 0.6, 1.0)
    )
    n_seeds = 4 if reduced else 8
    n_boot = (60 if reduced else 300) if n_boot is None else n_boot
    max_steps = 20_000
    optimizers = [
        cb.optimizers.sgd(),
        cb.optimizers.heavy_ball(MOMENTUM, name="momentum"),
        cb.optimizers.adam(),
    ]
    target = cb.targets.target(grad_norm_below=EPS, max_steps=max_steps)
    results = cb.sweep(
        problem,
        optimizers,
        list(batch_sizes),
        list(lrs),
        n_seeds,
        target,
        seed=seed,
        threads=threads,
        common_random_numbers=True,
    )
    df = results.to_pandas()
    fixed, comparisons = [], []
    for lr, at_lr in df.groupby("learning_rate", sort=True):
        runs = at_lr.drop(columns=["learning_rate"])
        fitted = set()
        for opt, part in runs.groupby("optimizer", sort=True):
            if part.loc[part["reached"], "batch_size"].nunique() < 3:
                continue  # two parameters and a noise scale need three reached batch sizes
            # the profile-likelihood interval; the seeds are resampled in compare_critical
            fit = cbfit.fit(part, "rational", n_boot=0, seed=seed).item()
            fixed.append(_critical_fit(str(opt), float(lr), fit))
            fitted.add(str(opt))
        if set(OPTIMIZERS) <= fitted:
            comparisons += _compare(runs, float(lr), n_boot, seed)
    best = [
        _critical_fit(key[0], math.nan, f)
        for key, f in cbfit.fit(
            results, "rational", tune_lr=True, n_boot=0, seed=seed, by=["optimizer"]
        ).items()
    ]
    theory = {lr: iid.sgd_critical_batch_size(const.L, const.sigma2, lr, EPS) for lr in lrs}
    expected = {lr: expected_critical_batch(problem, lr, EPS, max_steps) for lr in lrs}
    # at the best learning rate per b the poles are pinned (inconclusive by the fits' status):
    # the profile interval only, without the paired bootstrap's refits
    comparisons += _compare(results, math.nan, 0, seed, tune_lr=True)
    return IidukaResult(
        constants=const,
        batch_sizes=batch_sizes,
        learning_rates=lrs,
        n_seeds=n_seeds,
        fixed_lr=tuple(fixed),
        best_lr=tuple(best),
        theory_b_star=theory,
        expected_b_star=expected,
        comparisons=tuple(comparisons),
        results=results,
        seconds=time.perf_counter() - start,
    )


def _b_star(f: CriticalFit) -> str:
    """b* as the table prints it: a value when identified, else the status."""
    return f"{f.b_star:.4g}" if f.status == "identified" else f.status.replace("_", " ")


def table(result: IidukaResult) -> str:
    """Return the verdict table as Markdown."""
    c = result.constants
    lines = [
        f"NQM d={DIM}, h_i = i^-{POWER}, c = h; exact constants L = {c.L:g}, "
        f"sigma^2 = {c.sigma2:.4g}, Delta = {c.Delta:.4g}, eps = {c.eps:g}; batch sizes "
        f"{result.batch_sizes[0]}..{result.batch_sizes[-1]}, {result.n_seeds} seeds",
        "",
        "| optimizer | lr | b* fitted | 95% interval | k_inf | censored/runs | R2(log K) | pinned "
        "| SGD b* (bound) | SGD b* (exact E) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(
        result.fixed_lr, key=lambda f: (f.learning_rate, OPTIMIZERS.index(f.optimizer))
    ):
        th = result.theory_b_star.get(f.learning_rate, math.nan) if f.optimizer == "sgd" else None
        ex = result.expected_b_star.get(f.learning_rate, math.nan) if f.optimizer == "sgd" else None
        lines.append(
            f"| {f.optimizer} | {f.learning_rate:g} | {_b_star(f)} | [{f.interval[0]:.4g}, "
            f"{f.interval[1]:.4g}] | {f.k_inf:.4g} | {f.n_censored}/{f.n_runs} | {f.r2_log:.3f} | "
            f"{'yes' if f.pinned else 'no'} | {'' if th is None else f'{th:.4g}'} | "
            f"{'' if ex is None else f'{ex:.4g}'} |"
        )
    for f in result.best_lr:
        lines.append(
            f"| {f.optimizer} | best per b | {_b_star(f)} | [{f.interval[0]:.4g}, "
            f"{f.interval[1]:.4g}] | {f.k_inf:.4g} | {f.n_censored}/{f.n_runs} | {f.r2_log:.3f} | "
            f"{'yes' if f.pinned else 'no'} | | |"
        )
    lines += [
        "",
        "| optimizer vs SGD | lr | b* ratio | profile 95% interval | paired bootstrap "
        "95% interval | verdict on 'larger' |",
        "|---|---|---|---|---|---|",
    ]
    for cmp in result.comparisons:
        lr = "best per b" if math.isnan(cmp.learning_rate) else f"{cmp.learning_rate:g}"
        boot = (
            "none"
            if cmp.bootstrap_interval is None
            else f"[{cmp.bootstrap_interval[0]:.3g}, {cmp.bootstrap_interval[1]:.3g}]"
        )
        lines.append(
            f"| {cmp.optimizer} | {lr} | {cmp.ratio:.3g} | [{cmp.interval[0]:.3g}, "
            f"{cmp.interval[1]:.3g}] | {boot} | {cmp.verdict} |"
        )
    eff = result.momentum_effective_ratios
    if eff:
        lines += [
            "",
            "momentum b*(lr) / SGD b*(lr/(1-mu)): "
            + ", ".join(f"lr {lr:g}: {r:.3g}" for lr, r in eff.items()),
        ]
    ratios = result.sgd_theory_ratios
    if ratios:
        lines += [
            "",
            "bound b* / measured SGD b*: "
            + ", ".join(f"lr {lr:g}: {r:.3g}" for lr, r in ratios.items()),
        ]
    return "\n".join(lines)


def figure(result: IidukaResult, path: Path) -> None:
    """Write K(b) at one learning rate and b*(lr) per optimizer to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = result.results.to_pandas()
    colours = dict(zip(OPTIMIZERS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    fig, (ax_k, ax_b) = plt.subplots(1, 2, figsize=(12, 4.6))
    lr_show = min(result.learning_rates, key=lambda lr: abs(math.log(lr / 0.1)))
    grid = np.geomspace(1, max(result.batch_sizes), 300)
    for opt in OPTIMIZERS:
        part = df[(df["optimizer"] == opt) & np.isclose(df["learning_rate"], lr_show)]
        med = (
            part.assign(k=np.where(part["reached"], part["steps"], np.nan))
            .groupby("batch_size")["k"]
            .median()
        )
        ax_k.plot(med.index, med.to_numpy(), "o", color=colours[opt], label=f"{opt} (median)")
        f = result.fixed(opt, lr_show)
        if f is not None:
            b_min = f.b_star / 2
            curve = np.where(
                grid > b_min, f.k_inf * grid / np.maximum(grid - b_min, 1e-300), np.nan
            )
            ax_k.plot(
                grid,
                curve,
                "-",
                color=colours[opt],
                lw=1.2,
                label=f"{opt}: rational fit, b*={f.b_star:.3g}",
            )
        fits = sorted(
            (f for f in result.fixed_lr if f.optimizer == opt), key=lambda f: f.learning_rate
        )
        if fits:
            lr = np.array([f.learning_rate for f in fits])
            bstar = np.array([f.b_star for f in fits])
            err = np.array([[f.b_star - f.interval[0], f.interval[1] - f.b_star] for f in fits]).T
            face = ["none" if f.pinned else colours[opt] for f in fits]
            ax_b.errorbar(
                lr, bstar, yerr=np.maximum(err, 0), fmt="none", ecolor=colours[opt], capsize=3
            )
            ax_b.scatter(
                lr,
                bstar,
                edgecolors=colours[opt],
                facecolors=face,
                zorder=3,
                label=f"{opt} (fitted; hollow: pinned)",
            )
    lrs = np.array(sorted(result.theory_b_star))
    ax_b.plot(
        lrs,
        [result.theory_b_star[x] for x in lrs],
        "k--",
        label="SGD bound b* = 2 L lr sigma2/((2 - L lr) eps^2)",
    )
    ax_b.plot(
        lrs, [result.expected_b_star[x] for x in lrs], "k:", label="SGD exact E‖∇f‖² ≤ ε² (oracle)"
    )
    ax_k.set(
        xscale="log",
        yscale="log",
        xlabel="batch size b",
        ylabel="steps to ‖∇f‖ ≤ ε",
        title=f"K(b) at constant lr = {lr_show:g} (missing: median not reached)",
    )
    ax_b.set(
        xscale="log",
        yscale="log",
        xlabel="learning rate η",
        ylabel="critical batch b*",
        title="b* = 2 b_min of the rational fit, 95% profile-likelihood interval",
    )
    for ax in (ax_k, ax_b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Iiduka 2022 on the NQM: rational K(b) and critical batch sizes", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(result: IidukaResult) -> str:
    return f"{table(result)}\n\n({result.seconds:.1f} s)\n{result.verdict()}"


def _figure(result: IidukaResult, out: Path) -> Path:
    path = out / "iiduka2022_rational_steps.png"
    figure(result, path)
    return path


def main(argv: list[str] | None = None) -> IidukaResult:
    return example_main(argv, __doc__.splitlines()[0], run, _report, _figure)


if __name__ == "__main__":
    main(sys.argv[1:])
