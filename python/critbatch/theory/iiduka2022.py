"""Iiduka 2022: steps to an ε-stationary point are a rational function of the batch size.

[stated] (abstract of arXiv 2108.11713): for SGD, momentum and Adam at a constant learning rate on
a nonconvex L-smooth objective, the number of steps K needed to reach an ε-approximation is a
rational function of the batch size b, and a critical batch size minimizes the SFO complexity
N(b) = b·K(b).

[derived] (docs/theory/iiduka2022.md) everything below: the common bound
``min_{k<K} E‖∇f(θ_k)‖² ≤ C₁/K + C₂/b + C₃`` and what follows from it, and the SGD constants from
the descent lemma. The paper's own constants could not be read here; these functions were
derived following Iiduka's method (arXiv 2108.11713) and are not checked against the paper's own
equations. Heavy-ball and Adam constants are not derived here: pass ``C₁, C₂, C₃`` explicitly.

Every function broadcasts its arguments (docs/theory/README.md): where the bound never reaches
the target (a batch size at or below the pole, ``eps**2 <= C3``, a learning rate at or above
``2/L``) a step count, an SFO complexity or a critical batch size is ``inf`` at that element.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from critbatch.theory import _args as a

__all__ = [
    "critical_batch_size",
    "sfo",
    "sfo_at_critical",
    "sgd_bound",
    "sgd_constants",
    "sgd_critical_batch_size",
    "sgd_steps",
    "steps",
    "steps_at_critical",
]


def _gap(eps: Any, C3: Any) -> np.ndarray:
    """``eps**2 - C3``: the room the bound has below the target (<= 0: unreachable)."""
    return a.positive("eps", eps) ** 2 - a.nonnegative("C3", C3)


def _rational(batch_size: Any, C1: Any, C2: Any, eps: Any, C3: Any) -> np.ndarray:
    bs = a.positive("batch_size", batch_size)
    c1 = a.positive("C1", C1)
    c2 = a.nonnegative("C2", C2)
    gap = _gap(eps, C3)
    denominator = gap * bs - c2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, c1 * bs / denominator, np.inf)


def steps(batch_size: Any, C1: Any, C2: Any, eps: Any, C3: Any = 0.0) -> Any:
    r"""Compute the steps K(b) at which the generic bound ``C1/K + C2/b + C3`` reaches ``eps**2``.

    .. math::

        K(b) = \frac{C_1\, b}{(\varepsilon^2 - C_3)\, b - C_2},
        \qquad b > \frac{C_2}{\varepsilon^2 - C_3},

    with :math:`C_1, C_2, C_3` the bound's constants (``C1``, ``C2``, ``C3``), :math:`\varepsilon`
    the gradient-norm target ``eps`` and :math:`b` the batch size ``batch_size``. The value is
    real (not rounded up to an integer); it decreases and is convex in :math:`b`, tending to
    :math:`C_1/(\varepsilon^2 - C_3)`.

    Args:
        batch_size: batch size(s) :math:`b > 0`.
        C1: the 1/K constant of the bound (> 0), e.g. ``2 Delta/(eta (2 - L eta))`` for SGD.
        C2: the 1/b constant of the bound (>= 0), e.g. ``L eta sigma2/(2 - L eta)`` for SGD.
        eps: the target on the gradient norm (> 0; the bound is compared with ``eps**2``).
        C3: the bias term independent of K and b (>= 0; adaptive methods).

    Returns:
        K(b), broadcast over the arguments (a float when all are scalars); ``inf`` where the
        bound never reaches ``eps**2``: ``b`` at or below the pole
        :math:`C_2/(\varepsilon^2 - C_3)`, or :math:`\varepsilon^2 \le C_3`.

    Raises:
        ValueError: if an argument is outside its domain (named in the message).

    Example:
        >>> round(steps(4.0, C1=10.0, C2=1.0, eps=1.0), 6)
        13.333333
        >>> steps([1.0, 2.0, 4.0], C1=10.0, C2=1.0, eps=1.0).tolist()
        [inf, 20.0, 13.333333333333334]

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713, https://arxiv.org/abs/2108.11713);
        not checked against the paper's own equations (docs/theory/iiduka2022.md, [derived]).

    """
    return a.out(_rational(batch_size, C1, C2, eps, C3))


def sfo(batch_size: Any, C1: Any, C2: Any, eps: Any, C3: Any = 0.0) -> Any:
    r"""Compute the SFO complexity N(b) = b·K(b), the gradients needed to reach ``eps``.

    .. math::

        N(b) = b\,K(b) = \frac{C_1\, b^2}{(\varepsilon^2 - C_3)\, b - C_2},

    with the symbols of :func:`steps`; convex in :math:`b` above the pole.

    Args:
        batch_size: batch size(s) :math:`b > 0`.
        C1: the 1/K constant (> 0).
        C2: the 1/b constant (>= 0).
        eps: the gradient-norm target (> 0).
        C3: the bias term (>= 0).

    Returns:
        N(b), broadcast over the arguments; ``inf`` where :func:`steps` is.

    Example:
        >>> round(sfo(4.0, C1=10.0, C2=1.0, eps=1.0), 6)
        53.333333

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    bs = a.positive("batch_size", batch_size)
    return a.out(bs * _rational(bs, C1, C2, eps, C3))


