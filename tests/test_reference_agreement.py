"""The Rust core against independent oracles: the NumPy reference and torch.optim, step for step."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import critbatch as cb
from critbatch import _core, reference
from critbatch import optimizers as opt
from critbatch import problems as pb
from critbatch import schedules as sc
from critbatch.targets import target
from tests.conftest import OPTIMIZER_IDS, OPTIMIZERS


def gradient_sequence(steps=60, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    grads = rng.standard_normal((steps, dim)) * np.linspace(0.1, 3.0, steps)[:, None]
    grads[10:15] *= 1e-3  # a quiet stretch, so that AMSGrad's maximum matters
    return rng.standard_normal(dim), grads, 0.05 * (1 + np.sin(np.arange(steps)))


@pytest.mark.parametrize("spec", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_core_matches_the_numpy_reference_step_for_step(spec):
    x0, grads, lrs = gradient_sequence()
    core = _core.optimizer_trajectory(spec.to_core(), x0, grads, lrs)
    ref = reference.optimizer_trajectory(spec, x0, grads, lrs)
    np.testing.assert_allclose(core, ref, rtol=1e-12, atol=1e-14)


def torch_optimizer(spec, params, lr):
    import torch

    if spec.kind in ("sgd", "heavy_ball", "nesterov"):
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=spec.momentum,
            dampening=spec.dampening,
            nesterov=spec.kind == "nesterov",
        )
    if spec.kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=spec.betas, eps=spec.eps, amsgrad=spec.amsgrad)
    return torch.optim.RMSprop(
        params,
        lr=lr,
        alpha=spec.alpha,
        eps=spec.eps,
        momentum=spec.momentum,
        centered=spec.centered,
    )


@pytest.mark.parametrize("spec", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_core_matches_torch_optim_step_for_step(spec):
    torch = pytest.importorskip("torch")
    x0, grads, lrs = gradient_sequence(seed=1)
    p = torch.nn.Parameter(torch.tensor(x0, dtype=torch.float64))
    optim = torch_optimizer(spec, [p], float(lrs[0]))
    want = []
    for g, lr in zip(grads, lrs, strict=True):
        optim.param_groups[0]["lr"] = float(lr)
        p.grad = torch.tensor(g, dtype=torch.float64)
        optim.step()
        want.append(p.detach().numpy().copy())
    core = _core.optimizer_trajectory(spec.to_core(), x0, grads, lrs)
    np.testing.assert_allclose(core, np.array(want), rtol=1e-11, atol=1e-13)


PROBLEMS = [
    pb.nqm_power_law(6),
    pb.make_least_squares(20, 4, l2=0.1, seed=1),
    pb.make_logistic(20, 3, seed=2),
    pb.make_robust_regression(20, 3, loss="geman_mcclure", seed=3),
    pb.make_robust_regression(20, 3, loss="cauchy", seed=4),
    pb.make_teacher_student(20, 3, width=2, seed=5),
    pb.double_well(kappa=0.4, dim=3, x0=[-2.7, 0.1, 0.9]),
]


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.name)
def test_exact_loss_and_gradient_match_the_reference(problem):
    rng = np.random.default_rng(0)
    x = problem.x0 + 0.3 * rng.standard_normal(problem.dim)
    loss, grad = _core.loss_and_grad(problem.to_core(), x)
    assert loss == pytest.approx(reference.loss(problem, x), rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad, reference.grad(problem, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("problem", "optimizer", "schedule"),
    [
        (pb.nqm(np.geomspace(1, 0.01, 5), 0.0), opt.heavy_ball(0.7), sc.schedule()),
        (pb.nqm(np.geomspace(1, 0.01, 5), 0.0), opt.adam(), sc.schedule(lr=sc.cosine(300))),
        (
            pb.make_least_squares(16, 3, sampling="shuffle", seed=3),
            opt.nesterov(0.5),
            sc.schedule(lr=sc.step_decay(2, 0.5, unit="epoch")),
        ),
        (
            pb.nqm(np.geomspace(1, 0.01, 5), 0.0),
            opt.nesterov(0.6),
            sc.schedule(lr=sc.cosine(400, min_factor=0.1), warmup=37, warmup_start=0.05),
        ),
    ],
    ids=[
        "noise-free nqm, heavy ball",
        "noise-free nqm, adam, cosine",
        "full-batch least squares",
        "noise-free nqm, nesterov, warm-up then cosine",
    ],
)
def test_deterministic_runs_match_the_reference_exactly(problem, optimizer, schedule):
    tgt = target(loss_below=1e-4, max_steps=3000, check_every=3)
    b = problem.n_samples or 1
    core = cb.sweep(problem, optimizer, [b], [0.1], 1, tgt, schedules=schedule)
    ref = reference.run(problem, optimizer, schedule, tgt, b, 0.1, np.random.default_rng(0))
    assert (core["steps"][0], core["sfo"][0], bool(core["reached"][0])) == (
        ref["steps"],
        ref["sfo"],
        ref["reached"],
    )
    assert core["final_loss"][0] == pytest.approx(ref["final_loss"], rel=1e-9)


def test_steps_to_target_have_the_reference_distribution():
    problem = pb.nqm_power_law(10, s=2.0)
    tgt = target(loss_below=0.15, max_steps=5000)
    core = cb.sweep(problem, "sgd", [2], [0.3], 300, tgt, seed=5)["steps"]
    rng = np.random.default_rng(5)
    ref = [
        reference.run(problem, opt.sgd(), sc.schedule(), tgt, 2, 0.3, rng)["steps"]
        for _ in range(300)
    ]
    # Two-sample KS test at the 0.1 % level: the two samplers are independent streams.
    assert stats.ks_2samp(core, ref).pvalue > 1e-3


def test_core_normals_pass_a_kolmogorov_smirnov_test():
    z = _core.normals(1, 2, 200_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size)
