"""Budgets of SFO and epochs, and the loss gap to each problem's exact minimum, on every backend.

The property the issue asks for: two schedules compared at an equal SFO budget stop at the same
SFO to within one step's batch (``critbatch.targets``: a run stops before the step that would
cross the budget).
"""

from __future__ import annotations

import numpy as np
import pytest

import critbatch as cb
from critbatch import reference
from critbatch import schedules as sc
from critbatch import spec as cbspec
from critbatch.problems import min_loss
from critbatch.sweep import execute
from tests.conftest import Err

NQM = cb.problems.nqm_power_law(8)
CONSTANT = sc.schedule(name="constant")
GROWING = sc.schedule(batch=sc.geometric(5, 2.0), max_batch_size=64, name="growing")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"max_sfo": 0}, Err("max_sfo must be")),
        ({"max_sfo": 2.5}, Err("max_sfo", TypeError)),
        ({"max_epochs": 0.0}, Err("max_epochs must be positive")),
        ({"loss_gap_below": -1e-3}, Err("loss_gap_below must be")),
        ({"loss_gap_below": 1e-3, "max_sfo": 500}, "gap<=0.001"),
        ({"max_sfo": 500}, "budget 10000"),
    ],
    ids=[
        "a zero SFO budget is refused",
        "an SFO budget is an integer",
        "an epoch budget is positive",
        "a loss gap is non-negative",
        "a loss gap names the target",
        "an SFO budget alone is a budget",
    ],
)
def test_targets_validate_budgets_and_gaps(kwargs, expected):
    if isinstance(expected, Err):
        with expected.raises():
            cb.targets.target(**kwargs)
    else:
        assert cb.targets.target(**kwargs).name == expected


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_schedules_at_an_equal_sfo_budget_stop_at_the_same_sfo_to_one_batch(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    budget = 2000
    target = cb.targets.target(max_sfo=budget, check_every=7)
    plan = cb.make_plan(
        NQM, ["sgd", "adam"], [1, 3, 8], [0.05], 3, target, schedules=[CONSTANT, GROWING]
    )
    res = execute(plan, backend=backend)
    assert (res["stop_reason"] == "budget").all()
    sfo = res["sfo"]
    # the step not taken had a batch of at most 64 (the growing schedule's cap)
    assert (sfo <= budget).all()
    assert (sfo > budget - 64).all()
    constant = res["schedule"] == "constant"
    # a constant batch b stops within b of the budget: the next step would cross it
    b = res["batch_size"][constant]
    assert ((sfo[constant] + b > budget) & (sfo[constant] <= budget)).all()
    assert np.ptp(sfo) < 64


def test_the_backends_and_the_reference_agree_on_budget_stops_without_noise():
    quiet = cb.problems.nqm(np.linspace(0.1, 1.0, 6), np.zeros(6), 1.0)
    target = cb.targets.target(loss_below=1e-9, max_sfo=700, check_every=4)
    plan = cb.make_plan(quiet, "sgd", [3, 10], [0.2], 1, target, schedules=[CONSTANT, GROWING])
    core = execute(plan)
    jumps = execute(
        cb.make_plan(
            quiet,
            "sgd",
            [3, 10],
            [0.2],
            1,
            target,
            schedules=[CONSTANT, GROWING],
            mode="exact_jumps",
        )
    )
    refs = [
        reference.run(quiet, cb.optimizers.sgd(), s, target, int(b), 0.2, np.random.default_rng(0))
        for s in (CONSTANT, GROWING)
        for b in (3, 10)
    ]
    for column in ("steps", "sfo", "stop_reason"):
        expected = [r[column] for r in refs]
        assert core[column].tolist() == expected
        assert jumps[column].tolist() == expected
    pytest.importorskip("torch")
    torch = execute(plan, backend="torch")
    for column in ("steps", "sfo", "stop_reason"):
        assert torch[column].tolist() == core[column].tolist()


def test_an_epoch_budget_is_the_sfo_budget_ceil_epochs_times_n():
    ls = cb.problems.make_least_squares(n=50, d=3, seed=0)
    target = cb.targets.target(max_epochs=2.5, check_every=1000)
    assert target.sfo_budget(50) == 125
    res = cb.sweep(ls, "sgd", [4, 7], [0.05], 1, target)
    assert res["sfo"].tolist() == [124, 119]  # the next batch would pass 125
    assert (res["stop_reason"] == "budget").all()


def test_an_epoch_budget_needs_a_finite_data_set():
    target = cb.targets.target(max_epochs=1.0)
    with Err("target.max_epochs counts epochs, but problems[0] ('nqm')").raises():
        cb.make_plan(NQM, "sgd", [1], [0.1], 1, target)
    with Err("target.max_epochs").raises():
        target.sfo_budget(None)


def test_the_exact_minimum_of_each_problem():
    ls = cb.problems.make_least_squares(n=80, d=4, seed=1, l2=0.1)
    w = np.linalg.solve(ls.X.T @ ls.X / 80 + 0.1 * np.eye(4), ls.X.T @ ls.y / 80)
    assert min_loss(ls) == pytest.approx(reference.loss(ls, w), rel=1e-12)
    assert np.linalg.norm(reference.grad(ls, w)) < 1e-12
    logistic = cb.problems.make_logistic(n=80, d=3, seed=2, l2=0.01)
    f_star = min_loss(logistic)
    assert f_star <= reference.loss(logistic, logistic.x0)
    assert min_loss(NQM) == 0.0
    well = cb.problems.double_well(kappa=0.5, noise_std=0.1, dim=2)
    assert min_loss(well) == 0.0
    assert reference.loss(well, np.full(2, well.flat_minimum)) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_a_loss_gap_is_measured_from_the_exact_minimum(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    # full batches without replacement: gradient descent, the same on every backend
    ls = cb.problems.make_least_squares(n=40, d=3, seed=3, sampling="shuffle")
    f_star = min_loss(ls)
    gap = 1e-4
    target = cb.targets.target(loss_gap_below=gap, max_steps=5000, check_every=3)
    plan = cb.make_plan(ls, "sgd", [40], [0.3], 1, target)
    assert plan.min_losses == (f_star,)
    res = execute(plan, backend=backend)
    ref = reference.run(
        ls, cb.optimizers.sgd(), sc.schedule(), target, 40, 0.3, np.random.default_rng(0)
    )
    assert res["stop_reason"][0] == "reached" == ref["stop_reason"]
    assert res["steps"][0] == ref["steps"]
    assert res["final_loss"][0] - f_star <= gap
    # an absolute loss_below of the same value is a different, unreachable target here
    assert f_star > gap


def test_the_core_refuses_a_gap_without_the_minimum():
    from critbatch import _core

    plan = cb.make_plan(NQM, "sgd", [1], [0.1], 1, cb.targets.target(loss_gap_below=0.1))
    with Err("target.loss_gap_below needs the problem's exact minimum").raises():
        _core.run_plan(
            [p.to_core() for p in plan.problems],
            [o.to_core() for o in plan.optimizers],
            [s.to_core() for s in plan.schedules],
            plan.target.to_core(),
            plan.cells,
            0,
            1,
            0,
        )


def test_budgets_and_gaps_round_trip_through_a_spec():
    spec = cbspec.loads(
        'optimizers = ["sgd"]\nbatch_sizes = [2]\nlearning_rates = [0.1]\n'
        '[problem]\nkind = "least_squares"\nn = 30\nd = 2\n'
        "[target]\nloss_gap_below = 0.001\nmax_sfo = 900\nmax_epochs = 20.0\n"
    )
    assert (spec.target.loss_gap_below, spec.target.max_sfo, spec.target.max_epochs) == (
        0.001,
        900,
        20.0,
    )
    assert cbspec.loads(spec.to_toml()) == spec
    with pytest.raises(cbspec.SpecError, match="target: max_sfo must be a positive integer"):
        cbspec.loads(spec.to_toml().replace("max_sfo = 900", "max_sfo = 0"))
