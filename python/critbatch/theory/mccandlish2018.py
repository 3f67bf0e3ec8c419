"""McCandlish et al. 2018: the gradient noise scale and the steps/examples trade-off.

[stated] (docs/theory/mccandlish2018.md; standard results under the paper's name, arXiv
1812.06162): the noise scales ``B_noise = tr(HΣ)/(GᵀHG)`` and ``B_simple = tr(Σ)/|G|²``; the
trade-off ``S(B) = S_min(1 + B_noise/B)``, ``E(B) = E_min(1 + B/B_noise)`` with
``(S/S_min - 1)(E/E_min - 1) = 1``; ``B_crit = E_min/S_min``; the unbiased two-batch estimators of
``|G|²`` and ``tr(Σ)``; and the advice to form ``B_simple`` as a ratio of running means.

The paper writes the batch size B; the argument is ``batch_size`` here as in every theory
module. Scalar parameters broadcast (docs/theory/README.md); gradients ``(..., d)`` and matrices
``(..., d, d)`` broadcast over their leading dimensions, and measured sequences are core.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.theory import _args as a

__all__ = [
    "GradientNoiseScale",
    "b_noise",
    "b_simple",
    "critical_batch_size",
    "examples",
    "examples_from_steps",
    "gradient_norm_sq_estimate",
    "optimal_learning_rate",
    "running_b_simple",
    "steps",
    "trace_sigma_estimate",
]


def _gradient_and_covariance(G: Any, Sigma: Any) -> tuple[np.ndarray, np.ndarray]:
    g = a.real("G", G)
    sigma = a.real("Sigma", Sigma)
    if g.ndim < 1:
        raise ValueError(f"G must have shape (..., d), got a scalar {G!r}")
    d = g.shape[-1]
    if sigma.ndim < 2 or sigma.shape[-2:] != (d, d):
        raise ValueError(f"Sigma must have shape (..., {d}, {d}), got {sigma.shape}")
    return g, sigma


def b_simple(G: Any, Sigma: Any) -> Any:
    r"""Compute the simple noise scale, the Hessian-free proxy of the critical batch size.

    .. math::

        B_{\text{simple}} = \frac{\operatorname{tr}\Sigma}{|G|^2},

    with :math:`G` ``G`` the true gradient and :math:`\Sigma` ``Sigma`` the per-example
    gradient covariance.

    Args:
        G: true gradient(s), shape ``(..., d)``.
        Sigma: per-example gradient covariance(s), shape ``(..., d, d)``.

    Returns:
        B_simple, broadcast over the leading dimensions; ``inf`` at a stationary point
        (:math:`G = 0`, :math:`\operatorname{tr}\Sigma > 0`), ``nan`` when both vanish.

    Example:
        >>> b_simple([1.0, 1.0], [[2.0, 0.0], [0.0, 4.0]])
        3.0

    References:
        McCandlish et al. 2018, Sec. 2.2 (arXiv 1812.06162, https://arxiv.org/abs/1812.06162);
        docs/theory/mccandlish2018.md ([stated]).

    """
    g, sigma = _gradient_and_covariance(G, Sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.trace(sigma, axis1=-2, axis2=-1) / np.einsum("...i,...i->...", g, g))


def b_noise(G: Any, Sigma: Any, H: Any) -> Any:
    r"""Compute the noise scale B_noise, the batch at which the loss decrease halves.

    .. math::

        B_{\text{noise}} = \frac{\operatorname{tr}(H\Sigma)}{G^\top H G},

    with :math:`H` ``H`` the Hessian; for :math:`H \propto I` it equals :math:`B_{\text{simple}}`.

    Args:
        G: true gradient(s), shape ``(..., d)``.
        Sigma: per-example gradient covariance(s), shape ``(..., d, d)``.
        H: Hessian(s), shape ``(..., d, d)``.

    Returns:
        B_noise, broadcast over the leading dimensions; ``inf`` where :math:`G^\top HG = 0` and
        :math:`\operatorname{tr}(H\Sigma) > 0` (no finite optimal step), ``nan`` where
        :math:`G^\top HG < 0` (negative curvature along :math:`G`: the quadratic model has no
        optimal step) or both vanish.

    Example:
        >>> b_noise([1.0, 1.0], [[2.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 3.0]])
        3.5

    References:
        McCandlish et al. 2018, Sec. 2.2 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    g, sigma = _gradient_and_covariance(G, Sigma)
    h = a.real("H", H)
    if h.ndim < 2 or h.shape[-2:] != sigma.shape[-2:]:
        raise ValueError(f"H must have shape (..., {g.shape[-1]}, {g.shape[-1]}), got {h.shape}")
    curvature = np.einsum("...i,...ij,...j->...", g, h, g)
    noise = np.einsum("...ij,...ji->...", h, sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(curvature >= 0, noise / curvature, np.nan))


def optimal_learning_rate(batch_size: Any, lr_max: Any, B_noise: Any) -> Any:
    r"""Compute the optimal learning rate at batch size B under the quadratic model.

    .. math::

        \epsilon_{\text{opt}}(B) = \frac{\epsilon_{\max}}{1 + B_{\text{noise}}/B},

    with :math:`B` ``batch_size`` and :math:`\epsilon_{\max}` ``lr_max`` the optimal rate of the
    full-batch gradient.

    Args:
        batch_size: batch size(s) :math:`B > 0`.
        lr_max: optimal learning rate at infinite batch (> 0).
        B_noise: the noise scale (>= 0).

    Returns:
        The optimal learning rate, broadcast over the arguments.

    Example:
        >>> optimal_learning_rate(10.0, lr_max=1.0, B_noise=10.0)
        0.5

    References:
        McCandlish et al. 2018, Sec. 2.2 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    b = a.positive("batch_size", batch_size)
    lr_max = a.positive("lr_max", lr_max)
    return a.out(lr_max / (1.0 + a.nonnegative("B_noise", B_noise) / b))


def steps(batch_size: Any, S_min: Any, B_noise: Any) -> Any:
    r"""Compute the optimization steps at batch size B in the empirical model.

    .. math::

        S(B) = S_{\min}\left(1 + \frac{B_{\text{noise}}}{B}\right),

    with :math:`B` ``batch_size``.

    Args:
        batch_size: batch size(s) :math:`B > 0`.
        S_min: steps at infinite batch (> 0).
        B_noise: the noise scale (>= 0).

    Returns:
        S(B), broadcast over the arguments.

    Example:
        >>> steps(10.0, S_min=100.0, B_noise=30.0)
        400.0

    References:
        McCandlish et al. 2018, Sec. 2.3 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    b = a.positive("batch_size", batch_size)
    S_min = a.positive("S_min", S_min)
    return a.out(S_min * (1.0 + a.nonnegative("B_noise", B_noise) / b))


def examples(batch_size: Any, E_min: Any, B_noise: Any) -> Any:
    r"""Compute the training examples processed at batch size B in the empirical model.

    .. math::

        E(B) = E_{\min}\left(1 + \frac{B}{B_{\text{noise}}}\right),

    with :math:`B` ``batch_size``.

    Args:
        batch_size: batch size(s) :math:`B > 0`.
        E_min: examples at vanishing batch (> 0).
        B_noise: the noise scale (>= 0).

    Returns:
        E(B), broadcast over the arguments; ``inf`` where ``B_noise = 0``.

    Example:
        >>> examples(30.0, E_min=3000.0, B_noise=30.0)
        6000.0

    References:
        McCandlish et al. 2018, Sec. 2.3 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    b = a.positive("batch_size", batch_size)
    E_min = a.positive("E_min", E_min)
    with np.errstate(divide="ignore"):
        return a.out(E_min * (1.0 + b / a.nonnegative("B_noise", B_noise)))


def examples_from_steps(S: Any, S_min: Any, E_min: Any) -> Any:
    r"""Solve the trade-off identity for the examples E given the steps S.

    .. math::

        \left(\frac{S}{S_{\min}} - 1\right)\left(\frac{E}{E_{\min}} - 1\right) = 1
        \iff E = E_{\min}\left(1 + \frac{1}{S/S_{\min} - 1}\right).

    Args:
        S: steps (> 0).
        S_min: minimal steps (> 0).
        E_min: minimal examples (> 0).

    Returns:
        E, broadcast over the arguments; ``inf`` at ``S = S_min`` (the infinite-batch limit)
        and ``nan`` where ``S < S_min`` (no batch size takes fewer than ``S_min`` steps).

    Example:
        >>> examples_from_steps(200.0, S_min=100.0, E_min=1000.0)
        2000.0
        >>> examples_from_steps([50.0, 100.0], S_min=100.0, E_min=1000.0).tolist()
        [nan, inf]

    References:
        McCandlish et al. 2018, Sec. 2.3 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    s = a.positive("S", S)
    s_min = a.positive("S_min", S_min)
    e_min = a.positive("E_min", E_min)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = e_min * (1.0 + 1.0 / (s / s_min - 1.0))
    return a.out(np.where(s > s_min, value, np.where(s == s_min, np.inf, np.nan)))


def critical_batch_size(S_min: Any, E_min: Any) -> Any:
    r"""Compute the critical batch size, the ratio of minimal examples to minimal steps.

    .. math::

        B_{\text{crit}} = \frac{E_{\min}}{S_{\min}};

    at :math:`B = B_{\text{crit}}` the run takes :math:`2S_{\min}` steps and :math:`2E_{\min}`
    examples. Under the model of :func:`steps` it equals :math:`B_{\text{noise}}`.

    Args:
        S_min: minimal steps (> 0).
        E_min: minimal examples (> 0).

    Returns:
        B_crit, broadcast over the arguments.

    Example:
        >>> critical_batch_size(S_min=100.0, E_min=3000.0)
        30.0

    References:
        McCandlish et al. 2018, Sec. 2.3 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    return a.out(a.positive("E_min", E_min) / a.positive("S_min", S_min))


def _two_batches(batch_size_small: Any, batch_size_big: Any) -> tuple[np.ndarray, np.ndarray]:
    small = a.positive("batch_size_small", batch_size_small)
    big = a.positive("batch_size_big", batch_size_big)
    if np.any(big < small):
        raise ValueError(
            f"batch_size_big must be >= batch_size_small, got batch_size_small="
            f"{batch_size_small!r}, batch_size_big={batch_size_big!r}"
        )
    return small, big


def _measurements(
    g_small_sq: Any, g_big_sq: Any, batch_size_small: Any, batch_size_big: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    small, big = _two_batches(batch_size_small, batch_size_big)
    return a.real("g_small_sq", g_small_sq), a.real("g_big_sq", g_big_sq), small, big


def gradient_norm_sq_estimate(
    g_small_sq: Any, g_big_sq: Any, batch_size_small: Any, batch_size_big: Any
) -> Any:
    r"""Estimate |G|² without bias from squared gradient norms at two batch sizes.

    .. math::

        |\mathcal{G}|^2 \approx
        \frac{B_{\text{big}}|G_{B_{\text{big}}}|^2 - B_{\text{small}}|G_{B_{\text{small}}}|^2}
             {B_{\text{big}} - B_{\text{small}}},

    unbiased because :math:`\mathbb{E}|G_B|^2 = |\mathcal{G}|^2 + \operatorname{tr}\Sigma/B`.
    A single estimate can be negative.

    Args:
        g_small_sq: squared norm of a mean gradient over ``batch_size_small`` examples.
        g_big_sq: squared norm of a mean gradient over ``batch_size_big`` examples.
        batch_size_small: the small batch size :math:`B_{\text{small}} > 0`.
        batch_size_big: the big batch size (>= ``batch_size_small``).

    Returns:
        The estimate, broadcast over the arguments; ``nan`` where the two batch sizes are
        equal (one batch size cannot separate signal from noise).

    Example:
        >>> gradient_norm_sq_estimate(5.0, 2.0, 1, 4)
        1.0

    References:
        McCandlish et al. 2018, Appendix A.1 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    gs, gb, small, big = _measurements(g_small_sq, g_big_sq, batch_size_small, batch_size_big)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(big > small, (big * gb - small * gs) / (big - small), np.nan))


