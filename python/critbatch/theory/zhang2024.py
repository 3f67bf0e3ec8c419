"""Zhang et al. 2024: a critical batch size defined by a fixed overhead over linear scaling.

[stated] (docs/theory/zhang2024.md; arXiv 2410.21676, "How does critical batch size scale in
pre-training?"): the steps to a target follow the inverse law, fitted in log space as
``log K = log(a + c/b)``, and the critical batch size is where the steps exceed what perfect
(linear) scaling from a small batch would need by a fixed overhead, e.g. 20 %. Scalar arguments
broadcast; a measured curve is a core dimension (docs/theory/README.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.theory import _args as _a

__all__ = ["critical_batch_size", "critical_batch_size_from_curve", "log_inverse_law"]


def log_inverse_law(batch_size: Any, a: Any, c: Any) -> Any:
    r"""Evaluate the inverse law in the log space where it is fitted.

    .. math::

        \log K(b) = \log\left(a + \frac{c}{b}\right),

    with :math:`b` ``batch_size``, :math:`a` ``a`` the large-batch step count and :math:`c`
    ``c`` the slope in :math:`1/b` (:math:`K_\infty` and :math:`\alpha` of :mod:`.perrone2019`).

    Args:
        batch_size: batch size(s) (> 0).
        a: large-batch limit of K (>= 0).
        c: coefficient of 1/b (>= 0).

    Returns:
        log K(b), broadcast over the arguments; ``-inf`` where ``a = c = 0`` (no steps needed).

    Example:
        >>> round(log_inverse_law(10.0, a=100.0, c=1000.0), 6)
        5.298317

    References:
        Zhang et al. 2024 (arXiv 2410.21676, https://arxiv.org/abs/2410.21676);
        docs/theory/zhang2024.md ([stated]).

    """
    limit = _a.nonnegative("a", a)
    slope = _a.nonnegative("c", c)
    bs = _a.positive("batch_size", batch_size)
    with np.errstate(divide="ignore"):
        return _a.out(np.log(limit + slope / bs))


def critical_batch_size(batch_size0: Any, K_inf: Any, alpha: Any, overhead: Any = 0.2) -> Any:
    r"""Solve for the batch where the inverse law needs ``overhead`` more steps than linear scaling.

    Perfect scaling from :math:`b_0` needs :math:`K(b_0)\,b_0/b` steps; the critical batch
    size :math:`b_c` solves :math:`K(b_c) = (1 + o)\,K(b_0)\,b_0/b_c` for the inverse law
    :math:`K = K_\infty + \alpha/b`:

    .. math::

        b_c = \frac{(1 + o)(K_\infty b_0 + \alpha) - \alpha}{K_\infty}
            = (1 + o)\, b_0 + o\,\frac{\alpha}{K_\infty},

    with :math:`b_0` ``batch_size0`` and :math:`o` ``overhead``. Above :math:`b_c` the law
    needs more than :math:`1 + o` times the perfectly scaled steps.

    Args:
        batch_size0: the small reference batch size (> 0).
        K_inf: inverse-law limit (>= 0).
        alpha: inverse-law slope (>= 0).
        overhead: the allowed relative overhead :math:`o` (> 0), 0.2 for 20 %.

    Returns:
        b_c (real-valued, > ``batch_size0``), broadcast over the arguments; ``inf`` where
        ``K_inf = 0 < alpha`` (perfect scaling forever), ``nan`` where ``K_inf = alpha = 0``.

    Example:
        >>> critical_batch_size(1.0, K_inf=100.0, alpha=1000.0, overhead=0.2)
        3.2

    References:
        Zhang et al. 2024 (arXiv 2410.21676), the overhead definition; docs/theory/zhang2024.md
        ([stated]); the closed form for the inverse law is our algebra.

    """
    b0 = _a.positive("batch_size0", batch_size0)
    k_inf = _a.nonnegative("K_inf", K_inf)
    slope = _a.nonnegative("alpha", alpha)
    o = _a.positive("overhead", overhead)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _a.out((1.0 + o) * b0 + o * slope / k_inf)


def _curve_crossing(bs: np.ndarray, ks: np.ndarray, o: float) -> float:
    if not math.isfinite(ks[0]):  # no reference for perfect scaling
        return math.nan
    ratio = ks * bs / (ks[0] * bs[0]) - 1.0
    above = np.flatnonzero(ratio > o)
    if above.size == 0:
        return math.inf
    j = int(above[0])
    if not math.isfinite(ratio[j]):
        return float(bs[j])
    lo, hi = math.log(bs[j - 1]), math.log(bs[j])
    frac = (o - ratio[j - 1]) / (ratio[j] - ratio[j - 1])
    return float(math.exp(lo + frac * (hi - lo)))


def critical_batch_size_from_curve(batch_sizes: Any, steps: Any, overhead: Any = 0.2) -> Any:
    r"""Find where a measured K(b) first exceeds perfect scaling by the relative ``overhead``.

    With :math:`b_0` the smallest batch size, the overhead ratio

    .. math::

        r(b) = \frac{K(b)\, b}{K(b_0)\, b_0} - 1

    is interpolated linearly in :math:`\log b` between measured points, and the first crossing
    of :math:`r = o` is returned.

    Args:
        batch_sizes: measured batch sizes (> 0, at least two, distinct; core, shape ``(n,)``).
        steps: K at each batch size, shape ``(..., n)`` (> 0; ``inf`` counts as above any
            overhead); leading dimensions are several curves.
        overhead: the relative overhead :math:`o` (> 0), broadcast with the leading dimensions
            of ``steps``.

    Returns:
        The interpolated critical batch size, broadcast over the curves and ``overhead``;
        ``inf`` if the overhead is never exceeded, ``nan`` for a curve that does not reach the
        target at its smallest batch size (no reference to scale from).

    Example:
        >>> round(critical_batch_size_from_curve([1, 2, 4, 8], [100, 50, 35, 25]), 4)
        2.8284

    References:
        Zhang et al. 2024 (arXiv 2410.21676), the overhead definition; docs/theory/zhang2024.md
        ([stated]).

    """
    bs = v.real_vector("batch_sizes", batch_sizes, positive=True)
    ks = _a.positive("steps", steps, allow_inf=True)
    if np.ndim(batch_sizes) != 1 or bs.size < 2 or ks.ndim < 1 or ks.shape[-1] != bs.size:
        raise ValueError(
            f"batch_sizes must be 1-D of length >= 2 and steps (..., n) of the same "
            f"length, got {np.shape(batch_sizes)}, {ks.shape}"
        )
    order = np.argsort(bs)
    bs, ks = bs[order], ks[..., order]
    if np.any(np.diff(bs) == 0):
        raise ValueError(f"batch_sizes must be distinct, got {batch_sizes!r}")
    o = _a.positive("overhead", overhead)
    index = np.arange(int(np.prod(ks.shape[:-1]))).reshape(ks.shape[:-1])
    flat = ks.reshape(-1, bs.size)

    def kernel(curve: int, overhead: float) -> float:
        return _curve_crossing(bs, flat[curve], overhead)

    return _a.loop(kernel, curve=index, overhead=o)
