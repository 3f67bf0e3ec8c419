r"""Checks of theorems against simulation: each returns a :class:`CheckResult` with its slack.

A theorem bounds an expectation; a simulation estimates it from ``runs`` independent runs of the
Rust core. Every check states the one-sided (or, for an equality, two-sided) statistical slack
it allows: the Monte Carlo mean :math:`\hat m` must satisfy :math:`\hat m - z\,\widehat{se} \le`
bound, where :math:`\widehat{se}` is the standard error of the mean over runs and :math:`z` is
an argument (3 by default: a false alarm about once in 740 checks under the normal
approximation). A check therefore fails only when the simulation is significantly above the
bound, and a result says how much room was allowed (``slack``) and by how much it passed or
failed. On top of the statistical slack every check allows a rounding tolerance
``atol + rtol * |bound|`` (``tolerance``; ``rtol = 1e-12`` by default): a bound that holds with
equality, such as the averaged descent lemma on a noiseless isotropic quadratic, is otherwise
reported violated by a few units in the last place of the simulation's arithmetic.

Per-step squared gradient norms :math:`\|\nabla f(\theta_k)\|^2` come from the core in one of
three ways (:func:`grad_norm_sq_paths`):

* ``"trajectory"`` (the default, ``"auto"``; any problem and optimizer the core runs): one sweep
  with ``trajectory_every=1`` and ``trajectory_metrics=("grad_norm",)``, in which the core
  records the exact full-gradient norm :math:`\|\nabla f(\theta_k)\|` of every iterate as it
  computes ``final_grad_norm`` (:data:`critbatch.plan.TRAJECTORY_METRICS`). Linear in the steps.
* ``"twin"`` (noisy quadratic model, linear optimizers SGD / heavy ball / Nesterov): the run on
  :math:`f(x) = \tfrac12\sum_i h_i x_i^2` is mapped by :math:`y = \sqrt h \odot x` onto the run
  on the NQM :math:`(h, h\odot c, \sqrt h \odot x_0)`: its gradient
  :math:`h\odot y + \sqrt{h}\odot\xi` is :math:`\sqrt h` times the original one and the updates are
  linear and act coordinate-wise, so the twin's iterates are :math:`\sqrt h \odot x_k`
  (the core even draws the same normals), and its exact loss
  :math:`\tfrac12\sum_i h_i^2 x_{k,i}^2 = \tfrac12\|\nabla f(x_k)\|^2`. One sweep recording
  the twin's loss at every step gives every step.
* ``"rerun"`` (any problem and optimizer): a run's random stream depends only on (sweep seed,
  run index), so a sweep stopped after ``k`` steps reproduces the first ``k`` steps of a longer
  one; its ``final_grad_norm`` is :math:`\|\nabla f(\theta_k)\|`. Costs ``steps`` sweeps, so
  quadratic in the steps (at most :data:`MAX_RERUN_STEPS`).

The last two are independent oracles of the first: the rerun reads the same norm of the same
iterate and agrees bit for bit after step 0 (where it squares the core's gradient in NumPy), the
twin agrees to rounding (its iterates are computed in other coordinates).

Example:
    >>> from critbatch.testing.strategies import nqm_instance
    >>> inst = nqm_instance([1.0, 1.0], [1.0, 1.0], 2.0)
    >>> res = check_sgd_stationarity_bound(inst, lr=0.5, batch_size=4, steps=20, runs=64)
    >>> res.passed, round(res.bound, 4)
    (True, 0.7)

"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from critbatch import _validate as v
from critbatch import optimizers as opt
from critbatch import problems as pb
from critbatch import schedules as sc
from critbatch import targets as tg
from critbatch.reference.run import batch_size_at, rule_time
from critbatch.results import Results
from critbatch.sweep import sweep
from critbatch.testing.strategies import Instance
from critbatch.theory import iiduka2022, perrone2019, umeda_iiduka2025, zhang2019

__all__ = [
    "STATISTICS",
    "CheckResult",
    "check_nqm_expectation",
    "check_rational_steps",
    "check_sgd_stationarity_bound",
    "check_sgd_strongly_convex_bound",
    "check_upper_bound",
    "grad_norm_sq_paths",
]

#: How :func:`check_upper_bound` reduces per-step values: the minimum over steps of the
#: expectation, the average over steps of the expectation, or the expectation at the last step.
STATISTICS = ("min", "mean", "last")
#: How :func:`grad_norm_sq_paths` simulates gradient norms; ``"auto"`` is ``"trajectory"``.
METHODS = ("auto", "trajectory", "twin", "rerun")
#: Optimizers whose update is linear in (iterate, gradient) and acts coordinate-wise.
LINEAR_KINDS = ("sgd", "heavy_ball", "nesterov")
#: The most steps the ``"rerun"`` oracle simulates (it costs ``steps**2 / 2`` updates per run);
#: the default method, ``"trajectory"``, has no such limit.
MAX_RERUN_STEPS = 2000


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: the simulated statistic, the theorem's value and the slack.

    Attributes:
        check: the check's name.
        claim: the theorem's statement being checked, in words.
        simulated: the Monte Carlo estimate of the bounded quantity (at the decisive step).
        bound: the theorem's value it is compared with.
        slack: the statistical allowance, ``z`` standard errors.
        z: the number of standard errors allowed.
        runs: the number of independent simulated runs.
        passed: whether the simulation is consistent with the claim:
            ``simulated - slack <= bound + tolerance`` (one-sided) or
            ``|simulated - bound| <= slack + tolerance`` (two-sided).
        tolerance: the rounding allowance ``atol + rtol * |bound|``.
        details: check-specific numbers (steps, per-step arrays, the method used).

    """

    check: str
    claim: str
    simulated: float
    bound: float
    slack: float
    z: float
    runs: int
    passed: bool
    tolerance: float = 0.0
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def message(self) -> str:
        """A readable one-paragraph account of the check."""
        verdict = "holds" if self.passed else "VIOLATED"
        margin = self.bound + self.slack + self.tolerance - self.simulated
        return (
            f"{self.check}: {verdict}. Claim: {self.claim}. Simulated {self.simulated:.6g} "
            f"vs bound {self.bound:.6g}, slack {self.slack:.3g} ({self.z:g} standard errors "
            f"over {self.runs} runs) and rounding tolerance {self.tolerance:.3g}; "
            f"margin {margin:.3g}."
        )

    def assert_passed(self) -> None:
        """Raise ``AssertionError`` with :attr:`message` unless the check passed.

        Example:
            >>> CheckResult("demo", "x <= 1", 0.5, 1.0, 0.0, 3.0, 10, True).assert_passed()

        """
        if not self.passed:
            raise AssertionError(self.message)


