r"""Weight averaging: checks read the bias-corrected EWA of the iterates (core and torch).

The oracle is the recursion itself, written out by hand: with :math:`x_j` the iterate after step
:math:`j`, :math:`\bar x_k = \sum_{j=1}^k (1-\tau)\tau^{k-j} x_j / (1 - \tau^k)` and
:math:`\bar x_0 = x_0` (critbatch.plan's docstring; Zhang et al. 2024, arXiv 2410.21676, with the
bias correction of the authors' code). On the NQM the mean loss at the average is compared with
the exact expectation from :mod:`critbatch.theory.zhang2019`, whose average starts at
:math:`x_0` without correction, mapped to ours by
:math:`\bar x_k = (y_k - \tau^k x_0)/(1-\tau^k)`.
"""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import critbatch as cb  # noqa: E402
from critbatch import problems as pb  # noqa: E402
from critbatch import spec as S  # noqa: E402
from critbatch.optimizers import heavy_ball, layers_for  # noqa: E402
from critbatch.sweep import execute  # noqa: E402
from critbatch.targets import target  # noqa: E402
from critbatch.theory import zhang2019  # noqa: E402
from critbatch.torch.optimizers import from_spec  # noqa: E402
from critbatch.torch.problems import build  # noqa: E402
from critbatch.torch.runner import _Chunk, run_plan  # noqa: E402
from tests.conftest import Err  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def hand_ewa(iterates: np.ndarray, tau: float) -> np.ndarray:
    """``(steps + 1, ...)`` iterates x_0..x_K -> the bias-corrected averages xbar_0..xbar_K."""
    out = [iterates[0]]
    for k in range(1, iterates.shape[0]):
        weights = (1 - tau) * tau ** (k - np.arange(1, k + 1)) / (1 - tau**k)
        out.append(np.tensordot(weights, iterates[1 : k + 1], axes=1))
    return np.stack(out)


BACKENDS = pytest.mark.parametrize("backend", ["rust", "torch"])


def run(p, backend):
    """The outcome columns and trajectories of a plan on ``backend``, as a dict."""
    if backend == "torch":
        return run_plan(p)
    res = execute(p, backend="rust")
    return {**res.columns, "trajectories": res.trajectories}


def plan(problem, tau, *, steps, b=1, lr=0.5, seeds=1, optimizer="sgd", **target_kwargs):
    return cb.make_plan(
        problem,
        optimizer,
        [b],
        [lr],
        seeds,
        target(max_steps=steps, **target_kwargs),
        trajectory_every=1,
        weight_averaging=tau,
    )


# ---------------------------------------------------------------------------------------------
# The recursion, against the hand computation.


@BACKENDS
@pytest.mark.parametrize("tau", [0.5, 0.9, 0.999])
def test_a_noiseless_nqm_checks_the_hand_computed_average(tau, backend):
    h, x0, lr = np.array([1.0, 0.3]), np.array([1.0, -2.0]), 0.5
    steps = 12
    iterates = x0 * (1 - lr * h) ** np.arange(steps + 1)[:, None]  # x_k of SGD, exactly
    avg = hand_ewa(iterates, tau)
    out = run(plan(pb.nqm(h, [0.0, 0.0], x0), tau, steps=steps, lr=lr), backend)
    np.testing.assert_allclose(out["trajectories"][0], 0.5 * (avg**2) @ h, rtol=1e-12)
    assert out["final_x0"][0] == pytest.approx(avg[-1, 0], rel=1e-12)
    assert out["final_grad_norm"][0] == pytest.approx(np.linalg.norm(h * avg[-1]), rel=1e-12)


@BACKENDS
def test_full_batch_least_squares_checks_the_hand_computed_average(backend):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((20, 3)), rng.standard_normal(20)
    problem = pb.least_squares(X, y, x0=0.5, sampling="shuffle")
    lr, tau, steps = 0.1, 0.8, 15
    iterates = [np.full(3, 0.5)]
    for _ in range(steps):  # b = n without replacement: every step is full-batch GD
        w = iterates[-1]
        iterates.append(w - lr * X.T @ (X @ w - y) / 20)
    avg = hand_ewa(np.array(iterates), tau)
    out = run(plan(problem, tau, steps=steps, b=20, lr=lr), backend)
    losses = [0.5 * np.mean((X @ w - y) ** 2) for w in avg]
    np.testing.assert_allclose(out["trajectories"][0], losses, rtol=1e-12)


