"""Zhang et al. 2019: the noisy quadratic model (NQM), solved exactly in expectation.

The model: ``f(x) = ½ Σ h_i x_i²`` with stochastic gradient ``h_i x_i + ξ_i``,
``ξ_i ~ N(0, c_i/b)`` independent across steps and coordinates (the paper takes ``c_i = h_i``).
Each coordinate evolves independently and linearly, so the first and second moments of the
iterates obey exact linear recurrences: the expected loss is computed without sampling.

[stated] (docs/theory/zhang2019.md; arXiv 1907.04164): the model, the SGD recurrence
``E[x²]_{t+1} = (1 - ηh)² E[x²]_t + η²c/b``, preconditioning by ``H^{-p}`` as ``h → h^{1-p}``
in the drift and ``c → c h^{-2p}`` in the noise, and the claims that momentum and
preconditioning raise the critical batch size.

[derived] the heavy-ball recurrence on ``(E x², E xv, E v²)`` in torch's convention and the
second-moment recurrence of the exponential moving average of iterates: derived following
Zhang et al.'s method (arXiv 1907.04164); not checked against the paper's own equations; tested
against Monte Carlo.

Scalar parameters broadcast (docs/theory/README.md); the spectrum ``h, c, x0`` and per-step
schedules are core dimensions.

Design notes: steps to a target without iterating
--------------------------------------------------

With a constant learning rate and batch size, the expected loss after ``k`` steps has a closed
form, so :func:`nqm_steps_to_target` (``method="auto"``) never walks the steps one by one:

* SGD: per coordinate ``E x_k² = rho^k x0² + η²(c/b)·(1 - rho^k)/(1 - rho)`` with
  ``rho = (1 - ηh)²``; both terms are monotone in ``k`` (the first falls, or grows when
  ``rho > 1``; the second rises), and the geometric sum is formed with ``expm1`` so ``rho``
  near 1 loses nothing.
* Heavy ball: the state ``(x, v)`` moves by ``A = [[1 - ηh, -ημ], [h, μ]]``, so
  ``E x_k² = P*₁₁ + w_kᵀ(P₀ - P*)w_k`` with ``w_kᵀ`` the first row of ``A^k`` (repeated
  squaring, 2x2 per coordinate) and ``P*`` the fixed point of the covariance recurrence (a 3x3
  solve per coordinate). Split by the eigenvalues ``λ₁, λ₂`` of ``A`` (``λ₁λ₂ = μ``), the
  deviation is ``c₁λ₁^{2k} + c₂μ^k + c₃λ₂^{2k}`` (real, distinct: three monotone terms) or
  ``αμ^k + Re(βλ₁^{2k})`` (complex: a monotone term and an oscillation inside ``±|β|μ^k``); near
  critical damping (``|λ₁ - λ₂| < 1e-3``, where those coefficients lose precision) it is bounded
  by ``‖P₀ - P*‖·(k rho^{k-2}(rho ‖a₁‖ + μ))²`` from ``A^k = U_k A - μU_{k-1}I`` and
  ``|U_k| ≤ k rho^{k-1}`` (``rho`` the larger ``|λ|``).

The loss is not monotone in general (a coordinate that starts below its stationary level rises;
heavy ball oscillates), so plain bisection would be wrong. Instead every interval ``[a, b]`` of
steps gets a rigorous lower and upper bound on the loss from those terms (a monotone term is
bounded by its values at the ends, an oscillation by its envelope at ``a``), widened by a
rounding margin, and a branch and bound over ``[0, max_steps]`` discards intervals that cannot
hold the answer: for ``"first_below"`` the left-most interval whose lower bound is below
``tau`` is split first, for ``"after_last_above"`` the right-most one whose upper bound is at or
above it. Intervals of at most 64 steps are evaluated exactly, step by step, from the closed
form at their start. With monotone terms only the search visits two intervals per level, about
``2 log2(max_steps/64)`` in all; oscillations add a few near the start, where they are large.
Averaging of iterates, per-step schedules, and a heavy-ball coordinate with ``|λ|`` within
1e-6 of 1 (where ``P*`` is ill-conditioned) use the step-by-step recurrence, which stays
available as ``method="iterate"`` and is the tests' oracle: the two give equal step counts, up
to a loss within rounding (about 1e-12 relative) of ``tau`` at the decisive step.

Measured on the development machine (AMD EPYC, 2 shared cores, NumPy 2.4; d = 1000 with
``h_i = c_i = 1/i``, x0 = 1, target 1 % of the initial loss, lr = 0.01, ``max_steps = 10**7``):
the exact K(b) curve for b = 1, 2, 4, ..., 2^20 (21 batch sizes) takes 0.04 s for SGD (K from
84 949 to 109 677 steps) and 0.29 s for heavy ball (momentum 0.9, K from 8 492 to 12 029, inf
below b = 8), 0.34 s for both; the step-by-step recurrence takes 7.0 s for the single point
b = 1 of the SGD curve. A search costs about 40 interval bounds (0.3 ms each for heavy ball at
d = 1000) and one or two 64-step leaves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from critbatch import _validate as v
from critbatch.theory import _args as a

__all__ = [
    "CONVENTIONS",
    "METHODS",
    "NqmMoments",
    "OptimalLrSteps",
    "nqm_expected_loss",
    "nqm_expected_loss_at",
    "nqm_moments",
    "nqm_steps_to_target",
    "optimal_lr_steps",
    "sgd_second_moment",
    "steps_to_target",
]

#: The two ways to count steps to a target (they agree on a monotone loss curve).
CONVENTIONS = ("first_below", "after_last_above")
#: How :func:`nqm_steps_to_target` finds the steps: the closed-form search where it applies
#: (``"auto"``), or the step-by-step recurrence (``"iterate"``, the oracle).
METHODS = ("auto", "iterate")
#: Intervals of at most this many steps are evaluated exactly by the closed-form search.
_LEAF = 64
#: Below this eigenvalue gap a heavy-ball coordinate is bounded by its envelope, not its modes.
_NEAR_CRITICAL = 1e-3


@dataclass(frozen=True)
class NqmMoments:
    """Exact per-coordinate moments of the NQM iterates after ``n_steps`` steps.

    Each field has shape ``broadcast + (d,)`` (``(d,)`` for scalar parameters).

    Attributes:
        mean_x: ``E x_t``.
        second_x: ``E x_t²``.
        mean_v: ``E v_t`` (the momentum buffer; zero for SGD).
        cross_xv: ``E x_t v_t``.
        second_v: ``E v_t²``.
        mean_y: ``E y_t`` (the averaged iterate; equals ``mean_x`` without averaging).
        second_y: ``E y_t²``.

    """

    mean_x: np.ndarray
    second_x: np.ndarray
    mean_v: np.ndarray
    cross_xv: np.ndarray
    second_v: np.ndarray
    mean_y: np.ndarray
    second_y: np.ndarray


class _Problem:
    """Validated NQM inputs (scalar parameters) with the preconditioned drift and noise."""

    def __init__(
        self, h: Any, c: Any, x0: Any, momentum: float, precondition_power: float, averaging: float
    ) -> None:
        self.h = v.real_vector("h", h, positive=True)
        dim = self.h.size
        self.c = v.real_vector("c", c, nonnegative=True, length=dim)
        self.x0 = v.real_vector("x0", x0, length=dim)
        self.momentum = float(a.in_range("momentum", momentum, 0.0, 1.0))
        self.power = float(a.real("precondition_power", precondition_power))
        self.averaging = float(a.in_range("averaging", averaging, 0.0, 1.0))
        self.h_eff = self.h ** (1.0 - self.power)
        self.c_eff = self.c * self.h ** (-2.0 * self.power)


def _per_step(name: str, value: Any, n_steps: int) -> np.ndarray:
    array = v.real_vector(name, value, positive=True)
    if array.size == 1:
        return np.full(n_steps, array[0])
    if array.size != n_steps:
        raise ValueError(
            f"{name} must be a scalar or have length n_steps={n_steps}, got {array.size}"
        )
    return array


def _run(
    problem: _Problem, lrs: np.ndarray, batches: np.ndarray, tau: float | None, record: bool
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Iterate the exact moment recurrences.

    ``lrs`` has shape ``(n_steps, n_candidates)``: each column is one learning-rate sequence,
    run side by side. Returns the loss trajectory ``(steps_done + 1, n_candidates)`` (or just the
    final loss when ``record`` is false), the final moments, and the steps done; with ``tau``
    the loop stops at the first step where some candidate's loss is below ``tau``.
    """
    h, he, ce, mu, beta = (
        problem.h,
        problem.h_eff,
        problem.c_eff,
        problem.momentum,
        (problem.averaging),
    )
    n_cand = lrs.shape[1]
    shape = (n_cand, h.size)
    mx = np.broadcast_to(problem.x0, shape).copy()
    mv = np.zeros(shape)
    my = mx.copy()
    X = mx**2
    C = np.zeros(shape)
    V = np.zeros(shape)
    XY = X.copy()
    VY = np.zeros(shape)
    Y = X.copy()
    losses = [0.5 * Y @ h]
    steps_done = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(lrs.shape[0]):
            if tau is not None and np.any(losses[-1] < tau):
                break
            eta = lrs[t][:, None]
            n = ce / batches[t]
            a = 1.0 - eta * he
            # cross moments with the averaged iterate, from the pre-step values
            exy = a * XY - eta * mu * VY
            evy = he * XY + mu * VY
            X_new = a * a * X - 2.0 * a * eta * mu * C + (eta * mu) ** 2 * V + eta**2 * n
            C_new = a * he * X + mu * (a - eta * he) * C - eta * mu * mu * V - eta * n
            V_new = he * he * X + 2.0 * he * mu * C + mu * mu * V + n
            XY = beta * exy + (1.0 - beta) * X_new
            VY = beta * evy + (1.0 - beta) * C_new
            Y = beta * beta * Y + 2.0 * beta * (1.0 - beta) * exy + (1.0 - beta) ** 2 * X_new
            X, C, V = X_new, C_new, V_new
            mx, mv = a * mx - eta * mu * mv, he * mx + mu * mv
            my = beta * my + (1.0 - beta) * mx
            loss = 0.5 * Y @ h
            if record or tau is not None:
                losses.append(loss)
            else:
                losses[0] = loss
            steps_done += 1
    moments = {
        "mean_x": mx,
        "second_x": X,
        "mean_v": mv,
        "cross_xv": C,
        "second_v": V,
        "mean_y": my,
        "second_y": Y,
    }
    return np.asarray(losses), moments, steps_done


