r"""The profile likelihood of the shape parameter: the fit, its interval, and what it can tell.

Every law is :math:`\log K = c + g(b; \beta)` (:mod:`critbatch.fit.models`), and the critical
batch size is a monotone function of :math:`\beta` alone. The profile log-likelihood

.. math::
    \ell_p(\beta) = \max_{c, \sigma} \ell(c, \beta, \sigma)

is computed on a fine grid of :math:`\beta` reaching far beyond the batch sizes of the data, and at
the limits of the domain where the law degenerates (constant steps; perfect scaling). Then:

- the maximum likelihood :math:`\hat\beta` is the best grid point refined by Brent's method, or a
  limit of the domain when the likelihood there is at least as high (no finite estimate exists);
- the confidence set is :math:`\{\beta : 2(\hat\ell - \ell_p(\beta)) \le q\}`, reported as its hull
  :math:`[\beta_L, \beta_U]`, each end found by root finding between grid points, and *open*
  (:math:`-\infty`/:math:`+\infty`, or the domain's end) when the likelihood at the domain's limit
  stays above the cut: the data then do not bound the critical batch size on that side.

Choice of the cut: the small-sample calibration of profile regions in nonlinear least squares,
:math:`q = n \log(1 + F_{1, n-p}(\text{level}) / (n - p))` with :math:`p = 2` curve parameters
(Bates and Watts 1988, sec. 6.1, the likelihood form of their F region): for Gaussian errors it is
exact for a linear model and close for a curve that is nearly linear in :math:`c`, while the
asymptotic :math:`\chi^2_1` cut undercovers with one run per batch size. It tends to
:math:`\chi^2_1(\text{level})` as :math:`n` grows.

Why a grid and not a local optimizer: the profile can be flat, rise to a plateau at a limit, or
have several local maxima; a grid over the whole domain sees all three, and a local optimizer
started from one point (the earlier design) stopped short of a maximum at the domain's limit and
reported a finite, confidently wrong critical batch size.

References:
    Bates and Watts 1988, "Nonlinear Regression Analysis and Its Applications", Wiley, ch. 6;
    Venzon and Moolgavkar 1988, "A method for computing profile-likelihood-based confidence
    intervals", Applied Statistics 37(1).

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

from critbatch.fit.likelihood import Observations, maximize_location_scale
from critbatch.fit.models import Law

__all__ = ["ProfileFit", "cut_value", "profile_fit"]

_N_CURVE_PARAMS = 2


def cut_value(n: int, level: float) -> float:
    """Return the profile cut :math:`q` for ``n`` runs at ``level`` (inf when n <= 2)."""
    dof = n - _N_CURVE_PARAMS
    if dof < 1:
        return math.inf
    return float(n * math.log1p(stats.f.ppf(level, 1, dof) / dof))


@dataclass(frozen=True, eq=False)
class ProfileFit:
    r"""The profile fit of one law to one set of runs.

    Attributes:
        law: the law.
        beta: the maximum-likelihood shape (a limit of the domain when no finite one is best).
        location: the maximizing location at ``beta`` (at the perfect-scaling limit,
            :math:`\\log E_{\\min}`).
        log_sigma: the maximizing :math:`\\log\\sigma`.
        log_likelihood: the maximum.
        grid: the profile grid of :math:`\\beta` (finer across the interval).
        profile: :math:`\\ell_p` on ``grid``.
        domain: the two ends of the domain of :math:`\\beta`.
        end_values: :math:`\\ell_p` at the two ends (the limits of the law).
        converged: every maximization over location and scale converged, and the refined
            maximum is not below any grid value.
        interval: ``(beta_low, beta_high)`` of the confidence set (None when not asked for).
        open_low: the set reaches the low end of the domain.
        open_high: the set reaches the high end of the domain.
        level: the level of ``interval``.
        cut: the cut :math:`q`.
        n: runs in the fit.
        observations: the runs.

    """

    law: Law
    beta: float
    location: float
    log_sigma: float
    log_likelihood: float
    grid: np.ndarray
    profile: np.ndarray
    domain: tuple[float, float]
    end_values: tuple[float, float]
    converged: bool
    interval: tuple[float, float] | None
    open_low: bool
    open_high: bool
    level: float
    cut: float
    n: int

    observations: Observations = field(repr=False)

    def at(self, beta: float) -> float:
        """Return the profile log-likelihood at one shape (recomputed)."""
        return _profile_at(self.law, self.observations, beta)[0]


def _profile_at(law: Law, obs: Observations, beta: float) -> tuple[float, float, float, bool]:
    rows = maximize_location_scale(obs, law.shape(obs.b, np.array([beta])))
    return (
        float(rows.log_likelihood[0]),
        float(rows.location[0]),
        float(rows.log_sigma[0]),
        bool(rows.converged[0]),
    )


def _root(law: Law, obs: Observations, target: float, inside: float, outside: float) -> float:
    """The shape between ``inside`` (above the cut) and ``outside`` (below) where l_p = cut."""

    def f(beta: float) -> float:
        value = _profile_at(law, obs, beta)[0]
        return (value if math.isfinite(value) else -1e300) - target

    try:
        return float(optimize.brentq(f, inside, outside, xtol=1e-10, rtol=1e-10))
    except ValueError:  # rounding at a flat stretch: keep the grid point inside the set
        return inside


def _refine_near_peak(
    law: Law,
    obs: Observations,
    grid: np.ndarray,
    profile: np.ndarray,
    interval: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Add a fine grid across the interval, so that the stored profile resolves a narrow peak.

    Comparisons of two fits (:func:`critbatch.fit.critical_ratio`) interpolate the stored
    profiles; a peak narrower than the main grid's step would otherwise be lost between points.
    """
    lo, hi = (max(interval[0], float(grid[0])), min(interval[1], float(grid[-1])))
    if not hi > lo:
        return grid, profile
    pad = 0.5 * (hi - lo)
    fine = np.linspace(max(lo - pad, float(grid[0])), min(hi + pad, float(grid[-1])), 121)
    values = maximize_location_scale(obs, law.shape(obs.b, fine)).log_likelihood
    merged = np.concatenate([grid, fine])
    order = np.argsort(merged, kind="stable")
    return merged[order], np.concatenate([profile, values])[order]


