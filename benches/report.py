"""Time the Rust core and its NumPy, JAX and torch peers on one thread; print a Markdown table.

Usage (from the repository root)::

    CRITBATCH_BENCH=full python benches/report.py [--repeats 7] [--workload nqm|least_squares|all]
        [--nqm-dim D]

Every peer runs the same sweep (``benches.peers``). For each it compiles or allocates once and runs
one warm-up sweep; then ``--repeats`` rounds time every peer once, in turn, in the same process
(``time.perf_counter``). A peer's ratio is the median over the rounds of its time over the single-
threaded Rust time *of the same round*, so a load that comes and goes on a shared machine hits both
sides of a ratio alike; the time per unit is the median over the rounds, for the NQM in nanoseconds
per coordinate-step (time / (runs * steps * dim)), for least squares in microseconds per run-step
(time / (runs * steps)). Everything runs on one thread: ``XLA_FLAGS`` for JAX and the BLAS/OpenMP
thread variables are set before NumPy, JAX or torch are imported, ``torch.set_num_threads(1)``, and
the Rust core gets ``threads=1`` (plus one row with ``threads=2`` and one in float32,
``dtype="float32"``). The ``cpu/wall`` column
(process CPU time over wall time of the timed sweeps) shows whether a peer really stayed on one
core. The mean final loss shows that every peer computed the same thing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
XLA_SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
WORKLOADS = ("nqm", "least_squares")


def _pin_to_one_thread() -> None:
    """Set the thread variables of BLAS, OpenMP and XLA; must run before those libraries load."""
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ[key] = value
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_SINGLE_THREAD}".strip()


def _time_once(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """One timed call: (wall seconds, process CPU seconds, result)."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = run()
    return time.perf_counter() - t0, time.process_time() - c0, result


def _interleaved(
    runs: list[Callable[[], Any]], repeats: int
) -> list[tuple[list[float], float, Any]]:
    """Warm every callable up, then time them in turn for ``repeats`` rounds.

    Returns, per callable: its wall time in each round, CPU/wall over the rounds, last result.
    """
    for run in runs:
        run()
    walls: list[list[float]] = [[] for _ in runs]
    cpus, results = [0.0] * len(runs), [None] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            wall, cpu, results[i] = _time_once(run)
            walls[i].append(wall)
            cpus[i] += cpu
    return [(w, c / sum(w), r) for w, c, r in zip(walls, cpus, results, strict=True)]


def _peers(workload: str, w: Any) -> list[tuple[str, Callable[[], Callable[[], Any]] | None]]:
    """(label, preparer) for every peer of ``workload``; ``None`` where the peer is unavailable."""
    import importlib.util

    from benches import peers
    from benches.peers import numpy_peers

    kind = "nqm" if workload == "nqm" else "lsq"
    rust_ok = _has_core()
    rust = getattr(peers, f"prepare_rust_{kind}")
    rows: list[tuple[str, Callable[[], Callable[[], Any]] | None]] = [
        ("rust (1 thread)", (lambda: rust(w, threads=1)) if rust_ok else None),
        ("rust (2 threads)", (lambda: rust(w, threads=2)) if rust_ok else None),
        ("rust f32 (1 thread)", (lambda: rust(w, threads=1, dtype="float32")) if rust_ok else None),
        ("numpy f64", lambda: getattr(numpy_peers, f"prepare_{kind}")(w)),
    ]
    if importlib.util.find_spec("jax") is not None:
        from benches.peers import jax_peers

        for dt in jax_peers.DTYPES:
            prep = getattr(jax_peers, f"prepare_{kind}")
            rows.append((f"jax {dt[:1]}{dt[5:]}", lambda p=prep, dt=dt: p(w, dtype=dt)))
    if importlib.util.find_spec("torch") is not None:
        from benches.peers import torch_peers

        for dt in torch_peers.DTYPES:
            prep = getattr(torch_peers, f"prepare_{kind}")
            rows.append(
                (f"torch {dt[:1]}{dt[5:]}", lambda p=prep, dt=dt: p(w, dtype=dt, threads=1))
            )
    return rows


