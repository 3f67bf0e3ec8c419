"""Least-squares benchmark: the Rust core against NumPy, JAX and torch (group ``least_squares``).

Each case runs the same sweep (``benches.peers.lsq_workload``: SGD with replacement from
``w = 0``) and checks the mean final loss against its exact expectation
(``benches.conftest.lsq_expected_loss``).
With the default ``--benchmark-disable`` each case runs once, at tiny size, as a smoke test.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from benches.conftest import (
    BENCH_THREADS,
    bench,
    jax_peers,
    lsq_case,
    lsq_expected_loss,
    torch_peers,
)
from benches.peers import lsq_workload, numpy_peers, prepare_rust_lsq


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_rust(benchmark, lsq):
    pytest.importorskip("critbatch._core")
    bench(benchmark, lsq, prepare_rust_lsq(lsq.workload, threads=BENCH_THREADS))


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_rust_f32(benchmark, lsq):
    pytest.importorskip("critbatch._core")
    run = prepare_rust_lsq(lsq.workload, threads=BENCH_THREADS, dtype="float32")
    bench(benchmark, lsq, run)


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_numpy(benchmark, lsq):
    bench(benchmark, lsq, numpy_peers.prepare_lsq(lsq.workload))


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_jax_f32(benchmark, lsq):
    bench(benchmark, lsq, jax_peers().prepare_lsq(lsq.workload, dtype="float32"))


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_jax_f64(benchmark, lsq):
    bench(benchmark, lsq, jax_peers().prepare_lsq(lsq.workload, dtype="float64"))


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_torch_f32(benchmark, lsq):
    peers = torch_peers()
    bench(benchmark, lsq, peers.prepare_lsq(lsq.workload, dtype="float32", threads=BENCH_THREADS))


@pytest.mark.benchmark(group="least_squares")
def test_least_squares_torch_f64(benchmark, lsq):
    peers = torch_peers()
    bench(benchmark, lsq, peers.prepare_lsq(lsq.workload, dtype="float64", threads=BENCH_THREADS))


# ---------------------------------------------------------------------------------------------
# The oracle itself, against exact enumeration, and proof that the check can fail.


def _expected_loss_by_enumeration(X, y, lr, b, steps):
    """Average the final loss over all n^(b*steps) equally likely index sequences."""
    n, d = X.shape
    total = 0.0
    for seq in itertools.product(range(n), repeat=b * steps):
        w = np.zeros(d)
        for k in range(steps):
            idx = list(seq[k * b : (k + 1) * b])
            xb, yb = X[idx], y[idx]
            w = w - lr / b * xb.T @ (xb @ w - yb)
        total += 0.5 * np.mean((X @ w - y) ** 2)
    return total / n ** (b * steps)


ENUMERATION_CASES = [
    pytest.param(3, 2, 0.7, 1, 3, id="n3 d2 b1 three steps"),
    pytest.param(3, 2, 0.7, 2, 2, id="n3 d2 b2 two steps"),
    pytest.param(4, 3, 1.3, 2, 2, id="n4 d3 b2 large lr"),
    pytest.param(5, 1, 0.5, 3, 1, id="n5 d1 b3 one step"),
]


@pytest.mark.parametrize(("n", "d", "lr", "b", "steps"), ENUMERATION_CASES)
def test_lsq_oracle_matches_enumeration(n, d, lr, b, steps):
    rng = np.random.default_rng(7)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    want = _expected_loss_by_enumeration(X, y, lr, b, steps)
    # Moment recursion vs. exact average over every path: equal up to rounding.
    np.testing.assert_allclose(lsq_expected_loss(X, y, lr, b, steps), want, rtol=1e-9)


def test_lsq_check_rejects_quadrupled_noise():
    # A peer that draws 4x the gradient-noise variance (b/4) must fail where the right one passes.
    case = lsq_case(lsq_workload(full=False))
    case.check(numpy_peers.prepare_lsq(case.workload)())
    wrong = numpy_peers.prepare_lsq(dataclasses.replace(case.workload, b=case.workload.b // 4))()
    with pytest.raises(AssertionError, match="standard errors"):
        case.check(wrong)
