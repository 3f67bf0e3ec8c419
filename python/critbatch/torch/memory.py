r"""How much memory the torch backend's batched programs may hold, per device.

Three budgets, each counted in elements of the tensors it bounds:

* ``"intermediate"``: one intermediate of a sum over samples (``runs x samples x features``, in
  :meth:`critbatch.torch.problems.FiniteSum.weighted`); the samples are summed in blocks that
  stay below it. A few such intermediates are alive at once (the gathered rows, the predictor
  values, a teacher-student net's hidden layer and its back-propagated error).
* ``"state"``: what a chunk of runs holds for its whole life: ``shuffle`` permutations
  (``runs x n`` indices) and a network's parameters, optimizer state, gradients and weight
  average (``runs x dim`` each). It bounds the runs per chunk
  (:func:`critbatch.torch.runner.run_plan`).
* ``"activations"``: a network's activations in one batched call, estimated at 32 floats per
  input value (:class:`critbatch.torch.network.NetworkProblem`); it bounds the runs per call.

On the CPU the caps are fixed (:data:`CPU_ELEMENTS`): 4 Mi elements per intermediate (32 MiB in
float64), 32 Mi of chunk state and 64 Mi floats of activations. There larger blocks buy nothing
(the programs are memory-bound well below them) and the host's memory is shared with everything
else. On a CUDA device each budget is a share (:data:`CUDA_SHARES`) of the memory free when the
problem is built or the chunk starts: what ``torch.cuda.mem_get_info`` reports free, plus what
torch's caching allocator holds reserved but unused (free to torch, not to the driver). The
shares leave room for several intermediates and activations at once beside the chunk's state:
1/16 per intermediate, 1/4 for state, 1/8 for activations. On a device with 139 GiB free (an
H200) that is 8.7 GiB per intermediate, where the former fixed cap of 4 Mi elements made a
chunk of 16,384 least-squares runs (``d = 32``) sum 1,024 samples in 128 blocks of 8 per step.
Every budget is at least :data:`MIN_ELEMENTS`, so a nearly full device still makes progress (or
fails with torch's own out-of-memory error).

A block's size changes only how sums are grouped, so the results of a synthetic problem differ
between devices with different free memory by rounding at most, as they do between chunkings
(:mod:`critbatch.torch.runner`).

Example:
    >>> import torch
    >>> elements("cpu", "intermediate", torch.float64)
    4194304
    >>> elements("cuda", "state", torch.float32, free=16 << 30)  # a quarter of 16 GiB, 4 B each
    1073741824

"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["BUDGETS", "CPU_ELEMENTS", "CUDA_SHARES", "MIN_ELEMENTS", "elements", "free_bytes"]

#: The budgets, in the order the module docstring describes them.
BUDGETS = ("intermediate", "state", "activations")
#: Fixed caps on the CPU (and on any device other than CUDA), in elements.
CPU_ELEMENTS = {"intermediate": 1 << 22, "state": 1 << 25, "activations": 1 << 26}
#: Share of the free memory of a CUDA device that each budget may take.
CUDA_SHARES = {"intermediate": 1 / 16, "state": 1 / 4, "activations": 1 / 8}
#: The smallest budget on a CUDA device, whatever its free memory (1 Mi elements).
MIN_ELEMENTS = 1 << 20


def free_bytes(device: Any) -> int:
    """Bytes free to torch on a CUDA ``device``: the driver's free memory plus torch's unused cache.

    Example:
        >>> import torch
        >>> free_bytes("cuda") > 0 if torch.cuda.is_available() else True
        True

    """
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"free_bytes reads a CUDA device's memory, got device {str(dev)!r}")
    free, _total = torch.cuda.mem_get_info(dev)
    cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
    return int(free) + max(int(cached), 0)


def elements(device: Any, budget: str, dtype: torch.dtype, *, free: int | None = None) -> int:
    """The elements of ``dtype`` that ``budget`` allows on ``device`` (module docstring).

    Args:
        device: a torch device or its name.
        budget: ``"intermediate"``, ``"state"`` or ``"activations"`` (:data:`BUDGETS`).
        dtype: the element type (its size turns a CUDA share of bytes into elements).
        free: the free bytes of a CUDA device, when already known (tests pass a figure);
            default: measured now (:func:`free_bytes`). Ignored on other devices.

    Returns:
        The budget in elements (a fixed cap off CUDA; at least :data:`MIN_ELEMENTS` on CUDA).

    Example:
        >>> import torch
        >>> elements("cuda", "intermediate", torch.float64, free=1 << 40) == (1 << 36) // 8
        True
        >>> elements("cuda", "intermediate", torch.float64, free=0) == MIN_ELEMENTS
        True

    """
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {', '.join(map(repr, BUDGETS))}, got {budget!r}")
    dev = torch.device(device)
    if dev.type != "cuda":
        return CPU_ELEMENTS[budget]
    available = free_bytes(dev) if free is None else int(free)
    if available < 0:
        raise ValueError(f"free must be a number of bytes >= 0, got {free!r}")
    return max(MIN_ELEMENTS, int(available * CUDA_SHARES[budget]) // dtype.itemsize)
