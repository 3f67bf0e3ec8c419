r"""``run_plan``: execute a sweep plan as batched tensor programs on a torch device.

Semantics (shared with the Rust core and :mod:`critbatch.targets`): each run starts at
``x0`` with a zeroed optimizer state, ``sfo = 0`` and ``t = 0``. At every check
(``t % check_every == 0`` or ``t == max_steps``) the exact full loss and gradient norm are
computed (the norm scaled, so that it is finite whenever it is representable); the run
diverges if the loss or the iterate is not finite (``stop_reason = "diverged_nonfinite"``) or
the loss exceeds ``divergence_factor`` times :math:`\max(|f(x_0)|, 1)` (``"diverged_blowup"``);
otherwise it reaches the target if any criterion holds (``"reached"``); otherwise it stops
unreached at ``t == max_steps`` (``"budget"``); a run that stops reached or at its budget with a
non-finite gradient norm is ``"diverged_nonfinite"`` too. Between checks it takes a
step with batch size :math:`b_t = \min(\lceil b_0 \cdot \text{factor}(\tau)\rceil,
b_{max})` (also at most ``n`` under ``"shuffle"``, at least 1) and learning rate
:math:`\eta_t = \eta_0 \cdot \text{factor}(\tau)`, where :math:`\tau = t` (``unit="step"``) or
:math:`\text{SFO}/n` (``unit="epoch"``), and adds :math:`b_t` to its SFO.

Design notes:

* **Chunks.** Runs are grouped by (problem, optimizer, schedule): one group shares every
  tensor program. Inside a group they are sorted by base batch size (the plan already lists
  them so) and cut into chunks of at most ``max_chunk_runs`` runs (and at most
  ``BLOCK_ELEMENTS / n`` under ``"shuffle"``, whose permutations take ``runs x n`` indices).
  All runs of a chunk start together, so they share the step count, which is what Adam's bias
  correction needs.
* **Stopped runs leave the tensors.** At a check where some runs stop, their record is written
  and the iterate, the optimizer state and the sampler state are cut down to the runs still
  going, so a stopped run is frozen and costs nothing afterwards.
* **Schedules on the host.** Batch sizes and learning rates are computed with NumPy from the
  spec's own rules (:meth:`critbatch.schedules.Rule.factor` for ``unit="step"``, its
  vectorized mirror for ``unit="epoch"``), so they agree exactly with the spec layer; only
  the ``R``-vectors go to the device.
* **Random streams.** One ``torch.Generator`` per chunk, seeded from the plan's seed and the
  run index of the chunk's first run (through ``numpy.random.SeedSequence``). The streams
  match the Rust core's in distribution, not bitwise; the same plan on the same device and
  dtype gives the same table, but a run's numbers depend on the chunk it shares.
* **wall_time.** Seconds from the start of the run's chunk to its stop, so that it reads as the
  time to target of that run when its chunk is run as one batched program.
* **Measured** (development machine: 2 shared CPU cores under load, torch 2.x CPU, float64,
  1,000 runs per chunk, checks every 10 steps; ``runs x steps / s``, Rust core in brackets):
  NQM ``dim=100``, SGD, ``b=8``: 1.0e5 (1.2e6); the same with Adam: 1.0e5 (7.0e5); least
  squares ``n=1024, d=32``, ``b=32``: 1.4e5 (3.5e5), ``b=512``: 3.5e4 (7.1e4); with a check
  every step: 5.9e4 (6.2e4), since the full-data check then dominates both. The NQM step is
  bound by ``torch.randn``. With two intra-op threads on the loaded machine every case ran 3 to
  10 times slower than with one (``run_plan(..., threads=1)``); a GPU is where this backend
  pays (not measured here: no GPU was available).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from critbatch import _validate as v
from critbatch.plan import Plan
from critbatch.results import stop_reasons
from critbatch.schedules import Rule, Schedule
from critbatch.torch.optimizers import StepRule, from_spec
from critbatch.torch.problems import BLOCK_ELEMENTS, TorchProblem, build, row_norms

__all__ = ["factor_array", "run_plan"]

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_CHUNK_RUNS = {"cpu": 1024, "cuda": 16384}


def factor_array(rule: Rule, t: np.ndarray) -> np.ndarray:
    """Vectorized :meth:`critbatch.schedules.Rule.factor` for an array of times.

    Args:
        rule: a schedule rule.
        t: times (steps or epochs), non-negative.

    Returns:
        The factor at each time, elementwise equal to ``rule.factor``.

    Example:
        >>> from critbatch import schedules
        >>> factor_array(schedules.geometric(2.0, 3.0, max_factor=5.0), np.array([0.0, 2.5, 4.0]))
        array([1., 3., 5.])

    """
    t = np.asarray(t, dtype=np.float64)
    if rule.kind == "constant":
        return np.ones_like(t)
    if rule.kind == "cosine":
        frac = np.minimum(t, rule.every) / rule.every
        return rule.min_factor + (1 - rule.min_factor) * (1 + np.cos(math.pi * frac)) / 2
    # A power that overflows is infinite, as in Rule.factor and the core; max_factor caps it.
    with np.errstate(over="ignore"):
        stage = np.floor(t / rule.every)
        if rule.kind == "step":
            return rule.rate**stage
        if rule.kind == "geometric":
            return np.minimum(rule.rate**stage, rule.max_factor)
        if rule.kind == "polynomial":
            return np.minimum((1.0 + stage) ** rule.rate, rule.max_factor)
        if rule.kind == "linear":
            if rule.rate == 0:
                return np.ones_like(t)
            return np.minimum(1.0 + rule.rate * stage, rule.max_factor)
    raise ValueError(f"rule.kind {rule.kind!r} is not a schedule rule")


def _factors(rule: Rule, t: int, sfo: np.ndarray, n: int | None) -> np.ndarray | float:
    if rule.kind == "constant":
        return 1.0
    if rule.unit == "step":
        return rule.factor(float(t))
    assert n is not None  # make_plan rejects epoch units on problems without a data set
    return factor_array(rule, sfo / n)


class _Chunk:
    """The runs of one chunk: their iterates, optimizer state and oracle, cut down as they stop."""

    def __init__(
        self,
        problem: TorchProblem,
        rule: StepRule,
        schedule: Schedule,
        b0: np.ndarray,
        lr0: np.ndarray,
        generator: torch.Generator,
    ):
        n_runs = b0.shape[0]
        self.problem, self.rule, self.schedule = problem, rule, schedule
        self.x = problem.x0[None, :].repeat(n_runs, 1)
        self.state = rule.init(self.x)
        self.oracle = problem.oracle(n_runs, generator)
        self.active = np.arange(n_runs)
        # Batch sizes stay integers where the schedule keeps them (exact beyond 2^53); a
        # growing batch is computed in float64 as in the core (check_batch_bounds keeps it
        # below 2^53, where that is exact).
        self.b0, self.lr0 = b0.astype(np.int64), lr0.astype(np.float64)
        cap: float = math.inf if schedule.max_batch_size is None else schedule.max_batch_size
        n = problem.n_samples
        sampling = getattr(problem, "sampling", "")
        self.cap = min(cap, n) if (sampling == "shuffle" and n is not None) else cap
        self.sfo = np.zeros(n_runs, dtype=np.int64)
        self._lr_cache: tuple[Any, torch.Tensor] | None = None

    def keep(self, keep: np.ndarray) -> None:
        """Drop every run not at the positions ``keep`` (into the current active set)."""
        index = torch.as_tensor(keep, device=self.x.device)
        self.x = self.x[index]
        self.state = {k: s[index] for k, s in self.state.items()}
        self.oracle.select(keep)
        self.active = self.active[keep]
        self._lr_cache = None

    def step(self, t: int) -> None:
        """One optimizer step of every active run at step count ``t`` (before the update)."""
        n = self.problem.n_samples
        sfo = self.sfo[self.active]
        b0 = self.b0[self.active]
        if self.schedule.batch.kind == "constant":
            batch = b0 if math.isinf(self.cap) else np.minimum(b0, int(self.cap))
        else:
            raw = np.ceil(b0 * _factors(self.schedule.batch, t, sfo, n))
            batch = np.clip(raw, 1, self.cap).astype(np.int64)
        f_lr = _factors(self.schedule.lr, t, sfo, n)
        lr = self._lr(f_lr)
        grad = self.oracle.grad(self.x, batch)
        self.rule.step(self.x, grad, lr, self.state, t + 1)
        self.sfo[self.active] += batch

    def _lr(self, factor: np.ndarray | float) -> torch.Tensor:
        if (
            isinstance(factor, float)
            and self._lr_cache is not None
            and (self._lr_cache[0] == factor)
        ):
            return self._lr_cache[1]
        lr_host = self.lr0[self.active] * factor
        lr = torch.as_tensor(lr_host, dtype=self.x.dtype).to(self.x.device)[:, None]
        if isinstance(factor, float):
            self._lr_cache = (factor, lr)
        return lr


def _chunk_seed(plan_seed: int, first_run: int) -> int:
    state = np.random.SeedSequence([plan_seed, first_run, 0x70524348]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def _run_chunk(
    plan: Plan,
    rows: np.ndarray,
    problem: TorchProblem,
    rule: StepRule,
    schedule: Schedule,
    device: torch.device,
    out: dict[str, np.ndarray],
    traj: list[np.ndarray] | None,
) -> None:
    target = plan.target
    core = target.to_core()
    loss_below, grad_below = core["loss_below"], core["grad_norm_below"]
    coord, level = core["position_coordinate"], core["position_below"]
    every, max_steps, factor = target.check_every, target.max_steps, target.divergence_factor
    k = plan.trajectory_every
    generator = torch.Generator(device=device)
    generator.manual_seed(_chunk_seed(plan.seed, int(plan.cells["run_index"][rows[0]])))
    chunk = _Chunk(
        problem,
        rule,
        schedule,
        plan.cells["batch_size"][rows],
        plan.cells["learning_rate"][rows],
        generator,
    )
    blow_up = np.zeros(rows.shape[0])
    columns: list[tuple[np.ndarray, np.ndarray]] = []
    start = time.perf_counter()
    t = 0
    while True:
        check = t % every == 0 or t == max_steps
        record = k > 0 and t % k == 0
        if check:
            loss_t, grad = problem.loss_grad(chunk.x)
            finite = torch.isfinite(chunk.x).all(dim=1).to(chunk.x.dtype)
            packed = (
                torch.stack(
                    [
                        loss_t,
                        row_norms(grad),
                        finite,
                        chunk.x[:, 0],
                        chunk.x[:, coord],
                    ]
                )
                .cpu()
                .numpy()
            )
            loss, gnorm, finite_x, x0, pos = packed
        elif record:
            loss = problem.loss(chunk.x).cpu().numpy()
        if record:
            columns.append((chunk.active.copy(), loss.copy()))
        if check:
            with np.errstate(invalid="ignore", over="ignore"):
                if t == 0:  # an infinite level (loss0 near the top of float64) never triggers
                    blow_up[:] = factor * np.maximum(np.abs(loss), 1.0)
                nonfinite = ~np.isfinite(loss) | (finite_x == 0)
                blowup = ~nonfinite & (loss > blow_up[chunk.active])
                reached = ~nonfinite & ~blowup & (
                    (loss <= loss_below) | (gnorm <= grad_below) | (pos < level))
            stop = nonfinite | blowup | reached | (t == max_steps)
            # A stop with a non-finite gradient norm is divergence, as in the core.
            nonfinite |= stop & ~blowup & ~np.isfinite(gnorm)
            reached &= ~nonfinite
            diverged = nonfinite | blowup
            if stop.any():
                where = rows[chunk.active[stop]]
                out["steps"][where] = t
                out["sfo"][where] = chunk.sfo[chunk.active[stop]]
                out["reached"][where] = reached[stop]
                out["diverged"][where] = diverged[stop]
                out["stop_reason"][where] = stop_reasons(reached, nonfinite, blowup)[stop]
                out["final_loss"][where] = loss[stop]
                out["final_grad_norm"][where] = gnorm[stop]
                out["final_x0"][where] = x0[stop]
                out["wall_time"][where] = time.perf_counter() - start
                if stop.all():
                    break
                chunk.keep(np.flatnonzero(~stop))
        chunk.step(t)
        t += 1
    if traj is not None:
        table = np.full((rows.shape[0], len(columns)), np.nan)
        for j, (active, values) in enumerate(columns):
            table[active, j] = values
        for position, row in enumerate(rows):
            traj[row] = table[position, : out["steps"][row] // k + 1].copy()


def _groups(plan: Plan, max_runs: int) -> list[np.ndarray]:
    """Row indices of each chunk: same (problem, optimizer, schedule), sorted by batch size."""
    cells = plan.cells
    keys = np.stack([cells["problem_index"], cells["optimizer_index"], cells["schedule_index"]])
    chunks: list[np.ndarray] = []
    unique = np.unique(keys, axis=1)
    for key in unique.T:
        rows = np.flatnonzero((keys == key[:, None]).all(axis=0))
        rows = rows[np.argsort(cells["batch_size"][rows], kind="stable")]
        problem = plan.problems[key[0]]
        size = max_runs
        if getattr(problem, "sampling", "") == "shuffle" and problem.n_samples:
            size = max(1, min(size, BLOCK_ELEMENTS // problem.n_samples))
        chunks.extend(rows[i : i + size] for i in range(0, rows.shape[0], size))
    return chunks


def run_plan(
    plan: Plan,
    device: Any = "cpu",
    *,
    dtype: str = "float64",
    max_chunk_runs: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every cell of ``plan`` as batched tensor programs and return the outcome columns.

    Args:
        plan: a plan from :func:`critbatch.make_plan` (synthetic problems only).
        device: a torch device or its name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: ``"float64"`` (default, as the Rust core) or ``"float32"`` (faster on GPUs).
        max_chunk_runs: the most runs advanced together (default 1,024 on CPU, 16,384 on GPU).
        threads: torch's intra-op CPU threads during the call (default: leave torch's setting);
            on a loaded machine one thread is often the fastest for small chunks.

    Returns:
        A dict with the columns of :data:`critbatch.results.OUTCOME_COLUMNS` in plan order
        (``steps``, ``sfo``, ``reached``, ``diverged``, ``stop_reason``, ``final_loss``,
        ``final_grad_norm``, ``final_x0``, ``wall_time``), plus ``"trajectories"`` (one array
        per run: the exact loss every ``plan.trajectory_every`` steps from step 0 up to its
        stop) when asked for.

    Example:
        >>> import critbatch as cb
        >>> plan = cb.make_plan(cb.problems.nqm([1.0], [0.0]), "sgd", [1], [0.5], 1,
        ...                     cb.targets.target(loss_below=1e-3, max_steps=100))
        >>> out = run_plan(plan)
        >>> int(out["steps"][0]), bool(out["reached"][0])  # 0.5 * 0.5**(2t) <= 1e-3
        (5, True)

    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a critbatch Plan, got {type(plan).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device, got {device!r}") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device")
    if max_chunk_runs is None:
        max_chunk_runs = DEFAULT_CHUNK_RUNS.get(dev.type, DEFAULT_CHUNK_RUNS["cpu"])
    else:
        max_chunk_runs = v.positive_int("max_chunk_runs", max_chunk_runs)
    if threads is not None:
        threads = v.threads("threads", threads)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_plan(plan, dev, DTYPES[dtype], max_chunk_runs)
    finally:
        torch.set_num_threads(previous_threads)


def _run_plan(
    plan: Plan, dev: torch.device, dtype: torch.dtype, max_chunk_runs: int
) -> dict[str, Any]:
    n = len(plan)
    out: dict[str, np.ndarray] = {
        "steps": np.zeros(n, dtype=np.int64),
        "sfo": np.zeros(n, dtype=np.int64),
        "reached": np.zeros(n, dtype=bool),
        "diverged": np.zeros(n, dtype=bool),
        "stop_reason": np.full(n, "budget", dtype=object),
        "final_loss": np.full(n, np.nan),
        "final_grad_norm": np.full(n, np.nan),
        "final_x0": np.full(n, np.nan),
        "wall_time": np.zeros(n),
    }
    traj: list[np.ndarray] | None = [np.empty(0)] * n if plan.trajectory_every > 0 else None
    problems: dict[int, TorchProblem] = {}
    rules: dict[int, StepRule] = {}
    for rows in _groups(plan, max_chunk_runs):
        p, o, s = (
            int(plan.cells[c][rows[0]])
            for c in ("problem_index", "optimizer_index", "schedule_index")
        )
        if p not in problems:
            problems[p] = build(plan.problems[p], dev, dtype)
        if o not in rules:
            rules[o] = from_spec(plan.optimizers[o])
        _run_chunk(plan, rows, problems[p], rules[o], plan.schedules[s], dev, out, traj)
    result: dict[str, Any] = dict(out)
    if traj is not None:
        result["trajectories"] = traj
    return result