def nqm_moments(
    h: Any,
    c: Any,
    x0: Any,
    lr: Any,
    batch_size: Any,
    n_steps: int,
    *,
    momentum: Any = 0.0,
    precondition_power: Any = 0.0,
    averaging: Any = 0.0,
) -> NqmMoments:
    r"""Compute the exact first and second moments of the NQM iterates after ``n_steps`` steps.

    Per coordinate (index dropped), with :math:`\tilde h = h^{1-p}`,
    :math:`\tilde c = c\,h^{-2p}`, :math:`a_t = 1 - \eta_t\tilde h`,
    :math:`n_t = \tilde c / b_t`, momentum :math:`\mu` in torch's convention
    (:math:`v_{t+1} = \mu v_t + g_t`, :math:`x_{t+1} = x_t - \eta_t v_{t+1}`, :math:`v_0 = 0`)
    and the averaged iterate :math:`y_{t+1} = \beta y_t + (1-\beta) x_{t+1}`, :math:`y_0 = x_0`:

    .. math::

        \mathbb{E}x_{t+1}^2 &= a_t^2 X_t - 2a_t\eta_t\mu C_t + \eta_t^2\mu^2 V_t + \eta_t^2 n_t \\
        \mathbb{E}x_{t+1}v_{t+1} &= a_t\tilde h X_t + \mu(a_t - \eta_t\tilde h) C_t
            - \eta_t\mu^2 V_t - \eta_t n_t \\
        \mathbb{E}v_{t+1}^2 &= \tilde h^2 X_t + 2\tilde h\mu C_t + \mu^2 V_t + n_t \\
        \mathbb{E}x_{t+1}y_t &= a_t\,\mathbb{E}x_t y_t - \eta_t\mu\,\mathbb{E}v_t y_t,\quad
        \mathbb{E}v_{t+1}y_t = \tilde h\,\mathbb{E}x_t y_t + \mu\,\mathbb{E}v_t y_t \\
        \mathbb{E}y_{t+1}^2 &= \beta^2\,\mathbb{E}y_t^2
            + 2\beta(1-\beta)\,\mathbb{E}x_{t+1}y_t + (1-\beta)^2\,\mathbb{E}x_{t+1}^2,

    with :math:`X, C, V` the moments :math:`\mathbb{E}x^2, \mathbb{E}xv, \mathbb{E}v^2`; with
    :math:`\mu = 0` the first line is the SGD recurrence
    :math:`(1-\eta h)^2 X_t + \eta^2 c/b`.

    Args:
        h: curvatures :math:`h_i > 0`, shape ``(d,)`` (core).
        c: per-example gradient noise variances :math:`c_i >= 0` (scalar or ``(d,)``).
        x0: the deterministic start (scalar or ``(d,)``).
        lr: learning rate, a scalar or one value per step (length ``n_steps``; core).
        batch_size: batch size (> 0, real values allowed), a scalar or one per step (core).
        n_steps: number of steps (>= 0).
        momentum: heavy-ball coefficient(s) :math:`\mu` in [0, 1).
        precondition_power: :math:`p` of the preconditioner :math:`H^{-p}` (0: none, 1: Newton).
        averaging: EMA coefficient(s) :math:`\beta` in [0, 1) of the iterate average (0: none).

    Returns:
        An :class:`NqmMoments` whose fields have shape ``broadcast + (d,)``, broadcast over
        ``momentum``, ``precondition_power`` and ``averaging`` (``inf``/``nan`` mark
        divergence).

    Example:
        >>> m = nqm_moments([1.0], [1.0], 1.0, lr=0.5, batch_size=1, n_steps=1)
        >>> m.second_x.tolist()
        [0.5]

    References:
        Zhang et al. 2019, the NQM and its SGD recurrence (arXiv 1907.04164,
        https://arxiv.org/abs/1907.04164) ([stated]); the momentum and averaging recurrences are
        derived following Zhang et al. 2019's method; not checked against the paper's own equations
        (docs/theory/zhang2019.md, [derived]).

    Warning:
        The momentum convention is torch's (``buf = μ buf + g; x -= lr·buf``), whose effective
        step is ``lr/(1 - μ)``; the paper's convention may scale the gradient differently.

    """
    n_steps = int(a.integer("n_steps", n_steps, minimum=0))
    lrs = _per_step("lr", lr, n_steps)[:, None] if n_steps else np.zeros((0, 1))
    batches = _per_step("batch_size", batch_size, n_steps) if n_steps else np.zeros(0)

    def kernel(momentum: float, precondition_power: float, averaging: float) -> NqmMoments:
        problem = _Problem(h, c, x0, momentum, precondition_power, averaging)
        _, moments, _ = _run(problem, lrs, batches, tau=None, record=False)
        return NqmMoments(**{k: val[0] for k, val in moments.items()})

    return a.loop(kernel, **_options(momentum, precondition_power, averaging))


