r"""Comparisons: which law fits (AIC, held-out error), and the ratio of two critical batch sizes.

:func:`compare` fits several laws to the same runs and ranks them by AIC and by leave-one-batch-
size-out cross-validation. :func:`critical_ratio` answers the question the seed papers ask
("does Adam have a larger critical batch size than SGD?") with an interval for the ratio
:math:`\rho = b^\star_A / b^\star_B`, from the joint profile likelihood of the two independent
fits:

.. math::
    \ell(\rho) = \max_{x} \left[\ell_{p,A}(x + \log\rho) + \ell_{p,B}(x)\right],

with :math:`\ell_{p}` each fit's profile log-likelihood as a function of :math:`x = \log b^\star`
(the nuisance parameters are already maximized out in each). The interval is
:math:`\{\rho : 2(\hat\ell_A + \hat\ell_B - \ell(\rho)) \le q\}`, open where a profile does not
close. Runs of the two groups are treated as independent (true unless they share random numbers).

:func:`compare_steps` compares two groups' K(b) (or SFO, or the gradient norm at an equal budget)
batch size by batch size, paired by seed: under common random numbers
(``common_random_numbers=True`` in a sweep) the runs of a seed share their noise, and the paired
interval removes it.

References:
    Akaike 1974, IEEE TAC 19(6); Venzon and Moolgavkar 1988, Applied Statistics 37(1) (profile
    likelihood intervals for a function of the parameters).

"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from critbatch import _validate as v
from critbatch.fit.bootstrap import expanded_level, percentile_interval
from critbatch.fit.fitting import DEFAULT_MODEL, _options, _tune, fit, refit
from critbatch.fit.likelihood import Observations, log_likelihood
from critbatch.fit.models import LAWS
from critbatch.fit.profile import cut_value, profile_fit
from critbatch.fit.result import FitResult
from critbatch.fit.table import (
    GroupData,
    _read,
    group_columns,
    group_data,
    load_table,
    select_best_lr,
)

__all__ = ["Comparison", "Ratio", "compare", "compare_critical", "compare_steps", "critical_ratio"]

#: What :func:`compare_steps` compares per batch size.
STATISTICS = ("ratio", "difference")
#: The columns :func:`compare_steps` reads as the response: the cost to target (steps, SFO), or
#: the gradient norm at the stop (runs stopped by an equal budget).
RESPONSES = ("steps", "sfo", "final_grad_norm", "final_loss")


@dataclass(frozen=True, eq=False)
class Ratio:
    """The ratio of two critical batch sizes, with its profile-likelihood interval.

    Attributes:
        numerator: the numerator's group; denominator: the denominator's group.
        estimate: the ratio of the maximum-likelihood estimates (NaN when either is not finite).
        interval: ``(low, high)`` at ``level``; 0 or inf where the likelihood does not close.
        level: the level.
        conclusive: both critical batch sizes are identified and fit well, and were tuned inside
            the learning-rate grid.
        reasons: why the ratio is inconclusive.
        bootstrap_interval: the paired bootstrap interval over shared seeds (None without one).
        bootstrap_note: why there is none ("" when there is one).

    """

    numerator: tuple[str, ...]
    denominator: tuple[str, ...]
    estimate: float
    interval: tuple[float, float]
    level: float
    conclusive: bool
    reasons: tuple[str, ...]
    bootstrap_interval: tuple[float, float] | None = None
    bootstrap_note: str = "not computed"

    def verdict(self, claim: str = "larger") -> str:
        """Say whether the ratio supports the claim "the numerator is larger" (or "smaller").

        Returns ``"supports"``, ``"contradicts"``, ``"cannot tell"`` (an interval contains 1, or
        the profile and the paired bootstrap intervals disagree) or ``"inconclusive"`` (a side is
        not identified, fits poorly, or was tuned at the grid's edge). Every interval computed
        must exclude 1 on the same side for a verdict either way.
        """
        if claim not in ("larger", "smaller"):
            raise ValueError(f"claim must be 'larger' or 'smaller', got {claim!r}")
        if not self.conclusive:
            return "inconclusive"
        sides = set()
        for interval in (self.interval, self.bootstrap_interval):
            if interval is not None:
                lo, hi = interval
                sides.add("above" if lo > 1.0 else "below" if hi < 1.0 else "contains")
        if sides not in ({"above"}, {"below"}):
            return "cannot tell"
        return "supports" if (sides == {"above"}) == (claim == "larger") else "contradicts"


def _divide(a: float, b: float) -> float:
    """Divide with IEEE semantics (a b* of 0 or inf at a limit of the law gives inf, 0 or NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(a) / np.float64(b))


def _log_profile(f: FitResult) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Each fit's profile as a function of x = log b*, with its values beyond the grid."""
    law = LAWS[f.model]
    crit = np.asarray(
        law.critical_from_beta(f.profile_beta, f.critical, f.overhead, f.reference_batch), float
    )
    with np.errstate(divide="ignore"):
        x = np.log(crit)
    finite = np.isfinite(x)
    ll = f.profile_log_likelihood
    left = float(ll[0])  # the limit below the grid (constant steps, or b_min = 0)
    right = -math.inf if law.name == "rational" else float(ll[-1])
    return x[finite], ll[finite], left, right


def critical_ratio(
    numerator: FitResult, denominator: FitResult, *, level: float | None = None
) -> Ratio:
    """The ratio of two fits' critical batch sizes with its joint profile-likelihood interval.

    Args:
        numerator: a fit (e.g. Adam's).
        denominator: another fit of the same law and definition (e.g. SGD's).
        level: the level (default: the fits' level).

    Returns:
        A :class:`Ratio`.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from critbatch.fit import fit
        >>> b = np.repeat([2.0, 4, 8, 16, 32, 64, 128, 256, 512], 3)
        >>> e = np.random.default_rng(0).normal(0, 0.05, (2, b.size))
        >>> df = pd.DataFrame({"batch_size": np.r_[b, b], "optimizer": ["sgd"] * b.size
        ...     + ["adam"] * b.size, "steps": np.r_[100 * (1 + 8 / b) * np.exp(e[0]),
        ...                                       40 * (1 + 64 / b) * np.exp(e[1])]})
        >>> fits = fit(df, n_boot=0)
        >>> ratio = critical_ratio(fits["adam"], fits["sgd"])
        >>> bool(5 < ratio.estimate < 12), ratio.verdict("larger")
        (True, 'supports')

    """
    if (numerator.model, numerator.critical_definition) != (
        denominator.model,
        denominator.critical_definition,
    ):
        raise ValueError(
            "critical_ratio needs two fits of the same model and definition, got "
            f"{numerator.model!r} and {denominator.model!r}"
        )
    level = numerator.level if level is None else v.real("level", level)
    reasons = []
    for f in (numerator, denominator):
        name = "/".join(f.group) or "the fit"
        if f.status != "identified":
            reasons.append(f"{name}: b* is {f.status.replace('_', ' ')}")
        if f.lr_status == "edge":
            reasons.append(f"{name}: best learning rate at the grid's edge")
    estimate = _divide(numerator.estimate, denominator.estimate)
    if not (math.isfinite(estimate) and estimate > 0):
        estimate = math.nan
    if not numerator.profile_beta.size or not denominator.profile_beta.size:
        return Ratio(
            numerator.group,
            denominator.group,
            estimate,
            (0.0, math.inf),
            level,
            False,
            tuple(reasons) or ("a side could not be fitted",),
        )
    xa, la, la_left, la_right = _log_profile(numerator)
    xb, lb, _, _ = _log_profile(denominator)

    def joint(rho: np.ndarray) -> np.ndarray:
        out = np.empty(rho.size)
        for start in range(0, rho.size, 256):
            r = rho[start : start + 256, None]
            shifted = np.interp(xb[None, :] + r, xa, la, left=la_left, right=la_right)
            out[start : start + 256] = np.max(shifted + lb[None, :], axis=1)
        return out

    best = numerator.log_likelihood + denominator.log_likelihood
    cut = best - cut_value(numerator.n_runs + denominator.n_runs - 2, level) / 2.0
    # a coarse pass over every ratio the grids allow decides openness and where the set lies;
    # a fine pass resolves the narrower of the two intervals a hundred times over
    coarse = np.arange(xa.min() - xb.max(), xa.max() - xb.min() + 0.05, 0.05)
    values = joint(coarse)
    near = np.flatnonzero(values >= cut - 5.0)
    if near.size == 0:
        near = np.array([int(np.argmax(values))])
    widths = [
        math.log(f.interval[1] / f.interval[0])
        for f in (numerator, denominator)
        if 0 < f.interval[0] < f.interval[1] < math.inf
    ]
    step = min([0.01, *(w / 100 for w in widths)])
    fine = np.arange(
        coarse[max(near[0] - 1, 0)], coarse[min(near[-1] + 1, coarse.size - 1)] + step, step
    )
    inside = fine[joint(fine) >= cut]
    open_low = bool(values[0] >= cut)
    open_high = bool(values[-1] >= cut)
    if inside.size == 0:  # a peak narrower than the fine step: keep the estimate
        lo = hi = estimate
    else:
        lo = 0.0 if open_low else float(np.exp(inside[0]))
        hi = math.inf if open_high else float(np.exp(inside[-1]))
    return Ratio(
        numerator.group, denominator.group, estimate, (lo, hi), level, not reasons, tuple(reasons)
    )


@dataclass(frozen=True, eq=False)
class Comparison:
    r"""Several laws fitted to the same runs, ranked by AIC and by held-out error.

    Attributes:
        group: the group's values.
        fits: model name -> :class:`critbatch.fit.FitResult`.
        cv_nll: model name -> mean held-out negative log-likelihood per run (leave one batch size
            out; ``nan`` with fewer than 4 batch sizes).
        best_by_aic: the model with the lowest AIC (ties within 1e-6 go to the earlier model).
        best_by_cv: the model with the lowest ``cv_nll`` (same tie rule).
        families: model name -> family; models of one family (``"inverse"`` and ``"mccandlish"``)
            are the same curve and tie.

    """

    group: tuple[str, ...]
    fits: dict[str, FitResult]
    cv_nll: dict[str, float]
    best_by_aic: str
    best_by_cv: str
    families: dict[str, str]

    def summary(self) -> str:
        """Return a plain-text table of the comparison."""
        lines = [f"{'model':<12}{'family':<10}{'AIC':>11}{'cv_nll':>10}  status, b*"]
        for name, f in self.fits.items():
            lines.append(
                f"{name:<12}{self.families[name]:<10}{f.aic:>11.3f}"
                f"{self.cv_nll[name]:>10.4f}  {f.status}, {f.critical_text()}"
            )
        lines.append(f"best by AIC: {self.best_by_aic}; best by held-out error: {self.best_by_cv}")
        return "\n".join(lines)


def _held_out_nll(
    obs: Observations, law_name: str, location: float, beta: float, log_sigma: float
) -> float:
    mu = LAWS[law_name].log_steps(location, beta, obs.b)
    value = -log_likelihood(obs, mu, log_sigma)
    return value if math.isfinite(value) else math.inf


def _cross_validate(obs: Observations, law_name: str) -> float:
    sizes = np.unique(obs.b)
    if sizes.size < 4:
        return math.nan
    total, n = 0.0, 0
    for size in sizes:
        test = obs.b == size
        try:
            refit = profile_fit(LAWS[law_name], obs.take(np.flatnonzero(~test)), level=None)
        except ValueError:
            return math.nan
        total += _held_out_nll(
            obs.take(np.flatnonzero(test)), law_name, refit.location, refit.beta, refit.log_sigma
        )
        n += int(test.sum())
    return total / n


def _best(scores: dict[str, float]) -> str:
    finite = {k: s for k, s in scores.items() if not math.isnan(s)}
    if not finite:
        return next(iter(scores))
    low = min(finite.values())
    tol = 1e-6 * max(1.0, abs(low)) if math.isfinite(low) else 0.0
    return next(k for k, s in finite.items() if s <= low + tol)


def compare(
    results: Any,
    models: Sequence[str] = ("mccandlish", "rational"),
    **kwargs: Any,
) -> dict[tuple[str, ...], Comparison]:
    r"""Fit several laws to the same runs and rank them by AIC and by held-out error.

    The held-out error is leave-one-batch-size-out cross-validation: each batch size in turn is
    left out, the law is refitted on the others, and the left-out runs are scored by the censored
    negative log-likelihood under the refitted law. ``"inverse"`` and ``"mccandlish"`` are one
    curve: they tie, and the tie goes to the one listed first.

    Args:
        results: as in :func:`critbatch.fit.fit`.
        models: names of the laws to compare.
        **kwargs: passed to :func:`critbatch.fit.fit` (``n_boot`` defaults to 0 here; run
            weights are not used by the cross-validation).

    Returns:
        A dict from the group's values (as the keys of :class:`critbatch.fit.Fits`) to a
        :class:`Comparison`.

    Example:
        >>> import numpy as np, pandas as pd
        >>> b = np.repeat([6.0, 8, 12, 16, 24, 32, 64], 3)
        >>> noise = np.random.default_rng(1).normal(0.0, 0.02, b.size)
        >>> df = pd.DataFrame({"batch_size": b, "steps": 100 * b / (b - 5) * np.exp(noise)})
        >>> c = compare(df, ["inverse", "rational"])[()]
        >>> c.best_by_aic, c.best_by_cv
        ('rational', 'rational')

    References:
        Akaike 1974, "A new look at the statistical model identification", IEEE TAC 19(6).

    """
    if isinstance(models, str) or not models:
        raise ValueError(f"models must be a non-empty list of model names, got {models!r}")
    for name in models:
        v.choice("models", name, tuple(LAWS))
    kwargs.setdefault("n_boot", 0)
    per_model = {name: fit(results, name, **kwargs) for name in models}
    out = {}
    for key, first in per_model[models[0]].items():
        fits = {name: per_model[name][key] for name in models}
        # the runs each law was fitted to (the same runs for every law)
        obs = Observations.from_runs(
            first.batch_size, first.steps, first.censored, check_every=first.check_every
        )
        cv = {
            name: _cross_validate(obs, name) if first.profile_beta.size else math.nan
            for name in models
        }
        out[key] = Comparison(
            group=key,
            fits=fits,
            cv_nll=cv,
            best_by_aic=_best({n: f.aic for n, f in fits.items()}),
            best_by_cv=_best(cv),
            families={n: LAWS[n].family for n in models},
        )
    return out


def _paired_bootstrap(
    a: GroupData, b: GroupData, opts: Any, n_boot: int, level: float, seed: int
) -> tuple[tuple[float, float] | None, str]:
    """Resample seed ids shared by both groups; refit both on each resample; ratio percentiles."""
    if a.seed is None or b.seed is None:
        return None, "no seed column: no paired bootstrap"
    shared = np.intersect1d(a.seed_ids, b.seed_ids)
    if shared.size < 2:
        return None, "fewer than 2 seed ids shared by both groups: no paired bootstrap"
    tune_a, tune_b = _tune(a, opts.tune_lr), _tune(b, opts.tune_lr)
    rows_a = {s: np.flatnonzero(a.seed_ids == s) for s in shared}
    rows_b = {s: np.flatnonzero(b.seed_ids == s) for s in shared}
    rng = np.random.default_rng([seed, 7])
    ratios, failed = [], 0
    for _ in range(n_boot):
        drawn = rng.choice(shared, size=shared.size, replace=True)
        try:
            top = refit(a.take(np.concatenate([rows_a[s] for s in drawn])), tune_a, opts)
            bottom = refit(b.take(np.concatenate([rows_b[s] for s in drawn])), tune_b, opts)
        except ValueError:
            failed += 1
            continue
        ratios.append(_divide(top["critical_batch_size"], bottom["critical_batch_size"]))
    values = np.asarray(ratios, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None, f"only {values.size} of {n_boot} paired resamples gave a ratio"
    used = expanded_level(level, float(shared.size), float(shared.size - 1))
    note = f"{failed} of {n_boot} paired resamples failed" if failed else ""
    return percentile_interval(values, used), note


def compare_critical(
    results: Any,
    numerator: Sequence[str] | str,
    denominator: Sequence[str] | str,
    *,
    model: str = DEFAULT_MODEL,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    by: Sequence[str] | None = None,
    **options: Any,
) -> Ratio:
    r"""The ratio of two groups' critical batch sizes, with a paired bootstrap over shared seeds.

    The profile-likelihood interval of :func:`critical_ratio` treats the groups as independent.
    When the runs of both groups carry the same seed ids (the replicates of a sweep, which share
    their random numbers when the sweep uses common random numbers), the bootstrap here draws
    seed ids with replacement *once per resample for both groups* and refits both from scratch
    (learning-rate choice included), so any correlation between runs of one seed is kept
    (Davison and Hinkley 1997, sec. 3.8). Its expanded percentile interval (Hesterberg 2015) is
    reported beside the profile interval, and :meth:`Ratio.verdict` needs both to agree.

    Args:
        results: as in :func:`critbatch.fit.fit`.
        numerator: the numerator group's values (a tuple in the order of ``by``, or a string
            for one group column), e.g. ``("nqm", "adam", "constant")``.
        denominator: the denominator group's values.
        model: the law.
        n_boot: paired resamples (0: the profile interval only).
        level: the level of both intervals.
        seed: seed of the resampling stream.
        by: the group columns (as in :func:`critbatch.fit.fit`).
        **options: the other options of :func:`critbatch.fit.fit` (``critical``, ``tune_lr``,
            ...).

    Returns:
        A :class:`Ratio`.

    Example:
        >>> import numpy as np, pandas as pd
        >>> b = np.repeat([2.0, 4, 8, 16, 32, 64, 128, 256, 512], 4)
        >>> e = np.random.default_rng(0).normal(0, 0.05, (2, b.size))
        >>> seeds = np.tile(np.arange(4), 9)
        >>> df = pd.DataFrame({"batch_size": np.r_[b, b], "seed": np.r_[seeds, seeds],
        ...     "optimizer": ["sgd"] * b.size + ["adam"] * b.size,
        ...     "steps": np.r_[100 * (1 + 8 / b) * np.exp(e[0]), 40 * (1 + 64 / b) * np.exp(e[1])]})
        >>> ratio = compare_critical(df, "adam", "sgd", n_boot=100)
        >>> ratio.verdict("larger"), ratio.bootstrap_interval is not None
        ('supports', True)

    """
    fits = fit(results, model, n_boot=0, level=level, by=by, **options)
    top, bottom = fits[numerator], fits[denominator]
    ratio = critical_ratio(top, bottom)
    if not v.nonnegative_int("n_boot", n_boot):
        return ratio
    table = load_table(
        results,
        columns=options.get("columns"),
        response=options.get("response", "steps"),
        allow_partial=options.get("allow_partial", False),
    )
    groups = {g.key: g for g in group_data(table, group_columns(table, fits.by))}
    # the options the fits were made with (defaults resolved by fit itself), resampled here
    opts = _options(**{**fits.options, "n_boot": 0, "seed": seed})
    interval, note = _paired_bootstrap(
        groups[top.group], groups[bottom.group], opts, n_boot, level, seed
    )
    return Ratio(
        ratio.numerator,
        ratio.denominator,
        ratio.estimate,
        ratio.interval,
        level,
        ratio.conclusive,
        ratio.reasons,
        interval,
        note,
    )


def _lr_rows(data: GroupData, learning_rate: Any, b: float) -> np.ndarray:
    """The rows of ``data`` at batch size ``b`` and its learning rate (best, or the one given)."""
    at_b = data.batch_size == b
    if data.learning_rate is None:
        return np.flatnonzero(at_b)
    if learning_rate == "best":
        best, _ = select_best_lr(data)
        return np.flatnonzero(at_b & best)
    return np.flatnonzero(at_b & np.isclose(data.learning_rate, learning_rate, rtol=1e-12))


def _interval(values: np.ndarray, level: float) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent values (NaN with fewer than 2)."""
    if values.size < 2:
        return (float(values.mean()) if values.size else math.nan), math.nan, math.nan
    mean = float(values.mean())
    half = float(
        stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    )
    return mean, mean - half, mean + half


def _welch(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float]:
    """Difference of means and its Welch interval (NaN with fewer than 2 runs a side)."""
    if a.size < 2 or b.size < 2:
        return float(a.mean() - b.mean()) if a.size and b.size else math.nan, math.nan, math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else 1.0
    est = float(a.mean() - b.mean())
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return est, est - half, est + half


def compare_steps(
    results: Any,
    numerator: Sequence[str] | str,
    denominator: Sequence[str] | str,
    *,
    response: str = "steps",
    statistic: str = "ratio",
    paired: bool = True,
    learning_rate: Any = "best",
    level: float = 0.95,
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    r"""Compare two groups' steps to target K(b) (or SFO) at each batch size, with intervals.

    At each batch size both groups ran, the runs of each group at its learning rate (the best
    one per batch size, :func:`critbatch.fit.best_learning_rate`'s rule, or the value given)
    are compared by ``statistic``:

    * ``"ratio"``: the ratio of geometric means :math:`\exp(\overline{\log K_A} -
      \overline{\log K_B})` (K is compared on the log scale the laws are fitted on);
    * ``"difference"``: the difference of means :math:`ar K_A - ar K_B`.

    ``paired=True`` pairs the runs of the two groups by seed id (the replicate): the interval
    is the Student-t interval of the per-seed differences :math:`d_s = g(K_{A,s}) - g(K_{B,s})`
    (:math:`g = \log` for a ratio), so noise the two runs of a seed share cancels. That is what
    a sweep with ``common_random_numbers = true`` gives: runs that differ only in optimizer,
    schedule or learning rate see the same gradient noise and minibatches, and the paired
    interval is narrower than the unpaired one. ``paired=False`` treats the groups as
    independent (Welch's interval), which is right without common random numbers.

    A run that did not reach its target (or diverged) has no K: it is left out, with its
    partner when paired, and counted in ``n_unreached``. ``response="final_grad_norm"`` or
    ``"final_loss"`` compares the gradient norm or the loss at the stop instead, over every run
    that did not diverge: the comparison at an equal budget (``target.max_sfo``, where every
    run stops at the same SFO to one batch); the values must be positive, as K is.

    Args:
        results: a :class:`critbatch.results.Results`, DataFrame or path (as in
            :func:`critbatch.fit.fit`), with a ``seed`` column when ``paired``.
        numerator: the numerator group's values (a tuple in the order of ``by``, or a string
            for one group column), e.g. ``("nqm", "adam", "constant")``.
        denominator: the denominator group's values.
        response: ``"steps"`` (K), ``"sfo"`` (the SFO to target, :math:`\sum_t b_t`),
            ``"final_grad_norm"`` or ``"final_loss"`` (at the stop).
        statistic: ``"ratio"`` or ``"difference"``.
        paired: pair runs by seed id (needs shared seed ids).
        learning_rate: ``"best"`` (per group and batch size) or one learning rate for both.
        level: the interval's level.
        by: the group columns (default: every group column present, as in ``fit``).

    Returns:
        A DataFrame, one row per batch size both groups ran: ``batch_size``,
        ``learning_rate_numerator``, ``learning_rate_denominator``, ``numerator`` and
        ``denominator`` (the geometric means for a ratio, the means for a difference),
        ``estimate``, ``low``, ``high``, ``n`` (pairs, or runs of the smaller side),
        ``n_unreached``, ``paired``.

    Raises:
        ValueError: an unknown group, statistic or response; ``paired`` without seed ids; a
            response that is not positive for every run that did not diverge.

    Example:
        >>> import numpy as np, pandas as pd
        >>> shared, own = np.random.default_rng(1).normal(0, [[0.3], [0.03]], (2, 8))
        >>> df = pd.DataFrame({"batch_size": 4, "seed": np.tile(np.arange(8), 2),
        ...                    "optimizer": ["sgd"] * 8 + ["adam"] * 8,
        ...                    "steps": np.r_[100 * np.exp(shared), 50 * np.exp(shared + own)]})
        >>> row = compare_steps(df, "adam", "sgd").iloc[0]       # noise of a seed shared
        >>> bool(row["low"] < 0.5 < row["high"]), round(float(row["high"] / row["low"]), 2)
        (True, 1.02)
        >>> row = compare_steps(df, "adam", "sgd", paired=False).iloc[0]
        >>> round(float(row["high"] / row["low"]), 2)     # unpaired: the shared noise stays
        1.61

    """
    statistic = v.choice("statistic", statistic, STATISTICS)
    response = v.choice("response", response, RESPONSES)
    level = v.in_range("level", level, 0.0, 1.0)
    if not isinstance(paired, bool):
        raise TypeError(f"paired must be a bool, got {type(paired).__name__}")
    if response != "steps":
        raw = _read(results)
        if response not in raw.columns:
            raise ValueError(
                f"response={response!r} needs a column {response!r} (columns: {list(raw.columns)})"
            )
        results = raw.drop(columns=["steps"], errors="ignore").rename(columns={response: "steps"})
    at_stop = response in ("final_grad_norm", "final_loss")
    table = load_table(results, steps_label=f"response={response!r}")
    cols = group_columns(table, by)
    groups = {g.key: g for g in group_data(table, cols)}

    def key_of(value: Sequence[str] | str, name: str) -> tuple[str, ...]:
        key = (value,) if isinstance(value, str) else tuple(str(x) for x in value)
        if key not in groups:
            raise ValueError(
                f"{name} {key!r} is not a group of results (groups by {cols}: {sorted(groups)})"
            )
        return key

    a, b = groups[key_of(numerator, "numerator")], groups[key_of(denominator, "denominator")]
    if paired and (a.seed is None or b.seed is None):
        raise ValueError("paired=True needs a 'seed' column to pair runs by; use paired=False")
    g = np.log if statistic == "ratio" else (lambda x: x)
    rows = []
    for size in np.intersect1d(np.unique(a.batch_size), np.unique(b.batch_size)):
        ra, rb = _lr_rows(a, learning_rate, size), _lr_rows(b, learning_rate, size)
        ok_a = (at_stop | a.reached[ra]) & ~a.diverged[ra]
        ok_b = (at_stop | b.reached[rb]) & ~b.diverged[rb]
        if paired:
            sa = dict(
                zip(a.seed_ids[ra].tolist(), zip(a.steps[ra], ok_a, strict=True), strict=True)
            )
            sb = dict(
                zip(b.seed_ids[rb].tolist(), zip(b.steps[rb], ok_b, strict=True), strict=True)
            )
            shared = sorted(set(sa) & set(sb))
            kept = [s for s in shared if sa[s][1] and sb[s][1]]
            ka = np.array([sa[s][0] for s in kept], dtype=float)
            kb = np.array([sb[s][0] for s in kept], dtype=float)
            est, low, high = _interval(g(ka) - g(kb), level)
            n, unreached = len(kept), len(shared) - len(kept)
        else:
            ka, kb = a.steps[ra][ok_a].astype(float), b.steps[rb][ok_b].astype(float)
            est, low, high = _welch(g(ka), g(kb), level)
            n, unreached = min(ka.size, kb.size), int((~ok_a).sum() + (~ok_b).sum())
        mean_a = float(np.mean(g(ka))) if ka.size else math.nan
        mean_b = float(np.mean(g(kb))) if kb.size else math.nan
        if statistic == "ratio":
            est, low, high = math.exp(est), math.exp(low), math.exp(high)
            mean_a, mean_b = math.exp(mean_a), math.exp(mean_b)
        lr_a = a.learning_rate[ra][0] if a.learning_rate is not None and ra.size else math.nan
        lr_b = b.learning_rate[rb][0] if b.learning_rate is not None and rb.size else math.nan
        rows.append(
            {
                "batch_size": float(size),
                "learning_rate_numerator": float(lr_a),
                "learning_rate_denominator": float(lr_b),
                "numerator": mean_a,
                "denominator": mean_b,
                "estimate": est,
                "low": low,
                "high": high,
                "n": n,
                "n_unreached": unreached,
                "paired": paired,
            }
        )
    return pd.DataFrame(rows)
