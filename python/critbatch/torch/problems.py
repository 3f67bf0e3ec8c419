r"""Batched torch versions of the synthetic problems: exact loss and gradient, stochastic oracles.

Every function takes the iterates of ``R`` runs as one ``(R, dim)`` tensor and returns one value
per run, so a whole chunk of runs is advanced by a few tensor operations. The conventions are
those of :mod:`critbatch.problems` (and of the Rust core, ``rust/problems/``):

* ``nqm``: :math:`f(x) = \tfrac12 \sum_i h_i x_i^2`, stochastic gradient
  :math:`h \odot x + \xi` with :math:`\xi \sim N(0, \mathrm{diag}(c)/b)` (Zhang et al. 2019,
  Sec. 3, arXiv:1907.04164).
* ``double_well``: :math:`f(x) = \sum_i V(x_i) + \tfrac{k}{2}\max(x_w - x_i, 0)^2` with
  :math:`V(x) = (\phi(x)^2 - 1)^2`, :math:`\phi(x) = (e^{\kappa x} - 1)/\kappa`,
  :math:`x_w = \ln(1-\kappa)/\kappa - \text{wall\_offset}`, and gradient noise
  :math:`N(0, \sigma^2/b)` per coordinate (THEORY.md section 3).
* finite sums: :math:`f(w) = \frac1n \sum_j \ell_j(w) + \tfrac{\lambda}{2}\|w\|^2`, the
  minibatch gradient the mean of the per-sample gradients of the drawn rows plus
  :math:`\lambda w`; ``least_squares`` :math:`\ell = \tfrac12 r^2`, ``logistic``
  :math:`\ell = \log(1 + e^{-y z})`, ``robust`` (Geman-McClure
  :math:`\tfrac{c^2}{2} r^2/(c^2 + r^2)` or Cauchy :math:`\tfrac{c^2}{2}\log(1 + r^2/c^2)`),
  with :math:`z = x_j^\top w`, :math:`r = z - y_j`, and ``teacher_student``
  :math:`\ell = \tfrac12(\sum_k a_k \tanh(w_k^\top x_j) - y_j)^2` with parameters ``W``
  (``width x d_in``, row-major) then ``a``.

A minibatch is a set of row indices per run; a run with a smaller batch than the widest one in
the chunk gets zero weight on the padding. When the widest batch covers a quarter of the data
set or more, the drawn rows are turned into per-row weights over all ``n`` rows instead (a
scatter-add of counts), which costs ``n`` instead of ``b`` per run and needs no gather.
Sums over samples are taken in blocks so that no intermediate exceeds ``block_elements``.

Example:
    >>> import torch
    >>> import critbatch as cb
    >>> from critbatch.torch.problems import build
    >>> p = build(cb.problems.nqm([1.0, 2.0], [0.0, 0.0], 1.0), "cpu", torch.float64)
    >>> loss, grad = p.loss_grad(torch.ones(3, 2, dtype=torch.float64))
    >>> loss.tolist(), grad[0].tolist()
    ([1.5, 1.5, 1.5], [1.0, 2.0])

"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from critbatch import problems as specs

# Largest number of elements one intermediate (runs x samples x features) may hold.
BLOCK_ELEMENTS = 1 << 22
# Use per-row weights over the whole data set once the widest batch reaches n / DENSE_RATIO.
DENSE_RATIO = 4


class Oracle:
    """The random part of a chunk of runs: draws one stochastic gradient per run per step."""

    def grad(self, x: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        """Stochastic gradients of ``x`` (``R x dim``) at per-run batch sizes ``batch`` (``R``)."""
        raise NotImplementedError

    def select(self, keep: np.ndarray) -> None:
        """Keep only the runs at positions ``keep`` (the others have stopped)."""


class TorchProblem:
    """A problem on one device and dtype: exact loss and gradient of a batch of iterates."""

    dim: int
    n_samples: int | None
    x0: torch.Tensor

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact loss of each row of ``x``."""
        raise NotImplementedError

    def loss_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the exact loss and gradient of each row of ``x``."""
        raise NotImplementedError

    def exact_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact gradient of each row of ``x``."""
        return self.loss_grad(x)[1]

    def oracle(self, n_runs: int, generator: torch.Generator) -> Oracle:
        """Return a stochastic-gradient oracle for ``n_runs`` runs drawing from ``generator``."""
        raise NotImplementedError


