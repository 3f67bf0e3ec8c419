r"""Exact losses, gradients and stochastic-gradient oracles of every problem kind (NumPy oracle).

The conventions are those of :mod:`critbatch.problems` (shared with the Rust core):

* ``nqm``: :math:`f(x) = \tfrac12 \sum_i h_i x_i^2`; oracle :math:`h \odot x + \sqrt{c/b}\, z`,
  :math:`z \sim N(0, I)` (Zhang et al. 2019, Sec. 3, arXiv:1907.04164).
* finite sums: :math:`f(w) = \frac1n \sum_j \ell_j(w) + \tfrac{\lambda}{2}\|w\|^2` with
  ``least_squares`` :math:`\ell_j = \tfrac12 (x_j^\top w - y_j)^2`, ``logistic``
  :math:`\ell_j = \log(1 + e^{-y_j x_j^\top w})`, ``robust`` :math:`\ell_j = \rho(x_j^\top w - y_j)`
  (Geman-McClure :math:`\tfrac{c^2}{2} r^2/(c^2+r^2)`, Cauchy :math:`\tfrac{c^2}{2}\log(1+r^2/c^2)`)
  and ``teacher_student`` :math:`\ell_j = \tfrac12 (\sum_k a_k \tanh(w_k^\top x_j) - y_j)^2`.
  The per-sample gradient of sample ``j`` is :math:`\nabla \ell_j(w) + \lambda w` (so the mean over
  all samples is the full gradient), and a minibatch gradient is the mean over the drawn samples.
* ``double_well``: :math:`f(x) = \sum_i V(x_i) + W(x_i)`, :math:`V = (\varphi^2 - 1)^2`,
  :math:`\varphi(x) = (e^{\kappa x} - 1)/\kappa` (:math:`\varphi = x` at :math:`\kappa = 0`), and
  the wall :math:`W(x) = \tfrac{k}{2} \max(0, x_w - x)^2` with :math:`k` = ``wall_stiffness`` and
  :math:`x_w` = ``flat_minimum - wall_offset``; oracle :math:`f'(x) + (\sigma/\sqrt b)\, z`
  per coordinate, :math:`\sigma` = ``noise_std`` (Dai & Zhu 2018, arXiv:1812.00542).

Index samplers (shared with the core): ``"with_replacement"`` draws ``b`` indices uniformly and
independently; ``"shuffle"`` walks through a fresh permutation of ``n`` per epoch, a batch taking
the next ``b`` indices; when fewer than ``b`` remain they are dropped and a new permutation starts
(drop-last); a batch larger than ``n`` is capped at ``n``.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from critbatch import _validate as v
from critbatch.problems import DoubleWell, FiniteSum, Nqm, Problem

#: The float64 arrays every oracle here computes with (:func:`_check_x` and the problems' data).
_Floats: TypeAlias = npt.NDArray[np.float64]


def _check_x(problem: Problem, x: Any) -> _Floats:
    if not isinstance(problem, (Nqm, FiniteSum, DoubleWell)):
        raise TypeError(f"problem must be a critbatch problem, got {type(problem).__name__}")
    arr = np.asarray(x, dtype=np.float64)
    if arr.shape != (problem.dim,):
        raise ValueError(f"x must have shape ({problem.dim},), got {arr.shape}")
    return arr


def _check_b(b: Any, name: str = "b") -> int:
    return v.positive_int(name, b)


# ---------------------------------------------------------------------------------------------
# Finite sums: residual-type losses and the teacher-student network.


def _robust(problem: FiniteSum, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The robust loss and its derivative at the residuals ``r``, with no spurious overflow.

    With :math:`u = r/c`: Geman-McClure :math:`\rho = \tfrac12 r^2/(1+u^2)`,
    :math:`\rho' = r/(1+u^2)^2`; Cauchy :math:`\rho = \tfrac12 r^2 \log(1+u^2)/u^2`,
    :math:`\rho' = r/(1+u^2)`. Where :math:`|u| > 1` the same functions are written in
    :math:`v = c/r`: :math:`\tfrac12 c^2/(1+v^2)`, :math:`c v^3/(1+v^2)^2`;
    :math:`\tfrac12 c^2 (2\log|u| + \log(1+v^2))`, :math:`c v/(1+v^2)`. No :math:`c^2`,
    :math:`c^4` or :math:`r^2` is formed, so a huge scale or residual gives the right number
    where the textbook :math:`c^4 r/(c^2+r^2)^2` gives NaN (from :math:`c \approx 10^{77}`).
    """
    c = float(problem.params["scale"])
    r = np.asarray(r, dtype=np.float64)
    # Both branches are evaluated and np.where keeps one: the other may overflow harmlessly.
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        u = r / c
        inner = np.abs(u) <= 1.0  # False for NaN: the outer branch propagates it
        x = np.where(inner, u * u, 0.0)
        q = 1.0 + x
        v = np.where(inner, 0.0, c / r)
        p = 1.0 + v * v
        if problem.params["loss"] == "geman_mcclure":
            rho = np.where(inner, 0.5 * r * (r / q), 0.5 * c * (c / p))
            slope = np.where(inner, r / (q * q), (c * v) * (v / p) * (v / p))
        else:
            ratio = np.where(x > 0.0, np.log1p(x) / np.where(x > 0.0, x, 1.0), 1.0)
            log_u = np.where(np.isfinite(u), np.log(np.abs(u)), np.log(np.abs(r)) - math.log(c))
            outer = 0.5 * c * (c * (2.0 * log_u + np.log1p(v * v)))
            rho = np.where(inner, 0.5 * r * (r * ratio), outer)
            slope = np.where(inner, r / q, c * v / p)
    return rho, slope


