"""Reading sweep results for a fit: validation, grouping, and the best learning rate per batch size.

Accepted inputs: a :class:`critbatch.results.Results`, a pandas DataFrame, a sweep directory, or
a path to a CSV file, a Parquet file, or a directory of Parquet files. Columns (other names are
mapped with ``columns={"ours": "yours"}``):

- required: ``batch_size`` (positive) and ``steps`` (the steps taken; for a run that never reached
  the target, the budget it stopped at), or ``examples`` instead of ``steps`` for data measured in
  examples or epochs (:func:`load_table`'s ``response``);
- optional: ``reached`` (bool, default all True), ``diverged`` (bool, default all False),
  ``seed`` (replicate id, for the bootstrap), ``learning_rate`` (positive), ``weight`` (positive,
  a run's weight in the likelihood, e.g. :func:`weights_from_summary` for a table of means), and
  the group columns ``problem``, ``optimizer``, ``schedule`` (a separate fit per combination);
  for the runs of a quasi-random search, ``trial`` and the trial's unit-cube coordinates
  ``u_<name>`` (:mod:`critbatch.search`), from which each run's ``trial_at_edge`` is derived.

The best learning rate (:func:`best_learning_rate`), stated once: at each (group, batch size),
every learning rate is scored by the median of its runs' steps, where a run that did not reach the
target or diverged counts as infinitely many steps; the lowest median wins, ties go to the smaller
fraction of failed runs, then to the smaller learning rate. With ``require_all_reached=True`` a
learning rate with any failed run loses to every learning rate without one (then the median
decides among each kind). :func:`rank_learning_rates` is this rule and its only implementation;
:func:`critbatch.tuning.best_learning_rate` ranks with it too (``require_all_reached=True``).
A search's trials each have their own learning rate, so the rule picks the best trial; its edge
is then the search space's (:func:`critbatch.search.trial_at_edge`), not the grid's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "GROUP_COLUMNS",
    "GroupData",
    "best_learning_rate",
    "group_columns",
    "group_data",
    "load_table",
    "rank_learning_rates",
    "source_check_every",
    "weights_from_summary",
]

GROUP_COLUMNS = ("problem", "optimizer", "schedule")
_BOOL_COLUMNS = ("reached", "diverged")


def _is_sweep(results: Any) -> bool:
    from critbatch.store import MANIFEST

    return isinstance(results, str | os.PathLike) and (Path(results) / MANIFEST).is_file()


def source_check_every(results: Any) -> int | None:
    """The target's ``check_every`` of a sweep directory or :class:`Results` (None otherwise)."""
    from critbatch.results import Results

    target = None
    if isinstance(results, Results):
        target = results.specs.get("target")
    elif _is_sweep(results):
        from critbatch.store import spec_of

        target = spec_of(results).target
    return None if target is None else int(target.check_every)


def weights_from_summary(mean: Any, sd: Any, n: Any) -> np.ndarray:
    r"""Weights for a table of per-batch-size summaries (mean steps, their sd, runs averaged).

    The standard error of :math:`\log \bar K` is about :math:`\text{sd} / (\bar K \sqrt{n})`
    (the delta method), so a row's weight is :math:`n \bar K^2 / \text{sd}^2`, relative to the
    fitted noise scale :math:`\sigma` (as in weighted least squares with the scale estimated).

    Example:
        >>> weights_from_summary([100.0, 50.0], [10.0, 10.0], [4, 4]).tolist()
        [400.0, 100.0]

    """
    k, k_sd, runs = (np.asarray(x, dtype=np.float64) for x in (mean, sd, n))
    if np.any(~np.isfinite(k_sd) | (k_sd <= 0)) or np.any(~(runs >= 1)) or np.any(~(k > 0)):
        raise ValueError("weights_from_summary needs positive means and sds and n >= 1")
    return runs * k**2 / k_sd**2


