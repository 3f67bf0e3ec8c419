"""The preconditioned gradient noise scale: estimators, step rules' preconditioners, sweeps.

Oracles: exact :math:`G^\\top P G` and :math:`\\operatorname{tr}(P\\Sigma)` from per-example
gradients of small linear models (Monte Carlo means within 4 standard errors, seeded);
``torch.optim``'s own second-moment state for the rules' preconditioners; a hand-written Adam
recursion on the gradients the runner actually fed the rule; the plain noise scale, which unit
weights must reproduce bitwise.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import critbatch as cb  # noqa: E402
from critbatch import optimizers as opt  # noqa: E402
from critbatch import problems as pb  # noqa: E402
from critbatch.targets import target  # noqa: E402
from critbatch.torch import noise_scale  # noqa: E402
from critbatch.torch.network import NetworkOracle  # noqa: E402
from critbatch.torch.optimizers import from_spec  # noqa: E402
from critbatch.torch.problems import Batch, build  # noqa: E402
from critbatch.torch.rng import Streams  # noqa: E402
from critbatch.torch.runner import run_plan  # noqa: E402
from tests.conftest import Err  # noqa: E402
from tests.test_torch_real import _mse, _regression  # noqa: E402

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_data(n=48, d=3, classes=3, seed=0):
    """A small classification set (train and test) for a linear softmax model."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = (x @ rng.normal(size=(d, classes)) + rng.normal(size=(n, classes))).argmax(1)
    return x, y, x[:8], y[:8]


def _exact_weighted(per_example, p):
    """Exact :math:`G^T P G` and :math:`tr(P Sigma)` (population covariance) from rows."""
    grad = per_example.mean(0)
    centred = per_example - grad
    return float((p * grad * grad).sum()), float((p * centred * centred).sum(1).mean())


# ---------------------------------------------------------------------------------------------
# The estimators: unbiased for the weighted terms, and P = I is the plain noise scale.


def _per_example(model, x, y):
    """The per-example gradients of :func:`_mse` at the linear model's weights."""
    w = model.weight.detach()[0]
    return (x * (x @ w - y)[:, None]).numpy()  # gradient of 0.5 (x.w - y)^2


def test_weighted_estimators_are_unbiased_on_linear_regression():
    model, x, y, *_ = _regression()
    per_example = _per_example(model, x, y)
    p = np.array([0.25, 4.0, 1.0, 0.5, 2.0])
    g2_exact, trace_exact = _exact_weighted(per_example, p)
    gen = torch.Generator().manual_seed(0)
    b_small, b_big, trials = 2, 16, 3000
    weights = torch.tensor(p)
    norms = np.array(
        [
            noise_scale.gradient_sq_norms(
                model, x, y, b_small, b_big, generator=gen, loss_fn=_mse, weights=weights
            )
            for _ in range(trials)
        ]
    )
    g2 = (b_big * norms[:, 1] - b_small * norms[:, 0]) / (b_big - b_small)
    trace = (norms[:, 0] - norms[:, 1]) / (1 / b_small - 1 / b_big)
    # 4 standard errors of the Monte Carlo mean
    for estimate, exact in ((g2, g2_exact), (trace, trace_exact)):
        assert abs(estimate.mean() - exact) < 4 * estimate.std() / np.sqrt(trials)
    # the test has power: the unweighted terms are far from the weighted ones
    g2_plain, trace_plain = _exact_weighted(per_example, np.ones(5))
    assert abs(trace.mean() - trace_plain) > 4 * trace.std() / np.sqrt(trials)
    assert abs(g2.mean() - g2_plain) > 4 * g2.std() / np.sqrt(trials)