def _rho(problem: FiniteSum, r: np.ndarray) -> np.ndarray:
    """Robust loss of the residuals ``r`` (:func:`_robust`)."""
    return _robust(problem, r)[0]


def _rho_prime(problem: FiniteSum, r: np.ndarray) -> np.ndarray:
    """Derivative of the robust loss at the residuals ``r`` (:func:`_robust`)."""
    return _robust(problem, r)[1]


def _sigmoid(z: _Floats) -> _Floats:
    r""":math:`1/(1+e^{-z})` computed as :math:`\exp(-\log(1+e^{-z}))`, stable for any sign."""
    return np.exp(-np.logaddexp(0.0, -z))


def _student_split(problem: FiniteSum, w: _Floats) -> tuple[_Floats, _Floats]:
    width = problem.params["width"]
    d_in = problem.X.shape[1]
    return w[: width * d_in].reshape(width, d_in), w[width * d_in :]


def _sample_losses(problem: FiniteSum, w: _Floats, X: _Floats, y: _Floats) -> np.ndarray:
    r""":math:`\ell_j(w)` for the rows of ``(X, y)``, without the l2 term."""
    if problem.kind == "teacher_student":
        W, a = _student_split(problem, w)
        return 0.5 * (np.tanh(X @ W.T) @ a - y) ** 2
    z = X @ w
    if problem.kind == "least_squares":
        return 0.5 * (z - y) ** 2
    if problem.kind == "logistic":
        return np.logaddexp(0.0, -y * z)
    if problem.kind == "robust":
        return _rho(problem, z - y)
    raise ValueError(f"problem.kind must be a known finite sum, got {problem.kind!r}")


def _sample_grads_raw(problem: FiniteSum, w: _Floats, X: _Floats, y: _Floats) -> np.ndarray:
    r""":math:`\nabla \ell_j(w)` for the rows of ``(X, y)``, one row each, without the l2 term."""
    if problem.kind == "teacher_student":
        W, a = _student_split(problem, w)
        hidden = np.tanh(X @ W.T)  # (m, width)
        err = hidden @ a - y  # (m,)
        # d/dW_k = err * a_k * (1 - tanh^2) * x ;  d/da_k = err * tanh(w_k . x)
        dW = (err[:, None] * a[None, :] * (1.0 - hidden**2))[:, :, None] * X[:, None, :]
        da = err[:, None] * hidden
        return np.concatenate([dW.reshape(X.shape[0], -1), da], axis=1)
    z = X @ w
    if problem.kind == "least_squares":
        scale = z - y
    elif problem.kind == "logistic":
        scale = -y * _sigmoid(-y * z)  # d/dz log(1 + e^{-yz})
    elif problem.kind == "robust":
        scale = _rho_prime(problem, z - y)
    else:
        raise ValueError(f"problem.kind must be a known finite sum, got {problem.kind!r}")
    return scale[:, None] * X


# ---------------------------------------------------------------------------------------------
# The double well.


def _phi(problem: DoubleWell, x: _Floats) -> tuple[_Floats, _Floats]:
    r""":math:`\varphi(x)` and :math:`\varphi'(x) = e^{\kappa x}`."""
    kappa = problem.kappa
    if kappa == 0.0:
        return x.copy(), np.ones_like(x)
    return np.expm1(kappa * x) / kappa, np.exp(kappa * x)


def _wall_position(problem: DoubleWell) -> float:
    return problem.flat_minimum - problem.wall_offset


def _double_well_loss(problem: DoubleWell, x: _Floats) -> float:
    phi, _ = _phi(problem, x)
    depth = np.maximum(0.0, _wall_position(problem) - x)
    return float(np.sum((phi * phi - 1.0) ** 2 + 0.5 * problem.wall_stiffness * depth * depth))


