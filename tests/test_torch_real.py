"""Real networks on the one road: the network problem kind, its runs, data sets and noise scale.

Oracles: a hand-written SGD loop (plain autograd updates, the documented initial weights and
minibatch stream) for the runner; the per-run path (a model with a buffer) for the batched
``vmap`` path (float64, rtol 1e-9); exact per-example gradients in NumPy for the noise-scale
estimators (Monte Carlo, 4 standard errors); hand-made files in the CIFAR-10 format;
hand-computed SFO under batch-size schedules.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("mnist1d")

import critbatch as cb  # noqa: E402
from critbatch import optimizers as opt  # noqa: E402
from critbatch import problems as pb  # noqa: E402
from critbatch import schedules as sc  # noqa: E402
from critbatch import spec as S  # noqa: E402
from critbatch.fit import fit  # noqa: E402
from critbatch.results import COLUMNS, OPTIONAL_COLUMNS  # noqa: E402
from critbatch.targets import target  # noqa: E402
from critbatch.torch import datasets, networks, noise_scale  # noqa: E402
from critbatch.torch import rng as trng  # noqa: E402
from critbatch.torch.network import init_seed  # noqa: E402
from critbatch.torch.runner import run_plan  # noqa: E402
from critbatch.tuning import best_learning_rate  # noqa: E402
from tests.conftest import Err  # noqa: E402

F64 = torch.float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def mlp_with_buffer(in_features=64, hidden=(), classes=10):
    """The built-in MLP plus an unused buffer: it runs on the per-run path, not under vmap."""
    model = networks.mlp(in_features, hidden, classes)
    model.register_buffer("unused", torch.zeros(3))
    return model


@pytest.fixture(scope="module")
def logistic():
    """Multinomial logistic regression on the digits (an MLP without hidden layers)."""
    return pb.network("mlp", "digits", model_kwargs={"hidden": []})


@pytest.fixture(scope="module")
def small_mlp():
    return pb.network("mlp", "digits", model_kwargs={"hidden": [8]})


def torch_sweep(problem, optimizers, b, lr, seeds, tgt, **kwargs):
    return cb.sweep(problem, optimizers, b, lr, seeds, tgt, backend="torch", **kwargs)


# ---------------------------------------------------------------------------------------------
# The network problem spec.


def test_network_problem_splits_off_a_validation_set_and_counts_parameters(small_mlp):
    assert small_mlp.kind == "network"
    assert (small_mlp.n_samples, small_mlp.x_val.shape[0], small_mlp.x_test.shape[0]) == (
        1213,
        135,
        449,
    )
    assert small_mlp.dim == 64 * 8 + 8 + 8 * 10 + 10
    assert small_mlp.model_kwargs == {"in_features": 64, "classes": 10, "hidden": [8]}
    assert small_mlp.eval_train == 1213  # at most the training examples
    whole = datasets.digits()
    train_and_val = np.concatenate([small_mlp.x_train, small_mlp.x_val])
    assert sorted(map(tuple, train_and_val.tolist())) == sorted(map(tuple, whole.x_train.tolist()))
    with Err("model_kwargs: mlp(").raises():
        pb.network("mlp", "digits", model_kwargs={"hidden": 8})


# ---------------------------------------------------------------------------------------------
# The runner reaches targets, and agrees with a hand-written loop.


@pytest.mark.parametrize(
    ("spec", "lr"),
    [
        pytest.param(opt.sgd(), 0.5, id="sgd"),
        pytest.param(opt.heavy_ball(0.9), 0.05, id="heavy ball"),
        pytest.param(opt.nesterov(0.9), 0.05, id="nesterov"),
        pytest.param(opt.adam(), 0.01, id="adam"),
        pytest.param(opt.rmsprop(), 0.003, id="rmsprop"),
    ],
)
def test_digits_mlp_reaches_a_training_loss_target(small_mlp, spec, lr):
    res = torch_sweep(
        small_mlp, spec, [32], [lr], 1, target(loss_below=0.5, check_every=5, max_steps=600)
    )
    assert res["stop_reason"][0] == "reached"
    assert 0 < res["steps"][0] < 600
    assert res["steps"][0] % 5 == 0  # stops at a check
    assert res["final_loss"][0] <= 0.5
    assert res["sfo"][0] == 32 * res["steps"][0]
    assert res["final_grad_norm"][0] > 0
    assert 0.5 < res["final_accuracy"][0] <= 1
    assert 0.5 < res["test_accuracy"][0] <= 1


def test_digits_mlp_reaches_a_validation_accuracy_target(small_mlp):
    res = torch_sweep(
        small_mlp,
        "adam",
        [64],
        [0.01],
        1,
        target(accuracy_above=0.85, check_every=10, max_steps=800),
    )
    assert res["stop_reason"][0] == "reached"
    assert res["final_accuracy"][0] >= 0.85  # the validation split decided it
    assert np.isnan(res["noise_scale"][0])  # not asked for


def _hand_sgd(problem, lr, b, steps, run_index, replicate):
    """Plain SGD written out: the documented weights and shuffle stream, float64."""
    model = networks.init("mlp", problem.model_kwargs, init_seed(0, replicate)).to(F64)
    x = torch.tensor(problem.x_train, dtype=F64)
    y = torch.tensor(problem.y_train)
    streams = trng.Streams(0, np.array([run_index]), "cpu")
    n, epoch = x.shape[0], 0
    order, cursor = None, n
    for _ in range(steps):
        if cursor + b > n:  # drop the remainder, start the next epoch's permutation
            words = streams.words(trng.PERMUTATION, torch.tensor([epoch]), n, n)[0]
            order, cursor, epoch = torch.argsort(words, stable=True), 0, epoch + 1
        index = order[cursor : cursor + b]
        cursor += b
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= lr * g
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y))


def test_runner_equals_a_hand_written_sgd_loop_across_an_epoch_boundary(logistic):
    # n = 1213, b = 50: the 25th step starts a new epoch (24 full batches, 13 examples dropped)
    res = torch_sweep(
        logistic, "sgd", [50], [0.3], [0, 1], target(check_every=40, max_steps=40), dtype="float64"
    )
    for row, replicate in enumerate((0, 1)):
        expected = _hand_sgd(logistic, 0.3, 50, 40, row, replicate)
        assert res["final_loss"][row] == pytest.approx(expected, rel=1e-10)
    assert res["steps"].tolist() == [40, 40]
    assert res["stop_reason"].tolist() == ["budget", "budget"]


# ---------------------------------------------------------------------------------------------
# vmap path == per-run path; chunking never matters.


VMAP_OPTIMIZERS = [
    opt.sgd(),
    opt.heavy_ball(0.9, dampening=0.1),
    opt.nesterov(0.8),
    opt.adam(),
    opt.adam(amsgrad=True),
    opt.rmsprop(momentum=0.5, centered=True),
]


@pytest.mark.parametrize(
    "spec", VMAP_OPTIMIZERS, ids=[o.name + f"-{i}" for i, o in enumerate(VMAP_OPTIMIZERS)]
)
def test_vmap_path_equals_the_per_run_path(spec):
    lrs = (
        [0.3, 1.0]
        if spec.kind == "sgd"
        else [0.03, 0.1]
        if spec.kind != "adam" and spec.kind != "rmsprop"
        else [0.003, 0.01]
    )
    tgt = target(loss_below=1.8, check_every=5, max_steps=60)
    # in_features and classes: a reference model gets no defaults from the data
    kwargs = {"in_features": 64, "hidden": [8], "classes": 10}
    runs = {}
    for model in ("mlp", "tests.test_torch_real:mlp_with_buffer"):
        problem = pb.network(model, "digits", model_kwargs=kwargs, name="net")
        runs[model] = torch_sweep(problem, spec, [16, 40], lrs, [0, 3], tgt, dtype="float64")
    a, b = runs.values()
    for name in ("steps", "sfo", "stop_reason", "final_accuracy", "test_accuracy"):
        assert a[name].tolist() == b[name].tolist(), name
    np.testing.assert_allclose(a["final_loss"], b["final_loss"], rtol=1e-9)
    np.testing.assert_allclose(a["final_grad_norm"], b["final_grad_norm"], rtol=1e-7)
    assert len(set(a["steps"].tolist())) > 1  # the stacked runs really stopped apart


def test_network_results_do_not_depend_on_the_chunking(logistic):
    plan = cb.make_plan(
        logistic,
        ["sgd", "adam"],
        [8, 64],
        [0.05, 0.5],
        3,
        target(loss_below=0.6, check_every=4, max_steps=300),
        dtype="float64",
    )
    whole, threes = run_plan(plan), run_plan(plan, max_chunk_runs=3)
    for name in ("steps", "sfo", "stop_reason"):
        assert threes[name].tolist() == whole[name].tolist(), name
    np.testing.assert_allclose(threes["final_loss"], whole["final_loss"], rtol=1e-9)
    np.testing.assert_allclose(threes["test_accuracy"], whole["test_accuracy"])


# ---------------------------------------------------------------------------------------------
# The table: columns, values, and the fit reads it.


def test_table_has_the_sweep_columns_and_the_fit_reads_it(logistic):
    res = torch_sweep(
        logistic,
        "sgd",
        [4, 16, 64, 256],
        [0.5, 2.0],
        2,
        target(loss_below=0.5, check_every=2, max_steps=1500),
    )
    assert list(res.columns) == list(COLUMNS + OPTIONAL_COLUMNS)
    assert len(res) == 4 * 2 * 2
    assert res["run_index"].tolist() == list(range(16))
    assert res["batch_size"].tolist() == np.repeat([4, 16, 64, 256], 4).tolist()
    assert res["learning_rate"].tolist() == [0.5, 0.5, 2.0, 2.0] * 4
    assert res["seed"].tolist() == [0, 1] * 8
    assert set(res["problem"]) == {"mlp/digits"}
    assert np.isnan(res["final_x0"]).all()  # documented: no distinguished coordinate
    assert (res["wall_time"] > 0).all()
    np.testing.assert_array_equal(res["sfo"], res["steps"] * res["batch_size"])
    assert res["reached"].all()
    best = best_learning_rate(res)
    assert (np.diff(best["steps"].to_numpy()) <= 0).all()  # K(b) does not grow at the best lr
    fitted = fit(res, "mccandlish", n_boot=0).item()
    assert fitted.n_runs == 8  # the two seeds at each batch size's best learning rate
    assert list(res.to_pandas().columns) == list(COLUMNS + OPTIONAL_COLUMNS)


def test_batch_size_schedule_and_warmup_add_up(logistic):
    # geometric growth x2 every 10 steps, 30 steps: SFO = 10 b + 10 (2b) + 10 (4b) = 70 b
    grow = sc.schedule(
        batch=sc.geometric(10, 2.0), lr=sc.step_decay(10, 0.5), warmup=5, name="grow"
    )
    res = torch_sweep(
        logistic, "sgd", [8], [0.5], 1, target(check_every=30, max_steps=30), schedules=grow
    )
    assert res["sfo"][0] == 70 * 8
    assert res["schedule"][0] == "grow"


def test_divergence_is_recorded(small_mlp):
    res = torch_sweep(
        small_mlp, "sgd", [16], [1e4], 1, target(loss_below=0.1, check_every=1, max_steps=50)
    )
    assert res["stop_reason"][0].startswith("diverged")
    assert not bool(res["reached"][0])


def test_trajectories_hold_the_loss_at_every_check(logistic):
    res = torch_sweep(
        logistic, "sgd", [32], [0.5], 1, target(check_every=5, max_steps=20), trajectory_every=5
    )
    assert res.trajectories[0].shape == (5,)
    assert res.trajectories[0][-1] == res["final_loss"][0]
    assert res.trajectories[0][0] == pytest.approx(np.log(10), rel=0.2)  # near-uniform start


def test_bfloat16_autocast_trains_like_float32(small_mlp):
    tgt = target(loss_below=0.6, check_every=5, max_steps=600)
    plain = torch_sweep(small_mlp, "adam", [32], [0.01], 2, tgt)
    half = torch_sweep(small_mlp, "adam", [32], [0.01], 2, tgt, precision="bf16")
    assert half["reached"].all()
    assert abs(half["steps"] - plain["steps"]).max() <= 0.5 * plain["steps"].max()


# ---------------------------------------------------------------------------------------------
# The noise scale, in sweeps and from its estimators.


def test_sweeps_measure_the_noise_scale_without_changing_the_runs(logistic):
    tgt = target(loss_below=0.6, check_every=5, max_steps=400)
    with_gns = pb.network(
        "mlp", "digits", model_kwargs={"hidden": []}, noise_scale=True, noise_decay=0.9
    )
    a = torch_sweep(with_gns, "sgd", [1, 16, 64], [0.5], 2, tgt, dtype="float64")
    b = torch_sweep(logistic, "sgd", [1, 16, 64], [0.5], 2, tgt, dtype="float64")
    assert a["steps"].tolist() == b["steps"].tolist()  # the same minibatch gradient, to rounding
    np.testing.assert_allclose(a["final_loss"], b["final_loss"], rtol=1e-9)
    assert np.isnan(a["noise_scale"][:2]).all()  # b = 1 has no half batch
    assert (a["noise_scale"][2:] > 1).all()
    assert np.isfinite(a["noise_scale"][2:]).all()


def test_running_noise_scale_matches_the_theory_tracker():
    from critbatch.theory.mccandlish2018 import GradientNoiseScale

    rng = np.random.default_rng(0)
    pairs = rng.uniform(1.0, 3.0, size=(20, 2)) + np.array([2.0, 0.0])
    tracker = GradientNoiseScale(4, 16, 0.8)
    batched = noise_scale.RunningNoiseScale(1, 0.8, "cpu")
    for small, big in pairs:
        want = tracker.update(small, big)
        batched.update(None, torch.tensor([small]), torch.tensor([big]), 4, 16)
        assert batched.value()[0].item() == pytest.approx(want, rel=1e-12)


def _regression(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = x @ rng.normal(size=d) + rng.normal(size=n)
    w = rng.normal(size=d)
    per_example = x * (x @ w - y)[:, None]  # gradient of 0.5 (x.w - y)^2
    grad = per_example.mean(axis=0)
    centred = per_example - grad
    trace = float(np.einsum("ij,ij->", centred, centred) / n)  # population covariance
    model = torch.nn.Linear(d, 1, bias=False).to(F64)
    with torch.no_grad():
        model.weight.copy_(torch.tensor(w)[None, :])
    return model, torch.tensor(x), torch.tensor(y), float(grad @ grad), trace


def _mse(out, target):
    return 0.5 * ((out.squeeze(-1) - target) ** 2).mean()


def test_noise_scale_estimators_are_unbiased_on_linear_regression():
    model, x, y, g2_exact, trace_exact = _regression()
    gen = torch.Generator().manual_seed(0)
    b_small, b_big, trials = 2, 16, 3000
    norms = np.array(
        [
            noise_scale.gradient_sq_norms(model, x, y, b_small, b_big, generator=gen, loss_fn=_mse)
            for _ in range(trials)
        ]
    )
    g2 = (b_big * norms[:, 1] - b_small * norms[:, 0]) / (b_big - b_small)
    trace = (norms[:, 0] - norms[:, 1]) / (1 / b_small - 1 / b_big)
    # 4 standard errors of the Monte Carlo mean
    for estimate, exact in ((g2, g2_exact), (trace, trace_exact)):
        assert abs(estimate.mean() - exact) < 4 * estimate.std() / np.sqrt(trials)
    # the test has power: the naive |G_B|^2 is off by tr(Sigma)/B, far beyond 4 SE
    naive = norms[:, 1]
    assert abs(naive.mean() - g2_exact) > 4 * naive.std() / np.sqrt(trials)
    assert naive.mean() - g2_exact == pytest.approx(trace_exact / b_big, rel=0.1)


def test_the_noise_scale_of_a_batchnorm_model_is_measured_in_eval_mode():
    # with buffers, a measurement uses the running statistics (eval mode): a batch's gradient
    # is then the mean of per-example gradients, which the estimators assume
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    )
    model.train()
    x, y = torch.randn(40, 3), torch.randint(0, 2, (40,))
    stats = [b.clone() for b in model.buffers()]
    small, big = noise_scale.gradient_sq_norms(model, x, y, 3, 8, seed=5)
    index = torch.randint(40, (8,), generator=torch.Generator().manual_seed(5))
    model.eval()
    per_example = []
    for i in index.tolist():
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        per_example.append(torch.cat([g.reshape(-1) for g in grads]))
    per_example = torch.stack(per_example)
    assert small == pytest.approx(float(per_example[:3].mean(0).square().sum()), rel=1e-5)
    assert big == pytest.approx(float(per_example.mean(0).square().sum()), rel=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    model.train()
    assert noise_scale.gradient_sq_norms(model, x, y, 3, 8, seed=5) == (small, big)
    assert model.training  # left in the mode it had


def test_noise_scale_ratio_of_means_approaches_b_simple():
    model, x, y, g2_exact, trace_exact = _regression(seed=1)
    out = noise_scale.noise_scale(model, x, y, 4, 32, pairs=2000, seed=0, loss_fn=_mse)
    # ratio of means: consistent; 2000 pairs put it within a few percent (seeded)
    assert out["b_simple"] == pytest.approx(trace_exact / g2_exact, rel=0.1)
    assert out["trace_sigma"] == pytest.approx(trace_exact, rel=0.1)


# ---------------------------------------------------------------------------------------------
# Data sets and networks.


def _cifar_batch(rng, n, label_offset=0):
    return {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"labels": [(i + label_offset) % 10 for i in range(n)],
        b"batch_label": b"tiny",
    }


@pytest.mark.parametrize("nested", [False, True], ids=["flat folder", "cifar-10-batches-py"])
def test_cifar_loader_reads_the_standard_format(tmp_path, nested):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    folder.mkdir(exist_ok=True)
    batches = {
        name: _cifar_batch(rng, 6, k)
        for k, name in enumerate(("data_batch_1", "data_batch_2", "test_batch"))
    }
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    raw = datasets.cifar10(tmp_path, train_batches=2, normalize=False)
    assert raw.x_train.shape == (12, 3, 32, 32)
    assert raw.x_test.shape == (6, 3, 32, 32)
    pixels = np.concatenate([batches["data_batch_1"][b"data"], batches["data_batch_2"][b"data"]])
    # channel-major: value i*3072 + c*1024 + r*32 + col is pixel (c, r, col) of image i
    assert raw.x_train[7, 2, 5, 9] * 255 == pytest.approx(pixels[7, 2 * 1024 + 5 * 32 + 9])
    assert (
        raw.y_train.tolist()
        == batches["data_batch_1"][b"labels"] + batches["data_batch_2"][b"labels"]
    )
    assert raw.y_test.tolist() == batches["test_batch"][b"labels"]
    norm = datasets.cifar10(tmp_path, train_batches=2)
    np.testing.assert_allclose(norm.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(norm.x_train.std(axis=(0, 2, 3)), 1.0, rtol=1e-4)
    assert datasets.cifar10(tmp_path, train_batches=1, limit=4).x_train.shape[0] == 4


@pytest.mark.parametrize(
    "norm", ["group", "batch"], ids=["groupnorm (vmap)", "batchnorm (per run)"]
)
def test_cifar_resnet_trains_on_the_tiny_file(tmp_path, norm):
    rng = np.random.default_rng(1)
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps(_cifar_batch(rng, 8)))
    problem = pb.network(
        "resnet",
        "cifar10",
        data_kwargs={"root": str(tmp_path), "train_batches": 1},
        model_kwargs={"width": 4, "norm": norm},
        validation=0.25,
    )
    res = torch_sweep(problem, "sgd", [2, 4], [0.1], 2, target(check_every=2, max_steps=2))
    assert res["steps"].tolist() == [2] * 4
    assert np.isfinite(res["final_loss"]).all()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        pytest.param({b"labels": [0]}, Err("is not a CIFAR-10 batch"), id="no data key"),
        pytest.param(
            {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
            Err("b'data'"),
            id="float pixels",
        ),
        pytest.param(
            {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
            Err("b'data'"),
            id="wrong row length",
        ),
        pytest.param(
            {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
            Err("b'labels'"),
            id="too few labels",
        ),
    ],
)
def test_cifar_loader_rejects_files_not_in_the_format(tmp_path, content, error):
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps(content))
    with error.raises():
        datasets.cifar10(tmp_path, train_batches=1)


def test_mnist1d_is_deterministic_from_its_seed_and_has_the_right_shapes():
    state = np.random.get_state()[1].copy()
    first = datasets.mnist1d(num_samples=200, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    again = datasets._mnist1d_arrays.__wrapped__(200, 0.8, 5)  # regenerate, bypass the cache
    np.testing.assert_array_equal(first.x_train, again[0])
    np.testing.assert_array_equal(first.y_test, again[3])
    other = datasets.mnist1d(num_samples=200, seed=6)
    assert not np.array_equal(first.x_train, other.x_train)
    assert first.x_train.shape == (160, 40)
    assert first.x_test.shape == (40, 40)
    labels = np.concatenate([first.y_train, first.y_test])
    assert np.bincount(labels).tolist() == [20] * 10
    assert first.classes == 10
    assert first.x_train.dtype == np.float32


def test_digits_split_is_a_seeded_partition():
    a, b = datasets.digits(seed=3), datasets.digits(seed=3)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert a.n_train + a.x_test.shape[0] == 1797
    assert not np.array_equal(a.y_test, datasets.digits(seed=4).y_test)


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        pytest.param("mlp", {"in_features": 40, "hidden": (8, 8)}, (3, 40), id="mlp"),
        pytest.param("cnn1d", {"length": 40, "channels": 4}, (3, 40), id="cnn1d"),
        pytest.param("resnet", {"blocks": (1, 1, 1), "width": 4}, (3, 3, 32, 32), id="resnet"),
        pytest.param(
            "resnet",
            {"blocks": (2, 1, 1), "width": 4, "norm": "batch"},
            (3, 3, 16, 16),
            id="resnet batchnorm",
        ),
    ],
)
def test_networks_map_inputs_to_logits(name, kwargs, shape):
    assert networks.build(name, **kwargs)(torch.zeros(shape)).shape == (3, 10)


# ---------------------------------------------------------------------------------------------
# Bad inputs name the field, before anything runs.


def _net(**kwargs):
    return pb.network("mlp", "digits", model_kwargs={"hidden": []}, **kwargs)


def _rust(problem=None, **kwargs):
    return cb.sweep(problem or _net(), "sgd", [8], [0.1], 1, target(max_steps=1, **kwargs))


BAD = [
    (
        "unknown model",
        lambda: pb.network("vgg", "digits"),
        Err(
            "model must be a built-in name or an import reference 'package.module:callable', "
            "got 'vgg'"
        ),
    ),
    (
        "unknown data set",
        lambda: pb.network("mlp", "imagenet"),
        Err("data must be a built-in name or an import reference"),
    ),
    (
        "module that does not import",
        lambda: pb.network("no_such_pkg.nets:mlp", "digits"),
        Err(
            "model: cannot import module 'no_such_pkg.nets' for 'no_such_pkg.nets:mlp' "
            "(ModuleNotFoundError"
        ),
    ),
    (
        "missing attribute",
        lambda: pb.network("critbatch.torch.networks:vgg", "digits"),
        Err("model: module 'critbatch.torch.networks' has no attribute 'vgg'"),
    ),
    (
        "not a callable",
        lambda: pb.network("critbatch.torch.networks:NORMS", "digits"),
        Err("model: 'critbatch.torch.networks:NORMS' is a tuple, not a callable"),
    ),
    (
        "data callable refuses its kwargs",
        lambda: pb.network("mlp", "critbatch.torch.datasets:digits", data_kwargs={"colour": True}),
        Err("data_kwargs: critbatch.torch.datasets:digits(**{'colour': True}) failed"),
    ),
    (
        "model of the wrong output",
        lambda: pb.network("mlp", "digits", model_kwargs={"classes": 3}),
        Err("model: 'mlp' maps 2 inputs to (2, 3), expected logits of shape (2, 10)"),
    ),
    ("bad sampling", lambda: _net(sampling="poisson"), Err("sampling must be one of")),
    ("zero eval_train", lambda: _net(eval_train=0), Err("eval_train must be a positive integer")),
    ("validation of one", lambda: _net(validation=1.0), Err("validation must be in [0.0, 1.0)")),
    (
        "missing cifar",
        lambda: pb.network("resnet", "cifar10", data_kwargs={"root": "/nonexistent"}),
        Err("data_kwargs: root: no CIFAR-10 file 'data_batch_1' in '/nonexistent'"),
    ),
    (
        "accuracy above one",
        lambda: target(accuracy_above=1.5),
        Err("accuracy_above must be in (0, 1]"),
    ),
    (
        "accuracy of a synthetic problem",
        lambda: cb.make_plan(
            pb.nqm([1.0], [1.0]), "sgd", [1], [0.1], 1, target(accuracy_above=0.9)
        ),
        Err("target.accuracy_above needs network problems, but problems[0] ('nqm') is 'nqm'"),
    ),
    (
        "accuracy without a validation split",
        lambda: cb.make_plan(
            _net(validation=0.0), "sgd", [1], [0.1], 1, target(accuracy_above=0.9)
        ),
        Err("target.accuracy_above reads the validation split, but problems[0]"),
    ),
    (
        "position of a network",
        lambda: cb.make_plan(_net(), "sgd", [1], [0.1], 1, target(position_below=(0, 0.0))),
        Err("target.position_below names a coordinate of the iterate"),
    ),
    (
        "a network on the core",
        lambda: _rust(),
        Err(
            "problems[0] ('mlp/digits') is a network: the Rust core runs the synthetic problems "
            "only; use backend='torch'"
        ),
    ),
    (
        "tf32 on the core",
        lambda: cb.sweep(
            pb.nqm([1.0], [1.0]), "sgd", [1], [0.1], 1, target(max_steps=1), precision="tf32"
        ),
        Err("precision: the Rust core computes exactly (float64 or float32), got 'tf32'"),
    ),
    (
        "batch past n",
        lambda: cb.make_plan(_net(), "sgd", [5000], [0.1], 1, target()),
        Err("batch_sizes: 5000 exceeds the 1213 samples of problems[0] ('mlp/digits')"),
    ),
    (
        "half precision",
        lambda: cb.make_plan(_net(), "sgd", [8], [0.1], 1, target(), dtype="float16"),
        Err("dtype must be one of 'float64', 'float32', got 'float16'"),
    ),
    (
        "bad precision",
        lambda: cb.make_plan(_net(), "sgd", [8], [0.1], 1, target(), precision="fp8"),
        Err("precision must be one of 'highest', 'tf32', 'bf16', got 'fp8'"),
    ),
    (
        "bad device",
        lambda: torch_sweep(_net(), "sgd", [8], [0.1], 1, target(max_steps=1), device="tpu"),
        Err("device must be a torch device"),
    ),
    (
        "noise scale of a batchnorm model",
        lambda: torch_sweep(
            pb.network("tests.test_torch_real:mlp_with_buffer", "digits", noise_scale=True),
            "sgd",
            [8],
            [0.1],
            1,
            target(max_steps=1),
        ),
        Err("noise_scale: 'tests.test_torch_real:mlp_with_buffer/digits' has buffers"),
    ),
    (
        "tiny mnist1d",
        lambda: datasets.mnist1d(num_samples=5),
        Err("num_samples must be at least 10"),
    ),
    (
        "six cifar batches",
        lambda: datasets.cifar10(".", train_batches=6),
        Err("train_batches must be at most 5"),
    ),
    (
        "label out of range",
        lambda: datasets.Dataset(
            "d", np.zeros((2, 3)), np.array([0, 12]), np.zeros((1, 3)), np.array([0]), 10
        ),
        Err("y_train must lie in 0..9"),
    ),
    (
        "equal noise batches",
        lambda: noise_scale.gradient_sq_norms(
            torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 4, 4
        ),
        Err("b_big must exceed b_small"),
    ),
]


@pytest.mark.parametrize(("make", "error"), [pytest.param(m, e, id=i) for i, m, e in BAD])
def test_bad_inputs_name_the_field(make, error):
    with error.raises():
        make()


@pytest.mark.parametrize(
    ("table", "error"),
    [
        pytest.param(
            'backend = "rust"\n[problem]\nkind = "network"\nmodel = "mlp"\ndata = "digits"\n',
            "backend: problems[0] ('mlp/digits') is a network",
            id="network on the core",
        ),
        pytest.param(
            'backend = "torch"\n[problem]\nkind = "network"\nmodel = "mlp"\n'
            'data = "digits"\nmodel_kwargs = {hidden = "wide"}\n',
            "problem: model_kwargs: mlp(",
            id="bad model kwargs",
        ),
        pytest.param(
            'backend = "torch"\n[problem]\nkind = "network"\nmodel = "my nets:mlp"\n'
            'data = "digits"\n',
            "problem: model must be a built-in name or an import",
            id="malformed reference",
        ),
        pytest.param(
            'backend = "rust"\n[problem]\nkind = "nqm_power_law"\ndim = 3\n'
            "[target]\naccuracy_above = 0.9\n",
            "(grid): target.accuracy_above needs network problems",
            id="accuracy of nqm",
        ),
    ],
)
def test_spec_files_name_the_key(table, error):
    text = 'optimizers = ["sgd"]\nbatch_sizes = [8]\nlearning_rates = [0.1]\n' + table
    with pytest.raises(S.SpecError, match=__import__("re").escape(error)):
        S.loads(text, file="net.toml")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_names_the_device():
    with Err("device 'cuda' was asked for").raises():
        torch_sweep(_net(), "sgd", [8], [0.1], 1, target(max_steps=1), device="cuda")