def profile_fit(law: Law, obs: Observations, *, level: float | None = 0.95) -> ProfileFit:
    """Fit ``law`` to ``obs`` through the profile likelihood of its shape parameter.

    Args:
        law: one of :data:`critbatch.fit.models.LAWS`.
        obs: the runs (:class:`critbatch.fit.likelihood.Observations`).
        level: the confidence level of the interval; None skips the interval (bootstrap refits).

    Returns:
        A :class:`ProfileFit`.

    Raises:
        ValueError: fewer than 3 runs reached the target, or they span fewer than 2 batch sizes.

    """
    reached = ~obs.censored
    if reached.sum() < 3 or np.unique(obs.b[reached]).size < 2:
        raise ValueError(
            "reached: a fit needs at least 3 runs that reached the target, at 2 or more batch "
            f"sizes; got {int(reached.sum())} run(s) at batch sizes "
            f"{sorted(float(x) for x in set(obs.b[reached]))}"
        )
    grid, low, high = law.beta_grid(obs.b, reached)
    rows = maximize_location_scale(obs, law.shape(obs.b, grid))
    profile = rows.log_likelihood
    converged = bool(np.all(rows.converged))
    ends = []
    for end, edge in ((low, 0), (high, -1)):
        if math.isinf(end):  # a limit of the law: evaluate it exactly
            ends.append(_profile_at(law, obs, end)[0])
        else:  # a point of the grid (rational law: b_min = 0, or next to the pole)
            ends.append(float(profile[edge]))
    best = int(np.nanargmax(np.where(np.isfinite(profile), profile, -np.inf)))
    if not math.isfinite(profile[best]):
        raise ValueError(f"model {law.name!r}: the likelihood has no finite maximum on these runs")
    beta_hat, ll_hat = float(grid[best]), float(profile[best])
    lo_b, hi_b = float(grid[max(best - 1, 0)]), float(grid[min(best + 1, grid.size - 1)])
    if level is None:
        # bootstrap refits: the vertex of the parabola through the best point and its neighbours
        # (exact to third order in the grid step, plenty for a resample)
        if 0 < best < grid.size - 1 and np.all(np.isfinite(profile[best - 1 : best + 2])):
            x0, x1, x2 = grid[best - 1 : best + 2]
            y0, y1, y2 = profile[best - 1 : best + 2]
            denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
            a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
            bq = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
            if a < 0:
                vertex = float(np.clip(-bq / (2 * a), x0, x2))
                value = _profile_at(law, obs, vertex)[0]
                if value > ll_hat:
                    beta_hat, ll_hat = vertex, value
    elif hi_b > lo_b:
        # the reported fit: Brent's method between the neighbours, to full precision (the
        # profile of noiseless data has a logarithmic cusp that no parabola resolves)
        res = optimize.minimize_scalar(
            lambda x: -_profile_at(law, obs, x)[0],
            bounds=(lo_b, hi_b),
            method="bounded",
            options={"xatol": 1e-12 * max(1.0, abs(lo_b)), "maxiter": 500},
        )
        if math.isfinite(res.fun) and -res.fun > ll_hat:
            beta_hat, ll_hat = float(res.x), float(-res.fun)
    tol = 1e-9 * (1.0 + abs(ll_hat))
    for end, value in ((low, ends[0]), (high, ends[1])):
        if value >= ll_hat - tol and math.isinf(end):
            beta_hat, ll_hat = end, max(value, ll_hat)
    ll_hat = max(ll_hat, *ends)
    _, location, log_sigma, ok = _profile_at(law, obs, beta_hat)
    converged = converged and ok
    interval, open_low, open_high, q = None, False, False, math.nan
    if level is not None:
        q = cut_value(obs.n, level)
        cut = ll_hat - q / 2.0
        inside = np.isfinite(profile) & (profile >= cut)
        open_low = ends[0] >= cut
        open_high = ends[1] >= cut
        candidates = grid[inside]
        if math.isfinite(beta_hat):
            candidates = np.append(candidates, beta_hat)
        if candidates.size == 0:  # only a limit is inside: bound by the grid's last point
            lo_v = low if open_low else float(grid[-1])
            hi_v = high if open_high else float(grid[0])
        else:
            first, last = float(candidates.min()), float(candidates.max())
            lo_v = low if open_low else first
            hi_v = high if open_high else last
            if not open_low:
                below = grid[grid < first]
                if below.size:
                    lo_v = _root(law, obs, cut, first, float(below.max()))
            if not open_high:
                above = grid[grid > last]
                if above.size:
                    hi_v = _root(law, obs, cut, last, float(above.min()))
        interval = (lo_v, hi_v)
        grid, profile = _refine_near_peak(law, obs, grid, profile, interval)
    return ProfileFit(
        law=law,
        beta=beta_hat,
        location=location,
        log_sigma=log_sigma,
        log_likelihood=ll_hat,
        grid=grid,
        profile=profile,
        domain=(low, high),
        end_values=(ends[0], ends[1]),
        converged=converged,
        interval=interval,
        open_low=open_low,
        open_high=open_high,
        level=math.nan if level is None else level,
        cut=q,
        n=obs.n,
        observations=obs,
    )
