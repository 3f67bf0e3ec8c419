"""How the Rust core's cost scales with dimension, runs, steps and threads; print Markdown tables.

Usage (from the repository root)::

    CRITBATCH_BENCH=full python benches/bench_scaling.py [--repeats 5] [--seconds 0.25]

Every cell calls the public API (:func:`critbatch.make_plan` then :func:`critbatch.execute`, or
:func:`critbatch.sweep` end to end) on one thread unless stated, with SGD on the workloads of
``benches.peers`` (the NQM with :math:`h_i = c_i = 1/i`, b=4, lr 0.5; least squares on
``lsq_data``, b=64, lr 1, with replacement). Every run takes exactly its steps: the target has no
criterion (the loss checked only at the last step), or ``loss_below=-1`` with ``check_every=1``
(checked at every step, never met). Every call's ``steps`` column is checked after its timing,
so a cell cannot silently measure runs that stopped early. The tables:

1. NQM, float64 and float32, against the dimension at fixed steps, the loss checked at the end
   or at every step: ns per coordinate-step (µs per run).
2. NQM d=4, 20 steps, against the number of runs: µs per run of ``cb.sweep`` end to end (plan
   building and result conversion included) and of ``execute`` on a plan built beforehand.
3. NQM d=100 against the steps: the share of a run that its setup takes (the time of a 1-step
   run less one step at the per-step cost of the longest runs).
4. 1 thread against 2, the README's NQM and least-squares workloads (whole calls).
5. Least squares against d: the marginal cost of a run-step, from two calls that differ only in
   the steps (so the per-call and per-run setup and the full-data losses cancel), beside the
   design's bytes and the cache sizes of CPU 0.

Timing: per cell one warm-up call and one calibration call, which sets how many calls one timing
makes (at least ``--seconds`` of work); then ``--repeats`` rounds time every cell of a table once,
in turn (``time.perf_counter``), so drift and other load hit all cells of a table alike. A cost is
the cell's fastest round (the least disturbed) per unit of work; a speed-up is the median over
rounds of the ratio within a round. Without ``CRITBATCH_BENCH=full`` the sizes are tiny and the
numbers mean nothing; pytest runs ``test_scaling_tables_smoke`` at those sizes. No timing is
asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if __name__ == "__main__":  # a script: the repository root makes ``benches.peers`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import critbatch as cb
from benches.peers import (
    LsqWorkload,
    NqmWorkload,
    full_size,
    lsq_data,
    lsq_workload,
    nqm_spectrum,
    nqm_workload,
)

FULL = full_size()
NQM_B, NQM_LR = 4, 0.5
LSQ_LR = 1.0


@dataclass(frozen=True)
class Sizes:
    """The axes of the five tables and the work of one call in each."""

    dims: tuple[int, ...]  # table 1: NQM dimensions
    dim_steps: int
    dim_work: int  # coordinate-steps per call: runs = dim_work // (dim_steps * d), at least 1
    runs_axis: tuple[int, ...]  # table 2
    runs_dim: int
    runs_steps: int
    steps_axis: tuple[int, ...]  # table 3: 1 step (the setup) first, the per-step cost last
    steps_dim: int
    steps_work: int
    max_runs: int  # table 3: at most this many runs in a call
    lsq_n: int  # table 5
    lsq_dims: tuple[int, ...]
    lsq_b: int
    lsq_steps: tuple[int, int]  # (short, long): their difference gives the marginal run-step
    lsq_work: int  # runs = lsq_work // (long steps * d), at least 2
    nqm_threads: NqmWorkload  # table 4
    lsq_threads: LsqWorkload


FULL_SIZES = Sizes(
    dims=(4, 16, 100, 1000, 10000),
    dim_steps=1000,
    dim_work=10**8,
    runs_axis=(100, 1000, 10_000, 100_000),
    runs_dim=4,
    runs_steps=20,
    steps_axis=(1, 20, 100, 1000, 10_000),
    steps_dim=100,
    steps_work=10**8,
    max_runs=100_000,
    lsq_n=4096,
    lsq_dims=(16, 64, 256, 1024),
    lsq_b=64,
    lsq_steps=(30, 300),
    lsq_work=64 * 300 * 256,
    nqm_threads=nqm_workload(full=True),
    lsq_threads=lsq_workload(full=True),
)
TINY_SIZES = Sizes(
    dims=(4, 16),
    dim_steps=4,
    dim_work=400,
    runs_axis=(2, 8),
    runs_dim=4,
    runs_steps=3,
    steps_axis=(1, 6),
    steps_dim=4,
    steps_work=48,
    max_runs=8,
    lsq_n=64,
    lsq_dims=(2, 4),
    lsq_b=8,
    lsq_steps=(2, 5),
    lsq_work=40,
    nqm_threads=NqmWorkload(dim=8, runs=4, steps=5),
    lsq_threads=LsqWorkload(n=64, dim=4, runs=4, steps=5, b=8),
)


@dataclass
class Cell:
    """One measured case: ``call`` makes one public-API call of ``runs`` runs of ``steps`` steps.

    ``units`` is the work of one call in the table's unit (coordinate-steps, runs, run-steps).
    """

    call: Callable[[], cb.Results]
    runs: int
    steps: int
    units: int
    calls: int = 1
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    checked_runs: int = 0

    def check(self, res: cb.Results) -> None:
        """Raise unless ``res`` holds ``runs`` runs that each took exactly ``steps`` steps."""
        steps = np.asarray(res["steps"])
        if steps.shape != (self.runs,) or not np.all(steps == self.steps):
            raise RuntimeError(
                f"every one of {self.runs} runs must take exactly {self.steps} steps, got "
                f"{steps.size} runs with steps {np.unique(steps).tolist()}"
            )
        self.checked_runs += steps.size

    def calibrate(self, seconds: float) -> None:
        """One warm-up call, then one timed call that sets ``calls`` (``seconds`` of work).

        ``seconds=0`` (the smoke test) skips the timed call: one call per timing.
        """
        self.check(self.call())
        if seconds > 0:
            t0 = time.perf_counter()
            self.check(self.call())
            self.calls = max(1, math.ceil(seconds / (time.perf_counter() - t0)))

    def time_round(self) -> None:
        """Time ``calls`` calls; check their results after the clock stops."""
        c0, t0 = time.process_time(), time.perf_counter()
        results = [self.call() for _ in range(self.calls)]
        self.walls.append(time.perf_counter() - t0)
        self.cpus.append(time.process_time() - c0)
        for res in results:
            self.check(res)

    def per_call(self) -> float:
        """Seconds of one call in the fastest round."""
        return min(self.walls) / self.calls

    def per_unit(self) -> float:
        """Seconds per unit of work in the fastest round."""
        return self.per_call() / self.units

    def cpu_per_wall(self) -> float:
        """Process CPU time over wall time, all rounds together (threads really used)."""
        return sum(self.cpus) / sum(self.walls)


def measure(cells: Sequence[Cell], repeats: int, seconds: float) -> None:
    """Calibrate every cell, then time them in turn for ``repeats`` rounds."""
    for cell in cells:
        cell.calibrate(seconds)
    for _ in range(repeats):
        for cell in cells:
            cell.time_round()


def speedup(slow: Cell, fast: Cell) -> float:
    """Median over rounds of ``slow``'s time over ``fast``'s time in the same round."""
    return statistics.median(
        (s / slow.calls) / (f / fast.calls) for s, f in zip(slow.walls, fast.walls, strict=True)
    )


def exact_target(steps: int, every_step: bool = False) -> Any:
    """A target that no run meets: every run takes exactly ``steps`` steps.

    The loss is checked at the last step only, or with ``every_step`` at every step against
    ``loss_below=-1`` (no loss is negative).
    """
    if every_step:
        return cb.targets.target(max_steps=steps, check_every=1, loss_below=-1.0)
    return cb.targets.target(max_steps=steps, check_every=steps)


def nqm_problem(dim: int) -> Any:
    """The benchmarks' NQM (``benches.peers.nqm_spectrum``) in ``dim`` dimensions from 1."""
    h, c = nqm_spectrum(dim)
    return cb.problems.nqm(h, c, 1.0)


