"""Perko 2023: optimal batch-size schedules from a small-learning-rate SDE expansion.

[stated] (abstract of arXiv 2312.01898): SGD with learning rate h is approximated by a family of
SDEs; the solution is expanded in powers of h; an optimal batch-size schedule is derived up to
an error quadratic in h and applied to linear regression.

[derived] (docs/theory/perko2023.md) everything below:
``E f(X_T) = f(X⁰_T) + hD + h∫ g(t)/b(t) dt + O(h²)``, the linear-regression ``g(t)``, the
Cauchy-Schwarz schedule ``b* ∝ √g`` (with a floor), and the exact discrete oracle used to check
it. Derived following Perko's method (arXiv 2312.01898); not checked against the paper's own
equations.

Scalar parameters (the learning rate, the budget, the floor, the label noise) broadcast
(docs/theory/README.md); grids, spectra and schedules are core dimensions and come last.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.integrate import trapezoid
from scipy.optimize import brentq

from critbatch import _validate as v
from critbatch.theory import _args as a

__all__ = [
    "constant_noise_term",
    "linear_regression_g",
    "linear_regression_schedule",
    "noise_term",
    "optimal_batch_schedule",
    "optimal_batch_sizes",
    "optimal_noise_term",
    "oracle_losses",
]


def _grid(t: Any, g: Any) -> tuple[np.ndarray, np.ndarray]:
    ts = v.real_vector("t", t)
    gs = v.real_vector("g", g)
    if ts.shape != gs.shape or ts.size < 2:
        raise ValueError(f"t and g must have equal length >= 2, got {ts.size} and {gs.size}")
    if np.any(np.diff(ts) <= 0):
        raise ValueError("t must be strictly increasing")
    if np.any(gs < 0):
        raise ValueError("g must be non-negative")
    return ts, gs


def linear_regression_g(t: Any, T: Any, eigvals: Any, e0: Any, noise_std: Any) -> Any:
    r"""Evaluate the noise weight g(t) of linear regression with Gaussian inputs.

    For :math:`x \sim N(0, S)`, :math:`S = \operatorname{diag}(\lambda_i)`, label noise of std
    :math:`s` and error :math:`e(t) = e^{-St}e_0` along the gradient flow,

    .. math::

        g(t) = \tfrac12\Big[\sum_i \lambda_i^3 e_{0i}^2 e^{-2\lambda_i T}
              + \Big(\sum_j \lambda_j e_{0j}^2 e^{-2\lambda_j t} + s^2\Big)
                \sum_i \lambda_i^2 e^{-2\lambda_i (T - t)}\Big],

    i.e. :math:`\tfrac12\operatorname{tr}(\Sigma(e(t))\,\Phi^\top S\Phi)` with
    :math:`\Phi = e^{-S(T-t)}` and the per-sample gradient covariance
    :math:`\Sigma(e) = See^\top S + (e^\top Se)S + s^2 S`.

    Args:
        t: time(s) in [0, T].
        T: horizon(s) :math:`T = Kh` (> 0).
        eigvals: eigenvalues :math:`\lambda_i > 0` of the input covariance (core).
        e0: initial error :math:`w_0 - w^\star` in the eigenbasis (scalar or per eigenvalue).
        noise_std: label-noise standard deviation(s) :math:`s \ge 0`.

    Returns:
        g(t), broadcast over ``t``, ``T`` and ``noise_std``; ``nan`` where ``t`` lies outside
        ``[0, T]`` (the expansion is defined on the horizon only).

    Example:
        >>> round(linear_regression_g(0.0, 1.0, [1.0], 1.0, 0.0), 6)
        0.135335

    References:
        Derived following Perko 2023's method (arXiv 2312.01898, https://arxiv.org/abs/2312.01898);
        not checked against the paper's own equations (docs/theory/perko2023.md, [derived]).

    """
    lam = v.real_vector("eigvals", eigvals, positive=True)
    e0s = v.real_vector("e0", e0, length=lam.size)
    T = a.positive("T", T)
    s = a.nonnegative("noise_std", noise_std)
    ts = a.real("t", t)
    tt, TT = ts[..., None], T[..., None]
    first = np.sum(lam**3 * e0s**2 * np.exp(-2 * lam * TT), axis=-1)
    loss_like = np.sum(lam * e0s**2 * np.exp(-2 * lam * tt), axis=-1) + s * s
    with np.errstate(over="ignore"):
        propagation = np.sum(lam**2 * np.exp(-2 * lam * (TT - tt)), axis=-1)
    inside = (ts >= 0) & (ts <= T)
    return a.out(np.where(inside, 0.5 * (first + loss_like * propagation), np.nan))


def _floored(
    gs: npt.NDArray[np.float64], ws: npt.NDArray[np.float64], budget: float, b_min: float | None
) -> np.ndarray:
    root_g: npt.NDArray[np.float64] = np.sqrt(gs)
    if b_min is None:
        return budget * root_g / float(ws @ root_g)
    floor_cost = b_min * float(ws.sum())
    if floor_cost > budget:
        return np.full(gs.size, np.nan)
    if floor_cost == budget:
        return np.full(gs.size, b_min)

    def excess(log_scale: float) -> float:  # scale = 1/sqrt(lambda)
        return float(ws @ np.maximum(b_min, root_g * math.exp(log_scale))) - budget

    hi = math.log(budget / float(ws @ root_g)) + 1.0
    lo = hi - 2.0
    while excess(lo) > 0:
        lo -= 10.0
    scale = math.exp(brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15))
    return np.maximum(b_min, root_g * scale)


def optimal_batch_sizes(
    g: Any, weights: Any, budget: Any, batch_size_min: Any = None
) -> np.ndarray:
    r"""Minimize the weighted noise sum over batch sizes at a fixed sample budget.

    .. math::

        \min_b \sum_k w_k \frac{g_k}{b_k}
        \;\text{s.t.}\; \sum_k w_k b_k = B,\; b_k \ge b_{\min}
        \quad\Longrightarrow\quad
        b_k = \max\!\left(b_{\min}, \sqrt{g_k/\lambda}\right),

    with :math:`\lambda` solved from the budget (Cauchy-Schwarz; without a floor
    :math:`b_k = B\sqrt{g_k}/\sum_j w_j\sqrt{g_j}`). Weights :math:`w_k = 1` give the discrete
    problem over steps; quadrature weights give the continuous one.

    Args:
        g: the noise weights :math:`g_k \ge 0` (not all zero; core).
        weights: the weights :math:`w_k > 0`, same length (or a scalar).
        budget: :math:`B` (> 0), e.g. the total samples N (discrete) or hN (continuous).
        batch_size_min: optional floor :math:`b_{\min}` (> 0).

    Returns:
        The optimal :math:`b_k` (real-valued), shape ``broadcast + (K,)`` over ``budget`` and
        ``batch_size_min``; without a floor, steps with :math:`g_k = 0` get :math:`b_k = 0`
        (they need no samples); all ``nan`` where the floor alone exceeds the budget
        (:math:`b_{\min}\sum_k w_k > B`: no schedule is feasible).

    Example:
        >>> optimal_batch_sizes([1.0, 4.0], 1.0, 30.0).tolist()
        [10.0, 20.0]

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    gs = v.real_vector("g", g)
    ws = v.real_vector("weights", weights, positive=True, length=gs.size)
    if np.any(gs < 0) or not np.any(gs > 0):
        raise ValueError("g must be non-negative and not all zero")
    budgets = a.positive("budget", budget)
    if batch_size_min is None:
        return a.loop(lambda budget: _floored(gs, ws, budget, None), budget=budgets)

    def kernel(budget: float, batch_size_min: float) -> np.ndarray:
        return _floored(gs, ws, budget, batch_size_min)

    return a.loop(
        kernel, budget=budgets, batch_size_min=a.positive("batch_size_min", batch_size_min)
    )


