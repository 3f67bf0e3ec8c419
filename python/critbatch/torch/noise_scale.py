r"""The gradient noise scale of a network, measured during training (McCandlish et al. 2018).

With :math:`G` the full-batch gradient of the training loss, :math:`\Sigma` the covariance of
one example's gradient and :math:`G_B` the mean gradient of :math:`B` examples drawn uniformly
with replacement, :math:`\mathbb{E}|G_B|^2 = |G|^2 + \operatorname{tr}\Sigma / B`. Two batch
sizes :math:`B_{small} < B_{big}` therefore give unbiased estimates of both terms, and the
simple noise scale :math:`B_{simple} = \operatorname{tr}\Sigma / |G|^2` is estimated as a ratio of
exponential moving averages of the two estimates, not as a mean of per-measurement ratios
(McCandlish et al. 2018, Sec. 2.2 and App. A.1, arXiv:1812.06162).

The estimators themselves are :func:`critbatch.theory.mccandlish2018.gradient_norm_sq_estimate`,
:func:`~critbatch.theory.mccandlish2018.trace_sigma_estimate` and
:class:`~critbatch.theory.mccandlish2018.GradientNoiseScale`; this module measures the two
squared norms on a torch model and feeds them in:

* :func:`gradient_sq_norms`: one measurement, :math:`|G_{B_{small}}|^2` and
  :math:`|G_{B_{big}}|^2`, where the small batch is the first :math:`B_{small}` examples of
  the big one (each is still a uniform draw of its size, so each expectation, and so each
  estimator, is unbiased; sharing examples only correlates the two).
* :func:`noise_scale`: :math:`B_{simple}` at fixed weights from several measurements (ratio of
  the means).
* :class:`RunningNoiseScale`: the measurement *inside a sweep*, for every run of a chunk at once,
  from the training gradients themselves (a network problem with ``noise_scale = true``;
  :mod:`critbatch.torch.network` splits each step's minibatch into halves): bias-corrected
  exponential moving averages of the two estimates, as gpt-neox's ``GradientNoiseScale`` keeps
  them, whose ratio is the ``noise_scale`` column of the run's record; a second one, fed the
  :math:`P`-weighted norms (:func:`sq_norms`), gives the ``noise_scale_preconditioned`` column.

**The preconditioned variant.** With a diagonal preconditioner :math:`P = \operatorname{diag}(p)`,
:math:`p_i > 0`, fixed before the batch is drawn, linearity gives, coordinate by coordinate,
:math:`\mathbb{E}(G_B)_i^2 = G_i^2 + \Sigma_{ii}/B`, so the weighted squared norm
:math:`|G_B|_P^2 = \sum_i p_i (G_B)_i^2` has

.. math::

    \mathbb{E}|G_B|_P^2 = G^\top P G + \operatorname{tr}(P\Sigma) / B,

the identity above with :math:`|G|^2 \to G^\top P G` and :math:`\operatorname{tr}\Sigma \to
\operatorname{tr}(P\Sigma)`. The same two estimators applied to :math:`|G_{B_{small}}|_P^2` and
:math:`|G_{B_{big}}|_P^2` are therefore unbiased for :math:`G^\top P G` and
:math:`\operatorname{tr}(P\Sigma)`, and the preconditioned noise scale is their ratio,

.. math::

    B_{precond} = \frac{\operatorname{tr}(P\Sigma)}{G^\top P G},

with :math:`P = I` giving :math:`B_{simple}` back. It is :math:`B_{simple}` in the coordinates
:math:`\phi = P^{-1/2}\theta` in which the preconditioned step :math:`\theta \leftarrow \theta -
\eta P g` is a plain SGD step (there the gradient is :math:`P^{1/2}G` and the per-example
covariance :math:`P^{1/2}\Sigma P^{1/2}`); equivalently, McCandlish et al.'s :math:`B_{noise}` of
the preconditioned step, :math:`\operatorname{tr}(PHP\Sigma)/(G^\top PHPG)`, when the Hessian is
what the preconditioner assumes, :math:`H \propto P^{-1}`. Inside a sweep, :math:`p` is
the rule's :meth:`critbatch.torch.optimizers.StepRule.preconditioner`, for Adam
:math:`p_i = 1/(\sqrt{\hat v_i} + \epsilon)` with :math:`\hat v` the bias-corrected second moment
*before* the step's update, so that it is fixed given the past, as the identity needs; it
changes from step to step, and the moving averages average :math:`G^\top P_k G` and
:math:`\operatorname{tr}(P_k\Sigma)` over the steps :math:`k` as they do the plain terms. McCandlish
et al. 2018 mention measuring the noise scale on preconditioned gradients, for example divided by
the square root of Adam's accumulated variances. The derivation is also on the page
``docs/theory/mccandlish2018.md``.

The first steps are the weak point: there :math:`\hat v` holds a few squared gradients (one at
the second step, where :math:`p_i = 1/(|g_{1,i}| + \epsilon)`, whose mean is unbounded for a
gradient with a density at 0), so a coordinate whose early gradients were small gets a large
weight, and those steps' estimates are heavy-tailed. In a run shorter than a few times
:math:`1/(1-\beta)` steps they dominate the averages. Measured on the digits MLP (64-16-10,
Adam, learning rate 0.01, :math:`B = 64`, float32, 4 runs of 100 steps): the per-step
:math:`\operatorname{tr}(P\Sigma)` estimates of steps 2 to 6 reached :math:`6 \times 10^4`
against :math:`10^2` to :math:`10^3` later; the ratio of the means over all steps was -410 to
630 (plain: 84 to 159), over steps 50 to 100 it was 100 to 520 (plain: 87 to 430).

.. warning::

    Read literally, that is the squared norm of the preconditioned gradient,
    :math:`|PG_B|^2 = \sum_i p_i^2 (G_B)_i^2`, which weights by :math:`p_i^2` and estimates
    :math:`\operatorname{tr}(P\Sigma P)/|PG|^2` (:math:`B_{noise}` of the preconditioned step
    if :math:`H \propto I`). This module weights by :math:`p_i` (:math:`H \propto P^{-1}`, the
    coordinates above); pass ``weights = p ** 2`` to :func:`gradient_sq_norms` for the other.

Measurements are taken in eval mode (no BatchNorm batch statistics, no dropout), so a batch's
gradient is the mean of per-example gradients, which the identity above assumes. Examples are
drawn with replacement; drawn without replacement from :math:`n` examples the noise term is
:math:`\tfrac{n-B}{n-1}\operatorname{tr}\Sigma/B` instead.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> x, y = torch.randn(50, 3), torch.randint(0, 2, (50,))
    >>> small, big = gradient_sq_norms(model, x, y, 2, 10, seed=0)
    >>> small > 0 and big > 0
    True

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from critbatch import _validate as v
from critbatch.theory.mccandlish2018 import gradient_norm_sq_estimate, trace_sigma_estimate

__all__ = ["RunningNoiseScale", "gradient_sq_norms", "noise_scale", "sq_norms"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sizes(b_small: Any, b_big: Any) -> tuple[int, int]:
    small = v.positive_int("b_small", b_small)
    big = v.positive_int("b_big", b_big)
    if big <= small:
        raise ValueError(f"b_big must exceed b_small, got b_small={small}, b_big={big}")
    return small, big


def sq_norms(g: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    r"""Per row, :math:`\sum_i g_i^2`, or with ``weights`` :math:`|g|_P^2 = \sum_i p_i g_i^2`.

    Args:
        g: gradients, ``(R, dim)``.
        weights: the diagonal :math:`p` of :math:`P`, the shape of ``g`` (``None``: :math:`P = I`).

    Returns:
        ``(R,)``, in ``g``'s dtype; with ``weights`` all ones, bitwise the unweighted sums (a
        product by 1 is exact).

    Example:
        >>> import torch
        >>> g = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
        >>> sq_norms(g).tolist(), sq_norms(g, torch.tensor([[2.0, 0.5], [1.0, 1.0]])).tolist()
        ([5.0, 9.0], [4.0, 9.0])

    """
    squares = g * g
    return (squares if weights is None else squares * weights).sum(1)


def _sq_norm_of_grad(
    model: nn.Module, loss: torch.Tensor, weights: list[torch.Tensor] | None
) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    if weights is None:
        return float(sum((g.detach() ** 2).sum() for g in grads if g is not None))
    pairs = zip(grads, weights, strict=True)
    return float(sum((w * g.detach() ** 2).sum() for g, w in pairs if g is not None))


def _split_weights(model: nn.Module, weights: Any) -> list[torch.Tensor] | None:
    """The flat ``weights`` cut into the shapes of the model's trainable parameters."""
    if weights is None:
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    numels = [p.numel() for p in params]
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"weights must be a tensor, got {type(weights).__name__}")
    if weights.dim() != 1 or weights.numel() != sum(numels):
        raise ValueError(
            f"weights must be a 1-d tensor of the {sum(numels)} trainable parameters, got "
            f"shape {tuple(weights.shape)}"
        )
    if not bool(torch.isfinite(weights).all()) or not bool((weights > 0).all()):
        raise ValueError("weights must be finite and positive (a diagonal preconditioner)")
    return [
        w.view_as(p).to(p.dtype) for w, p in zip(torch.split(weights, numels), params, strict=True)
    ]


