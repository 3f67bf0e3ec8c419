"""Zhang et al. 2019 (docs/theory/zhang2019.md): exact NQM moments, closed-form steps to target.

Oracles: Monte Carlo of plain numpy SGD/heavy ball for the moment recurrences, and the
recurrences themselves, iterated step by step (``method="iterate"``), for the closed-form search.
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from critbatch.theory import zhang2019 as th
from critbatch.theory import zhang2024

H = np.array([2.0, 0.5, 0.05])
C = np.array([1.0, 3.0, 0.2])
X0 = np.array([1.0, -2.0, 3.0])
N_RUNS = 4000  # Monte Carlo runs; every moment must agree within 4 standard errors


def _simulate(lr, batch, n_steps, momentum, power, averaging, seed):
    """Plain numpy SGD/heavy-ball (torch convention) on the NQM, with an EMA of iterates."""
    rng = np.random.default_rng(seed)
    lrs = np.broadcast_to(lr, (n_steps,))
    bs = np.broadcast_to(batch, (n_steps,))
    x = np.tile(X0, (N_RUNS, 1))
    buf = np.zeros_like(x)
    y = x.copy()
    for t in range(n_steps):
        grad = H * x + np.sqrt(C / bs[t]) * rng.standard_normal(x.shape)
        step = H ** (-power) * grad  # preconditioned gradient
        buf = momentum * buf + step
        x = x - lrs[t] * buf
        y = averaging * y + (1 - averaging) * x
    return x, buf, y


CASES = [
    pytest.param(0.3, 4.0, 0.0, 0.0, 0.0, id="sgd"),
    pytest.param(0.2, 2.0, 0.9, 0.0, 0.0, id="momentum 0.9"),
    pytest.param(0.1, 1.0, 0.5, 0.5, 0.0, id="momentum and H^-1/2 preconditioning"),
    pytest.param(0.3, 8.0, 0.0, 0.0, 0.8, id="sgd with iterate EMA"),
    pytest.param(0.15, 3.0, 0.8, 0.0, 0.9, id="momentum with iterate EMA"),
    pytest.param(
        np.linspace(0.4, 0.05, 25),
        np.geomspace(1, 64, 25),
        0.6,
        0.0,
        0.5,
        id="per-step lr decay and batch growth",
    ),
]


@pytest.mark.parametrize(("lr", "batch", "momentum", "power", "averaging"), CASES)
def test_moment_recurrences_match_monte_carlo(lr, batch, momentum, power, averaging):
    n_steps = 25
    m = th.nqm_moments(
        H,
        C,
        X0,
        lr,
        batch,
        n_steps,
        momentum=momentum,
        precondition_power=power,
        averaging=averaging,
    )
    x, buf, y = _simulate(lr, batch, n_steps, momentum, power, averaging, seed=7)
    pairs = {
        "mean_x": x,
        "second_x": x**2,
        "mean_v": buf,
        "cross_xv": x * buf,
        "second_v": buf**2,
        "mean_y": y,
        "second_y": y**2,
    }
    for name, samples in pairs.items():
        exact = getattr(m, name)
        err = samples.std(axis=0, ddof=1) / math.sqrt(N_RUNS)
        assert np.all(np.abs(samples.mean(axis=0) - exact) <= 4 * err + 1e-12), name


@pytest.mark.parametrize("lr", [0.05, 0.5, 0.99, 1.5], ids=lambda r: f"lr={r}")
@pytest.mark.parametrize("batch", [1.0, 16.0], ids=lambda b: f"b={b}")
def test_sgd_recurrence_equals_closed_form(lr, batch):
    h = np.array([0.1, 1.0, 2.0, 3.9])  # lr*h spans slow decay, oscillation and divergence (> 2)
    t = np.arange(0, 60)
    closed = th.sgd_second_moment(h[None, :], 1.0, 1.0, lr, batch, t[:, None])
    loss = th.nqm_expected_loss(h, 1.0, 1.0, lr, batch, 59)
    np.testing.assert_allclose(loss, 0.5 * closed @ h, rtol=1e-10)


def test_closed_form_handles_unit_contraction():
    # (1 - lr h)^2 = 1 at lr h = 2: the noise accumulates linearly
    assert th.sgd_second_moment(1.0, 1.0, 0.0, 2.0, 1.0, 5) == pytest.approx(5 * 4.0)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0], ids=lambda p: f"p={p}")
def test_momentum_zero_is_sgd(power):
    a = th.nqm_expected_loss(H, C, X0, 0.2, 3.0, 40, momentum=0.0, precondition_power=power)
    b = th.nqm_expected_loss(H, C, X0, 0.2, 3.0, 40, precondition_power=power)
    np.testing.assert_array_equal(a, b)
    m = th.nqm_moments(H, C, X0, 0.2, 3.0, 40, precondition_power=power)
    np.testing.assert_array_equal(m.second_y, m.second_x)  # no averaging: y is x
    expected = th.sgd_second_moment(H ** (1 - power), C * H ** (-2 * power), X0, 0.2, 3.0, 40)
    np.testing.assert_allclose(m.second_x, expected, rtol=1e-10)


@pytest.mark.parametrize(
    ("losses", "first", "after_last"),
    [
        pytest.param([3.0, 2.0, 0.5, 0.2], 2.0, 2.0, id="monotone: conventions agree"),
        pytest.param([3.0, 0.5, 2.0, 0.4], 1.0, 3.0, id="oscillating: later when it stays"),
        pytest.param([0.1, 0.1], 0.0, 0.0, id="already below"),
        pytest.param([3.0, 0.5, 2.0], 1.0, math.inf, id="ends above"),
        pytest.param([3.0, 2.0, 1.0], math.inf, math.inf, id="never (equal is not below)"),
        pytest.param([3.0, math.nan, 0.5], 2.0, 2.0, id="nan counts as above"),
    ],
)
def test_steps_to_target_conventions(losses, first, after_last):
    assert th.steps_to_target(losses, 1.0, "first_below") == first
    assert th.steps_to_target(losses, 1.0, "after_last_above") == after_last


def test_steps_to_target_of_exact_loss_matches_direct_scan():
    loss = th.nqm_expected_loss(H, C, X0, 0.3, 16.0, 400, momentum=0.7)
    tau = 0.1  # the stationary loss at this rate and batch is about 0.071
    direct = next(t for t, value in enumerate(loss) if value < tau)
    assert th.nqm_steps_to_target(H, C, X0, 0.3, 16.0, tau, max_steps=400, momentum=0.7) == direct


def test_optimal_lr_search_equals_per_rate_minimum():
    lrs = np.geomspace(0.01, 0.9, 9)
    for convention in th.CONVENTIONS:
        out = th.optimal_lr_steps(
            H, C, X0, [2.0, 32.0], lrs, 0.1, max_steps=600, convention=convention, momentum=0.5
        )
        for i, b in enumerate([2.0, 32.0]):
            each = [
                th.steps_to_target(
                    th.nqm_expected_loss(H, C, X0, lr, b, 600, momentum=0.5), 0.1, convention
                )
                for lr in lrs
            ]
            assert out.steps[i] == min(each)
            assert each[int(np.flatnonzero(lrs == out.best_lr[i])[0])] == min(each)


POWER_LAW_H = 1.0 / np.arange(1, 101)  # the paper's choice: power-law curvatures, c_i = h_i
BATCHES = 2.0 ** np.arange(0, 16, 2)
LRS = np.geomspace(1e-3, 4.0, 30)


def _k_of_b(**kw):
    tau = 0.02 * 0.5 * POWER_LAW_H.sum()
    return th.optimal_lr_steps(
        POWER_LAW_H, POWER_LAW_H, 1.0, BATCHES, LRS, tau, max_steps=20_000, **kw
    ).steps


def test_momentum_and_preconditioning_raise_the_critical_batch_size():
    sgd = _k_of_b()
    momentum = _k_of_b(momentum=0.9)
    precond = _k_of_b(precondition_power=0.5)
    # small batch: momentum changes nothing (perfect-scaling regime, within 1%)
    assert momentum[0] == pytest.approx(sgd[0], rel=0.01)
    # large batch: both need fewer steps than SGD at its best rate
    assert momentum[-1] < 0.8 * sgd[-1]
    assert precond[-1] < 0.5 * sgd[-1]
    b_sgd = zhang2024.critical_batch_size_from_curve(BATCHES, sgd)
    assert zhang2024.critical_batch_size_from_curve(BATCHES, momentum) > b_sgd
    assert zhang2024.critical_batch_size_from_curve(BATCHES, precond) > b_sgd


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.nqm_expected_loss([1.0, -1.0], 1.0, 1.0, 0.1, 1, 3),
            "h must be positive",
            id="negative curvature",
        ),
        pytest.param(
            lambda: th.nqm_expected_loss([1.0], 1.0, 1.0, [0.1, 0.2], 1, 3),
            "lr must be a scalar or have length n_steps",
            id="lr sequence too short",
        ),
        pytest.param(
            lambda: th.nqm_expected_loss([1.0], 1.0, 1.0, 0.1, 1, 3, momentum=1.0),
            "momentum",
            id="momentum 1",
        ),
        pytest.param(
            lambda: th.nqm_expected_loss([1.0], [1.0, 2.0], 1.0, 0.1, 1, 3),
            "c must have length 1",
            id="c length mismatch",
        ),
        pytest.param(
            lambda: th.steps_to_target([1.0], 0.5, "last"), "convention", id="unknown convention"
        ),
        pytest.param(
            lambda: th.nqm_expected_loss([1.0], 1.0, 1.0, 0.1, 0, 3),
            "batch_size must be positive",
            id="zero batch",
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Steps to a target: the closed-form search against the step-by-step recurrence (the oracle).

CRITICAL = (1 - math.sqrt(0.81)) ** 2 / 0.5  # lr h at which heavy ball 0.81 is critically damped

# (h, c, x0, lr, b, momentum, power, tau, max_steps), then K for first_below, after_last_above
STEP_CASES = [
    pytest.param(H, C, X0, 0.3, 4.0, 0.0, 0.0, 0.1, 2000, 108, 108, id="sgd, monotone"),
    pytest.param(
        [1.0, 0.01],
        [0.0, 4.0],
        [3.0, 0.0],
        0.5,
        1.0,
        0.0,
        0.0,
        0.3,
        5000,
        2,
        math.inf,
        id="sgd, a noisy coordinate rises from 0 past the target",
    ),
    pytest.param(
        [1.0, 0.01],
        [0.0, 4.0],
        [3.0, 0.0],
        0.5,
        1.0,
        0.0,
        0.0,
        0.6,
        5000,
        2,
        2,
        id="sgd, a noisy coordinate rises from 0 and settles below",
    ),
    pytest.param(
        [2.0, 1.0, 0.1],
        1.0,
        1.0,
        1.0,
        64.0,
        0.0,
        0.0,
        1.3,
        3000,
        1,
        math.inf,
        id="sgd, lr h = 2 (noise accumulates) and lr h = 1 (rho = 0)",
    ),
    pytest.param(
        0.01 * np.arange(1, 6),
        0.01 * np.arange(1, 6),
        1.0,
        0.004,
        64.0,
        0.0,
        0.0,
        0.008,
        10_000,
        9216,
        9216,
        id="sgd, nine thousand steps",
    ),
    pytest.param(
        [1.0, 0.02],
        0.1,
        1.0,
        1.5,
        8.0,
        0.9,
        0.0,
        0.2,
        3000,
        1,
        19,
        id="heavy ball 0.9, oscillating: the conventions differ",
    ),
    pytest.param(
        [1.0, 0.02],
        0.1,
        1.0,
        1.5,
        8.0,
        0.9,
        0.0,
        0.13,
        3000,
        3,
        42,
        id="heavy ball 0.9, oscillating, lower target",
    ),
    pytest.param(
        H,
        C,
        X0,
        0.1,
        2.0,
        0.5,
        0.5,
        0.2,
        3000,
        17,
        17,
        id="heavy ball 0.5 with H^-1/2 preconditioning",
    ),
    pytest.param(
        [1.0, 0.1, 0.01], 1.0, 1.0, 0.05, 16.0, 0.99, 0.0, 0.3, 3000, 4, 141, id="heavy ball 0.99"
    ),
    pytest.param(
        [3.0, 0.1],
        [0.0, 0.1],
        [1e-3, 1.0],
        0.7,
        4.0,
        0.0,
        0.0,
        0.03,
        400,
        4,
        math.inf,
        id="sgd diverging after a dip below the target",
    ),
    pytest.param(
        [4.5, 0.1],
        [0.0, 0.1],
        [1e-4, 1.0],
        1.0,
        4.0,
        0.8,
        0.0,
        0.04,
        400,
        2,
        math.inf,
        id="heavy ball diverging after a dip below the target",
    ),
    pytest.param(
        [CRITICAL * (1 + 1e-9), 2.0],
        1.0,
        1.0,
        0.5,
        8.0,
        0.81,
        0.0,
        0.2,
        2000,
        1,
        18,
        id="heavy ball with a critically damped coordinate",
    ),
    pytest.param(
        [4.0, 0.5],
        1.0,
        [1e-3, 1.0],
        0.9,
        64.0,
        0.8,
        0.0,
        0.2,
        600,
        1,
        math.inf,
        id="heavy ball at lr h = 2 + 2 mu (falls back to iterating)",
    ),
    pytest.param(H, C, X0, 0.3, 4.0, 0.0, 0.0, 5.0, 100, 0, 0, id="target above the start"),
    pytest.param(
        H,
        C,
        X0,
        0.3,
        1.0,
        0.9,
        0.0,
        0.01,
        1000,
        math.inf,
        math.inf,
        id="target below the stationary loss: never",
    ),
]


@pytest.mark.parametrize(
    ("h", "c", "x0", "lr", "b", "momentum", "power", "tau", "max_steps", "first", "after_last"),
    STEP_CASES,
)
def test_closed_form_search_counts_the_steps_the_recurrence_counts(
    h, c, x0, lr, b, momentum, power, tau, max_steps, first, after_last
):
    kw = dict(max_steps=max_steps, momentum=momentum, precondition_power=power)
    loss = th.nqm_expected_loss(
        h, c, x0, lr, b, max_steps, momentum=momentum, precondition_power=power
    )
    # a well-posed row: no loss within 1e-9 (relative) of the target, where rounding decides
    assert np.nanmin(np.abs(loss - tau)) > 1e-9 * tau
    for convention, expected in zip(th.CONVENTIONS, (first, after_last), strict=True):
        fast = th.nqm_steps_to_target(h, c, x0, lr, b, tau, convention=convention, **kw)
        oracle = th.nqm_steps_to_target(
            h, c, x0, lr, b, tau, convention=convention, method="iterate", **kw
        )
        assert fast == oracle == expected, convention


@pytest.mark.parametrize(
    ("h", "c", "x0", "lr", "b", "momentum", "power", "tau", "max_steps", "first", "after_last"),
    STEP_CASES,
)
def test_closed_form_loss_at_any_step_equals_the_recurrence(
    h, c, x0, lr, b, momentum, power, tau, max_steps, first, after_last
):
    n = min(max_steps, 400)
    loss = th.nqm_expected_loss(h, c, x0, lr, b, n, momentum=momentum, precondition_power=power)
    closed = th.nqm_expected_loss_at(
        h, c, x0, lr, b, np.arange(n + 1), momentum=momentum, precondition_power=power
    )
    finite = np.isfinite(loss) & (loss < 1e200)
    np.testing.assert_allclose(closed[finite], loss[finite], rtol=1e-9)
    assert np.all(~np.isfinite(closed[~np.isfinite(loss)]) | (closed[~np.isfinite(loss)] > 1e200))


def test_ill_conditioned_heavy_ball_falls_back_to_iterating():
    # lr h = 2 + 2 mu puts an eigenvalue of A at -1, where the fixed point P* is singular
    problem = th._Problem([4.0, 0.5], 1.0, 1.0, 0.8, 0.0, 0.0)
    with pytest.raises(th._IllConditioned):
        th._HeavyBallForm(problem, 0.9, 64.0)
    assert th._steps_closed_form(problem, 0.9, 64.0, 0.2, 600, "first_below") is None


def test_iterate_averaging_is_iterated_and_agrees():
    kw = dict(max_steps=500, momentum=0.5, averaging=0.9)
    assert th.nqm_steps_to_target(H, C, X0, 0.2, 4.0, 0.3, **kw) == th.nqm_steps_to_target(
        H, C, X0, 0.2, 4.0, 0.3, method="iterate", **kw
    )


@given(
    d=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    momentum=st.sampled_from([0.0, 0.0, 0.5, 0.9, 0.99]),
    power=st.sampled_from([0.0, 0.5]),
    lr_scale=st.floats(0.05, 1.5),
    b=st.sampled_from([1.0, 3.0, 64.0]),
    quantile=st.floats(0.0, 1.0),
    convention=st.sampled_from(th.CONVENTIONS),
)
def test_closed_form_search_agrees_with_the_recurrence_on_random_problems(
    d, seed, momentum, power, lr_scale, b, quantile, convention
):
    rng = np.random.default_rng(seed)
    h = np.exp(rng.uniform(-4.0, 1.0, d))
    c = np.exp(rng.uniform(-3.0, 1.0, d)) * (rng.random(d) < 0.8)
    x0 = rng.normal(size=d) * (rng.random(d) < 0.7)
    assume(np.any(x0 != 0))
    lr = float(lr_scale * 2.0 * (1.0 + momentum) / np.max(h ** (1.0 - power)))
    loss = th.nqm_expected_loss(h, c, x0, lr, b, 800, momentum=momentum, precondition_power=power)
    finite = loss[np.isfinite(loss)]
    tau = float(np.quantile(finite, quantile))
    assume(tau > 0 and np.nanmin(np.abs(loss - tau)) > 1e-9 * tau)
    kw = dict(max_steps=800, convention=convention, momentum=momentum, precondition_power=power)
    assert th.nqm_steps_to_target(h, c, x0, lr, b, tau, **kw) == th.nqm_steps_to_target(
        h, c, x0, lr, b, tau, method="iterate", **kw
    )


@pytest.mark.parametrize("convention", th.CONVENTIONS)
@pytest.mark.parametrize("momentum", [0.0, 0.7], ids=["sgd", "heavy ball 0.7"])
def test_optimal_lr_search_is_the_same_by_closed_form_and_by_iteration(convention, momentum):
    lrs = np.geomspace(0.01, 2.0, 12)
    kw = dict(max_steps=800, convention=convention, momentum=momentum)
    fast = th.optimal_lr_steps(H, C, X0, [1.0, 4.0, 32.0], lrs, 0.12, **kw)
    slow = th.optimal_lr_steps(H, C, X0, [1.0, 4.0, 32.0], lrs, 0.12, method="iterate", **kw)
    np.testing.assert_array_equal(fast.steps, slow.steps)
    np.testing.assert_array_equal(fast.best_lr, slow.best_lr)
