"""``make gpu-check``: confirm the Rust core's results on a GPU, and time the GPU, in one command.

Three checks, one JSON file of figures (``--out``, default ``gpu-check.json``):

1. **Crosscheck.** The noisy quadratic model and least squares run on the Rust core and on torch
   on the device from one plan; per batch size, each backend's median steps to target with a
   bootstrap interval (:func:`critbatch.crosscheck.crosscheck`) and a two-sample
   Kolmogorov-Smirnov p-value of the steps. Backends that agree have overlapping intervals.
2. **Real networks.** The example specs ``examples/specs/digits_mlp.toml`` and
   ``mnist1d_cnn.toml`` run on the device through the store (:func:`critbatch.store.run_sweep`)
   and the fit (:func:`critbatch.fit.fit`): runs, wall time, share reached, and b* with its status
   per optimizer.
3. **Throughput.** Batched synthetic runs (NQM, least squares; a fixed step budget) on torch on
   the device against the Rust core on 2 threads: runs x steps per second and their ratio.

On a GPU the full check takes a few minutes (sized for under 8). ``--device cpu`` runs the same
checks at reduced sizes (seconds), which is how the test suite exercises this module.

Usage::

    python -m critbatch.torch.gpucheck [--device cuda] [--out gpu-check.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "run"]

SPECS = Path(__file__).resolve().parents[3] / "examples" / "specs"


def _sizes(device: str) -> dict[str, Any]:
    """Run counts and grids: full on a GPU, reduced on a CPU."""
    if device.startswith("cuda"):
        return {
            "reduced": False,
            "seeds": 200,
            "n_boot": 500,
            "torch_runs": 16384,
            "rust_runs": 4096,
            "steps": 300,
            "digits": {},
            "mnist1d": {"learning_rates": [0.003, 0.01, 0.03, 0.1, 0.3], "seeds": 2},
        }
    return {
        "reduced": True,
        "seeds": 30,
        "n_boot": 100,
        "torch_runs": 512,
        "rust_runs": 512,
        "steps": 100,
        "digits": {
            "batch_sizes": [16, 64, 256],
            "learning_rates": [0.03, 0.3],
            "seeds": 1,
            "max_steps": 300,
        },
        "mnist1d": {
            "optimizers": ["sgd", "adam"],
            "batch_sizes": [16, 128],
            "learning_rates": [0.01, 0.1],
            "seeds": 1,
            "max_steps": 200,
            "num_samples": 1000,
            "channels": 8,
            "loss_below": 1.8,
        },
    }


def _crosscheck(device: str, sizes: dict[str, Any]) -> list[dict[str, Any]]:
    from scipy import stats

    import critbatch as cb
    from critbatch.crosscheck import crosscheck

    cells = [
        (
            "nqm",
            cb.problems.nqm_power_law(20, s=1.0),
            "sgd",
            [1, 4, 16, 64],
            0.5,
            cb.targets.target(loss_below=0.05, max_steps=3000),
        ),
        (
            "least_squares",
            cb.problems.make_least_squares(128, 6, seed=1),
            "sgd",
            [2, 8, 32],
            0.05,
            cb.targets.target(loss_below=0.1332, max_steps=3000),
        ),
    ]
    out = []
    for name, problem, optimizer, batch_sizes, lr, target in cells:
        plan = cb.make_plan(problem, optimizer, batch_sizes, [lr], sizes["seeds"], target, seed=5)
        t0 = time.perf_counter()
        check = crosscheck(plan, device=device, n_boot=sizes["n_boot"], verbose=False)
        rust, torch_res = check.results["rust"], check.results["torch"]
        rows: list[dict[str, Any]] = []
        for b in batch_sizes:
            a, c = rust["batch_size"] == b, torch_res["batch_size"] == b
            row = check.table[check.table["batch_size"] == b].iloc[0]
            rows.append(
                {
                    "batch_size": b,
                    "rust_K": float(row["rust_K"]),
                    "torch_K": float(row["torch_K"]),
                    "rust_K_interval": [float(row["rust_K_low"]), float(row["rust_K_high"])],
                    "torch_K_interval": [float(row["torch_K_low"]), float(row["torch_K_high"])],
                    "ks_pvalue": float(
                        stats.ks_2samp(
                            rust["steps"][a], torch_res["steps"][c], method="asymp"
                        ).pvalue
                    ),
                    "overlap": bool(
                        row["rust_K_low"] <= row["torch_K_high"]
                        and row["torch_K_low"] <= row["rust_K_high"]
                    ),
                }
            )
        out.append(
            {
                "problem": name,
                "optimizer": optimizer,
                "runs": 2 * len(plan),
                "agree": all(r["overlap"] for r in rows),
                "min_ks_pvalue": min(r["ks_pvalue"] for r in rows),
                "seconds": time.perf_counter() - t0,
                "batch_sizes": rows,
            }
        )
        print(
            f"crosscheck {name}: intervals overlap at every b: {out[-1]['agree']} "
            f"(min KS p {out[-1]['min_ks_pvalue']:.3g}, {out[-1]['seconds']:.1f} s)"
        )
    return out


def _network_spec(file: str, device: str, changes: dict[str, Any]) -> Any:
    from critbatch import spec as S

    path = SPECS / file
    if not path.is_file():
        raise ValueError(f"gpu-check reads {path}: run it from a critbatch checkout")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["device"] = device
    data.pop("chunk_size", None)
    for key in ("optimizers", "batch_sizes", "learning_rates", "seeds"):
        if key in changes:
            data[key] = changes[key]
    for key in ("max_steps", "loss_below"):
        if key in changes:
            data["target"][key] = changes[key]
    if "num_samples" in changes:
        data["problem"].setdefault("data_kwargs", {})["num_samples"] = changes["num_samples"]
    if "channels" in changes:
        data["problem"].setdefault("model_kwargs", {})["channels"] = changes["channels"]
    return S.from_dict(data, file=f"{file} ({device})")


def _networks(device: str, sizes: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    from critbatch import store
    from critbatch.fit import fit

    out = []
    for file, key in (("digits_mlp.toml", "digits"), ("mnist1d_cnn.toml", "mnist1d")):
        spec = _network_spec(file, device, sizes[key])
        directory = workdir / key
        t0 = time.perf_counter()
        summary = store.run_sweep(spec, directory)
        seconds = time.perf_counter() - t0
        results = store.load(directory)
        fits = fit(results, n_boot=0, cache=False)
        critical = {
            "/".join(group[1:2]): {
                "status": r.status,
                "b_star": _finite(r.estimate),
                "text": r.critical_text(),
            }
            for group, r in fits.items()
        }
        out.append(
            {
                "spec": file,
                "runs": summary.n_runs,
                "seconds": seconds,
                "runs_per_second": summary.n_runs / seconds,
                "reached": float(np.mean(results["reached"])),
                "critical_batch_size": critical,
            }
        )
        print(
            f"sweep {file}: {summary.n_runs} runs in {seconds:.1f} s, "
            f"{out[-1]['reached']:.0%} reached; b* "
            + ", ".join(f"{k} {v['text']} ({v['status']})" for k, v in critical.items())
        )
    return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _throughput(device: str, sizes: dict[str, Any]) -> list[dict[str, Any]]:
    import critbatch as cb
    from critbatch.torch.runner import run_plan

    steps = sizes["steps"]
    target = cb.targets.target(check_every=10, max_steps=steps)
    cases = [
        ("nqm d=100, sgd, b=8", cb.problems.nqm_power_law(100), 8),
        (
            "least squares n=1024 d=32, sgd, b=32",
            cb.problems.make_least_squares(1024, 32, seed=0),
            32,
        ),
    ]
    out = []
    for name, problem, b in cases:
        rates = {}
        for backend, runs in (("torch", sizes["torch_runs"]), ("rust", sizes["rust_runs"])):
            plan = cb.make_plan(problem, "sgd", [b], [0.01], runs, target)
            if backend == "torch":
                run_plan(plan.subset(slice(0, min(runs, 64))), device=device)  # warm-up
                _sync(device)
                t0 = time.perf_counter()
                run_plan(plan, device=device)
                _sync(device)
            else:
                t0 = time.perf_counter()
                cb.execute(plan, backend="rust", threads=2)
            rates[backend] = runs * steps / (time.perf_counter() - t0)
        out.append(
            {
                "case": name,
                "steps": steps,
                "torch_runs": sizes["torch_runs"],
                "torch_runs_steps_per_s": rates["torch"],
                "rust_2_threads_runs_steps_per_s": rates["rust"],
                "torch_over_rust": rates["torch"] / rates["rust"],
            }
        )
        print(
            f"throughput {name}: torch {rates['torch']:.3g}, rust (2 threads) "
            f"{rates['rust']:.3g} runs x steps / s ({out[-1]['torch_over_rust']:.2f}x)"
        )
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(device: str, out: str | Path) -> dict[str, Any]:
    """Run the three checks on ``device`` and write their figures to the JSON file ``out``.

    Returns:
        The figures (the JSON file's content).

    """
    import torch

    import critbatch as cb
    from critbatch.torch.runner import _device

    dev = _device(device)
    sizes = _sizes(str(dev))
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "device": str(dev),
        "hardware": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "critbatch": cb.__version__,
        "reduced": sizes["reduced"],
    }
    with tempfile.TemporaryDirectory(prefix="critbatch-gpu-check-") as tmp:
        report["crosscheck"] = _crosscheck(str(dev), sizes)
        report["networks"] = _networks(str(dev), sizes, Path(tmp))
        report["throughput"] = _throughput(str(dev), sizes)
    report["seconds"] = time.perf_counter() - t0
    Path(out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"gpu-check: {report['seconds']:.0f} s; figures in {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns 0 when the backends agree, 1 when a crosscheck disagrees."""
    parser = argparse.ArgumentParser(
        prog="python -m critbatch.torch.gpucheck", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when torch sees one, else cpu)"
    )
    parser.add_argument("--out", default="gpu-check.json", help="the JSON file of figures")
    args = parser.parse_args(argv)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    report = run(device, args.out)
    return 0 if all(c["agree"] for c in report["crosscheck"]) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
