"""The best learning rate per batch size, and the steps-to-target table K(b) it gives.

Shallue et al. (2019, "Measuring the effects of data parallelism on neural network training",
arXiv 1811.03600) compare batch sizes each at its own best learning rate: K(b) is the steps to the
target at the best η for that b. For each (problem, optimizer, schedule, batch size) the learning
rates are ranked by :func:`critbatch.fit.table.rank_learning_rates` with
``require_all_reached=True`` (the same rule as :func:`critbatch.fit.best_learning_rate` with that
option):

1. the learning rates whose runs *all* reached the target come first, and among them the fewest
   median steps wins (ties: the smaller η);
2. if no learning rate reached with every run, the fewest median steps wins, then the smaller
   fraction of failed runs, then the smaller η, and the row is flagged (``all_reached = False``).

A run that did not reach the target (or diverged) counts as infinitely many steps in the median,
so a flagged row's ``steps`` is finite only when more than half its runs reached. Shallue et al.
take the minimum over trials; the median is used here as it is robust to one lucky seed.

The runs of a quasi-random search (:mod:`critbatch.search`, a ``trial`` column) are ranked the
same way: each trial has its own learning rate, so the best learning rate is the best trial, and
the table adds the trial and its point; its edge status is then that of the search space
(:func:`critbatch.search.trial_at_edge`: the best trial at the edge in any dimension) instead of
that of a grid.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from critbatch.fit.table import rank_learning_rates

__all__ = ["GROUP", "as_frame", "best_learning_rate"]

GROUP = ("problem", "optimizer", "schedule", "batch_size")
_NEEDED = (*GROUP, "learning_rate", "steps", "reached")


def as_frame(data: Any, *, allow_partial: bool = False) -> Any:
    """Return ``data`` (Results, DataFrame, or a sweep directory) as a pandas DataFrame.

    ``allow_partial`` reads an unfinished sweep directory (with a warning) instead of raising.
    """
    import pandas as pd

    from critbatch.results import Results

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, Results):
        return data.to_pandas()
    if isinstance(data, (str, os.PathLike)):
        from critbatch.store import load_frame

        return load_frame(data, allow_partial=allow_partial)
    raise TypeError(
        f"data must be a Results, a DataFrame or a sweep directory, got {type(data).__name__}"
    )


def best_learning_rate(data: Any, *, allow_partial: bool = False) -> Any:
    """K(b) at the best learning rate: one row per (problem, optimizer, schedule, batch size).

    Args:
        data: sweep results (:class:`critbatch.results.Results`, a DataFrame with the columns of
            a sweep, or a sweep directory).
        allow_partial: read an unfinished sweep directory (with a warning).

    Returns:
        A DataFrame sorted by group with columns ``problem, optimizer, schedule, batch_size,
        learning_rate`` (the best η), ``steps`` (median steps to target, ``inf`` when not
        reached by more than half the runs), ``sfo`` (median SFO, same rule), ``n_runs``,
        ``n_reached``, ``all_reached`` (False flags the fallback rule), ``n_learning_rates``
        (tried at this b) and ``lr_at_edge`` (the best η is the smallest or largest tried, a
        sign that the grid may be too narrow). For a search's runs, also ``trial`` (the best)
        and its hyperparameters after ``learning_rate``, and ``lr_at_edge`` says whether the
        best trial is at the edge of the search space in any dimension.

    Raises:
        ValueError: a needed column is missing, or the table is empty.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"problem": "p", "optimizer": "sgd", "schedule": "c",
        ...     "batch_size": 4, "learning_rate": [0.1, 0.1, 0.2, 0.2, 0.4, 0.4],
        ...     "steps": [30, 34, 20, 22, 9, 10000], "reached": [True] * 5 + [False]})
        >>> row = best_learning_rate(df).iloc[0]
        >>> float(row.learning_rate), float(row.steps), bool(row.all_reached)
        (0.2, 21.0, True)

    References:
        Shallue et al. 2019, Sec. 3.3 (best learning rate per batch size), arXiv 1811.03600.

    """
    import pandas as pd

    df = as_frame(data, allow_partial=allow_partial)
    missing = [c for c in _NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"data has no column(s) {missing} (columns: {list(df.columns)})")
    if len(df) == 0:
        raise ValueError("data has no rows")
    reached = df["reached"].to_numpy(dtype=bool)
    if "diverged" in df.columns:
        reached = reached & ~df["diverged"].to_numpy(dtype=bool)
    work = pd.DataFrame({c: df[c].to_numpy() for c in (*GROUP, "learning_rate")})
    point: list[str] = []
    if "trial" in df.columns:  # a search: each trial is one learning rate (critbatch.search)
        from critbatch.search import trial_at_edge

        dims = [str(c)[2:] for c in df.columns if str(c).startswith("u_")]
        point = ["trial", *(d for d in dims if d != "learning_rate")]
        work = work.assign(**{c: df[c].to_numpy() for c in point}, _edge=trial_at_edge(df))
    work["_ok"] = reached
    work["_steps"] = np.where(reached, df["steps"].to_numpy(dtype=float), np.inf)
    sfo = df["sfo"].to_numpy(dtype=float) if "sfo" in df.columns else np.full(len(df), np.nan)
    work["_sfo"] = np.where(reached, sfo, np.inf)
    per_lr = (
        work.groupby([*GROUP, "learning_rate"], sort=True)
        .agg(
            steps=("_steps", "median"),
            sfo=("_sfo", "median"),
            n_runs=("_ok", "size"),
            n_reached=("_ok", "sum"),
            **{c: (c, "first") for c in (*point, "_edge") if c in work.columns},
        )
        .reset_index()
    )
    per_lr["all_reached"] = per_lr["n_reached"] == per_lr["n_runs"]
    rows = []
    for key, part in per_lr.groupby(list(GROUP), sort=True):
        lrs = np.sort(part["learning_rate"].to_numpy())
        n_runs = part["n_runs"].to_numpy()
        order = rank_learning_rates(
            part["steps"].to_numpy(),
            n_runs - part["n_reached"].to_numpy(),
            n_runs,
            part["learning_rate"].to_numpy(),
            require_all_reached=True,
        )
        best = part.iloc[order[0]]
        edge = bool(lrs.size > 1 and best["learning_rate"] in (lrs[0], lrs[-1]))
        rows.append(
            {
                **dict(zip(GROUP, key, strict=True)),
                "learning_rate": float(best["learning_rate"]),
                **{c: best[c] for c in point},
                "steps": float(best["steps"]),
                "sfo": float(best["sfo"]),
                "n_runs": int(best["n_runs"]),
                "n_reached": int(best["n_reached"]),
                "all_reached": bool(best["all_reached"]),
                "n_learning_rates": int(lrs.size),
                "lr_at_edge": bool(best["_edge"]) if point else edge,
            }
        )
    return pd.DataFrame(rows)
