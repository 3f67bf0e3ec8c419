r"""The one fitting path: :func:`fit` turns runs into critical batch sizes, status, intervals.

The API, the CLI (``fit``, ``plot``, ``report``), the crosscheck and the examples all call
:func:`fit`, so the same data and seed give the same numbers everywhere. For each group of runs
(each combination of the ``problem``, ``optimizer`` and ``schedule`` values, or the columns in
``by``):

1. the learning rate is chosen per batch size when several were swept
   (:func:`critbatch.fit.table.select_best_lr`, the same rule as :mod:`critbatch.tuning`), and
   whether the choice sits at the edge of the learning-rate grid is recorded;
2. diverged runs are left out (they say nothing about K) and counted; runs that never reached the
   target are right-censored at their budget; runs that reached it at a check every ``m > 1``
   steps are interval-censored to the last ``m`` steps (:mod:`critbatch.fit.likelihood`);
3. the law is fitted through the profile likelihood of its shape parameter, which gives the
   estimate, an interval that is open where the data do not bound it, and the status
   (:mod:`critbatch.fit.profile`, :mod:`critbatch.fit.result`);
4. the law is tested against the replicate spread (:mod:`critbatch.fit.lack_of_fit`);
5. with replicates, a bootstrap over seeds refits everything (the learning-rate choice included)
   from scratch on each resample (:mod:`critbatch.fit.bootstrap`).

The default law is McCandlish et al. (2018)'s :math:`S(B) = S_{\min}(1 + B_{\text{noise}}/B)`:
at the best learning rate per batch size, steps fall as :math:`1/b` at small batch sizes (perfect
scaling, Shallue et al. 2019), which this law has and the rational law (a pole below which no
batch size reaches the target, the shape at one fixed learning rate) does not.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.fit.bootstrap import INTERVALS, RESAMPLE_MODES, bootstrap, units_note
from critbatch.fit.lack_of_fit import LackOfFit, lack_of_fit
from critbatch.fit.likelihood import Observations
from critbatch.fit.models import LAWS, Law
from critbatch.fit.profile import ProfileFit, profile_fit
from critbatch.fit.result import LACK_OF_FIT_LEVEL, FitResult, Fits
from critbatch.fit.table import (
    GroupData,
    group_columns,
    group_data,
    load_table,
    select_best_lr,
    source_check_every,
)

__all__ = ["CENSORING", "CRITICAL", "DEFAULT_MODEL", "fit"]

DEFAULT_MODEL = "mccandlish"
CENSORING = ("likelihood", "drop")
CRITICAL = ("knee", "overhead")
_FITS_DIR = "_fits"


@dataclass(frozen=True)
class _Options:
    law: Law
    critical: str
    overhead: float
    reference_batch: float
    tune_lr: bool | None
    require_all_reached: bool
    censoring: str
    check_every: int | None
    n_boot: int
    level: float
    resample: str
    interval: str
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.law.name,
            "critical": self.critical,
            "overhead": self.overhead,
            "reference_batch": self.reference_batch,
            "tune_lr": self.tune_lr,
            "require_all_reached": self.require_all_reached,
            "censoring": self.censoring,
            "check_every": self.check_every,
            "n_boot": self.n_boot,
            "level": self.level,
            "resample": self.resample,
            "interval": self.interval,
            "seed": self.seed,
        }


@dataclass(frozen=True, eq=False)
class _Prepared:
    b: np.ndarray
    steps: np.ndarray
    censored: np.ndarray
    weight: np.ndarray | None
    excluded_by_batch: dict[float, int]
    learning_rates: dict[float, float] | None


def _counts(b: np.ndarray, mask: np.ndarray) -> dict[float, int]:
    return {float(x): int(np.sum(mask & (b == x))) for x in np.unique(b)}


def _tune(data: GroupData, tune_lr: bool | None) -> bool:
    needs = data.needs_lr_choice()
    if tune_lr is None:
        return needs
    if tune_lr and data.learning_rate is None:
        raise ValueError("tune_lr=True needs a 'learning_rate' column, and results has none")
    if not tune_lr and needs:
        raise ValueError(
            "tune_lr=False but column 'learning_rate' has several values at one "
            "batch size: pass tune_lr=True (or None) or keep one learning rate per "
            "batch size"
        )
    return tune_lr


def _prepare(data: GroupData, tune: bool, opts: _Options) -> _Prepared:
    """Choose the learning rate (if asked) and leave out diverged runs."""
    chosen = None
    if tune:
        mask, chosen = select_best_lr(data, require_all_reached=opts.require_all_reached)
        data = data.take(np.flatnonzero(mask))
    keep = ~data.diverged
    censored = ~data.reached[keep]
    if opts.censoring == "drop":
        keep = keep & data.reached
        censored = np.zeros(int(keep.sum()), bool)
    return _Prepared(
        b=data.batch_size[keep],
        steps=data.steps[keep],
        censored=censored,
        weight=None if data.weight is None else data.weight[keep],
        excluded_by_batch=_counts(data.batch_size, data.diverged),
        learning_rates=chosen,
    )


def _observations(prep: _Prepared, opts: _Options) -> Observations:
    return Observations.from_runs(
        prep.b, prep.steps, prep.censored, check_every=opts.check_every or 1, weight=prep.weight
    )


def _lr_status(data: GroupData, chosen: dict[float, float] | None) -> tuple[str, tuple[float, ...]]:
    if chosen is None or data.learning_rate is None:
        return "fixed", ()
    edges = []
    for b, lr in sorted(chosen.items()):
        tried = np.unique(data.learning_rate[data.batch_size == b])
        if data.trial_at_edge is not None:  # a search: the edge of its space, any dimension
            at = (data.batch_size == b) & (data.learning_rate == lr)
            if data.trial_at_edge[at].any():
                edges.append(b)
        elif tried.size > 1 and lr in (tried[0], tried[-1]):
            edges.append(b)
    return ("edge" if edges else "interior"), tuple(edges)


def _classify(
    law: Law,
    pf: ProfileFit,
    estimate: float,
    batch_range: tuple[float, float],
    lof: LackOfFit,
    opts: _Options,
) -> tuple[str, list[str]]:
    """Return the status and the reasons for it (see :mod:`critbatch.fit.result`)."""
    lo_b, hi_b = batch_range
    if not pf.converged:
        return "not_identified", ["the likelihood maximization did not converge"]
    if law.name == "rational" and pf.open_high:
        return "not_identified", [
            "b_min reaches its bound, the smallest batch size that reached "
            "the target: the pole is not located"
        ]
    if pf.open_low and pf.open_high:
        return "not_identified", [
            "the profile likelihood is flat: the data bound b* on neither side"
        ]
    if pf.open_high or estimate > hi_b:
        return "above_grid", [
            f"b·K(b) is still falling or flat at the largest batch size "
            f"({hi_b:g}): b* lies beyond the grid"
        ]
    if pf.open_low or estimate < lo_b:
        return "below_grid", [f"the estimate lies below the smallest batch size ({lo_b:g})"]
    if lof.p_value < LACK_OF_FIT_LEVEL:
        return "poor_fit", [
            f"the lack-of-fit test rejects the {law.name} law against the "
            f"replicate spread (p = {lof.p_value:.2g}, {lof.dof} dof)"
        ]
    return "identified", []


def _interval(law: Law, pf: ProfileFit, opts: _Options) -> tuple[float, float]:
    assert pf.interval is not None
    lo, hi = (
        float(law.critical_from_beta(x, opts.critical, opts.overhead, opts.reference_batch))
        for x in pf.interval
    )
    if pf.open_low:
        lo = 0.0
    if pf.open_high:
        hi = math.inf
    return lo, hi


def _reported_interval(interval: tuple[float, float], status: str) -> tuple[float, float]:
    """Open the side beyond the grid: a bound there would rest on the law's extrapolation only."""
    if status == "above_grid":
        return interval[0], math.inf
    if status == "below_grid":
        return 0.0, interval[1]
    return interval