def _read(results: Any, allow_partial: bool = False) -> pd.DataFrame:
    from critbatch.results import Results

    if isinstance(results, Results):
        return results.to_pandas()
    if isinstance(results, pd.DataFrame):
        return results.copy()
    if isinstance(results, (str, os.PathLike)):
        path = Path(results)
        if _is_sweep(path):
            from critbatch.store import load_frame

            return load_frame(path, allow_partial=allow_partial)
        if path.is_dir():
            if not any(path.rglob("*.parquet")):
                raise ValueError(f"results directory {str(path)!r} holds no .parquet file")
            return pd.read_parquet(path)
        if not path.is_file():
            raise ValueError(f"results path {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        raise ValueError(f"results file {str(path)!r} must end in .csv, .parquet or .pq")
    raise TypeError(
        "results must be a critbatch Results, a pandas DataFrame or a path, "
        f"got {type(results).__name__}"
    )


def _numeric(df: pd.DataFrame, name: str) -> np.ndarray:
    column = df[name]
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        raise ValueError(f"column {name!r} must be numeric, got dtype {column.dtype}")
    values: npt.NDArray[np.float64] = column.to_numpy(dtype=float)  # pandas is untyped
    return values


def _boolean(df: pd.DataFrame, name: str) -> np.ndarray:
    column = df[name]
    values: np.ndarray = column.to_numpy()  # pandas is untyped
    if pd.api.types.is_bool_dtype(column):
        return values.astype(bool)
    ok = pd.api.types.is_numeric_dtype(column) or column.dtype == object
    if ok:
        try:
            ok = all(x in (0, 1) and not isinstance(x, str) for x in values)
        except TypeError:
            ok = False
    if not ok:
        bad = next((x for x in values if isinstance(x, str) or x not in (0, 1)), column.dtype)
        raise ValueError(f"column {name!r} must hold booleans (or 0/1), got {bad!r}")
    return values.astype(float).astype(bool)


def load_table(
    results: Any,
    *,
    columns: dict[str, str] | None = None,
    response: str = "steps",
    allow_partial: bool = False,
    steps_label: str = "column 'steps'",
) -> pd.DataFrame:
    r"""Read and validate a results table; return it with normalized columns.

    Args:
        results: a :class:`critbatch.results.Results`, a DataFrame, or a path (sweep directory,
            CSV, Parquet file, or directory of Parquet files).
        columns: our column name -> the table's, for tables with other names.
        response: ``"steps"`` (steps to target) or ``"examples"`` (examples or epochs to target,
            a column ``examples``: converted to steps as examples / batch_size, which changes
            only the law's scale, as :math:`E(b) = b\,S(b)`).
        allow_partial: read a sweep directory whose chunks are not all finished (with a
            warning) instead of raising.
        steps_label: how messages name the steps column (a caller that reads another response
            as steps names it as its user wrote it).

    Returns:
        A DataFrame with float ``batch_size`` and ``steps``, bool ``reached`` and ``diverged``
        (filled in when absent), and the optional columns that were present.

    Raises:
        ValueError: naming the missing column or the bad value.

    Example:
        >>> import pandas as pd
        >>> t = load_table(pd.DataFrame({"batch_size": [1, 2], "steps": [10, 6]}))
        >>> list(t.columns), bool(t["reached"].all())
        (['batch_size', 'steps', 'reached', 'diverged'], True)

    """
    df = _read(results, allow_partial)
    if columns:
        if not isinstance(columns, dict):
            raise TypeError(f"columns must map our column names to yours, got {columns!r}")
        missing = [theirs for theirs in columns.values() if theirs not in df.columns]
        if missing:
            raise ValueError(
                f"columns maps to {missing}, which results does not have "
                f"(columns: {list(df.columns)})"
            )
        df = df.rename(columns={theirs: ours for ours, theirs in columns.items()})
    if response not in ("steps", "examples"):
        raise ValueError(f"response must be 'steps' or 'examples', got {response!r}")
    if response == "examples":
        if "examples" not in df.columns:
            raise ValueError(
                f"response='examples' needs a column 'examples' (columns: {list(df.columns)})"
            )
        df = df.assign(steps=_numeric(df, "examples") / _numeric(df, "batch_size"))
    for name in ("batch_size", "steps"):
        if name not in df.columns:
            raise ValueError(f"results has no column {name!r} (columns: {list(df.columns)})")
    if len(df) == 0:
        raise ValueError("results has no rows")
    out = pd.DataFrame(index=df.index)
    batch = _numeric(df, "batch_size")
    bad = ~np.isfinite(batch) | (batch <= 0)
    if bad.any():
        raise ValueError(f"column 'batch_size' must be finite and positive, got {batch[bad][0]!r}")
    out["batch_size"] = batch
    out["steps"] = _numeric(df, "steps")
    for name in _BOOL_COLUMNS:
        out[name] = _boolean(df, name) if name in df.columns else name == "reached"
    # a diverged run's steps say nothing; every other run needs log(steps)
    used = ~out["diverged"].to_numpy()
    steps = out["steps"].to_numpy()
    bad = used & ~(np.isfinite(steps) & (steps > 0))
    if bad.any():
        raise ValueError(
            f"{steps_label} must be finite and positive for every run that did not "
            f"diverge (log K is fitted), got {steps[bad][0]!r} at batch_size "
            f"{batch[bad][0]!r}"
        )
    if "learning_rate" in df.columns:
        lr = _numeric(df, "learning_rate")
        bad = ~np.isfinite(lr) | (lr <= 0)
        if bad.any():
            raise ValueError(
                f"column 'learning_rate' must be finite and positive, got {lr[bad][0]!r}"
            )
        out["learning_rate"] = lr
    if "weight" in df.columns:
        weight = _numeric(df, "weight")
        bad = ~np.isfinite(weight) | (weight <= 0)
        if bad.any():
            raise ValueError(f"column 'weight' must be finite and positive, got {weight[bad][0]!r}")
        out["weight"] = weight
    if "seed" in df.columns:
        if df["seed"].isna().any():
            raise ValueError("column 'seed' has missing values")
        out["seed"] = df["seed"].to_numpy()
    if "trial" in df.columns and any(str(c).startswith("u_") for c in df.columns):
        from critbatch.search import trial_at_edge

        out["trial_at_edge"] = trial_at_edge(df)
    for name in GROUP_COLUMNS:
        if name in df.columns:
            if df[name].isna().any():
                raise ValueError(f"column {name!r} has missing values")
            out[name] = df[name].astype(str).to_numpy()
    return out.reset_index(drop=True)


@dataclass(frozen=True, eq=False)
class GroupData:
    """The runs of one group as arrays (``learning_rate``, ``seed``, ``weight``: None if absent).

    ``trial_at_edge`` (a search's runs only) marks the runs whose trial is at the edge of the
    search space.

    ``key`` holds the group's values in the order of the group columns (``()`` without any).
    """

    key: tuple[str, ...]
    batch_size: np.ndarray
    steps: np.ndarray
    reached: np.ndarray
    diverged: np.ndarray
    learning_rate: np.ndarray | None = None
    seed: np.ndarray | None = None
    weight: np.ndarray | None = None
    trial_at_edge: np.ndarray | None = None

    @property
    def seed_ids(self) -> np.ndarray:
        """The seed column as integer codes (raises when there is none)."""
        if self.seed is None:
            raise ValueError("results has no column 'seed'")
        return self.seed

    def take(self, index: np.ndarray) -> GroupData:
        """Return the rows at ``index`` (with repeats: a bootstrap resample)."""

        def pick(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else x[index]

        return GroupData(
            self.key,
            self.batch_size[index],
            self.steps[index],
            self.reached[index],
            self.diverged[index],
            pick(self.learning_rate),
            pick(self.seed),
            pick(self.weight),
            pick(self.trial_at_edge),
        )

    def needs_lr_choice(self) -> bool:
        """Whether some batch size has runs at more than one learning rate."""
        if self.learning_rate is None:
            return False
        pairs = np.unique(np.stack([self.batch_size, self.learning_rate]), axis=1)
        return int(pairs.shape[1]) > np.unique(self.batch_size).size


def group_columns(table: pd.DataFrame, by: Any = None) -> tuple[str, ...]:
    """The group columns: ``by`` (checked) or every one of :data:`GROUP_COLUMNS` present."""
    if by is None:
        return tuple(c for c in GROUP_COLUMNS if c in table.columns)
    if isinstance(by, str):
        by = (by,)
    for name in by:
        if name not in table.columns:
            raise ValueError(
                f"by names column {name!r}, which results does not have "
                f"(columns: {list(table.columns)})"
            )
    return tuple(by)


def group_data(table: pd.DataFrame, by: tuple[str, ...]) -> list[GroupData]:
    """Split a validated table into groups by the columns ``by``, sorted by their values."""
    if "seed" in table.columns:  # integer codes, the same in every group (paired resampling)
        table = table.assign(seed=pd.factorize(table["seed"])[0])
    parts = table.groupby(list(by), sort=True) if by else [((), table)]
    groups = []
    for key, part in parts:
        values = key if isinstance(key, tuple) else (key,)
        seed = part["seed"].to_numpy() if "seed" in part.columns else None
        groups.append(
            GroupData(
                key=tuple(str(x) for x in values),
                batch_size=part["batch_size"].to_numpy(),
                steps=part["steps"].to_numpy(),
                reached=part["reached"].to_numpy(),
                diverged=part["diverged"].to_numpy(),
                learning_rate=part["learning_rate"].to_numpy() if "learning_rate" in part else None,
                seed=seed,
                weight=part["weight"].to_numpy() if "weight" in part else None,
                trial_at_edge=(
                    part["trial_at_edge"].to_numpy() if "trial_at_edge" in part else None
                ),
            )
        )
    return groups


def rank_learning_rates(
    median_steps: Any,
    n_failed: Any,
    n_runs: Any,
    learning_rate: Any,
    *,
    require_all_reached: bool = False,
) -> np.ndarray:
    """Order the learning rates tried at one batch size, best first: the one ranking rule.

    The rule of the module docstring, on per-learning-rate summaries: lowest ``median_steps``
    (a failed run counted as infinitely many steps), then the smaller failed fraction
    ``n_failed / n_runs``, then the smaller ``learning_rate``; with ``require_all_reached=True``
    every learning rate without a failed run comes before every one with some. Both
    :func:`best_learning_rate` here and :func:`critbatch.tuning.best_learning_rate` rank with it.

    Args:
        median_steps: median steps per learning rate (``inf`` allowed).
        n_failed: failed runs (did not reach the target, or diverged) per learning rate.
        n_runs: runs per learning rate (positive).
        learning_rate: the learning rates.
        require_all_reached: rank learning rates without failed runs first.

    Returns:
        The indices of the learning rates, best first.

    Example:
        >>> rank_learning_rates([30.0, 20.0, 20.0], [0, 1, 0], [3, 3, 3], [0.1, 0.4, 0.2]).tolist()
        [2, 1, 0]
        >>> rank_learning_rates([30.0, 20.0, 20.0], [0, 1, 0], [3, 3, 3], [0.1, 0.4, 0.2],
        ...                     require_all_reached=True).tolist()
        [2, 0, 1]

    """
    median = np.asarray(median_steps, dtype=float)
    failed = np.asarray(n_failed, dtype=float)
    runs = np.asarray(n_runs, dtype=float)
    lr = np.asarray(learning_rate, dtype=float)
    if not median.shape == failed.shape == runs.shape == lr.shape or median.ndim != 1:
        raise ValueError(
            "median_steps, n_failed, n_runs and learning_rate must be 1-d of one "
            f"length, got shapes {median.shape}, {failed.shape}, {runs.shape}, "
            f"{lr.shape}"
        )
    if np.any(runs <= 0):
        raise ValueError(f"n_runs must be positive, got {runs[runs <= 0][0]!r}")
    any_failed = failed > 0 if require_all_reached else np.zeros(median.shape, bool)
    # np.lexsort sorts by the last key first
    return np.lexsort((lr, failed / runs, median, any_failed))


def lr_scores(data: GroupData, *, require_all_reached: bool = False) -> list[dict[str, Any]]:
    """Score every (batch size, learning rate) cell of ``data`` and mark the best per batch size.

    Returns one dict per cell with ``batch_size``, ``learning_rate``, ``median_steps`` (inf when
    half or more of the runs failed), ``n_runs``, ``n_failed`` and ``best`` (the first of
    :func:`rank_learning_rates` at its batch size).
    """
    if data.learning_rate is None:
        raise ValueError("results has no column 'learning_rate'")
    failed = data.diverged | ~data.reached
    effective = np.where(failed, np.inf, data.steps)
    cells = np.stack([data.batch_size, data.learning_rate])
    pairs, inverse = np.unique(cells, axis=1, return_inverse=True)
    inverse = inverse.reshape(-1)
    rows = []
    for j in range(pairs.shape[1]):
        mask = inverse == j
        rows.append(
            {
                "batch_size": float(pairs[0, j]),
                "learning_rate": float(pairs[1, j]),
                "median_steps": float(np.median(effective[mask])),
                "n_runs": int(mask.sum()),
                "n_failed": int(failed[mask].sum()),
                "best": False,
            }
        )
    for batch in np.unique(pairs[0]):
        at = [row for row in rows if row["batch_size"] == batch]
        order = rank_learning_rates(
            [r["median_steps"] for r in at],
            [r["n_failed"] for r in at],
            [r["n_runs"] for r in at],
            [r["learning_rate"] for r in at],
            require_all_reached=require_all_reached,
        )
        at[order[0]]["best"] = True
    return rows


def select_best_lr(
    data: GroupData, *, require_all_reached: bool = False
) -> tuple[np.ndarray, dict[float, float]]:
    """Return the row mask of the runs at each batch size's best learning rate, and the choices."""
    rows = lr_scores(data, require_all_reached=require_all_reached)
    chosen = {r["batch_size"]: r["learning_rate"] for r in rows if r["best"]}
    assert data.learning_rate is not None  # lr_scores checked it
    best_lr = np.array([chosen[b] for b in data.batch_size])
    return data.learning_rate == best_lr, chosen


def best_learning_rate(results: Any, *, require_all_reached: bool = False) -> pd.DataFrame:
    """Pick the learning rate with the fewest median steps to target at each (group, batch size).

    The rule (see the module docstring): a run that failed (did not reach the target, or diverged)
    counts as infinitely many steps; the lowest median wins; ties go to the smaller failed
    fraction, then to the smaller learning rate. ``require_all_reached=True`` first ranks learning
    rates without failed runs above those with any.

    Args:
        results: a Results, DataFrame or path (see :func:`load_table`) with a ``learning_rate``
            column.
        require_all_reached: rank learning rates whose runs all reached above the others.

    Returns:
        A DataFrame with one row per (group, batch size): the group columns present,
        ``batch_size``, ``learning_rate`` (the best), ``median_steps``, ``n_runs``, ``n_failed``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"batch_size": [8] * 4, "learning_rate": [0.1, 0.1, 0.2, 0.2],
        ...                    "steps": [40, 44, 30, 1000], "reached": [True, True, True, False]})
        >>> best = best_learning_rate(df)
        >>> best[["batch_size", "learning_rate", "median_steps"]].to_dict("records")
        [{'batch_size': 8.0, 'learning_rate': 0.1, 'median_steps': 42.0}]

    References:
        Shallue et al. 2019, "Measuring the effects of data parallelism on neural network
        training", arXiv:1811.03600 (steps to result at the best learning rate per batch size;
        their rule takes the best trial, ours the median run).

    """
    table = load_table(results)
    if "learning_rate" not in table.columns:
        raise ValueError(f"results has no column 'learning_rate' (columns: {list(table.columns)})")
    by = group_columns(table)
    out = []
    for data in group_data(table, by):
        rows = [r for r in lr_scores(data, require_all_reached=require_all_reached) if r["best"]]
        part = pd.DataFrame(rows).drop(columns="best")
        for name, value in reversed(list(zip(by, data.key, strict=True))):
            part.insert(0, name, value)
        out.append(part)
    return pd.concat(out, ignore_index=True)
