"""The real-network torch backend: networks, data sets, the runner and the noise scale.

Oracles: a hand-written SGD loop (plain tensor updates, the documented minibatch stream) for the
runner; the per-model ``nn.Module`` path for the stacked ``vmap`` path (float64, rtol 1e-9);
exact per-example gradients in NumPy for the noise-scale estimators (Monte Carlo, 4 standard
errors); hand-made files in the CIFAR-10 format; hand-computed SFO under batch-size schedules.
"""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("mnist1d")

import critbatch as cb  # noqa: E402
from critbatch import optimizers as opt  # noqa: E402
from critbatch import schedules as sc  # noqa: E402
from critbatch.fit import fit  # noqa: E402
from critbatch.results import COLUMNS  # noqa: E402
from critbatch.torch import datasets, networks, noise_scale  # noqa: E402
from critbatch.torch import train as tr  # noqa: E402
from critbatch.tuning import best_learning_rate  # noqa: E402
from tests.conftest import Err  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one intra-op thread is fastest on a shared machine (and deterministic)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def logistic():
    """Multinomial logistic regression on the digits (an MLP without hidden layers)."""
    return tr.network_problem("mlp", "digits", model_kwargs={"hidden": ()})


@pytest.fixture(scope="module")
def small_mlp():
    return tr.network_problem("mlp", "digits", model_kwargs={"hidden": (8,)})


# ---------------------------------------------------------------------------------------------
# The runner reaches targets, and agrees with a hand-written loop.


@pytest.mark.parametrize(("spec", "lr"), [
    pytest.param(opt.sgd(), 0.5, id="sgd"),
    pytest.param(opt.heavy_ball(0.9), 0.05, id="heavy ball"),
    pytest.param(opt.nesterov(0.9), 0.05, id="nesterov"),
    pytest.param(opt.adam(), 0.01, id="adam"),
    pytest.param(opt.rmsprop(), 0.003, id="rmsprop"),
])
def test_digits_mlp_reaches_a_training_loss_target(small_mlp, spec, lr):
    target = tr.network_target(loss_below=0.5, check_every=5, max_steps=600)
    res = tr.train_sweep(small_mlp, spec, [32], [lr], 1, target)
    assert bool(res["reached"][0])
    assert not bool(res["diverged"][0])
    assert 0 < res["steps"][0] < 600
    assert res["steps"][0] % 5 == 0  # stops at a check
    assert res["final_loss"][0] <= 0.5
    assert res["sfo"][0] == 32 * res["steps"][0]
    assert res["final_grad_norm"][0] > 0


def test_digits_mlp_reaches_a_test_accuracy_target(small_mlp):
    target = tr.network_target(accuracy_above=0.85, check_every=10, max_steps=800)
    res = tr.train_sweep(small_mlp, "adam", [64], [0.01], 1, target)
    assert bool(res["reached"][0])
    assert res.specs["final_test_accuracy"][0] >= 0.85


def _hand_sgd(problem, lr, b, steps, replicate):
    """Plain SGD written out: same weights, the documented shuffle stream, float64."""
    init_seed, data_seed = tr.replicate_seeds(0, replicate)
    model = tr.build_model(problem, init_seed).to(F64)
    x = torch.tensor(problem.dataset.x_train, dtype=F64)
    y = torch.tensor(problem.dataset.y_train)
    gen = torch.Generator().manual_seed(data_seed)
    order, cursor = torch.empty(0, dtype=torch.int64), 0
    for _ in range(steps):
        if cursor + b > order.shape[0]:  # drop the remainder, start a new epoch
            order, cursor = torch.randperm(x.shape[0], generator=gen), 0
        index = order[cursor:cursor + b]
        cursor += b
        loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= lr * g
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y))


@pytest.mark.parametrize("vectorize", [False, True], ids=["module loop", "vmap"])
def test_runner_equals_a_hand_written_sgd_loop_across_an_epoch_boundary(logistic, vectorize):
    # n = 1348, b = 50: the 27th step starts a new epoch (26 full batches, 48 examples dropped)
    target = tr.network_target(check_every=40, max_steps=40)
    res = tr.train_sweep(logistic, "sgd", [50], [0.3], [0, 1], target, dtype="float64",
                         vectorize=vectorize)
    for row, replicate in enumerate((0, 1)):
        expected = _hand_sgd(logistic, 0.3, 50, 40, replicate)
        assert res["final_loss"][row] == pytest.approx(expected, rel=1e-10)
    assert res["steps"].tolist() == [40, 40]
    assert not res["reached"].any()


# ---------------------------------------------------------------------------------------------
# vmap path == module path.