def test_noise_scale_with_weights_approaches_the_preconditioned_ratio():
    model, x, y, *_ = _regression(seed=1)
    per_example = _per_example(model, x, y)
    p = np.linspace(0.2, 3.0, 5)
    g2_exact, trace_exact = _exact_weighted(per_example, p)
    out = noise_scale.noise_scale(
        model, x, y, 4, 32, pairs=2000, seed=0, loss_fn=_mse, weights=torch.tensor(p)
    )
    # ratio of means: consistent; 2000 pairs put it within a few percent (seeded)
    assert out["b_simple"] == pytest.approx(trace_exact / g2_exact, rel=0.1)
    assert out["gradient_norm_sq"] == pytest.approx(g2_exact, rel=0.1)


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        (torch.ones(4), Err("weights must be a 1-d tensor of the 5 trainable parameters")),
        (torch.ones(1, 5), Err("weights must be a 1-d tensor of the 5 trainable parameters")),
        (torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0]), Err("weights must be finite and positive")),
        (torch.tensor([1.0, 1.0, math.inf, 1.0, 1.0]), Err("weights must be finite and positive")),
        ([1.0] * 5, Err("weights must be a tensor, got list", TypeError)),
    ],
    ids=["too short", "not flat", "a zero weight", "an infinite weight", "a list"],
)
def test_bad_weights_are_refused(weights, expected):
    model, x, y, *_ = _regression()
    with expected.raises():
        noise_scale.gradient_sq_norms(model, x, y, 2, 4, loss_fn=_mse, weights=weights)


def test_unit_weights_give_the_plain_squared_norms_bitwise():
    g = torch.randn(7, 300, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noise_scale.sq_norms(g, torch.ones_like(g)), noise_scale.sq_norms(g))
    model, x, y, *_ = _regression()
    plain = noise_scale.gradient_sq_norms(model, x, y, 3, 9, seed=4, loss_fn=_mse)
    unit = noise_scale.gradient_sq_norms(
        model, x, y, 3, 9, seed=4, loss_fn=_mse, weights=torch.ones(5, dtype=F64)
    )
    assert unit == plain


# ---------------------------------------------------------------------------------------------
# The sweep's own path: half batches in the network oracle, fed a preconditioner.


@pytest.fixture(scope="module")
def linear_softmax():
    """A linear softmax model on :func:`tiny_data`, sampled with replacement, with decay 0."""
    return pb.network(
        "mlp",
        "tests.test_noise_scale:tiny_data",
        model_kwargs={"hidden": []},
        validation=0.0,
        sampling="with_replacement",
        noise_scale=True,
        noise_decay=0.0,
    )


def _oracle(spec, runs):
    problem = build(spec, "cpu", F64)
    x = problem.initial(np.zeros(runs, dtype=np.int64), 0)
    oracle = problem.oracle(Streams(11, np.arange(runs), "cpu"))
    assert isinstance(oracle, NetworkOracle)
    return problem, x, oracle


def test_the_oracle_estimates_the_weighted_terms_without_bias(linear_softmax):
    runs, steps, b = 400, 10, 8
    problem, x, oracle = _oracle(linear_softmax, runs)
    # exact per-example gradients at the (shared) weights, from the problem's own loss
    loss = torch.nn.functional.cross_entropy
    w = x[0].detach()
    rows = []
    for i in range(problem.x.shape[0]):
        leaf = w.clone().requires_grad_()
        logits = torch.func.functional_call(
            problem.model, problem.params(leaf), (problem.x[i : i + 1],)
        )
        rows.append(torch.autograd.grad(loss(logits, problem.y[i : i + 1]), leaf)[0])
    per_example = torch.stack(rows).numpy()
    p = np.random.default_rng(5).uniform(0.2, 5.0, size=problem.dim)
    g2_exact, trace_exact = _exact_weighted(per_example, p)
    weights = torch.tensor(p)[None, :].expand(runs, -1)
    batch = Batch(np.full(runs, b), "cpu")
    g2, trace = [], []
    for t in range(steps):
        oracle.set_preconditioner(weights)
        oracle.grad(x, batch, t)
        tracker = oracle.noise_preconditioned  # decay 0: the averages are this step's estimates
        g2.append(tracker.g2.clone())
        trace.append(tracker.trace.clone())
    g2_draws, trace_draws = torch.cat(g2).numpy(), torch.cat(trace).numpy()
    n = g2_draws.size
    # 4 standard errors of the Monte Carlo mean, over runs x steps independent draws
    for estimate, exact in ((g2_draws, g2_exact), (trace_draws, trace_exact)):
        assert abs(estimate.mean() - exact) < 4 * estimate.std() / np.sqrt(n)
    trace_plain = _exact_weighted(per_example, np.ones(problem.dim))[1]
    assert abs(trace_draws.mean() - trace_plain) > 4 * trace_draws.std() / np.sqrt(n)
    # a step without a preconditioner leaves the weighted averages alone
    before = oracle.noise_preconditioned.trace.clone()
    oracle.grad(x, batch, steps)
    assert torch.equal(oracle.noise_preconditioned.trace, before)


