"""Benchmark workloads shared by every peer (NumPy, JAX, torch) and by the Rust core's cases.

Two workloads, each a sweep of ``runs`` independent runs that advance together for exactly
``steps`` steps of minibatch SGD (no early stop, so the work is fixed):

* ``NqmWorkload``: the noisy quadratic model with :math:`h_i = i^{-1}`, :math:`c = h`,
  :math:`x_0 = 1`, stochastic gradient :math:`h \\odot x + \\sqrt{c / b}\\, z` with
  :math:`z \\sim N(0, I)`; the work is ``runs * steps * dim`` coordinate-steps.
* ``LsqWorkload``: least squares on ``n`` samples in ``dim`` dimensions, minibatches of ``b``
  indices drawn with replacement, gradient :math:`X_B^\\top (X_B w - y_B) / b`, start :math:`w = 0`.

The NumPy, JAX and torch peers live in ``numpy_peers``, ``jax_peers`` and ``torch_peers``; the
Rust core runs the same workloads through its public API (``prepare_rust_nqm``,
``prepare_rust_lsq``). Every peer returns the final loss of each run (a ``(runs,)`` float64
array), so the work cannot be optimized away and the result can be checked against the exact
expectation (``benches/conftest.py``).
Sizes are tiny by default (one smoke run per case under ``make test``) and large when the
environment variable ``CRITBATCH_BENCH`` is ``full``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LsqWorkload",
    "NqmWorkload",
    "full_size",
    "lsq_data",
    "lsq_workload",
    "nqm_spectrum",
    "nqm_workload",
    "prepare_rust_lsq",
    "prepare_rust_nqm",
]


def full_size() -> bool:
    """Whether ``CRITBATCH_BENCH=full`` asks for the large sizes (anything else: tiny sizes)."""
    value = os.environ.get("CRITBATCH_BENCH", "")
    if value not in ("", "full", "tiny"):
        raise ValueError(f"CRITBATCH_BENCH must be 'full', 'tiny' or unset, got {value!r}")
    return value == "full"


def nqm_spectrum(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Curvatures :math:`h_i = 1/i` (``i = 1..dim``) and per-sample noise variances :math:`c = h`.

    Example:
        >>> h, c = nqm_spectrum(3)
        >>> h.tolist(), bool((c == h).all())
        ([1.0, 0.5, 0.3333333333333333], True)
    """
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    h = 1.0 / np.arange(1, dim + 1, dtype=np.float64)
    return h, h.copy()


def lsq_data(
    n: int, dim: int, *, noise_std: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares data: rows :math:`x_j \\sim N(0, I/d)`, :math:`y = X w^* + \\sigma \\epsilon`.

    :math:`w^* \\sim N(0, I)` and :math:`\\epsilon \\sim N(0, 1)`, all drawn from
    ``np.random.default_rng(seed)`` in the order X, w*, noise.

    Example:
        >>> X, y = lsq_data(8, 2)
        >>> X.shape, y.shape, X.dtype
        ((8, 2), (8,), dtype('float64'))
    """
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be positive integers, got n={n!r}, dim={dim!r}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim)) / math.sqrt(dim)
    w_star = rng.standard_normal(dim)
    y = X @ w_star + noise_std * rng.standard_normal(n)
    return X, y


@dataclass(frozen=True)
class NqmWorkload:
    """NQM sweep: ``runs`` runs of ``steps`` SGD steps at batch size ``b``, learning rate ``lr``."""

    dim: int
    runs: int
    steps: int
    b: int = 4
    lr: float = 0.5
    seed: int = 0

    @property
    def work(self) -> int:
        """Coordinate-steps in one sweep: ``runs * steps * dim``."""
        return self.runs * self.steps * self.dim

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """``(h, c)`` of this workload (see :func:`nqm_spectrum`)."""
        return nqm_spectrum(self.dim)


@dataclass(frozen=True)
class LsqWorkload:
    """Least-squares sweep: ``runs`` runs of ``steps`` SGD steps, drawing from ``n`` rows."""

    n: int
    dim: int
    runs: int
    steps: int
    b: int
    lr: float = 1.0
    seed: int = 0

    @property
    def run_steps(self) -> int:
        """Run-steps in one sweep: ``runs * steps``."""
        return self.runs * self.steps

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of this workload (see :func:`lsq_data`, always NumPy seed 0)."""
        return lsq_data(self.n, self.dim)


def nqm_workload(full: bool | None = None) -> NqmWorkload:
    """The NQM sizes: ``dim=1000, runs=64, steps=1000`` when full, else ``64, 8, 20``.

    Both use ``b=4`` and ``lr=0.5``.
    """
    full = full_size() if full is None else full
    if full:
        return NqmWorkload(dim=1000, runs=64, steps=1000)
    return NqmWorkload(dim=64, runs=8, steps=20)


def lsq_workload(full: bool | None = None) -> LsqWorkload:
    """The least-squares sizes: ``n=4096, dim=256, b=64, runs=64, steps=300`` when full, else tiny.

    The tiny size (``n=256, dim=16, b=8, runs=32, steps=100``) has runs enough for the smoke check
    to tell a 4x noise variance from the right one.
    """
    full = full_size() if full is None else full
    if full:
        return LsqWorkload(n=4096, dim=256, runs=64, steps=300, b=64)
    return LsqWorkload(n=256, dim=16, runs=32, steps=100, b=8)


def prepare_rust_nqm(
    w: NqmWorkload, *, threads: int = 1, dtype: str = "float64"
) -> Callable[[], np.ndarray]:
    """The NQM workload through the public API of the Rust core (``critbatch.sweep``).

    The target has no criterion and ``check_every = max_steps = steps``, so every run takes
    exactly ``w.steps`` steps; ``dtype`` is the core's float type. Needs the compiled
    ``critbatch._core``.
    """
    import critbatch as cb

    h, c = w.spectrum()
    problem = cb.problems.nqm(h, c, 1.0)
    return _rust_runner(cb, problem, w.b, w.lr, w.runs, w.steps, w.seed, threads, dtype)


def prepare_rust_lsq(
    w: LsqWorkload, *, threads: int = 1, dtype: str = "float64"
) -> Callable[[], np.ndarray]:
    """The least-squares workload through ``critbatch.sweep`` (with replacement, from ``w = 0``)."""
    import critbatch as cb

    X, y = w.data()
    problem = cb.problems.least_squares(X, y, sampling="with_replacement")
    return _rust_runner(cb, problem, w.b, w.lr, w.runs, w.steps, w.seed, threads, dtype)


def _rust_runner(
    cb: Any,
    problem: Any,
    b: int,
    lr: float,
    runs: int,
    steps: int,
    seed: int,
    threads: int,
    dtype: str,
) -> Callable[[], np.ndarray]:
    target = cb.targets.target(max_steps=steps, check_every=steps)

    def run() -> np.ndarray:
        res = cb.sweep(
            problem, "sgd", [b], [lr], runs, target, seed=seed, threads=threads, dtype=dtype
        )
        if not np.all(res["steps"] == steps):
            raise RuntimeError(f"every run must take exactly {steps} steps, got {res['steps']}")
        return np.asarray(res["final_loss"], dtype=np.float64)

    return run
