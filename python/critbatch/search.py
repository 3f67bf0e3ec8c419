r"""Quasi-random hyperparameter search per batch size, the measurement protocol of the anchors.

Shallue et al. (2019) tune the learning rate, momentum and the learning-rate decay *at every
batch size* with a fixed budget of trials and report the steps to the target at the best trial;
the MLCommons AlgoPerf benchmark draws its trials quasi-randomly from a declared search space.
This module does the same on any problem and backend:

1. a :class:`SearchSpace` declares each hyperparameter's range and scale: ``log_uniform`` (the
   learning rate), ``one_minus_log_uniform`` (a momentum :math:`\mu`, searched as
   :math:`1 - \mu` on a log scale) or ``uniform``. The dimensions (:data:`DIMENSIONS`) are the
   learning rate, the optimizer's hyperparameters (:data:`OPTIMIZER_DIMENSIONS`) and the
   schedule's (:data:`SCHEDULE_DIMENSIONS`): ``warmup``, the length :math:`W` in steps of the
   linear warm-up (an integer, rounded), and ``decay_period`` and ``decay_factor``, the period
   and factor of a ``step`` rule (``every``, ``gamma``) or a ``cosine`` rule (``period``,
   ``min_factor``) that the run's schedule declares (:mod:`critbatch.schedules`);
2. :func:`trials` draws the points from a scrambled Sobol or Halton sequence
   (:mod:`scipy.stats.qmc`), the *same points at every batch size*, so that batch sizes are
   compared on the same trials. Both sequences are prefix-stable: the first ``n`` points of a
   budget of ``m > n`` are the points of the budget ``n``;
3. a trial is a run's optimizer, schedule and learning rate (:func:`expand`): its hyperparameters
   replace those of the declared optimizer and schedule. :func:`critbatch.plan.make_plan` lays
   out the trials as the learning-rate axis of the grid, so a search is a sweep like any other
   (stored, resumed, fitted), with a ``trial`` column and the trial's point as columns (its
   values, and ``u_<name>``, its unit-cube coordinates). Its runs use common random numbers
   (:mod:`critbatch.plan`): trials at one batch size and replicate share their gradient noise,
   so the choice of the best trial is not a lottery between streams. :func:`search` runs one
   from Python; a ``[search]`` table in a spec (:mod:`critbatch.spec`) runs one from a file;
4. :func:`best_trials` picks, per batch size, the trial with the fewest median steps (failures
   counted as infinitely many, the rule of :mod:`critbatch.tuning`), gives a bootstrap interval
   over seeds for K(b) at the best trial that redoes the choice on every resample, and flags a
   best trial at the edge of the space (:func:`trial_at_edge`: a coordinate within 5 % of a
   bound of the unit cube, in any dimension). :func:`critbatch.fit.fit` and
   :func:`critbatch.tuning.best_learning_rate` make the same choice on a stored search, since
   each trial has its own learning rate.

References:
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl 2019, "Measuring the effects of data
    parallelism on neural network training", JMLR 20(112), Sec. 3.3 and App. D (trials per batch
    size, best trial; learning rate, momentum and decay searched); Dahl et al. 2023,
    "Benchmarking neural network training algorithms", arXiv:2306.07179 (AlgoPerf: quasi-random
    search over a declared space, fixed trial budget); Owen 1998, "Scrambling Sobol' and
    Niederreiter-Xing points", J. Complexity 14(4); Goyal et al. 2017, arXiv:1706.02677, Sec. 2.2
    (linear warm-up).

"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch import optimizers as opt
from critbatch import schedules as sch

__all__ = [
    "DIMENSIONS",
    "METHODS",
    "OPTIMIZER_DIMENSIONS",
    "SCALES",
    "SCHEDULE_DIMENSIONS",
    "Dimension",
    "Search",
    "SearchSpace",
    "best_trials",
    "expand",
    "mismatches",
    "search",
    "space",
    "trial_at_edge",
    "trials",
]

#: How the trials of a dimension spread over its range (see the module docstring).
SCALES = ("log_uniform", "one_minus_log_uniform", "uniform")
#: The scrambled quasi-random sequences of :mod:`scipy.stats.qmc` a search draws from.
METHODS = ("halton", "sobol")
#: The optimizer hyperparameters a trial can set, and the optimizer kinds that have each.
OPTIMIZER_DIMENSIONS: dict[str, tuple[str, ...]] = {
    "momentum": ("heavy_ball", "nesterov", "rmsprop", "lars"),
    "beta1": ("adam", "adamw", "lamb", "lion"),
    "beta2": ("adam", "adamw", "lamb", "lion"),
    "eps": ("adam", "adamw", "rmsprop", "lars", "lamb"),
    "alpha": ("rmsprop",),
    "weight_decay": ("adamw", "lars", "lamb", "lion"),
}
#: The schedule hyperparameters a trial can set: the warm-up length in steps, and the period and
#: factor of the schedule's ``step`` or ``cosine`` learning-rate rule.
SCHEDULE_DIMENSIONS = ("warmup", "decay_period", "decay_factor")
#: Every dimension a search space may have.
DIMENSIONS = ("learning_rate", *OPTIMIZER_DIMENSIONS, *SCHEDULE_DIMENSIONS)
_DEFAULT_SCALE = {
    "learning_rate": "log_uniform",
    "momentum": "one_minus_log_uniform",
    "beta1": "one_minus_log_uniform",
    "beta2": "one_minus_log_uniform",
    "alpha": "one_minus_log_uniform",
    "eps": "log_uniform",
    "weight_decay": "log_uniform",
    "warmup": "log_uniform",
    "decay_period": "log_uniform",
    "decay_factor": "uniform",
}


def _unit(name: str, x: Any) -> float:
    return v.in_range(name, x, 0.0, 1.0)


def _at_least_one(name: str, x: Any) -> float:
    value = v.real(name, x)
    if value < 1:
        raise ValueError(f"{name} must be at least 1 (steps), got {x!r}")
    return value


#: The values each dimension may take (both ends of a range are checked); the decay factor is
#: checked again against the rule it sets (:func:`expand`).
_DOMAINS: dict[str, Callable[[str, Any], float]] = {
    "learning_rate": v.positive,
    "momentum": _unit,
    "beta1": _unit,
    "beta2": _unit,
    "alpha": _unit,
    "eps": v.positive,
    "weight_decay": v.nonnegative,
    "warmup": _at_least_one,
    "decay_period": v.positive,
    "decay_factor": v.nonnegative,
}
#: A best trial with a unit-cube coordinate within this of 0 or 1 is at the edge of the space.
EDGE = 0.05


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range and scale (see the module docstring)."""

    name: str
    low: float
    high: float
    scale: str

    def value(self, u: np.ndarray) -> np.ndarray:
        """Map unit-cube coordinates ``u`` to values (``warmup`` rounded to whole steps)."""
        if self.scale == "uniform":
            out = self.low + u * (self.high - self.low)
        elif self.scale == "log_uniform":
            out = np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:  # 1 - mu log-uniform between 1 - high and 1 - low (u = 0 at the low momentum)
            lo, hi = math.log(1.0 - self.low), math.log(1.0 - self.high)
            out = 1.0 - np.exp(lo + u * (hi - lo))
        return np.floor(out + 0.5) if self.name == "warmup" else out