def test_unit_preconditioner_reproduces_the_plain_noise_scale_bitwise():
    spec = pb.network(
        "mlp", "digits", model_kwargs={"hidden": [8]}, noise_scale=True, noise_decay=0.9
    )
    _, x, oracle = _oracle(spec, 6)
    sizes = np.array([4, 4, 16, 16, 33, 33])
    rule = from_spec(opt.adam())
    state = rule.init(x)
    lr = torch.full((6, 1), 0.01, dtype=F64)
    for t in range(5):
        oracle.set_preconditioner(torch.ones_like(x))
        g = oracle.grad(x, Batch(sizes, "cpu"), t)
        rule.step(x, g, lr, state, t + 1)
    plain, unit = oracle.noise.value(), oracle.noise_preconditioned.value()
    assert torch.isfinite(plain).all()
    assert torch.equal(plain, unit)


# ---------------------------------------------------------------------------------------------
# The step rules' preconditioners, against torch.optim's state.


def _two_steps(rule, torch_opt, grads, clip=None):
    x = torch.zeros(1, grads[0].shape[0], dtype=F64)
    state = rule.init(x)
    lr = torch.full((1, 1), 1e-3, dtype=F64)
    param = torch.nn.Parameter(torch.zeros(grads[0].shape[0], dtype=F64))
    optimizer = torch_opt([param])
    for t, g in enumerate(grads, start=1):
        assert (t == 1) == (rule.preconditioner(state, t) is None)
        rule.step(x, g[None, :], lr, state, t)
        param.grad = g.clone()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([param], clip)
        optimizer.step()
    return rule.preconditioner(state, len(grads) + 1), optimizer.state[param]


GRADS = [
    torch.tensor([0.5, -2.0, 1e-3, 0.0], dtype=F64),
    torch.tensor([-1.0, 3.0, 2e-3, 0.0], dtype=F64),
    torch.tensor([0.25, 0.5, -1e-3, 0.0], dtype=F64),
]


