"""The Perrone et al. 2019 example, reduced (least squares, b = 1..512, SGD).

What is asserted:

- the inverse law fits K(b) at the best learning rate (R^2 of log K >= 0.95) with positive
  K_inf and alpha, B_noise identified with the best learning rate inside the grid at every b, and
  predicts each median K(b) within 35 % (3 seeds per cell, 16 learning rates);
- M*'s interval (from B_noise's profile interval) contains M*, and the model's optimum with the
  measured t(b) interpolated lies within one grid step (factor 2) of the closed form's;
- the affine time per update t0 + t1 b is recovered exactly, and the time model
  K_fit(b)(t0 + t1 b) tracks the time to target within a factor 2 at every b;
- the closed-form M* lies within one grid step (factor 2) of the fastest b, or the time at the
  grid b nearest M* is within 35 % of the fastest (the flat bottom of T(b)).

No assertion depends on the machine's speed: the test replaces the example's clock by a cost
model, seconds per update T0 + T1 b times the updates a run takes (the runs themselves are real
and deterministic), so the time-optimal batch size is known exactly. The example itself times
CPU seconds of one thread.
"""

from __future__ import annotations

import numpy as np
import pytest

import critbatch as cb
from examples import perrone2019_time_optimal as ex

# The cost model of the test: seconds per update T0 + T1 b (a fixed cost per step and one per
# example), so that the closed form's M* = sqrt(B_noise T0 / T1) is in the grid's middle.
T0, T1 = 2e-5, 2e-7


def modelled_seconds(problem, b, lr, n_runs, target, seed):
    """The example's ``cpu_seconds`` with the cost model for a clock: updates after the first."""
    runs = cb.sweep(problem, "sgd", [b], [lr], n_runs, target, seed=seed, threads=1)
    return float(np.mean(runs["steps"] - 1)) * (T0 + T1 * b)


@pytest.fixture(scope="module")
def result():
    return ex.run(reduced=True, seconds_per_run=modelled_seconds)


def test_inverse_law_fits(result):
    law = result.law
    assert law.status == "identified"
    assert law.lr_status == "interior"
    assert law.r2_log >= 0.95
    assert law.params["k_inf"] > 0
    assert law.params["alpha"] > 0
    fitted = law.predict(result.batch_sizes)
    assert np.all(np.abs(fitted / result.table["median_steps"] - 1.0) < 0.35)


def test_time_optimal_batch_size_interval_and_measured_optimum(result):
    lo, hi = result.m_star_interval
    assert 0 < lo < result.m_star < hi < np.inf
    # both use the same measured t(b): the line through it or the points themselves; within one
    # grid step (factor 2) whatever the machine's load did to the timings
    assert 0.5 < result.m_star_measured / result.m_star < 2.0


def test_the_affine_time_per_update_is_recovered(result):
    assert result.t0 == pytest.approx(T0, rel=1e-9)
    assert result.t1 == pytest.approx(T1, rel=1e-9)
    assert result.table["cpu_per_step"].iloc[-1] > result.table["cpu_per_step"].iloc[0]


def test_time_model_tracks_measured_time(result):
    ratio = result.model_time / result.table["measured_time"].to_numpy()
    assert np.all((ratio > 0.5) & (ratio < 2.0))


def test_time_optimal_batch_size(result):
    assert 1.0 < result.m_star < result.batch_sizes.max()
    assert result.agree or result.time_loss_at_m_star_grid < 1.35


def test_report_and_figure(result, tmp_path):
    text = ex.report(result)
    assert "VERDICT: inverse law fits" in text
    path = ex.figure(result, tmp_path)
    assert path.exists()
    assert path.stat().st_size > 10_000