def _options(momentum: Any, precondition_power: Any, averaging: Any) -> dict[str, np.ndarray]:
    return {
        "momentum": a.in_range("momentum", momentum, 0.0, 1.0),
        "precondition_power": a.real("precondition_power", precondition_power),
        "averaging": a.in_range("averaging", averaging, 0.0, 1.0),
    }


def nqm_expected_loss(
    h: Any,
    c: Any,
    x0: Any,
    lr: Any,
    batch_size: Any,
    n_steps: int,
    *,
    momentum: Any = 0.0,
    precondition_power: Any = 0.0,
    averaging: Any = 0.0,
) -> np.ndarray:
    r"""Compute the exact expected NQM loss after each step ``t = 0 .. n_steps``.

    .. math::

        \ell_t = \tfrac12 \sum_i h_i\, \mathbb{E}[y_{t,i}^2],

    with :math:`y = x` without averaging; the moments follow :func:`nqm_moments`. The loss is
    always measured with the true curvatures :math:`h_i`, also when preconditioning.

    Args:
        h: curvatures, shape ``(d,)`` (core).
        c: per-example noise variances.
        x0: start.
        lr: learning rate (scalar or per step; core).
        batch_size: batch size (scalar or per step; core).
        n_steps: number of steps.
        momentum: heavy-ball coefficient(s) in [0, 1).
        precondition_power: preconditioner power(s) :math:`p`.
        averaging: iterate-EMA coefficient(s) in [0, 1).

    Returns:
        Array of shape ``broadcast + (n_steps + 1,)`` (``inf``/``nan`` entries mark
        divergence).

    Example:
        >>> nqm_expected_loss([1.0], [1.0], 1.0, 0.5, 1, 2).tolist()
        [0.5, 0.25, 0.1875]

    References:
        Zhang et al. 2019 (arXiv 1907.04164), docs/theory/zhang2019.md; see :func:`nqm_moments` for
        which parts are [stated] and which [derived].

    """
    n_steps = int(a.integer("n_steps", n_steps, minimum=0))
    lrs = _per_step("lr", lr, n_steps)[:, None] if n_steps else np.zeros((0, 1))
    batches = _per_step("batch_size", batch_size, n_steps) if n_steps else np.zeros(0)

    def kernel(momentum: float, precondition_power: float, averaging: float) -> np.ndarray:
        problem = _Problem(h, c, x0, momentum, precondition_power, averaging)
        losses, _, _ = _run(problem, lrs, batches, tau=None, record=True)
        return losses[:, 0]

    return a.loop(kernel, **_options(momentum, precondition_power, averaging))


