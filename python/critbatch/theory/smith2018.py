"""Smith, Kindermans, Ying & Le 2018: the SGD noise scale, and batch growth as learning-rate decay.

[stated] (docs/theory/smith2018.md; arXiv 1711.00489, "Don't decay the learning rate, increase
the batch size"): the noise scale of SGD with momentum ``g ≈ εN/(B(1 - m))`` for learning rate
ε, training-set size N, batch size B and momentum m; increasing B by a factor has the effect of
decaying ε by that factor. Every function broadcasts its arguments (docs/theory/README.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from critbatch.theory import _args as a

__all__ = ["batch_size_for_noise_scale", "equivalent_batch_schedule", "noise_scale"]


def noise_scale(
    lr: Any, n_train: Any, batch_size: Any, momentum: Any = 0.0, *, exact: bool = False
) -> Any:
    r"""Compute the SGD noise scale, the temperature of the implied stochastic process.

    .. math::

        g = \frac{\epsilon}{1 - m}\left(\frac{N}{B} - 1\right) \approx
            \frac{\epsilon N}{B(1 - m)}\quad (B \ll N),

    with :math:`\epsilon` ``lr``, :math:`N` ``n_train``, :math:`B` ``batch_size`` and
    :math:`m` ``momentum``; ``exact=True`` keeps the :math:`-1` of sampling without replacement.

    Args:
        lr: learning rate(s) (> 0).
        n_train: training-set size(s) (positive integer).
        batch_size: batch size(s) (> 0).
        momentum: momentum coefficient(s) in [0, 1).
        exact: use :math:`N/B - 1` instead of :math:`N/B`.

    Returns:
        g, broadcast over the arguments; with ``exact``, ``nan`` where ``batch_size > n_train``
        (no such batch without replacement).

    Example:
        >>> round(noise_scale(0.1, 50_000, 100, momentum=0.9), 9)
        500.0

    References:
        Smith, Kindermans, Ying & Le 2018 (arXiv 1711.00489, https://arxiv.org/abs/1711.00489), the
        noise scale with momentum; docs/theory/smith2018.md ([stated]; equation number not checked
        here).

    Warning:
        The approximation drops :math:`-1`, i.e. assumes :math:`B \ll N`; with ``exact=True`` the
        noise vanishes at full batch.

    """
    eps = a.positive("lr", lr)
    n = a.integer("n_train", n_train)
    b = a.positive("batch_size", batch_size)
    m = a.in_range("momentum", momentum, 0.0, 1.0)
    if exact:
        return a.out(np.where(b <= n, eps * (n / b - 1.0) / (1.0 - m), np.nan))
    return a.out(eps * n / (b * (1.0 - m)))


def batch_size_for_noise_scale(g: Any, lr: Any, n_train: Any, momentum: Any = 0.0) -> Any:
    r"""Invert the approximate noise scale: the batch size giving noise scale ``g``.

    .. math::

        B = \frac{\epsilon N}{g (1 - m)}.

    Args:
        g: target noise scale(s) (> 0).
        lr: learning rate(s) (> 0).
        n_train: training-set size(s) (positive integer).
        momentum: momentum coefficient(s) in [0, 1).

    Returns:
        B (real-valued), broadcast over the arguments.

    Example:
        >>> round(batch_size_for_noise_scale(500.0, 0.1, 50_000, momentum=0.9), 9)
        100.0

    References:
        Smith, Kindermans, Ying & Le 2018 (arXiv 1711.00489); docs/theory/smith2018.md ([stated]).

    """
    m = a.in_range("momentum", momentum, 0.0, 1.0)
    return a.out(
        a.positive("lr", lr) * a.integer("n_train", n_train) / (a.positive("g", g) * (1.0 - m))
    )


def equivalent_batch_schedule(batch_size0: Any, lr_factors: Any) -> Any:
    r"""Translate a learning-rate decay schedule into the batch-growth schedule of equal noise.

    .. math::

        B_k = \frac{B_0}{f_k},

    where the decay schedule multiplies the learning rate by :math:`f_k` (e.g. 1, 0.2, 0.04):
    at fixed learning rate and momentum, :math:`B_k` gives the noise scale the decayed rate
    would have had. Elementwise: ``batch_size0`` and ``lr_factors`` broadcast against each
    other (pass ``batch_size0[:, None]`` for one schedule per start).

    Args:
        batch_size0: initial batch size(s) :math:`B_0 > 0`.
        lr_factors: the decay factor(s) :math:`f_k`, each in (0, 1].

    Returns:
        The batch sizes (real-valued), broadcast over the arguments.

    Example:
        >>> equivalent_batch_schedule(128, [1.0, 0.2, 0.04]).round(6).tolist()
        [128.0, 640.0, 3200.0]

    References:
        Smith, Kindermans, Ying & Le 2018 (arXiv 1711.00489), the paper's title claim;
        docs/theory/smith2018.md ([stated]).

    """
    factors = a.positive("lr_factors", lr_factors)
    if np.any(factors > 1):
        raise ValueError(f"lr_factors must be in (0, 1], got {float(factors[factors > 1][0])!r}")
    return a.out(a.positive("batch_size0", batch_size0) / factors)
