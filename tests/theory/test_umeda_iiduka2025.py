"""Umeda & Iiduka 2025 (docs/theory/umeda_iiduka2025.md): staged schedules under the bound."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critbatch.theory import iiduka2022 as ii
from critbatch.theory import umeda_iiduka2025 as th

PROBLEMS = [
    pytest.param(dict(L=1.0, sigma2=1.0, Delta=10.0, eps=0.1), 0.25, id="L=1 eps=0.1 eta=0.25"),
    pytest.param(dict(L=4.0, sigma2=0.5, Delta=3.0, eps=0.3), 0.4, id="L=4 eps=0.3 eta=0.4"),
    pytest.param(dict(L=0.5, sigma2=2.0, Delta=50.0, eps=0.2), 1.0, id="L=0.5 eta=1"),
]


@pytest.mark.parametrize(("p", "eta"), PROBLEMS)
@pytest.mark.parametrize("b", [40, 100, 1000], ids=lambda b: f"b={b}")
def test_constant_schedule_bound_is_iiduka_bound(p, eta, b):
    t = np.arange(1, 301)
    path = th.bound_path(np.full(t.size, b), eta, p["L"], p["sigma2"], p["Delta"])
    expected = ii.sgd_bound(t.astype(float), b, p["L"], p["sigma2"], p["Delta"], eta)
    np.testing.assert_allclose(path, expected, rtol=1e-12)


@pytest.mark.parametrize(("p", "eta"), PROBLEMS)
def test_constant_schedule_cost_is_ceil_of_iiduka_steps(p, eta):
    b_star = ii.sgd_critical_batch_size(p["L"], p["sigma2"], eta, p["eps"])
    for b in [math.ceil(b_star * 0.6), math.ceil(b_star), math.ceil(b_star * 5)]:
        cost = th.schedule_cost([b], [eta], 7, **p)
        k = ii.sgd_steps(b, p["L"], p["sigma2"], p["Delta"], eta, p["eps"])
        assert cost.steps == math.ceil(k - 1e-9)
        assert cost.sfo == cost.steps * b


@pytest.mark.parametrize(("p", "eta"), PROBLEMS)
def test_best_constant_batch_is_iiduka_critical_batch(p, eta):
    b_star = ii.sgd_critical_batch_size(p["L"], p["sigma2"], eta, p["eps"])
    candidates = np.arange(math.floor(b_star / 2), math.ceil(b_star * 3)) + 1
    sfo = [th.schedule_cost([int(b)], [eta], 1, **p).sfo for b in candidates]
    # integer steps make N(b) a little rugged; its minimizer stays within 5% of b* here
    assert candidates[int(np.argmin(sfo))] == pytest.approx(b_star, rel=0.05)


SCHEDULES = [
    pytest.param([2, 4, 8, 16, 32], [0.2, 0.25, 0.3, 0.3, 0.3], 17, id="growing b and eta"),
    pytest.param([64, 32, 64, 128], [0.5, 0.1, 0.2, 0.2], 40, id="non-monotone"),
    pytest.param([8], [0.3], 3, id="single held stage"),
    pytest.param([1, 1, 1], [0.3, 0.3, 0.3], 5, id="below the pole: never"),
]


@pytest.mark.parametrize(("bs", "etas", "stage"), SCHEDULES)
def test_stage_by_stage_cost_equals_brute_force_first_crossing(bs, etas, stage):
    p = dict(L=1.0, sigma2=1.0, Delta=2.0, eps=0.3)
    horizon = 20_000
    per_step_b = np.concatenate([np.full(stage, b) for b in bs[:-1]] + [np.full(horizon, bs[-1])])
    per_step_eta = np.concatenate(
        [np.full(stage, e) for e in etas[:-1]] + [np.full(horizon, etas[-1])]
    )
    path = th.bound_path(per_step_b, per_step_eta, p["L"], p["sigma2"], p["Delta"])
    below = np.flatnonzero(path <= p["eps"] ** 2)
    cost = th.schedule_cost(bs, etas, stage, **p)
    if below.size == 0:
        assert cost.steps == math.inf
    else:
        assert cost.steps == below[0] + 1
        assert cost.sfo == per_step_b[: below[0] + 1].sum()


@settings(max_examples=40, deadline=None)
@given(
    bs=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    etas=st.lists(st.floats(0.01, 1.5), min_size=6, max_size=6),
    stage=st.integers(1, 200),
)
def test_no_schedule_beats_the_constant_critical_batch_lower_bound(bs, etas, stage):
    # Per sample, a step's progress is at most (eps^2 c)^2 / (4 L sigma2), c = 2 - L eta_max:
    # the SFO lower bound 8 Delta L sigma2 / (eps^4 c^2), which is N(b*) of Iiduka 2022.
    p = dict(L=1.0, sigma2=1.0, Delta=1.0, eps=0.3)
    etas = etas[: len(bs)]
    cost = th.schedule_cost(bs, etas, stage, **p)
    eta_used = (
        max(etas)
        if cost.steps == math.inf
        else max(e for e, _ in zip(etas, range(math.ceil(cost.steps / stage)), strict=False))
    )
    c = 2 - p["L"] * eta_used
    lower = 8 * p["Delta"] * p["L"] * p["sigma2"] / (p["eps"] ** 4 * c**2)
    assert cost.sfo >= lower * (1 - 1e-12)
    assert lower == pytest.approx(
        ii.sfo_at_critical(*ii.sgd_constants(p["L"], p["sigma2"], p["Delta"], eta_used), p["eps"])
    )


GRID = dict(
    deltas=[1.0, 1.1, 1.25, 1.5, 2.0, 3.0],
    gammas=[0.9, 1.0, 1.2, 1.4],
    stage_steps=[1, 10, 100, 1000],
    n_stages=40,
)


@pytest.mark.parametrize(
    ("b0", "b_max"), [pytest.param(4, 64, id="b0=4 cap 64"), pytest.param(1, 1024, id="b0=1")]
)
def test_optimal_growth_beats_constant_start_batch_and_reaches_bound_floor(b0, b_max):
    p = dict(L=1.0, sigma2=1.0, Delta=10.0, eps=0.1)
    best = th.optimize_growth_schedule(
        batch_size0=b0, eta0=0.25, batch_size_max=b_max, eta_max=0.9, **p, **GRID
    )
    constant = th.schedule_cost([b0], [0.25], 1, **p)
    floor = ii.sfo_at_critical(*ii.sgd_constants(1.0, 1.0, 10.0, 0.25), 0.1)
    assert best.cost.sfo < constant.sfo
    assert best.cost.sfo >= floor
    # exhaustive: no grid member does better than the reported optimum
    for delta in GRID["deltas"]:
        for k in GRID["stage_steps"]:
            bs = th.batch_schedule(b0, delta, GRID["n_stages"], b_max)
            etas = th.lr_schedule(0.25, 1.0, GRID["n_stages"], 0.9)
            assert th.schedule_cost(bs, etas, k, **p).sfo >= best.cost.sfo


def test_adaptive_thresholds_grow_from_the_start_not_by_compounding():
    # b_m = min(ceil(b0 delta^m), b_max): 3 * 1.5^m = 3, 4.5, 6.75, 10.125 -> [3, 5, 7, 11];
    # compounding rounded values, ceil(b_m delta), would give [3, 5, 8, 12]
    b, eps = th.adaptive_thresholds(1.0, 3, 1.5, 100, 3)
    assert b.tolist() == [3, 5, 7, 11]
    assert b.tolist() == th.batch_schedule(3, 1.5, 4, 100).tolist()
    np.testing.assert_allclose(eps, np.sqrt(3 / b))


def test_adaptive_thresholds_keep_b_eps_squared_constant():
    b, eps = th.adaptive_thresholds(0.5, 8, 2.0, 1000, 10)
    np.testing.assert_allclose(b * eps**2, 8 * 0.25, rtol=1e-12)
    assert b.tolist() == [8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000, 1000]


@pytest.mark.parametrize(
    ("b0", "delta", "n", "b_max", "expected"),
    [
        pytest.param(32, 2.0, 4, 10_000, [32, 64, 128, 256], id="exact powers are not bumped"),
        pytest.param(10, 1.4, 4, 10_000, [10, 14, 20, 28], id="ceil of 10*1.4^m"),
        pytest.param(3, 1.0, 3, 3, [3, 3, 3], id="delta=1 is constant"),
    ],
)
def test_batch_schedule_table(b0, delta, n, b_max, expected):
    assert th.batch_schedule(b0, delta, n, b_max).tolist() == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(
            lambda: th.batch_schedule(8, 0.5, 3, 100), "delta must be >= 1", id="shrinking batch"
        ),
        pytest.param(
            lambda: th.batch_schedule(8, 2.0, 3, 4),
            "batch_size_max must be >= batch_size0",
            id="cap below start",
        ),
        pytest.param(
            lambda: th.batch_schedule(8.5, 2.0, 3, 40),
            "batch_size0 must be an integer",
            id="fractional start",
        ),
        pytest.param(
            lambda: th.bound([1, 2], [0.5, 0.6], 1.0, 1.0, 1.0, eta_max=0.55),
            "must not exceed eta_max",
            id="rate above given eta_max",
        ),
        pytest.param(
            lambda: th.bound([1, 2, 3], [0.5, 0.6], 1.0, 1.0, 1.0),
            "equal length",
            id="length mismatch",
        ),
        pytest.param(
            lambda: th.schedule_cost([4], [0.1], 0, L=1.0, sigma2=1.0, Delta=1.0, eps=0.1),
            "stage_steps",
            id="zero stage length",
        ),
        pytest.param(
            lambda: th.bound([0, 2], 0.5, 1.0, 1.0, 1.0),
            "batch_sizes must be positive",
            id="zero batch",
        ),
    ],
)
def test_invalid_input_names_the_condition(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_reconstructed_bound_does_not_favor_exponential_over_slow_linear_growth():
    # A finding about the reconstructed bound, pinned so that a change to it is noticed: with a
    # cap far above b*, exponential growth overshoots b* while slow linear growth lingers near
    # it, so the best linear schedule costs less than the best exponential one on these grids.
    p = dict(L=1.0, sigma2=1.0, Delta=10.0, eps=0.1)
    best = th.optimize_growth_schedule(
        batch_size0=4, eta0=0.25, batch_size_max=1024, eta_max=0.9, **p, **GRID
    )
    linear = min(
        th.schedule_cost(th.linear_batch_schedule(4, c, 40, 1024), [0.25] * 40, k, **p).sfo
        for c in [0.5, 1, 2, 4, 8]
        for k in GRID["stage_steps"]
    )
    floor = ii.sfo_at_critical(*ii.sgd_constants(1.0, 1.0, 10.0, 0.25), 0.1)
    assert floor <= linear < best.cost.sfo


def test_a_rate_at_or_above_two_over_l_makes_the_bound_vacuous():
    assert th.bound([1, 2], [0.5, 2.5], 1.0, 1.0, 1.0) == math.inf
    path = th.bound_path([1, 2, 2], [0.5, 0.5, 2.5], 1.0, 1.0, 1.0)
    assert np.isfinite(path[:2]).all()
    assert path[2] == math.inf
    cost = th.schedule_cost([4, 8], [0.5, 2.5], 10, L=1.0, sigma2=1.0, Delta=10.0, eps=0.1)
    assert cost.steps == math.inf
    assert cost.sfo == math.inf
