"""Fuzz: random specs over every problem, optimizer, schedule and target, with extreme values.

Each spec is drawn from its own generator (``numpy.random.default_rng([FUZZ_SEED, i])``, so a
failure names the index that reproduces it), built with the public builders and run through
:func:`critbatch.sweep` on the Rust core. Every field is drawn from a typical range most of the
time, from a list of extreme values (0, subnormals, 1e308, inf, NaN, 2^24, 2^53, 2^63, negative
numbers) some of the time, and from values of the wrong type now and then. Allowed outcomes:

* a ``ValueError`` or ``TypeError`` whose message names the field (a name of ``FIELDS``);
* a table in which every row that did not diverge (``stop_reason`` is ``reached`` or ``budget``)
  holds finite losses, gradient norms, iterates and trajectories.

Anything else fails the test: a panic of the core (``PanicException``), a spec that runs longer
than ``HANG_S`` seconds (a watchdog interrupts it through the core's signal polling), any other
exception, or a silent NaN or inf. The specs are sized so that a legal one runs in milliseconds:
at most 400 steps, small data sets, and a few steps only where a finite-sum step draws a huge
batch.

The default run checks ``FUZZ_SPECS`` (200) specs; the slow one 10,000. The environment variable
``CRITBATCH_FUZZ_SPECS`` sets either count.
"""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

import critbatch as cb
from critbatch import optimizers as opt
from critbatch import problems as pb
from critbatch import schedules as sc
from critbatch.targets import target

FUZZ_SEED = 20250
FUZZ_SPECS = int(os.environ.get("CRITBATCH_FUZZ_SPECS", "200"))
SLOW_SPECS = int(os.environ.get("CRITBATCH_FUZZ_SPECS", "10000"))
#: A legal spec runs in milliseconds; 30 s means a hang even on a loaded machine.
HANG_S = 30.0

#: Every name a message may use for the field it rejects.
FIELDS = (
    # the grid and sweep options
    "problems",
    "optimizers",
    "schedules",
    "batch_sizes",
    "learning_rates",
    "seeds",
    "seed",
    "threads",
    "trajectory_every",
    "target",
    "cells",
    "problem",
    "optimizer",
    "schedule",
    # targets
    "loss_below",
    "grad_norm_below",
    "position_below",
    "check_every",
    "max_steps",
    "divergence_factor",
    # schedules
    "every",
    "gamma",
    "rate",
    "period",
    "power",
    "increment",
    "max_factor",
    "min_factor",
    "unit",
    "max_batch_size",
    "warmup",
    "warmup_start",
    "lr",
    "batch",
    # optimizers
    "momentum",
    "dampening",
    "betas",
    "eps",
    "alpha",
    "amsgrad",
    "centered",
    # problems and their generators
    "h",
    "c",
    "x0",
    "dim",
    "h1",
    "p",
    "s",
    "n",
    "d",
    "d_in",
    "X",
    "y",
    "l2",
    "sampling",
    "loss",
    "scale",
    "width",
    "teacher_width",
    "kappa",
    "noise_std",
    "wall_offset",
    "wall_stiffness",
    "condition_number",
    "label_flip",
    "outlier_fraction",
    "init_scale",
    "name",
)
_FIELD = re.compile(
    r"(?:^|[\s(,'])(?:[\w\[\].]*\.)?("
    + "|".join(sorted(FIELDS, key=len, reverse=True))
    + r")(?:\[\d+\])*(?:$|[\s:=,)'])"
)

EXTREME_FLOATS = (
    0.0,
    -0.0,
    5e-324,
    1e-308,
    1e-300,
    1e-30,
    1e30,
    1e154,
    1e200,
    1e300,
    1.7e308,
    math.inf,
    -math.inf,
    math.nan,
    -1.0,
    -1e-300,
)
EXTREME_INTS = (
    0,
    1,
    2,
    2**24,
    2**24 + 1,
    2**31,
    2**53,
    2**53 + 1,
    2**62,
    2**63 - 1,
    2**63,
    2**64,
    -1,
)
#: Sizes of generated data sets: every legal size past 48 would only cost memory and time.
EXTREME_SIZES = (0, -1, 2**53 + 1, 2**62, 2**63, 2**64)
WRONG_TYPES = (None, "x", [1.0, 2.0], 1.5, True, {"a": 1})


