"""Quasi-random search per batch size: the tuned K(b) against the exact NQM optimum."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import qmc

import critbatch as cb
from critbatch import search
from critbatch.theory import zhang2019

# A flat spectrum in many coordinates: the loss concentrates around its expectation, so the
# steps at which a run first meets the target approach the exact expected-loss steps.
D = 400
H = np.linspace(0.5, 1.0, D)
C = 4 * H
X0 = np.ones(D)
TAU = 0.05 * 0.5 * float(np.sum(H * X0**2))


def test_tuned_steps_match_the_exact_optimum_per_batch_size():
    problem = cb.problems.nqm(H, C, X0)
    target = cb.targets.target(loss_below=TAU, max_steps=20_000)
    batch_sizes = [2, 8, 32]
    space = search.space("sgd", learning_rate=(1e-2, 1.9))
    runs = search.search(problem, space, batch_sizes, 3, target, n_trials=32, seed=3)
    # the same trial points at every batch size
    points = {
        b: part[["trial", "learning_rate"]].drop_duplicates().sort_values("trial")
        for b, part in runs.groupby("batch_size")
    }
    first = next(iter(points.values())).to_numpy()
    assert all(np.array_equal(p.to_numpy(), first) for p in points.values())
    assert len(first) == 32
    best = search.best_trials(runs, space, n_boot=200)
    exact = zhang2019.optimal_lr_steps(
        H, C, X0, batch_sizes, np.geomspace(1e-2, 1.9, 2000), TAU, max_steps=20_000
    )
    # measured: tuned [79, 20, 5] with intervals [77, 89], [19, 22], [5, 6]; exact [81, 21, 6]
    for row, k_exact in zip(best.itertuples(), exact.steps, strict=True):
        assert row.low <= k_exact <= row.high, (row.batch_size, row.steps, k_exact)
        assert not row.at_edge
        assert row.all_reached


def test_trials_are_the_declared_quasi_random_points():
    space = search.space("heavy_ball", learning_rate=(1e-3, 1.0), momentum=(0.5, 0.999))
    points = search.trials(space, 16, seed=4, method="sobol")
    u = qmc.Sobol(2, scramble=True, seed=4).random_base2(4)
    np.testing.assert_allclose(points[["u_learning_rate", "u_momentum"]].to_numpy(), u)
    np.testing.assert_allclose(points["learning_rate"], 1e-3 * 1000.0 ** u[:, 0])
    # 1 - momentum is log-uniform between 0.5 and 0.001
    np.testing.assert_allclose(1 - points["momentum"], 0.5 * (0.001 / 0.5) ** u[:, 1])
    assert search.trials(space, 16, seed=4, method="sobol").equals(points)


def test_a_best_trial_at_the_edge_of_the_space_is_flagged():
    problem = cb.problems.nqm_power_law(8)
    target = cb.targets.target(loss_below=0.1, max_steps=5000)
    space = search.space("sgd", learning_rate=(1e-3, 1e-2))  # far below the best rate
    runs = search.search(problem, space, [4, 16], 2, target, n_trials=8)
    best = search.best_trials(runs, space, n_boot=0)
    assert best["at_edge"].all()
    assert np.isnan(best["low"]).all()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: search.space("lion", learning_rate=(0.1, 1.0)),
            "optimizer",
            id="unknown optimizer",
        ),
        pytest.param(
            lambda: search.space("sgd", momentum=(0.1, 0.9)),
            "learning_rate",
            id="no learning-rate range",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(0.1, 1.0), momentum=(0.1, 0.9)),
            "momentum",
            id="momentum for sgd",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(1.0, 0.1)),
            "low must be below",
            id="reversed range",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(0.0, 1.0)),
            "low > 0",
            id="log range from zero",
        ),
        pytest.param(
            lambda: search.space("adam", learning_rate=(0.1, 1.0), beta2=(0.9, 1.0)),
            "beta2",
            id="beta2 up to one",
        ),
        pytest.param(
            lambda: search.trials(
                search.space("sgd", learning_rate=(0.1, 1.0)), 12, method="sobol"
            ),
            "power of two",
            id="sobol budget",
        ),
    ],
)
def test_bad_search_spaces_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
