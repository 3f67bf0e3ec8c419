"""The result table of a sweep: one row per run, columnar, convertible to pandas and pyarrow."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critbatch.plan import Plan

#: Why a run stopped, the values of the ``stop_reason`` column (the Rust core's ``StopReason``):
#: ``"reached"`` (the target is met), ``"budget"`` (``max_steps`` spent), ``"diverged_nonfinite"``
#: (the loss, the iterate or the final gradient norm is NaN or infinite) and ``"diverged_blowup"``
#: (a finite loss above ``divergence_factor * max(|loss(x0)|, 1)``). ``reached`` is
#: ``stop_reason == "reached"`` and ``diverged`` is either divergence.
STOP_REASONS = ("reached", "budget", "diverged_nonfinite", "diverged_blowup")

# Columns a backend returns for the runs of a plan, in plan order.
OUTCOME_COLUMNS = (
    "steps",
    "sfo",
    "reached",
    "diverged",
    "stop_reason",
    "final_loss",
    "final_grad_norm",
    "final_x0",
    "wall_time",
)
SPEC_COLUMNS = (
    "run_index",
    "problem",
    "optimizer",
    "schedule",
    "batch_size",
    "learning_rate",
    "seed",
    "dim",
    "n_samples",
)
COLUMNS = SPEC_COLUMNS + OUTCOME_COLUMNS
#: Outcome columns the torch backend adds to the table of a plan with a network problem (NaN
#: on the other rows): ``final_accuracy``, the validation accuracy at the stop;
#: ``test_accuracy``, the test accuracy at the stop (never used to stop or tune);
#: ``noise_scale``, the gradient noise scale :math:`B_{simple}` measured from the run's training
#: gradients up to its stop (:mod:`critbatch.torch.noise_scale`; NaN unless asked for);
#: ``noise_scale_preconditioned``, the same with the optimizer's diagonal preconditioner
#: :math:`P`, :math:`\operatorname{tr}(P\Sigma)/G^\top P G` (NaN also for a rule without one).
OPTIONAL_COLUMNS = ("final_accuracy", "test_accuracy", "noise_scale", "noise_scale_preconditioned")


@dataclass(frozen=True, eq=False)
class LabelCodes:
    """A string column of a :class:`Results` held as integer codes into its names.

    ``column`` is the object array the table holds (a :class:`Results` makes it read-only, so
    that the codes keep describing it) and ``codes`` its index into ``names``, row by row
    (``column == names[codes]``). :meth:`Results.to_arrow` builds the column from ``codes``
    and ``names`` without touching each row's string, as long as the table still holds this
    very array.
    """

    column: np.ndarray
    codes: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def of(cls, codes: np.ndarray, names: tuple[str, ...]) -> LabelCodes:
        """The column ``names[codes]`` with its codes."""
        return cls(np.asarray(names, dtype=object).take(codes), codes, names)


def _stop_reason_codes(values: Any) -> LabelCodes | None:
    """The ``stop_reason`` column as codes into :data:`STOP_REASONS` (None: another value)."""
    code = {name: i for i, name in enumerate(STOP_REASONS)}
    try:
        codes = np.fromiter(map(code.__getitem__, values), dtype=np.int8, count=len(values))
    except (KeyError, TypeError):  # not stop reasons (a test's stand-in backend, say)
        return None
    return LabelCodes.of(codes, STOP_REASONS)


def stop_reasons(reached: np.ndarray, nonfinite: np.ndarray, blowup: np.ndarray) -> np.ndarray:
    """The ``stop_reason`` column from three exclusive masks (a run in none spent its budget).

    Example:
        >>> reached, nonfinite, blowup = np.eye(4, 3, dtype=bool).T
        >>> stop_reasons(reached, nonfinite, blowup).tolist()
        ['reached', 'diverged_nonfinite', 'diverged_blowup', 'budget']

    """
    out = np.full(np.shape(reached), "budget", dtype=object)
    out[np.asarray(reached, dtype=bool)] = "reached"
    out[np.asarray(nonfinite, dtype=bool)] = "diverged_nonfinite"
    out[np.asarray(blowup, dtype=bool)] = "diverged_blowup"
    return out


@dataclass(frozen=True, eq=False)
class Results:
    """Columns of equal length (``COLUMNS``, then any of ``OPTIONAL_COLUMNS``), trajectories, specs.

    ``trajectories[i]`` is the exact loss of run ``i`` every ``trajectory_every`` steps from step 0
    up to its stop, and ``grad_norm_trajectories[i]`` its exact full-gradient norm ‖∇f(θ_k)‖ at
    the same steps; each list is empty unless its metric was asked for (``trajectory_metrics``,
    :data:`critbatch.plan.TRAJECTORY_METRICS`). ``codes`` holds, for the string columns that
    :meth:`from_outcomes` builds (spec names and ``stop_reason``), their integer codes
    (:class:`LabelCodes`), which make :meth:`to_arrow` cheap; a table without them converts
    each string.
    """

    columns: dict[str, np.ndarray]
    trajectories: list[np.ndarray] = field(default_factory=list, repr=False)
    specs: dict[str, Any] = field(default_factory=dict, repr=False)
    grad_norm_trajectories: list[np.ndarray] = field(default_factory=list, repr=False)
    codes: dict[str, LabelCodes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for coded in self.codes.values():  # also when unpickled (Ray), which lifts the flag
            coded.column.flags.writeable = False

    def __len__(self) -> int:
        return int(next(iter(self.columns.values())).shape[0]) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def to_pandas(self) -> Any:
        """A pandas DataFrame with one row per run."""
        import pandas as pd

        return pd.DataFrame({k: self.columns[k] for k in self.columns})

    def to_xarray(self) -> Any:
        """An :class:`xarray.Dataset` over the grid (needs ``xarray``).

        Dimensions ``problem``, ``optimizer``, ``schedule``, ``batch_size``, ``learning_rate``
        and ``seed`` (the replicate id), one data variable per outcome column, and the problem's
        ``dim`` and ``n_samples`` as coordinates along ``problem``. Every cell of a
        sweep's grid holds one run; a table that is not a full grid (a subset, or two sweeps
        concatenated with different axes) leaves NaN where no run exists.

        Raises:
            ImportError: naming the package when xarray is not installed.
            ValueError: when two runs share one grid cell.

        """
        try:
            import xarray  # noqa: F401  (imported for its pandas accessor)
        except ImportError:
            raise ImportError("Results.to_xarray needs xarray: pip install xarray") from None
        frame = self.to_pandas()
        dims = ["problem", "optimizer", "schedule", "batch_size", "learning_rate", "seed"]
        if frame.duplicated(dims).any():
            raise ValueError(
                "two runs share one (problem, optimizer, schedule, batch_size, "
                "learning_rate, seed) cell: not a grid"
            )
        sizes = frame.groupby("problem")[["dim", "n_samples"]].first()
        grid = frame.drop(columns=["run_index", "dim", "n_samples"]).set_index(dims).to_xarray()
        return grid.assign_coords(
            {c: ("problem", sizes[c].reindex(grid["problem"].values).to_numpy()) for c in sizes}
        )

    def to_arrow(self, *, dictionary: bool = False) -> Any:
        """A pyarrow Table with one row per run.

        Args:
            dictionary: the string columns as dictionary arrays (codes into their distinct
                values), which a Parquet writer stores without hashing each row's string;
                plain strings otherwise.

        """
        import pyarrow as pa

        return pa.table({k: self._arrow_column(k, c, dictionary) for k, c in self.columns.items()})

    def _arrow_column(self, name: str, column: np.ndarray, dictionary: bool) -> Any:
        import pyarrow as pa

        coded = self.codes.get(name)
        if coded is not None and coded.column is column:
            names = _arrow_names(coded.names)
            if dictionary:
                return pa.DictionaryArray.from_arrays(arrow_array(coded.codes), names)
            return names.take(arrow_array(coded.codes))
        if column.dtype == object:  # strings with no codes: converted one by one
            strings = pa.array(column, type=pa.string())
            return strings.dictionary_encode() if dictionary else strings
        return arrow_array(column)

    @classmethod
    def from_outcomes(cls, plan: Plan, outcomes: dict[str, Any]) -> Results:
        """Join a backend's outcome columns with the plan's spec columns."""
        missing = [c for c in OUTCOME_COLUMNS if c not in outcomes]
        if missing:
            raise ValueError(f"backend returned no column(s) {missing}")
        codes = {k: _plan_codes(plan, k) for k in ("problem", "optimizer", "schedule")}
        columns: dict[str, np.ndarray] = {
            "run_index": plan.cells["run_index"],
            **{k: c.column for k, c in codes.items()},
            "batch_size": plan.cells["batch_size"],
            "learning_rate": plan.cells["learning_rate"],
            "seed": plan.cells["seed"],
            **problem_sizes(plan),
        }
        if plan.trials is not None:  # a search: the trial and its point (critbatch.search)
            trial = plan.cells["trial"]
            columns.update({k: c[trial] for k, c in plan.trials.items() if k not in columns})
        stop = _stop_reason_codes(outcomes["stop_reason"])
        if stop is not None:
            codes["stop_reason"] = stop
        for c in OUTCOME_COLUMNS:
            if c in codes:
                columns[c] = codes[c].column
            else:  # stop reasons that are not STOP_REASONS stay as given, as objects
                columns[c] = np.asarray(outcomes[c], dtype=object if c == "stop_reason" else None)
        columns.update(
            {
                c: np.asarray(outcomes[c], dtype=np.float64)
                for c in OPTIONAL_COLUMNS
                if c in outcomes
            }
        )
        return cls(
            columns,
            list(outcomes.get("trajectories", [])),
            plan_specs(plan),
            list(outcomes.get("grad_norm_trajectories", [])),
            codes,
        )

    @classmethod
    def concat(cls, parts: list[Results]) -> Results:
        """Stack results of disjoint chunks of the same sweep (specs from the first part)."""
        if not parts:
            raise ValueError("concat needs at least one Results")
        columns = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
        trajectories = [t for p in parts for t in p.trajectories]
        grad_norms = [t for p in parts for t in p.grad_norm_trajectories]
        return cls(columns, trajectories, parts[0].specs, grad_norms)


def _plan_codes(plan: Plan, column: str) -> LabelCodes:
    """The spec-name column ``column`` (``problem``, ...) from the plan's index column."""
    specs = {"problem": plan.problems, "optimizer": plan.optimizers, "schedule": plan.schedules}
    return LabelCodes.of(plan.cells[f"{column}_index"], tuple(x.name for x in specs[column]))


