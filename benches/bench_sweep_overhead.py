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
from collections.abc import Callable
from typing import Any

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


def _timed(fn: Callable[[Any], object], arg: Any) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of ``fn(arg)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(arg)
    return time.perf_counter() - t0, time.process_time() - c0


def _timed_store(spec: S.SweepSpec, root: str) -> tuple[float, float]:
    """``_timed`` of the sweep alone, into a new directory under ``root`` (removed later).

    The directories are removed after the last round: ext4 (on the development machine) skips
    inodes freed in the last minutes when it allocates one, and with thousands of them the
    search made each file a sweep creates cost up to a millisecond of kernel time (``perf``:
    ``recently_deleted``), which measures the benchmark's own clean-up, not the sweep.
    """
    out = tempfile.mkdtemp(prefix="sweep-", dir=root)
    return _timed(lambda s: store.run_sweep(s, out), spec)


def _ratio(times: list[tuple[float, float]], core: list[tuple[float, float]], i: int) -> float:
    return statistics.median(t[i] / c[i] for t, c in zip(times, core, strict=True))


def main() -> None:
    """Print the median over interleaved rounds of store time / core time of the same round.

    Wall time, and CPU time of the whole process (the core's threads, the writer thread and
    Python), which other work on the machine disturbs less. ``CRITBATCH_BENCH_ROUNDS`` sets
    the number of rounds (7).
    """
    rounds = int(os.environ.get("CRITBATCH_BENCH_ROUNDS", "7"))
    plan = overhead_spec().to_plan()
    runs = len(plan)
    specs = {size: overhead_spec(size) for size in sorted({1000, 10000, runs})}
    run_core(plan)
    core: list[tuple[float, float]] = []
    store_times: dict[int, list[tuple[float, float]]] = {size: [] for size in specs}
    root = tempfile.mkdtemp(prefix="critbatch-bench-")
    try:
        _timed_store(specs[runs], root)  # first use of pyarrow's writer: not part of any round
        for _ in range(rounds):
            core.append(_timed(run_core, plan))
            for size, spec in specs.items():
                store_times[size].append(_timed_store(spec, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"{runs} runs (NQM d=4, 20 steps), median of {rounds} interleaved rounds, "
        f"{os.cpu_count()} CPUs"
    )
    wall, cpu = (statistics.median(c[i] for c in core) for i in (0, 1))
    print(f"  core alone (one execute call):        {wall:7.3f} s wall {cpu:7.3f} s CPU")
    for size, times in store_times.items():
        wall, cpu = (statistics.median(t[i] for t in times) for i in (0, 1))
        print(
            f"  spec -> Parquet store, chunk {size:>6}: {wall:7.3f} s wall {cpu:7.3f} s CPU   "
            f"ratio {_ratio(times, core, 0):5.2f} wall {_ratio(times, core, 1):5.2f} CPU"
        )


if __name__ == "__main__":
    main()
