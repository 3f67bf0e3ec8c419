r"""``run_plan``: execute a sweep plan as batched tensor programs on a torch device.

One loop for every problem kind, the synthetic problems and real networks alike (semantics
shared with the Rust core and :mod:`critbatch.targets`): each run starts at its initial iterate
(``x0``, or a network's weights for its replicate) with a zeroed optimizer state, ``sfo = 0`` and
``t = 0``. At every check (``t % check_every == 0``, ``t == max_steps``, or, for that run, the
step whose batch would take its SFO past the SFO budget) the loss is computed
(exact and full for a synthetic problem, with its gradient norm scaled so that it is finite
whenever it is representable; a network's on its evaluation subset, with the validation accuracy
and the gradient norm only when the target reads them); the run diverges if the loss or the
iterate is not finite (``stop_reason = "diverged_nonfinite"``) or the loss exceeds
``divergence_factor`` times :math:`\max(|f(x_0)|, 1)` (``"diverged_blowup"``); otherwise it
reaches the target if any criterion holds (``"reached"``, ``loss_gap_below`` measured from
``plan.min_losses``); otherwise it stops unreached at ``t == max_steps`` or before the step that
would cross the SFO budget (``"budget"``); a run that stops reached or at its budget with a
non-finite gradient norm is ``"diverged_nonfinite"`` too. Between checks it takes a step with
batch size :math:`b_t` and learning rate :math:`\eta_t` from
:meth:`critbatch.schedules.Schedule.batch_size` and
:meth:`~critbatch.schedules.Schedule.lr_factor` (the one Python implementation of the
schedule arithmetic), and adds :math:`b_t` to its SFO.

Design notes:

* **Chunks.** Runs are grouped by (problem, optimizer, schedule): one group shares every
  tensor program. Inside a group they are sorted by base batch size (the plan already lists
  them so) and cut into chunks of at most ``max_chunk_runs`` runs (fewer where a run's state is
  large: ``shuffle`` permutations, a network's parameters). All runs of a chunk start together,
  so they share the step count, which is what Adam's bias correction needs.
* **Chunking never changes a run's numbers.** A run's random numbers are a pure function of
  (sweep seed, run index), or with common random numbers of (sweep seed, problem, batch size,
  replicate) (:mod:`critbatch.torch.rng`, keyed as the core keys its runs), its
  initial weights of (sweep seed, replicate), and its arithmetic is the same whatever runs share
  its chunk; only matrix products may round differently with the number of runs in one call.
* **Stopped runs leave the tensors.** At a check where some runs stop, their record is written
  and the iterate, the optimizer state and the oracle's state are cut down to the runs still
  going, so a stopped run is frozen and costs nothing afterwards.
* **What crosses to the host.** Nothing per step for a constant schedule (batch sizes and
  learning rates live on the device; a step-unit schedule's factor is a scalar kernel argument;
  only an epoch-unit schedule copies a small per-run vector). At a check, one stacked
  ``(values, runs)`` tensor comes back, from which the stops are decided; runs that stop add
  one more for their extra columns. So ``check_every`` sets the synchronisation rate: on a GPU
  choose it well above 1.
* **Weight averaging.** With ``plan.weight_averaging = tau`` each run also keeps
  :math:`m_k = \tau m_{k-1} + (1-\tau) x_k` (:math:`m_0 = 0`, one more ``(runs, dim)`` tensor,
  updated on the device after every step), and everything a check reads (loss, gradient norm,
  accuracies, coordinates, divergence) and the trajectories are evaluated at the bias-corrected
  average :math:`\bar x_k = m_k / (1 - \tau^k)`, :math:`\bar x_0 = x_0` (Zhang et al. 2024,
  arXiv 2410.21676; :mod:`critbatch.plan`). The optimizer steps from :math:`x_k` as without it.
  A network with buffers (BatchNorm) is evaluated at the averaged parameters with the run's own
  running statistics, which are not averaged.
* **Preconditioner.** For a network measuring its noise scale, each step first hands the
  oracle the rule's diagonal preconditioner of that step
  (:meth:`critbatch.torch.optimizers.StepRule.preconditioner`, read from the optimizer state
  before the update, on the device; ``None`` for SGD-like rules), from which it measures the
  preconditioned noise scale beside the plain one (:mod:`critbatch.torch.noise_scale`).
* **Memory.** Runs per chunk and the blocks of sums over samples are bounded by the budgets of
  :mod:`critbatch.torch.memory`: fixed caps on the CPU, shares of the free memory on a GPU.
* **torch.compile: measured, not used** (``benches/compile_digits.py``; 2 shared CPU cores,
  one thread, float32, digits MLP 64-32-10). Compiling the batched minibatch gradient makes a
  steady-state step 2.6 to 9.8 times faster (R = 8 runs, b = 32: 1.1 ms eager, 0.11 ms
  compiled), but its first call takes 6.5 to 45 s with a cold inductor cache (0.7 to 2.5 s
  warm), and each new run count, as runs stop and chunks shrink, recompiles (the default limit
  of 8 recompilations is hit) unless shapes are dynamic. A 24-run digits sweep took 7.8 to 8.6 s
  eager, 17 s compiled from a cold cache and 9.7 s from a warm one, static or dynamic shapes
  alike. Worth measuring again on a GPU, where steps dominate longer sweeps.
* **Precision.** ``plan.dtype`` (default float64 for synthetic problems, float32 for networks);
  ``plan.precision = "tf32"`` lets CUDA matrix products and convolutions use TensorFloat-32,
  ``"highest"`` forbids it (cuDNN's own default allows it), ``"bf16"`` autocasts a network's
  forward and backward pass to bfloat16.
* **wall_time.** Seconds from the start of the run's chunk to its stop, so that it reads as the
  time to target of that run when its chunk is run as one batched program.
* **Measured** (development machine: 2 CPU cores shared with other jobs, load average about
  2.7; torch 2.x CPU, one thread, float64, 1,000 runs x 300 steps, checks every 10 steps; best of
  two; ``runs x steps / s``, the Rust core on 2 threads in brackets, the previous torch backend
  with one generator per chunk in braces): NQM ``dim=100``, SGD, ``b=8``: 5.2e5 (4.0e6) {3.4e5};
  the same with Adam: 5.1e5 (1.4e6) {2.8e5}; least squares ``n=1024, d=32``, ``b=32``: 2.2e5
  (7.6e5) {2.1e5}, ``b=512``: 4.0e4 (1.4e5) {4.4e4}. The counter-based streams cost no
  throughput (the NQM got faster: ``torch.randn`` with a CPU generator was the slower draw). A
  GPU is where this backend pays: ``make gpu-check`` measures it against the core.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from critbatch import _validate as v
from critbatch.optimizers import layers_for
from critbatch.plan import TRAJECTORY_METRICS, Plan
from critbatch.problems import Network
from critbatch.results import OPTIONAL_COLUMNS, stop_reasons
from critbatch.schedules import Schedule
from critbatch.torch import memory
from critbatch.torch.network import NetworkOracle
from critbatch.torch.optimizers import StepRule, from_spec
from critbatch.torch.problems import Batch, Oracle, TorchProblem, build
from critbatch.torch.rng import Streams, plan_keys

__all__ = ["DTYPES", "run_plan"]

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_CHUNK_RUNS = {"cpu": 1024, "cuda": 16384}
#: ``(runs, dim)`` tensors a network's chunk holds per run, counted against the ``"state"``
#: budget of :mod:`critbatch.torch.memory`: the iterate, the gradient and up to two optimizer
#: buffers (Adam's moments); the weight average adds one.
NETWORK_STATE_COPIES = 4


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device, got {device!r}") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return dev


def _to_device(array: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small host vector on the device, without blocking the host on a GPU."""
    host = torch.as_tensor(array, dtype=dtype)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class _Chunk:
    """The runs of one chunk: iterate, optimizer state, oracle and schedule, cut as they stop."""

    def __init__(
        self,
        plan: Plan,
        rows: np.ndarray,
        problem: TorchProblem,
        rule: StepRule,
        schedule: Schedule,
        device: torch.device,
    ):
        cells = plan.cells
        self.problem, self.rule, self.schedule, self.device = problem, rule, schedule, device
        self.x = problem.initial(cells["seed"][rows], plan.seed)
        self.state = rule.init(self.x)
        self.tau = plan.weight_averaging
        # m_k of the weight average (module docstring), or None without one
        self.average = None if self.tau is None else torch.zeros_like(self.x)
        self.oracle: Oracle = problem.oracle(
            Streams(plan.seed, cells["run_index"][rows], device, keys=plan_keys(plan, rows))
        )
        # the network oracle that measures the noise scale reads each step's preconditioner
        self.preconditioned: NetworkOracle | None = None
        if isinstance(self.oracle, NetworkOracle) and self.oracle.measures_noise:
            self.preconditioned = self.oracle
        self.active = np.arange(rows.shape[0])
        self.b0 = cells["batch_size"][rows].astype(np.int64)
        self.lr0 = cells["learning_rate"][rows].astype(np.float64)
        self.lr0_dev = _to_device(self.lr0, self.x.dtype, device)[:, None]
        n = problem.n_samples
        self.n = n
        self.n_cap = n if getattr(problem, "sampling", "") == "shuffle" else None
        self.sfo = np.zeros(rows.shape[0], dtype=np.int64)
        self._batch: Batch | None = None
        self._batch_step = -1
        self._lr: tuple[float, torch.Tensor] | None = None

    def keep(self, keep: np.ndarray) -> None:
        """Drop every run not at the positions ``keep`` (into the current active set)."""
        index = torch.as_tensor(keep, device=self.device)
        self.x = self.x[index]
        if self.average is not None:
            self.average = self.average[index]
        self.state = {k: s[index] for k, s in self.state.items()}
        self.oracle.select(keep)
        self.active = self.active[keep]
        self.lr0_dev = self.lr0_dev[index]
        self._batch, self._lr = None, None

    def batch(self, t: int) -> Batch:
        """The batch sizes of step ``t`` (kept while a constant rule keeps them)."""
        constant = self.schedule.batch.kind == "constant"
        if self._batch is not None and (constant or self._batch_step == t):
            return self._batch
        sizes = self.schedule.batch_size(
            self.b0[self.active], t, self.sfo[self.active], self.n, self.n_cap
        )
        self._batch, self._batch_step = Batch(sizes, self.device), t
        return self._batch

    def lr(self, t: int) -> torch.Tensor:
        """The ``(R, 1)`` learning rates of step ``t``."""
        s = self.schedule
        if s.lr.unit == "epoch" and s.lr.kind != "constant":
            factors = s.lr_factor(t, self.sfo[self.active], self.n)
            return _to_device(self.lr0[self.active] * factors, self.x.dtype, self.device)[:, None]
        factor = float(s.lr_factor(t, 0, self.n))
        if self._lr is None or self._lr[0] != factor:
            self._lr = (factor, self.lr0_dev if factor == 1.0 else self.lr0_dev * factor)
        return self._lr[1]

    def step(self, t: int) -> None:
        """One optimizer step of every active run at step count ``t`` (before the update)."""
        batch = self.batch(t)
        lr = self.lr(t)
        if self.preconditioned is not None:
            self.preconditioned.set_preconditioner(self.rule.preconditioner(self.state, t + 1))
        grad = self.oracle.grad(self.x, batch, t)
        self.rule.step(self.x, grad, lr, self.state, t + 1)
        if self.average is not None and self.tau is not None:
            self.average.mul_(self.tau).add_(self.x, alpha=1.0 - self.tau)
        self.sfo[self.active] += batch.sizes

    def checked(self, t: int) -> torch.Tensor:
        r"""The iterates that checks read at step count ``t``.

        :math:`x_t`, or with weight averaging :math:`\bar x_t = m_t / (1 - \tau^t)`
        (:math:`x_0` at ``t = 0``, where no step has been averaged yet).
        """
        if self.average is None or self.tau is None or t == 0:
            return self.x
        return self.average / (1.0 - self.tau**t)