def nqm_expected_loss_at(
    h: Any,
    c: Any,
    x0: Any,
    lr: Any,
    batch_size: Any,
    t: Any,
    *,
    momentum: Any = 0.0,
    precondition_power: Any = 0.0,
) -> Any:
    r"""Compute the exact expected NQM loss after ``t`` steps in closed form, without iterating.

    For SGD, per coordinate with :math:`\rho = (1 - \eta\tilde h)^2`,

    .. math::

        \mathbb{E}x_t^2 = \rho^t x_0^2 + \eta^2\frac{\tilde c}{b}\,\frac{1 - \rho^t}{1 - \rho},
        \qquad \ell_t = \tfrac12\sum_i h_i\,\mathbb{E}x_{t,i}^2;

    for heavy ball :math:`\mathbb{E}x_t^2 = P^\star_{11} + w_t^\top(P_0 - P^\star)w_t` with
    :math:`w_t^\top` the first row of :math:`A^t`,
    :math:`A = \begin{pmatrix}1 - \eta\tilde h & -\eta\mu\\ \tilde h & \mu\end{pmatrix}`,
    :math:`P_0 = \operatorname{diag}(x_0^2, 0)` and :math:`P^\star` the fixed point of
    :math:`P \mapsto APA^\top + (\tilde c/b)\,(-\eta, 1)^\top(-\eta, 1)` (the module's design
    notes). Constant learning rate and batch size, no iterate averaging.

    Args:
        h: curvatures, shape ``(d,)`` (core).
        c: per-example noise variances (scalar or ``(d,)``).
        x0: start (scalar or ``(d,)``).
        lr: constant learning rate(s) (> 0).
        batch_size: constant batch size(s) (> 0).
        t: step count(s) (non-negative integers).
        momentum: heavy-ball coefficient(s) in [0, 1).
        precondition_power: preconditioner power(s).

    Returns:
        :math:`\ell_t`, broadcast over ``lr``, ``batch_size``, ``t``, ``momentum`` and
        ``precondition_power``; equal to :func:`nqm_expected_loss` up to rounding
        (``inf``/``nan`` mark divergence).

    Example:
        >>> nqm_expected_loss_at([1.0], [1.0], 1.0, 0.5, 1, [0, 1, 2]).tolist()
        [0.5, 0.25, 0.1875]

    References:
        Zhang et al. 2019 (arXiv 1907.04164): the solution of the SGD recurrence ([stated]); the
        heavy-ball solution is derived following the paper's method (docs/theory/zhang2019.md,
        [derived]).

    """

    def kernel(
        lr: float, batch_size: float, t: int, momentum: float, precondition_power: float
    ) -> float:
        problem = _Problem(h, c, x0, momentum, precondition_power, 0.0)
        try:
            return float(_closed_form(problem, lr, batch_size).losses(t, t)[0])
        except _IllConditioned:
            return _affine_power_loss(problem, lr, batch_size, t)

    return a.loop(
        kernel,
        lr=a.positive("lr", lr),
        batch_size=a.positive("batch_size", batch_size),
        t=a.integer("t", t, minimum=0),
        momentum=a.in_range("momentum", momentum, 0.0, 1.0),
        precondition_power=a.real("precondition_power", precondition_power),
    )


def sgd_second_moment(h: Any, c: Any, x0: Any, lr: Any, batch_size: Any, t: Any) -> Any:
    r"""Evaluate the closed form of ``E x_t²`` for constant-rate SGD on the NQM.

    .. math::

        \mathbb{E}x_t^2 = (1-\eta h)^{2t} x_0^2
            + \eta^2\frac{c}{b}\,\frac{1 - (1-\eta h)^{2t}}{1 - (1-\eta h)^2}

    (the last fraction is :math:`t` when :math:`(1-\eta h)^2 = 1`).

    Args:
        h: curvature(s) (> 0).
        c: noise variance(s) (>= 0).
        x0: start(s).
        lr: constant learning rate(s) (> 0).
        batch_size: constant batch size(s) (> 0).
        t: step count(s) (>= 0).

    Returns:
        ``E x_t²``, broadcast over all the arguments.

    Example:
        >>> sgd_second_moment(1.0, 1.0, 1.0, 0.5, 1.0, 2)
        0.375

    References:
        Zhang et al. 2019 (arXiv 1907.04164): the solution of the SGD recurrence
        (docs/theory/zhang2019.md, [stated]).

    """
    hs = a.positive("h", h)
    lr = a.positive("lr", lr)
    b = a.positive("batch_size", batch_size)
    ts = a.nonnegative("t", t)
    rho = (1.0 - lr * hs) ** 2
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        decay = rho**ts
        geometric = np.where(
            np.isclose(rho, 1.0, rtol=0, atol=1e-15), ts, (1.0 - decay) / (1.0 - rho)
        )
        return a.out(decay * a.real("x0", x0) ** 2 + lr**2 * a.nonnegative("c", c) / b * geometric)


def _count(ls: np.ndarray, tau: float, convention: str) -> float:
    below = ls < tau
    if convention == "first_below":
        return float(np.argmax(below)) if below.any() else math.inf
    if not below[-1]:
        return math.inf
    above = np.flatnonzero(~below)
    return float(above[-1] + 1) if above.size else 0.0


def steps_to_target(losses: Any, tau: Any, convention: str = "first_below") -> Any:
    r"""Count the steps a loss trajectory needs to reach ``tau``, under a named convention.

    With :math:`\ell_0, \dots, \ell_T` the loss after :math:`t` steps:

    .. math::

        K_{\text{first\_below}} = \min\{t : \ell_t < \tau\},\qquad
        K_{\text{after\_last\_above}} = 1 + \max\{t : \ell_t \ge \tau\}.

    They agree on a non-increasing trajectory; on an oscillating one the second is later (it
    counts a run as done only once it stays below).

    Args:
        losses: the trajectory :math:`\ell_0, \dots, \ell_T`, shape ``(..., T + 1)`` (``nan``
            counts as above; leading dimensions are several trajectories).
        tau: the target(s) (the loss must be strictly below it), broadcast with the leading
            dimensions of ``losses``.
        convention: ``"first_below"`` or ``"after_last_above"``.

    Returns:
        The step count as a float, broadcast over the trajectories and ``tau``; ``inf`` when
        the target is not reached by :math:`T`, or, for ``"after_last_above"``, when
        :math:`\ell_T \ge \tau`.

    Example:
        >>> steps_to_target([3.0, 0.5, 2.0, 0.4], 1.0, "first_below")
        1.0
        >>> steps_to_target([3.0, 0.5, 2.0, 0.4], 1.0, "after_last_above")
        3.0

    References:
        Zhang et al. 2019 (arXiv 1907.04164; docs/theory/zhang2019.md) for both conventions; Shallue
        et al. 2019 use the first (first evaluation strictly past the threshold).

    """
    ls = np.asarray(losses, dtype=float)
    if ls.ndim < 1 or ls.shape[-1] == 0:
        raise ValueError(f"losses must be a non-empty (..., T + 1) array, got shape {ls.shape}")
    convention = v.choice("convention", convention, CONVENTIONS)
    flat = ls.reshape(-1, ls.shape[-1])
    index = np.arange(flat.shape[0]).reshape(ls.shape[:-1])

    def kernel(trajectory: int, tau: float) -> float:
        return _count(flat[trajectory], tau, convention)

    return a.loop(kernel, trajectory=index, tau=a.real("tau", tau))


