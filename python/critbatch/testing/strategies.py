r"""Hypothesis strategies for problems that satisfy a theorem's assumptions, with their constants.

Every problem strategy draws an :class:`Instance`: a :mod:`critbatch.problems` spec together with
the constants the SGD theorems of :mod:`critbatch.theory` take as inputs, computed exactly from
the drawn arrays (never estimated by simulation):

* :math:`L`: the smoothness constant, :math:`\|\nabla f(x) - \nabla f(y)\| \le L\|x - y\|`;
* :math:`\sigma^2`: the bound on the variance of one sample's stochastic gradient in the squared
  Euclidean norm, :math:`\mathbb{E}\|g_1(x) - \nabla f(x)\|^2 \le \sigma^2`, so that a batch of
  ``b`` samples has :math:`\mathbb{E}\|g_b(x) - \nabla f(x)\|^2 \le \sigma^2/b` (the symbols
  of docs/theory/README.md);
* :math:`\Delta = f(x_0) - f^\star` and :math:`\mu` (the strong-convexity constant, 0 if none).

Where :math:`\sigma^2` is exact and where it is not:

* noisy quadratic model (Zhang et al. 2019): the gradient noise is
  :math:`N(0, \mathrm{diag}(c)/b)` whatever :math:`x`, so :math:`\sigma^2 = \sum_i c_i` holds
  with equality everywhere (``sigma2_scope == "global"``);
* least squares on a finite data set: the per-sample variance grows quadratically with
  :math:`\|w - w^\star\|` and is **not** bounded on the whole space. :func:`least_squares_problems`
  states a bound valid on the ball :math:`\|w - w^\star\| \le R` (``sigma2_scope == "ball"``,
  ``radius`` :math:`R`); a theorem using it holds only while the iterates stay in the ball.

Example:
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=5, database=None)
    ... @given(smooth_quadratics(max_dim=3))
    ... def constants_are_consistent(inst):
    ...     assert inst.L == inst.problem.h.max() and inst.sigma2 == inst.problem.c.sum()
    >>> constants_are_consistent()

"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    from hypothesis import assume
    from hypothesis import strategies as st
except ImportError as err:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "critbatch.testing needs hypothesis, which is not installed: "
        "pip install 'critbatch[testing]'"
    ) from err

from critbatch import _validate as v
from critbatch import problems as pb

__all__ = [
    "Instance",
    "batch_sizes",
    "learning_rates",
    "least_squares_constants",
    "least_squares_problems",
    "nqm_instance",
    "sgd_settings",
    "smooth_quadratics",
    "strongly_convex_quadratics",
]

SIGMA2_SCOPES = ("global", "ball")


@dataclass(frozen=True, eq=False)
class Instance:
    r"""A problem and the constants of the SGD theorems, computed exactly from its arrays.

    Attributes:
        problem: the :mod:`critbatch.problems` spec.
        L: smoothness constant of the full objective :math:`f`.
        sigma2: one-sample gradient variance bound :math:`\sigma^2` (squared Euclidean norm).
        delta: :math:`\Delta = f(x_0) - f^\star` (> 0).
        mu: strong-convexity constant (0 when :math:`f` is not strongly convex).
        f_star: the minimum value :math:`f^\star`.
        minimizer: a minimizer :math:`x^\star`.
        sigma2_scope: ``"global"`` (the bound holds at every point) or ``"ball"`` (only on
            :math:`\|x - x^\star\| \le` ``radius``).
        radius: the ball's radius (``math.inf`` for ``"global"``).
        L_sample: the largest smoothness constant of one sample's loss (equal to ``L`` for the
            NQM, whose noise is additive); a step :math:`\eta \le 1/L_{sample}` never expands a
            single sample's quadratic.

    """

    problem: pb.Problem
    L: float
    sigma2: float
    delta: float
    mu: float
    f_star: float
    minimizer: np.ndarray
    sigma2_scope: str = "global"
    radius: float = math.inf
    L_sample: float = math.nan

    def __post_init__(self) -> None:
        v.positive("L", self.L)
        v.nonnegative("sigma2", self.sigma2)
        v.positive("delta", self.delta)
        v.nonnegative("mu", self.mu)
        v.choice("sigma2_scope", self.sigma2_scope, SIGMA2_SCOPES)
        if self.mu > self.L * (1.0 + 1e-12):
            raise ValueError(f"mu must not exceed L={self.L!r}, got mu={self.mu!r}")


def nqm_instance(h: Any, c: Any, x0: Any, *, name: str = "nqm") -> Instance:
    r"""Build the :class:`Instance` of a noisy quadratic model, with its exact constants.

    .. math::

        L = \max_i h_i,\quad \mu = \min_i h_i,\quad \sigma^2 = \sum_i c_i,\quad
        \Delta = f(x_0) - 0 = \tfrac12 \sum_i h_i x_{0,i}^2,

    for :math:`f(x) = \tfrac12\sum_i h_i x_i^2` with curvatures ``h``, per-sample noise variances
    ``c`` and start ``x0``; :math:`\sigma^2` holds with equality at every :math:`x`.

    Args:
        h: curvatures :math:`h_i > 0`.
        c: per-sample gradient noise variances :math:`c_i \ge 0` (scalar or one per coordinate).
        x0: the start (scalar or one per coordinate), not the minimizer 0.
        name: the problem's name.

    Returns:
        The :class:`Instance`.

    Raises:
        ValueError: if ``x0`` is the minimizer (then :math:`\Delta = 0`) or a field is invalid.

    Example:
        >>> inst = nqm_instance([1.0, 0.5], [0.2, 0.3], 2.0)
        >>> inst.L, inst.mu, round(inst.sigma2, 12), inst.delta
        (1.0, 0.5, 0.5, 3.0)

    References:
        Zhang et al. 2019, the noisy quadratic model (arXiv 1907.04164), docs/theory/zhang2019.md.

    """
    problem = pb.nqm(h, c, x0, name=name)
    delta = 0.5 * float(np.sum(problem.h * problem.x0**2))
    if not delta > 0:
        raise ValueError(f"x0 must differ from the minimizer 0 (Delta = 0), got x0={x0!r}")
    L = float(problem.h.max())
    return Instance(
        problem=problem,
        L=L,
        sigma2=float(problem.c.sum()),
        delta=delta,
        mu=float(problem.h.min()),
        f_star=0.0,
        minimizer=np.zeros(problem.dim),
        L_sample=L,
    )


def _bounded_floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _start(dim: int, x0_max: float) -> st.SearchStrategy[list[float]]:
    """Draw starts with at least one coordinate of size >= x0_max/10, so Delta > 0 is not tiny."""
    first = st.tuples(st.sampled_from([-1.0, 1.0]), _bounded_floats(x0_max / 10, x0_max)).map(
        lambda pair: pair[0] * pair[1]
    )
    rest = st.lists(_bounded_floats(-x0_max, x0_max), min_size=dim - 1, max_size=dim - 1)
    return st.tuples(first, rest).map(lambda pair: [pair[0], *pair[1]])


def _check_range(name: str, low: float, high: float) -> None:
    if not low <= high:
        raise ValueError(f"{name} must be an ordered pair (low <= high), got ({low!r}, {high!r})")


def smooth_quadratics(
    *,
    min_dim: int = 1,
    max_dim: int = 6,
    h_range: tuple[float, float] = (0.05, 4.0),
    c_range: tuple[float, float] = (0.0, 4.0),
    x0_max: float = 3.0,
    isotropic: bool = False,
) -> st.SearchStrategy[Instance]:
    r"""Draw noisy quadratic models with exact :math:`L, \sigma^2, \Delta` (:func:`nqm_instance`).

    .. math::

        f(x) = \tfrac12 \sum_{i=1}^d h_i x_i^2,\qquad
        g_b(x) = h \odot x + \xi,\ \xi \sim N(0, \mathrm{diag}(c)/b),

    with :math:`d` in ``[min_dim, max_dim]``, :math:`h_i` in ``h_range`` (all equal when
    ``isotropic``), :math:`c_i` in ``c_range`` and :math:`|x_{0,i}| \le` ``x0_max`` (one
    coordinate at least ``x0_max/10`` in size). The NQM is :math:`L`-smooth with
    :math:`L = \max h`, and its noise variance :math:`\sum_i c_i` is the same at every point, so
    all of the descent-lemma assumptions hold exactly.

    Args:
        min_dim: smallest dimension (>= 1).
        max_dim: largest dimension.
        h_range: the range of the curvatures (positive).
        c_range: the range of the per-sample noise variances (non-negative).
        x0_max: the largest absolute start coordinate (> 0).
        isotropic: draw one curvature for all coordinates (then the descent lemma's noise
            term is attained in the stationary limit).

    Returns:
        A strategy of :class:`Instance`.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5, database=None)
        ... @given(smooth_quadratics(max_dim=3, isotropic=True))
        ... def one_curvature(inst):
        ...     assert inst.L == inst.mu and inst.problem.dim <= 3
        >>> one_curvature()

    References:
        Zhang et al. 2019 (arXiv 1907.04164), docs/theory/zhang2019.md; the constants are those of
        the descent lemma of docs/theory/iiduka2022.md.

    """
    min_dim, max_dim = v.positive_int("min_dim", min_dim), v.positive_int("max_dim", max_dim)
    _check_range("(min_dim, max_dim)", min_dim, max_dim)
    h_lo, h_hi = v.positive("h_range[0]", h_range[0]), v.positive("h_range[1]", h_range[1])
    c_lo, c_hi = v.nonnegative("c_range[0]", c_range[0]), v.nonnegative("c_range[1]", c_range[1])
    _check_range("h_range", h_lo, h_hi)
    _check_range("c_range", c_lo, c_hi)
    x0_max = v.positive("x0_max", x0_max)
    if not isinstance(isotropic, bool):
        raise TypeError(f"isotropic must be a bool, got {isotropic!r}")

    @st.composite
    def draw_instance(draw: Any) -> Instance:
        dim = draw(st.integers(min_dim, max_dim))
        if isotropic:
            h = [draw(_bounded_floats(h_lo, h_hi))] * dim
        else:
            h = draw(st.lists(_bounded_floats(h_lo, h_hi), min_size=dim, max_size=dim))
        c = draw(st.lists(_bounded_floats(c_lo, c_hi), min_size=dim, max_size=dim))
        return nqm_instance(h, c, draw(_start(dim, x0_max)))

    return draw_instance()


def strongly_convex_quadratics(
    *,
    min_dim: int = 1,
    max_dim: int = 6,
    L_range: tuple[float, float] = (0.2, 4.0),
    max_condition: float = 20.0,
    c_range: tuple[float, float] = (0.0, 4.0),
    x0_max: float = 3.0,
) -> st.SearchStrategy[Instance]:
    r"""Draw noisy quadratic models with a bounded condition number :math:`L/\mu`.

    .. math::

        h_i = L\,u_i,\quad u_1 = 1,\ u_i \in [1/\kappa_{\max}, 1],\qquad
        \mu = \min_i h_i \ge L/\kappa_{\max},

    with :math:`L` in ``L_range`` and :math:`\kappa_{\max}` = ``max_condition``; the noise and
    the start are drawn as in :func:`smooth_quadratics`. :math:`f` is :math:`\mu`-strongly convex
    and :math:`L`-smooth, the assumptions of the strongly convex SGD bound
    (docs/theory/perrone2019.md).

    Args:
        min_dim: smallest dimension (>= 1).
        max_dim: largest dimension.
        L_range: the range of the largest curvature :math:`L` (positive).
        max_condition: the largest condition number :math:`L/\mu` (>= 1).
        c_range: the range of the per-sample noise variances.
        x0_max: the largest absolute start coordinate.

    Returns:
        A strategy of :class:`Instance` with ``mu >= L / max_condition``.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5, database=None)
        ... @given(strongly_convex_quadratics(max_condition=5.0))
        ... def well_conditioned(inst):
        ...     assert inst.L <= 5.0 * inst.mu * (1 + 1e-12)
        >>> well_conditioned()

    References:
        Zhang et al. 2019 (arXiv 1907.04164); the strongly convex bound of Perrone et al. 2019
        (arXiv 1911.06459), docs/theory/perrone2019.md.

    """
    min_dim, max_dim = v.positive_int("min_dim", min_dim), v.positive_int("max_dim", max_dim)
    _check_range("(min_dim, max_dim)", min_dim, max_dim)
    l_lo, l_hi = v.positive("L_range[0]", L_range[0]), v.positive("L_range[1]", L_range[1])
    _check_range("L_range", l_lo, l_hi)
    kappa = v.positive("max_condition", max_condition)
    if kappa < 1:
        raise ValueError(f"max_condition must be >= 1, got {max_condition!r}")
    c_lo, c_hi = v.nonnegative("c_range[0]", c_range[0]), v.nonnegative("c_range[1]", c_range[1])
    _check_range("c_range", c_lo, c_hi)
    x0_max = v.positive("x0_max", x0_max)

    @st.composite
    def draw_instance(draw: Any) -> Instance:
        dim = draw(st.integers(min_dim, max_dim))
        L = draw(_bounded_floats(l_lo, l_hi))
        u = [
            1.0,
            *draw(st.lists(_bounded_floats(1.0 / kappa, 1.0), min_size=dim - 1, max_size=dim - 1)),
        ]
        c = draw(st.lists(_bounded_floats(c_lo, c_hi), min_size=dim, max_size=dim))
        return nqm_instance([L * ui for ui in u], c, draw(_start(dim, x0_max)))

    return draw_instance()


def least_squares_constants(problem: pb.FiniteSum, radius_factor: float = 2.0) -> Instance:
    r"""Compute the :class:`Instance` of a least-squares problem, with a ball-restricted σ².

    For :math:`f(w) = \frac1{2n}\|Xw - y\|^2 + \frac{\lambda}{2}\|w\|^2` with
    :math:`A = X^\top X/n + \lambda I`: :math:`L = \lambda_{\max}(A)`,
    :math:`\mu = \lambda_{\min}(A)`, :math:`w^\star` a minimizer (least-norm),
    :math:`\Delta = f(x_0) - f(w^\star)`. The per-sample gradient deviation is affine in
    :math:`u = w - w^\star`: :math:`g_j(w) - \nabla f(w) = M_j u + v_j` with
    :math:`M_j = x_j x_j^\top - X^\top X/n` and :math:`v_j = M_j w^\star - (x_j y_j - X^\top y/n)`,
    so the one-sample variance (sampling with replacement) is
    :math:`V(u) = u^\top Q u + 2p^\top u + s_0`, :math:`Q = \frac1n\sum_j M_j^\top M_j`,
    :math:`p = \frac1n\sum_j M_j^\top v_j`, :math:`s_0 = \frac1n\sum_j\|v_j\|^2`. On the ball
    :math:`\|u\| \le R`:

    .. math::

        \sigma^2 = \lambda_{\max}(Q)R^2 + 2\|p\|R + s_0 \;\ge\; \sup_{\|u\|\le R} V(u),

    with :math:`R` = ``radius_factor`` :math:`\cdot\|x_0 - w^\star\|`. :math:`V` is unbounded
    outside the ball: a theorem using this :math:`\sigma^2` holds only while the iterates stay
    in it.

    Args:
        problem: a ``least_squares`` :class:`critbatch.problems.FiniteSum` whose start differs
            from the minimizer.
        radius_factor: :math:`R/\|x_0 - w^\star\|` (>= 1, so the start is inside the ball).

    Returns:
        The :class:`Instance` (``sigma2_scope="ball"``, ``L_sample`` =
        :math:`\max_j\|x_j\|^2 + \lambda`).

    Example:
        >>> from critbatch import problems
        >>> inst = least_squares_constants(problems.least_squares([[1.0], [3.0]], [1.0, 1.0]))
        >>> inst.L, inst.mu, inst.L_sample, round(inst.delta, 6)
        (5.0, 5.0, 9.0, 0.4)

    References:
        The smoothness and variance definitions of the descent-lemma SGD bound
        (docs/theory/iiduka2022.md); the computation is elementary linear algebra, ours.

    """
    if not isinstance(problem, pb.FiniteSum) or problem.kind != "least_squares":
        raise TypeError(f"problem must be a least_squares FiniteSum, got {problem!r}")
    factor = v.positive("radius_factor", radius_factor)
    if factor < 1:
        raise ValueError(f"radius_factor must be >= 1 (the start lies in the ball), got {factor!r}")
    X, y, l2 = problem.X, problem.y, problem.l2
    n, d = X.shape
    S = X.T @ X / n
    eig = np.linalg.eigvalsh(S + l2 * np.eye(d))
    w_star = np.linalg.lstsq(S + l2 * np.eye(d), X.T @ y / n, rcond=None)[0]

    def f(w: np.ndarray) -> float:
        return 0.5 * float(np.mean((X @ w - y) ** 2)) + 0.5 * l2 * float(w @ w)

    delta = f(problem.x0) - f(w_star)
    if not delta > 0:
        raise ValueError("problem.x0 must differ from the minimizer (Delta = 0)")
    M = X[:, :, None] * X[:, None, :] - S[None]
    xy = X * y[:, None]
    vj = M @ w_star - (xy - xy.mean(axis=0))
    Q = np.einsum("jki,jkl->il", M, M) / n
    p = np.einsum("jki,jk->i", M, vj) / n
    s0 = float(np.mean(np.sum(vj * vj, axis=1)))
    radius = factor * float(np.linalg.norm(problem.x0 - w_star))
    q_max, p_norm = float(np.linalg.eigvalsh(Q)[-1]), float(np.linalg.norm(p))
    sigma2 = q_max * radius**2 + 2.0 * p_norm * radius + s0
    return Instance(
        problem=problem,
        L=float(eig[-1]),
        sigma2=sigma2,
        delta=delta,
        mu=max(float(eig[0]), 0.0),
        f_star=f(w_star),
        minimizer=w_star,
        sigma2_scope="ball",
        radius=radius,
        L_sample=float(np.max(np.sum(X * X, axis=1))) + l2,
    )


def least_squares_problems(
    *,
    min_n: int = 8,
    max_n: int = 48,
    min_dim: int = 1,
    max_dim: int = 4,
    max_condition: float = 10.0,
    l2_range: tuple[float, float] = (0.0, 0.5),
    noise_std_range: tuple[float, float] = (0.0, 1.0),
    radius_factor: float = 2.0,
) -> st.SearchStrategy[Instance]:
    r"""Draw least-squares problems on generated data, with :math:`\sigma^2` bounded on a ball.

    The data come from :func:`critbatch.problems.make_least_squares` (Gaussian design with a
    log-spaced diagonal covariance, planted weights, label noise) with a drawn seed, ``n``,
    ``d``, condition number, label-noise level and ridge :math:`\lambda`; the start is
    :math:`w_0 = 0`; sampling is with replacement. Constants from
    :func:`least_squares_constants`: :math:`L`, :math:`\mu` and :math:`\Delta` are exact, and
    :math:`\sigma^2` bounds the one-sample variance only on
    :math:`\|w - w^\star\| \le R` = ``radius_factor`` :math:`\cdot\|w_0 - w^\star\|`.

    Args:
        min_n: fewest samples.
        max_n: most samples.
        min_dim: smallest dimension.
        max_dim: largest dimension.
        max_condition: the largest condition number of the design covariance (>= 1).
        l2_range: the range of the ridge coefficient :math:`\lambda \ge 0`.
        noise_std_range: the range of the label-noise standard deviation.
        radius_factor: the ball radius over the start's distance to :math:`w^\star` (>= 1).

    Returns:
        A strategy of :class:`Instance` with ``sigma2_scope == "ball"``.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=3, database=None)
        ... @given(least_squares_problems(max_n=16))
        ... def ball_scoped(inst):
        ...     assert inst.sigma2_scope == "ball" and inst.L <= inst.L_sample
        >>> ball_scoped()

    References:
        The variance assumption of the descent-lemma bound (docs/theory/iiduka2022.md); see
        :func:`least_squares_constants`.

    """
    min_n, max_n = v.positive_int("min_n", min_n), v.positive_int("max_n", max_n)
    _check_range("(min_n, max_n)", min_n, max_n)
    min_dim, max_dim = v.positive_int("min_dim", min_dim), v.positive_int("max_dim", max_dim)
    _check_range("(min_dim, max_dim)", min_dim, max_dim)
    kappa = v.positive("max_condition", max_condition)
    if kappa < 1:
        raise ValueError(f"max_condition must be >= 1, got {max_condition!r}")
    l2_lo = v.nonnegative("l2_range[0]", l2_range[0])
    l2_hi = v.nonnegative("l2_range[1]", l2_range[1])
    _check_range("l2_range", l2_lo, l2_hi)
    s_lo = v.nonnegative("noise_std_range[0]", noise_std_range[0])
    s_hi = v.nonnegative("noise_std_range[1]", noise_std_range[1])
    _check_range("noise_std_range", s_lo, s_hi)
    factor = v.positive("radius_factor", radius_factor)
    if factor < 1:
        raise ValueError(f"radius_factor must be >= 1 (the start lies in the ball), got {factor!r}")

    @st.composite
    def draw_instance(draw: Any) -> Instance:
        problem = pb.make_least_squares(
            draw(st.integers(min_n, max_n)),
            draw(st.integers(min_dim, max_dim)),
            condition_number=draw(_bounded_floats(1.0, kappa)),
            noise_std=draw(_bounded_floats(s_lo, s_hi)),
            l2=draw(_bounded_floats(l2_lo, l2_hi)),
            seed=draw(st.integers(0, 2**32 - 1)),
        )
        f0 = 0.5 * float(np.mean(problem.y**2))
        # Delta = 0 only if the planted problem is already solved at w0 = 0 (y orthogonal to X).
        assume(np.linalg.norm(problem.X.T @ problem.y) > 1e-12 * max(f0, 1e-300))
        return least_squares_constants(problem, factor)

    return draw_instance()


def learning_rates(
    L: float,
    *,
    limit: float = 2.0,
    min_fraction: float = 0.05,
    max_fraction: float = 0.95,
) -> st.SearchStrategy[float]:
    r"""Draw learning rates a fraction of the way to the stability limit ``limit / L``.

    .. math::

        \eta = u \cdot \frac{\text{limit}}{L},\qquad u \in [\text{min\_fraction},
        \text{max\_fraction}],

    ``limit = 2`` for the descent-lemma bound (:math:`\eta < 2/L`, docs/theory/iiduka2022.md),
    ``limit = 1`` for the strongly convex bound (:math:`\eta \le 1/L`, docs/theory/perrone2019.md).

    Args:
        L: the smoothness constant (> 0).
        limit: the theorem's limit on :math:`L\eta` (> 0).
        min_fraction: the smallest fraction of the limit (> 0).
        max_fraction: the largest fraction (<= 1; < 1 for a strict limit such as 2/L).

    Returns:
        A strategy of floats in ``[min_fraction, max_fraction] * limit / L``.

    Example:
        >>> learning_rates(2.0, max_fraction=0.5)  # doctest: +ELLIPSIS
        floats(min_value=0.05, max_value=0.5...)

    References:
        docs/theory/iiduka2022.md (:math:`\eta < 2/L`) and docs/theory/perrone2019.md (:math:`\eta
        \le 1/L`).

    """
    L = v.positive("L", L)
    limit = v.positive("limit", limit)
    lo = v.in_range("min_fraction", min_fraction, 0.0, 1.0)
    hi = v.positive("max_fraction", max_fraction)
    if hi > 1.0:
        raise ValueError(f"max_fraction must be <= 1, got {max_fraction!r}")
    if lo <= 0.0:
        raise ValueError(f"min_fraction must be positive, got {min_fraction!r}")
    _check_range("(min_fraction, max_fraction)", lo, hi)
    return _bounded_floats(lo * limit / L, hi * limit / L)


def batch_sizes(
    min_value: int = 1,
    max_value: int = 64,
    *,
    powers_of_two: bool = False,
) -> st.SearchStrategy[int]:
    """Draw batch sizes in ``[min_value, max_value]``, optionally only powers of two.

    Args:
        min_value: the smallest batch size (>= 1).
        max_value: the largest batch size.
        powers_of_two: draw only :math:`2^k` within the range.

    Returns:
        A strategy of positive integers.

    Example:
        >>> batch_sizes(3, 20, powers_of_two=True)
        sampled_from([4, 8, 16])

    References:
        The batch size :math:`b` (the symbols of docs/theory/README.md).

    """
    lo = v.positive_int("min_value", min_value)
    hi = v.positive_int("max_value", max_value)
    _check_range("(min_value, max_value)", lo, hi)
    if not isinstance(powers_of_two, bool):
        raise TypeError(f"powers_of_two must be a bool, got {powers_of_two!r}")
    if not powers_of_two:
        return st.integers(lo, hi)
    powers = [2**k for k in range(hi.bit_length()) if lo <= 2**k <= hi]
    if not powers:
        raise ValueError(f"no power of two lies in [min_value, max_value] = [{lo}, {hi}]")
    return st.sampled_from(powers)


def sgd_settings(
    instances: st.SearchStrategy[Instance] | None = None,
    *,
    limit: float = 2.0,
    max_fraction: float = 0.95,
    batches: st.SearchStrategy[int] | None = None,
) -> st.SearchStrategy[tuple[Instance, float, int]]:
    r"""Draw ``(instance, learning_rate, batch_size)`` with the rate valid for the instance's ``L``.

    Args:
        instances: a strategy of :class:`Instance` (default :func:`smooth_quadratics`).
        limit: passed to :func:`learning_rates` (2 for :math:`\eta < 2/L`, 1 for
            :math:`\eta \le 1/L`).
        max_fraction: passed to :func:`learning_rates`.
        batches: a strategy of batch sizes (default :func:`batch_sizes`).

    Returns:
        A strategy of triples.

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5, database=None)
        ... @given(sgd_settings(smooth_quadratics(max_dim=2)))
        ... def stable(setting):
        ...     inst, lr, b = setting
        ...     assert inst.L * lr < 2 and b >= 1
        >>> stable()

    References:
        The descent-lemma bound, docs/theory/iiduka2022.md.

    """
    inst_strategy = smooth_quadratics() if instances is None else instances
    batch_strategy = batch_sizes() if batches is None else batches
    return inst_strategy.flatmap(
        lambda inst: st.tuples(
            st.just(inst),
            learning_rates(inst.L, limit=limit, max_fraction=max_fraction),
            batch_strategy,
        )
    )