def lsq_problem(n: int, dim: int) -> Any:
    """Least squares on ``benches.peers.lsq_data(n, dim)``, minibatches with replacement."""
    X, y = lsq_data(n, dim)
    return cb.problems.least_squares(X, y, sampling="with_replacement")


def execute_cell(
    problem: Any,
    b: int,
    lr: float,
    runs: int,
    steps: int,
    units: int,
    *,
    every_step: bool = False,
    dtype: str = "float64",
    threads: int = 1,
) -> Cell:
    """A cell that runs a plan built once beforehand through :func:`critbatch.execute`."""
    plan = cb.make_plan(
        problem, "sgd", [b], [lr], runs, exact_target(steps, every_step), dtype=dtype
    )
    return Cell(lambda: cb.execute(plan, threads=threads), runs, steps, units)


def sweep_cell(problem: Any, b: int, lr: float, runs: int, steps: int, units: int) -> Cell:
    """A cell that calls :func:`critbatch.sweep` end to end (plan, core, result table)."""
    target = exact_target(steps)
    return Cell(
        lambda: cb.sweep(problem, "sgd", [b], [lr], runs, target, threads=1), runs, steps, units
    )


@dataclass
class Table:
    """A titled Markdown table."""

    title: str
    header: list[str]
    rows: list[list[str]]
    cells: list[Cell]

    def markdown(self) -> str:
        """The title, a blank line and the table."""
        lines = [self.title, "", "| " + " | ".join(self.header) + " |", "|" + "---|" * self.width]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)

    @property
    def width(self) -> int:
        """Number of columns."""
        return len(self.header)


