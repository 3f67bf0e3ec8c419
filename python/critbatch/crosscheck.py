r"""Run one plan on two backends and set their K(b) curves and critical batch sizes side by side.

For every group of runs (problem, optimizer, schedule, learning rate) and every batch size
:math:`b`, each backend's steps to target :math:`\hat K(b)` is the median over seeds, a run that
never reached the target counting as :math:`+\infty` (so the median is finite exactly when more
than half the runs reached it). Its interval is a percentile bootstrap over the runs at that
batch size. The empirical critical batch size is the grid value minimizing the gradient cost
:math:`b \hat K(b)` (McCandlish et al. 2018, Sec. 2.2, arXiv:1812.06162: the batch size past
which more samples buy fewer steps), with the percentile interval of the same argmin over the
same bootstrap resamples. With ``model=`` the laws of :mod:`critbatch.fit` are fitted to each
backend's table as well, and their critical batch sizes and intervals are reported.

Backends that agree give overlapping intervals at every batch size;
``tests/test_torch_agreement.py`` makes the same comparison with two-sample tests.

Example:
    >>> import critbatch as cb
    >>> check = crosscheck(cb.problems.nqm([1.0, 0.1], [1.0, 0.1]), "sgd", [1, 4], [0.5], 8,
    ...                    cb.targets.target(loss_below=0.05, max_steps=500),
    ...                    backends=("torch", "torch"), n_boot=50, verbose=False)
    >>> list(check.table.columns[:4])
    ['group', 'batch_size', 'torch_K', 'torch_K_low']

"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from critbatch import _validate as v
from critbatch.plan import Plan, make_plan
from critbatch.results import Results
from critbatch.sweep import BACKENDS, execute

GROUP_COLUMNS = ("problem", "optimizer", "schedule", "learning_rate")


def median_steps(steps: np.ndarray, reached: np.ndarray) -> float:
    r"""Return the median steps to target, a run that never reached it counting as :math:`+\infty`.

    Args:
        steps: steps of each run.
        reached: whether each run reached the target.

    Returns:
        The median, ``inf`` when at most half the runs reached the target (``nan`` if no runs).

    Example:
        >>> median_steps(np.array([10, 20, 99]), np.array([True, True, False]))
        20.0

    """
    if steps.size == 0:
        return math.nan
    return float(np.median(np.where(reached, steps.astype(np.float64), np.inf)))


def _bootstrap_medians(
    k: npt.NDArray[np.float64], n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    draws = rng.integers(0, k.size, size=(n_boot, k.size))
    return np.median(k[draws], axis=1)


def curve(frame: Any, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    r"""Return the empirical K(b) curve of one group of runs, with bootstrap intervals.

    Args:
        frame: a pandas DataFrame with columns ``batch_size``, ``steps`` and ``reached`` (one
            group: the same problem, optimizer, schedule and learning rate).
        n_boot: bootstrap resamples (runs resampled with replacement within each batch size).
        level: coverage of the percentile intervals, in (0, 1).
        seed: seed of the bootstrap.

    Returns:
        A dict with ``batch_size`` (sorted grid), ``K`` (median steps, see :func:`median_steps`),
        ``K_low``/``K_high`` (interval), ``reached`` (fraction), ``critical`` (the grid value
        minimizing :math:`b \hat K(b)`, ``nan`` if no :math:`\hat K` is finite) and
        ``critical_low``/``critical_high`` (its bootstrap percentile interval on the grid).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"batch_size": [1, 1, 2, 2, 4, 4], "steps": [8, 8, 3, 3, 2, 2],
        ...                    "reached": [True] * 6})
        >>> c = curve(df, n_boot=20)
        >>> c["K"].tolist(), c["critical"], (c["critical_low"], c["critical_high"])
        ([8.0, 3.0, 2.0], 2.0, (2.0, 2.0))

    """
    n_boot = v.positive_int("n_boot", n_boot)
    level = v.in_range("level", level, 0.0, 1.0)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    sizes = np.sort(frame["batch_size"].unique()).astype(np.float64)
    alpha = (1.0 - level) / 2
    out: dict[str, Any] = {"batch_size": sizes}
    K, low, high, frac = [], [], [], []
    boots = np.empty((n_boot, sizes.size))
    for j, b in enumerate(sizes):
        part = frame[frame["batch_size"] == b]
        steps, reached = part["steps"].to_numpy(), part["reached"].to_numpy(dtype=bool)
        k = np.where(reached, steps.astype(np.float64), np.inf)
        K.append(median_steps(steps, reached))
        boots[:, j] = _bootstrap_medians(k, n_boot, rng)
        low.append(float(np.quantile(boots[:, j], alpha, method="inverted_cdf")))
        high.append(float(np.quantile(boots[:, j], 1 - alpha, method="inverted_cdf")))
        frac.append(float(reached.mean()))
    out.update(K=np.array(K), K_low=np.array(low), K_high=np.array(high), reached=np.array(frac))
    cost = sizes * out["K"]
    out["critical"] = float(sizes[np.argmin(cost)]) if np.isfinite(cost).any() else math.nan
    boot_cost = boots * sizes[None, :]
    finite = np.isfinite(boot_cost).any(axis=1)
    if finite.any():
        argmins = sizes[np.argmin(boot_cost[finite], axis=1)]
        out["critical_low"] = float(np.quantile(argmins, alpha, method="inverted_cdf"))
        out["critical_high"] = float(np.quantile(argmins, 1 - alpha, method="inverted_cdf"))
    else:
        out["critical_low"] = out["critical_high"] = math.nan
    return out


@dataclass(frozen=True, eq=False)
class CrossCheck:
    """The same plan on two backends: per-backend results, the side-by-side table, fits.

    Attributes:
        backends: the two labels, e.g. ``("rust", "torch")`` (a repeated backend gets ``#2``).
        results: label -> :class:`critbatch.results.Results`.
        table: one row per (group, batch size): per backend ``<label>_K``, ``_K_low``,
            ``_K_high``, ``_reached``.
        critical: group -> label -> ``(b*, low, high)``, empirical (grid argmin of b K(b)).
        fits: label -> :class:`critbatch.fit.Fits` of that backend (empty without ``model``).
        level: coverage of the intervals.

    """

    backends: tuple[str, str]
    results: dict[str, Results]
    table: Any
    critical: dict[str, dict[str, tuple[float, float, float]]]
    fits: dict[str, Any] = field(default_factory=dict)
    level: float = 0.95

    def summary(self) -> str:
        """Return the side-by-side curves and critical batch sizes as plain text."""
        a, b = self.backends
        pct = f"{100 * self.level:g}%"
        lines = []
        for group, part in self.table.groupby("group", sort=False):
            lines.append(f"group {group}")
            heads = [f"{x} K(b) [{pct}]" for x in (a, b)]
            lines.append(f"  {'b':>8}  {heads[0]:>30}  {heads[1]:>30}")
            for _, row in part.iterrows():
                cells = [
                    f"{row[f'{x}_K']:.4g} [{row[f'{x}_K_low']:.4g}, {row[f'{x}_K_high']:.4g}]"
                    f" {row[f'{x}_reached']:.0%}"
                    for x in (a, b)
                ]
                lines.append(f"  {row['batch_size']:>8g}  {cells[0]:>30}  {cells[1]:>30}")
            crit = self.critical[group]
            lines.append(
                "  empirical b* (argmin b K(b)): "
                + "; ".join(f"{x} {crit[x][0]:g} [{crit[x][1]:g}, {crit[x][2]:g}]" for x in (a, b))
            )
        for label, fits in self.fits.items():
            for group, result in fits.items():
                lines.append(
                    f"{label} {result.model} fit {'/'.join(group) or '(one group)'}: b* "
                    f"{result.critical_text()} ({result.status})"
                )
        return "\n".join(lines)


def _group_labels(frame: Any) -> Any:
    return (
        frame["problem"].astype(str)
        + "/"
        + frame["optimizer"].astype(str)
        + "/"
        + frame["schedule"].astype(str)
        + "/lr="
        + frame["learning_rate"].map("{:g}".format)
    )


def crosscheck(
    problems: Any,
    optimizers: Any = None,
    batch_sizes: Any = None,
    learning_rates: Any = None,
    seeds: Any = None,
    target: Any = None,
    *,
    schedules: Any = None,
    seed: int = 0,
    device: str = "cpu",
    backends: Sequence[str] = ("rust", "torch"),
    model: str | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    verbose: bool = True,
) -> CrossCheck:
    """Run the same plan on two backends and compare their K(b) and critical batch sizes.

    Args:
        problems: a :class:`critbatch.plan.Plan`, or the problems of :func:`critbatch.sweep`
            (then ``optimizers`` ... ``target`` and ``schedules``/``seed`` build the plan).
        optimizers: as in :func:`critbatch.sweep`.
        batch_sizes: as in :func:`critbatch.sweep`.
        learning_rates: as in :func:`critbatch.sweep`.
        seeds: as in :func:`critbatch.sweep`.
        target: as in :func:`critbatch.sweep`.
        schedules: as in :func:`critbatch.sweep`.
        seed: the sweep seed.
        device: the torch device for a ``"torch"`` backend.
        backends: two of ``"rust"``, ``"torch"`` (the same one twice compares it with itself).
        model: also fit this law of :mod:`critbatch.fit` (``"rational"``, ``"inverse"``,
            ``"mccandlish"``) to each backend's table; None: empirical curves only.
        n_boot: bootstrap resamples for every interval.
        level: coverage of the intervals.
        verbose: print :meth:`CrossCheck.summary`.

    Returns:
        A :class:`CrossCheck`.

    Raises:
        ValueError: naming the bad backend, level or missing spec argument.

    Example:
        >>> import critbatch as cb
        >>> plan = cb.make_plan(cb.problems.nqm([1.0], [1.0]), "sgd", [1, 2], [0.5], 6,
        ...                     cb.targets.target(loss_below=0.01, max_steps=300))
        >>> c = crosscheck(plan, backends=("torch", "torch"), n_boot=20, verbose=False)
        >>> sorted(c.results), len(c.table)
        (['torch', 'torch#2'], 2)

    """
    if isinstance(problems, Plan):
        plan = problems
    else:
        missing = [
            name
            for name, value in (
                ("optimizers", optimizers),
                ("batch_sizes", batch_sizes),
                ("learning_rates", learning_rates),
                ("seeds", seeds),
                ("target", target),
            )
            if value is None
        ]
        if missing:
            raise ValueError(f"crosscheck needs a Plan or every sweep argument; missing {missing}")
        plan = make_plan(
            problems,
            optimizers,
            batch_sizes,
            learning_rates,
            seeds,
            target,
            schedules=schedules,
            seed=seed,
        )
    if isinstance(backends, str) or len(backends) != 2:
        raise ValueError(f"backends must be a pair of backend names, got {backends!r}")
    for i, name in enumerate(backends):
        v.choice(f"backends[{i}]", name, BACKENDS)
    labels = (backends[0], backends[1] if backends[1] != backends[0] else backends[1] + "#2")
    level = v.in_range("level", level, 0.0, 1.0)
    results = {
        label: execute(plan, backend=name, device=device)
        for label, name in zip(labels, backends, strict=True)
    }
    frames = {label: r.to_pandas() for label, r in results.items()}
    for frame in frames.values():
        frame["group"] = _group_labels(frame)
    rows: list[dict[str, Any]] = []
    critical: dict[str, dict[str, tuple[float, float, float]]] = {}
    for group in dict.fromkeys(frames[labels[0]]["group"]):
        curves = {
            label: curve(frame[frame["group"] == group], n_boot=n_boot, level=level, seed=seed)
            for label, frame in frames.items()
        }
        critical[group] = {
            label: (c["critical"], c["critical_low"], c["critical_high"])
            for label, c in curves.items()
        }
        for j, b in enumerate(curves[labels[0]]["batch_size"]):
            row: dict[str, Any] = {"group": group, "batch_size": b}
            for label, c in curves.items():
                row.update(
                    {
                        f"{label}_K": c["K"][j],
                        f"{label}_K_low": c["K_low"][j],
                        f"{label}_K_high": c["K_high"][j],
                        f"{label}_reached": c["reached"][j],
                    }
                )
            rows.append(row)
    import pandas as pd

    fits: dict[str, Any] = {}
    if model is not None:
        from critbatch.fit import fit

        fits = {
            label: fit(
                frames[label].drop(columns="group"), model, n_boot=n_boot, level=level, seed=seed
            )
            for label in labels
        }
    check = CrossCheck(labels, results, pd.DataFrame(rows), critical, fits, level)
    if verbose:
        print(check.summary())
    return check


def _default_target_loss(problem: Any, fraction: float) -> float:
    """Return f* + fraction (f(x0) - f*), with f* from :func:`critbatch.problems.min_loss`."""
    from critbatch import reference
    from critbatch.problems import min_loss

    f0 = reference.loss(problem, problem.x0)
    best = min_loss(problem)
    return float(best + fraction * (f0 - best))


def crosscheck_main(argv: Sequence[str] | None = None) -> int:
    """Run ``critbatch crosscheck``: a small sweep on the Rust core and on torch, side by side.

    Args:
        argv: the command-line arguments after ``crosscheck`` (None: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 after printing the comparison.

    Example:
        >>> crosscheck_main(["--problem", "nqm", "--dim", "4", "--batch-sizes", "1,4",
        ...                  "--runs", "4", "--backends", "torch,torch", "--n-boot", "10",
        ...                  "--quiet"])
        0

    """
    from critbatch import problems as pb
    from critbatch import targets

    parser = argparse.ArgumentParser(
        prog="critbatch crosscheck",
        description="Run one sweep on two backends and compare K(b) and the critical batch size.",
    )
    parser.add_argument("--problem", choices=("nqm", "least_squares", "logistic"), default="nqm")
    parser.add_argument("--dim", type=int, default=20, help="NQM dimension / features")
    parser.add_argument("--n", type=int, default=1024, help="data set size (finite sums)")
    parser.add_argument("--optimizer", default="sgd", help="an optimizer name (sgd, adam, ...)")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--lr", type=float, default=0.5, help="base learning rate")
    parser.add_argument("--runs", type=int, default=50, help="seeds per batch size")
    parser.add_argument(
        "--target-fraction",
        type=float,
        default=0.05,
        help="loss target: f* + fraction * (f(x0) - f*)",
    )
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--backends", default="rust,torch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=None, help="also fit rational/inverse/mccandlish")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    problem: Any
    if args.problem == "nqm":
        problem = pb.nqm_power_law(args.dim)
    elif args.problem == "least_squares":
        problem = pb.make_least_squares(args.n, args.dim, seed=args.seed)
    else:
        problem = pb.make_logistic(args.n, args.dim, seed=args.seed)
    tgt = targets.target(
        loss_below=_default_target_loss(problem, args.target_fraction), max_steps=args.max_steps
    )
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    crosscheck(
        problem,
        args.optimizer,
        batch_sizes,
        [args.lr],
        args.runs,
        tgt,
        seed=args.seed,
        device=args.device,
        backends=tuple(args.backends.split(",")),
        model=args.model,
        n_boot=args.n_boot,
        verbose=not args.quiet,
    )
    return 0
