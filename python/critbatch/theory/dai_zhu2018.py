"""Dai & Zhu 2018: escape times of SGD from minima, and its preference for flat minima.

[stated] (abstract of arXiv 1812.00542): SGD escapes a local minimum in finite time; it prefers
flatter minima asymptotically whatever the batch size; larger η/b reaches the flat minimum
faster.

[derived] (docs/theory/dai_zhu2018.md) the SDE view ``dX = -∇f dt + sqrt(2D) dW`` with
``D = ησ²/(2b)`` and time ``t = η·(iterations)``; the exact 1-D mean first-passage time (the
oracle); the Eyring-Kramers asymptotic and the stationary mass ratio (standard results of SDE
theory, used following Dai & Zhu's method); the warped double-well test potential. Not checked
against the paper's own equations.

Scalar arguments broadcast (docs/theory/README.md); a Hessian is a core ``(d, d)`` matrix (a
scalar or a 1-D array is one or several 1-D curvatures). Times too long for a float are ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.integrate import cumulative_simpson, simpson

from critbatch.theory import _args as a

__all__ = [
    "diffusion",
    "double_well_grad",
    "double_well_hess",
    "double_well_potential",
    "eyring_kramers_time",
    "kramers_time",
    "mean_first_passage_time",
    "stationary_mass_ratio",
    "wall_position",
    "warped_minima",
    "warped_minimum_curvatures",
    "warped_potential",
    "warped_potential_grad",
    "warped_potential_hess",
]


def diffusion(lr: Any, sigma2: Any, batch_size: Any) -> Any:
    r"""Compute the diffusion coefficient of the SDE that approximates SGD.

    .. math::

        D = \frac{\eta\,\sigma^2}{2b},

    so that SGD with learning rate :math:`\eta` ``lr``, one-sample gradient variance
    :math:`\sigma^2` ``sigma2`` and batch size :math:`b` ``batch_size`` is approximated by
    :math:`dX = -\nabla f\,dt + \sqrt{2D}\,dW` in time :math:`t = \eta \times` iterations.

    Args:
        lr: learning rate(s) (> 0).
        sigma2: gradient-noise variance of one sample (> 0).
        batch_size: batch size(s) (> 0).

    Returns:
        D, broadcast over the arguments; only the ratio ``lr/batch_size`` matters.

    Example:
        >>> diffusion(0.1, 2.0, 10)
        0.01

    References:
        Derived following Dai & Zhu 2018's method (arXiv 1812.00542,
        https://arxiv.org/abs/1812.00542); not checked against the paper's own equations
        (docs/theory/dai_zhu2018.md, [derived]).

    Warning:
        Factor conventions differ between papers (some write :math:`\eta\sigma^2/b` for
        :math:`2D`); every function here takes D itself as its argument.

    """
    return a.out(
        a.positive("lr", lr)
        * a.positive("sigma2", sigma2)
        / (2.0 * a.positive("batch_size", batch_size))
    )


def _first_passage(
    potential: Callable[[np.ndarray], np.ndarray],
    start: float,
    target: float,
    D: float,
    far: float,
    n_grid: int,
) -> float:
    if not (far < start < target or target < start < far):
        raise ValueError(
            f"start must lie strictly between far and target, got far={far!r}, "
            f"start={start!r}, target={target!r}"
        )
    sign = 1.0 if target > start else -1.0
    # in the mirrored coordinate s = sign*x the target is to the right of the start
    left = np.linspace(sign * far, sign * start, n_grid)
    right = np.linspace(sign * start, sign * target, n_grid)
    s = np.concatenate([left, right[1:]])
    f = np.asarray(potential(sign * s), dtype=float)
    if f.shape != s.shape or not np.all(np.isfinite(f)):
        raise ValueError("potential must return finite values of the same shape as its input")
    exponent = (f - f.min()) / D
    i0 = n_grid - 1
    with np.errstate(under="ignore", divide="ignore"):
        inner = cumulative_simpson(np.exp(-exponent), x=s, initial=0.0)
        # the outer integrand exp(exponent) * inner in log form, scaled by its maximum so that
        # nothing overflows; only the final number can exceed the float range (then inf)
        log_integrand = exponent[i0:] + np.log(inner[i0:])
        top = float(log_integrand.max())
        scaled = simpson(np.exp(log_integrand - top), x=s[i0:])
    with np.errstate(over="ignore"):
        return float(np.exp(top + math.log(scaled) - math.log(D)))


def mean_first_passage_time(
    potential: Callable[[np.ndarray], np.ndarray],
    start: Any,
    target: Any,
    D: Any,
    far: Any,
    n_grid: int = 20_001,
) -> Any:
    r"""Compute the exact mean first-passage time of 1-D overdamped Langevin dynamics.

    For :math:`dX = -f'(X)\,dt + \sqrt{2D}\,dW` started at :math:`m` (``start``), the mean time
    to first reach :math:`y` (``target``, here :math:`y > m`) with a reflecting boundary at
    :math:`a` (``far``, :math:`a < m`) is

    .. math::

        T = \frac{1}{D}\int_m^y dz\, \int_a^z du\;
            \exp\!\left(\frac{f(z) - f(u)}{D}\right),

    the mirror image when :math:`y < m < a`. Both integrals are evaluated on a grid
    (cumulative Simpson for the inner one); the outer integrand is formed in log space and
    scaled by its maximum, so no barrier is too high to evaluate. Put ``far`` where
    :math:`e^{-f/D}` is negligible to model an unbounded far side.

    Args:
        potential: vectorized :math:`f` (numpy array in, array out).
        start: the starting point(s) :math:`m` (usually a minimum).
        target: the point(s) :math:`y` to reach (past the barrier to count a transition).
        D: diffusion coefficient(s) (> 0), e.g. from :func:`diffusion`.
        far: the reflecting boundary :math:`a`, on the other side of ``start`` from ``target``.
        n_grid: grid points on each of ``[far, start]`` and ``[start, target]`` (>= 101).

    Returns:
        The mean first-passage time in SDE time (divide by ``lr`` for iterations), broadcast
        over ``start``, ``target``, ``D`` and ``far``; ``inf`` where it exceeds the float range
        (:math:`\Delta f/D` above about 700).

    Raises:
        ValueError: if ``start`` is not strictly between ``far`` and ``target``.

    Example:
        >>> round(mean_first_passage_time(lambda x: 0.0 * x, 0.0, 1.0, D=1.0, far=-1.0), 6)
        1.5

    References:
        The standard first-passage formula for 1-D diffusions, used following Dai & Zhu 2018's
        method (arXiv 1812.00542); not checked against the paper's own equations
        (docs/theory/dai_zhu2018.md, [derived]).

    """
    n_grid = int(a.integer("n_grid", n_grid))
    if n_grid < 101:
        raise ValueError(f"n_grid must be >= 101, got {n_grid}")

    def kernel(start: float, target: float, D: float, far: float) -> float:
        return _first_passage(potential, start, target, D, far, n_grid)

    return a.loop(
        kernel,
        start=a.real("start", start),
        target=a.real("target", target),
        D=a.positive("D", D),
        far=a.real("far", far),
    )


def kramers_time(delta_f: Any, curvature_min: Any, curvature_saddle: Any, D: Any) -> Any:
    r"""Evaluate the 1-D Kramers asymptotic of the mean escape time over a barrier.

    .. math::

        \mathbb{E}\tau \approx \frac{2\pi}{\sqrt{f''(m)\,|f''(s)|}}
        \exp\!\left(\frac{\Delta f}{D}\right),

    with :math:`\Delta f = f(s) - f(m)` ``delta_f``, :math:`f''(m)` ``curvature_min`` and
    :math:`f''(s)` ``curvature_saddle``. It is a small-noise limit and underestimates at
    moderate barriers. Measured on this project's one test potential (the warped double well of
    :func:`double_well_potential` with :math:`\kappa = 0.5`, wall offset 1 and stiffness 8,
    escape from either minimum to the other, against :func:`mean_first_passage_time`): the
    exact time exceeds Kramers' by 13-51 % at :math:`\Delta f/D = 2`-4, by 5-8 % at 8, and by
    under 4 % from :math:`\Delta f/D \ge 16`. Other potentials differ.

    Args:
        delta_f: barrier height (> 0).
        curvature_min: :math:`f''` at the minimum (> 0).
        curvature_saddle: :math:`f''` at the barrier top (< 0; its absolute value is used).
        D: diffusion coefficient (> 0).

    Returns:
        The asymptotic mean escape time (SDE time), broadcast over the arguments; ``inf`` where
        it exceeds the float range.

    Example:
        >>> round(kramers_time(1.0, 8.0, -4.0, D=0.25), 4)
        60.6433

    References:
        Kramers' formula, used following Dai & Zhu 2018's method (arXiv 1812.00542);
        docs/theory/dai_zhu2018.md ([derived]).

    """
    saddle = a.real("curvature_saddle", curvature_saddle)
    if np.any(saddle >= 0):
        raise ValueError(
            f"curvature_saddle must be negative, got {float(saddle[saddle >= 0].flat[0])!r}"
        )
    prefactor = 2.0 * np.pi / np.sqrt(a.positive("curvature_min", curvature_min) * -saddle)
    with np.errstate(over="ignore"):
        return a.out(prefactor * np.exp(a.positive("delta_f", delta_f) / a.positive("D", D)))


def _hessians(name: str, value: Any) -> np.ndarray:
    """A scalar or 1-D array is one or several 1x1 Hessians; otherwise ``(..., d, d)``."""
    h = a.real(name, value)
    if h.ndim <= 1:
        return h[..., None, None]
    if h.shape[-1] != h.shape[-2]:
        raise ValueError(f"{name} must be square, got shape {h.shape}")
    return h


def eyring_kramers_time(delta_f: Any, hessian_min: Any, hessian_saddle: Any, D: Any) -> Any:
    r"""Evaluate the Eyring-Kramers asymptotic of the mean escape time in d dimensions.

    .. math::

        \mathbb{E}\tau \approx \frac{2\pi}{|\lambda_-(s)|}
        \sqrt{\frac{|\det H(s)|}{\det H(m)}}\,\exp\!\left(\frac{\Delta f}{D}\right),

    with :math:`H(m)` ``hessian_min`` (positive definite), :math:`H(s)` ``hessian_saddle``
    (exactly one negative eigenvalue :math:`\lambda_-`); equals :func:`kramers_time` for d = 1.

    Args:
        delta_f: barrier height (> 0).
        hessian_min: Hessian(s) at the minimum, ``(..., d, d)``; a scalar or 1-D array holds
            1-D curvatures.
        hessian_saddle: Hessian(s) at the saddle, of the same form.
        D: diffusion coefficient (> 0).

    Returns:
        The asymptotic mean escape time, broadcast over ``delta_f``, ``D`` and the Hessians'
        leading dimensions; ``inf`` where it exceeds the float range.

    Example:
        >>> t = eyring_kramers_time(1.0, [[8.0, 0], [0, 2.0]], [[-4.0, 0], [0, 2.0]], D=0.1)
        >>> round(t / kramers_time(1.0, 8.0, -4.0, D=0.1), 12)
        1.0

    References:
        The Eyring-Kramers formula, used following Dai & Zhu 2018's method (arXiv 1812.00542);
        docs/theory/dai_zhu2018.md ([derived]).

    """
    hm = _hessians("hessian_min", hessian_min)
    hs = _hessians("hessian_saddle", hessian_saddle)
    if hm.shape[-1] != hs.shape[-1]:
        raise ValueError(f"hessians must have equal size, got {hm.shape}, {hs.shape}")
    ev_m = np.linalg.eigvalsh((hm + np.swapaxes(hm, -1, -2)) / 2)
    ev_s = np.linalg.eigvalsh((hs + np.swapaxes(hs, -1, -2)) / 2)
    if np.any(ev_m <= 0):
        raise ValueError(f"hessian_min must be positive definite, eigenvalues {ev_m.tolist()}")
    if np.any(np.sum(ev_s < 0, axis=-1) != 1) or np.any(ev_s == 0):
        raise ValueError(
            f"hessian_saddle must have exactly one negative eigenvalue, got {ev_s.tolist()}"
        )
    ratio = np.sqrt(np.abs(np.prod(ev_s, axis=-1)) / np.prod(ev_m, axis=-1))
    prefactor = 2.0 * np.pi / np.abs(ev_s.min(axis=-1)) * ratio
    with np.errstate(over="ignore"):
        return a.out(prefactor * np.exp(a.positive("delta_f", delta_f) / a.positive("D", D)))


def stationary_mass_ratio(hessian_i: Any, hessian_j: Any) -> Any:
    r"""Compute the small-noise ratio of stationary masses of two equally deep minima.

    .. math::

        \frac{P_i}{P_j} \to \sqrt{\frac{\det H_j}{\det H_i}} \quad (D \to 0),

    from the Laplace approximation of :math:`\int e^{-f/D}` over each basin: the flatter
    minimum (smaller :math:`\det H`) holds more mass, whatever :math:`\eta/b`.

    Args:
        hessian_i: Hessian(s) at minimum i, ``(..., d, d)``; a scalar or 1-D array holds
            positive 1-D curvatures.
        hessian_j: Hessian(s) at minimum j, of the same form.

    Returns:
        :math:`P_i / P_j`, broadcast over the Hessians' leading dimensions.

    Example:
        >>> round(stationary_mass_ratio(2.0, 8.0), 12)
        2.0

    References:
        Laplace's approximation, following Dai & Zhu 2018's flat-minima claim (arXiv 1812.00542);
        docs/theory/dai_zhu2018.md ([derived]).

    """
    hi = _hessians("hessian_i", hessian_i)
    hj = _hessians("hessian_j", hessian_j)
    if hi.shape[-1] != hj.shape[-1]:
        raise ValueError(f"hessians must have equal size, got {hi.shape}, {hj.shape}")
    det_i, det_j = np.linalg.det(hi), np.linalg.det(hj)
    if not (np.all(det_i > 0) and np.all(det_j > 0)):
        raise ValueError(f"hessians must be positive definite, got dets {det_i!r}, {det_j!r}")
    return a.out(np.sqrt(det_j / det_i))


def _kappa(kappa: Any) -> np.ndarray:
    return a.in_range("kappa", kappa, 0.0, 1.0)


def _phi(x: np.ndarray, kappa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e = np.exp(kappa * x)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(kappa == 0.0, x, np.expm1(kappa * x) / kappa)
    return phi, e, kappa * e


def warped_potential(x: Any, kappa: Any) -> Any:
    r"""Evaluate the warped double well with equally deep minima of different curvature.

    .. math::

        V(x) = (\varphi(x)^2 - 1)^2,\qquad \varphi(x) = \frac{e^{\kappa x} - 1}{\kappa}

    (:math:`\varphi = x` at :math:`\kappa = 0`): minima at :math:`\varphi = \mp 1` with
    :math:`V'' = 8(1 \mp \kappa)^2` (flat on the left, sharp on the right), barrier
    :math:`V(0) = 1`.

    Args:
        x: position(s).
        kappa: warp(s) :math:`\kappa` in [0, 1).

    Returns:
        V(x), broadcast over the arguments.

    Example:
        >>> warped_potential(0.0, 0.5)
        1.0

    References:
        This project's test potential for Dai & Zhu 2018 (arXiv 1812.00542);
        docs/theory/dai_zhu2018.md (ours).

    """
    phi, _, _ = _phi(a.real("x", x), _kappa(kappa))
    return a.out((phi**2 - 1.0) ** 2)


def warped_potential_grad(x: Any, kappa: Any) -> Any:
    r"""Evaluate the derivative of :func:`warped_potential`.

    .. math::

        V'(x) = 4\varphi(\varphi^2 - 1)\,\varphi',\qquad \varphi' = e^{\kappa x}.

    Args:
        x: position(s).
        kappa: warp(s) in [0, 1).

    Returns:
        V'(x), broadcast over the arguments.

    Example:
        >>> warped_potential_grad(2.0, 0.0)
        24.0

    References:
        docs/theory/dai_zhu2018.md (ours).

    """
    phi, dphi, _ = _phi(a.real("x", x), _kappa(kappa))
    return a.out(4.0 * phi * (phi**2 - 1.0) * dphi)


def warped_potential_hess(x: Any, kappa: Any) -> Any:
    r"""Evaluate the second derivative of :func:`warped_potential`.

    .. math::

        V''(x) = 4\left[(3\varphi^2 - 1)\varphi'^2 + \varphi(\varphi^2 - 1)\varphi''\right],
        \qquad \varphi'' = \kappa e^{\kappa x}.

    Args:
        x: position(s).
        kappa: warp(s) in [0, 1).

    Returns:
        V''(x), broadcast over the arguments.

    Example:
        >>> warped_potential_hess(0.0, 0.5)
        -4.0

    References:
        docs/theory/dai_zhu2018.md (ours).

    """
    phi, dphi, ddphi = _phi(a.real("x", x), _kappa(kappa))
    return a.out(4.0 * ((3.0 * phi**2 - 1.0) * dphi**2 + phi * (phi**2 - 1.0) * ddphi))


def warped_minima(kappa: Any) -> tuple[Any, Any]:
    r"""Return the positions (flat, sharp) of the two minima of :func:`warped_potential`.

    .. math::

        x_{\text{flat}} = \frac{\ln(1 - \kappa)}{\kappa},\qquad
        x_{\text{sharp}} = \frac{\ln(1 + \kappa)}{\kappa}

    (:math:`\mp 1` at :math:`\kappa = 0`), matching ``critbatch.problems.DoubleWell``.

    Args:
        kappa: warp(s) in [0, 1).

    Returns:
        ``(flat, sharp)``, each broadcast over ``kappa``.

    Example:
        >>> [round(m, 6) for m in warped_minima(0.5)]
        [-1.386294, 0.81093]

    References:
        docs/theory/dai_zhu2018.md (ours).

    """
    k = _kappa(kappa)
    with np.errstate(divide="ignore", invalid="ignore"):
        flat = np.where(k == 0.0, -1.0, np.log1p(-k) / k)
        sharp = np.where(k == 0.0, 1.0, np.log1p(k) / k)
    return a.out(flat), a.out(sharp)


def warped_minimum_curvatures(kappa: Any) -> tuple[Any, Any]:
    r"""Return the curvatures (flat, sharp) at the two minima: ``8(1 - κ)²`` and ``8(1 + κ)²``.

    .. math::

        V''(x_{\text{flat}}) = 8(1-\kappa)^2,\qquad V''(x_{\text{sharp}}) = 8(1+\kappa)^2.

    Args:
        kappa: warp(s) in [0, 1).

    Returns:
        ``(flat, sharp)``, each broadcast over ``kappa``.

    Example:
        >>> warped_minimum_curvatures(0.5)
        (2.0, 18.0)

    References:
        docs/theory/dai_zhu2018.md (ours).

    """
    k = _kappa(kappa)
    return a.out(8.0 * (1.0 - k) ** 2), a.out(8.0 * (1.0 + k) ** 2)


def wall_position(kappa: Any, wall_offset: Any) -> Any:
    r"""Return where the confining wall starts: ``wall_offset`` left of the flat minimum.

    .. math::

        x_w = x_{\text{flat}} - \text{wall\_offset}.

    Args:
        kappa: warp(s) in [0, 1).
        wall_offset: distance(s) from the flat minimum (> 0).

    Returns:
        :math:`x_w`, broadcast over the arguments.

    Example:
        >>> wall_position(0.0, 1.0)
        -2.0

    References:
        ``critbatch.problems.DoubleWell`` (the simulated problem); docs/theory/dai_zhu2018.md.

    """
    flat, _ = warped_minima(kappa)
    return a.out(np.asarray(flat) - a.positive("wall_offset", wall_offset))


def _wall(
    x: Any, kappa: Any, wall_offset: Any, wall_stiffness: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the positions, the wall position x_w and the wall stiffness k as arrays."""
    x_w = np.asarray(wall_position(kappa, wall_offset))
    return a.real("x", x), x_w, a.positive("wall_stiffness", wall_stiffness)


def double_well_potential(x: Any, kappa: Any, wall_offset: Any, wall_stiffness: Any) -> Any:
    r"""Evaluate the simulated double well: the warped potential plus a quadratic wall.

    .. math::

        f(x) = V(x) + \tfrac12 k\,(x - x_w)^2\,\mathbb{1}[x < x_w],

    with :math:`k` ``wall_stiffness`` and :math:`x_w` from :func:`wall_position`; this is
    ``critbatch.problems.double_well`` per coordinate, whose wall makes :math:`e^{-f/D}`
    normalizable.

    Args:
        x: position(s).
        kappa: warp(s) in [0, 1).
        wall_offset: wall distance(s) beyond the flat minimum (> 0).
        wall_stiffness: wall stiffness(es) :math:`k` (> 0).

    Returns:
        f(x), broadcast over the arguments.

    Example:
        >>> double_well_potential(-3.0, 0.0, 1.0, 8.0)
        68.0

    References:
        ``critbatch.problems.DoubleWell``; docs/theory/dai_zhu2018.md (ours).

    """
    xs, x_w, k = _wall(x, kappa, wall_offset, wall_stiffness)
    wall = np.where(xs < x_w, 0.5 * k * (xs - x_w) ** 2, 0.0)
    return a.out(np.asarray(warped_potential(xs, kappa)) + wall)


def double_well_grad(x: Any, kappa: Any, wall_offset: Any, wall_stiffness: Any) -> Any:
    r"""Evaluate the derivative of :func:`double_well_potential`.

    .. math::

        f'(x) = V'(x) + k\,(x - x_w)\,\mathbb{1}[x < x_w].

    Args:
        x: position(s).
        kappa: warp(s) in [0, 1).
        wall_offset: wall distance(s) beyond the flat minimum (> 0).
        wall_stiffness: wall stiffness(es) (> 0).

    Returns:
        f'(x), broadcast over the arguments.

    Example:
        >>> double_well_grad(-3.0, 0.0, 1.0, 8.0)
        -104.0

    References:
        ``critbatch.problems.DoubleWell``; docs/theory/dai_zhu2018.md (ours).

    """
    xs, x_w, k = _wall(x, kappa, wall_offset, wall_stiffness)
    wall = np.where(xs < x_w, k * (xs - x_w), 0.0)
    return a.out(np.asarray(warped_potential_grad(xs, kappa)) + wall)


def double_well_hess(x: Any, kappa: Any, wall_offset: Any, wall_stiffness: Any) -> Any:
    r"""Evaluate the second derivative of :func:`double_well_potential`.

    .. math::

        f''(x) = V''(x) + k\,\mathbb{1}[x < x_w].

    Args:
        x: position(s).
        kappa: warp(s) in [0, 1).
        wall_offset: wall distance(s) beyond the flat minimum (> 0).
        wall_stiffness: wall stiffness(es) (> 0).

    Returns:
        f''(x), broadcast over the arguments.

    Example:
        >>> double_well_hess(-3.0, 0.0, 1.0, 8.0)
        112.0

    References:
        ``critbatch.problems.DoubleWell``; docs/theory/dai_zhu2018.md (ours).

    """
    xs, x_w, k = _wall(x, kappa, wall_offset, wall_stiffness)
    wall = np.where(xs < x_w, k, 0.0)
    return a.out(np.asarray(warped_potential_hess(xs, kappa)) + wall)