def _tensor(array: np.ndarray, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """Copy a (read-only) spec array to a device."""
    return torch.from_numpy(np.array(array, dtype=np.float64)).to(device=device, dtype=dtype)


def _batch_tensor(batch: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(batch, dtype=like.dtype).to(like.device)


def row_norms(g: torch.Tensor) -> torch.Tensor:
    r"""The Euclidean norm of each row, without spurious overflow or underflow.

    ``torch.linalg.vector_norm`` sums plain squares, so a row with an entry above about
    :math:`10^{154}` (float64) gets an infinite norm although the norm is representable. Rows
    whose plain norm is not finite, or so small that its squares may have underflowed, are
    recomputed as :math:`m \cdot \|g/m\|` with :math:`m = \max_i |g_i|` (as BLAS ``dnrm2``); a
    NaN entry still gives NaN and an infinite one (without NaN) infinity.

    Example:
        >>> row_norms(torch.tensor([[1e160, 1.0], [3.0, 4.0]], dtype=torch.float64)).tolist()
        [1e+160, 5.0]

    """
    norms = torch.linalg.vector_norm(g, dim=1)
    info = torch.finfo(g.dtype)
    redo = ~torch.isfinite(norms) | (norms < math.sqrt(info.tiny / info.eps))
    if bool(redo.any()):
        rows = g[redo]
        largest = rows.abs().amax(dim=1, keepdim=True)
        usable = (largest > 0) & torch.isfinite(largest)
        scale = torch.where(usable, largest, torch.ones_like(largest))
        norms[redo] = scale[:, 0] * torch.linalg.vector_norm(rows / scale, dim=1)
    return norms


# ---------------------------------------------------------------------------------------------
# Streamed noise: the noisy quadratic model and the double well.


class _GaussianNoiseOracle(Oracle):
    r"""Exact gradient plus Gaussian noise of per-coordinate standard deviation ``scale / sqrt(b)``.

    The standard deviation, not the variance, is kept: a noise scale above :math:`10^{154}` has a
    variance that overflows, and a batch size above :math:`2^{53}` is still exact enough in
    float64 for :math:`\sqrt{b}`.
    """

    def __init__(self, problem: TorchProblem, scale: torch.Tensor, generator: torch.Generator):
        self.problem = problem
        self.scale = scale
        self.generator = generator

    def grad(self, x: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        """Exact gradient plus ``N(0, scale^2 / b)`` noise, independent across runs."""
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
        std = self.scale[None, :] / _batch_tensor(batch, x).sqrt()[:, None]
        return self.problem.exact_grad(x) + std * noise


class Nqm(TorchProblem):
    """Noisy quadratic model (Zhang et al. 2019, Sec. 3, arXiv:1907.04164) on a device."""

    def __init__(self, spec: specs.Nqm, device: Any, dtype: torch.dtype):
        self.h = _tensor(spec.h, dtype, device)
        self.c = _tensor(spec.c, dtype, device)
        self.x0 = _tensor(spec.x0, dtype, device)
        self.dim = spec.dim
        self.n_samples = None

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\tfrac12 \sum_i h_i x_i^2` per row."""
        return 0.5 * (self.h * x * x).sum(dim=1)

    def exact_grad(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`h \odot x` per row."""
        return self.h * x

    def loss_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and gradient per row."""
        return self.loss(x), self.exact_grad(x)

    def oracle(self, n_runs: int, generator: torch.Generator) -> Oracle:
        r"""Noise :math:`N(0, \mathrm{diag}(c)/b)` added to the exact gradient."""
        return _GaussianNoiseOracle(self, self.c.sqrt(), generator)


class DoubleWell(TorchProblem):
    """Warped double wells with a confining wall (THEORY.md section 3) on a device."""

    def __init__(self, spec: specs.DoubleWell, device: Any, dtype: torch.dtype):
        self.kappa = spec.kappa
        self.wall_at = spec.flat_minimum - spec.wall_offset
        self.wall_stiffness = spec.wall_stiffness
        self.noise_std = torch.full((spec.dim,), spec.noise_std, dtype=dtype, device=device)
        self.x0 = _tensor(spec.x0, dtype, device)
        self.dim = spec.dim
        self.n_samples = None

    def _warp(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kappa == 0.0:
            return x, torch.ones_like(x)
        return torch.expm1(self.kappa * x) / self.kappa, torch.exp(self.kappa * x)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i (\phi(x_i)^2 - 1)^2 + \tfrac{k}{2}\max(x_w - x_i, 0)^2` per row."""
        phi, _ = self._warp(x)
        wall = (self.wall_at - x).clamp(min=0.0)
        return ((phi * phi - 1.0) ** 2 + 0.5 * self.wall_stiffness * wall * wall).sum(dim=1)

    def exact_grad(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`4\phi(\phi^2 - 1)\phi' - k\max(x_w - x, 0)` per coordinate."""
        phi, dphi = self._warp(x)
        wall = (self.wall_at - x).clamp(min=0.0)
        return 4.0 * phi * (phi * phi - 1.0) * dphi - self.wall_stiffness * wall

    def loss_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and gradient per row."""
        return self.loss(x), self.exact_grad(x)

    def oracle(self, n_runs: int, generator: torch.Generator) -> Oracle:
        r"""Noise :math:`N(0, \sigma^2/b)` per coordinate added to the exact gradient."""
        return _GaussianNoiseOracle(self, self.noise_std, generator)


# ---------------------------------------------------------------------------------------------
# Finite sums.


def _robust(loss: str, r: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A robust loss and its derivative at the residuals ``r``, with no spurious overflow.

    The forms of the Rust core (``rust/problems/finite_sum.rs``, ``robust``): in
    :math:`u = r/c` where :math:`|u| \le 1` (Geman-McClure :math:`\tfrac12 r^2/(1+u^2)`,
    :math:`r/(1+u^2)^2`; Cauchy :math:`\tfrac12 r^2 \log(1+u^2)/u^2`, :math:`r/(1+u^2)`) and in
    :math:`v = c/r` beyond (:math:`\tfrac12 c^2/(1+v^2)`, :math:`c v^3/(1+v^2)^2`;
    :math:`\tfrac12 c^2(2\log|u| + \log(1+v^2))`, :math:`c v/(1+v^2)`): no :math:`c^2`,
    :math:`c^4` or :math:`r^2` is formed.
    """
    u = r / c
    inner = u.abs() <= 1.0  # False for NaN: the outer branch propagates it
    zero = torch.zeros_like(r)
    x = torch.where(inner, u * u, zero)
    q = 1.0 + x
    v = torch.where(inner, zero, c / r)
    p = 1.0 + v * v
    if loss == "geman_mcclure":
        rho = torch.where(inner, 0.5 * r * (r / q), 0.5 * c * (c / p))
        slope = torch.where(inner, r / (q * q), (c * v) * (v / p) * (v / p))
        return rho, slope
    positive = x > 0.0
    ratio = torch.where(positive, torch.log1p(x) / torch.where(positive, x, 1.0 + zero), 1.0 + zero)
    log_u = torch.where(torch.isfinite(u), u.abs().log(), r.abs().log() - math.log(c))
    outer = 0.5 * c * (c * (2.0 * log_u + torch.log1p(v * v)))
    return torch.where(inner, 0.5 * r * (r * ratio), outer), torch.where(inner, r / q, c * v / p)


class FiniteSum(TorchProblem):
    """A loss averaged over a data set, for a batch of parameter vectors (one row per run)."""

    def __init__(
        self,
        spec: specs.FiniteSum,
        device: Any,
        dtype: torch.dtype,
        block_elements: int = BLOCK_ELEMENTS,
    ):
        self.kind = spec.kind
        self.X = _tensor(spec.X, dtype, device)
        self.y = _tensor(spec.y, dtype, device)
        self.x0 = _tensor(spec.x0, dtype, device)
        self.l2 = spec.l2
        self.sampling = spec.sampling
        self.dim = spec.dim
        self.n: int = spec.n_samples
        self.n_samples = self.n
        self.width = int(spec.params.get("width", 0))
        self.robust_loss = spec.params.get("loss", "")
        self.scale = float(spec.params.get("scale", 1.0))
        self.block_elements = block_elements
        # Elements of the largest intermediate per (run, sample) pair.
        self._per_sample = self.X.shape[1] * max(self.width, 1)

    # -- per-sample losses -------------------------------------------------------------------

    def _linear_link(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss of the linear predictor value ``z`` and its derivative in ``z``."""
        if self.kind == "least_squares":
            r = z - y
            return 0.5 * r * r, r
        if self.kind == "logistic":
            t = -y * z
            # log(1 + e^t) = max(t, 0) + log1p(e^-|t|); d/dz = -y * sigmoid(t).
            return t.clamp(min=0.0) + torch.log1p(torch.exp(-t.abs())), -y * torch.sigmoid(t)
        return _robust(self.robust_loss, z - y, self.scale)

    def _block(
        self,
        w: torch.Tensor,
        Xs: torch.Tensor,
        ys: torch.Tensor,
        weights: torch.Tensor,
        need_grad: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``sum_j weights_j * loss_j`` and its gradient over one block of samples.

        ``Xs`` is ``(m, d)`` (rows shared by all runs) or ``(R, m, d)`` (rows drawn per run),
        ``ys`` is ``(m,)`` or ``(R, m)`` and ``weights`` is ``(R, m)`` or ``(1, m)``.
        """
        shared = Xs.dim() == 2
        if self.kind != "teacher_student":
            z = w @ Xs.T if shared else torch.einsum("rmd,rd->rm", Xs, w)
            loss, slope = self._linear_link(z, ys)
            total = (weights * loss).sum(dim=1)
            if not need_grad:
                return total, None
            coef = weights * slope
            return total, (coef @ Xs if shared else torch.einsum("rm,rmd->rd", coef, Xs))
        k, d_in = self.width, self.X.shape[1]
        W = w[:, : k * d_in].reshape(-1, k, d_in)
        a = w[:, k * d_in :]
        pre = torch.einsum("md,rkd->rmk", Xs, W) if shared else torch.einsum("rmd,rkd->rmk", Xs, W)
        hidden = torch.tanh(pre)
        r = torch.einsum("rmk,rk->rm", hidden, a) - ys
        total = (weights * 0.5 * r * r).sum(dim=1)
        if not need_grad:
            return total, None
        wr = weights * r
        grad_a = torch.einsum("rm,rmk->rk", wr, hidden)
        back = wr[:, :, None] * a[:, None, :] * (1.0 - hidden * hidden)
        grad_W = (
            torch.einsum("rmk,md->rkd", back, Xs)
            if shared
            else torch.einsum("rmk,rmd->rkd", back, Xs)
        )
        return total, torch.cat([grad_W.reshape(w.shape[0], -1), grad_a], dim=1)

    def weighted(
        self,
        w: torch.Tensor,
        rows: torch.Tensor | None,
        weights: torch.Tensor,
        need_grad: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r""":math:`\sum_j \omega_{rj} \ell_j(w_r)` and its gradient, plus the L2 term.

        Args:
            w: ``(R, dim)`` parameters, one row per run.
            rows: ``(R, m)`` row indices drawn per run, or ``None`` for all ``n`` rows in order.
            weights: ``(R, m)`` (or ``(1, n)`` with ``rows=None``) per-sample weights.
            need_grad: also return the gradient.

        Returns:
            The weighted loss ``(R,)`` and gradient ``(R, dim)`` (``None`` without ``need_grad``),
            each including :math:`\tfrac{\lambda}{2}\|w\|^2` and :math:`\lambda w`.

        """
        n_runs = w.shape[0]
        m = self.n if rows is None else rows.shape[1]
        size = max(1, self.block_elements // max(1, n_runs * self._per_sample))
        total = torch.zeros(n_runs, dtype=w.dtype, device=w.device)
        grad = torch.zeros_like(w) if need_grad else None
        for start in range(0, m, size):
            stop = min(start + size, m)
            if rows is None:
                Xs, ys = self.X[start:stop], self.y[start:stop]
            else:
                block = rows[:, start:stop]
                Xs, ys = self.X[block], self.y[block]
            part, part_grad = self._block(w, Xs, ys, weights[:, start:stop], need_grad)
            total += part
            if grad is not None and part_grad is not None:
                grad += part_grad
        if self.l2:
            squares = (w * w).sum(dim=1)
            # Where |w|^2 overflows, (l2/2 m^2) sum (w/m)^2 with m = max |w_i| (top) may still be
            # finite; both are formed (no device sync to choose) and the finite one is kept.
            top = w.abs().amax(dim=1)
            scaled = 0.5 * self.l2 * top * top * ((w / top[:, None]) ** 2).sum(dim=1)
            penalty = torch.where(torch.isfinite(squares), 0.5 * self.l2 * squares, scaled)
            total = total + penalty
            if grad is not None:
                grad += self.l2 * w
        return total, grad

    def _uniform(self, w: torch.Tensor) -> torch.Tensor:
        n = self.n
        return torch.full((1, n), 1.0 / n, dtype=w.dtype, device=w.device)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Return the full-data loss of each row of ``x``."""
        return self.weighted(x, None, self._uniform(x), need_grad=False)[0]

    def loss_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the full-data loss and gradient of each row of ``x``."""
        loss, grad = self.weighted(x, None, self._uniform(x))
        assert grad is not None
        return loss, grad

    def oracle(self, n_runs: int, generator: torch.Generator) -> Oracle:
        """Minibatch gradients with rows drawn by the problem's ``sampling`` rule."""
        sampler_type = ShuffleSampler if self.sampling == "shuffle" else ReplacementSampler
        sampler = sampler_type(self.n, n_runs, generator, self.X.device)
        return _MinibatchOracle(self, sampler)


class ReplacementSampler:
    """Rows drawn independently and uniformly, with replacement."""

    def __init__(self, n: int, n_runs: int, generator: torch.Generator, device: Any):
        self.n, self.generator, self.device = n, generator, device

    def draw(self, batch: np.ndarray) -> torch.Tensor:
        """``(R, max(batch))`` row indices; row ``r`` uses its first ``batch[r]``."""
        width = int(batch.max())
        return torch.randint(
            0, self.n, (batch.shape[0], width), generator=self.generator, device=self.device
        )

    def select(self, keep: np.ndarray) -> None:
        """Nothing to keep: the draws have no memory."""


class ShuffleSampler:
    """A fresh permutation per epoch, consumed ``b`` rows at a time; a short rest is dropped."""

    def __init__(self, n: int, n_runs: int, generator: torch.Generator, device: Any):
        self.n, self.generator, self.device = n, generator, device
        self.perm = torch.empty((n_runs, n), dtype=torch.long, device=device)
        # Every run starts with an exhausted epoch, so its first draw makes a permutation.
        self.pos = np.full(n_runs, n, dtype=np.int64)

    def draw(self, batch: np.ndarray) -> torch.Tensor:
        """``(R, max(batch))`` row indices; row ``r`` uses its first ``batch[r]`` (``<= n``)."""
        renew = np.flatnonzero(self.pos + batch > self.n)
        if renew.size:
            keys = torch.rand((renew.size, self.n), generator=self.generator, device=self.device)
            rows = torch.as_tensor(renew, device=self.device)
            self.perm[rows] = torch.argsort(keys, dim=1)
            self.pos[renew] = 0
        width = int(batch.max())
        offsets = torch.as_tensor(self.pos, device=self.device)[:, None] + torch.arange(
            width, device=self.device
        )
        self.pos += batch
        return self.perm.gather(1, offsets.clamp(max=self.n - 1))

    def select(self, keep: np.ndarray) -> None:
        """Keep the permutations and positions of the runs at ``keep``."""
        self.perm = self.perm[torch.as_tensor(keep, device=self.device)]
        self.pos = self.pos[keep]


class _MinibatchOracle(Oracle):
    """Mean gradient over drawn rows (padding weighted zero) plus the L2 term."""

    def __init__(self, problem: FiniteSum, sampler: ReplacementSampler | ShuffleSampler):
        self.problem, self.sampler = problem, sampler

    def grad(self, x: torch.Tensor, batch: np.ndarray) -> torch.Tensor:
        """One minibatch gradient per run, the run's batch size given by ``batch``."""
        rows = self.sampler.draw(batch)
        b = _batch_tensor(batch, x)
        width = rows.shape[1]
        cols = torch.arange(width, device=x.device)
        weights = (cols[None, :] < b[:, None]).to(x.dtype) / b[:, None]
        n = self.problem.n
        if width * DENSE_RATIO >= n:
            dense = torch.zeros((x.shape[0], n), dtype=x.dtype, device=x.device)
            dense.scatter_add_(1, rows, weights)
            grad = self.problem.weighted(x, None, dense)[1]
        else:
            grad = self.problem.weighted(x, rows, weights)[1]
        assert grad is not None
        return grad

    def select(self, keep: np.ndarray) -> None:
        """Keep the sampler state of the runs at ``keep``."""
        self.sampler.select(keep)


def build(spec: specs.Problem, device: Any, dtype: torch.dtype) -> TorchProblem:
    """Return the torch version of a problem spec from :mod:`critbatch.problems`.

    Args:
        spec: a spec built by :mod:`critbatch.problems` (``nqm``, ``double_well`` or a finite sum).
        device: a torch device (``"cpu"``, ``"cuda"``, ...).
        dtype: ``torch.float64`` or ``torch.float32``.

    Returns:
        A :class:`TorchProblem` holding the spec's arrays on ``device``.

    Example:
        >>> import torch
        >>> import critbatch as cb
        >>> p = build(cb.problems.least_squares([[1.0], [3.0]], [1.0, 3.0], x0=0.0), "cpu",
        ...           torch.float64)
        >>> p.loss(torch.tensor([[0.0], [1.0]], dtype=torch.float64)).tolist()
        [2.5, 0.0]

    """
    if isinstance(spec, specs.Nqm):
        return Nqm(spec, device, dtype)
    if isinstance(spec, specs.DoubleWell):
        return DoubleWell(spec, device, dtype)
    if isinstance(spec, specs.FiniteSum):
        if spec.kind not in ("least_squares", "logistic", "robust", "teacher_student"):
            raise ValueError(f"problem.kind {spec.kind!r} has no torch implementation")
        return FiniteSum(spec, device, dtype)
    raise TypeError(f"problem must be a critbatch problem spec, got {type(spec).__name__}")
