r"""Schedules: the learning rate and the batch size as functions of the step or the epoch.

A schedule multiplies the run's base learning rate :math:`\eta_0` and base batch size :math:`b_0`
(the sweep's grid values) by factors that depend on the time :math:`t`, counted in steps
(``unit="step"``) or in epochs of samples seen (``unit="epoch"``: :math:`t = \text{SFO}/n`,
only for finite data sets). With stage :math:`m = \lfloor t / \text{every} \rfloor`:

* ``constant``: 1
* ``step``: :math:`\gamma^m` (step decay for :math:`\gamma < 1`)
* ``cosine``: :math:`f_{min} + (1 - f_{min})(1 + \cos(\pi \min(t, T)/T))/2`
* ``geometric``: :math:`\min(\rho^m, f_{max})` (growth, as in Umeda & Iiduka 2025)
* ``polynomial``: :math:`\min((1 + m)^p, f_{max})`
* ``linear``: :math:`\min(1 + a\,m, f_{max})` (linear batch growth :math:`b_0 + a b_0 m`)

The batch size at a step is :math:`b_t = \min(\lceil b_0 \cdot \text{factor} \rceil, b_{max})`,
and a run's SFO is :math:`\sum_t b_t`. Nothing else caps :math:`b_t`: a plan whose batch sizes
could outgrow what the backends hold within the step budget is rejected before it runs
(:func:`critbatch.plan.check_batch_bounds`, from :meth:`Schedule.largest_batch`).

An optional linear warm-up multiplies the learning-rate factor (it composes with any decay):
:math:`w(t) = s + (1 - s)\min(t / W, 1)` over the first :math:`W` *steps*, from the start
factor :math:`s` (Goyal et al. 2017, Sec. 2.2, arXiv:1706.02677,
:func:`critbatch.theory.goyal2017.gradual_warmup`).

This module is the one Python implementation of the arithmetic: :meth:`Rule.factor`,
:meth:`Schedule.lr_factor` and :meth:`Schedule.batch_size` take a scalar or a NumPy array of
times, so the torch backend computes a whole chunk's (or a whole run's) values with them. The
Rust core (``rust/schedules.rs``) and the NumPy reference (:mod:`critbatch.reference.run`) are
the two independent implementations they are tested against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from critbatch import _validate as v

RULES = ("constant", "step", "cosine", "geometric", "polynomial", "linear")
UNITS = ("step", "epoch")


@dataclass(frozen=True)
class Rule:
    """A multiplicative factor of time; ``rate`` is gamma, rho, p or a depending on ``kind``."""

    kind: str = "constant"
    every: float = 1.0
    rate: float = 1.0
    min_factor: float = 0.0
    max_factor: float = math.inf
    unit: str = "step"

    @overload
    def factor(self, t: float) -> float: ...
    @overload
    def factor(self, t: Any) -> Any: ...
    def factor(self, t: Any) -> Any:
        """The factor at time ``t``: a float for a scalar time, an array for an array of times.

        A power that overflows is infinite, as in the core (``max_factor`` then caps it), never
        an ``OverflowError``.

        Example:
            >>> polynomial(1, power=1000.0, max_factor=2.0).factor(5.0)
            2.0
            >>> geometric(2.0, 3.0, max_factor=5.0).factor(np.array([0.0, 2.5, 4.0])).tolist()
            [1.0, 3.0, 5.0]

        """
        times = np.asarray(t, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            out = self._factor(times)
        return float(out) if out.ndim == 0 else out

    def _factor(self, t: npt.NDArray[np.float64]) -> np.ndarray:
        if self.kind == "constant":
            return np.ones_like(t)
        if self.kind == "cosine":
            frac = np.minimum(t, self.every) / self.every
            return self.min_factor + (1 - self.min_factor) * (1 + np.cos(math.pi * frac)) / 2
        stage = np.floor(t / self.every)  # floor(inf) = inf
        if self.kind == "step":
            return np.power(self.rate, stage)
        if self.kind == "geometric":
            return np.minimum(np.power(self.rate, stage), self.max_factor)
        if self.kind == "polynomial":
            return np.minimum(np.power(1.0 + stage, self.rate), self.max_factor)
        if self.rate == 0:
            return np.ones_like(t)
        return np.minimum(1.0 + self.rate * stage, self.max_factor)

    def largest_factor(self, max_steps: int) -> float:
        """An upper bound of the factor over a run of at most ``max_steps`` steps.

        With ``unit="step"`` it is exact: every rule is monotone in ``t``, so the largest factor of
        the steps ``t = 0 .. max_steps - 1`` is at one end. With ``unit="epoch"`` the time is the
        SFO over ``n``, unknown before the run, so it is the supremum over all time (infinite for
        growth without ``max_factor``).

        Example:
            >>> geometric(10, 2.0).largest_factor(31)
            8.0
            >>> geometric(10, 2.0, unit="epoch").largest_factor(31)
            inf

        """
        if self.kind in ("constant", "cosine"):
            return 1.0
        if self.unit == "step":
            return max(self.factor(0.0), self.factor(float(max_steps - 1)))
        grows = self.rate > 1 if self.kind in ("step", "geometric") else self.rate > 0
        if not grows:
            return 1.0
        return math.inf if self.kind == "step" else self.max_factor

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive."""
        return {
            "kind": self.kind,
            "every": self.every,
            "rate": self.rate,
            "min_factor": self.min_factor,
            "max_factor": self.max_factor,
            "unit": self.unit,
        }


