"""torch CPU peers (float32 or float64): all runs advance together on preallocated tensors.

Each ``prepare_*`` function allocates every buffer once and returns a callable that runs the whole
sweep under ``torch.no_grad()`` from a fixed ``torch.Generator`` seed, with in-place updates and
``out=`` random draws, and returns the final loss of every run as a NumPy float64 array.
``threads`` (if given) is the intra-op thread count for the duration of each call; the previous
setting is restored afterwards, so a peer never changes the process for other code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from benches.peers import LsqWorkload, NqmWorkload

__all__ = ["DTYPES", "prepare_lsq", "prepare_nqm"]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _check_threads(threads: int | None) -> None:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads (``None``: leave torch's setting alone)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prepare_nqm(
    w: NqmWorkload, *, dtype: str = "float32", threads: int | None = None
) -> Callable[[], np.ndarray]:
    """SGD on the NQM in torch: :math:`x \\leftarrow (1 - \\eta h) x - \\eta \\sqrt{c/b} z`.

    ``z`` is drawn by ``torch.randn(..., generator=g, out=z)``; the update is ``x.mul_`` then
    ``x.addcmul_`` (two in-place passes).

    Example:
        >>> from benches.peers import NqmWorkload
        >>> run = prepare_nqm(NqmWorkload(dim=3, runs=2, steps=5), dtype="float64", threads=1)
        >>> losses = run()
        >>> losses.shape, bool(np.array_equal(losses, run()))
        ((2,), True)
    """
    dt = _dtype(dtype)
    _check_threads(threads)
    h_np, c_np = w.spectrum()
    h = torch.as_tensor(h_np, dtype=dt)
    contraction = torch.as_tensor(1.0 - w.lr * h_np, dtype=dt)
    minus_noise_scale = torch.as_tensor(-w.lr * np.sqrt(c_np / w.b), dtype=dt)
    x = torch.empty((w.runs, w.dim), dtype=dt)
    z = torch.empty((w.runs, w.dim), dtype=dt)
    generator = torch.Generator()

    def run() -> np.ndarray:
        with _threads(threads), torch.no_grad():
            generator.manual_seed(w.seed)
            x.fill_(1.0)
            for _ in range(w.steps):
                torch.randn((w.runs, w.dim), generator=generator, dtype=dt, out=z)
                x.mul_(contraction).addcmul_(z, minus_noise_scale)
            losses = 0.5 * (x * x) @ h
        return losses.numpy().astype(np.float64)

    return run


def prepare_lsq(
    w: LsqWorkload, *, dtype: str = "float32", threads: int | None = None
) -> Callable[[], np.ndarray]:
    """Minibatch SGD with replacement on least squares in torch, from ``w = 0``.

    Each step draws ``idx`` with ``torch.randint(..., out=idx)``, gathers ``X[idx]`` with
    ``index_select(..., out=)`` and applies
    :math:`w \\leftarrow w - \\tfrac{\\eta}{b} X_B^\\top (X_B w - y_B)` with two
    ``bmm(..., out=)`` calls on row vectors ``(runs, 1, dim)`` (with column vectors torch's
    batched matrix-vector product measured about ten times slower); returns
    :math:`\\tfrac{1}{2n}\\|X w - y\\|^2` per run.

    Example:
        >>> from benches.peers import LsqWorkload
        >>> losses = prepare_lsq(LsqWorkload(n=16, dim=2, runs=3, steps=4, b=2), threads=1)()
        >>> losses.shape
        (3,)
    """
    dt = _dtype(dtype)
    _check_threads(threads)
    X_np, y_np = w.data()
    X = torch.as_tensor(X_np, dtype=dt)
    y = torch.as_tensor(y_np, dtype=dt)
    runs, b, dim = w.runs, w.b, w.dim
    scale = w.lr / w.b
    weights = torch.empty((runs, 1, dim), dtype=dt)
    idx = torch.empty((runs, b), dtype=torch.int64)
    xb = torch.empty((runs, b, dim), dtype=dt)
    yb = torch.empty((runs, 1, b), dtype=dt)
    resid = torch.empty((runs, 1, b), dtype=dt)
    grad = torch.empty((runs, 1, dim), dtype=dt)
    flat_idx, flat_xb, flat_yb = idx.view(-1), xb.view(runs * b, dim), yb.view(-1)
    xb_t = xb.transpose(1, 2)
    generator = torch.Generator()

    def run() -> np.ndarray:
        with _threads(threads), torch.no_grad():
            generator.manual_seed(w.seed)
            weights.zero_()
            for _ in range(w.steps):
                torch.randint(w.n, (runs, b), generator=generator, out=idx)
                torch.index_select(X, 0, flat_idx, out=flat_xb)
                torch.index_select(y, 0, flat_idx, out=flat_yb)
                torch.bmm(weights, xb_t, out=resid)
                resid.sub_(yb)
                torch.bmm(resid, xb, out=grad)
                weights.sub_(grad, alpha=scale)
            r = weights[:, 0, :] @ X.T - y
            losses = 0.5 * (r * r).mean(dim=1)
        return losses.numpy().astype(np.float64)

    return run
