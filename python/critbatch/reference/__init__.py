"""The slow, obviously correct NumPy oracle that the Rust core and the torch backend must match.

Pure NumPy, one plain loop per concept: :mod:`~critbatch.reference.optimizers` (the update rules,
step for step on a fixed gradient sequence), :mod:`~critbatch.reference.problems` (exact losses,
gradients and stochastic oracles) and :mod:`~critbatch.reference.run` (one run, checks and all).
It never imports ``critbatch._core`` or torch.
"""

from critbatch.reference.optimizers import init_state, optimizer_trajectory, step
from critbatch.reference.problems import (
    ShuffleSampler,
    WithReplacementSampler,
    grad,
    loss,
    make_sampler,
    sample_grads,
    stochastic_grad,
)
from critbatch.reference.run import batch_size_at, lr_at, rule_factor, rule_time, run

__all__ = [
    "ShuffleSampler",
    "WithReplacementSampler",
    "batch_size_at",
    "grad",
    "init_state",
    "loss",
    "lr_at",
    "make_sampler",
    "optimizer_trajectory",
    "rule_factor",
    "rule_time",
    "run",
    "sample_grads",
    "step",
    "stochastic_grad",
]
