"""The torch backend against independent oracles: torch.optim, torch.autograd, the NumPy reference.

Exact checks (float64, rtol 1e-12) where the computation is deterministic; two-sample tests with
fixed seeds where it is random (the torch streams match the reference's in distribution only).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

import critbatch as cb  # noqa: E402
from critbatch import optimizers as opt  # noqa: E402
from critbatch import problems as pb  # noqa: E402
from critbatch import reference  # noqa: E402
from critbatch import schedules as sc  # noqa: E402
from critbatch.targets import target  # noqa: E402
from critbatch.torch import problems as tp  # noqa: E402
from critbatch.torch.optimizers import from_spec  # noqa: E402
from critbatch.torch.rng import Streams  # noqa: E402
from critbatch.torch.runner import run_plan  # noqa: E402
from tests.conftest import OPTIMIZER_IDS, OPTIMIZERS, Err  # noqa: E402

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# ---------------------------------------------------------------------------------------------
# Optimizers: the batched rules against torch.optim and the NumPy reference, step for step.


def gradient_sequences(runs=3, steps=40, dim=4, seed=0):
    """Per-run gradient sequences (with a quiet stretch, so AMSGrad's maximum matters)."""
    rng = np.random.default_rng(seed)
    grads = rng.standard_normal((runs, steps, dim)) * np.linspace(0.1, 3.0, steps)[None, :, None]
    grads[:, 10:15] *= 1e-3
    lrs = 0.05 * (1 + np.sin(np.arange(steps)))[None, :] * np.array([1.0, 0.3, 2.0])[:runs, None]
    return rng.standard_normal((runs, dim)), grads, lrs


def batched_trajectory(spec, x0, grads, lrs):
    rule = from_spec(spec)
    x = torch.tensor(x0, dtype=F64)
    state = rule.init(x)
    out = []
    for k in range(grads.shape[1]):
        rule.step(
            x, torch.tensor(grads[:, k], dtype=F64), torch.tensor(lrs[:, k : k + 1]), state, k + 1
        )
        out.append(x.clone().numpy())
    return np.stack(out, axis=1)


def torch_optim_trajectory(spec, x0, grads, lrs):
    param = torch.nn.Parameter(torch.tensor(x0, dtype=F64))
    if spec.kind in ("sgd", "heavy_ball", "nesterov"):
        optim = torch.optim.SGD(
            [param],
            lr=1.0,
            momentum=spec.momentum,
            dampening=spec.dampening,
            nesterov=spec.kind == "nesterov",
        )
    elif spec.kind == "adam":
        optim = torch.optim.Adam(
            [param], lr=1.0, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad, foreach=False
        )
    else:
        optim = torch.optim.RMSprop(
            [param],
            lr=1.0,
            alpha=spec.alpha,
            eps=spec.eps,
            momentum=spec.momentum,
            centered=spec.centered,
        )
    out = []
    for g, lr in zip(grads, lrs, strict=True):
        optim.param_groups[0]["lr"] = float(lr)
        param.grad = torch.tensor(g, dtype=F64)
        optim.step()
        out.append(param.detach().clone().numpy())
    return np.stack(out)


@pytest.mark.parametrize("spec", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_batched_rule_matches_torch_optim_run_by_run(spec):
    x0, grads, lrs = gradient_sequences()
    batched = batched_trajectory(spec, x0, grads, lrs)
    for r in range(x0.shape[0]):
        # 1e-12 relative: the same arithmetic up to the order of a few roundings.
        want = torch_optim_trajectory(spec, x0[r], grads[r], lrs[r])
        np.testing.assert_allclose(batched[r], want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("spec", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_batched_rule_matches_the_numpy_reference(spec):
    x0, grads, lrs = gradient_sequences(seed=1)
    batched = batched_trajectory(spec, x0, grads, lrs)
    for r in range(x0.shape[0]):
        ref = reference.optimizer_trajectory(spec, x0[r], grads[r], lrs[r])
        np.testing.assert_allclose(batched[r], ref, rtol=1e-12, atol=1e-14)


def test_from_spec_rejects_a_non_spec():
    with Err("optimizer must be a critbatch Optimizer", TypeError).raises():
        from_spec("adam")


# ---------------------------------------------------------------------------------------------
# Problems: exact loss against the NumPy reference, exact gradient against autograd.

PROBLEMS = {
    "nqm": pb.nqm_power_law(6, p=1.5, s=0.5),
    "least_squares_l2": pb.make_least_squares(64, 5, l2=0.1, seed=1),
    "logistic": pb.make_logistic(64, 5, seed=2),
    "robust_geman_mcclure": pb.make_robust_regression(64, 5, seed=3),
    "robust_cauchy": pb.make_robust_regression(64, 5, loss="cauchy", scale=0.7, seed=4),
    "teacher_student": pb.make_teacher_student(64, 3, width=3, seed=5),
    "double_well": pb.double_well(kappa=0.5, dim=6, wall_offset=0.3, wall_stiffness=5.0),
    "double_well_symmetric": pb.double_well(kappa=0.0, dim=6, wall_offset=0.5),
}


def points(problem, runs=5, seed=0):
    """Iterates spread around the start; the double wells' reach past the wall and the barrier."""
    rng = np.random.default_rng(seed)
    scale = 2.0 if isinstance(problem, pb.DoubleWell) else 0.7
    return problem.x0[None, :] + scale * rng.standard_normal((runs, problem.dim))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_exact_loss_matches_the_numpy_reference(name):
    problem = PROBLEMS[name]
    xs = points(problem)
    got = tp.build(problem, "cpu", F64).loss(torch.tensor(xs)).numpy()
    want = [reference.loss(problem, x) for x in xs]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_exact_gradient_matches_autograd(name):
    problem = PROBLEMS[name]
    torch_problem = tp.build(problem, "cpu", F64)
    x = torch.tensor(points(problem, seed=1), requires_grad=True)
    torch_problem.loss(x).sum().backward()
    loss, grad = torch_problem.loss_grad(x.detach())
    np.testing.assert_allclose(grad.numpy(), x.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss.numpy(), torch_problem.loss(x.detach()).numpy(), rtol=1e-14)


def test_double_well_wall_acts_only_beyond_its_position():
    problem = pb.double_well(kappa=0.5, wall_offset=0.3, wall_stiffness=5.0)
    wall = problem.flat_minimum - 0.3
    torch_problem = tp.build(problem, "cpu", F64)
    xs = torch.tensor([[wall + 1e-3], [wall - 0.2]], dtype=F64)
    phi = torch.expm1(0.5 * xs) / 0.5
    bare = (phi * phi - 1.0) ** 2
    extra = torch_problem.loss(xs) - bare[:, 0]
    np.testing.assert_allclose(extra.numpy(), [0.0, 0.5 * 5.0 * 0.2**2], rtol=1e-12, atol=1e-15)


FINITE = [
    "least_squares_l2",
    "logistic",
    "robust_geman_mcclure",
    "robust_cauchy",
    "teacher_student",
]


@pytest.mark.parametrize("dense", [False, True], ids=["gathered rows", "dense weights"])
@pytest.mark.parametrize("name", FINITE)
def test_minibatch_gradient_is_the_mean_of_the_reference_sample_gradients(name, dense):
    problem = PROBLEMS[name]
    torch_problem = tp.build(problem, "cpu", F64)
    xs = points(problem, runs=3, seed=2)
    batch = np.array([1, 7, 20])
    rng = np.random.default_rng(3)
    rows = rng.integers(0, problem.n_samples, (3, 20))
    weights = (np.arange(20)[None, :] < batch[:, None]) / batch[:, None]
    x = torch.tensor(xs)
    if dense:
        w = torch.zeros(3, problem.n_samples, dtype=F64)
        w.scatter_add_(1, torch.tensor(rows), torch.tensor(weights))
        got = torch_problem.weighted(x, None, w)[1]
    else:
        got = torch_problem.weighted(x, torch.tensor(rows), torch.tensor(weights))[1]
    for r in range(3):
        want = reference.sample_grads(problem, xs[r], rows[r, : batch[r]]).mean(axis=0)
        np.testing.assert_allclose(got[r].numpy(), want, rtol=1e-11, atol=1e-13)


def test_gradient_blocks_sum_to_the_unblocked_gradient():
    problem = PROBLEMS["teacher_student"]
    whole = tp.build(problem, "cpu", F64)
    blocked = tp.FiniteSum(problem, "cpu", F64, block_elements=50)  # blocks of a few samples
    x = torch.tensor(points(problem))
    np.testing.assert_allclose(
        blocked.loss_grad(x)[1].numpy(), whole.loss_grad(x)[1].numpy(), rtol=1e-12, atol=1e-14
    )


def draw_steps(sampler, sizes, steps):
    batch = tp.Batch(np.array(sizes), "cpu")
    out = []
    for t in range(steps):
        sampler.advance(batch)
        out.append(sampler.draw(t, batch.width))
        sampler.finish(batch)
    return out


def test_shuffle_sampler_visits_every_row_once_per_epoch_and_drops_the_rest():
    sampler = tp.ShuffleSampler(10, Streams(0, np.array([0, 1]), "cpu"))
    epoch = draw_steps(sampler, [3, 5], 3)
    # Run 0 takes 3 + 3 + 3 of a permutation (one row dropped), run 1 takes 5 + 5 of one and
    # starts a new permutation at its third draw.
    first = torch.cat([e[0, :3] for e in epoch]).tolist()
    assert len(set(first)) == 9
    second = torch.cat([e[1, :5] for e in epoch[:2]]).tolist()
    assert sorted(second) == list(range(10))
    assert sampler.pos.tolist() == [9, 5]
    assert sampler.pos_dev.tolist() == [9, 5]
    assert sampler.epoch.tolist() == [1, 2]


@pytest.mark.parametrize(
    "kind", [tp.ShuffleSampler, tp.ReplacementSampler], ids=["shuffle", "with replacement"]
)
def test_a_runs_minibatches_do_not_depend_on_the_runs_beside_it(kind):
    # Run 5's indices alone, and beside runs 3 and 9 with other batch sizes: the same rows.
    alone = draw_steps(kind(50, Streams(4, np.array([5]), "cpu")), [8], 12)
    together = draw_steps(kind(50, Streams(4, np.array([3, 5, 9]), "cpu")), [20, 8, 1], 12)
    for a, b in zip(alone, together, strict=True):
        assert a[0].tolist() == b[1, :8].tolist()


def test_streams_match_the_documented_splitmix_construction():
    from critbatch.torch import rng

    key = rng.purpose_key(rng.run_key(3, 7), rng.INDICES)
    state = (key + 5 * rng.GOLDEN) & rng.MASK64  # position 4 of counter 0: state k + 5 gamma
    want = rng._mix(state)
    got = Streams(3, np.array([7]), "cpu").words(rng.INDICES, 0, 8, 8)[0, 4].item()
    assert got % 2**64 == want
    normals = Streams(0, np.arange(64), "cpu").normal(rng.NOISE, 0, 500, torch.float64)
    # 32,000 draws: mean within 4 standard errors of 0, variance within 4 % of 1.
    assert abs(normals.mean().item()) < 4 / math.sqrt(normals.numel())
    assert normals.var().item() == pytest.approx(1.0, abs=0.04)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (pb.nqm([1.0], [1.0]), tp.Nqm),
        (pb.double_well(), tp.DoubleWell),
        (pb.make_logistic(16, 2), tp.FiniteSum),
        ("nqm", Err("problem must be a critbatch problem spec, got str", TypeError)),
    ],
    ids=["nqm", "double well", "finite sum", "a string is refused"],
)
def test_build(spec, expected):
    if isinstance(expected, Err):
        with expected.raises():
            tp.build(spec, "cpu", F64)
    else:
        assert isinstance(tp.build(spec, "cpu", F64), expected)


# ---------------------------------------------------------------------------------------------
# Schedules: the one Python implementation (arrays, which the runner uses) against the
# reference's own scalar arithmetic.

RULES = [
    sc.constant(),
    sc.step_decay(3, 0.5),
    sc.cosine(7, min_factor=0.1),
    sc.geometric(2, 3.0, max_factor=20),
    sc.polynomial(2, 0.5, max_factor=3),
    sc.linear(1.5, 2.0, max_factor=9),
    sc.linear(1.5, 0.0, max_factor=0.5),
]


@pytest.mark.parametrize("rule", RULES, ids=[f"{r.kind}-{i}" for i, r in enumerate(RULES)])
def test_array_factor_equals_the_reference_scalar_factor(rule):
    t = np.linspace(0.0, 12.0, 49)
    got = rule.factor(t)
    assert got.tolist() == [rule.factor(float(s)) for s in t]
    np.testing.assert_allclose(got, [reference.rule_factor(rule, float(s)) for s in t], rtol=1e-15)


def test_warmup_and_batch_sizes_equal_the_reference():
    schedule = sc.schedule(
        lr=sc.step_decay(4, 0.5),
        batch=sc.geometric(3, 2.0),
        warmup=5,
        warmup_start=0.2,
        max_batch_size=40,
    )
    t = np.arange(30)
    lrs = [reference.lr_at(schedule, 0.1, int(s), 0, None) for s in t]
    np.testing.assert_allclose(0.1 * schedule.lr_factor(t), lrs, rtol=1e-15)
    sizes = [reference.batch_size_at(schedule, 3, int(s), 0, None, None) for s in t]
    assert schedule.batch_size(3, t).tolist() == sizes


# ---------------------------------------------------------------------------------------------
# Whole runs: deterministic cases step for step against the NumPy reference run.


def reference_records(plan):
    """The NumPy reference run of every cell (its rng is irrelevant for noiseless problems)."""
    out = []
    for i in range(len(plan)):
        cell = {k: c[i] for k, c in plan.cells.items()}
        out.append(
            reference.run(
                plan.problems[cell["problem_index"]],
                plan.optimizers[cell["optimizer_index"]],
                plan.schedules[cell["schedule_index"]],
                plan.target,
                int(cell["batch_size"]),
                float(cell["learning_rate"]),
                np.random.default_rng(i),
                trajectory_every=plan.trajectory_every,
            )
        )
    return out


def assert_same_records(out, records):
    for name in ("steps", "sfo", "reached", "diverged"):
        assert out[name].tolist() == [r[name] for r in records], name
    for name in ("final_loss", "final_grad_norm", "final_x0"):
        np.testing.assert_allclose(
            out[name], [r[name] for r in records], rtol=1e-10, atol=1e-300, err_msg=name
        )


NOISELESS_NQM = pb.nqm(np.geomspace(1.0, 0.05, 8), np.zeros(8), 1.0, name="noiseless")
FULL_BATCH_LS = pb.make_least_squares(64, 6, sampling="shuffle", seed=7, name="full_batch")
DETERMINISTIC = [
    # Several learning rates in one chunk: the fast runs stop (and are removed) while the slow
    # ones go on; the largest diverges (2/h_max = 2) at a check every 3 steps.
    (
        "sgd, lr grid, one diverging",
        NOISELESS_NQM,
        opt.sgd(),
        sc.schedule(),
        [4],
        [0.3, 1.0, 1.9, 2.5],
        target(loss_below=1e-3, check_every=3, max_steps=400),
    ),
    (
        "adam with a step-count budget",
        NOISELESS_NQM,
        opt.adam(),
        sc.schedule(),
        [2],
        [0.01, 0.1],
        target(loss_below=1e-4, max_steps=150),
    ),
    (
        "nesterov, geometric batch growth, capped",
        NOISELESS_NQM,
        opt.nesterov(0.8),
        sc.schedule(batch=sc.geometric(5, 2.0), max_batch_size=40),
        [1, 3],
        [0.2],
        target(grad_norm_below=1e-3, max_steps=300),
    ),
    (
        "rmsprop, cosine learning rate",
        NOISELESS_NQM,
        opt.rmsprop(momentum=0.5, centered=True),
        sc.schedule(lr=sc.cosine(60, min_factor=0.1)),
        [1],
        [0.01, 0.03],
        target(position_below=(0, 0.01), max_steps=200),
    ),
    # b0 = n under shuffle: each step is a full-batch gradient step, whatever the permutation;
    # the learning rate decays per epoch (time = SFO / n) and the batch growth is capped at n.
    (
        "full-batch least squares, epoch schedules",
        FULL_BATCH_LS,
        opt.heavy_ball(0.5),
        sc.schedule(lr=sc.step_decay(10, 0.5, unit="epoch"), batch=sc.linear(2, 1.0, unit="epoch")),
        [64],
        [0.05, 0.2],
        target(grad_norm_below=1e-6, check_every=4, max_steps=500),
    ),
]


@pytest.mark.parametrize(
    ("problem", "optimizer", "schedule", "bs", "lrs", "tgt"),
    [c[1:] for c in DETERMINISTIC],
    ids=[c[0] for c in DETERMINISTIC],
)
def test_noiseless_runs_match_the_reference_run_exactly(problem, optimizer, schedule, bs, lrs, tgt):
    plan = cb.make_plan(problem, optimizer, bs, lrs, 2, tgt, schedules=schedule, trajectory_every=7)
    out = run_plan(plan, max_chunk_runs=64)
    records = reference_records(plan)
    assert_same_records(run_plan(plan, max_chunk_runs=1), records)
    assert_same_records(out, records)
    for got, rec in zip(out["trajectories"], records, strict=True):
        np.testing.assert_allclose(got, rec["trajectory"], rtol=1e-10, atol=1e-300)


def test_the_deterministic_table_covers_reached_diverged_and_exhausted_runs():
    outcomes = set()
    for _, problem, optimizer, schedule, bs, lrs, tgt in DETERMINISTIC:
        out = run_plan(cb.make_plan(problem, optimizer, bs, lrs, 1, tgt, schedules=schedule))
        outcomes |= {
            ("reached" if r else "diverged" if d else "exhausted")
            for r, d in zip(out["reached"], out["diverged"], strict=True)
        }
    assert outcomes == {"reached", "diverged", "exhausted"}


def test_stopped_runs_are_frozen_at_their_stop():
    # A noiseless run's record cannot depend on the other runs of its chunk.
    tgt = target(loss_below=1e-3, max_steps=400)
    together = run_plan(cb.make_plan(NOISELESS_NQM, "sgd", [1], [0.2, 0.5, 1.5], 1, tgt))
    for i, lr in enumerate((0.2, 0.5, 1.5)):
        alone = run_plan(cb.make_plan(NOISELESS_NQM, "sgd", [1], [lr], 1, tgt))
        for name in ("steps", "final_loss", "final_x0"):
            assert together[name][i] == alone[name][0]


def test_divergence_is_recorded_at_the_first_check_past_the_level():
    # x_t = (1 - lr h)^t with lr h = 3: f_t = 0.5 * 4^t > 10 * max(f_0, 1) first at t = 3;
    # checks every 2 steps see it at t = 4.
    problem = pb.nqm([1.0], [0.0], 1.0)
    out = run_plan(
        cb.make_plan(
            problem,
            "sgd",
            [1],
            [3.0],
            1,
            target(loss_below=1e-6, divergence_factor=10, check_every=2),
        )
    )
    assert (out["steps"][0], out["diverged"][0], out["reached"][0]) == (4, True, False)
    assert out["final_loss"][0] == 0.5 * 4.0**4


def test_a_run_that_overflows_is_diverged_not_reached():
    out = run_plan(
        cb.make_plan(
            pb.nqm([1.0], [0.0], 1.0),
            "sgd",
            [1],
            [1e200],
            1,
            target(loss_below=1e-6, check_every=5, divergence_factor=math.inf),
        )
    )
    assert (out["diverged"][0], out["reached"][0], out["steps"][0]) == (True, False, 5)


# ---------------------------------------------------------------------------------------------
# Noisy runs: budgets, SFO accounting, reproducibility, and distributions against the reference.


def test_sfo_is_the_sum_of_the_scheduled_batch_sizes():
    schedule = sc.schedule(batch=sc.geometric(4, 2.0), max_batch_size=50)
    plan = cb.make_plan(
        pb.nqm_power_law(10, s=2.0),
        "sgd",
        [1, 3, 7],
        [0.3, 0.6],
        4,
        target(loss_below=0.05, check_every=3, max_steps=60),
        schedules=schedule,
    )
    out = run_plan(plan)
    for b0, steps, sfo in zip(plan.cells["batch_size"], out["steps"], out["sfo"], strict=True):
        assert sfo == sum(min(math.ceil(b0 * 2.0 ** (t // 4)), 50) for t in range(steps))
    assert (out["steps"] <= 60).all()
    assert (out["steps"] % 3 == 0).all()
    assert (out["reached"] | (out["steps"] == 60) | out["diverged"]).all()


def test_same_plan_reproduces_and_another_seed_does_not():
    plan = cb.make_plan(
        [pb.nqm_power_law(8), pb.make_least_squares(128, 4)],
        ["sgd", "adam"],
        [2, 16],
        [0.05],
        3,
        target(max_steps=30),
        trajectory_every=10,
    )
    first, again = run_plan(plan), run_plan(plan)
    for name in ("steps", "sfo", "final_loss", "final_x0"):
        assert first[name].tolist() == again[name].tolist()
    other = run_plan(
        cb.make_plan(
            [pb.nqm_power_law(8), pb.make_least_squares(128, 4)],
            ["sgd", "adam"],
            [2, 16],
            [0.05],
            3,
            target(max_steps=30),
            seed=1,
        )
    )
    assert (first["final_loss"] != other["final_loss"]).all()
    assert [len(t) for t in first["trajectories"]] == [4] * len(plan)


def steps_samples(problem, optimizer, b, lr, tgt, runs):
    """Steps to target from the torch backend and from the NumPy reference, ``runs`` each."""
    plan = cb.make_plan(problem, optimizer, [b], [lr], runs, tgt, seed=13)
    torch_steps = run_plan(plan)["steps"]
    rng = np.random.default_rng(12)
    ref_steps = [
        reference.run(problem, plan.optimizers[0], plan.schedules[0], tgt, b, lr, rng)["steps"]
        for _ in range(runs)
    ]
    return torch_steps, np.array(ref_steps)


# Each cell's steps to target shift clearly (Mann-Whitney p < 0.005 at 120 runs) when the batch
# size doubles, so the test can see a wrong noise scale. The finite-sum targets sit 2 % (5 % for
# the shuffled one) of the way from the minimum f* to f(x0), f* from BFGS on the reference loss.
STATISTICAL = [
    (
        "nqm sgd b=2",
        pb.nqm_power_law(10, s=1.0),
        "sgd",
        2,
        0.5,
        target(loss_below=0.1, max_steps=2000),
    ),
    (
        "least squares with replacement, heavy ball b=4",
        pb.make_least_squares(128, 6, seed=1),
        "heavy_ball",
        4,
        0.02,
        target(loss_below=0.1332, max_steps=2000),
    ),
    (
        "least squares shuffle, adam b=8",
        pb.make_least_squares(40, 6, sampling="shuffle", seed=2),
        "adam",
        8,
        0.05,
        target(loss_below=0.1396, max_steps=2000),
    ),
    (
        "logistic sgd b=2",
        pb.make_logistic(128, 4, seed=3),
        "sgd",
        2,
        2.0,
        target(loss_below=0.3462, max_steps=2000),
    ),
    (
        "double well escape, sgd b=1",
        pb.double_well(kappa=0.3, noise_std=4.0),
        "sgd",
        1,
        0.05,
        target(position_below=(0, 0.0), max_steps=3000),
    ),
]


@pytest.mark.parametrize(
    ("problem", "optimizer", "b", "lr", "tgt"),
    [c[1:] for c in STATISTICAL],
    ids=[c[0] for c in STATISTICAL],
)
def test_steps_to_target_are_distributed_as_in_the_reference(problem, optimizer, b, lr, tgt):
    torch_steps, ref_steps = steps_samples(problem, optimizer, b, lr, tgt, runs=120)
    # Fixed seeds; a two-sample Mann-Whitney U test at alpha = 0.001 (the chance that a correct
    # backend fails one of these five cells is below 0.5 %), plus the medians within 15 %.
    assert stats.mannwhitneyu(torch_steps, ref_steps).pvalue > 1e-3
    assert abs(np.median(torch_steps) / np.median(ref_steps) - 1) < 0.15


# ---------------------------------------------------------------------------------------------
# The entry points.


def test_sweep_with_the_torch_backend_returns_the_result_table():
    res = cb.sweep(
        pb.nqm_power_law(5),
        ["sgd", "nesterov"],
        [1, 8],
        [0.1],
        2,
        target(loss_below=0.05, max_steps=500),
        backend="torch",
        device="cpu",
    )
    frame = res.to_pandas()
    assert list(frame.columns) == list(cb.results.COLUMNS)
    assert len(frame) == 8
    assert frame["reached"].all()
    assert (frame["wall_time"] >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"dtype": "float16"}, Err("dtype must be one of 'float64', 'float32', got 'float16'")),
        ({"device": "tpu"}, Err("device must be a torch device, got 'tpu'")),
        ({"max_chunk_runs": 0}, Err("max_chunk_runs must be a positive integer, got 0")),
        ({"threads": 1.5}, Err("threads must be an integer, got float 1.5", TypeError)),
    ],
    ids=["half precision", "unknown device", "empty chunks", "fractional threads"],
)
def test_run_plan_rejects_bad_options(kwargs, error):
    plan = cb.make_plan(pb.nqm([1.0], [1.0]), "sgd", [1], [0.1], 1, target(max_steps=5))
    with error.raises():
        run_plan(plan, **kwargs)


def test_run_plan_rejects_a_non_plan():
    with Err("plan must be a critbatch Plan, got dict", TypeError).raises():
        run_plan({})


CHUNKING = [
    (
        "nqm",
        pb.nqm_power_law(12, s=1.0),
        ["sgd", "adam"],
        [1, 4, 16],
        [0.1, 0.5],
        target(loss_below=0.1, check_every=3, max_steps=800),
    ),
    (
        "double well",
        pb.double_well(kappa=0.3, noise_std=4.0),
        ["sgd"],
        [1, 2],
        [0.05],
        target(position_below=(0, 0.0), max_steps=1500),
    ),
    (
        "least squares with replacement",
        pb.make_least_squares(96, 5, seed=1),
        ["heavy_ball"],
        [2, 8, 48],
        [0.02, 0.05],
        target(loss_below=0.14, check_every=2, max_steps=800),
    ),
    (
        "least squares shuffle, epoch schedule",
        pb.make_least_squares(96, 5, sampling="shuffle", seed=2),
        ["sgd"],
        [3, 32],
        [0.05, 0.2],
        target(loss_below=0.095, max_steps=800),
    ),
]


@pytest.mark.parametrize(
    ("problem", "optimizers", "bs", "lrs", "tgt"),
    [c[1:] for c in CHUNKING],
    ids=[c[0] for c in CHUNKING],
)
def test_results_do_not_depend_on_the_chunking(problem, optimizers, bs, lrs, tgt):
    schedule = sc.schedule(lr=sc.step_decay(1, 0.7, unit="epoch")) if problem.n_samples else None
    plan = cb.make_plan(
        problem, optimizers, bs, lrs, 5, tgt, schedules=schedule, trajectory_every=4
    )
    whole = run_plan(plan)
    sevens = run_plan(plan, max_chunk_runs=7)
    rows = np.arange(len(plan))[::-1][:9]  # a store chunk of other runs, in another order
    part = run_plan(plan.subset(np.sort(rows)), max_chunk_runs=4)
    for other, index in ((sevens, slice(None)), (part, np.sort(rows))):
        for name in ("steps", "sfo", "reached", "stop_reason"):
            assert other[name].tolist() == whole[name][index].tolist(), name
        # The random streams are the same; only matrix products may round differently with the
        # number of runs in a call (streamed problems: bitwise).
        exact = problem.n_samples is None
        np.testing.assert_allclose(
            other["final_loss"], whole["final_loss"][index], rtol=0 if exact else 1e-12
        )
    assert len(set(whole["steps"].tolist())) > 3  # the runs stop apart


def test_float32_runs_agree_with_float64_on_a_noiseless_problem():
    plan = cb.make_plan(NOISELESS_NQM, "adam", [1], [0.05], 1, target(loss_below=1e-3))
    single, double = run_plan(plan, dtype="float32"), run_plan(plan)
    assert abs(int(single["steps"][0]) - int(double["steps"][0])) <= 1
    assert single["reached"][0]
    assert double["reached"][0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_on_a_noiseless_problem():
    plan = cb.make_plan(
        NOISELESS_NQM, ["sgd", "adam"], [1], [0.05, 0.2], 1, target(loss_below=1e-3)
    )
    cpu, gpu = run_plan(plan), run_plan(plan, device="cuda")
    assert cpu["steps"].tolist() == gpu["steps"].tolist()
    np.testing.assert_allclose(gpu["final_loss"], cpu["final_loss"], rtol=1e-9)
