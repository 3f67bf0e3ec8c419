"""``make gpu-check`` on the CPU (reduced): every check runs and the JSON holds its figures."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("critbatch._core", reason="the Rust core is not built")

from critbatch.torch import gpucheck


def test_gpu_check_runs_reduced_on_the_cpu_and_writes_its_figures(tmp_path, torch_one_thread):
    out = tmp_path / "gpu-check.json"
    assert gpucheck.main(["--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert report["reduced"]
    assert [c["problem"] for c in report["crosscheck"]] == ["nqm", "least_squares"]
    assert all(c["agree"] for c in report["crosscheck"])
    assert [n["spec"] for n in report["networks"]] == ["digits_mlp.toml", "mnist1d_cnn.toml"]
    for sweep in report["networks"]:
        assert sweep["runs"] > 0
        assert sweep["seconds"] > 0
        assert set(sweep["critical_batch_size"]) == {"sgd", "adam"}
    for case in report["throughput"]:
        assert case["torch_runs_steps_per_s"] > 0
        assert case["rust_2_threads_runs_steps_per_s"] > 0