def critical_batch_size(C2: Any, eps: Any, C3: Any = 0.0) -> Any:
    r"""Compute the critical batch size b* minimizing the SFO complexity N(b) of the generic bound.

    .. math::

        b^\star = \frac{2 C_2}{\varepsilon^2 - C_3},

    twice the pole of :math:`K(b)`; :math:`C_1` does not enter.

    Args:
        C2: the 1/b constant of the bound (>= 0; ``C2 = 0`` gives ``b* = 0``).
        eps: the gradient-norm target (> 0).
        C3: the bias term (>= 0).

    Returns:
        b* as a real number (round it to an integer batch yourself), broadcast over the
        arguments; ``inf`` where :math:`\varepsilon^2 \le C_3` (no batch size reaches the target;
        the limit as :math:`\varepsilon^2 \downarrow C_3`).

    Example:
        >>> critical_batch_size(C2=1.0, eps=1.0)
        2.0
        >>> critical_batch_size(C2=[0.5, 1.0], eps=1.0, C3=[0.5, 1.0]).tolist()
        [2.0, inf]

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    c2 = a.nonnegative("C2", C2)
    gap = _gap(eps, C3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(gap > 0, 2.0 * c2 / gap, np.inf))


def steps_at_critical(C1: Any, eps: Any, C3: Any = 0.0) -> Any:
    r"""Compute the steps K(b*) at the critical batch size: twice the large-batch limit.

    .. math::

        K(b^\star) = \frac{2 C_1}{\varepsilon^2 - C_3}.

    Args:
        C1: the 1/K constant (> 0).
        eps: the gradient-norm target (> 0).
        C3: the bias term (>= 0).

    Returns:
        K(b*), broadcast over the arguments; ``inf`` where :math:`\varepsilon^2 \le C_3`.

    Example:
        >>> steps_at_critical(C1=10.0, eps=1.0)
        20.0

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    c1 = a.positive("C1", C1)
    gap = _gap(eps, C3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(gap > 0, 2.0 * c1 / gap, np.inf))


def sfo_at_critical(C1: Any, C2: Any, eps: Any, C3: Any = 0.0) -> Any:
    r"""Compute the minimal SFO complexity N(b*) of the generic bound.

    .. math::

        N(b^\star) = \frac{4 C_1 C_2}{(\varepsilon^2 - C_3)^2}.

    Args:
        C1: the 1/K constant (> 0).
        C2: the 1/b constant (>= 0).
        eps: the gradient-norm target (> 0).
        C3: the bias term (>= 0).

    Returns:
        N(b*), broadcast over the arguments; ``inf`` where :math:`\varepsilon^2 \le C_3`.

    Example:
        >>> sfo_at_critical(C1=10.0, C2=1.0, eps=1.0)
        40.0

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    c1 = a.positive("C1", C1)
    c2 = a.nonnegative("C2", C2)
    gap = _gap(eps, C3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(gap > 0, 4.0 * c1 * c2 / gap**2, np.inf))


def _sgd_denominator(L: Any, eta: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(L, eta, 2 - L eta)``; the descent lemma certifies a decrease only where it is > 0."""
    L = a.positive("L", L)
    eta = a.positive("eta", eta)
    return L, eta, 2.0 - L * eta


