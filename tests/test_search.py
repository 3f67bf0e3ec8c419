"""Quasi-random search per batch size: the tuned K(b) against the exact NQM optimum, trials as
runs (optimizer, schedule, warm-up, decay), and the ``[search]`` table of a spec."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import qmc

import critbatch as cb
from critbatch import optimizers as opt
from critbatch import reference, schema, search, spec, store
from critbatch import schedules as sch
from critbatch.cli import main
from critbatch.sweep import execute
from critbatch.theory import zhang2019
from tests.conftest import Err

# A flat spectrum in many coordinates: the loss concentrates around its expectation, so the
# steps at which a run first meets the target approach the exact expected-loss steps.
D = 400
H = np.linspace(0.5, 1.0, D)
C = 4 * H
X0 = np.ones(D)
TAU = 0.05 * 0.5 * float(np.sum(H * X0**2))
BATCH_SIZES = [2, 8, 32]


def nqm_search(trials: int, seed: int) -> spec.SweepSpec:
    """SGD on the flat NQM, the learning rate searched: 8 replicates per (trial, batch size)."""
    return spec.sweep_spec(
        cb.problems.nqm(H, C, X0, name="flat"),
        "sgd",
        BATCH_SIZES,
        None,
        8,
        cb.targets.target(loss_below=TAU, max_steps=20_000),
        search=search.Search(search.space(None, learning_rate=(1e-2, 1.9)), trials, seed=seed),
        seed=seed,
    )


@pytest.fixture(scope="module")
def exact():
    """K(b) at the best learning rate, from the exact expected-loss recurrence."""
    return zhang2019.optimal_lr_steps(
        H, C, X0, BATCH_SIZES, np.geomspace(1e-2, 1.9, 2000), TAU, max_steps=20_000
    )


@pytest.mark.parametrize("seed", [0, pytest.param(5, marks=pytest.mark.slow)])
def test_tuned_steps_hold_the_exact_optimum_with_a_budget_of_32_trials(tmp_path, seed, exact):
    store.run_sweep(nqm_search(32, seed), tmp_path)
    frame = store.load_frame(tmp_path)
    # the same trial points at every batch size: the declared quasi-random points
    declared = search.trials(search.space(None, learning_rate=(1e-2, 1.9)), 32, seed=seed)
    for _, part in frame.groupby("batch_size"):
        points = part[["trial", "learning_rate", "u_learning_rate"]].drop_duplicates()
        assert points.sort_values("trial").reset_index(drop=True).equals(declared)
    best = search.best_trials(tmp_path, n_boot=200)
    # exact [81, 21, 6]. Measured over sweep seeds 0..7: with 8 trials the bootstrap interval
    # held the exact K(b) in 12 of 24 (seed, b) cases at b = 2 and 18 of 24 overall; with 32
    # trials in all 24.
    for row, k_exact in zip(best.itertuples(), exact.steps, strict=True):
        assert row.low <= k_exact <= row.high, (row.batch_size, row.steps, k_exact)
        assert not row.at_edge
        assert row.all_reached
    # the fit picks the same trial per batch size, through the learning-rate road
    fitted = cb.fit.fit(tmp_path, n_boot=0).item()
    assert fitted.learning_rates == dict(zip(best.batch_size, best.learning_rate, strict=True))
    assert fitted.lr_status == "interior"


def test_the_python_search_is_the_spec_search():
    problem = cb.problems.nqm_power_law(8)
    target = cb.targets.target(loss_below=0.1, max_steps=2000)
    space = search.space("heavy_ball", learning_rate=(0.01, 1.0), momentum=(0.3, 0.95))
    runs = search.search(problem, space, [1, 8], 2, target, n_trials=4, seed=2)
    stored = spec.sweep_spec(
        spec.problem("nqm_power_law", dim=8),
        "heavy_ball",
        [1, 8],
        None,
        2,
        target,
        search=search.Search(space, 4, seed=2),
        seed=2,
    )
    plan = stored.to_plan()
    again = execute(plan).to_pandas()
    columns = ["trial", "batch_size", "seed", "learning_rate", "momentum", "steps", "final_loss"]
    assert runs[columns].equals(again[columns])
    assert plan.common_random_numbers
    # the runs of one batch size and replicate share their gradient noise (common random
    # numbers), so equal hyperparameters would give equal runs: here each trial's own differ
    assert runs.groupby(["batch_size", "seed"])["final_loss"].nunique().eq(4).all()


def test_trials_are_the_declared_quasi_random_points():
    space = search.space(
        "heavy_ball",
        learning_rate=(1e-3, 1.0),
        momentum=(0.5, 0.999),
        warmup=(1, 100),
        decay_factor=(0.0, 0.5),
    )
    points = search.trials(space, 16, seed=4, method="sobol")
    u = qmc.Sobol(4, scramble=True, seed=4).random_base2(4)
    np.testing.assert_allclose(points[[f"u_{n}" for n in space.names]].to_numpy(), u)
    np.testing.assert_allclose(points["learning_rate"], 1e-3 * 1000.0 ** u[:, 0])
    # 1 - momentum is log-uniform between 0.5 and 0.001
    np.testing.assert_allclose(1 - points["momentum"], 0.5 * (0.001 / 0.5) ** u[:, 1])
    # the warm-up is log-uniform over 1..100 steps, rounded to whole steps
    np.testing.assert_array_equal(points["warmup"], np.floor(100.0 ** u[:, 2] + 0.5))
    np.testing.assert_allclose(points["decay_factor"], 0.5 * u[:, 3])
    assert search.trials(space, 16, seed=4, method="sobol").equals(points)


@pytest.mark.parametrize("method", search.METHODS)
def test_a_larger_budget_keeps_the_first_trials(method):
    space = search.space(None, learning_rate=(1e-3, 1.0), decay_period=(10, 1000))
    small = search.trials(space, 8, seed=1, method=method)
    assert search.trials(space, 32, seed=1, method=method).iloc[:8].equals(small)
    assert search.Search(space, 8, method, 1).extended_by(search.Search(space, 32, method, 1))
    assert not search.Search(space, 8, method, 1).extended_by(search.Search(space, 32, method, 2))


def test_a_trial_sets_the_hyperparameters_of_every_optimizer_and_schedule():
    space = search.space(
        None,
        learning_rate=(0.01, 1.0),
        beta1=(0.5, 0.9),
        beta2=(0.9, 0.999),
        weight_decay=(1e-4, 1e-2),
        warmup=(1, 50),
        decay_period=(10, 100),
        decay_factor=(0.1, 0.5),
    )
    points = search.trials(space, 4, seed=2)
    stepped = sch.schedule(
        sch.step_decay(20, 0.5),
        sch.geometric(10, 2.0),
        max_batch_size=64,
        warmup_start=0.3,
        name="step",
    )
    optimizers, schedules = search.expand(
        space, points, [opt.adamw(eps=1e-6, name="w")], [stepped, sch.schedule(sch.cosine(50))]
    )
    assert len(optimizers) == 4
    assert len(schedules) == 8
    for t, row in points.iterrows():
        assert optimizers[t] == opt.adamw(
            (row.beta1, row.beta2), eps=1e-6, weight_decay=row.weight_decay, name="w"
        )
        assert schedules[t] == sch.schedule(
            sch.step_decay(row.decay_period, row.decay_factor),
            sch.geometric(10, 2.0),
            max_batch_size=64,
            warmup=int(row.warmup),
            warmup_start=0.3,
            name="step",
        )
        assert schedules[4 + t] == sch.schedule(
            sch.cosine(row.decay_period, min_factor=row.decay_factor),
            warmup=int(row.warmup),
            name="lr:cosine/b:constant",
        )


NOISELESS = cb.problems.nqm(np.geomspace(1.0, 0.05, 6), np.zeros(6), 1.0, name="noiseless")


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("rust", id="core: momentum, cosine decay and warm-up"),
        pytest.param("torch", id="torch: momentum, cosine decay and warm-up"),
    ],
)
def test_each_trial_runs_as_the_reference_runs_its_hyperparameters(backend, torch_one_thread):
    ranges = {
        "learning_rate": (0.05, 1.0),
        "momentum": (0.3, 0.9),
        "decay_period": (20, 200),
        "decay_factor": (0.05, 0.9),
        "warmup": (1, 40),
    }
    space = search.space("heavy_ball", **ranges)
    target = cb.targets.target(loss_below=1e-3, check_every=3, max_steps=400)
    runs = search.search(
        NOISELESS,
        space,
        [1, 4],
        1,
        target,
        n_trials=6,
        seed=1,
        schedules=sch.schedule(sch.cosine(100), name="cos"),
        backend=backend,
    )
    assert len(runs) == 12
    for row in runs.itertuples():
        expected = reference.run(
            NOISELESS,
            opt.heavy_ball(row.momentum),
            sch.schedule(
                sch.cosine(row.decay_period, min_factor=row.decay_factor), warmup=int(row.warmup)
            ),
            target,
            row.batch_size,
            row.learning_rate,
            np.random.default_rng(0),  # no noise: the stream is unused
        )
        assert (row.steps, row.reached, row.diverged) == (
            expected["steps"],
            expected["reached"],
            expected["diverged"],
        )
        assert row.final_loss == pytest.approx(expected["final_loss"], rel=1e-10)
    assert runs["reached"].any()
    assert set(runs["schedule"]) == {"cos"}


def test_a_best_trial_at_the_edge_of_the_space_is_flagged(tmp_path):
    problem = cb.problems.nqm_power_law(8)
    target = cb.targets.target(loss_below=0.1, max_steps=5000)
    space = search.space("sgd", learning_rate=(1e-3, 1e-2))  # far below the best rate
    runs = search.search(problem, space, [4, 16], 2, target, n_trials=8)
    best = search.best_trials(runs, space, n_boot=0)
    assert best["at_edge"].all()
    assert np.isnan(best["low"]).all()
    fitted = cb.fit.fit(runs, n_boot=0).item()
    assert fitted.lr_status == "edge"
    assert any("best trial is at the edge of the search space" in r for r in fitted.reasons)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(
            lambda: search.space("adagrad", learning_rate=(0.1, 1.0)),
            "optimizer",
            id="unknown optimizer",
        ),
        pytest.param(
            lambda: search.space("sgd", momentum=(0.1, 0.9)),
            "learning_rate",
            id="no learning-rate range",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(0.1, 1.0), momentum=(0.1, 0.9)),
            "'momentum' is not a hyperparameter of 'sgd'; expected one of learning_rate, warmup",
            id="momentum for sgd",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(1.0, 0.1)),
            "low must be below",
            id="reversed range",
        ),
        pytest.param(
            lambda: search.space("sgd", learning_rate=(0.0, 1.0)),
            "low > 0",
            id="log range from zero",
        ),
        pytest.param(
            lambda: search.space("adam", learning_rate=(0.1, 1.0), beta2=(0.9, 1.0)),
            "beta2",
            id="beta2 up to one",
        ),
        pytest.param(
            lambda: search.space(None, learning_rate=(0.1, 1.0), warmup=(0, 10, "uniform")),
            "warmup low must be at least 1",
            id="warm-up of zero steps",
        ),
        pytest.param(
            lambda: search.space(None, learning_rate=(0.1, 1.0), momentum=(0.5, 1.2, "uniform")),
            r"momentum high must be in \[0.0, 1.0\)",
            id="momentum above one",
        ),
        pytest.param(
            lambda: search.space(None, learning_rate=(0.1, 1.0), lr=(0.1, 1.0)),
            "'lr' is not a search dimension",
            id="unknown dimension",
        ),
        pytest.param(
            lambda: search.trials(
                search.space("sgd", learning_rate=(0.1, 1.0)), 12, method="sobol"
            ),
            "power of two",
            id="sobol budget",
        ),
        pytest.param(
            lambda: search.expand(
                search.space(None, learning_rate=(0.1, 1.0), decay_factor=(0.5, 1.5)),
                search.trials(search.space(None, learning_rate=(0.1, 1.0)), 2),
                [opt.sgd()],
                [sch.schedule(sch.cosine(10))],
            ),
            r"search.decay_factor: min_factor must be in \[0.0, 1.0\)",
            id="cosine floor above one",
        ),
    ],
)
def test_bad_search_spaces_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# The [search] table of a spec.

BASE = """
optimizers = [{kind = "heavy_ball", momentum = 0.9}]
batch_sizes = [1, 4]
seeds = 2

