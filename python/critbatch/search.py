r"""Quasi-random hyperparameter search per batch size, the measurement protocol of the anchors.

Shallue et al. (2019) tune the learning rate, momentum and more *at every batch size* with a fixed
budget of trials and report the steps to the target at the best trial; the MLCommons AlgoPerf
benchmark draws its trials quasi-randomly from a declared search space. This module does the
same on any problem and backend:

1. a :class:`SearchSpace` declares each hyperparameter's range and scale: ``log_uniform`` (the
   learning rate), ``one_minus_log_uniform`` (a momentum :math:`\mu`, searched as
   :math:`1 - \mu` on a log scale) or ``uniform``;
2. :func:`trials` draws the points from a scrambled Sobol or Halton sequence
   (:mod:`scipy.stats.qmc`), the *same points at every batch size*, so that batch sizes are
   compared on the same trials;
3. :func:`search` runs every trial at every batch size and seed. Each trial is one sweep with
   the same sweep seed and grid shape, so a run's random stream depends only on its batch size
   and replicate: trials differ only in their hyperparameters and share their gradient noise
   (common random numbers), and the choice of the best trial is not a lottery between streams;
4. :func:`best_trials` picks, per batch size, the trial with the fewest median steps (failures
   counted as infinitely many, the rule of :mod:`critbatch.tuning`), gives a bootstrap interval
   over seeds for K(b) at the best trial that redoes the choice on every resample, and flags a
   best trial at the edge of the space (a coordinate within 5 % of a bound of the unit cube).

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2019, "Measuring the effects of data
    parallelism on neural network training", JMLR 20(112), Sec. 3.3 and App. D (trials per batch
    size, best trial); Dahl et al. 2023, "Benchmarking neural network training algorithms",
    arXiv:2306.07179 (AlgoPerf: quasi-random search over a declared space, fixed trial budget);
    Owen 1998, "Scrambling Sobol' and Niederreiter-Xing points", J. Complexity 14(4).

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from critbatch import _validate as v

__all__ = ["Dimension", "SearchSpace", "best_trials", "search", "space", "trials"]

SCALES = ("log_uniform", "one_minus_log_uniform", "uniform")
# hyperparameters a trial can set, and what each sets
_TARGETS = ("learning_rate", "momentum", "beta1", "beta2", "eps")
_EDGE = 0.05


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range and scale (see the module docstring)."""

    name: str
    low: float
    high: float
    scale: str

    def value(self, u: np.ndarray) -> np.ndarray:
        """Map unit-cube coordinates ``u`` to values."""
        if self.scale == "uniform":
            return self.low + u * (self.high - self.low)
        if self.scale == "log_uniform":
            return np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        # 1 - mu log-uniform between 1 - high and 1 - low (u = 0 at the low momentum)
        lo, hi = math.log(1.0 - self.low), math.log(1.0 - self.high)
        return 1.0 - np.exp(lo + u * (hi - lo))


