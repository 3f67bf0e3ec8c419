"""NQM benchmark: the Rust core against its NumPy, JAX and torch peers (group ``nqm``).

Each case runs the same sweep (``benches.peers.nqm_workload``) and checks the final losses against
the exact mean and variance of the loss (``benches.conftest.nqm_loss_moments``). With the default
``--benchmark-disable`` each case runs once, at tiny size, as a smoke test.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benches.conftest import (
    BENCH_THREADS,
    bench,
    jax_peers,
    nqm_case,
    nqm_loss_moments,
    torch_peers,
)
from benches.peers import nqm_workload, numpy_peers, prepare_rust_nqm


@pytest.mark.benchmark(group="nqm")
def test_nqm_rust(benchmark, nqm):
    pytest.importorskip("critbatch._core")
    bench(benchmark, nqm, prepare_rust_nqm(nqm.workload, threads=BENCH_THREADS))


@pytest.mark.benchmark(group="nqm")
def test_nqm_rust_f32(benchmark, nqm):
    pytest.importorskip("critbatch._core")
    run = prepare_rust_nqm(nqm.workload, threads=BENCH_THREADS, dtype="float32")
    bench(benchmark, nqm, run)


@pytest.mark.benchmark(group="nqm")
def test_nqm_numpy(benchmark, nqm):
    bench(benchmark, nqm, numpy_peers.prepare_nqm(nqm.workload))


@pytest.mark.benchmark(group="nqm")
def test_nqm_jax_f32(benchmark, nqm):
    bench(benchmark, nqm, jax_peers().prepare_nqm(nqm.workload, dtype="float32"))


@pytest.mark.benchmark(group="nqm")
def test_nqm_jax_f64(benchmark, nqm):
    bench(benchmark, nqm, jax_peers().prepare_nqm(nqm.workload, dtype="float64"))


@pytest.mark.benchmark(group="nqm")
def test_nqm_torch_f32(benchmark, nqm):
    peers = torch_peers()
    bench(benchmark, nqm, peers.prepare_nqm(nqm.workload, dtype="float32", threads=BENCH_THREADS))


@pytest.mark.benchmark(group="nqm")
def test_nqm_torch_f64(benchmark, nqm):
    peers = torch_peers()
    bench(benchmark, nqm, peers.prepare_nqm(nqm.workload, dtype="float64", threads=BENCH_THREADS))


# ---------------------------------------------------------------------------------------------
# The oracle itself, against independent computations, and proof that the check can fail.


def _moments_by_recursion(h, c, lr, b, steps):
    """E x, E x^2, E x^4 of x' = a x - s z (z ~ N(0, 1), E z^4 = 3) iterated from x = 1."""
    a, s2 = 1.0 - lr * h, lr * lr * c / b
    m1, m2, m4 = np.ones_like(h), np.ones_like(h), np.ones_like(h)
    for _ in range(steps):
        m4 = a**4 * m4 + 6.0 * a * a * s2 * m2 + 3.0 * s2 * s2
        m2 = a * a * m2 + s2
        m1 = a * m1
    mean = 0.5 * np.sum(h * m2)
    var = 0.25 * np.sum(h * h * (m4 - m2 * m2))
    return mean, var


ORACLE_CASES = [
    pytest.param([1.0, 0.5, 0.1], [1.0, 0.5, 0.1], 0.5, 4, 20, id="h=c, lr 0.5"),
    pytest.param([2.0, 0.3], [0.0, 3.0], 0.1, 1, 50, id="one noiseless coordinate"),
    pytest.param([1.0, 0.25], [1.0, 1.0], 2.0, 2, 7, id="edge of stability a=-1"),
    pytest.param([1.0], [1.0], 0.5, 8, 0, id="zero steps"),
]


@pytest.mark.parametrize(("h", "c", "lr", "b", "steps"), ORACLE_CASES)
def test_nqm_oracle_matches_moment_recursion(h, c, lr, b, steps):
    h, c = np.array(h), np.array(c)
    mean, var = nqm_loss_moments(h, c, lr, b, steps)
    want_mean, want_var = _moments_by_recursion(h, c, lr, b, steps)
    # Closed form vs. recursion: the same numbers up to rounding.
    np.testing.assert_allclose([mean, var], [want_mean, want_var], rtol=1e-10, atol=1e-14)


def test_nqm_check_rejects_quadrupled_noise():
    # A peer that draws 4x the noise variance (b/4) must fail the check the right one passes.
    case = nqm_case(nqm_workload(full=False))
    case.check(numpy_peers.prepare_nqm(case.workload)())
    wrong = numpy_peers.prepare_nqm(dataclasses.replace(case.workload, b=case.workload.b // 4))()
    with pytest.raises(AssertionError, match="standard errors"):
        case.check(wrong)
