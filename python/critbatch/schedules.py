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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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

    def factor(self, t: float) -> float:
        """The factor at time ``t`` (a pure-Python mirror of the Rust rule, for plots and tests).

        A power that overflows is infinite, as in the core (``max_factor`` then caps it), never
        an ``OverflowError``.

        Example:
            >>> polynomial(1, power=1000.0, max_factor=2.0).factor(5.0)
            2.0

        """
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            frac = min(t, self.every) / self.every
            return self.min_factor + (1 - self.min_factor) * (1 + math.cos(math.pi * frac)) / 2
        stage = t / self.every
        stage = float(math.floor(stage)) if math.isfinite(stage) else stage
        if self.kind == "step":
            return _power(self.rate, stage)
        if self.kind == "geometric":
            return min(_power(self.rate, stage), self.max_factor)
        if self.kind == "polynomial":
            return min(_power(1.0 + stage, self.rate), self.max_factor)
        return min(1.0 + self.rate * stage if self.rate else 1.0, self.max_factor)

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


def _power(base: float, exponent: float) -> float:
    """``base ** exponent`` for ``base > 0``, infinite where Python's float power overflows."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


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


@dataclass(frozen=True)
class Schedule:
    """A learning-rate rule, a batch-size rule and a cap on the batch size, under one name."""

    name: str = "constant"
    lr: Rule = Rule()
    batch: Rule = Rule()
    max_batch_size: int | None = None

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
        """The plain description the backends receive."""
        return {
            "lr": self.lr.to_core(),
            "batch": self.batch.to_core(),
            "max_batch_size": 0 if self.max_batch_size is None else self.max_batch_size,
        }


def schedule(
    lr: Rule | None = None,
    batch: Rule | None = None,
    *,
    max_batch_size: int | None = None,
    name: str = "",
) -> Schedule:
    """Combine a learning-rate rule and a batch-size rule (both constant by default)."""
    for label, rule in (("lr", lr), ("batch", batch)):
        if rule is not None and not isinstance(rule, Rule):
            raise TypeError(f"{label} must be a schedules.Rule, got {type(rule).__name__}")
    lr, batch = lr or constant(), batch or constant()
    if max_batch_size is not None:
        max_batch_size = v.positive_int("max_batch_size", max_batch_size)
    return Schedule(
        name=name or f"lr:{lr.kind}/b:{batch.kind}",
        lr=lr,
        batch=batch,
        max_batch_size=max_batch_size,
    )