@pytest.mark.parametrize(
    ("spec", "make", "denominator"),
    [
        (
            opt.adam((0.9, 0.99), eps=1e-6),
            lambda ps: torch.optim.Adam(ps, betas=(0.9, 0.99), eps=1e-6),
            lambda s: (s["exp_avg_sq"] / (1 - 0.99**3)).sqrt() + 1e-6,
        ),
        (
            opt.adam((0.9, 0.99), eps=1e-6, amsgrad=True),
            lambda ps: torch.optim.Adam(ps, betas=(0.9, 0.99), eps=1e-6, amsgrad=True),
            lambda s: (s["max_exp_avg_sq"] / (1 - 0.99**3)).sqrt() + 1e-6,
        ),
        (
            opt.adamw((0.8, 0.9), eps=1e-4, weight_decay=0.1),
            lambda ps: torch.optim.AdamW(ps, betas=(0.8, 0.9), eps=1e-4, weight_decay=0.1),
            lambda s: (s["exp_avg_sq"] / (1 - 0.9**3)).sqrt() + 1e-4,
        ),
        (
            opt.rmsprop(0.9, eps=1e-5, momentum=0.5),
            lambda ps: torch.optim.RMSprop(ps, alpha=0.9, eps=1e-5, momentum=0.5),
            lambda s: s["square_avg"].sqrt() + 1e-5,
        ),
        (
            opt.rmsprop(0.9, eps=1e-5, centered=True),
            lambda ps: torch.optim.RMSprop(ps, alpha=0.9, eps=1e-5, centered=True),
            lambda s: (s["square_avg"] - s["grad_avg"] ** 2).sqrt() + 1e-5,
        ),
    ],
    ids=["adam", "adam amsgrad", "adamw", "rmsprop with momentum", "rmsprop centred"],
)
def test_a_rules_preconditioner_is_torchs_denominator_before_the_step(spec, make, denominator):
    p, torch_state = _two_steps(from_spec(spec), make, GRADS)
    want = 1.0 / denominator(torch_state)
    torch.testing.assert_close(p[0], want, rtol=1e-12, atol=0.0)


def test_a_clipped_rule_reads_the_clipped_gradients_second_moment():
    spec = opt.adam((0.9, 0.99), eps=1e-6, max_grad_norm=1.0)
    p, state = _two_steps(
        from_spec(spec),
        lambda ps: torch.optim.Adam(ps, betas=(0.9, 0.99), eps=1e-6),
        GRADS,
        clip=1.0,
    )
    want = 1.0 / ((state["exp_avg_sq"] / (1 - 0.99**3)).sqrt() + 1e-6)
    # the rule clips with a 1e-6 in the norm as torch does; the two agree to rounding
    torch.testing.assert_close(p[0], want, rtol=1e-9, atol=0.0)