@dataclass(frozen=True)
class SearchSpace:
    """A search space: dimensions, for one optimizer kind or (``optimizer=None``) any that fits."""

    optimizer: str | None
    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The hyperparameters searched."""
        return tuple(d.name for d in self.dimensions)


def space(
    optimizer: str | None = None, **ranges: tuple[float, float, str] | tuple[float, float]
) -> SearchSpace:
    r"""Declare a search space.

    Args:
        optimizer: an optimizer kind (:data:`critbatch.optimizers.KINDS`) whose hyperparameters
            are searched, or ``None``: the space is checked against the optimizers it is run
            with (:func:`expand`), as a spec's ``[search]`` table is.
        **ranges: hyperparameter (:data:`DIMENSIONS`) -> ``(low, high)`` or
            ``(low, high, scale)``. ``learning_rate`` is required. The default scale is
            ``"log_uniform"`` for ``learning_rate``, ``eps``, ``weight_decay``, ``warmup`` and
            ``decay_period``, ``"one_minus_log_uniform"`` for ``momentum``, ``beta1``,
            ``beta2`` and ``alpha``, and ``"uniform"`` for ``decay_factor``.

    Returns:
        A :class:`SearchSpace`.

    Raises:
        ValueError: naming the hyperparameter: not one of the optimizer's, a reversed range, a
            bound outside the hyperparameter's domain or the scale's.

    Example:
        >>> s = space("heavy_ball", learning_rate=(1e-3, 1.0), momentum=(0.5, 0.99),
        ...           warmup=(1, 100))
        >>> s.names, s.dimensions[1].scale, s.dimensions[2].scale
        (('learning_rate', 'momentum', 'warmup'), 'one_minus_log_uniform', 'log_uniform')

    """
    if optimizer is not None:
        v.choice("optimizer", optimizer, opt.KINDS)
    if "learning_rate" not in ranges:
        raise ValueError("the search space needs a range for learning_rate")
    dims = []
    for name, spec in ranges.items():
        if name not in DIMENSIONS:
            raise ValueError(f"{name!r} is not a search dimension; expected one of {DIMENSIONS}")
        kinds = OPTIMIZER_DIMENSIONS.get(name)
        if optimizer is not None and kinds is not None and optimizer not in kinds:
            allowed = [
                d for d in DIMENSIONS if optimizer in OPTIMIZER_DIMENSIONS.get(d, (optimizer,))
            ]
            raise ValueError(
                f"{name!r} is not a hyperparameter of {optimizer!r}; expected one of "
                f"{', '.join(allowed)}"
            )
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise ValueError(f"{name} must be (low, high) or (low, high, scale), got {spec!r}")
        scale = v.choice(
            f"{name} scale", spec[2] if len(spec) == 3 else _DEFAULT_SCALE[name], SCALES
        )
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
        for end, x in (("low", low), ("high", high)):
            _DOMAINS[name](f"{name} {end}", x)
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
    method = v.choice("method", method, METHODS)
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


@dataclass(frozen=True)
class Search:
    """A search as a sweep runs it: the space, the trials per batch size, the sequence, its seed.

    The Python form of a spec's ``[search]`` table (:mod:`critbatch.spec`); the same trials run
    at every batch size.
    """

    space: SearchSpace
    trials: int = 16
    method: str = "halton"
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(self.space).__name__}")
        v.positive_int("trials", self.trials)
        v.choice("method", self.method, METHODS)
        v.nonnegative_int("seed", self.seed)
        if self.method == "sobol" and self.trials & (self.trials - 1):
            raise ValueError(
                f"trials must be a power of two with method='sobol', got {self.trials}"
            )

    def points(self) -> Any:
        """The trials (:func:`trials`): a DataFrame, one row per trial."""
        return trials(self.space, self.trials, seed=self.seed, method=self.method)

    def extended_by(self, other: Search | None) -> bool:
        """Whether ``other`` runs these trials and maybe more (the same space, sequence, seed)."""
        return (
            other is not None
            and dataclasses.replace(other, trials=self.trials) == self
            and (other.trials >= self.trials)
        )


def mismatches(
    search_space: SearchSpace,
    optimizers: Sequence[opt.Optimizer],
    schedules: Sequence[sch.Schedule],
) -> list[tuple[str, str]]:
    """What keeps ``search_space`` from setting these optimizers and schedules: (key, reason).

    An optimizer dimension needs every optimizer to have the hyperparameter (and the space's
    optimizer kind, if it names one); a decay dimension needs every schedule to have a ``step``
    or ``cosine`` learning-rate rule, and both ends of its range to make a valid rule.
    """
    out = []
    for i, o in enumerate(optimizers):
        if search_space.optimizer is not None and o.kind != search_space.optimizer:
            out.append(
                (
                    f"optimizers[{i}]",
                    f"the search space is for {search_space.optimizer!r}, but {o.name!r} "
                    f"is {o.kind!r}",
                )
            )
    for name in search_space.names:
        key = f"search.{name}"
        for i, o in enumerate(optimizers):
            if name in OPTIMIZER_DIMENSIONS and o.kind not in OPTIMIZER_DIMENSIONS[name]:
                out.append(
                    (key, f"optimizers[{i}] ({o.name!r}) is {o.kind!r}, which has no {name}")
                )
        if name in ("decay_period", "decay_factor"):
            dim = search_space.dimensions[search_space.names.index(name)]
            for j, s in enumerate(schedules):
                if s.lr.kind not in ("step", "cosine"):
                    out.append(
                        (
                            key,
                            f"schedules[{j}] ({s.name!r}) has a {s.lr.kind!r} learning-rate "
                            "rule; a decay dimension sets the period or factor of a 'step' or "
                            "'cosine' rule",
                        )
                    )
                    continue
                for x in (dim.low, dim.high):
                    try:
                        _rule(s.lr, {name: x})
                    except ValueError as err:
                        out.append((key, f"{err} (for schedules[{j}], {s.name!r})"))
    return out


def _rule(rule: sch.Rule, point: dict[str, float]) -> sch.Rule:
    """``rule`` with the trial's decay period and factor (a step or cosine rule)."""
    every = point.get("decay_period", rule.every)
    if rule.kind == "cosine":
        factor = point.get("decay_factor", rule.min_factor)
        return sch.cosine(every, min_factor=factor, unit=rule.unit)
    return sch.step_decay(every, point.get("decay_factor", rule.rate), unit=rule.unit)


