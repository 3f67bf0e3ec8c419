"""The McCandlish et al. 2018 example, reduced (least squares and logistic, SGD, b = 1..512).

What holds, and is asserted:

- S(B) = S_min(1 + B_noise/B) fits K(b) at the best learning rate (R^2 of log K >= 0.9);
- the two-batch estimate of B_simple (400 pairs of sizes 8 and 256) matches the exact
  tr(Σ)/|G|² from the n per-sample gradients within 30 % at every path point (oracle: the exact
  covariance; 30 % is about 3 standard errors of the ratio of means at the last point);
- B_noise grows monotonically along the gradient-descent path as the loss gap falls;
- the fitted critical batch size is identified and lies inside the range of B_noise seen along
  the path;
- the exact Hessian used for B_noise matches central differences of the reference gradient.

What does NOT hold under these conditions, and is asserted as such: the claim's pre-declared
form, "B_noise at the target within a factor 3 of the fitted B_crit". At the target (5 % of the
initial gap) the noise scale of these finite sums is 10-100x the fitted B_crit (the gradient
vanishes near the minimum while its per-sample variance does not); B_crit matches the noise
scale measured earlier in training (loss gap between about 20 % and 80 % of the initial one).
"""

from __future__ import annotations

import numpy as np
import pytest

from examples import mccandlish2018_noise_scale as ex

NAMES = ["least_squares", "logistic"]


@pytest.fixture(scope="module")
def result():
    return ex.run(reduced=True)


def _problem(result, name):
    return next(p for p in result.problems if p.name == name)


@pytest.mark.parametrize("name", NAMES)
def test_mccandlish_law_fits(result, name):
    p = _problem(result, name)
    assert p.fit.status == "identified"
    assert p.fit.r2_log >= 0.9
    assert 1 < p.fit.interval[0] < p.b_crit < p.fit.interval[1] < 512


@pytest.mark.parametrize("name", NAMES)
def test_hessian_matches_finite_differences_of_the_gradient(name):
    problem = (
        ex.cb.problems.make_least_squares(n=64, d=5, noise_std=0.5, seed=1)
        if name == "least_squares"
        else ex.cb.problems.make_logistic(n=64, d=5, seed=1)
    )
    w = np.random.default_rng(2).standard_normal(5)
    eps = 1e-6
    columns = [
        (ex.ref.grad(problem, w + eps * e) - ex.ref.grad(problem, w - eps * e)) / (2 * eps)
        for e in np.eye(5)
    ]
    np.testing.assert_allclose(ex.hessian(problem, w), np.array(columns).T, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_two_batch_estimate_matches_exact_b_simple(result, name):
    path = _problem(result, name).path
    np.testing.assert_allclose(path["b_simple_estimate"], path["b_simple"], rtol=0.3)


@pytest.mark.parametrize("name", NAMES)
def test_noise_scale_grows_along_training(result, name):
    assert np.all(np.diff(_problem(result, name).path["b_noise"]) > 0)


@pytest.mark.parametrize("name", NAMES)
def test_fitted_critical_batch_lies_within_noise_scales_seen(result, name):
    p = _problem(result, name)
    assert p.path["b_noise"].iloc[0] < p.b_crit < p.path["b_noise"].iloc[-1]
    assert 0.1 < p.matching_gap < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_noise_scale_at_target_overestimates_critical_batch(result, name):
    # the pre-declared claim fails here: see the module docstring
    p = _problem(result, name)
    assert not p.predicts
    assert p.ratio_noise < 1 / 3


def test_report_and_figure(result, tmp_path):
    text = ex.report(result)
    assert "VERDICT: NOT REPRODUCED" in text
    path = ex.figure(result, tmp_path)
    assert path.exists()
    assert path.stat().st_size > 10_000