class Draw:
    """One spec's random choices: typical values mostly, extreme and wrong-typed ones at times."""

    def __init__(self, index: int) -> None:
        self.rng = np.random.default_rng([FUZZ_SEED, index])

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, items: Any) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def odd(
        self, typical: Any, extremes: Any, p_extreme: float = 0.02, p_wrong: float = 0.004
    ) -> Any:
        u = self.rng.random()
        if u < p_wrong:
            return self.choice(WRONG_TYPES)
        if u < p_wrong + p_extreme:
            return self.choice(extremes)
        return typical

    def real(self, low: float, high: float, **kw: Any) -> Any:
        """Log-uniform in [low, high] (both > 0), or an extreme float."""
        return self.odd(
            float(math.exp(self.rng.uniform(math.log(low), math.log(high)))), EXTREME_FLOATS, **kw
        )

    def unit(self, high: float = 0.999, **kw: Any) -> Any:
        return self.odd(
            float(self.rng.uniform(0.0, high)), (*EXTREME_FLOATS, 1.0, 0.999999999), **kw
        )

    def count(self, low: int, high: int, extremes: Any = EXTREME_INTS, **kw: Any) -> Any:
        return self.odd(int(self.rng.integers(low, high + 1)), extremes, **kw)

    def size(self, low: int, high: int) -> Any:
        return self.count(low, high, EXTREME_SIZES, p_extreme=0.02)

    def vector(self, dim: int, low: float, high: float) -> Any:
        values = np.exp(self.rng.uniform(math.log(low), math.log(high), size=dim))
        if self.chance(0.1):
            values[int(self.rng.integers(dim))] = self.choice(EXTREME_FLOATS)
        return values


# ---------------------------------------------------------------------------------------------
# Problems: every kind the core runs.


def _finite_sum_kwargs(d: Draw) -> dict[str, Any]:
    return {
        "n": d.size(1, 48),
        "sampling": d.odd(d.choice(["with_replacement", "shuffle"]), ["bootstrap", ""]),
        "seed": d.count(0, 1000, p_extreme=0.02),
    }


def _problem(d: Draw) -> Any:
    kind = d.choice(
        [
            "nqm",
            "nqm_power_law",
            "least_squares",
            "least_squares_data",
            "logistic",
            "robust",
            "teacher_student",
            "double_well",
        ]
    )
    if kind == "nqm":
        dim = int(d.rng.integers(1, 9))
        return pb.nqm(
            d.vector(dim, 1e-3, 10.0),
            d.odd(d.vector(dim, 1e-3, 10.0), [0.0, 1e300]),
            d.odd(d.vector(dim, 0.1, 10.0), EXTREME_FLOATS),
        )
    if kind == "nqm_power_law":
        return pb.nqm_power_law(
            d.size(1, 16),
            h1=d.real(1e-2, 1e2),
            p=d.real(0.1, 3.0),
            s=d.real(1e-3, 10.0),
            x0=d.real(0.1, 10.0),
        )
    if kind == "least_squares":
        return pb.make_least_squares(
            d=d.size(1, 6),
            condition_number=d.real(1.0, 1e3),
            noise_std=d.real(1e-3, 2.0),
            **_finite_sum_kwargs(d),
        )
    if kind == "least_squares_data":
        n, dim = int(d.rng.integers(1, 32)), int(d.rng.integers(1, 5))
        X = d.rng.normal(size=(n, dim)) * d.odd(1.0, (1e-150, 1e100, 1e154, 1e200), p_wrong=0)
        y = d.rng.normal(size=n) * d.odd(1.0, (1e100, 1e200), p_wrong=0)
        return pb.least_squares(
            X,
            y,
            l2=d.odd(0.0, EXTREME_FLOATS),
            sampling=d.choice(["with_replacement", "shuffle"]),
            x0=d.odd(0.0, EXTREME_FLOATS),
        )
    if kind == "logistic":
        return pb.make_logistic(
            d=d.size(1, 6),
            condition_number=d.real(1.0, 1e3),
            label_flip=d.unit(0.5),
            **_finite_sum_kwargs(d),
        )
    if kind == "robust":
        return pb.make_robust_regression(
            d=d.size(1, 6),
            loss=d.odd(d.choice(["geman_mcclure", "cauchy"]), ["l1"]),
            scale=d.real(1e-2, 1e2),
            noise_std=d.real(1e-3, 2.0),
            outlier_fraction=d.unit(0.5),
            **_finite_sum_kwargs(d),
        )
    if kind == "teacher_student":
        return pb.make_teacher_student(
            d_in=d.size(1, 4),
            width=d.size(1, 4),
            noise_std=d.real(1e-3, 1.0),
            init_scale=d.real(1e-2, 2.0),
            **_finite_sum_kwargs(d),
        )
    return pb.double_well(
        kappa=d.unit(),
        noise_std=d.real(1e-2, 10.0),
        x0=d.odd(None, EXTREME_FLOATS, p_wrong=0.0),
        dim=d.size(1, 3),
        wall_offset=d.real(0.1, 5.0),
        wall_stiffness=d.real(0.1, 20.0),
    )