def _trial_optimizer(base: opt.Optimizer, point: dict[str, float]) -> opt.Optimizer:
    changes: dict[str, Any] = {
        k: point[k] for k in ("momentum", "eps", "alpha", "weight_decay") if k in point
    }
    if "beta1" in point or "beta2" in point:
        changes["betas"] = (point.get("beta1", base.betas[0]), point.get("beta2", base.betas[1]))
    return dataclasses.replace(base, **changes)


def _trial_schedule(base: sch.Schedule, point: dict[str, float]) -> sch.Schedule:
    changes: dict[str, Any] = {}
    if "warmup" in point:
        changes["warmup"] = int(point["warmup"])
    if "decay_period" in point or "decay_factor" in point:
        changes["lr"] = _rule(base.lr, point)
    return dataclasses.replace(base, **changes)


def expand(
    search_space: SearchSpace,
    points: Any,
    optimizers: Sequence[opt.Optimizer],
    schedules: Sequence[sch.Schedule],
) -> tuple[list[opt.Optimizer], list[sch.Schedule]]:
    """Each trial's optimizers and schedules: the declared ones with the trial's hyperparameters.

    Args:
        search_space: the space.
        points: its trials (:func:`trials`).
        optimizers: the declared optimizers (their other hyperparameters stay as given).
        schedules: the declared schedules (their other rules and settings stay as given).

    Returns:
        ``(optimizers, schedules)``: the optimizer of declared optimizer ``i`` at trial ``t`` is
        at index ``i * n_trials + t``, and likewise the schedules. They keep the declared names,
        so the results group by them; the ``trial`` column tells the trials apart.

    Raises:
        ValueError: ``search.<name>: ...`` for a dimension that does not fit an optimizer or a
            schedule (:func:`mismatches`).

    Example:
        >>> s = space(None, learning_rate=(0.1, 1.0), momentum=(0.5, 0.9), decay_factor=(0.1, 0.5))
        >>> points = trials(s, 2)
        >>> o, sc = expand(s, points, [opt.heavy_ball()], [sch.schedule(sch.step_decay(10))])
        >>> [x.momentum for x in o] == points["momentum"].tolist()
        True
        >>> [x.lr.rate for x in sc] == points["decay_factor"].tolist(), sc[1].lr.every, o[1].name
        (True, 10.0, 'heavy_ball')

    """
    problems = mismatches(search_space, optimizers, schedules)
    if problems:
        raise ValueError(f"{problems[0][0]}: {problems[0][1]}")
    rows = [
        {name: float(points[name].iloc[t]) for name in search_space.names}
        for t in range(len(points))
    ]
    return (
        [_trial_optimizer(o, row) for o in optimizers for row in rows],
        [_trial_schedule(s, row) for s in schedules for row in rows],
    )


