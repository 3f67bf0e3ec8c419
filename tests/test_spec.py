"""Sweep specs: TOML parsing, validation messages, and the spec -> TOML -> spec round trip."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pytest

import critbatch as cb
from critbatch import spec as S

BASE = """
name = "t"
optimizers = [
    "sgd",
    {kind = "heavy_ball", momentum = 0.5, name = "hb"},
    {kind = "adam", betas = [0.8, 0.99]},
]
batch_sizes = [1, 4]
learning_rates = [0.1, 0.2]
seeds = 2

[problem]
kind = "nqm_power_law"
dim = 4

[target]
loss_below = 0.1
max_steps = 100
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_base_spec_parses_to_the_expected_plan(tmp_path):
    spec = S.load_spec(write(tmp_path, BASE))
    plan = spec.to_plan()
    assert len(plan) == 3 * 2 * 2 * 2
    assert [o.name for o in spec.optimizers] == ["sgd", "hb", "adam"]
    assert spec.optimizers[1] == cb.optimizers.heavy_ball(0.5, name="hb")
    assert spec.optimizers[2] == cb.optimizers.adam((0.8, 0.99))
    assert spec.seeds == (0, 1)
    # check_every left out: the spec fixes the synthetic default, one step
    assert spec.target == cb.targets.target(loss_below=0.1, max_steps=100, check_every=1)
    assert np.array_equal(plan.problems[0].h, cb.problems.nqm_power_law(4).h)


# (extra TOML appended or replacement, key path expected in the message, words of the reason)
BAD = [
    pytest.param(BASE + "bogus = 1\n", "", "bogus: unknown key", id="unknown top-level key"),
    pytest.param(
        BASE.replace("dim = 4", "dim = 4\nfoo = 2"),
        "problem.foo",
        "unknown key",
        id="unknown problem argument",
    ),
    pytest.param(
        BASE.replace("dim = 4", "dim = -4"),
        "problem",
        "dim must be a positive",
        id="bad problem value",
    ),
    pytest.param(
        BASE.replace('kind = "nqm_power_law"', 'kind = "mnist"'),
        "problem.kind",
        "must be one of",
        id="unknown problem kind",
    ),
    pytest.param(
        BASE.replace("momentum = 0.5", "momentum = 1.5"),
        "optimizers[1]",
        "momentum must be in",
        id="momentum out of range",
    ),
    pytest.param(
        BASE.replace("momentum = 0.5", "momentom = 0.5"),
        "optimizers[1].momentom",
        "unknown key",
        id="misspelled optimizer key",
    ),
    pytest.param(
        BASE.replace('"sgd",', '"sgdd",'),
        "optimizers[0]",
        "unknown optimizer",
        id="unknown optimizer name",
    ),
    pytest.param(
        BASE.replace("[0.8, 0.99]", "[0.8, 0.99, 0.5]"),
        "optimizers[2].betas",
        "must be a pair [beta1, beta2]",
        id="three betas",
    ),
    pytest.param(
        BASE.replace("[0.8, 0.99]", "[0.8]"),
        "optimizers[2].betas",
        "must be a pair [beta1, beta2]",
        id="one beta",
    ),
    pytest.param(
        BASE.replace("seeds = 2", "seeds = [1, 18446744073709551616]"),
        "seeds[1]",
        "must be at most 9223372036854775807 (2^63 - 1)",
        id="seed past int64",
    ),
    pytest.param(
        BASE.replace("[1, 4]", "[1, 0]"), "batch_sizes[1]", "positive integer", id="zero batch size"
    ),
    pytest.param(
        BASE.replace("[1, 4]", "[1, 2.5]"),
        "batch_sizes[1]",
        "must be an integer",
        id="fractional batch size",
    ),
    pytest.param(
        BASE.replace("[1, 4]", "[4, 4]"), "batch_sizes", "distinct", id="repeated batch size"
    ),
    pytest.param(
        BASE.replace("[0.1, 0.2]", "[0.1, -0.2]"),
        "learning_rates[1]",
        "positive",
        id="negative learning rate",
    ),
    pytest.param(
        BASE.replace("seeds = 2", 'seeds = "two"'), "seeds", "integer", id="seeds not a number"
    ),
    pytest.param(
        BASE.replace("max_steps = 100", "max_step = 100"),
        "target.max_step",
        "unknown key",
        id="misspelled target key",
    ),
    pytest.param(
        BASE + '\n[[schedules]]\nlr = {kind = "step", every = 0}\n',
        "schedules[0].lr",
        "every must be positive",
        id="bad schedule rule",
    ),
    pytest.param(
        BASE + '\n[[schedules]]\nlr = {kind = "warp"}\n',
        "schedules[0].lr.kind",
        "must be one of",
        id="unknown schedule rule",
    ),
    pytest.param('backend = "tpu"\n' + BASE, "backend", "must be one of", id="unknown backend"),
    pytest.param(
        BASE.replace("[problem]", "[[problems]]")
        + '\n[[problems]]\nkind = "nqm_power_law"\ndim = 3\n',
        "(grid)",
        "names must be unique",
        id="duplicate problem names",
    ),
    pytest.param(
        BASE.replace("batch_sizes = [1, 4]", ""), "batch_sizes", "missing", id="missing batch sizes"
    ),
    pytest.param("optimizers = [\n", "", "not valid TOML", id="broken TOML"),
    pytest.param(
        BASE + '\n[[schedules]]\nbatch = {kind = "linear", every = 1, unit = "epoch"}\n',
        "(grid)",
        "counts epochs",
        id="epoch unit on a streaming problem",
    ),
]