def trace_sigma_estimate(
    g_small_sq: Any, g_big_sq: Any, batch_size_small: Any, batch_size_big: Any
) -> Any:
    r"""Estimate tr(Σ) without bias from squared gradient norms at two batch sizes.

    .. math::

        \operatorname{tr}\Sigma \approx
        \frac{|G_{B_{\text{small}}}|^2 - |G_{B_{\text{big}}}|^2}
             {1/B_{\text{small}} - 1/B_{\text{big}}}.

    Args:
        g_small_sq: squared norm of a mean gradient over ``batch_size_small`` examples.
        g_big_sq: squared norm of a mean gradient over ``batch_size_big`` examples.
        batch_size_small: the small batch size (> 0).
        batch_size_big: the big batch size (>= ``batch_size_small``).

    Returns:
        The estimate, broadcast over the arguments; ``nan`` where the batch sizes are equal.

    Example:
        >>> trace_sigma_estimate(5.0, 2.0, 1, 4)
        4.0

    References:
        McCandlish et al. 2018, Appendix A.1 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    gs, gb, small, big = _measurements(g_small_sq, g_big_sq, batch_size_small, batch_size_big)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(big > small, (gs - gb) / (1.0 / small - 1.0 / big), np.nan))


class GradientNoiseScale:
    r"""Running estimate of B_simple as a ratio of exponential moving averages.

    Each :meth:`update` forms the unbiased estimates of :math:`|G|^2` and
    :math:`\operatorname{tr}\Sigma` from one pair of squared gradient norms and folds them into
    two exponential moving averages with decay :math:`\beta`;

    .. math::

        \hat B_{\text{simple}} = \frac{\overline{\operatorname{tr}\Sigma}}{\overline{|G|^2}},
        \qquad \bar x_n = \beta \bar x_{n-1} + (1 - \beta) x_n,

    a ratio of running means, never a running mean of ratios (the single-pair ratio is heavily
    biased and often negative). The zero-initialization bias of both averages is the same factor
    :math:`1 - \beta^n`, so it cancels in the ratio. One tracker holds one stream: it takes
    scalars (use :func:`running_b_simple` for arrays).

    Args:
        batch_size_small: the small batch size (> 0).
        batch_size_big: the big batch size (> ``batch_size_small``).
        decay: EMA decay :math:`\beta` in [0, 1).

    Example:
        >>> gns = GradientNoiseScale(batch_size_small=1, batch_size_big=4, decay=0.9)
        >>> gns.update(5.0, 2.0)
        4.0
        >>> gns.n_updates
        1

    References:
        McCandlish et al. 2018, Appendix A.1 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """

    def __init__(self, batch_size_small: float, batch_size_big: float, decay: float) -> None:
        if np.ndim(batch_size_small) or np.ndim(batch_size_big) or np.ndim(decay):
            raise ValueError("GradientNoiseScale takes scalar batch sizes and decay")
        small, big = _two_batches(batch_size_small, batch_size_big)
        if not big > small:
            raise ValueError(
                f"batch_size_big must exceed batch_size_small, got "
                f"{batch_size_small!r} and {batch_size_big!r}"
            )
        self.batch_size_small = float(small)
        self.batch_size_big = float(big)
        self.decay = float(a.in_range("decay", decay, 0.0, 1.0))
        self.ema_gradient_norm_sq = 0.0
        self.ema_trace_sigma = 0.0
        self.n_updates = 0

    def update(self, g_small_sq: float, g_big_sq: float) -> float:
        """Fold in one pair of squared gradient norms and return the current B_simple."""
        small, big = self.batch_size_small, self.batch_size_big
        g2 = float(gradient_norm_sq_estimate(g_small_sq, g_big_sq, small, big))
        tr = float(trace_sigma_estimate(g_small_sq, g_big_sq, small, big))
        self.ema_gradient_norm_sq = self.decay * self.ema_gradient_norm_sq + (1 - self.decay) * g2
        self.ema_trace_sigma = self.decay * self.ema_trace_sigma + (1 - self.decay) * tr
        self.n_updates += 1
        return self.b_simple

    @property
    def b_simple(self) -> float:
        """Current ratio of running means (``nan`` before the first update)."""
        if self.n_updates == 0 or self.ema_gradient_norm_sq == 0:
            return float("nan")
        return self.ema_trace_sigma / self.ema_gradient_norm_sq


def running_b_simple(
    g_small_sq: Any, g_big_sq: Any, batch_size_small: Any, batch_size_big: Any, decay: Any
) -> np.ndarray:
    r"""Return the running B_simple after each of a sequence of two-batch measurements.

    .. math::

        \hat B_n = \frac{\sum_{k\le n} \beta^{n-k}\, \widehat{\operatorname{tr}\Sigma}_k}
                        {\sum_{k\le n} \beta^{n-k}\, \widehat{|G|^2}_k},

    the vectorized equivalent of feeding the pairs to :class:`GradientNoiseScale`.

    Args:
        g_small_sq: squared norms at the small batch, shape ``(n,)`` (core).
        g_big_sq: squared norms at the big batch, shape ``(n,)`` (core).
        batch_size_small: the small batch size (> 0).
        batch_size_big: the big batch size (>= ``batch_size_small``).
        decay: EMA decay in [0, 1).

    Returns:
        Array of shape ``broadcast + (n,)`` (``nan`` where the batch sizes are equal).

    Example:
        >>> running_b_simple([5.0, 5.0], [2.0, 2.0], 1, 4, decay=0.5).tolist()
        [4.0, 4.0]

    References:
        McCandlish et al. 2018, Appendix A.1 (arXiv 1812.06162); docs/theory/mccandlish2018.md
        ([stated]).

    """
    gs = v.real_vector("g_small_sq", g_small_sq)
    gb = v.real_vector("g_big_sq", g_big_sq)
    if np.ndim(g_small_sq) != 1 or np.ndim(g_big_sq) != 1 or gs.shape != gb.shape:
        raise ValueError(
            f"g_small_sq and g_big_sq must be 1-D of equal length, got "
            f"{np.shape(g_small_sq)} and {np.shape(g_big_sq)}"
        )
    small, big = _two_batches(batch_size_small, batch_size_big)
    decay = a.in_range("decay", decay, 0.0, 1.0)[..., None]
    g2 = np.asarray(gradient_norm_sq_estimate(gs, gb, small[..., None], big[..., None]))
    tr = np.asarray(trace_sigma_estimate(gs, gb, small[..., None], big[..., None]))
    shape = np.broadcast_shapes(g2.shape, decay.shape)
    g2, tr = np.broadcast_to(g2, shape), np.broadcast_to(tr, shape)
    num, den = np.empty(shape), np.empty(shape)
    acc_num = acc_den = np.zeros((*shape[:-1], 1))
    for k in range(gs.size):
        acc_num = decay * acc_num + (1 - decay) * tr[..., k : k + 1]
        acc_den = decay * acc_den + (1 - decay) * g2[..., k : k + 1]
        num[..., k : k + 1], den[..., k : k + 1] = acc_num, acc_den
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den
