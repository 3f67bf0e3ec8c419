r"""What a fit returns: a :class:`FitResult` per group, and :class:`Fits`, their table and mapping.

A fit's critical batch size always comes with a status (:data:`STATUSES`):

- ``"identified"``: the profile-likelihood interval is closed on both sides and the estimate lies
  within the batch sizes of the data;
- ``"above_grid"``: the data are consistent with :math:`b^\\star` beyond the largest batch size
  (the interval is open above, or the estimate lies above the grid): only a lower bound is
  reported, never a finite estimate;
- ``"below_grid"``: the same below the smallest batch size: only an upper bound is reported;
- ``"not_identified"``: the data bound :math:`b^\\star` on neither side, the maximization did not
  converge, there are too few runs, or a parameter sits at a bound of its domain;
- ``"poor_fit"``: identified, but the lack-of-fit test rejects the law against the replicate
  spread (:mod:`critbatch.fit.lack_of_fit`) at level 0.01.

``reasons`` says why, in words, and records the caveats that do not change the status (the lack of
fit could not be tested; the best learning rate sat at the edge of the grid).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from critbatch.fit.models import LAWS

__all__ = ["LACK_OF_FIT_LEVEL", "STATUSES", "FitResult", "Fits", "format_value"]

STATUSES = ("identified", "above_grid", "below_grid", "not_identified", "poor_fit")
LACK_OF_FIT_LEVEL = 0.01
_ARRAYS = ("batch_size", "steps", "censored", "residuals")


def format_value(x: float) -> str:
    """A number as reports print it: 4 significant digits, "∞" for infinity, "—" for NaN."""
    if math.isnan(x):
        return "—"
    return "∞" if math.isinf(x) else f"{x:.4g}"


def _encode(value: Any) -> Any:
    """JSON-safe values: non-finite floats as strings, arrays as lists, tuples as lists."""
    if isinstance(value, float | np.floating):
        x = float(value)
        return x if math.isfinite(x) else str(x)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        return [_encode(x) for x in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(x) for x in value]
    return value


def _float(x: Any) -> float:
    return float(x)  # float("inf"), float("nan") and numbers alike


@dataclass(frozen=True, eq=False)
class FitResult:
    r"""One law fitted to the runs of one group.

    Attributes:
        model: the law's name (a key of :data:`critbatch.fit.LAWS`).
        group: the group's values, in the order of ``group_columns`` (the key in :class:`Fits`).
        group_columns: the names of the group columns.
        status: one of :data:`STATUSES` (see the module docstring).
        reasons: why the status is what it is, and caveats, in words.
        critical: ``"knee"`` (the law's own critical batch size) or ``"overhead"`` (Zhang et al.
            2024's batch size at ``overhead`` over perfect scaling).
        critical_definition: what ``critical_batch_size`` means here.
        overhead: the :math:`r` of the overhead definition.
        reference_batch: the batch size linear scaling is counted from (overhead definition).
        critical_batch_size: the estimate; finite only when the status is ``"identified"`` or
            ``"poor_fit"`` (NaN otherwise: the data do not pin it down).
        estimate: the maximum-likelihood :math:`b^\star` whatever the status (``inf`` or 0 at a
            limit of the law); for diagnostics, not for reporting.
        interval: the profile-likelihood interval of :math:`b^\star` at ``level`` (``inf`` above
            or 0 below where the likelihood does not close, and on the far side of an
            ``"above_grid"`` or ``"below_grid"`` estimate, where a bound would rest on the law's
            extrapolation alone).
        level: the level of the intervals.
        batch_range: the smallest and largest batch size in the fit.
        bootstrap_interval: the bootstrap percentile interval over seeds, or None.
        bootstrap_note: why there is no bootstrap interval ("" when there is one).
        n_boot: resamples drawn; n_boot_failed: resamples on which the fit failed.
        resample: the bootstrap's unit (``"none"`` without a bootstrap).
        params: the law's parameters at the maximum (0 and inf entries at a limit of the law).
        location: the fit coordinate :math:`c` (log of the steps' scale).
        beta: the fit coordinate :math:`\beta` (the shape).
        sigma: the noise scale of :math:`\log K`.
        log_likelihood: the maximum; aic and bic: with 3 parameters.
        r2_log: :math:`R^2` of :math:`\log K` over the reached runs.
        lack_of_fit_p: the lack-of-fit p-value (NaN when not testable).
        lack_of_fit_note: why it was not tested ("" when it was).
        converged: the likelihood maximization converged.
        lr_status: ``"fixed"`` (one learning rate per batch size), ``"interior"`` or ``"edge"``
            (the best learning rate is the smallest or largest tried at some batch size).
        lr_edge_batch_sizes: the batch sizes where it is.
        learning_rates: batch size -> the learning rate used, when one was chosen.
        n_runs, n_censored, n_excluded: runs in the fit, of which censored; diverged runs left out.
        censored_by_batch, excluded_by_batch: the same per batch size.
        censoring: ``"likelihood"`` or ``"drop"``.
        check_every: the target's check interval (runs that reached are interval-censored to the
            last ``check_every`` steps when it is above 1).
        batch_size, steps, censored, residuals: per run in the fit (residuals of log K; a lower
            bound for a censored run).
        profile_beta, profile_log_likelihood: the profile likelihood on its grid (for plots).
        bootstrap_samples: name -> replicates (``critical_batch_size``, ``location``, ``beta``).

    """

    model: str
    group: tuple[str, ...]
    group_columns: tuple[str, ...]
    status: str
    reasons: tuple[str, ...]
    critical: str
    critical_definition: str
    overhead: float
    reference_batch: float
    critical_batch_size: float
    estimate: float
    interval: tuple[float, float]
    level: float
    batch_range: tuple[float, float]
    bootstrap_interval: tuple[float, float] | None
    bootstrap_note: str
    n_boot: int
    n_boot_failed: int
    resample: str
    params: dict[str, float]
    location: float
    beta: float
    sigma: float
    log_likelihood: float
    aic: float
    bic: float
    r2_log: float
    lack_of_fit_p: float
    lack_of_fit_note: str
    converged: bool
    lr_status: str
    lr_edge_batch_sizes: tuple[float, ...]
    learning_rates: dict[float, float] | None
    n_runs: int
    n_censored: int
    n_excluded: int
    censored_by_batch: dict[float, int]
    excluded_by_batch: dict[float, int]
    censoring: str
    check_every: int
    batch_size: np.ndarray = field(repr=False)
    steps: np.ndarray = field(repr=False)
    censored: np.ndarray = field(repr=False)
    residuals: np.ndarray = field(repr=False)
    profile_beta: np.ndarray = field(repr=False)
    profile_log_likelihood: np.ndarray = field(repr=False)
    bootstrap_samples: dict[str, np.ndarray] = field(repr=False)

    @property
    def label(self) -> str:
        """The group values joined by ``"/"`` (``""`` for a table without group columns)."""
        return "/".join(self.group)

    @property
    def identified(self) -> bool:
        """Whether the status is ``"identified"``."""
        return self.status == "identified"

    @property
    def lower_bound(self) -> float:
        """The low end of :attr:`interval` (the bound to report for ``"above_grid"``)."""
        return self.interval[0]

    @property
    def upper_bound(self) -> float:
        """The high end of :attr:`interval` (the bound to report for ``"below_grid"``)."""
        return self.interval[1]

    def predict(self, batch_size: Any) -> Any:
        r"""Return the fitted steps to target :math:`\hat K(b)` (the median of the lognormal law).

        Args:
            batch_size: batch size(s), positive.

        Returns:
            :math:`\hat K(b)`, a float or an array shaped like ``batch_size``.

        """
        b = np.asarray(batch_size, dtype=float)
        out = np.exp(LAWS[self.model].log_steps(self.location, self.beta, b.reshape(-1)))
        return out.reshape(b.shape) if b.ndim else float(out[0])

    def critical_text(self) -> str:
        """The critical batch size as it should be reported: a value or a bound, and an interval."""
        lo, hi = self.interval
        pct = f"{100 * self.level:g}%"
        show = format_value
        if self.status in ("identified", "poor_fit"):
            return f"{show(self.critical_batch_size)} [{show(lo)}, {show(hi)}]"
        if self.status == "above_grid":
            return f"> {show(self.batch_range[1])} (b_max); {pct} lower bound {show(lo)}"
        if self.status == "below_grid":
            return f"< {show(self.batch_range[0])} (b_min); {pct} upper bound {show(hi)}"
        return "not identified"

    def summary(self) -> str:
        """Return a plain-text report of the fit."""
        law = LAWS[self.model]
        group = ", ".join(f"{c}={v}" for c, v in zip(self.group_columns, self.group, strict=True))
        lines = [
            f"{self.model} law ({law.reference})" + (f"; {group}" if group else ""),
            f"status: {self.status}" + (f" ({'; '.join(self.reasons)})" if self.reasons else ""),
        ]
        lines.append(
            f"b* ({self.critical_definition}): {self.critical_text()}"
            + (
                f"  ({100 * self.level:g}% profile likelihood)"
                if self.status in ("identified", "poor_fit")
                else ""
            )
        )
        if self.bootstrap_interval is not None:
            lo, hi = self.bootstrap_interval
            lines.append(
                f"bootstrap interval ({self.resample}, {self.n_boot} resamples, "
                f"{self.n_boot_failed} failed): [{format_value(lo)}, {format_value(hi)}]"
            )
        elif self.bootstrap_note:
            lines.append(f"bootstrap: {self.bootstrap_note}")
        lines.append(
            "parameters: "
            + ", ".join(f"{k}={format_value(v)}" for k, v in self.params.items())
            + f", sigma={format_value(self.sigma)}"
        )
        lof = (
            f"p = {self.lack_of_fit_p:.3g}"
            if not math.isnan(self.lack_of_fit_p)
            else self.lack_of_fit_note
        )
        lines.append(
            f"lack of fit: {lof}; R^2(log K) {format_value(self.r2_log)}; log-likelihood "
            f"{self.log_likelihood:.4f}, AIC {self.aic:.3f}, BIC {self.bic:.3f}"
        )
        lr = self.lr_status
        if self.lr_edge_batch_sizes:
            lr += " at b = " + ", ".join(f"{b:g}" for b in self.lr_edge_batch_sizes)
        lines.append(
            f"runs: {self.n_runs} ({self.n_censored} censored, {self.n_excluded} "
            f"diverged left out); batch sizes {format_value(self.batch_range[0])}.."
            f"{format_value(self.batch_range[1])}; learning rate: {lr}"
        )
        return "\n".join(lines)

    def to_dict(self, *, arrays: bool = True) -> dict[str, Any]:
        """Return the fit as JSON-safe values (non-finite floats as strings such as ``"inf"``)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if not arrays and (isinstance(value, np.ndarray) or f.name == "bootstrap_samples"):
                continue
            if f.name in ("learning_rates", "censored_by_batch", "excluded_by_batch"):
                value = None if value is None else [[k, x] for k, x in value.items()]
            out[f.name] = _encode(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitResult:
        """Rebuild a fit from :meth:`to_dict` (with arrays)."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = data[f.name]
            if f.name in ("learning_rates", "censored_by_batch", "excluded_by_batch"):
                value = None if value is None else {_float(k): x for k, x in value}
            elif f.name in (*_ARRAYS, "profile_beta", "profile_log_likelihood"):
                value = np.asarray(
                    [_float(x) for x in value], dtype=bool if f.name == "censored" else float
                )
            elif f.name == "bootstrap_samples":
                value = {k: np.asarray([_float(x) for x in xs]) for k, xs in value.items()}
            elif f.name == "params":
                value = {k: _float(x) for k, x in value.items()}
            elif f.name in ("interval", "batch_range") or (
                f.name == "bootstrap_interval" and value is not None
            ):
                value = (_float(value[0]), _float(value[1]))
            elif f.name in ("group", "group_columns", "reasons"):
                value = tuple(value)
            elif f.name == "lr_edge_batch_sizes":
                value = tuple(_float(x) for x in value)
            elif isinstance(value, str) and f.type == "float":
                value = _float(value)
            kwargs[f.name] = value
        return cls(**kwargs)


class Fits(Mapping[tuple[str, ...], FitResult]):
    """The fits of every group: a mapping keyed by the group's values, and a table.

    Keys are tuples of the group values in the order of :attr:`by` (``()`` for a table without
    group columns); a plain string is accepted for a single group column.

    Example:
        >>> import numpy as np, pandas as pd
        >>> b = np.tile([2.0, 4, 8, 16, 32, 64, 128], 2)
        >>> df = pd.DataFrame({"batch_size": b, "optimizer": np.repeat(["sgd", "adam"], 7),
        ...                    "steps": np.r_[100 * (1 + 8 / b[:7]), 50 * (1 + 32 / b[7:])]})
        >>> from critbatch.fit import fit
        >>> fits = fit(df, n_boot=0)
        >>> list(fits), fits.by
        ([('adam',), ('sgd',)], ('optimizer',))
        >>> round(fits["sgd"].critical_batch_size, 3), fits["sgd"].status
        (8.0, 'identified')
        >>> list(fits.table.columns[:4])
        ['optimizer', 'model', 'status', 'critical_batch_size']

    """

    def __init__(
        self,
        fits: dict[tuple[str, ...], FitResult],
        by: tuple[str, ...],
        options: dict[str, Any] | None = None,
    ) -> None:
        self._fits = dict(fits)
        self.by = tuple(by)
        self.options = dict(options or {})

    def _key(self, key: Any) -> tuple[str, ...]:
        if isinstance(key, str) and len(self.by) == 1:
            return (key,)
        return tuple(key)

    def __getitem__(self, key: Any) -> FitResult:
        try:
            return self._fits[self._key(key)]
        except KeyError:
            raise KeyError(f"no fit for group {key!r}; groups: {list(self._fits)}") from None

    def __iter__(self) -> Iterator[tuple[str, ...]]:
        return iter(self._fits)

    def __len__(self) -> int:
        return len(self._fits)

    def __repr__(self) -> str:
        return (
            f"Fits({len(self)} group(s) by {self.by}: "
            + ", ".join(f"{'/'.join(k) or '()'}: {f.status}" for k, f in self._fits.items())
            + ")"
        )

    def item(self) -> FitResult:
        """Return the only fit (raises ValueError unless there is exactly one group)."""
        if len(self._fits) != 1:
            raise ValueError(
                f"item() needs exactly one group, got {len(self._fits)}: {list(self._fits)}"
            )
        return next(iter(self._fits.values()))

    @property
    def table(self) -> Any:
        """One row per group: the group columns, then the status, b* and its intervals."""
        import pandas as pd

        rows = []
        for key, f in self._fits.items():
            boot = f.bootstrap_interval or (math.nan, math.nan)
            rows.append(
                {
                    **dict(zip(self.by, key, strict=True)),
                    "model": f.model,
                    "status": f.status,
                    "critical_batch_size": f.critical_batch_size,
                    "low": f.interval[0],
                    "high": f.interval[1],
                    "bootstrap_low": boot[0],
                    "bootstrap_high": boot[1],
                    "estimate": f.estimate,
                    "b_min_grid": f.batch_range[0],
                    "b_max_grid": f.batch_range[1],
                    "lr_status": f.lr_status,
                    "lack_of_fit_p": f.lack_of_fit_p,
                    "sigma": f.sigma,
                    **{f"param_{k}": x for k, x in f.params.items()},
                    "n_runs": f.n_runs,
                    "n_censored": f.n_censored,
                    "n_excluded": f.n_excluded,
                    "reasons": "; ".join(f.reasons),
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> str:
        """Return every fit's summary, one block per group."""
        blocks = []
        for key, f in self._fits.items():
            head = ", ".join(f"{c}={v}" for c, v in zip(self.by, key, strict=True))
            blocks.append((f"== {head}\n" if head else "") + f.summary())
        return "\n\n".join(blocks)

    def to_dict(self) -> dict[str, Any]:
        """Return the fits as JSON-safe values (see :meth:`FitResult.to_dict`)."""
        return {
            "by": list(self.by),
            "options": _encode(self.options),
            "fits": [f.to_dict() for f in self._fits.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fits:
        """Rebuild from :meth:`to_dict`."""
        fits = [FitResult.from_dict(d) for d in data["fits"]]
        return cls({f.group: f for f in fits}, tuple(data["by"]), data.get("options"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fits as JSON to ``path`` (atomically: a temporary file, then a rename)."""
        out = Path(path)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fits:
        """Read fits written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
