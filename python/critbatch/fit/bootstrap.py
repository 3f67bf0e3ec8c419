"""Bootstrap over seeds: percentile confidence intervals for any quantity of a fit.

A resample keeps the design and redraws replicates:

- ``"seeds"``: when every seed id occurs at every batch size (a sweep's replicate ids), draw seed
  ids with replacement and take all runs of each drawn seed (at every batch size and learning rate);
  this keeps any correlation between runs that share a seed.
- ``"within"``: at each batch size, draw that batch size's seed ids with replacement (as many as it
  has) and take their runs (at every learning rate).
- ``"rows"``: without a ``seed`` column, every run is its own unit, redrawn within its
  (batch size, learning rate) cell.

``"auto"`` picks ``"seeds"`` when the seeds are shared and there are at least 2, ``"within"`` when
there is a seed column otherwise, and ``"rows"`` without one. Everything the estimate does
(choosing the best learning rate, excluding diverged runs, the censored fit) is redone on each
resample, so the interval accounts for it. A resample on which the estimate fails (for example, no
2 batch sizes with reached runs) is skipped and counted.

References:
    Efron and Tibshirani 1993, "An Introduction to the Bootstrap", Chapman & Hall, ch. 13
    (percentile intervals); Davison and Hinkley 1997, "Bootstrap Methods and their Application",
    Cambridge University Press, sec. 3.8 (resampling clustered data by whole clusters).

"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from critbatch import _validate as v
from critbatch.fit.table import GroupData

__all__ = [
    "INTERVALS",
    "RESAMPLE_MODES",
    "BootstrapResult",
    "bootstrap",
    "expanded_level",
    "percentile_interval",
    "resolve_mode",
    "units_note",
]

RESAMPLE_MODES = ("auto", "seeds", "within", "rows")
INTERVALS = ("expanded", "percentile")


def percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    r"""Return the equal-tailed percentile interval of bootstrap ``samples`` at ``level``.

    .. math::
        \left[\hat F^{-1}\!\left(\tfrac{1 - \ell}{2}\right),\;
        \hat F^{-1}\!\left(\tfrac{1 + \ell}{2}\right)\right],

    with :math:`\hat F` the empirical distribution of the samples (linear interpolation between
    order statistics) and :math:`\ell` the ``level``.

    Args:
        samples: one bootstrap replicate per entry (infinite entries are kept: enough infinite
            replicates make the interval open-ended; NaN is an error).
        level: the coverage, in (0, 1).

    Returns:
        ``(low, high)``.

    Example:
        >>> import numpy as np
        >>> [round(x, 9) for x in percentile_interval(np.arange(101.0), 0.9)]
        [5.0, 95.0]

    References:
        Efron and Tibshirani 1993, "An Introduction to the Bootstrap", Chapman & Hall, ch. 13.

    """
    level = v.real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    samples = np.sort(np.asarray(samples, dtype=float))
    if samples.size == 0:
        raise ValueError("samples is empty")
    if np.any(np.isnan(samples)):
        raise ValueError("samples holds NaN")
    return _quantile(samples, (1.0 - level) / 2.0), _quantile(samples, (1.0 + level) / 2.0)


def _quantile(ordered: np.ndarray, q: float) -> float:
    """Linear interpolation between order statistics, with infinite replicates kept infinite."""
    position = q * (ordered.size - 1)
    low, high = math.floor(position), math.ceil(position)
    a, b = float(ordered[low]), float(ordered[high])
    if a == b or position == low:
        return a
    if math.isinf(a) or math.isinf(b):
        return b if position - low >= 0.5 else a
    return a + (b - a) * (position - low)


def expanded_level(level: float, n_units: float, df: float) -> float:
    r"""Return the level whose percentile interval is Hesterberg's expanded percentile interval.

    The plain percentile interval is too narrow with few resampled units: the bootstrap variance
    is :math:`(n-1)/n` times the usual estimate, and normal rather than Student quantiles are
    implied. The expanded interval takes the percentiles at level :math:`\ell'` with

    .. math::
        \Phi^{-1}\!\left(\tfrac{1 + \ell'}{2}\right) =
        \sqrt{\tfrac{n}{n - 1}}\; t_{\nu}^{-1}\!\left(\tfrac{1 + \ell}{2}\right),

    :math:`n` the units per stratum (``n_units``) and :math:`\nu` the degrees of freedom (``df``).

    Args:
        level: the nominal coverage :math:`\ell`, in (0, 1).
        n_units: resampled units per stratum (> 1; the harmonic mean when strata differ).
        df: degrees of freedom (total units minus strata, > 0).

    Returns:
        :math:`\ell'` (larger than ``level``, and below 1 even when the expansion saturates).

    Example:
        >>> round(expanded_level(0.9, n_units=6, df=5), 4)
        0.9727

    References:
        Hesterberg 2015, "What teachers should know about the bootstrap: resampling in the
        undergraduate statistics curriculum", The American Statistician 69(4) (the expanded
        percentile interval).

    """
    if not n_units > 1 or not df > 0:
        raise ValueError(f"n_units must exceed 1 and df be positive, got {n_units!r}, {df!r}")
    z = math.sqrt(n_units / (n_units - 1.0)) * stats.t.ppf(0.5 + level / 2.0, df)
    # With very few units the expansion runs past every resample: the interval is then the
    # bootstrap's whole range, so stay just below 1 rather than round to it.
    return min(float(2.0 * stats.norm.cdf(z) - 1.0), 1.0 - 1e-12)


def _shared_seeds(data: GroupData) -> bool:
    assert data.seed is not None
    batches = np.unique(data.batch_size)
    seeds = np.unique(data.seed)
    pairs = np.unique(np.stack([data.batch_size, data.seed.astype(float)]), axis=1)
    return seeds.size >= 2 and pairs.shape[1] == batches.size * seeds.size


def resolve_mode(data: GroupData, mode: str) -> str:
    """Return the resampling mode ``"auto"`` stands for on ``data`` (or check an explicit one)."""
    mode = v.choice("resample", mode, RESAMPLE_MODES)
    if mode == "auto":
        if data.seed is None:
            return "rows"
        return "seeds" if _shared_seeds(data) else "within"
    if mode in ("seeds", "within") and data.seed is None:
        raise ValueError(f"resample={mode!r} needs a 'seed' column, and results has none")
    return mode


def _strata(data: GroupData, mode: str) -> list[list[np.ndarray]]:
    """Return the units (arrays of row indices) of each stratum; a resample redraws per stratum."""
    rows = np.arange(data.batch_size.size)
    if mode == "seeds":
        assert data.seed is not None
        return [[rows[data.seed == s] for s in np.unique(data.seed)]]
    if mode == "within":
        assert data.seed is not None
        strata = []
        for b in np.unique(data.batch_size):
            at_b = data.batch_size == b
            strata.append([rows[at_b & (data.seed == s)] for s in np.unique(data.seed[at_b])])
        return strata
    cells = np.stack(
        [
            data.batch_size,
            data.learning_rate
            if data.learning_rate is not None
            else np.zeros_like(data.batch_size),
        ]
    )
    _, inverse = np.unique(cells, axis=1, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [[np.array([i]) for i in rows[inverse == j]] for j in range(inverse.max() + 1)]


def units_note(data: GroupData, mode: str) -> str:
    """Why a bootstrap over ``data`` in ``mode`` would mislead ("" when it can run).

    A stratum with one unit is redrawn identically in every resample, so its variability never
    enters the interval: with one run per batch size the "interval" would have zero width.
    """
    sizes = [len(units) for units in _strata(data, resolve_mode(data, mode))]
    if min(sizes) < 2:
        return (
            "one run per batch size (or per resampled unit): a resample could only repeat "
            "the data, so no bootstrap interval"
        )
    return ""


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Bootstrap replicates of named quantities and their percentile intervals.

    Attributes:
        samples: name -> array of the replicates that succeeded.
        intervals: name -> ``(low, high)`` percentile interval at ``level``.
        level: the coverage of the intervals.
        mode: the resampling mode used (``"seeds"``, ``"within"`` or ``"rows"``).
        n_boot: the number of resamples drawn.
        n_failed: how many of them the estimate failed on (their replicates are missing).

    """

    samples: dict[str, np.ndarray]
    intervals: dict[str, tuple[float, float]]
    level: float
    mode: str
    n_boot: int
    n_failed: int


def bootstrap(
    data: GroupData,
    estimate: Callable[[GroupData], dict[str, float]],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    resample: str = "auto",
    interval: str = "expanded",
    seed: int | np.random.Generator = 0,
) -> BootstrapResult:
    """Resample the runs of ``data`` by seed and collect percentile intervals of ``estimate``.

    Args:
        data: the runs of one group.
        estimate: maps a resampled group to named numbers; a ``ValueError`` marks a failed
            resample (counted in ``n_failed``).
        n_boot: the number of resamples (>= 1).
        level: the coverage of the intervals, in (0, 1).
        resample: ``"auto"``, ``"seeds"``, ``"within"`` or ``"rows"`` (see the module docstring).
        interval: ``"expanded"`` (percentiles at :func:`expanded_level`, for few units) or
            ``"percentile"`` (plain percentiles at ``level``).
        seed: seed of the resampling stream, or a numpy Generator.

    Returns:
        A :class:`BootstrapResult`.

    Raises:
        ValueError: when the arguments are bad, or when fewer than 2 resamples succeed.

    Example:
        >>> import numpy as np
        >>> from critbatch.fit.table import GroupData
        >>> b = np.repeat([1.0, 2.0], 5)
        >>> data = GroupData((), b, 10.0 / b + np.tile(np.arange(5.0), 2), np.ones(10, bool),
        ...                  np.zeros(10, bool))
        >>> out = bootstrap(data, lambda d: {"mean": float(d.steps.mean())}, n_boot=200, level=0.9)
        >>> out.mode, out.n_failed, bool(out.intervals["mean"][0] < 9.5 < out.intervals["mean"][1])
        ('rows', 0, True)

    References:
        Efron and Tibshirani 1993, "An Introduction to the Bootstrap", Chapman & Hall;
        Davison and Hinkley 1997, "Bootstrap Methods and their Application", sec. 3.8.

    """
    n_boot = v.positive_int("n_boot", n_boot)
    level = v.real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    mode = resolve_mode(data, resample)
    interval = v.choice("interval", interval, INTERVALS)
    rng = (
        seed
        if isinstance(seed, np.random.Generator)
        else np.random.default_rng(v.nonnegative_int("seed", seed))
    )
    strata = _strata(data, mode)
    collected: dict[str, list[float]] = {}
    n_failed = 0
    for _ in range(n_boot):
        parts = []
        for units in strata:
            for k in rng.integers(0, len(units), size=len(units)):
                parts.append(units[k])
        try:
            values = estimate(data.take(np.concatenate(parts)))
        except ValueError:
            n_failed += 1
            continue
        for name, value in values.items():
            collected.setdefault(name, []).append(float(value))
    if n_boot - n_failed < 2:
        raise ValueError(f"n_boot: only {n_boot - n_failed} of {n_boot} resamples gave an estimate")
    samples = {name: np.asarray(values) for name, values in collected.items()}
    used = level
    if interval == "expanded":
        sizes = np.array([len(units) for units in strata], dtype=float)
        if np.all(sizes > 1):
            used = expanded_level(
                level, float(sizes.size / np.sum(1.0 / sizes)), float(np.sum(sizes - 1.0))
            )
    intervals = {name: percentile_interval(s, used) for name, s in samples.items()}
    return BootstrapResult(samples, intervals, level, mode, n_boot, n_failed)
