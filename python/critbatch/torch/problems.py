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
  :math:`N(0, \sigma^2/b)` per coordinate (Dai & Zhu 2018, arXiv:1812.00542).
* finite sums: :math:`f(w) = \frac1n \sum_j \ell_j(w) + \tfrac{\lambda}{2}\|w\|^2`, the
  minibatch gradient the mean of the per-sample gradients of the drawn rows plus
  :math:`\lambda w`; ``least_squares`` :math:`\ell = \tfrac12 r^2`, ``logistic``
  :math:`\ell = \log(1 + e^{-y z})`, ``robust`` (Geman-McClure
  :math:`\tfrac{c^2}{2} r^2/(c^2 + r^2)` or Cauchy :math:`\tfrac{c^2}{2}\log(1 + r^2/c^2)`),
  with :math:`z = x_j^\top w`, :math:`r = z - y_j`, and ``teacher_student``
  :math:`\ell = \tfrac12(\sum_k a_k \tanh(w_k^\top x_j) - y_j)^2` with parameters ``W``
  (``width x d_in``, row-major) then ``a``.

Random numbers come from the chunk's :class:`critbatch.torch.rng.Streams`, a pure function of
each run's (sweep seed, run index): the noise of step ``t``, the indices of step ``t`` and the
permutation of epoch ``e`` are the same whatever chunk the run shares. (The arithmetic is the
same per run too; matrix products may round differently with the number of runs in a call,
which is why tables agree across chunkings to rounding, and bitwise for the streamed problems.)

A minibatch is a set of row indices per run; a run with a smaller batch than the widest one in
the chunk gets zero weight on the padding. When the widest batch covers a quarter of the data
set or more, the drawn rows are turned into per-row weights over all ``n`` rows instead (a
scatter-add of counts), which costs ``n`` instead of ``b`` per run and needs no gather.
Sums over samples are taken in blocks so that no intermediate exceeds ``block_elements``, the
``"intermediate"`` budget of :mod:`critbatch.torch.memory` (a fixed cap on the CPU, a share of
the free memory on a GPU).

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
from critbatch.torch import memory
from critbatch.torch.rng import INDICES, NOISE, PERMUTATION, Streams

#: Largest number of elements one intermediate (runs x samples x features) may hold on the CPU;
#: :func:`build` sizes it from the free memory on a GPU (:mod:`critbatch.torch.memory`).
BLOCK_ELEMENTS = memory.CPU_ELEMENTS["intermediate"]
# Use per-row weights over the whole data set once the widest batch reaches n / DENSE_RATIO.
DENSE_RATIO = 4
#: Stream stride of one step's minibatch indices: the most a step draws
#: (:data:`critbatch.problems.MAX_DRAWN_BATCH`).
INDEX_STRIDE = specs.MAX_DRAWN_BATCH


class Batch:
    """The batch sizes of one step: per run on the host, and as a device tensor when asked.

    The runner keeps one while the sizes do not change (a constant schedule), so that no copy
    to the device is made per step.
    """

    def __init__(self, sizes: np.ndarray, device: Any) -> None:
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.device = torch.device(device)
        self.width = int(self.sizes.max()) if self.sizes.size else 0
        self._tensors: dict[torch.dtype, torch.Tensor] = {}
        self._groups: list[tuple[int, torch.Tensor | None]] | None = None

    def tensor(self, dtype: torch.dtype) -> torch.Tensor:
        """The sizes as an ``(R,)`` tensor of ``dtype`` on the device (made once)."""
        if dtype not in self._tensors:
            self._tensors[dtype] = torch.as_tensor(self.sizes, dtype=dtype).to(self.device)
        return self._tensors[dtype]

    def groups(self) -> list[tuple[int, torch.Tensor | None]]:
        """``(b, positions)`` per distinct size (``positions`` is ``None`` when all share it)."""
        if self._groups is None:
            sizes = np.unique(self.sizes)
            if sizes.size == 1:
                self._groups = [(int(sizes[0]), None)]
            else:
                self._groups = [
                    (int(b), torch.as_tensor(np.flatnonzero(self.sizes == b), device=self.device))
                    for b in sizes
                ]
        return self._groups


