r"""The sweep plan: the grid of runs as columns, each run with its index in the grid.

Grid order, slowest to fastest: problem, optimizer, schedule, batch size, learning rate, seed.
A run's random stream is derived from ``(sweep seed, run_index)`` only, so any subset of the
plan (a chunk, a resumed remainder, another backend's share) reproduces the same runs.

With ``common_random_numbers=True`` the stream is derived from ``(sweep seed, problem index,
base batch size, replicate id)`` instead (``rust/rng.rs``, ``crn_key``): runs that differ only
in optimizer, schedule or learning rate then share their gradient noise and minibatch indices,
so a paired comparison of them (:func:`critbatch.fit.compare_steps`,
:func:`critbatch.fit.compare_critical`) sees the effect of the change with less noise. Still a
function of the run's identity only: no dependence on threads, chunks or engines. The default
stays ``False``, so existing sweeps keep their streams.

A quasi-random search (``search``, :class:`critbatch.search.Search`) puts its trials on the
learning-rate axis: trial ``t`` of declared optimizer ``i`` and schedule ``j`` runs with
``optimizers[i * n_trials + t]``, ``schedules[j * n_trials + t]`` and the trial's learning rate
(:func:`critbatch.search.expand`), the column ``trial`` says which, and :attr:`Plan.trials` holds
the trials' points. A search's runs always use common random numbers: trials that differ only in
their hyperparameters share their gradient noise, at every batch size the same trials.

A plan also says how a backend computes (``dtype``: ``None`` for its default, float64 for the
synthetic problems and float32 for networks; the Rust core runs either, see
``docs/float32.md`` for what float32 changes; ``precision``: ``"highest"``, ``"tf32"`` for
TensorFloat-32 matrix products on GPUs, or ``"bf16"`` for bfloat16 autocast of a network's
forward and backward pass). :func:`check_backend` refuses, before anything runs, a plan that a
backend cannot execute as written.

``weight_averaging = tau`` (both backends; not with exact jumps) makes every check read an
exponentially weighted average of the run's iterates instead of the iterate itself (Zhang et al.
2024, arXiv 2410.21676, the EWA of their experiments): after step :math:`k \ge 1`

.. math::

    m_k = \tau m_{k-1} + (1 - \tau) x_k, \quad m_0 = 0, \qquad
    \bar x_k = m_k / (1 - \tau^k), \qquad \bar x_0 = x_0,

the bias-corrected average of the iterates after each step, :math:`x_1, \dots, x_k`, with weights
proportional to :math:`\tau^{k-j}` (as the authors' released code keeps it: an average started
at zero and divided by :math:`1 - \tau^k` when read; github.com/hlzhang109/critical-batch-size,
``olmo/optim.py``). The loss, gradient norm, accuracy and
coordinates that a check reads, the trajectories and the final columns all come from
:math:`\bar x_k`; the optimizer never sees it (docs/spec.md, ``weight_averaging``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.optimizers import Optimizer, check_layers, from_name
from critbatch.problems import MAX_DRAWN_BATCH, DoubleWell, FiniteSum, Network, Nqm, Problem
from critbatch.schedules import Schedule
from critbatch.targets import Target

PROBLEM_TYPES = (Nqm, FiniteSum, DoubleWell, Network)
#: The float types of both backends; ``None`` in a plan picks the default per problem.
DTYPES = ("float64", "float32")
#: Matrix-product precision of the torch backend: exact float32/64 arithmetic, TensorFloat-32
#: (GPUs), or bfloat16 autocast of the network forward/backward pass.
PRECISIONS = ("highest", "tf32", "bf16")
#: How a run advances between checkpoints: one step at a time, or (the Rust core, on the NQM with
#: SGD, heavy ball or Nesterov) an exact draw of the state at the next checkpoint from its
#: Gaussian law, in O(d) per checkpoint instead of O(d m) (``rust/jumps.rs``). The jumps are exact
#: in distribution at the checkpoints, the only times a target is judged, but use other random
#: numbers than step-by-step runs, so the default stays ``"steps"``.
MODES = ("steps", "exact_jumps")
#: What a trajectory records every ``trajectory_every`` steps from step 0: ``"loss"``, the exact
#: loss :math:`f(\theta_k)` (``Results.trajectories``), and ``"grad_norm"``, the exact
#: full-gradient norm :math:`\|\nabla f(\theta_k)\|` on the full data, computed as
#: ``final_grad_norm`` is (``Results.grad_norm_trajectories``). The default is the loss only.
TRAJECTORY_METRICS = ("loss", "grad_norm")
#: The top-level spec key of the iterate average's decay (:attr:`Plan.weight_averaging`).
WEIGHT_AVERAGING = "weight_averaging"
#: The largest batch size a growing schedule may reach, 2^53: the backends compute
#: ``ceil(b0 * factor)`` in float64, which counts exactly up to there.
EXACT_BATCH = 2**53


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything a backend needs: the specs once, and one row per run referring to them."""

    problems: tuple[Problem | Network, ...]
    optimizers: tuple[Optimizer, ...]
    schedules: tuple[Schedule, ...]
    target: Target
    seed: int
    cells: dict[str, np.ndarray] = field(repr=False)
    trajectory_every: int = 0
    dtype: str | None = None
    precision: str = "highest"
    mode: str = "steps"
    common_random_numbers: bool = False
    #: Each problem's exact minimum (:func:`critbatch.problems.min_loss`), when the target has a
    #: ``loss_gap_below``; ``None`` otherwise.
    min_losses: tuple[float, ...] | None = None
    #: What trajectories record (:data:`TRAJECTORY_METRICS`, in that order).
    trajectory_metrics: tuple[str, ...] = ("loss",)
    #: The decay :math:`\tau` in (0, 1) of the iterate average the checks read (module
    #: docstring); ``None``: checks read the iterate itself.
    weight_averaging: float | None = None
    #: A search's trials (:func:`critbatch.search.trials`: ``trial``, each hyperparameter and its
    #: ``u_<name>``, as columns indexed by the trial), or ``None`` for a grid.
    trials: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.cells["run_index"].shape[0])

    def subset(self, rows: Any) -> Plan:
        """The same specs with only the given rows (a slice or an index array) of the grid."""
        return Plan(
            self.problems,
            self.optimizers,
            self.schedules,
            self.target,
            self.seed,
            {k: np.ascontiguousarray(c[rows]) for k, c in self.cells.items()},
            self.trajectory_every,
            self.dtype,
            self.precision,
            self.mode,
            self.common_random_numbers,
            self.min_losses,
            self.trajectory_metrics,
            self.weight_averaging,
            self.trials,
        )

    def chunks(self, size: int) -> list[Plan]:
        """Consecutive sub-plans of at most ``size`` runs."""
        size = v.positive_int("chunk_size", size)
        return [self.subset(slice(i, i + size)) for i in range(0, len(self), size)]


