"""Goyal et al. 2017: the linear scaling rule for the learning rate, with gradual warm-up.

[stated] (docs/theory/goyal2017.md; arXiv 1706.02677, "Accurate, Large Minibatch SGD"): when the
minibatch size is multiplied by k, multiply the learning rate by k; start from the small-batch
rate and ramp up linearly during a warm-up (5 epochs in the paper); the rule breaks down beyond a
critical batch size. Every function broadcasts its arguments (docs/theory/README.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from critbatch.theory import _args as a

__all__ = ["gradual_warmup", "linear_scaling_lr"]


def linear_scaling_lr(lr_base: Any, batch_size: Any, batch_size_base: Any) -> Any:
    r"""Scale a reference learning rate linearly with the batch size.

    .. math::

        \eta(b) = \eta_{\text{base}}\,\frac{b}{b_{\text{base}}},

    with :math:`b` ``batch_size`` and :math:`b_{\text{base}}` ``batch_size_base``.

    Args:
        lr_base: learning rate tuned at ``batch_size_base`` (> 0).
        batch_size: new batch size(s) (> 0).
        batch_size_base: reference batch size (> 0).

    Returns:
        The scaled rate, broadcast over the arguments.

    Example:
        >>> linear_scaling_lr(0.1, 8192, 256)
        3.2

    References:
        Goyal et al. 2017, Sec. 2.1, the linear scaling rule (arXiv 1706.02677,
        https://arxiv.org/abs/1706.02677); docs/theory/goyal2017.md ([stated]).

    """
    lr_base = a.positive("lr_base", lr_base)
    base = a.positive("batch_size_base", batch_size_base)
    return a.out(lr_base * a.positive("batch_size", batch_size) / base)


def gradual_warmup(step: Any, lr_start: Any, lr_target: Any, warmup_steps: Any) -> Any:
    r"""Return the learning rate of a linear warm-up from ``lr_start`` to ``lr_target``.

    .. math::

        \eta_t = \eta_{\text{start}} + (\eta_{\text{target}} - \eta_{\text{start}})
                 \min\!\left(\frac{t}{T_w}, 1\right),

    with :math:`T_w` ``warmup_steps``: the rate reaches the target at step :math:`T_w` and stays.

    Args:
        step: step index(es) :math:`t \ge 0`.
        lr_start: rate at step 0 (> 0), e.g. the small-batch rate.
        lr_target: rate after warm-up (> 0), e.g. :func:`linear_scaling_lr`'s.
        warmup_steps: warm-up length (positive integer).

    Returns:
        The rate, broadcast over the arguments.

    Example:
        >>> gradual_warmup([0, 5, 10, 20], 0.1, 3.2, 10).round(6).tolist()
        [0.1, 1.65, 3.2, 3.2]

    References:
        Goyal et al. 2017, Sec. 2.2, gradual warm-up (arXiv 1706.02677); docs/theory/goyal2017.md
        ([stated]).

    """
    lr_start = a.positive("lr_start", lr_start)
    lr_target = a.positive("lr_target", lr_target)
    warmup_steps = a.integer("warmup_steps", warmup_steps)
    t = a.nonnegative("step", step)
    return a.out(lr_start + (lr_target - lr_start) * np.minimum(t / warmup_steps, 1.0))