def nqm_steps_to_target(
    h: Any,
    c: Any,
    x0: Any,
    lr: Any,
    batch_size: Any,
    tau: Any,
    *,
    max_steps: int,
    convention: str = "first_below",
    momentum: Any = 0.0,
    precondition_power: Any = 0.0,
    averaging: Any = 0.0,
    method: str = "auto",
) -> Any:
    r"""Count the steps until the exact expected NQM loss reaches ``tau``.

    .. math::

        K(b, \eta) = \min\{t \le T : \ell_t < \tau\}
        \quad\text{or}\quad 1 + \max\{t \le T : \ell_t \ge \tau\},

    with :math:`\ell_t` the expected loss of :func:`nqm_expected_loss` and :math:`T` =
    ``max_steps``. ``method="auto"`` finds the step by a branch and bound on the closed form of
    :func:`nqm_expected_loss_at` (the module's design notes): milliseconds, whatever
    :math:`T`; averaging and ill-conditioned heavy-ball coordinates fall back to iterating.
    ``method="iterate"`` walks the recurrence step by step (the oracle); both give the same
    counts up to a loss within rounding of ``tau`` at the decisive step.

    Args:
        h: curvatures, shape ``(d,)`` (core).
        c: noise variances (scalar or ``(d,)``).
        x0: start (scalar or ``(d,)``).
        lr: constant learning rate(s) (> 0).
        batch_size: constant batch size(s) (> 0).
        tau: loss target(s).
        max_steps: horizon :math:`T` (positive integer).
        convention: ``"first_below"`` or ``"after_last_above"`` (see :func:`steps_to_target`).
        momentum: heavy-ball coefficient(s) in [0, 1).
        precondition_power: preconditioner power(s).
        averaging: iterate-EMA coefficient(s) in [0, 1).
        method: ``"auto"`` (closed form where it applies) or ``"iterate"``.

    Returns:
        The steps as a float, broadcast over ``lr``, ``batch_size``, ``tau``, ``momentum``,
        ``precondition_power`` and ``averaging``; ``inf`` if not reached within
        ``max_steps`` (or, for ``"after_last_above"``, still at or above ``tau`` at step
        :math:`T`).

    Example:
        >>> nqm_steps_to_target([1.0], [0.0], 1.0, 0.5, 1, tau=0.01, max_steps=100)
        3.0
        >>> nqm_steps_to_target([1.0], [1.0], 1.0, 0.5, [1, 4, 16], tau=0.15, max_steps=100)
        array([inf,  2.,  1.])

    References:
        Zhang et al. 2019 (arXiv 1907.04164), docs/theory/zhang2019.md.

    """
    max_steps = int(a.integer("max_steps", max_steps))
    convention = v.choice("convention", convention, CONVENTIONS)
    method = v.choice("method", method, METHODS)

    def kernel(
        lr: float,
        batch_size: float,
        tau: float,
        momentum: float,
        precondition_power: float,
        averaging: float,
    ) -> float:
        problem = _Problem(h, c, x0, momentum, precondition_power, averaging)
        if method == "auto":
            found = _steps_closed_form(problem, lr, batch_size, tau, max_steps, convention)
            if found is not None:
                return found
        return _steps_iterated(problem, lr, batch_size, tau, max_steps, convention)

    return a.loop(
        kernel,
        lr=a.positive("lr", lr),
        batch_size=a.positive("batch_size", batch_size),
        tau=a.real("tau", tau),
        **_options(momentum, precondition_power, averaging),
    )


@dataclass(frozen=True)
class OptimalLrSteps:
    """Steps to target at the best learning rate of a grid, one entry per batch size.

    Each field has shape ``broadcast + (len(batch_sizes),)``.

    Attributes:
        batch_sizes: the batch sizes.
        steps: K(b) at the best learning rate (``inf`` if no rate reaches the target).
        best_lr: the minimizing learning rate (``nan`` where none reaches the target).

    """

    batch_sizes: np.ndarray
    steps: np.ndarray
    best_lr: np.ndarray


def _best_of_grid(
    problem: _Problem,
    bs: np.ndarray,
    etas: np.ndarray,
    tau: float,
    max_steps: int,
    convention: str,
    method: str,
) -> OptimalLrSteps:
    steps = np.full(bs.size, math.inf)
    best = np.full(bs.size, math.nan)
    closed = method == "auto" and problem.averaging == 0.0
    lr_table = np.broadcast_to(etas, (max_steps, etas.size))
    for i, b in enumerate(bs):
        per_lr = None
        if closed:
            try:
                forms = [_closed_form(problem, float(lr), float(b)) for lr in etas]
            except _IllConditioned:
                forms = None
            if forms is not None:
                search = _first_below if convention == "first_below" else _after_last_above
                per_lr = np.array([search(f, tau, max_steps) for f in forms])
                if np.isfinite(per_lr).any():
                    k = int(per_lr.min())
                    final = np.array(
                        [
                            f.losses(k, k)[0] if per_lr[j] == k else np.nan
                            for j, f in enumerate(forms)
                        ]
                    )
        if per_lr is None:
            stop = tau if convention == "first_below" else None
            losses, _, _ = _run(problem, lr_table, np.full(max_steps, b), tau=stop, record=True)
            per_lr = np.array([_count(losses[:, j], tau, convention) for j in range(etas.size)])
            if np.isfinite(per_lr).any():
                k = int(per_lr.min())
                final = np.where(per_lr == k, losses[k], np.nan)
        if np.isfinite(per_lr).any():
            candidates = np.flatnonzero(per_lr == per_lr.min())
            values = final[candidates]
            j = (
                candidates[int(np.nanargmin(values))]
                if np.isfinite(values).any()
                else (candidates[0])
            )
            steps[i], best[i] = per_lr[j], etas[j]
    return OptimalLrSteps(bs, steps, best)


