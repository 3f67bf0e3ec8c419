r"""The likelihood of log steps-to-target: exact, right-censored and interval-censored runs.

The model of one run at batch size :math:`b_i` is

.. math::
    \log K_i = c + g(b_i; \beta) + \frac{\sigma}{s_i} \varepsilon_i,
    \qquad \varepsilon_i \sim N(0, 1),

lognormal steps around the law's curve (its median), with :math:`s_i^2` an optional weight
(1 by default). What a run tells about :math:`\log K_i`:

- *exact*: it reached the target and the target was checked every step: :math:`\log K_i = y_i`;
- *interval-censored*: it reached the target at a check, so it crossed somewhere in the last
  ``check_every`` steps: :math:`\log K_i \in (\log(k_i - m), \log k_i]`;
- *right-censored*: it stopped at the budget without reaching: :math:`\log K_i > \log k_i`.

For a fixed shape :math:`\beta`, write :math:`w_i = y_i - g(b_i; \beta)`; the log-likelihood in
the location and scale is that of a censored normal sample. With only exact runs its maximum is in
closed form (a weighted mean and variance). Otherwise it is maximized by Newton's method in
Olsen's coordinates :math:`a = c/\sigma`, :math:`h = 1/\sigma`, where the censored normal
log-likelihood is globally concave (Olsen 1978 for right-censoring; Pratt 1981 for intervals), so
the maximum is unique and Newton with step halving finds it from any start. The Newton iteration
runs on many shapes at once (one row per :math:`\beta`), which is what makes the profile over a
fine grid of :math:`\beta` cheap.

The noise scale is floored at ``SIGMA_FLOOR`` (in log K): without a floor the likelihood of
noiseless data is unbounded.

References:
    Tobin 1958, "Estimation of relationships for limited dependent variables", Econometrica 26(1);
    Olsen 1978, "Note on the uniqueness of the maximum likelihood estimator for the Tobit model",
    Econometrica 46(5); Pratt 1981, "Concavity of the log likelihood", JASA 76(373).

"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "SIGMA_FLOOR",
    "Observations",
    "ProfileRows",
    "log_likelihood",
    "maximize_location_scale",
]

SIGMA_FLOOR = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_MAX_NEWTON = 100
_MAX_HALVINGS = 60


@dataclass(frozen=True, eq=False)
class Observations:
    r"""Runs of one fit in log space.

    Attributes:
        b: batch size of each run.
        lower: lower end of :math:`\\log K` (``-inf`` when unbounded; equal to ``upper`` for an
            exact run).
        upper: upper end of :math:`\\log K` (``+inf`` for a right-censored run).
        exact: True for runs whose :math:`\\log K` is observed exactly (``upper``).
        scale: :math:`s_i`, the square root of each run's weight.

    """

    b: npt.NDArray[np.float64]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]
    exact: npt.NDArray[np.bool_]
    scale: npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        """The number of runs."""
        return int(self.b.size)

    @property
    def censored(self) -> np.ndarray:
        """True for right-censored runs (never reached the target)."""
        return np.isinf(self.upper)

    @classmethod
    def from_runs(
        cls,
        b: np.ndarray,
        steps: np.ndarray,
        censored: np.ndarray,
        check_every: int = 1,
        weight: np.ndarray | None = None,
    ) -> Observations:
        """Build the observations of runs: reached runs are exact when ``check_every == 1``."""
        b = np.asarray(b, dtype=float)
        log_k = np.log(np.asarray(steps, dtype=float))
        censored = np.asarray(censored, dtype=bool)
        reached = ~censored
        if check_every > 1:
            gap = np.asarray(steps, dtype=float) - check_every
            with np.errstate(divide="ignore"):
                lower = np.where(reached, np.log(np.maximum(gap, 0.0)), log_k)
            exact = np.zeros(b.size, bool)
        else:
            lower = log_k.copy()
            exact = reached.copy()
        upper = np.where(censored, np.inf, log_k)
        scale = np.ones(b.size) if weight is None else np.sqrt(np.asarray(weight, dtype=float))
        return cls(b, lower, upper, exact, scale)

    def take(self, index: np.ndarray) -> Observations:
        """Return the runs at ``index``."""
        return Observations(
            self.b[index],
            self.lower[index],
            self.upper[index],
            self.exact[index],
            self.scale[index],
        )

    def point(self) -> np.ndarray:
        """A representative log K per run (upper end; lower end for right-censored runs)."""
        return np.where(np.isinf(self.upper), self.lower, self.upper)


@dataclass(frozen=True, eq=False)
class ProfileRows:
    r"""The maximum over location and scale, one entry per shape row.

    Attributes:
        log_likelihood: the maximized log-likelihood (``-inf`` where the shape is infeasible).
        location: the maximizing :math:`c`.
        log_sigma: the maximizing :math:`\\log\\sigma`.
        converged: whether the maximization converged (always True in closed form).

    """

    log_likelihood: np.ndarray
    location: np.ndarray
    log_sigma: np.ndarray
    converged: np.ndarray


def _log1mexp(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log(1 - exp(x)) for x <= 0, accurate at both ends (Maechler 2012)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def log_normal_mass(z_lo: npt.NDArray[np.float64], z_hi: npt.NDArray[np.float64]) -> np.ndarray:
    r"""Return :math:`\log(\Phi(z_{hi}) - \Phi(z_{lo}))`, accurate in both tails."""
    with np.errstate(invalid="ignore", divide="ignore"):
        right = z_lo > 0  # both ends in the right tail: work with survival functions
        a: npt.NDArray[np.float64] = np.where(
            right, special.log_ndtr(-z_lo), special.log_ndtr(z_hi)
        )
        c: npt.NDArray[np.float64] = np.where(
            right, special.log_ndtr(-z_hi), special.log_ndtr(z_lo)
        )
        return a + _log1mexp(c - a)


def log_likelihood(obs: Observations, mu: np.ndarray, log_sigma: float) -> float:
    """The log-likelihood of ``obs`` at medians ``mu`` (one per run) and noise scale ``sigma``.

    ``mu`` may be ``+inf`` (a law with no finite K there): an exact or reached run then has no
    density (``-inf``), a run that never reached has probability 1.
    """
    sigma = math.exp(log_sigma)
    s, ex = obs.scale, obs.exact
    with np.errstate(invalid="ignore"):
        z = s[ex] * (obs.upper[ex] - mu[ex]) / sigma
        lo = s[~ex] * (obs.lower[~ex] - mu[~ex]) / sigma
        hi = s[~ex] * (obs.upper[~ex] - mu[~ex]) / sigma
    value = float(np.sum(np.log(s[ex]) - log_sigma - _HALF_LOG_2PI - 0.5 * z * z))
    if lo.size:  # inf - inf at an infinite end: that end stays where it was
        value += float(
            np.sum(log_normal_mass(np.nan_to_num(lo, nan=-np.inf), np.nan_to_num(hi, nan=np.inf)))
        )
    return value


def _closed_form(w: np.ndarray, s2: np.ndarray, sum_log_s: float) -> ProfileRows:
    weight = s2.sum()
    feasible = np.all(np.isfinite(w), axis=1)
    w = np.where(np.isfinite(w), w, 0.0)
    location = (w @ s2) / weight
    var = ((w - location[:, None]) ** 2 @ s2) / w.shape[1]
    var = np.maximum(var, SIGMA_FLOOR**2)
    n = w.shape[1]
    ll = (
        sum_log_s
        - 0.5 * n * np.log(var)
        - n * _HALF_LOG_2PI
        - 0.5 * (((w - location[:, None]) ** 2 @ s2) / var)
    )
    ll = np.where(feasible, ll, -np.inf)
    return ProfileRows(ll, location, 0.5 * np.log(var), np.ones(w.shape[0], bool))


class _Problem:
    """The censored normal log-likelihood in (a, h) for many shape rows."""

    def __init__(self, obs: Observations, g: np.ndarray) -> None:
        ex = obs.exact
        self.s_e = obs.scale[ex]
        self.s_c = obs.scale[~ex]
        self.sum_log_s = float(np.sum(np.log(self.s_e)))
        with np.errstate(invalid="ignore"):
            self.w_e = obs.upper[ex][None, :] - g[:, ex]
            gc = g[:, ~ex]
            up = obs.upper[~ex][None, :]
            lo = obs.lower[~ex][None, :]
            # an infinite end stays infinite whatever the curve (a run that never reached tells
            # nothing more where the law has no finite K)
            self.w_hi = np.where(np.isinf(up), up, up - gc)
            self.w_lo = np.where(np.isinf(lo), lo, lo - gc)
            self.w_hi = np.where(np.isnan(self.w_hi), np.inf, self.w_hi)
            self.w_lo = np.where(np.isnan(self.w_lo), -np.inf, self.w_lo)
        self.feasible = np.all(np.isfinite(self.w_e), axis=1) & np.all(
            self.w_hi > self.w_lo, axis=1
        )
        self.w_e = np.where(np.isfinite(self.w_e), self.w_e, 0.0)

    def evaluate(
        self, a: np.ndarray, h: np.ndarray, rows: np.ndarray, derivatives: bool = True
    ) -> tuple[np.ndarray, ...]:
        s_e, w_e = self.s_e, self.w_e[rows]
        ne = s_e.size
        hh, aa = h[:, None], a[:, None]
        z = s_e * (hh * w_e - aa)
        ll = self.sum_log_s + ne * (np.log(h) - _HALF_LOG_2PI) - 0.5 * np.sum(z * z, axis=1)
        s_c = self.s_c
        with np.errstate(invalid="ignore", over="ignore"):
            z_lo = s_c * (hh * self.w_lo[rows] - aa)
            z_hi = s_c * (hh * self.w_hi[rows] - aa)
        log_p = log_normal_mass(z_lo, z_hi)
        ll = ll + np.sum(log_p, axis=1)
        if not derivatives:
            return (ll,)
        ga = np.sum(z * s_e, axis=1)
        gh = -np.sum(z * s_e * w_e, axis=1) + ne / h
        haa = -np.full(h.shape, float(np.sum(s_e**2)))
        hah = np.sum(s_e**2 * w_e, axis=1)
        hhh = -np.sum(s_e**2 * w_e**2, axis=1) - ne / h**2
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            r_hi = np.where(np.isfinite(z_hi), np.exp(-0.5 * z_hi**2 - _HALF_LOG_2PI - log_p), 0.0)
            r_lo = np.where(np.isfinite(z_lo), np.exp(-0.5 * z_lo**2 - _HALF_LOG_2PI - log_p), 0.0)
            w_hi = np.where(np.isfinite(self.w_hi[rows]), self.w_hi[rows], 0.0)
            w_lo = np.where(np.isfinite(self.w_lo[rows]), self.w_lo[rows], 0.0)
            zh = np.where(np.isfinite(z_hi), z_hi, 0.0)
            zl = np.where(np.isfinite(z_lo), z_lo, 0.0)
        # d z / d a = -s, d z / d h = s w at each end
        gi_a = -s_c * (r_hi - r_lo)
        gi_h = s_c * (r_hi * w_hi - r_lo * w_lo)
        ga = ga + np.sum(gi_a, axis=1)
        gh = gh + np.sum(gi_h, axis=1)
        s2 = s_c**2
        haa = haa + np.sum(s2 * (-zh * r_hi + zl * r_lo) - gi_a**2, axis=1)
        hah = hah + np.sum(s2 * (zh * r_hi * w_hi - zl * r_lo * w_lo) - gi_a * gi_h, axis=1)
        hhh = hhh + np.sum(s2 * (-zh * r_hi * w_hi**2 + zl * r_lo * w_lo**2) - gi_h**2, axis=1)
        return ll, ga, gh, haa, hah, hhh


def maximize_location_scale(obs: Observations, g: np.ndarray) -> ProfileRows:
    r"""Maximize the log-likelihood over location and scale for each row of shapes ``g``.

    Args:
        obs: the runs.
        g: shape :math:`g(b_i; \\beta)` per row (one row per :math:`\\beta`) and run.

    Returns:
        A :class:`ProfileRows` (``-inf`` log-likelihood where a row is infeasible: an exact or
        reached run that the curve gives no finite K).

    """
    g = np.atleast_2d(np.asarray(g, dtype=float))
    if np.all(obs.exact):
        return _closed_form(obs.upper[None, :] - g, obs.scale**2, float(np.sum(np.log(obs.scale))))
    problem = _Problem(obs, g)
    m = g.shape[0]
    h_max = 1.0 / SIGMA_FLOOR
    # start: the closed form on a representative value of every run
    point = obs.point()[None, :] - g
    start = _closed_form(np.where(np.isfinite(point), point, 0.0), obs.scale**2, 0.0)
    sigma0 = np.maximum(np.exp(start.log_sigma), 0.05)
    h = 1.0 / sigma0
    a = start.location * h
    rows = np.arange(m)
    done = ~problem.feasible
    converged = np.zeros(m, bool)
    ll = np.full(m, -np.inf)
    for _ in range(_MAX_NEWTON):
        active = rows[~done]
        if active.size == 0:
            break
        val, ga, gh, haa, hah, hhh = problem.evaluate(a[active], h[active], active)
        ll[active] = val
        at_floor = (h[active] >= h_max * (1 - 1e-12)) & (gh > 0)
        det = haa * hhh - hah**2
        good = (det > 0) & (haa < 0) & np.isfinite(det)
        with np.errstate(invalid="ignore", divide="ignore"):
            da = np.where(good, -(hhh * ga - hah * gh) / det, ga / (np.abs(haa) + 1.0))
            dh = np.where(good, -(-hah * ga + haa * gh) / det, gh / (np.abs(hhh) + 1.0))
            da = np.where(at_floor, -ga / haa, da)
        dh = np.where(at_floor, 0.0, dh)
        decrement = ga * da + gh * dh
        finished = np.isfinite(decrement) & (decrement < 1e-11 * (1.0 + np.abs(val)))
        converged[active[finished]] = True
        done[active[finished]] = True
        todo = ~finished
        if not np.any(todo):
            break
        idx, da, dh, val = active[todo], da[todo], dh[todo], val[todo]
        t = np.ones(idx.size)
        accepted = np.zeros(idx.size, bool)
        for _ in range(_MAX_HALVINGS):
            trial = ~accepted
            if not np.any(trial):
                break
            sel = idx[trial]
            new_h = np.minimum(h[sel] + t[trial] * dh[trial], h_max)
            new_a = a[sel] + t[trial] * da[trial]
            positive = new_h > 0
            new_ll = np.full(sel.size, -np.inf)
            if np.any(positive):
                new_ll[positive] = problem.evaluate(
                    new_a[positive], new_h[positive], sel[positive], derivatives=False
                )[0]
            ok = np.isfinite(new_ll) & (new_ll >= val[trial] - 1e-12 * np.abs(val[trial]))
            h[sel[ok]], a[sel[ok]] = new_h[ok], new_a[ok]
            accepted[np.flatnonzero(trial)[ok]] = True
            t[trial] = np.where(ok, t[trial], 0.5 * t[trial])
        stuck = idx[~accepted]  # no ascent possible along the step: at the maximum to rounding
        converged[stuck] = True
        done[stuck] = True
    final = rows[problem.feasible]
    if final.size:
        ll[final] = problem.evaluate(a[final], h[final], final, derivatives=False)[0]
    ll[~problem.feasible] = -np.inf
    converged[~problem.feasible] = True
    return ProfileRows(ll, a / h, -np.log(h), converged)
