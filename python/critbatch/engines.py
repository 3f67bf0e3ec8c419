"""Engines: who runs the chunks of a sweep, locally one after another or as Ray tasks.

An engine receives a plan and a list of chunks (each a chunk id and the plan rows it covers),
runs each chunk through :func:`critbatch.sweep.execute`, and hands every finished chunk to a
callback as soon as it is done, so that the caller can store it durably. Results never depend on
the engine: a run's random stream is a function of (sweep seed, run index) only, or with common
random numbers of (sweep seed, problem, batch size, replicate).

* ``"local"``: chunks run in order in this process, each call using all the core's threads.
  Progress is reported per run; Ctrl-C stops the chunk in flight within a fraction of a second
  and hands its finished runs to ``on_interrupt`` before the :class:`SweepInterrupted` goes on.
* ``"ray"``: chunks fan out as Ray tasks (``ray.init(address)`` for a cluster, or a local Ray
  with ``num_cpus`` workers); the plan is put in the object store once; at most a few tasks per
  CPU of the cluster are in flight; a task whose worker dies is retried ``max_retries`` times;
  an exception raised by the run itself is not retried. Progress is reported per chunk; Ctrl-C
  cancels the tasks in flight (their runs are lost, the finished chunks are kept). A torch task
  on ``device="cuda"`` asks Ray for one GPU; Ray then shows the task only that GPU (it sets
  ``CUDA_VISIBLE_DEVICES``), as ``cuda:0``, so a device naming another index (``"cuda:1"``) is
  refused before anything runs (:func:`ray_device`).

A caller that shares its chunks with other processes passes ``claim``: it is asked just before a
chunk starts which of its rows to run now, and may answer ``None`` to skip the chunk.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.plan import Plan
from critbatch.results import OUTCOME_COLUMNS, LabelCodes, Results
from critbatch.sweep import SweepInterrupted, execute

__all__ = ["ENGINES", "Chunk", "Progress", "ray_device", "run_chunks"]

ENGINES = ("local", "ray")

#: A chunk: its id (file number) and the plan rows it runs, in plan order.
Chunk = tuple[int, np.ndarray]
Executor = Callable[..., Results]
OnDone = Callable[[int, Results], None]
#: ``claim(chunk_id, rows)``: the rows of the chunk to run now, or ``None`` to skip it.
Claim = Callable[[int, np.ndarray], "np.ndarray | None"]
#: ``on_interrupt(chunk_id, finished)``: the runs of the chunk in flight that Ctrl-C let finish.
OnInterrupt = Callable[[int, Results], None]
#: ``progress(n)``: ``n`` more runs finished.
OnProgress = Callable[[int], None]
#: Ray tasks in flight per CPU of the cluster: enough to keep every worker busy while the
#: driver stores finished chunks, few enough that a claim is not held for long before its run.
RAY_TASKS_PER_CPU = 2
_CUDA = re.compile(r"cuda(?::(\d+))?")


def ray_device(device: str) -> str:
    """The device a Ray task runs ``device`` on: the GPU Ray assigns it, or ``device`` itself.

    A task that asks Ray for a GPU sees only that GPU (Ray sets ``CUDA_VISIBLE_DEVICES``), as
    ``cuda:0``: ``"cuda"`` and ``"cuda:0"`` become ``"cuda"`` (the assigned GPU), a device that
    is not CUDA is kept, and ``"cuda:N"`` with ``N >= 1`` is refused, since Ray, not the spec,
    chooses the GPU.

    Raises:
        ValueError: for ``"cuda:N"`` with ``N >= 1``, naming the device and the remedy.

    Example:
        >>> ray_device("cuda:0"), ray_device("cpu")
        ('cuda', 'cpu')
        >>> ray_device("cuda:1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: device='cuda:1' names GPU 1, but under engine='ray' each task sees only ...

    """
    name = str(device).strip()
    match = _CUDA.fullmatch(name)
    if match is None:
        return name
    index = int(match.group(1) or 0)
    if index > 0:
        raise ValueError(
            f"device={name!r} names GPU {index}, but under engine='ray' each task sees only "
            "the GPU Ray assigns it, as cuda:0 (Ray sets CUDA_VISIBLE_DEVICES); use "
            f"device='cuda', or engine='local' to run on GPU {index}"
        )
    return "cuda"


def run_chunks(
    plan: Plan,
    chunks: Sequence[Chunk],
    on_done: OnDone,
    *,
    engine: str = "local",
    address: str | None = None,
    backend: str = "rust",
    device: str = "cpu",
    threads: int | None = None,
    max_retries: int = 3,
    executor: Executor = execute,
    claim: Claim | None = None,
    on_interrupt: OnInterrupt | None = None,
    progress: OnProgress | None = None,
) -> None:
    """Run ``chunks`` of ``plan`` on ``engine`` and call ``on_done(chunk_id, results)`` for each.

    Args:
        plan: the full sweep plan.
        chunks: ``(chunk_id, rows)`` pairs; ``rows`` index ``plan``'s grid.
        on_done: called in this process as each chunk finishes (in completion order for Ray),
            with the results of the rows it ran.
        engine: ``"local"`` or ``"ray"``.
        address: the Ray cluster to join (``None``: start a local Ray, or use the one already
            initialised in this process).
        backend: ``"rust"`` or ``"torch"`` (see :func:`critbatch.sweep.execute`).
        device: the torch device.
        threads: core threads per chunk (local default: all cores; Ray default: 1 per task, the
            parallelism coming from the tasks).
        max_retries: Ray retries of a task whose worker died.
        executor: the function that runs a sub-plan (``execute``; tests inject others).
        claim: asked just before a chunk starts which of its rows to run (``None``: skip it).
        on_interrupt: given the finished runs of the chunk that Ctrl-C stopped (local engine).
        progress: told how many more runs finished (per run locally, per chunk on Ray).

    Raises:
        ValueError: for an unknown engine, or on Ray a device naming a GPU by an index other
            than 0 (:func:`ray_device`).
        ImportError: for ``engine="ray"`` without Ray installed.
        SweepInterrupted: on Ctrl-C during a local chunk (after ``on_interrupt``).

    Example:
        >>> import critbatch as cb, numpy as np
        >>> plan = cb.make_plan(cb.problems.nqm_power_law(4), "sgd", [1, 2], [0.1], 1,
        ...                     cb.targets.target(max_steps=5))
        >>> def fake(sub, **kw):
        ...     n = len(sub)
        ...     return cb.Results.from_outcomes(sub, {c: np.zeros(n) for c in
        ...                                           cb.results.OUTCOME_COLUMNS})
        >>> done = []
        >>> run_chunks(plan, [(0, np.array([0])), (1, np.array([1]))],
        ...            lambda i, r: done.append((i, len(r))), executor=fake)
        >>> done
        [(0, 1), (1, 1)]

    """
    engine = v.choice("engine", engine, ENGINES)
    if not chunks:
        return
    if engine == "local":
        _run_local(
            plan,
            chunks,
            on_done,
            backend=backend,
            device=device,
            threads=threads,
            executor=executor,
            claim=claim,
            on_interrupt=on_interrupt,
            progress=progress,
        )
        return
    _run_ray(
        plan,
        chunks,
        on_done,
        address=address,
        backend=backend,
        device=ray_device(device) if backend == "torch" else device,
        threads=threads,
        max_retries=v.nonnegative_int("max_retries", max_retries),
        executor=executor,
        claim=claim,
        progress=progress,
    )


def _run_local(
    plan: Plan,
    chunks: Sequence[Chunk],
    on_done: OnDone,
    *,
    backend: str,
    device: str,
    threads: int | None,
    executor: Executor,
    claim: Claim | None,
    on_interrupt: OnInterrupt | None,
    progress: OnProgress | None,
) -> None:
    # One thread stores chunk k while chunk k + 1 computes (the core and torch release the GIL,
    # and so does the Parquet writer): only the last chunk's write adds to the wall time. At
    # most one write is in flight, so chunks are stored in order and a write error surfaces
    # before another chunk starts.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="critbatch-store") as store:
        writing: Future[None] | None = None
        for chunk_id, all_rows in chunks:
            rows = all_rows if claim is None else claim(chunk_id, all_rows)
            if rows is None:
                continue
            res = _run_local_chunk(
                plan,
                chunk_id,
                rows,
                backend=backend,
                device=device,
                threads=threads,
                executor=executor,
                on_interrupt=on_interrupt,
                progress=progress,
                writing=writing,
            )
            _finish(writing)
            writing = store.submit(on_done, chunk_id, res)
        _finish(writing)


def _finish(writing: Future[None] | None) -> None:
    """Wait for a chunk's write and raise its error, if any."""
    if writing is not None:
        writing.result()


def _run_local_chunk(
    plan: Plan,
    chunk_id: int,
    rows: np.ndarray,
    *,
    backend: str,
    device: str,
    threads: int | None,
    executor: Executor,
    on_interrupt: OnInterrupt | None,
    progress: OnProgress | None,
    writing: Future[None] | None,
) -> Results:
    """Run one chunk in this process; on Ctrl-C keep the stored chunk and the finished runs."""
    counted = 0
    extra: dict[str, Any] = {}
    if progress is not None:

        def tick(done: int) -> None:
            nonlocal counted
            progress(done - counted)
            counted = done

        extra["progress"] = tick
    try:
        sub = plan.subset(_consecutive(rows))
        res = executor(sub, backend=backend, threads=threads, device=device, **extra)
    except SweepInterrupted as err:
        _finish(writing)  # the chunk before is stored before the interrupt goes on
        if on_interrupt is not None:
            on_interrupt(chunk_id, err.partial)
        raise
    if progress is not None and counted < len(res):
        progress(len(res) - counted)  # an executor that does not report per run
    return res


def _consecutive(rows: np.ndarray) -> np.ndarray | slice:
    """``rows`` as a slice when they are consecutive (a chunk of a fresh sweep), else as is.

    A slice makes the sub-plan's cells views of the plan's instead of copies (3 ms for a
    chunk of 100,000 runs).
    """
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and bool((np.diff(rows) == 1).all()):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _run_rows(
    plan: Plan, rows: np.ndarray, backend: str, device: str, threads: int | None, executor: Executor
) -> tuple[dict[str, np.ndarray], list[np.ndarray], list[np.ndarray], dict[str, LabelCodes]]:
    """Ray task body: run some rows and return only columns (the specs stay with the driver)."""
    res = executor(plan.subset(_consecutive(rows)), backend=backend, threads=threads, device=device)
    return res.columns, res.trajectories, res.grad_norm_trajectories, res.codes


def _run_ray(
    plan: Plan,
    chunks: Sequence[Chunk],
    on_done: OnDone,
    *,
    address: str | None,
    backend: str,
    device: str,
    threads: int | None,
    max_retries: int,
    executor: Executor,
    claim: Claim | None,
    progress: OnProgress | None,
) -> None:
    try:
        import ray
    except ImportError as err:
        raise ImportError("engine='ray' needs Ray: pip install 'critbatch[ray]'") from err
    started = False
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    pending: dict[Any, int] = {}
    try:
        # A torch task on a GPU asks Ray for one, which also sets its CUDA_VISIBLE_DEVICES.
        gpus = 1 if backend == "torch" and device == "cuda" else 0
        task = ray.remote(_run_rows).options(
            max_retries=max_retries, retry_exceptions=False, num_gpus=gpus
        )
        plan_ref = ray.put(plan)
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]  # ray ships no types
        window = RAY_TASKS_PER_CPU * max(1, int(resources.get("CPU", 1)))
        queue = list(chunks)[::-1]
        specs = Results.from_outcomes(
            plan.subset(slice(0, 0)), {c: np.zeros(0) for c in OUTCOME_COLUMNS}
        ).specs
        while queue or pending:
            while queue and len(pending) < window:
                chunk_id, all_rows = queue.pop()
                rows = all_rows if claim is None else claim(chunk_id, all_rows)
                if rows is not None:
                    ref = task.remote(plan_ref, rows, backend, device, threads or 1, executor)
                    pending[ref] = chunk_id
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk_id = pending.pop(ref)
                columns, trajectories, grad_norms, codes = ray.get(ref)
                res = Results(columns, trajectories, specs, grad_norms, codes)
                if progress is not None:
                    progress(len(res))
                on_done(chunk_id, res)
    except BaseException:
        for ref in pending:  # a cluster that we did not start keeps running otherwise
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


