"""Perrone et al. 2019: the inverse law K(M) and the time-optimal mini-batch size.

[stated] (abstract of arXiv 1911.06459): an empirical inverse law between the mini-batch size and
the mean number of updates to a training-error threshold; combined with measured system
performance, a closed-form model of training time for one and several learners; a bound on
mini-batch SGD that justifies the law.

[derived] (docs/theory/perrone2019.md) the closed forms below (M*, T*, the P-learner optimum with
a ring all-reduce model, the strongly convex justification): derived following Perrone et al.'s
method (arXiv 1911.06459); not checked against the paper's own equations. The paper writes the
mini-batch size M; the argument is ``batch_size`` here as in every theory module.

Every function broadcasts its scalar arguments (docs/theory/README.md). Degenerate but valid
constants follow the limits of the formulas: a zero large-batch limit ``K_inf`` or a zero cost
per example ``t1`` makes the time-optimal batch size ``inf``; both zero make it ``nan``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from critbatch import _validate as v
from critbatch.theory import _args as a

__all__ = [
    "inverse_law_steps",
    "multi_learner_optimal_batch_size",
    "multi_learner_time",
    "optimal_batch_size",
    "optimal_batch_size_measured",
    "optimal_time",
    "ring_allreduce_time",
    "strongly_convex_bound",
    "strongly_convex_steps_bound",
    "training_time",
]


def inverse_law_steps(batch_size: Any, K_inf: Any, alpha: Any) -> Any:
    r"""Evaluate the inverse law: mean updates to the threshold at mini-batch size M.

    .. math::

        K(M) = K_\infty + \frac{\alpha}{M},

    with :math:`M` ``batch_size``, :math:`K_\infty` ``K_inf`` the large-batch limit and
    :math:`\alpha` ``alpha``; it equals McCandlish et al.'s
    :math:`S_{\min}(1 + B_{\text{noise}}/M)` with :math:`B_{\text{noise}} = \alpha/K_\infty`.

    Args:
        batch_size: mini-batch size(s) :math:`M > 0`.
        K_inf: updates needed at infinite batch (>= 0).
        alpha: the law's slope in 1/M (>= 0).

    Returns:
        K(M), broadcast over the arguments.

    Example:
        >>> inverse_law_steps(10.0, K_inf=100.0, alpha=1000.0)
        200.0

    References:
        Perrone et al. 2019, the inverse law of the abstract (arXiv 1911.06459,
        https://arxiv.org/abs/1911.06459) ([stated] law, [derived] parametrization,
        docs/theory/perrone2019.md).

    """
    bs = a.positive("batch_size", batch_size)
    return a.out(a.nonnegative("K_inf", K_inf) + a.nonnegative("alpha", alpha) / bs)


def training_time(batch_size: Any, K_inf: Any, alpha: Any, t0: Any, t1: Any) -> Any:
    r"""Evaluate the one-learner training time T(M) = K(M)·(t0 + t1·M).

    .. math::

        T(M) = \left(K_\infty + \frac{\alpha}{M}\right)(t_0 + t_1 M),

    with :math:`M` ``batch_size``, :math:`t_0` ``t0`` the fixed time per update and :math:`t_1`
    ``t1`` the time per example.

    Args:
        batch_size: mini-batch size(s) :math:`M > 0`.
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).
        t0: fixed cost per update (>= 0, seconds).
        t1: cost per example (>= 0, seconds).

    Returns:
        T(M) in the units of ``t0``/``t1``, broadcast over the arguments.

    Example:
        >>> training_time(10.0, K_inf=100.0, alpha=1000.0, t0=1.0, t1=0.1)
        400.0

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    bs = a.positive("batch_size", batch_size)
    steps = a.nonnegative("K_inf", K_inf) + a.nonnegative("alpha", alpha) / bs
    return a.out(steps * (a.nonnegative("t0", t0) + a.nonnegative("t1", t1) * bs))


