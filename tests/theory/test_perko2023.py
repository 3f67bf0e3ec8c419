"""Perko 2023 (docs/theory/perko2023.md): Cauchy-Schwarz schedules checked on the exact oracle."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from critbatch.theory import perko2023 as th

SETTINGS = [
    pytest.param([1.0], 1.0, 0.5, 0.02, 200, 2000.0, id="1-D with label noise"),
    pytest.param([1.0, 0.3, 0.05], [1.0, 1.0, 1.0], 0.3, 0.05, 400, 4000.0, id="3-D"),
    pytest.param([2.0, 0.5], [0.5, 2.0], 1.0, 0.02, 500, 1000.0, id="2-D noisy, small batches"),
    pytest.param([4.0, 1.0, 0.25, 0.0625], 1.0, 0.1, 0.01, 600, 6000.0, id="4-D decade spread"),
]


@pytest.mark.parametrize(("lam", "e0", "s", "h", "K", "N"), SETTINGS)
def test_optimal_schedule_beats_constant_on_exact_oracle(lam, e0, s, h, K, N):
    b = th.linear_regression_schedule(lam, e0, s, h, K, N)
    assert b.sum() == pytest.approx(N)
    optimal = th.oracle_losses(lam, e0, s, h, b)[-1]
    constant = th.oracle_losses(lam, e0, s, h, np.full(K, N / K))[-1]
    assert optimal < constant
    # the O(h) expansion predicts the gain: constant minus optimal noise term (within 10%)
    t = np.linspace(0, K * h, 8001)
    g = th.linear_regression_g(t, K * h, lam, e0, s)
    predicted = th.constant_noise_term(t, g, N) - th.optimal_noise_term(t, g, N)
    assert constant - optimal == pytest.approx(predicted, rel=0.10)


def test_cauchy_schwarz_optimum_beats_random_perturbations_at_equal_budget():
    rng = np.random.default_rng(0)
    g = th.linear_regression_g((np.arange(100) + 0.5) * 0.05, 5.0, [1.0, 0.2], [1.0, 2.0], 0.5)
    best = th.optimal_batch_sizes(g, 1.0, 1000.0)
    objective = lambda b: float(np.sum(g / b))  # noqa: E731
    for _ in range(200):
        other = best * np.exp(rng.normal(scale=0.3, size=best.size))
        other *= 1000.0 / other.sum()
        assert objective(other) >= objective(best)
    assert objective(best) == pytest.approx(np.sum(np.sqrt(g)) ** 2 / 1000.0)


@pytest.mark.parametrize("b_min", [5.0, 9.0], ids=lambda b: f"b_min={b}")
def test_floored_optimum_matches_constrained_numeric_optimizer(b_min):
    g = np.array([0.01, 0.05, 0.2, 1.0, 3.0, 0.5, 0.02, 4.0])
    budget = 100.0
    ours = th.optimal_batch_sizes(g, 1.0, budget, batch_size_min=b_min)
    res = minimize(
        lambda b: np.sum(g / b),
        np.full(g.size, budget / g.size),
        method="SLSQP",
        bounds=[(b_min, None)] * g.size,
        constraints=[{"type": "eq", "fun": lambda b: b.sum() - budget}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert res.success
    assert ours.sum() == pytest.approx(budget)
    assert np.all(ours >= b_min - 1e-12)
    assert np.sum(g / ours) <= res.fun * (1 + 1e-9)
    np.testing.assert_allclose(ours, res.x, rtol=1e-3)


def test_one_dimension_without_label_noise_gives_a_constant_schedule():
    b = th.linear_regression_schedule([0.7], 2.0, 0.0, 0.05, 300, 3000.0)
    np.testing.assert_allclose(b, 10.0, rtol=1e-12)


def test_one_dimension_with_label_noise_grows_like_exp_at_late_times():
    a, h, K = 1.0, 0.02, 400
    b = th.linear_regression_schedule([a], 1.0, 1.0, h, K, 4000.0)
    assert np.all(np.diff(b) > 0)
    t = (np.arange(K) + 0.5) * h
    late = t > 4.0  # once e^{-2at} is small, sqrt(g) ~ s a e^{-a(T-t)}: rate a
    slope = np.polyfit(t[late], np.log(b[late]), 1)[0]
    assert slope == pytest.approx(a, rel=0.02)


def test_continuous_schedule_meets_budget_and_attains_optimal_noise_term():
    t = np.linspace(0, 8.0, 2001)
    g = th.linear_regression_g(t, 8.0, [1.0, 0.1], [1.0, 3.0], 0.2)
    b = th.optimal_batch_schedule(t, g, h=0.01, n_samples=5000.0)
    assert np.trapezoid(b, t) == pytest.approx(0.01 * 5000.0)
    assert th.noise_term(t, g, b, 0.01) == pytest.approx(th.optimal_noise_term(t, g, 5000.0))
    flat = np.full_like(t, 0.01 * 5000.0 / 8.0)
    assert th.noise_term(t, g, flat, 0.01) == pytest.approx(th.constant_noise_term(t, g, 5000.0))
    assert th.optimal_noise_term(t, g, 5000.0) < th.constant_noise_term(t, g, 5000.0)


def test_g_equals_trace_formula_with_full_matrices():
    lam = np.array([1.5, 0.4, 0.1])
    e0 = np.array([0.3, -1.0, 2.0])
    S, s, T = np.diag(lam), 0.7, 3.0
    for t in [0.0, 1.1, 3.0]:
        e = np.exp(-lam * t) * e0
        sigma = S @ np.outer(e, e) @ S + (e @ S @ e) * S + s * s * S
        phi = np.diag(np.exp(-lam * (T - t)))
        expected = 0.5 * np.trace(sigma @ phi.T @ S @ phi)
        assert th.linear_regression_g(t, T, lam, e0, s) == pytest.approx(expected)


def test_gradient_covariance_formula_by_monte_carlo():
    # per-sample gradient x (x^T e - noise) with x ~ N(0, S): covariance S e e^T S + e^T S e S
    # + s^2 S; 400k samples, every entry within 4 standard errors
    rng = np.random.default_rng(1)
    lam, e, s, n = np.array([1.5, 0.4]), np.array([0.8, -1.2]), 0.5, 400_000
    x = rng.standard_normal((n, 2)) * np.sqrt(lam)
    grads = x * (x @ e - s * rng.standard_normal(n))[:, None]
    S = np.diag(lam)
    formula = S @ np.outer(e, e) @ S + (e @ S @ e) * S + s * s * S
    centered = grads - grads.mean(axis=0)
    products = centered[:, :, None] * centered[:, None, :]
    stderr = products.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(products.mean(axis=0) - formula) < 4 * stderr)


def test_oracle_matches_monte_carlo_of_minibatch_sgd():
    # 4000 independent runs of SGD on fresh Gaussian samples; final E f within 4 standard errors
    rng = np.random.default_rng(2)
    lam, e0, s, h = np.array([1.0, 0.25]), np.array([1.0, -2.0]), 0.5, 0.2
    batches = np.array([1, 2, 2, 3, 5, 8, 8, 4, 16, 1] * 3)
    runs = 4000
    e = np.tile(e0, (runs, 1))
    for b in batches:
        x = rng.standard_normal((runs, b, 2)) * np.sqrt(lam)
        residual = np.einsum("rbi,ri->rb", x, e) - s * rng.standard_normal((runs, b))
        e = e - h * np.einsum("rbi,rb->ri", x, residual) / b
    loss = 0.5 * (e**2 @ lam + s * s)
    exact = th.oracle_losses(lam, e0, s, h, batches)[-1]
    assert abs(loss.mean() - exact) < 4 * loss.std(ddof=1) / math.sqrt(runs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.optimal_batch_sizes([0.0, 0.0], 1.0, 10.0),
            "not all zero",
            id="no noise anywhere",
        ),
        pytest.param(
            lambda: th.oracle_losses([1.0], 1.0, 0.0, 0.1, [1.0, 0.0]),
            "batch_sizes must be positive",
            id="zero batch",
        ),
        pytest.param(
            lambda: th.optimal_batch_schedule([0.0, 0.0], [1.0, 1.0], 0.1, 10.0),
            "strictly increasing",
            id="bad grid",
        ),
        pytest.param(
            lambda: th.linear_regression_g(0.0, 1.0, [1.0, 2.0], [1.0, 2.0, 3.0], 0.0),
            "e0 must be",
            id="e0 length",
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_infeasible_floor_and_time_past_the_horizon_are_nan():
    assert np.isnan(th.optimal_batch_sizes([1.0, 1.0], 1.0, 10.0, batch_size_min=6.0)).all()
    exact = th.optimal_batch_sizes([1.0, 4.0], 1.0, 10.0, batch_size_min=5.0)
    assert exact.tolist() == [5.0, 5.0]  # the floor exactly uses the budget
    g = th.linear_regression_g([0.5, 2.0], 1.0, [1.0], 1.0, 0.0)
    assert np.isfinite(g[0])
    assert np.isnan(g[1])
