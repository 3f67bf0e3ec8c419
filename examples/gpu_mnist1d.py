"""K(b), N(b) and the critical batch size of a 1-D CNN on MNIST-1D, per optimizer, on a GPU.

Usage::

    python examples/gpu_mnist1d.py [DEVICE] [--quick] [--out DIR]

The sweep is the spec ``examples/specs/mnist1d_cnn.toml`` (SGD, heavy-ball momentum and Adam over
batch sizes 8..512, seven learning rates, three seeds, to a training loss of 0.5), run the one
way every sweep runs: spec -> plan -> torch backend -> the Parquet store in ``DIR`` (resumable:
run the same command again after an interruption) -> fit. It is the same as::

    critbatch sweep examples/specs/mnist1d_cnn.toml -o DIR
    critbatch report DIR

``DEVICE`` is a torch device (default ``cuda`` when torch sees one, else ``cpu``). ``--quick``
sweeps a handful of runs with a loose target, to check the pipeline on a CPU in under a minute.

For each optimizer it prints K(b) (median steps at the best learning rate, the rule of
:func:`critbatch.tuning.best_learning_rate`), N(b) = b K(b), and the critical batch size of
McCandlish et al.'s law K(b) = S_min (1 + B_noise / b) fitted by :func:`critbatch.fit.fit`,
with its status and interval.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

import torch

from critbatch import spec as S
from critbatch import store
from critbatch.fit import fit
from critbatch.tuning import best_learning_rate

SPEC = Path(__file__).parent / "specs" / "mnist1d_cnn.toml"


def load(device: str, quick: bool) -> S.SweepSpec:
    """The example spec on ``device`` (``quick``: a few runs, a loose target)."""
    data = tomllib.loads(SPEC.read_text(encoding="utf-8"))
    data["device"] = device
    if quick:
        data.update(
            optimizers=["sgd", "adam"],
            batch_sizes=[16, 64, 256],
            learning_rates=[0.01, 0.3],
            seeds=2,
            chunk_size=12,
        )
        data["problem"]["data_kwargs"]["num_samples"] = 1000
        data["problem"]["model_kwargs"]["channels"] = 16
        data["target"].update(loss_below=1.2, max_steps=1500)
    return S.from_dict(data, file=f"{SPEC.name}{' (quick)' if quick else ''}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("device", nargs="?", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("mnist1d-out"))
    args = parser.parse_args(argv)
    spec = load(args.device, args.quick)
    hardware = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(
        f"device {args.device} ({hardware}), problem {spec.problem_names[0]}, target "
        f"{spec.target.name}, into {args.out}"
    )
    start = time.perf_counter()
    summary = store.run_sweep(spec, args.out, threads=1 if args.device == "cpu" else None)
    total = time.perf_counter() - start
    res = store.load(args.out)
    print(
        f"{len(res)} runs ({summary.skipped_chunks} chunks were already done) in "
        f"{total:.1f} s; {int(res['reached'].sum())} reached, "
        f"{int(res['diverged'].sum())} diverged\n"
    )
    table = best_learning_rate(res)
    for name, part in table.groupby("optimizer", sort=False):
        print(f"{name}:")
        print(f"  {'b':>5} {'lr':>8} {'K(b)':>8} {'N(b)':>9} {'all reached':>12}")
        for row in part.itertuples():
            edge = " (lr at grid edge)" if row.lr_at_edge else ""
            print(
                f"  {int(row.batch_size):>5} {row.learning_rate:>8.4g} {row.steps:>8.0f} "
                f"{row.sfo:>9.0f} {row.all_reached!s:>12}{edge}"
            )
    print()
    fits = fit(res, "mccandlish", n_boot=50 if args.quick else 500, by=["optimizer"])
    for (label,), result in fits.items():
        print(
            f"{label:>12}: critical batch size {result.critical_text()} ({result.status}; "
            f"{result.critical_definition}); censored runs {result.n_censored}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