def as_list(name: str, value: Any) -> list[Any]:
    """``value`` as a non-empty list (a single spec becomes a list of one)."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise ValueError(f"{name} must not be empty")
    return items


def _grid_values(name: str, values: Any, check: Any) -> np.ndarray:
    # dtype=object keeps each value as written: [0, 2**63] would otherwise become floats.
    arr = np.atleast_1d(np.asarray(values, dtype=object))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list, got shape {arr.shape}")
    return np.array([check(f"{name}[{i}]", x) for i, x in enumerate(arr.tolist())])


def _seeds(seeds: Any) -> np.ndarray:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        return np.arange(v.positive_int("seeds", seeds), dtype=np.int64)
    return _grid_values("seeds", seeds, v.nonnegative_int).astype(np.int64)


def check_trajectory_metrics(name: str, value: Any) -> tuple[str, ...]:
    """``value``, a metric name or a list of them, as names in :data:`TRAJECTORY_METRICS` order.

    Raises:
        TypeError: ``value`` is neither a string nor a list or tuple.
        ValueError: an unknown name, a name given twice, or no name (the message starts with
            ``name``).

    Example:
        >>> check_trajectory_metrics("trajectory_metrics", ["grad_norm", "loss"])
        ('loss', 'grad_norm')
        >>> check_trajectory_metrics("trajectory_metrics", "grad_norm")
        ('grad_norm',)

    """
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)):
        raise TypeError(f"{name} must be a name or a list of names, got {type(value).__name__}")
    for i, metric in enumerate(names):
        v.choice(f"{name}[{i}]", metric, TRAJECTORY_METRICS)
        if metric in names[:i]:
            raise ValueError(f"{name} names {metric!r} twice, got {list(names)}")
    if not names:
        raise ValueError(f"{name} must name at least one of {', '.join(TRAJECTORY_METRICS)}")
    return tuple(m for m in TRAJECTORY_METRICS if m in names)


def grid_axes(
    problems: Any,
    problem_types: tuple[type, ...],
    optimizers: Any,
    batch_sizes: Any,
    learning_rates: Any,
    seeds: Any,
    schedules: Any = None,
) -> tuple[list[Any], list[Optimizer], list[Schedule], np.ndarray, np.ndarray, np.ndarray]:
    """Validate the axes of a sweep grid; each backend's runner checks its own problem types.

    Returns the problems, optimizers (names resolved), schedules, and the batch-size,
    learning-rate and seed values as arrays.
    """
    probs = as_list("problems", problems)
    for i, p in enumerate(probs):
        if not isinstance(p, problem_types):
            raise TypeError(f"problems[{i}] must be a critbatch problem, got {type(p).__name__}")
    opts = [from_name(o) if isinstance(o, str) else o for o in as_list("optimizers", optimizers)]
    for i, o in enumerate(opts):
        if not isinstance(o, Optimizer):
            raise TypeError(
                f"optimizers[{i}] must be an Optimizer or a name, got {type(o).__name__}"
            )
    for j, o in enumerate(opts):
        for p in probs:
            check_layers(o, p, f"optimizers[{j}]")
    scheds = as_list("schedules", Schedule() if schedules is None else schedules)
    for i, s in enumerate(scheds):
        if not isinstance(s, Schedule):
            raise TypeError(f"schedules[{i}] must be a Schedule, got {type(s).__name__}")
    for label, items in (("problem", probs), ("optimizer", opts), ("schedule", scheds)):
        names = [x.name for x in items]
        if len(set(names)) != len(names):
            raise ValueError(f"{label} names must be unique within a sweep, got {names}")
    b = _grid_values("batch_sizes", batch_sizes, v.positive_int).astype(np.int64)
    lr = _grid_values("learning_rates", learning_rates, v.positive).astype(np.float64)
    return probs, opts, scheds, b, lr, _seeds(seeds)


def check_batch_bounds(
    problems: Sequence[Any],
    schedules: Sequence[Schedule],
    batch_sizes: np.ndarray,
    max_steps: int,
    *,
    samples: str = "samples",
) -> None:
    r"""Refuse a grid whose batch sizes or SFO no backend can hold, before anything runs.

    The one check of the batch sizes for the Rust core, the torch backend and the real-network
    runner: nothing downstream caps a batch. With :math:`B` the largest batch a run can draw
    (:meth:`critbatch.schedules.Schedule.largest_batch`, over the step budget ``max_steps``):

    * under ``sampling="shuffle"`` every base batch size is at most the data set size ``n``;
    * :math:`B` is finite: a growing batch needs ``max_batch_size`` or ``max_factor`` if it
      could otherwise pass :math:`2^{63} - 1` within the budget, and a batch that a schedule
      grows stays at most :data:`EXACT_BATCH` (:math:`2^{53}`);
    * under ``sampling="with_replacement"`` :math:`B \le`
      :data:`critbatch.problems.MAX_DRAWN_BATCH` (the indices of a step are held in memory);
    * :math:`B \cdot` ``max_steps`` :math:`\le 2^{63} - 1`, so the SFO fits its int64 column.

    Args:
        problems: the grid's problems (anything with ``n_samples``, ``name`` and, for finite
            data sets, ``sampling``).
        schedules: the grid's schedules.
        batch_sizes: the base batch sizes (validated integers).
        max_steps: the target's step budget.
        samples: what the data set holds, for messages ("samples", "training examples").

    Raises:
        ValueError: naming the batch size, schedule or problem at fault and the limit.

    """
    k = int(np.argmax(batch_sizes))
    b_max = int(batch_sizes[k])
    budget = f"target.max_steps = {max_steps}"
    for i, p in enumerate(problems):
        n, sampling = p.n_samples, getattr(p, "sampling", None)
        where = f"problems[{i}] ({p.name!r})"
        if sampling == "shuffle" and n is not None and b_max > n:
            raise ValueError(
                f"batch_sizes: {b_max} exceeds the {n} {samples} of {where}, "
                "which draws without replacement"
            )
        for j, s in enumerate(schedules):
            bound = s.largest_batch(b_max, max_steps, n if sampling == "shuffle" else None)
            grown = (
                ""
                if bound == b_max
                else (f", grown by schedules[{j}] ({s.name!r}) to {bound} within {budget} steps,")
            )
            if bound > v.MAX_INT:
                raise ValueError(
                    f"schedules[{j}] ({s.name!r}) grows batch_sizes[{k}] = {b_max} past "
                    f"{v.limit_text(v.MAX_INT)} within {budget} steps; bound it with "
                    "max_batch_size or the batch rule's max_factor"
                )
            if s.batch.kind != "constant" and bound > EXACT_BATCH:
                raise ValueError(
                    f"schedules[{j}] ({s.name!r}) grows batch_sizes[{k}] = {b_max} to {bound} "
                    f"within {budget} steps, past {v.limit_text(EXACT_BATCH)}, the largest batch "
                    "size a growing schedule computes exactly (in float64); bound it with "
                    "max_batch_size or the batch rule's max_factor"
                )
            if sampling == "with_replacement" and bound > MAX_DRAWN_BATCH:
                raise ValueError(
                    f"batch_sizes[{k}] = {b_max}{grown} exceeds {v.limit_text(MAX_DRAWN_BATCH)}, "
                    f"the most {samples} a step draws with replacement in {where}; use a smaller "
                    "batch (or max_batch_size)"
                )
            if bound * max_steps > v.MAX_INT:
                raise ValueError(
                    f"batch_sizes[{k}] = {b_max}{grown} can take the SFO past "
                    f"{v.limit_text(v.MAX_INT)}, the largest count a result holds, over "
                    f"{budget} steps; lower the batch size or max_steps"
                )


def make_plan(
    problems: Any,
    optimizers: Any,
    batch_sizes: Any,
    learning_rates: Any,
    seeds: Any,
    target: Target,
    *,
    schedules: Any = None,
    seed: int = 0,
    trajectory_every: int = 0,
    dtype: str | None = None,
    precision: str = "highest",
    mode: str = "steps",
    common_random_numbers: bool = False,
    trajectory_metrics: Any = ("loss",),
    weight_averaging: float | None = None,
    search: Any = None,
) -> Plan:
    r"""Validate the specs and lay out the grid (see the module docstring for its order).

    ``common_random_numbers`` keys each run's streams by (problem, batch size, replicate)
    instead of its index (see the module docstring). ``trajectory_metrics`` names what a
    trajectory records every ``trajectory_every`` steps (:data:`TRAJECTORY_METRICS`). A target
    with ``loss_gap_below`` gets each problem's exact minimum computed here, once
    (:func:`critbatch.problems.min_loss`).
    ``weight_averaging`` is the decay :math:`\tau` in (0, 1) of the iterate average that the
    checks read (torch backend; ``None``: none). ``search`` (a
    :class:`critbatch.search.Search`, with ``learning_rates=None``) lays out its trials on the
    learning-rate axis (see the module docstring).
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a critbatch Target, got {type(target).__name__}")
    points = _search_points(search, learning_rates)
    if points is not None:
        learning_rates, common_random_numbers = points["learning_rate"].to_numpy(), True
    probs, opts, scheds, b, lr, sd = grid_axes(
        problems, PROBLEM_TYPES, optimizers, batch_sizes, learning_rates, seeds, schedules
    )
    # check_every left at None: every step, or NETWORK_CHECK_EVERY steps with a network
    target = target.for_problems(network=any(isinstance(p, Network) for p in probs))
    n_opts, n_scheds = len(opts), len(scheds)  # declared: a search has one of each per trial
    if points is not None:
        from critbatch.search import expand

        opts, scheds = expand(search.space, points, opts, scheds)
    for i, p in enumerate(probs):
        for j, s in enumerate(scheds):
            for rule in (s.lr, s.batch):
                if rule.unit == "epoch" and p.n_samples is None:
                    raise ValueError(
                        f"schedules[{j}] counts epochs, but problems[{i}] "
                        f"({p.name!r}) has no finite data set"
                    )
    check_batch_bounds(probs, scheds, b, target.max_steps)
    _check_networks(probs, target)
    if not isinstance(common_random_numbers, bool):
        raise TypeError(
            f"common_random_numbers must be a bool, got {type(common_random_numbers).__name__}"
        )
    min_losses = _check_budgets(probs, target)
    if dtype is not None:
        dtype = v.choice("dtype", dtype, DTYPES)
    precision = v.choice("precision", precision, PRECISIONS)
    mode = v.choice("mode", mode, MODES)
    if weight_averaging is not None:
        weight_averaging = check_weight_averaging(WEIGHT_AVERAGING, weight_averaging)
    trajectory_every = v.nonnegative_int("trajectory_every", trajectory_every)
    metrics = check_trajectory_metrics("trajectory_metrics", trajectory_metrics)
    if mode == "exact_jumps":
        _check_exact_jumps(probs, opts, trajectory_every)
        if dtype == "float32":
            raise ValueError(
                "dtype='float32': mode='exact_jumps' computes the laws of the checkpoint "
                "states in float64; use dtype='float64' or mode='steps'"
            )
    if v.nonnegative_int("target.position_below[0]", (target.position_below or (0, 0))[0]) >= min(
        p.dim for p in probs
    ):
        raise ValueError("target.position_below names a coordinate past the problem's dimension")
    grids = np.meshgrid(
        np.arange(len(probs)),
        np.arange(n_opts),
        np.arange(n_scheds),
        np.arange(b.size),
        np.arange(lr.size),
        np.arange(sd.size),
        indexing="ij",
    )
    pi, oi, si, bi, li, di = (g.ravel() for g in grids)
    trials = None
    if points is not None:  # the learning-rate axis is the trial axis
        oi, si = oi * lr.size + li, si * lr.size + li
        trials = {str(c): points[c].to_numpy() for c in points.columns}
    cells = {
        "run_index": np.arange(pi.size, dtype=np.uint64),
        "problem_index": pi.astype(np.int64),
        "optimizer_index": oi.astype(np.int64),
        "schedule_index": si.astype(np.int64),
        "batch_size": b[bi],
        "learning_rate": lr[li],
        "seed": sd[di],
        **({"trial": li.astype(np.int64)} if trials is not None else {}),
    }
    return Plan(
        tuple(probs),
        tuple(opts),
        tuple(scheds),
        target,
        v.nonnegative_int("seed", seed),
        cells,
        trajectory_every,
        dtype,
        precision,
        mode,
        common_random_numbers,
        min_losses,
        metrics,
        weight_averaging,
        trials,
    )


