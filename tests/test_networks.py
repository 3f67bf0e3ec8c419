"""Real-network sweeps take the one road: TOML spec -> plan -> torch -> store -> fit -> report.

Each test runs a small network sweep the way a user would (a spec file, the store, an engine,
the report) and checks it against the same sweep run another way: uninterrupted, on the other
engine, or in one ``execute`` call. Tables are compared without ``wall_time``; every run uses one
torch thread, so the arithmetic is the same in every process.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import critbatch as cb  # noqa: E402
from critbatch import spec as S  # noqa: E402
from critbatch import store  # noqa: E402
from critbatch.report import write_report  # noqa: E402
from tests.test_spec_keys import BASE as SYNTHETIC  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "examples" / "specs"

pytestmark = pytest.mark.usefixtures("torch_one_thread")

DIGITS = textwrap.dedent("""\
    name = "digits-small"
    backend = "torch"
    optimizers = ["sgd", "adam"]
    batch_sizes = [16, 64]
    learning_rates = [0.03, 0.5]
    seeds = 2
    chunk_size = 3

    [problem]
    kind = "network"
    model = "{model}"
    model_kwargs = {{hidden = [8]}}
    data = "digits"
    validation = 0.1

    [target]
    loss_below = 0.6
    accuracy_above = 0.9
    check_every = 5
    max_steps = 300
""")


def frame(df):
    return df.drop(columns="wall_time").reset_index(drop=True)


def direct(spec):
    return frame(cb.execute(spec.to_plan(), backend="torch", threads=1).to_pandas())


def env_with(*paths):
    parts = [str(p) for p in paths] + [str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def test_a_network_spec_round_trips_through_toml():
    spec = S.loads(DIGITS.format(model="mlp"), file="digits.toml")
    assert spec.problems[0].kind == "network"
    assert spec.problem_names == ("mlp/digits",)
    assert S.loads(spec.to_toml()) == spec
    assert spec.target.accuracy_above == 0.9
    assert len(spec.to_plan()) == 16


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import critbatch as cb
    from critbatch import spec as S, store

    def slow(plan, **kwargs):
        time.sleep(0.3)
        return cb.execute(plan, **kwargs)

    store.run_sweep(S.load_spec(sys.argv[1]), sys.argv[2], threads=1, executor=slow)
""")


def test_a_network_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_rows(tmp_path):
    spec_file = tmp_path / "digits.toml"
    spec_file.write_text(DIGITS.format(model="mlp"))
    spec = S.load_spec(spec_file)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(spec_file), str(out)], env=env_with()
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "chunk-000001.parquet").exists():
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no chunk appeared within 120 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done, total = store.progress_counts(out)
    assert 2 <= done < total == 6
    resumed = store.run_sweep(spec, out, threads=1)
    assert resumed.skipped_chunks == done
    got = frame(store.load_frame(out))
    pd.testing.assert_frame_equal(got, direct(spec), check_dtype=False)
    assert {"final_accuracy", "test_accuracy", "noise_scale"} <= set(got.columns)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT / "python")}},
    )
    yield ray
    ray.shutdown()


def test_ray_and_local_engines_store_the_same_network_table(local_ray, tmp_path):
    spec = S.loads(DIGITS.format(model="mlp"))
    store.run_sweep(spec, tmp_path / "ray", engine="ray", threads=1)
    store.run_sweep(spec, tmp_path / "local", engine="local", threads=1)
    pd.testing.assert_frame_equal(
        frame(store.load_frame(tmp_path / "ray")), frame(store.load_frame(tmp_path / "local"))
    )


USER_MODULE = textwrap.dedent('''
    """A model and a data set that live outside critbatch, named by import reference."""
    import numpy as np
    import torch


    def two_layer(width=8, classes=3):
        return torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(),
                                   torch.nn.Linear(width, classes))


    def blobs(n=300, seed=0):
        rng = np.random.default_rng(seed)
        centres = np.array([[0.0, 1.5], [1.5, -0.75], [-1.5, -0.75]])
        y = rng.integers(0, 3, n)
        x = centres[y] + rng.normal(size=(n, 2))
        return {"x_train": x[:240], "y_train": y[:240], "x_test": torch.tensor(x[240:]),
                "y_test": y[240:]}
''')


def test_a_model_from_a_file_outside_the_package_sweeps_stores_resumes_and_reports(
    tmp_path, monkeypatch
):
    (tmp_path / "my_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text(
        textwrap.dedent("""\
        name = "user-model"
        backend = "torch"
        optimizers = ["sgd", "adam"]
        batch_sizes = [2, 8, 32, 128]
        learning_rates = [0.1, 1.0]
        seeds = 2
        chunk_size = 4

        [problem]
        kind = "network"
        model = "my_nets:two_layer"
        model_kwargs = {width = 8}
        data = "my_nets:blobs"
        data_kwargs = {n = 300, seed = 1}

        [target]
        loss_below = 0.4
        check_every = 2
        max_steps = 600
    """)
    )
    spec = S.load_spec(spec_file)
    assert spec.problem_names == ("my_nets:two_layer/my_nets:blobs",)
    out = tmp_path / "out"
    calls = []

    def interrupted(plan, **kwargs):
        calls.append(len(plan))
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return cb.execute(plan, **kwargs)

    with pytest.raises(RuntimeError, match="worker lost"):
        store.run_sweep(spec, out, threads=1, executor=interrupted)
    assert store.progress_counts(out) == (2, 8)
    resumed = store.run_sweep(spec, out, threads=1)
    assert (resumed.ran_chunks, resumed.skipped_chunks) == (6, 2)
    results = store.load(out)
    pd.testing.assert_frame_equal(frame(results.to_pandas()), direct(spec), check_dtype=False)
    assert results["reached"].mean() > 0.5
    report = write_report(out, tmp_path / "report.md", n_boot=20)
    text = report.read_text()
    assert "my_nets:two_layer/my_nets:blobs (network)" in text
    assert "| b | adam | sgd |" in text