def _rule(kind: str, every: Any, rate: Any, unit: str, **extra: Any) -> Rule:
    return Rule(
        kind=kind,
        every=v.positive("every", every),
        rate=rate,
        unit=v.choice("unit", unit, UNITS),
        **extra,
    )


def constant() -> Rule:
    """A factor of 1 at all times."""
    return Rule()


def step_decay(every: float, gamma: float = 0.1, *, unit: str = "step") -> Rule:
    """Multiply by ``gamma`` every ``every`` steps (or epochs)."""
    return _rule("step", every, v.positive("gamma", gamma), unit)


def cosine(period: float, *, min_factor: float = 0.0, unit: str = "step") -> Rule:
    """Cosine decay from 1 to ``min_factor`` over ``period`` steps (or epochs), then flat."""
    return _rule(
        "cosine", period, 1.0, unit, min_factor=v.in_range("min_factor", min_factor, 0.0, 1.0)
    )


def geometric(
    every: float, rate: float = 2.0, *, max_factor: float = math.inf, unit: str = "step"
) -> Rule:
    """Multiply by ``rate`` every ``every`` steps (or epochs), capped at ``max_factor``."""
    return _rule(
        "geometric",
        every,
        v.positive("rate", rate),
        unit,
        max_factor=v.positive("max_factor", max_factor, allow_inf=True),
    )


def polynomial(
    every: float, power: float = 1.0, *, max_factor: float = math.inf, unit: str = "step"
) -> Rule:
    """Factor ``(1 + m)^power`` at stage ``m``, capped at ``max_factor``."""
    return _rule(
        "polynomial",
        every,
        v.real("power", power),
        unit,
        max_factor=v.positive("max_factor", max_factor, allow_inf=True),
    )


def linear(
    every: float, increment: float = 1.0, *, max_factor: float = math.inf, unit: str = "step"
) -> Rule:
    """Factor ``1 + increment * m`` at stage ``m``, capped at ``max_factor``."""
    return _rule(
        "linear",
        every,
        v.nonnegative("increment", increment),
        unit,
        max_factor=v.positive("max_factor", max_factor, allow_inf=True),
    )