def _run_chunk(
    plan: Plan,
    rows: np.ndarray,
    problem: TorchProblem,
    rule: StepRule,
    schedule: Schedule,
    device: torch.device,
    out: dict[str, np.ndarray],
    traj: dict[str, list[np.ndarray]] | None,
) -> None:
    target = plan.target
    core = target.to_core()
    loss_below, grad_below = core["loss_below"], core["grad_norm_below"]
    coord, level = core["position_coordinate"], core["position_below"]
    acc_above = math.nan if target.accuracy_above is None else target.accuracy_above
    network = problem.is_network
    every, max_steps = target.checks_every(network), target.max_steps
    factor = target.divergence_factor
    sfo_budget = target.sfo_budget(problem.n_samples)
    gap = math.nan if target.loss_gap_below is None else target.loss_gap_below
    f_star = math.nan
    if plan.min_losses is not None:
        f_star = plan.min_losses[int(plan.cells["problem_index"][rows[0]])]
    k = plan.trajectory_every
    record_grad = "grad_norm" in plan.trajectory_metrics
    chunk = _Chunk(plan, rows, problem, rule, schedule, device)
    blow_up = np.zeros(rows.shape[0])
    # per recorded step: the active runs and their (loss, gradient norm) rows
    columns: list[tuple[np.ndarray, np.ndarray]] = []
    nan = torch.full((chunk.x.shape[0],), math.nan, dtype=chunk.x.dtype, device=device)
    start = time.perf_counter()
    t = 0
    while True:
        # judged: every run at a check; a run whose next step would cross the SFO budget too
        judged: bool | np.ndarray = t % every == 0 or t == max_steps
        spent = np.zeros(chunk.active.shape[0], dtype=bool)
        if sfo_budget is not None:
            spent = chunk.sfo[chunk.active] + chunk.batch(t).sizes > sfo_budget
            if not judged and spent.any():
                judged = spent
        check = judged is True or isinstance(judged, np.ndarray)
        record = k > 0 and t % k == 0
        x = chunk.checked(t) if check or record else chunk.x
        if check:
            vals = chunk.oracle.check(
                x,
                accuracy=target.accuracy_above is not None,
                grad_norm=not network
                or target.grad_norm_below is not None
                or (record and record_grad),
            )
            none = nan[: x.shape[0]]
            finite = torch.isfinite(x).all(dim=1).to(x.dtype)
            packed = (
                torch.stack(
                    [
                        vals["loss"].to(x.dtype),
                        vals.get("grad_norm", none).to(x.dtype),
                        vals.get("accuracy", none).to(x.dtype),
                        finite,
                        none if network else x[:, 0],
                        none if network else x[:, coord],
                    ]
                )
                .cpu()
                .numpy()
            )
            loss, gnorm, acc, finite_x, x0, pos = packed
        elif record and record_grad:
            vals = chunk.oracle.check(x, accuracy=False, grad_norm=True)
            both = [vals["loss"].to(x.dtype), vals["grad_norm"].to(x.dtype)]
            loss, gnorm = torch.stack(both).cpu().numpy()
        elif record:
            loss = chunk.oracle.loss(x).cpu().numpy()
        if record:
            columns.append((chunk.active.copy(), np.stack([loss, gnorm if record_grad else loss])))
        if check:
            with np.errstate(invalid="ignore", over="ignore"):
                if t == 0:  # an infinite level (loss0 near the top of float64) never triggers
                    blow_up[:] = factor * np.maximum(np.abs(loss), 1.0)
                nonfinite = ~np.isfinite(loss) | (finite_x == 0)
                blowup = ~nonfinite & (loss > blow_up[chunk.active])
                reached = (
                    ~nonfinite
                    & ~blowup
                    & (
                        (loss <= loss_below)
                        | (loss - f_star <= gap)
                        | (gnorm <= grad_below)
                        | (pos < level)
                        | (acc >= acc_above)
                    )
                )
            stop = (nonfinite | blowup | reached | (t == max_steps) | spent) & judged
            if stop.any():
                at = np.flatnonzero(stop)
                have = {"grad_norm": gnorm} if "grad_norm" in vals else {}
                if "accuracy" in vals:
                    have["accuracy"] = acc
                extra = chunk.oracle.final(x, at, have)
                if "grad_norm" in extra:
                    gnorm[at] = extra["grad_norm"]
                if "accuracy" in extra:
                    acc[at] = extra["accuracy"]
                # A stop with a non-finite gradient norm is divergence, as in the core.
                nonfinite |= stop & ~blowup & ~np.isfinite(gnorm)
                reached &= ~nonfinite
                diverged = nonfinite | blowup
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
                if "final_accuracy" in out:
                    out["final_accuracy"][where] = acc[stop]
                    for name in ("test_accuracy", "noise_scale", "noise_scale_preconditioned"):
                        if name in extra:
                            out[name][where] = extra[name]
                if stop.all():
                    break
                chunk.keep(np.flatnonzero(~stop))
        chunk.step(t)
        t += 1
    for metric, paths in (traj or {}).items():
        i = TRAJECTORY_METRICS.index(metric)
        table = np.full((rows.shape[0], len(columns)), np.nan)
        for j, (active, values) in enumerate(columns):
            table[active, j] = values[i]
        for position, row in enumerate(rows):
            paths[row] = table[position, : out["steps"][row] // k + 1].copy()


def _dtype(problem: Any, dtype: str | None) -> torch.dtype:
    """The float type of ``problem``'s runs: ``dtype``, else float32 for a network, else float64."""
    return DTYPES[dtype or ("float32" if isinstance(problem, Network) else "float64")]


def _chunk_limit(
    problem: Any,
    max_runs: int,
    device: torch.device,
    dtype: torch.dtype,
    averaging: bool = False,
    free: int | None = None,
) -> int:
    """The most runs of ``problem`` one chunk holds (per-run state within the memory budgets).

    A network's runs hold :data:`NETWORK_STATE_COPIES` (plus one with ``averaging``) parameter
    vectors each, against the ``"state"`` budget; ``shuffle`` permutations hold ``n`` indices
    per run, against the ``"intermediate"`` budget on the CPU (measured: smaller chunks of
    permutations ran faster there) and the ``"state"`` budget on a GPU. ``free``: the device's
    free bytes, when known (:func:`critbatch.torch.memory.elements`).
    """
    size = max_runs
    if isinstance(problem, Network):
        copies = NETWORK_STATE_COPIES + int(averaging)
        budget = memory.elements(device, "state", dtype, free=free)
        size = min(size, max(1, budget // (copies * problem.dim)))
    if getattr(problem, "sampling", "") == "shuffle" and problem.n_samples:
        which = "intermediate" if device.type == "cpu" else "state"
        indices = memory.elements(device, which, torch.long, free=free)
        size = min(size, max(1, indices // problem.n_samples))
    return size


def _groups(plan: Plan, max_runs: int, device: torch.device, dtype: str | None) -> list[np.ndarray]:
    """Row indices of each chunk: same (problem, optimizer, schedule), sorted by batch size."""
    cells = plan.cells
    keys = np.stack([cells["problem_index"], cells["optimizer_index"], cells["schedule_index"]])
    chunks: list[np.ndarray] = []
    unique = np.unique(keys, axis=1)
    for key in unique.T:
        rows = np.flatnonzero((keys == key[:, None]).all(axis=0))
        rows = rows[np.argsort(cells["batch_size"][rows], kind="stable")]
        problem = plan.problems[key[0]]
        averaging = plan.weight_averaging is not None
        size = _chunk_limit(problem, max_runs, device, _dtype(problem, dtype), averaging)
        chunks.extend(rows[i : i + size] for i in range(0, rows.shape[0], size))
    return chunks


def run_plan(
    plan: Plan,
    device: Any = "cpu",
    *,
    dtype: str | None = None,
    max_chunk_runs: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every cell of ``plan`` as batched tensor programs and return the outcome columns.

    Args:
        plan: a plan from :func:`critbatch.make_plan` (any problem kind, networks included).
        device: a torch device or its name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        dtype: ``"float64"`` or ``"float32"``; default ``plan.dtype``, else float64 for the
            synthetic problems and float32 for networks.
        max_chunk_runs: the most runs advanced together (default 1,024 on CPU, 16,384 on GPU);
            never changes a run's random numbers.
        threads: torch's intra-op CPU threads during the call (default: 1 on the CPU, where
            these small batched programs ran 3 to 10 times faster on one thread than on two of
            the 2-core development machine; a GPU run leaves torch's setting).

    Returns:
        A dict with the columns of :data:`critbatch.results.OUTCOME_COLUMNS` in plan order
        (``steps``, ``sfo``, ``reached``, ``diverged``, ``stop_reason``, ``final_loss``,
        ``final_grad_norm``, ``final_x0``, ``wall_time``), for a plan with a network problem
        also :data:`critbatch.results.OPTIONAL_COLUMNS`, plus ``"trajectories"`` and
        ``"grad_norm_trajectories"`` (one array per run: the loss, and the full-gradient norm,
        every ``plan.trajectory_every`` steps from step 0 up to its stop; empty for a metric
        that ``plan.trajectory_metrics`` leaves out) when asked for.

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
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))}, got {dtype!r}")
    dev = _device(device)
    if max_chunk_runs is None:
        max_chunk_runs = DEFAULT_CHUNK_RUNS.get(dev.type, DEFAULT_CHUNK_RUNS["cpu"])
    else:
        max_chunk_runs = v.positive_int("max_chunk_runs", max_chunk_runs)
    if threads is not None:
        threads = v.threads("threads", threads)
    elif dev.type == "cpu":
        threads = 1
    previous_threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if threads is not None:
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        allow = plan.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
    try:
        return _run_plan(plan, dev, dtype or plan.dtype, max_chunk_runs)
    finally:
        torch.set_num_threads(previous_threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _run_plan(
    plan: Plan, dev: torch.device, dtype: str | None, max_chunk_runs: int
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
    if any(isinstance(p, Network) for p in plan.problems):
        out.update({c: np.full(n, np.nan) for c in OPTIONAL_COLUMNS})
    traj: dict[str, list[np.ndarray]] | None = None
    if plan.trajectory_every > 0:
        traj = {m: [np.empty(0)] * n for m in plan.trajectory_metrics}
    problems: dict[int, TorchProblem] = {}
    rules: dict[tuple[int, int], StepRule] = {}
    for rows in _groups(plan, max_chunk_runs, dev, dtype):
        p, o, s = (
            int(plan.cells[c][rows[0]])
            for c in ("problem_index", "optimizer_index", "schedule_index")
        )
        if p not in problems:
            spec = plan.problems[p]
            problems[p] = build(spec, dev, _dtype(spec, dtype), plan.precision)
        if (o, p) not in rules:  # LARS and LAMB take the problem's layers
            rules[o, p] = from_spec(
                plan.optimizers[o], layers_for(plan.optimizers[o], plan.problems[p])
            )
        _run_chunk(plan, rows, problems[p], rules[o, p], plan.schedules[s], dev, out, traj)
    result: dict[str, Any] = dict(out)
    if traj is not None:
        result["trajectories"] = traj.get("loss", [])
        result["grad_norm_trajectories"] = traj.get("grad_norm", [])
    return result