def optimal_batch_schedule(
    t: Any, g: Any, h: Any, n_samples: Any, batch_size_min: Any = None
) -> np.ndarray:
    r"""Return the continuous-time optimal schedule b*(t) on a time grid.

    .. math::

        b^\star(t) = \frac{h N \sqrt{g(t)}}{\int_0^T \sqrt{g(s)}\,ds}
        \quad\text{(floor: } b^\star = \max(b_{\min}, \sqrt{g/\lambda})\text{)},

    the minimizer of :math:`\int g/b` subject to :math:`\int_0^T b\,dt = hN`; integrals by the
    trapezoid rule on ``t``.

    Args:
        t: increasing time grid covering [0, T] (core).
        g: g on the grid (>= 0; core), e.g. :func:`linear_regression_g`.
        h: learning rate(s) (> 0), the time step.
        n_samples: the sample budget(s) N (> 0).
        batch_size_min: optional floor(s) (> 0).

    Returns:
        b*(t) on the grid, shape ``broadcast + (len(t),)`` (``nan`` rows as in
        :func:`optimal_batch_sizes`).

    Example:
        >>> optimal_batch_schedule([0.0, 1.0], [1.0, 1.0], h=0.1, n_samples=100.0).tolist()
        [10.0, 10.0]

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    ts, gs = _grid(t, g)
    budget = a.positive("h", h) * a.positive("n_samples", n_samples)
    return optimal_batch_sizes(gs, _trapezoid_weights(ts), budget, batch_size_min)


def _trapezoid_weights(ts: np.ndarray) -> np.ndarray:
    dt = np.diff(ts)
    w = np.zeros_like(ts)
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return w


def noise_term(t: Any, g: Any, batch_sizes: Any, h: Any) -> Any:
    r"""Evaluate the schedule-dependent term of the expansion, h∫g/b.

    .. math::

        h\int_0^T \frac{g(t)}{b(t)}\,dt.

    Args:
        t: time grid (core).
        g: g on the grid (core).
        batch_sizes: batch sizes :math:`b(t)` on the grid (> 0; core).
        h: learning rate(s) (> 0).

    Returns:
        The term (trapezoid rule), broadcast over ``h``.

    Example:
        >>> noise_term([0.0, 2.0], [1.0, 1.0], [4.0, 4.0], h=0.5)
        0.25

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    ts, gs = _grid(t, g)
    bs = v.real_vector("batch_sizes", batch_sizes, positive=True, length=ts.size)
    return a.out(a.positive("h", h) * float(trapezoid(gs / bs, ts)))