@BACKENDS
def test_a_stop_is_decided_on_the_average_not_the_iterate(backend):
    # x_k = 0.5^k, loss 0.5 x^2 <= 1e-3 at k = 5 for the iterate; the average lags behind it
    problem, tau = pb.nqm([1.0], [0.0], 1.0), 0.9
    iterates = 0.5 ** np.arange(60)[:, None]
    avg_loss = 0.5 * hand_ewa(iterates, tau)[:, 0] ** 2
    expected = int(np.argmax(avg_loss <= 1e-3))
    out = run(plan(problem, tau, steps=59, loss_below=1e-3), backend)
    plain = run(plan(problem, None, steps=59, loss_below=1e-3), backend)
    assert (int(plain["steps"][0]), int(out["steps"][0])) == (5, expected)
    assert expected > 5
    assert out["final_loss"][0] == pytest.approx(avg_loss[expected], rel=1e-12)


def mlp_with_batchnorm(in_features=64, classes=10):
    """A small net with BatchNorm (buffers): it runs one run at a time, not under vmap."""
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, classes),
    )


@pytest.mark.parametrize(
    "model",
    ["mlp", "tests.test_weight_averaging:mlp_with_batchnorm"],
    ids=["vmapped runs", "runs one by one (buffers)"],
)
def test_a_networks_checks_read_the_hand_computed_average(model):
    kwargs = {"model_kwargs": {"hidden": [8]}} if model == "mlp" else {}
    problem = pb.network(model, "digits", eval_train=256, **kwargs)
    p = cb.make_plan(
        problem, "adam", [16, 32], [0.01], 2, target(max_steps=6), weight_averaging=0.7
    )
    rows = np.arange(len(p))
    tp = build(problem, "cpu", torch.float32)
    chunk = _Chunk(
        p,
        rows,
        tp,
        from_spec(p.optimizers[0], layers_for(p.optimizers[0], problem)),
        p.schedules[0],
        torch.device("cpu"),
    )
    iterates = [chunk.x.clone().numpy()]
    checked = [chunk.checked(0).clone().numpy()]
    for t in range(6):
        chunk.step(t)
        iterates.append(chunk.x.clone().numpy())
        checked.append(chunk.checked(t + 1).clone().numpy())
    expected = hand_ewa(np.array(iterates, dtype=np.float64), 0.7)
    np.testing.assert_allclose(np.array(checked), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(checked[-1], iterates[-1], atol=1e-4)  # the average is not x_k
    # the runner's final loss is the loss at the average
    out = run_plan(p)
    final = tp.loss(torch.as_tensor(checked[-1]), chunk.oracle.buffers)
    np.testing.assert_allclose(out["final_loss"], final.numpy(), rtol=1e-5)


@BACKENDS
def test_a_tiny_decay_reads_the_iterate_itself(backend):
    # tau -> 0: the average is the last iterate, so the table is the one without averaging
    spec = S.problem("least_squares", n=64, d=4)
    grid = (
        spec.build(),
        ["sgd", "adam"],
        [4, 16],
        [0.05, 0.2],
        3,
        target(loss_below=0.3, check_every=5, max_steps=200),
    )
    plain = cb.sweep(*grid, backend=backend).to_pandas().drop(columns="wall_time")
    tiny = cb.sweep(*grid, backend=backend, weight_averaging=1e-300)
    pd.testing.assert_frame_equal(tiny.to_pandas().drop(columns="wall_time"), plain)


@BACKENDS
def test_averaged_results_do_not_depend_on_the_chunking(backend):
    p = cb.make_plan(
        pb.nqm_power_law(8),
        ["sgd", "adam"],
        [1, 4, 16],
        [0.1, 0.3],
        4,
        target(loss_below=0.05, check_every=3, max_steps=400),
        weight_averaging=0.95,
    )
    whole = run(p, backend)
    small = run_plan(p, max_chunk_runs=5) if backend == "torch" else whole
    parts = [run(sub, backend) for sub in p.chunks(7)]  # sub-plans keep the decay
    for name in ("steps", "reached", "final_loss"):
        np.testing.assert_array_equal(small[name], whole[name])
        np.testing.assert_array_equal(np.concatenate([q[name] for q in parts]), whole[name])


# ---------------------------------------------------------------------------------------------
# The NQM: the mean loss at the average against the exact expectation (Zhang et al. 2019).


def expected_loss_at_the_average(h, c, x0, lr, b, steps, tau, momentum):
    """E f(xbar_K) from zhang2019's moments of y (y_0 = x_0, no correction), mapped to xbar."""
    m = zhang2019.nqm_moments(h, c, x0, lr, b, steps, momentum=momentum, averaging=tau)
    x0 = np.asarray(x0, dtype=float)
    decay = tau**steps
    second = (m.second_y - 2 * decay * x0 * m.mean_y + decay**2 * x0**2) / (1 - decay) ** 2
    return 0.5 * float(np.sum(h * second))


@BACKENDS
@pytest.mark.parametrize(
    ("momentum", "steps"),
    [(0.0, 30), (0.0, 4), (0.5, 20)],
    ids=["sgd, 30 steps", "sgd, 4 steps", "heavy ball, 20 steps"],
)
def test_the_mean_loss_at_the_average_is_zhang2019s_expectation(momentum, steps, backend):
    h = np.array([1.0, 0.5, 0.1])
    c, x0, lr, b, tau, runs = h, np.ones(3), 0.5, 4, 0.9, 4000
    p = cb.make_plan(
        pb.nqm(h, c, x0),
        heavy_ball(momentum) if momentum else "sgd",  # torch's convention, as zhang2019's
        [b],
        [lr],
        runs,
        target(max_steps=steps),
        weight_averaging=tau,
        seed=11,
    )
    loss = run(p, backend)["final_loss"]
    exact = expected_loss_at_the_average(h, c, x0, lr, b, steps, tau, momentum)
    # 4 sigma of the Monte Carlo mean over 4,000 independent runs (fixed seed)
    assert abs(loss.mean() - exact) < 4 * loss.std(ddof=1) / math.sqrt(runs)
    # and the average differs measurably from the last iterate's expected loss
    plain = zhang2019.nqm_expected_loss(h, c, x0, lr, b, steps, momentum=momentum)[-1]
    assert abs(plain - exact) > 8 * loss.std(ddof=1) / math.sqrt(runs)


# ---------------------------------------------------------------------------------------------
# The key: validated once, carried by specs and plans, refused by the Rust core.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.999, 0.999),
        (0, Err("weight_averaging must be in (0, 1), the average's decay, got 0")),
        (1.0, Err("weight_averaging must be in (0, 1), the average's decay, got 1.0")),
        (-0.5, Err("weight_averaging must be in (0, 1)")),
        (math.nan, Err("weight_averaging must be finite")),
        (True, Err("weight_averaging must be a number in (0, 1), got True", TypeError)),
        ("0.9", Err("weight_averaging must be a real number", TypeError)),
    ],
    ids=["accepted", "zero", "one", "negative", "nan", "bool", "string"],
)
def test_make_plan_validates_the_decay(value, expected):
    def make():
        return cb.make_plan(
            pb.nqm([1.0], [1.0]),
            "sgd",
            [1],
            [0.1],
            1,
            target(max_steps=2),
            weight_averaging=value,
        )

    if isinstance(expected, Err):
        with expected.raises():
            make()
    else:
        assert make().weight_averaging == expected
        assert make().subset([0]).weight_averaging == expected