def time_of(rule: Rule, t: Any, sfo: Any, n: int | None) -> Any:
    """The time a rule sees: ``t`` steps, or ``sfo / n`` epochs of ``n`` samples.

    Args:
        rule: the rule (its ``unit``).
        t: steps taken (scalar or array).
        sfo: samples drawn so far (scalar or array).
        n: the data set size (``None`` for streamed problems, which have no epochs).

    Example:
        >>> time_of(step_decay(2, unit="epoch"), 5, 30, 10)
        3.0

    """
    if rule.unit == "step":
        return np.asarray(t, dtype=np.float64) * 1.0 if np.ndim(t) else float(t)
    if n is None:
        raise ValueError(
            f"a schedule rule counts epochs (unit={rule.unit!r}), "
            "but the problem has no finite data set"
        )
    return np.asarray(sfo, dtype=np.float64) / n if np.ndim(sfo) else sfo / n


@dataclass(frozen=True)
class Schedule:
    """A learning-rate rule, a batch-size rule, a cap on the batch size and an optional warm-up.

    ``warmup`` is the warm-up length :math:`W` in steps (``None``: no warm-up) and
    ``warmup_start`` its start factor :math:`s` (see the module docstring).
    """

    name: str = "constant"
    lr: Rule = Rule()
    batch: Rule = Rule()
    max_batch_size: int | None = None
    warmup: int | None = None
    warmup_start: float = 0.1

    def warmup_factor(self, t: Any) -> Any:
        r"""The warm-up factor :math:`s + (1 - s)\min(t/W, 1)` at step ``t`` (1 without warm-up).

        Example:
            >>> schedule(warmup=4, warmup_start=0.2).warmup_factor(np.arange(6.0)).tolist()
            [0.2, 0.4, 0.6000000000000001, 0.8, 1.0, 1.0]

        """
        steps = np.asarray(t, dtype=np.float64)
        if self.warmup is None:
            out = np.ones_like(steps)
        else:
            s = self.warmup_start
            out = s + (1.0 - s) * np.minimum(steps / self.warmup, 1.0)
        return float(out) if out.ndim == 0 else out

    def lr_factor(self, t: Any, sfo: Any = 0, n: int | None = None) -> Any:
        r"""The learning-rate factor at step ``t`` after ``sfo`` samples: warm-up times the rule.

        Args:
            t: steps taken (scalar or array).
            sfo: samples drawn so far (scalar or array; used by ``unit="epoch"``).
            n: the data set size, for ``unit="epoch"``.

        Returns:
            :math:`w(t) \cdot \text{lr.factor}(\tau)`, a float or an array.

        Example:
            >>> s = schedule(lr=step_decay(10, 0.5), warmup=5, warmup_start=0.0)
            >>> s.lr_factor(np.array([0, 1, 5, 10])).tolist()
            [0.0, 0.2, 1.0, 0.5]

        """
        return self.warmup_factor(t) * self.lr.factor(time_of(self.lr, t, sfo, n))

    def batch_size(
        self, b0: Any, t: Any, sfo: Any = 0, n: int | None = None, n_cap: int | None = None
    ) -> Any:
        r"""The batch size of a step at base batch size ``b0`` (see the module docstring).

        :math:`b_t = \min(\lceil b_0 \cdot \text{batch.factor}(\tau) \rceil, b_{max}, n)`.

        Args:
            b0: base batch sizes (an integer or an integer array).
            t: steps taken (scalar or array).
            sfo: samples drawn so far (scalar or array, for ``unit="epoch"``).
            n: the data set size, for ``unit="epoch"``.
            n_cap: a further cap (the data set size under ``"shuffle"``), or ``None``.

        Returns:
            The batch size of the step: an ``int`` for scalar inputs, else an int64 array. A
            constant rule returns ``b0`` itself, exact at any size.

        Example:
            >>> s = schedule(batch=geometric(10, 2.0), max_batch_size=20)
            >>> s.batch_size(3, np.array([0, 10, 20, 30])).tolist()
            [3, 6, 12, 20]

        """
        scalar = np.ndim(b0) == 0 and np.ndim(t) == 0 and np.ndim(sfo) == 0
        cap = math.inf if self.max_batch_size is None else self.max_batch_size
        if n_cap is not None:
            cap = min(cap, n_cap)
        if self.batch.kind == "constant":
            base = np.asarray(b0, dtype=np.int64)
            out = base if math.isinf(cap) else np.minimum(base, int(cap))
            shape = np.broadcast_shapes(np.shape(b0), np.shape(t), np.shape(sfo))
            out = np.broadcast_to(out, shape).copy()
        else:
            # float64 ceil: exact up to 2^53, which check_batch_bounds guarantees; an overflowed
            # factor is infinite and the cap (checked up front to exist) brings it back.
            factor = self.batch.factor(time_of(self.batch, t, sfo, n))
            with np.errstate(over="ignore", invalid="ignore"):
                scaled = np.ceil(np.asarray(b0, dtype=np.float64) * factor)
            out = np.minimum(scaled, cap).astype(np.int64)
        return int(out) if scalar else out

    def largest_batch(self, b0: int, max_steps: int, n_cap: int | None = None) -> float:
        r"""An upper bound of the batch size of any of the first ``max_steps`` steps of a run.

        It is :math:`\min(\lceil b_0 F \rceil, b_{max}, n)` with :math:`F` the
        :meth:`Rule.largest_factor` of the batch rule (:math:`b_0` itself for a constant rule),
        and infinite when nothing bounds a growing batch.

        Args:
            b0: the base batch size.
            max_steps: the step budget.
            n_cap: the data set size when the batch is capped at it (sampling without
                replacement), else ``None``.

        Example:
            >>> schedule(batch=geometric(10, 2.0), max_batch_size=20).largest_batch(3, 100)
            20

        """
        if self.batch.kind == "constant":
            bound: float = b0
        else:
            scaled = b0 * self.batch.largest_factor(max_steps)
            bound = math.ceil(scaled) if math.isfinite(scaled) else math.inf
        if self.max_batch_size is not None:
            bound = min(bound, self.max_batch_size)
        if n_cap is not None:
            bound = min(bound, n_cap)
        return max(bound, 1)

    def to_core(self) -> dict[str, Any]:
        """The plain description the backends receive (0 for no cap and no warm-up)."""
        return {
            "lr": self.lr.to_core(),
            "batch": self.batch.to_core(),
            "max_batch_size": 0 if self.max_batch_size is None else self.max_batch_size,
            "warmup": 0 if self.warmup is None else self.warmup,
            "warmup_start": self.warmup_start,
        }


