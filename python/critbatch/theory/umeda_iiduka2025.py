"""Umeda & Iiduka 2025: growth schedules for the batch size and the learning rate.

[stated] (abstracts of arXiv 2508.05297 and 2508.05302): SFO complexity is the expected number of
gradient evaluations to an ε-stationary point; growth schedules for b and η reduce it; an adaptive
variant grows b when the full gradient norm falls below a threshold. The schedule shapes below
(``b_m = min(ceil(b0 delta^m), b_max)``, ``eta_m = eta0 gamma^m``,
``eps_m = eps0 sqrt(b0/b_m)``) are those of the authors' public code, as
docs/theory/umeda_iiduka2025.md records them.

[derived] (docs/theory/umeda_iiduka2025.md) the bound for varying ``(b_t, eta_t)`` and everything
computed from it: derived following Umeda & Iiduka's method (arXiv 2508.05297); not checked
against the paper's own equations. The optimization of (delta, gamma, stage length) is our
optimization of this reconstructed bound, not the paper's result.

A property of the reconstructed bound worth knowing before optimizing it: per step, the
progress ``eta_t (eps**2 (2 - L eta_max) - L sigma2 eta_t/b_t)`` per sample ``b_t`` is largest
at ``b_t = 2 L sigma2 eta_t/(eps**2 (2 - L eta_max))`` and is then independent of ``eta_t``, so
no schedule with the same ``eta_max`` needs fewer samples than the best constant batch of
:mod:`.iiduka2022`. Growth pays off against a *given* starting batch ``b0`` below that value (and
against naive growth), which is what :func:`optimize_growth_schedule` measures.

Scalar parameters broadcast (docs/theory/README.md); per-stage and per-step sequences are core
dimensions and come last in a result. Where the bound is vacuous (a rate at or above ``2/L``) it
is ``inf``, and so are the steps and SFO it certifies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.theory import _args as a

__all__ = [
    "GrowthOptimum",
    "ScheduleCost",
    "adaptive_thresholds",
    "batch_schedule",
    "bound",
    "bound_path",
    "linear_batch_schedule",
    "lr_schedule",
    "optimize_growth_schedule",
    "schedule_cost",
]


def _start_and_cap(batch_size0: Any, batch_size_max: Any) -> tuple[np.ndarray, np.ndarray]:
    b0 = a.integer("batch_size0", batch_size0)
    b_max = a.integer("batch_size_max", batch_size_max)
    low = np.broadcast_to(b0, np.broadcast_shapes(b0.shape, b_max.shape))
    bad = np.broadcast_to(b_max, low.shape) < low
    if np.any(bad):
        raise ValueError(
            f"batch_size_max must be >= batch_size0, got batch_size_max="
            f"{int(np.broadcast_to(b_max, low.shape)[bad].flat[0])} < batch_size0="
            f"{int(low[bad].flat[0])}"
        )
    return b0, b_max


def batch_schedule(batch_size0: Any, delta: Any, n_stages: int, batch_size_max: Any) -> np.ndarray:
    r"""Return the exponential batch-size schedule of stages ``m = 0 .. n_stages-1``.

    .. math::

        b_m = \min\left(\lceil b_0\, \delta^m \rceil,\; b_{\max}\right),

    with :math:`b_0` ``batch_size0``, growth factor :math:`\delta` ``delta`` and cap
    :math:`b_{\max}` ``batch_size_max``. The ceiling is taken after rounding
    :math:`b_0\delta^m` to 9 decimals, so that exact integers such as :math:`32\cdot 2^3` are not
    pushed up by floating-point error.

    Args:
        batch_size0: initial batch size (positive integer).
        delta: growth factor per stage (>= 1).
        n_stages: number of stages (positive integer; the length of the core dimension).
        batch_size_max: cap on the batch size (integer >= ``batch_size0``).

    Returns:
        Integer array of shape ``broadcast + (n_stages,)``: the stages are the last axis.

    Example:
        >>> batch_schedule(8, 2.0, 6, 100).tolist()
        [8, 16, 32, 64, 100, 100]
        >>> batch_schedule(3, [1.5, 2.0], 3, 100).tolist()
        [[3, 5, 7], [3, 6, 12]]

    References:
        Umeda & Iiduka 2025 (arXiv 2508.05297, https://arxiv.org/abs/2508.05297), the exponential
        schedule as the authors' public code runs it (docs/theory/umeda_iiduka2025.md, [stated]).

    """
    b0, b_max = _start_and_cap(batch_size0, batch_size_max)
    delta = a.at_least("delta", delta, 1.0)
    stages = np.arange(int(a.integer("n_stages", n_stages)), dtype=float)
    cap = np.asarray(b_max, dtype=float)[..., None]
    with np.errstate(over="ignore"):
        growth = np.asarray(b0, dtype=float)[..., None] * np.asarray(delta)[..., None] ** stages
    whole = np.minimum(np.ceil(np.round(np.minimum(growth, 2.0 * cap), 9)), cap)
    return np.asarray(whole, dtype=np.int64)


def linear_batch_schedule(
    batch_size0: Any, increment: Any, n_stages: int, batch_size_max: Any
) -> np.ndarray:
    r"""Return the linear-growth batch schedule ``b_m = min(ceil(b0 + c m), b_max)``.

    .. math::

        b_m = \min\left(\lceil b_0 + c\, m \rceil,\; b_{\max}\right),

    with :math:`b_0` ``batch_size0``, the increment :math:`c` ``increment`` and the cap
    :math:`b_{\max}` ``batch_size_max``; the naive-growth baseline.

    Args:
        batch_size0: initial batch size (positive integer).
        increment: added per stage (>= 0).
        n_stages: number of stages (the length of the core dimension).
        batch_size_max: cap (integer >= ``batch_size0``).

    Returns:
        Integer array of shape ``broadcast + (n_stages,)``.

    Example:
        >>> linear_batch_schedule(8, 8, 5, 30).tolist()
        [8, 16, 24, 30, 30]

    References:
        Umeda & Iiduka 2025 (arXiv 2508.05297), the linear-growth baseline
        (docs/theory/umeda_iiduka2025.md).

    """
    b0, b_max = _start_and_cap(batch_size0, batch_size_max)
    increment = a.nonnegative("increment", increment)
    stages = np.arange(int(a.integer("n_stages", n_stages)), dtype=float)
    growth = np.asarray(b0, dtype=float)[..., None] + np.asarray(increment)[..., None] * stages
    cap = np.asarray(b_max, dtype=float)[..., None]
    return np.asarray(np.minimum(np.ceil(np.round(growth, 9)), cap), dtype=np.int64)


def lr_schedule(eta0: Any, gamma: Any, n_stages: int, eta_max: Any = None) -> np.ndarray:
    r"""Return the geometric learning-rate schedule ``eta0 * gamma**m`` (optionally capped).

    .. math::

        \eta_m = \min\left(\eta_0\, \gamma^m,\; \eta_{\max}\right),

    with :math:`\eta_0` ``eta0`` and :math:`\gamma` ``gamma``; the authors' guideline is
    :math:`\delta \approx \gamma^2` (:math:`\eta \propto \sqrt{b}`), the linear scaling rule is
    :math:`\gamma = \delta`.

    Args:
        eta0: initial learning rate (> 0).
        gamma: factor per stage (> 0).
        n_stages: number of stages (the length of the core dimension).
        eta_max: optional cap (> 0); ``None`` leaves the rate uncapped.

    Returns:
        Float array of shape ``broadcast + (n_stages,)``.

    Example:
        >>> lr_schedule(0.1, 2.0, 4, eta_max=0.5).tolist()
        [0.1, 0.2, 0.4, 0.5]

    References:
        Umeda & Iiduka 2025 (arXiv 2508.05297), the schedule of the authors' public code
        (docs/theory/umeda_iiduka2025.md, [stated]); the cap is ours, needed to keep ``η < 2/L`` in
        the bound.

    """
    eta0 = a.positive("eta0", eta0)
    gamma = a.positive("gamma", gamma)
    stages = np.arange(int(a.integer("n_stages", n_stages)), dtype=float)
    with np.errstate(over="ignore"):
        rates = eta0[..., None] * gamma[..., None] ** stages
    if eta_max is not None:
        rates = np.minimum(rates, a.positive("eta_max", eta_max)[..., None])
    return np.asarray(rates, dtype=np.float64)


def adaptive_thresholds(
    eps0: Any, batch_size0: Any, delta: Any, batch_size_max: Any, n_increases: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""Return the batch sizes and gradient-norm thresholds of the adaptive rule.

    .. math::

        b_m = \min\left(\lceil b_0\, \delta^m \rceil, b_{\max}\right),\qquad
        \varepsilon_m = \varepsilon_0 \sqrt{b_0 / b_m},

    the batch size after the :math:`m`-th increase taken from the start :math:`b_0` (as
    :func:`batch_schedule`), not by compounding rounded values
    (:math:`\lceil\lceil b_0\delta\rceil\delta\rceil` may differ), so that
    :math:`b_m \varepsilon_m^2 = b_0\varepsilon_0^2` stays constant: the batch grows by
    :math:`\delta` each time the full gradient norm falls to :math:`\varepsilon_m`.

    Args:
        eps0: first threshold on the full gradient norm (> 0).
        batch_size0: initial batch size :math:`b_0` (positive integer).
        delta: growth factor (>= 1).
        batch_size_max: cap on the batch size.
        n_increases: number of increases to list (the core dimension has ``n_increases + 1``
            entries).

    Returns:
        ``(batch_sizes, thresholds)``, two arrays of shape ``broadcast + (n_increases + 1,)``.

    Example:
        >>> b, e = adaptive_thresholds(1.0, 4, 4.0, 64, 2)
        >>> b.tolist(), e.tolist()
        ([4, 16, 64], [1.0, 0.5, 0.25])
        >>> adaptive_thresholds(1.0, 3, 1.5, 100, 3)[0].tolist()  # not [3, 5, 8, 12]
        [3, 5, 7, 11]

    References:
        Umeda & Iiduka 2025, companion arXiv 2508.05302 (https://arxiv.org/abs/2508.05302), the rule
        as the authors' public code runs it (docs/theory/umeda_iiduka2025.md, [stated]).

    """
    eps0 = a.positive("eps0", eps0)
    n_increases = int(a.integer("n_increases", n_increases, minimum=0))
    batches = batch_schedule(batch_size0, delta, n_increases + 1, batch_size_max)
    batches = np.broadcast_to(
        batches, np.broadcast_shapes(eps0.shape, batches.shape[:-1]) + batches.shape[-1:]
    ).copy()
    return batches, eps0[..., None] * np.sqrt(batches[..., :1] / batches.astype(float))


def _schedules(batch_sizes: Any, lrs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return positive batch sizes and learning rates of equal length; a lone scalar is repeated."""
    if np.ndim(batch_sizes) == 0 and np.ndim(lrs) == 0:
        raise ValueError("batch_sizes and lrs cannot both be scalars: give per-step values")
    bs = v.real_vector("batch_sizes", batch_sizes, positive=True)
    etas = v.real_vector("lrs", lrs, positive=True)
    if np.ndim(batch_sizes) == 0:
        bs = np.full(etas.size, bs[0])
    if np.ndim(lrs) == 0:
        etas = np.full(bs.size, etas[0])
    if bs.shape != etas.shape:
        raise ValueError(f"batch_sizes and lrs must have equal length, got {bs.size}, {etas.size}")
    return bs, etas


def bound(
    batch_sizes: Any,
    lrs: Any,
    L: Any,
    sigma2: Any,
    Delta: Any,
    eta_max: Any = None,
) -> Any:
    r"""Evaluate the SGD bound on ``min_t E‖∇f(θ_t)‖²`` for per-step batch sizes and rates.

    .. math::

        \min_{t<T} \mathbb{E}\|\nabla f(\theta_t)\|^2 \le
        \frac{2\Delta + L\sigma^2 \sum_{t<T} \eta_t^2 / b_t}
             {(2 - L\eta_{\max}) \sum_{t<T} \eta_t},

    obtained by summing the descent lemma with :math:`\eta_t \le \eta_{\max} < 2/L`; ``Delta``
    is :math:`f(\theta_0) - f^\star`, ``sigma2`` the one-sample variance bound :math:`\sigma^2`.
    With constant :math:`b, \eta` it is :math:`C_1/T + C_2/b` of :mod:`.iiduka2022`.

    Args:
        batch_sizes: per-step batch sizes :math:`b_t` (core; a scalar is repeated over ``lrs``).
        lrs: per-step learning rates :math:`\eta_t` (core; a scalar is repeated over
            ``batch_sizes``).
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eta_max: the bound's :math:`\eta_{\max}` (>= every rate); defaults to ``max(lrs)``.

    Returns:
        The bound after all the steps given, broadcast over ``L``, ``sigma2``, ``Delta`` and
        ``eta_max``; ``inf`` where :math:`L\eta_{\max} \ge 2` (no bound).

    Raises:
        ValueError: if a rate exceeds a given ``eta_max``, or an argument is outside its domain.

    Example:
        >>> round(bound([1, 2], [0.5, 0.5], L=1.0, sigma2=1.0, Delta=1.0), 6)
        1.583333

    References:
        Derived following Umeda & Iiduka 2025's method (arXiv 2508.05297,
        https://arxiv.org/abs/2508.05297); not checked against the paper's own equations
        (docs/theory/umeda_iiduka2025.md, [derived]).

    """
    return a.out(np.asarray(bound_path(batch_sizes, lrs, L, sigma2, Delta, eta_max))[..., -1])


def bound_path(
    batch_sizes: Any,
    lrs: Any,
    L: Any,
    sigma2: Any,
    Delta: Any,
    eta_max: Any = None,
) -> np.ndarray:
    r"""Evaluate :func:`bound` after each step ``T = 1 .. len``, with a running ``η_max``.

    .. math::

        B_T = \frac{2\Delta + L\sigma^2 \sum_{t<T} \eta_t^2 / b_t}
                   {(2 - L \max_{t<T}\eta_t) \sum_{t<T} \eta_t}

    (or with the fixed ``eta_max`` when it is given).

    Args:
        batch_sizes: per-step batch sizes (core).
        lrs: per-step learning rates (core).
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eta_max: fixed :math:`\eta_{\max}`, or ``None`` for the running maximum.

    Returns:
        Array of shape ``broadcast + (T,)``, the bound after 1, 2, ..., T steps; ``inf`` at the
        steps where :math:`L\eta_{\max} \ge 2`.

    Example:
        >>> bound_path([2, 2], 1.0, L=1.0, sigma2=1.0, Delta=1.0).tolist()
        [2.5, 1.5]

    References:
        Derived following Umeda & Iiduka 2025's method (arXiv 2508.05297); not checked against the
        paper's own equations (docs/theory/umeda_iiduka2025.md, [derived]).

    """
    bs, etas = _schedules(batch_sizes, lrs)
    L = a.positive("L", L)[..., None]
    sigma2 = a.nonnegative("sigma2", sigma2)[..., None]
    Delta = a.positive("Delta", Delta)[..., None]
    if eta_max is None:
        largest = np.maximum.accumulate(etas)
    else:
        fixed = a.positive("eta_max", eta_max)
        if np.any(etas.max() > fixed):
            raise ValueError(
                f"lrs must not exceed eta_max, got max(lrs)={etas.max()!r} > "
                f"eta_max={float(fixed[etas.max() > fixed].flat[0])!r}"
            )
        largest = fixed[..., None]
    room = 2.0 - L * largest
    numerator = 2.0 * Delta + L * sigma2 * np.cumsum(etas**2 / bs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(room > 0, numerator / (room * np.cumsum(etas)), np.inf)


@dataclass(frozen=True)
class ScheduleCost:
    """Steps and SFO needed by a staged schedule to bring the bound to ``eps**2``.

    Each field is a number, or an array shaped like the broadcast parameters of
    :func:`schedule_cost`.

    Attributes:
        steps: first T with bound <= eps**2 (``inf`` if never).
        sfo: the stochastic gradients used by then, ``sum_{t<T} b_t`` (``inf`` likewise).
        final_batch: batch size of the stage in which the target was reached (or the last one).
        final_lr: learning rate of that stage.

    """

    steps: Any
    sfo: Any
    final_batch: Any
    final_lr: Any


def _stage_cost(
    bs: np.ndarray,
    etas: np.ndarray,
    stage_steps: int,
    L: float,
    sigma2: float,
    Delta: float,
    eps: float,
) -> ScheduleCost:
    """The exact first crossing of the bound, stage by stage (scalar parameters)."""
    target = eps * eps
    numerator, lr_sum, eta_run, steps_done, sfo_done = 2.0 * Delta, 0.0, 0.0, 0, 0.0
    for m, (b, eta) in enumerate(zip(bs, etas, strict=True)):
        eta_run = max(eta_run, eta)
        c = (2.0 - L * eta_run) * target
        gain = c * eta - L * sigma2 * eta**2 / b
        last = m == bs.size - 1
        need = numerator - c * lr_sum
        if need <= 0:  # already below before this stage's first step (cannot happen at m=0)
            k = 0
        elif gain > 0:
            k = max(1, math.ceil(need / gain * (1 - 1e-14)))
        else:
            k = None
        if k is not None and (last or k <= stage_steps):
            return ScheduleCost(steps_done + k, float(sfo_done + k * b), float(b), float(eta))
        if last:
            return ScheduleCost(math.inf, math.inf, float(b), float(eta))
        numerator += stage_steps * L * sigma2 * eta**2 / b
        lr_sum += stage_steps * eta
        steps_done += stage_steps
        sfo_done += stage_steps * b
    raise AssertionError("unreachable")  # pragma: no cover


def schedule_cost(
    batch_sizes: Any,
    lrs: Any,
    stage_steps: Any,
    *,
    L: Any,
    sigma2: Any,
    Delta: Any,
    eps: Any,
) -> ScheduleCost:
    r"""Compute the steps and SFO to reach ``eps`` under a staged schedule, stage by stage.

    Stage :math:`m` runs ``stage_steps`` steps at :math:`(b_m, \eta_m)`; the last stage given is
    held forever. Inside a stage the bound after :math:`k` more steps is

    .. math::

        B = \frac{A + k L\sigma^2\eta_m^2/b_m}{(2 - L\eta_{\max})(S + k\eta_m)} \le \varepsilon^2
        \iff k \ge \frac{A - \varepsilon^2(2 - L\eta_{\max}) S}
                        {\varepsilon^2(2 - L\eta_{\max})\eta_m - L\sigma^2\eta_m^2/b_m},

    with :math:`A, S` the numerator and :math:`\sum\eta` accumulated before the stage and
    :math:`\eta_{\max}` the largest rate used so far, so the first crossing is found exactly.

    Args:
        batch_sizes: stage batch sizes :math:`b_m` (core; e.g. :func:`batch_schedule`).
        lrs: stage learning rates :math:`\eta_m` (core; e.g. :func:`lr_schedule`).
        stage_steps: steps per stage (positive integer).
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eps: gradient-norm target (> 0).

    Returns:
        A :class:`ScheduleCost` whose fields broadcast over ``stage_steps``, ``L``, ``sigma2``,
        ``Delta`` and ``eps``; infinite steps and SFO where the held last stage cannot reach
        ``eps`` (its batch at or below the pole of :mod:`.iiduka2022`, or a rate at or above
        ``2/L`` used before).

    Example:
        >>> c = schedule_cost([2, 4], [0.5, 0.5], 10, L=1.0, sigma2=1.0, Delta=1.0, eps=1.0)
        >>> c.steps, c.sfo
        (4, 8.0)

    References:
        Derived following Umeda & Iiduka 2025's method (arXiv 2508.05297); not checked against the
        paper's own equations (docs/theory/umeda_iiduka2025.md, [derived]).

    """
    bs, etas = _schedules(batch_sizes, lrs)

    def kernel(stage_steps: int, L: float, sigma2: float, Delta: float, eps: float) -> ScheduleCost:
        return _stage_cost(bs, etas, stage_steps, L, sigma2, Delta, eps)

    return a.loop(
        kernel,
        stage_steps=a.integer("stage_steps", stage_steps),
        L=a.positive("L", L),
        sigma2=a.nonnegative("sigma2", sigma2),
        Delta=a.positive("Delta", Delta),
        eps=a.positive("eps", eps),
    )


@dataclass(frozen=True)
class GrowthOptimum:
    """The best (delta, gamma, stage length) on a grid, with its cost under the bound.

    Each field is a number (a :class:`ScheduleCost` for ``cost``), or an array shaped like the
    broadcast parameters of :func:`optimize_growth_schedule`.

    Attributes:
        delta: batch growth factor per stage.
        gamma: learning-rate factor per stage.
        stage_steps: steps per stage.
        cost: the :class:`ScheduleCost` of that schedule.

    """

    delta: Any
    gamma: Any
    stage_steps: Any
    cost: ScheduleCost


def optimize_growth_schedule(
    *,
    batch_size0: Any,
    eta0: Any,
    batch_size_max: Any,
    eta_max: Any,
    L: Any,
    sigma2: Any,
    Delta: Any,
    eps: Any,
    deltas: Any,
    gammas: Any,
    stage_steps: Any,
    n_stages: int,
) -> GrowthOptimum:
    r"""Search (delta, gamma, stage length) on a grid for the least SFO to ``eps`` under the bound.

    Each candidate is the schedule :math:`b_m = \min(\lceil b_0\delta^m\rceil, b_{\max})`,
    :math:`\eta_m = \min(\eta_0\gamma^m, \eta_{\max})` over ``n_stages`` stages (the last held
    forever), costed exactly by :func:`schedule_cost`:

    .. math::

        (\delta^\star, \gamma^\star, k^\star) = \operatorname*{arg\,min}_{\delta, \gamma, k}
        \operatorname{SFO}(b(\delta), \eta(\gamma), k).

    The objective is piecewise constant (ceilings), so an exhaustive grid is used rather than a
    gradient method.

    Args:
        batch_size0: initial batch size :math:`b_0` (positive integer).
        eta0: initial learning rate (> 0).
        batch_size_max: batch-size cap (integer >= ``batch_size0``).
        eta_max: learning-rate cap (> 0; rates at or above ``2/L`` cost ``inf``).
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eps: gradient-norm target (> 0).
        deltas: candidate batch growth factors (>= 1; the grid, a core argument).
        gammas: candidate learning-rate factors (> 0; the grid).
        stage_steps: candidate stage lengths (positive integers; the grid).
        n_stages: stages per schedule (the last is held).

    Returns:
        A :class:`GrowthOptimum` whose fields broadcast over the scalar parameters; ties go to
        the first candidate in grid order (with ``inf`` cost when no candidate reaches ``eps``).

    Example:
        >>> best = optimize_growth_schedule(batch_size0=1, eta0=0.5, batch_size_max=64,
        ...     eta_max=0.5, L=1.0, sigma2=1.0, Delta=1.0, eps=0.5, deltas=[1.0, 2.0],
        ...     gammas=[1.0], stage_steps=[5, 20], n_stages=8)
        >>> best.delta, bool(best.cost.sfo < schedule_cost([1], [0.5], 1, L=1.0, sigma2=1.0,
        ...     Delta=1.0, eps=0.5).sfo)
        (2.0, True)

    References:
        Our optimization of the bound derived following Umeda & Iiduka 2025's method (arXiv
        2508.05297); not the paper's result and not checked against its equations
        (docs/theory/umeda_iiduka2025.md, [derived]).

    """
    grid_deltas = v.real_vector("deltas", deltas)
    a.at_least("deltas", grid_deltas, 1.0)
    grid_gammas = v.real_vector("gammas", gammas, positive=True)
    grid_steps = np.atleast_1d(a.integer("stage_steps", stage_steps)).ravel()
    n_stages = int(a.integer("n_stages", n_stages))
    b0, b_max = _start_and_cap(batch_size0, batch_size_max)

    def kernel(
        batch_size0: int,
        eta0: float,
        batch_size_max: int,
        eta_max: float,
        L: float,
        sigma2: float,
        Delta: float,
        eps: float,
    ) -> GrowthOptimum:
        best: GrowthOptimum | None = None
        for delta in grid_deltas:
            bs = batch_schedule(batch_size0, float(delta), n_stages, batch_size_max)
            for gamma in grid_gammas:
                etas = lr_schedule(eta0, float(gamma), n_stages, eta_max)
                for k in grid_steps:
                    cost = _stage_cost(bs.astype(float), etas, int(k), L, sigma2, Delta, eps)
                    if best is None or cost.sfo < best.cost.sfo:
                        best = GrowthOptimum(float(delta), float(gamma), int(k), cost)
        assert best is not None
        return best

    return a.loop(
        kernel,
        batch_size0=b0,
        eta0=a.positive("eta0", eta0),
        batch_size_max=b_max,
        eta_max=a.positive("eta_max", eta_max),
        L=a.positive("L", L),
        sigma2=a.nonnegative("sigma2", sigma2),
        Delta=a.positive("Delta", Delta),
        eps=a.positive("eps", eps),
    )