def small_digits_spec():
    data = tomllib.loads((SPECS / "digits_mlp.toml").read_text())
    data.update(batch_sizes=[16, 64, 256], learning_rates=[0.03, 0.3, 1.0], seeds=2, chunk_size=18)
    data["target"]["max_steps"] = 600
    return S.from_dict(data, file="digits_mlp.toml (reduced)")


def _check_digits_report(text):
    kb = text.split("## Steps to target at the best learning rate")[1].split("## Critical")[0]
    assert "| b | adam | sgd |" in kb
    rows = [line for line in kb.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) >= 3
    crit = text.split("## Critical batch size")[1].split("\n## ")[0]
    for optimizer in ("adam", "sgd"):
        line = next(row for row in crit.splitlines() if f"| {optimizer} |" in row)
        status = line.split("|")[4].strip()
        assert status in ("identified", "above_grid", "below_grid", "not_identified", "poor_fit"), (
            line
        )
        assert line.split("|")[5].strip()  # b* (or its bound) is printed


def test_the_digits_spec_report_shows_k_of_b_and_b_star_for_sgd_and_adam(tmp_path):
    spec = small_digits_spec()
    assert [o.name for o in spec.optimizers] == ["sgd", "adam"]
    store.run_sweep(spec, tmp_path / "out", threads=1)
    report = write_report(tmp_path / "out", tmp_path / "report.md", n_boot=20)
    _check_digits_report(report.read_text())


@pytest.mark.slow
def test_the_full_digits_spec_runs_from_the_command_line(tmp_path):
    from critbatch.cli import main

    out = tmp_path / "out"
    assert main(["sweep", str(SPECS / "digits_mlp.toml"), "-o", str(out), "-q"]) == 0
    assert main(["report", str(out), "-o", str(tmp_path / "report.md")]) == 0
    _check_digits_report((tmp_path / "report.md").read_text())


@pytest.mark.parametrize("name", ["digits_mlp.toml", "mnist1d_cnn.toml"])
def test_example_network_specs_validate(name):
    spec = S.load_spec(SPECS / name)
    assert spec.backend == "torch"
    assert spec.problems[0].kind == "network"


def test_the_cifar_spec_names_its_missing_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its data path is relative and absent here
    with pytest.raises(S.SpecError, match="data_kwargs: root: no CIFAR-10 file 'data_batch_1'"):
        S.load_spec(SPECS / "cifar10_resnet.toml")


@pytest.mark.slow
def test_the_gpu_example_runs_quickly_on_the_cpu(tmp_path, capsys):
    import importlib.util

    path = ROOT / "examples" / "gpu_mnist1d.py"
    module_spec = importlib.util.spec_from_file_location("gpu_mnist1d", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    module.main(["cpu", "--quick", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "24 runs" in printed
    assert printed.count("critical batch size") == 2


def test_a_network_is_checked_every_10_steps_unless_the_target_says_otherwise():
    net = DIGITS.format(model="mlp").replace("check_every = 5\n", "")
    spec = S.loads(net)
    assert spec.target.check_every == cb.targets.NETWORK_CHECK_EVERY == 10
    assert S.loads(spec.to_toml()) == spec  # the default is written out
    assert S.loads(DIGITS.format(model="mlp")).target.check_every == 5  # as given
    res = direct(spec)
    stopped = res[res["stop_reason"] != "budget"]
    assert len(stopped) > 0
    assert (stopped["steps"] % 10 == 0).all()
    # the Python route fixes the same default when the plan is made
    assert cb.targets.target().check_every is None
    plan = cb.make_plan(spec.problems[0].build(), "sgd", [8], [0.1], 1, cb.targets.target())
    assert plan.target.check_every == 10


def test_a_synthetic_problem_is_still_checked_every_step_and_keeps_its_hash():
    spec = S.loads(SYNTHETIC)  # an NQM spec whose [target] comes last and sets no check_every
    assert spec.target.check_every == 1
    explicit = S.loads(SYNTHETIC + "check_every = 1\n")
    assert explicit == spec
    assert explicit.hash() == spec.hash()
    plan = cb.make_plan(cb.problems.nqm_power_law(4), "sgd", [1], [0.1], 1, cb.targets.target())
    assert plan.target.check_every == 1


def test_lars_and_lamb_take_a_networks_parameter_tensors_as_their_layers():
    from critbatch.optimizers import declared_layers, layers_for
    from critbatch.torch import networks

    net = cb.problems.network("mlp", "digits", model_kwargs={"hidden": (8,)})
    module = networks.init(net.model, net.model_kwargs, 0)
    sizes = tuple(int(p.numel()) for p in module.parameters())
    assert declared_layers(net) == sizes == (64 * 8, 8, 8 * 10, 10)
    assert net.dim == sum(sizes)
    assert layers_for(cb.optimizers.lamb(), net) == sizes
    assert layers_for(cb.optimizers.lars(layers=[net.dim]), net) == (net.dim,)  # the user's own
    res = cb.sweep(
        net,
        [cb.optimizers.lars(), cb.optimizers.lamb()],
        [32],
        [0.05],
        1,
        cb.targets.target(max_steps=20),
        backend="torch",
    )
    assert res.to_pandas()["final_loss"].map(math.isfinite).all()
