r"""Problems: differentiable objectives with an exact loss and gradient and a stochastic oracle.

Each problem is a frozen dataclass with a ``kind`` tag that names its Rust variant
(``rust/problems/<kind>.rs``). Constructors validate every field and raise a ``ValueError`` or
``TypeError`` that names it. Data sets are generated here, from a seed, with NumPy, so that a
problem is fully described by its arrays: the backends only execute it.

Conventions (shared with the Rust core, the NumPy reference and the torch backend):

* ``nqm``: :math:`f(x) = \tfrac12 \sum_i h_i x_i^2`, stochastic gradient
  :math:`h \odot x + \xi`, :math:`\xi \sim N(0, \mathrm{diag}(c)/b)` (Zhang et al. 2019).
* finite sums over ``n`` samples,
  :math:`f(w) = \frac1n \sum_j \ell_j(w) + \tfrac{\lambda}{2}\|w\|^2`,
  minibatch gradient the mean of the per-sample gradients of ``b`` samples, drawn
  ``"with_replacement"`` or by ``"shuffle"`` (a new permutation each epoch, no replacement).
* ``double_well``: :math:`f(x) = \sum_i V(x_i)` with a warped quartic well (THEORY.md section 3)
  and Gaussian gradient noise of standard deviation ``noise_std / sqrt(b)`` per coordinate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from critbatch import _validate as v

SAMPLINGS = ("with_replacement", "shuffle")
ROBUST_LOSSES = ("geman_mcclure", "cauchy")
#: The most samples one step draws with replacement, 2^24 (the Rust core's ``MAX_DRAWN_BATCH``):
#: a finite sum sampled with replacement holds the indices of a step in memory, so larger batch
#: sizes are refused before a sweep runs (:func:`critbatch.plan.check_batch_bounds`). Batches of
#: the streamed problems (NQM, double well) cost nothing per sample and have no such limit.
MAX_DRAWN_BATCH = 2**24


@dataclass(frozen=True, eq=False)
class Nqm:
    """Noisy quadratic model: curvatures ``h``, per-sample gradient noise variances ``c``."""

    kind: ClassVar[str] = "nqm"
    h: np.ndarray
    c: np.ndarray
    x0: np.ndarray
    name: str = "nqm"

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return int(self.h.shape[0])

    @property
    def n_samples(self) -> None:
        """An NQM streams fresh noise: it has no finite data set."""
        return None

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        return {"kind": self.kind, "h": self.h, "c": self.c, "x0": self.x0}


@dataclass(frozen=True, eq=False)
class FiniteSum:
    """A loss averaged over a finite data set ``(X, y)``, sampled in minibatches."""

    kind: str
    X: np.ndarray
    y: np.ndarray
    x0: np.ndarray
    l2: float = 0.0
    sampling: str = "with_replacement"
    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return int(self.x0.shape[0])

    @property
    def n_samples(self) -> int:
        """Size of the data set."""
        return int(self.X.shape[0])

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        return {
            "kind": self.kind,
            "X": self.X,
            "y": self.y,
            "x0": self.x0,
            "l2": self.l2,
            "sampling": self.sampling,
            **self.params,
        }


@dataclass(frozen=True, eq=False)
class DoubleWell:
    """A sum of warped double wells, one per coordinate, with Gaussian gradient noise.

    ``V(x) = (phi(x)^2 - 1)^2`` with ``phi(x) = (exp(kappa x) - 1)/kappa``; its minima sit at
    ``phi = -1`` (flat, ``V'' = 8(1-kappa)^2``) and ``phi = +1`` (sharp, ``V'' = 8(1+kappa)^2``),
    with a barrier of height 1 at ``x = 0``. A quadratic wall of stiffness ``wall_stiffness``
    starts ``wall_offset`` beyond the flat minimum so that the stationary law normalizes.
    """

    kind: ClassVar[str] = "double_well"
    kappa: float
    noise_std: float
    x0: np.ndarray
    wall_offset: float = 1.0
    wall_stiffness: float = 8.0
    name: str = "double_well"

    @property
    def dim(self) -> int:
        """Number of independent wells."""
        return int(self.x0.shape[0])

    @property
    def n_samples(self) -> None:
        """The noise is streamed: there is no finite data set."""
        return None

    @property
    def flat_minimum(self) -> float:
        """Position of the flat minimum (``phi = -1``)."""
        return math.log1p(-self.kappa) / self.kappa if self.kappa else -1.0

    @property
    def sharp_minimum(self) -> float:
        """Position of the sharp minimum (``phi = +1``)."""
        return math.log1p(self.kappa) / self.kappa if self.kappa else 1.0

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        return {
            "kind": self.kind,
            "kappa": self.kappa,
            "noise_std": self.noise_std,
            "x0": self.x0,
            "wall_offset": self.wall_offset,
            "wall_stiffness": self.wall_stiffness,
        }


Problem = Nqm | FiniteSum | DoubleWell


def nqm(h: Any, c: Any, x0: Any = 1.0, *, name: str = "nqm") -> Nqm:
    """A noisy quadratic model from explicit curvatures ``h > 0`` and noise variances ``c >= 0``.

    ``x0`` is a scalar (the same start in every coordinate) or a vector.
    """
    h_arr = v.float_array("h", h, ndim=1)
    if np.any(h_arr <= 0):
        raise ValueError("h must be positive in every coordinate")
    c_arr = v.broadcast_vector("c", c, h_arr.shape[0])
    if np.any(c_arr < 0):
        raise ValueError("c must be non-negative in every coordinate")
    return Nqm(h=h_arr, c=c_arr, x0=v.broadcast_vector("x0", x0, h_arr.shape[0]), name=name)


def nqm_power_law(
    dim: int,
    *,
    h1: float = 1.0,
    p: float = 1.0,
    s: float = 1.0,
    x0: Any = 1.0,
    name: str = "nqm",
) -> Nqm:
    r"""A noisy quadratic model with the power-law spectrum of Zhang et al. (2019).

    :math:`h_i = h_1 i^{-p}` for :math:`i = 1..d` and :math:`c = s \cdot h` (noise covariance
    proportional to the curvature, as in Zhang et al. 2019, Sec. 3).
    """
    dim = v.positive_int("dim", dim)
    h1 = v.positive("h1", h1)
    p = v.nonnegative("p", p)
    s = v.nonnegative("s", s)
    with np.errstate(over="ignore", under="ignore"):
        h = h1 * np.arange(1, dim + 1, dtype=np.float64) ** (-p)
        c = s * h
    if not np.all(h > 0):
        raise ValueError(f"h1 * dim**-p underflows to 0 (h1 = {h1!r}, p = {p!r}, dim = {dim}): "
                         "every curvature h_i = h1 * i**-p must be positive; lower p")
    v.derived_finite(c, f"s * h1 overflows float64 (s = {s!r}, h1 = {h1!r}): the noise "
                        "variances c = s * h would be infinite")
    return nqm(h, c, x0, name=name)


def _finite_sum(
    kind: str,
    X: Any,
    y: Any,
    *,
    l2: float,
    sampling: str,
    x0: Any,
    dim: int | None,
    name: str,
    params: dict[str, Any] | None = None,
) -> FiniteSum:
    X_arr = v.float_array("X", X, ndim=2)
    y_arr = v.float_array("y", y, ndim=1)
    if y_arr.shape[0] != X_arr.shape[0]:
        raise ValueError(
            f"y must have one entry per row of X ({X_arr.shape[0]}), got {y_arr.shape[0]}"
        )
    return FiniteSum(
        kind=kind,
        X=X_arr,
        y=y_arr,
        x0=v.broadcast_vector("x0", x0, dim if dim is not None else X_arr.shape[1]),
        l2=v.nonnegative("l2", l2),
        sampling=v.choice("sampling", sampling, SAMPLINGS),
        name=name or kind,
        params=params or {},
    )


def least_squares(
    X: Any,
    y: Any,
    *,
    l2: float = 0.0,
    sampling: str = "with_replacement",
    x0: Any = 0.0,
    name: str = "least_squares",
) -> FiniteSum:
    r"""Least squares on a data set: :math:`\ell_j(w) = \tfrac12 (x_j^\top w - y_j)^2`."""
    return _finite_sum("least_squares", X, y, l2=l2, sampling=sampling, x0=x0, dim=None, name=name)


def logistic(
    X: Any,
    y: Any,
    *,
    l2: float = 0.0,
    sampling: str = "with_replacement",
    x0: Any = 0.0,
    name: str = "logistic",
) -> FiniteSum:
    r"""Logistic regression, labels in {-1, +1}: :math:`\ell_j = \log(1 + e^{-y_j x_j^\top w})`."""
    problem = _finite_sum("logistic", X, y, l2=l2, sampling=sampling, x0=x0, dim=None, name=name)
    if not np.all(np.isin(problem.y, (-1.0, 1.0))):
        raise ValueError("y must hold labels -1 or +1 for logistic regression")
    return problem


def robust_regression(
    X: Any,
    y: Any,
    *,
    loss: str = "geman_mcclure",
    scale: float = 1.0,
    l2: float = 0.0,
    sampling: str = "with_replacement",
    x0: Any = 0.0,
    name: str = "",
) -> FiniteSum:
    r"""Regression with a smooth nonconvex loss of the residual :math:`r = x^\top w - y`.

    ``"geman_mcclure"``: :math:`\rho(r) = \tfrac{c^2}{2}\, r^2/(c^2 + r^2)`;
    ``"cauchy"``: :math:`\rho(r) = \tfrac{c^2}{2} \log(1 + r^2/c^2)`, with ``c = scale``.
    Both behave like :math:`r^2/2` near zero, so ``L`` is at most that of least squares.
    """
    loss = v.choice("loss", loss, ROBUST_LOSSES)
    params = {"loss": loss, "scale": v.positive("scale", scale)}
    return _finite_sum(
        "robust",
        X,
        y,
        l2=l2,
        sampling=sampling,
        x0=x0,
        dim=None,
        name=name or f"robust_{loss}",
        params=params,
    )


def teacher_student(
    X: Any,
    y: Any,
    *,
    width: int,
    l2: float = 0.0,
    sampling: str = "with_replacement",
    x0: Any,
    name: str = "teacher_student",
) -> FiniteSum:
    r"""A two-layer tanh student :math:`f(x) = \sum_j a_j \tanh(w_j^\top x)` on data ``(X, y)``.

    Parameters are laid out as ``W`` (``width x d_in``, row-major) then ``a`` (``width``); the
    per-sample loss is :math:`\tfrac12 (f(x_j) - y_j)^2`.
    """
    width = v.positive_int("width", width)
    X_arr = v.float_array("X", X, ndim=2)
    dim = width * (X_arr.shape[1] + 1)
    return _finite_sum(
        "teacher_student",
        X_arr,
        y,
        l2=l2,
        sampling=sampling,
        x0=x0,
        dim=dim,
        name=name,
        params={"width": width},
    )


def double_well(
    *,
    kappa: float = 0.5,
    noise_std: float = 1.0,
    x0: Any = None,
    dim: int = 1,
    wall_offset: float = 1.0,
    wall_stiffness: float = 8.0,
    name: str = "double_well",
) -> DoubleWell:
    """A warped double well with a sharp and a flat minimum of equal depth (Dai & Zhu 2018 tests).

    ``0 <= kappa < 1``; the default start ``x0`` is the sharp minimum in every coordinate.
    """
    kappa = v.in_range("kappa", kappa, 0.0, 1.0)
    dim = v.positive_int("dim", dim)
    sharp = math.log1p(kappa) / kappa if kappa else 1.0
    return DoubleWell(
        kappa=kappa,
        noise_std=v.nonnegative("noise_std", noise_std),
        x0=v.broadcast_vector("x0", sharp if x0 is None else x0, dim),
        wall_offset=v.positive("wall_offset", wall_offset),
        wall_stiffness=v.positive("wall_stiffness", wall_stiffness),
        name=name,
    )


# ---------------------------------------------------------------------------------------------
# Generated data sets: everything derives from ``seed`` through NumPy's PCG64.


def _noisy_labels(clean: np.ndarray, noise_std: Any, rng: np.random.Generator) -> np.ndarray:
    """``clean + noise_std * N(0, 1)``, refused (naming ``noise_std``) where it overflows."""
    std = v.nonnegative("noise_std", noise_std)
    with np.errstate(over="ignore", invalid="ignore"):
        y = clean + std * rng.standard_normal(clean.shape[0])
    return v.derived_finite(y, f"noise_std = {noise_std!r} is too large: the labels "
                               "y = model + noise_std * N(0, 1) overflow float64")


def _gaussian_design(
    rng: np.random.Generator, n: int, d: int, condition_number: float
) -> np.ndarray:
    """Rows ~ N(0, S) with S = diag(s_1..s_d) log-spaced from 1 down to 1/condition_number."""
    scales = np.geomspace(1.0, 1.0 / condition_number, d) if d > 1 else np.ones(1)
    return rng.standard_normal((n, d)) * np.sqrt(scales)


def make_least_squares(
    n: int = 1024,
    d: int = 32,
    *,
    condition_number: float = 10.0,
    noise_std: float = 0.5,
    l2: float = 0.0,
    sampling: str = "with_replacement",
    seed: int = 0,
    name: str = "least_squares",
) -> FiniteSum:
    """Least squares on a Gaussian design with planted weights and label noise.

    The design covariance is diagonal with eigenvalues log-spaced between 1 and
    ``1/condition_number``; ``y = X w* + noise_std * N(0, 1)`` with ``w* ~ N(0, I/d)``.
    """
    n, d = v.positive_int("n", n), v.positive_int("d", d)
    condition_number = v.positive("condition_number", condition_number)
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number!r}")
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    X = _gaussian_design(rng, n, d, condition_number)
    w_star = rng.standard_normal(d) / math.sqrt(d)
    y = _noisy_labels(X @ w_star, noise_std, rng)
    return least_squares(X, y, l2=l2, sampling=sampling, name=name)


def make_logistic(
    n: int = 1024,
    d: int = 16,
    *,
    condition_number: float = 10.0,
    label_flip: float = 0.05,
    l2: float = 1e-3,
    sampling: str = "with_replacement",
    seed: int = 0,
    name: str = "logistic",
) -> FiniteSum:
    """Logistic regression on a Gaussian design with planted weights and flipped labels.

    Labels are ``sign(x^T w*)`` with ``w* ~ N(0, 4 I/d)``, each flipped with probability
    ``label_flip``.
    """
    n, d = v.positive_int("n", n), v.positive_int("d", d)
    condition_number = v.positive("condition_number", condition_number)
    flip = v.in_range("label_flip", label_flip, 0.0, 0.5)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    X = _gaussian_design(rng, n, d, condition_number)
    w_star = 2.0 * rng.standard_normal(d) / math.sqrt(d)
    y = np.where(X @ w_star >= 0, 1.0, -1.0)
    y[rng.random(n) < flip] *= -1
    return logistic(X, y, l2=l2, sampling=sampling, name=name)


def make_robust_regression(
    n: int = 1024,
    d: int = 16,
    *,
    loss: str = "geman_mcclure",
    scale: float = 1.0,
    outlier_fraction: float = 0.1,
    noise_std: float = 0.1,
    sampling: str = "with_replacement",
    seed: int = 0,
) -> FiniteSum:
    """Robust regression data: a linear model with small noise and a fraction of gross outliers."""
    n, d = v.positive_int("n", n), v.positive_int("d", d)
    frac = v.in_range("outlier_fraction", outlier_fraction, 0.0, 1.0)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    X = rng.standard_normal((n, d))
    w_star = rng.standard_normal(d) / math.sqrt(d)
    y = _noisy_labels(X @ w_star, noise_std, rng)
    outliers = rng.random(n) < frac
    y[outliers] += 10.0 * rng.standard_normal(int(outliers.sum()))
    return robust_regression(X, y, loss=loss, scale=scale, sampling=sampling)


def make_teacher_student(
    n: int = 512,
    d_in: int = 8,
    *,
    width: int = 4,
    teacher_width: int | None = None,
    noise_std: float = 0.05,
    init_scale: float = 0.5,
    sampling: str = "with_replacement",
    seed: int = 0,
) -> FiniteSum:
    """A teacher two-layer tanh network labels Gaussian inputs; the student starts at random.

    The teacher has ``teacher_width`` units (default ``width``) with weights ``N(0, 1/d_in)`` and
    output weights ``N(0, 1/teacher_width)``; the student's start has scale ``init_scale``.
    """
    n, d_in = v.positive_int("n", n), v.positive_int("d_in", d_in)
    width = v.positive_int("width", width)
    t_width = width if teacher_width is None else v.positive_int("teacher_width", teacher_width)
    rng = np.random.default_rng(v.nonnegative_int("seed", seed))
    X = rng.standard_normal((n, d_in))
    W_t = rng.standard_normal((t_width, d_in)) / math.sqrt(d_in)
    a_t = rng.standard_normal(t_width) / math.sqrt(t_width)
    y = _noisy_labels(np.tanh(X @ W_t.T) @ a_t, noise_std, rng)
    scale = v.positive("init_scale", init_scale)
    with np.errstate(over="ignore"):
        x0 = np.concatenate(
            [
                scale * rng.standard_normal(width * d_in) / math.sqrt(d_in),
                scale * rng.standard_normal(width) / math.sqrt(width),
            ]
        )
    v.derived_finite(x0, f"init_scale = {init_scale!r} is too large: the student's start "
                         "x0 = init_scale * N(0, 1/fan_in) overflows float64")
    return teacher_student(X, y, width=width, sampling=sampling, x0=x0)
