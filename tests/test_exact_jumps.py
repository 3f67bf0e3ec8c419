"""Exact jumps on the NQM: the checkpoint law against the exact moments, K(b) against step runs.

Oracles: :func:`critbatch.theory.zhang2019.nqm_moments` (the exact second-moment recurrence,
written independently of the core) for the law at a checkpoint; the step-by-step core for the
distribution of the steps to target (two-sample tests); the Rust unit tests check the jump map
itself against the step map (noiseless, to rounding) and the covariance against its defining sum.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import critbatch as cb
from critbatch.theory import zhang2019

H = 1.0 / np.arange(1.0, 9.0)
X0 = np.ones(8)


def _problem() -> cb.problems.Problem:
    return cb.problems.nqm(H, H, X0)


OPTIMIZERS = [
    pytest.param(cb.optimizers.sgd(), 0.0, id="sgd"),
    pytest.param(cb.optimizers.heavy_ball(0.8), 0.8, id="heavy ball"),
]


@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZERS)
def test_checkpoint_loss_has_the_exact_mean_and_variance(optimizer, momentum):
    steps, batch, lr, runs = 40, 4, 0.2, 4000
    target = cb.targets.target(max_steps=steps, check_every=steps)
    res = cb.sweep(_problem(), optimizer, [batch], [lr], runs, target, mode="exact_jumps")
    assert (res["steps"] == steps).all()
    losses = res["final_loss"]
    m = zhang2019.nqm_moments(H, H, X0, lr, batch, steps, momentum=momentum)
    var_x = m.second_x - m.mean_x**2
    mean = 0.5 * float(np.sum(H * m.second_x))
    # each coordinate is Gaussian: Var(x^2) = 2 s^4 + 4 m^2 s^2
    var = float(np.sum(0.25 * H**2 * (2 * var_x**2 + 4 * m.mean_x**2 * var_x)))
    # 4 standard errors of the Monte Carlo mean
    assert abs(losses.mean() - mean) < 4 * np.sqrt(var / runs)
    # the sample variance: relative sd ~ sqrt((kurtosis - 1) / n) ~ 5 % here; allow 15 %
    assert losses.var() == pytest.approx(var, rel=0.15)


@pytest.mark.parametrize(("optimizer", "momentum"), OPTIMIZERS)
def test_steps_to_target_match_step_by_step_runs(optimizer, momentum):
    target = cb.targets.target(loss_below=0.05, max_steps=5000, check_every=10)
    args = (_problem(), optimizer, [2, 16], [0.3], 600, target)
    jumps = cb.sweep(*args, mode="exact_jumps", seed=1).to_pandas()
    steps = cb.sweep(*args, seed=2).to_pandas()
    for b in (2, 16):
        a = jumps.loc[jumps["batch_size"] == b, "steps"]
        c = steps.loc[steps["batch_size"] == b, "steps"]
        # two-sample tests on steps that take few values (multiples of 10): the discrete
        # Kolmogorov-Smirnov test is conservative, so a small p-value means a real difference
        assert stats.ks_2samp(a, c, method="asymp").pvalue > 1e-3, b
        assert stats.mannwhitneyu(a, c).pvalue > 1e-3, b
    assert (jumps["sfo"] == jumps["steps"] * jumps["batch_size"]).all()


def test_exact_jumps_are_reproducible_and_thread_independent():
    target = cb.targets.target(loss_below=0.05, max_steps=2000, check_every=25)
    args = (_problem(), "nesterov", [1, 8], [0.2, 0.4], 5, target)
    one = cb.sweep(*args, mode="exact_jumps", threads=1).to_pandas()
    two = cb.sweep(*args, mode="exact_jumps", threads=2).to_pandas()
    assert one.drop(columns="wall_time").equals(two.drop(columns="wall_time"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"optimizers": "adam"}, "exact_jumps", id="adam is not linear"),
        pytest.param(
            {"problems": "least_squares"}, "exact_jumps", id="a finite sum is not Gaussian"
        ),
        pytest.param(
            {"trajectory_every": 5}, "trajectory_every", id="no state between checkpoints"
        ),
        pytest.param({"backend": "torch"}, "exact_jumps", id="the core only"),
        pytest.param({"mode": "leaps"}, "mode", id="unknown mode"),
    ],
)
def test_what_exact_jumps_cannot_do_is_refused_up_front(kwargs, match):
    problems = cb.problems.make_least_squares(64, 4) if kwargs.pop("problems", "") else _problem()
    options = {"optimizers": "sgd", "mode": "exact_jumps", **kwargs}
    target = cb.targets.target(loss_below=0.1, max_steps=100, check_every=10)
    with pytest.raises(ValueError, match=match):
        cb.sweep(problems, options.pop("optimizers"), [4], [0.1], 2, target, **options)
