"""Benchmark harness: collection of ``bench_*.py``, the exact oracles, and the checked cases.

The oracles compute the exact mean (and for the NQM the exact variance) of the final loss with
NumPy, from the model's moment recursions alone; they never call a peer. Every benchmark case
checks its result against them, so a peer that computes the wrong thing fails its smoke run.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pytest

from benches.peers import LsqWorkload, NqmWorkload, lsq_workload, nqm_workload

# Without torch or jax (optional extras) their peer modules cannot even be imported for doctests.
collect_ignore = [
    f"peers/{module}_peers.py"
    for module in ("torch", "jax")
    if importlib.util.find_spec(module) is None
]

# Number of threads given to the Rust core and to torch in the pytest-benchmark cases (JAX's
# thread pool is fixed at import; benches/report.py controls it through XLA_FLAGS).
BENCH_THREADS = 1

# A peer passes when its mean final loss lies within this many standard errors of the exact
# expectation (the exact standard error for the NQM, the sample one for least squares): a correct
# peer's mean lies that far out only by a very rare chance, and every seed here is fixed.
Z_TOLERANCE = 6.0


# ---------------------------------------------------------------------------------------------
# Oracles


def nqm_loss_moments(
    h: np.ndarray, c: np.ndarray, lr: float, b: int, steps: int, x0: float = 1.0
) -> tuple[float, float]:
    """Exact mean and variance of the NQM loss :math:`\\tfrac12 \\sum_i h_i x_i^2` after ``steps``.

    Each coordinate follows :math:`x' = a x - \\eta \\sqrt{c/b}\\, z` with :math:`a = 1 - \\eta h`,
    so :math:`x_K \\sim N(\\mu, s^2)` with :math:`\\mu = a^K x_0` and
    :math:`s^2 = \\eta^2 (c/b) \\sum_{k<K} a^{2k}`; then
    :math:`E\\, x^2 = \\mu^2 + s^2` and :math:`\\mathrm{Var}\\, x^2 = 2 s^4 + 4 \\mu^2 s^2`.
    """
    a = 1.0 - lr * h
    a2 = a * a
    mu = a**steps * x0
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = np.where(np.isclose(a2, 1.0), float(steps), (1.0 - a2**steps) / (1.0 - a2))
    s2 = lr * lr * c / b * geometric
    mean = 0.5 * float(np.sum(h * (mu * mu + s2)))
    var = 0.25 * float(np.sum(h * h * (2.0 * s2 * s2 + 4.0 * mu * mu * s2)))
    return mean, var


def lsq_expected_loss(X: np.ndarray, y: np.ndarray, lr: float, b: int, steps: int) -> float:
    """Exact expected least-squares loss after ``steps`` SGD steps with replacement from ``w = 0``.

    With :math:`e = w - w_{LS}`, residuals :math:`r = y - X w_{LS}` and :math:`H = X^\\top X / n`,
    the mean :math:`\\mu = E e` and second moment :math:`M = E e e^\\top` follow
    :math:`\\mu' = (I - \\eta H)\\mu` and
    :math:`M' = M - \\eta (H M + M H) + \\eta^2 [(1 - 1/b) H M H + S / b]` with
    :math:`S = \\tfrac1n \\sum_j q_j x_j x_j^\\top`,
    :math:`q_j = x_j^\\top M x_j - 2 r_j x_j^\\top \\mu + r_j^2`
    (the per-sample gradients :math:`x_j (x_j^\\top e - r_j)` are drawn i.i.d. uniformly).
    The expected loss is :math:`\\tfrac{1}{2n}\\|r\\|^2 + \\tfrac12 \\mathrm{tr}(H M)`.
    """
    n = X.shape[0]
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    r = y - X @ w_ls
    H = X.T @ X / n
    mu = -w_ls
    M = np.outer(w_ls, w_ls)
    for _ in range(steps):
        q = np.einsum("jk,kl,jl->j", X, M, X, optimize=True) - 2.0 * r * (X @ mu) + r * r
        HM = H @ M
        second = (1.0 - 1.0 / b) * HM @ H + (X.T * q) @ X / (b * n)
        M = M - lr * (HM + HM.T) + lr * lr * second
        mu = mu - lr * (H @ mu)
    return 0.5 * float(r @ r) / n + 0.5 * float(np.sum(H * M))


# ---------------------------------------------------------------------------------------------
# Cases: a workload, its exact expectation, and the check every peer's result must pass.


@dataclass(frozen=True)
class Case:
    """A workload with the exact mean of its final loss (and the exact variance, when known)."""

    workload: NqmWorkload | LsqWorkload
    mean: float
    var: float | None = None

    def z_score(self, losses: np.ndarray) -> float:
        """Standardized distance of the mean of ``losses`` (one per run) from the exact mean.

        Uses the exact variance when known, otherwise the sample variance of ``losses``.
        """
        losses = np.asarray(losses, dtype=np.float64)
        runs = self.workload.runs
        if losses.shape != (runs,):
            raise AssertionError(f"expected {runs} final losses, got shape {losses.shape}")
        if not np.all(np.isfinite(losses)):
            raise AssertionError(f"non-finite final losses: {losses}")
        var = self.var if self.var is not None else float(np.var(losses, ddof=1))
        return (float(losses.mean()) - self.mean) / math.sqrt(var / runs)

    def check(self, losses: np.ndarray) -> None:
        """Fail unless the mean final loss is within ``Z_TOLERANCE`` standard errors of exact."""
        z = self.z_score(losses)
        assert abs(z) < Z_TOLERANCE, (
            f"mean final loss {np.mean(losses):.6g} is {z:+.1f} standard errors from the exact "
            f"expectation {self.mean:.6g}"
        )


def nqm_case(workload: NqmWorkload) -> Case:
    """The NQM workload with the exact mean and variance of its final loss."""
    h, c = workload.spectrum()
    mean, var = nqm_loss_moments(h, c, workload.lr, workload.b, workload.steps)
    return Case(workload, mean, var)


def lsq_case(workload: LsqWorkload) -> Case:
    """The least-squares workload with the exact mean of its final loss."""
    X, y = workload.data()
    return Case(workload, lsq_expected_loss(X, y, workload.lr, workload.b, workload.steps))


def bench(benchmark, case: Case, run: Callable[[], np.ndarray]) -> None:
    """Time ``run`` (it returns one final loss per run) and check its result against ``case``."""
    case.check(benchmark(run))


def jax_peers() -> ModuleType:
    """The JAX peer module, skipping the calling test when JAX (an optional extra) is missing."""
    pytest.importorskip("jax")
    from benches.peers import jax_peers as peers

    return peers


def torch_peers() -> ModuleType:
    """The torch peer module, skipping the calling test when torch (an optional extra) is absent."""
    pytest.importorskip("torch")
    from benches.peers import torch_peers as peers

    return peers


@pytest.fixture(scope="session")
def nqm() -> Case:
    """The NQM case at the size ``CRITBATCH_BENCH`` asks for."""
    return nqm_case(nqm_workload())


@pytest.fixture(scope="session")
def lsq() -> Case:
    """The least-squares case at the size ``CRITBATCH_BENCH`` asks for."""
    return lsq_case(lsq_workload())