def optimal_noise_term(t: Any, g: Any, n_samples: Any) -> Any:
    r"""Evaluate the noise term at the optimal schedule, (∫√g)²/N.

    .. math::

        h\int \frac{g}{b^\star} = \frac{\left(\int_0^T \sqrt{g}\,dt\right)^2}{N}.

    Args:
        t: time grid (core).
        g: g on the grid (core).
        n_samples: the sample budget(s) N (> 0).

    Returns:
        The optimal noise term, broadcast over ``n_samples``.

    Example:
        >>> optimal_noise_term([0.0, 2.0], [1.0, 1.0], n_samples=8.0)
        0.5

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    ts, gs = _grid(t, g)
    return a.out(float(trapezoid(np.sqrt(gs), ts)) ** 2 / a.positive("n_samples", n_samples))


def constant_noise_term(t: Any, g: Any, n_samples: Any) -> Any:
    r"""Evaluate the noise term of the constant batch N/K, T∫g/N.

    .. math::

        h\int \frac{g}{N/K} = \frac{T\int_0^T g\,dt}{N}\quad (T = Kh),

    never below :func:`optimal_noise_term` (Cauchy-Schwarz).

    Args:
        t: time grid on [0, T] (core).
        g: g on the grid (core).
        n_samples: the sample budget(s) N (> 0).

    Returns:
        The constant-batch noise term, broadcast over ``n_samples``.

    Example:
        >>> constant_noise_term([0.0, 2.0], [1.0, 1.0], n_samples=8.0)
        0.5

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    ts, gs = _grid(t, g)
    span = float(ts[-1] - ts[0])
    return a.out(span * float(trapezoid(gs, ts)) / a.positive("n_samples", n_samples))