# ---------------------------------------------------------------------------------------------
# Simulation of per-step squared gradient norms.


def _optimizer(optimizer: Any) -> opt.Optimizer:
    if isinstance(optimizer, str):
        return opt.from_name(optimizer)
    if not isinstance(optimizer, opt.Optimizer):
        raise TypeError(f"optimizer must be an Optimizer or a name, got {type(optimizer).__name__}")
    return optimizer


def _problem(problem: Any) -> pb.Nqm | pb.FiniteSum | pb.DoubleWell:
    if isinstance(problem, Instance):
        problem = problem.problem
    if not isinstance(problem, (pb.Nqm, pb.FiniteSum, pb.DoubleWell)):
        raise TypeError(
            f"problem must be a critbatch problem or an Instance, got {type(problem).__name__}"
        )
    return problem


def _budget(steps: int) -> tg.Target:
    """Run exactly ``steps`` updates; only a non-finite loss or iterate stops a run early."""
    return tg.target(max_steps=steps, check_every=steps, divergence_factor=math.inf)


def _stack(trajectories: list[np.ndarray], length: int) -> np.ndarray:
    """Rows of equal length; a run stopped early (non-finite) is padded with ``inf``."""
    out = np.full((len(trajectories), length), np.inf)
    for i, row in enumerate(trajectories):
        row = np.asarray(row, dtype=float)[:length]
        out[i, : row.size] = np.where(np.isfinite(row), row, np.inf)
    return out


