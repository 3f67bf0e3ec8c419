"""The sweep store: atomic chunk files, manifest, resume after a crash or kill -9, extend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import critbatch as cb
from critbatch import spec as S
from critbatch import store

# wall_time is the only column that is not a function of the spec: leave it out of comparisons
NONDETERMINISTIC = ["wall_time"]


def small_spec(**overrides):
    kwargs = {
        "problems": S.problem("nqm_power_law", dim=4),
        "optimizers": ["sgd", "adam"],
        "batch_sizes": [1, 4, 16],
        "learning_rates": [0.1, 0.3],
        "seeds": 2,
        "target": cb.targets.target(loss_below=0.3, max_steps=300),
        "chunk_size": 5,
    }
    kwargs.update(overrides)
    return S.sweep_spec(
        kwargs.pop("problems"),
        kwargs.pop("optimizers"),
        kwargs.pop("batch_sizes"),
        kwargs.pop("learning_rates"),
        kwargs.pop("seeds"),
        **kwargs,
    )


def frame(results):
    df = results if isinstance(results, pd.DataFrame) else results.to_pandas()
    return df.drop(columns=NONDETERMINISTIC).reset_index(drop=True)


def direct(spec):
    return frame(cb.execute(spec.to_plan(), threads=1))


def test_sweep_writes_one_file_per_chunk_and_a_manifest(tmp_path):
    spec = small_spec()
    summary = store.run_sweep(spec, tmp_path / "out")
    files = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert files == ["_manifest.json"] + [f"chunk-{i:06d}.parquet" for i in range(5)]
    assert (summary.n_runs, summary.n_chunks, summary.ran_chunks) == (24, 5, 5)
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["spec_hash"] == spec.hash()
    assert S.loads(manifest["spec_toml"]) == spec
    assert (manifest["chunk_size"], manifest["n_chunks"], manifest["n_runs"]) == (5, 5, 24)
    assert manifest["critbatch_version"] == cb.__version__


def test_stored_rows_equal_a_direct_execute_and_read_as_plain_parquet(tmp_path):
    spec = small_spec()
    store.run_sweep(spec, tmp_path)
    expected = direct(spec)
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), expected, check_dtype=False)
    pd.testing.assert_frame_equal(frame(store.load_frame(tmp_path)), expected, check_dtype=False)
    pd.testing.assert_frame_equal(frame(pd.read_parquet(tmp_path)), expected, check_dtype=False)
    loaded = store.load(tmp_path)
    assert loaded["run_index"].dtype == np.uint64
    assert loaded.specs["spec"] == spec


def test_rerun_skips_finished_chunks_and_duplicates_nothing(tmp_path):
    spec = small_spec()
    store.run_sweep(spec, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk-*")}
    again = store.run_sweep(spec, tmp_path)
    assert (again.ran_chunks, again.skipped_chunks) == (0, 5)
    assert stamps == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("chunk-*")}
    assert len(store.load(tmp_path)) == 24


def test_a_failing_chunk_keeps_the_finished_ones_and_a_rerun_completes(tmp_path):
    spec = small_spec()
    calls = []

    def flaky(plan, **kwargs):
        calls.append(len(plan))
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return cb.execute(plan, **kwargs)

    with pytest.raises(RuntimeError, match="worker lost"):
        store.run_sweep(spec, tmp_path, executor=flaky)
    assert sorted(p.name for p in tmp_path.glob("chunk-*")) == [
        "chunk-000000.parquet",
        "chunk-000001.parquet",
    ]
    with pytest.raises(ValueError, match="holds 2 of 5 chunks"):
        store.load(tmp_path)
    with pytest.warns(store.StoreWarning, match="partial sweep"):
        assert len(store.load(tmp_path, allow_partial=True)) == 10
    resumed = store.run_sweep(spec, tmp_path)
    assert (resumed.ran_chunks, resumed.skipped_chunks) == (3, 2)
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import critbatch as cb
    from critbatch import spec as S, store

    def slow(plan, **kwargs):
        time.sleep(0.3)
        return cb.execute(plan, **kwargs)

    spec = S.load_spec(sys.argv[1])
    store.run_sweep(spec, sys.argv[2], executor=slow)
""")


def test_sweep_killed_with_sigkill_resumes_to_exactly_the_uninterrupted_rows(tmp_path):
    spec = small_spec(chunk_size=3)  # 8 chunks, 0.3 s each
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml())
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(cb.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
    }
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(spec_file), str(out)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "chunk-000001.parquet").exists():
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk appeared within 60 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done, total = store.progress_counts(out)
    assert 2 <= done < total == 8
    (out / ".chunk-000007.parquet.999.tmp").write_bytes(b"half a file")  # as a kill leaves it
    resumed = store.run_sweep(spec, out)
    assert resumed.skipped_chunks == done
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    pd.testing.assert_frame_equal(frame(store.load(out)), direct(spec), check_dtype=False)


