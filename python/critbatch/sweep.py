"""``sweep``: run a grid of (problem, optimizer, schedule, batch size, learning rate, seed) runs."""

from __future__ import annotations

from typing import Any

from critbatch import _validate as v
from critbatch.plan import Plan, make_plan
from critbatch.results import Results
from critbatch.targets import Target

BACKENDS = ("rust", "torch")


def execute(
    plan: Plan, *, backend: str = "rust", threads: int | None = None, device: str = "cpu"
) -> Results:
    """Run every cell of ``plan`` on ``backend`` and return the result table in plan order."""
    backend = v.choice("backend", backend, BACKENDS)
    if threads is not None:
        threads = v.threads("threads", threads)
    if backend == "rust":
        from critbatch import _core

        outcomes = _core.run_plan(
            [p.to_core() for p in plan.problems],
            [o.to_core() for o in plan.optimizers],
            [s.to_core() for s in plan.schedules],
            plan.target.to_core(),
            plan.cells,
            plan.seed,
            threads or 0,
            plan.trajectory_every,
        )
    else:
        from critbatch.torch.runner import run_plan

        outcomes = run_plan(plan, device=device, threads=threads)
    return Results.from_outcomes(plan, outcomes)


def sweep(
    problems: Any,
    optimizers: Any,
    batch_sizes: Any,
    learning_rates: Any,
    seeds: Any,
    target: Target,
    *,
    schedules: Any = None,
    seed: int = 0,
    threads: int | None = None,
    trajectory_every: int = 0,
    backend: str = "rust",
    device: str = "cpu",
) -> Results:
    """Run the full grid in parallel and return one row per run.

    Args:
        problems: one problem or a list (``critbatch.problems``).
        optimizers: one optimizer spec or name, or a list of them.
        batch_sizes: base batch sizes (positive integers).
        learning_rates: base learning rates (positive).
        seeds: a number of replicates, or a list of replicate ids.
        target: the stopping rule (``critbatch.targets.target``).
        schedules: one ``Schedule`` or a list (constant by default).
        seed: the sweep seed; with the run index it determines every random number of a run.
        threads: worker threads of the Rust core (default: all cores); never changes results.
        trajectory_every: record the exact loss every this many steps (0: no trajectories).
        backend: ``"rust"`` (the core, CPU) or ``"torch"`` (batched tensors, CPU or GPU).
        device: the torch device when ``backend="torch"``.

    Returns:
        A :class:`critbatch.results.Results` table.

    Example:
        >>> import critbatch as cb
        >>> res = cb.sweep(cb.problems.nqm_power_law(10), "sgd", [1, 4], [0.5], 2,
        ...                cb.targets.target(loss_below=0.1, max_steps=1000))
        >>> len(res), bool(res["reached"].all())
        (4, True)

    """
    plan = make_plan(
        problems,
        optimizers,
        batch_sizes,
        learning_rates,
        seeds,
        target,
        schedules=schedules,
        seed=seed,
        trajectory_every=trajectory_every,
    )
    return execute(plan, backend=backend, threads=threads, device=device)