def sgd_constants(L: Any, sigma2: Any, Delta: Any, eta: Any) -> tuple[Any, Any]:
    r"""Compute the constants (C1, C2) of the SGD bound by summing the descent lemma.

    .. math::

        \mathbb{E} f(\theta_{k+1}) \le \mathbb{E} f(\theta_k)
            - \eta\left(1 - \tfrac{L\eta}{2}\right)\mathbb{E}\|\nabla f(\theta_k)\|^2
            + \frac{L\eta^2\sigma^2}{2b}
        \;\Longrightarrow\;
        C_1 = \frac{2\Delta}{\eta(2 - L\eta)},\quad C_2 = \frac{L\eta\sigma^2}{2 - L\eta},

    with :math:`L` the smoothness ``L``, :math:`\sigma^2` the one-sample gradient variance bound
    ``sigma2``, :math:`\Delta = f(\theta_0) - f^\star` ``Delta`` and :math:`\eta` the constant
    learning rate ``eta``.

    Args:
        L: smoothness constant (> 0).
        sigma2: variance bound of one sample's stochastic gradient (>= 0).
        Delta: initial suboptimality ``f(theta_0) - f*`` (> 0).
        eta: constant learning rate (> 0); the bound needs ``eta < 2/L``.

    Returns:
        ``(C1, C2)``, each broadcast over the arguments; both ``inf`` where
        ``eta >= 2/L`` (the descent lemma certifies no decrease: the bound is vacuous).

    Example:
        >>> sgd_constants(L=1.0, sigma2=1.0, Delta=1.0, eta=1.0)
        (2.0, 1.0)

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    L, eta, room = _sgd_denominator(L, eta)
    sigma2 = a.nonnegative("sigma2", sigma2)
    Delta = a.positive("Delta", Delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = np.where(room > 0, 2.0 * Delta / (eta * room), np.inf)
        c2 = np.where(room > 0, L * eta * sigma2 / room, np.inf)
    c1, c2 = np.broadcast_arrays(c1, c2)  # both shaped like all four arguments
    return a.out(c1), a.out(c2)


def sgd_bound(K: Any, batch_size: Any, L: Any, sigma2: Any, Delta: Any, eta: Any) -> Any:
    r"""Evaluate the SGD bound on ``min_{k<K} E‖∇f(θ_k)‖²`` after K steps at batch b.

    .. math::

        \min_{k<K} \mathbb{E}\|\nabla f(\theta_k)\|^2 \le \frac{C_1}{K} + \frac{C_2}{b},

    with :math:`C_1, C_2` from :func:`sgd_constants` and :math:`b` ``batch_size``.

    Args:
        K: number of steps (>= 0, real values allowed).
        batch_size: batch size (> 0).
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eta: learning rate (> 0).

    Returns:
        The bound, broadcast over the arguments; ``inf`` at ``K = 0`` (a minimum over no
        iterates) and where ``eta >= 2/L`` (no bound).

    Example:
        >>> sgd_bound(4.0, 2.0, L=1.0, sigma2=1.0, Delta=1.0, eta=1.0)
        1.0

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    ks = a.nonnegative("K", K)
    bs = a.positive("batch_size", batch_size)
    c1, c2 = (np.asarray(c) for c in sgd_constants(L, sigma2, Delta, eta))
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(ks > 0, c1 / ks, np.inf) + c2 / bs)


def sgd_steps(batch_size: Any, L: Any, sigma2: Any, Delta: Any, eta: Any, eps: Any) -> Any:
    r"""Compute the steps K(b) for constant-rate SGD to reach ``eps`` by the descent lemma.

    .. math::

        K(b) = \frac{C_1 b}{\varepsilon^2 b - C_2}
             = \frac{2\Delta\, b}{\eta\,\big((2 - L\eta)\varepsilon^2 b - L\eta\sigma^2\big)},

    :func:`steps` with the constants of :func:`sgd_constants` and :math:`C_3 = 0`.

    Args:
        batch_size: batch size(s) :math:`b > 0`.
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        Delta: initial suboptimality (> 0).
        eta: learning rate (> 0).
        eps: gradient-norm target (> 0).

    Returns:
        K(b) (real-valued), broadcast over the arguments; ``inf`` at or below the pole
        ``L eta sigma2/((2 - L eta) eps**2)`` and where ``eta >= 2/L``.

    Example:
        >>> round(sgd_steps(4.0, L=1.0, sigma2=1.0, Delta=1.0, eta=1.0, eps=1.0), 6)
        2.666667
        >>> sgd_steps(4.0, L=1.0, sigma2=1.0, Delta=1.0, eta=[1.0, 2.0], eps=1.0).round(6).tolist()
        [2.666667, inf]

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    bs = a.positive("batch_size", batch_size)
    L, eta, room = _sgd_denominator(L, eta)
    sigma2 = a.nonnegative("sigma2", sigma2)
    Delta = a.positive("Delta", Delta)
    e2 = a.positive("eps", eps) ** 2
    denominator = eta * (room * e2 * bs - L * eta * sigma2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(
            np.where((room > 0) & (denominator > 0), 2.0 * Delta * bs / denominator, np.inf)
        )


def sgd_critical_batch_size(L: Any, sigma2: Any, eta: Any, eps: Any) -> Any:
    r"""Compute the critical batch size of constant-rate SGD under the descent-lemma bound.

    .. math::

        b^\star = \frac{2 L \eta \sigma^2}{(2 - L\eta)\,\varepsilon^2},

    independent of :math:`\Delta`; it grows with the learning rate :math:`\eta` and the noise
    :math:`\sigma^2` and falls as :math:`1/\varepsilon^2`.

    Args:
        L: smoothness constant (> 0).
        sigma2: one-sample gradient variance bound (>= 0).
        eta: learning rate (> 0).
        eps: gradient-norm target (> 0).

    Returns:
        b* (real-valued), broadcast over the arguments; ``inf`` where ``eta >= 2/L`` (the limit
        as :math:`L\eta \uparrow 2`; no batch size reaches the target beyond it).

    Example:
        >>> sgd_critical_batch_size(L=1.0, sigma2=1.0, eta=1.0, eps=1.0)
        2.0

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md, [derived]).

    """
    L, eta, room = _sgd_denominator(L, eta)
    sigma2 = a.nonnegative("sigma2", sigma2)
    e2 = a.positive("eps", eps) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return a.out(np.where(room > 0, 2.0 * L * eta * sigma2 / (room * e2), np.inf))
