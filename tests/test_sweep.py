"""The Rust core through ``critbatch.sweep``: exactness, reproducibility, divergence, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import critbatch as cb
from critbatch import optimizers as opt
from critbatch import problems as pb
from critbatch import schedules as sc
from critbatch.targets import target
from tests.conftest import Err


def exact_sgd_loss(h, c, x0, lr, b, steps):
    """E loss_t of SGD on the NQM (Zhang et al. 2019): E x² ← (1-ηh)² E x² + η² c / b."""
    m = x0.astype(float) ** 2
    out = [0.5 * np.sum(h * m)]
    for _ in range(steps):
        m = (1 - lr * h) ** 2 * m + lr**2 * c / b
        out.append(0.5 * np.sum(h * m))
    return np.array(out)


def exact_heavy_ball_loss(h, c, x0, lr, b, mu, steps):
    """E loss_t of heavy ball (v ← μv + g, x ← x - ηv) from the second moments of (x, v)."""
    d = h.size
    cov = np.zeros((d, 2, 2))
    cov[:, 0, 0] = x0**2
    A = np.zeros((d, 2, 2))
    A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1] = 1 - lr * h, -lr * mu, h, mu
    e = np.array([-lr, 1.0])
    noise = (c / b)[:, None, None] * np.outer(e, e)[None]
    out = [0.5 * np.sum(h * cov[:, 0, 0])]
    for _ in range(steps):
        cov = A @ cov @ np.transpose(A, (0, 2, 1)) + noise
        out.append(0.5 * np.sum(h * cov[:, 0, 0]))
    return np.array(out)


NQM = pb.nqm_power_law(8, p=1.0, s=1.0, x0=1.0)


@pytest.mark.parametrize(
    ("optimizer", "exact"),
    [
        (opt.sgd(), lambda: exact_sgd_loss(NQM.h, NQM.c, NQM.x0, 0.4, 2, 60)),
        (opt.heavy_ball(0.6), lambda: exact_heavy_ball_loss(NQM.h, NQM.c, NQM.x0, 0.2, 2, 0.6, 60)),
    ],
    ids=[
        "sgd mean loss follows the exact recurrence",
        "heavy ball mean loss follows the exact recurrence",
    ],
)
def test_monte_carlo_mean_loss_matches_exact_nqm(optimizer, exact):
    lr = 0.4 if optimizer.kind == "sgd" else 0.2
    runs = 4000
    res = cb.sweep(
        NQM,
        optimizer,
        [2],
        [lr],
        runs,
        target(max_steps=60, check_every=60),
        trajectory_every=1,
        seed=3,
    )
    losses = np.stack(res.trajectories)  # runs x 61
    mean, se = losses.mean(axis=0), losses.std(axis=0, ddof=1) / math.sqrt(runs)
    want = exact()
    # 4 standard errors of the Monte Carlo mean at every step (61 steps, so a false alarm is rare),
    # plus 1e-12 for step 0 where the loss is deterministic.
    assert np.all(np.abs(mean - want) <= 4 * se + 1e-12), np.max(
        np.abs(mean - want) / (se + 1e-300)
    )


def test_a_shuffled_batch_of_every_sample_is_allowed():
    res = cb.sweep(LSQ_SHUFFLE, "sgd", [32], [0.1], 1, target(max_steps=3))
    assert res["sfo"].tolist() == [3 * 32]


def test_full_batch_shuffle_is_gradient_descent():
    prob = pb.make_least_squares(64, 5, condition_number=5, sampling="shuffle", seed=1)
    res = cb.sweep(
        prob, "sgd", [64], [0.3], 1, target(max_steps=25, check_every=25), trajectory_every=1
    )
    X, y, w = prob.X, prob.y, np.zeros(5)
    want = []
    for _ in range(26):
        want.append(0.5 * np.mean((X @ w - y) ** 2))
        w = w - 0.3 * X.T @ (X @ w - y) / 64
    np.testing.assert_allclose(res.trajectories[0], want, rtol=1e-12)


def table(res):
    df = res.to_pandas().drop(columns="wall_time")
    return df


def test_same_table_for_any_thread_count_and_chunking():
    plan = cb.make_plan(
        [NQM, pb.make_least_squares(128, 6, seed=2)],
        ["sgd", "adam", opt.nesterov(0.5)],
        [1, 3, 8],
        [0.05, 0.2],
        3,
        target(loss_below=0.05, max_steps=400, check_every=4),
        seed=9,
    )
    one = table(cb.execute(plan, threads=1))
    two = table(cb.execute(plan, threads=2))
    chunked = table(cb.results.Results.concat([cb.execute(c, threads=2) for c in plan.chunks(7)]))
    assert one.equals(two)
    assert one.equals(chunked)
    assert one["reached"].any()


@pytest.mark.parametrize(
    ("n", "size", "sizes"),
    [(7, 3, [3, 3, 1]), (7, 2, [2, 2, 2, 1]), (6, 3, [3, 3]), (1, 5, [1]), (5, 1, [1] * 5)],
    ids=["7 by 3", "7 by 2", "6 by 3", "1 by 5", "5 by 1"],
)
def test_chunks_cover_every_row_once_in_order(n, size, sizes):
    plan = cb.make_plan(NQM, "sgd", list(range(1, n + 1)), [0.1], 1, target(max_steps=1))
    parts = plan.chunks(size)
    assert [len(p) for p in parts] == sizes
    for key in plan.cells:
        joined = np.concatenate([p.cells[key] for p in parts])
        assert joined.tolist() == plan.cells[key].tolist(), key


def test_sweep_seed_changes_the_streams():
    a = cb.sweep(NQM, "sgd", [1], [0.1], 4, target(loss_below=0.05, max_steps=2000), seed=0)
    b = cb.sweep(NQM, "sgd", [1], [0.1], 4, target(loss_below=0.05, max_steps=2000), seed=1)
    assert not np.array_equal(a["final_loss"], b["final_loss"])


def test_divergence_is_recorded_not_raised():
    res = cb.sweep(NQM, ["sgd", "adam"], [1], [10.0], 2, target(loss_below=1e-3, max_steps=500))
    sgd = res.to_pandas().query("optimizer == 'sgd'")
    assert sgd["diverged"].all()
    assert not sgd["reached"].any()


def test_sfo_sums_the_batch_sizes_of_a_growth_schedule():
    grow = sc.schedule(batch=sc.geometric(every=5, rate=2.0), max_batch_size=20)
    res = cb.sweep(NQM, "sgd", [3], [0.1], 1, target(max_steps=17, check_every=100), schedules=grow)
    # b_t = 3 (t<5), 6 (t<10), 12 (t<15), then ceil(24) capped at 20.
    assert res["sfo"][0] == 5 * 3 + 5 * 6 + 5 * 12 + 2 * 20


def test_epoch_schedule_counts_samples():
    prob = pb.make_least_squares(40, 3, sampling="shuffle", seed=0)
    decay = sc.schedule(lr=sc.step_decay(every=1, gamma=0.5, unit="epoch"))
    plain = cb.sweep(
        prob, "sgd", [10], [0.1], 1, target(max_steps=8), schedules=decay, trajectory_every=1
    )
    assert plain["sfo"][0] == 80


def test_position_target_for_escape_times():
    well = pb.double_well(kappa=0.5, noise_std=3.0)
    res = cb.sweep(well, "sgd", [1], [0.05], 20, target(position_below=(0, 0.0), max_steps=20000))
    assert res["reached"].all()
    assert np.all(res["final_x0"] < 0)


LSQ_SHUFFLE = pb.make_least_squares(32, 4, sampling="shuffle")
TGT = target(loss_below=0.1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((NQM, "sgd", [0], [0.1], 1, TGT), Err("batch_sizes[0] must be a positive integer, got 0")),
        (
            (NQM, "sgd", [-3], [0.1], 1, TGT),
            Err("batch_sizes[0] must be a positive integer, got -3"),
        ),
        ((NQM, "sgd", [2.5], [0.1], 1, TGT), Err("batch_sizes[0] must be an integer", TypeError)),
        ((LSQ_SHUFFLE, "sgd", [64], [0.1], 1, TGT), Err("batch_sizes: 64 exceeds the 32 samples")),
        ((LSQ_SHUFFLE, "sgd", [33], [0.1], 1, TGT), Err("batch_sizes: 33 exceeds the 32 samples")),
        (
            (LSQ_SHUFFLE, "sgd", [8, 33], [0.1], 1, TGT),
            Err("batch_sizes: 33 exceeds the 32 samples"),
        ),
        ((NQM, "sgd", [1], [0.0], 1, TGT), Err("learning_rates[0] must be positive, got 0.0")),
        (
            (NQM, "sgd", [1], [float("nan")], 1, TGT),
            Err("learning_rates[0] must be finite, got nan"),
        ),
        ((NQM, "sgd", [1], [-1e-3], 1, TGT), Err("learning_rates[0] must be positive")),
        ((NQM, "adamx", [1], [0.1], 1, TGT), Err("unknown optimizer 'adamx'")),
        ((NQM, [], [1], [0.1], 1, TGT), Err("optimizers must not be empty")),
        ((NQM, "sgd", [], [0.1], 1, TGT), Err("batch_sizes must be a non-empty 1-D list")),
        ((NQM, "sgd", [1], [], 1, TGT), Err("learning_rates must be a non-empty 1-D list")),
        ((NQM, "sgd", [1], [0.1], 0, TGT), Err("seeds must be a positive integer, got 0")),
        (
            (NQM, "sgd", [1], [0.1], 1, "loss<1"),
            Err("target must be a critbatch Target", TypeError),
        ),
        (
            ("nqm", "sgd", [1], [0.1], 1, TGT),
            Err("problems[0] must be a critbatch problem", TypeError),
        ),
    ],
    ids=lambda v: v.message if isinstance(v, Err) else None,
)
def test_bad_sweep_input_names_the_field(args, expected):
    with expected.raises():
        cb.sweep(*args)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: pb.nqm([1.0, -1.0], 1.0), Err("h must be positive in every coordinate")),
        (lambda: pb.nqm([[1.0]], 1.0), Err("h must have 1 dimension(s), got shape (1, 1)")),
        (lambda: pb.nqm(["a"], 1.0), Err("h must be a real-valued array", TypeError)),
        (lambda: pb.nqm([1.0, 2.0], [1.0, 2.0, 3.0]), Err("c must have length 2, got 3")),
        (
            lambda: pb.least_squares(np.ones((4, 2)), np.ones(3)),
            Err("y must have one entry per row of X (4), got 3"),
        ),
        (
            lambda: pb.least_squares(np.ones((4, 2)), np.ones(4), sampling="bootstrap"),
            Err("sampling must be one of"),
        ),
        (lambda: pb.logistic(np.ones((2, 2)), [0.0, 1.0]), Err("y must hold labels -1 or +1")),
        (lambda: pb.double_well(kappa=1.5), Err("kappa must be in [0.0, 1.0), got 1.5")),
        (lambda: opt.heavy_ball(1.2), Err("momentum must be in [0.0, 1.0), got 1.2")),
        (lambda: opt.adam((0.9,)), Err("betas must be a pair")),
        (lambda: target(check_every=0), Err("check_every must be a positive integer, got 0")),
        (lambda: sc.geometric(every=0), Err("every must be positive, got 0")),
    ],
    ids=lambda v: v.message if isinstance(v, Err) else None,
)
def test_bad_specs_name_the_field(build, expected):
    with expected.raises():
        build()


@pytest.mark.parametrize(
    ("problem", "expected"),
    [
        (
            {"kind": "nqm", "h": np.ones(3), "c": np.ones(2), "x0": np.ones(3)},
            Err("problems[0].c must have shape (3,), got (2,)"),
        ),
        (
            {"kind": "nqm", "h": np.ones(3, dtype=np.float32), "c": np.ones(3), "x0": np.ones(3)},
            Err("problems[0].h must be a 1-D float64 array", TypeError),
        ),
        (
            {"kind": "nqm", "h": np.array([1.0, np.nan]), "c": np.ones(2), "x0": np.ones(2)},
            Err("problems[0].h[1] must be finite"),
        ),
        ({"kind": "cube", "x0": np.ones(3)}, Err("problems[0].kind must be one of nqm")),
        ({"kind": "nqm", "x0": np.ones(3)}, Err("problems[0].h is missing")),
    ],
    ids=lambda v: v.message if isinstance(v, Err) else None,
)
def test_the_core_rejects_bad_descriptions_without_panicking(problem, expected):
    from critbatch import _core

    plan = cb.make_plan(NQM, "sgd", [1], [0.1], 1, TGT)
    with expected.raises():
        _core.run_plan(
            [problem],
            [o.to_core() for o in plan.optimizers],
            [s.to_core() for s in plan.schedules],
            plan.target.to_core(),
            plan.cells,
            0,
            1,
            0,
        )


finite = st.floats(allow_nan=True, allow_infinity=True, width=64)
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    finite,
    st.text(max_size=3),
    st.lists(finite, max_size=3),
)


@given(
    batch=st.one_of(st.integers(-3, 70), anything),
    lr=st.one_of(finite, anything),
    seeds=st.one_of(st.integers(-1, 3), anything),
    name=st.sampled_from(["sgd", "heavy_ball", "nesterov", "adam", "amsgrad", "rmsprop", "bogus"]),
    kind=st.sampled_from(["nqm", "lsq", "well"]),
    check_every=st.one_of(st.integers(-1, 5), anything),
)
def test_random_specs_raise_value_or_type_errors_never_panics(
    batch, lr, seeds, name, kind, check_every
):
    problem = {"nqm": NQM, "lsq": LSQ_SHUFFLE, "well": pb.double_well()}[kind]
    try:
        tgt = target(loss_below=0.01, max_steps=50, check_every=check_every)
        res = cb.sweep(problem, name, [batch], [lr], seeds, tgt)
    except (ValueError, TypeError):
        return
    assert len(res) >= 1
    assert np.all(res["steps"] <= 50)


# ---------------------------------------------------------------------------------------------
# Gradient-norm trajectories: trajectory_metrics=("loss", "grad_norm").


def test_full_batch_shuffle_records_the_gradient_norms_of_gradient_descent():
    prob = pb.make_least_squares(48, 4, condition_number=5, sampling="shuffle", seed=3)
    res = cb.sweep(
        prob,
        "sgd",
        [48],
        [0.3],
        1,
        target(max_steps=24, check_every=24),
        trajectory_every=3,
        trajectory_metrics=["grad_norm", "loss"],
    )
    X, y, w = prob.X, prob.y, np.zeros(4)
    losses, norms = [], []
    for t in range(25):
        grad = X.T @ (X @ w - y) / 48
        if t % 3 == 0:
            losses.append(0.5 * np.mean((X @ w - y) ** 2))
            norms.append(np.linalg.norm(grad))
        w = w - 0.3 * grad
    np.testing.assert_allclose(res.trajectories[0], losses, rtol=1e-12)
    np.testing.assert_allclose(res.grad_norm_trajectories[0], norms, rtol=1e-12)
    # step 24 is a multiple of 3: the last entry is the record's own final gradient norm
    assert res.grad_norm_trajectories[0][-1] == res["final_grad_norm"][0]


def test_recording_gradient_norms_changes_no_loss_and_no_column():
    plan_args = (
        [NQM, pb.make_logistic(40, 3, seed=1)],
        ["sgd", "adam"],
        [1, 4],
        [0.1],
        2,
        target(loss_below=0.2, check_every=5, max_steps=200),
    )
    loss_only = cb.sweep(*plan_args, trajectory_every=2, seed=4)
    both = cb.sweep(
        *plan_args, trajectory_every=2, seed=4, trajectory_metrics=("loss", "grad_norm")
    )
    grad_only = cb.sweep(*plan_args, trajectory_every=2, seed=4, trajectory_metrics="grad_norm")
    assert table(both).equals(table(loss_only))
    assert table(grad_only).equals(table(loss_only))
    assert loss_only.grad_norm_trajectories == []
    assert grad_only.trajectories == []
    for a, b, g, steps in zip(
        loss_only.trajectories,
        both.trajectories,
        both.grad_norm_trajectories,
        both["steps"],
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
        assert g.shape == a.shape == (steps // 2 + 1,)
    for g, h in zip(both.grad_norm_trajectories, grad_only.grad_norm_trajectories, strict=True):
        np.testing.assert_array_equal(g, h)


def test_gradient_norm_trajectories_survive_chunks_subsets_and_concat():
    plan = cb.make_plan(
        NQM,
        ["sgd", "nesterov"],
        [1, 2, 4],
        [0.2],
        3,
        target(max_steps=30),
        trajectory_every=5,
        trajectory_metrics=["grad_norm"],
    )
    whole = cb.execute(plan)
    parts = cb.Results.concat([cb.execute(part) for part in plan.chunks(4)])
    assert plan.chunks(4)[1].trajectory_metrics == ("grad_norm",)
    assert len(parts.grad_norm_trajectories) == len(plan) == len(whole.grad_norm_trajectories)
    for a, b in zip(whole.grad_norm_trajectories, parts.grad_norm_trajectories, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_torch_backend_records_the_same_gradient_norms():
    pytest.importorskip("torch")
    # noiseless, so the two backends' streams do not matter
    problem = pb.nqm(np.geomspace(1.0, 0.05, 6), np.zeros(6), 1.0)
    plan = cb.make_plan(
        problem,
        ["sgd", "adam"],
        [1, 4],
        [0.3],
        1,
        target(loss_below=1e-3, check_every=4, max_steps=300),
        trajectory_every=3,
        trajectory_metrics=["loss", "grad_norm"],
    )
    rust, torch_res = cb.execute(plan), cb.execute(plan, backend="torch")
    assert rust["steps"].tolist() == torch_res["steps"].tolist()
    for name in ("trajectories", "grad_norm_trajectories"):
        got, want = getattr(torch_res, name), getattr(rust, name)
        assert len(got) == len(want) == len(plan)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10)


def test_trajectory_metrics_travel_through_the_spec_and_the_store(tmp_path):
    from critbatch import spec as cs
    from critbatch import store

    s = cs.sweep_spec(
        cs.problem("nqm_power_law", dim=4),
        "sgd",
        [2],
        [0.1],
        2,
        target(max_steps=12, check_every=4),
        trajectory_every=4,
        trajectory_metrics=["grad_norm"],
    )
    assert s.trajectory_metrics == ("grad_norm",)
    assert cs.loads(s.to_toml()) == s
    assert 'trajectory_metrics = ["grad_norm"]' in s.to_toml()
    # the default is not written, so the specs (and hashes) of earlier sweeps stay as they were
    plain = cs.sweep_spec(cs.problem("nqm_power_law", dim=4), "sgd", [2], [0.1], 2)
    assert "trajectory_metrics" not in plain.to_dict()
    store.run_sweep(s, tmp_path / "out")
    loaded, direct = store.load(tmp_path / "out"), cb.execute(s.to_plan())
    assert loaded.trajectories == []
    assert len(loaded.grad_norm_trajectories) == 2
    for a, b in zip(loaded.grad_norm_trajectories, direct.grad_norm_trajectories, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(cs.SpecError, match=r"trajectory_metrics.*'loss', 'grad_norm'"):
        cs.loads(s.to_toml().replace('["grad_norm"]', '["gradnorm"]'))


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ("norm", Err("trajectory_metrics[0] must be one of 'loss', 'grad_norm', got 'norm'")),
        (["loss", "grad"], Err("trajectory_metrics[1] must be one of 'loss', 'grad_norm'")),
        (["loss", "loss"], Err("trajectory_metrics names 'loss' twice")),
        ([], Err("trajectory_metrics must name at least one of loss, grad_norm")),
        (3, Err("trajectory_metrics must be a name or a list of names, got int", TypeError)),
        ({"loss"}, Err("trajectory_metrics must be a name or a list of names", TypeError)),
    ],
    ids=lambda v: v.message if isinstance(v, Err) else None,
)
def test_bad_trajectory_metrics_name_the_field(metrics, expected):
    with expected.raises():
        cb.sweep(NQM, "sgd", [1], [0.1], 1, TGT, trajectory_every=1, trajectory_metrics=metrics)


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        (["loss", "norm"], Err('trajectory_metrics must be one of loss, grad_norm, got "norm"')),
        (["grad_norm", "grad_norm"], Err('trajectory_metrics names "grad_norm" twice')),
        ([], Err("trajectory_metrics must name at least one of loss, grad_norm")),
    ],
    ids=lambda v: v.message if isinstance(v, Err) else None,
)
def test_the_core_checks_trajectory_metrics_too(metrics, expected):
    from critbatch import _core

    plan = cb.make_plan(NQM, "sgd", [1], [0.1], 1, TGT)
    args = (
        [NQM.to_core()],
        [opt.sgd().to_core()],
        [sc.Schedule().to_core()],
        TGT.to_core(),
        plan.cells,
        0,
        1,
        1,
    )
    with expected.raises():
        _core.run_plan(*args, trajectory_metrics=metrics)


def _sweep_in_child(queue):
    res = cb.sweep(cb.problems.nqm_power_law(8), "sgd", [2], [0.1], 4, _SHORT, threads=2)
    queue.put(res["steps"].tolist())


_SHORT = cb.targets.target(max_steps=30)


def test_a_process_forked_after_a_sweep_runs_sweeps_of_its_own():
    # the core keeps its worker threads between calls; a forked child has none of them and must
    # start its own instead of waiting on threads that do not exist
    import multiprocessing

    cb.sweep(cb.problems.nqm_power_law(8), "sgd", [2], [0.1], 4, _SHORT, threads=2)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sweep_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("a sweep in a forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [30] * 4
