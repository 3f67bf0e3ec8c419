"""The torch backend: the same problem, optimizer, schedule and target specs as batched tensors.

Many runs advance together as one ``(runs, parameters)`` tensor on a CPU or a GPU; a run that
stops is removed from the tensor, so its record stays as it was at its stop. Select it with
``critbatch.sweep(..., backend="torch", device="cpu")`` (or ``device="cuda"``), or
``backend = "torch"`` in a spec; it returns the same result table as the Rust core. Real networks
are a problem kind like the others (:func:`critbatch.problems.network`, ``kind = "network"`` in a
spec), run by the same loop. This subpackage is the only place in critbatch that imports torch,
and ``critbatch/__init__.py`` never imports it: install the extra with
``pip install critbatch[torch]``.

Modules:

* :mod:`critbatch.torch.runner`: :func:`run_plan`, the one loop over steps, checks and chunks.
* :mod:`critbatch.torch.problems`: the synthetic problems' exact loss and gradient, their
  stochastic oracles, and the index samplers.
* :mod:`critbatch.torch.network`: a network problem as flattened parameter rows, its
  minibatch gradients under ``torch.func.vmap``, its checks.
* :mod:`critbatch.torch.optimizers`: the step rules as batched tensor updates.
* :mod:`critbatch.torch.rng`: counter-based random streams keyed by (sweep seed, run index).
* :mod:`critbatch.torch.networks`, :mod:`critbatch.torch.datasets`: the built-in models (an
  MLP, a 1-D CNN, a small ResNet) and data sets (scikit-learn's digits, MNIST-1D generated
  offline, a local CIFAR-10 copy), and the import references that bring your own.
* :mod:`critbatch.torch.noise_scale`: McCandlish et al.'s gradient noise scale.
* :mod:`critbatch.torch.memory`: the memory budgets of chunks and blocks (fixed caps on the
  CPU, shares of the free memory on a GPU).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (fail here, with the extra's name, if torch is missing)
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "critbatch.torch needs torch: install the extra with `pip install critbatch[torch]`"
    ) from error

from critbatch.torch.runner import run_plan

__all__ = ["run_plan"]