def test_a_changed_spec_is_refused(tmp_path):
    store.run_sweep(small_spec(), tmp_path)
    with pytest.raises(ValueError, match=r"holds a different sweep .* --extend"):
        store.run_sweep(small_spec(seeds=3), tmp_path)


def test_extend_adds_only_the_new_runs(tmp_path):
    old = small_spec()
    store.run_sweep(old, tmp_path)
    new = small_spec(seeds=3, batch_sizes=[1, 4, 16, 64], optimizers=["sgd", "adam", "nesterov"])
    summary = store.run_sweep(new, tmp_path, extend=True)
    assert summary.generation == 1
    df = store.load_frame(tmp_path)
    keys = list(store.KEY_COLUMNS)
    assert not df.duplicated(keys).any()
    assert len(df) == len(new.to_plan()) == 3 * 4 * 2 * 3
    # the old rows are untouched; the new rows are those of the new plan at the new keys
    old_rows = frame(df.iloc[:24])
    pd.testing.assert_frame_equal(old_rows, direct(old), check_dtype=False)
    fresh = direct(new).set_index(keys)
    added = frame(df.iloc[24:]).set_index(keys)
    pd.testing.assert_frame_equal(added, fresh.loc[added.index], check_dtype=False)
    # rerunning either spec now resumes (nothing to do)
    assert store.run_sweep(new, tmp_path).ran_chunks == 0
    assert store.run_sweep(old, tmp_path).ran_chunks == 0
    manifest = store.read_manifest(tmp_path)
    assert [g["first_chunk"] for g in manifest["generations"]] == [0, 5]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"batch_sizes": [1, 4]}, "batch_sizes drops", id="dropped batch size"),
        pytest.param(
            {"target": cb.targets.target(loss_below=0.2, max_steps=300)},
            "target changed",
            id="changed target",
        ),
        pytest.param(
            {"optimizers": ["sgd", cb.optimizers.adam((0.5, 0.9))]},
            "optimizer 'adam' changed",
            id="redefined optimizer",
        ),
        pytest.param({"optimizers": ["sgd"]}, "optimizer 'adam' is gone", id="dropped optimizer"),
        pytest.param({"seed": 5}, "seed changed", id="changed sweep seed"),
    ],
)
def test_extend_refuses_anything_but_a_superset(tmp_path, change, message):
    store.run_sweep(small_spec(), tmp_path)
    with pytest.raises(ValueError, match=message):
        store.run_sweep(small_spec(**change), tmp_path, extend=True)


def test_trajectories_survive_the_round_trip(tmp_path):
    spec = small_spec(trajectory_every=5, batch_sizes=[4], optimizers=["sgd"])
    store.run_sweep(spec, tmp_path)
    loaded = store.load(tmp_path)
    expected = cb.execute(spec.to_plan())
    assert len(loaded.trajectories) == len(expected.trajectories) == 4
    for got, want in zip(loaded.trajectories, expected.trajectories, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        pytest.param(
            lambda d: (d / "notes.txt").write_text("x"),
            "not empty and holds no sweep",
            id="foreign directory",
        ),
        pytest.param(
            lambda d: (d / "_manifest.json").write_text("{"), "not valid JSON", id="broken manifest"
        ),
        pytest.param(
            lambda d: (d / "_manifest.json").write_text('{"format": "x"}'),
            "unknown format",
            id="foreign manifest",
        ),
    ],
)
def test_a_directory_that_is_not_a_sweep_is_refused(tmp_path, prepare, message):
    prepare(tmp_path)
    with pytest.raises(ValueError, match=message):
        store.run_sweep(small_spec(), tmp_path)


@pytest.fixture(params=[True, False], ids=["byte claims in .claims", "a claim file per chunk"])
def claim_kind(request, monkeypatch):
    if not request.param:  # what a system without open-file-description locks uses
        monkeypatch.setattr(store, "_byte_locks", lambda: False)
    elif not store._byte_locks():
        pytest.skip("no open-file-description locks here")
    return request.param


def test_a_chunk_claimed_by_another_process_is_left_to_it(tmp_path, claim_kind):
    spec = small_spec()
    store.run_sweep(spec, tmp_path)
    for i in (1, 3):
        store.chunk_path(tmp_path, i).unlink()
    other = store._Claims(tmp_path)  # another open file: its locks exclude us like a process
    assert other.try_claim(3)

    def finish_chunk_3_then_release():
        # the other "process" writes chunk 3 (as the first sweep did) and lets go
        time.sleep(0.2)
        store.run_sweep(spec, tmp_path / "twin")
        os.replace(store.chunk_path(tmp_path / "twin", 3), store.chunk_path(tmp_path, 3))
        other.release_all()

    import threading

    helper = threading.Thread(target=finish_chunk_3_then_release)
    helper.start()
    summary = store.run_sweep(spec, tmp_path)
    helper.join()
    assert (summary.ran_chunks, summary.skipped_chunks) == (1, 3)  # chunk 1 here, 3 there
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)
    assert not list(tmp_path.glob(".claim-*"))