def refit(data: GroupData, tune: bool, opts: _Options) -> dict[str, float]:
    """Refit one (resampled) group from scratch: the learning-rate choice, then the profile fit.

    Returns the critical batch size (``inf`` or 0 at a limit of the law) and the fit
    coordinates; raises ValueError when the law cannot be fitted (a failed resample).
    """
    prep = _prepare(data, tune, opts)
    fitted = profile_fit(opts.law, _observations(prep, opts), level=None)
    return {
        "critical_batch_size": float(
            opts.law.critical_from_beta(
                fitted.beta, opts.critical, opts.overhead, opts.reference_batch
            )
        ),
        "location": fitted.location,
        "beta": fitted.beta,
    }


def _unfitted(
    data: GroupData, prep: _Prepared, opts: _Options, by: tuple[str, ...], reason: str
) -> FitResult:
    """The result of a group the law cannot be fitted to: not identified, with the reason."""
    nan = math.nan
    b = prep.b
    empty = np.zeros(0)
    return FitResult(
        model=opts.law.name,
        group=data.key,
        group_columns=by,
        status="not_identified",
        reasons=(reason,),
        critical=opts.critical,
        critical_definition=opts.law.critical_definition,
        overhead=opts.overhead,
        reference_batch=opts.reference_batch,
        critical_batch_size=nan,
        estimate=nan,
        interval=(0.0, math.inf),
        level=opts.level,
        batch_range=(float(b.min()), float(b.max())) if b.size else (nan, nan),
        bootstrap_interval=None,
        bootstrap_note="no fit",
        n_boot=0,
        n_boot_failed=0,
        resample="none",
        params={name: nan for name in opts.law.param_names},
        location=nan,
        beta=nan,
        sigma=nan,
        log_likelihood=nan,
        aic=nan,
        bic=nan,
        r2_log=nan,
        lack_of_fit_p=nan,
        lack_of_fit_note="no fit",
        converged=False,
        lr_status=_lr_status(data, prep.learning_rates)[0],
        lr_edge_batch_sizes=(),
        learning_rates=prep.learning_rates,
        n_runs=int(b.size),
        n_censored=int(prep.censored.sum()),
        n_excluded=sum(prep.excluded_by_batch.values()),
        censored_by_batch=_counts(b, prep.censored),
        excluded_by_batch=prep.excluded_by_batch,
        censoring=opts.censoring,
        check_every=opts.check_every or 1,
        batch_size=b,
        steps=prep.steps,
        censored=prep.censored,
        residuals=np.full(b.size, nan),
        profile_beta=empty,
        profile_log_likelihood=empty,
        bootstrap_samples={},
    )