def arrow_array(values: np.ndarray) -> Any:
    """A pyarrow array of a 1-D numpy column of booleans or numbers (other columns: ``pa.array``).

    Numbers are wrapped in place (byte-swapped first if not in native order) and booleans
    packed to bits; ``pa.array`` does the same but imports pandas on its first call (half a
    second), which a sweep never needs.
    """
    import pyarrow as pa

    values = np.asarray(values)
    kind = values.dtype.kind
    if values.ndim != 1 or kind not in "biuf":
        return pa.array(values)
    if kind == "b":
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), values.size, [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))
    arrow_type = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(arrow_type, values.size, [None, pa.py_buffer(values)])


def arrow_strings(values: Sequence[str]) -> Any:
    """A pyarrow string array of ``values``, built from its buffers as :func:`arrow_array` is."""
    import pyarrow as pa

    data = [x.encode() for x in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    np.cumsum([len(x) for x in data], out=offsets[1:])
    return pa.StringArray.from_buffers(
        len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data))
    )


@functools.lru_cache(maxsize=256)
def _arrow_names(names: tuple[str, ...]) -> Any:
    """:func:`arrow_strings` of some names, made once (pyarrow arrays are immutable)."""
    return arrow_strings(names)


def problem_sizes(plan: Plan) -> dict[str, np.ndarray]:
    """Each run's problem dimension ``dim`` and data-set size ``n_samples`` (inf: fresh noise).

    A problem that draws fresh noise at every step (the NQM, the double well) samples from an
    infinite population, so its ``n_samples`` is ``inf``; the float column keeps that exact.
    """
    index = plan.cells["problem_index"]
    sizes = [math.inf if p.n_samples is None else p.n_samples for p in plan.problems]
    return {
        "dim": np.asarray([p.dim for p in plan.problems], dtype=np.int64)[index],
        "n_samples": np.asarray(sizes, dtype=np.float64)[index],
    }


def plan_specs(plan: Plan) -> dict[str, Any]:
    """The specs a :class:`Results` keeps from its plan: seed, target and specs by name."""
    return {
        "seed": plan.seed,
        "target": plan.target,
        "optimizers": {o.name: o for o in plan.optimizers},
        "schedules": {s.name: s for s in plan.schedules},
        "problems": {p.name: p for p in plan.problems},
    }