def schedule(
    lr: Rule | None = None,
    batch: Rule | None = None,
    *,
    max_batch_size: int | None = None,
    warmup: int | None = None,
    warmup_start: float = 0.1,
    name: str = "",
) -> Schedule:
    """Combine a learning-rate rule, a batch-size rule and an optional warm-up.

    Args:
        lr: the learning-rate rule (constant by default).
        batch: the batch-size rule (constant by default).
        max_batch_size: a cap on the batch size.
        warmup: linear warm-up length in steps (``None``: none), multiplying ``lr``'s factor.
        warmup_start: the warm-up's start factor, in [0, 1).
        name: a label (default from the rules).

    Example:
        >>> schedule(lr=cosine(100), warmup=10).name
        'lr:cosine/b:constant+warmup10'

    """
    for label, rule in (("lr", lr), ("batch", batch)):
        if rule is not None and not isinstance(rule, Rule):
            raise TypeError(f"{label} must be a schedules.Rule, got {type(rule).__name__}")
    lr, batch = lr or constant(), batch or constant()
    if max_batch_size is not None:
        max_batch_size = v.positive_int("max_batch_size", max_batch_size)
    if warmup is not None:
        warmup = v.positive_int("warmup", warmup)
    start = v.in_range("warmup_start", warmup_start, 0.0, 1.0)
    default = f"lr:{lr.kind}/b:{batch.kind}" + (f"+warmup{warmup}" if warmup else "")
    return Schedule(
        name=name or default,
        lr=lr,
        batch=batch,
        max_batch_size=max_batch_size,
        warmup=warmup,
        warmup_start=start,
    )
