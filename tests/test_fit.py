"""critbatch.fit: the laws, the likelihood, the profile fit, statuses, intervals and inputs.

Oracles: closed forms and scipy root finding / minimization for the laws; scipy.stats and a
derivative-free optimizer for the censored likelihood; scipy.optimize.curve_fit for the
uncensored fit; a brute-force profile over a grid for the intervals; synthetic data drawn from
each law (fixed seeds) for recovery, censoring bias, status and interval coverage.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from critbatch.fit import (
    LAWS,
    STATUSES,
    Fits,
    best_learning_rate,
    compare,
    compare_critical,
    critical_ratio,
    fit,
    inverse_from_mccandlish,
    inverse_steps,
    mccandlish_from_inverse,
    mccandlish_steps,
    overhead_batch_size,
    rational_from_constants,
    rational_steps,
    weights_from_summary,
)
from critbatch.fit.bootstrap import expanded_level, percentile_interval
from critbatch.fit.likelihood import Observations, maximize_location_scale
from critbatch.fit.profile import cut_value
from critbatch.results import Results

# The designs used below: (law, true parameters, batch sizes).
DESIGNS = {
    "rational": ({"k_inf": 200.0, "b_min": 16.0}, [20, 24, 32, 48, 64, 128, 256, 512]),
    "inverse": ({"k_inf": 100.0, "alpha": 20_000.0}, [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]),
    "mccandlish": ({"s_min": 50.0, "b_noise": 64.0}, [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]),
}


def synth(
    model: str,
    params: dict[str, float],
    batch_sizes: list[float],
    n_seeds: int,
    sigma: float,
    seed: int,
    budget: float | None = None,
) -> pd.DataFrame:
    """Runs whose steps are lognormal around the law (median K(b)), optionally cut at a budget."""
    b = np.repeat(np.asarray(batch_sizes, dtype=float), n_seeds)
    noise = np.random.default_rng(seed).standard_normal(b.size)
    steps = LAWS[model].steps(b, params) * np.exp(sigma * noise)
    reached = np.ones(b.size, bool) if budget is None else steps <= budget
    if budget is not None:
        steps = np.minimum(steps, budget)
    return pd.DataFrame(
        {
            "batch_size": b,
            "steps": steps,
            "reached": reached,
            "seed": np.tile(np.arange(n_seeds), len(batch_sizes)),
        }
    )


def one(data: pd.DataFrame, model: str = "mccandlish", **kwargs) -> object:
    """The only fit of ``data``."""
    return fit(data, model, **{"n_boot": 0, **kwargs}).item()


# ---- the laws ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("func", "args", "expected"),
    [
        pytest.param(rational_steps, (32.0, 100.0, 16.0), 200.0, id="rational doubles at b=2B"),
        pytest.param(rational_steps, (16.0, 100.0, 16.0), math.inf, id="rational infinite at pole"),
        pytest.param(rational_steps, (1e12, 100.0, 16.0), 100.0, id="rational tends to k_inf"),
        pytest.param(
            inverse_steps, (200.0, 100.0, 20_000.0), 200.0, id="inverse doubles at alpha/k"
        ),
        pytest.param(inverse_steps, (1.0, 100.0, 0.0), 100.0, id="inverse flat when alpha=0"),
        pytest.param(
            mccandlish_steps, (64.0, 50.0, 64.0), 100.0, id="mccandlish doubles at B_noise"
        ),
    ],
)
def test_law_values(func, args, expected):
    assert func(*args) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("k_inf", "alpha"),
    [(100.0, 20_000.0), (3.0, 0.5), (1e4, 1e2)],
    ids=["knee at 200", "knee at 1/6", "knee at 1/100"],
)
def test_mccandlish_is_the_inverse_law_reparametrized(k_inf, alpha):
    s_min, b_noise = mccandlish_from_inverse(k_inf, alpha)
    b = np.geomspace(0.01, 1e5, 50)
    np.testing.assert_allclose(
        mccandlish_steps(b, s_min, b_noise), inverse_steps(b, k_inf, alpha), rtol=1e-12
    )
    assert inverse_from_mccandlish(s_min, b_noise) == pytest.approx((k_inf, alpha), rel=1e-12)
    # McCandlish's trade-off (S/S_min - 1)(E/E_min - 1) = 1 with E = B S, E_min = S_min B_noise
    s = mccandlish_steps(b, s_min, b_noise)
    np.testing.assert_allclose((s / s_min - 1) * (b * s / (s_min * b_noise) - 1), 1.0, rtol=1e-9)


@pytest.mark.parametrize(
    ("c1", "c2", "c3", "eps"),
    [(4.0, 2.0, 0.0, 1.0), (10.0, 0.3, 0.05, 0.5)],
    ids=["sgd-like", "adaptive with bias C3"],
)
def test_rational_constants_solve_the_bound(c1, c2, c3, eps):
    k_inf, b_min = rational_from_constants(c1, c2, c3, eps)
    for b in (b_min * 1.01, b_min * 3, b_min * 100):
        # oracle: solve C1/K + C2/b + C3 = eps^2 for K by root finding
        root = optimize.brentq(
            lambda k, b=b: c1 / k + c2 / b + c3 - eps**2, 1e-9, 1e12, xtol=1e-14, rtol=1e-14
        )
        assert rational_steps(b, k_inf, b_min) == pytest.approx(root, rel=1e-9)


@pytest.mark.parametrize(
    "params", [{"k_inf": 200.0, "b_min": 16.0}, {"k_inf": 3.0, "b_min": 0.7}], ids=["B=16", "B=0.7"]
)
def test_rational_critical_batch_minimizes_gradient_cost(params):
    law = LAWS["rational"]
    b_min = params["b_min"]
    # oracle: minimize N(b) = b K(b) numerically over (B, 100 B)
    best = optimize.minimize_scalar(
        lambda b: b * law.steps(b, params),
        bounds=(b_min * 1.0001, 100 * b_min),
        method="bounded",
        options={"xatol": 1e-10 * b_min},
    )
    assert law.critical_batch_size(params) == pytest.approx(best.x, rel=1e-5)


@pytest.mark.parametrize(
    ("model", "params", "overhead"),
    [
        pytest.param("rational", {"k_inf": 200.0, "b_min": 16.0}, 0.2, id="rational 20%"),
        pytest.param("rational", {"k_inf": 5.0, "b_min": 2.5}, 0.05, id="rational 5%"),
        pytest.param("inverse", {"k_inf": 100.0, "alpha": 20_000.0}, 0.2, id="inverse 20%"),
        pytest.param("mccandlish", {"s_min": 50.0, "b_noise": 64.0}, 0.5, id="mccandlish 50%"),
    ],
)
def test_overhead_batch_size_against_root_finding(model, params, overhead):
    law = LAWS[model]

    def cost(b: float) -> float:
        return b * law.steps(b, params)

    if law.family == "inverse":
        n_min = cost(1e-12)  # perfect scaling: inf N = lim_{b->0} b K(b)
        low = 1e-9
    else:
        low = law.critical_batch_size(params)
        n_min = cost(low)
    root = optimize.brentq(
        lambda b: cost(b) - (1 + overhead) * n_min, low, 1e9, xtol=1e-12, rtol=1e-13
    )
    assert overhead_batch_size(model, params, overhead) == pytest.approx(root, rel=1e-7)
    if law.family == "inverse":
        # Zhang et al. 2024's phrasing: steps exceed perfect linear scaling alpha/b by the overhead
        k_lin = n_min / root
        assert law.steps(root, params) == pytest.approx((1 + overhead) * k_lin, rel=1e-7)


# ---- the laws' location-shape form --------------------------------------------------------------


@pytest.mark.parametrize("model", list(LAWS))
def test_shape_form_is_the_law(model):
    law = LAWS[model]
    params, sizes = DESIGNS[model]
    b = np.asarray(sizes, dtype=float)
    first = next(iter(params))
    beta = params["b_min"] if model == "rational" else math.log(law.critical_batch_size(params))
    location = math.log(params[first])
    np.testing.assert_allclose(
        np.exp(law.log_steps(location, beta, b)), law.steps(b, params), rtol=1e-12
    )
    assert law.params_at(location, beta) == pytest.approx(params, rel=1e-12)
    assert law.critical_from_beta(beta) == pytest.approx(law.critical_batch_size(params))


def test_inverse_family_limits():
    law = LAWS["mccandlish"]
    b = np.array([1.0, 10.0, 100.0])
    # B_noise -> 0: constant steps; B_noise -> inf: perfect scaling E_min / b
    np.testing.assert_allclose(np.exp(law.log_steps(math.log(5.0), -math.inf, b)), 5.0)
    np.testing.assert_allclose(np.exp(law.log_steps(math.log(1000.0), math.inf, b)), 1000.0 / b)
    np.testing.assert_allclose(
        law.log_steps(0.0, 40.0, b), law.log_steps(40.0, math.inf, b), atol=1e-12
    )


# ---- the likelihood ------------------------------------------------------------------------------


def _direct_maximum(obs: Observations, g: np.ndarray) -> float:
    """The maximum over (c, log sigma), written with scipy.stats and Nelder-Mead only."""

    def nll(x: np.ndarray) -> float:
        mu, sigma = x[0] + g, math.exp(x[1])
        value = stats.norm.logpdf(obs.upper[obs.exact], mu[obs.exact], sigma).sum()
        hi = stats.norm.cdf(obs.upper[~obs.exact], mu[~obs.exact], sigma)
        lo = stats.norm.cdf(obs.lower[~obs.exact], mu[~obs.exact], sigma)
        return -(value + np.log(hi - lo).sum())

    start = [float(np.mean(obs.point() - g)), math.log(0.2)]
    best = optimize.minimize(
        nll,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-13, "maxiter": 20_000},
    )
    return -float(best.fun)


@pytest.mark.parametrize(
    ("budget", "check_every"),
    [(None, 1), (400.0, 1), (None, 10), (400.0, 10)],
    ids=["exact", "right-censored", "interval-censored", "both"],
)
def test_location_scale_maximum_against_scipy(budget, check_every):
    data = synth(
        "mccandlish",
        {"s_min": 50.0, "b_noise": 64.0},
        [2, 4, 8, 16, 32, 64, 128, 256],
        4,
        0.15,
        seed=0,
        budget=budget,
    )
    steps = np.ceil(data["steps"].to_numpy())
    obs = Observations.from_runs(
        data["batch_size"], steps, ~data["reached"].to_numpy(), check_every=check_every
    )
    law = LAWS["mccandlish"]
    for beta in (math.log(20.0), math.log(64.0), math.log(500.0)):
        g = law.shape(obs.b, np.array([beta]))
        rows = maximize_location_scale(obs, g)
        assert rows.converged[0]
        assert rows.log_likelihood[0] == pytest.approx(_direct_maximum(obs, g[0]), abs=1e-6)


def test_uncensored_fit_is_least_squares_in_log_space():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 4, 0.1, seed=11)
    result = one(data)
    law = LAWS["mccandlish"]

    def log_law(b: np.ndarray, p: float, q: float) -> np.ndarray:
        return np.log(law.steps(b, {"s_min": p, "b_noise": q}))

    popt, _ = optimize.curve_fit(
        log_law,
        data["batch_size"],
        np.log(data["steps"]),
        p0=list(params.values()),
        xtol=1e-14,
        ftol=1e-14,
    )
    assert [result.params["s_min"], result.params["b_noise"]] == pytest.approx(list(popt), rel=1e-7)
    assert result.sigma == pytest.approx(np.sqrt(np.mean(result.residuals**2)), rel=1e-7)


@pytest.mark.parametrize("model", list(LAWS))
def test_noiseless_data_give_the_exact_parameters(model):
    params, sizes = DESIGNS[model]
    b = np.asarray(sizes, dtype=float)
    result = one(pd.DataFrame({"batch_size": b, "steps": LAWS[model].steps(b, params)}), model)
    assert result.params == pytest.approx(params, rel=2e-7)
    assert result.estimate == pytest.approx(LAWS[model].critical_batch_size(params), rel=2e-7)


def test_censored_fit_matches_a_direct_maximization():
    data = synth(
        "inverse",
        {"k_inf": 100.0, "alpha": 20_000.0},
        [4, 8, 16, 32, 64, 128, 256],
        6,
        0.4,
        seed=5,
        budget=1500.0,
    )
    result = one(data, "inverse")
    assert result.n_censored > 5
    b, y, cens = data["batch_size"].to_numpy(), np.log(data["steps"]), ~data["reached"].to_numpy()

    def nll(x: np.ndarray) -> float:  # written with scipy.stats only
        mu = np.log(np.exp(x[0]) + np.exp(x[1]) / b)
        return -(
            stats.norm.logpdf(y[~cens], mu[~cens], np.exp(x[2])).sum()
            + stats.norm.logsf(y[cens], mu[cens], np.exp(x[2])).sum()
        )

    start = [math.log(80.0), math.log(30_000.0), math.log(0.3)]
    best = optimize.minimize(
        nll,
        start,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000},
    )
    assert result.log_likelihood == pytest.approx(-best.fun, abs=1e-6)
    assert result.params["k_inf"] == pytest.approx(math.exp(best.x[0]), rel=1e-4)
    assert result.params["alpha"] == pytest.approx(math.exp(best.x[1]), rel=1e-4)


def test_information_criteria_recomputed():
    params, sizes = DESIGNS["rational"]
    data = synth("rational", params, sizes, 3, 0.1, seed=4)
    result = one(data, "rational")
    y = np.log(data["steps"].to_numpy())
    mu = np.log(result.predict(data["batch_size"].to_numpy()))
    loglik = stats.norm.logpdf(y, mu, result.sigma).sum()
    assert result.log_likelihood == pytest.approx(loglik, rel=1e-9)
    assert result.aic == pytest.approx(2 * 3 - 2 * loglik, rel=1e-9)
    assert result.bic == pytest.approx(3 * math.log(len(y)) - 2 * loglik, rel=1e-9)


# ---- the profile interval ------------------------------------------------------------------------


def test_profile_interval_ends_sit_on_the_cut():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 3, 0.2, seed=21)
    result = one(data, level=0.9)
    law = LAWS["mccandlish"]
    y, b = np.log(data["steps"].to_numpy()), data["batch_size"].to_numpy()

    def profile(b_noise: float) -> float:  # brute force: least squares in closed form
        w = y - np.log1p(b_noise / b)
        return float(stats.norm.logpdf(w, w.mean(), w.std()).sum())

    q = len(y) * math.log1p(stats.f.ppf(0.9, 1, len(y) - 2) / (len(y) - 2))
    assert cut_value(len(y), 0.9) == pytest.approx(q, rel=1e-12)
    for end in result.interval:
        assert 2 * (result.log_likelihood - profile(end)) == pytest.approx(q, abs=1e-6)
    inside = np.geomspace(*result.interval, 7)[1:-1]
    assert all(2 * (result.log_likelihood - profile(x)) < q for x in inside)
    assert law.name == result.model


def _statuses(b_noise: float, n_seeds: int, reps: int, sigma: float = 0.2) -> dict[str, int]:
    sizes = DESIGNS["mccandlish"][1]
    counts: dict[str, int] = {}
    for rep in range(reps):
        result = one(
            synth(
                "mccandlish",
                {"s_min": 50.0, "b_noise": b_noise},
                sizes,
                n_seeds,
                sigma,
                seed=5000 + rep,
            )
        )
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status == "above_grid":  # never a finite estimate or upper bound
            assert math.isnan(result.critical_batch_size)
            assert result.interval[1] == math.inf
            assert "> 1024 (b_max)" in result.critical_text()
        if result.status == "below_grid":
            assert math.isnan(result.critical_batch_size)
            assert "< 2 (b_min)" in result.critical_text()
    return counts


def _profile_coverage(model: str, n_seeds: int, reps: int) -> float:
    params, sizes = DESIGNS[model]
    truth = LAWS[model].critical_batch_size(params)
    covered = 0
    for rep in range(reps):
        low, high = one(synth(model, params, sizes, n_seeds, 0.2, seed=1000 + rep), model).interval
        covered += low <= truth <= high
    return covered / reps


@pytest.mark.parametrize("n_seeds", [1, 8], ids=["1 seed per b", "8 seeds per b"])
@pytest.mark.parametrize("model", ["mccandlish", "rational"])
def test_simulation_profile_interval_coverage(model, n_seeds):
    # b* inside the grid, 200 datasets, nominal 95 %: measured 0.93-0.97 over 300 datasets per
    # case. The band is [0.90, 0.98]; Binomial(200, 0.95) has sd 0.015.
    assert 0.90 <= _profile_coverage(model, n_seeds, reps=200) <= 0.98


@pytest.mark.parametrize(
    ("b_noise", "expected"),
    [(4096.0, "above_grid"), (0.5, "below_grid")],
    ids=["b* = 4 b_max", "b* = b_min / 4"],
)
@pytest.mark.parametrize("n_seeds", [1, 8], ids=["1 seed per b", "8 seeds per b"])
def test_simulation_status_outside_the_grid(b_noise, expected, n_seeds):
    # measured: 196-200 of 200 datasets get the status; the issue asks for at least 95 %
    counts = _statuses(b_noise, n_seeds, reps=100)
    assert counts.get(expected, 0) >= 95, counts


def test_simulation_bootstrap_coverage_quick():
    # 8 seeds per b, 40 datasets, 90 % expanded percentile intervals over whole seeds:
    # Binomial(40, 0.9) has mean 36 and sd 1.9; measured 0.89 at 95 % over 100 datasets.
    params, sizes = DESIGNS["mccandlish"]
    covered = 0
    for rep in range(40):
        result = one(
            synth("mccandlish", params, sizes, 8, 0.2, seed=1000 + rep),
            n_boot=99,
            level=0.9,
            seed=rep,
        )
        low, high = result.bootstrap_interval
        covered += low <= 64.0 <= high
    assert 31 <= covered <= 40


@pytest.mark.slow
def test_simulation_bootstrap_coverage_thorough():
    # 200 datasets at 95 %: Binomial(200, 0.95) sd 0.015; band [0.90, 0.98]
    params, sizes = DESIGNS["mccandlish"]
    covered = 0
    for rep in range(200):
        result = one(
            synth("mccandlish", params, sizes, 8, 0.2, seed=1000 + rep), n_boot=199, seed=rep
        )
        low, high = result.bootstrap_interval
        covered += low <= 64.0 <= high
    assert 0.90 <= covered / 200 <= 0.98


# ---- the reproductions -------------------------------------------------------------------


def test_perfect_scaling_is_above_the_grid_not_a_number():
    b = np.array([1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    exact = one(pd.DataFrame({"batch_size": b, "steps": 1e6 / b}))
    assert exact.status == "above_grid"
    assert exact.estimate == math.inf
    assert exact.interval[1] == math.inf
    assert exact.lower_bound <= exact.interval[1]
    for rep in range(10):
        noisy = one(
            pd.DataFrame(
                {
                    "batch_size": np.repeat(b, 3),
                    "steps": np.repeat(1e6 / b, 3)
                    * np.exp(np.random.default_rng(rep).normal(0, 0.05, 30)),
                }
            )
        )
        assert noisy.status == "above_grid", rep
        assert math.isnan(noisy.critical_batch_size)
        assert noisy.interval[1] == math.inf


def test_one_row_per_batch_size_has_no_bootstrap_and_says_why():
    params, sizes = DESIGNS["mccandlish"]
    result = one(
        synth("mccandlish", params, sizes, 1, 0.1, seed=3).drop(columns="seed"), n_boot=200
    )
    assert result.bootstrap_interval is None
    assert "one run per batch size" in result.bootstrap_note
    assert "one run per batch size" in result.lack_of_fit_note
    low, high = result.interval
    assert 0 < low < result.critical_batch_size < high < math.inf


def test_estimate_below_the_smallest_batch_is_below_grid():
    b = np.repeat([2.0, 4, 8, 16, 32, 64], 3)
    noise = np.random.default_rng(0).normal(0, 0.05, b.size)
    result = one(pd.DataFrame({"batch_size": b, "steps": 300 * (1 + 0.4 / b) * np.exp(noise)}))
    assert result.status == "below_grid"
    assert math.isnan(result.critical_batch_size)


def test_a_law_that_does_not_fit_is_flagged():
    # K falls faster than 1/b (like Adam on the demo NQM): the law is rejected, or b* escapes
    b = np.repeat([1.0, 2, 4, 8, 16, 32, 64, 128, 256, 512], 4)
    noise = np.random.default_rng(0).normal(0, 0.1, b.size)
    result = one(pd.DataFrame({"batch_size": b, "steps": 5000 / b**1.4 * np.exp(noise)}))
    assert result.status in ("above_grid", "poor_fit")
    assert result.lack_of_fit_p < 1e-6


def test_rational_law_on_data_from_the_rational_law_is_poor_under_mccandlish():
    params, sizes = {"k_inf": 100.0, "b_min": 18.0}, [20, 22, 24, 28, 32, 48, 64, 128, 256, 512]
    data = synth("rational", params, sizes, 6, 0.05, seed=2)
    assert one(data, "rational").status == "identified"
    assert one(data, "mccandlish").status in ("poor_fit", "below_grid")


def test_too_few_runs_are_not_identified():
    data = pd.DataFrame({"batch_size": [4.0, 8.0], "steps": [100.0, 60.0]})
    result = one(data)
    assert result.status == "not_identified"
    assert "at least 3 runs" in result.reasons[0]
    assert math.isnan(result.critical_batch_size)
    assert result.critical_text() == "not identified"
    data = pd.DataFrame(
        {
            "batch_size": [4.0, 4.0, 8.0],
            "steps": [100.0, 90.0, 50.0],
            "reached": [True, False, False],
        }
    )
    assert "reached" in one(data).reasons[0]


# ---- interval censoring, weights, columns, examples ----------------------------------------------


def test_interval_censoring_removes_the_check_every_bias():
    params, sizes = {"s_min": 20.0, "b_noise": 32.0}, [2, 4, 8, 16, 32, 64, 128, 256]
    m = 8
    estimates, naive = [], []
    for rep in range(6):
        data = synth("mccandlish", params, sizes, 8, 0.1, seed=rep)
        data["steps"] = np.ceil(data["steps"] / m) * m  # stops at the first check past K
        estimates.append(one(data, check_every=m).params["s_min"])
        naive.append(one(data, check_every=1).params["s_min"])
    # checks every 8 steps on K ~ 20-340: treating the stop as exact inflates s_min (measured
    # +19 %); the interval-censored fit is within 5 % of the truth on average
    assert np.mean(estimates) == pytest.approx(20.0, rel=0.05)
    assert np.mean(naive) > 1.12 * 20.0


def test_weights_from_a_summary_table():
    params, sizes = DESIGNS["mccandlish"]
    runs = synth("mccandlish", params, sizes, 12, 0.1, seed=4)
    summary = runs.groupby("batch_size")["steps"].agg(["mean", "std", "size"]).reset_index()
    weights = weights_from_summary(summary["mean"], summary["std"], summary["size"])
    table = pd.DataFrame({"B": summary["batch_size"], "K": summary["mean"], "weight": weights})
    result = one(table, columns={"batch_size": "B", "steps": "K"})
    assert result.critical_batch_size == pytest.approx(64.0, rel=0.2)
    # the weights enter the likelihood: doubling one batch size's weight moves the fit
    heavier = table.assign(weight=np.where(table["B"] == 2, 10 * weights, weights))
    assert one(heavier, columns={"batch_size": "B", "steps": "K"}).params != result.params


def test_examples_response_is_steps_times_batch_size():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 3, 0.1, seed=6)
    by_steps = one(data)
    by_examples = one(
        data.assign(examples=data["steps"] * data["batch_size"]).drop(columns="steps"),
        response="examples",
    )
    assert by_examples.params == pytest.approx(by_steps.params, rel=1e-9)
    assert by_examples.status == by_steps.status


def test_overhead_definition_is_zhang_2024():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 3, 0.1, seed=6)
    knee, cbs = one(data), one(data, critical="overhead", overhead=0.2)
    assert cbs.critical_batch_size == pytest.approx(0.2 * knee.critical_batch_size, rel=1e-9)
    assert cbs.interval == pytest.approx(tuple(0.2 * x for x in knee.interval), rel=1e-9)


# ---- comparing critical batch sizes --------------------------------------------------------------


def _two_groups(b_a: float, b_b: float, seed: int, n_seeds: int = 3) -> pd.DataFrame:
    sizes = DESIGNS["mccandlish"][1]
    a = synth("mccandlish", {"s_min": 40.0, "b_noise": b_a}, sizes, n_seeds, 0.2, seed)
    b = synth("mccandlish", {"s_min": 80.0, "b_noise": b_b}, sizes, n_seeds, 0.2, seed + 10_000)
    return pd.concat([a.assign(optimizer="adam"), b.assign(optimizer="sgd")], ignore_index=True)


def test_ratio_interval_coverage():
    # 100 pairs, true ratio 4, nominal 95 %: Binomial(100, 0.95) sd 0.022
    covered = 0
    for rep in range(100):
        fits = fit(_two_groups(128.0, 32.0, seed=rep), n_boot=0)
        low, high = critical_ratio(fits["adam"], fits["sgd"]).interval
        covered += low <= 4.0 <= high
    assert 0.88 <= covered / 100 <= 1.0


def test_ratio_verdicts():
    fits = fit(_two_groups(256.0, 16.0, seed=4), n_boot=0)
    ratio = critical_ratio(fits["adam"], fits["sgd"])
    assert ratio.estimate == pytest.approx(
        fits["adam"].critical_batch_size / fits["sgd"].critical_batch_size
    )
    assert ratio.verdict("larger") == "supports"
    assert ratio.verdict("smaller") == "contradicts"
    same = fit(_two_groups(64.0, 64.0, seed=2), n_boot=0)
    assert critical_ratio(same["adam"], same["sgd"]).verdict() == "cannot tell"
    below = fit(_two_groups(64.0, 1e-3, seed=5), n_boot=0)
    assert below["sgd"].status == "below_grid"
    assert critical_ratio(below["adam"], below["sgd"]).verdict() == "inconclusive"
    beyond = fit(_two_groups(1e6, 16.0, seed=3), n_boot=0)
    assert beyond["adam"].status == "above_grid"
    ratio = critical_ratio(beyond["adam"], beyond["sgd"])
    assert ratio.verdict() == "inconclusive"
    assert "above grid" in ratio.reasons[0]


def test_lack_of_fit_is_the_classical_f_test_on_exact_runs():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 3, 0.1, seed=31)
    result = one(data)
    y, b = np.log(data["steps"].to_numpy()), data["batch_size"].to_numpy()
    ss_law = float(np.sum(result.residuals**2))
    ss_pure = float(sum(np.sum((y[b == x] - y[b == x].mean()) ** 2) for x in np.unique(b)))
    k, n = len(sizes), len(y)
    f = ((ss_law - ss_pure) / (k - 2)) / (ss_pure / (n - k))
    assert result.lack_of_fit_p == pytest.approx(stats.f.sf(f, k - 2, n - k), rel=1e-6)


def test_lack_of_fit_rejects_a_correct_law_at_its_level():
    # 300 datasets from the law, 3 seeds per batch size: rejections ~ Binomial(300, 0.01),
    # mean 3, sd 1.7; measured 1-2
    params, sizes = DESIGNS["mccandlish"]
    rejected = sum(
        one(synth("mccandlish", params, sizes, 3, 0.2, seed=7000 + rep)).lack_of_fit_p < 0.01
        for rep in range(300)
    )
    assert rejected <= 9


def test_compare_critical_pairs_shared_seeds_and_narrows_the_interval():
    # both groups share each (seed, b) noise draw, as runs with common random numbers do: the
    # paired bootstrap keeps the correlation and its interval is narrower than the profile one,
    # which treats the groups as independent
    sizes = DESIGNS["mccandlish"][1]
    widths_paired, widths_profile = [], []
    for rep in range(5):
        a = synth("mccandlish", {"s_min": 40.0, "b_noise": 256.0}, sizes, 6, 0.2, seed=rep)
        b = synth("mccandlish", {"s_min": 80.0, "b_noise": 32.0}, sizes, 6, 0.2, seed=rep)
        table = pd.concat([a.assign(optimizer="adam"), b.assign(optimizer="sgd")])
        ratio = compare_critical(table, "adam", "sgd", n_boot=100, seed=rep)
        assert ratio.bootstrap_interval is not None
        assert ratio.bootstrap_note == ""
        lo, hi = ratio.bootstrap_interval
        assert lo <= 8.0 <= hi
        widths_paired.append(math.log(hi / lo))
        widths_profile.append(math.log(ratio.interval[1] / ratio.interval[0]))
    assert np.mean(widths_paired) < 0.5 * np.mean(widths_profile)
    unpaired = synth("mccandlish", {"s_min": 40.0, "b_noise": 256.0}, sizes, 6, 0.2, seed=0)
    other = synth("mccandlish", {"s_min": 80.0, "b_noise": 32.0}, sizes, 6, 0.2, seed=1)
    table = pd.concat(
        [unpaired.assign(optimizer="adam"), other.assign(optimizer="sgd", seed=other["seed"] + 100)]
    )
    ratio = compare_critical(table, "adam", "sgd", n_boot=50)
    assert ratio.bootstrap_interval is None
    assert "shared" in ratio.bootstrap_note


# ---- one result type: a table and a mapping ------------------------------------------------------


def test_fits_are_a_mapping_keyed_by_group_tuples_and_a_table():
    table = pd.concat(
        [
            _two_groups(64.0, 16.0, seed=0).assign(problem="nqm"),
            _two_groups(64.0, 16.0, seed=1).assign(problem="ls"),
        ],
        ignore_index=True,
    )
    fits = fit(table, n_boot=0)
    assert isinstance(fits, Fits)
    assert fits.by == ("problem", "optimizer")
    assert list(fits) == [("ls", "adam"), ("ls", "sgd"), ("nqm", "adam"), ("nqm", "sgd")]
    frame = fits.table
    assert list(frame.columns[:3]) == ["problem", "optimizer", "model"]
    assert len(frame) == 4
    assert set(frame["status"]) <= set(STATUSES)
    with pytest.raises(ValueError, match="exactly one group"):
        fits.item()
    with pytest.raises(KeyError, match="groups"):
        fits[("nqm", "lion")]
    single = fit(table[(table["problem"] == "ls") & (table["optimizer"] == "sgd")], n_boot=0)
    assert list(single) == [("ls", "sgd")]  # the key does not depend on what varies


def test_fit_result_round_trips_through_json(tmp_path):
    params, sizes = DESIGNS["mccandlish"]
    fits = fit(synth("mccandlish", params, sizes, 4, 0.1, seed=12), n_boot=30)
    result = fits.item()
    assert result.predict(64.0) == pytest.approx(mccandlish_steps(64.0, **result.params))
    text = result.summary()
    for word in (
        "mccandlish",
        "status: identified",
        "b_noise",
        "AIC",
        "bootstrap interval",
        "lack of fit",
    ):
        assert word in text
    back = Fits.load(fits.save(tmp_path / "fits.json")).item()
    for name in (
        "status",
        "critical_batch_size",
        "interval",
        "params",
        "bootstrap_interval",
        "reasons",
        "group",
    ):
        assert getattr(back, name) == getattr(result, name), name
    np.testing.assert_array_equal(back.bootstrap_samples["beta"], result.bootstrap_samples["beta"])
    json.dumps(fits.to_dict())  # JSON-safe, infinite bounds included
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.model = "rational"  # type: ignore[misc]


def test_above_grid_round_trips_with_infinite_bounds(tmp_path):
    b = np.array([1.0, 2, 4, 8, 16, 32])
    fits = fit(pd.DataFrame({"batch_size": b, "steps": 1e4 / b}), n_boot=0)
    text = json.dumps(fits.to_dict())
    assert "NaN" not in text
    assert "Infinity" not in text
    back = Fits.from_dict(json.loads(text)).item()
    assert back.interval[1] == math.inf
    assert math.isnan(back.critical_batch_size)


def test_bootstrap_is_reproducible_and_reports_its_mode():
    params, sizes = DESIGNS["mccandlish"]
    data = synth("mccandlish", params, sizes, 5, 0.1, seed=10)
    first = one(data, n_boot=50, seed=3)
    assert first.bootstrap_interval == one(data, n_boot=50, seed=3).bootstrap_interval
    assert first.bootstrap_interval != one(data, n_boot=50, seed=4).bootstrap_interval
    assert first.resample == "seeds"  # every seed id occurs at every batch size
    unshared = data.assign(seed=np.arange(len(data)))
    assert one(unshared, n_boot=20).resample == "within"
    assert one(data.drop(columns="seed"), n_boot=20).resample == "rows"


def test_compare_picks_the_generating_law():
    for model in ("rational", "mccandlish"):
        params, sizes = DESIGNS[model]
        result = compare(
            synth(model, params, sizes, 4, 0.1, seed=7), ["mccandlish", "inverse", "rational"]
        )[()]
        assert LAWS[result.best_by_aic].family == LAWS[model].family
        assert LAWS[result.best_by_cv].family == LAWS[model].family
        # the inverse-family laws are one curve: same likelihood and held-out error
        assert result.fits["inverse"].aic == pytest.approx(result.fits["mccandlish"].aic, abs=1e-6)
        assert result.cv_nll["inverse"] == pytest.approx(result.cv_nll["mccandlish"], abs=1e-5)
        assert "best by AIC" in result.summary()


# ---- learning rate, diverged runs, groups --------------------------------------------------------


def _lr_table(rows: list[tuple[float, float, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["batch_size", "learning_rate", "steps", "reached"])


@pytest.mark.parametrize(
    ("rows", "require_all", "expected_lr"),
    [
        pytest.param(
            [(8, 0.1, 40, True), (8, 0.1, 50, True), (8, 0.2, 30, True), (8, 0.2, 35, True)],
            False,
            0.2,
            id="fewest median steps wins",
        ),
        pytest.param(
            [(8, 0.1, 40, True), (8, 0.2, 40, True)], False, 0.1, id="tie goes to the smaller lr"
        ),
        pytest.param(
            [(8, 0.1, 40, True), (8, 0.1, 44, True), (8, 0.2, 30, True), (8, 0.2, 99, False)],
            False,
            0.1,
            id="a failed run counts as infinitely many steps",
        ),
        pytest.param(
            [
                (8, 0.1, 40, True),
                (8, 0.1, 44, True),
                (8, 0.1, 48, True),
                (8, 0.2, 20, True),
                (8, 0.2, 22, True),
                (8, 0.2, 99, False),
            ],
            False,
            0.2,
            id="median survives one failure in three",
        ),
        pytest.param(
            [
                (8, 0.1, 40, True),
                (8, 0.1, 44, True),
                (8, 0.1, 48, True),
                (8, 0.2, 20, True),
                (8, 0.2, 22, True),
                (8, 0.2, 99, False),
            ],
            True,
            0.1,
            id="require_all_reached prefers the lr without failures",
        ),
    ],
)
def test_best_learning_rate_rule(rows, require_all, expected_lr):
    best = best_learning_rate(_lr_table(rows), require_all_reached=require_all)
    assert best["learning_rate"].tolist() == [expected_lr]


def test_best_learning_rate_counts_diverged_runs_as_failures():
    df = _lr_table(
        [(8, 0.1, 40, True), (8, 0.1, 44, True), (8, 0.4, 10, True), (8, 0.4, 12, True)]
    ).assign(diverged=[False, False, True, True])
    best = best_learning_rate(df)
    assert best[["learning_rate", "n_failed"]].values.tolist() == [[0.1, 0]]


def test_fit_at_the_best_learning_rate():
    params, sizes = DESIGNS["mccandlish"]
    good = synth("mccandlish", params, sizes, 4, 0.1, seed=8).assign(learning_rate=0.1)
    slow = good.assign(learning_rate=0.05, steps=good["steps"] * 2.0)
    fast = good.assign(learning_rate=0.2, steps=good["steps"] * 3.0)
    table = pd.concat([good, slow, fast], ignore_index=True)
    tuned = one(table)  # tune_lr defaults to True: several learning rates per batch size
    direct = one(good)
    assert tuned.learning_rates == {float(b): 0.1 for b in sizes}
    assert tuned.params == pytest.approx(direct.params, rel=1e-9)
    assert tuned.lr_status == "interior"
    assert direct.lr_status == "fixed"
    edge = one(pd.concat([good, slow], ignore_index=True))
    assert edge.lr_status == "edge"
    assert edge.lr_edge_batch_sizes == tuple(float(b) for b in sizes)
    assert "edge of the grid" in "; ".join(edge.reasons)
    with pytest.raises(ValueError, match="learning_rate"):
        one(table, tune_lr=False)


def test_diverged_runs_are_excluded_and_counted():
    params, sizes = DESIGNS["rational"]
    data = synth("rational", params, sizes, 4, 0.1, seed=9).assign(diverged=False)
    junk = data.iloc[:6].assign(diverged=True, reached=False, steps=np.nan)
    result = one(pd.concat([data, junk], ignore_index=True), "rational")
    clean = one(data, "rational")
    assert result.n_excluded == 6
    assert result.excluded_by_batch[20.0] == 4
    assert result.params == pytest.approx(clean.params, rel=1e-9)


def test_censoring_recovers_the_truth_where_dropping_is_biased():
    params = {"k_inf": 100.0, "alpha": 20_000.0}
    sizes = [4, 8, 16, 32, 64, 128, 256, 512]
    kept, dropped = [], []
    for seed in range(8):
        data = synth("inverse", params, sizes, 16, 0.5, seed=seed, budget=1000.0)
        kept.append(one(data, "inverse"))
        dropped.append(one(data, "inverse", censoring="drop"))
        expected = data.assign(c=~data["reached"]).groupby("batch_size")["c"].sum()
        assert kept[-1].censored_by_batch == {float(b): int(n) for b, n in expected.items()}
        assert kept[-1].n_censored > 30  # the budget bites at b = 4, 8, 16, 32
    # Measured on this design: per-dataset sd of alpha ~12 %; the mean of 8 has se ~4 %.
    # Dropping the slowest runs biases alpha down by ~27 %.
    assert np.mean([f.params["alpha"] for f in kept]) == pytest.approx(params["alpha"], rel=0.12)
    assert np.mean([f.params["alpha"] for f in dropped]) < 0.85 * params["alpha"]


@pytest.mark.parametrize(
    ("level", "n_units", "df"),
    [(0.9, 6, 5), (0.8, 12, 11), (0.95, 6, 50)],
    ids=["6 seeds", "12 seeds", "6 per batch size, 10 sizes"],
)
def test_expanded_level_widens_to_student_quantiles(level, n_units, df):
    widened = expanded_level(level, n_units, df)
    assert widened > level
    # oracle: its normal quantile is sqrt(n/(n-1)) times the Student quantile of the nominal level
    assert stats.norm.ppf(0.5 + widened / 2) == pytest.approx(
        math.sqrt(n_units / (n_units - 1)) * stats.t.ppf(0.5 + level / 2, df), rel=1e-9
    )


def test_percentile_interval_against_numpy():
    samples = np.random.default_rng(0).normal(size=999)
    assert percentile_interval(samples, 0.9) == pytest.approx(
        tuple(np.percentile(samples, [5, 95])), rel=1e-12
    )


# ---- inputs --------------------------------------------------------------------------------------


def test_csv_parquet_and_results_inputs_agree(tmp_path):
    params, sizes = DESIGNS["inverse"]
    data = synth("inverse", params, sizes, 3, 0.1, seed=13, budget=3000.0)
    reference = one(data, "inverse")
    data.to_csv(tmp_path / "runs.csv", index=False)
    data.to_parquet(tmp_path / "runs.parquet")
    (tmp_path / "dataset").mkdir()
    half = len(data) // 2
    data.iloc[:half].to_parquet(tmp_path / "dataset" / "part-0.parquet")
    data.iloc[half:].to_parquet(tmp_path / "dataset" / "part-1.parquet")
    columns = {c: data[c].to_numpy() for c in data.columns}
    for source in (
        tmp_path / "runs.csv",
        str(tmp_path / "runs.parquet"),
        tmp_path / "dataset",
        Results(columns),
    ):
        result = one(source, "inverse")
        assert result.params == pytest.approx(reference.params, rel=1e-9)
        assert result.n_censored == reference.n_censored > 0


def _base() -> pd.DataFrame:
    return synth("inverse", {"k_inf": 100.0, "alpha": 20_000.0}, [4, 8, 16, 32], 3, 0.1, seed=0)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        pytest.param(
            lambda d: d.drop(columns="batch_size"),
            {},
            ValueError,
            "'batch_size'",
            id="missing batch_size",
        ),
        pytest.param(
            lambda d: d.drop(columns="steps"), {}, ValueError, "'steps'", id="missing steps"
        ),
        pytest.param(
            lambda d: d.assign(batch_size=-d["batch_size"]),
            {},
            ValueError,
            "'batch_size'",
            id="negative batch_size",
        ),
        pytest.param(
            lambda d: d.assign(batch_size="big"),
            {},
            ValueError,
            "'batch_size'",
            id="text batch_size",
        ),
        pytest.param(
            lambda d: d.assign(steps=np.where(d.index == 3, np.nan, d["steps"])),
            {},
            ValueError,
            "'steps'",
            id="NaN steps on a run that did not diverge",
        ),
        pytest.param(lambda d: d.assign(steps=0), {}, ValueError, "'steps'", id="zero steps"),
        pytest.param(lambda d: d, {"critical": "elbow"}, ValueError, "critical", id="bad critical"),
        pytest.param(
            lambda d: d,
            {"model": "rational", "critical": "overhead", "reference_batch": 256.0},
            ValueError,
            "reference_batch",
            id="reference batch with the rational law",
        ),
        pytest.param(
            lambda d: d, {"response": "epochs"}, ValueError, "response", id="unknown response"
        ),
        pytest.param(
            lambda d: d,
            {"response": "examples"},
            ValueError,
            "'examples'",
            id="examples response without the column",
        ),
        pytest.param(
            lambda d: d,
            {"columns": {"steps": "K"}},
            ValueError,
            "'K'",
            id="columns maps to an absent column",
        ),
        pytest.param(
            lambda d: d.assign(weight=-1.0), {}, ValueError, "'weight'", id="negative weight"
        ),
        pytest.param(
            lambda d: d, {"check_every": 0}, ValueError, "check_every", id="zero check_every"
        ),
        pytest.param(
            lambda d: d.assign(reached=2), {}, ValueError, "'reached'", id="reached not 0/1"
        ),
        pytest.param(
            lambda d: d.assign(reached="yes"), {}, ValueError, "'reached'", id="reached as text"
        ),
        pytest.param(
            lambda d: d.assign(diverged=0.5),
            {},
            ValueError,
            "'diverged'",
            id="diverged not boolean",
        ),
        pytest.param(
            lambda d: d.assign(learning_rate=0.0),
            {},
            ValueError,
            "'learning_rate'",
            id="zero learning_rate",
        ),
        pytest.param(lambda d: d.assign(seed=np.nan), {}, ValueError, "'seed'", id="missing seeds"),
        pytest.param(lambda d: d, {"model": "quadratic"}, ValueError, "model", id="unknown model"),
        pytest.param(lambda d: d, {"level": 1.5}, ValueError, "level", id="level above 1"),
        pytest.param(lambda d: d, {"n_boot": -1}, ValueError, "n_boot", id="negative n_boot"),
        pytest.param(lambda d: d, {"n_boot": 2.5}, TypeError, "n_boot", id="fractional n_boot"),
        pytest.param(
            lambda d: d, {"censoring": "ignore"}, ValueError, "censoring", id="unknown censoring"
        ),
        pytest.param(
            lambda d: d, {"resample": "blocks"}, ValueError, "resample", id="unknown resample"
        ),
        pytest.param(
            lambda d: d, {"interval": "bca"}, ValueError, "interval", id="unknown interval"
        ),
        pytest.param(
            lambda d: d.drop(columns="seed"),
            {"resample": "seeds"},
            ValueError,
            "'seed'",
            id="resample by seeds without seeds",
        ),
        pytest.param(
            lambda d: d,
            {"tune_lr": True},
            ValueError,
            "'learning_rate'",
            id="tune_lr without learning rates",
        ),
        pytest.param(lambda d: d, {"overhead": 0.0}, ValueError, "overhead", id="zero overhead"),
        pytest.param(
            lambda d: d,
            {"by": ["optimizer"]},
            ValueError,
            "'optimizer'",
            id="by names an absent column",
        ),
        pytest.param(lambda d: [1, 2, 3], {}, TypeError, "results", id="results of the wrong type"),
        pytest.param(
            lambda d: "/nonexistent/runs.csv", {}, ValueError, "results path", id="missing file"
        ),
        pytest.param(lambda d: d.iloc[:0], {}, ValueError, "no rows", id="empty table"),
    ],
)
def test_bad_input_names_the_field(make, kwargs, error, match):
    kwargs = {"n_boot": 5, **kwargs}
    with pytest.raises(error, match=match):
        fit(make(_base()), **kwargs)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda: rational_steps(0.0, 1.0, 0.5), "batch_size", id="zero batch size"),
        pytest.param(lambda: rational_steps(4.0, -1.0, 0.5), "k_inf", id="negative k_inf"),
        pytest.param(lambda: inverse_steps(4.0, 1.0, -2.0), "alpha", id="negative alpha"),
        pytest.param(lambda: mccandlish_steps(4.0, 1.0, -2.0), "b_noise", id="negative b_noise"),
        pytest.param(
            lambda: rational_from_constants(1.0, 1.0, 2.0, 1.0),
            "epsilon",
            id="epsilon below the bias term",
        ),
        pytest.param(lambda: overhead_batch_size("cubic", {}), "model", id="unknown model"),
        pytest.param(
            lambda: overhead_batch_size("inverse", {"k_inf": 1.0}), "params", id="missing parameter"
        ),
        pytest.param(lambda: compare(_base(), models="inverse"), "models", id="models as a string"),
        pytest.param(lambda: percentile_interval(np.ones(3), 0.0), "level", id="level zero"),
    ],
)
def test_bad_formula_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_expanded_level_stays_below_one_with_two_seeds():
    # Two seeds per batch size: the expansion saturates; the interval is the bootstrap's range.
    widened = expanded_level(0.95, n_units=2, df=1)
    assert 0.95 < widened < 1.0
    lo, hi = percentile_interval(np.arange(100.0), widened)
    assert (lo, hi) == pytest.approx((0.0, 99.0), abs=1e-6)
