r"""Does the law fit? A likelihood-ratio test against the replicate spread.

The law is nested in the *saturated* model that gives every batch size its own median steps
(one free location per batch size, the same noise scale). With replicates at some batch size the
saturated model measures the pure noise, and

.. math::
    G = 2(\hat\ell_{\text{saturated}} - \hat\ell_{\text{law}}), \qquad
    F = \frac{(e^{G/n} - 1)(n - k)}{k - 2} \sim F_{k - 2,\, n - k}

under the law (:math:`n` runs, :math:`k` batch sizes, 2 curve parameters). With exact runs
:math:`e^{G/n}` is the ratio of the law's residual sum of squares to the pure-error sum of
squares, so this is exactly the classical lack-of-fit F test of regression (Draper and Smith 1998,
sec. 2.1); with censored runs the same transform of the likelihood ratio is used. Chosen over
the asymptotic :math:`\chi^2_{k-2}` of :math:`G` because with a few seeds per batch size that
test rejects a correct law far more often than its level (the noise scale is estimated from few
degrees of freedom). Without replicates, or with replicates that agree
exactly, the saturated model interpolates the data and the law cannot be tested: the result says
so instead of giving a p-value.

References:
    Draper and Smith 1998, "Applied Regression Analysis", 3rd ed., Wiley, sec. 2.1 (lack of fit
    and pure error); Wilks 1938, Annals of Mathematical Statistics 9(1) (the likelihood-ratio
    statistic's chi-squared limit).

"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from critbatch.fit.likelihood import SIGMA_FLOOR, Observations, log_likelihood

__all__ = ["LackOfFit", "lack_of_fit"]


@dataclass(frozen=True)
class LackOfFit:
    """The lack-of-fit test of one fit.

    Attributes:
        p_value: the test's p-value (nan when the law cannot be tested).
        statistic: :math:`F` (nan when not tested).
        dof: its numerator degrees of freedom :math:`k - 2`.
        note: why the law could not be tested ("" when it was).

    """

    p_value: float
    statistic: float
    dof: int
    note: str


def _saturated(obs: Observations) -> tuple[float, float]:
    """Maximize the saturated model: (log-likelihood, log sigma)."""
    sizes, index = np.unique(obs.b, return_inverse=True)
    if np.all(obs.exact):
        s2 = obs.scale**2
        means = np.bincount(index, s2 * obs.upper) / np.bincount(index, s2)
        resid = obs.upper - means[index]
        log_sigma = 0.5 * math.log(max(float(np.sum(s2 * resid**2)) / obs.n, SIGMA_FLOOR**2))
        return log_likelihood(obs, means[index], log_sigma), log_sigma
    start = np.array([float(np.median(obs.point()[index == j])) for j in range(sizes.size)])
    spread = float(np.std(obs.point() - start[index])) or 0.1
    x0 = np.append(start, math.log(max(spread, 0.01)))

    def negative(x: np.ndarray) -> float:
        value = log_likelihood(obs, x[:-1][index], float(x[-1]))
        return -value if math.isfinite(value) else 1e300

    bounds = [(None, None)] * sizes.size + [(math.log(SIGMA_FLOOR), 5.0)]
    best = optimize.minimize(negative, x0, method="L-BFGS-B", bounds=bounds)
    polish = optimize.minimize(
        negative,
        best.x,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000},
    )
    x = polish.x if polish.fun < best.fun else best.x
    return -float(min(polish.fun, best.fun)), float(x[-1])


def lack_of_fit(obs: Observations, law_log_likelihood: float) -> LackOfFit:
    """Test the law (maximized log-likelihood ``law_log_likelihood``) against the saturated model.

    Args:
        obs: the runs the law was fitted to.
        law_log_likelihood: the law's maximum log-likelihood on ``obs``.

    Returns:
        A :class:`LackOfFit`.

    Example:
        >>> import numpy as np
        >>> b = np.repeat([1.0, 2.0, 4.0, 8.0], 3)
        >>> obs = Observations.from_runs(b, np.full(12, 5.0), np.zeros(12, bool))
        >>> lack_of_fit(obs, 0.0).note
        'the replicates agree exactly: no noise to test the law against'

    """
    sizes, counts = np.unique(obs.b, return_counts=True)
    dof = int(sizes.size) - 2
    if dof < 1:
        return LackOfFit(
            math.nan, math.nan, max(dof, 0), "two batch sizes: the law passes through them exactly"
        )
    if counts.max() < 2:
        return LackOfFit(
            math.nan, math.nan, dof, "one run per batch size: lack of fit cannot be tested"
        )
    saturated, log_sigma = _saturated(obs)
    if log_sigma <= math.log(SIGMA_FLOOR) + 1e-9:
        return LackOfFit(
            math.nan,
            math.nan,
            dof,
            "the replicates agree exactly: no noise to test the law against",
        )
    pure = obs.n - int(sizes.size)
    g = max(2.0 * (saturated - law_log_likelihood), 0.0)
    statistic = math.expm1(g / obs.n) * pure / dof
    return LackOfFit(float(stats.f.sf(statistic, dof, pure)), statistic, dof, "")
