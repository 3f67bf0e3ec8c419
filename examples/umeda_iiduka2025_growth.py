r"""Umeda & Iiduka 2025: growing the batch size (and learning rate) lowers the SFO to a target.

Claim (arXiv 2508.05297, abstract; docs/theory/umeda_iiduka2025.md): batch-size and learning-rate
growth schedules derived from an SFO-complexity bound reach an ε-stationary point with fewer
stochastic gradient evaluations (SFO) than constant batches and than naive growth.

What this script does, on a noisy quadratic model (``critbatch.problems.nqm``: :math:`h_i =
i^{-1/2}`, :math:`i = 1..64`, :math:`c_i = h_i`, a fixed random start), plain SGD, target
:math:`\|\nabla f\| \le \varepsilon` checked every step, starting batch :math:`b_0` and rate
:math:`\eta_0`, caps :math:`b_{\max}` and :math:`\eta_{\max} < 2/L`:

1. The derived schedule: :func:`critbatch.theory.umeda_iiduka2025.optimize_growth_schedule`
   searches (delta, gamma, stage length) for the least SFO under the reconstructed bound
   :math:`[2\Delta + L\sigma^2\sum_t\eta_t^2/b_t]/[(2 - L\eta_{\max})\sum_t\eta_t] \le
   \varepsilon^2` (docs/theory/umeda_iiduka2025.md, [derived]; our optimization of a reconstructed
   bound, not the paper's result), with the NQM's exact constants :math:`L = \max h`,
   :math:`\sigma^2 = \sum c`, :math:`\Delta = f(x_0)`.
2. A calibrated variant (ours, labelled as such): the same search with
   :math:`\sigma^2_{\text{eff}} = \sum_i h_i c_i / L` in place of :math:`\sigma^2`, the value for
   which :math:`L\sigma^2` equals the noise coefficient of the NQM's exact stationary
   :math:`\mathbb{E}\|\nabla f\|^2 \approx (\eta/b)\sum_i h_i c_i/(2 - \eta h_i)`; the plain
   bound over-counts the noise by :math:`L\sum c/\sum hc` (about 3 here).
3. Baselines at the same :math:`b_0, \eta_0`: the linear scaling rule (gamma = delta of the derived
   schedule, rate capped at :math:`\eta_{\max}`), linear batch growth
   :math:`b_0(1 + m)` with the derived gamma and stage length, and the authors' default
   (delta = 2, gamma = 1.4) at the derived stage length; and constant batches: :math:`b_0` at
   :math:`\eta_0`, and the best constant (b, lr) of a grid (the bound itself says that no growth
   schedule beats the best constant batch, see :mod:`critbatch.theory.umeda_iiduka2025`).
4. Every schedule runs in the Rust core (``critbatch.schedules.geometric`` /
   ``linear`` with ``max_batch_size``) over many seeds with common random numbers (the
   schedules of one seed share their gradient noise); the SFO (``sfo`` column) is compared by
   its median with a 95 % bootstrap interval over seeds, and by the paired ratio of SFO to
   target per seed (:func:`critbatch.fit.compare_steps`).
5. The equal-SFO comparison: every schedule runs again under the SFO budget
   ``target(max_sfo=B)``, B the calibrated schedule's median SFO to the target, so all stop at
   the same SFO to within one batch; the gradient norms they end at are compared in paired
   ratios over the shared noise.

Run ``python examples/umeda_iiduka2025_growth.py [--reduced] [--out DIR]``.
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
from critbatch.fit import compare_steps
from critbatch.theory import umeda_iiduka2025 as ui
from examples._main import example_main

DIM = 64
POWER = 0.5
EPS = 0.1
B0 = 4
ETA0 = 0.1
ETA_MAX = 1.0
B_MAX = 4096
N_STAGES = 30
MAX_STEPS = 20_000
DELTAS = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
GAMMAS = (1.0, 1.1, 1.2, 1.4, 1.7, 2.0, 3.0)
STAGE_STEPS = (5, 10, 20, 50, 100, 200, 500)
CONSTANT_BATCHES = (4, 8, 16, 32, 64, 128, 256, 1024, 4096)
CONSTANT_LRS = (0.1, 0.3, 1.0)


@dataclass(frozen=True)
class ScheduleResult:
    """One schedule's measured SFO to the target over seeds, and what the bound predicts."""

    name: str
    delta: float
    gamma: float
    stage_steps: int
    batch_rule: str
    median_sfo: float
    interval: tuple[float, float]
    reached: float
    median_steps: float
    bound_sfo: float