@pytest.mark.parametrize(("text", "path", "reason"), BAD)
def test_bad_spec_is_rejected_naming_file_path_and_reason(tmp_path, text, path, reason):
    file = write(tmp_path, text)
    with pytest.raises(S.SpecError) as info:
        S.load_spec(file)
    message = str(info.value)
    assert message.startswith(str(file) + ": ")
    assert path in message
    assert reason in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(S.SpecError, match="cannot read the spec file"):
        S.load_spec(tmp_path / "nope.toml")


FULL = """
name = "everything"
optimizers = ["sgd", "nesterov", {kind = "rmsprop", alpha = 0.9, centered = true}]
batch_sizes = [2, 8]
learning_rates = [0.05]
seeds = [3, 7]
seed = 11
backend = "rust"
chunk_size = 5
trajectory_every = 10

[[problems]]
kind = "least_squares"
n = 64
d = 4
seed = 2
sampling = "shuffle"

[[problems]]
kind = "logistic"
n = 50
d = 3

[[problems]]
kind = "robust"
n = 40
d = 3
loss = "cauchy"
name = "rob"

[[problems]]
kind = "teacher_student"
n = 30
d_in = 2
width = 2

[[problems]]
kind = "double_well"
kappa = 0.3
dim = 2

[[problems]]
kind = "nqm"
h = [1.0, 0.5]
c = [0.1, 0.2]
x0 = [1.0, -1.0]
name = "tiny"

[target]
grad_norm_below = 0.01
check_every = 5
max_steps = 1000
divergence_factor = inf

[[schedules]]
name = "const"

[[schedules]]
name = "decay"
lr = {kind = "cosine", period = 100, min_factor = 0.1}
batch = {kind = "geometric", every = 3, rate = 2.0, max_factor = 8.0, unit = "epoch"}
max_batch_size = 32
"""


def test_full_spec_round_trips_through_toml(tmp_path):
    spec = S.load_spec(write(tmp_path, FULL.replace('unit = "epoch"', 'unit = "step"')))
    text = spec.to_toml()
    tomllib.loads(text)  # valid TOML
    again = S.loads(text)
    assert again == spec
    assert again.hash() == spec.hash()
    assert again.to_toml() == text
    assert spec.target.divergence_factor == math.inf
    assert spec.schedules[1].batch.max_factor == 8.0


def test_problem_names_and_generators_follow_the_spec(tmp_path):
    spec = S.load_spec(write(tmp_path, FULL.replace('unit = "epoch"', 'unit = "step"')))
    problems = spec.to_plan().problems
    assert [p.name for p in problems] == [
        "least_squares",
        "logistic",
        "rob",
        "teacher_student",
        "double_well",
        "tiny",
    ]
    ref = cb.problems.make_least_squares(64, 4, seed=2, sampling="shuffle")
    assert np.array_equal(problems[0].X, ref.X)
    assert problems[2].params["loss"] == "cauchy"


def test_epoch_units_on_finite_data_alone_are_accepted(tmp_path):
    text = FULL.split('[[problems]]\nkind = "logistic"')[0] + FULL.split('name = "tiny"\n')[1]
    spec = S.load_spec(write(tmp_path, text))
    assert spec.schedules[1].batch.unit == "epoch"


def test_python_route_builds_the_same_spec_as_toml(tmp_path):
    from_toml = S.load_spec(write(tmp_path, BASE))
    from_python = S.sweep_spec(
        S.problem("nqm_power_law", dim=4),
        ["sgd", cb.optimizers.heavy_ball(0.5, name="hb"), cb.optimizers.adam((0.8, 0.99))],
        [1, 4],
        [0.1, 0.2],
        2,
        cb.targets.target(loss_below=0.1, max_steps=100),
        name="t",
    )
    assert from_python == from_toml
    assert from_python.hash() == from_toml.hash()


def test_python_route_accepts_nqm_objects_and_rejects_array_data():
    nqm = cb.problems.nqm([1.0, 0.25], [0.5, 0.5], x0=[2.0, -1.0], name="mine")
    spec = S.sweep_spec(nqm, "sgd", [1], [0.1], 1, cb.targets.target(max_steps=10))
    assert S.loads(spec.to_toml()) == spec
    assert np.array_equal(spec.to_plan().problems[0].x0, nqm.x0)
    data = cb.problems.least_squares(np.ones((3, 2)), np.ones(3))
    with pytest.raises(S.SpecError, match=r"problems\[0\]: a finite-sum problem built from arrays"):
        S.sweep_spec(data, "sgd", [1], [0.1], 1)


def test_hash_ignores_comments_and_key_order(tmp_path):
    reordered = "# a comment\nseeds = 2\n" + BASE.replace("seeds = 2\n", "").replace(
        "dim = 4", "dim = 4  # comment"
    )
    assert S.loads(reordered).hash() == S.loads(BASE).hash()
    assert S.loads(BASE.replace("seeds = 2", "seeds = 3")).hash() != S.loads(BASE).hash()


@pytest.mark.parametrize("seeds", [[1, 2, 3], [0, 1, 2], [2, 0, 1], [5], [0, 2]])
def test_replicate_ids_round_trip_exactly(seeds):
    # A run of ids from 0 is written as a count; anything else (1, 2, 3 included) as the list.
    spec = S.sweep_spec(S.problem("nqm_power_law", dim=2), "sgd", [1], [0.1], seeds)
    again = S.loads(spec.to_toml())
    assert again.seeds == tuple(seeds)
    assert again == spec
    assert again.to_plan().cells["seed"].tolist() == seeds