VMAP_OPTIMIZERS = [opt.sgd(), opt.heavy_ball(0.9, dampening=0.1), opt.nesterov(0.8), opt.adam(),
                   opt.adam(amsgrad=True), opt.rmsprop(momentum=0.5, centered=True)]


@pytest.mark.parametrize("spec", VMAP_OPTIMIZERS, ids=[o.name + f"-{i}" for i, o in
                                                        enumerate(VMAP_OPTIMIZERS)])
@pytest.mark.parametrize("loss_below", [1.8, None], ids=["runs stop apart", "full budget"])
def test_vmap_path_equals_module_path(small_mlp, spec, loss_below):
    lrs = [0.3, 1.0] if spec.kind in ("sgd", "heavy_ball", "nesterov") else [0.003, 0.01]
    if spec.kind in ("heavy_ball", "nesterov"):
        lrs = [0.03, 0.1]
    target = tr.network_target(loss_below=loss_below, check_every=5, max_steps=60)
    runs = {vec: tr.train_sweep(small_mlp, spec, [16], lrs, [0, 3], target, dtype="float64",
                                vectorize=vec) for vec in (True, False)}
    a, b = runs[True], runs[False]
    np.testing.assert_array_equal(a["steps"], b["steps"])
    np.testing.assert_array_equal(a["reached"], b["reached"])
    np.testing.assert_allclose(a["final_loss"], b["final_loss"], rtol=1e-9)
    np.testing.assert_allclose(a["final_grad_norm"], b["final_grad_norm"], rtol=1e-7)
    np.testing.assert_array_equal(a.specs["final_test_accuracy"], b.specs["final_test_accuracy"])
    if loss_below is not None:  # the stacked runs really stopped at different checks
        assert len(set(a["steps"].tolist())) > 1


# ---------------------------------------------------------------------------------------------
# The table: columns, values, and the fit reads it.


def test_table_has_the_sweep_columns_and_the_fit_reads_it(logistic):
    target = tr.network_target(loss_below=0.5, check_every=2, max_steps=1500)
    res = tr.train_sweep(logistic, "sgd", [4, 16, 64, 256], [0.5, 2.0], 2, target)
    assert list(res.columns) == list(COLUMNS)
    assert len(res) == 4 * 2 * 2
    assert res["run_index"].tolist() == list(range(16))
    assert res["batch_size"].tolist() == np.repeat([4, 16, 64, 256], 4).tolist()
    assert res["learning_rate"].tolist() == [0.5, 0.5, 2.0, 2.0] * 4
    assert res["seed"].tolist() == [0, 1] * 8
    assert set(res["problem"]) == {"mlp/digits"}
    assert set(res["optimizer"]) == {"sgd"}
    assert np.isnan(res["final_x0"]).all()  # documented: no distinguished coordinate
    assert (res["wall_time"] > 0).all()
    np.testing.assert_array_equal(res["sfo"], res["steps"] * res["batch_size"])
    assert res["reached"].all()
    best = best_learning_rate(res)
    steps = best["steps"].to_numpy()
    assert (np.diff(steps) <= 0).all()  # K(b) does not grow with b at the best learning rate
    fitted = fit(res, "mccandlish", n_boot=0).item()
    assert fitted.n_runs == 8  # the two seeds at each batch size's best learning rate
    assert fitted.learning_rates is not None
    assert len(fitted.learning_rates) == 4
    frame = res.to_pandas()
    assert list(frame.columns) == list(COLUMNS)


def test_batch_size_schedule_adds_up_sfo(logistic):
    # geometric growth x2 every 10 steps, 30 steps: SFO = 10 b + 10 (2b) + 10 (4b) = 70 b
    grow = sc.schedule(batch=sc.geometric(10, 2.0), lr=sc.step_decay(10, 0.5), name="grow")
    res = tr.train_sweep(logistic, "sgd", [8], [0.5], 1,
                         tr.network_target(check_every=30, max_steps=30), schedules=grow)
    assert res["sfo"][0] == 70 * 8
    assert res["schedule"][0] == "grow"


def test_divergence_is_recorded(small_mlp):
    res = tr.train_sweep(small_mlp, "sgd", [16], [1e4], 1,
                         tr.network_target(loss_below=0.1, check_every=1, max_steps=50))
    assert bool(res["diverged"][0])
    assert not bool(res["reached"][0])
    assert np.isnan(res["final_grad_norm"][0])