def _optimizer(d: Draw) -> Any:
    kind = d.choice(["sgd", "heavy_ball", "nesterov", "adam", "rmsprop", "name"])
    if kind == "sgd":
        return opt.sgd()
    if kind == "heavy_ball":
        return opt.heavy_ball(d.unit(), dampening=d.unit())
    if kind == "nesterov":
        return opt.nesterov(d.unit())
    if kind == "adam":
        return opt.adam(
            d.odd((d.unit(), d.unit(0.99999)), [(0.9,), (0.9, 1.0), "ab"]),
            eps=d.real(1e-12, 1e-3),
            amsgrad=d.odd(d.chance(0.5), [1, None]),
        )
    if kind == "rmsprop":
        return opt.rmsprop(
            d.unit(), eps=d.real(1e-12, 1e-3), momentum=d.unit(), centered=d.chance(0.5)
        )
    return d.odd(
        d.choice(["sgd", "heavy_ball", "nesterov", "adam", "amsgrad", "rmsprop"]),
        ["adamw", "SGD", ""],
    )


def _rule(d: Draw, growth: bool) -> Any:
    unit = d.odd(d.choice(["step", "step", "epoch"]), ["steps", "", "year"])
    kind = d.choice(["constant", "step", "cosine", "geometric", "polynomial", "linear"])
    if kind == "constant":
        return sc.constant()
    if kind == "step":
        return sc.step_decay(
            d.real(1.0, 100.0), d.real(0.05, 0.95 if not growth else 3.0), unit=unit
        )
    if kind == "cosine":
        return sc.cosine(d.real(1.0, 300.0), min_factor=d.unit(), unit=unit)
    cap = d.odd(d.choice([math.inf, 8.0, 1e6]), EXTREME_FLOATS)
    if kind == "geometric":
        return sc.geometric(d.real(1.0, 50.0), d.real(1.01, 4.0), max_factor=cap, unit=unit)
    if kind == "polynomial":
        return sc.polynomial(
            d.real(1.0, 50.0),
            d.odd(float(d.rng.uniform(-2, 3)), EXTREME_FLOATS),
            max_factor=cap,
            unit=unit,
        )
    return sc.linear(
        d.real(1.0, 50.0),
        d.odd(float(d.rng.uniform(-0.5, 2)), EXTREME_FLOATS),
        max_factor=cap,
        unit=unit,
    )


def _schedule(d: Draw, finite_sum: bool) -> Any:
    if d.chance(0.4):
        return None
    cap = d.odd(int(d.rng.integers(1, 4097)) if d.chance(0.5) else None, EXTREME_INTS)
    if finite_sum and not (isinstance(cap, int) and 0 < cap <= 4096):
        cap = 4096  # a growing batch drawn from a data set: keep a step cheap
    warmup = d.odd(int(d.rng.integers(1, 50)) if d.chance(0.2) else None, EXTREME_INTS)
    return sc.schedule(
        lr=_rule(d, growth=False),
        batch=_rule(d, growth=True),
        max_batch_size=cap,
        warmup=warmup,
        warmup_start=d.unit(),
    )


def _target(d: Draw, max_steps: Any) -> Any:
    return target(
        loss_below=d.odd(d.real(1e-4, 1.0) if d.chance(0.7) else None, EXTREME_FLOATS),
        grad_norm_below=d.odd(d.real(1e-4, 1.0) if d.chance(0.3) else None, EXTREME_FLOATS),
        position_below=d.odd(
            (0, float(d.rng.normal())) if d.chance(0.1) else None,
            [(2**63, 0.0), (0, math.nan), (-1, 0.0), (5, 1.0)],
        ),
        check_every=d.count(1, 25),
        max_steps=max_steps,
        divergence_factor=d.odd(d.choice([1e6, 1e3, math.inf]), (*EXTREME_FLOATS, 1.0)),
    )


