"""Common random numbers: shared noise across optimizers, schedules and learning rates.

What must hold (the issue): with common random numbers a paired comparison's interval is
narrower than the unpaired one on the same runs, and results still do not depend on threads or
chunking.
"""

from __future__ import annotations

import numpy as np
import pytest

import critbatch as cb
from critbatch import spec as cbspec
from critbatch.fit import compare_steps
from critbatch.sweep import execute
from tests.conftest import Err

NQM = cb.problems.nqm_power_law(16)
LSQ = cb.problems.make_least_squares(n=64, d=4, seed=0)
LSQ_SHUFFLE = cb.problems.make_least_squares(
    n=64, d=4, seed=0, sampling="shuffle", name="lsq_shuffle"
)
TARGET = cb.targets.target(loss_below=0.05, max_steps=20_000, check_every=5)
# heavy ball with momentum 0 takes SGD's steps exactly: with shared noise, the same runs
TWINS = [cb.optimizers.sgd(), cb.optimizers.heavy_ball(0.0, name="hb0")]
OUTCOMES = ("steps", "sfo", "stop_reason", "final_loss")


def _plan(crn, problems=NQM, seeds=3):
    target = cb.targets.target(loss_below=0.2, max_steps=5000, check_every=3)
    return cb.make_plan(problems, TWINS, [2, 8], [0.1], seeds, target, common_random_numbers=crn)


def _columns(res, rows):
    return {c: res[c][rows].tolist() for c in OUTCOMES}


@pytest.mark.parametrize("backend", ["rust", "torch"])
@pytest.mark.parametrize(
    "problem", [NQM, LSQ, LSQ_SHUFFLE], ids=["noise", "indices", "permutations"]
)
def test_runs_that_differ_only_in_optimizer_share_their_random_numbers(backend, problem):
    if backend == "torch":
        pytest.importorskip("torch")
    for crn in (True, False):
        res = execute(_plan(crn, problem), backend=backend)
        sgd, hb = res["optimizer"] == "sgd", res["optimizer"] == "hb0"
        same = _columns(res, sgd) == _columns(res, hb)
        assert same is crn


def test_replicates_batch_sizes_and_problems_keep_independent_streams():
    # the two problems are the same NQM under two names: only the key tells them apart
    res = execute(_plan(True, [NQM, cb.problems.nqm_power_law(16, name="nqm2")], seeds=4))
    losses = res["final_loss"][res["optimizer"] == "sgd"]
    assert np.unique(losses).size == losses.size


@pytest.mark.parametrize("backend", ["rust", "torch"])
def test_results_do_not_depend_on_threads_or_chunks(backend):
    if backend == "torch":
        pytest.importorskip("torch")
    plan = _plan(True, [NQM, LSQ], seeds=3)
    whole = execute(plan, backend=backend, threads=1)
    rows = np.random.default_rng(0).permutation(len(plan))
    parts = [
        (r, execute(plan.subset(r), backend=backend, threads=2)) for r in np.array_split(rows, 5)
    ]
    for c in OUTCOMES:
        got = np.empty(len(plan), dtype=whole[c].dtype)
        for r, part in parts:
            got[r] = part[c]
        if c == "final_loss" and backend == "torch":
            # torch's matrix products may round differently with the runs of a call
            np.testing.assert_allclose(got, whole[c], rtol=1e-12)
        else:
            assert got.tolist() == whole[c].tolist()


def test_the_default_keeps_the_run_index_streams():
    plan = cb.make_plan(NQM, "sgd", [2], [0.1], 2, TARGET)
    assert plan.common_random_numbers is False
    assert plan.subset(slice(0, 1)).common_random_numbers is False
    assert _plan(True).subset(slice(0, 1)).common_random_numbers is True
    with Err("common_random_numbers must be a bool", TypeError).raises():
        cb.make_plan(NQM, "sgd", [2], [0.1], 2, TARGET, common_random_numbers=1)


def test_the_spec_option_round_trips_and_only_when_set():
    text = (
        'optimizers = ["sgd", "adam"]\nbatch_sizes = [2]\nlearning_rates = [0.1]\n'
        '[problem]\nkind = "nqm_power_law"\ndim = 4\n'
    )
    off = cbspec.loads(text)
    on = cbspec.loads("common_random_numbers = true\n" + text)
    assert (off.common_random_numbers, on.common_random_numbers) == (False, True)
    assert "common_random_numbers" not in off.to_dict()
    assert cbspec.loads(on.to_toml()) == on
    assert on.hash() != off.hash()
    assert on.to_plan().common_random_numbers
    with pytest.raises(cbspec.SpecError, match="common_random_numbers: value must be true or"):
        cbspec.loads('common_random_numbers = "yes"\n' + text)