def test_trajectories_hold_the_loss_at_every_check(logistic):
    res = tr.train_sweep(logistic, "sgd", [32], [0.5], 1,
                         tr.network_target(check_every=5, max_steps=20), trajectories=True)
    assert res.specs["trajectory_every"] == 5
    assert res.trajectories[0].shape == (5,)
    assert res.trajectories[0][-1] == res["final_loss"][0]
    assert res.trajectories[0][0] == pytest.approx(np.log(10), rel=0.2)  # near-uniform start


def test_batch_size_sweep_gives_k_and_n_per_optimizer(logistic):
    out = tr.batch_size_sweep(logistic, ["sgd", "adam"], [16, 64],
                              {"sgd": [0.5, 2.0], "adam": [0.01, 0.05]}, 1,
                              tr.network_target(loss_below=0.6, check_every=5, max_steps=600))
    table = out.table
    assert sorted(set(table["optimizer"])) == ["adam", "sgd"]
    assert len(table) == 4
    assert table["all_reached"].all()
    np.testing.assert_array_equal(table["sfo"], table["steps"] * table["batch_size"])
    assert (table["wall_time"] > 0).all()
    assert out.results["run_index"].tolist() == list(range(8))


@pytest.mark.parametrize(("spec", "kind", "options"), [
    pytest.param(opt.sgd(), torch.optim.SGD, {"momentum": 0, "nesterov": False}, id="sgd"),
    pytest.param(opt.heavy_ball(0.8, dampening=0.2), torch.optim.SGD,
                 {"momentum": 0.8, "dampening": 0.2, "nesterov": False}, id="heavy ball"),
    pytest.param(opt.nesterov(0.7), torch.optim.SGD, {"momentum": 0.7, "nesterov": True},
                 id="nesterov"),
    pytest.param(opt.nesterov(0.0), torch.optim.SGD, {"momentum": 0, "nesterov": False},
                 id="nesterov without momentum is sgd"),
    pytest.param(opt.adam((0.8, 0.99), eps=1e-6, amsgrad=True), torch.optim.Adam,
                 {"betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True}, id="amsgrad"),
    pytest.param(opt.rmsprop(0.9, momentum=0.3, centered=True), torch.optim.RMSprop,
                 {"alpha": 0.9, "momentum": 0.3, "centered": True}, id="rmsprop"),
])
def test_specs_map_onto_torch_optim(spec, kind, options):
    o = tr.torch_optimizer(spec, [torch.zeros(2, requires_grad=True)], 0.1)
    assert type(o) is kind
    assert o.defaults["lr"] == 0.1
    for key, value in options.items():
        assert o.defaults[key] == value


# ---------------------------------------------------------------------------------------------
# Data sets and networks.


def _cifar_batch(rng, n, label_offset=0):
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [(i + label_offset) % 10 for i in range(n)],
            b"batch_label": b"tiny"}


@pytest.mark.parametrize("nested", [False, True], ids=["flat folder", "cifar-10-batches-py"])
def test_cifar_loader_reads_the_standard_format(tmp_path, nested):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    folder.mkdir(exist_ok=True)
    batches = {name: _cifar_batch(rng, 6, k) for k, name in
               enumerate(("data_batch_1", "data_batch_2", "test_batch"))}
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    raw = datasets.cifar10(tmp_path, train_batches=2, normalize=False)
    assert raw.x_train.shape == (12, 3, 32, 32)
    assert raw.x_test.shape == (6, 3, 32, 32)
    pixels = np.concatenate([batches["data_batch_1"][b"data"], batches["data_batch_2"][b"data"]])
    # channel-major: value i*3072 + c*1024 + r*32 + col is pixel (c, r, col) of image i
    assert raw.x_train[7, 2, 5, 9] * 255 == pytest.approx(pixels[7, 2 * 1024 + 5 * 32 + 9])
    assert raw.y_train.tolist() == batches["data_batch_1"][b"labels"] + batches[
        "data_batch_2"][b"labels"]
    assert raw.y_test.tolist() == batches["test_batch"][b"labels"]
    norm = datasets.cifar10(tmp_path, train_batches=2)
    np.testing.assert_allclose(norm.x_train.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(norm.x_train.std(axis=(0, 2, 3)), 1.0, rtol=1e-4)
    assert datasets.cifar10(tmp_path, train_batches=1, limit=4).x_train.shape[0] == 4


def test_cifar_resnet_trains_on_the_tiny_file(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps(_cifar_batch(rng, 8)))
    problem = tr.network_problem("resnet", "cifar10", dataset_kwargs={"root": tmp_path,
                                                                     "train_batches": 1},
                                 model_kwargs={"width": 4})
    res = tr.train_sweep(problem, "sgd", [4], [0.1], 1,
                         tr.network_target(check_every=2, max_steps=2))
    assert res["steps"].tolist() == [2]
    assert np.isfinite(res["final_loss"]).all()


@pytest.mark.parametrize(("content", "error"), [
    pytest.param({b"labels": [0]}, Err("is not a CIFAR-10 batch"), id="no data key"),
    pytest.param({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
                 Err("b'data'"), id="float pixels"),
    pytest.param({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]},
                 Err("b'data'"), id="wrong row length"),
    pytest.param({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
                 Err("b'labels'"), id="too few labels"),
])
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


@pytest.mark.parametrize(("name", "kwargs", "shape"), [
    pytest.param("mlp", {"in_features": 40, "hidden": (8, 8)}, (3, 40), id="mlp"),
    pytest.param("cnn1d", {"length": 40, "channels": 4}, (3, 40), id="cnn1d"),
    pytest.param("resnet", {"blocks": (1, 1, 1), "width": 4}, (3, 3, 32, 32), id="resnet"),
    pytest.param("resnet", {"blocks": (2, 1, 1), "width": 4, "norm": "batch"}, (3, 3, 16, 16),
                 id="resnet batchnorm"),
])
def test_networks_map_inputs_to_logits(name, kwargs, shape):
    assert networks.build(name, **kwargs)(torch.zeros(shape)).shape == (3, 10)


# ---------------------------------------------------------------------------------------------
# The noise scale on linear regression, where G and Sigma are known exactly.


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
    norms = np.array([noise_scale.gradient_sq_norms(model, x, y, b_small, b_big, generator=gen,
                                                    loss_fn=_mse) for _ in range(trials)])
    g2 = (b_big * norms[:, 1] - b_small * norms[:, 0]) / (b_big - b_small)
    trace = (norms[:, 0] - norms[:, 1]) / (1 / b_small - 1 / b_big)
    # 4 standard errors of the Monte Carlo mean
    for estimate, exact in ((g2, g2_exact), (trace, trace_exact)):
        assert abs(estimate.mean() - exact) < 4 * estimate.std() / np.sqrt(trials)
    # the test has power: the naive |G_B|^2 is off by tr(Sigma)/B, far beyond 4 SE
    naive = norms[:, 1]
    assert abs(naive.mean() - g2_exact) > 4 * naive.std() / np.sqrt(trials)
    assert naive.mean() - g2_exact == pytest.approx(trace_exact / b_big, rel=0.1)


def test_noise_scale_ratio_of_means_approaches_b_simple():
    model, x, y, g2_exact, trace_exact = _regression(seed=1)
    out = noise_scale.noise_scale(model, x, y, 4, 32, pairs=2000, seed=0, loss_fn=_mse)
    # ratio of means: consistent; 2000 pairs put it within a few percent (seeded)
    assert out["b_simple"] == pytest.approx(trace_exact / g2_exact, rel=0.1)
    assert out["trace_sigma"] == pytest.approx(trace_exact, rel=0.1)


def test_measure_during_training_feeds_a_ratio_of_moving_averages(logistic):
    table = noise_scale.measure_during_training(logistic, "sgd", 0.5, 32, steps=40, every=10,
                                                b_small=4, b_big=64, decay=0.5)
    assert table["step"].tolist() == [0, 10, 20, 30, 40]
    num = den = 0.0
    expected = []
    for g_small, g_big in zip(table["g_small_sq"], table["g_big_sq"], strict=True):
        num = 0.5 * num + 0.5 * (g_small - g_big) / (1 / 4 - 1 / 64)
        den = 0.5 * den + 0.5 * (64 * g_big - 4 * g_small) / (64 - 4)
        expected.append(num / den)
    np.testing.assert_allclose(table["b_simple"], expected, rtol=1e-12)
    assert table["train_loss"].iloc[-1] < table["train_loss"].iloc[0]
    # the run is the sweep's run: measuring does not change its weights or minibatches
    res = tr.train_sweep(logistic, "sgd", [32], [0.5], 1,
                         tr.network_target(check_every=40, max_steps=40))
    assert table["train_loss"].iloc[-1] == pytest.approx(res["final_loss"][0], rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Bad inputs name the field.


def _problem():
    return tr.network_problem("mlp", "digits", model_kwargs={"hidden": ()})


def _target():
    return tr.network_target(max_steps=1)


BAD = [
    ("unknown model", lambda: tr.network_problem("vgg", "digits"), Err("model must be one of")),
    ("unknown data set", lambda: tr.network_problem("mlp", "imagenet"),
     Err("dataset must be one of")),
    ("bad sampling", lambda: tr.network_problem("mlp", "digits", sampling="poisson"),
     Err("sampling must be one of")),
    ("zero eval_train", lambda: tr.network_problem("mlp", "digits", eval_train=0),
     Err("eval_train must be a positive integer")),
    ("wrong width type", lambda: tr.network_problem("mlp", "digits",
                                                    model_kwargs={"hidden": 8}),
     Err("hidden must be a sequence", TypeError)),
    ("two-stage resnet", lambda: networks.resnet((1, 1)), Err("blocks must have three stages")),
    ("accuracy above one", lambda: tr.network_target(accuracy_above=1.5),
     Err("accuracy_above must be in (0, 1]")),
    ("zero check_every", lambda: tr.network_target(check_every=0),
     Err("check_every must be a positive integer")),
    ("divergence factor 1", lambda: tr.network_target(divergence_factor=1.0),
     Err("divergence_factor must exceed 1")),
    ("zero batch", lambda: tr.train_sweep(_problem(), "sgd", [0], [0.1], 1, _target()),
     Err("batch_sizes[0] must be a positive integer")),
    ("batch past n", lambda: tr.train_sweep(_problem(), "sgd", [5000], [0.1], 1, _target()),
     Err("batch_sizes: 5000 exceeds the 1348 training examples")),
    ("negative lr", lambda: tr.train_sweep(_problem(), "sgd", [8], [-0.1], 1, _target()),
     Err("learning_rates[0] must be positive")),
    ("unknown optimizer", lambda: tr.train_sweep(_problem(), "lamb", [8], [0.1], 1, _target()),
     Err("unknown optimizer 'lamb'")),
    ("half precision", lambda: tr.train_sweep(_problem(), "sgd", [8], [0.1], 1, _target(),
                                              dtype="float16"),
     Err("dtype must be one of")),
    ("bad device", lambda: tr.train_sweep(_problem(), "sgd", [8], [0.1], 1, _target(),
                                          device="tpu"),
     Err("device must be a torch device")),
    ("bad vectorize", lambda: tr.train_sweep(_problem(), "sgd", [8], [0.1], 1, _target(),
                                             vectorize="yes"),
     Err("vectorize must be 'auto', True or False")),
    ("gradient-norm target", lambda: tr.train_sweep(
        _problem(), "sgd", [8], [0.1], 1, cb.targets.target(grad_norm_below=0.1)),
     Err("target: networks support loss_below")),
    ("tiny mnist1d", lambda: datasets.mnist1d(num_samples=5),
     Err("num_samples must be at least 10")),
    ("no test split", lambda: datasets.digits(test_fraction=1.0),
     Err("test_fraction must be in [0.0, 1.0)")),
    ("six cifar batches", lambda: datasets.cifar10(".", train_batches=6),
     Err("train_batches must be at most 5")),
    ("missing cifar", lambda: datasets.cifar10("/nonexistent"),
     Err("root: no CIFAR-10 file 'data_batch_1'")),
    ("label out of range", lambda: datasets.Dataset("d", np.zeros((2, 3)), np.array([0, 12]),
                                                    np.zeros((1, 3)), np.array([0]), 10),
     Err("y_train must lie in 0..9")),
    ("equal noise batches", lambda: noise_scale.gradient_sq_norms(
        torch.nn.Linear(2, 2), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 4, 4),
     Err("b_big must exceed b_small")),
    ("noise batch past n", lambda: noise_scale.measure_during_training(
        _problem(), "sgd", 0.1, 5000, steps=1, every=1, b_small=1, b_big=2),
     Err("batch_size: 5000 exceeds")),
]


@pytest.mark.parametrize(("make", "error"), [pytest.param(m, e, id=i) for i, m, e in BAD])
def test_bad_inputs_name_the_field(make, error):
    with error.raises():
        make()


def test_vectorize_true_refuses_batchnorm(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("data_batch_1", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps(_cifar_batch(rng, 4)))
    problem = tr.network_problem("resnet", datasets.cifar10(tmp_path, train_batches=1),
                                 model_kwargs={"width": 4, "norm": "batch"})
    with Err("vectorize=True needs a model without buffers").raises():
        tr.train_sweep(problem, "sgd", [2], [0.1], 1, _target(), vectorize=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_names_the_device():
    with Err("device 'cuda' was asked for").raises():
        tr.train_sweep(_problem(), "sgd", [8], [0.1], 1, _target(), device="cuda")


@pytest.mark.slow
def test_gpu_example_runs_quickly_on_the_cpu(capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "gpu_mnist1d.py"
    spec = importlib.util.spec_from_file_location("gpu_mnist1d", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["cpu", "--quick"])
    printed = capsys.readouterr().out
    assert "24 runs" in printed
    assert printed.count("critical batch size") == 2