def trial_at_edge(frame: Any) -> np.ndarray:
    """Per row of a search's runs: whether its trial point is at the edge of the space.

    A coordinate ``u_<name>`` within :data:`EDGE` (5 %) of 0 or 1, in any dimension.

    Example:
        >>> import pandas as pd
        >>> trial_at_edge(pd.DataFrame({"u_learning_rate": [0.5, 0.97], "u_momentum": [0.02, 0.5]}))
        array([ True,  True])

    """
    names = [c for c in frame.columns if str(c).startswith("u_")]
    if not names:
        raise ValueError(f"a search's runs have u_<name> columns, got {list(frame.columns)}")
    u = frame[names].to_numpy(dtype=float)
    return np.asarray(((u < EDGE) | (u > 1 - EDGE)).any(axis=1))


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
    optimizer: Any = None,
    **sweep_options: Any,
) -> Any:
    """Run ``n_trials`` quasi-random trials at every batch size and seed.

    Args:
        problem: one problem (``critbatch.problems``) or a list.
        search_space: the space (:func:`space`).
        batch_sizes: the batch sizes.
        seeds: replicates per (trial, batch size), or their ids.
        target: the stopping rule.
        n_trials: the trial budget per batch size.
        seed: the sweep seed (trials share their random numbers: common random numbers) and
            the seed of the trials' scrambling.
        method: ``"halton"`` or ``"sobol"`` (see :func:`trials`).
        optimizer: the optimizer whose hyperparameters the trials set (default: the space's
            optimizer kind with its default hyperparameters), or a list.
        **sweep_options: ``schedules`` (the declared schedules, which the schedule dimensions
            set) and the other options of :func:`critbatch.sweep` (``threads``, ``backend``,
            ``device``...).

    Returns:
        A DataFrame: the runs, as :func:`critbatch.sweep` gives them, with ``trial`` and the
        trial's point (its hyperparameters, and ``u_<name>``) as columns.

    """
    from critbatch.plan import make_plan
    from critbatch.sweep import execute

    if optimizer is None:
        if search_space.optimizer is None:
            raise ValueError("optimizer: the search space names no optimizer kind; pass one")
        optimizer = search_space.optimizer
    run = {k: sweep_options.pop(k) for k in ("threads", "backend", "device") if k in sweep_options}
    plan = make_plan(
        problem,
        optimizer,
        batch_sizes,
        None,
        seeds,
        target,
        seed=seed,
        search=Search(search_space, n_trials, method, seed),
        **sweep_options,
    )
    return execute(plan, **run).to_pandas()


