"""Overhead of the sweep layer (spec, chunking, Parquet store) over the core's own time.

The same grid of small runs (NQM d=4, exactly 20 steps each) is timed two ways:

* ``core``: one :func:`critbatch.execute` call on the whole plan (the core's own time);
* ``store``: :func:`critbatch.store.run_sweep` from a spec into a fresh directory (plan building,
  chunking, one ``execute`` per chunk, a Parquet file per chunk, the manifest).

Run as a script to print the ratio ``store / core`` (the median over interleaved rounds of
the ratio within a round); under ``pytest --benchmark-enable`` the two
cases form one benchmark group. Tiny sizes by default (2,000 runs); ``CRITBATCH_BENCH=full``
times 100,000 runs. No timing is asserted.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import pytest

import critbatch as cb
from critbatch import spec as S
from critbatch import store

FULL = os.environ.get("CRITBATCH_BENCH") == "full"
SEEDS = 1000 if FULL else 20  # runs = 10 batch sizes x 10 learning rates x SEEDS


def overhead_spec(chunk_size: int = 1000) -> S.SweepSpec:
    return S.sweep_spec(
        S.problem("nqm_power_law", dim=4),
        "sgd",
        [1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
        [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        SEEDS,
        cb.targets.target(max_steps=20),
        chunk_size=chunk_size,
    )


def run_core(plan: cb.Plan) -> None:
    cb.execute(plan)


def run_store(spec: S.SweepSpec) -> None:
    out = tempfile.mkdtemp(prefix="critbatch-bench-")
    try:
        store.run_sweep(spec, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.benchmark(group="sweep-overhead")
def test_sweep_overhead_core(benchmark):
    plan = overhead_spec().to_plan()
    benchmark(run_core, plan)


@pytest.mark.benchmark(group="sweep-overhead")
def test_sweep_overhead_store(benchmark):
    benchmark(run_store, overhead_spec())


def _timed(fn, arg) -> float:
    t0 = time.perf_counter()
    fn(arg)
    return time.perf_counter() - t0


def main() -> None:
    """Print the median over interleaved rounds of store time / core time of the same round."""
    rounds = 7
    plan = overhead_spec().to_plan()
    runs = len(plan)
    specs = {size: overhead_spec(size) for size in (1000, 10000)}
    run_core(plan)
    core: list[float] = []
    store_times: dict[int, list[float]] = {size: [] for size in specs}
    for _ in range(rounds):
        core.append(_timed(run_core, plan))
        for size, spec in specs.items():
            store_times[size].append(_timed(run_store, spec))
    print(
        f"{runs} runs (NQM d=4, 20 steps), median of {rounds} interleaved rounds, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"  core alone (one execute call):       {statistics.median(core):8.3f} s")
    for size, times in store_times.items():
        ratio = statistics.median(t / c for t, c in zip(times, core, strict=True))
        print(
            f"  spec -> Parquet store, chunk {size:>5}: {statistics.median(times):8.3f} s   "
            f"ratio {ratio:5.2f}"
        )


if __name__ == "__main__":
    main()