def _double_well_grad(problem: DoubleWell, x: _Floats) -> _Floats:
    phi, dphi = _phi(problem, x)
    depth = np.maximum(0.0, _wall_position(problem) - x)
    return 4.0 * (phi * phi - 1.0) * phi * dphi - problem.wall_stiffness * depth


# ---------------------------------------------------------------------------------------------
# Public oracle.


def loss(problem: Problem, x: Any) -> float:
    """Return the exact full loss :math:`f(x)` (see the module docstring for each kind).

    Args:
        problem: a spec from :mod:`critbatch.problems`.
        x: the parameters, shape ``(problem.dim,)``.

    Returns:
        :math:`f(x)` as a float.

    Example:
        >>> from critbatch import problems
        >>> loss(problems.nqm([1.0, 2.0], [0.0, 0.0]), [1.0, 1.0])
        1.5

    References:
        Zhang et al. 2019, Sec. 3 (NQM, arXiv:1907.04164); Dai & Zhu 2018 (double well,
        arXiv:1812.00542).

    """
    w = _check_x(problem, x)
    if isinstance(problem, Nqm):
        return float(0.5 * np.sum(problem.h * w * w))
    if isinstance(problem, DoubleWell):
        return _double_well_loss(problem, w)
    data_term = float(np.mean(_sample_losses(problem, w, problem.X, problem.y)))
    if problem.l2 == 0:  # no 0 * inf when |w|^2 overflows
        return data_term
    with np.errstate(over="ignore"):
        squares = float(w @ w)
    if not math.isfinite(squares):  # |w|^2 overflowed: (l2/2 |w|) |w| may still be finite
        length = math.hypot(*w)
        return data_term + 0.5 * problem.l2 * length * length
    return data_term + 0.5 * problem.l2 * squares


def grad(problem: Problem, x: Any) -> np.ndarray:
    r"""Return the exact full gradient :math:`\nabla f(x)`.

    Finite sums use the closed matrix forms (for example :math:`X^\top (Xw - y)/n + \lambda w`
    for least squares), written apart from :func:`sample_grads` so that each checks the other.

    Args:
        problem: a spec from :mod:`critbatch.problems`.
        x: the parameters, shape ``(problem.dim,)``.

    Returns:
        :math:`\nabla f(x)`, shape ``(problem.dim,)``.

    Example:
        >>> from critbatch import problems
        >>> grad(problems.least_squares([[1.0], [2.0]], [1.0, 0.0], l2=1.0), [1.0]).tolist()
        [3.0]

    """
    w = _check_x(problem, x)
    if isinstance(problem, Nqm):
        return problem.h * w
    if isinstance(problem, DoubleWell):
        return _double_well_grad(problem, w)
    X, y, n = problem.X, problem.y, problem.n_samples
    if problem.kind == "least_squares":
        data = X.T @ (X @ w - y) / n
    elif problem.kind == "logistic":
        data = X.T @ (-y * _sigmoid(-y * (X @ w))) / n
    elif problem.kind == "robust":
        data = X.T @ _rho_prime(problem, X @ w - y) / n
    else:  # teacher_student: backpropagation by hand, in matrix form
        W, a = _student_split(problem, w)
        hidden = np.tanh(X @ W.T)
        err = hidden @ a - y
        da = hidden.T @ err / n
        dW = ((err[:, None] * (1.0 - hidden**2)) * a[None, :]).T @ X / n
        data = np.concatenate([dW.ravel(), da])
    return data + problem.l2 * w


def sample_grads(problem: FiniteSum, x: Any, idx: Any) -> np.ndarray:
    r"""Per-sample gradients :math:`\nabla \ell_j(x) + \lambda x` of the samples ``idx``.

    Args:
        problem: a finite-sum spec (least squares, logistic, robust, teacher-student).
        x: the parameters, shape ``(problem.dim,)``.
        idx: sample indices in ``[0, n)`` (repeats allowed).

    Returns:
        Array of shape ``(len(idx), problem.dim)``; row ``r`` belongs to sample ``idx[r]``.

    Example:
        >>> from critbatch import problems
        >>> p = problems.least_squares([[1.0], [2.0]], [1.0, 0.0])
        >>> sample_grads(p, [1.0], [1, 0, 1]).tolist()
        [[4.0], [0.0], [4.0]]

    """
    if not isinstance(problem, FiniteSum):
        raise TypeError(
            f"problem must be a finite sum, got {type(problem).__name__} "
            f"({getattr(problem, 'kind', '?')!r} has no samples)"
        )
    w = _check_x(problem, x)
    rows = np.asarray(idx)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"idx must be a 1-D integer array, got {rows.dtype} shape {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= problem.n_samples):
        raise ValueError(
            f"idx must lie in [0, {problem.n_samples}), got {rows.min()}..{rows.max()}"
        )
    raw = _sample_grads_raw(problem, w, problem.X[rows], problem.y[rows])
    return raw + problem.l2 * w[None, :]