@dataclass(frozen=True)
class SearchSpace:
    """A search space: dimensions, for one optimizer kind."""

    optimizer: str
    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The hyperparameters searched."""
        return tuple(d.name for d in self.dimensions)


def space(optimizer: str, **ranges: tuple[float, float, str] | tuple[float, float]) -> SearchSpace:
    r"""Declare a search space for an optimizer kind.

    Args:
        optimizer: ``"sgd"``, ``"heavy_ball"``, ``"nesterov"`` or ``"adam"``.
        **ranges: hyperparameter -> ``(low, high)`` or ``(low, high, scale)``. The learning rate
            (``learning_rate``) defaults to ``"log_uniform"``, ``momentum`` and ``beta1``/``beta2``
            to ``"one_minus_log_uniform"``, others to ``"uniform"``.

    Returns:
        A :class:`SearchSpace`.

    Example:
        >>> s = space("heavy_ball", learning_rate=(1e-3, 1.0), momentum=(0.5, 0.99))
        >>> s.names, s.dimensions[1].scale
        (('learning_rate', 'momentum'), 'one_minus_log_uniform')

    """
    allowed = {
        "sgd": ("learning_rate",),
        "heavy_ball": ("learning_rate", "momentum"),
        "nesterov": ("learning_rate", "momentum"),
        "adam": ("learning_rate", "beta1", "beta2", "eps"),
    }
    v.choice("optimizer", optimizer, tuple(allowed))
    if "learning_rate" not in ranges:
        raise ValueError("the search space needs a range for learning_rate")
    dims = []
    for name, spec in ranges.items():
        if name not in allowed[optimizer]:
            raise ValueError(
                f"{name!r} is not a hyperparameter of {optimizer!r}; expected one of "
                f"{', '.join(allowed[optimizer])}"
            )
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(f"{name} must be (low, high) or (low, high, scale), got {spec!r}")
        default = (
            "log_uniform"
            if name in ("learning_rate", "eps")
            else "one_minus_log_uniform"
            if name in ("momentum", "beta1", "beta2")
            else "uniform"
        )
        scale = v.choice(f"{name} scale", spec[2] if len(spec) == 3 else default, SCALES)
        low, high = v.real(f"{name} low", spec[0]), v.real(f"{name} high", spec[1])
        if not low < high:
            raise ValueError(f"{name}: low must be below high, got ({low!r}, {high!r})")
        if scale == "log_uniform" and low <= 0:
            raise ValueError(f"{name}: a log-uniform range needs low > 0, got {low!r}")
        if scale == "one_minus_log_uniform" and not 0 <= low < high < 1:
            raise ValueError(
                f"{name}: a 1 - log-uniform range needs 0 <= low < high < 1, "
                f"got ({low!r}, {high!r})"
            )
        dims.append(Dimension(name, low, high, scale))
    return SearchSpace(optimizer, tuple(dims))


def trials(search_space: SearchSpace, n: int, *, seed: int = 0, method: str = "halton") -> Any:
    """Draw ``n`` quasi-random trials of ``search_space`` (scrambled, reproducible from ``seed``).

    Args:
        search_space: the space.
        n: the trial budget (``"sobol"``: a power of two, where its balance properties hold).
        seed: seed of the scrambling.
        method: ``"halton"`` or ``"sobol"``.

    Returns:
        A DataFrame with ``trial`` and one column per hyperparameter, plus ``u_<name>``, the
        unit-cube coordinates.

    Example:
        >>> t = trials(space("sgd", learning_rate=(1e-3, 1.0)), 4, seed=1)
        >>> list(t.columns), bool(((t.learning_rate > 1e-3) & (t.learning_rate < 1)).all())
        (['trial', 'learning_rate', 'u_learning_rate'], True)

    """
    import pandas as pd
    from scipy.stats import qmc

    n = v.positive_int("n", n)
    seed = v.nonnegative_int("seed", seed)
    method = v.choice("method", method, ("halton", "sobol"))
    d = len(search_space.dimensions)
    if method == "sobol":
        if n & (n - 1):
            raise ValueError(f"n must be a power of two with method='sobol', got {n}")
        u = qmc.Sobol(d, scramble=True, seed=seed).random_base2(int(math.log2(n)))
    else:
        u = qmc.Halton(d, scramble=True, seed=seed).random(n)
    out = pd.DataFrame({"trial": np.arange(n)})
    for j, dim in enumerate(search_space.dimensions):
        out[dim.name] = dim.value(u[:, j])
    for j, dim in enumerate(search_space.dimensions):
        out[f"u_{dim.name}"] = u[:, j]
    return out


def _optimizer(search_space: SearchSpace, row: Any) -> Any:
    from critbatch import optimizers

    kind = search_space.optimizer
    name = f"{kind}#t{int(row['trial'])}"
    if kind == "sgd":
        return optimizers.sgd(name=name)
    if kind in ("heavy_ball", "nesterov"):
        builder = optimizers.heavy_ball if kind == "heavy_ball" else optimizers.nesterov
        return builder(float(row.get("momentum", 0.9)), name=name)
    betas = (float(row.get("beta1", 0.9)), float(row.get("beta2", 0.999)))
    return optimizers.adam(betas, eps=float(row.get("eps", 1e-8)), name=name)


def search(
    problem: Any,
    search_space: SearchSpace,
    batch_sizes: Any,
    seeds: Any,
    target: Any,
    *,
    n_trials: int = 16,
    seed: int = 0,
    method: str = "halton",
    **sweep_options: Any,
) -> Any:
    """Run ``n_trials`` quasi-random trials at every batch size and seed.

    Args:
        problem: one problem (``critbatch.problems``).
        search_space: the space (:func:`space`).
        batch_sizes: the batch sizes.
        seeds: replicates per (trial, batch size), or their ids.
        target: the stopping rule.
        n_trials: the trial budget per batch size.
        seed: the sweep seed (the same for every trial: common random numbers across trials)
            and the seed of the trials' scrambling.
        method: ``"halton"`` or ``"sobol"`` (see :func:`trials`).
        **sweep_options: passed to :func:`critbatch.sweep` (``schedules``, ``threads``,
            ``backend``...).

    Returns:
        A DataFrame: the runs of :func:`critbatch.sweep` with ``trial`` and the hyperparameters
        (``u_<name>`` too) as columns.

    """
    import pandas as pd

    from critbatch.sweep import sweep

    points = trials(search_space, n_trials, seed=seed, method=method)
    parts = []
    for _, row in points.iterrows():
        res = sweep(
            problem,
            _optimizer(search_space, row),
            batch_sizes,
            [float(row["learning_rate"])],
            seeds,
            target,
            seed=seed,
            **sweep_options,
        )
        frame = res.to_pandas()
        for name in points.columns:
            frame[name] = row[name] if name != "trial" else int(row["trial"])
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _best(frame: Any) -> list[Any]:
    """Per batch size: the best trial and its median steps, by the rule of critbatch.tuning.

    The trial takes the place of the learning rate in :func:`critbatch.tuning.best_learning_rate`
    (as ``trial + 1``, positive), so ties go to the earlier trial.
    """
    from critbatch.tuning import best_learning_rate

    keyed = frame.assign(optimizer="search", learning_rate=frame["trial"].astype(float) + 1.0)
    table = best_learning_rate(keyed)
    table["trial"] = table["learning_rate"].astype(int) - 1
    return [row for _, row in table.iterrows()]


def best_trials(
    results: Any,
    search_space: SearchSpace,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Any:
    """K(b) at the best trial per batch size, with a bootstrap interval and the edge status.

    Args:
        results: the runs of :func:`search`.
        search_space: the space searched.
        n_boot: resamples of seeds for the interval (0: none).
        level: the interval's level.
        seed: seed of the resampling.

    Returns:
        A DataFrame, one row per batch size: ``batch_size``, ``trial`` (the best), its
        hyperparameters, ``steps`` (median steps at the best trial; inf when not reached by half
        its runs), ``low``, ``high`` (the percentile interval of the same statistic over seed
        resamples, the choice of the trial redone each time), ``all_reached`` and ``at_edge``
        (the best trial has a coordinate within 5 % of a bound of the space).

    """
    import pandas as pd

    from critbatch.fit.bootstrap import percentile_interval

    n_boot = v.nonnegative_int("n_boot", n_boot)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    best = {float(row["batch_size"]): row for row in _best(results)}
    samples: dict[float, list[float]] = {b: [] for b in best}
    seeds = np.unique(results["seed"])
    if n_boot and seeds.size >= 2:
        by_seed = {s: results[results["seed"] == s] for s in seeds}
        for _ in range(n_boot):
            drawn = rng.choice(seeds, size=seeds.size, replace=True)
            resample = pd.concat([by_seed[s] for s in drawn], ignore_index=True)
            for row in _best(resample):
                samples[float(row["batch_size"])].append(float(row["steps"]))
    points = results.drop_duplicates("trial").set_index("trial")
    rows = []
    for b, row in best.items():
        trial = int(row["trial"])
        interval = (
            percentile_interval(np.asarray(samples[b]), level)
            if len(samples[b]) >= 2
            else (math.nan, math.nan)
        )
        coords = [float(points.loc[trial, f"u_{d.name}"]) for d in search_space.dimensions]
        rows.append(
            {
                "batch_size": b,
                "trial": trial,
                **{d.name: float(points.loc[trial, d.name]) for d in search_space.dimensions},
                "steps": float(row["steps"]),
                "low": interval[0],
                "high": interval[1],
                "all_reached": bool(row["all_reached"]),
                "at_edge": any(c < _EDGE or c > 1 - _EDGE for c in coords),
            }
        )
    return pd.DataFrame(rows)
