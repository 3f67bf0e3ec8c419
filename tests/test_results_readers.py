"""A sweep folder is plain Parquet: pandas, polars, duckdb and pyarrow read the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import critbatch as cb
from critbatch import spec, store

duckdb = pytest.importorskip("duckdb")
polars = pytest.importorskip("polars")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    s = spec.sweep_spec(
        spec.problem("nqm_power_law", dim=4),
        ["sgd", "adam"],
        [1, 4, 16],
        [0.1, 0.3],
        2,
        cb.targets.target(loss_below=0.05, max_steps=500),
        chunk_size=10,
    )
    store.run_sweep(s, out, progress=False)
    return out


def _canonical(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "run_index",
        "problem",
        "optimizer",
        "batch_size",
        "learning_rate",
        "seed",
        "dim",
        "n_samples",
        "steps",
        "sfo",
        "reached",
        "stop_reason",
        "final_loss",
    ]
    return frame[columns].sort_values("run_index").reset_index(drop=True)


def test_every_reader_finds_the_same_rows(sweep_dir):
    expected = _canonical(store.load_frame(sweep_dir))
    assert len(expected) == 24
    readers = {
        "pandas": lambda: pd.read_parquet(sweep_dir),
        "duckdb folder": lambda: duckdb.sql(f"select * from read_parquet('{sweep_dir}')").df(),
        "duckdb glob": lambda: duckdb.sql(
            f"select * from read_parquet('{sweep_dir}/**/*.parquet')"
        ).df(),
        # polars reads a folder only when every file in it is Parquet: the glob picks them
        "polars": lambda: polars.read_parquet(f"{sweep_dir}/*.parquet").to_pandas(),
        "polars lazy": lambda: polars.scan_parquet(f"{sweep_dir}/*.parquet").collect().to_pandas(),
        "polars folder": lambda: (
            polars.scan_parquet(sweep_dir, hidden_file_prefix="_").collect().to_pandas()
        ),
    }
    for name, read in readers.items():
        got = _canonical(read())
        for column in expected.columns:
            np.testing.assert_array_equal(
                got[column].to_numpy(), expected[column].to_numpy(), err_msg=f"{name}: {column}"
            )
    import pyarrow.dataset as ds

    table = ds.dataset(str(sweep_dir), format="parquet").to_table().to_pandas()
    assert len(table) == len(expected)


def test_rows_carry_the_problem_dimension_and_data_set_size():
    target = cb.targets.target(loss_below=0.05, max_steps=50)
    rng = np.random.default_rng(0)
    problems = [
        cb.problems.nqm_power_law(4),
        cb.problems.least_squares(rng.normal(size=(30, 3)), rng.normal(size=30)),
    ]
    frame = cb.sweep(problems, ["sgd"], [1, 2], [0.1], 1, target).to_pandas()
    sizes = frame.groupby("problem")[["dim", "n_samples"]].agg(["min", "max"])
    assert sizes.loc["nqm"].tolist() == [4, 4, np.inf, np.inf]
    assert sizes.loc["least_squares"].tolist() == [3, 3, 30.0, 30.0]


def test_results_as_an_xarray_grid():
    pytest.importorskip("xarray")
    res = cb.sweep(
        cb.problems.nqm_power_law(4),
        ["sgd", "adam"],
        [1, 4],
        [0.1, 0.3],
        3,
        cb.targets.target(loss_below=0.05, max_steps=300),
    )
    grid = res.to_xarray()
    assert dict(grid.sizes) == {
        "problem": 1,
        "optimizer": 2,
        "schedule": 1,
        "batch_size": 2,
        "learning_rate": 2,
        "seed": 3,
    }
    frame = res.to_pandas()
    row = frame.iloc[7]
    cell = grid["steps"].sel(
        problem=row.problem,
        optimizer=row.optimizer,
        schedule=row.schedule,
        batch_size=row.batch_size,
        learning_rate=row.learning_rate,
        seed=row.seed,
    )
    assert int(cell) == row.steps
    assert grid["dim"].sel(problem=row.problem) == row.dim
    assert "dim" not in grid.data_vars
    twice = cb.results.Results.concat([res, res])
    with pytest.raises(ValueError, match="not a grid"):
        twice.to_xarray()


def test_every_file_carries_its_spec(sweep_dir):
    import pyarrow.parquet as pq

    written = store.spec_of(sweep_dir)
    for path in sorted(sweep_dir.glob("chunk-*.parquet")):
        meta = pq.read_schema(path).metadata
        assert meta[b"critbatch.spec_hash"].decode() == written.hash()
        assert spec.loads(meta[b"critbatch.spec_toml"].decode()) == written
        assert meta[b"critbatch.version"].decode() == cb.__version__