class Oracle:
    """The runs of one chunk on one problem: stochastic gradients and their per-run state.

    The runner asks it for a step's gradients (:meth:`grad`), for the values a check reads
    (:meth:`check`, :meth:`loss`) and for the extra record columns of runs that stop
    (:meth:`final`); :meth:`select` drops the runs that stopped.
    """

    problem: TorchProblem

    def grad(self, x: torch.Tensor, batch: Batch, t: int) -> torch.Tensor:
        """Stochastic gradients of ``x`` (``R x dim``) at step ``t`` with per-run ``batch``."""
        raise NotImplementedError

    def select(self, keep: np.ndarray) -> None:
        """Keep only the runs at positions ``keep`` (the others have stopped)."""

    def check(self, x: torch.Tensor, accuracy: bool, grad_norm: bool) -> dict[str, torch.Tensor]:
        """The exact loss and gradient norm of each run (the synthetic problems' check)."""
        loss, grad = self.problem.loss_grad(x)
        return {"loss": loss, "grad_norm": row_norms(grad)}

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The exact loss of each run (for trajectories)."""
        return self.problem.loss(x)

    def final(
        self, x: torch.Tensor, rows: np.ndarray, have: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Extra record columns of the runs at ``rows`` that stop (none for synthetic problems)."""
        return {}


class TorchProblem:
    """A problem on one device and dtype: exact loss and gradient of a batch of iterates."""

    dim: int
    n_samples: int | None
    x0: torch.Tensor
    #: A network: its checks read only what the target needs, and its iterate has no
    #: distinguished coordinate (``final_x0`` is NaN).
    is_network = False

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact loss of each row of ``x``."""
        raise NotImplementedError

    def loss_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the exact loss and gradient of each row of ``x``."""
        raise NotImplementedError

    def exact_grad(self, x: torch.Tensor) -> torch.Tensor:
        """Return the exact gradient of each row of ``x``."""
        return self.loss_grad(x)[1]

    def initial(self, replicates: np.ndarray, sweep_seed: int) -> torch.Tensor:
        """The iterates at the start, ``(R, dim)``: ``x0`` for every run of a synthetic problem."""
        return self.x0[None, :].repeat(len(replicates), 1)

    def oracle(self, streams: Streams) -> Oracle:
        """Return the stochastic-gradient oracle of the runs whose streams are ``streams``."""
        raise NotImplementedError