class Progress:
    """A plain-text progress line on a stream: runs done, runs per second and time left.

    On a terminal the line is redrawn in place; elsewhere (a log file, a pipe) a line is printed
    at most every ``interval`` seconds and at the end.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(10, stream=out, clock=iter([0.0, 2.0, 4.0, 4.0]).__next__)
        >>> p.advance(4)
        >>> p.advance(6)
        >>> p.finish()
        >>> print(out.getvalue(), end="")
        sweep: 4/10 runs (40%)  2 runs/s  ETA 0:00:03
        sweep: 10/10 runs (100%)  2.5 runs/s  elapsed 0:00:04

    """

    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        stream: Any = None,
        interval: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import sys
        import time

        self.total, self.done, self.start_done = total, done, done
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.clock = clock or time.monotonic
        self.t0 = self.clock()
        self.last = -float("inf")
        self.last_line = ""
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def _line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = (self.done - self.start_done) / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        text = f"sweep: {self.done}/{self.total} runs ({pct:.0f}%)  {rate:.3g} runs/s"
        left = self.total - self.done
        if left > 0:
            eta = _clock_text(left / rate) if rate > 0 else "?"
            return f"{text}  ETA {eta}"
        return f"{text}  elapsed {_clock_text(elapsed)}"

    def advance(self, runs: int) -> None:
        """Count ``runs`` more finished runs and redraw if due."""
        self.done += runs
        now = self.clock()
        if self.tty or now - self.last >= self.interval:
            self._write(self._line(now))
            self.last = now

    def finish(self) -> None:
        """Print the final line (unless it is already the last line printed)."""
        line = self._line(self.clock())
        if self.tty or line != self.last_line:
            self._write(line, end=True)

    def _write(self, line: str, *, end: bool = False) -> None:
        self.last_line = line
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if end else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _clock_text(seconds: float) -> str:
    if not seconds < 1e7:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