@dataclass(frozen=True)
class Paired:
    """A paired ratio (calibrated over another schedule) and its 95 % interval over seeds."""

    other: str
    estimate: float
    interval: tuple[float, float]
    n: int

    @property
    def below_one(self) -> bool:
        """The interval lies below 1: the calibrated schedule needs (or ends with) less."""
        return self.interval[1] < 1.0


@dataclass(frozen=True)
class GrowthResult:
    """All numbers of the example."""

    L: float
    sigma2: float
    sigma2_eff: float
    Delta: float
    derived: ui.GrowthOptimum
    calibrated: ui.GrowthOptimum
    schedules: tuple[ScheduleResult, ...]
    best_constant: ScheduleResult
    n_seeds: int
    seconds: float
    paired_sfo: tuple[Paired, ...] = ()
    equal_sfo_budget: int = 0
    equal_sfo_spread: int = 0
    equal_sfo_grad_norm: dict[str, float] | None = None
    paired_grad_norm: tuple[Paired, ...] = ()

    def get(self, name: str) -> ScheduleResult:
        """Return the schedule named ``name``."""
        return next(s for s in (*self.schedules, self.best_constant) if s.name == name)

    def beats(self, a: str, b: str) -> bool:
        """Whether schedule ``a`` needs fewer samples than ``b`` with separated intervals."""
        sa, sb = self.get(a), self.get(b)
        return sa.interval[1] < sb.interval[0]

    def verdict(self) -> str:
        """Return the one-line verdict."""
        naive = ("lsr", "linear", "authors_default", "constant_b0")
        parts = []
        for name in ("derived", "calibrated"):
            won = [n for n in naive if self.beats(name, n)]
            lost = [n for n in (*naive, "best_constant") if self.beats(n, name)]
            parts.append(
                f"{name} beats {len(won)}/{len(naive)} naive/constant-b0 schedules"
                + (f", loses to {', '.join(lost)}" if lost else "")
                + (", beats the best constant batch" if self.beats(name, "best_constant") else "")
            )
        exact_ok = all(self.beats("derived", n) for n in naive)
        calib_ok = all(self.beats("calibrated", n) for n in naive)
        head = (
            "REPRODUCED"
            if exact_ok
            else "REPRODUCED ONLY WITH THE CALIBRATED NOISE CONSTANT"
            if calib_ok
            else "NOT REPRODUCED"
        )
        if not any(self.beats(n, "best_constant") for n in ("derived", "calibrated")):
            parts.append(
                "no derived schedule beats the best constant batch of the grid "
                f"({self.best_constant.batch_rule}) with separated intervals, as the "
                "bound itself predicts"
            )
        if self.paired_grad_norm:
            won = [p.other for p in self.paired_grad_norm if p.below_one]
            parts.append(
                f"at an equal SFO budget ({self.equal_sfo_budget}) calibrated ends "
                f"with a smaller gradient norm than {len(won)}/"
                f"{len(self.paired_grad_norm)} naive schedules (paired intervals)"
            )
        return (
            f"VERDICT: {head} (NQM d={DIM}, eps={EPS}, b0={B0}, eta0={ETA0}, "
            f"{self.n_seeds} seeds, median SFO with 95% bootstrap intervals): "
            + "; ".join(parts)
            + "."
        )


def make_problem(seed: int = 0) -> cb.problems.Nqm:
    """Build the NQM of the example: ``h_i = i^(-1/2)``, ``c = h``, a fixed random start."""
    h = np.arange(1, DIM + 1, dtype=float) ** (-POWER)
    return cb.problems.nqm(h, h, np.random.default_rng(seed).standard_normal(DIM), name=f"nqm{DIM}")