def optimal_lr_steps(
    h: Any,
    c: Any,
    x0: Any,
    batch_sizes: Any,
    lrs: Any,
    tau: Any,
    *,
    max_steps: int,
    convention: str = "first_below",
    momentum: Any = 0.0,
    precondition_power: Any = 0.0,
    averaging: Any = 0.0,
    method: str = "auto",
) -> OptimalLrSteps:
    r"""Compute K(b) at the best learning rate of a grid, for each batch size.

    .. math::

        K(b) = \min_{\eta \in \text{lrs}} K(b, \eta),

    with :math:`K(b, \eta)` from :func:`nqm_steps_to_target`; ties go to the rate with the
    lowest loss at step :math:`K(b)`. ``method="auto"`` uses the closed-form search per rate;
    ``"iterate"`` runs all rates side by side (with ``"first_below"`` it stops at the first step
    where any rate is below ``tau``). Plotting :math:`bK(b)` or applying
    :func:`critbatch.theory.zhang2024.critical_batch_size_from_curve` shows how momentum and
    preconditioning move the critical batch size.

    Args:
        h: curvatures (core).
        c: noise variances.
        x0: start.
        batch_sizes: batch sizes to evaluate (> 0; the grid, core).
        lrs: candidate learning rates (> 0; the grid, core).
        tau: loss target(s).
        max_steps: horizon.
        convention: ``"first_below"`` or ``"after_last_above"``.
        momentum: heavy-ball coefficient(s).
        precondition_power: preconditioner power(s).
        averaging: iterate-EMA coefficient(s).
        method: ``"auto"`` or ``"iterate"``.

    Returns:
        An :class:`OptimalLrSteps` whose fields broadcast over ``tau``, ``momentum``,
        ``precondition_power`` and ``averaging`` (the batch sizes last).

    Example:
        >>> out = optimal_lr_steps([1.0], [0.0], 1.0, [1], [0.1, 0.5, 1.0], 0.01, max_steps=100)
        >>> out.steps.tolist(), out.best_lr.tolist()
        ([1.0], [1.0])

    References:
        Zhang et al. 2019 (arXiv 1907.04164): K(b) at the best learning rate per batch size
        (docs/theory/zhang2019.md).

    """
    bs = v.real_vector("batch_sizes", batch_sizes, positive=True)
    etas = v.real_vector("lrs", lrs, positive=True)
    max_steps = int(a.integer("max_steps", max_steps))
    convention = v.choice("convention", convention, CONVENTIONS)
    method = v.choice("method", method, METHODS)

    def kernel(
        tau: float, momentum: float, precondition_power: float, averaging: float
    ) -> OptimalLrSteps:
        problem = _Problem(h, c, x0, momentum, precondition_power, averaging)
        return _best_of_grid(problem, bs, etas, tau, max_steps, convention, method)

    return a.loop(
        kernel, tau=a.real("tau", tau), **_options(momentum, precondition_power, averaging)
    )


# ---------------------------------------------------------------------------------------------
# The closed form at any step, and rigorous bounds over an interval of steps.


class _IllConditioned(Exception):
    """The closed form would lose precision here: iterate instead."""