def best_trials(
    results: Any,
    search_space: SearchSpace | None = None,
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> Any:
    """K(b) at the best trial per batch size, with a bootstrap interval and the edge status.

    Args:
        results: the runs of a search (:func:`search`, or a stored search: a Results or a sweep
            directory).
        search_space: the space searched (default: the ``u_<name>`` columns of ``results``).
        n_boot: resamples of seeds for the interval (0: none).
        level: the interval's level.
        seed: seed of the resampling.

    Returns:
        A DataFrame, one row per (problem, optimizer, schedule, batch size): those columns,
        ``trial`` (the best), its hyperparameters, ``steps`` (median steps at the best trial;
        inf when not reached by half its runs), ``low``, ``high`` (the percentile interval of
        the same statistic over seed resamples, the choice of the trial redone each time),
        ``all_reached`` and ``at_edge`` (:func:`trial_at_edge`).

    """
    import pandas as pd

    from critbatch.fit.bootstrap import percentile_interval
    from critbatch.tuning import GROUP, as_frame, best_learning_rate

    n_boot = v.nonnegative_int("n_boot", n_boot)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    frame = as_frame(results)
    if "trial" not in frame.columns:
        raise ValueError(f"results are not a search's runs: no column 'trial' in {list(frame)}")
    names = (
        search_space.names
        if search_space is not None
        else tuple(str(c)[2:] for c in frame.columns if str(c).startswith("u_"))
    )
    best = {tuple(row[list(GROUP)]): row for _, row in best_learning_rate(frame).iterrows()}
    samples: dict[tuple[Any, ...], list[float]] = {key: [] for key in best}
    seeds = np.unique(frame["seed"])
    if n_boot and seeds.size >= 2:
        by_seed = {s: frame[frame["seed"] == s] for s in seeds}
        for _ in range(n_boot):
            drawn = rng.choice(seeds, size=seeds.size, replace=True)
            resample = pd.concat([by_seed[s] for s in drawn], ignore_index=True)
            for _, row in best_learning_rate(resample).iterrows():
                samples[tuple(row[list(GROUP)])].append(float(row["steps"]))
    rows = []
    for key, row in best.items():
        interval = (
            percentile_interval(np.asarray(samples[key]), level)
            if len(samples[key]) >= 2
            else (math.nan, math.nan)
        )
        rows.append(
            {
                **dict(zip(GROUP, key, strict=True)),
                "trial": int(row["trial"]),
                **{name: row[name] for name in names},
                "steps": float(row["steps"]),
                "low": interval[0],
                "high": interval[1],
                "all_reached": bool(row["all_reached"]),
                "at_edge": bool(row["lr_at_edge"]),
            }
        )
    return pd.DataFrame(rows)