def median_interval(
    values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, tuple[float, float]]:
    """Return the median and its percentile bootstrap interval (``inf`` entries stay ``inf``)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.median(rng.choice(values, size=(n_boot, values.size), replace=True), axis=1)
    # order statistics without interpolation, so that infinite medians stay infinite (not nan)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(np.median(values)), (float(low), float(high))


def _schedule(
    name: str, delta: float, gamma: float, every: int, *, linear: bool = False
) -> cb.schedules.Schedule:
    s = cb.schedules
    batch = (
        s.linear(every, delta, max_factor=B_MAX / B0)
        if linear
        else s.geometric(every, delta, max_factor=B_MAX / B0)
    )
    return s.schedule(
        s.geometric(every, gamma, max_factor=ETA_MAX / ETA0), batch, max_batch_size=B_MAX, name=name
    )


def _stage_arrays(delta: float, gamma: float, *, linear: bool) -> tuple[np.ndarray, np.ndarray]:
    if linear:
        bs = ui.linear_batch_schedule(B0, delta * B0, N_STAGES, B_MAX)
    else:
        bs = ui.batch_schedule(B0, delta, N_STAGES, B_MAX)
    return bs, ui.lr_schedule(ETA0, gamma, N_STAGES, ETA_MAX)


def run(*, reduced: bool = False, seed: int = 0, threads: int | None = None) -> GrowthResult:
    """Optimize the schedules under the bound, run them and the baselines, return the numbers.

    Args:
        reduced: the small version (24 seeds instead of 64).
        seed: the sweep seed.
        threads: core threads (default all).

    Returns:
        A :class:`GrowthResult`.

    """
    start = time.perf_counter()
    problem = make_problem()
    L, sigma2 = float(problem.h.max()), float(problem.c.sum())
    sigma2_eff = float(np.sum(problem.h * problem.c)) / L
    Delta = float(0.5 * np.sum(problem.h * problem.x0**2))
    search = dict(
        batch_size0=B0,
        eta0=ETA0,
        batch_size_max=B_MAX,
        eta_max=ETA_MAX,
        L=L,
        Delta=Delta,
        eps=EPS,
        deltas=DELTAS,
        gammas=GAMMAS,
        stage_steps=STAGE_STEPS,
        n_stages=N_STAGES,
    )
    derived = ui.optimize_growth_schedule(sigma2=sigma2, **search)
    calibrated = ui.optimize_growth_schedule(sigma2=sigma2_eff, **search)
    k = calibrated.stage_steps
    # (name, delta or increment/b0, gamma, stage length, linear?)
    specs = [
        ("derived", derived.delta, derived.gamma, derived.stage_steps, False),
        ("calibrated", calibrated.delta, calibrated.gamma, k, False),
        ("lsr", calibrated.delta, calibrated.delta, k, False),
        ("linear", 1.0, calibrated.gamma, k, True),
        ("authors_default", 2.0, 1.4, k, False),
        ("constant_b0", 1.0, 1.0, k, False),
    ]
    n_seeds = 24 if reduced else 64
    target = cb.targets.target(grad_norm_below=EPS, max_steps=MAX_STEPS)
    scheds = [_schedule(n, d, g, e, linear=lin) for n, d, g, e, lin in specs]
    # common random numbers: the schedules of one seed share their noise (paired comparisons)
    grown = cb.sweep(
        problem,
        "sgd",
        [B0],
        [ETA0],
        n_seeds,
        target,
        schedules=scheds,
        seed=seed,
        threads=threads,
        common_random_numbers=True,
    ).to_pandas()
    const = cb.sweep(
        problem,
        "sgd",
        list(CONSTANT_BATCHES),
        list(CONSTANT_LRS),
        n_seeds,
        target,
        seed=seed + 1,
        threads=threads,
    ).to_pandas()
    bound_consts = dict(L=L, sigma2=sigma2, Delta=Delta, eps=EPS)
    rows = []
    for name, delta, gamma, every, lin in specs:
        part = grown[grown["schedule"] == name]
        sfo = np.where(part["reached"], part["sfo"], np.inf)
        med, iv = median_interval(sfo, seed=seed)
        bs, etas = _stage_arrays(delta, gamma, linear=lin)
        bound = ui.schedule_cost(bs, etas, every, **bound_consts).sfo
        rows.append(
            ScheduleResult(
                name=name,
                delta=delta,
                gamma=gamma,
                stage_steps=every,
                batch_rule="linear" if lin else "geometric",
                median_sfo=med,
                interval=iv,
                reached=float(part["reached"].mean()),
                median_steps=float(np.median(np.where(part["reached"], part["steps"], np.inf))),
                bound_sfo=bound,
            )
        )
    const["sfo_reached"] = np.where(const["reached"], const["sfo"], np.inf)
    medians = const.groupby(["batch_size", "learning_rate"])["sfo_reached"].median()
    b_best, lr_best = medians.idxmin()
    part = const[(const["batch_size"] == b_best) & (const["learning_rate"] == lr_best)]
    med, iv = median_interval(part["sfo_reached"].to_numpy(), seed=seed)
    best_constant = ScheduleResult(
        name="best_constant",
        delta=1.0,
        gamma=1.0,
        stage_steps=0,
        batch_rule=f"constant b={b_best}, lr={lr_best:g}",
        median_sfo=med,
        interval=iv,
        reached=float(part["reached"].mean()),
        median_steps=float(np.median(np.where(part["reached"], part["steps"], np.inf))),
        bound_sfo=ui.schedule_cost(
            [b_best], [lr_best], 1, L=L, sigma2=sigma2, Delta=Delta, eps=EPS
        ).sfo,
    )
    naive = ("lsr", "linear", "authors_default", "constant_b0")
    paired_sfo = tuple(_paired(grown, name, "sfo") for name in naive)
    # Equal SFO: every schedule stops before the step that would pass the budget
    budget = int(rows[1].median_sfo) if math.isfinite(rows[1].median_sfo) else 4 * B_MAX
    equal = cb.sweep(
        problem,
        "sgd",
        [B0],
        [ETA0],
        n_seeds,
        cb.targets.target(max_sfo=budget, max_steps=MAX_STEPS, check_every=MAX_STEPS),
        schedules=scheds,
        seed=seed,
        threads=threads,
        common_random_numbers=True,
    ).to_pandas()
    grad_norm = {
        n: float(equal.loc[equal["schedule"] == n, "final_grad_norm"].median()) for n, *_ in specs
    }
    return GrowthResult(
        L=L,
        sigma2=sigma2,
        sigma2_eff=sigma2_eff,
        Delta=Delta,
        derived=derived,
        calibrated=calibrated,
        schedules=tuple(rows),
        best_constant=best_constant,
        n_seeds=n_seeds,
        seconds=time.perf_counter() - start,
        paired_sfo=paired_sfo,
        equal_sfo_budget=budget,
        equal_sfo_spread=int(equal["sfo"].max() - equal["sfo"].min()),
        equal_sfo_grad_norm=grad_norm,
        paired_grad_norm=tuple(_paired(equal, n, "final_grad_norm") for n in naive),
    )


def _paired(runs: Any, other: str, response: str) -> Paired:
    """The calibrated schedule over ``other``: ratio of geometric means, paired by seed."""
    row = compare_steps(runs, "calibrated", other, by=["schedule"], response=response).iloc[0]
    return Paired(
        other, float(row["estimate"]), (float(row["low"]), float(row["high"])), int(row["n"])
    )


def table(result: GrowthResult) -> str:
    """Return the verdict table as Markdown."""
    lines = [
        f"NQM d={DIM}: L = {result.L:g}, sigma^2 = {result.sigma2:.4g} (calibrated "
        f"{result.sigma2_eff:.4g}), Delta = {result.Delta:.4g}, eps = {EPS:g}; b0 = {B0}, "
        f"eta0 = {ETA0:g}, b_max = {B_MAX}, eta_max = {ETA_MAX:g}; {result.n_seeds} seeds",
        "",
        "| schedule | batch rule | delta | gamma | stage steps | median SFO | 95% interval | "
        "reached | median steps | bound's SFO (exact constants) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in (*result.schedules, result.best_constant):
        lines.append(
            f"| {s.name} | {s.batch_rule} | {s.delta:g} | {s.gamma:g} | {s.stage_steps} | "
            f"{s.median_sfo:.5g} | [{s.interval[0]:.5g}, {s.interval[1]:.5g}] | "
            f"{s.reached:.2f} | {s.median_steps:.4g} | {s.bound_sfo:.4g} |"
        )
    if result.paired_sfo:
        lines += [
            "",
            "Paired over seeds (common random numbers): calibrated / other, ratio of "
            "geometric means with its 95% interval",
            "",
            "| other | SFO to target | pairs | gradient norm at equal SFO "
            f"{result.equal_sfo_budget} | pairs |",
            "|---|---|---|---|---|",
        ]
        for a, g in zip(result.paired_sfo, result.paired_grad_norm, strict=True):
            lines.append(f"| {a.other} | {_ratio_text(a)} | {a.n} | {_ratio_text(g)} | {g.n} |")
        lines.append(
            f"(at the equal SFO budget all runs stopped within "
            f"{result.equal_sfo_spread} samples of each other)"
        )
    return "\n".join(lines)


def _ratio_text(p: Paired) -> str:
    if p.n == 0:
        return "none reached"
    return f"{p.estimate:.3g} [{p.interval[0]:.3g}, {p.interval[1]:.3g}]"


def figure(result: GrowthResult, path: Path) -> None:
    """Write the SFO per schedule and the batch-size paths to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (*result.schedules, result.best_constant)
    fig, (ax_s, ax_b) = plt.subplots(1, 2, figsize=(12, 4.6))
    y = np.arange(len(rows))
    cap = 10 * max(s.interval[1] for s in rows if math.isfinite(s.interval[1]))
    med = np.array([min(s.median_sfo, cap) for s in rows])
    low = np.array([min(s.interval[0], cap) for s in rows])
    high = np.array([min(s.interval[1], cap) for s in rows])
    colours = ["tab:red" if s.name in ("derived", "calibrated") else "tab:grey" for s in rows]
    ax_s.errorbar(med, y, xerr=[med - low, high - med], fmt="none", ecolor="k", capsize=3)
    ax_s.scatter(med, y, c=colours, zorder=3)
    ax_s.set_yticks(
        y, [f"{s.name}" + ("" if math.isfinite(s.median_sfo) else " (not reached)") for s in rows]
    )
    ax_s.set(
        xscale="log",
        xlabel="SFO to ‖∇f‖ ≤ ε (median, 95% bootstrap interval)",
        title="stochastic gradients to the target",
    )
    ax_s.grid(alpha=0.3)
    steps = np.arange(0, 400)
    for s in result.schedules:
        if s.stage_steps == 0:
            continue
        m = steps // s.stage_steps
        if s.batch_rule == "linear":
            b = np.minimum(np.ceil(B0 * (1 + s.delta * m)), B_MAX)
        else:
            b = np.minimum(np.ceil(B0 * np.minimum(s.delta**m, B_MAX / B0)), B_MAX)
        style = {"ls": "--", "lw": 2.2} if s.name == "calibrated" else {"lw": 1.2}
        ax_b.step(steps, b, where="post", label=s.name, **style)
    ax_b.axhline(
        result.best_constant.median_sfo / max(result.best_constant.median_steps, 1),
        color="k",
        ls=":",
        label=f"best constant ({result.best_constant.batch_rule})",
    )
    ax_b.set(yscale="log", xlabel="step", ylabel="batch size", title="batch-size schedules")
    ax_b.legend(fontsize=7)
    ax_b.grid(alpha=0.3)
    fig.suptitle("Umeda & Iiduka 2025 on the NQM: growth schedules against baselines", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _report(result: GrowthResult) -> str:
    return f"{table(result)}\n\n({result.seconds:.1f} s)\n{result.verdict()}"


def _figure(result: GrowthResult, out: Path) -> Path:
    path = out / "umeda_iiduka2025_growth.png"
    figure(result, path)
    return path


def main(argv: list[str] | None = None) -> GrowthResult:
    return example_main(argv, __doc__.splitlines()[0], run, _report, _figure)


if __name__ == "__main__":
    main(sys.argv[1:])