def linear_regression_schedule(
    eigvals: Any,
    e0: Any,
    noise_std: Any,
    h: Any,
    n_steps: int,
    n_samples: Any,
    batch_size_min: Any = None,
) -> np.ndarray:
    r"""Return per-step batch sizes b_k for linear regression, summing to ``n_samples``.

    Step :math:`k` (from :math:`t_k = kh` to :math:`t_{k+1}`) gets the weight
    :math:`g((k + \tfrac12)h)` of :func:`linear_regression_g` with :math:`T = Kh`, and

    .. math::

        b_k = \max\!\left(b_{\min}, \sqrt{g_k/\lambda}\right),\qquad \sum_k b_k = N,

    the discrete form of :func:`optimal_batch_schedule` (:func:`optimal_batch_sizes` with unit
    weights). Batch sizes are real; round them (keeping the sum) to run them.

    Args:
        eigvals: eigenvalues of the input covariance (core).
        e0: initial error in the eigenbasis (core).
        noise_std: label-noise std(s) (>= 0).
        h: learning rate(s) (> 0).
        n_steps: K (positive integer; the length of the core dimension).
        n_samples: total samples N (> 0).
        batch_size_min: optional floor(s) (> 0).

    Returns:
        Array of shape ``broadcast + (K,)`` (``nan`` rows where the floor exceeds the budget).

    Example:
        >>> linear_regression_schedule([1.0], 1.0, 0.0, 0.1, 4, 40.0).round(9).tolist()
        [10.0, 10.0, 10.0, 10.0]

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    n_steps = int(a.integer("n_steps", n_steps))
    centres = np.arange(n_steps) + 0.5

    def kernel(
        noise_std: float, h: float, n_samples: float, batch_size_min: float | None = None
    ) -> np.ndarray:
        g = linear_regression_g(centres * h, n_steps * h, eigvals, e0, noise_std)
        return np.asarray(optimal_batch_sizes(g, 1.0, n_samples, batch_size_min))

    args = {
        "noise_std": a.nonnegative("noise_std", noise_std),
        "h": a.positive("h", h),
        "n_samples": a.positive("n_samples", n_samples),
    }
    if batch_size_min is not None:
        args["batch_size_min"] = a.positive("batch_size_min", batch_size_min)
    return a.loop(kernel, **args)


def oracle_losses(eigvals: Any, e0: Any, noise_std: Any, h: Any, batch_sizes: Any) -> np.ndarray:
    r"""Compute the exact expected loss of minibatch SGD on Gaussian linear regression.

    With :math:`m_i = \mathbb{E}e_i^2` in the eigenbasis of
    :math:`S = \operatorname{diag}(\lambda)`:

    .. math::

        m_i' = (1 - h\lambda_i)^2 m_i + \frac{h^2}{b_k}\Big[\lambda_i^2 m_i
               + \lambda_i\sum_j\lambda_j m_j + s^2\lambda_i\Big],\qquad
        \mathbb{E}f = \tfrac12\sum_i \lambda_i m_i + \tfrac12 s^2,

    exact for any real batch sizes :math:`b_k` (the per-sample gradient covariance of Gaussian
    inputs depends on the error only through its diagonal second moments here).

    Args:
        eigvals: eigenvalues :math:`\lambda_i` (> 0; core).
        e0: initial error in the eigenbasis (deterministic; core).
        noise_std: label-noise std(s) :math:`s` (>= 0).
        h: learning rate(s) (> 0).
        batch_sizes: :math:`b_0, \dots, b_{K-1}` (> 0, real allowed; core).

    Returns:
        :math:`\mathbb{E}f` after 0, 1, ..., K steps, shape ``broadcast + (K + 1,)`` over
        ``noise_std`` and ``h`` (``inf``/``nan`` entries mark divergence).

    Example:
        >>> oracle_losses([1.0], 1.0, 0.0, 0.5, [1.0]).tolist()
        [0.5, 0.375]

    References:
        Derived following Perko 2023's method (arXiv 2312.01898); not checked against the paper's
        own equations (docs/theory/perko2023.md, [derived]).

    """
    lam = v.real_vector("eigvals", eigvals, positive=True)
    e0s = v.real_vector("e0", e0, length=lam.size)
    s2 = a.nonnegative("noise_std", noise_std) ** 2
    hs = a.positive("h", h)
    bs = v.real_vector("batch_sizes", batch_sizes, positive=True)
    shape = np.broadcast_shapes(s2.shape, hs.shape)
    s2, hs = np.broadcast_to(s2, shape)[..., None], np.broadcast_to(hs, shape)[..., None]
    m = np.broadcast_to(e0s**2, shape + lam.shape)
    out = np.empty((*shape, bs.size + 1))
    out[..., 0] = 0.5 * (m @ lam + s2[..., 0])
    with np.errstate(over="ignore", invalid="ignore"):
        for k, b in enumerate(bs):
            m = (1 - hs * lam) ** 2 * m + hs * hs / b * (
                lam**2 * m + lam * (m @ lam)[..., None] + s2 * lam
            )
            out[..., k + 1] = 0.5 * (m @ lam + s2[..., 0])
    return out