def test_exact_jumps_refuse_weight_averaging_and_name_the_key():
    with pytest.raises(
        ValueError,
        match="weight_averaging = 0.9: exact jumps keep no average "
        r"\(it needs every step's iterate\); use mode='steps'",
    ):
        cb.sweep(
            pb.nqm([1.0], [1.0]),
            "sgd",
            [1],
            [0.1],
            1,
            target(max_steps=2),
            weight_averaging=0.9,
            mode="exact_jumps",
        )


def test_the_core_checks_the_decay_itself():
    from critbatch import _core

    p = plan(pb.nqm([1.0], [1.0]), None, steps=2)
    message = r"weight_averaging must be in \(0, 1\), the average's decay, got 1"
    with pytest.raises(ValueError, match=message):
        _core.run_plan(
            [q.to_core() for q in p.problems],
            [o.to_core() for o in p.optimizers],
            [s.to_core() for s in p.schedules],
            p.target.to_core(),
            p.cells,
            0,
            1,
            0,
            weight_averaging=1.0,
        )


SPEC = """\
optimizers = ["sgd"]
batch_sizes = [2]
learning_rates = [0.1]
backend = "torch"
weight_averaging = 0.99

[problem]
kind = "nqm_power_law"
dim = 4

[target]
max_steps = 5
"""


def test_a_spec_carries_the_key_through_toml_and_into_the_plan():
    spec = S.loads(SPEC)
    assert spec.weight_averaging == 0.99
    assert spec.to_plan().weight_averaging == 0.99
    assert S.loads(spec.to_toml()) == spec
    without = S.loads(SPEC.replace("weight_averaging = 0.99\n", ""))
    assert without.weight_averaging is None
    assert "weight_averaging" not in without.to_dict()  # older specs keep their hash
    assert spec.hash() != without.hash()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("0.99", "1.5"), "weight_averaging: value must be in (0, 1)"),
        (
            ('backend = "torch"', 'backend = "rust"\nmode = "exact_jumps"'),
            "weight_averaging = 0.99: exact jumps keep no average",
        ),
    ],
    ids=["out of range", "with exact jumps"],
)
def test_a_spec_with_a_bad_weight_average_names_the_key(edit, message):
    with pytest.raises(S.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        S.loads(SPEC.replace(*edit))


def test_the_json_schema_offers_the_key():
    jsonschema = pytest.importorskip("jsonschema")
    from critbatch import schema

    validator = jsonschema.Draft202012Validator(schema.spec_schema())
    assert list(validator.iter_errors(tomllib.loads(SPEC))) == []
    assert list(validator.iter_errors(tomllib.loads(SPEC.replace("0.99", "1"))))
