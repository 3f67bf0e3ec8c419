"""One run of (problem, optimizer, schedule, target) at a base batch size and learning rate.

The loop, written out (the Rust core's ``run`` implements the same semantics)::

    x = x0; state = 0; sfo = 0; t = 0; loss0 = f(x0); B = min(max_sfo, ceil(max_epochs * n))
    loop:
        time = t (unit "step") or sfo / n (unit "epoch"), per rule
        b_t = min(ceil(b0 * batch.factor(time)), max_batch_size, n if shuffle sampling)
        spent = sfo + b_t > B                      (the step would cross the SFO budget)
        if t % check_every == 0 or t == max_steps or spent:
            loss = f(x); gnorm = |grad f(x)|
            if loss or x not finite: diverged_nonfinite; stop
            if loss > divergence_factor * max(|loss0|, 1): diverged_blowup; stop
            if loss <= loss_below or loss - f* <= loss_gap_below or gnorm <= grad_norm_below
                    or x[i] < a: reached; stop
            if t == max_steps or spent: budget; stop
            (a run that stops reached or at its budget with gnorm not finite: diverged_nonfinite)
        lr_t = lr0 * warmup(t) * lr.factor(time)
        g = stochastic gradient of size b_t at x; x = optimizer step; sfo += b_t; t += 1

See :mod:`critbatch.targets` and :mod:`critbatch.schedules` for the pieces. The schedule
arithmetic is written out again here (:func:`rule_factor`, :func:`batch_size_at`,
:func:`lr_at`), scalar and plain, as an oracle independent of
:meth:`critbatch.schedules.Schedule.batch_size` and ``lr_factor`` (which the torch backend uses)
and of the core's ``rust/schedules.rs``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch.optimizers import Optimizer, declared_layers
from critbatch.problems import DoubleWell, FiniteSum, Nqm, Problem
from critbatch.reference import optimizers as ref_opt
from critbatch.reference import problems as ref_prob
from critbatch.schedules import Rule, Schedule
from critbatch.targets import Target


def rule_time(rule: Rule, t: int, sfo: int, n: int | None) -> float:
    """Return the time a schedule rule sees: ``t`` steps, or ``sfo / n`` epochs of ``n`` samples.

    Example:
        >>> from critbatch import schedules
        >>> rule_time(schedules.step_decay(2, unit="epoch"), t=5, sfo=30, n=10)
        3.0

    """
    if rule.unit == "step":
        return float(t)
    if n is None:
        raise ValueError(
            f"a schedule rule counts epochs (unit={rule.unit!r}), "
            "but the problem has no finite data set"
        )
    return sfo / n


def rule_factor(rule: Rule, time: float) -> float:
    """The factor of a rule at ``time``, written out per kind (see :mod:`critbatch.schedules`).

    Example:
        >>> from critbatch import schedules
        >>> rule_factor(schedules.step_decay(10, 0.5), 25.0), rule_factor(schedules.constant(), 7.0)
        (0.25, 1.0)

    """
    if rule.kind == "constant":
        return 1.0
    if rule.kind == "cosine":
        frac = min(time, rule.every) / rule.every
        return rule.min_factor + (1.0 - rule.min_factor) * (1.0 + math.cos(math.pi * frac)) / 2.0
    stage = time / rule.every
    stage = float(math.floor(stage)) if math.isfinite(stage) else stage
    try:
        if rule.kind == "step":
            return math.pow(rule.rate, stage)
        if rule.kind == "geometric":
            return min(math.pow(rule.rate, stage), rule.max_factor)
        if rule.kind == "polynomial":
            return min(math.pow(1.0 + stage, rule.rate), rule.max_factor)
    except OverflowError:  # an overflowing power is infinite, as in the core
        return math.inf if rule.kind == "step" else rule.max_factor
    if rule.kind == "linear":
        return 1.0 if rule.rate == 0 else min(1.0 + rule.rate * stage, rule.max_factor)
    raise ValueError(f"rule.kind {rule.kind!r} is not a schedule rule")


def lr_at(schedule: Schedule, lr0: float, t: int, sfo: int, n_samples: int | None) -> float:
    r"""The learning rate :math:`\eta_0 \, w(t) \, f(\text{time})` of step ``t``.

    :math:`w(t) = s + (1 - s)\min(t/W, 1)` is the linear warm-up (1 without one).

    Example:
        >>> from critbatch import schedules
        >>> s = schedules.schedule(warmup=4, warmup_start=0.0)
        >>> [lr_at(s, 1.0, t, 0, None) for t in (0, 2, 4, 9)]
        [0.0, 0.5, 1.0, 1.0]

    """
    warm = 1.0
    if schedule.warmup is not None:
        s = schedule.warmup_start
        warm = s + (1.0 - s) * min(t / schedule.warmup, 1.0)
    return lr0 * warm * rule_factor(schedule.lr, rule_time(schedule.lr, t, sfo, n_samples))


def batch_size_at(
    schedule: Schedule, b0: int, t: int, sfo: int, n_cap: int | None, n_samples: int | None
) -> int:
    r"""Return the batch size :math:`b_t = \min(\lceil b_0 f(time) \rceil, b_{max}, n)` of a step.

    Args:
        schedule: the schedule (its ``batch`` rule and ``max_batch_size``).
        b0: the base batch size.
        t: steps taken so far.
        sfo: samples drawn so far (:math:`\sum_{s<t} b_s`).
        n_cap: a further cap (the data set size under shuffle sampling), or ``None``.
        n_samples: the data set size, for ``unit="epoch"`` rules (``None`` if streamed).

    Returns:
        The batch size of step ``t``.

    Example:
        >>> from critbatch import schedules
        >>> s = schedules.schedule(batch=schedules.geometric(10, 2.0), max_batch_size=20)
        >>> [batch_size_at(s, 3, t, 0, None, None) for t in (0, 10, 20, 30)]
        [3, 6, 12, 20]

    References:
        :mod:`critbatch.schedules` (module docstring); Umeda & Iiduka 2025 (arXiv:2508.05297).

    """
    if schedule.batch.kind == "constant":
        fixed = b0 if schedule.max_batch_size is None else min(b0, schedule.max_batch_size)
        return fixed if n_cap is None else min(fixed, n_cap)
    factor = rule_factor(schedule.batch, rule_time(schedule.batch, t, sfo, n_samples))
    scaled = b0 * factor
    # An overflowed factor is infinite; a cap (checked up front to exist) brings it back.
    b: float = math.ceil(scaled) if math.isfinite(scaled) else math.inf
    if schedule.max_batch_size is not None:
        b = min(b, schedule.max_batch_size)
    if n_cap is not None:
        b = min(b, n_cap)
    return int(b)


def run(
    problem: Problem,
    optimizer: Optimizer,
    schedule: Schedule,
    target: Target,
    batch_size: int,
    learning_rate: float,
    rng: np.random.Generator,
    *,
    trajectory_every: int = 0,
    min_loss: float | None = None,
) -> dict[str, Any]:
    r"""Execute one run and return its record (see the module docstring for the loop).

    Args:
        problem: a spec from :mod:`critbatch.problems`.
        optimizer: a spec from :mod:`critbatch.optimizers`.
        schedule: a :class:`critbatch.schedules.Schedule`.
        target: a :class:`critbatch.targets.Target` (stopping, budget, divergence).
        batch_size: the base batch size :math:`b_0 \ge 1`.
        learning_rate: the base learning rate :math:`\eta_0 > 0`.
        rng: the run's random stream.
        trajectory_every: if positive, also record the exact loss at every step ``t`` that is a
            multiple of it, from step 0 up to the stop.
        min_loss: the problem's exact minimum for ``target.loss_gap_below`` (default:
            :func:`critbatch.problems.min_loss`, computed when the target has a gap).

    Returns:
        A dict with ``steps`` (updates taken), ``sfo`` (:math:`\sum_t b_t`), ``reached``,
        ``diverged``, ``stop_reason`` (:data:`critbatch.results.STOP_REASONS`), ``final_loss``,
        ``final_grad_norm`` (at the last check), ``final_x0``
        (coordinate 0 of the final iterate) and ``trajectory`` (float array, empty unless asked).

    Example:
        >>> import numpy as np
        >>> from critbatch import optimizers, problems, schedules, targets
        >>> rec = run(problems.nqm([1.0], [0.0], 1.0), optimizers.sgd(), schedules.schedule(),
        ...           targets.target(loss_below=0.1), 2, 0.5, np.random.default_rng(0))
        >>> rec["steps"], rec["sfo"], rec["reached"]     # f = 0.5 * 0.25**t, first <= 0.1 at t=2
        (2, 4, True)

    """
    if not isinstance(problem, (Nqm, FiniteSum, DoubleWell)):
        raise TypeError(f"problem must be a critbatch problem, got {type(problem).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an Optimizer, got {type(optimizer).__name__}")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
    if not isinstance(target, Target):
        raise TypeError(f"target must be a Target, got {type(target).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    b0 = v.positive_int("batch_size", batch_size)
    lr0 = v.positive("learning_rate", learning_rate)
    every = v.nonnegative_int("trajectory_every", trajectory_every)
    if target.position_below is not None and target.position_below[0] >= problem.dim:
        raise ValueError(
            f"target.position_below names coordinate {target.position_below[0]}, "
            f"past the problem's dimension {problem.dim}"
        )

    n = problem.n_samples
    budget = target.sfo_budget(n)
    gap = target.loss_gap_below
    if gap is not None and min_loss is None:
        from critbatch.problems import min_loss as exact_minimum

        min_loss = exact_minimum(problem)
    shuffle = isinstance(problem, FiniteSum) and problem.sampling == "shuffle"
    sampler = ref_prob.make_sampler(problem)
    x = np.array(problem.x0, dtype=np.float64)
    state = ref_opt.init_state(optimizer, problem.dim, declared_layers(problem))
    sfo, t = 0, 0
    trajectory: list[float] = []
    reason = "budget"
    # A diverging run overflows to inf/NaN on purpose: the checks below detect it.
    with np.errstate(over="ignore", invalid="ignore"):
        loss0 = ref_prob.loss(problem, x)
        loss, gnorm = loss0, math.nan
        while True:
            if every and t % every == 0:
                trajectory.append(ref_prob.loss(problem, x))
            b_t = batch_size_at(schedule, b0, t, sfo, n if shuffle else None, n)
            spent = budget is not None and sfo + b_t > budget
            if t % target.checks_every(network=False) == 0 or t == target.max_steps or spent:
                loss = ref_prob.loss(problem, x)
                # math.hypot scales, so a representable norm never overflows its squares.
                gnorm = math.hypot(*ref_prob.grad(problem, x))
                if not math.isfinite(loss) or not np.all(np.isfinite(x)):
                    reason = "diverged_nonfinite"
                    break
                if loss > target.divergence_factor * max(abs(loss0), 1.0):
                    reason = "diverged_blowup"
                    break
                if (
                    (target.loss_below is not None and loss <= target.loss_below)
                    or (gap is not None and min_loss is not None and loss - min_loss <= gap)
                    or (target.grad_norm_below is not None and gnorm <= target.grad_norm_below)
                    or (
                        target.position_below is not None
                        and x[target.position_below[0]] < target.position_below[1]
                    )
                ):
                    reason = "reached"
                    break
                if t == target.max_steps or spent:
                    break
            lr_t = lr_at(schedule, lr0, t, sfo, n)
            g = ref_prob.stochastic_grad(problem, x, b_t, rng, sampler)
            x, state = ref_opt.step(optimizer, state, x, g, lr_t)
            sfo += b_t
            t += 1
    if reason in ("reached", "budget") and not math.isfinite(gnorm):
        reason = "diverged_nonfinite"
    return {
        "steps": t,
        "sfo": sfo,
        "reached": reason == "reached",
        "diverged": reason.startswith("diverged"),
        "stop_reason": reason,
        "final_loss": loss,
        "final_grad_norm": gnorm,
        "final_x0": float(x[0]),
        "trajectory": np.asarray(trajectory, dtype=np.float64),
    }