def _fit_group(data: GroupData, opts: _Options, index: int, by: tuple[str, ...]) -> FitResult:
    law = opts.law
    tune = _tune(data, opts.tune_lr)
    prep = _prepare(data, tune, opts)
    obs = _observations(prep, opts)
    try:
        pf = profile_fit(law, obs, level=opts.level)
    except ValueError as err:
        return _unfitted(data, prep, opts, by, str(err))
    batch_range = (float(prep.b.min()), float(prep.b.max()))
    estimate = float(
        law.critical_from_beta(pf.beta, opts.critical, opts.overhead, opts.reference_batch)
    )
    lof = lack_of_fit(obs, pf.log_likelihood)
    status, reasons = _classify(law, pf, estimate, batch_range, lof, opts)
    if lof.note:
        reasons.append(f"lack of fit not tested: {lof.note}")
    lr_status, edges = _lr_status(data, prep.learning_rates)
    if edges:
        reasons.append(
            (
                "the best learning rate is at the edge of the grid"
                if data.trial_at_edge is None
                else "the best trial is at the edge of the search space"
            )
            + " at b = "
            + ", ".join(f"{b:g}" for b in edges)
        )
    boot_interval, samples, n_failed, mode = None, {}, 0, "none"
    note = "" if opts.n_boot else "not requested (n_boot=0)"
    if opts.n_boot:
        note = units_note(data, opts.resample)
    if opts.n_boot and not note:

        def estimate_of(sample: GroupData) -> dict[str, float]:
            return refit(sample, tune, opts)

        try:
            boot = bootstrap(
                data,
                estimate_of,
                n_boot=opts.n_boot,
                level=opts.level,
                resample=opts.resample,
                interval=opts.interval,
                seed=np.random.default_rng([opts.seed, index]),
            )
        except ValueError as err:
            note = f"failed: {err}"
        else:
            boot_interval = boot.intervals["critical_batch_size"]
            samples, n_failed, mode = boot.samples, boot.n_failed, boot.mode
            if n_failed:
                reasons.append(f"{n_failed} of {opts.n_boot} bootstrap resamples failed to fit")
    mu = law.log_steps(pf.location, pf.beta, obs.b)
    y = np.log(prep.steps)
    residuals = y - mu
    reached = ~prep.censored
    ss_tot = float(np.sum((y[reached] - y[reached].mean()) ** 2))
    r2 = 1.0 - float(np.sum(residuals[reached] ** 2)) / ss_tot if ss_tot > 0 else math.nan
    k = 3
    return FitResult(
        model=law.name,
        group=data.key,
        group_columns=by,
        status=status,
        reasons=tuple(reasons),
        critical=opts.critical,
        critical_definition=(
            law.critical_definition
            if opts.critical == "knee"
            else f"the batch size at {100 * opts.overhead:g}% more steps than linear "
            f"scaling from b = {opts.reference_batch:g} (Zhang et al. 2024)"
        ),
        overhead=opts.overhead,
        reference_batch=opts.reference_batch,
        critical_batch_size=estimate if status in ("identified", "poor_fit") else math.nan,
        estimate=estimate,
        interval=_reported_interval(_interval(law, pf, opts), status),
        level=opts.level,
        batch_range=batch_range,
        bootstrap_interval=boot_interval,
        bootstrap_note=note,
        n_boot=opts.n_boot if boot_interval is not None else 0,
        n_boot_failed=n_failed,
        resample=mode,
        params=law.params_at(pf.location, pf.beta),
        location=pf.location,
        beta=pf.beta,
        sigma=math.exp(pf.log_sigma),
        log_likelihood=pf.log_likelihood,
        aic=2 * k - 2 * pf.log_likelihood,
        bic=k * math.log(obs.n) - 2 * pf.log_likelihood,
        r2_log=r2,
        lack_of_fit_p=lof.p_value,
        lack_of_fit_note=lof.note,
        converged=pf.converged,
        lr_status=lr_status,
        lr_edge_batch_sizes=edges,
        learning_rates=prep.learning_rates,
        n_runs=obs.n,
        n_censored=int(prep.censored.sum()),
        n_excluded=sum(prep.excluded_by_batch.values()),
        censored_by_batch=_counts(prep.b, prep.censored),
        excluded_by_batch=prep.excluded_by_batch,
        censoring=opts.censoring,
        check_every=opts.check_every or 1,
        batch_size=prep.b,
        steps=prep.steps,
        censored=prep.censored,
        residuals=residuals,
        profile_beta=pf.grid,
        profile_log_likelihood=pf.profile,
        bootstrap_samples=samples,
    )


