"""The spec's JSON Schema: generated from the builders, committed, in step with the validator."""

from __future__ import annotations

import inspect
import json
import tomllib
from pathlib import Path

import pytest

from critbatch import schema, spec
from critbatch.demo import DEMO_SPEC

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "spec.schema.json"


@pytest.fixture(scope="module")
def validator():
    s = schema.spec_schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_the_committed_schema_is_up_to_date():
    assert COMMITTED.read_text(encoding="utf-8") == schema.schema_json(), (
        "docs/spec.schema.json is stale: run `critbatch schema > docs/spec.schema.json`"
    )


def test_the_schema_offers_every_key_the_validator_accepts():
    s = schema.spec_schema()
    assert set(s["properties"]) == set(spec._TOP_KEYS)
    assert set(s["$defs"]["target"]["properties"]) == set(spec._TARGET_KEYS)
    assert set(s["$defs"]["schedule"]["properties"]) == set(spec._SCHEDULE_KEYS)
    problems = {p["properties"]["kind"]["const"]: p for p in s["$defs"]["problem"]["oneOf"]}
    assert list(problems) == list(spec.PROBLEM_KINDS)
    for kind, builder in spec.PROBLEM_KINDS.items():
        assert set(problems[kind]["properties"]) == {
            "kind",
            "name",
            *inspect.signature(builder).parameters,
        }
    optimizers = {o["properties"]["kind"]["const"]: o for o in s["$defs"]["optimizer"]["anyOf"][1:]}
    assert list(optimizers) == list(spec._OPTIMIZER_BUILDERS)
    assert s["$defs"]["optimizer"]["anyOf"][0]["enum"] == list(spec.OPTIMIZER_NAMES)
    rules = {r["properties"]["kind"]["const"]: r for r in s["$defs"]["rule"]["oneOf"]}
    for kind, (_, keys) in spec._RULES.items():
        assert set(rules[kind]["properties"]) == {"kind", *keys}


def test_the_demo_spec_matches_the_schema(validator):
    assert list(validator.iter_errors(tomllib.loads(DEMO_SPEC))) == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda d: d["target"].update(max_step=5),
            "'max_step' was unexpected",
            id="unknown target key",
        ),
        pytest.param(
            lambda d: d.update(batch_sizes=[0, 1]),
            "less than the minimum of 1",
            id="batch size zero",
        ),
        pytest.param(
            lambda d: d["problems"][0].update(kind="nqm_powerlaw"),
            "is not valid",
            id="unknown problem kind",
        ),
        pytest.param(
            lambda d: d.update(optimizers=["adma"]), "is not valid", id="unknown optimizer name"
        ),
        pytest.param(
            lambda d: d.update(problem=d["problems"][0]),
            "is valid under each of",
            id="both problem and problems",
        ),
    ],
)
def test_the_schema_rejects_what_the_validator_rejects(validator, edit, message):
    data = tomllib.loads(DEMO_SPEC)
    edit(data)
    errors = [e.message for e in validator.iter_errors(data)]
    assert any(message in e for e in errors), errors
    with pytest.raises(spec.SpecError):
        spec.from_dict(data)


def test_schema_json_is_deterministic_json():
    text = schema.schema_json()
    assert json.loads(text) == schema.spec_schema()
    assert text == schema.schema_json()
    assert text.endswith("}\n")
