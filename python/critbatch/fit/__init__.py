"""Critical batch sizes from runs: the laws K(b), their fit, status, intervals and comparisons.

:func:`fit` is the one fitting path (the CLI, reports, plots, the crosscheck and the examples call
it): it returns :class:`Fits`, a mapping from each group's values to a :class:`FitResult` and a
table. Every critical batch size carries a status (:data:`STATUSES`) and a profile-likelihood
interval that is open where the data do not bound it. :func:`critical_ratio` and
:func:`compare_critical` (paired over shared seeds) compare two; :func:`compare_steps` compares
two groups' K(b) or SFO per batch size (paired by seed); :func:`compare` ranks laws.
The modules, one concept each:

- :mod:`critbatch.fit.models`: the laws (formulas and their location-shape form);
- :mod:`critbatch.fit.table`: reading and grouping runs, the best learning rate per batch size;
- :mod:`critbatch.fit.likelihood`: the censored likelihood of log steps;
- :mod:`critbatch.fit.profile`: the profile likelihood of the shape, its interval;
- :mod:`critbatch.fit.lack_of_fit`: the test of the law against the replicate spread;
- :mod:`critbatch.fit.bootstrap`: resampling seeds;
- :mod:`critbatch.fit.fitting`: :func:`fit` itself; :mod:`critbatch.fit.result`: what it returns;
- :mod:`critbatch.fit.comparison`: laws compared, and ratios of critical batch sizes.
"""

from __future__ import annotations

from critbatch.fit.bootstrap import percentile_interval
from critbatch.fit.comparison import (
    Comparison,
    Ratio,
    compare,
    compare_critical,
    compare_steps,
    critical_ratio,
)
from critbatch.fit.fitting import DEFAULT_MODEL, fit
from critbatch.fit.models import (
    LAWS,
    Law,
    inverse_from_mccandlish,
    inverse_steps,
    mccandlish_from_inverse,
    mccandlish_steps,
    overhead_batch_size,
    rational_from_constants,
    rational_steps,
)
from critbatch.fit.result import STATUSES, FitResult, Fits
from critbatch.fit.table import best_learning_rate, load_table, weights_from_summary

__all__ = [
    "DEFAULT_MODEL",
    "LAWS",
    "STATUSES",
    "Comparison",
    "FitResult",
    "Fits",
    "Law",
    "Ratio",
    "best_learning_rate",
    "compare",
    "compare_critical",
    "compare_steps",
    "critical_ratio",
    "fit",
    "inverse_from_mccandlish",
    "inverse_steps",
    "load_table",
    "mccandlish_from_inverse",
    "mccandlish_steps",
    "overhead_batch_size",
    "percentile_interval",
    "rational_from_constants",
    "rational_steps",
    "weights_from_summary",
]