def _options(
    model: str,
    critical: str,
    overhead: Any,
    reference_batch: Any,
    tune_lr: Any,
    require_all_reached: Any,
    censoring: str,
    check_every: Any,
    n_boot: Any,
    level: Any,
    resample: str,
    interval: str,
    seed: Any,
) -> _Options:
    v.choice("model", model, tuple(LAWS))
    if tune_lr is not None and not isinstance(tune_lr, bool):
        raise TypeError(f"tune_lr must be True, False or None, got {tune_lr!r}")
    if not isinstance(require_all_reached, bool):
        raise TypeError(f"require_all_reached must be a bool, got {require_all_reached!r}")
    level = v.real("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    opts = _Options(
        law=LAWS[model],
        critical=v.choice("critical", critical, CRITICAL),
        overhead=v.positive("overhead", overhead),
        reference_batch=v.nonnegative("reference_batch", reference_batch),
        tune_lr=tune_lr,
        require_all_reached=require_all_reached,
        censoring=v.choice("censoring", censoring, CENSORING),
        check_every=None if check_every is None else v.positive_int("check_every", check_every),
        n_boot=v.nonnegative_int("n_boot", n_boot),
        level=level,
        resample=v.choice("resample", resample, RESAMPLE_MODES),
        interval=v.choice("interval", interval, INTERVALS),
        seed=v.nonnegative_int("seed", seed),
    )
    opts.law.critical_from_beta(0.0, opts.critical, opts.overhead, opts.reference_batch)
    return opts