def gradient_sq_norms(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    b_small: int,
    b_big: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    loss_fn: Loss = F.cross_entropy,
    weights: torch.Tensor | None = None,
) -> tuple[float, float]:
    r"""Measure :math:`|G_{B_{small}}|^2` and :math:`|G_{B_{big}}|^2` once.

    Draws :math:`B_{big}` indices uniformly with replacement; the small batch is the first
    :math:`B_{small}` of them. The model is evaluated in eval mode (and left in the mode it had).
    With ``weights`` :math:`p`, the norms are the weighted :math:`|G_B|_P^2 = \sum_i p_i
    (G_B)_i^2` of the preconditioned variant (module docstring).

    Args:
        model: the network.
        x: all inputs, ``(n, ...)`` on the model's device.
        y: all targets, ``(n, ...)``.
        b_small: the small batch size (>= 1).
        b_big: the big batch size (> ``b_small``).
        seed: seed of a fresh CPU generator for the indices (ignored if ``generator`` is given).
        generator: a CPU ``torch.Generator`` to draw the indices from.
        loss_fn: ``loss_fn(outputs, targets)``, the *mean* loss of a batch.
        weights: the diagonal :math:`p > 0` of a preconditioner, one entry per trainable
            parameter in the order of ``model.parameters()`` (``None``: :math:`P = I`).

    Returns:
        ``(g_small_sq, g_big_sq)``, the squared (:math:`P`-weighted) norms of the two mean
        gradients.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(1, 1, bias=False)
        >>> _ = model.weight.data.fill_(0.0)
        >>> x = torch.ones(4, 1); y = torch.ones(4)
        >>> mse = lambda out, t: 0.5 * ((out.squeeze(-1) - t) ** 2).mean()
        >>> gradient_sq_norms(model, x, y, 1, 3, seed=0, loss_fn=mse)  # every gradient is -1
        (1.0, 1.0)

    References:
        McCandlish et al. 2018, App. A.1, arXiv:1812.06162.

    """
    small, big = _sizes(b_small, b_big)
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__}, {type(y).__name__}")
    if x.shape[0] == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must hold the same number (>= 1) of examples, got "
            f"{x.shape[0]} and {y.shape[0]}"
        )
    if generator is None:
        generator = torch.Generator().manual_seed(
            0 if seed is None else v.nonnegative_int("seed", seed)
        )
    parts = _split_weights(model, weights)
    index = torch.randint(x.shape[0], (big,), generator=generator).to(x.device)
    was_training = model.training
    model.eval()
    try:
        xb, yb = x[index], y[index]
        g_small = _sq_norm_of_grad(model, loss_fn(model(xb[:small]), yb[:small]), parts)
        g_big = _sq_norm_of_grad(model, loss_fn(model(xb), yb), parts)
    finally:
        model.train(was_training)
    return g_small, g_big


