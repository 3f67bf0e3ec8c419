"""``sweep``: run a grid of (problem, optimizer, schedule, batch size, learning rate, seed) runs.

Ctrl-C stops a sweep on the Rust core within a fraction of a second (the core checks a stop flag
before every step and runs Python's signal handlers every 50 ms): the runs in flight are dropped,
the runs that had finished are kept in the :class:`SweepInterrupted` exception raised, and a
progress callback or bar sees every finished run as it finishes, not per call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.plan import Plan, check_backend, make_plan
from critbatch.results import Results
from critbatch.targets import Target

__all__ = ["BACKENDS", "SweepInterrupted", "execute", "sweep"]

BACKENDS = ("rust", "torch")

#: A progress callback: called with the number of runs of the plan finished so far.
ProgressCallback = Callable[[int], Any]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep; the runs that had finished are kept.

    A ``KeyboardInterrupt``, so code that handles Ctrl-C handles it too.

    Attributes:
        partial: the finished runs, a :class:`critbatch.results.Results` in plan order.
        rows: their rows in the plan that was executed (int64).
        total: the number of runs in that plan.

    """

    def __init__(self, partial: Results, rows: np.ndarray, total: int) -> None:
        super().__init__(
            f"sweep interrupted after {len(partial)} of {total} runs finished "
            "(they are kept in .partial)"
        )
        self.partial, self.rows, self.total = partial, rows, total

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.partial, self.rows, self.total))


def _progress_bar(total: int) -> tuple[ProgressCallback, Callable[[], None]]:
    """A tqdm bar (text in a terminal, a widget in a notebook): its update and close functions."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="run", desc="sweep", dynamic_ncols=True)

    def update(done: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


def execute(
    plan: Plan,
    *,
    backend: str = "rust",
    threads: int | None = None,
    device: str = "cpu",
    progress: bool | ProgressCallback | None = None,
) -> Results:
    """Run every cell of ``plan`` on ``backend`` and return the result table in plan order.

    Args:
        plan: the plan (:func:`critbatch.make_plan`).
        backend: ``"rust"`` or ``"torch"``.
        threads: worker threads (default: all cores); never changes results.
        device: the torch device when ``backend="torch"``.
        progress: ``True`` for a progress bar, or a callback given the number of finished runs
            (by the core every 50 ms while runs finish; by torch once, at the end).

    Raises:
        SweepInterrupted: on Ctrl-C (rust backend), with the finished runs.
        ValueError: a plan the backend cannot run as written (a network, an accuracy target or
            a warm-up on the Rust core), before anything runs
            (:func:`critbatch.plan.check_backend`).

    """
    backend = v.choice("backend", backend, BACKENDS)
    check_backend(plan, backend)
    if threads is not None:
        threads = v.threads("threads", threads)
    close: Callable[[], None] | None = None
    callback: ProgressCallback | None
    if progress is True:
        callback, close = _progress_bar(len(plan))
    elif progress is False or progress is None:
        callback = None
    elif callable(progress):
        callback = progress
    else:
        raise TypeError(f"progress must be a bool or a callable, got {type(progress).__name__}")
    try:
        if backend == "rust":
            outcomes = _run_core(plan, threads, callback)
        else:
            from critbatch.torch.runner import run_plan

            outcomes = run_plan(plan, device=device, threads=threads)
            if callback is not None:
                callback(len(plan))
    finally:
        if close is not None:
            close()
    return Results.from_outcomes(plan, outcomes)


def _run_core(plan: Plan, threads: int | None, progress: ProgressCallback | None) -> dict[str, Any]:
    from critbatch import _core

    try:
        return _core.run_plan(
            [p.to_core() for p in plan.problems],
            [o.to_core() for o in plan.optimizers],
            [s.to_core() for s in plan.schedules],
            plan.target.to_core(),
            plan.cells,
            plan.seed,
            threads or 0,
            plan.trajectory_every,
            progress,
            mode=plan.mode,
            common_random_numbers=plan.common_random_numbers,
            min_losses=None if plan.min_losses is None else list(plan.min_losses),
            trajectory_metrics=list(plan.trajectory_metrics),
            dtype=plan.dtype or "float64",
            weight_averaging=plan.weight_averaging,
        )
    except KeyboardInterrupt as err:
        partial = getattr(err, "partial_outcomes", None)
        if partial is None:
            raise
        rows = np.asarray(partial.pop("rows"), dtype=np.int64)
        kept = Results.from_outcomes(plan.subset(rows), partial)
        raise SweepInterrupted(kept, rows, len(plan)) from None


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
    trajectory_metrics: Any = ("loss",),
    backend: str = "rust",
    device: str = "cpu",
    dtype: str | None = None,
    precision: str = "highest",
    mode: str = "steps",
    common_random_numbers: bool = False,
    weight_averaging: float | None = None,
    progress: bool = False,
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
        seed: the sweep seed; with the run index (or, with ``common_random_numbers``, the
            problem, batch size and replicate) it determines every random number of a run.
        threads: worker threads of the Rust core (default: all cores); never changes results.
        trajectory_every: record a trajectory every this many steps from step 0 (0: none).
        trajectory_metrics: what a trajectory records (:data:`critbatch.plan.TRAJECTORY_METRICS`):
            ``"loss"`` (the default; ``Results.trajectories``) and/or ``"grad_norm"``, the
            exact full-gradient norm (``Results.grad_norm_trajectories``).
        backend: ``"rust"`` (the core, CPU) or ``"torch"`` (batched tensors, CPU or GPU).
        device: the torch device when ``backend="torch"``.
        dtype: the float type runs compute in, ``"float64"`` or ``"float32"`` (``None``: float64
            for the synthetic problems, float32 for networks; ``docs/float32.md`` says what
            float32 changes on the core).
        precision: ``"highest"``, ``"tf32"`` or ``"bf16"`` (torch backend; see
            :mod:`critbatch.plan`).
        mode: ``"steps"`` or ``"exact_jumps"`` (the Rust core on the NQM with SGD, heavy ball
            or Nesterov: the state at each checkpoint drawn from its exact law, see
            :data:`critbatch.plan.MODES`).
        common_random_numbers: runs that differ only in optimizer, schedule or learning rate
            share their gradient noise and minibatch indices (keyed by problem, batch size and
            replicate instead of the run index; :mod:`critbatch.plan`).
        weight_averaging: the decay in (0, 1) of a bias-corrected exponentially weighted
            average of each run's weights that every check reads instead of the weights
            (Zhang et al. 2024; :mod:`critbatch.plan`). ``None``: no average.
        progress: show a progress bar (tqdm: text in a terminal, a widget in a notebook) that
            counts every run as it finishes.

    Returns:
        A :class:`critbatch.results.Results` table.

    Raises:
        SweepInterrupted: on Ctrl-C, within a fraction of a second; its ``partial`` holds the
            runs that had finished (rust backend).

    Example:
        >>> import critbatch as cb
        >>> res = cb.sweep(cb.problems.nqm_power_law(10), "sgd", [1, 4], [0.5], 2,
        ...                cb.targets.target(loss_below=0.1, max_steps=1000))
        >>> len(res), bool(res["reached"].all())
        (4, True)

    """
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
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
        trajectory_metrics=trajectory_metrics,
        dtype=dtype,
        precision=precision,
        mode=mode,
        common_random_numbers=common_random_numbers,
        weight_averaging=weight_averaging,
    )
    return execute(plan, backend=backend, threads=threads, device=device, progress=progress)
