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


def _grid_results():
    return cb.sweep(
        [cb.problems.nqm_power_law(4), cb.problems.nqm_power_law(6, name="nqm6")],
        ["sgd", "adam"],
        [1, 4],
        [0.1, 30.0],  # the large rate diverges
        2,
        cb.targets.target(loss_below=0.05, max_steps=50),
    )


def test_to_arrow_builds_the_string_columns_from_their_codes():
    import pyarrow as pa

    res = _grid_results()
    assert set(res.codes) == {"problem", "optimizer", "schedule", "stop_reason"}
    assert {"reached", "budget", "diverged_blowup"} <= set(res["stop_reason"])
    table = res.to_arrow()
    for name, column in res.columns.items():
        expected = pa.array(column.tolist() if column.dtype == object else column)
        assert table.column(name).combine_chunks().equals(expected), name
    coded = res.to_arrow(dictionary=True)
    for name in res.codes:
        assert pa.types.is_dictionary(coded.schema.field(name).type)
        assert coded.column(name).cast(pa.string()).to_pylist() == res[name].tolist()


def test_the_codes_never_describe_another_column():
    import dataclasses

    res = _grid_results()
    with pytest.raises(ValueError, match="read-only"):
        res["problem"][0] = "elsewhere"
    renamed = np.where(res["problem"] == "nqm6", "six", res["problem"]).astype(object)
    other = dataclasses.replace(res, columns={**res.columns, "problem": renamed})
    assert other.to_arrow().column("problem").to_pylist() == renamed.tolist()
    assert other.to_arrow(dictionary=True).column("problem").to_pylist() == renamed.tolist()


def test_stop_reasons_outside_the_list_are_kept_as_given():
    plan = cb.make_plan(
        cb.problems.nqm_power_law(4), "sgd", [1, 2], [0.1], 1, cb.targets.target(max_steps=5)
    )
    outcomes = {c: np.zeros(2) for c in cb.results.OUTCOME_COLUMNS}
    outcomes["stop_reason"] = ["budget", "lost in the mail"]
    res = cb.Results.from_outcomes(plan, outcomes)
    assert "stop_reason" not in res.codes
    assert res.to_arrow().column("stop_reason").to_pylist() == ["budget", "lost in the mail"]


@pytest.mark.parametrize(
    "values",
    [
        np.array([True, False, True, True, False, False, False, True, True]),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([1, 2**40], dtype=np.int64),
        np.array([0, 2**63 + 5], dtype=np.uint64),
        np.array([0.5, np.nan, -np.inf], dtype=np.float32),
        np.array([0.5, np.nan, np.inf], dtype=np.float64),
        np.array([1.0, 2.0, 3.0, 4.0])[::2],  # strided
        np.array([1.0, 2.0], dtype=">f8"),  # byte-swapped, which pa.array refuses
        np.array([], dtype=np.float64),
    ],
    ids=lambda v: f"{v.dtype.str} x{v.size}",
)
def test_arrow_array_equals_pyarrows_own_conversion(values):
    import pyarrow as pa

    from critbatch.results import arrow_array

    got, expected = arrow_array(values), pa.array(values.astype(values.dtype.newbyteorder("=")))
    assert (got.type, got.null_count) == (expected.type, expected.null_count)
    np.testing.assert_array_equal(got.to_numpy(zero_copy_only=False), values)  # NaN == NaN here


@pytest.mark.parametrize("late_metadata", [True, False], ids=["pyarrow>=17", "pyarrow<17"])
def test_readers_get_the_types_of_a_plain_parquet_file(tmp_path, monkeypatch, late_metadata):
    """Chunks hold dictionary-coded strings and no Arrow schema; readers still see strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not late_metadata:  # the path for pyarrow without ParquetWriter.add_key_value_metadata
        monkeypatch.setattr(store, "_writer_adds_metadata", lambda: False)
    s = spec.sweep_spec(
        spec.problem("nqm_power_law", dim=4),
        ["sgd", "adam"],
        [1, 4],
        [0.1, 30.0],
        2,
        cb.targets.target(loss_below=0.05, max_steps=50),
        chunk_size=5,
        trajectory_every=10,
        trajectory_metrics=("loss", "grad_norm"),
    )
    out = tmp_path / "out"
    store.run_sweep(s, out)
    res = cb.execute(s.to_plan())
    # The reference: the runs as plain Arrow columns, written by pyarrow's defaults.
    plain = res.to_arrow()
    for name, paths in (
        ("trajectory", res.trajectories),
        ("grad_norm_trajectory", res.grad_norm_trajectories),
    ):
        plain = plain.append_column(name, pa.array(paths, type=pa.list_(pa.float64())))
    reference = tmp_path / "reference.parquet"
    pq.write_table(plain, reference)
    chunk = store.chunk_path(out, 0)
    assert pq.read_schema(chunk).remove_metadata() == pq.read_schema(reference).remove_metadata()
    assert pq.read_schema(chunk).metadata[b"critbatch.spec_hash"] == s.hash().encode()
    assert pd.read_parquet(out).dtypes.equals(pd.read_parquet(reference).dtypes)
    assert store.load_frame(out).dtypes.equals(pd.read_parquet(reference).dtypes)
    got = polars.scan_parquet(out, hidden_file_prefix="_").collect_schema()
    assert got == polars.read_parquet(reference).schema
    import pyarrow.dataset as ds

    assert ds.dataset(str(out), format="parquet").schema.remove_metadata() == plain.schema
    loaded = store.load(out)
    for name, column in res.columns.items():
        assert loaded[name].dtype == column.dtype, name
    pd.testing.assert_frame_equal(
        loaded.to_pandas().drop(columns="wall_time"), res.to_pandas().drop(columns="wall_time")
    )
