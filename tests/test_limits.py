"""Numbers that are right or an error, on every backend: batch sizes, integer fields, overflow.

Each test runs the same plan on the Rust core, the torch backend (skipped without torch) and,
where it is cheap, the NumPy reference, and checks the exact numbers or the one ValueError that
the shared validators (``critbatch._validate``, ``critbatch.plan.check_batch_bounds``) raise for
both backends. The regression tests of the reliability issue's "silent-wrong" items:

1. batch sizes above 2^24 were capped silently by the core;
2. integers at or above 2^63 overflowed or wrapped around;
3. overflow inside the numerics (robust losses, gradient norms), and messages that named
   derived arrays instead of the user's arguments;
4. the torch backend failed on legal input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import critbatch as cb
from critbatch import _core, reference
from critbatch import problems as pb
from critbatch import schedules as sc
from critbatch import spec as S
from critbatch.results import STOP_REASONS
from critbatch.targets import target
from tests.conftest import Err

MAX = 2**63 - 1
AT_MOST = "must be at most 9223372036854775807 (2^63 - 1), got"


@pytest.fixture(params=["rust", "torch", "reference"])
def backend(request):
    """Every backend; torch runs on one thread and is skipped where it is not installed."""
    if request.param == "torch":
        pytest.importorskip("torch")
        request.getfixturevalue("torch_one_thread")
    return request.param


@pytest.fixture(params=["rust", "torch"])
def sweep_backend(request):
    """The two backends behind ``critbatch.sweep``."""
    if request.param == "torch":
        pytest.importorskip("torch")
        request.getfixturevalue("torch_one_thread")
    return request.param


def execute(plan, backend):
    """The outcome columns of ``plan`` on ``backend`` (the reference runs row by row)."""
    if backend != "reference":
        return cb.execute(plan, backend=backend).columns
    cells = plan.cells
    rows = []
    for i in range(len(plan)):
        rows.append(
            reference.run(
                plan.problems[cells["problem_index"][i]],
                plan.optimizers[cells["optimizer_index"][i]],
                plan.schedules[cells["schedule_index"][i]],
                plan.target,
                int(cells["batch_size"][i]),
                float(cells["learning_rate"][i]),
                np.random.default_rng([plan.seed, int(cells["run_index"][i])]),
            )
        )
    return {k: np.array([r[k] for r in rows]) for k in rows[0] if k != "trajectory"}


def sweep(backend, *args, **kwargs):
    return execute(cb.make_plan(*args, **kwargs), backend)


# ---------------------------------------------------------------------------------------------
# 1. No silent cap on the batch size.

NQM4 = pb.nqm(np.ones(4), np.ones(4), 0.0)
LSQ = pb.make_least_squares(64, 3, seed=1)


@pytest.mark.parametrize("b", [2**25, 2**30, 2**62], ids=["2^25", "2^30", "2^62"])
def test_a_batch_above_2_to_the_24_is_the_batch_the_noise_and_the_sfo_use(backend, b):
    out = sweep(backend, NQM4, "sgd", [b], [1.0], 2000, target(max_steps=1))
    assert out["sfo"].tolist() == [b] * 2000
    assert set(out["stop_reason"]) == {"budget"}
    # One step from 0 at lr 1: loss = chi2_4 / (2b), so b/2 * loss has mean 1 and sd 1/sqrt(2);
    # over 2000 runs the mean's sd is 0.0158 and 0.08 is 5 of them. The old cap gave 2b/2^25.
    assert abs(out["final_loss"].mean() * b / 2 - 1.0) < 0.08


def test_a_growing_batch_passes_2_to_the_24(backend):
    grow = sc.schedule(batch=sc.geometric(1, 2.0))
    out = sweep(backend, NQM4, "sgd", [1], [1e-3], 1, target(max_steps=40), schedules=grow)
    assert out["sfo"].tolist() == [2**40 - 1]  # sum of 2^t for t < 40, nothing capped


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (
            (NQM4, "sgd", [2**62], [0.1], 1, target(max_steps=2)),
            {},
            Err(
                "batch_sizes[0] = 4611686018427387904 can take the SFO past 9223372036854775807 "
                "(2^63 - 1), the largest count a result holds, over target.max_steps = 2 steps"
            ),
        ),
        (
            (NQM4, "sgd", [1, 3], [0.1], 1, target(max_steps=100)),
            {"schedules": sc.schedule(batch=sc.geometric(1, 2.0), name="g")},
            Err(
                "schedules[0] ('g') grows batch_sizes[1] = 3 past 9223372036854775807 (2^63 - 1) "
                "within target.max_steps = 100 steps; bound it with max_batch_size"
            ),
        ),
        (
            (NQM4, "sgd", [1], [0.1], 1, target(max_steps=60)),
            {"schedules": sc.schedule(batch=sc.geometric(1, 2.0), name="g")},
            Err("past 9007199254740992 (2^53), the largest batch size a growing schedule computes"),
        ),
        (
            (LSQ, "sgd", [1], [0.1], 1, target(max_steps=60)),
            {"schedules": sc.schedule(batch=sc.geometric(1, 2.0, unit="epoch"), name="g")},
            Err("schedules[0] ('g') grows batch_sizes[0] = 1 past"),
        ),
    ],
    ids=[
        "constant batch over the budget",
        "uncapped growth",
        "growth past 2^53",
        "uncapped growth in epochs",
    ],
)
def test_an_sfo_or_batch_past_the_columns_is_refused_by_both_backends(
    sweep_backend, args, kwargs, expected
):
    with expected.raises():
        cb.sweep(*args, **kwargs, backend=sweep_backend)


@pytest.mark.parametrize(
    ("b", "schedule", "expected"),
    [
        (
            2**62,
            None,
            Err(
                "batch_sizes[0] = 4611686018427387904 exceeds 16777216 (2^24), the "
                "most samples a step draws with replacement in problems[0] "
                "('least_squares')"
            ),
        ),
        (2**24 + 1, None, Err("batch_sizes[0] = 16777217 exceeds 16777216 (2^24)")),
        (
            1,
            sc.schedule(batch=sc.geometric(1, 2.0), name="g"),
            Err(
                "batch_sizes[0] = 1, grown by schedules[0] ('g') to 536870912 within "
                "target.max_steps = 30 steps, exceeds 16777216 (2^24)"
            ),
        ),
    ],
    ids=["2^62", "2^24 + 1", "grown past 2^24"],
)
def test_a_drawn_batch_past_its_limit_is_the_same_error_on_both_backends(
    sweep_backend, b, schedule, expected
):
    with expected.raises():
        cb.sweep(
            LSQ,
            "sgd",
            [b],
            [0.1],
            1,
            target(max_steps=30),
            schedules=schedule,
            backend=sweep_backend,
        )


def test_the_drawn_batch_limit_is_the_cores_and_is_reached_exactly(sweep_backend):
    assert pb.MAX_DRAWN_BATCH == _core.MAX_DRAWN_BATCH == 2**24
    res = cb.sweep(LSQ, "sgd", [2**24], [0.1], 1, target(max_steps=1), backend=sweep_backend)
    assert res["sfo"].tolist() == [2**24]
    assert res["stop_reason"].tolist() == ["budget"]


# ---------------------------------------------------------------------------------------------
# 2. Integers at or above 2^63.

GRID = {
    "problems": NQM4,
    "optimizers": "sgd",
    "batch_sizes": [1],
    "learning_rates": [0.1],
    "seeds": 1,
    "target": target(max_steps=2),
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"seed": 2**64}, Err(f"seed {AT_MOST} 18446744073709551616")),
        ({"seed": 2**63}, Err(f"seed {AT_MOST} 9223372036854775808")),
        ({"seeds": [2**64]}, Err(f"seeds[0] {AT_MOST} 18446744073709551616")),
        ({"seeds": [0, 2**63]}, Err(f"seeds[1] {AT_MOST} 9223372036854775808")),
        ({"seeds": 2**63}, Err(f"seeds {AT_MOST} 9223372036854775808")),
        ({"batch_sizes": [2**64]}, Err(f"batch_sizes[0] {AT_MOST} 18446744073709551616")),
        ({"batch_sizes": [2**63]}, Err(f"batch_sizes[0] {AT_MOST} 9223372036854775808")),
        (
            {"batch_sizes": np.array([2**63], dtype=np.uint64)},
            Err(f"batch_sizes[0] {AT_MOST} 9223372036854775808"),
        ),
        ({"trajectory_every": 2**64}, Err(f"trajectory_every {AT_MOST} 18446744073709551616")),
        ({"threads": 2**63}, Err("threads must be at most 4096 (2^12), got 9223372036854775808")),
        ({"threads": 1.5}, Err("threads must be an integer, got float 1.5", TypeError)),
    ],
    ids=lambda x: x.message if isinstance(x, Err) else None,
)
def test_integer_fields_are_bounded_with_the_same_error_on_both_backends(
    sweep_backend, change, expected
):
    with expected.raises():
        cb.sweep(**{**GRID, **change}, backend=sweep_backend)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: target(max_steps=2**63), Err(f"max_steps {AT_MOST}")),
        (lambda: target(check_every=2**64), Err(f"check_every {AT_MOST}")),
        (lambda: target(position_below=(2**63, 0.0)), Err(f"position_below[0] {AT_MOST}")),
        (lambda: sc.schedule(max_batch_size=2**63), Err(f"max_batch_size {AT_MOST}")),
        (lambda: cb.make_plan(**GRID).chunks(2**63), Err(f"chunk_size {AT_MOST}")),
        (lambda: pb.nqm_power_law(2**63), Err(f"dim {AT_MOST}")),
        (lambda: pb.make_least_squares(n=2**63), Err(f"n {AT_MOST}")),
        (lambda: pb.make_logistic(seed=2**64), Err(f"seed {AT_MOST}")),
        (lambda: pb.make_teacher_student(width=2**63), Err(f"width {AT_MOST}")),
        (
            lambda: S.sweep_spec(
                S.problem("nqm_power_law", dim=2), "sgd", [1], [0.1], 1, chunk_size=2**64
            ),
            Err(f"chunk_size: value {AT_MOST}"),
        ),
        (
            lambda: S.loads(
                'optimizers = ["sgd"]\nbatch_sizes = [1]\nlearning_rates = [0.1]\n'
                "seeds = [9223372036854775808]\n"
                '[problem]\nkind = "nqm_power_law"\ndim = 2\n'
            ),
            Err(f"seeds[0]: value {AT_MOST} 9223372036854775808"),
        ),
    ],
    ids=[
        "max_steps",
        "check_every",
        "position_below",
        "max_batch_size",
        "chunk_size",
        "dim",
        "n",
        "generator seed",
        "width",
        "spec chunk_size",
        "toml seeds",
    ],
)
def test_every_integer_field_names_itself_and_its_bound(build, expected):
    with expected.raises():
        build()


def test_the_torch_runner_options_use_the_shared_validator():
    pytest.importorskip("torch")
    from critbatch.torch.runner import run_plan

    plan = cb.make_plan(**GRID)
    with Err(f"max_chunk_runs {AT_MOST}").raises():
        run_plan(plan, max_chunk_runs=2**63)
    with Err("threads must be at most 4096").raises():
        run_plan(plan, threads=2**31)


def test_the_largest_integers_are_kept_exactly(sweep_backend):
    res = cb.sweep(**{**GRID, "seeds": [MAX, 0], "seed": MAX}, backend=sweep_backend)
    assert res["seed"].tolist() == [MAX, 0]
    assert res.specs["seed"] == MAX
    assert set(res["stop_reason"]) == {"budget"}


# ---------------------------------------------------------------------------------------------
# 3. Overflow inside the numerics, and messages that name the user's arguments.


@pytest.mark.parametrize("scale", [1e78, 1e155, 1e300])
@pytest.mark.parametrize("loss", ["geman_mcclure", "cauchy"])
def test_robust_regression_at_a_huge_scale_is_least_squares(backend, loss, scale):
    # At |r| << c both losses are r^2/2 to the last bit: the same runs as least squares. The
    # textbook c^4 r / (c^2 + r^2)^2 gave NaN gradients from c = 1e78 and NaN losses from 1e155.
    robust = pb.robust_regression(LSQ.X, LSQ.y, loss=loss, scale=scale)
    tgt = target(max_steps=20, check_every=5)
    out = sweep(backend, robust, "sgd", [4], [0.05], 3, tgt, seed=7)
    plain = sweep(backend, LSQ, "sgd", [4], [0.05], 3, tgt, seed=7)
    assert set(out["stop_reason"]) == {"budget"}
    np.testing.assert_allclose(out["final_loss"], plain["final_loss"], rtol=1e-12)
    np.testing.assert_allclose(out["final_grad_norm"], plain["final_grad_norm"], rtol=1e-12)


@pytest.mark.parametrize("loss", ["geman_mcclure", "cauchy"])
def test_robust_losses_are_exact_at_huge_scales_and_residuals(loss):
    # Residuals far beyond the scale (r^2 overflows): rho ~ c^2/2 (GM), c^2 ln|u| (Cauchy).
    problem = pb.robust_regression([[1.0]], [0.0], loss=loss, scale=1e100)
    w = np.array([1e200])
    want = 0.5e200 if loss == "geman_mcclure" else 1e200 * math.log(1e100)
    want_slope = 1e100 * 1e-100**3 if loss == "geman_mcclure" else 1e100 * 1e-100
    core_loss, core_grad = _core.loss_and_grad(problem.to_core(), w)
    assert core_loss == pytest.approx(want, rel=1e-14)
    assert core_grad[0] == pytest.approx(want_slope, rel=1e-12)
    assert reference.loss(problem, w) == pytest.approx(want, rel=1e-14)
    assert reference.grad(problem, w)[0] == pytest.approx(want_slope, rel=1e-12)


def test_a_gradient_norm_above_1e154_is_finite_and_not_divergence(backend):
    out = sweep(backend, pb.nqm([1e160, 1.0], 0.0), "sgd", [1], [1e-170], 1, target(max_steps=3))
    assert out["stop_reason"].tolist() == ["budget"]
    assert not out["diverged"][0]
    assert out["final_grad_norm"][0] == pytest.approx(1e160 * (1 - 1e-10) ** 3, rel=1e-12)


def _steep_well():
    """A double well at a point where the loss (8.9e307) is finite and its slope overflows."""
    kappa = 0.9
    return pb.double_well(kappa=kappa, noise_std=0.0, x0=math.log(kappa * 9.7e76 + 1) / kappa)


STOPS = [
    ("reached", NQM4, 0.5, target(loss_below=1.0, max_steps=10)),
    ("budget", pb.nqm_power_law(4), 0.1, target(loss_below=-1.0, max_steps=10)),
    ("diverged_blowup", pb.nqm_power_law(4), 10.0, target(loss_below=1e-3, max_steps=500)),
    ("diverged_nonfinite", pb.nqm([1e308], [0.0], 10.0), 0.1, target(max_steps=10)),
    ("diverged_nonfinite", _steep_well(), 0.1, target(loss_below=1.7e308, max_steps=10)),
]


@pytest.mark.parametrize(
    ("reason", "problem", "lr", "tgt"),
    STOPS,
    ids=[
        "reached",
        "budget",
        "a finite loss past the blow-up level",
        "an infinite loss at the start",
        "reached with an infinite gradient norm",
    ],
)
def test_every_backend_records_why_a_run_stopped(backend, reason, problem, lr, tgt):
    out = sweep(backend, problem, "sgd", [1], [lr], 2, tgt)
    assert out["stop_reason"].tolist() == [reason] * 2
    assert out["reached"].tolist() == [reason == "reached"] * 2
    assert out["diverged"].tolist() == [reason.startswith("diverged")] * 2
    assert reason in STOP_REASONS


def test_the_stop_reason_column_is_in_every_table_and_survives_the_store(tmp_path):
    res = cb.sweep(NQM4, "sgd", [1], [0.5], 2, target(loss_below=1.0))
    assert list(res.columns) == list(cb.results.COLUMNS)
    assert res["stop_reason"].dtype == object
    from critbatch import store

    spec = S.sweep_spec(
        S.problem("nqm_power_law", dim=3),
        "sgd",
        [1, 4],
        [0.3, 50.0],
        2,
        target(loss_below=0.3, max_steps=200),
    )
    store.run_sweep(spec, tmp_path / "out")
    frame = store.load_frame(tmp_path / "out")
    assert set(frame["stop_reason"]) == {"reached", "diverged_blowup"}
    assert (frame["reached"] == (frame["stop_reason"] == "reached")).all()


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: pb.nqm_power_law(4, h1=1e308, s=10.0),
            Err("s * h1 overflows float64 (s = 10.0, h1 = 1e+308)"),
        ),
        (
            lambda: pb.nqm_power_law(10, p=2000.0),
            Err("h1 * dim**-p underflows to 0 (h1 = 1.0, p = 2000.0, dim = 10)"),
        ),
        (
            lambda: pb.make_least_squares(noise_std=1e308),
            Err("noise_std = 1e+308 is too large: the labels"),
        ),
        (
            lambda: pb.make_robust_regression(noise_std=1e308),
            Err("noise_std = 1e+308 is too large: the labels"),
        ),
        (
            lambda: pb.make_teacher_student(noise_std=1e308),
            Err("noise_std = 1e+308 is too large: the labels"),
        ),
        (
            lambda: pb.make_teacher_student(init_scale=1e308),
            Err("init_scale = 1e+308 is too large: the student's start"),
        ),
        (
            lambda: S.problem("least_squares", noise_std=1e308),
            Err("<python>: problem: noise_std = 1e+308 is too large"),
        ),
    ],
    ids=[
        "nqm noise variances",
        "nqm curvatures",
        "least squares labels",
        "robust labels",
        "teacher labels",
        "student start",
        "spec",
    ],
)
def test_an_overflowing_generator_names_the_argument_not_the_array(build, expected):
    with expected.raises():
        build()


# ---------------------------------------------------------------------------------------------
# 4. Legal input the torch backend used to fail on (and the core ran).


def test_a_double_well_with_a_huge_noise_runs(backend):
    # noise_std**2 overflowed in torch; the first step throws the iterate out of range.
    well = pb.double_well(noise_std=1e200)
    out = sweep(backend, well, "sgd", [1, 2**62], [0.1], 2, target(max_steps=1))
    assert out["stop_reason"].tolist() == ["diverged_nonfinite"] * 4
    assert out["steps"].tolist() == [1] * 4


def test_a_polynomial_rule_whose_power_overflows_is_capped_by_max_factor(backend):
    # (1 + m)^1000 overflows from m = 1 on (Python raised OverflowError): factor 2 from there.
    rule = sc.polynomial(1, power=1000.0, max_factor=2.0)
    grow = sc.schedule(lr=rule, batch=rule)
    out = sweep(
        backend, pb.nqm_power_law(3), "sgd", [3], [0.01], 1, target(max_steps=5), schedules=grow
    )
    assert out["sfo"].tolist() == [3 + 4 * 6]
    assert out["stop_reason"].tolist() == ["budget"]