def noise_scale(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    b_small: int,
    b_big: int,
    *,
    pairs: int = 10,
    seed: int = 0,
    loss_fn: Loss = F.cross_entropy,
    weights: torch.Tensor | None = None,
) -> dict[str, float]:
    r"""Estimate :math:`|G|^2`, :math:`\operatorname{tr}\Sigma` and :math:`B_{simple}` at one point.

    .. math::

        \hat B_{simple} = \frac{\overline{\operatorname{tr}\Sigma}}{\overline{|G|^2}},

    the ratio of the means of the per-measurement unbiased estimates over ``pairs``
    measurements (:func:`gradient_sq_norms`).

    Args:
        model: the network.
        x: all inputs.
        y: all targets.
        b_small: the small batch size.
        b_big: the big batch size.
        pairs: measurements to average (>= 1).
        seed: seed of the index generator.
        loss_fn: the mean loss of a batch.
        weights: a diagonal preconditioner :math:`p` (:func:`gradient_sq_norms`): the three
            values are then :math:`G^\top P G`, :math:`\operatorname{tr}(P\Sigma)` and
            :math:`B_{precond}`.

    Returns:
        ``{"gradient_norm_sq": ..., "trace_sigma": ..., "b_simple": ...}``.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.randn(200, 4), torch.randint(0, 3, (200,))
        >>> out = noise_scale(model, x, y, 4, 64, pairs=20)
        >>> sorted(out)
        ['b_simple', 'gradient_norm_sq', 'trace_sigma']

    References:
        McCandlish et al. 2018, Sec. 2.2 and App. A.1, arXiv:1812.06162.

    """
    small, big = _sizes(b_small, b_big)
    pairs = v.positive_int("pairs", pairs)
    generator = torch.Generator().manual_seed(v.nonnegative_int("seed", seed))
    norms = np.array(
        [
            gradient_sq_norms(
                model, x, y, small, big, generator=generator, loss_fn=loss_fn, weights=weights
            )
            for _ in range(pairs)
        ]
    )
    g2 = float(np.mean(gradient_norm_sq_estimate(norms[:, 0], norms[:, 1], small, big)))
    trace = float(np.mean(trace_sigma_estimate(norms[:, 0], norms[:, 1], small, big)))
    return {
        "gradient_norm_sq": g2,
        "trace_sigma": trace,
        "b_simple": trace / g2 if g2 != 0 else float("nan"),
    }