def _times(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``x * y`` with ``inf * 0 = nan`` said quietly (the documented undefined case)."""
    with np.errstate(invalid="ignore"):
        return x * y


def _sqrt_ratio(
    numerator: npt.NDArray[np.float64], denominator: npt.NDArray[np.float64]
) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(numerator / denominator)


def optimal_batch_size(K_inf: Any, alpha: Any, t0: Any, t1: Any) -> Any:
    r"""Return the time-optimal mini-batch size of one learner.

    .. math::

        M^\star = \sqrt{\frac{\alpha\, t_0}{K_\infty\, t_1}},

    the stationary point of :func:`training_time` (a minimum: :math:`T` is convex in
    :math:`\log M`).

    Args:
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0; ``inf`` for the open end of an interval, where the
            data do not bound the noise term, gives ``M* = inf`` when ``t0 > 0``).
        t0: fixed cost per update (>= 0).
        t1: cost per example (>= 0).

    Returns:
        M* (real-valued), broadcast over the arguments; ``inf`` where ``K_inf * t1 = 0`` and
        ``alpha * t0 > 0`` (a larger batch is always faster) or ``alpha = inf`` and ``t0 > 0``,
        ``nan`` where both products are 0 (every batch size takes the same time) or
        ``alpha = inf`` meets ``t0 = 0``.

    Example:
        >>> optimal_batch_size(K_inf=100.0, alpha=1000.0, t0=1.0, t1=0.1)
        10.0

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    return a.out(
        _sqrt_ratio(
            _times(a.nonnegative("alpha", alpha, allow_inf=True), a.nonnegative("t0", t0)),
            a.nonnegative("K_inf", K_inf) * a.nonnegative("t1", t1),
        )
    )


def optimal_time(K_inf: Any, alpha: Any, t0: Any, t1: Any) -> Any:
    r"""Return the minimal one-learner training time T(M*).

    .. math::

        T^\star = \left(\sqrt{K_\infty t_0} + \sqrt{\alpha t_1}\right)^2

    (the infimum over :math:`M` also when :math:`M^\star` is infinite).

    Args:
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).
        t0: fixed cost per update (>= 0).
        t1: cost per example (>= 0).

    Returns:
        T*, broadcast over the arguments.

    Example:
        >>> round(optimal_time(K_inf=100.0, alpha=1000.0, t0=1.0, t1=0.1), 9)
        400.0

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    k_inf, alpha = a.nonnegative("K_inf", K_inf), a.nonnegative("alpha", alpha)
    t0, t1 = a.nonnegative("t0", t0), a.nonnegative("t1", t1)
    return a.out((np.sqrt(k_inf * t0) + np.sqrt(alpha * t1)) ** 2)


def ring_allreduce_time(P: Any, latency: Any, transfer_time: Any) -> Any:
    r"""Evaluate a ring all-reduce communication model c(P) for P learners.

    .. math::

        c(P) = \ell \log_2 P + \beta\,\frac{2(P - 1)}{P},

    with :math:`\ell` ``latency`` (per message hop) and :math:`\beta` ``transfer_time`` (the
    time to send one full gradient once); :math:`c(1) = 0`.

    Args:
        P: number of learners (>= 1, real values allowed).
        latency: per-hop latency (>= 0, seconds).
        transfer_time: time to move one gradient's worth of bytes (>= 0, seconds).

    Returns:
        c(P), broadcast over the arguments.

    Example:
        >>> round(ring_allreduce_time(4, latency=0.01, transfer_time=0.2), 12)
        0.32

    References:
        Our communication model for Perrone et al. 2019's P-learner time model (arXiv 1911.06459);
        not the paper's.

    """
    ps = a.at_least("P", P, 1.0)
    latency = a.nonnegative("latency", latency)
    transfer_time = a.nonnegative("transfer_time", transfer_time)
    return a.out(latency * np.log2(ps) + transfer_time * 2.0 * (ps - 1.0) / ps)


def multi_learner_time(
    batch_size: Any, P: Any, K_inf: Any, alpha: Any, t0: Any, t1: Any, comm: Any
) -> Any:
    r"""Evaluate the training time of P data-parallel learners at global batch M.

    .. math::

        T(M, P) = \left(K_\infty + \frac{\alpha}{M}\right)
                  \left(t_0 + c(P) + \frac{t_1 M}{P}\right),

    with :math:`M` ``batch_size`` and ``comm`` the communication time per update :math:`c(P)`
    (e.g. from :func:`ring_allreduce_time`).

    Args:
        batch_size: global mini-batch size(s) :math:`M > 0`.
        P: number of learners (positive integer).
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).
        t0: fixed cost per update (>= 0).
        t1: cost per example on one learner (>= 0).
        comm: communication cost per update, c(P) (>= 0).

    Returns:
        T(M, P), broadcast over the arguments.

    Example:
        >>> multi_learner_time(20.0, 2, K_inf=100.0, alpha=1000.0, t0=1.0, t1=0.1, comm=0.5)
        375.0

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    bs = a.positive("batch_size", batch_size)
    P = a.integer("P", P)
    fixed = a.nonnegative("t0", t0) + a.nonnegative("comm", comm)
    steps = a.nonnegative("K_inf", K_inf) + a.nonnegative("alpha", alpha) / bs
    return a.out(steps * (fixed + a.nonnegative("t1", t1) * bs / P))


