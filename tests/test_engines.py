"""Engines: local and Ray run the same chunks to the same table."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import critbatch as cb
from critbatch import engines, store
from critbatch import spec as S
from tests.conftest import Err


def plan():
    return cb.make_plan(
        cb.problems.nqm_power_law(4),
        ["sgd", "heavy_ball"],
        [1, 8],
        [0.2, 0.4],
        3,
        cb.targets.target(loss_below=0.3, max_steps=200),
        seed=9,
    )


def collect(engine, **kwargs):
    p = plan()
    chunks = [(i, rows) for i, rows in enumerate(np.array_split(np.arange(len(p)), 4))]
    got = {}
    engines.run_chunks(p, chunks, lambda i, r: got.__setitem__(i, r), engine=engine, **kwargs)
    parts = [got[i] for i in sorted(got)]
    return cb.Results.concat(parts).to_pandas().drop(columns="wall_time")


def test_local_engine_equals_one_execute_call():
    whole = cb.execute(plan()).to_pandas().drop(columns="wall_time")
    pd.testing.assert_frame_equal(collect("local"), whole)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of 'local', 'ray', got 'spark'"):
        engines.run_chunks(plan(), [(0, np.arange(2))], lambda i, r: None, engine="spark")


@pytest.fixture(scope="module")
def local_ray():
    import ray  # make test installs the ray extra: a missing ray must fail, not skip

    src = str(Path(cb.__file__).parents[1])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": src}},
    )
    yield ray
    ray.shutdown()


def test_ray_engine_gives_the_local_table(local_ray):
    pd.testing.assert_frame_equal(collect("ray"), collect("local"))


def test_ray_sweep_store_equals_local_sweep_store(local_ray, tmp_path):
    spec = S.sweep_spec(
        S.problem("least_squares", n=64, d=4),
        ["sgd", "adam"],
        [2, 8],
        [0.05],
        2,
        cb.targets.target(loss_below=0.2, max_steps=300),
        chunk_size=3,
    )
    store.run_sweep(spec, tmp_path / "ray", engine="ray")
    store.run_sweep(spec, tmp_path / "local", engine="local")
    pd.testing.assert_frame_equal(
        store.load_frame(tmp_path / "ray").drop(columns="wall_time"),
        store.load_frame(tmp_path / "local").drop(columns="wall_time"),
    )
    assert local_ray.is_initialized()  # the engine leaves a Ray it did not start running


def test_a_ray_worker_killed_mid_chunk_is_retried(local_ray, tmp_path):
    marker = str(tmp_path / "killed")

    def dies_once(sub, **kwargs):
        import os

        res = cb.execute(sub, **kwargs)  # the chunk's runs are done, not yet returned
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return res
        os._exit(1)  # the first worker to get here dies as a killed one does

    assert not Path(marker).exists()
    pd.testing.assert_frame_equal(collect("ray", executor=dies_once), collect("local"))
    assert Path(marker).exists()


def test_the_local_engine_reports_every_run_and_hands_over_an_interrupted_chunk():
    p = plan()
    chunks = [(i, rows) for i, rows in enumerate(np.array_split(np.arange(len(p)), 3))]
    seen, done, kept = [], [], []

    def stops_in_chunk_1(sub, progress=None, **kwargs):
        res = cb.execute(sub, progress=progress, **kwargs)
        if res["run_index"][0] == chunks[1][1][0]:
            rows = np.array([0, 2])
            raise cb.SweepInterrupted(
                cb.Results.from_outcomes(
                    sub.subset(rows), {k: c[rows] for k, c in res.columns.items()}
                ),
                rows,
                len(sub),
            )
        return res

    with pytest.raises(cb.SweepInterrupted):
        engines.run_chunks(
            p,
            chunks,
            lambda i, r: done.append(i),
            executor=stops_in_chunk_1,
            on_interrupt=lambda i, r: kept.append((i, len(r))),
            progress=seen.append,
        )
    assert done == [0]
    assert kept == [(1, 2)]
    assert sum(seen) == 2 * len(chunks[0][1])  # chunk 0, and chunk 1 before the interrupt


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cpu", "cpu"),
        ("cuda", "cuda"),
        ("cuda:0", "cuda"),
        ("mps", "mps"),
        ("cuda:1", Err("device='cuda:1' names GPU 1, but under engine='ray' each task sees only")),
        ("cuda:12", Err("use device='cuda', or engine='local' to run on GPU 12")),
    ],
    ids=lambda x: x if isinstance(x, str) else "refused",
)
def test_a_ray_task_runs_on_the_gpu_ray_assigns_it(device, expected):
    if isinstance(expected, Err):
        with expected.raises():
            engines.ray_device(device)
    else:
        assert engines.ray_device(device) == expected


class Ref:
    """A fake Ray object reference: hashable, holding a finished task's value."""

    def __init__(self, value):
        self.value = value


class FakeRay:
    """Just enough of Ray to see what ``_run_ray`` asks of it (tasks run at once, in process)."""

    def __init__(self):
        self.options, self.devices = [], []

    def is_initialized(self):
        return True

    def remote(self, fn):
        fake = self

        class Task:
            def options(self, **kwargs):
                fake.options.append(kwargs)
                return self

            def remote(self, plan, rows, backend, device, threads, executor):
                fake.devices.append(device)
                return Ref(fn(plan, rows, backend, device, threads, executor))

        return Task()

    def put(self, value):
        return value

    def cluster_resources(self):
        return {"CPU": 1}

    def wait(self, refs, num_returns):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value


def test_a_torch_task_on_cuda_asks_ray_for_one_gpu_and_runs_on_it(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    p = plan()
    ran = []

    def executor(sub, **kwargs):
        ran.append(kwargs["device"])
        return cb.execute(sub, backend="rust")  # no GPU here: only the request is checked

    got = []
    engines.run_chunks(
        p,
        [(0, np.arange(2))],
        lambda i, r: got.append(len(r)),
        engine="ray",
        backend="torch",
        device="cuda:0",
        executor=executor,
    )
    assert (fake.options[0]["num_gpus"], fake.devices, ran, got) == (1, ["cuda"], ["cuda"], [2])
    with pytest.raises(ValueError, match="device='cuda:1' names GPU 1"):
        engines.run_chunks(
            p, [(0, np.arange(2))], print, engine="ray", backend="torch", device="cuda:1"
        )
    assert len(fake.options) == 1  # refused before any task was made


def test_a_rust_or_cpu_task_asks_ray_for_no_gpu(monkeypatch):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    for backend, device in (("rust", "cuda:1"), ("torch", "cpu")):
        engines.run_chunks(
            plan(),
            [(0, np.arange(2))],
            lambda i, r: None,
            engine="ray",
            backend=backend,
            device=device,
            executor=lambda sub, **kw: cb.execute(sub, backend="rust"),
        )
    assert [o["num_gpus"] for o in fake.options] == [0, 0]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([4, 5, 6], slice(4, 7)),
        ([0], slice(0, 1)),
        ([4, 6, 7], [4, 6, 7]),
        ([6, 5], [6, 5]),
        ([], []),
    ],
    ids=["a run of rows is a slice", "one row", "a gap", "descending", "none"],
)
def test_consecutive_rows_become_a_slice(rows, expected):
    got = engines._consecutive(np.asarray(rows, dtype=np.int64))
    if isinstance(expected, slice):
        assert got == expected
    else:
        np.testing.assert_array_equal(got, expected)