def _has_core() -> bool:
    try:
        import critbatch._core  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the timings and print the table; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="interleaved rounds (every peer timed once per round; medians kept)",
    )
    parser.add_argument("--workload", choices=(*WORKLOADS, "all"), default="all")
    parser.add_argument(
        "--nqm-dim",
        type=int,
        default=None,
        help="the NQM's dimension (default: the workload's, 1000 when full)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be a positive integer, got {args.repeats}")
    _pin_to_one_thread()

    import numpy as np

    from benches.peers import full_size, lsq_workload, nqm_workload

    full = full_size()
    workloads = WORKLOADS if args.workload == "all" else (args.workload,)
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for lib in ("jax", "torch"):
        try:
            versions.append(f"{lib} {__import__(lib).__version__}")
        except ImportError:
            versions.append(f"{lib} missing")
    print(
        f"Machine: {platform.machine()} {_cpu_name()}, {os.cpu_count()} logical CPUs; "
        + ", ".join(versions)
        + "."
    )
    print(
        f"Sizes: {'full' if full else 'tiny (set CRITBATCH_BENCH=full for the full sizes)'}; "
        f"median of {args.repeats} interleaved rounds after one warm-up; ratios are "
        "per-round peer / rust (1 thread, float64 or float32); one thread unless stated.\n"
    )

    header = [
        "workload",
        "peer",
        "time per unit",
        "unit",
        "peer / rust",
        "peer / rust f32",
        "cpu/wall",
        "mean final loss",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        if workload == "nqm":
            w: Any = nqm_workload(full)
            if args.nqm_dim is not None:
                w = dataclasses.replace(w, dim=args.nqm_dim)
            units, unit = w.work, "ns / coordinate-step"
            scale, size = 1e9, f"dim={w.dim}, runs={w.runs}, steps={w.steps}, b={w.b}"
        else:
            w = lsq_workload(full)
            units, unit = w.run_steps, "µs / run-step"
            scale = 1e6
            size = f"n={w.n}, dim={w.dim}, b={w.b}, runs={w.runs}, steps={w.steps}"
        print(f"{workload}: {size}", file=sys.stderr)
        available = [(label, prepare) for label, prepare in _peers(workload, w)]
        for label, prepare in available:
            if prepare is None:
                lines.append(
                    f"| {workload} | {label} | n/a | {unit} | n/a | n/a | n/a | "
                    "critbatch._core not built |"
                )
        timed = [(label, prepare()) for label, prepare in available if prepare is not None]
        measured = _interleaved([run for _, run in timed], args.repeats)
        labels = [label for label, _ in timed]
        references = [
            measured[labels.index(ref)][0] if ref in labels else None
            for ref in ("rust (1 thread)", "rust f32 (1 thread)")
        ]
        for label, (walls, cpu_ratio, losses) in zip(labels, measured, strict=True):
            ratios = [_median_ratio(walls, ref) for ref in references]
            per_unit = statistics.median(walls) / units * scale
            lines.append(
                f"| {workload} | {label} | {per_unit:.3g} | {unit} | {' | '.join(ratios)} | "
                f"{cpu_ratio:.2f} | {float(np.mean(losses)):.5g} |"
            )
            print(f"  {label}: median {statistics.median(walls):.3f} s", file=sys.stderr)
    print("\n".join(lines))
    return 0


def _median_ratio(walls: list[float], reference: list[float] | None) -> str:
    """The median over rounds of ``walls`` over the ``reference`` time of the same round."""
    if reference is None:
        return "n/a"
    return f"{statistics.median(w / r for w, r in zip(walls, reference, strict=True)):.2f}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    # Run as a script: make the repository root importable so that ``benches.peers`` resolves.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