def multi_learner_optimal_batch_size(
    P: Any, K_inf: Any, alpha: Any, t0: Any, t1: Any, comm: Any
) -> Any:
    r"""Return the time-optimal global mini-batch size of P learners.

    .. math::

        M^\star_P = \sqrt{\frac{\alpha\,(t_0 + c(P))\,P}{K_\infty\, t_1}}.

    Args:
        P: number of learners (positive integer).
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).
        t0: fixed cost per update (>= 0).
        t1: cost per example (>= 0).
        comm: communication cost per update c(P) (>= 0).

    Returns:
        M*_P, broadcast over the arguments; ``0`` where ``t0 + comm = 0`` (no fixed cost: the
        smallest batch is fastest), ``inf`` and ``nan`` as in :func:`optimal_batch_size`.

    Example:
        >>> multi_learner_optimal_batch_size(2, K_inf=100.0, alpha=1000.0, t0=1.0, t1=0.1,
        ...                                  comm=1.0)
        20.0

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    P = a.integer("P", P)
    fixed = a.nonnegative("t0", t0) + a.nonnegative("comm", comm)
    return a.out(
        _sqrt_ratio(
            a.nonnegative("alpha", alpha) * fixed * P,
            a.nonnegative("K_inf", K_inf) * a.nonnegative("t1", t1),
        )
    )


def _measured_optimum(
    ms: np.ndarray, ts: np.ndarray, K_inf: float, alpha: float
) -> tuple[float, float]:
    candidates = list(ms)
    for m_lo, t_lo, m_hi, t_hi in zip(ms[:-1], ts[:-1], ms[1:], ts[1:], strict=True):
        slope = (t_hi - t_lo) / (m_hi - m_lo)
        intercept = t_lo - slope * m_lo
        if slope > 0 and intercept > 0 and K_inf > 0:
            stationary = math.sqrt(alpha * intercept / (K_inf * slope))
            if m_lo < stationary < m_hi:
                candidates.append(stationary)
    cands = np.asarray(candidates)
    times = (K_inf + alpha / cands) * np.interp(cands, ms, ts)
    best = int(np.argmin(times))
    return float(cands[best]), float(times[best])


def optimal_batch_size_measured(
    batch_sizes: Any, update_times: Any, K_inf: Any, alpha: Any
) -> tuple[Any, Any]:
    r"""Minimize K(M)·t(M) for a measured time per update, linearly interpolated.

    Between consecutive measured points :math:`(M_i, t_i)` the time per update is the line
    :math:`t(M) = a + bM`, so on each segment

    .. math::

        T(M) = \left(K_\infty + \frac{\alpha}{M}\right)(a + b M)

    is minimized exactly (stationary point :math:`\sqrt{\alpha a/(K_\infty b)}` when
    :math:`a, b > 0`, else an end point); the best segment wins. No extrapolation: the answer
    lies in ``[min(batch_sizes), max(batch_sizes)]``.

    Args:
        batch_sizes: measured mini-batch sizes :math:`M_i` (> 0, distinct; core).
        update_times: measured time per update :math:`t_i` at each (> 0; core).
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).

    Returns:
        ``(M_star, T_star)``, each broadcast over ``K_inf`` and ``alpha``.

    Example:
        >>> m, t = optimal_batch_size_measured([1, 100], [1.1, 11.0], K_inf=100.0, alpha=1000.0)
        >>> round(m, 6), round(t, 6)
        (10.0, 400.0)

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    ms = v.real_vector("batch_sizes", batch_sizes, positive=True)
    ts = v.real_vector("update_times", update_times, positive=True)
    if ms.shape != ts.shape or ms.size < 2:
        raise ValueError(
            f"batch_sizes and update_times must have equal length >= 2, got {ms.size} and {ts.size}"
        )
    order = np.argsort(ms)
    ms, ts = ms[order], ts[order]
    if np.any(np.diff(ms) == 0):
        raise ValueError(f"batch_sizes must be distinct, got {batch_sizes!r}")

    def kernel(K_inf: float, alpha: float) -> tuple[float, float]:
        return _measured_optimum(ms, ts, K_inf, alpha)

    return a.loop(kernel, K_inf=a.nonnegative("K_inf", K_inf), alpha=a.nonnegative("alpha", alpha))