class WithReplacementSampler:
    """Draws ``b`` indices uniformly from ``[0, n)``, independently (``rng.integers(0, n, b)``)."""

    def __init__(self, n: int):
        self.n = _check_b(n, "n")

    def draw(self, b: int, rng: np.random.Generator) -> np.ndarray:
        """Draw the indices of the next batch of size ``b``."""
        return rng.integers(0, self.n, size=_check_b(b))


class ShuffleSampler:
    """Epoch-wise shuffling without replacement, drop-last, batches capped at ``n``.

    Each epoch is one ``rng.permutation(n)``; a batch takes its next ``min(b, n)`` entries, and when
    fewer remain, they are dropped and a new permutation starts.
    """

    def __init__(self, n: int):
        self.n = _check_b(n, "n")
        self.permutation = np.arange(0)
        self.position = 0

    def draw(self, b: int, rng: np.random.Generator) -> np.ndarray:
        """Draw the indices of the next batch of size ``min(b, n)``."""
        b = min(_check_b(b), self.n)
        if self.permutation.size - self.position < b:
            self.permutation = rng.permutation(self.n)
            self.position = 0
        out = self.permutation[self.position : self.position + b]
        self.position += b
        return out


def make_sampler(problem: Problem) -> WithReplacementSampler | ShuffleSampler | None:
    """Return the index sampler a problem's ``sampling`` asks for (``None`` for streamed noise).

    Example:
        >>> import numpy as np
        >>> from critbatch import problems
        >>> p = problems.least_squares(np.eye(3), [0.0, 1.0, 2.0], sampling="shuffle")
        >>> s, rng = make_sampler(p), np.random.default_rng(0)
        >>> sorted(s.draw(3, rng).tolist())
        [0, 1, 2]

    """
    if not isinstance(problem, FiniteSum):
        return None
    if problem.sampling == "shuffle":
        return ShuffleSampler(problem.n_samples)
    return WithReplacementSampler(problem.n_samples)


def stochastic_grad(
    problem: Problem,
    x: Any,
    b: int,
    rng: np.random.Generator,
    sampler: WithReplacementSampler | ShuffleSampler | None = None,
) -> np.ndarray:
    r"""Draw a minibatch stochastic gradient of size ``b`` (the module docstring gives each kind).

    .. math::
        g = \frac{1}{|B|} \sum_{j \in B} \big(\nabla \ell_j(x) + \lambda x\big)
        \quad\text{(finite sums)}, \qquad
        g = h \odot x + \sqrt{c/b}\, z \quad\text{(NQM)}, \qquad
        g = f'(x) + \frac{\sigma}{\sqrt b} z \quad\text{(double well)},

    with :math:`z \sim N(0, I)` drawn as ``rng.standard_normal(d)`` and the batch :math:`B` drawn by
    ``sampler``.

    Args:
        problem: a spec from :mod:`critbatch.problems`.
        x: the parameters, shape ``(problem.dim,)``.
        b: the batch size (``>= 1``).
        rng: the random stream.
        sampler: for finite sums, the index sampler (keeps the shuffle's position between calls;
            default: a fresh one from :func:`make_sampler`); ignored otherwise.

    Returns:
        The stochastic gradient, shape ``(problem.dim,)``.

    Example:
        >>> import numpy as np
        >>> from critbatch import problems
        >>> p = problems.nqm([1.0], [0.0])      # no noise: the exact gradient
        >>> stochastic_grad(p, [2.0], 4, np.random.default_rng(0)).tolist()
        [2.0]

    References:
        Zhang et al. 2019, Sec. 3 (NQM oracle, arXiv:1907.04164).

    """
    w = _check_x(problem, x)
    b = _check_b(b)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(problem, Nqm):
        return problem.h * w + np.sqrt(problem.c / b) * rng.standard_normal(problem.dim)
    if isinstance(problem, DoubleWell):
        noise = problem.noise_std / math.sqrt(b) * rng.standard_normal(problem.dim)
        return _double_well_grad(problem, w) + noise
    if sampler is None:
        sampler = make_sampler(problem)
    if not isinstance(sampler, (WithReplacementSampler, ShuffleSampler)):
        raise TypeError(f"sampler must be a reference sampler, got {type(sampler).__name__}")
    if sampler.n != problem.n_samples:
        raise ValueError(f"sampler covers {sampler.n} samples, the problem has {problem.n_samples}")
    idx = sampler.draw(b, rng)
    return np.asarray(np.mean(sample_grads(problem, w, idx), axis=0), dtype=np.float64)
