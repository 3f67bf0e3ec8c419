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
* ``double_well``: :math:`f(x) = \sum_i V(x_i)` with a warped quartic well (Dai & Zhu 2018,
  arXiv:1812.00542; :class:`DoubleWell`) and Gaussian gradient noise of standard deviation
  ``noise_std / sqrt(b)`` per coordinate.
* ``network`` (:func:`network`, the torch backend only): a ``torch.nn.Module``, a classification
  data set split into training, validation and test parts, and the mean cross-entropy over the
  training part, :math:`f(w) = \frac1n \sum_j \ell(\text{model}_w(x_j), y_j)`, sampled in
  minibatches as the finite sums are. Its iterate is the flattened parameter vector.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

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
    h: npt.NDArray[np.float64]
    c: npt.NDArray[np.float64]
    x0: npt.NDArray[np.float64]
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
    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    x0: npt.NDArray[np.float64]
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
    x0: npt.NDArray[np.float64]
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


@dataclass(frozen=True, eq=False)
class Network:
    """A network, a classification data set and a loss (build it with :func:`network`).

    The arrays are the data after the validation split; ``model_kwargs`` are the keyword
    arguments the model builder receives (for a built-in model, with the input size and the
    number of classes filled in from the data); ``layer_sizes`` are the sizes of the model's
    parameter tensors in the order of the flattened iterate, and ``dim`` their sum.
    """

    kind: ClassVar[str] = "network"
    model: str
    model_kwargs: dict[str, Any]
    data: str
    data_kwargs: dict[str, Any]
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_val: np.ndarray = field(repr=False)
    y_val: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: int
    layer_sizes: tuple[int, ...]
    loss: str = "cross_entropy"
    sampling: str = "shuffle"
    eval_train: int = 4096
    noise_scale: bool = False
    noise_decay: float = 0.99
    name: str = "network"

    @property
    def dim(self) -> int:
        """The number of parameters (the length of the flattened iterate)."""
        return sum(self.layer_sizes)

    @property
    def n_samples(self) -> int:
        """The number of training examples (after the validation split)."""
        return int(self.x_train.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input."""
        return tuple(self.x_train.shape[1:])

    def to_core(self) -> dict[str, Any]:
        """Refuse: the Rust core has no networks (:func:`critbatch.plan.check_backend`)."""
        raise ValueError(f"problem {self.name!r} is a network, which only the torch backend runs")


#: The synthetic problems (the Rust core's and the reference's); a plan may also hold a
#: :class:`Network`, which only the torch backend runs.
Problem = Nqm | FiniteSum | DoubleWell


def min_loss(problem: Problem) -> float:
    r"""The exact minimum :math:`f^\star` of a problem's full loss (``target.loss_gap_below``).

    Declared where it is known in closed form: 0 for the NQM (at :math:`x = 0`) and for the
    double well (both minima have :math:`V = 0`, and the wall is zero there). Least squares
    solves the normal equations :math:`(X^\top X / n + \lambda I) w = X^\top y / n`. The other
    finite sums (logistic, robust, teacher-student) run BFGS (scipy, gradient tolerance 1e-10)
    on the NumPy reference loss from ``x0``: the global minimum for the convex logistic loss,
    the minimum BFGS reaches from the start for the nonconvex ones. A plan calls this once per
    problem, and only when its target has a ``loss_gap_below``.

    Args:
        problem: a synthetic problem (a network has no computable minimum).

    Returns:
        :math:`f^\star` as a float.

    Raises:
        TypeError: for a network or anything that is not a synthetic problem.

    Example:
        >>> p = least_squares([[1.0], [1.0]], [0.0, 2.0])
        >>> min_loss(p), min_loss(nqm([1.0], [1.0]))   # w* = 1: (1 + 1) / 4
        (0.5, 0.0)

    """
    from critbatch import reference

    if isinstance(problem, (Nqm, DoubleWell)):
        return 0.0
    if not isinstance(problem, FiniteSum):
        raise TypeError(
            f"min_loss needs a synthetic problem (NQM, finite sum, double well), got "
            f"{type(problem).__name__}"
        )
    if problem.kind == "least_squares":
        n = problem.n_samples
        gram = problem.X.T @ problem.X / n + problem.l2 * np.eye(problem.dim)
        w, *_ = np.linalg.lstsq(gram, problem.X.T @ problem.y / n, rcond=None)
        return float(reference.loss(problem, w))
    from scipy import optimize

    best = optimize.minimize(
        lambda w: reference.loss(problem, w),
        np.array(problem.x0, dtype=np.float64),
        jac=lambda w: reference.grad(problem, w),
        method="BFGS",
        options={"gtol": 1e-10},
    )
    return float(min(best.fun, reference.loss(problem, problem.x0)))


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
    _check_size("dim", dim)
    h1 = v.positive("h1", h1)
    p = v.nonnegative("p", p)
    s = v.nonnegative("s", s)
    with np.errstate(over="ignore", under="ignore"):
        h = h1 * np.arange(1, dim + 1, dtype=np.float64) ** (-p)
        c = s * h
    if not np.all(h > 0):
        raise ValueError(
            f"h1 * dim**-p underflows to 0 (h1 = {h1!r}, p = {p!r}, dim = {dim}): "
            "every curvature h_i = h1 * i**-p must be positive; lower p"
        )
    v.derived_finite(
        c,
        f"s * h1 overflows float64 (s = {s!r}, h1 = {h1!r}): the noise "
        "variances c = s * h would be infinite",
    )
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
    _check_size("dim", dim)
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
    return v.derived_finite(
        y,
        f"noise_std = {noise_std!r} is too large: the labels "
        "y = model + noise_std * N(0, 1) overflow float64",
    )


#: The most entries a generated array holds (16 GiB of float64); a larger size is a typo.
MAX_GENERATED_ENTRIES = 2**31


def _check_size(what: str, entries: int) -> None:
    """Refuse to generate an array of more than :data:`MAX_GENERATED_ENTRIES` entries."""
    if entries > MAX_GENERATED_ENTRIES:
        raise ValueError(
            f"{what} = {entries} exceeds {MAX_GENERATED_ENTRIES} (2^31), the most "
            "entries a generated problem holds"
        )


def _gaussian_design(
    rng: np.random.Generator, n: int, d: int, condition_number: float
) -> np.ndarray:
    """Rows ~ N(0, S) with S = diag(s_1..s_d) log-spaced from 1 down to 1/condition_number."""
    if condition_number < 1:
        raise ValueError(f"condition_number must be >= 1, got {condition_number!r}")
    _check_size("n * d", n * d)
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
    _check_size("n * d", n * d)
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
    _check_size("n * d_in", n * d_in)
    _check_size("width * (d_in + 1)", width * (d_in + 1))
    _check_size("teacher_width * d_in", t_width * d_in)
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
    v.derived_finite(
        x0,
        f"init_scale = {init_scale!r} is too large: the student's start "
        "x0 = init_scale * N(0, 1/fan_in) overflows float64",
    )
    return teacher_student(X, y, width=width, sampling=sampling, x0=x0)


# ---------------------------------------------------------------------------------------------
# Networks: a model and a data set named by a built-in name or by an import reference.

NETWORK_LOSSES = ("cross_entropy",)
#: The built-in models (:mod:`critbatch.torch.networks`) and data sets
#: (:mod:`critbatch.torch.datasets`).
BUILTIN_MODELS = ("mlp", "cnn1d", "resnet")
BUILTIN_DATA = ("digits", "mnist1d", "cifar10")
_REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_DATA_CACHE: dict[str, Any] = {}
_DATA_CACHE_SIZE = 4
_PROBE_CACHE: dict[str, tuple[int, ...]] = {}


def resolve(reference: str, key: str) -> Callable[..., Any]:
    """Import the callable an import reference ``"package.module:callable"`` names.

    Warning:
        An import reference runs user code: importing the module executes it, and the sweep
        calls the callable (as Hydra's ``_target_`` does). Only name modules you trust; a spec
        file that names one is as powerful as a Python script.

    Args:
        reference: ``"package.module:attribute"`` (the attribute may be dotted,
            ``"pkg.mod:Class.builder"``); the module must be importable (on ``sys.path`` or
            ``PYTHONPATH``, in every Ray worker too).
        key: the spec key, for the message (``"model"``, ``"data"``).

    Returns:
        The callable.

    Raises:
        ValueError: one line naming ``key``: a malformed reference, a module that does not
            import, a missing attribute, or one that is not callable.

    Example:
        >>> resolve("math:hypot", "model")(3.0, 4.0)
        5.0
        >>> resolve("math:nope", "model")
        Traceback (most recent call last):
        ...
        ValueError: model: module 'math' has no attribute 'nope' (reference 'math:nope')

    """
    if not isinstance(reference, str) or not _REFERENCE.match(reference):
        raise ValueError(
            f"{key} must be a built-in name or an import reference "
            f"'package.module:callable', got {reference!r}"
        )
    module_name, attribute = reference.split(":", 1)
    try:
        target: object = importlib.import_module(module_name)
    except Exception as err:  # any failure of user code becomes one line
        raise ValueError(
            f"{key}: cannot import module {module_name!r} for {reference!r} "
            f"({type(err).__name__}: {err})"
        ) from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"{key}: module {module_name!r} has no attribute {attribute!r} "
                f"(reference {reference!r})"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{key}: {reference!r} is a {type(target).__name__}, not a callable")
    return target


def _kwargs(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{key} must be a table of keyword arguments, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"{key}: {k!r} is not a keyword argument name")
    return dict(value)


def _load_data(data: str, kwargs: dict[str, Any]) -> Any:
    """The :class:`critbatch.torch.datasets.Dataset` a built-in name or a reference gives."""
    from critbatch.torch import datasets

    cache_key = json.dumps([data, kwargs], sort_keys=True, default=repr)
    if cache_key in _DATA_CACHE:
        return _DATA_CACHE[cache_key]
    if data in BUILTIN_DATA:
        try:
            loaded = datasets.load(data, **kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"data_kwargs: {err}") from None
    else:
        loaded = datasets.from_callable(resolve(data, "data"), kwargs, label=data)
    if len(_DATA_CACHE) >= _DATA_CACHE_SIZE:
        _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
    _DATA_CACHE[cache_key] = loaded
    return loaded


def network(
    model: str,
    data: str,
    *,
    model_kwargs: Mapping[str, Any] | None = None,
    data_kwargs: Mapping[str, Any] | None = None,
    loss: str = "cross_entropy",
    validation: float = 0.1,
    split_seed: int = 0,
    eval_train: int = 4096,
    sampling: str = "shuffle",
    noise_scale: bool = False,
    noise_decay: float = 0.99,
    name: str = "",
) -> Network:
    r"""A real network problem for the torch backend: model, data set, loss, validation split.

    The model and the data are each named by a built-in name or by an import reference
    ``"package.module:callable"`` (:func:`resolve`; **it runs user code**, as Hydra's
    ``_target_`` does):

    * a model callable receives ``model_kwargs`` and returns a fresh ``torch.nn.Module`` that
      maps a batch of inputs to ``(batch, classes)`` logits, with its parameters drawn from
      torch's global generator (the backend seeds it per replicate). Built-in: ``"mlp"``,
      ``"cnn1d"``, ``"resnet"`` (:mod:`critbatch.torch.networks`), whose input size and number
      of classes default to the data's.
    * a data callable receives ``data_kwargs`` and returns a
      :class:`critbatch.torch.datasets.Dataset`, a tuple ``(x_train, y_train, x_test, y_test)``
      or a dict with those keys (and optionally ``classes``), as arrays or CPU tensors, with
      integer labels. Built-in: ``"digits"``, ``"mnist1d"``, ``"cifar10"`` (which reads a local
      copy from ``root``; :mod:`critbatch.torch.datasets`).

    The training examples are permuted by ``split_seed``; the first ``round(validation * n)``
    form the validation split (the accuracy target reads it; tuning never sees the test set)
    and the rest the training set, whose first ``eval_train`` examples are the fixed subset on
    which the training loss is checked.

    Args:
        model: a built-in model name or an import reference.
        data: a built-in data set name or an import reference.
        model_kwargs: keyword arguments of the model callable.
        data_kwargs: keyword arguments of the data callable.
        loss: ``"cross_entropy"`` (mean over the batch).
        validation: the share of the training examples held out for validation, in [0, 1).
        split_seed: the seed of the validation split.
        eval_train: the training examples the loss check reads (at most all of them).
        sampling: ``"shuffle"`` (epochs of a permutation) or ``"with_replacement"``.
        noise_scale: measure the gradient noise scale :math:`B_{simple}` during every run
            (the ``noise_scale`` column; :mod:`critbatch.torch.noise_scale`).
        noise_decay: the decay of its moving averages, in [0, 1).
        name: the label in result tables (default ``"<model>/<data>"``).

    Returns:
        A :class:`Network`.

    Raises:
        ValueError: naming the key at fault (a bad reference, arguments the callable refuses,
            a model whose output does not fit the data).
        ImportError: without the torch extra (``pip install critbatch[torch]``).

    Example:
        >>> p = network("mlp", "digits", model_kwargs={"hidden": [8]})
        >>> p.name, p.model_kwargs["in_features"], p.n_samples, p.x_val.shape[0], p.dim
        ('mlp/digits', 64, 1213, 135, 610)

    """
    from critbatch.torch import networks

    if not isinstance(model, str) or not model:
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if not isinstance(data, str) or not data:
        raise ValueError(f"data must be a non-empty string, got {data!r}")
    user_model_kwargs = _kwargs("model_kwargs", model_kwargs)
    data_kw = _kwargs("data_kwargs", data_kwargs)
    loss = v.choice("loss", loss, NETWORK_LOSSES)
    validation = v.in_range("validation", validation, 0.0, 1.0)
    split_seed = v.nonnegative_int("split_seed", split_seed)
    eval_train = v.positive_int("eval_train", eval_train)
    sampling = v.choice("sampling", sampling, SAMPLINGS)
    if not isinstance(noise_scale, bool):
        raise TypeError(f"noise_scale must be a bool, got {noise_scale!r}")
    noise_decay = v.in_range("noise_decay", noise_decay, 0.0, 1.0)
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    if model not in BUILTIN_MODELS:
        resolve(model, "model")  # fail early, naming the key
    dataset = _load_data(data, data_kw)
    n = dataset.n_train
    order = np.random.default_rng(split_seed).permutation(n)
    n_val = round(validation * n)
    if validation > 0 and n_val == 0:
        n_val = 1
    if n - n_val < 1:
        raise ValueError(f"validation = {validation!r} leaves no training example of {n}")
    val, train = order[:n_val], order[n_val:]
    arrays = [
        dataset.x_train[train],
        dataset.y_train[train],
        dataset.x_train[val],
        dataset.y_train[val],
        dataset.x_test,
        dataset.y_test,
    ]
    for a in arrays:
        a.setflags(write=False)
    kwargs = {
        **networks.default_kwargs(model, dataset.input_shape, dataset.classes),
        **user_model_kwargs,
    }
    probe_key = json.dumps(
        [model, kwargs, dataset.input_shape, dataset.classes], sort_keys=True, default=repr
    )
    if probe_key not in _PROBE_CACHE:
        _PROBE_CACHE[probe_key] = networks.probe(model, kwargs, arrays[0][:2], dataset.classes)
    layer_sizes = _PROBE_CACHE[probe_key]
    return Network(
        model=model,
        model_kwargs=kwargs,
        data=data,
        data_kwargs=data_kw,
        x_train=arrays[0],
        y_train=arrays[1],
        x_val=arrays[2],
        y_val=arrays[3],
        x_test=arrays[4],
        y_test=arrays[5],
        classes=dataset.classes,
        layer_sizes=layer_sizes,
        loss=loss,
        sampling=sampling,
        eval_train=min(eval_train, train.size),
        noise_scale=noise_scale,
        noise_decay=noise_decay,
        name=name or f"{model}/{data}",
    )
