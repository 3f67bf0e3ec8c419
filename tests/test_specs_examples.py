"""The example specs: one per problem kind, each valid, schema-clean, and runnable (reduced)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from critbatch import schema, spec, store
from critbatch.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "examples" / "specs").glob("*.toml"))
IDS = [p.stem for p in SPECS]


def _data(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _skip_without_data(path: Path) -> None:
    """A spec that reads a local data copy (CIFAR-10) loads only where the copy exists."""
    root = _data(path).get("problem", {}).get("data_kwargs", {}).get("root")
    if root is not None and not Path(root).exists():
        pytest.skip(f"{path.name} reads {root}, which is not on this machine")


def test_every_problem_kind_has_an_example():
    kinds = set()
    for path in SPECS:
        data = _data(path)
        kinds.update(p["kind"] for p in data.get("problems", [data.get("problem", {})]))
    assert kinds == set(spec.PROBLEM_KINDS)


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_example_is_valid_and_attaches_the_schema(path):
    _skip_without_data(path)
    assert path.read_text().splitlines()[0] == "#:schema ../../docs/spec.schema.json"
    loaded = spec.load_spec(path)
    assert spec.loads(loaded.to_toml()) == loaded


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_example_matches_the_json_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    errors = list(jsonschema.Draft202012Validator(schema.spec_schema()).iter_errors(_data(path)))
    assert errors == []


def _reduced(data: dict) -> list[str]:
    """Overrides that shrink a spec to a few short runs, as a user would with --set."""
    # a search (nqm_search.toml) draws its learning rates: fewer trials instead
    rates = (
        "search.trials=2" if "search" in data else f"learning_rates={data['learning_rates'][-1:]}"
    )
    return [
        "seeds=1",
        f"batch_sizes={data['batch_sizes'][:2]}",
        rates,
        "target.max_steps=40",
        "target.check_every=10",
        "chunk_size=4",
    ]


@pytest.mark.parametrize("path", SPECS, ids=IDS)
def test_example_runs_reduced_through_the_cli(capsys, tmp_path, path):
    data = _data(path)
    _skip_without_data(path)
    if data.get("backend") == "torch":
        pytest.importorskip("torch")
    argv = [str(path), "-o", str(tmp_path / "out"), "-q", "--threads", "1"]
    for override in _reduced(data):
        argv += ["--set", override]
    assert main(["sweep", *argv]) == 0, capsys.readouterr().err
    reduced = spec.load_spec(path, overrides=_reduced(data))
    results = store.load(tmp_path / "out")
    assert len(results) == len(reduced.to_plan())
    assert set(results["problem"]) == set(reduced.problem_names)
    assert (results["steps"] <= 40).all()