def random_sweep(index: int) -> Any:
    """Draw spec number ``index`` and run it; return the results (or raise what it raises)."""
    d = Draw(index)
    problems = [_problem(d) for _ in range(int(d.rng.integers(1, 3)))]
    names = [p.name for p in problems]
    if len(set(names)) < len(names):
        problems = problems[:1]
    finite_sum = any(isinstance(p, pb.FiniteSum) for p in problems)
    batch_sizes = [d.count(1, 64) for _ in range(int(d.rng.integers(1, 4)))]
    huge = any(isinstance(b, int) and b > 4096 for b in batch_sizes)
    max_steps = d.count(1, 3 if (finite_sum and huge) else 400, p_extreme=0.03)
    if isinstance(max_steps, int) and max_steps > 400:
        max_steps = 400  # a legal spec stays small; 2^63 and the rest are still refused below
    schedule = _schedule(d, finite_sum)
    return cb.sweep(
        problems,
        [_optimizer(d) for _ in range(int(d.rng.integers(1, 3)))],
        batch_sizes,
        [d.real(1e-4, 2.0) for _ in range(int(d.rng.integers(1, 3)))],
        d.odd(int(d.rng.integers(1, 3)), (0, -1, 2**63, [0, 2**63 - 1], [2**64])),
        _target(d, max_steps),
        schedules=schedule,
        seed=d.count(0, 2**32),
        threads=d.odd(1, (0, 4097, -1, 2**63)),
        trajectory_every=d.odd(int(d.rng.integers(1, 40)) if d.chance(0.2) else 0, EXTREME_INTS),
    )


class Hang(Exception):
    """A spec ran past ``HANG_S`` seconds."""


class Watchdog:
    """Interrupt the main thread (SIGUSR1, raised as :class:`Hang`) when a spec runs too long.

    The core runs Python's signal handlers every 50 ms, so a run stuck in the core is stopped.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.deadline = seconds, math.inf
        self.main = threading.main_thread().ident
        self.stopped = threading.Event()

    def __enter__(self) -> Watchdog:
        def handler(signum: int, frame: Any) -> None:
            raise Hang(f"ran past {self.seconds} s")

        self.previous = signal.signal(signal.SIGUSR1, handler)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stopped.wait(0.2):
            if time.monotonic() > self.deadline and self.main is not None:
                self.deadline = math.inf
                signal.pthread_kill(self.main, signal.SIGUSR1)

    def arm(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def disarm(self) -> None:
        self.deadline = math.inf

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        self.thread.join()
        signal.signal(signal.SIGUSR1, self.previous)


def _non_finite(res: Any) -> list[str]:
    """Rows that did not diverge but hold a NaN or an infinity, described."""
    ok = ~np.isin(res["stop_reason"], ["diverged_nonfinite", "diverged_blowup"])
    bad = []
    for column in ("final_loss", "final_grad_norm", "final_x0"):
        rows = np.flatnonzero(ok & ~np.isfinite(res[column]))
        bad += [f"row {i}: {column} = {res[column][i]} ({res['stop_reason'][i]})" for i in rows]
    for i, trajectory in enumerate(res.trajectories):
        if ok[i] and not np.all(np.isfinite(trajectory)):
            bad.append(
                f"row {i}: trajectory holds {trajectory[~np.isfinite(trajectory)][:3]} "
                f"({res['stop_reason'][i]})"
            )
    return bad


def fuzz(n_specs: int) -> Counter[str]:
    """Run specs ``0..n_specs-1``; return a tally of outcomes, or fail naming the bad ones."""
    tally: Counter[str] = Counter()
    failures: list[str] = []
    with Watchdog(HANG_S) as watchdog:
        for i in range(n_specs):
            watchdog.arm()
            try:
                res = random_sweep(i)
                watchdog.disarm()
            except (ValueError, TypeError) as err:
                watchdog.disarm()
                message = str(err)
                if _FIELD.search(message):
                    tally[type(err).__name__] += 1
                else:
                    failures.append(f"spec {i}: {type(err).__name__} names no field: {message}")
                continue
            except Hang:
                failures.append(f"spec {i}: hung (ran past {HANG_S} s)")
                continue
            except BaseException as err:  # a PanicException is a BaseException
                watchdog.disarm()
                if isinstance(err, KeyboardInterrupt) and not isinstance(err, cb.SweepInterrupted):
                    raise
                failures.append(f"spec {i}: {type(err).__module__}.{type(err).__name__}: {err}")
                continue
            bad = _non_finite(res)
            if bad:
                failures.append(f"spec {i}: silent non-finite values: {bad[:3]}")
            tally.update(res["stop_reason"].tolist())
            tally["tables"] += 1
    assert not failures, f"{len(failures)} of {n_specs} specs failed:\n" + "\n".join(failures[:20])
    return tally


def test_random_specs_run_or_name_the_field():
    tally = fuzz(FUZZ_SPECS)
    # the generator reaches both outcomes, and every stop reason, in the short run too
    assert tally["tables"] > FUZZ_SPECS // 4
    assert tally["ValueError"] + tally["TypeError"] > FUZZ_SPECS // 10
    assert {"reached", "budget", "diverged_blowup", "diverged_nonfinite"} <= set(tally)


@pytest.mark.slow
def test_ten_thousand_random_specs_run_or_name_the_field():
    fuzz(SLOW_SPECS)