def grad_norm_sq_paths(
    problem: Any,
    optimizer: Any,
    lr: float,
    batch_size: int,
    steps: int,
    runs: int,
    *,
    schedule: sc.Schedule | None = None,
    seed: int = 0,
    method: str = "auto",
    threads: int | None = None,
) -> np.ndarray:
    r"""Simulate :math:`\|\nabla f(\theta_k)\|^2` at every step ``k = 0..steps`` of ``runs`` runs.

    .. math::

        G_{r,k} = \|\nabla f(\theta^{(r)}_k)\|^2,\qquad r < \text{runs},\ 0 \le k \le
        \text{steps},

    computed by the Rust core through ``"trajectory"``, ``"twin"`` or ``"rerun"`` (module
    docstring); ``"auto"`` is ``"trajectory"``, one sweep for any problem and optimizer. For the
    same ``seed`` the three give the same paths: ``"rerun"`` bit for bit after step 0,
    ``"twin"`` up to rounding.

    Args:
        problem: a :mod:`critbatch.problems` spec or an :class:`Instance`.
        optimizer: an optimizer spec or name.
        lr: the base learning rate (> 0).
        batch_size: the base batch size (>= 1).
        steps: the number of updates (>= 1).
        runs: the number of independent runs (>= 1).
        schedule: a :class:`critbatch.schedules.Schedule` (constant by default).
        seed: the sweep seed.
        method: ``"auto"``, ``"trajectory"``, ``"twin"`` or ``"rerun"``.
        threads: worker threads of the core (results do not depend on it).

    Returns:
        Array of shape ``(runs, steps + 1)``; ``inf`` after a run's loss or iterate stopped
        being finite.

    Raises:
        ValueError: ``"twin"`` for a problem or optimizer it does not apply to, or ``"rerun"``
            past ``MAX_RERUN_STEPS`` steps.

    Example:
        >>> from critbatch import problems
        >>> g = grad_norm_sq_paths(problems.nqm([2.0], [0.0], 1.0), "sgd", 0.25, 1, 2, 1)
        >>> np.round(g, 12).tolist()  # gradient 2x, x_k = 0.5**k: 4, 1, 0.25
        [[4.0, 1.0, 0.25]]

    References:
        The twin map is ours (an exact change of variables of the NQM of Zhang et al. 2019, arXiv
        1907.04164); the rerun relies on the core's per-run streams (the design notes of
        ``rust/rng.rs``); the recorded norms are those of docs/results.md (trajectories).

    """
    prob = _problem(problem)
    spec = _optimizer(optimizer)
    steps = v.positive_int("steps", steps)
    runs = v.positive_int("runs", runs)
    method = v.choice("method", method, METHODS)
    twin_ok = isinstance(prob, pb.Nqm) and spec.kind in LINEAR_KINDS

    def simulate(on: pb.Nqm | pb.FiniteSum | pb.DoubleWell, k: int, **record: Any) -> Results:
        """The ``runs`` runs on ``on`` for exactly ``k`` steps, with the same streams."""
        return sweep(
            on,
            spec,
            [batch_size],
            [lr],
            runs,
            _budget(k),
            schedules=schedule,
            seed=seed,
            threads=threads,
            **record,
        )

    if method in ("auto", "trajectory"):
        res = simulate(prob, steps, trajectory_every=1, trajectory_metrics=("grad_norm",))
        with np.errstate(over="ignore"):  # a norm past 1e154 squares to inf, as a diverged run
            return _stack(res.grad_norm_trajectories, steps + 1) ** 2
    if method == "twin":
        if not twin_ok:
            raise ValueError(
                f"method='twin' needs an NQM problem and an optimizer in "
                f"{LINEAR_KINDS}, got {type(prob).__name__} and {spec.kind!r}"
            )
        assert isinstance(prob, pb.Nqm)
        twin = pb.nqm(
            prob.h, prob.h * prob.c, np.sqrt(prob.h) * prob.x0, name=f"{prob.name}_gradient_twin"
        )
        res = simulate(twin, steps, trajectory_every=1)
        return 2.0 * _stack(res.trajectories, steps + 1)
    if steps > MAX_RERUN_STEPS:
        raise ValueError(
            f"steps must be at most {MAX_RERUN_STEPS} for method='rerun' "
            f"(it costs steps**2/2 updates per run), got {steps}"
        )
    from critbatch import _core

    out = np.empty((runs, steps + 1))
    _, g0 = _core.loss_and_grad(prob.to_core(), np.asarray(prob.x0, dtype=float))
    out[:, 0] = float(np.dot(g0, g0))
    for k in range(1, steps + 1):
        res = simulate(prob, k)
        norm = np.asarray(res["final_grad_norm"], dtype=float)
        with np.errstate(over="ignore"):  # as in "trajectory": a huge norm squares to inf
            out[:, k] = np.where(np.isfinite(norm) & (res["steps"] == k), norm**2, np.inf)
    return out


# ---------------------------------------------------------------------------------------------
# The generic one-sided check.