def _cache_path(results: Any, opts: _Options, by: Any, columns: Any, response: str) -> Path | None:
    """Where the fits of a sweep directory are kept (None for other inputs)."""
    from critbatch.store import MANIFEST

    if not isinstance(results, str | os.PathLike):
        return None
    out = Path(results)
    manifest = out / MANIFEST
    if not manifest.is_file():
        return None
    chunks = sorted((p.name, p.stat().st_size) for p in out.glob("chunk-*.parquet"))
    from critbatch import __version__

    # the version too: a fit made by other code is not reused, even on the same runs
    key = json.dumps(
        [opts.as_dict(), by, columns, response, manifest.read_text("utf-8"), chunks, __version__],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return out / _FITS_DIR / f"{opts.law.name}-{digest}.json"


def fit(
    results: Any,
    model: str = DEFAULT_MODEL,
    *,
    critical: str = "knee",
    overhead: float = 0.2,
    reference_batch: float = 0.0,
    tune_lr: bool | None = None,
    require_all_reached: bool = True,
    censoring: str = "likelihood",
    check_every: int | None = None,
    response: str = "steps",
    columns: dict[str, str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    resample: str = "auto",
    interval: str = "expanded",
    seed: int = 0,
    by: Sequence[str] | str | None = None,
    cache: bool = True,
    allow_partial: bool = False,
) -> Fits:
    r"""Fit a law K(b) to steps-to-target per group: critical batch size, status and intervals.

    For each group, maximize the censored log-likelihood of :math:`\log K` (lognormal steps
    around the law, :mod:`critbatch.fit.likelihood`) through the profile likelihood of the
    law's shape parameter (:mod:`critbatch.fit.profile`), and report the critical batch size
    with its status (:data:`critbatch.fit.STATUSES`), its profile-likelihood interval (open
    where the data do not close it), a lack-of-fit test, and, with replicates, a bootstrap
    interval over seeds.

    Args:
        results: a :class:`critbatch.results.Results`, a pandas DataFrame, a sweep directory, or
            a path to a CSV or Parquet file (see :mod:`critbatch.fit.table` for the columns).
        model: ``"mccandlish"`` (default, McCandlish et al. 2018), ``"inverse"`` (Perrone et
            al. 2019: the same curve, parameters ``k_inf, alpha``) or ``"rational"`` (Iiduka
            2022).
        critical: ``"knee"`` (the law's critical batch size: :math:`B_{\text{noise}}`, or
            :math:`2 b_{\min}` for the rational law) or ``"overhead"`` (Zhang et al. 2024's
            rule: the batch size at ``overhead`` more steps than linear scaling from
            ``reference_batch``, :math:`(1 + r) b_0 + r B_{\text{noise}}` for the inverse family).
        overhead: the :math:`r` of ``critical="overhead"`` (0.2 = 20 %).
        reference_batch: the batch size :math:`b_0` that linear scaling is counted from for
            ``critical="overhead"`` (Zhang et al. 2024's code uses 256; 0: from :math:`b \to 0`);
            see :meth:`critbatch.fit.Law.critical_from_beta`.
        tune_lr: fit at the best learning rate per batch size; None: exactly when some batch
            size has runs at several learning rates. False with several learning rates at one
            batch size is an error (they would be pooled).
        require_all_reached: in the learning-rate choice, rank learning rates whose runs all
            reached the target first (the rule of :mod:`critbatch.tuning`).
        censoring: ``"likelihood"`` (runs that never reached are right-censored) or ``"drop"``
            (leave them out: biased; for comparison only).
        check_every: the target's check interval :math:`m`: a run that reached at step
            :math:`k` crossed in :math:`(k - m, k]`. Default: read from a sweep directory or
            Results, else 1 (exact steps).
        response: ``"steps"`` or ``"examples"`` (a column ``examples``, e.g. epochs: the law
            becomes :math:`E(b) = E_{\min}(1 + b/B_{\text{noise}})`).
        columns: our column name -> the table's, e.g. ``{"steps": "K", "batch_size": "B"}``.
        n_boot: bootstrap resamples (0: no bootstrap interval).
        level: the level of the intervals, in (0, 1).
        resample: the bootstrap's unit: ``"auto"``, ``"seeds"``, ``"within"`` or ``"rows"``.
        interval: the bootstrap interval: ``"expanded"`` (Hesterberg 2015, for few seeds) or
            ``"percentile"``.
        seed: seed of the bootstrap's random stream.
        by: the group columns (default: those of problem, optimizer, schedule present).
        cache: for a sweep directory, reuse the fits stored in ``OUT/_fits/`` when the runs and
            options are unchanged, and store them there.
        allow_partial: fit an unfinished sweep directory (with a warning) instead of raising.

    Returns:
        :class:`critbatch.fit.Fits`: a mapping from the group's values (a tuple in the order of
        ``fits.by``) to :class:`critbatch.fit.FitResult`, with ``fits.table`` as a DataFrame.

    Raises:
        ValueError: naming the missing column, the bad value or the bad argument.

    Example:
        >>> import numpy as np, pandas as pd
        >>> b = np.repeat([4.0, 8, 16, 32, 64, 128, 256], 6)
        >>> noise = np.random.default_rng(0).normal(0.0, 0.05, b.size)
        >>> df = pd.DataFrame({"batch_size": b, "steps": 100 * (1 + 80 / b) * np.exp(noise),
        ...                    "seed": np.tile(np.arange(6), 7)})
        >>> result = fit(df, n_boot=200).item()
        >>> result.status, bool(60 < result.critical_batch_size < 100)
        ('identified', True)
        >>> perfect = pd.DataFrame({"batch_size": b, "steps": 1e6 / b * np.exp(noise)})
        >>> fit(perfect, n_boot=0).item().critical_text()
        '> 256 (b_max); 95% lower bound 4113'

    References:
        McCandlish et al. 2018, arXiv:1812.06162; Perrone et al. 2019, arXiv:1911.06459; Iiduka
        2022, arXiv:2108.11713; Zhang et al. 2024, arXiv:2410.21676; Tobin 1958, Econometrica
        26(1); Bates and Watts 1988, "Nonlinear Regression Analysis and Its Applications", ch. 6.

    """
    opts = _options(
        model,
        critical,
        overhead,
        reference_batch,
        tune_lr,
        require_all_reached,
        censoring,
        check_every,
        n_boot,
        level,
        resample,
        interval,
        seed,
    )
    if opts.check_every is None:
        opts = _Options(**{**opts.__dict__, "check_every": source_check_every(results)})
    path = _cache_path(results, opts, by, columns, response) if cache else None
    if path is not None and path.is_file():
        try:
            return Fits.load(path)
        except (ValueError, KeyError, TypeError, OSError):
            pass  # a damaged cache file is recomputed and replaced
    table = load_table(results, columns=columns, response=response, allow_partial=allow_partial)
    names = group_columns(table, by)
    fits = {
        data.key: _fit_group(data, opts, i, names)
        for i, data in enumerate(group_data(table, names))
    }
    out = Fits(fits, names, opts.as_dict())
    if path is not None:
        try:
            path.parent.mkdir(exist_ok=True)
            out.save(path)
        except OSError:
            pass  # a read-only sweep directory: the fits are simply not kept
    return out
