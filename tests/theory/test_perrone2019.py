"""Perrone et al. 2019 (docs/theory/perrone2019.md): inverse law, time-optimal batch, timings."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from critbatch.theory import perrone2019 as th

LAWS = [
    pytest.param(100.0, 1000.0, 1.0, 0.1, id="K_inf=100 alpha=1000"),
    pytest.param(5000.0, 2e5, 0.02, 1e-4, id="GPU-like t0 >> t1"),
    pytest.param(10.0, 1.0, 3.0, 2.0, id="tiny noise"),
]


def _numeric_min(f, lo, hi):
    res = minimize_scalar(
        lambda logm: f(math.exp(logm)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return math.exp(res.x), res.fun


@pytest.mark.parametrize(("k_inf", "alpha", "t0", "t1"), LAWS)
def test_optimal_batch_matches_numeric_minimization(k_inf, alpha, t0, t1):
    m_num, t_num = _numeric_min(lambda m: th.training_time(m, k_inf, alpha, t0, t1), 1e-6, 1e9)
    assert th.optimal_batch_size(k_inf, alpha, t0, t1) == pytest.approx(m_num, rel=1e-5)
    assert th.optimal_time(k_inf, alpha, t0, t1) == pytest.approx(t_num, rel=1e-10)


@pytest.mark.parametrize(("k_inf", "alpha", "t0", "t1"), LAWS)
def test_optimal_time_closed_form_equals_evaluation(k_inf, alpha, t0, t1):
    m_star = th.optimal_batch_size(k_inf, alpha, t0, t1)
    assert th.optimal_time(k_inf, alpha, t0, t1) == pytest.approx(
        th.training_time(m_star, k_inf, alpha, t0, t1), rel=1e-12
    )


@pytest.mark.parametrize("P", [1, 2, 8, 64], ids=lambda p: f"P={p}")
@pytest.mark.parametrize(("k_inf", "alpha", "t0", "t1"), LAWS)
def test_multi_learner_optimum_matches_numeric(P, k_inf, alpha, t0, t1):
    comm = th.ring_allreduce_time(P, latency=1e-3, transfer_time=0.05)
    m_num, t_num = _numeric_min(
        lambda m: th.multi_learner_time(m, P, k_inf, alpha, t0, t1, comm), 1e-6, 1e10
    )
    m_star = th.multi_learner_optimal_batch_size(P, k_inf, alpha, t0, t1, comm)
    assert m_star == pytest.approx(m_num, rel=1e-5)
    assert th.multi_learner_time(m_star, P, k_inf, alpha, t0, t1, comm) == pytest.approx(
        t_num, rel=1e-10
    )


def test_one_learner_without_communication_is_the_single_learner_model():
    assert th.ring_allreduce_time(1, latency=0.3, transfer_time=0.7) == 0.0
    m = np.array([1.0, 7.0, 300.0])
    np.testing.assert_allclose(
        th.multi_learner_time(m, 1, 100.0, 1000.0, 1.0, 0.1, 0.0),
        th.training_time(m, 100.0, 1000.0, 1.0, 0.1),
    )


MEASURED = [
    pytest.param([1, 2, 4, 8, 16, 32, 64, 128], lambda m: 0.5 + 0.01 * m, id="affine timing"),
    pytest.param([1, 4, 16, 64, 256, 1024], lambda m: 0.2 + 0.003 * m**1.3, id="superlinear"),
    pytest.param([8, 16, 32, 64], lambda m: 2.0 + 0 * m, id="flat timing: largest batch"),
    pytest.param(
        [1, 3, 10, 30, 100, 300], lambda m: 0.1 + 1e-3 * m + 0.3 * (m > 20), id="step in timing"
    ),
]


@pytest.mark.parametrize(("points", "timing"), MEASURED)
def test_measured_minimum_matches_dense_search(points, timing):
    ms = np.asarray(points, dtype=float)
    ts = timing(ms)
    m_star, t_star = th.optimal_batch_size_measured(ms, ts, K_inf=200.0, alpha=4000.0)
    grid = np.union1d(np.geomspace(ms[0], ms[-1], 400_001), ms)
    dense = (200.0 + 4000.0 / grid) * np.interp(grid, ms, ts)
    assert t_star <= dense.min() * (1 + 1e-12)
    assert t_star == pytest.approx(dense.min(), rel=1e-6)
    assert m_star == pytest.approx(grid[np.argmin(dense)], rel=1e-3)


def test_measured_affine_timing_recovers_closed_form():
    ms = np.array([1.0, 10.0, 1000.0])
    m_star, t_star = th.optimal_batch_size_measured(ms, 0.5 + 0.01 * ms, 100.0, 1000.0)
    assert m_star == pytest.approx(th.optimal_batch_size(100.0, 1000.0, 0.5, 0.01))
    assert t_star == pytest.approx(th.optimal_time(100.0, 1000.0, 0.5, 0.01))


STRONG = [
    pytest.param(1.0, 0.1, 1.0, 10.0, 0.01, id="kappa=10"),
    pytest.param(5.0, 0.05, 0.2, 1.0, 1e-3, id="kappa=100 low noise"),
    pytest.param(2.0, 2.0, 4.0, 3.0, 0.1, id="kappa=1"),
]


@pytest.mark.parametrize(("L", "mu", "sigma2", "delta", "eps"), STRONG)
@pytest.mark.parametrize("M", [1, 16, 1024], ids=lambda m: f"M={m}")
def test_strongly_convex_step_bound_reaches_eps(L, mu, sigma2, delta, eps, M):
    # independent check: the step the docstring names, eta = 1/(L (1 + sigma2/(mu eps M))),
    # makes each term of the bound at most eps/2 after the returned number of steps
    k = math.ceil(th.strongly_convex_steps_bound(M, L, mu, sigma2, delta, eps))
    eta = 1.0 / (L * (1.0 + sigma2 / (mu * eps * M)))
    assert eta * L * sigma2 / (2 * mu * M) <= eps / 2
    assert (1 - eta * mu) ** k * delta <= eps / 2
    assert th.strongly_convex_bound(k, M, eta, L, mu, sigma2, delta) <= eps
    # and it has the inverse-law form K_inf + alpha/M
    k_inf = L / mu * math.log(2 * delta / eps)
    assert th.strongly_convex_steps_bound(M, L, mu, sigma2, delta, eps) == pytest.approx(
        th.inverse_law_steps(M, k_inf, k_inf * sigma2 / (mu * eps))
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.inverse_law_steps(0, 1.0, 1.0), "batch_size must be positive", id="M=0"
        ),
        pytest.param(
            lambda: th.optimal_batch_size(-1.0, 1.0, 1.0, 1.0),
            "K_inf must be non-negative",
            id="K_inf<0",
        ),
        pytest.param(lambda: th.ring_allreduce_time(0, 1.0, 1.0), "P must be >= 1", id="P=0"),
        pytest.param(
            lambda: th.multi_learner_time(1.0, 1.5, 1.0, 1.0, 1.0, 1.0, 0.0),
            "P must be an integer",
            id="fractional P",
        ),
        pytest.param(
            lambda: th.optimal_batch_size_measured([1, 1], [1, 2], 1.0, 1.0),
            "distinct",
            id="repeated M",
        ),
        pytest.param(
            lambda: th.optimal_batch_size_measured([1, 2], [1], 1.0, 1.0),
            "equal length",
            id="length mismatch",
        ),
        pytest.param(
            lambda: th.strongly_convex_steps_bound(1, 1.0, 2.0, 1.0, 1.0, 0.1),
            "mu must be <= L",
            id="mu above L",
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        pytest.param(
            lambda: th.optimal_batch_size(0.0, 1.0, 1.0, 1.0),
            math.inf,
            id="K_inf=0: larger is always faster",
        ),
        pytest.param(
            lambda: th.optimal_batch_size(1.0, 1.0, 1.0, 0.0),
            math.inf,
            id="free examples: larger is always faster",
        ),
        pytest.param(
            lambda: th.multi_learner_optimal_batch_size(2, 1.0, 1.0, 0.0, 1.0, 0.0),
            0.0,
            id="no fixed cost: the smallest batch",
        ),
        pytest.param(
            lambda: th.strongly_convex_bound(1, 1, 2.0, 1.0, 0.5, 1.0, 1.0),
            math.inf,
            id="eta above 1/L: no bound",
        ),
        pytest.param(
            lambda: th.strongly_convex_steps_bound(1, 1.0, 1.0, 1.0, 0.01, 0.1),
            0.0,
            id="2 Delta <= eps: no step needed",
        ),
    ],
)
def test_degenerate_values_follow_the_limits(call, expected):
    assert call() == expected


def test_both_time_constants_zero_leave_the_optimum_undefined():
    assert math.isnan(th.optimal_batch_size(0.0, 0.0, 1.0, 1.0))  # T(M) = 0 for every M


def test_an_unbounded_noise_term_gives_an_unbounded_optimal_batch():
    # alpha = inf is the open end of an inverse-law interval: M* -> inf as alpha -> inf
    got = th.optimal_batch_size(1.0, [1e12, np.inf, np.inf], [1e-6, 1e-6, 0.0], 1e-8)
    assert got[0] == pytest.approx(math.sqrt(1e12 * 1e-6 / 1e-8))
    assert got[1] == np.inf
    assert math.isnan(got[2])  # inf * 0: undefined, said by nan