def test_progress_goes_to_the_given_stream(tmp_path):
    import io

    stream = io.StringIO()
    store.run_sweep(small_spec(), tmp_path, progress=stream)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("sweep: 24/24 runs (100%)")
    assert "runs/s" in last


def interrupted_at(chunk, finished):
    """An executor that runs every chunk, but raises Ctrl-C in chunk number ``chunk`` (0-based
    call count) keeping only its runs at positions ``finished``, as the core does."""
    calls = []

    def executor(plan, **kwargs):
        calls.append(len(plan))
        res = cb.execute(plan, **kwargs)
        if len(calls) - 1 == chunk:
            rows = np.asarray(finished, dtype=np.int64)
            kept = cb.Results.from_outcomes(
                plan.subset(rows), {k: v[rows] for k, v in res.columns.items()}
            )
            raise cb.SweepInterrupted(kept, rows, len(plan))
        return res

    return executor, calls


def test_an_interrupted_chunk_keeps_its_finished_runs_and_a_rerun_runs_only_the_rest(tmp_path):
    spec = small_spec()
    executor, _ = interrupted_at(1, [0, 3])
    with pytest.raises(cb.SweepInterrupted):
        store.run_sweep(spec, tmp_path, executor=executor)
    assert store.progress_counts(tmp_path) == (1, 5)
    assert len(pd.read_parquet(store.partial_path(tmp_path, 1))) == 2
    assert len(pd.read_parquet(tmp_path)) == 5  # readers skip the partial file
    # interrupted again in the same chunk: the partial file gathers both interrupts' runs
    executor, calls = interrupted_at(0, [1])
    with pytest.raises(cb.SweepInterrupted):
        store.run_sweep(spec, tmp_path, executor=executor)
    assert calls == [3]
    assert len(pd.read_parquet(store.partial_path(tmp_path, 1))) == 3
    counting, calls = interrupted_at(-1, [])
    resumed = store.run_sweep(spec, tmp_path, executor=counting)
    assert calls == [2, 5, 5, 4]  # chunk 1 runs only its 2 runs left
    assert (resumed.ran_chunks, resumed.skipped_chunks) == (4, 1)
    assert not store.partial_path(tmp_path, 1).exists()
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)


def test_a_chunk_whose_runs_all_finished_before_the_interrupt_is_written_on_rerun(tmp_path):
    spec = small_spec()
    executor, _ = interrupted_at(0, [0, 1, 2, 3, 4])
    with pytest.raises(cb.SweepInterrupted):
        store.run_sweep(spec, tmp_path, executor=executor)
    counting, calls = interrupted_at(-1, [])
    assert store.run_sweep(spec, tmp_path, executor=counting).ran_chunks == 5
    assert calls == [5, 5, 5, 4]
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)


