"""Spec keys: unknown keys get the closest known one, and ``--set`` overrides edit the data."""

from __future__ import annotations

import pytest

from critbatch import optimizers as opt
from critbatch.spec import OPTIMIZER_NAMES, SpecError, apply_overrides, loads
from tests.conftest import Err

BASE = """
optimizers = ["sgd"]
batch_sizes = [1, 4]
learning_rates = [0.1]

[problem]
kind = "nqm_power_law"
dim = 4

[target]
loss_below = 0.1
max_steps = 100
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "batch_size = 2\n" + BASE,
            Err("batch_size: unknown key; did you mean 'batch_sizes'?"),
            id="top-level key",
        ),
        pytest.param(
            BASE.replace("dim = 4", "dims = 4"),
            Err("problem.dims: unknown key; did you mean 'dim'?"),
            id="problem key",
        ),
        pytest.param(
            BASE.replace("max_steps", "maxsteps"),
            Err("target.maxsteps: unknown key; did you mean 'max_steps'?"),
            id="target key",
        ),
        pytest.param(
            BASE.replace('["sgd"]', '[{kind = "heavy_ball", momentun = 0.9}]'),
            Err("optimizers[0].momentun: unknown key; did you mean 'momentum'?"),
            id="optimizer key",
        ),
        pytest.param(
            BASE.replace('["sgd"]', '[{kind = "adamx"}]'),
            Err(
                "optimizers[0].kind: must be one of sgd, heavy_ball, nesterov, adam, "
                "rmsprop, adamw, lars, lamb, lion, got 'adamx'; did you mean 'adam'?"
            ),
            id="optimizer kind",
        ),
        pytest.param(
            BASE.replace('["sgd"]', '["nesterow"]'),
            Err("did you mean 'nesterov'?"),
            id="optimizer name",
        ),
        pytest.param(
            BASE.replace("nqm_power_law", "least_square"),
            Err("problem.kind: must be one of"),
            id="problem kind",
        ),
        pytest.param(
            BASE + '[[schedules]]\nlr = {kind = "cosin", period = 10}\n',
            Err(
                "schedules[0].lr.kind: must be one of constant, step, cosine, geometric, "
                "polynomial, linear, got 'cosin'; did you mean 'cosine'?"
            ),
            id="schedule rule kind",
        ),
        pytest.param(
            "zzzzzz = 1\n" + BASE,
            Err("zzzzzz: unknown key (expected one of"),
            id="no close key: no suggestion",
        ),
    ],
)
def test_unknown_keys_name_the_closest_one(text, expected):
    with expected.raises():
        loads(text)


def test_each_key_is_listed_once():
    with pytest.raises(SpecError) as info:
        loads(BASE.replace("dim = 4", "dim = 4\nbogus = 1"))
    listed = str(info.value).split("expected one of ")[1].rstrip(")").split(", ")
    assert listed == sorted(set(listed))
    assert "name" in listed


def test_optimizer_names_are_those_from_name_accepts():
    for name in OPTIMIZER_NAMES:
        assert isinstance(opt.from_name(name), opt.Optimizer)
    with pytest.raises(ValueError, match="expected one of") as info:
        opt.from_name("nope")
    assert sorted(str(info.value).split("expected one of ")[1].split(", ")) == sorted(
        OPTIMIZER_NAMES
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(["seeds=3"], {"seeds": 3}, id="integer"),
        pytest.param(["name=quick"], {"name": "quick"}, id="bare word is a string"),
        pytest.param(['name="a b"'], {"name": "a b"}, id="quoted string"),
        pytest.param(["batch_sizes=[1, 2]"], {"batch_sizes": [1, 2]}, id="array"),
        pytest.param(
            ["target.max_steps=7"], {"target": {"max_steps": 7, "loss_below": 0.1}}, id="dotted key"
        ),
        pytest.param(
            ["target.check_every=5"],
            {"target": {"loss_below": 0.1, "max_steps": 100, "check_every": 5}},
            id="new key in a table",
        ),
        pytest.param(["problems[0].n=8"], {"problems": [{"kind": "x", "n": 8}]}, id="list index"),
        pytest.param(
            ["schedules[0].lr.gamma=0.5"],
            {"schedules": [{"lr": {"kind": "step", "every": 3, "gamma": 0.5}}]},
            id="index then nested table",
        ),
        pytest.param(
            ["extra.deep.key=true"],
            {"extra": {"deep": {"key": True}}},
            id="missing tables are created",
        ),
        pytest.param(["seeds=1", "seeds=2"], {"seeds": 2}, id="later wins"),
    ],
)
def test_overrides_edit_plain_data(overrides, expected):
    data = {
        "seeds": 1,
        "name": "s",
        "batch_sizes": [4],
        "target": {"loss_below": 0.1, "max_steps": 100},
        "problems": [{"kind": "x", "n": 4}],
        "schedules": [{"lr": {"kind": "step", "every": 3}}],
    }
    out = apply_overrides(data, overrides)
    for key, value in expected.items():
        assert out[key] == value
    assert data["target"] == {"loss_below": 0.1, "max_steps": 100}  # the input is not changed


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        pytest.param("novalue", Err("--set: novalue: expected KEY=VALUE"), id="no equals sign"),
        pytest.param("=3", Err("expected KEY=VALUE"), id="empty key"),
        pytest.param("a..b=1", Err("a key is dotted names"), id="empty segment"),
        pytest.param("[0]=1", Err("a key is dotted names"), id="index without a name"),
        pytest.param(
            "seeds[0]=1", Err("--set: seeds[0]: seeds is not a list"), id="index a number"
        ),
        pytest.param(
            "problems[3].n=1",
            Err("problems[3]: index out of range: the list has 1"),
            id="index past the end",
        ),
        pytest.param(
            "name.first=1", Err("--set: name.first: name is not a table"), id="key of a string"
        ),
    ],
)
def test_bad_overrides_raise_spec_errors(override, expected):
    with expected.raises():
        apply_overrides({"seeds": 2, "name": "s", "problems": [{"n": 1}]}, [override])


def test_loads_applies_overrides_before_validation():
    spec = loads(BASE, overrides=["target.max_steps=50", "learning_rates=[0.2, 0.4]"])
    assert (spec.target.max_steps, spec.learning_rates) == (50, (0.2, 0.4))
    with Err("target: max_steps must be a positive integer").raises():
        loads(BASE, overrides=["target.max_steps=0"])