def _check_strong(L: Any, mu: Any) -> tuple[np.ndarray, np.ndarray]:
    L = a.positive("L", L)
    mu = a.positive("mu", mu)
    if np.any(mu > L):
        shape = np.broadcast_shapes(L.shape, mu.shape)
        bad = np.broadcast_to(mu, shape) > np.broadcast_to(L, shape)
        raise ValueError(
            f"mu must be <= L, got mu={float(np.broadcast_to(mu, shape)[bad][0])!r}"
            f" > L={float(np.broadcast_to(L, shape)[bad][0])!r}"
        )
    return L, mu


def strongly_convex_bound(
    K: Any, batch_size: Any, eta: Any, L: Any, mu: Any, sigma2: Any, Delta: Any
) -> Any:
    r"""Evaluate the mini-batch SGD bound for a μ-strongly convex, L-smooth objective.

    .. math::

        \mathbb{E} f(\theta_K) - f^\star \le (1 - \eta\mu)^K \Delta
            + \frac{\eta L \sigma^2}{2 \mu M},\qquad 0 < \eta \le 1/L,

    with ``mu`` :math:`\mu`, ``sigma2`` the one-sample variance :math:`\sigma^2`, ``Delta``
    :math:`f(\theta_0) - f^\star` and :math:`M` the mini-batch size ``batch_size``.

    Args:
        K: number of updates (>= 0).
        batch_size: mini-batch size :math:`M > 0`.
        eta: learning rate (> 0); the bound needs ``eta <= 1/L``.
        L: smoothness constant (> 0).
        mu: strong-convexity constant, ``0 < mu <= L``.
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).

    Returns:
        The bound, broadcast over the arguments; ``inf`` where ``eta > 1/L`` (no bound).

    Example:
        >>> strongly_convex_bound(1, 1, eta=0.5, L=1.0, mu=1.0, sigma2=1.0, Delta=1.0)
        0.75

    References:
        Derived following Perrone et al. 2019's justification of the inverse law (arXiv 1911.06459);
        not checked against the paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    L, mu = _check_strong(L, mu)
    eta = a.positive("eta", eta)
    ks = a.nonnegative("K", K)
    bs = a.positive("batch_size", batch_size)
    Delta = a.positive("Delta", Delta)
    sigma2 = a.nonnegative("sigma2", sigma2)
    value = (1.0 - eta * mu) ** ks * Delta + eta * L * sigma2 / (2.0 * mu * bs)
    return a.out(np.where(eta * L <= 1.0, value, np.inf))


def strongly_convex_steps_bound(
    batch_size: Any, L: Any, mu: Any, sigma2: Any, Delta: Any, eps: Any
) -> Any:
    r"""Bound the updates to reach ``eps`` in the strongly convex case: the inverse law.

    .. math::

        K(M) \le \frac{L}{\mu}\left(1 + \frac{\sigma^2}{\mu\varepsilon M}\right)
                 \ln\frac{2\Delta}{\varepsilon},

    obtained from :func:`strongly_convex_bound` with the step
    :math:`\eta = 1/\big(L(1 + \sigma^2/(\mu\varepsilon M))\big) \le 1/L`, which makes the noise
    term :math:`\eta L\sigma^2/(2\mu M) < \varepsilon/2`, and
    :math:`(1 - \eta\mu)^K\Delta \le e^{-\eta\mu K}\Delta \le \varepsilon/2` once :math:`K` reaches
    the value above. It has the inverse-law form with
    :math:`K_\infty = (L/\mu)\ln(2\Delta/\varepsilon)` and
    :math:`\alpha = K_\infty\sigma^2/(\mu\varepsilon)`, :math:`M` ``batch_size``.

    Args:
        batch_size: mini-batch size(s) :math:`M > 0`.
        L: smoothness constant (> 0).
        mu: strong-convexity constant (``0 < mu <= L``).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eps: target on ``E f - f*`` (> 0).

    Returns:
        The bound on K(M), broadcast over the arguments; ``0`` where ``2 Delta <= eps`` (the
        start already meets the first half of the budget).

    Example:
        >>> round(strongly_convex_steps_bound(1.0, 1.0, 1.0, 1.0, 0.5, 0.5), 6)
        2.079442

    References:
        Derived following Perrone et al. 2019's method (arXiv 1911.06459); not checked against the
        paper's own equations (docs/theory/perrone2019.md, [derived]).

    """
    L, mu = _check_strong(L, mu)
    Delta = a.positive("Delta", Delta)
    eps = a.positive("eps", eps)
    bs = a.positive("batch_size", batch_size)
    sigma2 = a.nonnegative("sigma2", sigma2)
    ratio = (L / mu) * (1.0 + sigma2 / (mu * eps * bs))
    return a.out(ratio * np.maximum(np.log(2.0 * Delta / eps), 0.0))
