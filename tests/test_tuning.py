"""best_learning_rate: the K(b) table at the best learning rate, against hand-made tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import critbatch as cb
from critbatch.tuning import best_learning_rate


def runs(rows):
    """rows: (batch_size, learning_rate, steps, reached) per run, one group."""
    b, lr, steps, reached = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "problem": "p",
            "optimizer": "sgd",
            "schedule": "c",
            "batch_size": b,
            "learning_rate": lr,
            "steps": steps,
            "reached": reached,
            "sfo": np.array(steps) * np.array(b),
        }
    )


# each case: runs at one batch size, expected (best lr, median steps, all_reached, lr_at_edge)
CASES = [
    pytest.param(
        [
            (4, 0.1, 30, True),
            (4, 0.1, 34, True),
            (4, 0.2, 20, True),
            (4, 0.2, 22, True),
            (4, 0.4, 9, True),
            (4, 0.4, 500, False),
        ],
        (0.2, 21.0, True, False),
        id="a fast lr with one failed run loses",
    ),
    pytest.param(
        [(4, 0.1, 20, True), (4, 0.2, 20, True), (4, 0.4, 25, True)],
        (0.1, 20.0, True, True),
        id="tie goes to the smaller lr",
    ),
    pytest.param(
        [
            (4, 0.1, 50, True),
            (4, 0.1, 500, False),
            (4, 0.1, 500, False),
            (4, 0.2, 40, True),
            (4, 0.2, 45, True),
            (4, 0.2, 500, False),
        ],
        (0.2, 45.0, False, True),
        id="no lr fully reached: most reached runs wins",
    ),
    pytest.param(
        [(4, 0.1, 10, True), (4, 0.1, 500, False), (4, 0.2, 12, True), (4, 0.2, 500, False)],
        (0.1, math.inf, False, True),
        id="half reached: median is infinite, smaller lr",
    ),
    pytest.param(
        [(4, 0.1, 30, True), (4, 0.2, 3, False)],
        (0.1, 30.0, True, True),
        id="an unreached run's small step count does not count",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), CASES)
def test_best_learning_rate_table(rows, expected):
    table = best_learning_rate(runs(rows))
    assert len(table) == 1
    row = table.iloc[0]
    got = (row["learning_rate"], row["steps"], bool(row["all_reached"]), bool(row["lr_at_edge"]))
    assert got == expected


def test_one_row_per_group_and_batch_size_with_sfo_at_the_same_lr():
    df = pd.concat(
        [
            runs([(1, 0.1, 100, True), (1, 0.2, 80, True)]),
            runs([(8, 0.1, 30, True), (8, 0.2, 20, True)]).assign(optimizer="adam"),
        ]
    )
    table = best_learning_rate(df)
    assert list(table["optimizer"]) == ["adam", "sgd"]
    assert list(table["batch_size"]) == [8, 1]
    assert list(table["sfo"]) == [160.0, 80.0]


def test_accepts_results_and_agrees_with_a_brute_force_choice():
    res = cb.sweep(
        cb.problems.nqm_power_law(4),
        ["sgd", "adam"],
        [1, 8],
        [0.05, 0.2, 0.8],
        3,
        cb.targets.target(loss_below=0.2, max_steps=400),
    )
    table = best_learning_rate(res)
    df = res.to_pandas()
    for _, row in table.iterrows():
        sub = df[(df.optimizer == row.optimizer) & (df.batch_size == row.batch_size)]
        scores = []
        for lr, at in sub.groupby("learning_rate"):
            ok = at.reached & ~at.diverged
            steps = np.where(ok, at.steps, np.inf)
            # The shared rule: fully reached first, then median steps, failed fraction, smaller lr.
            scores.append((not ok.all(), np.median(steps), 1 - ok.mean(), lr))
        assert min(scores)[3] == row.learning_rate


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(
            pd.DataFrame({"batch_size": [1]}), ValueError, "no column", id="missing columns"
        ),
        pytest.param(runs([(1, 0.1, 1, True)]).iloc[:0], ValueError, "no rows", id="empty table"),
        pytest.param(42, TypeError, "got int", id="not a table"),
    ],
)
def test_bad_input_is_rejected(data, error, message):
    with pytest.raises(error, match=message):
        best_learning_rate(data)


def test_a_single_learning_rate_is_not_at_an_edge():
    row = best_learning_rate(runs([(4, 0.1, 30, True), (4, 0.1, 32, True)])).iloc[0]
    assert not row["lr_at_edge"]


def test_a_run_that_reached_and_diverged_counts_as_failed():
    table = runs([(4, 0.1, 30, True), (4, 0.1, 32, True), (4, 0.2, 10, True), (4, 0.2, 12, True)])
    row = best_learning_rate(table.assign(diverged=[False, False, True, True])).iloc[0]
    assert row["learning_rate"] == 0.1
    assert row["n_reached"] == 2


def trial_runs(rows):
    """rows: (trial, learning_rate, u_learning_rate, u_momentum, steps) per run at b = 4."""
    trial, lr, u_lr, u_mu, steps = zip(*rows, strict=True)
    return runs([(4, x, k, True) for x, k in zip(lr, steps, strict=True)]).assign(
        trial=trial, momentum=0.9, u_learning_rate=u_lr, u_momentum=u_mu
    )


# each case: a search's runs at one batch size, expected (best trial, lr_at_edge)
TRIAL_CASES = [
    pytest.param(
        [(0, 0.1, 0.5, 0.5, 30), (1, 0.2, 0.6, 0.02, 20), (2, 0.4, 0.7, 0.5, 25)],
        (1, True),
        id="best trial's momentum at the edge of its range, lr interior",
    ),
    pytest.param(
        [(0, 0.1, 0.2, 0.5, 20), (1, 0.2, 0.6, 0.5, 30), (2, 0.4, 0.7, 0.5, 25)],
        (0, False),
        id="best trial at the smallest lr but inside the space: no edge",
    ),
    pytest.param(
        [(0, 0.1, 0.2, 0.5, 30), (1, 0.4, 0.97, 0.5, 20), (2, 0.2, 0.7, 0.5, 20)],
        (2, False),
        id="tie goes to the trial with the smaller lr",
    ),
]


@pytest.mark.parametrize(("rows", "expected"), TRIAL_CASES)
def test_the_best_trial_of_a_search_and_its_edge(rows, expected):
    table = best_learning_rate(trial_runs(rows))
    assert len(table) == 1
    row = table.iloc[0]
    assert (int(row["trial"]), bool(row["lr_at_edge"])) == expected
    assert row["momentum"] == 0.9
    assert "u_momentum" not in table.columns
    fitted = cb.fit.fit(
        pd.concat([trial_runs(rows), trial_runs(rows).assign(batch_size=16)]), n_boot=0
    )
    assert fitted.item().lr_status == ("edge" if expected[1] else "interior")