def _widths(crn):
    """Log widths of the paired and unpaired intervals of K(lr=0.1) / K(lr=0.09), per b."""
    target = cb.targets.target(loss_gap_below=0.01, max_steps=20_000, check_every=2)
    plan = cb.make_plan(
        cb.problems.make_least_squares(n=256, d=8, seed=0),
        "sgd",
        [1, 4, 16],
        [0.09, 0.1],
        16,
        target,
        common_random_numbers=crn,
        seed=3,
    )
    res = execute(plan)
    out = {}
    for paired in (True, False):
        rows = compare_steps(res, "0.1", "0.09", by=["learning_rate"], paired=paired)
        assert (rows["n_unreached"] == 0).all()
        assert (rows["n"] == 16).all()
        out[paired] = np.log(rows["high"] / rows["low"]).to_numpy()
    return out


def test_common_random_numbers_narrow_the_paired_interval():
    # Least squares, two learning rates, 16 replicates, fixed seeds. Measured log widths:
    # CRN paired [0.21, 0.09, 0.08] against unpaired [0.98, 0.41, 0.17] on the same runs, and
    # against paired without CRN [0.64, 0.40, 0.17] (which gains nothing on unpaired); the
    # margin below (1.5x) leaves room for the spread of a 16-replicate width.
    on, off = _widths(True), _widths(False)
    assert (on[True] * 1.5 < on[False]).all()
    assert (on[True] * 1.5 < off[True]).all()


def test_final_losses_at_an_equal_budget_compare_paired_and_refuse_a_zero():
    # Two learning rates on least squares, every run stopped by the same SFO budget: the paired
    # ratio of final losses equals the geometric mean of the per-seed ratios, computed here.
    budget = cb.targets.target(max_sfo=400, max_steps=10_000)
    plan = cb.make_plan(LSQ, "sgd", [4], [0.05, 0.1], 8, budget, common_random_numbers=True)
    frame = execute(plan).to_pandas()
    rows = compare_steps(frame, "0.1", "0.05", by=["learning_rate"], response="final_loss")
    loss = frame.pivot(index="seed", columns="learning_rate", values="final_loss")
    want = float(np.exp(np.mean(np.log(loss[0.1] / loss[0.05]))))
    assert rows["estimate"].iloc[0] == pytest.approx(want, rel=1e-12)
    assert rows["low"].iloc[0] < want < rows["high"].iloc[0]
    zero = frame.assign(final_loss=np.where(frame["seed"] == 3, 0.0, frame["final_loss"]))
    with pytest.raises(ValueError, match="response='final_loss' must be finite and positive"):
        compare_steps(zero, "0.1", "0.05", by=["learning_rate"], response="final_loss")
    diff = compare_steps(
        frame, "0.1", "0.05", by=["learning_rate"], response="final_loss", statistic="difference"
    )
    want = float((loss[0.1] - loss[0.05]).mean())
    assert diff["estimate"].iloc[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("problem", [NQM, LSQ, LSQ_SHUFFLE], ids=lambda p: p.name)
def test_a_group_of_runs_sharing_their_draws_gives_each_its_own_record(problem):
    # the core steps the runs of one stream together (one draw per step for all of them): each
    # record must be bitwise the one its cell gives run alone, and the wall times add up
    optimizers = [cb.optimizers.sgd(), cb.optimizers.heavy_ball(0.5), cb.optimizers.adam()]
    plan = cb.make_plan(
        problem, optimizers, [2, 8], [0.02, 0.1, 0.5, 3.0], 2, TARGET, common_random_numbers=True
    )
    together = execute(plan, threads=2)
    alone = [execute(plan.subset(np.array([i])), threads=1) for i in range(len(plan))]
    for column in (*OUTCOMES, "final_grad_norm", "final_x0"):
        got = together[column].tolist()
        assert got == [a[column].tolist()[0] for a in alone], column
    assert len(set(together["steps"].tolist())) > 3  # the runs leave their groups at many steps
    assert np.all(together["wall_time"] > 0)