class RunningNoiseScale:
    r"""The noise scale of many runs at once, from pairs of squared gradient norms, on a device.

    Each :meth:`update` forms, per run, the unbiased estimates

    .. math::

        |G|^2 \approx \frac{B_{big}|G_{big}|^2 - B_{small}|G_{small}|^2}{B_{big} - B_{small}},
        \qquad
        \operatorname{tr}\Sigma \approx \frac{|G_{small}|^2 - |G_{big}|^2}
        {1/B_{small} - 1/B_{big}}

    and folds them into exponential moving averages :math:`\bar x_k = \beta \bar x_{k-1} +
    (1 - \beta) x_k`, read bias-corrected as :math:`\bar x_k / (1 - \beta^k)` (the
    ``ema(avg, beta, yi, i)`` of gpt-neox's ``gradient_noise_scale.py``). :meth:`value` is
    :math:`B_{simple} = \overline{\operatorname{tr}\Sigma} / \overline{|G|^2}`, a ratio of
    averages (the corrections cancel in it; NaN for a run with no update yet). Everything stays
    on the device: no copy per step. Fed :math:`P`-weighted squared norms (:func:`sq_norms`) it
    tracks :math:`G^\top P G`, :math:`\operatorname{tr}(P\Sigma)` and :math:`B_{precond}`
    instead (module docstring); the formulas are the same.

    Args:
        n_runs: the runs tracked.
        decay: :math:`\beta` in [0, 1).
        device: where the averages live.

    Example:
        >>> import torch
        >>> gns = RunningNoiseScale(2, 0.9, "cpu")
        >>> gns.update(None, torch.tensor([5.0, 3.0]), torch.tensor([2.0, 1.5]), 1, 4)
        >>> gns.value().tolist()  # tr = (5-2)/(3/4) = 4, |G|^2 = (8-5)/3 = 1; and 2/1 = 2
        [4.0, 2.0]

    References:
        McCandlish et al. 2018, App. A.1, arXiv:1812.06162; EleutherAI gpt-neox,
        ``megatron/gradient_noise_scale/gradient_noise_scale.py`` (the bias-corrected EMA).

    """

    def __init__(self, n_runs: int, decay: float, device: Any) -> None:
        self.decay = float(decay)
        self.g2 = torch.zeros(n_runs, dtype=torch.float64, device=device)
        self.trace = torch.zeros(n_runs, dtype=torch.float64, device=device)
        self.count = torch.zeros(n_runs, dtype=torch.float64, device=device)

    def update(
        self,
        rows: torch.Tensor | None,
        small_sq: torch.Tensor,
        big_sq: torch.Tensor,
        b_small: int,
        b_big: int,
    ) -> None:
        """Fold in one pair of squared norms for the runs at ``rows`` (``None``: all)."""
        small, big = small_sq.to(torch.float64), big_sq.to(torch.float64)
        g2 = (b_big * big - b_small * small) / (b_big - b_small)
        trace = (small - big) / (1.0 / b_small - 1.0 / b_big)
        beta = self.decay
        if rows is None:
            self.g2.mul_(beta).add_(g2, alpha=1 - beta)
            self.trace.mul_(beta).add_(trace, alpha=1 - beta)
            self.count.add_(1.0)
        else:
            self.g2[rows] = beta * self.g2[rows] + (1 - beta) * g2
            self.trace[rows] = beta * self.trace[rows] + (1 - beta) * trace
            self.count[rows] += 1.0

    def select(self, index: torch.Tensor) -> None:
        """Keep the runs at positions ``index``."""
        self.g2, self.trace, self.count = self.g2[index], self.trace[index], self.count[index]

    def value(self) -> torch.Tensor:
        """:math:`B_{simple}` per run, from the bias-corrected averages (NaN before any update)."""
        correction = 1.0 - self.decay**self.count
        g2, trace = self.g2 / correction, self.trace / correction
        return torch.where(self.count > 0, trace / g2, torch.nan)