def _search_points(search: Any, learning_rates: Any) -> Any:
    """A search's trials (a DataFrame), checked; ``None`` for a grid."""
    if search is None:
        return None
    from critbatch.search import Search

    if not isinstance(search, Search):
        raise TypeError(f"search must be a critbatch.search.Search, got {type(search).__name__}")
    if learning_rates is not None:
        raise ValueError(
            "learning_rates: a search draws the learning rates from its learning_rate "
            "dimension; pass learning_rates=None"
        )
    points = search.points()
    if points["learning_rate"].nunique() != len(points):
        raise ValueError("search.learning_rate: two trials drew the same learning rate")
    return points


def check_weight_averaging(name: str, value: Any) -> float:
    """The decay of the iterate average: a number strictly between 0 and 1 (``name``: its key).

    Example:
        >>> check_weight_averaging("weight_averaging", 0.999)
        0.999
        >>> check_weight_averaging("weight_averaging", 1)
        Traceback (most recent call last):
        ...
        ValueError: weight_averaging must be in (0, 1), the average's decay, got 1

    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number in (0, 1), got {value!r}")
    decay = v.real(name, value)
    if not 0.0 < decay < 1.0:
        raise ValueError(f"{name} must be in (0, 1), the average's decay, got {value!r}")
    return decay


def _check_budgets(problems: Sequence[Any], target: Target) -> tuple[float, ...] | None:
    """Refuse an epoch budget without a data set; the minima a loss gap is measured from."""
    for i, p in enumerate(problems):
        if target.max_epochs is not None and p.n_samples is None:
            raise ValueError(
                f"target.max_epochs counts epochs, but problems[{i}] ({p.name!r}) "
                "has no finite data set; use target.max_sfo"
            )
    if target.loss_gap_below is None:
        return None
    from critbatch.problems import min_loss

    minima = []
    for i, p in enumerate(problems):
        if isinstance(p, Network):
            raise ValueError(
                f"target.loss_gap_below needs the exact minimum of the loss, which "
                f"problems[{i}] ({p.name!r}), a network, does not have"
            )
        minima.append(min_loss(p))
    return tuple(minima)


def _check_exact_jumps(
    problems: Sequence[Any], optimizers: Sequence[Any], trajectory_every: int
) -> None:
    """Exact jumps need linear-Gaussian dynamics: the NQM under SGD, heavy ball or Nesterov."""
    for i, p in enumerate(problems):
        if p.kind != "nqm":
            raise ValueError(
                f"mode='exact_jumps' needs NQM problems (Gaussian gradient noise), "
                f"but problems[{i}] ({p.name!r}) is {p.kind!r}"
            )
    for j, o in enumerate(optimizers):
        if o.kind not in ("sgd", "heavy_ball", "nesterov"):
            raise ValueError(
                f"mode='exact_jumps' needs a linear step rule (sgd, heavy_ball, "
                f"nesterov), but optimizers[{j}] ({o.name!r}) is {o.kind!r}"
            )
        if o.max_grad_norm is not None:
            raise ValueError(
                f"mode='exact_jumps' needs a linear step rule, but optimizers[{j}] "
                f"({o.name!r}) clips the gradient (max_grad_norm)"
            )
    if trajectory_every:
        raise ValueError(
            "trajectory_every must be 0 with mode='exact_jumps': the state exists "
            f"only at the checkpoints, got {trajectory_every}"
        )


def _check_networks(problems: Sequence[Any], target: Target) -> None:
    """The criteria a problem kind supports: accuracy needs a network, position a vector."""
    for i, p in enumerate(problems):
        where = f"problems[{i}] ({p.name!r})"
        if target.accuracy_above is not None:
            if not isinstance(p, Network):
                raise ValueError(
                    f"target.accuracy_above needs network problems, but {where} is "
                    f"{p.kind!r}, which has no accuracy"
                )
            if p.x_val.shape[0] == 0:
                raise ValueError(
                    f"target.accuracy_above reads the validation split, but {where} "
                    "has none (validation = 0)"
                )
        if isinstance(p, Network) and target.position_below is not None:
            raise ValueError(
                f"target.position_below names a coordinate of the iterate, which "
                f"{where}, a network, does not have"
            )


def check_backend(plan: Plan, backend: str) -> None:
    """Refuse, naming the field, a plan that ``backend`` cannot run as written.

    The Rust core runs the synthetic problems in float64 or float32, with the learning-rate and
    batch-size rules and linear warm-up of ``rust/schedules.rs``: no networks, no accuracy target,
    no reduced matrix-product precision. The torch backend runs every plan.

    Raises:
        ValueError: naming the field (``problems[i]``, ``target.accuracy_above``,
            ``precision``, ``weight_averaging`` with exact jumps).

    Example:
        >>> import critbatch as cb
        >>> plan = make_plan(cb.problems.nqm([1.0], [1.0]), "sgd", [1], [0.1], 1,
        ...                  cb.targets.target(max_steps=5), precision="tf32")
        >>> check_backend(plan, "rust")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: precision: the Rust core computes exactly ..., got 'tf32'; use backend='torch'

    """
    if backend != "rust":
        if plan.mode != "steps":
            raise ValueError(
                f"mode={plan.mode!r}: exact_jumps runs on the Rust core only, not "
                f"on backend {backend!r}"
            )
        return
    hint = "; use backend='torch'"
    for i, p in enumerate(plan.problems):
        if isinstance(p, Network):
            raise ValueError(
                f"problems[{i}] ({p.name!r}) is a network: the Rust core runs the "
                f"synthetic problems only{hint}"
            )
    if plan.target.accuracy_above is not None:
        raise ValueError(
            f"target.accuracy_above: the Rust core has no accuracy (it runs no networks){hint}"
        )
    if plan.precision != "highest":
        raise ValueError(
            "precision: the Rust core computes exactly (float64 or float32), got "
            f"{plan.precision!r}{hint}"
        )
    if plan.weight_averaging is not None and plan.mode == "exact_jumps":
        raise ValueError(
            f"{WEIGHT_AVERAGING} = {plan.weight_averaging!r}: exact jumps keep no average (it "
            "needs every step's iterate); use mode='steps'"
        )


def labels(plan: Plan, names: Sequence[str], index_column: str) -> np.ndarray:
    """Map an index column of the plan to the spec names it refers to."""
    return np.asarray(names, dtype=object).take(plan.cells[index_column])