def test_lambs_preconditioner_is_its_adam_denominator():
    rule = from_spec(opt.lamb((0.9, 0.95), eps=1e-6, weight_decay=0.01))
    x = torch.ones(1, 4, dtype=F64)
    state = rule.init(x)
    for t, g in enumerate(GRADS[:2], start=1):
        rule.step(x, g[None, :], torch.full((1, 1), 0.1, dtype=F64), state, t)
    g1, g2 = GRADS[0], GRADS[1]
    v = 0.05 * (0.95 * g1**2 + g2**2)  # (1 - b2) (b2 g1^2 + g2^2)
    want = 1.0 / ((v / (1 - 0.95**2)).sqrt() + 1e-6)
    torch.testing.assert_close(rule.preconditioner(state, 3)[0], want, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize(
    "spec",
    [
        opt.sgd(),
        opt.heavy_ball(0.9),
        opt.nesterov(0.9),
        opt.lars(),
        opt.lion(),
        opt.sgd(max_grad_norm=1.0),
    ],
    ids=["sgd", "heavy ball", "nesterov", "lars", "lion", "clipped sgd"],
)
def test_rules_without_a_second_moment_have_no_preconditioner(spec):
    rule = from_spec(spec)
    x = torch.ones(2, 4, dtype=F64)
    state = rule.init(x)
    for t, g in enumerate(GRADS, start=1):
        rule.step(x, g.expand(2, -1), torch.full((2, 1), 0.1, dtype=F64), state, t)
        assert rule.preconditioner(state, t + 1) is None


# ---------------------------------------------------------------------------------------------
# In sweeps: the runner hands the rule's preconditioner over, and the column is filled.


def test_the_runner_hands_the_oracle_adams_preconditioner(monkeypatch):
    handed, fed = [], []
    set_preconditioner, grad = NetworkOracle.set_preconditioner, NetworkOracle.grad

    def record_p(self, p):
        handed.append(None if p is None else p.clone())
        set_preconditioner(self, p)

    def record_g(self, x, batch, t):
        g = grad(self, x, batch, t)
        fed.append(g.clone())
        return g

    monkeypatch.setattr(NetworkOracle, "set_preconditioner", record_p)
    monkeypatch.setattr(NetworkOracle, "grad", record_g)
    problem = pb.network("mlp", "digits", model_kwargs={"hidden": [4]}, noise_scale=True)
    beta2, eps = 0.99, 1e-6
    plan = cb.make_plan(
        problem,
        opt.adam((0.9, beta2), eps=eps),
        [16, 32],
        [0.01],
        1,
        target(loss_below=0.0, check_every=1, max_steps=3),
    )
    out = run_plan(plan, dtype="float64")
    assert len(handed) == len(fed) == 3
    assert handed[0] is None  # the first step: no second moment yet
    g1, g2 = fed[0], fed[1]
    # Adam's v after one and two steps, bias-corrected by 1 - beta2^k
    for p, v, k in (
        (handed[1], (1 - beta2) * g1**2, 1),
        (handed[2], (1 - beta2) * (beta2 * g1**2 + g2**2), 2),
    ):
        want = 1.0 / ((v / (1 - beta2**k)).sqrt() + eps)
        assert p.shape == (2, problem.dim)
        torch.testing.assert_close(p, want, rtol=1e-12, atol=0.0)
    assert np.isfinite(out["noise_scale_preconditioned"]).all()


@pytest.fixture(scope="module")
def digits_mlp():
    return pb.network("mlp", "digits", model_kwargs={"hidden": [16]}, noise_scale=True)


def test_an_adam_sweep_fills_the_column_and_sgd_leaves_it_nan(digits_mlp):
    # runs of over 100 steps at batches near the noise scale: long enough for the averages to
    # forget the heavy-tailed first steps (critbatch.torch.noise_scale); seeded
    tgt = target(loss_below=0.5, check_every=5, max_steps=600)
    adam = cb.sweep(digits_mlp, "adam", [128, 256], [0.003], 2, tgt, backend="torch")
    sgd = cb.sweep(digits_mlp, "sgd", [128, 256], [0.5], 2, tgt, backend="torch")
    assert adam["reached"].all()
    assert sgd["reached"].all()
    assert np.isfinite(adam["noise_scale_preconditioned"]).all()
    assert (adam["noise_scale_preconditioned"] > 0).all()
    assert np.isnan(sgd["noise_scale_preconditioned"]).all()
    assert np.isfinite(sgd["noise_scale"]).all()
    assert "noise_scale_preconditioned" in adam.to_pandas().columns


def test_the_preconditioned_measurement_changes_nothing_else(digits_mlp, monkeypatch):
    from critbatch.torch.optimizers import Adam

    tgt = target(loss_below=0.3, check_every=5, max_steps=600)
    with_p = cb.sweep(digits_mlp, "adam", [32, 64], [0.01], 2, tgt, backend="torch")
    monkeypatch.setattr(Adam, "preconditioner", lambda self, state, t: None)
    without = cb.sweep(digits_mlp, "adam", [32, 64], [0.01], 2, tgt, backend="torch")
    assert np.isnan(without["noise_scale_preconditioned"]).all()
    for column in ("steps", "final_loss", "noise_scale", "final_accuracy"):
        np.testing.assert_array_equal(with_p[column], without[column])


def test_without_noise_scale_the_runner_asks_for_no_preconditioner(monkeypatch):
    calls = []
    from critbatch.torch.optimizers import Adam

    preconditioner = Adam.preconditioner

    def counted(self, state, t):
        calls.append(t)
        return preconditioner(self, state, t)

    monkeypatch.setattr(Adam, "preconditioner", counted)
    problem = pb.network("mlp", "digits", model_kwargs={"hidden": [4]})
    out = cb.sweep(problem, "adam", [16], [0.01], 1, target(max_steps=4), backend="torch")
    assert calls == []
    assert np.isnan(out["noise_scale_preconditioned"]).all()
