"""Targets: when a run counts as done, its step budget, and when it counts as diverged.

A run stops at the first check (every ``check_every`` steps, and at step 0) where the exact full
loss is ``<= loss_below`` or the full-gradient norm is ``<= grad_norm_below`` or coordinate
``position_below[0]`` of the iterate is ``< position_below[1]`` or, for a network problem
(:func:`critbatch.problems.network`), the accuracy on its validation split is
``>= accuracy_above`` (any one suffices). For a network "the loss" is the mean training loss on
its fixed evaluation subset (``eval_train`` examples) and the gradient norm that of that loss;
the accuracy is measured only when the target asks for it, and the test set is never used to
stop a run. The Rust core has no networks and no accuracy: a plan that needs either is refused
before it runs (:func:`critbatch.plan.check_backend`). ``steps`` is the
number of updates taken at that check. A run diverges when the loss or the iterate is not finite,
or the loss exceeds ``divergence_factor * max(|loss(x0)|, 1)`` (checked at the same checks; the
floor of 1 keeps a run that starts at zero loss, such as a well's minimum, from counting as
diverged at once).

``loss_gap_below = tau`` is reached when ``loss - f* <= tau``, with ``f*`` the problem's exact
minimum (:func:`critbatch.problems.min_loss`: 0 for the NQM and the double well, the normal
equations for least squares, BFGS on the NumPy reference loss from ``x0`` otherwise), computed
once per problem when a plan is made.

``check_every`` defaults by problem kind: every step (:data:`SYNTHETIC_CHECK_EVERY`) for the
synthetic problems, whose check is one exact loss and gradient, and every
:data:`NETWORK_CHECK_EVERY` = 10 steps for networks, whose check evaluates the model on its
``eval_train`` examples (forward passes over up to 4,096 of them, where a step reads ``b``):
measured on the digits MLP (64-32-10, 1,213 training images, SGD, 12 vmapped runs with
``b`` = 32 and 128, 2 CPU cores), checking every step took 8.5 s, every 5 steps 3.3 s, every 10
2.7 s and every 25 2.1 s, while the steps to target moved by at most the interval. A target left
at the default keeps ``check_every = None`` until a plan (:func:`critbatch.plan.make_plan`) or a
spec fixes it from its problems (:meth:`Target.for_problems`); the Rust core, which runs the
synthetic problems only, reads ``None`` as 1. A step count is known to within the interval
``check_every`` (:mod:`critbatch.fit` treats it so).

Budgets: ``max_steps`` (a check at ``t = max_steps``), ``max_sfo`` (the sum of the batch sizes)
and ``max_epochs`` (``SFO / n``; finite sums only: it is the SFO budget ``ceil(max_epochs * n)``).
An SFO budget is never crossed: a run is checked *before the step whose batch would take the
SFO past* ``max_sfo`` and stops there (``"budget"`` unless the check reaches or diverges), so
runs compared at an equal SFO budget stop at the same SFO to within one step's batch, whatever
their schedules (``rust/targets.rs``, design notes).

Every backend records why a run stopped in the ``stop_reason`` column
(:data:`critbatch.results.STOP_REASONS`): ``"reached"``, ``"budget"`` (a budget spent),
``"diverged_nonfinite"`` (the loss or the iterate is NaN or infinite, or the run stopped with a
gradient norm that is) and ``"diverged_blowup"`` (a finite loss above the blow-up level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from critbatch import _validate as v

#: The default ``check_every`` of the synthetic problems: every step.
SYNTHETIC_CHECK_EVERY = 1
#: The default ``check_every`` of network problems (module docstring: what a check costs).
NETWORK_CHECK_EVERY = 10


@dataclass(frozen=True)
class Target:
    """Stopping rule of a run (see the module docstring)."""

    loss_below: float | None = None
    grad_norm_below: float | None = None
    position_below: tuple[int, float] | None = None
    #: Steps between checks; ``None``: the default of the plan's problems (module docstring).
    check_every: int | None = None
    max_steps: int = 10_000
    divergence_factor: float = 1e6
    name: str = ""
    accuracy_above: float | None = None
    loss_gap_below: float | None = None
    max_sfo: int | None = None
    max_epochs: float | None = None

    def sfo_budget(self, n_samples: int | None) -> int | None:
        """The SFO budget of a problem with ``n_samples`` (``None``: no finite data set).

        ``min(max_sfo, ceil(max_epochs * n))``; ``None`` without either budget.

        Example:
            >>> target(max_epochs=2.5, max_sfo=100).sfo_budget(10)
            25

        """
        budget = self.max_sfo
        if self.max_epochs is not None:
            if n_samples is None:
                raise ValueError(
                    "target.max_epochs counts epochs of a finite data set, but the "
                    "problem has none; use target.max_sfo"
                )
            sfo = math.ceil(self.max_epochs * n_samples)
            budget = sfo if budget is None else min(budget, sfo)
        return budget

    def for_problems(self, network: bool) -> Target:
        """The target with ``check_every`` fixed: as given, else the default of the problems.

        Args:
            network: whether the problems are networks (with a network among them, the network
                default applies to every problem of the plan).

        Example:
            >>> target().for_problems(network=True).check_every
            10
            >>> target(check_every=3).for_problems(network=True).check_every
            3

        """
        if self.check_every is not None:
            return self
        return replace(self, check_every=self.checks_every(network))

    def checks_every(self, network: bool) -> int:
        """Steps between checks: ``check_every``, else the default for (non-)network problems.

        Example:
            >>> target().checks_every(network=False), target(check_every=4).checks_every(True)
            (1, 4)

        """
        if self.check_every is not None:
            return self.check_every
        return NETWORK_CHECK_EVERY if network else SYNTHETIC_CHECK_EVERY

    def to_core(self) -> dict[str, Any]:
        """The plain description the core receives (NaN or None marks an unused criterion).

        ``accuracy_above`` is not part of it: the core refuses plans that set it, in Python.
        """
        nan = float("nan")
        coord, level = self.position_below if self.position_below is not None else (0, nan)
        return {
            "loss_below": nan if self.loss_below is None else self.loss_below,
            "grad_norm_below": nan if self.grad_norm_below is None else self.grad_norm_below,
            "position_coordinate": coord,
            "position_below": level,
            "check_every": self.checks_every(network=False),
            "max_steps": self.max_steps,
            "divergence_factor": self.divergence_factor,
            "loss_gap_below": self.loss_gap_below,
            "max_sfo": self.max_sfo,
            "max_epochs": self.max_epochs,
        }


def target(
    *,
    loss_below: float | None = None,
    grad_norm_below: float | None = None,
    position_below: tuple[int, float] | None = None,
    check_every: int | None = None,
    max_steps: int = 10_000,
    divergence_factor: float = 1e6,
    name: str = "",
    accuracy_above: float | None = None,
    loss_gap_below: float | None = None,
    max_sfo: int | None = None,
    max_epochs: float | None = None,
) -> Target:
    """Build a validated :class:`Target`.

    A budget alone (no criterion) runs every run to its first budget. ``accuracy_above`` (a
    fraction in (0, 1]) applies to network problems only; ``loss_gap_below`` (``>= 0``) is
    measured from each problem's exact minimum; ``max_sfo`` and ``max_epochs`` are budgets of
    stochastic gradients and of epochs (finite sums), checked as the module docstring says.
    ``check_every`` left at ``None`` is fixed by the plan: 1 for the synthetic problems,
    :data:`NETWORK_CHECK_EVERY` for networks.

    Example:
        >>> target(loss_below=0.5, accuracy_above=0.9, check_every=10).name
        'loss<=0.5,acc>=0.9'
        >>> target(loss_gap_below=1e-3, max_sfo=10_000).name
        'gap<=0.001'

    """
    if loss_below is not None:
        loss_below = v.real("loss_below", loss_below)
    if grad_norm_below is not None:
        grad_norm_below = v.positive("grad_norm_below", grad_norm_below)
    if position_below is not None:
        if not isinstance(position_below, (tuple, list)):
            raise TypeError(
                f"position_below must be (coordinate, level), got "
                f"{type(position_below).__name__} {position_below!r}"
            )
        if len(position_below) != 2:
            raise ValueError(f"position_below must be (coordinate, level), got {position_below!r}")
        position_below = (
            v.nonnegative_int("position_below[0]", position_below[0]),
            v.real("position_below[1]", position_below[1]),
        )
    if accuracy_above is not None:
        accuracy_above = v.real("accuracy_above", accuracy_above)
        if not 0 < accuracy_above <= 1:
            raise ValueError(f"accuracy_above must be in (0, 1], got {accuracy_above!r}")
    if loss_gap_below is not None:
        loss_gap_below = v.nonnegative("loss_gap_below", loss_gap_below)
    if max_sfo is not None:
        max_sfo = v.positive_int("max_sfo", max_sfo)
    if max_epochs is not None:
        max_epochs = v.positive("max_epochs", max_epochs)
    factor = v.positive("divergence_factor", divergence_factor, allow_inf=True)
    if factor <= 1:
        raise ValueError(f"divergence_factor must exceed 1, got {divergence_factor!r}")
    parts = [
        f"loss<={loss_below:g}" if loss_below is not None else "",
        f"gap<={loss_gap_below:g}" if loss_gap_below is not None else "",
        f"|g|<={grad_norm_below:g}" if grad_norm_below is not None else "",
        f"x[{position_below[0]}]<{position_below[1]:g}" if position_below else "",
        f"acc>={accuracy_above:g}" if accuracy_above is not None else "",
    ]
    return Target(
        loss_below=loss_below,
        grad_norm_below=grad_norm_below,
        position_below=position_below,
        check_every=None if check_every is None else v.positive_int("check_every", check_every),
        max_steps=v.positive_int("max_steps", max_steps),
        divergence_factor=factor,
        name=name or (",".join(p for p in parts if p) or f"budget {max_steps}"),
        accuracy_above=accuracy_above,
        loss_gap_below=loss_gap_below,
        max_sfo=max_sfo,
        max_epochs=max_epochs,
    )