def _mean_and_se(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard errors; a column with a non-finite entry has mean inf, se 0."""
    finite = np.all(np.isfinite(samples), axis=0)
    safe = np.where(finite[None, :], samples, 0.0)
    mean = np.where(finite, safe.mean(axis=0), np.inf)
    se = np.where(finite, safe.std(axis=0, ddof=1) / math.sqrt(samples.shape[0]), 0.0)
    return mean, se


def _tolerance(bound: float, rtol: Any, atol: Any) -> float:
    """The rounding allowance ``atol + rtol * |bound|`` (0 for an infinite bound)."""
    rtol = v.nonnegative("rtol", rtol)
    atol = v.nonnegative("atol", atol)
    return atol + rtol * abs(bound) if math.isfinite(bound) else 0.0


def check_upper_bound(
    samples: Any,
    bound: float,
    *,
    statistic: str = "min",
    z: float = 3.0,
    rtol: float = 1e-12,
    atol: float = 0.0,
    check: str = "upper_bound",
    claim: str = "",
) -> CheckResult:
    r"""Check a bound on an expectation against per-run, per-step samples, one-sided at ``z``.

    With :math:`S_{r,k}` the sample of run :math:`r` at step :math:`k`, :math:`\hat m_k` the
    mean over runs and :math:`\widehat{se}_k` its standard error, the claims and tests are

    .. math::

        \text{min:}\ \min_k \mathbb{E}S_k \le B
            &\quad\text{fails iff}\quad \min_k(\hat m_k - z\,\widehat{se}_k) > B,\\
        \text{mean:}\ \tfrac1K\textstyle\sum_k \mathbb{E}S_k \le B
            &\quad\text{fails iff}\quad \hat a - z\,\widehat{se}(a) > B,\
            a_r = \tfrac1K\textstyle\sum_k S_{r,k},\\
        \text{last:}\ \mathbb{E}S_{K-1} \le B
            &\quad\text{fails iff}\quad \hat m_{K-1} - z\,\widehat{se}_{K-1} > B.

    with :math:`B` widened by the rounding tolerance ``atol + rtol * |B|``. If the claim holds,
    each test fails with probability at most about :math:`\Phi(-z)` (for ``"min"``: the step
    attaining the true minimum alone already makes it pass that often).

    Args:
        samples: array ``(runs, K)`` with ``runs >= 2``; ``inf`` marks a diverged run.
        bound: the claimed upper bound :math:`B`.
        statistic: ``"min"``, ``"mean"`` or ``"last"``.
        z: standard errors of slack (>= 0).
        rtol: relative rounding tolerance on the bound (>= 0).
        atol: absolute rounding tolerance (>= 0).
        check: a name for the result.
        claim: the claim in words (default: the statistic's formula).

    Returns:
        A :class:`CheckResult`; ``details`` holds ``step`` (the decisive step for ``"min"``),
        ``mean`` and ``se`` (per step).

    Example:
        >>> rows = np.array([[3.0, 1.0], [3.0, 1.2], [3.0, 0.8]])
        >>> res = check_upper_bound(rows, 1.0)
        >>> res.passed, res.simulated, res.details["step"]
        (True, 1.0, 1)
        >>> check_upper_bound(rows, 0.5).passed
        False

    References:
        The normal approximation to the Monte Carlo mean (central limit theorem).

    """
    arr = np.asarray(samples, dtype=float)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(
            f"samples must be a 2-D array (runs >= 2, steps >= 1), got shape {arr.shape}"
        )
    if np.any(np.isnan(arr)):
        raise ValueError("samples must not contain NaN (use inf for a diverged run)")
    bound = v.real("bound", bound, allow_inf=True)
    statistic = v.choice("statistic", statistic, STATISTICS)
    z = v.nonnegative("z", z)
    mean, se = _mean_and_se(arr)
    step = arr.shape[1] - 1
    if statistic == "mean":
        m, s = _mean_and_se(arr.mean(axis=1, keepdims=True))
        simulated, slack = float(m[0]), float(z * s[0])
        text = "(1/K) sum_k E S_k <= B"
    else:
        if statistic == "min":
            step = int(np.argmin(mean - z * se))
        simulated, slack = float(mean[step]), float(z * se[step])
        text = "min_k E S_k <= B" if statistic == "min" else "E S_(K-1) <= B"
    tolerance = _tolerance(bound, rtol, atol)
    passed = bool(simulated - slack <= bound + tolerance)
    return CheckResult(
        check=check,
        claim=claim or text,
        simulated=simulated,
        bound=float(bound),
        slack=slack,
        z=z,
        runs=int(arr.shape[0]),
        passed=passed,
        tolerance=tolerance,
        details={
            "step": step,
            "statistic": statistic,
            "mean": mean,
            "se": se,
            "min_mean": float(mean.min()),
        },
    )


# ---------------------------------------------------------------------------------------------
# SGD theorems.


def _per_step(
    schedule: sc.Schedule, b0: int, lr0: float, steps: int, n_samples: int | None, shuffle: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Batch sizes and learning rates of steps ``0..steps-1`` (the core's schedule semantics)."""
    bs, lrs, sfo = np.empty(steps), np.empty(steps), 0
    for t in range(steps):
        b = batch_size_at(schedule, b0, t, sfo, n_samples if shuffle else None, n_samples)
        bs[t], lrs[t] = b, lr0 * schedule.lr.factor(rule_time(schedule.lr, t, sfo, n_samples))
        sfo += b
    return bs, lrs


def _below_stability(lr: float, L: float) -> None:
    """The descent-lemma bounds need ``lr < 2/L``; beyond it they are vacuous (``inf``)."""
    if not lr * L < 2.0:
        raise ValueError(f"eta must satisfy eta < 2/L = {2.0 / L!r} at every step, got {lr!r}")


def _instance(instance: Any) -> Instance:
    if not isinstance(instance, Instance):
        raise TypeError(
            f"instance must be a critbatch.testing Instance, got {type(instance).__name__}"
        )
    return instance


def _scope_note(instance: Instance) -> str:
    if instance.sigma2_scope == "global":
        return "sigma2 holds everywhere"
    return (
        f"sigma2 holds only on the ball |x - x*| <= {instance.radius:.4g}; the bound assumes "
        "the iterates stay in it"
    )


def check_sgd_stationarity_bound(
    instance: Instance,
    lr: float,
    batch_size: int,
    steps: int,
    runs: int = 256,
    *,
    statistic: str = "min",
    z: float = 3.0,
    rtol: float = 1e-12,
    atol: float = 0.0,
    schedule: sc.Schedule | None = None,
    seed: int = 0,
    method: str = "auto",
    threads: int | None = None,
) -> CheckResult:
    r"""Check the SGD stationarity bound of the descent lemma against the Rust core's SGD.

    With a constant batch size :math:`b` and learning rate :math:`\eta < 2/L`:

    .. math::

        \min_{k<K}\mathbb{E}\|\nabla f(\theta_k)\|^2
        \le \frac1K\sum_{k<K}\mathbb{E}\|\nabla f(\theta_k)\|^2
        \le \frac{C_1}{K} + \frac{C_2}{b},\quad
        C_1 = \frac{2\Delta}{\eta(2 - L\eta)},\ C_2 = \frac{L\eta\sigma^2}{2 - L\eta}

    (:func:`critbatch.theory.iiduka2022.sgd_bound`); with a ``schedule`` the bound is
    :func:`critbatch.theory.umeda_iiduka2025.bound` over the per-step :math:`(b_t, \eta_t)`.
    ``statistic="min"`` checks the first inequality's left side, ``"mean"`` the average (what
    summing the descent lemma proves); see :func:`check_upper_bound` for the slack.

    Args:
        instance: an :class:`Instance` (its ``L``, ``sigma2`` and ``delta`` enter the bound).
        lr: the (base) learning rate, below ``2/L`` at every step.
        batch_size: the (base) batch size.
        steps: :math:`K`, the number of iterates :math:`\theta_0..\theta_{K-1}` (>= 1).
        runs: independent runs (>= 2).
        statistic: ``"min"`` or ``"mean"`` over the steps.
        z: one-sided standard errors of slack.
        rtol: relative rounding tolerance on the bound.
        atol: absolute rounding tolerance.
        schedule: a batch-size / learning-rate schedule (constant by default).
        seed: the sweep seed.
        method: how gradient norms are simulated (:func:`grad_norm_sq_paths`).
        threads: worker threads of the core.

    Returns:
        A :class:`CheckResult`; ``details`` adds ``method`` and ``assumption`` (where the
        instance's :math:`\sigma^2` holds).

    Raises:
        ValueError: if a learning rate is at or above ``2/L`` (the bound says nothing there).

    Example:
        >>> from critbatch.testing.strategies import nqm_instance
        >>> inst = nqm_instance([1.0], [1.0], 2.0)
        >>> check_sgd_stationarity_bound(inst, 0.5, 1, 10, runs=32).passed
        True

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713) and Umeda & Iiduka 2025's (arXiv
        2508.05297); not checked against the papers' own equations (docs/theory/iiduka2022.md,
        docs/theory/umeda_iiduka2025.md).

    """
    inst = _instance(instance)
    steps = v.positive_int("steps", steps)
    statistic = v.choice("statistic", statistic, ("min", "mean"))
    b0 = v.positive_int("batch_size", batch_size)
    lr0 = v.positive("lr", lr)
    prob = inst.problem
    if schedule is None:
        _below_stability(lr0, inst.L)
        bound = iiduka2022.sgd_bound(steps, b0, inst.L, inst.sigma2, inst.delta, lr0)
        text = "C1/K + C2/b (descent lemma, Iiduka 2022)"
    else:
        if not isinstance(schedule, sc.Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        shuffle = isinstance(prob, pb.FiniteSum) and prob.sampling == "shuffle"
        bs, lrs = _per_step(schedule, b0, lr0, steps, prob.n_samples, shuffle)
        _below_stability(float(lrs.max()), inst.L)
        bound = umeda_iiduka2025.bound(bs, lrs, inst.L, inst.sigma2, inst.delta)
        text = (
            "(2 Delta + L sigma2 sum eta_t^2/b_t) / ((2 - L eta_max) sum eta_t) "
            "(Umeda & Iiduka 2025)"
        )
    lhs = "min_{k<K}" if statistic == "min" else "(1/K) sum_{k<K}"
    text = f"{lhs} E|grad f(theta_k)|^2 <= {text}"
    used = "trajectory" if method == "auto" else method
    runs = v.positive_int("runs", runs)
    paths = grad_norm_sq_paths(
        prob,
        "sgd",
        lr0,
        b0,
        max(steps - 1, 1),
        runs,
        schedule=schedule,
        seed=seed,
        method=used,
        threads=threads,
    )
    res = check_upper_bound(
        paths[:, :steps],
        bound,
        statistic=statistic,
        z=z,
        rtol=rtol,
        atol=atol,
        check="sgd_stationarity_bound",
        claim=text,
    )
    res.details.update(method=used, assumption=_scope_note(inst), K=steps)
    return res


def check_sgd_strongly_convex_bound(
    instance: Instance,
    lr: float,
    batch_size: int,
    steps: int,
    runs: int = 256,
    *,
    z: float = 3.0,
    rtol: float = 1e-12,
    atol: float = 0.0,
    seed: int = 0,
    threads: int | None = None,
) -> CheckResult:
    r"""Check the strongly convex SGD bound on the suboptimality after ``steps`` updates.

    .. math::

        \mathbb{E} f(\theta_K) - f^\star \le (1 - \eta\mu)^K\Delta
            + \frac{\eta L\sigma^2}{2\mu b},\qquad 0 < \eta \le 1/L

    (:func:`critbatch.theory.perrone2019.strongly_convex_bound`), the loss read exactly from
    the core at step :math:`K`; one-sided slack of ``z`` standard errors.

    Args:
        instance: an :class:`Instance` with ``mu > 0``.
        lr: the learning rate, at most ``1/L``.
        batch_size: the batch size.
        steps: :math:`K` (>= 1).
        runs: independent runs (>= 2).
        z: standard errors of slack.
        rtol: relative rounding tolerance on the bound.
        atol: absolute rounding tolerance.
        seed: the sweep seed.
        threads: worker threads of the core.

    Returns:
        A :class:`CheckResult` (``statistic="last"``).

    Raises:
        ValueError: if ``lr > 1/L`` (the bound's assumption).

    Example:
        >>> from critbatch.testing.strategies import nqm_instance
        >>> inst = nqm_instance([1.0, 0.5], [1.0, 1.0], 1.0)
        >>> check_sgd_strongly_convex_bound(inst, 0.5, 2, 20, runs=64).passed
        True

    References:
        The bound of Perrone et al. 2019's justification of the inverse law (arXiv 1911.06459),
        derived following the paper's method and not checked against its own equations
        (docs/theory/perrone2019.md).

    """
    inst = _instance(instance)
    if not inst.mu > 0:
        raise ValueError(f"instance.mu must be positive (strong convexity), got {inst.mu!r}")
    steps = v.positive_int("steps", steps)
    if v.positive("lr", lr) * inst.L > 1.0:
        raise ValueError(f"eta must satisfy eta <= 1/L = {1.0 / inst.L!r}, got {lr!r}")
    bound = perrone2019.strongly_convex_bound(
        steps, batch_size, lr, inst.L, inst.mu, inst.sigma2, inst.delta
    )
    res_core = sweep(
        inst.problem,
        "sgd",
        [v.positive_int("batch_size", batch_size)],
        [lr],
        v.positive_int("runs", runs),
        _budget(steps),
        seed=seed,
        threads=threads,
    )
    loss = np.asarray(res_core["final_loss"], dtype=float)
    done = (res_core["steps"] == steps) & np.isfinite(loss)
    gap = np.where(done, loss - inst.f_star, np.inf)[:, None]
    res = check_upper_bound(
        gap,
        bound,
        statistic="last",
        z=z,
        rtol=rtol,
        atol=atol,
        check="sgd_strongly_convex_bound",
        claim="E f(theta_K) - f* <= (1 - eta mu)^K Delta + eta L sigma2/(2 mu b)",
    )
    res.details.update(assumption=_scope_note(inst), K=steps)
    return res


def check_rational_steps(
    instance: Instance,
    lr: float,
    batch_size: int,
    eps: float,
    runs: int = 256,
    *,
    z: float = 3.0,
    rtol: float = 1e-12,
    atol: float = 0.0,
    seed: int = 0,
    method: str = "auto",
    max_steps: int = 100_000,
    threads: int | None = None,
) -> CheckResult:
    r"""Check measured steps to an ε-stationary point against the rational bound K(b).

    The SGD bound :math:`C_1/K + C_2/b` falls to :math:`\varepsilon^2` at

    .. math::

        K(b) = \frac{C_1 b}{\varepsilon^2 b - C_2}

    (:func:`critbatch.theory.iiduka2022.sgd_steps`), so the first step at which the mean
    squared gradient norm reaches :math:`\varepsilon^2`,
    :math:`T = \min\{k : \mathbb{E}\|\nabla f(\theta_k)\|^2 \le \varepsilon^2\}`, satisfies
    :math:`T \le \lceil K(b)\rceil - 1`. The measured :math:`\hat T_z` is the first step whose
    lower confidence limit :math:`\hat m_k - z\,\widehat{se}_k` is at most
    :math:`\varepsilon^2` (plus the rounding tolerance ``atol + rtol * eps**2``); the check fails
    iff :math:`\hat T_z > \lceil K(b)\rceil - 1`, that is iff every step up to the allowed one is
    significantly above :math:`\varepsilon^2`.

    Args:
        instance: an :class:`Instance`.
        lr: the learning rate, below ``2/L``.
        batch_size: :math:`b`, above the pole :math:`C_2/\varepsilon^2`.
        eps: the gradient-norm target :math:`\varepsilon`.
        runs: independent runs (>= 2).
        z: standard errors of slack.
        rtol: relative rounding tolerance on :math:`\varepsilon^2`.
        atol: absolute rounding tolerance.
        seed: the sweep seed.
        method: how gradient norms are simulated (:func:`grad_norm_sq_paths`).
        max_steps: refuse to simulate more steps than this (``ceil(K(b))`` are needed).
        threads: worker threads of the core.

    Returns:
        A :class:`CheckResult` with ``simulated`` :math:`\hat T_z` and ``bound``
        :math:`\lceil K(b)\rceil - 1` (``inf`` for :math:`\hat T_z` when no step qualifies);
        ``details`` adds ``K_bound`` (real), ``T_hat`` (first step with
        :math:`\hat m_k \le \varepsilon^2`) and ``method``.

    Raises:
        ValueError: if ``lr >= 2/L`` or ``batch_size`` is at or below the pole
            :math:`C_2/\varepsilon^2` (then :math:`K(b)` is infinite: nothing to check).

    Example:
        >>> from critbatch.testing.strategies import nqm_instance
        >>> inst = nqm_instance([1.0], [1.0], 2.0)
        >>> res = check_rational_steps(inst, 0.5, 8, eps=0.7, runs=32)
        >>> res.passed, res.bound
        (True, 11.0)

    References:
        Derived following Iiduka 2022's method (arXiv 2108.11713); not checked against the paper's
        own equations (docs/theory/iiduka2022.md).

    """
    inst = _instance(instance)
    eps = v.positive("eps", eps)
    z = v.nonnegative("z", z)
    b = v.positive_int("batch_size", batch_size)
    _below_stability(v.positive("lr", lr), inst.L)
    k_real = float(iiduka2022.sgd_steps(b, inst.L, inst.sigma2, inst.delta, lr, eps))
    if not math.isfinite(k_real):
        _, c2 = iiduka2022.sgd_constants(inst.L, inst.sigma2, inst.delta, lr)
        raise ValueError(
            f"batch_size must exceed the pole C2/eps**2 = {c2 / eps**2!r} "
            f"(K(b) is infinite below it), got batch_size={b}"
        )
    allowed = math.ceil(k_real) - 1
    if allowed + 1 > v.positive_int("max_steps", max_steps):
        raise ValueError(
            f"max_steps={max_steps} is below the {allowed + 1} steps K(b) needs; "
            "raise max_steps or choose a larger eps or batch_size"
        )
    prob = inst.problem
    used = "trajectory" if method == "auto" else method
    paths = grad_norm_sq_paths(
        prob,
        "sgd",
        lr,
        b,
        max(allowed, 1),
        v.positive_int("runs", runs),
        seed=seed,
        method=used,
        threads=threads,
    )[:, : allowed + 1]
    mean, se = _mean_and_se(paths)
    target = eps * eps
    tolerance = _tolerance(target, rtol, atol)
    hits_z = np.flatnonzero(mean - z * se <= target + tolerance)
    hits = np.flatnonzero(mean <= target)
    t_z = float(hits_z[0]) if hits_z.size else math.inf
    return CheckResult(
        check="rational_steps",
        claim="first k with E|grad f(theta_k)|^2 <= eps^2 is at most ceil(K(b)) - 1, "
        "K(b) = C1 b/(eps^2 b - C2) (Iiduka 2022)",
        simulated=t_z,
        bound=float(allowed),
        slack=0.0,
        z=z,
        runs=int(paths.shape[0]),
        passed=bool(t_z <= allowed),
        tolerance=tolerance,
        details={
            "K_bound": k_real,
            "T_hat": float(hits[0]) if hits.size else math.inf,
            "method": used,
            "mean": mean,
            "se": se,
            "assumption": _scope_note(inst),
        },
    )


# ---------------------------------------------------------------------------------------------
# The NQM closed form.


def check_nqm_expectation(
    problem: Any,
    optimizer: Any,
    lr: float,
    batch_size: int,
    steps: int,
    runs: int = 2000,
    *,
    z: float = 4.0,
    rtol: float = 1e-12,
    atol: float = 1e-12,
    seed: int = 0,
    threads: int | None = None,
) -> CheckResult:
    r"""Check the closed-form expected NQM loss against the Rust core's Monte Carlo mean.

    .. math::

        \Big|\hat\ell_t - \ell_t\Big| \le z\,\widehat{se}_t + \text{atol}
            + \text{rtol}\,|\ell_t| \quad\text{for every } t = 0..\text{steps},

    with :math:`\ell_t` the exact expectation of
    :func:`critbatch.theory.zhang2019.nqm_expected_loss` (SGD, or heavy ball in torch's
    convention with its momentum), :math:`\hat\ell_t` the mean of the core's exact losses over
    ``runs`` runs and :math:`\widehat{se}_t` its standard error; the tolerance covers step 0,
    where the loss is deterministic. Two-sided; over many steps the deviations are correlated,
    so the family-wise false-alarm rate is well below ``steps`` times :math:`2\Phi(-z)`.

    Args:
        problem: an NQM (:func:`critbatch.problems.nqm`) or an :class:`Instance` holding one.
        optimizer: ``"sgd"``, or a heavy-ball spec with ``dampening == 0``.
        lr: the learning rate.
        batch_size: the batch size.
        steps: the number of updates (>= 1).
        runs: independent runs (>= 2).
        z: standard errors of slack at each step.
        rtol: relative rounding tolerance (>= 0).
        atol: absolute rounding tolerance (>= 0).
        seed: the sweep seed.
        threads: worker threads of the core.

    Returns:
        A :class:`CheckResult` at the worst step (largest deviation relative to its slack);
        ``details`` holds ``step``, ``exact``, ``mean`` and ``se`` (per step).

    Example:
        >>> from critbatch import problems
        >>> check_nqm_expectation(problems.nqm([1.0, 0.5], [1.0, 1.0], 1.0), "sgd", 0.5, 2, 10,
        ...                       runs=200).passed
        True

    References:
        Zhang et al. 2019 (arXiv 1907.04164), docs/theory/zhang2019.md; see
        :func:`critbatch.theory.zhang2019.nqm_moments` for the [stated] and [derived] parts.

    """
    prob = _problem(problem)
    if not isinstance(prob, pb.Nqm):
        raise TypeError(f"problem must be an NQM, got {type(prob).__name__}")
    spec = _optimizer(optimizer)
    if spec.kind == "sgd":
        momentum = 0.0
    elif spec.kind == "heavy_ball" and spec.dampening == 0.0:
        momentum = spec.momentum
    else:
        raise ValueError(
            f"optimizer must be SGD or heavy ball without dampening (the closed "
            f"forms of zhang2019), got kind={spec.kind!r}, "
            f"dampening={spec.dampening!r}"
        )
    steps = v.positive_int("steps", steps)
    runs = v.positive_int("runs", runs)
    z = v.nonnegative("z", z)
    rtol = v.nonnegative("rtol", rtol)
    atol = v.nonnegative("atol", atol)
    b = v.positive_int("batch_size", batch_size)
    exact = zhang2019.nqm_expected_loss(
        prob.h, prob.c, prob.x0, v.positive("lr", lr), b, steps, momentum=momentum
    )
    res = sweep(
        prob, spec, [b], [lr], runs, _budget(steps), trajectory_every=1, seed=seed, threads=threads
    )
    mean, se = _mean_and_se(_stack(res.trajectories, steps + 1))
    with np.errstate(invalid="ignore"):
        rounding = atol + rtol * np.abs(exact)
        allowed = z * se + rounding
        deviation = np.abs(mean - exact)
        ratio = np.where(deviation == 0, 0.0, deviation / allowed)
    ratio = np.where(np.isfinite(ratio), ratio, np.inf)
    step = int(np.argmax(ratio))
    return CheckResult(
        check="nqm_expectation",
        claim=f"E loss_t of {spec.kind} on the NQM equals the closed form (Zhang et al. 2019) "
        f"at every t <= {steps}",
        simulated=float(mean[step]),
        bound=float(exact[step]),
        slack=float(z * se[step]),
        z=z,
        runs=runs,
        passed=bool(np.all(ratio <= 1.0)),
        tolerance=float(rounding[step]),
        details={"step": step, "exact": exact, "mean": mean, "se": se},
    )
