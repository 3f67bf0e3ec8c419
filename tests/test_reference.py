"""The NumPy reference checked against independent oracles.

Oracles: torch.optim (update rules), closed-form degenerate identities, central finite differences
(gradients), Monte Carlo means and variances (stochastic oracles), full-batch gradient descent
written out here (shuffle with b = n), closed-form NQM losses and hand-computed SFO sums (runs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from critbatch import optimizers, problems, schedules, targets
from critbatch.reference import optimizers as ref_opt
from critbatch.reference import problems as ref_prob
from critbatch.reference.run import batch_size_at, run

# ---------------------------------------------------------------------------------------------
# (a) update rules against torch.optim, step for step on a fixed gradient sequence

K, D = 60, 4


def _gradient_sequence(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x0 = 1.0 + rng.random(D)  # away from 0, so relative errors mean something
    grads = rng.standard_normal((K, D)) * np.geomspace(1.0, 1e-3, D)  # mixed scales per coordinate
    lrs = 1e-3 * (1.0 + rng.random(K))  # a varying per-step learning rate
    return x0, grads, lrs


TORCH_CASES = [
    pytest.param(optimizers.sgd(), "SGD", {}, id="sgd"),
    pytest.param(optimizers.heavy_ball(0.9), "SGD", {"momentum": 0.9}, id="heavy ball"),
    pytest.param(
        optimizers.heavy_ball(0.8, dampening=0.3),
        "SGD",
        {"momentum": 0.8, "dampening": 0.3},
        id="heavy ball with dampening",
    ),
    pytest.param(
        optimizers.heavy_ball(0.0, dampening=0.5),
        "SGD",
        {"momentum": 0.0, "dampening": 0.5},
        id="momentum 0 ignores dampening as torch",
    ),
    pytest.param(
        optimizers.nesterov(0.9), "SGD", {"momentum": 0.9, "nesterov": True}, id="nesterov"
    ),
    pytest.param(optimizers.adam(), "Adam", {}, id="adam"),
    pytest.param(optimizers.adam(amsgrad=True), "Adam", {"amsgrad": True}, id="adam amsgrad"),
    pytest.param(
        optimizers.adam((0.5, 0.9), eps=1e-3),
        "Adam",
        {"betas": (0.5, 0.9), "eps": 1e-3},
        id="adam small betas large eps",
    ),
    pytest.param(optimizers.rmsprop(), "RMSprop", {}, id="rmsprop"),
    pytest.param(
        optimizers.rmsprop(0.9, momentum=0.7),
        "RMSprop",
        {"alpha": 0.9, "momentum": 0.7},
        id="rmsprop momentum",
    ),
    pytest.param(
        optimizers.rmsprop(centered=True), "RMSprop", {"centered": True}, id="rmsprop centered"
    ),
    pytest.param(
        optimizers.rmsprop(0.95, eps=1e-4, momentum=0.5, centered=True),
        "RMSprop",
        {"alpha": 0.95, "eps": 1e-4, "momentum": 0.5, "centered": True},
        id="rmsprop centered momentum",
    ),
    pytest.param(optimizers.adamw(), "AdamW", {}, id="adamw"),
    pytest.param(
        optimizers.adamw((0.5, 0.9), weight_decay=0.5, amsgrad=True),
        "AdamW",
        {"betas": (0.5, 0.9), "weight_decay": 0.5, "amsgrad": True},
        id="adamw amsgrad strong decay",
    ),
]


@pytest.mark.torch
@pytest.mark.parametrize(("spec", "torch_name", "torch_kwargs"), TORCH_CASES)
def test_trajectory_matches_torch_optim(spec, torch_name, torch_kwargs):
    torch = pytest.importorskip("torch")
    x0, grads, lrs = _gradient_sequence()
    param = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    opt = getattr(torch.optim, torch_name)([param], lr=float(lrs[0]), foreach=False, **torch_kwargs)
    expected = np.empty((K, D))
    for k in range(K):
        param.grad = torch.tensor(grads[k], dtype=torch.float64)
        opt.param_groups[0]["lr"] = float(lrs[k])
        opt.step()
        expected[k] = param.detach().numpy()
    ours = ref_opt.optimizer_trajectory(spec, x0, grads, lrs)
    # Same recurrences, different operation order: 1e-12 relative is about 1e4 ulps of slack.
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# (b) degenerate identities


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(optimizers.heavy_ball(0.0), id="heavy ball momentum 0"),
        pytest.param(
            optimizers.heavy_ball(0.0, dampening=0.4), id="heavy ball momentum 0 dampened"
        ),
        pytest.param(optimizers.nesterov(0.0), id="nesterov momentum 0"),
    ],
)
def test_zero_momentum_is_sgd(spec):
    x0, grads, lrs = _gradient_sequence(1)
    sgd = ref_opt.optimizer_trajectory(optimizers.sgd(), x0, grads, lrs)
    np.testing.assert_array_equal(ref_opt.optimizer_trajectory(spec, x0, grads, lrs), sgd)


def test_sgd_is_the_cumulative_sum_of_steps():
    x0, grads, lrs = _gradient_sequence(2)
    expected = x0 - np.cumsum(lrs[:, None] * grads, axis=0)
    np.testing.assert_allclose(
        ref_opt.optimizer_trajectory(optimizers.sgd(), x0, grads, lrs), expected, rtol=1e-13
    )


def test_heavy_ball_is_a_weighted_sum_of_past_gradients():
    # Unrolling m_1 = g_1, m_t = mu m_{t-1} + (1 - tau) g_t gives
    # m_t = mu^{t-1} g_1 + (1 - tau) sum_{s=2}^t mu^{t-s} g_s.
    mu, tau = 0.7, 0.2
    x0, grads, lrs = _gradient_sequence(3)
    x = x0.copy()
    expected = np.empty_like(grads)
    for t in range(1, K + 1):
        m = mu ** (t - 1) * grads[0] + (1 - tau) * sum(
            mu ** (t - s) * grads[s - 1] for s in range(2, t + 1)
        )
        x = x - lrs[t - 1] * m
        expected[t - 1] = x
    got = ref_opt.optimizer_trajectory(optimizers.heavy_ball(mu, dampening=tau), x0, grads, lrs)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("beta2", [0.9, 0.999])
def test_adam_without_first_moment_is_bias_corrected_rmsprop(beta2):
    # With beta1 = 0: m_t = g_t and 1 - beta1^t = 1, so Adam's step is
    #   x_{t+1} = x_t - eta_t g_t / (sqrt(v_t / (1 - beta2^t)) + eps),
    #   v_t = beta2 v_{t-1} + (1 - beta2) g_t^2,
    # i.e. RMSProp (alpha = beta2) on the bias-corrected v_t / (1 - beta2^t). Written out here:
    eps = 1e-6
    x0, grads, lrs = _gradient_sequence(4)
    x, v_acc = x0.copy(), np.zeros(D)
    expected = np.empty_like(grads)
    for t in range(1, K + 1):
        g = grads[t - 1]
        v_acc = beta2 * v_acc + (1 - beta2) * g**2
        x = x - lrs[t - 1] * g / (np.sqrt(v_acc / (1 - beta2**t)) + eps)
        expected[t - 1] = x
    adam = ref_opt.optimizer_trajectory(optimizers.adam((0.0, beta2), eps=eps), x0, grads, lrs)
    np.testing.assert_allclose(adam, expected, rtol=1e-13)
    # Equivalently g/(sqrt(v/c) + eps) = sqrt(c) g/(sqrt(v) + eps sqrt(c)), c = 1 - beta2^t: the
    # rmsprop spec with learning rate eta_t sqrt(c_t) matches when eps is negligible (1e-300 here).
    c = 1 - beta2 ** np.arange(1, K + 1)
    adam0 = ref_opt.optimizer_trajectory(optimizers.adam((0.0, beta2), eps=1e-300), x0, grads, lrs)
    rms = ref_opt.optimizer_trajectory(
        optimizers.rmsprop(beta2, eps=1e-300), x0, grads, lrs * np.sqrt(c)
    )
    np.testing.assert_allclose(adam0, rms, rtol=1e-13)


def test_amsgrad_equals_adam_when_second_moment_never_falls():
    # With |g_t| non-decreasing, v_{t-1} <= max_{s<t} g_s^2 <= g_t^2, so
    # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2 >= v_{t-1}: the running max is v itself.
    x0 = np.array([1.0, -2.0])
    grads = np.outer(np.linspace(1.0, 3.0, 30), [1.0, -0.5])
    lrs = np.full(30, 0.01)
    plain, ams = optimizers.adam((0.9, 0.5)), optimizers.adam((0.9, 0.5), amsgrad=True)
    np.testing.assert_array_equal(
        ref_opt.optimizer_trajectory(plain, x0, grads, lrs),
        ref_opt.optimizer_trajectory(ams, x0, grads, lrs),
    )
    # ... and with a falling gradient v falls (beta2 = 0.5 forgets fast), so the max is active.
    falling = ref_opt.optimizer_trajectory(plain, x0, grads[::-1], lrs)
    falling_ams = ref_opt.optimizer_trajectory(ams, x0, grads[::-1], lrs)
    assert np.max(np.abs(falling - falling_ams)) > 1e-4


# ---------------------------------------------------------------------------------------------
# (c) gradients against finite differences, stochastic oracles against Monte Carlo


def _double_well_point(p: problems.DoubleWell) -> np.ndarray:
    wall = p.flat_minimum - p.wall_offset
    # one coordinate inside the wall, one near the barrier, one past the sharp minimum
    return np.array([wall - 0.4, 0.3, p.sharp_minimum + 0.2])


PROBLEMS = {
    "nqm": problems.nqm([1.0, 0.5, 0.1], [0.3, 1.0, 2.0], [1.0, -2.0, 0.5]),
    "least squares": problems.make_least_squares(16, 3, l2=0.1, seed=1),
    "logistic": problems.make_logistic(16, 3, l2=0.05, seed=2),
    "geman mcclure": problems.make_robust_regression(
        16, 3, loss="geman_mcclure", scale=0.7, seed=3
    ),
    "cauchy": problems.make_robust_regression(16, 3, loss="cauchy", scale=1.3, seed=4),
    "teacher student": problems.make_teacher_student(12, 3, width=2, seed=5),
    "double well": problems.double_well(kappa=0.5, noise_std=0.7, dim=3, wall_offset=0.5),
    "double well kappa 0": problems.double_well(kappa=0.0, noise_std=0.7, dim=3),
}
FINITE_SUMS = [k for k, p in PROBLEMS.items() if isinstance(p, problems.FiniteSum)]


def _point(p) -> np.ndarray:
    if isinstance(p, problems.DoubleWell):
        return _double_well_point(p)
    rng = np.random.default_rng(11)
    return np.asarray(p.x0) + 0.5 * rng.standard_normal(p.dim)


def _with_l2(p, l2: float):
    if isinstance(p, problems.FiniteSum):
        return problems.FiniteSum(p.kind, p.X, p.y, p.x0, l2, p.sampling, p.name, p.params)
    return p


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_gradient_matches_central_finite_differences(name):
    p = _with_l2(PROBLEMS[name], 0.1)
    x = _point(p)
    h = 1e-6
    fd = np.array(
        [
            (ref_prob.loss(p, x + h * e) - ref_prob.loss(p, x - h * e)) / (2 * h)
            for e in np.eye(p.dim)
        ]
    )
    # central differences: O(h^2 f''') truncation plus O(eps_mach f / h) rounding, about 1e-8 here
    np.testing.assert_allclose(ref_prob.grad(p, x), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", FINITE_SUMS)
def test_per_sample_gradients_average_to_the_full_gradient(name):
    p = _with_l2(PROBLEMS[name], 0.1)
    x = _point(p)
    rows = ref_prob.sample_grads(p, x, np.arange(p.n_samples))
    np.testing.assert_allclose(rows.mean(axis=0), ref_prob.grad(p, x), rtol=1e-12, atol=1e-14)
    # each row is the finite-difference gradient of its own sample's loss (+ l2 term)
    j, h = 3, 1e-6
    one = problems.FiniteSum(
        p.kind, p.X[j : j + 1], p.y[j : j + 1], p.x0, p.l2, p.sampling, p.name, p.params
    )
    fd = np.array(
        [
            (ref_prob.loss(one, x + h * e) - ref_prob.loss(one, x - h * e)) / (2 * h)
            for e in np.eye(p.dim)
        ]
    )
    np.testing.assert_allclose(rows[j], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_stochastic_gradient_is_unbiased(name):
    p = PROBLEMS[name]
    x = _point(p)
    rng = np.random.default_rng(2024)
    sampler = ref_prob.make_sampler(p)
    draws = np.array([ref_prob.stochastic_grad(p, x, 3, rng, sampler) for _ in range(3000)])
    mean, sem = draws.mean(axis=0), draws.std(axis=0, ddof=1) / math.sqrt(len(draws))
    # fixed seed; tolerance 5 standard errors of the Monte Carlo mean per coordinate
    assert np.all(np.abs(mean - ref_prob.grad(p, x)) <= 5 * sem + 1e-12), (mean, sem)


@pytest.mark.parametrize(
    ("name", "b", "variance"),
    [
        pytest.param("nqm", 4, lambda p: p.c / 4, id="nqm c/b"),
        pytest.param(
            "double well",
            5,
            lambda p: np.full(p.dim, p.noise_std**2 / 5),
            id="double well noise_std^2/b",
        ),
    ],
)
def test_stochastic_gradient_noise_variance(name, b, variance):
    p = PROBLEMS[name]
    x = _point(p)
    rng = np.random.default_rng(7)
    draws = np.array([ref_prob.stochastic_grad(p, x, b, rng) for _ in range(4000)])
    var = draws.var(axis=0, ddof=1)
    # Gaussian noise: the sample variance has relative standard error sqrt(2/(M-1)) ~ 2.2%;
    # tolerance 5 of them (fixed seed)
    np.testing.assert_allclose(var, variance(p), rtol=5 * math.sqrt(2 / 3999))


def test_shuffle_sampler_walks_permutations_and_drops_the_rest():
    sampler, rng = ref_prob.ShuffleSampler(10), np.random.default_rng(5)
    batches = [sampler.draw(4, rng) for _ in range(5)]
    replay = np.random.default_rng(5)
    perms = [replay.permutation(10) for _ in range(3)]
    # 10 = 4 + 4 + 2: two batches per epoch, the last 2 indices of each permutation dropped
    expected = [perms[0][:4], perms[0][4:8], perms[1][:4], perms[1][4:8], perms[2][:4]]
    for got, want in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_shuffle_sampler_caps_the_batch_at_n():
    sampler, rng = ref_prob.ShuffleSampler(6), np.random.default_rng(0)
    for _ in range(3):
        batch = sampler.draw(50, rng)
        assert sorted(batch.tolist()) == list(range(6))


def test_with_replacement_sampler_draws_uniform_integers():
    sampler, rng = ref_prob.WithReplacementSampler(7), np.random.default_rng(3)
    np.testing.assert_array_equal(sampler.draw(9, rng), np.random.default_rng(3).integers(0, 7, 9))


@pytest.mark.parametrize("name", FINITE_SUMS)
def test_one_shuffled_epoch_averages_to_the_full_gradient(name):
    base = PROBLEMS[name]
    p = problems.FiniteSum(
        base.kind, base.X, base.y, base.x0, base.l2, "shuffle", base.name, base.params
    )
    x, b = _point(p), 4  # n = 16 or 12: b divides n
    sampler, rng = ref_prob.make_sampler(p), np.random.default_rng(9)
    epoch = [ref_prob.stochastic_grad(p, x, b, rng, sampler) for _ in range(p.n_samples // b)]
    np.testing.assert_allclose(np.mean(epoch, axis=0), ref_prob.grad(p, x), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# (d) least squares, b = n, shuffle: full-batch gradient descent


def test_full_batch_shuffle_least_squares_is_gradient_descent():
    p = problems.make_least_squares(32, 4, l2=0.01, sampling="shuffle", seed=8)
    lr, steps = 0.3, 25
    rec = run(
        p,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(max_steps=steps),
        32,
        lr,
        np.random.default_rng(0),
        trajectory_every=1,
    )
    # gradient descent written out with the normal-equation form of the gradient
    w, losses = np.zeros(4), []
    for t in range(steps + 1):
        r = p.X @ w - p.y
        losses.append(0.5 * np.mean(r**2) + 0.005 * w @ w)
        if t < steps:
            w = w - lr * (p.X.T @ r / 32 + 0.01 * w)
    assert (rec["steps"], rec["sfo"], rec["reached"]) == (steps, 32 * steps, False)
    np.testing.assert_allclose(rec["trajectory"], losses, rtol=1e-12)
    assert rec["final_x0"] == pytest.approx(w[0], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# (e) runs: target, divergence, budget and SFO accounting


def _first_check_below(losses: np.ndarray, tau: float, every: int) -> int:
    return next(t for t in range(0, len(losses), every) if losses[t] <= tau)


@pytest.mark.parametrize("check_every", [1, 7])
def test_noiseless_nqm_stops_at_the_closed_form_step(check_every):
    h, x0, lr, tau = np.array([1.0, 0.3, 0.05]), np.array([1.0, 2.0, -1.0]), 0.8, 1e-3
    p = problems.nqm(h, np.zeros(3), x0)
    rec = run(
        p,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(loss_below=tau, check_every=check_every, max_steps=5000),
        3,
        lr,
        np.random.default_rng(0),
    )
    # c = 0: x_t = (1 - lr h)^t x0 exactly, so f_t = 1/2 sum h (1 - lr h)^{2t} x0^2
    closed = np.array([0.5 * np.sum(h * (1 - lr * h) ** (2 * t) * x0**2) for t in range(5000)])
    want = _first_check_below(closed, tau, check_every)
    assert (rec["steps"], rec["reached"], rec["diverged"]) == (want, True, False)
    assert rec["sfo"] == 3 * want
    assert rec["final_loss"] == pytest.approx(closed[want], rel=1e-10)
    assert rec["final_grad_norm"] == pytest.approx(
        np.linalg.norm(h * (1 - lr * h) ** want * x0), rel=1e-10
    )


def test_noisy_nqm_reaches_a_loose_target():
    p = problems.nqm_power_law(8, s=0.5)
    rec = run(
        p,
        optimizers.heavy_ball(0.5),
        schedules.schedule(),
        targets.target(loss_below=0.05, max_steps=2000),
        8,
        0.4,
        np.random.default_rng(1),
    )
    assert (rec["reached"], rec["diverged"]) == (True, False)
    assert rec["final_loss"] <= 0.05
    assert 0 < rec["steps"] < 2000
    assert rec["sfo"] == 8 * rec["steps"]


@pytest.mark.parametrize("check_every", [1, 10])
def test_huge_learning_rate_is_recorded_as_divergence(check_every):
    p = problems.nqm([1.0, 2.0], [0.1, 0.1], 1.0)
    rec = run(
        p,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(loss_below=1e-3, check_every=check_every, max_steps=1000),
        1,
        100.0,
        np.random.default_rng(2),
    )
    assert (rec["diverged"], rec["reached"]) == (True, False)
    assert rec["steps"] % check_every == 0
    assert rec["steps"] < 1000
    assert not rec["final_loss"] <= 1e6 * ref_prob.loss(p, p.x0)  # too large, or not finite


def test_budget_and_sfo_with_a_geometric_batch_schedule():
    sched = schedules.schedule(batch=schedules.geometric(10, 2.0), max_batch_size=20)
    rec = run(
        problems.nqm_power_law(4),
        optimizers.sgd(),
        sched,
        targets.target(loss_below=-1.0, check_every=5, max_steps=37),
        3,
        0.1,
        np.random.default_rng(3),
    )
    # b_t = min(ceil(3 * 2^floor(t/10)), 20) for t = 0..36: ten 3s, ten 6s, ten 12s, seven 20s
    assert (rec["steps"], rec["reached"], rec["diverged"]) == (37, False, False)
    assert rec["sfo"] == 10 * 3 + 10 * 6 + 10 * 12 + 7 * 20 == 350


def test_epoch_batch_schedule_caps_at_n_under_shuffle():
    p = problems.make_least_squares(64, 3, sampling="shuffle", seed=4)
    sched = schedules.schedule(batch=schedules.geometric(1, 2.0, unit="epoch"))
    rec = run(
        p, optimizers.sgd(), sched, targets.target(max_steps=16), 8, 0.05, np.random.default_rng(4)
    )
    # epochs of 64 samples: 8 steps of 8, 4 of 16, 2 of 32, then 64 (= n, the cap) for 2 steps
    assert (rec["steps"], rec["sfo"]) == (16, 8 * 8 + 4 * 16 + 2 * 32 + 2 * 64)


def test_epoch_learning_rate_step_decay_follows_samples_seen():
    # lr halves every epoch of n = 10 samples; b = 5, so steps 0,1 at lr0, 2,3 at lr0/2, ...
    p = problems.least_squares(np.ones((10, 1)), np.zeros(10), sampling="shuffle", x0=1.0)
    sched = schedules.schedule(lr=schedules.step_decay(1, 0.5, unit="epoch"))
    rec = run(
        p, optimizers.sgd(), sched, targets.target(max_steps=6), 5, 0.1, np.random.default_rng(0)
    )
    # every sample has gradient w: w_{t+1} = (1 - lr_t) w_t
    want = np.prod([1 - 0.1 * 0.5 ** (t // 2) for t in range(6)])
    assert rec["final_x0"] == pytest.approx(want, rel=1e-14)


def test_position_target_on_the_double_well():
    p = problems.double_well(kappa=0.5, noise_std=0.0, x0=0.3, dim=1)
    # no noise: gradient descent from x = 0.3 (right of the barrier) slides into the sharp
    # minimum and never crosses 0; from x = -0.3 it reaches the flat side, below x = -0.5
    stay = run(
        p,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(position_below=(0, -0.5), max_steps=300),
        1,
        0.05,
        np.random.default_rng(0),
    )
    assert not stay["reached"]
    assert stay["final_x0"] == pytest.approx(p.sharp_minimum, abs=1e-6)
    q = problems.double_well(kappa=0.5, noise_std=0.0, x0=-0.3, dim=1)
    cross = run(
        q,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(position_below=(0, -0.5), max_steps=300),
        1,
        0.05,
        np.random.default_rng(0),
    )
    assert cross["reached"]
    assert cross["final_x0"] < -0.5
    assert cross["steps"] < 300


def test_grad_norm_target_and_trajectory_thinning():
    p = problems.nqm([1.0, 0.5], [0.0, 0.0], 1.0)
    rec = run(
        p,
        optimizers.sgd(),
        schedules.schedule(),
        targets.target(grad_norm_below=1e-2, max_steps=1000),
        1,
        0.5,
        np.random.default_rng(0),
        trajectory_every=3,
    )
    # |grad f(x_t)|^2 = sum h^2 (1 - h/2)^{2t}: first t with norm <= 1e-2
    norms = [math.sqrt(0.5 ** (2 * t) + 0.25 * 0.75 ** (2 * t)) for t in range(100)]
    want = next(t for t, g in enumerate(norms) if g <= 1e-2)
    assert (rec["reached"], rec["steps"]) == (True, want)
    closed = [0.5 * 0.5 ** (2 * t) + 0.25 * 0.75 ** (2 * t) for t in range(0, want + 1, 3)]
    np.testing.assert_allclose(rec["trajectory"], closed, rtol=1e-12)


def test_batch_size_at_respects_both_caps():
    sched = schedules.schedule(batch=schedules.linear(1, 1.0), max_batch_size=9)
    got = [batch_size_at(sched, 2, t, 0, 7, None) for t in range(6)]
    assert got == [2, 4, 6, 7, 7, 7]  # 2(1 + t), capped by n = 7 before max_batch_size = 9


# ---------------------------------------------------------------------------------------------
# bad input names the argument


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda: ref_opt.optimizer_trajectory("sgd", [1.0], [[1.0]], [0.1]),
            TypeError,
            "spec must be",
            id="spec not an Optimizer",
        ),
        pytest.param(
            lambda: ref_opt.optimizer_trajectory(optimizers.sgd(), [1.0], [[1.0, 2.0]], [0.1]),
            ValueError,
            "grads must have shape",
            id="grads of the wrong width",
        ),
        pytest.param(
            lambda: ref_opt.optimizer_trajectory(optimizers.sgd(), [1.0], [[1.0]], [0.1, 1]),
            ValueError,
            "lrs must have shape",
            id="lrs of the wrong length",
        ),
        pytest.param(
            lambda: ref_opt.optimizer_trajectory(optimizers.sgd(), [np.nan], [[1.0]], [0.1]),
            ValueError,
            "x0 must be finite",
            id="x0 not finite",
        ),
        pytest.param(
            lambda: ref_prob.loss(PROBLEMS["nqm"], [1.0]),
            ValueError,
            "x must have shape",
            id="x of the wrong length",
        ),
        pytest.param(
            lambda: ref_prob.sample_grads(PROBLEMS["nqm"], [1.0, 1.0, 1.0], [0]),
            TypeError,
            "finite sum",
            id="sample_grads of an nqm",
        ),
        pytest.param(
            lambda: ref_prob.sample_grads(PROBLEMS["least squares"], [0.0] * 3, [16]),
            ValueError,
            "idx must lie in",
            id="index past n",
        ),
        pytest.param(
            lambda: ref_prob.stochastic_grad(
                PROBLEMS["nqm"], [0.0] * 3, 0, np.random.default_rng()
            ),
            ValueError,
            "b must be a positive integer",
            id="batch size 0",
        ),
        pytest.param(
            lambda: ref_prob.stochastic_grad(PROBLEMS["nqm"], [0.0] * 3, 1, 42),
            TypeError,
            "rng must be",
            id="rng not a Generator",
        ),
        pytest.param(
            lambda: run(
                PROBLEMS["nqm"],
                optimizers.sgd(),
                schedules.schedule(),
                targets.target(),
                2,
                -0.1,
                np.random.default_rng(),
            ),
            ValueError,
            "learning_rate must be positive",
            id="negative learning rate",
        ),
        pytest.param(
            lambda: run(
                PROBLEMS["nqm"],
                optimizers.sgd(),
                schedules.schedule(),
                targets.target(position_below=(5, 0.0)),
                2,
                0.1,
                np.random.default_rng(),
            ),
            ValueError,
            "position_below",
            id="position coordinate past the dimension",
        ),
        pytest.param(
            lambda: run(
                PROBLEMS["nqm"],
                optimizers.sgd(),
                schedules.schedule(lr=schedules.step_decay(1, unit="epoch")),
                targets.target(max_steps=3),
                2,
                0.1,
                np.random.default_rng(),
            ),
            ValueError,
            "epochs",
            id="epoch schedule on a streamed problem",
        ),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