class _SgdForm:
    """``E x_k²`` of constant-rate SGD per coordinate: ``rho^k x0² + q (1 - rho^k)/(1 - rho)``."""

    def __init__(self, problem: _Problem, lr: float, batch_size: float) -> None:
        step = lr * problem.h_eff
        # log rho = 2 log|1 - ηh|, formed so that ηh near 0 or 2 loses nothing
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            self.log_rho = 2.0 * np.log1p(np.where(step <= 1.0, -step, step - 2.0))
            self.denominator = np.expm1(self.log_rho)
        self.start = problem.x0**2
        self.noise = lr * lr * problem.c_eff / batch_size
        self.weight = 0.5 * problem.h

    def _terms(self, k: Any) -> tuple[np.ndarray, np.ndarray]:
        """The decaying and the accumulating part of the loss, per coordinate, at steps ``k``."""
        k = np.asarray(k, dtype=float)[..., None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            exponent = np.where(k == 0, 0.0, k * self.log_rho)
            geometric = np.where(self.log_rho == 0, k, np.expm1(exponent) / self.denominator)
            geometric = np.where(k == 0, 0.0, geometric)
            # a zero start or zero noise contributes exactly 0, also where its factor overflows
            decay = np.where(self.start == 0, 0.0, self.weight * self.start * np.exp(exponent))
            noise = np.where(self.noise == 0, 0.0, self.weight * self.noise * geometric)
            return decay, noise

    def losses(self, first: int, last: int) -> np.ndarray:
        decay, noise = self._terms(np.arange(first, last + 1))
        with np.errstate(invalid="ignore", over="ignore"):
            out = np.sum(decay + noise, axis=-1)
        return np.where(np.isfinite(out) | (out > 0), out, np.nan)

    def bounds(self, first: int, last: int) -> tuple[float, float]:
        (d0, n0), (d1, n1) = self._terms(first), self._terms(last)
        with np.errstate(invalid="ignore", over="ignore"):
            low = float(np.sum(np.minimum(d0, d1) + n0))
            high = float(np.sum(np.maximum(d0, d1) + n1))
        return _widen(low, -1e-12 * abs(low)), _widen(high, 1e-12 * abs(high))


def _widen(bound: Any, margin: Any) -> float:
    """``bound + margin``, except that an infinite bound stays what it is (no inf - inf)."""
    value = float(bound)
    return value if math.isinf(value) else value + float(margin)


def _matmul2(p: tuple[np.ndarray, ...], q: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    p11, p12, p21, p22 = p
    q11, q12, q21, q22 = q
    return (
        p11 * q11 + p12 * q21,
        p11 * q12 + p12 * q22,
        p21 * q11 + p22 * q21,
        p21 * q12 + p22 * q22,
    )


class _HeavyBallForm:
    """``E x_k² = P*₁₁ + w_kᵀ Q w_k`` of heavy ball per coordinate, ``w_kᵀ = e₁ᵀA^k``."""

    def __init__(self, problem: _Problem, lr: float, batch_size: float) -> None:
        mu, h = problem.momentum, problem.h_eff
        d = h.size
        self.A = (1.0 - lr * h, np.full(d, -lr * mu), h.copy(), np.full(d, mu))
        a11, a12, a21, a22 = self.A
        trace = a11 + a22
        disc = trace * trace - 4.0 * mu
        root = np.sqrt(np.abs(disc))
        big = (np.abs(trace) + root) / 2.0  # |λ| of the larger root (real) or |tr|/2 + ... bound
        real = disc > 0
        lam1 = np.where(real, np.copysign(big, trace), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam2 = np.where(real, mu / lam1, 0.0)
        if np.any(real & (np.abs(lam1 * lam1 - 1.0) < 1e-6)):
            raise _IllConditioned
        noise = problem.c_eff / batch_size
        # P* = A P* Aᵀ + n b bᵀ, b = (-η, 1), in the unknowns (P11, P12, P22)
        m = np.stack(
            [
                np.stack([a11 * a11, 2 * a11 * a12, a12 * a12], axis=-1),
                np.stack([a11 * a21, a11 * a22 + a12 * a21, a12 * a22], axis=-1),
                np.stack([a21 * a21, 2 * a21 * a22, a22 * a22], axis=-1),
            ],
            axis=-2,
        )
        rhs = noise[:, None] * np.array([lr * lr, -lr, 1.0])
        try:
            fixed = np.linalg.solve(np.eye(3) - m, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError as err:  # pragma: no cover - excluded by the check above
            raise _IllConditioned from err
        self.weight = 0.5 * problem.h
        self.stationary = float(self.weight @ fixed[:, 0])
        q11, q12, q22 = problem.x0**2 - fixed[:, 0], -fixed[:, 1], -fixed[:, 2]
        self.Q = (q11, q12, q22)
        self.settled = (q11 == 0) & (q12 == 0) & (q22 == 0)
        # modes, where the eigenvalue gap leaves the coefficients well-conditioned
        gap = np.where(real, np.abs(lam1 - lam2), root)
        near = gap < _NEAR_CRITICAL
        self.real = real & ~near
        self.cplx = ~real & ~near
        self.near = near

        def form(u1: Any, u2: Any, v1: Any, v2: Any) -> Any:
            return q11 * u1 * v1 + q12 * (u1 * v2 + u2 * v1) + q22 * u2 * v2

        w = self.weight
        with np.errstate(divide="ignore", invalid="ignore"):
            # real: u = a1 - λ2 e1, v = a1 - λ1 e1,
            # deviation (uᵀQu λ1^2k - 2uᵀQv μ^k + vᵀQv λ2^2k)/δ²
            delta2 = (lam1 - lam2) ** 2
            u1, v1 = a11 - lam2, a11 - lam1
            coef = (
                np.stack(
                    [form(u1, a12, u1, a12), -2.0 * form(u1, a12, v1, a12), form(v1, a12, v1, a12)],
                    axis=-1,
                )
                / delta2[:, None]
            )
            rates = np.stack([lam1 * lam1, np.full(d, mu), lam2 * lam2], axis=-1)
            self.r_coef = (w[:, None] * coef)[self.real]
            self.r_rate = rates[self.real]
            # complex: λ1 = tr/2 + iδ/2, u = a1 - conj(λ1) e1 = (a11 - tr/2 + iδ/2, a12),
            # deviation (μ^k u^H Q u - Re(λ1^{2k} uᵀQu)) 2/δ²
            p1, s1 = a11 - trace / 2.0, root / 2.0
            hermitian = form(p1, a12, p1, a12) + q11 * s1 * s1
            square = complex(1) * (form(p1, a12, p1, a12) - q11 * s1 * s1) + 2j * s1 * (
                q11 * p1 + q12 * a12
            )
            scale = 2.0 / (root * root)
            self.c_mono = (w * hermitian * scale)[self.cplx]
            self.c_osc = (w * np.abs(square) * scale)[self.cplx]
        # near critical: |w_kᵀQw_k| <= |Q| (k rho^{k-2} (rho |a1| + μ))², |U_k| <= k rho^{k-1}
        rho = big * (1.0 + 1e-12)
        qnorm = np.abs(q11 + q22) / 2.0 + np.sqrt(((q11 - q22) / 2.0) ** 2 + q12 * q12)
        row = np.hypot(a11, a12)
        self.n_rho: npt.NDArray[np.float64] = rho[near]
        n_scale = w * qnorm * (rho * row + mu) ** 2 * (1.0 + 1e-9)
        self.n_scale: npt.NDArray[np.float64] = n_scale[near]
        self.n_start: npt.NDArray[np.float64] = (w * np.abs(q11))[near]
        self.mu = mu
        self.kappa = (
            256.0
            * np.finfo(float).eps
            * (trace * trace + 4.0 * mu)
            / np.maximum(gap, _NEAR_CRITICAL) ** 2
        )

    def _row(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first row of ``A^k`` per coordinate, by repeated squaring."""
        d = self.A[0].size
        result: tuple[np.ndarray, ...] = (np.ones(d), np.zeros(d), np.zeros(d), np.ones(d))
        base: tuple[np.ndarray, ...] = self.A
        with np.errstate(over="ignore", invalid="ignore"):
            while k:
                if k & 1:
                    result = _matmul2(result, base)
                k >>= 1
                if k:
                    base = _matmul2(base, base)
        return result[0], result[1]

    def losses(self, first: int, last: int) -> np.ndarray:
        q11, q12, q22 = self.Q
        a11, a12, a21, a22 = self.A
        w1, w2 = self._row(first)
        out = np.empty(last - first + 1)
        with np.errstate(over="ignore", invalid="ignore"):
            for j in range(out.size):
                deviation = q11 * w1 * w1 + 2.0 * q12 * w1 * w2 + q22 * w2 * w2
                deviation[self.settled] = 0.0  # Q = 0: no deviation, even where w overflows
                out[j] = self.stationary + float(self.weight @ deviation)
                w1, w2 = w1 * a11 + w2 * a21, w1 * a12 + w2 * a22
        # a second moment is never negative: -inf or nan means terms overflowed (divergence)
        return np.where(np.isfinite(out) | (out > 0), out, np.nan)

    def bounds(self, first: int, last: int) -> tuple[float, float]:
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            zero = self.r_coef == 0  # a mode that is not excited stays 0 where its rate overflows
            t0 = np.where(zero, 0.0, self.r_coef * self.r_rate**first)
            t1 = np.where(zero, 0.0, self.r_coef * self.r_rate**last)
            # per coordinate: each mode's range over [first, last] from its two ends
            low, high = np.minimum(t0, t1).sum(axis=-1), np.maximum(t0, t1).sum(axis=-1)
            # the rounding of the modal coefficients grows as 1/gap² (kappa); each side's
            # margin uses only the terms on that side, so a mode that overflows at ``last``
            # (divergence) leaves the other side finite
            k_real, k_cplx = self.kappa[self.real], self.kappa[self.cplx]
            slack_low = k_real @ np.abs(np.minimum(t0, t1)).sum(axis=-1)
            slack_high = k_real @ np.abs(np.maximum(t0, t1)).sum(axis=-1)
            m0, m1 = self.c_mono * self.mu**first, self.c_mono * self.mu**last
            osc = self.c_osc * self.mu**first
            slack_c = k_cplx @ (np.abs(m0) + osc)
            envelope = float(self._envelope(first, last).sum())
            low_total = self.stationary + low.sum() + (np.minimum(m0, m1) - osc).sum() - envelope
            high_total = self.stationary + high.sum() + (np.maximum(m0, m1) + osc).sum() + envelope
            low_total = _widen(low_total, -(slack_low + slack_c + 1e-12 * abs(low_total)))
            high_total = _widen(high_total, slack_high + slack_c + 1e-12 * abs(high_total))
            return low_total, high_total

    def _envelope(self, first: int, last: int) -> np.ndarray:
        """Sup over k in [first, last] of the near-critical bound on |deviation|, per coord."""
        out = self.n_start if first == 0 else np.zeros_like(self.n_start)
        if last < 1:
            return out
        lo = max(first, 1)
        rho = self.n_rho
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            peak = np.where(rho < 1.0, -1.0 / np.log(rho), np.inf)
            k = np.clip(peak, lo, last)
            g = k * rho ** (k - 2.0)
        return np.maximum(out, self.n_scale * g * g)


def _affine_power_loss(problem: _Problem, lr: float, batch_size: float, t: int) -> float:
    """The loss after ``t`` steps from the 4x4 affine map of ``(E x², E xv, E v², 1)``.

    Repeated squaring of the second-moment recurrence itself: no fixed point is needed, so it
    holds where ``P*`` is singular (an eigenvalue of ``A`` at -1).
    """
    mu, h = problem.momentum, problem.h_eff
    d = h.size
    a11, a12, a21, a22 = 1.0 - lr * h, np.full(d, -lr * mu), h, np.full(d, mu)
    n = problem.c_eff / batch_size
    zero = np.zeros(d)
    step = np.stack(
        [
            np.stack([a11 * a11, 2 * a11 * a12, a12 * a12, lr * lr * n], axis=-1),
            np.stack([a11 * a21, a11 * a22 + a12 * a21, a12 * a22, -lr * n], axis=-1),
            np.stack([a21 * a21, 2 * a21 * a22, a22 * a22, n], axis=-1),
            np.stack([zero, zero, zero, np.ones(d)], axis=-1),
        ],
        axis=-2,
    )
    state = np.stack([problem.x0**2, zero, zero, np.ones(d)], axis=-1)[..., None]
    with np.errstate(over="ignore", invalid="ignore"):
        while t:
            if t & 1:
                state = step @ state
            t >>= 1
            if t:
                step = step @ step
        return float(0.5 * problem.h @ state[:, 0, 0])


def _closed_form(problem: _Problem, lr: float, batch_size: float) -> _SgdForm | _HeavyBallForm:
    if problem.momentum == 0.0:
        return _SgdForm(problem, lr, batch_size)
    return _HeavyBallForm(problem, lr, batch_size)


def _first_below(form: _SgdForm | _HeavyBallForm, tau: float, horizon: int) -> float:
    stack = [(0, horizon)]
    while stack:
        first, last = stack.pop()
        low, _ = form.bounds(first, last)
        if low >= tau:  # no step in [first, last] is below (a nan bound prunes nothing)
            continue
        if last - first < _LEAF:
            below = np.flatnonzero(form.losses(first, last) < tau)
            if below.size:
                return float(first + below[0])
            continue
        mid = (first + last) // 2
        stack.append((mid + 1, last))
        stack.append((first, mid))
    return math.inf


def _after_last_above(form: _SgdForm | _HeavyBallForm, tau: float, horizon: int) -> float:
    if not form.losses(horizon, horizon)[0] < tau:
        return math.inf
    stack = [(0, horizon)]
    while stack:
        first, last = stack.pop()
        _, high = form.bounds(first, last)
        if high < tau:  # every step in [first, last] is below
            continue
        if last - first < _LEAF:
            above = np.flatnonzero(~(form.losses(first, last) < tau))
            if above.size:
                return float(first + above[-1] + 1)
            continue
        mid = (first + last) // 2
        stack.append((first, mid))
        stack.append((mid + 1, last))
    return 0.0


def _steps_closed_form(
    problem: _Problem, lr: float, batch_size: float, tau: float, max_steps: int, convention: str
) -> float | None:
    """Steps to ``tau`` by the closed-form search, or ``None`` where it does not apply."""
    if problem.averaging != 0.0:
        return None
    try:
        form = _closed_form(problem, lr, batch_size)
    except _IllConditioned:
        return None
    if convention == "first_below":
        return _first_below(form, tau, max_steps)
    return _after_last_above(form, tau, max_steps)


def _steps_iterated(
    problem: _Problem, lr: float, batch_size: float, tau: float, max_steps: int, convention: str
) -> float:
    stop = tau if convention == "first_below" else None
    losses, _, _ = _run(
        problem, np.full((max_steps, 1), lr), np.full(max_steps, batch_size), tau=stop, record=True
    )
    return float(steps_to_target(losses[:, 0], tau, convention))