[problem]
kind = "nqm_power_law"
dim = 4

[target]
loss_below = 0.1
max_steps = 200

[[schedules]]
name = "cos"
lr = {kind = "cosine", period = 100}
"""
SEARCH = """
[search]
trials = 8
learning_rate = {low = 0.01, high = 1.0}
momentum = {low = 0.5, high = 0.99}
decay_factor = {low = 0.0, high = 0.5}
"""


def test_a_search_spec_round_trips_through_toml():
    loaded = spec.loads(BASE + SEARCH)
    assert loaded.search is not None
    assert loaded.search.space.names == ("learning_rate", "momentum", "decay_factor")
    assert [d.scale for d in loaded.search.space.dimensions] == [
        "log_uniform",
        "one_minus_log_uniform",
        "uniform",
    ]
    assert loaded.common_random_numbers
    assert spec.loads(loaded.to_toml()) == loaded
    assert "learning_rates" not in loaded.to_toml()
    assert loaded.learning_rates == tuple(loaded.search.points()["learning_rate"])
    python = spec.sweep_spec(
        spec.problem("nqm_power_law", dim=4),
        opt.heavy_ball(0.9),
        [1, 4],
        None,
        2,
        cb.targets.target(loss_below=0.1, max_steps=200),
        schedules=sch.schedule(sch.cosine(100), name="cos"),
        search=loaded.search,
    )
    assert python == loaded
    assert spec.loads(python.to_toml()) == python
    plan = loaded.to_plan()
    assert len(plan) == 2 * 8 * 2  # batch sizes x trials x seeds
    assert plan.trials is not None
    assert plan.cells["trial"].tolist() == np.tile(np.repeat(np.arange(8), 2), 2).tolist()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(
            lambda t: t.replace("learning_rate =", "learnig_rate ="),
            Err("search.learnig_rate: unknown key; did you mean 'learning_rate'?"),
            id="misspelt dimension",
        ),
        pytest.param(
            lambda t: t.replace("trials =", "trails ="),
            Err("search.trails: unknown key; did you mean 'trials'?"),
            id="misspelt budget",
        ),
        pytest.param(
            lambda t: t.replace("high = 0.99", "hihg = 0.99"),
            Err("search.momentum.hihg: unknown key; did you mean 'high'?"),
            id="misspelt range key",
        ),
        pytest.param(
            lambda t: t.replace("high = 0.5}", 'high = 0.5, scale = "unifrom"}'),
            Err(
                "search.decay_factor.scale: must be one of log_uniform, one_minus_log_uniform, "
                "uniform, got 'unifrom'; did you mean 'uniform'?"
            ),
            id="misspelt scale",
        ),
        pytest.param(
            lambda t: t.replace("learning_rate = {low = 0.01, high = 1.0}\n", ""),
            Err("search.learning_rate: missing (required)"),
            id="no learning-rate range",
        ),
        pytest.param(
            lambda t: t.replace("momentum = {low = 0.5, high = 0.99}", "momentum = {low = 0.5}"),
            Err("search.momentum.high: missing (required)"),
            id="half a range",
        ),
        pytest.param(
            lambda t: "learning_rates = [0.1]\n" + t,
            Err("learning_rates: a [search] draws the learning rates from search.learning_rate"),
            id="learning rates and a search",
        ),
        pytest.param(
            lambda t: "common_random_numbers = false\n" + t,
            Err("common_random_numbers: a [search] runs its trials with common random numbers"),
            id="no common random numbers",
        ),
        pytest.param(
            lambda t: t.replace("trials = 8", 'trials = 12\nmethod = "sobol"'),
            Err("search: trials must be a power of two with method='sobol', got 12"),
            id="sobol budget",
        ),
        pytest.param(
            lambda t: t.replace("high = 1.0}", "high = 0.001}"),
            Err("search: learning_rate: low must be below high, got (0.01, 0.001)"),
            id="reversed range",
        ),
        pytest.param(
            lambda t: t.replace('kind = "heavy_ball", momentum = 0.9', 'kind = "sgd"'),
            Err("search.momentum: optimizers[0] ('sgd') is 'sgd', which has no momentum"),
            id="momentum for sgd",
        ),
        pytest.param(
            lambda t: t.replace('lr = {kind = "cosine", period = 100}', ""),
            Err(
                "search.decay_factor: schedules[0] ('cos') has a 'constant' learning-rate rule;"
                " a decay dimension sets"
            ),
            id="decay without a decaying rule",
        ),
    ],
)
def test_bad_search_tables_name_the_key(edit, expected):
    with expected.raises():
        spec.loads(edit(BASE + SEARCH))


def test_a_warmup_search_runs_on_torch():
    pytest.importorskip("torch")
    loaded = spec.loads('backend = "torch"\n' + BASE + SEARCH + "warmup = {low = 1, high = 20}\n")
    warmups = loaded.search.points()["warmup"]
    assert sorted({s.warmup for s in loaded.to_plan().schedules}) == sorted(set(warmups))


def test_the_schema_covers_the_search_table():
    jsonschema = pytest.importorskip("jsonschema")
    import tomllib

    s = schema.spec_schema()
    assert set(s["$defs"]["search"]["properties"]) == set(spec._SEARCH_KEYS)
    assert set(s["$defs"]["dimension"]["properties"]) == set(spec._DIMENSION_KEYS)
    validator = jsonschema.Draft202012Validator(s)
    data = tomllib.loads(BASE + SEARCH)
    assert list(validator.iter_errors(data)) == []
    for bad in (
        {**data, "learning_rates": [0.1]},
        {k: x for k, x in data.items() if k != "search"},
        {**data, "search": {**data["search"], "learnig_rate": {"low": 0.1, "high": 1}}},
        {**data, "search": {**data["search"], "momentum": {"low": 0.5}}},
    ):
        assert list(validator.iter_errors(bad)) != []


def test_the_cli_counts_tunes_and_extends_a_search(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(BASE + SEARCH.replace("trials = 8", "trials = 4"), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "16 runs = " in out
    assert "x 2 batch sizes x 4 trials (halton over learning_rate, momentum, decay_factor) x" in out
    assert main(["sweep", str(path), "-o", str(tmp_path / "dry"), "--dry-run"]) == 0
    assert "16 runs in 1 chunk" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["sweep", str(path), "-o", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["tune", str(out)]) == 0
    table = capsys.readouterr().out
    assert "trial" in table.splitlines()[0]
    assert "decay_factor" in table.splitlines()[0]
    # a larger budget of the same search adds only the new trials
    more = ["--set", "search.trials=8"]
    assert main(["sweep", str(path), "-o", str(out), "-q", "--extend", *more]) == 0
    extended = store.load_frame(out).sort_values(["batch_size", "trial", "seed"])
    fresh = tmp_path / "fresh"
    assert main(["sweep", str(path), "-o", str(fresh), "-q", *more]) == 0
    again = store.load_frame(fresh).sort_values(["batch_size", "trial", "seed"])
    columns = ["trial", "batch_size", "seed", "learning_rate", "momentum", "steps", "final_loss"]
    assert extended[columns].reset_index(drop=True).equals(again[columns].reset_index(drop=True))
    # another space is not an extension
    other = ["--set", "search.momentum.low=0.6", "--extend"]
    assert main(["sweep", str(path), "-o", str(out), "-q", *other]) == 1
    assert "the search changed in more than its number of trials" in capsys.readouterr().err