def _tensor(array: np.ndarray, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """Copy a (read-only) spec array to a device."""
    return torch.from_numpy(np.array(array, dtype=np.float64)).to(device=device, dtype=dtype)


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
    norms: torch.Tensor = torch.linalg.vector_norm(g, dim=1)  # linalg is untyped
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

    def __init__(self, problem: TorchProblem, scale: torch.Tensor, streams: Streams):
        self.problem = problem
        self.scale = scale
        self.streams = streams

    def grad(self, x: torch.Tensor, batch: Batch, t: int) -> torch.Tensor:
        """Exact gradient plus ``N(0, scale^2 / b)`` noise, independent across runs."""
        noise = self.streams.normal(NOISE, t, x.shape[1], x.dtype)
        std = self.scale[None, :] / batch.tensor(x.dtype).sqrt()[:, None]
        return self.problem.exact_grad(x) + std * noise

    def select(self, keep: np.ndarray) -> None:
        """Keep the streams of the runs at ``keep``."""
        self.streams.select(keep)


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

    def oracle(self, streams: Streams) -> Oracle:
        r"""Noise :math:`N(0, \mathrm{diag}(c)/b)` added to the exact gradient."""
        return _GaussianNoiseOracle(self, self.c.sqrt(), streams)


class DoubleWell(TorchProblem):
    """Warped double wells with a confining wall (Dai & Zhu 2018) on a device."""

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

    def oracle(self, streams: Streams) -> Oracle:
        r"""Noise :math:`N(0, \sigma^2/b)` per coordinate added to the exact gradient."""
        return _GaussianNoiseOracle(self, self.noise_std, streams)


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

    def oracle(self, streams: Streams) -> Oracle:
        """Minibatch gradients with rows drawn by the problem's ``sampling`` rule."""
        return _MinibatchOracle(self, make_sampler(self.sampling, self.n, streams))


def make_sampler(sampling: str, n: int, streams: Streams) -> ReplacementSampler | ShuffleSampler:
    """The index sampler of ``sampling`` (``"shuffle"``, ``"with_replacement"``) over ``n`` rows."""
    if sampling == "shuffle":
        return ShuffleSampler(n, streams)
    return ReplacementSampler(n, streams)


class ReplacementSampler:
    """Rows drawn independently and uniformly, with replacement.

    Step ``t`` of a run reads positions ``t * INDEX_STRIDE + j`` of its index stream.
    """

    def __init__(self, n: int, streams: Streams):
        self.n, self.streams = n, streams

    def advance(self, batch: Batch) -> None:
        """Nothing to prepare: the draws have no memory."""

    def draw(self, t: int, width: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(R, width)`` row indices of step ``t`` (of the runs at ``rows``, or of all)."""
        streams = self.streams if rows is None else self.streams.subset(rows)
        return streams.integers(INDICES, t, INDEX_STRIDE, width, self.n)

    def finish(self, batch: Batch) -> None:
        """Nothing to record."""

    def select(self, keep: np.ndarray) -> None:
        """Keep the streams of the runs at ``keep``."""
        self.streams.select(keep)


class ShuffleSampler:
    """A fresh permutation per epoch, consumed ``b`` rows at a time; a short rest is dropped.

    A run's permutation of its epoch ``e`` (counted from 0) is a function of its stream and ``e``
    only. Positions are kept on the host (which decides when an epoch ends, without a copy from
    the device) and on the device (which reads the permutation).
    """

    def __init__(self, n: int, streams: Streams):
        self.n, self.streams = n, streams
        n_runs, device = len(streams), streams.device
        self.device = device
        self.perm = torch.empty((n_runs, n), dtype=torch.long, device=device)
        # Every run starts with an exhausted epoch, so its first draw makes a permutation.
        self.pos = np.full(n_runs, n, dtype=np.int64)
        self.pos_dev = torch.full((n_runs,), n, dtype=torch.long, device=device)
        self.epoch = np.zeros(n_runs, dtype=np.int64)  # permutations made so far

    def advance(self, batch: Batch) -> None:
        """Start a new epoch for every run whose next ``batch`` rows would pass the end."""
        renew = np.flatnonzero(self.pos + batch.sizes > self.n)
        if renew.size:
            rows = torch.as_tensor(renew, device=self.device)
            counters = torch.as_tensor(self.epoch[renew], device=self.device)
            self.perm[rows] = self.streams.subset(rows).permutations(PERMUTATION, counters, self.n)
            self.epoch[renew] += 1
            self.pos[renew] = 0
            self.pos_dev[rows] = 0

    def draw(self, t: int, width: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``(R, width)`` row indices at each run's position (of the runs at ``rows``, or all)."""
        pos = self.pos_dev if rows is None else self.pos_dev[rows]
        offsets = (pos[:, None] + torch.arange(width, device=self.device)).clamp(max=self.n - 1)
        if rows is None:
            return self.perm.gather(1, offsets)
        return self.perm[rows[:, None], offsets]  # only the drawn entries, not whole rows

    def finish(self, batch: Batch) -> None:
        """Move every run's position past the rows it drew."""
        self.pos += batch.sizes
        self.pos_dev += batch.tensor(torch.long)

    def select(self, keep: np.ndarray) -> None:
        """Keep the permutations, positions and streams of the runs at ``keep``."""
        index = torch.as_tensor(keep, device=self.device)
        self.perm = self.perm[index]
        self.pos_dev = self.pos_dev[index]
        self.pos, self.epoch = self.pos[keep], self.epoch[keep]
        self.streams.select(keep)


class _MinibatchOracle(Oracle):
    """Mean gradient over drawn rows (padding weighted zero) plus the L2 term."""

    problem: FiniteSum

    def __init__(self, problem: FiniteSum, sampler: ReplacementSampler | ShuffleSampler):
        self.problem, self.sampler = problem, sampler

    def grad(self, x: torch.Tensor, batch: Batch, t: int) -> torch.Tensor:
        """One minibatch gradient per run, the run's batch size given by ``batch``."""
        self.sampler.advance(batch)
        rows = self.sampler.draw(t, batch.width)
        self.sampler.finish(batch)
        b = batch.tensor(x.dtype)
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


def build(
    spec: specs.Problem | specs.Network, device: Any, dtype: torch.dtype, precision: str = "highest"
) -> TorchProblem:
    """Return the torch version of a problem spec from :mod:`critbatch.problems`.

    Args:
        spec: a spec built by :mod:`critbatch.problems` (``nqm``, ``double_well``, a finite sum
            or a network).
        device: a torch device (``"cpu"``, ``"cuda"``, ...).
        dtype: ``torch.float64`` or ``torch.float32``.
        precision: a network's matrix-product precision (``"bf16"``: autocast).

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
    if isinstance(spec, specs.Network):
        from critbatch.torch.network import NetworkProblem

        return NetworkProblem(spec, device, dtype, precision)
    if isinstance(spec, specs.FiniteSum):
        if spec.kind not in ("least_squares", "logistic", "robust", "teacher_student"):
            raise ValueError(f"problem.kind {spec.kind!r} has no torch implementation")
        problem = FiniteSum(spec, device, dtype)  # its data on the device first, then measure
        problem.block_elements = memory.elements(device, "intermediate", dtype)
        return problem
    raise TypeError(f"problem must be a critbatch problem spec, got {type(spec).__name__}")