def _g(value: float) -> str:
    return f"{value:.3g}"


def dimension_table(s: Sizes, repeats: int, seconds: float) -> Table:
    """Table 1: NQM ns per coordinate-step (µs per run) against d, dtype and check frequency."""
    variants = [(dt, every) for dt in ("float64", "float32") for every in (False, True)]
    grid = []
    for d in s.dims:
        runs = max(1, s.dim_work // (s.dim_steps * d))
        problem = nqm_problem(d)
        grid.append(
            [
                execute_cell(
                    problem,
                    NQM_B,
                    NQM_LR,
                    runs,
                    s.dim_steps,
                    runs * s.dim_steps * d,
                    every_step=every,
                    dtype=dt,
                )
                for dt, every in variants
            ]
        )
    cells = [c for row in grid for c in row]
    measure(cells, repeats, seconds)
    rows = []
    for d, row in zip(s.dims, grid, strict=True):
        rows.append(
            [str(d), str(row[0].runs)]
            + [f"{_g(c.per_unit() * 1e9)} ({_g(c.per_call() / c.runs * 1e6)})" for c in row]
        )
    return Table(
        f"NQM SGD b={NQM_B}, {s.dim_steps} steps, 1 thread: ns per coordinate-step (µs per run)",
        ["d", "runs", "f64, loss at end", "f64, every step", "f32, loss at end", "f32, every step"],
        rows,
        cells,
    )


def runs_table(s: Sizes, repeats: int, seconds: float) -> Table:
    """Table 2: µs per run of ``cb.sweep`` end to end and of ``execute`` alone, against runs."""
    problem = nqm_problem(s.runs_dim)
    grid = [
        (
            sweep_cell(problem, NQM_B, NQM_LR, runs, s.runs_steps, runs),
            execute_cell(problem, NQM_B, NQM_LR, runs, s.runs_steps, runs),
        )
        for runs in s.runs_axis
    ]
    measure([c for pair in grid for c in pair], repeats, seconds)
    rows = []
    for runs, (whole, core) in zip(s.runs_axis, grid, strict=True):
        sweep_us, execute_us = whole.per_unit() * 1e6, core.per_unit() * 1e6
        rows.append(
            [
                f"{runs:,}",
                _g(sweep_us),
                _g(execute_us),
                f"{100 * (sweep_us - execute_us) / sweep_us:.0f} %"
                if sweep_us > execute_us
                else "below noise",
            ]
        )
    return Table(
        f"NQM d={s.runs_dim}, {s.runs_steps} steps, 1 thread: µs per run",
        ["runs", "`cb.sweep`", "`execute` (plan built before)", "plan building share"],
        rows,
        [c for pair in grid for c in pair],
    )


def steps_table(s: Sizes, repeats: int, seconds: float) -> Table:
    """Table 3: the per-run setup's share of a run against the steps (NQM, float64).

    The per-step cost ``c`` is that of the longest runs (their setup is negligible); the setup
    is the time of a one-step run less ``c``; its share at ``steps`` is setup over the measured
    time of one run of ``steps`` steps.
    """
    if s.steps_axis[0] != 1:
        raise ValueError(f"steps_axis must start at 1 step, got {s.steps_axis!r}")
    problem = nqm_problem(s.steps_dim)
    cells = []
    for steps in s.steps_axis:
        runs = min(s.max_runs, max(1, s.steps_work // (s.steps_dim * steps)))
        cells.append(execute_cell(problem, NQM_B, NQM_LR, runs, steps, runs * steps * s.steps_dim))
    measure(cells, repeats, seconds)
    per_run = [cell.per_call() / cell.runs for cell in cells]
    per_step = per_run[-1] / cells[-1].steps
    setup = per_run[0] - per_step
    rows = [
        [
            f"{cell.steps:,}",
            f"{cell.runs:,}",
            _g(cell.per_unit() * 1e9),
            _g(run * 1e6),
            f"{100 * setup / run:.2g} %" if setup > 0 else "n/a",
        ]
        for cell, run in zip(cells, per_run, strict=True)
    ]
    setup_text = f"{setup * 1e6:.3g} µs" if setup > 0 else "not resolved"
    return Table(
        f"NQM d={s.steps_dim} float64, loss at the end, 1 thread: per-run setup {setup_text} "
        f"(a 1-step run less one step at the {s.steps_axis[-1]:,}-step cost)",
        ["steps", "runs", "ns / coordinate-step", "µs / run", "setup share"],
        rows,
        cells,
    )


def threads_table(s: Sizes, repeats: int, seconds: float) -> Table:
    """Table 4: whole calls on 1 and 2 threads, and the speed-up."""
    nq, ls = s.nqm_threads, s.lsq_threads
    nqm, lsq = nqm_problem(nq.dim), lsq_problem(ls.n, ls.dim)
    pairs = [
        tuple(
            execute_cell(nqm, nq.b, nq.lr, nq.runs, nq.steps, nq.work, threads=t) for t in (1, 2)
        ),
        tuple(
            execute_cell(lsq, ls.b, ls.lr, ls.runs, ls.steps, ls.run_steps, threads=t)
            for t in (1, 2)
        ),
    ]
    labels = [
        (f"NQM d={nq.dim}, {nq.runs} runs x {nq.steps} steps", "ns / coordinate-step", 1e9),
        (
            f"least squares n={ls.n} d={ls.dim} b={ls.b}, {ls.runs} runs x {ls.steps} steps",
            "µs / run-step",
            1e6,
        ),
    ]
    cells = [c for pair in pairs for c in pair]
    measure(cells, repeats, seconds)
    rows = [
        [
            label,
            unit,
            _g(one.per_unit() * scale),
            _g(two.per_unit() * scale),
            f"{speedup(one, two):.2f}x",
            f"{two.cpu_per_wall():.2f}",
        ]
        for (label, unit, scale), (one, two) in zip(labels, pairs, strict=True)
    ]
    return Table(
        "Threads (whole calls, float64)",
        ["workload", "unit", "1 thread", "2 threads", "speed-up", "cpu/wall, 2 threads"],
        rows,
        cells,
    )


def lsq_table(s: Sizes, repeats: int, seconds: float, caches: dict[int, int]) -> Table:
    """Table 5: least squares µs per run-step (marginal) against d and dtype, beside the caches."""
    short, long = s.lsq_steps
    grid = []
    for d in s.lsq_dims:
        runs = max(2, s.lsq_work // (long * d))
        problem = lsq_problem(s.lsq_n, d)
        grid.append(
            [
                tuple(
                    execute_cell(problem, s.lsq_b, LSQ_LR, runs, steps, runs * steps, dtype=dt)
                    for steps in (short, long)
                )
                for dt in ("float64", "float32")
            ]
        )
    cells = [c for row in grid for pair in row for c in pair]
    measure(cells, repeats, seconds)
    rows = []
    for d, row in zip(s.lsq_dims, grid, strict=True):
        f64, f32 = (_marginal_run_step(a, b) for a, b in row)
        ratio = "n/a" if f64 is None or f32 is None else f"{f64 / f32:.2f}"
        rows.append(
            [
                str(d),
                str(row[0][0].runs),
                f"{_mib(s.lsq_n * d * 8)} ({_mib(s.lsq_n * d * 4)})",
                f"{fits(s.lsq_n * d * 8, caches)} ({fits(s.lsq_n * d * 4, caches)})",
                *("n/a" if m is None else _g(m * 1e6) for m in (f64, f32)),
                ratio,
            ]
        )
    cache_text = ", ".join(f"L{k} {_mib(v)} MiB" for k, v in sorted(caches.items())) or "unknown"
    return Table(
        f"Least squares n={s.lsq_n} b={s.lsq_b}, 1 thread: µs per run-step, marginal (a "
        f"{long}-step call less a {short}-step one, per run and step); caches of CPU 0: "
        f"{cache_text}",
        ["d", "runs", "design MiB f64 (f32)", "smallest cache it fits", "f64", "f32", "f64 / f32"],
        rows,
        cells,
    )


def _marginal_run_step(short: Cell, long: Cell) -> float | None:
    """Seconds of one more run-step; ``None`` where noise makes the difference non-positive."""
    extra = long.per_call() - short.per_call()
    if extra <= 0:
        return None
    return extra / (long.runs * (long.steps - short.steps))


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.3g}"


def fits(n_bytes: int, caches: dict[int, int]) -> str:
    """The smallest cache level larger than ``n_bytes`` ("memory" if none, "n/a" if unknown)."""
    if not caches:
        return "n/a"
    for level, size in sorted(caches.items()):
        if n_bytes < size:
            return f"L{level}"
    return "memory"


def cache_sizes() -> dict[int, int]:
    """Bytes of each data or unified cache level of CPU 0 (sysfs; empty where unreadable)."""
    sizes: dict[int, int] = {}
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
            sizes[level] = int(text.rstrip("KMG")) * units.get(text[-1:], 1)
        except (OSError, ValueError):
            continue
    return sizes


def tables(s: Sizes, repeats: int, seconds: float) -> list[Table]:
    """Measure and build the five tables."""
    return [
        dimension_table(s, repeats, seconds),
        runs_table(s, repeats, seconds),
        steps_table(s, repeats, seconds),
        threads_table(s, repeats, seconds),
        lsq_table(s, repeats, seconds, cache_sizes()),
    ]


def test_scaling_tables_smoke() -> None:
    s = TINY_SIZES
    built = tables(s, repeats=1, seconds=0.0)
    expected_rows = [len(s.dims), len(s.runs_axis), len(s.steps_axis), 2, len(s.lsq_dims)]
    assert [len(t.rows) for t in built] == expected_rows
    for table in built:
        assert all(len(row) == table.width for row in table.rows), table.title
        # the warm-up call and one round of one call: every run of both checked
        assert all(c.calls == 1 and c.checked_runs == 2 * c.runs for c in table.cells), table.title
        assert all(len(c.walls) == 1 for c in table.cells), table.title
        assert "nan" not in table.markdown()


def test_a_run_that_stops_early_fails_its_cell() -> None:
    problem = nqm_problem(4)
    target = cb.targets.target(max_steps=50, check_every=1, loss_below=10.0)  # met at step 1
    plan = cb.make_plan(problem, "sgd", [NQM_B], [NQM_LR], 3, target)
    cell = Cell(lambda: cb.execute(plan, threads=1), runs=3, steps=50, units=150)
    with pytest.raises(RuntimeError, match="exactly 50 steps"):
        cell.calibrate(0.0)


def main(argv: list[str] | None = None) -> int:
    """Run the five tables and print them; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per table")
    parser.add_argument(
        "--seconds", type=float, default=0.25, help="least work of one timing of a cell"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    if not args.seconds >= 0:
        parser.error(f"--seconds must be non-negative, got {args.seconds}")
    from benches.report import _cpu_name

    print(
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs; sizes "
        f"{'full' if FULL else 'tiny (set CRITBATCH_BENCH=full)'}; fastest of {args.repeats} "
        f"interleaved rounds of at least {args.seconds} s each.\n"
    )
    start = time.perf_counter()
    for table in tables(FULL_SIZES if FULL else TINY_SIZES, args.repeats, args.seconds):
        print(table.markdown() + "\n", flush=True)
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