def test_the_progress_line_counts_the_kept_runs_on_resume(tmp_path):
    import io

    spec = small_spec()
    executor, _ = interrupted_at(1, [0, 3])
    with pytest.raises(cb.SweepInterrupted):
        store.run_sweep(spec, tmp_path, executor=executor)
    stream = io.StringIO()
    store.run_sweep(spec, tmp_path, progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("sweep: ")
    assert int(lines[0].split()[1].split("/")[0]) > 7  # chunk 0 and the 2 kept runs, at least
    assert lines[-1].startswith("sweep: 24/24 runs (100%)")


def full_disk_on_call(n, monkeypatch):
    """Make the n-th Parquet write (1-based) fail as a full disk does, after writing half."""
    import errno

    real = store._write_parquet
    count = [0]

    def write_parquet(where, table, metadata):
        count[0] += 1
        if count[0] == n:
            Path(where).write_bytes(b"PAR1 half a file")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(where, table, metadata)

    monkeypatch.setattr(store, "_write_parquet", write_parquet)


def test_a_full_disk_leaves_a_resumable_store_and_one_clear_line(tmp_path, monkeypatch, capsys):
    spec = small_spec()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml())
    out = tmp_path / "out"
    full_disk_on_call(3, monkeypatch)
    from critbatch.cli import main

    assert main(["sweep", str(spec_file), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("critbatch: error: [Errno 28] could not write ")
    assert "chunk-000002.parquet (No space left on device)" in err
    assert "run the same sweep again to resume" in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert store.progress_counts(out) == (2, 5)
    monkeypatch.undo()
    assert main(["sweep", str(spec_file), "-o", str(out), "--quiet"]) == 0
    pd.testing.assert_frame_equal(frame(store.load(out)), direct(spec), check_dtype=False)


def test_a_full_disk_while_keeping_interrupted_runs_only_loses_those_runs(tmp_path, monkeypatch):
    spec = small_spec()
    executor, _ = interrupted_at(1, [0, 3])
    full_disk_on_call(2, monkeypatch)  # the write of the partial file
    with (
        pytest.warns(
            store.StoreWarning,
            match="the 2 runs finished in chunk 1 before the interrupt could not be kept",
        ),
        pytest.raises(cb.SweepInterrupted),
    ):
        store.run_sweep(spec, tmp_path, executor=executor)
    monkeypatch.undo()
    assert not store.partial_path(tmp_path, 1).exists()
    store.run_sweep(spec, tmp_path)
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)


@pytest.mark.parametrize("name", ["chunk-000002.parquet", "_partial-000002.parquet"])
def test_a_truncated_file_is_named_then_set_aside_on_resume(tmp_path, name):
    spec = small_spec()
    if name.startswith("_partial"):
        executor, _ = interrupted_at(2, [1, 2])
        with pytest.raises(cb.SweepInterrupted):
            store.run_sweep(spec, tmp_path, executor=executor)
    else:
        store.run_sweep(spec, tmp_path)
    path = tmp_path / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # as a power cut may leave it
    if name.startswith("chunk"):
        with pytest.raises(
            ValueError,
            match=rf"{name} is not a readable Parquet file .*run the "
            "sweep again to set it aside",
        ):
            store.load(tmp_path)
    with pytest.warns(store.StoreWarning, match=rf"{name} is not a readable Parquet file"):
        store.run_sweep(spec, tmp_path)
    aside = tmp_path / f"_corrupt-{name}"
    assert aside.read_bytes() == data[: len(data) // 2]  # renamed, not deleted
    pd.testing.assert_frame_equal(frame(store.load(tmp_path)), direct(spec), check_dtype=False)
    pd.testing.assert_frame_equal(frame(pd.read_parquet(tmp_path)), direct(spec), check_dtype=False)


def test_the_cli_reports_a_set_aside_file_in_one_line(tmp_path, capsys):
    spec = small_spec()
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(spec.to_toml())
    out = tmp_path / "out"
    store.run_sweep(spec, out)
    store.chunk_path(out, 4).write_bytes(b"PAR1")
    from critbatch.cli import main

    assert main(["sweep", str(spec_file), "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("critbatch: warning: ")
    assert "chunk-000004.parquet is not a readable Parquet file" in err[0]
    assert "set aside as _corrupt-chunk-000004.parquet" in err[0]


def test_a_finished_sweep_cleans_only_the_leftovers_of_its_own_chunks(tmp_path):
    spec = small_spec()
    store.run_sweep(spec, tmp_path)
    mine = [".claim-000004", ".chunk-000001.parquet.77.tmp", "_partial-000003.parquet"]
    # the files of chunks 5 and up belong to an extension that another process is running
    theirs = [".claim-000005", ".chunk-000006.parquet.78.tmp", "._partial-000005.parquet.78.tmp"]
    for name in mine + theirs:
        (tmp_path / name).write_bytes(b"")
    assert store.run_sweep(spec, tmp_path).ran_chunks == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name in mine + theirs) == sorted(theirs)


def test_a_sweep_imports_no_pandas(tmp_path):
    """pyarrow's numpy conversions import pandas (half a second); the store never needs it."""
    code = textwrap.dedent(f"""
        import sys
        from critbatch import spec as S, store, targets
        spec = S.sweep_spec(S.problem("nqm_power_law", dim=4), ["sgd"], [1, 2], [0.1], 3,
                            targets.target(max_steps=20), chunk_size=4, trajectory_every=5)
        store.run_sweep(spec, {str(tmp_path)!r})
        store.run_sweep(spec, {str(tmp_path)!r})  # the resume path too
        sys.exit("pandas" in sys.modules)
    """)
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    assert len(store.load(tmp_path)) == 6


def test_a_claim_excludes_other_open_files_chunk_by_chunk(tmp_path, claim_kind):
    ours, theirs = store._Claims(tmp_path), store._Claims(tmp_path)  # as two processes
    assert ours.try_claim(3)
    assert ours.try_claim(4)
    assert not theirs.try_claim(3)
    assert not theirs.try_claim(4)
    assert theirs.try_claim(5)
    assert not ours.try_claim(5)
    ours.release(3)
    assert theirs.try_claim(3)
    assert not theirs.try_claim(4)
    ours.release_all()
    assert theirs.try_claim(4)
    theirs.release_all()
    assert ours.try_claim(3)
    assert ours.try_claim(5)
    ours.release_all()
    assert sorted(p.name for p in tmp_path.iterdir()) == (
        [".claims"] if claim_kind else [".claim-000003", ".claim-000004", ".claim-000005"]
    )
