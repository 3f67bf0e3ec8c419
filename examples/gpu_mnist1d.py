"""K(b), N(b) and the critical batch size of a 1-D CNN on MNIST-1D, per optimizer.

Usage::

    python examples/gpu_mnist1d.py [DEVICE] [--quick]

``DEVICE`` is a torch device (default ``cuda`` when torch sees one, else ``cpu``). The full run
sweeps SGD, heavy-ball momentum and Adam over batch sizes 8..512, five learning rates each and
three seeds (315 runs to a training loss of 0.5, at most 3,000 steps each); ``--quick`` sweeps
a handful of runs with a loose target, to check the pipeline on a CPU in about a minute.

For each optimizer it prints K(b) (median steps at the best learning rate, the rule of
:func:`critbatch.tuning.best_learning_rate`), N(b) = b K(b), the median seconds per run, and the
critical batch size of McCandlish et al.'s law K(b) = S_min (1 + B_noise / b) fitted by
:func:`critbatch.fit.fit` with its status and interval.
"""

from __future__ import annotations

import sys
import time

import torch

from critbatch.fit import fit
from critbatch.torch.train import batch_size_sweep, network_problem, network_target


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    args = [a for a in argv if a != "--quick"]
    device = args[0] if args else ("cuda" if torch.cuda.is_available() else "cpu")
    threads = 1 if device == "cpu" else None  # small models: one CPU thread avoids contention
    if quick:
        problem = network_problem("cnn1d", "mnist1d", model_kwargs={"channels": 16},
                                  dataset_kwargs={"num_samples": 1000})
        optimizers = ["sgd", "adam"]
        batch_sizes = [16, 64, 256]
        learning_rates = {"sgd": [0.3, 1.0], "adam": [3e-3, 1e-2]}
        seeds = 2
        target = network_target(loss_below=1.2, check_every=10, max_steps=1500)
        n_boot = 50
    else:
        problem = network_problem("cnn1d", "mnist1d")
        optimizers = ["sgd", "heavy_ball", "adam"]
        batch_sizes = [8, 16, 32, 64, 128, 256, 512]
        learning_rates = None  # critbatch.torch.train.DEFAULT_LEARNING_RATES
        seeds = 3
        target = network_target(loss_below=0.5, check_every=10, max_steps=3000)
        n_boot = 500
    hardware = torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
    print(f"device {device} ({hardware}), problem {problem.name} ({problem.n_samples} "
          f"training examples), target {target.name}")
    start = time.perf_counter()
    out = batch_size_sweep(problem, optimizers, batch_sizes, learning_rates, seeds, target,
                           device=device, threads=threads)
    total = time.perf_counter() - start
    res = out.results
    print(f"{len(res)} runs in {total:.1f} s ({total / len(res):.2f} s per run); "
          f"{int(res['reached'].sum())} reached, {int(res['diverged'].sum())} diverged\n")
    table = out.table
    for name, part in table.groupby("optimizer", sort=False):
        print(f"{name}:")
        print(f"  {'b':>5} {'lr':>8} {'K(b)':>8} {'N(b)':>9} {'s/run':>7} {'all reached':>12}")
        for row in part.itertuples():
            edge = " (lr at grid edge)" if row.lr_at_edge else ""
            print(f"  {int(row.batch_size):>5} {row.learning_rate:>8.4g} {row.steps:>8.0f} "
                  f"{row.sfo:>9.0f} {row.wall_time:>7.2f} {row.all_reached!s:>12}{edge}")
    print()
    fits = fit(res, "mccandlish", n_boot=n_boot, by=["optimizer"])
    for (label,), result in fits.items():
        print(f"{label:>12}: critical batch size {result.critical_text()} ({result.status}; "
              f"{result.critical_batch_definition}); censored runs {result.n_censored}")


if __name__ == "__main__":
    main(sys.argv[1:])
